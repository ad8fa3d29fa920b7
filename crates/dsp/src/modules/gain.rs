//! `gain`: a smoothed amplifier (VCA with a fixed level).
//!
//! The last stage before the output in the default chain, so its level changes must glide:
//! the gain is a [`Smoother`] ramp, never a step.

use crate::params::Params;
use crate::module::Module;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};

/// Index of the `gain` parameter.
pub const GAIN: usize = 0;

/// Static description of the `gain` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "gain",
    doc: "Gain: scales its input, gliding on changes so volume moves never click.",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::linear("gain", 0.0..=1.0, 0.8).doc("Linear gain factor (glides over 10 ms).")
    ],
    has_gate: false,
};

/// Gain state: just the smoothed factor.
#[derive(Debug, Clone)]
pub struct Gain {
    params: Params,
}

impl Gain {
    /// A gain at the default factor.
    pub fn new(sample_rate: f32) -> Self {
        Gain {
            params: Params::new(&SPEC, sample_rate),
        }
    }
}

impl Module for Gain {
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
        let input: &[f32] = inputs.first().copied().unwrap_or(&[]);
        if self.params[GAIN].is_settled() {
            let g = self.params[GAIN].current();
            for (o, &x) in out.iter_mut().zip(input) {
                *o = x * g;
            }
        } else {
            for (o, &x) in out.iter_mut().zip(input) {
                *o = x * self.params[GAIN].next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_input() {
        let mut g = Gain::new(48_000.0);
        let input = [1.0f32, -0.5, 0.25];
        let mut out = [0.0f32; 3];
        g.process(&[&input], &mut [&mut out]);
        assert_eq!(out, [0.8, -0.4, 0.2]);
    }

    #[test]
    fn jump_glides_linearly_and_arrives() {
        let mut g = Gain::new(48_000.0);
        g.set_param(GAIN, 0.0);
        assert_eq!(g.param(GAIN), 0.0);
        let input = [1.0f32; 600];
        let mut out = [0.0f32; 600];
        g.process(&[&input], &mut [&mut out]);
        let max_step = out
            .windows(2)
            .fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()));
        assert!(max_step <= 0.8 / 480.0 + 1e-6, "{max_step}");
        assert_eq!(out[479], 0.0);
        assert!(out[478] > 0.0);
        assert!(out[479..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn clamps_and_ignores_bad_index() {
        let mut g = Gain::new(48_000.0);
        g.set_param(GAIN, 7.0);
        assert_eq!(g.param(GAIN), 1.0);
        g.set_param(3, 0.1);
        assert_eq!(g.param(3), 0.0);
        assert_eq!(g.param(GAIN), 1.0);
    }
}
