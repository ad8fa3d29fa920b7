//! The engine: one compiled patch plus the commands waiting for their frame.
//!
//! [`Engine::render_block`] renders block after block. Commands arrive stamped with the
//! absolute frame at which they take effect; the engine splits a block at those frames,
//! so a command lands on exactly the same sample in every process, whatever the block
//! boundaries of the process that received it. Ramps glide parameters inside the engine,
//! and a new patch replaces the running one at its stamped frame with a short crossfade.
//! Everything that shapes future output is in the engine's snapshot (the patch text
//! included), so a fresh worker restored from it continues bit-identically.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use chronus_dsp::{
    ClockDesc, Patch, PatchDesc, PatchError, Smoother, StateError, StateReader, StateWriter,
    TrackDesc,
};
use chronus_ipc::CommandRecord;

use crate::arpeggiator::Arpeggiators;
use crate::command::{Command, Instruction, PatchChunk, StampedCommand, SwitchAt};
use crate::master::{Master, MasterConfig};
use crate::sequencer::Sequencer;

/// How many stamped commands the stamping side lets wait for a frame beyond the block being
/// played; it refuses more with `/fail`. Admission is decided there, where every command is
/// seen once, so that both workers always hold the same commands.
pub const MAX_ADMITTED: usize = 4096;
/// Of those, how many may be timed beyond the horizon (bundles), so that far-future
/// bundles cannot crowd out the commands meant to play now.
pub const MAX_ADMITTED_TIMED: usize = 2048;
/// How many stamped commands may wait in one engine: four times [`MAX_ADMITTED`]. The rest
/// is room for a worker rendering behind the block being played (catching up after a join
/// or a restart), which still holds commands the output has passed. Fixed so that
/// receiving never allocates. An engine that would hold more has left the stamping side's
/// accounting: its worker exits rather than drop a command its partner keeps.
pub const MAX_PENDING: usize = 4 * MAX_ADMITTED;
/// How many parameter ramps may run at once.
pub const MAX_RAMPS: usize = 256;
/// Ramps update their parameter every this many frames (the parameter's own smoother
/// glides in between, so the ramp is click-free).
const RAMP_STEP_FRAMES: usize = 32;
/// Length of the crossfade from the old patch to a new one.
const PATCH_CROSSFADE_SECONDS: f64 = 0.02;
/// Largest patch text accepted through the ring.
pub const MAX_PATCH_TEXT: usize = 1 << 20;

/// Frequency of the `/test` tone.
const TEST_TONE_HZ: f64 = 1000.0;
/// Length of the `/test` tone.
const TEST_TONE_SECONDS: f64 = 0.5;
/// Peak level of the `/test` tone.
const TEST_TONE_LEVEL: f32 = 0.25;
/// Fade in/out of the `/test` tone, so it starts and stops without a click.
const TEST_TONE_FADE_SECONDS: f64 = 0.01;
/// Identifies an engine snapshot.
const SNAPSHOT_MAGIC: u64 = u64::from_le_bytes(*b"CHRNENG8");

/// The fixed settings of a stream: the same in every worker of a server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    /// Frames per second.
    pub sample_rate: u32,
    /// Frames per block (what the output asks for at a time).
    pub block_frames: usize,
    /// Seed for everything random in the patch.
    pub seed: u64,
    /// DC blocker and limiter after the patch.
    pub master: MasterConfig,
}

impl EngineConfig {
    /// Settings with the master section on (the default).
    pub fn new(sample_rate: u32, block_frames: usize, seed: u64) -> EngineConfig {
        EngineConfig {
            sample_rate,
            block_frames,
            seed,
            master: MasterConfig::default(),
        }
    }
}

/// Why a stamped command could not be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    /// More than [`MAX_PENDING`] commands wait for future frames.
    #[error("more than {MAX_PENDING} commands are waiting for their frame")]
    Full,
    /// A patch switch whose text is missing, malformed or does not compile.
    #[error("patch {version} cannot be used: {reason}")]
    BadPatch {
        /// The patch version.
        version: u32,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why a snapshot could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a snapshot of this engine (wrong size, truncated or garbled).
    #[error("snapshot does not fit this engine: {0}")]
    State(#[from] StateError),
    /// A field of the engine's own part of the snapshot holds an impossible value.
    #[error("snapshot has an invalid {0}")]
    Invalid(&'static str),
    /// A patch in the snapshot does not compile here.
    #[error("snapshot patch: {0}")]
    Patch(#[from] PatchError),
    /// The snapshot was taken with another stream configuration.
    #[error(
        "snapshot was taken with another configuration (block {found_block}, rate {found_rate})"
    )]
    Config {
        /// Block size recorded in the snapshot.
        found_block: u64,
        /// Sample rate recorded in the snapshot.
        found_rate: u64,
    },
}

/// Counters an engine keeps about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Commands applied to the patch.
    pub applied: u64,
    /// Commands whose frame had already passed when they arrived (applied at once).
    pub late: u64,
    /// Patch switches that could not be used (text missing or not compiling).
    pub bad_patches: u64,
    /// Commands addressed to a patch that was replaced before their frame (dropped: their
    /// module and parameter numbers belong to the old patch).
    pub stale: u64,
}

/// A command waiting in the engine, ordered so that the top of the (max-)heap is the next
/// due: the earliest frame, and at equal frames the first stamped.
#[derive(Debug, Clone, Copy)]
struct Waiting(StampedCommand);

impl Waiting {
    fn key(&self) -> (u64, u64) {
        (self.0.frame, self.0.seq)
    }
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().cmp(&self.key())
    }
}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Waiting {}

/// A parameter glide in progress.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Ramp {
    node: u16,
    param: u16,
    start: f32,
    target: f32,
    total: u64,
    elapsed: u64,
}

/// A patch compiled ahead of its switch frame.
struct StagedPatch {
    version: u32,
    text: String,
    /// What the switch changes: [`SwitchAt::Now`] also for a tracks switch whose patch
    /// sounds different from the one before it (decided when staged, alike everywhere).
    at: SwitchAt,
    /// The compiled patch, how it takes over its namesakes' state, and its instruments'
    /// arpeggiators: a whole switch's only (a tracks switch keeps the running patch and
    /// its arpeggiators).
    whole: Option<(Patch, CarryPlan, Arpeggiators)>,
    /// Its clock and tracks, compiled with it.
    sequencer: Sequencer,
}

/// A tracks switch applied and waiting for its bar line or beat: then `sequencer` (the
/// new patch's clock and tracks) takes over and `text` becomes the running patch's
/// (`None`: the running patch's text is already this switch's, as after a whole switch
/// that carried the edit while it waited; see `Command::SwitchPatch`).
struct TracksSwitch {
    beat: u64,
    text: Option<String>,
    sequencer: Sequencer,
}

/// What the engine is done with (an old patch, an old sequencer, an old patch text),
/// held only to be dropped by the caller outside the render path: dropping frees memory.
pub struct Retired {
    _patch: Option<Patch>,
    _sequencer: Option<Sequencer>,
    _text: Option<String>,
    _arps: Option<Arpeggiators>,
}

/// How a new patch takes over the state of the modules it shares with the running one,
/// prepared when it is compiled so that the switch itself allocates nothing.
struct CarryPlan {
    modules: Vec<CarriedModule>,
    /// Room for the largest module state.
    scratch: Vec<u8>,
}

/// A module of the new patch that may take over the state of a namesake.
struct CarriedModule {
    node: u16,
    id: String,
    type_name: &'static str,
    /// Its own initial parameter values, set after the state is carried over.
    params: Vec<(u16, f32)>,
}

impl CarryPlan {
    /// The plan for switching from `old` (the patch that will be sounding at the switch)
    /// to `patch`; its scratch holds the state of either side of every namesake (a delay
    /// whose `max_time` changed has a line of another length).
    fn for_patch(patch: &Patch, old: &Patch) -> CarryPlan {
        let mut modules = Vec::new();
        let mut largest = 0;
        for node in 0..patch.node_count() as u16 {
            let (Some(id), Some(spec)) = (patch.node_id(node), patch.node_spec(node)) else {
                continue;
            };
            let params = (0..spec.params.len() as u16)
                .filter_map(|p| Some((p, patch.param(node, p)?)))
                .collect();
            largest = largest.max(patch.module_state_len(node).unwrap_or(0));
            if let Some(old_node) = old.node_index(id) {
                largest = largest.max(old.module_state_len(old_node).unwrap_or(0));
            }
            modules.push(CarriedModule {
                node,
                id: id.to_string(),
                type_name: spec.type_name,
                params,
            });
        }
        CarryPlan {
            modules,
            scratch: vec![0; largest],
        }
    }

    /// Copies into `new` the state of every module of `old` with the same id and type,
    /// then sets the new patch's own parameter values (which glide from the old ones).
    fn apply(&mut self, old: &Patch, new: &mut Patch) {
        for CarriedModule {
            node,
            id,
            type_name,
            params,
        } in &self.modules
        {
            let Some(old_node) = old.node_index(id) else {
                continue;
            };
            if old.node_spec(old_node).map(|s| s.type_name) != Some(*type_name) {
                continue;
            }
            let len = old.module_state_len(old_node).unwrap_or(0);
            let Some(buf) = self.scratch.get_mut(..len) else {
                continue;
            };
            let mut w = StateWriter::new(buf);
            old.save_module_state(old_node, &mut w);
            let mut r = StateReader::new(buf);
            if new.load_module_state(*node, &mut r).is_ok() {
                for &(param, value) in params {
                    new.set_param(*node, param, value);
                }
            }
        }
    }
}

/// The previous patch, still sounding while the new one fades in.
struct FadingPatch {
    text: String,
    patch: Patch,
    /// Frames of crossfade left.
    remaining: u32,
}

