//! `scale`: `out = in * scale + offset`, the affine map between signal ranges.
//!
//! Turns a bipolar LFO (-1..1) into a cutoff sweep (e.g. scale 500, offset 1000 gives
//! 500..1500), inverts a signal (scale -1), or adds a DC offset. Both parameters glide
//! over 10 ms. The input is held to ±1e9 first, so the result is always finite.

use crate::params::Params;
use crate::module::Module;
use crate::modules::common::{input, sanitize};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};

/// Index of the `scale` parameter.
pub const SCALE: usize = 0;
/// Index of the `offset` parameter.
pub const OFFSET: usize = 1;

/// Static description of the `scale` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "scale",
    doc: "Scale and offset: out = in x scale + offset (map an LFO onto a parameter range; also turns an audio signal into a control signal for audio-rate modulation).",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::control("out")],
    params: &[
        ParamSpec::number("scale", -1_000.0..=1_000.0, 1.0).doc("Factor applied to the input (negative inverts); glides over 10 ms."),
        ParamSpec::number("offset", -1_000.0..=1_000.0, 0.0).doc("Value added after scaling; glides over 10 ms."),
    ],
    has_gate: false,
};

/// Scale state: the two smoothed parameters.
#[derive(Debug, Clone)]
pub struct Scale {
    params: Params,
}

impl Scale {
    /// The identity map (scale 1, offset 0).
    pub fn new(sample_rate: f32) -> Self {
        Scale {
            params: Params::new(&SPEC, sample_rate),
        }
    }
}

impl Module for Scale {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let x = input(inputs, 0);
        if self.params[SCALE].is_settled() && self.params[OFFSET].is_settled() {
            let (s, o) = (self.params[SCALE].current(), self.params[OFFSET].current());
            for (y, &x) in out.iter_mut().zip(x) {
                *y = sanitize(x) * s + o;
            }
        } else {
            for (y, &x) in out.iter_mut().zip(x) {
                *y = sanitize(x) * self.params[SCALE].next() + self.params[OFFSET].next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{render, SR};

    #[test]
    fn maps_an_lfo_range() {
        let mut s = Scale::new(SR);
        s.set_param(SCALE, 500.0);
        s.set_param(OFFSET, 1000.0);
        s.reset();
        let out = render(&mut s, &[vec![-1.0, 0.0, 1.0, 0.5]], 1).remove(0);
        assert_eq!(out, vec![500.0, 1000.0, 1500.0, 1250.0]);
    }
}
