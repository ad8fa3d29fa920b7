//! The [`Module`] trait: the one interface every DSP unit implements.
//!
//! A patch only ever talks to modules through this trait, so adding a module type means
//! writing one file in `modules/` and registering it; the patch, the engine and the
//! protocol pick it up from its [`ModuleSpec`]. Parameter plumbing and snapshot sizing
//! are provided here and by [`Params`], once for every type.

pub use crate::params::sane_sample_rate;
use crate::params::Params;
use crate::spec::ModuleSpec;
use crate::state::{StateError, StateReader, StateWriter};

/// Largest number of input or output ports a module type may declare.
///
/// The patch builds the per-call port slices in fixed-size stack arrays of this length,
/// which is what keeps `Patch::process` free of allocation.
pub const MAX_PORTS: usize = 8;

/// Voices of an instrument rendered side by side where their module type can (see
/// [`Module::side_by_side`]): four f64 lanes are two SSE2 vectors per operation (four
/// f32 lanes one), and four independent feedback chains keep the pipeline busy where
/// one voice alone waits on its own latency.
pub const VOICE_LANES: usize = 4;

/// A module type's kernel that renders [`VOICE_LANES`] instances (one per voice of an
/// instrument) side by side: the type's own block loop with every value an array over
/// the lanes, the same operations in the same order per lane, so each lane gives the
/// bits its module gives alone. For types with one input and one output whose block
/// loop is a feedback chain (filters), where one voice alone waits on latency.
///
/// The instrument [`VoiceLanes::load`]s each voice's instance, [`VoiceLanes::run`]s the
/// block from each voice's input buffer into its output buffer and
/// [`VoiceLanes::store`]s each instance back.
pub trait VoiceLanes: Default {
    /// The module type.
    type Module: Module + 'static;
    /// True if `m` renders its next block on the path the kernel reproduces (its
    /// parameters at rest); otherwise the voices render one by one.
    fn ready(m: &Self::Module) -> bool;
    /// Takes `m`'s constants and state into lane `lane` (ignored past the last lane).
    fn load(&mut self, lane: usize, m: &Self::Module);
    /// Writes lane `lane`'s state back into `m`, the instance loaded there.
    fn store(&self, lane: usize, m: &mut Self::Module);
    /// Renders lane `l`'s input `x[l]` into its output `y[l]`, as far as all reach.
    fn run(&mut self, x: [&[f32]; VOICE_LANES], y: [&mut [f32]; VOICE_LANES]);
}

