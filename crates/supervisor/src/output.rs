//! The output clock: the one place that decides which slot is heard.
//!
//! Once per block, [`OutputCore::render_next`] (called from the device callback or a
//! paced thread):
//! 1. drains the commands decoded by the OSC side and stamps each with the *horizon*,
//!    the first block no worker may render yet, then pushes it into every bound slot's
//!    command ring (single writer, so both workers get the same records in the same order).
//!    It keeps account of the commands stamped and still waiting for their frame, and
//!    refuses (with a notice, answered `/fail`) what no engine could be trusted to hold,
//!    and the commands a patch switch makes stale: decided here, once, so both workers
//!    always hold the same commands;
//! 2. advances the horizon to `block + depth` and publishes it in every bound slot;
//! 3. reads block N from the active slot, or from the ready standby when the active one
//!    does not have it or is known dead (read-side failover, DESIGN.md invariant 3), and
//!    compares the two slots' block N bit for bit when both have it.
//!
//! 4. hands the played block to the recording ring and each stamped command to the command
//!    log's queue, when the server records or logs (the files are written by threads of
//!    their own: [`recorder`](crate::recorder), [`command_log`](crate::command_log)), and
//!    the played block to the monitor ring while a `/notify` subscriber wants the sound
//!    analysed ([`notify`](crate::notify)).
//!
//! It allocates nothing, takes no lock and never waits: everything it shares with the
//! supervisor is an atomic or a lock-free bounded queue.

use std::cmp::Ordering as KeyOrdering;
use std::collections::BinaryHeap;
use std::sync::atomic::{
    AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronus_engine::{
    Command, Control, Fault, PatchChunk, StampedCommand, MAX_ADMITTED, MAX_ADMITTED_TIMED,
};
use chronus_ipc::{Slot, WorkerCounts};
use crossbeam_queue::ArrayQueue;

use crate::clock_model::{ClockLoop, ClockModel};
use crate::command_log::{LogQueue, LoggedCommand};
use crate::depth::{DepthChange, DepthControl, DepthReason, DepthSetting};
use crate::metrics::Metrics;
use crate::overload::{BlockSeen, LimitChange, VoiceGuard};
use crate::recorder::SampleRing;
use crate::transport::ReplyTo;
use crate::wake::Wake;

/// Largest number of inbound items stamped in one block; the rest wait for the next block,
/// which bounds the time the output spends per block.
const MAX_INBOUND_PER_BLOCK: usize = 512;
/// How long every stop fades out over (then the output plays exactly 0.0).
pub const FADE_OUT: Duration = Duration::from_millis(10);
/// Marker for "no block" in the per-slot missed-block field.
pub const NO_BLOCK: u64 = u64::MAX;

/// What the OSC side and the supervisor hand to the output clock.
#[derive(Debug, Clone, Copy)]
pub enum Inbound {
    /// A validated engine command.
    Command {
        /// The command.
        command: Command,
        /// When it was received, in ns since the output epoch (for latency metrics).
        received_ns: u64,
        /// Frame wanted by a timetagged bundle; `None` = as soon as possible.
        at_frame: Option<u64>,
        /// Who sent it (for a late `/fail`, should it kill both workers).
        reply_to: Option<ReplyTo>,
    },
    /// `/sync <id>`: answer once everything before it is stamped.
    Sync {
        /// Id to echo in `/synced`.
        id: i32,
        /// Where to send the answer.
        reply_to: ReplyTo,
    },
    /// Snapshot of the active worker for a joining spare.
    Snapshot {
        /// Request id the joiner waits for.
        request: u64,
    },
    /// A command stamped earlier, replayed unchanged (same seq, same frame) to the workers
    /// of cold restart `restart` (dropped if another restart began since).
    Replay {
        /// The command as stamped.
        stamped: StampedCommand,
        /// The restart it is replayed for.
        restart: u64,
        /// Once it is in the rings, the restored workers may render up to this block: the
        /// earliest frame's block among the commands replayed after it.
        gate_after: u64,
    },
    /// The replay of cold restart `restart` is all in the rings once this is met: the
    /// restored workers may render on (see [`OutputShared::replay_gate`]).
    ReplayDone {
        /// The restart it ends.
        restart: u64,
    },
    /// A piece of a committed patch's text, for every worker, ahead of its switch command.
    PatchChunk(PatchChunk),
    /// Fault injection for one worker, stamped at the horizon.
    Fault {
        /// What to inject.
        fault: Fault,
        /// Target slot; `None` = the active one.
        slot: Option<usize>,
    },
}

/// Why a command was refused at stamping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// [`MAX_ADMITTED`] commands already wait for their frame (or [`MAX_ADMITTED_TIMED`]
    /// timed ones, for a timed command).
    QueueFull,
    /// It was timed after a patch switch stamped after it: its module and parameter
    /// numbers belong to the replaced patch, so every engine drops it at the switch.
    Stale,
}

impl Refusal {
    /// The reason given in the `/fail` reply.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::QueueFull => "server busy: too many commands already wait for their time; try again later",
            Refusal::Stale => "dropped: a patch switch was committed before its time, and it was addressed to the replaced patch",
        }
    }
}

/// Why the output switched slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverCause {
    /// The supervisor had flagged the active worker dead.
    Dead,
    /// The active slot did not have the block when it was due.
    MissedDeadline,
}

