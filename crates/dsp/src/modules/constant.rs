//! `constant`: outputs a fixed value, for offsets, fixed control voltages and tests.
//!
//! Handy as a CV source (a fixed level into a `vca`, an offset for a frequency input) or
//! to bias a signal. Changes glide over 10 ms, so turning it by hand never clicks.

use crate::params::Params;
use crate::module::Module;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};

/// Index of the `value` parameter.
pub const VALUE: usize = 0;

/// Static description of the `constant` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "constant",
    doc: "Constant: outputs `value` on every sample (a fixed CV or offset).",
    inputs: &[],
    outputs: &[PortSpec::control("out")],
    params: &[ParamSpec::number("value", -1_000.0..=1_000.0, 0.0)
        .doc("The value output (glides over 10 ms).")],
    has_gate: false,
};

/// Constant state: the smoothed value.
#[derive(Debug, Clone)]
pub struct Constant {
    params: Params,
}

impl Constant {
    /// A constant 0.
    pub fn new(sample_rate: f32) -> Self {
        Constant {
            params: Params::new(&SPEC, sample_rate),
        }
    }
}

impl Module for Constant {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn process(&mut self, _inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        if self.params[VALUE].is_settled() {
            out.fill(self.params[VALUE].current());
        } else {
            for o in out.iter_mut() {
                *o = self.params[VALUE].next();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{render, SR};

    #[test]
    fn outputs_the_value_and_glides_to_a_new_one() {
        let mut c = Constant::new(SR);
        c.set_param(VALUE, 440.0);
        c.reset();
        let out = render(&mut c, &[], 1);
        assert!(out[0].is_empty());
        let mut buf = [0.0f32; 8];
        c.process(&[], &mut [&mut buf]);
        assert_eq!(buf, [440.0; 8]);
        c.set_param(VALUE, 0.0);
        let mut glide = [0.0f32; 480];
        c.process(&[], &mut [&mut glide]);
        assert!(glide[0] < 440.0 && glide[0] > 438.0);
        assert_eq!(glide[479], 0.0);
    }
}
