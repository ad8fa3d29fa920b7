//! `output`: the patch's stereo sink.
//!
//! It passes `left` and `right` through unchanged, so what reaches its inputs is the
//! rendered stereo block. Because it is a pure pass-through, the patch does not run it
//! while rendering: `Patch::process` copies the output's sources straight into the
//! caller's buffers (one copy per channel instead of two), and only runs this module when
//! another module reads its outputs. A mono chain connected only to `left` plays on both
//! channels: the patch (which knows connectivity) feeds `right` from `left`'s source.

use crate::params::Params;
use crate::module::Module;
use crate::spec::{ModuleSpec, PortSpec};

/// Static description of the `output` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "output",
    doc: "Stereo output: what reaches it is what the server plays. Exactly one per patch.",
    inputs: &[PortSpec::audio("left"), PortSpec::audio("right")],
    outputs: &[PortSpec::audio("left"), PortSpec::audio("right")],
    params: &[],
    has_gate: false,
};

/// The output sink; stateless.
#[derive(Debug, Clone)]
pub struct Output {
    params: Params,
}

impl Output {
    /// The (only) output sink state.
    pub fn new(sample_rate: f32) -> Self {
        Output {
            params: Params::new(&SPEC, sample_rate),
        }
    }
}

impl Module for Output {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        for (out, input) in outputs.iter_mut().zip(inputs) {
            for (o, &x) in out.iter_mut().zip(input.iter()) {
                *o = x;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_through() {
        let mut o = Output::new(48_000.0);
        let (l, r) = ([0.1f32, 0.2], [0.3f32, 0.4]);
        let (mut ol, mut or) = ([0.0f32; 2], [0.0f32; 2]);
        o.process(&[&l, &r], &mut [&mut ol, &mut or]);
        assert_eq!((ol, or), (l, r));
        assert_eq!(o.state_len(), 0);
    }
}