/// What the output tells the supervisor, through a lock-free queue.
#[derive(Debug, Clone, Copy)]
pub enum Notice {
    /// A command was stamped and pushed into the rings.
    Stamped {
        /// The stamped command.
        stamped: StampedCommand,
        /// When it was received (ns since epoch).
        received_ns: u64,
        /// Who sent it.
        reply_to: Option<ReplyTo>,
    },
    /// A command was refused at stamping (its sender is told with `/fail`).
    Refused {
        /// The command, as decoded for the patch stamped at the time.
        command: Command,
        /// Who sent it.
        reply_to: Option<ReplyTo>,
        /// Why.
        why: Refusal,
    },
    /// Everything before this `/sync` has been stamped.
    Synced {
        /// Echoed id.
        id: i32,
        /// Requester.
        reply_to: ReplyTo,
    },
    /// A snapshot request was sent to `slot` for block `block`.
    SnapshotRequested {
        /// Request id.
        request: u64,
        /// Slot asked.
        slot: usize,
        /// Block at which it will be taken.
        block: u64,
    },
    /// The depth changed ([`crate::depth`]).
    DepthChanged(DepthChange),
    /// The overload protection stamped a voice limit ([`crate::overload`]).
    VoiceLimitChanged(LimitChange),
    /// The output now reads `to` instead of `from`.
    Failover {
        /// Slot given up.
        from: usize,
        /// Slot now active.
        to: usize,
        /// First block served from `to`.
        block: u64,
        /// Why.
        cause: FailoverCause,
    },
    /// The active slot's (joined, live) worker did not have block `block` when it was
    /// due and there was no ready standby to take over: it is late or hung.
    ActiveMissed {
        /// The late slot.
        slot: usize,
        /// The block it lacked.
        block: u64,
    },
    /// A ready standby did not have block `block` when it was due.
    StandbyMissed {
        /// The late slot.
        slot: usize,
        /// The block it lacked.
        block: u64,
    },
    /// The ready standby's block `block` differs from the active one's: it left the
    /// lockstep, and a failover to it would be heard.
    Diverged {
        /// The diverged standby.
        slot: usize,
        /// The first block found different.
        block: u64,
    },
    /// Both slots of cold restart `restart` are bound ([`OutputShared::bind_pair`]): the
    /// commands from seq `first_seq` on are in their rings.
    PairBound {
        /// The restart.
        restart: u64,
        /// The first seq stamped for the new pair.
        first_seq: u64,
    },
    /// Neither slot had block `block`; silence was played.
    Underrun {
        /// The block.
        block: u64,
    },
}

/// One slot as the output and the supervisor share it.
pub struct SlotLink {
    /// The shared memory itself.
    pub slot: Arc<Slot>,
    /// The output pushes commands to, publishes the horizon to and consumes from this slot.
    pub bound: AtomicBool,
    /// The worker has joined: the output may read from and fail over to this slot.
    pub ready: AtomicBool,
    /// Generation of the current binding, stamped into every record.
    pub generation: AtomicU32,
    /// Non-zero once the supervisor detected the worker's death: ns since epoch.
    pub dead_since_ns: AtomicU64,
    /// Set by the output when a push into the full command ring failed.
    pub overflowed: AtomicBool,
    /// Set by the output to the first block the slot missed while ready, or [`NO_BLOCK`].
    pub missed_block: AtomicU64,
    /// Set by the output to the first block of this slot found different from the active
    /// one's, or [`NO_BLOCK`].
    pub diverged_block: AtomicU64,
    /// The slot's state as the supervisor loop last published it (`SlotState::index`),
    /// for reports built on another thread.
    pub published_state: AtomicU8,
    /// Its worker's pid as the loop last published it (0: none), for reports.
    pub published_pid: AtomicU32,
}

impl SlotLink {
    /// A link for a slot that is not bound yet.
    pub fn new(slot: Arc<Slot>) -> SlotLink {
        SlotLink {
            slot,
            bound: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            generation: AtomicU32::new(0),
            dead_since_ns: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            missed_block: AtomicU64::new(NO_BLOCK),
            diverged_block: AtomicU64::new(NO_BLOCK),
            published_state: AtomicU8::new(0),
            published_pid: AtomicU32::new(0),
        }
    }
}

/// State shared by the output clock, the OSC thread and the supervisor loop.
pub struct OutputShared {
    /// The two slots.
    pub slots: [SlotLink; 2],
    /// Index of the slot the output reads; written only by the output.
    pub active: AtomicUsize,
    /// Next block the output will play (= blocks played so far).
    pub played: AtomicU64,
    /// Current horizon (first block no worker may render).
    pub horizon: AtomicU64,
    /// Instant from which all `*_ns` fields count.
    pub epoch: Instant,
    /// Decoded requests waiting to be stamped.
    pub inbound: ArrayQueue<Inbound>,
    /// What the output reports back.
    pub notices: ArrayQueue<Notice>,
    /// Server metrics.
    pub metrics: Arc<Metrics>,
    /// Frames per block.
    pub block_frames: usize,
    /// Frames per second.
    pub sample_rate: u32,
    /// How the depth is set (`--depth`), and the blocks the sink was expected to take at
    /// a time (the output measures the real period and corrects it).
    pub depth_setting: DepthSetting,
    period_blocks: u64,
    /// The depth now (control latency in blocks): the output moves it under `--depth
    /// auto` ([`crate::depth`]) and publishes it here.
    depth: AtomicU64,
    /// Stamped commands for the command log's writer (`None`: no `--command-log`).
    pub command_log: Option<Arc<LogQueue>>,
    /// Played blocks for the recorder (`None`: nothing is recorded).
    pub recording: Option<Arc<SampleRing>>,
    /// Played blocks for the notify thread (levels, scope, spectrum, audio), each stamped
    /// with its first frame, filled only while [`notify_topics`](Self::notify_topics) has
    /// one of them.
    pub monitor: SampleRing,
    /// The `/notify` topics some subscriber has ([`chronus_protocol::Topics`] bits), set by
    /// the notify thread: the output copies blocks to the monitor ring and the OSC thread
    /// reports parameter changes only when someone listens.
    pub notify_topics: AtomicU16,
    /// Set to stop the sound: the output fades out over [`FADE_OUT`] and then plays silence.
    pub fade_out: AtomicBool,
    /// Set by the output once the fade is out: everything played since is exactly 0.0.
    pub faded_out: AtomicBool,
    /// Wakes the supervisor loop: signalled by the output when it leaves a notice or flags
    /// an overflow, and by the OSC thread with a control request.
    pub wake: Wake,
    /// How far a cold restart's workers may render while their replay reaches them.
    pub replay_gate: ReplayGate,
    /// A cold restart whose two prepared slots the output is to bind in one block (0:
    /// none), see [`bind_pair`](Self::bind_pair).
    pair_to_bind: AtomicU64,
    /// The last seq stamped before the output starts (a resumed server's predecessor's).
    seq_before_start: AtomicU64,
    /// Which frame the output hands over when: timetags are stamped by it.
    pub clock: ClockModel,
}

