//! `output`: the patch's stereo sink.
//!
//! It passes `left` and `right` through unchanged, so what reaches its inputs is the
//! rendered stereo block. Because it is a pure pass-through, the patch does not run it
//! while rendering: `Patch::process` copies the output's sources straight into the
//! caller's buffers (one copy per channel instead of two), and only runs this module when
//! another module reads its outputs. A mono chain connected only to `left` plays on both
//! channels: the patch (which knows connectivity) feeds `right` from `left`'s source.

use crate::module::Module;
use crate::spec::{ModuleSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

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
#[derive(Debug, Clone, Default)]
pub struct Output;

impl Output {
    /// The (only) output sink state.
    pub fn new() -> Self {
        Output
    }
}

impl Module for Output {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn set_param(&mut self, _index: usize, _value: f32) {}

    fn param(&self, _index: usize) -> f32 {
        0.0
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        for (out, input) in outputs.iter_mut().zip(inputs) {
            for (o, &x) in out.iter_mut().zip(input.iter()) {
                *o = x;
            }
        }
    }

    fn reset(&mut self) {}

    fn save_state(&self, _w: &mut StateWriter<'_>) {}

    fn load_state(&mut self, _r: &mut StateReader<'_>) -> Result<(), StateError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_through() {
        let mut o = Output::new();
        let (l, r) = ([0.1f32, 0.2], [0.3f32, 0.4]);
        let (mut ol, mut or) = ([0.0f32; 2], [0.0f32; 2]);
        o.process(&[&l, &r], &mut [&mut ol, &mut or]);
        assert_eq!((ol, or), (l, r));
        assert_eq!(o.state_len(), 0);
    }
}
