//! `ringmod`: ring modulation, `out = a * b`.
//!
//! Multiplying two signals gives their sum and difference frequencies (the metallic,
//! bell-like ring modulator sound); with a control signal at `b` it is a bipolar VCA.
//! Stateless: nothing to smooth, nothing in the snapshot. Inputs are held to ±1e9 first,
//! so even absurd inputs cannot multiply to infinity.

use crate::params::Params;
use crate::module::Module;
use crate::modules::common::{input, sanitize};
use crate::spec::{ModuleSpec, PortSpec};

/// Static description of the `ringmod` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "ringmod",
    doc: "Ring modulator: out = a x b (sum and difference frequencies).",
    inputs: &[PortSpec::audio("a"), PortSpec::audio("b")],
    outputs: &[PortSpec::audio("out")],
    params: &[],
    has_gate: false,
};

/// The ring modulator (no state).
#[derive(Debug, Clone)]
pub struct RingMod {
    params: Params,
}

impl RingMod {
    /// A ring modulator.
    pub fn new(sample_rate: f32) -> Self {
        RingMod {
            params: Params::new(&SPEC, sample_rate),
        }
    }
}

impl Module for RingMod {
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
        for ((o, &a), &b) in out.iter_mut().zip(input(inputs, 0)).zip(input(inputs, 1)) {
            *o = sanitize(a) * sanitize(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{bin, render, sine};

    #[test]
    fn product_has_sum_and_difference_frequencies() {
        let (a, b) = (sine(1000.0, 1.0, 48_000), sine(300.0, 1.0, 48_000));
        let out = render(&mut RingMod::new(48_000.0), &[a, b], 1).remove(0);
        assert!((bin(&out, 700.0) - 0.5).abs() < 1e-3);
        assert!((bin(&out, 1300.0) - 0.5).abs() < 1e-3);
        assert!(bin(&out, 1000.0) < 1e-3 && bin(&out, 300.0) < 1e-3);
    }
}