impl OutputShared {
    /// Shared state for two slots, with the clock at block 0 and the horizon at `depth`.
    pub fn new(
        slots: [Arc<Slot>; 2],
        metrics: Arc<Metrics>,
        block_frames: usize,
        sample_rate: u32,
        depth: DepthSetting,
        period_blocks: u64,
    ) -> OutputShared {
        let [a, b] = slots;
        let initial_depth = depth.initial(period_blocks);
        OutputShared {
            slots: [SlotLink::new(a), SlotLink::new(b)],
            active: AtomicUsize::new(0),
            played: AtomicU64::new(0),
            horizon: AtomicU64::new(initial_depth),
            epoch: Instant::now(),
            inbound: ArrayQueue::new(8192),
            notices: ArrayQueue::new(65_536),
            metrics,
            block_frames,
            sample_rate,
            depth_setting: depth,
            period_blocks,
            depth: AtomicU64::new(initial_depth),
            command_log: None,
            recording: None,
            monitor: SampleRing::for_monitor(sample_rate),
            notify_topics: AtomicU16::new(0),
            fade_out: AtomicBool::new(false),
            faded_out: AtomicBool::new(false),
            wake: Wake::new(),
            replay_gate: ReplayGate::default(),
            pair_to_bind: AtomicU64::new(0),
            seq_before_start: AtomicU64::new(0),
            clock: ClockModel::new(sample_rate),
        }
    }

    /// The same, with a queue for the command log's writer (see [`crate::command_log`]).
    pub fn with_command_log(mut self) -> OutputShared {
        self.command_log = Some(Arc::new(LogQueue::new()));
        self
    }

    /// The same, with a ring for the recorder (see [`crate::recorder`]).
    pub fn with_recording(mut self) -> OutputShared {
        self.recording = Some(Arc::new(SampleRing::for_stereo(self.sample_rate)));
        self
    }

    /// Makes the clock start at `block` (instead of 0) and stamp after seq `seq`: a
    /// resumed server goes on in its predecessor's timeline. Before the output starts.
    pub fn start_at(&self, block: u64, seq: u64) {
        self.played.store(block, Ordering::Release);
        self.horizon.store(block + self.depth(), Ordering::Release);
        self.seq_before_start.store(seq, Ordering::Release);
    }

    /// Asks the output to bind both (prepared) slots at the start of its next block and say
    /// so with [`Notice::PairBound`]: every command stamped from then on reaches the new
    /// pair's rings, every one before it must be replayed to them, and the notice tells
    /// exactly where the line falls.
    pub fn bind_pair(&self, restart: u64) {
        self.pair_to_bind.store(restart, Ordering::Release);
    }

    /// The horizon to publish to the workers: the output's, unless a replay holds it.
    pub fn worker_horizon(&self, horizon: u64) -> u64 {
        self.replay_gate.limit(horizon)
    }

    /// Asks the output to fade out (every stop does, so the last sample is 0.0, no click).
    pub fn request_fade_out(&self) {
        self.fade_out.store(true, Ordering::Release);
    }

    /// Whether the fade asked for by [`request_fade_out`](Self::request_fade_out) is over.
    pub fn has_faded_out(&self) -> bool {
        self.faded_out.load(Ordering::Acquire)
    }

    /// Whole blocks the fade-out takes: the fewest that last [`FADE_OUT`] or longer, so
    /// the fade ends exactly on the last sample of a block.
    pub fn fade_out_blocks(&self) -> u64 {
        let frames = FADE_OUT.as_nanos() as u64 * u64::from(self.sample_rate) / 1_000_000_000;
        frames.div_ceil(self.block_frames as u64).max(1)
    }

    /// Nanoseconds since [`epoch`](Self::epoch).
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Duration of one block in nanoseconds.
    pub fn block_ns(&self) -> u64 {
        self.block_frames as u64 * 1_000_000_000 / u64::from(self.sample_rate)
    }

    /// The engine's command counts as the active slot's worker last published them. Both
    /// workers apply the same commands and a spare joins with the counts in its snapshot,
    /// so the active one's are the server's, across failovers too.
    pub fn engine_counts(&self) -> WorkerCounts {
        let active = self.active.load(Ordering::Acquire).min(1);
        self.slots[active].slot.counts()
    }

    /// [`engine_counts`](Self::engine_counts), but only from a worker that has joined and
    /// lives: what it says of its engine is where the music is (a pair restored after a
    /// double fault says where it is catching up, behind it, until it joins).
    pub fn joined_engine_counts(&self) -> Option<WorkerCounts> {
        let link = &self.slots[self.active.load(Ordering::Acquire).min(1)];
        let live =
            link.ready.load(Ordering::Acquire) && link.dead_since_ns.load(Ordering::Acquire) == 0;
        live.then(|| link.slot.counts())
    }

    /// The depth now, in blocks (see [`crate::depth`]).
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// The control latency the depth makes now, in milliseconds (reported in `/metrics`).
    pub fn control_latency_ms(&self) -> f64 {
        self.depth() as f64 * self.block_ns() as f64 / 1e6
    }
}

/// A stamped command the block played has not passed yet: the engines may still hold it
/// waiting for its frame. Ordered so that the top of the (max-)heap is the earliest frame.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    frame: u64,
    /// Timed beyond the horizon it was stamped at (counted against [`MAX_ADMITTED_TIMED`]).
    timed: bool,
    command: Command,
    reply_to: Option<ReplyTo>,
}

impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> KeyOrdering {
        other.frame.cmp(&self.frame)
    }
}

impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<KeyOrdering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        self.frame == other.frame
    }
}

impl Eq for Waiting {}

/// How long no slot may have the blocks due before their workers are taken for hung and
/// replaced: longer than the stalls a loaded machine makes (both workers late alike, then
/// catching up), short beside the restart of a pair it would otherwise cause.
pub const STALL_GRACE: Duration = Duration::from_millis(32);

/// Room kept in [`OutputCore::waiting`] beyond [`MAX_ADMITTED`] for patch switches, which
/// are never refused (the OSC side already decodes against the new patch).
const SWITCH_ROOM: usize = 256;

/// A command to stamp, and what its stamping needs to know of it.
struct Stamp {
    command: Command,
    /// When it was received (ns since the epoch).
    received_ns: u64,
    /// The frame its timetag asks for (`None`: as soon as possible, the horizon).
    at_frame: Option<u64>,
    /// Who sent it (`None`: the server itself).
    reply_to: Option<ReplyTo>,
    /// Whether its wait counts in the command latency (a client's command does; the
    /// server's own do not).
    measured: bool,
}

