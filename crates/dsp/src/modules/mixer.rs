//! `mixer`: sums up to eight inputs, each with its own smoothed level.
//!
//! The one way a patch adds signals (voices, layers, dry and wet); more than eight inputs
//! are mixed by feeding mixers into a mixer. While no level glides, the sum is one tight
//! loop per input that the compiler vectorises; a gliding level takes the per-sample path
//! for that block only.

use crate::params::Params;
use crate::module::Module;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};

/// Number of inputs (and of level parameters) of a mixer.
pub const INPUTS: usize = 8;

const fn level(name: &'static str) -> ParamSpec {
    ParamSpec::linear(name, 0.0..=1.0, 1.0)
        .doc("Level of the input with the same number (glides over 10 ms).")
}

/// Static description of the `mixer` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "mixer",
    doc: "Mixer: the sum of in1..in8, each scaled by its level; chain mixers for more inputs.",
    inputs: &[
        PortSpec::audio("in1"),
        PortSpec::audio("in2"),
        PortSpec::audio("in3"),
        PortSpec::audio("in4"),
        PortSpec::audio("in5"),
        PortSpec::audio("in6"),
        PortSpec::audio("in7"),
        PortSpec::audio("in8"),
    ],
    outputs: &[PortSpec::audio("out")],
    params: &[
        level("level1"),
        level("level2"),
        level("level3"),
        level("level4"),
        level("level5"),
        level("level6"),
        level("level7"),
        level("level8"),
    ],
    has_gate: false,
};

/// Mixer state: one level smoother per input.
#[derive(Debug, Clone)]
pub struct Mixer {
    params: Params,
}

impl Mixer {
    /// A mixer with every level at its default (unity).
    pub fn new(sample_rate: f32) -> Self {
        Mixer {
            params: Params::new(&SPEC, sample_rate),
        }
    }
}

impl Module for Mixer {
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
        out.fill(0.0);
        for (i, input) in inputs.iter().enumerate().take(INPUTS) {
            let level = &mut self.params[i];
            if level.is_settled() {
                let g = level.current();
                if g == 0.0 {
                    continue;
                }
                for (o, &x) in out.iter_mut().zip(input.iter()) {
                    *o += x * g;
                }
            } else {
                for (o, &x) in out.iter_mut().zip(input.iter()) {
                    *o += x * level.next();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_scaled_inputs() {
        let mut m = Mixer::new(48_000.0);
        m.set_param(1, 0.5);
        m.reset();
        let (a, b, c) = ([1.0f32, 2.0], [4.0f32, -2.0], [0.25f32, 0.25]);
        let mut out = [9.0f32; 2];
        m.process(&[&a, &b, &c], &mut [&mut out]);
        assert_eq!(out, [3.25, 1.25]);
    }

    #[test]
    fn level_change_glides_and_arrives() {
        let mut m = Mixer::new(48_000.0);
        m.set_param(0, 0.0);
        assert_eq!(m.param(0), 0.0);
        let ones = [1.0f32; 600];
        let mut out = [0.0f32; 600];
        m.process(&[&ones], &mut [&mut out]);
        let max_step = out
            .windows(2)
            .fold(0.0f32, |acc, w| acc.max((w[1] - w[0]).abs()));
        assert!(max_step <= 1.0 / 480.0 + 1e-6, "{max_step}");
        assert!(out[479..].iter().all(|&x| x == 0.0));
    }
}
