//! `constant`: outputs a fixed value, for offsets, fixed control voltages and tests.
//!
//! Handy as a CV source (a fixed level into a `vca`, an offset for a frequency input) or
//! to bias a signal. Changes glide over 10 ms, so turning it by hand never clicks.

use crate::module::{sane_sample_rate, Module};
use crate::smoother::Smoother;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

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
    value: Smoother,
}

impl Constant {
    /// A constant 0.
    pub fn new(sample_rate: f32) -> Self {
        Constant {
            value: Smoother::with_default_ramp(
                SPEC.params[VALUE].default,
                sane_sample_rate(sample_rate),
            ),
        }
    }
}

impl Module for Constant {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn set_param(&mut self, index: usize, value: f32) {
        if let (VALUE, Some(p)) = (index, SPEC.params.get(index)) {
            self.value.set_target(p.clamp(value));
        }
    }

    fn param(&self, index: usize) -> f32 {
        if index == VALUE {
            self.value.target()
        } else {
            0.0
        }
    }

    fn process(&mut self, _inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        if self.value.is_settled() {
            out.fill(self.value.current());
        } else {
            for o in out.iter_mut() {
                *o = self.value.next();
            }
        }
    }

    fn reset(&mut self) {
        self.value.settle();
    }

    fn save_state(&self, w: &mut StateWriter<'_>) {
        self.value.save_state(w);
    }

    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.value.load_state(r)
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