/// The output thread's own state. Owned by exactly one thread (or device callback).
pub struct OutputCore {
    shared: Arc<OutputShared>,
    next_block: u64,
    horizon: u64,
    seq: u64,
    /// Commands stamped whose frame the block played has not reached: every worker at or
    /// ahead of the output holds at most these waiting (preallocated, never grows).
    waiting: BinaryHeap<Waiting>,
    /// How many of `waiting` are timed.
    timed_waiting: usize,
    last_frame: [f32; 2],
    fade_in: bool,
    /// Frames of the fade-out played so far, once it started.
    fade_out_played: Option<u64>,
    /// Commands went to the command log's queue in this period: wake its writer after.
    logged_this_period: bool,
    /// The loop that publishes [`OutputShared::clock`] from the sink's reports.
    clock: ClockLoop,
    /// The depth's decisions ([`crate::depth`]).
    depth: DepthControl,
    /// The overload protection's decisions ([`crate::overload`]).
    voice_guard: VoiceGuard,
    /// A voice limit decided, to stamp with the next block's commands.
    limit_to_stamp: Option<LimitChange>,
    /// The first block of the current run of blocks no slot had ([`NO_BLOCK`]: none).
    lacking_since: u64,
    /// How many blocks of such a run are a stall ridden out, before its workers are
    /// taken for hung ([`STALL_GRACE`]).
    stall_grace_blocks: u64,
    /// The frame of the sink's last hand-over (its period is the distance to the next).
    last_handed: Option<u64>,
    /// When this period's blocks are read ([`chronus_ipc::monotonic_ns`]): their deadline.
    read_at_ns: u64,
    /// The least slack of the blocks read since [`Self::slack_window_start`], in ns.
    slack_window_min: u64,
    slack_window_start: u64,
}

impl OutputCore {
    /// The clock at its first block (0, or where [`OutputShared::start_at`] put it).
    /// Workers may already render up to the horizon, `depth` blocks ahead.
    pub fn new(shared: Arc<OutputShared>) -> OutputCore {
        let next_block = shared.played.load(Ordering::Acquire);
        let block_ns = shared.block_ns().max(1);
        // The rings hold `audio_capacity` blocks; the depth keeps a few of them free.
        let ring_blocks = u64::from(shared.slots[0].slot.layout().audio_capacity);
        let most = ring_blocks.saturating_sub(4).max(1);
        let depth = DepthControl::new(shared.depth_setting, shared.period_blocks, block_ns, most);
        shared.depth.store(depth.depth(), Ordering::Relaxed);
        shared
            .metrics
            .depth_floor_blocks
            .store(depth.floor(), Ordering::Relaxed);
        let horizon = next_block + depth.depth();
        if let DepthSetting::Fixed(asked) = shared.depth_setting {
            if depth.depth() != asked {
                // Said in the log like any change (the notice reaches the supervisor loop).
                let change = DepthChange {
                    from: asked,
                    to: depth.depth(),
                    reason: DepthReason::Period(depth.floor()),
                };
                let _ = shared.notices.push(Notice::DepthChanged(change));
            }
        }
        for link in &shared.slots {
            if link.bound.load(Ordering::Acquire) {
                link.slot.publish_horizon(shared.worker_horizon(horizon));
            }
        }
        let seq = shared.seq_before_start.load(Ordering::Acquire);
        OutputCore {
            clock: ClockLoop::new(shared.sample_rate),
            shared,
            next_block,
            horizon,
            seq,
            waiting: BinaryHeap::with_capacity(MAX_ADMITTED + SWITCH_ROOM),
            timed_waiting: 0,
            last_frame: [0.0; 2],
            fade_in: false,
            fade_out_played: None,
            logged_this_period: false,
            depth,
            voice_guard: VoiceGuard::new(block_ns),
            limit_to_stamp: None,
            lacking_since: NO_BLOCK,
            stall_grace_blocks: (STALL_GRACE.as_nanos() as u64).div_ceil(block_ns),
            last_handed: None,
            read_at_ns: 0,
            slack_window_min: u64::MAX,
            slack_window_start: next_block,
        }
    }

    /// The first frame the next [`render_next`](Self::render_next) plays (frames counted
    /// since block 0 of the server's timeline).
    pub fn next_frame(&self) -> u64 {
        self.next_block * self.shared.block_frames as u64
    }

    /// The sink's word that its clock jumped (see [`ClockLoop::jumped`]).
    pub fn clock_jumped(&mut self) {
        self.clock.jumped();
    }

    /// The sink's report, once per period: `frame` is handed to the sound system at
    /// `at_ns` (ns since [`OutputShared::epoch`]). Feeds the clock model that maps
    /// timetags to frames. Allocation-, lock- and panic-free.
    pub fn handed_over(&mut self, frame: u64, at_ns: u64) {
        self.clock.observe(&self.shared.clock, frame, at_ns);
        if let Some(last) = self.last_handed.filter(|last| *last < frame) {
            let blocks = (frame - last).div_ceil(self.shared.block_frames as u64);
            let change = self.depth.period_seen(blocks);
            let shared = Arc::clone(&self.shared);
            shared
                .metrics
                .depth_floor_blocks
                .store(self.depth.floor(), Ordering::Relaxed);
            self.apply_depth(&shared, change);
        }
        self.last_handed = Some(frame);
    }

    /// Applies a depth change the controller decided: published for the horizon, counted
    /// and logged (by the supervisor loop, from the notice).
    fn apply_depth(&mut self, shared: &OutputShared, change: Option<DepthChange>) {
        if let Some(change) = change {
            shared.depth.store(change.to, Ordering::Relaxed);
            Metrics::bump(&shared.metrics.depth_changes);
            self.notify(shared, Notice::DepthChanged(change));
        }
    }

    /// A block was read `slack_ns` after its serving workers had it (they render a block
    /// in `render_ns`): the depth's input,
    /// and the least slack of each second for `/metrics`.
    fn slack_seen(&mut self, shared: &OutputShared, block: u64, slack_ns: u64, render_ns: u64) {
        self.slack_window_min = self.slack_window_min.min(slack_ns);
        let window_blocks = u64::from(shared.sample_rate) / shared.block_frames as u64;
        if block >= self.slack_window_start + window_blocks.max(1) {
            shared
                .metrics
                .block_slack_min_ns
                // At least 1 ns: 0 reads as "not measured yet".
                .store(self.slack_window_min.max(1), Ordering::Relaxed);
            self.slack_window_min = u64::MAX;
            self.slack_window_start = block;
        }
        let change = self.depth.block_read(slack_ns, render_ns);
        self.apply_depth(shared, change);
    }