/// A patch rendering a stream block by block, applying stamped commands on their frame.
pub struct Engine {
    config: EngineConfig,
    patch: Patch,
    /// TOML text of the running patch (what a joining worker compiles).
    patch_text: String,
    /// Texts of patches being received, by version.
    incoming: BTreeMap<u32, Vec<u8>>,
    /// Patches compiled and waiting for their switch frame, in arrival order.
    staged: Vec<StagedPatch>,
    /// A tracks switch waiting for its bar line or beat.
    tracks_switch: Option<TracksSwitch>,
    fading: Option<FadingPatch>,
    /// Patches and sequencers done with, to be dropped outside the render path.
    retired: Vec<Retired>,
    /// The tempo clock and the tracks of the running patch.
    sequencer: Sequencer,
    /// The arpeggiators of the running patch's instruments.
    arps: Arpeggiators,
    /// Block to render next.
    next_block: u64,
    /// Commands waiting for their frame, the next due on top; preallocated for
    /// [`MAX_PENDING`].
    pending: BinaryHeap<Waiting>,
    ramps: Vec<Ramp>,
    /// Highest sequence number received (a joining worker skips ring records at or below it).
    last_seq: u64,
    master_gain: Smoother,
    master: Master,
    /// Frames of test tone still to play (0 = silent).
    test_tone_remaining: u64,
    test_tone_phase: f64,
    counters: EngineCounters,
    /// Most voices each instrument may sound ([`Command::VoiceLimit`]; 0: no limit),
    /// kept here so each patch switched to plays under it too.
    voice_limit: u16,
    left: Vec<f32>,
    right: Vec<f32>,
    fade_left: Vec<f32>,
    fade_right: Vec<f32>,
}

impl Engine {
    /// Compiles `desc` into a fresh engine whose next block is `start_block`.
    ///
    /// # Errors
    /// Any [`PatchError`] from compiling the patch (unknown module, cycle, …).
    pub fn new(
        desc: &PatchDesc,
        config: EngineConfig,
        start_block: u64,
    ) -> Result<Engine, PatchError> {
        let patch = compile(desc, config)?;
        let sequencer = Sequencer::new(desc, &patch, config.sample_rate)?;
        let arps = Arpeggiators::new(desc, &patch, config.seed)?;
        Ok(Engine {
            config,
            sequencer,
            arps,
            patch,
            patch_text: desc.to_toml_string(),
            incoming: BTreeMap::new(),
            staged: Vec::new(),
            tracks_switch: None,
            fading: None,
            retired: Vec::with_capacity(16),
            next_block: start_block,
            pending: BinaryHeap::with_capacity(MAX_PENDING),
            ramps: Vec::with_capacity(MAX_RAMPS),
            last_seq: 0,
            master_gain: Smoother::with_default_ramp(1.0, config.sample_rate as f32),
            master: Master::new(config.master, config.sample_rate),
            test_tone_remaining: 0,
            test_tone_phase: 0.0,
            counters: EngineCounters::default(),
            voice_limit: 0,
            left: vec![0.0; config.block_frames],
            right: vec![0.0; config.block_frames],
            fade_left: vec![0.0; config.block_frames],
            fade_right: vec![0.0; config.block_frames],
        })
    }

    /// The stream settings.
    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// The running patch (for queries such as voices sounding).
    pub fn patch(&self) -> &Patch {
        &self.patch
    }

    /// Fault injection: the next block panics inside a module's `process`.
    pub fn panic_in_next_process(&mut self) {
        self.patch.panic_in_next_process();
    }

    /// TOML text of the running patch.
    pub fn patch_text(&self) -> &str {
        &self.patch_text
    }

    /// The highest patch version this engine holds (staged or still arriving), 1 if none:
    /// a server resuming from it numbers its own patches above.
    pub fn highest_patch_version(&self) -> u32 {
        let staged = self.staged.iter().map(|s| s.version);
        let incoming = self.incoming.keys().copied();
        staged.chain(incoming).max().unwrap_or(1).max(1)
    }

    /// TOML text of the patch the commands after the last one received address: the last
    /// patch switched to, even if its switch is still waiting for its frame (or its
    /// tracks for their bar line).
    pub fn latest_patch_text(&self) -> &str {
        match (self.staged.last(), &self.tracks_switch) {
            (Some(staged), _) => &staged.text,
            (None, Some(tracks)) => tracks.text.as_deref().unwrap_or(&self.patch_text),
            (None, None) => &self.patch_text,
        }
    }

    /// The compiled patch the last switch received leaves sounding.
    fn latest_patch(&self) -> &Patch {
        self.staged
            .iter()
            .rev()
            .find_map(|s| s.whole.as_ref().map(|(patch, _, _)| patch))
            .unwrap_or(&self.patch)
    }

    /// The clock and its tracks (for reports: where the clock is, its tempo).
    pub fn sequencer(&self) -> &Sequencer {
        &self.sequencer
    }

    /// The block [`render_block`](Self::render_block) renders next.
    pub fn next_block(&self) -> u64 {
        self.next_block
    }

    /// Highest sequence number received so far.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Commands queued for a frame not reached yet.
    pub fn commands_waiting(&self) -> usize {
        self.pending.len()
    }

    /// Applied/late/bad-patch/stale counters (carried in snapshots, so a spare
    /// that joins from one continues the active worker's counts).
    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    /// Takes the patches the engine is done with, so the caller drops them outside the
    /// render path (dropping frees memory).
    pub fn take_retired(&mut self) -> Option<Retired> {
        self.retired.pop()
    }

    /// Stores a piece of a patch's text. Allocates (text buffers): not for the render path.
    pub fn receive_chunk(&mut self, chunk: &PatchChunk) {
        self.last_seq = self.last_seq.max(chunk.seq);
        let end = chunk.offset as usize + chunk.len as usize;
        if end > MAX_PATCH_TEXT {
            return;
        }
        let text = self.incoming.entry(chunk.version).or_default();
        if text.len() < end {
            text.resize(end, 0);
        }
        text[chunk.offset as usize..end].copy_from_slice(&chunk.bytes[..chunk.len as usize]);
    }

