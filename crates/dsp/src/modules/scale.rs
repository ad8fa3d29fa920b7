//! `scale`: `out = in * scale + offset`, the affine map between signal ranges.
//!
//! Turns a bipolar LFO (-1..1) into a cutoff sweep (e.g. scale 500, offset 1000 gives
//! 500..1500), inverts a signal (scale -1), or adds a DC offset. Both parameters glide
//! over 10 ms. The input is held to ±1e9 first, so the result is always finite.

use crate::module::{sane_sample_rate, Module};
use crate::modules::common::{input, sanitize};
use crate::smoother::Smoother;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

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
    scale: Smoother,
    offset: Smoother,
}

impl Scale {
    /// The identity map (scale 1, offset 0).
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        Scale {
            scale: Smoother::with_default_ramp(SPEC.params[SCALE].default, sr),
            offset: Smoother::with_default_ramp(SPEC.params[OFFSET].default, sr),
        }
    }
}

impl Module for Scale {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn set_param(&mut self, index: usize, value: f32) {
        let Some(p) = SPEC.params.get(index) else {
            return;
        };
        match index {
            SCALE => self.scale.set_target(p.clamp(value)),
            OFFSET => self.offset.set_target(p.clamp(value)),
            _ => {}
        }
    }

    fn param(&self, index: usize) -> f32 {
        match index {
            SCALE => self.scale.target(),
            OFFSET => self.offset.target(),
            _ => 0.0,
        }
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let x = input(inputs, 0);
        if self.scale.is_settled() && self.offset.is_settled() {
            let (s, o) = (self.scale.current(), self.offset.current());
            for (y, &x) in out.iter_mut().zip(x) {
                *y = sanitize(x) * s + o;
            }
        } else {
            for (y, &x) in out.iter_mut().zip(x) {
                *y = sanitize(x) * self.scale.next() + self.offset.next();
            }
        }
    }

    fn reset(&mut self) {
        self.scale.settle();
        self.offset.settle();
    }

    fn save_state(&self, w: &mut StateWriter<'_>) {
        self.scale.save_state(w);
        self.offset.save_state(w);
    }

    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.scale.load_state(r)?;
        self.offset.load_state(r)
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