    /// The shared state.
    pub fn shared(&self) -> &Arc<OutputShared> {
        &self.shared
    }

    /// Plays the next blocks into `out` (interleaved stereo, a whole number of blocks of
    /// `2 * block_frames` samples: one for a device callback, a period's worth for the paced
    /// sink), then wakes the workers and the supervisor loop once for all of them: a wake
    /// crosses processes and costs more than playing a block. Never blocks, locks,
    /// allocates or panics (samples past the last whole block are set to 0.0).
    pub fn render_next(&mut self, out: &mut [f32]) {
        let shared = Arc::clone(&self.shared);
        self.read_at_ns = chronus_ipc::monotonic_ns();
        let block_len = shared.block_frames * 2;
        let mut blocks = out.chunks_exact_mut(block_len);
        for block_out in &mut blocks {
            self.play_block(&shared, block_out);
        }
        blocks.into_remainder().fill(0.0);

        // Workers wait for the horizon to pass the block they are at: one publish for
        // the period lets them render all of it.
        let horizon = shared.worker_horizon(self.horizon);
        for link in &shared.slots {
            if link.bound.load(Ordering::Acquire) {
                link.slot.publish_horizon(horizon);
            }
        }
        // The supervisor loop sleeps until there is something for it.
        let flagged = shared
            .slots
            .iter()
            .any(|link| link.overflowed.load(Ordering::Relaxed));
        if flagged || !shared.notices.is_empty() {
            shared.wake.signal();
        }
        if std::mem::take(&mut self.logged_this_period) {
            if let Some(log) = &shared.command_log {
                log.wake_writer();
            }
        }
    }

    /// Plays one block into `out`: stamps what came in, moves the horizon (published to
    /// the workers by [`render_next`](Self::render_next) after the period), reads the block
    /// from the slots, fades and records it.
    fn play_block(&mut self, shared: &OutputShared, out: &mut [f32]) {
        let block = self.next_block;
        let restart = shared.pair_to_bind.swap(0, Ordering::AcqRel);
        if restart != 0 {
            for link in &shared.slots {
                link.bound.store(true, Ordering::Release);
            }
            let first_seq = self.seq + 1;
            self.notify(shared, Notice::PairBound { restart, first_seq });
        }
        let bound = [
            shared.slots[0].bound.load(Ordering::Acquire),
            shared.slots[1].bound.load(Ordering::Acquire),
        ];
        self.stamp_inbound(shared, bound, block);
        self.stamp_voice_limit(shared, bound, block);

        // The commands above were stamped for block + depth (the old horizon), so workers
        // may now render through it: `depth` blocks ahead of the one playing now.
        self.horizon = self.horizon.max(block + self.depth.depth() + 1);
        shared.horizon.store(self.horizon, Ordering::Release);

        self.read_block(shared, bound, block, out);
        self.watch_load(shared, bound, block);
        // A callback clock (JACK, a device) asks for blocks until it is closed, after the
        // fade is out; the recordings end with the fade, as the paced sink's do.
        let faded_before = shared.has_faded_out();
        self.fade_out(shared, out);
        if let Some(ring) = shared.recording.as_ref().filter(|_| !faded_before) {
            if !ring.push(out) {
                Metrics::bump(&shared.metrics.record_blocks_dropped);
            }
        }
        // Wait-free and allocation-free, like the recording ring; a full ring (the notify
        // thread fell behind) loses the block for the analysis only.
        let topics =
            chronus_protocol::Topics::from_bits(shared.notify_topics.load(Ordering::Relaxed));
        // Stamped with its first frame, for `/notify audio`'s `first frame`.
        let frame = block * shared.block_frames as u64;
        if topics.any_audio() && !shared.monitor.push_stamped(frame, out) {
            Metrics::bump(&shared.metrics.notify_dropped);
        }

        for (link, bound) in shared.slots.iter().zip(bound) {
            if bound {
                link.slot.release_through(block + 1);
            }
        }
        self.next_block = block + 1;
        self.retire_waiting(self.next_block * shared.block_frames as u64);
        shared.played.store(self.next_block, Ordering::Release);
        Metrics::bump(&shared.metrics.blocks_played);
    }

    /// Once a fade-out is asked for, scales the blocks from here by a linear ramp that
    /// reaches exactly 0.0 on the last frame of its last block, and plays exactly 0.0
    /// after it; says so in [`OutputShared::faded_out`].
    fn fade_out(&mut self, shared: &OutputShared, out: &mut [f32]) {
        if self.fade_out_played.is_none() && shared.fade_out.load(Ordering::Acquire) {
            self.fade_out_played = Some(0);
        }
        let Some(played) = self.fade_out_played.as_mut() else {
            return;
        };
        let last = (shared.fade_out_blocks() * shared.block_frames as u64).saturating_sub(1);
        for frame in out.chunks_exact_mut(2) {
            let gain = if *played >= last {
                0.0
            } else {
                (last - *played) as f32 / last as f32
            };
            for sample in frame {
                // Adding 0.0 turns a -0.0 into 0.0: the silence is exactly zero.
                *sample = *sample * gain + 0.0;
            }
            *played += 1;
        }
        if *played > last {
            shared.faded_out.store(true, Ordering::Release);
        }
    }