    /// Queues a stamped command until its frame. Never allocates, except for a patch
    /// switch, whose patch is compiled here, ahead of its frame, so that rendering
    /// never compiles.
    ///
    /// # Errors
    /// [`ReceiveError::Full`] when [`MAX_PENDING`] commands are already waiting (the
    /// stamping side's admission makes it impossible; a worker exits on it);
    /// [`ReceiveError::BadPatch`] for a patch switch that cannot be used (counted, ignored).
    pub fn receive(&mut self, command: StampedCommand) -> Result<(), ReceiveError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(ReceiveError::Full);
        }
        self.last_seq = self.last_seq.max(command.seq);
        if let Command::SwitchPatch { version, len, at } = command.command {
            if let Err(reason) = self.stage_patch(version, len, at) {
                self.counters.bad_patches += 1;
                return Err(ReceiveError::BadPatch { version, reason });
            }
        }
        // Equal frames apply in the order they were stamped (see `Waiting`).
        self.pending.push(Waiting(command));
        Ok(())
    }

    fn stage_patch(&mut self, version: u32, len: u32, at: SwitchAt) -> Result<(), String> {
        let bytes = self
            .incoming
            .remove(&version)
            .ok_or_else(|| "its text never arrived".to_string())?;
        if bytes.len() != len as usize {
            return Err(format!("text is {} bytes, expected {len}", bytes.len()));
        }
        let text = String::from_utf8(bytes).map_err(|_| "text is not UTF-8".to_string())?;
        self.stage_text(version, text, at)
            .map_err(|e| e.to_string())
    }

    /// Compiles a patch switch ahead of its frame: for a tracks switch only its clock and
    /// tracks (against the patch the switches before it leave sounding), if its sound is
    /// that patch's; else the whole patch.
    fn stage_text(&mut self, version: u32, text: String, at: SwitchAt) -> Result<(), PatchError> {
        let desc = PatchDesc::from_toml_str(&text)?;
        let same_sound = || {
            PatchDesc::from_toml_str(self.latest_patch_text())
                .is_ok_and(|latest| latest.same_sound(&desc))
        };
        let at = if at.tracks_only() && same_sound() {
            at
        } else {
            SwitchAt::Now
        };
        let (whole, sequencer) = if at.tracks_only() {
            let latest = match (self.staged.last(), &self.tracks_switch) {
                (Some(staged), _) => &staged.sequencer,
                (None, Some(tracks)) => &tracks.sequencer,
                (None, None) => &self.sequencer,
            };
            let sequencer = Sequencer::new_reusing(
                &desc,
                self.latest_patch(),
                self.config.sample_rate,
                Some(latest),
            )?;
            (None, sequencer)
        } else {
            let patch = compile(&desc, self.config)?;
            let sequencer = Sequencer::new(&desc, &patch, self.config.sample_rate)?;
            let arps = Arpeggiators::new(&desc, &patch, self.config.seed)?;
            let carry = CarryPlan::for_patch(&patch, self.latest_patch());
            (Some((patch, carry, arps)), sequencer)
        };
        self.staged.push(StagedPatch {
            version,
            text,
            at,
            whole,
            sequencer,
        });
        Ok(())
    }

    /// Renders the next block into `out` (interleaved stereo, `2 * block_frames` samples)
    /// and advances. Allocates nothing, locks nothing.
    pub fn render_block(&mut self, out: &mut [f32]) {
        self.render_block_with(out, |_| {});
    }

    /// [`render_block`](Self::render_block), calling `applying(seq)` just before each
    /// command is applied: a worker records it where its supervisor can read it should the
    /// command kill the process.
    pub fn render_block_with(&mut self, out: &mut [f32], mut applying: impl FnMut(u64)) {
        let frames = self.config.block_frames;
        let block_start = self.next_block * frames as u64;
        let block_end = block_start + frames as u64;
        let mut cursor = 0usize;
        while cursor < frames {
            // Apply every command due at or before this frame.
            let now = block_start + cursor as u64;
            while let Some(&Waiting(first)) = self.pending.peek() {
                if first.frame > now {
                    break;
                }
                self.pending.pop();
                if first.frame < block_start {
                    self.counters.late += 1;
                }
                applying(first.seq);
                self.apply(first.command, first.seq, now);
            }
            // A tracks switch landing here plays its tracks' notes due at this frame,
            // instead of the old tracks'.
            self.land_tracks_switch(now);
            // The clock's changes, the tracks' notes and the arpeggios' steps due at
            // this frame.
            let patch = &mut self.patch;
            self.sequencer
                .run_due(now, |instrument, note, velocity, length| {
                    patch.note_on(instrument, note, velocity, 0, length);
                });
            self.arps.run_due(
                now,
                &self.sequencer,
                |instrument, note, velocity, length| {
                    patch.note_on(instrument, note, velocity, 0, length);
                },
            );
            self.advance_ramps();
            // Render up to the next command's frame, the sequencer's next moment, the
            // next ramp step, or the block's end.
            let mut segment_end = match self.pending.peek() {
                Some(Waiting(next)) if next.frame < block_end => {
                    (next.frame - block_start) as usize
                }
                _ => frames,
            };
            let sequenced = self.sequencer.next_frame().min(self.tracks_switch_frame());
            if sequenced < block_end {
                segment_end = segment_end.min(sequenced.saturating_sub(block_start) as usize);
            }
            // Always after `now` once `run_due` ran; checked anyway, so a segment can
            // never end before it starts.
            let arpeggiated = self.arps.next_frame(&self.sequencer);
            if arpeggiated > now && arpeggiated < block_end {
                segment_end = segment_end.min((arpeggiated - block_start) as usize);
            }
            if !self.ramps.is_empty() {
                segment_end = segment_end.min(cursor + RAMP_STEP_FRAMES);
            }
            self.render_segment(cursor, segment_end);
            for ramp in &mut self.ramps {
                ramp.elapsed += (segment_end - cursor) as u64;
            }
            cursor = segment_end;
        }
        self.finish_block(out);
        self.next_block += 1;
    }

    /// Renders frames `from..to` of the block, crossfading from a previous patch if one
    /// is still fading out.
    fn render_segment(&mut self, from: usize, to: usize) {
        let (Some(left), Some(right)) = (self.left.get_mut(from..to), self.right.get_mut(from..to))
        else {
            return;
        };
        self.patch.process(left, right);
        let Some(fading) = self.fading.as_mut() else {
            return;
        };
        let (Some(old_left), Some(old_right)) = (
            self.fade_left.get_mut(from..to),
            self.fade_right.get_mut(from..to),
        ) else {
            return;
        };
        fading.patch.process(old_left, old_right);
        let total = crossfade_frames(self.config.sample_rate) as f32;
        for (((l, r), ol), or) in left
            .iter_mut()
            .zip(right.iter_mut())
            .zip(old_left.iter())
            .zip(old_right.iter())
        {
            let gain_new = 1.0 - fading.remaining as f32 / total;
            *l = *l * gain_new + *ol * (1.0 - gain_new);
            *r = *r * gain_new + *or * (1.0 - gain_new);
            fading.remaining = fading.remaining.saturating_sub(1);
        }
        if fading.remaining == 0 {
            if let Some(done) = self.fading.take() {
                self.retire(done.patch);
            }
        }
    }

    fn retire(&mut self, patch: Patch) {
        // Capacity is reserved; the caller collects after every block.
        self.retired.push(Retired {
            _patch: Some(patch),
            _sequencer: None,
            _text: None,
            _arps: None,
        });
    }

    /// Hands a tracks switch that will not land (a newer one holds its change) to the
    /// caller to drop, outside the render path.
    fn retire_tracks_switch(&mut self, switch: Option<TracksSwitch>) {
        if let Some(TracksSwitch {
            text, sequencer, ..
        }) = switch
        {
            self.retired.push(Retired {
                _patch: None,
                _sequencer: Some(sequencer),
                _text: text,
                _arps: None,
            });
        }
    }

    /// The frame the waiting tracks switch lands on (`u64::MAX`: none waits; 0: at once,
    /// the clock having stopped since).
    fn tracks_switch_frame(&self) -> u64 {
        match &self.tracks_switch {
            Some(switch) => self.sequencer.frame_of_beat(switch.beat).unwrap_or(0),
            None => u64::MAX,
        }
    }

    /// Lands the waiting tracks switch if its frame is `now` or past.
    fn land_tracks_switch(&mut self, now: u64) {
        if self.tracks_switch_frame() > now {
            return;
        }
        if let Some(switch) = self.tracks_switch.take() {
            self.take_over_tracks(switch.text, switch.sequencer, now);
        }
    }

    /// The new patch's clock and tracks take over from the running ones at `now`, in
    /// phase; the sound plays on. `text`: the patch text that goes with them (`None`: the
    /// running one's already).
    fn take_over_tracks(&mut self, text: Option<String>, mut sequencer: Sequencer, now: u64) {
        sequencer.take_over(&self.sequencer, now);
        let old_sequencer = std::mem::replace(&mut self.sequencer, sequencer);
        let old_text = text.map(|text| std::mem::replace(&mut self.patch_text, text));
        self.retired.push(Retired {
            _patch: None,
            _sequencer: Some(old_sequencer),
            _text: old_text,
            _arps: None,
        });
    }

    /// Sets every ramping parameter to its value at the current frame.
    fn advance_ramps(&mut self) {
        let patch = &mut self.patch;
        self.ramps.retain(|ramp| {
            let done = ramp.elapsed >= ramp.total;
            let value = if done {
                ramp.target
            } else {
                let t = ramp.elapsed as f64 / ramp.total as f64;
                (f64::from(ramp.start) + (f64::from(ramp.target) - f64::from(ramp.start)) * t)
                    as f32
            };
            patch.set_param(ramp.node, ramp.param, value);
            !done
        });
    }

    /// Applies master gain, the test tone and the master section, and interleaves into `out`.
    fn finish_block(&mut self, out: &mut [f32]) {
        let sample_rate = f64::from(self.config.sample_rate);
        let tone_len = (TEST_TONE_SECONDS * sample_rate) as u64;
        let fade_len = (TEST_TONE_FADE_SECONDS * sample_rate) as u64;
        let step = TEST_TONE_HZ / sample_rate;
        for ((frame, left), right) in out.chunks_exact_mut(2).zip(&self.left).zip(&self.right) {
            let gain = self.master_gain.next();
            let mut tone = 0.0f32;
            if self.test_tone_remaining > 0 {
                let played = tone_len - self.test_tone_remaining;
                let envelope = played.min(self.test_tone_remaining).min(fade_len) as f32
                    / fade_len.max(1) as f32;
                tone = TEST_TONE_LEVEL
                    * envelope
                    * (self.test_tone_phase * std::f64::consts::TAU).sin() as f32;
                self.test_tone_phase = (self.test_tone_phase + step).fract();
                self.test_tone_remaining -= 1;
            }
            frame[0] = (left + tone) * gain;
            frame[1] = (right + tone) * gain;
            self.master.process_frame(frame);
        }
    }

    fn apply(&mut self, command: Command, seq: u64, now: u64) {
        self.counters.applied += 1;
        match command {
            Command::SetParam { node, param, value } => {
                // A direct set ends any ramp on the same parameter.
                self.ramps.retain(|r| !(r.node == node && r.param == param));
                self.patch.set_param(node, param, value);
            }
            Command::Gate { node, on } => self.patch.set_gate(node, on),
            Command::NoteOn {
                instrument,
                note,
                velocity,
                id,
            } => {
                // An instrument whose arpeggiator is on gives it the key instead.
                if !self
                    .arps
                    .note_on(now, &self.sequencer, instrument, note, velocity, id)
                {
                    self.patch.note_on(instrument, note, velocity, id, 0);
                }
            }
            Command::NoteOff {
                instrument,
                note,
                id,
            } => {
                // The instrument hears it too: a note it sounds itself (pressed before
                // its arpeggiator was turned on) must end.
                self.arps.note_off(instrument, note, id);
                self.patch.note_off(instrument, note, id);
            }
            Command::NotePlay {
                instrument,
                note,
                velocity,
                seconds,
            } => {
                // The note-off is the voice's own countdown: exact to the frame, and in
                // the snapshot with the voice.
                let frames = (f64::from(seconds.max(0.0)) * f64::from(self.config.sample_rate))
                    .round()
                    .max(1.0) as u64;
                self.patch.note_on(instrument, note, velocity, 0, frames);
            }
            Command::NoteExpression {
                instrument,
                target,
                kind,
                value,
            } => self.patch.note_expression(instrument, target, kind, value),
            Command::Sustain { instrument, on } => self.patch.sustain(instrument, on),
            Command::Panic => {
                self.patch.panic_notes();
                self.arps.panic();
            }
            Command::VoiceLimit { voices } => {
                self.voice_limit = voices;
                self.patch.set_voice_limit(voice_limit(voices));
            }
            Command::ClockTempo { bpm } if self.sequencer.running() => {
                // On the next beat: no beat moves, no arpeggio step either.
                self.sequencer.set_tempo(now, f64::from(bpm));
            }
            Command::ClockTempo { bpm } => {
                // A stopped clock changes tempo at once, moving its beats: each arpeggio's
                // next step stays where it was due, the ones after at the new tempo.
                self.arps.keep_steps_through(now, &mut self.sequencer, |s| {
                    s.set_tempo(now, f64::from(bpm));
                });
            }
            Command::ClockSwing { swing } => self.sequencer.set_swing(f64::from(swing)),
            // A track edit waiting for a boundary of the clock lands when the clock stops
            // or starts: the beats it counted towards are gone (a restart counts from
            // bar 1 again).
            Command::ClockRun { .. } if self.tracks_switch.is_some() => {
                if let Some(switch) = self.tracks_switch.take() {
                    self.take_over_tracks(switch.text, switch.sequencer, now);
                }
                self.apply(command, seq, now);
            }
            Command::ClockRun { on: true } => {
                let was = self.sequencer.running();
                self.sequencer.run_clock(now, true);
                if !was {
                    // Bar 1 starts now: the arpeggios fall onto its grid.
                    self.arps.clock_started(now, &self.sequencer);
                }
            }
            Command::ClockRun { on: false } => {
                // The arpeggios go on in rhythm, at the tempo the clock stopped with.
                self.arps
                    .keep_steps_through(now, &mut self.sequencer, |s| s.run_clock(now, false));
            }
            Command::Arp {
                instrument,
                setting,
            } => self
                .arps
                .set(now, &self.sequencer, &mut self.patch, instrument, setting),
            Command::TrackRun { track, on } => self.sequencer.run_track(now, track, on),
            Command::EngineGain(gain) => self.master_gain.set_target(gain.clamp(0.0, 1.0)),
            Command::DebugPoison => {
                // Fault injection, asked for explicitly by a server started with it enabled.
                std::process::abort();
            }
            Command::TestTone => {
                self.test_tone_remaining =
                    (TEST_TONE_SECONDS * f64::from(self.config.sample_rate)) as u64;
                self.test_tone_phase = 0.0;
            }
            Command::Ramp {
                node,
                param,
                target,
                seconds,
            } => {
                let Some(start) = self.patch.param(node, param) else {
                    return;
                };
                self.ramps.retain(|r| !(r.node == node && r.param == param));
                if self.ramps.len() < MAX_RAMPS {
                    let total = (f64::from(seconds.max(0.0)) * f64::from(self.config.sample_rate))
                        .round() as u64;
                    self.ramps.push(Ramp {
                        node,
                        param,
                        start,
                        target,
                        total,
                        elapsed: 0,
                    });
                }
            }
            Command::SwitchPatch { version, .. } => {
                let Some(index) = self.staged.iter().position(|s| s.version == version) else {
                    return;
                };
                let StagedPatch {
                    text,
                    at,
                    whole,
                    mut sequencer,
                    ..
                } = self.staged.remove(index);
                // A tracks switch still waiting is replaced: the newer text holds its
                // change too (each is the whole patch as edited so far). So the newer one
                // lands on the later of the two boundaries: an edit asked on the beat
                // after one asked on the bar line waits for that bar line with it, and
                // nothing lands before its time (mid-bar, mid-note).
                let older = self.tracks_switch.take();
                let older_beat = older.as_ref().map(|older| older.beat);
                let Some((mut patch, mut carry, mut arps)) = whole else {
                    self.retire_tracks_switch(older);
                    let on_beat = at == SwitchAt::TracksAtBeat;
                    let boundary = self.sequencer.boundary_beat(now, on_beat);
                    match boundary.map(|beat| older_beat.map_or(beat, |older| older.max(beat))) {
                        Some(beat) => {
                            self.tracks_switch = Some(TracksSwitch {
                                beat,
                                text: Some(text),
                                sequencer,
                            })
                        }
                        None => self.take_over_tracks(Some(text), sequencer, now),
                    }
                    return;
                };
                // A whole switch whose tracks are those of an edit still waiting (a
                // commit of the sound while a track edit waits for its bar line) changes
                // the sound now and leaves the edit to land on its boundary: the tracks
                // playing play on, if the new patch's instruments are where they were
                // (their nodes are what the tracks play). Else (a patch with tracks of
                // its own, as a library load) everything switches now.
                let carries_edit = older.as_ref().is_some_and(|older| {
                    older.sequencer.same_tracks(&sequencer)
                        && self.patch.instruments().eq(patch.instruments())
                });
                // Commands stamped before the switch but due after it were addressed to
                // the old patch's modules: drop them rather than apply them to the wrong ones.
                // (A tracks switch keeps every module where it was.)
                let before = self.pending.len();
                self.pending.retain(|p| p.0.seq > seq);
                self.counters.stale += (before - self.pending.len()) as u64;
                carry.apply(&self.patch, &mut patch);
                self.retire_tracks_switch(older);
                let old_sequencer = if carries_edit {
                    arps.take_over(&self.arps, now, &self.sequencer);
                    self.tracks_switch = older_beat.map(|beat| TracksSwitch {
                        beat,
                        text: None,
                        sequencer,
                    });
                    None
                } else {
                    sequencer.take_over(&self.sequencer, now);
                    arps.take_over(&self.arps, now, &sequencer);
                    Some(std::mem::replace(&mut self.sequencer, sequencer))
                };
                let old_arps = std::mem::replace(&mut self.arps, arps);
                self.retired.push(Retired {
                    _patch: None,
                    _sequencer: old_sequencer,
                    _text: None,
                    _arps: Some(old_arps),
                });
                patch.set_voice_limit(voice_limit(self.voice_limit));
                let old_patch = std::mem::replace(&mut self.patch, patch);
                let old_text = std::mem::replace(&mut self.patch_text, text);
                if let Some(previous) = self.fading.take() {
                    self.retire(previous.patch);
                }
                self.fading = Some(FadingPatch {
                    text: old_text,
                    patch: old_patch,
                    remaining: crossfade_frames(self.config.sample_rate),
                });
                // Ramps addressed the old patch's modules.
                self.ramps.clear();
            }
        }
    }

    /// Exact size of a snapshot of this engine right now, in bytes.
    pub fn snapshot_len(&self) -> usize {
        let mut counter = StateWriter::counter();
        self.write_snapshot(&mut counter);
        counter.position()
    }

    /// Writes the engine state at the current block boundary into `buf` (at least
    /// [`snapshot_len`](Self::snapshot_len) bytes) and returns the bytes written, or 0 if
    /// `buf` is too small. Allocates nothing.
    pub fn save_snapshot(&self, buf: &mut [u8]) -> usize {
        let len = self.snapshot_len();
        let Some(target) = buf.get_mut(..len) else {
            return 0;
        };
        let mut w = StateWriter::new(target);
        self.write_snapshot(&mut w);
        w.finish().unwrap_or(0)
    }

    fn write_snapshot(&self, w: &mut impl SnapshotSink) {
        w.u64(SNAPSHOT_MAGIC);
        w.u64(self.config.block_frames as u64);
        w.u64(u64::from(self.config.sample_rate));
        w.u64(self.config.seed);
        w.u64(
            u64::from(self.config.master.dc_blocker) | u64::from(self.config.master.limiter) << 1,
        );
        w.text(&self.patch_text);
        w.u64(self.incoming.len() as u64);
        for (version, bytes) in &self.incoming {
            w.u64(u64::from(*version));
            w.bytes(bytes);
        }
        match &self.tracks_switch {
            Some(switch) => {
                w.u64(1);
                w.u64(switch.beat);
                w.text(switch.text.as_deref().unwrap_or(&self.patch_text));
            }
            None => w.u64(0),
        }
        w.u64(self.staged.len() as u64);
        for staged in &self.staged {
            w.u64(u64::from(staged.version));
            w.u64(staged.at.code());
            w.text(&staged.text);
        }
        match &self.fading {
            Some(fading) => {
                w.u64(u64::from(fading.remaining));
                w.text(&fading.text);
                w.state(&fading.patch);
            }
            None => w.u64(0),
        }
        w.u64(self.next_block);
        w.u64(self.last_seq);
        w.u64(self.counters.applied);
        w.u64(self.counters.late);
        w.u64(self.counters.bad_patches);
        w.u64(self.counters.stale);
        w.u64(self.test_tone_remaining);
        w.f64(self.test_tone_phase);
        w.u64(self.ramps.len() as u64);
        for ramp in &self.ramps {
            w.u64(u64::from(ramp.node) | u64::from(ramp.param) << 16);
            w.f64(f64::from(ramp.start));
            w.f64(f64::from(ramp.target));
            w.u64(ramp.total);
            w.u64(ramp.elapsed);
        }
        w.u64(self.pending.len() as u64);
        // In the heap's own order: the bytes may differ between two workers holding the
        // same commands, the restored engine does not.
        for Waiting(p) in &self.pending {
            let record = p.to_record(0);
            w.u64(record.seq);
            w.u64(u64::from(record.kind));
            w.u64(record.frame);
            for word in record.payload {
                w.u64(word);
            }
        }
        w.smoother(&self.master_gain);
        w.master(&self.master);
        w.state(&self.patch);
        // The tracks playing, by their sources: while an edit waits for its boundary they
        // may differ from the patch text's (see `TracksSwitch`).
        match self.sequencer.declared() {
            Some((millibpm, swing)) => {
                w.u64(1);
                w.u64(u64::from(millibpm));
                w.u64(u64::from(swing));
            }
            None => w.u64(0),
        }
        w.u64(self.sequencer.sources().count() as u64);
        for (name, pattern, instrument, bars) in self.sequencer.sources() {
            w.text(name);
            w.text(pattern);
            w.u64(u64::from(instrument));
            w.u64(bars);
        }
        w.sequencer(&self.sequencer);
        w.arps(&self.arps);
        w.u64(u64::from(self.voice_limit));
    }

    /// An engine restored from `bytes` ([`save_snapshot`](Self::save_snapshot) of an engine
    /// with `config`): for the supervisor, which edits its restore point with it.
    ///
    /// # Errors
    /// [`SnapshotError`] when the bytes do not describe an engine of this configuration.
    pub fn from_snapshot(bytes: &[u8], config: EngineConfig) -> Result<Engine, SnapshotError> {
        Engine::read_snapshot(bytes, config)
    }

    /// Takes the command `seq` out of the commands waiting for their frame (a poison
    /// command found in a restore point); says whether it was waiting.
    pub fn drop_waiting(&mut self, seq: u64) -> bool {
        let before = self.pending.len();
        self.pending.retain(|w| w.0.seq != seq);
        self.pending.len() < before
    }

    /// Restores the state saved by [`save_snapshot`](Self::save_snapshot) of an engine with
    /// the same configuration (the patch comes with the snapshot). On error the engine is
    /// left as it was.
    ///
    /// # Errors
    /// [`SnapshotError`] when the bytes do not describe an engine of this configuration.
    pub fn load_snapshot(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let restored = Engine::read_snapshot(bytes, self.config)?;
        *self = restored;
        Ok(())
    }

    fn read_snapshot(bytes: &[u8], config: EngineConfig) -> Result<Engine, SnapshotError> {
        let mut r = StateReader::new(bytes);
        if r.get_u64()? != SNAPSHOT_MAGIC {
            return Err(SnapshotError::Invalid("magic"));
        }
        let (block, rate, seed, master) = (r.get_u64()?, r.get_u64()?, r.get_u64()?, r.get_u64()?);
        let master_bits =
            u64::from(config.master.dc_blocker) | u64::from(config.master.limiter) << 1;
        if block != config.block_frames as u64
            || rate != u64::from(config.sample_rate)
            || seed != config.seed
            || master != master_bits
        {
            return Err(SnapshotError::Config {
                found_block: block,
                found_rate: rate,
            });
        }
        let patch_text = read_text(&mut r)?;
        let desc = PatchDesc::from_toml_str(&patch_text)?;
        let mut engine = Engine::new(&desc, config, 0)?;
        engine.patch_text = patch_text;
        for _ in 0..read_count(&mut r, 64)? {
            let version = read_u32(&mut r)?;
            let bytes = read_bytes(&mut r)?;
            engine.incoming.insert(version, bytes);
        }
        if read_count(&mut r, 1)? == 1 {
            let beat = r.get_u64()?;
            let text = read_text(&mut r)?;
            let desc = PatchDesc::from_toml_str(&text)?;
            let sequencer = Sequencer::new(&desc, &engine.patch, config.sample_rate)?;
            engine.tracks_switch = Some(TracksSwitch {
                beat,
                text: Some(text),
                sequencer,
            });
        }
        for _ in 0..read_count(&mut r, 64)? {
            let version = read_u32(&mut r)?;
            let at =
                SwitchAt::from_code(r.get_u64()?).ok_or(SnapshotError::Invalid("patch switch"))?;
            let text = read_text(&mut r)?;
            engine.stage_text(version, text, at)?;
        }
        let remaining =
            u32::try_from(r.get_u64()?).map_err(|_| SnapshotError::Invalid("crossfade"))?;
        if remaining > 0 {
            let text = read_text(&mut r)?;
            let desc = PatchDesc::from_toml_str(&text)?;
            let mut patch = compile(&desc, config)?;
            patch.load_state(&mut r)?;
            engine.fading = Some(FadingPatch {
                text,
                patch,
                remaining,
            });
        }
        engine.next_block = r.get_u64()?;
        engine.last_seq = r.get_u64()?;
        engine.counters.applied = r.get_u64()?;
        engine.counters.late = r.get_u64()?;
        engine.counters.bad_patches = r.get_u64()?;
        engine.counters.stale = r.get_u64()?;
        engine.test_tone_remaining = r.get_u64()?;
        engine.test_tone_phase = r.get_f64()?;
        for _ in 0..read_count(&mut r, MAX_RAMPS)? {
            let ids = r.get_u64()?;
            engine.ramps.push(Ramp {
                node: ids as u16,
                param: (ids >> 16) as u16,
                start: r.get_f64()? as f32,
                target: r.get_f64()? as f32,
                total: r.get_u64()?,
                elapsed: r.get_u64()?,
            });
        }
        for _ in 0..read_count(&mut r, MAX_PENDING)? {
            let mut record = CommandRecord {
                seq: r.get_u64()?,
                generation: 0,
                kind: u32::try_from(r.get_u64()?)
                    .map_err(|_| SnapshotError::Invalid("command kind"))?,
                frame: r.get_u64()?,
                payload: [0; 5],
            };
            for word in &mut record.payload {
                *word = r.get_u64()?;
            }
            match Instruction::from_record(&record) {
                Ok(Instruction::Stamped(stamped)) => engine.pending.push(Waiting(stamped)),
                _ => return Err(SnapshotError::Invalid("pending command")),
            }
        }
        engine.master_gain.load_state(&mut r)?;
        engine.master.load_state(&mut r)?;
        engine.patch.load_state(&mut r)?;
        let mut playing = desc;
        playing.clock = match read_count(&mut r, 1)? {
            1 => Some(ClockDesc {
                bpm: r.get_u64()? as f64 / 1000.0,
                swing: r.get_u64()? as f64 / 1000.0,
            }),
            _ => None,
        };
        playing.tracks = Vec::new();
        for _ in 0..read_count(&mut r, crate::sequencer::MAX_TRACKS)? {
            let name = read_text(&mut r)?;
            let pattern = read_text(&mut r)?;
            let node = r.get_u64()?;
            let instrument = engine
                .patch
                .instruments()
                .find(|&(_, known)| u64::from(known) == node)
                .map(|(name, _)| name.to_string())
                .ok_or(SnapshotError::Invalid("track instrument"))?;
            let bars = u32::try_from(r.get_u64()?).map_err(|_| SnapshotError::Invalid("bars"))?;
            playing.tracks.push(TrackDesc {
                name,
                instrument: Some(instrument),
                pattern,
                bars,
                playing: true,
            });
        }
        engine.sequencer = Sequencer::new(&playing, &engine.patch, config.sample_rate)?;
        engine.sequencer.load_state(&mut r)?;
        engine.arps.load_state(&mut r)?;
        engine.voice_limit =
            u16::try_from(r.get_u64()?).map_err(|_| SnapshotError::Invalid("voice limit"))?;
        // The voices were saved within the limit: this sheds none, it only sets it.
        engine
            .patch
            .set_voice_limit(voice_limit(engine.voice_limit));
        Ok(engine)
    }
}

