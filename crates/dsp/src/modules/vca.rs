//! `vca`: a voltage-controlled amplifier, `out = in * cv * gain`.
//!
//! The patch's way to let one signal set another's level: an envelope or LFO into `cv`
//! shapes the audio at `in`. `cv` is taken as it comes (negative values invert, so the
//! VCA doubles as a ring modulator for control signals); an unconnected `cv` reads 0,
//! which silences the output, so connect it (or use `gain` for a fixed level). The
//! `gain` parameter glides over 10 ms; `cv` is already a signal and is not smoothed.
//! Both inputs are held to ±1e9 first, so even absurd inputs cannot multiply to infinity.

use crate::params::Params;
use crate::module::Module;
use crate::modules::common::{input, sanitize};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};

/// Index of the `gain` parameter.
pub const GAIN: usize = 0;

/// Static description of the `vca` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "vca",
    doc: "VCA: out = in x cv x gain; an envelope or LFO at cv sets the level of in.",
    inputs: &[PortSpec::audio("in"), PortSpec::control("cv")],
    outputs: &[PortSpec::audio("out")],
    params: &[ParamSpec::linear("gain", 0.0..=2.0, 1.0)
        .doc("Fixed factor on top of cv (glides over 10 ms).")],
    has_gate: false,
};

/// VCA state: the smoothed gain.
#[derive(Debug, Clone)]
pub struct Vca {
    params: Params,
}

impl Vca {
    /// A VCA at unity gain.
    pub fn new(sample_rate: f32) -> Self {
        Vca {
            params: Params::new(&SPEC, sample_rate),
        }
    }
}

impl Module for Vca {
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
        let (x, cv) = (input(inputs, 0), input(inputs, 1));
        if self.params[GAIN].is_settled() {
            let g = self.params[GAIN].current();
            for ((o, &x), &cv) in out.iter_mut().zip(x).zip(cv) {
                *o = sanitize(x) * sanitize(cv) * g;
            }
        } else {
            for ((o, &x), &cv) in out.iter_mut().zip(x).zip(cv) {
                *o = sanitize(x) * sanitize(cv) * self.params[GAIN].next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{render, SR};

    #[test]
    fn multiplies_in_by_cv_and_gain() {
        let mut v = Vca::new(SR);
        v.set_param(GAIN, 2.0);
        v.reset();
        let out = render(&mut v, &[vec![0.5, -0.5, 1.0], vec![1.0, 0.5, -0.25]], 1);
        assert_eq!(out[0], vec![1.0, -0.5, -0.5]);
        // No cv, no sound.
        let out = render(&mut v, &[vec![1.0; 4], vec![0.0; 4]], 1);
        assert!(out[0].iter().all(|&y| y == 0.0));
    }

    #[test]
    fn gain_changes_glide() {
        let mut v = Vca::new(SR);
        v.set_param(GAIN, 0.0);
        let out = render(&mut v, &[vec![1.0; 600], vec![1.0; 600]], 1).remove(0);
        assert!(out
            .windows(2)
            .all(|w| (w[1] - w[0]).abs() <= 1.0 / 480.0 + 1e-6));
        assert_eq!(out[599], 0.0);
    }
}