    fn stamp_inbound(&mut self, shared: &OutputShared, bound: [bool; 2], block: u64) {
        for _ in 0..MAX_INBOUND_PER_BLOCK {
            let Some(item) = shared.inbound.pop() else {
                break;
            };
            match item {
                Inbound::Command {
                    command,
                    received_ns,
                    at_frame,
                    reply_to,
                } => {
                    if let Command::VoiceLimit { voices } = command {
                        self.voice_guard.client_set(voices);
                        shared
                            .metrics
                            .voice_limit
                            .store(u64::from(voices), Ordering::Relaxed);
                    }
                    let stamp = Stamp {
                        command,
                        received_ns,
                        at_frame,
                        reply_to,
                        measured: true,
                    };
                    self.stamp_command(shared, bound, block, stamp);
                }
                Inbound::Sync { id, reply_to } => {
                    Metrics::bump(&shared.metrics.commands_answered);
                    self.notify(shared, Notice::Synced { id, reply_to })
                }
                Inbound::Replay {
                    stamped,
                    restart,
                    gate_after,
                } => {
                    if !shared.replay_gate.is_for(restart) {
                        continue;
                    }
                    push_to_bound(shared, bound, |generation| stamped.to_record(generation));
                    shared.replay_gate.raise(restart, gate_after);
                }
                Inbound::ReplayDone { restart } => shared.replay_gate.raise(restart, NO_BLOCK),
                Inbound::PatchChunk(mut chunk) => {
                    self.seq += 1;
                    chunk.seq = self.seq;
                    push_to_bound(shared, bound, |generation| chunk.to_record(generation));
                }
                Inbound::Snapshot { request } => {
                    let active = shared.active.load(Ordering::Relaxed);
                    self.seq += 1;
                    let control = Control::Snapshot {
                        request,
                        block: self.horizon,
                    };
                    self.push_control(shared, active, control);
                    self.notify(
                        shared,
                        Notice::SnapshotRequested {
                            request,
                            slot: active,
                            block: self.horizon,
                        },
                    );
                }
                Inbound::Fault { fault, slot } => {
                    Metrics::bump(&shared.metrics.commands_answered);
                    let target = slot.unwrap_or_else(|| shared.active.load(Ordering::Relaxed));
                    self.seq += 1;
                    let control = Control::Fault {
                        fault,
                        block: self.horizon,
                    };
                    self.push_control(shared, target, control);
                }
            }
        }
    }

    /// Stamps one command at its frame (the horizon, or its timetag's frame if later):
    /// admitted or refused, kept until its frame is played, pushed to the bound workers,
    /// logged, its latency measured, and the supervisor told. Says whether it was
    /// stamped (false: refused, the queue being full).
    fn stamp_command(
        &mut self,
        shared: &OutputShared,
        bound: [bool; 2],
        block: u64,
        stamp: Stamp,
    ) -> bool {
        let Stamp {
            command,
            received_ns,
            at_frame,
            reply_to,
            measured,
        } = stamp;
        let horizon_frame = self.horizon * shared.block_frames as u64;
        let frame = match at_frame {
            Some(wanted) if wanted >= horizon_frame => wanted,
            Some(_) => {
                Metrics::bump(&shared.metrics.late_commands);
                horizon_frame
            }
            None => horizon_frame,
        };
        let timed = frame > horizon_frame;
        let switch = matches!(command, Command::SwitchPatch { .. });
        if !switch && !self.admits(timed) {
            Metrics::bump(&shared.metrics.commands_dropped_queue_full);
            let why = Refusal::QueueFull;
            self.notify(
                shared,
                Notice::Refused {
                    command,
                    reply_to,
                    why,
                },
            );
            return false;
        }
        // A tracks switch leaves every module where it was: nothing is stale.
        if matches!(command, Command::SwitchPatch { at, .. } if !at.tracks_only()) {
            self.refuse_stale(shared, frame);
        }
        self.keep_waiting(Waiting {
            frame,
            timed,
            command,
            reply_to,
        });
        self.seq += 1;
        let stamped = StampedCommand {
            seq: self.seq,
            frame,
            command,
        };
        push_to_bound(shared, bound, |generation| stamped.to_record(generation));
        let now = shared.now_ns();
        if let Some(log) = &shared.command_log {
            let logged = LoggedCommand {
                stamped,
                stamped_ns: now,
            };
            if log.push(logged).is_err() {
                Metrics::bump(&shared.metrics.command_log_dropped);
            }
            self.logged_this_period = true;
        }
        // How long an untimed command waits to be heard (a timed one waits for
        // the time its client chose).
        if !timed && measured {
            let heard = self.heard_after(shared, frame, block, received_ns, now);
            shared.metrics.command_latency.record_ns(heard);
        }
        self.notify(
            shared,
            Notice::Stamped {
                stamped,
                received_ns,
                reply_to,
            },
        );
        true
    }

    /// Feeds the overload protection what the block just played says of the workers:
    /// the faster rendering worker's render time (a lone slow worker is a fault, not an
    /// overload), how far the slower has rendered, and the voices sounding.
    fn watch_load(&mut self, shared: &OutputShared, bound: [bool; 2], block: u64) {
        let mut render_ns = u64::MAX;
        let mut rendered = u64::MAX;
        for (link, bound) in shared.slots.iter().zip(bound) {
            // Every live worker of this binding that renders counts, ready or not: a pair
            // restarted from the restore point into an overload catches up only once the
            // guard sheds voices, and until it catches up it is not ready.
            let last_render_ns = link.slot.last_render_ns();
            let rendering =
                bound && last_render_ns > 0 && link.dead_since_ns.load(Ordering::Acquire) == 0;
            if rendering {
                render_ns = render_ns.min(last_render_ns);
                rendered = rendered.min(link.slot.rendered());
            }
        }
        if render_ns == u64::MAX || self.limit_to_stamp.is_some() {
            return;
        }
        let active = shared.active.load(Ordering::Relaxed).min(1);
        let seen = BlockSeen {
            block,
            horizon: self.horizon,
            render_ns,
            rendered,
            voices: shared.slots[active].slot.voices(),
            now_ns: self.read_at_ns,
        };
        self.limit_to_stamp = self.voice_guard.block_played(seen);
    }

    /// Stamps the voice limit the overload protection decided, with this block's
    /// commands, when the queue has room for it (else with a later block's).
    fn stamp_voice_limit(&mut self, shared: &OutputShared, bound: [bool; 2], block: u64) {
        let Some(change) = self.limit_to_stamp else {
            return;
        };
        if !self.admits(false) {
            return;
        }
        self.limit_to_stamp = None;
        let stamp = Stamp {
            command: Command::VoiceLimit {
                voices: change.voices,
            },
            received_ns: shared.now_ns(),
            at_frame: None,
            reply_to: None,
            measured: false,
        };
        if self.stamp_command(shared, bound, block, stamp) {
            Metrics::bump(&shared.metrics.voice_limit_changes);
            shared
                .metrics
                .voice_limit
                .store(u64::from(change.voices), Ordering::Relaxed);
            self.notify(shared, Notice::VoiceLimitChanged(change));
        }
    }