fn compile(desc: &PatchDesc, config: EngineConfig) -> Result<Patch, PatchError> {
    Patch::compile(
        desc,
        config.sample_rate as f32,
        config.block_frames,
        config.seed,
    )
}

/// The limit [`Patch::set_voice_limit`] takes for a [`Command::VoiceLimit`]'s `voices`.
fn voice_limit(voices: u16) -> Option<usize> {
    (voices > 0).then_some(usize::from(voices))
}

fn crossfade_frames(sample_rate: u32) -> u32 {
    (PATCH_CROSSFADE_SECONDS * f64::from(sample_rate))
        .round()
        .max(1.0) as u32
}

fn read_count(r: &mut StateReader<'_>, max: usize) -> Result<usize, SnapshotError> {
    let n = r.get_u64()?;
    usize::try_from(n)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(SnapshotError::Invalid("count"))
}

fn read_u32(r: &mut StateReader<'_>) -> Result<u32, SnapshotError> {
    u32::try_from(r.get_u64()?).map_err(|_| SnapshotError::Invalid("version"))
}

fn read_bytes(r: &mut StateReader<'_>) -> Result<Vec<u8>, SnapshotError> {
    let len = read_count(r, MAX_PATCH_TEXT)?;
    let mut bytes = Vec::with_capacity(len);
    for _ in 0..len {
        bytes.push(r.get_u8()?);
    }
    Ok(bytes)
}

