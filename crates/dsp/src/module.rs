//! The [`Module`] trait: the one interface every DSP unit implements.
//!
//! A patch only ever talks to modules through this trait, so adding a module type means
//! writing one file in `modules/` and registering it; the patch, the engine and the
//! protocol pick it up from its [`ModuleSpec`].

use crate::spec::ModuleSpec;
use crate::state::{StateError, StateReader, StateWriter};

/// Largest number of input or output ports a module type may declare.
///
/// The patch builds the per-call port slices in fixed-size stack arrays of this length,
/// which is what keeps `Patch::process` free of allocation.
pub const MAX_PORTS: usize = 8;

/// A DSP unit that renders blocks, holds its own state, and can snapshot it as bytes.
///
/// Implementations must be deterministic (same calls, same bits), must not allocate,
/// lock or panic in [`Module::process`], and keep all state in plain fields so that
/// [`Module::save_state`] can capture it.
pub trait Module: Send {
    /// The static description of this module's type (ports, parameters), so callers can
    /// validate indices and show ranges without knowing the concrete type.
    fn spec(&self) -> &'static ModuleSpec;

    /// Clamps `value` via `ParamSpec::clamp` and sets it as the target; smoothed
    /// parameters glide there (no click). Out-of-range indices are ignored, because the
    /// render thread must never panic on a command.
    fn set_param(&mut self, index: usize, value: f32);

    /// Current target value of a parameter (what was last set, clamped), or 0.0 for an
    /// out-of-range index; lets the protocol answer queries without tracking values itself.
    fn param(&self, index: usize) -> f32;

    /// Opens or closes the gate, for modules whose spec has `has_gate`; others ignore it.
    fn set_gate(&mut self, _on: bool) {}

    /// True while the module is making sound on its own account (an envelope not idle);
    /// summed into the "voices sounding" metric.
    fn is_sounding(&self) -> bool {
        false
    }

    /// Processes one (sub-)block. All input and output slices have the same length
    /// `n` (1..=max_block); unconnected inputs are all-zero slices. Must not allocate,
    /// lock or panic.
    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]);

    /// Returns to the freshly created state while keeping parameter targets (smoothers
    /// settle on them); the patch calls this when the module produced NaN or infinity.
    fn reset(&mut self);

    /// Exact number of bytes [`Module::save_state`] writes, counted by running it through
    /// a [`StateWriter::counter`]; constant for an instance, so the patch counts once, when
    /// it is compiled.
    fn state_len(&self) -> usize {
        let mut counter = StateWriter::counter();
        self.save_state(&mut counter);
        counter.position()
    }

    /// Writes everything that affects future output (phases, filter memories, envelope
    /// stage and level, smoothers, parameter targets, gate) as exactly `state_len()` bytes.
    fn save_state(&self, w: &mut StateWriter<'_>);

    /// Restores what [`Module::save_state`] wrote, so a spare continues bit-identically.
    ///
    /// # Errors
    /// [`StateError::Truncated`] for short input; [`StateError::InvalidValue`] for a
    /// field no valid snapshot holds. The module may be partly loaded after an error;
    /// callers reset it.
    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError>;
}

/// Sample rate modules actually use: the given one if it is finite and positive, else
/// 48 kHz. `Patch::compile` refuses bad rates; this only keeps a module built directly
/// with a bad rate from dividing by zero.
pub fn sane_sample_rate(sample_rate: f32) -> f32 {
    if sample_rate.is_finite() && sample_rate > 0.0 {
        sample_rate
    } else {
        48_000.0
    }
}