    /// How long after `received_ns` the frame `frame` is handed to the sound system: by
    /// the clock model once it has a line, else counted from `block`, which plays `now`.
    fn heard_after(
        &self,
        shared: &OutputShared,
        frame: u64,
        block: u64,
        received_ns: u64,
        now: u64,
    ) -> u64 {
        let heard = match self.clock.mapping() {
            Some(line) => line.time_of(frame).max(0.0) as u64,
            None => {
                let ahead = frame.saturating_sub(block * shared.block_frames as u64);
                now + ahead.saturating_mul(1_000_000_000) / u64::from(shared.sample_rate)
            }
        };
        heard.saturating_sub(received_ns)
    }

    /// Whether one more command may wait for its frame: fewer than [`MAX_ADMITTED`] wait,
    /// and fewer than [`MAX_ADMITTED_TIMED`] timed ones for a timed command. A worker at or
    /// ahead of the block played holds at most these; one behind it (catching up) holds
    /// also those due in between, for which the engine has room to spare.
    fn admits(&self, timed: bool) -> bool {
        self.waiting.len() < MAX_ADMITTED && !(timed && self.timed_waiting >= MAX_ADMITTED_TIMED)
    }

    /// Counts a stamped command as waiting until the block played passes its frame.
    fn keep_waiting(&mut self, command: Waiting) {
        // Only patch switches go past MAX_ADMITTED; beyond the room kept for them they are
        // not counted rather than grow the heap (it never allocates).
        if self.waiting.len() < self.waiting.capacity() {
            self.timed_waiting += usize::from(command.timed);
            self.waiting.push(command);
        }
    }

    /// Forgets the waiting commands due before `frame`: every worker at or ahead of the
    /// block played has applied them.
    fn retire_waiting(&mut self, frame: u64) {
        while self.waiting.peek().is_some_and(|w| w.frame < frame) {
            if let Some(done) = self.waiting.pop() {
                self.timed_waiting -= usize::from(done.timed);
            }
        }
    }

    /// A patch switch is being stamped for `frame`: the commands stamped before it and due
    /// after it were decoded for the patch it replaces, so every engine drops them at the
    /// switch (see `Engine`). Their senders are told now, and the command log and a replay
    /// agree, since both hold the same commands in the same order.
    fn refuse_stale(&mut self, shared: &OutputShared, frame: u64) {
        for stale in self.waiting.iter().filter(|w| w.frame > frame) {
            let refused = Notice::Refused {
                command: stale.command,
                reply_to: stale.reply_to,
                why: Refusal::Stale,
            };
            if shared.notices.push(refused).is_err() {
                Metrics::bump(&shared.metrics.notices_dropped);
            }
        }
        self.waiting.retain(|w| w.frame <= frame);
        self.timed_waiting = self.waiting.iter().filter(|w| w.timed).count();
    }

    /// Pushes `control` into the ring of `slot` alone (if bound).
    fn push_control(&self, shared: &OutputShared, slot: usize, control: Control) {
        let bound = [0, 1].map(|i| i == slot && shared.slots[i].bound.load(Ordering::Acquire));
        push_to_bound(shared, bound, |generation| {
            control.to_record(self.seq, generation)
        });
    }

    fn notify(&self, shared: &OutputShared, notice: Notice) {
        if shared.notices.push(notice).is_err() {
            Metrics::bump(&shared.metrics.notices_dropped);
        }
    }

    /// Fills `out` with block `block` from the active slot, failing over when needed.
    fn read_block(&mut self, shared: &OutputShared, bound: [bool; 2], block: u64, out: &mut [f32]) {
        let active = shared.active.load(Ordering::Relaxed).min(1);
        let other = 1 - active;
        let active_link = &shared.slots[active];
        let other_link = &shared.slots[other];
        let other_ready = bound[other] && other_link.ready.load(Ordering::Acquire);
        // Fail over only to a live worker: a dead standby's blocks may still be read, but
        // switching to it (and counting a failover) would be a lie.
        let other_live = other_ready && other_link.dead_since_ns.load(Ordering::Acquire) == 0;
        let dead_since = active_link.dead_since_ns.load(Ordering::Acquire);
        let active_dead = dead_since != 0;

        let got_active = !active_dead && bound[active] && active_link.slot.read_block(block, out);
        let served = if got_active {
            let mut done = active_link.slot.block_done_ns(block);
            let mut render_ns = active_link.slot.last_render_ns();
            if other_ready {
                match other_link.slot.block_equals(block, out) {
                    Some(equal) => {
                        done = done.max(other_link.slot.block_done_ns(block));
                        render_ns = render_ns.max(other_link.slot.last_render_ns());
                        Metrics::bump(&shared.metrics.lockstep_blocks_compared);
                        if !equal {
                            Metrics::bump(&shared.metrics.lockstep_mismatches);
                            // Reported once per binding; the supervisor retires the slot.
                            if first_report(&other_link.diverged_block, block) {
                                self.notify(shared, Notice::Diverged { slot: other, block });
                            }
                        }
                    }
                    None => {
                        if first_report(&other_link.missed_block, block) {
                            // A miss, though the active one covered it: the depth learns.
                            let change = self.depth.missed();
                            self.apply_depth(shared, change);
                            self.notify(shared, Notice::StandbyMissed { slot: other, block });
                        }
                    }
                }
            }
            if let Some(done) = done {
                let slack = self.read_at_ns.saturating_sub(done);
                self.slack_seen(shared, block, slack, render_ns);
            }
            true
        } else if other_live && other_link.slot.read_block(block, out) {
            shared.active.store(other, Ordering::Release);
            let cause = if active_dead {
                FailoverCause::Dead
            } else {
                first_report(&active_link.missed_block, block);
                let change = self.depth.missed();
                self.apply_depth(shared, change);
                FailoverCause::MissedDeadline
            };
            let detected = if active_dead {
                dead_since
            } else {
                shared.now_ns()
            };
            shared
                .metrics
                .failover
                .record_ns(shared.now_ns().saturating_sub(detected));
            Metrics::bump(&shared.metrics.failover_count);
            self.notify(
                shared,
                Notice::Failover {
                    from: active,
                    to: other,
                    block,
                    cause,
                },
            );
            true
        } else if bound[active] && active_link.slot.read_block(block, out) {
            // A dead worker's blocks written before it died are still good.
            true
        } else {
            // No slot has the block. The first block of such a run is a miss for the depth;
            // the workers are replaced only if it lasts STALL_GRACE: a machine that stalled
            // for a few milliseconds delays both alike, and killing two workers that are
            // catching up would turn a short gap into a restart of the pair.
            let someone_due =
                (!active_dead && active_link.ready.load(Ordering::Acquire)) || other_live;
            if self.lacking_since == NO_BLOCK {
                self.lacking_since = block;
                // A miss of a worker that should have had it (not the silence of a pair
                // being restarted).
                if someone_due {
                    let change = self.depth.underran();
                    self.apply_depth(shared, change);
                }
            }
            let hung = block - self.lacking_since >= self.stall_grace_blocks;
            // Nobody to fail over to, and the active worker (joined, not known dead) is
            // late: report it once, so a hung worker is replaced rather than waited for.
            if hung
                && !active_dead
                && active_link.ready.load(Ordering::Acquire)
                && first_report(&active_link.missed_block, block)
            {
                self.notify(
                    shared,
                    Notice::ActiveMissed {
                        slot: active,
                        block,
                    },
                );
            }
            // A live standby that lacks the block as well is as late: report it too, so
            // two hung workers are both replaced (and the pair restarted) rather than the
            // second waited for in silence.
            if hung && other_live && first_report(&other_link.missed_block, block) {
                self.notify(shared, Notice::StandbyMissed { slot: other, block });
            }
            // A dead standby's blocks written before it died are still good: play them,
            // with no failover to it.
            other_ready && other_link.slot.read_block(block, out)
        };

        if served {
            self.lacking_since = NO_BLOCK;
            sanitize(out);
            if self.fade_in {
                let len = (out.len() / 2).max(1) as f32;
                for (i, frame) in out.chunks_exact_mut(2).enumerate() {
                    let gain = i as f32 / len;
                    frame[0] *= gain;
                    frame[1] *= gain;
                }
                self.fade_in = false;
            }
        } else {
            // Nothing to play: fade from the last sample to silence instead of clicking.
            let len = (out.len() / 2).max(1) as f32;
            for (i, frame) in out.chunks_exact_mut(2).enumerate() {
                let gain = 1.0 - (i + 1) as f32 / len;
                frame[0] = self.last_frame[0] * gain;
                frame[1] = self.last_frame[1] * gain;
            }
            self.fade_in = true;
            Metrics::bump(&shared.metrics.underruns);
            self.notify(shared, Notice::Underrun { block });
        }
        if let [.., l, r] = out {
            self.last_frame = [*l, *r];
        }
    }
}