/// The frames of [`VOICE_LANES`] voices' input blocks `x` and output blocks `y`, as far
/// as all of them reach: frame by frame, each lane's input sample and its output place.
///
/// What a [`VoiceLanes::run`] iterates: zipped slice iterators, so the compiler sees
/// every access in bounds and the kernel's loop carries no per-sample bounds check
/// (indexing four blocks by frame checked each lane of each sample).
#[inline(always)]
pub fn lane_frames<'a>(
    x: [&'a [f32]; VOICE_LANES],
    y: [&'a mut [f32]; VOICE_LANES],
) -> impl Iterator<Item = ([f32; VOICE_LANES], [&'a mut f32; VOICE_LANES])> + 'a {
    // Four lanes spelled out: a change of VOICE_LANES is a compile error here.
    let [x0, x1, x2, x3] = x;
    let [y0, y1, y2, y3] = y;
    let inputs = x0.iter().zip(x1).zip(x2).zip(x3);
    let outputs = y0
        .iter_mut()
        .zip(y1.iter_mut())
        .zip(y2.iter_mut())
        .zip(y3.iter_mut());
    inputs
        .zip(outputs)
        .map(|((((a, b), c), d), (((p, q), r), s))| ([*a, *b, *c, *d], [p, q, r, s]))
}

/// A DSP unit that renders blocks, holds its own state, and can snapshot it as bytes.
///
/// A module type writes only what is its own: [`Module::process`], its [`Params`]
/// (through `params` and `params_mut`), and, where it has them, a reaction to parameter
/// changes, a gate, and signal state to clear, save and load. The rest of the interface
/// the patch calls (`spec`, `set_param`, `param`, `reset`, `state_len`, `save_state`,
/// `load_state`) is provided from those, the same for every type; do not override it.
///
/// Implementations must be deterministic (same calls, same bits), must not allocate,
/// lock or panic in [`Module::process`], and keep all state in plain fields so that
/// [`Module::save_state`] can capture it.
pub trait Module: Send {
    /// The module's parameters: its type's spec and the current values.
    fn params(&self) -> &Params;

    /// The parameters, for the provided methods that change them.
    fn params_mut(&mut self) -> &mut Params;

    /// Processes one (sub-)block. All input and output slices have the same length
    /// `n` (1..=max_block); unconnected inputs are all-zero slices. Must not allocate,
    /// lock or panic.
    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]);

    /// Parameter `index` has just taken a new value (clamped, in [`Module::params`]):
    /// recompute what depends on it (coefficients, a glide of a derived value). Most
    /// modules read their parameters per block and need nothing here.
    fn param_changed(&mut self, _index: usize) {}

    /// Sizes the memory the fixed parameters ask for (a delay's line for its `max_time`;
    /// see [`ParamSpec::live`](crate::spec::ParamSpec::live)). The patch compiler calls
    /// it once, after setting the patch's values and before [`Module::reset`]: it may
    /// allocate, so nothing on the render path calls it. Most modules size nothing.
    fn allocate_for_params(&mut self) {}

    /// Opens or closes the gate, for modules whose spec has `has_gate`; others ignore it.
    fn set_gate(&mut self, _on: bool) {}

    /// True if every output is finite by construction, whatever the inputs and state
    /// (clamped parameters and bounded arithmetic only): the patch then skips the NaN
    /// guard's scan of its outputs. False, the default, for everything else; a module
    /// that says true wrongly lets a NaN through, so say it only when it is proved.
    fn always_finite(&self) -> bool {
        false
    }

    /// Told once, when the patch is compiled, which of its outputs some module reads
    /// (bit `i`: output `i`; the patch's output counts as a reader). A module whose
    /// outputs are computed independently may leave the unread ones unwritten (work
    /// nobody would hear); the default writes them all. Not state: every compile tells
    /// its own modules.
    fn outputs_read(&mut self, _read: u8) {}

    /// True while the module is making sound on its own account (an envelope not idle);
    /// summed into the "voices sounding" metric. Only asked of types with a gate
    /// ([`ModuleSpec::has_gate`]): what sounds on its own is started by one.
    fn is_sounding(&self) -> bool {
        false
    }

    /// This module as [`std::any::Any`], for the types that have a [`VoiceLanes`] kernel
    /// (the instrument downcasts it to the concrete type and runs the kernel); `None`,
    /// the default, for the others, which render voice by voice.
    fn side_by_side(&mut self) -> Option<&mut dyn std::any::Any> {
        None
    }

    /// Returns the signal state (phases, filter memories, buffers, envelope stage) to
    /// the freshly created one; [`Module::reset`] calls it after settling the parameters,
    /// so coefficients can be recomputed from their targets.
    fn clear(&mut self) {}

    /// Writes the signal state: everything but the parameters that affects future
    /// output (the parameters are saved before it).
    fn save_dsp(&self, _w: &mut StateWriter<'_>) {}

    /// Reads what [`Module::save_dsp`] wrote; the parameters are loaded already, so
    /// values derived from them can be recomputed.
    ///
    /// # Errors
    /// [`StateError::Truncated`] for short input; [`StateError::InvalidValue`] for a
    /// field no valid snapshot holds.
    fn load_dsp(&mut self, _r: &mut StateReader<'_>) -> Result<(), StateError> {
        Ok(())
    }

    /// The static description of this module's type (ports, parameters), so callers can
    /// validate indices and show ranges without knowing the concrete type.
    fn spec(&self) -> &'static ModuleSpec {
        self.params().spec()
    }

    /// Clamps `value` via `ParamSpec::clamp` and sets it as the target; smoothed
    /// parameters glide there (no click). Out-of-range indices are ignored, because the
    /// render thread must never panic on a command.
    fn set_param(&mut self, index: usize, value: f32) {
        if self.params_mut().set(index, value) {
            self.param_changed(index);
        }
    }

    /// Current target value of a parameter (what was last set, clamped), or 0.0 for an
    /// out-of-range index; lets the protocol answer queries without tracking values itself.
    fn param(&self, index: usize) -> f32 {
        self.params().get(index)
    }

    /// Returns to the freshly created state while keeping parameter targets (smoothers
    /// settle on them); the patch calls this when the module produced NaN or infinity.
    fn reset(&mut self) {
        self.params_mut().settle();
        self.clear();
    }

    /// Exact number of bytes [`Module::save_state`] writes, counted by running it through
    /// a [`StateWriter::counter`]; constant for an instance, so the patch counts once, when
    /// it is compiled.
    fn state_len(&self) -> usize {
        let mut counter = StateWriter::counter();
        self.save_state(&mut counter);
        counter.position()
    }

    /// Writes everything that affects future output (parameters with their glides, then
    /// phases, filter memories, envelope stage and level, gate) as exactly `state_len()`
    /// bytes.
    fn save_state(&self, w: &mut StateWriter<'_>) {
        self.params().save(w);
        self.save_dsp(w);
    }

    /// Restores what [`Module::save_state`] wrote, so a spare continues bit-identically.
    ///
    /// # Errors
    /// [`StateError::Truncated`] for short input; [`StateError::InvalidValue`] for a
    /// field no valid snapshot holds. The module may be partly loaded after an error;
    /// callers reset it.
    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.params_mut().load(r)?;
        self.load_dsp(r)
    }
}