fn read_text(r: &mut StateReader<'_>) -> Result<String, SnapshotError> {
    String::from_utf8(read_bytes(r)?).map_err(|_| SnapshotError::Invalid("patch text"))
}

/// The engine's snapshot fields, written through a [`StateWriter`] (or its
/// [`StateWriter::counter`], which sizes the snapshot by running the same code).
trait SnapshotSink {
    fn u64(&mut self, v: u64);
    fn f64(&mut self, v: f64);
    fn bytes(&mut self, b: &[u8]);
    fn text(&mut self, t: &str) {
        self.bytes(t.as_bytes());
    }
    fn smoother(&mut self, s: &Smoother);
    fn master(&mut self, m: &Master);
    fn state(&mut self, p: &Patch);
    fn sequencer(&mut self, s: &Sequencer);
    fn arps(&mut self, a: &Arpeggiators);
}

impl SnapshotSink for StateWriter<'_> {
    fn u64(&mut self, v: u64) {
        self.put_u64(v);
    }
    fn f64(&mut self, v: f64) {
        self.put_f64(v);
    }
    fn bytes(&mut self, b: &[u8]) {
        self.put_u64(b.len() as u64);
        self.put_bytes(b);
    }
    fn smoother(&mut self, s: &Smoother) {
        s.save_state(self);
    }
    fn master(&mut self, m: &Master) {
        m.save_state(self);
    }
    fn sequencer(&mut self, s: &Sequencer) {
        s.save_state(self);
    }
    fn arps(&mut self, a: &Arpeggiators) {
        a.save_state(self);
    }
    fn state(&mut self, p: &Patch) {
        p.save_state(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> EngineConfig {
        EngineConfig::new(48_000, 64, 7)
    }

    fn engine() -> Engine {
        Engine::new(&PatchDesc::default_patch(), config(), 0).expect("default patch compiles")
    }

    fn gate_on(seq: u64, frame: u64) -> StampedCommand {
        StampedCommand {
            seq,
            frame,
            command: Command::Gate { node: 1, on: true },
        }
    }

    fn render(engine: &mut Engine, blocks: usize) -> Vec<f32> {
        let mut all = Vec::new();
        let mut block = vec![0.0; 128];
        for _ in 0..blocks {
            engine.render_block(&mut block);
            all.extend_from_slice(&block);
        }
        all
    }

    /// A patch with one instrument and one track playing `PATTERN` on it, at 120 bpm (a
    /// bar is 96,000 frames).
    const GROOVE: &str = r#"
[clock]
bpm = 120.0

[[instruments]]
name = "lead"
voices = 8
modules = [
  { id = "note", type = "note" },
  { id = "osc", type = "saw", params = { freq = 0.0, gain = 0.3 } },
  { id = "env", type = "adsr", params = { attack = 0.5, decay = 10.0, sustain = 0.5, release = 5.0 } },
]
connections = [
  { from = "note:freq", to = "osc:fm" },
  { from = "osc:out", to = "env:in" },
  { from = "env:out", to = "out" },
]

[[modules]]
id = "out"
type = "output"

[[connections]]
from = "lead:out"
to = "out:left"

[[tracks]]
name = "t"
pattern = "PATTERN"
"#;

    fn groove(pattern: &str) -> String {
        GROOVE.replace("PATTERN", pattern)
    }

    fn groove_engine(pattern: &str) -> Engine {
        let desc = PatchDesc::from_toml_str(&groove(pattern)).unwrap();
        Engine::new(&desc, config(), 0).unwrap()
    }

    /// Sends `text` as patch `version` and its switch, stamped `seq` for `frame`.
    fn send_switch(
        engine: &mut Engine,
        seq: u64,
        frame: u64,
        version: u32,
        text: &str,
        at: SwitchAt,
    ) {
        for chunk in PatchChunk::split(version, text.as_bytes()) {
            engine.receive_chunk(&chunk);
        }
        let len = text.len() as u32;
        let command = Command::SwitchPatch { version, len, at };
        engine
            .receive(StampedCommand {
                seq,
                frame,
                command,
            })
            .unwrap();
    }

    /// A groove of silence with an edit to `c4*4`, stamped at frame 30,000, waiting for
    /// the bar line at 96,000.
    fn an_edit_waiting_for_the_bar_line() -> Engine {
        let mut engine = groove_engine("~");
        send_switch(
            &mut engine,
            1,
            30_000,
            2,
            &groove("c4*4"),
            SwitchAt::TracksAtBar,
        );
        engine
    }

    /// The pattern of the running patch's track.
    fn track_pattern(engine: &Engine) -> String {
        let desc = PatchDesc::from_toml_str(engine.patch_text()).unwrap();
        desc.tracks[0].pattern.clone()
    }

    fn first_sound(out: &[f32]) -> Option<usize> {
        out.chunks(2).position(|f| f[0] != 0.0)
    }

    /// Where `pattern`'s first note sounds when it plays from the start.
    fn onset_of(pattern: &str) -> usize {
        first_sound(&render(&mut groove_engine(pattern), 200)).expect("the pattern plays")
    }

    #[test]
    fn a_pattern_edit_lands_on_the_next_bar_line_and_the_sound_plays_on() {
        let offset = onset_of("c4");
        let mut engine = groove_engine("~");
        // Timed for after the bar line: a tracks switch leaves nothing stale.
        let gain = Command::EngineGain(0.5);
        let later = StampedCommand {
            seq: 1,
            frame: 120_000,
            command: gain,
        };
        engine.receive(later).unwrap();
        send_switch(
            &mut engine,
            2,
            30_000,
            2,
            &groove("c4"),
            SwitchAt::TracksAtBar,
        );
        let before = render(&mut engine, 1_000);
        assert_eq!(track_pattern(&engine), "~", "waits for the bar line");
        let after = render(&mut engine, 1_000);
        let out = [before, after].concat();
        assert_eq!(first_sound(&out), Some(96_000 + offset));
        assert_eq!(track_pattern(&engine), "c4");
        assert_eq!(engine.counters().stale, 0);
        assert_eq!(
            engine.commands_waiting(),
            0,
            "the timed command was applied"
        );
    }

    #[test]
    fn a_pattern_edit_asked_on_the_beat_lands_on_the_next_beat() {
        let offset = onset_of("c4*4");
        let mut engine = groove_engine("~");
        send_switch(
            &mut engine,
            1,
            30_000,
            2,
            &groove("c4*4"),
            SwitchAt::TracksAtBeat,
        );
        let out = render(&mut engine, 1_000);
        assert_eq!(first_sound(&out), Some(48_000 + offset));
    }

    #[test]
    fn an_edit_on_the_beat_after_one_on_the_bar_waits_for_the_bar_with_it() {
        // Two edits before the bar line: the first asked on the bar, the second (whose
        // text holds both) on the beat. Before: the second replaced the first and landed
        // on the next beat, taking the first's change into the middle of the bar.
        let offset = onset_of("c4*4");
        let mut engine = groove_engine("~");
        let first = groove("c4*4");
        send_switch(&mut engine, 1, 30_000, 2, &first, SwitchAt::TracksAtBar);
        let both = format!("{first}\n[[tracks]]\nname = \"u\"\npattern = \"~\"\n");
        send_switch(&mut engine, 2, 40_000, 3, &both, SwitchAt::TracksAtBeat);
        let out = render(&mut engine, 2_000);
        assert_eq!(first_sound(&out), Some(96_000 + offset));
        assert_eq!(track_pattern(&engine), "c4*4");
    }

    #[test]
    fn a_commit_of_the_sound_while_an_edit_waits_leaves_the_edit_to_its_bar_line() {
        // The review's case: a track edit waits for the bar line; a commit that changes
        // the sound (its text holds the edit, as every commit's does) comes mid-bar.
        // Before: the commit took the edit along at once, mid-bar. Now the sound changes
        // at once, the edit lands on the bar line, and a snapshot taken in between plays
        // on bit for bit.
        let offset = onset_of("c4*4");
        let mut engine = an_edit_waiting_for_the_bar_line();
        let louder = groove("c4*4").replace("gain = 0.3", "gain = 0.4");
        send_switch(&mut engine, 2, 40_000, 3, &louder, SwitchAt::Now);
        let before = render(&mut engine, 700);
        assert_eq!(engine.patch_text(), louder, "the sound switched at once");
        assert_eq!(track_pattern(&engine), "c4*4");
        let mut bytes = vec![0u8; engine.snapshot_len()];
        let len = engine.save_snapshot(&mut bytes);
        let mut joined = Engine::from_snapshot(&bytes[..len], config()).unwrap();
        let after = render(&mut engine, 1_000);
        assert_eq!(
            render(&mut joined, 1_000),
            after,
            "a spare joining meanwhile"
        );
        let out = [before, after].concat();
        assert_eq!(first_sound(&out), Some(96_000 + offset));

        // A patch with tracks of its own (a library load) switches them at once, in phase:
        // its second half note (beat 2) sounds, not the bar line's.
        let mut engine = an_edit_waiting_for_the_bar_line();
        let other = groove("c4*2").replace("gain = 0.3", "gain = 0.4");
        send_switch(&mut engine, 2, 40_000, 3, &other, SwitchAt::Now);
        let out = render(&mut engine, 1_000);
        assert_eq!(first_sound(&out), Some(48_000 + onset_of("c4*2")));
    }

    #[test]
    fn a_clock_restart_lands_a_waiting_edit_at_once() {
        // The review's case: an edit waits for the bar line, and the clock is stopped and
        // started in one block. Before: the edit waited for its beat number on the new
        // count, eight bars late.
        let offset = onset_of("c4*4");
        let mut engine = an_edit_waiting_for_the_bar_line();
        for (seq, on) in [(2, false), (3, true)] {
            engine
                .receive(StampedCommand {
                    seq,
                    frame: 40_000,
                    command: Command::ClockRun { on },
                })
                .unwrap();
        }
        let out = render(&mut engine, 1_000);
        assert_eq!(first_sound(&out), Some(40_000 + offset));
        assert_eq!(track_pattern(&engine), "c4*4");
    }

    #[test]
    fn a_tracks_switch_that_changes_the_sound_switches_the_whole_patch_at_once() {
        let mut engine = groove_engine("c4");
        let louder = groove("c4").replace("gain = 0.3", "gain = 0.4");
        send_switch(&mut engine, 1, 30_000, 2, &louder, SwitchAt::TracksAtBar);
        render(&mut engine, 480);
        assert_eq!(engine.patch_text(), louder);
    }

    #[test]
    fn a_snapshot_taken_while_a_tracks_switch_waits_plays_on_bit_for_bit() {
        let mut engine = groove_engine("c4 e4");
        send_switch(
            &mut engine,
            1,
            30_000,
            2,
            &groove("g4*3"),
            SwitchAt::TracksAtBar,
        );
        render(&mut engine, 700);
        let mut bytes = vec![0u8; engine.snapshot_len()];
        let len = engine.save_snapshot(&mut bytes);
        assert!(len > 0);
        let mut joined = Engine::from_snapshot(&bytes[..len], config()).unwrap();
        let expected = render(&mut engine, 2_000);
        assert_eq!(render(&mut joined, 2_000), expected);
        assert_eq!(track_pattern(&joined), "g4*3");
    }

    #[test]
    fn gate_opens_sound_on_its_exact_frame() {
        let mut engine = engine();
        engine.receive(gate_on(1, 100)).unwrap();
        let out = render(&mut engine, 4);
        let first_sound = out
            .chunks(2)
            .position(|f| f[0] != 0.0)
            .expect("sound after gate");
        assert!(
            first_sound >= 100,
            "sound before the stamped frame: {first_sound}"
        );
        assert!(first_sound <= 101);
    }

    #[test]
    fn same_commands_give_identical_audio_whatever_arrives_when() {
        let commands = [
            gate_on(1, 10),
            StampedCommand {
                seq: 2,
                frame: 500,
                command: Command::SetParam {
                    node: 0,
                    param: 0,
                    value: 660.0,
                },
            },
            StampedCommand {
                seq: 3,
                frame: 700,
                command: Command::EngineGain(0.5),
            },
        ];
        let mut early = engine();
        for c in commands {
            early.receive(c).unwrap();
        }
        let a = render(&mut early, 20);

        let mut late = engine();
        late.receive(commands[0]).unwrap();
        let mut b = render(&mut late, 5); // up to frame 320
        late.receive(commands[2]).unwrap();
        late.receive(commands[1]).unwrap();
        b.extend(render(&mut late, 15));
        assert_eq!(a, b);
    }

    #[test]
    fn snapshot_restore_continues_bit_identically() {
        let mut straight = engine();
        straight.receive(gate_on(1, 0)).unwrap();
        straight
            .receive(StampedCommand {
                seq: 2,
                frame: 64 * 12 + 5,
                command: Command::TestTone,
            })
            .unwrap();
        let _ = render(&mut straight, 10);
        let mut snapshot = vec![0u8; straight.snapshot_len()];
        assert_eq!(straight.save_snapshot(&mut snapshot), snapshot.len());
        let expected = render(&mut straight, 30);

        let mut fresh = engine();
        fresh.load_snapshot(&snapshot).unwrap();
        assert_eq!(fresh.next_block(), 10);
        assert_eq!(fresh.last_seq(), 2);
        // The counters are engine state: a spare that joins from a snapshot goes on
        // counting where the active worker was (applied 1, the tone still waiting).
        assert_eq!(
            fresh.counters(),
            EngineCounters {
                applied: 1,
                ..EngineCounters::default()
            }
        );
        assert_eq!(fresh.commands_waiting(), 1);
        assert_eq!(render(&mut fresh, 30), expected);
        assert_eq!(fresh.counters(), straight.counters());
        assert_eq!(fresh.counters().applied, 2);
    }

    #[test]
    fn a_voice_limit_holds_across_a_snapshot_and_a_patch_switch() {
        let mut straight = engine();
        let keys = straight.patch().node_index("keys").unwrap();
        let note = |seq: u64, note: f32| StampedCommand {
            seq,
            frame: 100 + seq,
            command: Command::NoteOn {
                instrument: keys,
                note,
                velocity: 100.0,
                id: 0,
            },
        };
        for (seq, n) in [(1, 60.0), (2, 64.0), (3, 67.0), (4, 71.0)] {
            straight.receive(note(seq, n)).unwrap();
        }
        straight
            .receive(StampedCommand {
                seq: 5,
                frame: 64 * 4,
                command: Command::VoiceLimit { voices: 2 },
            })
            .unwrap();
        let _ = render(&mut straight, 10);
        assert_eq!(straight.patch().voices_sounding(), 2);
        let mut snapshot = vec![0u8; straight.snapshot_len()];
        assert_eq!(straight.save_snapshot(&mut snapshot), snapshot.len());
        // A note beyond the limit steals: still two.
        straight.receive(note(6, 74.0)).unwrap();
        let expected = render(&mut straight, 30);
        assert_eq!(straight.patch().voices_sounding(), 2);

        let mut fresh = engine();
        fresh.load_snapshot(&snapshot).unwrap();
        fresh.receive(note(6, 74.0)).unwrap();
        assert_eq!(
            render(&mut fresh, 30),
            expected,
            "the limit is in the snapshot"
        );

        // A patch switched to plays under the limit too.
        let text = PatchDesc::default_patch().to_toml_string();
        send_switch(&mut fresh, 7, 64 * 41, 1, &text, SwitchAt::Now);
        let _ = render(&mut fresh, 10);
        for (seq, n) in [(8, 48.0), (9, 52.0), (10, 55.0)] {
            fresh
                .receive(StampedCommand {
                    seq,
                    frame: 64 * 52 + seq,
                    command: Command::NoteOn {
                        instrument: keys,
                        note: n,
                        velocity: 100.0,
                        id: 0,
                    },
                })
                .unwrap();
        }
        let _ = render(&mut fresh, 20);
        assert_eq!(fresh.patch().voices_sounding(), 2);
    }

    /// The default patch with a groove on `keys` (two tracks, swung, at 133 bpm).
    fn groove_desc() -> PatchDesc {
        let mut desc = PatchDesc::default_patch();
        desc.clock = Some(chronus_dsp::ClockDesc {
            bpm: 133.0,
            swing: 0.62,
        });
        for (name, pattern, bars) in [
            ("bass", "c2 ~ c2 <eb2 [g2 bb2]*2>", 1),
            ("chords", "c4'min7 ~ ab3'maj7 _", 2),
        ] {
            desc.tracks.push(chronus_dsp::TrackDesc {
                name: name.to_string(),
                instrument: None,
                pattern: pattern.to_string(),
                bars,
                playing: true,
            });
        }
        desc
    }

    /// Exactly `frames` frames of `engine` (blocks of `block` frames), interleaved.
    fn render_frames(engine: &mut Engine, block: usize, frames: usize) -> Vec<f32> {
        let mut out = Vec::new();
        let mut buf = vec![0.0; 2 * block];
        while out.len() < 2 * frames {
            engine.render_block(&mut buf);
            out.extend_from_slice(&buf);
        }
        out.truncate(2 * frames);
        out
    }

    #[test]
    fn tracks_play_the_same_samples_whatever_the_block_size() {
        let frames = 48_000 * 5;
        let mut by_block = Vec::new();
        for block in [64usize, 100, 37] {
            let config = EngineConfig::new(48_000, block, 7);
            let mut engine = Engine::new(&groove_desc(), config, 0).unwrap();
            engine
                .receive(StampedCommand {
                    seq: 1,
                    frame: 100_003,
                    command: Command::ClockTempo { bpm: 90.5 },
                })
                .unwrap();
            by_block.push(render_frames(&mut engine, block, frames));
        }
        assert!(by_block[0].iter().any(|&x| x != 0.0), "the groove sounds");
        assert!(by_block[0] == by_block[1] && by_block[0] == by_block[2]);
    }

    #[test]
    fn a_groove_restored_from_a_snapshot_plays_on_bit_for_bit() {
        let mut straight = Engine::new(&groove_desc(), config(), 0).unwrap();
        straight
            .receive(StampedCommand {
                seq: 1,
                frame: 64 * 700 + 3,
                command: Command::TrackRun {
                    track: 1,
                    on: false,
                },
            })
            .unwrap();
        let _ = render(&mut straight, 1000);
        let mut snapshot = vec![0u8; straight.snapshot_len()];
        assert_eq!(straight.save_snapshot(&mut snapshot), snapshot.len());
        let expected = render(&mut straight, 3000);
        let mut fresh = engine();
        fresh.load_snapshot(&snapshot).unwrap();
        assert_eq!(render(&mut fresh, 3000), expected);
        assert!(expected.iter().any(|&x| x != 0.0));
    }

    /// The default patch with `keys` arpeggiated (random, 2 octaves, sixteenths, swung at
    /// 128 bpm) and a chord held from frame 1,000, the mode changed at 30,011.
    fn arpeggio(config: EngineConfig) -> Engine {
        let mut desc = PatchDesc::default_patch();
        desc.clock = Some(chronus_dsp::ClockDesc {
            bpm: 128.0,
            swing: 0.6,
        });
        desc.instruments[0].arp = Some(chronus_dsp::ArpDesc {
            mode: chronus_dsp::ArpMode::Random,
            octaves: 2,
            rate: 0.25,
            gate: 0.6,
            on: true,
        });
        let mut engine = Engine::new(&desc, config, 0).unwrap();
        let keys = engine.patch().node_index("keys").unwrap();
        for (seq, note) in [(1, 60.0), (2, 63.0), (3, 67.0)] {
            engine
                .receive(StampedCommand {
                    seq,
                    frame: 1_000 + seq,
                    command: Command::NoteOn {
                        instrument: keys,
                        note,
                        velocity: 90.0,
                        id: 0,
                    },
                })
                .unwrap();
        }
        engine
            .receive(StampedCommand {
                seq: 4,
                frame: 30_011,
                command: Command::Arp {
                    instrument: keys,
                    setting: crate::arpeggiator::ArpSetting::Mode(chronus_dsp::ArpMode::UpDown),
                },
            })
            .unwrap();
        engine
    }

    #[test]
    fn an_arpeggio_plays_the_same_samples_whatever_the_block_size() {
        let frames = 48_000 * 2;
        let mut by_block = Vec::new();
        for block in [64usize, 100, 37] {
            let mut engine = arpeggio(EngineConfig::new(48_000, block, 7));
            by_block.push(render_frames(&mut engine, block, frames));
        }
        assert!(
            by_block[0][..2_000].iter().all(|&x| x == 0.0),
            "silent until the first step"
        );
        assert!(by_block[0].iter().any(|&x| x != 0.0), "the arpeggio sounds");
        assert!(by_block[0] == by_block[1] && by_block[0] == by_block[2]);
    }

    #[test]
    fn an_arpeggio_restored_from_a_snapshot_plays_on_bit_for_bit() {
        let mut straight = arpeggio(config());
        let _ = render(&mut straight, 300); // mid-pattern, random order running
        let mut snapshot = vec![0u8; straight.snapshot_len()];
        assert_eq!(straight.save_snapshot(&mut snapshot), snapshot.len());
        let expected = render(&mut straight, 1500);
        let mut fresh = engine();
        fresh.load_snapshot(&snapshot).unwrap();
        assert_eq!(render(&mut fresh, 1500), expected);
        assert!(expected.iter().any(|&x| x != 0.0));
    }

    #[test]
    fn an_arpeggio_plays_on_unmoved_through_a_tracks_switch() {
        let mut desc = PatchDesc::default_patch();
        desc.instruments[0].arp = Some(chronus_dsp::ArpDesc {
            octaves: 3,
            ..chronus_dsp::ArpDesc::default()
        });
        desc.tracks.push(chronus_dsp::TrackDesc {
            name: "t".to_string(),
            instrument: None,
            pattern: "~".to_string(),
            bars: 1,
            playing: true,
        });
        let play = |switch: bool| {
            let mut engine = Engine::new(&desc, config(), 0).unwrap();
            let keys = engine.patch().node_index("keys").unwrap();
            for (seq, note) in [(1, 60.0), (2, 64.0)] {
                let command = Command::NoteOn {
                    instrument: keys,
                    note,
                    velocity: 100.0,
                    id: 0,
                };
                let frame = 1_000;
                engine
                    .receive(StampedCommand {
                        seq,
                        frame,
                        command,
                    })
                    .unwrap();
            }
            let mut edited = desc.clone();
            edited.tracks[0].pattern = "~ ~".to_string();
            if switch {
                let text = edited.to_toml_string();
                send_switch(&mut engine, 3, 30_000, 2, &text, SwitchAt::TracksAtBar);
            }
            let out = render(&mut engine, 2_000);
            (out, track_pattern(&engine))
        };
        let (switched, pattern) = play(true);
        assert_eq!(pattern, "~ ~", "the tracks switch landed");
        let (straight, _) = play(false);
        assert!(switched.iter().any(|&x| x != 0.0));
        assert!(switched == straight, "the arpeggio did not move");
    }

    #[test]
    fn garbled_snapshot_is_refused_and_engine_untouched() {
        let mut engine = engine();
        let before = render(&mut engine, 1);
        assert!(engine.load_snapshot(&[1, 2, 3]).is_err());
        assert_eq!(engine.next_block(), 1);
        assert_eq!(before.len(), 128);
    }

    #[test]
    fn late_commands_apply_at_once_and_are_counted() {
        let mut engine = engine();
        let _ = render(&mut engine, 3);
        engine.receive(gate_on(1, 10)).unwrap();
        let _ = render(&mut engine, 1);
        assert_eq!(engine.counters().late, 1);
        assert_eq!(engine.counters().applied, 1);
    }

    #[test]
    fn a_restore_point_can_be_rebuilt_without_one_waiting_command() {
        let mut engine = engine();
        engine.receive(gate_on(1, 1_000)).unwrap();
        engine.receive(gate_on(2, 2_000)).unwrap();
        let mut snapshot = vec![0; engine.snapshot_len()];
        let len = engine.save_snapshot(&mut snapshot);
        let mut restored = Engine::from_snapshot(&snapshot[..len], engine.config()).unwrap();
        assert_eq!(restored.commands_waiting(), 2);
        assert!(restored.drop_waiting(1));
        assert!(!restored.drop_waiting(1));
        assert_eq!(restored.commands_waiting(), 1);
        let mut only_the_second = self::engine();
        only_the_second.receive(gate_on(2, 2_000)).unwrap();
        let expected = render(&mut only_the_second, 40);
        assert_eq!(render(&mut restored, 40), expected);
        assert_ne!(render(&mut engine, 40), expected, "the first gate mattered");
    }

    #[test]
    fn pending_queue_is_bounded() {
        let mut engine = engine();
        for i in 0..MAX_PENDING as u64 {
            engine.receive(gate_on(i + 1, 1_000_000 + i)).unwrap();
        }
        assert_eq!(engine.receive(gate_on(99_999, 5)), Err(ReceiveError::Full));
        assert_eq!(engine.commands_waiting(), MAX_PENDING);
    }

    fn freq_of(samples: &[f32]) -> f64 {
        let left: Vec<f32> = samples.chunks(2).map(|f| f[0]).collect();
        let crossings = left
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        crossings as f64 / 2.0 / (left.len() as f64 / 48_000.0)
    }

    fn chunks_of(
        engine: &mut Engine,
        version: u32,
        desc: &PatchDesc,
        first_seq: u64,
    ) -> (u64, u32) {
        let text = desc.to_toml_string();
        let mut seq = first_seq;
        for mut chunk in PatchChunk::split(version, text.as_bytes()) {
            chunk.seq = seq;
            seq += 1;
            engine.receive_chunk(&chunk);
        }
        (seq, text.len() as u32)
    }

    #[test]
    fn ramps_glide_in_the_engine_and_survive_a_snapshot() {
        let mut engine = engine();
        engine.receive(gate_on(1, 0)).unwrap();
        engine
            .receive(StampedCommand {
                seq: 2,
                frame: 0,
                command: Command::Ramp {
                    node: 0,
                    param: 0,
                    target: 880.0,
                    seconds: 1.0,
                },
            })
            .unwrap();
        let _ = render(&mut engine, 150); // 0.2 s
        let mut snapshot = vec![0u8; engine.snapshot_len()];
        engine.save_snapshot(&mut snapshot);
        let middle = render(&mut engine, 75); // 0.2 .. 0.3 s
        let f = freq_of(&middle);
        assert!((f - 550.0).abs() < 25.0, "mid-ramp frequency {f}");
        let rest = render(&mut engine, 750);
        assert!((freq_of(&rest[rest.len() - 9600..]) - 880.0).abs() < 12.0);

        let mut restored = Engine::new(&PatchDesc::default_patch(), config(), 0).unwrap();
        restored.load_snapshot(&snapshot).unwrap();
        let mut again = render(&mut restored, 75);
        again.extend(render(&mut restored, 750));
        let mut expected = middle;
        expected.extend(rest);
        assert_eq!(again, expected);
    }

    #[test]
    fn patch_switch_crossfades_on_its_frame_and_snapshots_mid_fade() {
        let mut new_desc = PatchDesc::default_patch();
        new_desc.modules[0].params.insert("freq".into(), 880.0);
        new_desc.modules[3].params.insert("gain".into(), 0.5);
        let mut engine = engine_from_scratch();
        let mut reference = engine_from_scratch();
        for e in [&mut engine, &mut reference] {
            e.receive(gate_on(1, 0)).unwrap();
        }
        let (seq, len) = chunks_of(&mut engine, 2, &new_desc, 2);
        let switch_frame = 64 * 20 + 7;
        engine
            .receive(StampedCommand {
                seq,
                frame: switch_frame,
                command: Command::SwitchPatch {
                    version: 2,
                    len,
                    at: SwitchAt::Now,
                },
            })
            .unwrap();
        let before = render(&mut engine, 20);
        assert_eq!(
            before,
            render(&mut reference, 20),
            "nothing changes before the frame"
        );
        let _ = render(&mut engine, 2); // inside the 20 ms crossfade
        let mut snapshot = vec![0u8; engine.snapshot_len()];
        engine.save_snapshot(&mut snapshot);
        let after = render(&mut engine, 200);
        while engine.take_retired().is_some() {}
        assert!((freq_of(&after[after.len() / 2..]) - 880.0).abs() < 12.0);
        assert!(engine.patch_text().contains("880"));
        let steps = after.chunks(2).map(|f| f[0]).collect::<Vec<_>>();
        let max_step = steps
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0f32, f32::max);
        assert!(max_step < 0.1, "click of {max_step}");

        let mut joined = engine_from_scratch();
        joined.load_snapshot(&snapshot).unwrap();
        assert_eq!(
            render(&mut joined, 200),
            after,
            "a spare joining mid-crossfade"
        );
    }

    /// A tone of `gain` into a delay line of `max_time` ms, heard wet only.
    fn echo_patch(max_time: f32, gain: f32) -> PatchDesc {
        PatchDesc::from_toml_str(&format!(
            r#"
[[modules]]
id = "tone"
type = "sine"
params = {{ freq = 330.0, gain = {gain} }}

[[modules]]
id = "echo"
type = "delay"
params = {{ time = 150.0, feedback = 0.6, mix = 1.0, max_time = {max_time} }}

[[modules]]
id = "out"
type = "output"

[[connections]]
from = "tone:out"
to = "echo:in"

[[connections]]
from = "echo:out"
to = "out:left"
"#
        ))
        .unwrap()
    }

    #[test]
    fn a_switch_that_resizes_a_delay_line_keeps_its_echoes() {
        // The tone stops; a switch to a line of another length comes 50 ms later: the
        // echoes in flight go on from the new line exactly as from the old one, once the
        // crossfade is over (before: a switch to a smaller line found no room to carry
        // the old state, and the new line started silent).
        for (from, to) in [(2_000.0, 2_000.0), (2_000.0, 400.0), (400.0, 2_000.0)] {
            let mut engine = Engine::new(&echo_patch(from, 0.5), config(), 0).unwrap();
            let mut reference = Engine::new(&echo_patch(from, 0.5), config(), 0).unwrap();
            let mute = StampedCommand {
                seq: 1,
                frame: 300 * 64,
                command: Command::SetParam {
                    node: 0,
                    param: 1,
                    value: 0.0,
                },
            };
            engine.receive(mute).unwrap();
            reference.receive(mute).unwrap();
            // The patch as played (the tone muted), its line resized.
            let (seq, len) = chunks_of(&mut engine, 2, &echo_patch(to, 0.0), 2);
            let switch = StampedCommand {
                seq,
                frame: 340 * 64,
                command: Command::SwitchPatch {
                    version: 2,
                    len,
                    at: SwitchAt::Now,
                },
            };
            engine.receive(switch).unwrap();
            let _ = render(&mut engine, 380);
            let _ = render(&mut reference, 380);
            while engine.take_retired().is_some() {}
            assert!(engine.patch_text().contains(&format!("max_time = {to}")));
            // 50 to 300 ms after the switch: the echoes of the tone, decaying.
            let after = render(&mut engine, 190);
            let peak = after.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(
                peak > 0.05,
                "{from} ms -> {to} ms: echoes carried, peak {peak}"
            );
            let expected = render(&mut reference, 190);
            let first = after.iter().zip(&expected).position(|(a, b)| a != b);
            assert_eq!(
                first,
                None,
                "{from} ms -> {to} ms: the same echoes as from the old line {:?}",
                first.map(|i| (after[i], expected[i], after.len()))
            );
        }
    }

    fn engine_from_scratch() -> Engine {
        Engine::new(&PatchDesc::default_patch(), config(), 0).unwrap()
    }

    #[test]
    fn a_patch_switch_without_its_text_is_refused_and_counted() {
        let mut engine = engine();
        let result = engine.receive(StampedCommand {
            seq: 1,
            frame: 0,
            command: Command::SwitchPatch {
                version: 9,
                len: 10,
                at: SwitchAt::Now,
            },
        });
        assert!(matches!(
            result,
            Err(ReceiveError::BadPatch { version: 9, .. })
        ));
        assert_eq!(engine.counters().bad_patches, 1);
    }

    #[test]
    fn master_limiter_keeps_a_hot_patch_under_the_ceiling() {
        let mut desc = PatchDesc::default_patch();
        desc.modules[0].params.insert("gain".into(), 1.0);
        desc.modules[3].params.insert("gain".into(), 1.0);
        desc.modules[2].params.insert("q".into(), 20.0);
        desc.modules[2].params.insert("cutoff".into(), 440.0);
        let mut engine = Engine::new(&desc, config(), 0).unwrap();
        engine.receive(gate_on(1, 0)).unwrap();
        let out = render(&mut engine, 500);
        let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak <= crate::master::CEILING, "{peak}");
        assert!(peak > 0.5, "and it is loud: {peak}");
    }

    #[test]
    fn commands_for_the_old_patch_due_after_a_switch_are_dropped() {
        let mut engine = engine_from_scratch();
        let (seq, len) = chunks_of(&mut engine, 2, &PatchDesc::default_patch(), 1);
        // Stamped before the switch, due after it (a timetagged bundle, say).
        let late = StampedCommand {
            seq: seq - 1,
            frame: 64 * 10,
            command: Command::SetParam {
                node: 0,
                param: 0,
                value: 880.0,
            },
        };
        engine.receive(late).unwrap();
        engine
            .receive(StampedCommand {
                seq,
                frame: 64 * 5,
                command: Command::SwitchPatch {
                    version: 2,
                    len,
                    at: SwitchAt::Now,
                },
            })
            .unwrap();
        let _ = render(&mut engine, 20);
        assert_eq!(engine.counters().stale, 1);
        assert_eq!(engine.patch().param(0, 0), Some(440.0));
    }
}