/// How far the workers of a cold restart may render while their replay reaches their
/// rings (DESIGN.md invariant 6): they restart at the restore point, and may render a
/// block only once every replayed command due in it is in their rings. The supervisor
/// holds the gate at the restore point's block for restart `r`
/// ([`hold`](Self::hold)); the output raises it as it pushes each replayed command
/// ([`Inbound::Replay`]'s `gate_after`) and opens it at [`Inbound::ReplayDone`]. One
/// atomic word holds the restart (16 bits) and the block (48 bits), so the output's
/// raise cannot undo a newer restart's hold.
#[derive(Debug)]
pub struct ReplayGate(AtomicU64);

impl Default for ReplayGate {
    fn default() -> Self {
        ReplayGate(AtomicU64::new(ReplayGate::word(0, NO_BLOCK)))
    }
}

impl ReplayGate {
    const BLOCK_BITS: u32 = 48;
    const OPEN: u64 = (1 << ReplayGate::BLOCK_BITS) - 1;

    fn word(restart: u64, block: u64) -> u64 {
        (restart & 0xffff) << ReplayGate::BLOCK_BITS | block.min(ReplayGate::OPEN)
    }

    /// Supervisor: the workers of cold restart `restart` may render nothing past `block`
    /// until the output raises the gate.
    pub fn hold(&self, restart: u64, block: u64) {
        self.0
            .store(ReplayGate::word(restart, block), Ordering::Release);
    }

    /// Supervisor: no replay under way (a restart from the patch).
    pub fn open(&self) {
        self.0
            .store(ReplayGate::word(0, NO_BLOCK), Ordering::Release);
    }

    /// Whether the gate is held for cold restart `restart`.
    pub fn is_for(&self, restart: u64) -> bool {
        self.0.load(Ordering::Acquire) >> ReplayGate::BLOCK_BITS == restart & 0xffff
    }

    /// Output: lets the workers of cold restart `restart` render up to `block`
    /// ([`NO_BLOCK`]: without limit), unless another restart holds the gate now.
    pub fn raise(&self, restart: u64, block: u64) {
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let held = word & ReplayGate::OPEN;
                (word >> ReplayGate::BLOCK_BITS == restart & 0xffff && held != ReplayGate::OPEN)
                    .then(|| ReplayGate::word(restart, held.max(block)))
            });
    }

    /// `horizon`, or less while a replay holds the gate.
    pub fn limit(&self, horizon: u64) -> u64 {
        match self.0.load(Ordering::Acquire) & ReplayGate::OPEN {
            ReplayGate::OPEN => horizon,
            gate => horizon.min(gate),
        }
    }
}

/// Pushes the record `record_for(generation)` into the command ring of every slot
/// `bound` says, each under its own generation: the one way records reach the workers,
/// so both get the same ones in the same order. A full ring flags its slot (the
/// supervisor replaces its worker) and is counted.
fn push_to_bound(
    shared: &OutputShared,
    bound: [bool; 2],
    record_for: impl Fn(u32) -> chronus_ipc::CommandRecord,
) {
    for (link, bound) in shared.slots.iter().zip(bound) {
        if bound {
            let record = record_for(link.generation.load(Ordering::Acquire));
            if !link.slot.push_command(&record) {
                link.overflowed.store(true, Ordering::Release);
                Metrics::bump(&shared.metrics.ring_overflows);
            }
        }
    }
}

/// Records `block` in a slot's report latch (`missed_block`, `diverged_block`) if it holds
/// [`NO_BLOCK`], and says whether it did: each kind of fault is reported once per binding
/// (the supervisor resets the latches when it binds a new worker). Only the output writes
/// them.
fn first_report(latch: &AtomicU64, block: u64) -> bool {
    let first = latch.load(Ordering::Relaxed) == NO_BLOCK;
    if first {
        latch.store(block, Ordering::Release);
    }
    first
}

/// Replaces anything a worker could have written that must not reach a speaker.
fn sanitize(out: &mut [f32]) {
    for sample in out {
        *sample = if sample.is_finite() {
            sample.clamp(-1.0, 1.0)
        } else {
            0.0
        };
    }
}
