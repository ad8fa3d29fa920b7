//! The worker process: one engine bound to one slot.
//!
//! A worker is the `chronus` binary re-executed as `chronus worker …` with its slot and the
//! snapshot area handed over as inherited fds. It owns no sockets and no devices. It
//! reads stamped commands from its slot's command ring, renders every block the horizon
//! allows into the slot's audio ring, beats its heartbeat, and dies with its supervisor.
//!
//! Start-up is either *fresh* (a new stream, or a cold restart, from the patch's initial
//! state at a given block) or *joining*: restore the snapshot the active worker wrote at
//! a block boundary, skip ring records already contained in it, and render ahead as fast
//! as possible until reaching the horizon; only then does it mark itself joined.

use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

use chronus_dsp::PatchDesc;
use chronus_ipc::{Slot, SnapshotArea, SnapshotMeta, WorkerCounts, WriteOutcome};

use crate::command::{Control, Fault, Instruction};
use crate::engine::{Engine, EngineConfig, ReceiveError};

/// How a worker gets its initial state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// From the patch's initial state, rendering `block` first.
    Fresh {
        /// First block to render.
        block: u64,
    },
    /// From the snapshot the active worker publishes for `request`.
    Join {
        /// Snapshot request id to wait for.
        request: u64,
    },
}

/// A point of a spare's join at which fault injection makes it die (see
/// [`WorkerArgs::die_at`]): what timing alone cannot hit reliably.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinPoint {
    /// Right after it attached to its slot, before it has a snapshot.
    Starting,
    /// With the snapshot read but not loaded yet.
    Snapshot,
    /// After restoring, while it renders the blocks behind the output to catch up.
    CatchingUp,
    /// Joined and ready (half a second after it caught up).
    Ready,
}

impl JoinPoint {
    /// Every point, in join order.
    pub const ALL: [JoinPoint; 4] = [
        JoinPoint::Starting,
        JoinPoint::Snapshot,
        JoinPoint::CatchingUp,
        JoinPoint::Ready,
    ];

    /// Its name on command lines and in OSC (`starting`, `snapshot`, `catching-up`,
    /// `ready`).
    pub fn name(self) -> &'static str {
        match self {
            JoinPoint::Starting => "starting",
            JoinPoint::Snapshot => "snapshot",
            JoinPoint::CatchingUp => "catching-up",
            JoinPoint::Ready => "ready",
        }
    }

    /// The point named `name`.
    pub fn from_name(name: &str) -> Option<JoinPoint> {
        JoinPoint::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// Asks for real-time scheduling for this thread (where allowed) and logs what it got.
fn become_realtime() {
    let scheduling =
        chronus_realtime::make_current_thread_realtime(chronus_realtime::WORKER_PRIORITY);
    tracing::debug!("worker {}: {scheduling:?}", std::process::id());
}

/// Dies here if fault injection asked for it: `abort`, as a crash would.
fn die_if(die_at: Option<JoinPoint>, here: JoinPoint) {
    if die_at == Some(here) {
        // Fault injection, asked for explicitly by a server started with it enabled.
        std::process::abort();
    }
}

/// Everything a worker process needs, parsed from its command line by the CLI.
#[derive(Debug)]
pub struct WorkerArgs {
    /// The slot's shared memory.
    pub slot_fd: OwnedFd,
    /// The snapshot area's shared memory.
    pub snapshot_fd: OwnedFd,
    /// Generation of the slot binding this worker serves; older records are ignored.
    pub generation: u32,
    /// The patch to compile (must be the one the supervisor and the other worker use).
    pub patch: PatchDesc,
    /// Stream settings.
    pub config: EngineConfig,
    /// Fresh or joining.
    pub start: StartMode,
    /// The supervisor's pid; the worker exits when it is no longer its parent.
    pub parent_pid: u32,
    /// Ask for real-time scheduling for the render loop.
    pub realtime: bool,
    /// Fault injection: die at this point of joining (a spare only).
    pub die_at: Option<JoinPoint>,
    /// A spare joining a worker that is heard: catch up at normal priority, and ask for
    /// real-time scheduling only once caught up, so the catch-up never takes the CPU from
    /// the worker being heard. (A pair restarting together has no one to spare: it asks
    /// at once.)
    pub quiet_catch_up: bool,
}

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The slot or snapshot area could not be mapped or does not match.
    #[error("shared memory: {0}")]
    Ipc(#[from] chronus_ipc::IpcError),
    /// The patch did not compile.
    #[error("patch: {0}")]
    Patch(#[from] chronus_dsp::PatchError),
    /// The slot was made for another block size or channel count.
    #[error("slot layout {found:?} does not match block {block_frames} x 2 channels")]
    Layout {
        /// What the slot says.
        found: chronus_ipc::SlotLayout,
        /// What the worker was told.
        block_frames: usize,
    },
    /// The snapshot to join from never arrived.
    #[error("no snapshot for request {0} within {1:?}")]
    SnapshotTimeout(u64, Duration),
    /// The snapshot arrived but does not fit this engine.
    #[error("snapshot: {0}")]
    Snapshot(#[from] crate::engine::SnapshotError),
    /// The supervisor is gone; nothing to render for.
    #[error("supervisor (pid {0}) is gone")]
    Orphaned(u32),
    /// More commands wait for their frame than the engine holds. The stamping side admits
    /// far fewer, so this worker has left its accounting: it exits (and is replaced from
    /// its partner) rather than drop a command its partner keeps and diverge.
    #[error(
        "{0} commands already wait for their frame; leaving the lockstep rather than drop one"
    )]
    QueueOverflow(usize),
}

/// How long a joining worker waits for its snapshot before giving up (the supervisor
/// then treats it as failed and builds another).
const SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// Longest sleep while waiting for the horizon; bounds how late an orphan notices.
const HORIZON_WAIT: Duration = Duration::from_millis(50);

/// Runs a worker until its supervisor goes away. Only returns with an error.
///
/// # Errors
/// See [`WorkerError`]; every variant is fatal for this worker.
pub fn run_worker(args: WorkerArgs) -> Result<std::convert::Infallible, WorkerError> {
    let slot = Slot::attach(args.slot_fd)?;
    let snapshots = SnapshotArea::attach(args.snapshot_fd)?;
    let layout = slot.layout();
    if layout.block_frames as usize != args.config.block_frames || layout.channels != 2 {
        return Err(WorkerError::Layout {
            found: layout,
            block_frames: args.config.block_frames,
        });
    }
    let generation = args.generation;
    let start_block = match args.start {
        StartMode::Fresh { block } => block,
        StartMode::Join { .. } => 0,
    };
    let mut engine = Engine::new(&args.patch, args.config, start_block)?;
    // A spare catches up at normal priority (see `quiet_catch_up`).
    let mut realtime_when_joined = args.realtime && args.quiet_catch_up;
    if args.realtime && !realtime_when_joined {
        become_realtime();
    }
    slot.set_worker_pid(std::process::id());
    slot.mark_attached(generation);
    die_if(args.die_at, JoinPoint::Starting);

    if let StartMode::Join { request } = args.start {
        let mut bytes = Vec::new();
        let deadline = Instant::now() + SNAPSHOT_WAIT;
        loop {
            if let Some(SnapshotMeta { .. }) = snapshots.read(request, &mut bytes) {
                die_if(args.die_at, JoinPoint::Snapshot);
                engine.load_snapshot(&bytes)?;
                break;
            }
            if Instant::now() > deadline {
                return Err(WorkerError::SnapshotTimeout(request, SNAPSHOT_WAIT));
            }
            check_parent(args.parent_pid)?;
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    let mut snapshot_buf = vec![0u8; engine.snapshot_len()];
    let mut block = vec![0.0f32; args.config.block_frames * 2];
    let mut loop_state = LoopState {
        snapshot_seq: engine.last_seq(),
        ..LoopState::default()
    };
    let mut joined = false;
    let mut unwritten: Option<u64> = None;
    // Fault injection at `JoinPoint::Ready`: the block to die at, once joined.
    let ready_blocks =
        u64::from(args.config.sample_rate) / 2 / args.config.block_frames.max(1) as u64;
    let mut die_when_ready_at = None;
    loop {
        // Read the horizon *before* draining: the output pushes every command for blocks
        // below a horizon before it publishes that horizon, so after this load the ring
        // holds everything that can affect the blocks we are about to render.
        let horizon = slot.horizon();
        drain_ring(&slot, generation, &mut engine, &mut loop_state)?;
        slot.publish_counts(&worker_counts(&engine));
        let next = engine.next_block();

        if let Some((request, at)) = loop_state.snapshot {
            if at <= next && unwritten.is_none() {
                // Patch switches change the snapshot's size: grow the buffer (rarely).
                let needed = engine.snapshot_len();
                if snapshot_buf.len() < needed {
                    snapshot_buf.resize(needed, 0);
                }
                let len = engine.save_snapshot(&mut snapshot_buf);
                let meta = SnapshotMeta {
                    request,
                    block: next,
                    last_seq: engine.last_seq(),
                    len: len as u64,
                };
                // A failed publish (too large) leaves the joiner waiting; it times out and
                // the supervisor sees the failure. It cannot happen with a correctly sized area.
                let _ = snapshots.publish(meta, &snapshot_buf[..len]);
                loop_state.snapshot = None;
            }
        }
        loop_state.inject_faults(next, &mut engine);

        // A block rendered earlier but not yet accepted by a full ring goes first.
        if let Some(index) = unwritten {
            match slot.write_block(index, &block) {
                WriteOutcome::Full => {
                    slot.wait_for_horizon(slot.horizon(), Duration::from_millis(1));
                    check_parent(args.parent_pid)?;
                    continue;
                }
                _ => unwritten = None,
            }
        }

        if next >= horizon {
            if !joined {
                // Caught up with the gate: every block the output may ask for from now on
                // will be rendered in time, like the active worker's.
                slot.mark_joined(generation);
                joined = true;
                if std::mem::take(&mut realtime_when_joined) {
                    become_realtime();
                }
                die_when_ready_at = Some(next + ready_blocks);
            }
            slot.beat();
            slot.wait_for_horizon(next, HORIZON_WAIT);
            check_parent(args.parent_pid)?;
            continue;
        }

        if !joined {
            die_if(args.die_at, JoinPoint::CatchingUp);
        }
        if die_when_ready_at.is_some_and(|at| next >= at) {
            die_if(args.die_at, JoinPoint::Ready);
        }
        let started = Instant::now();
        engine.render_block_with(&mut block, |seq| slot.set_applying(next, seq));
        if loop_state.diverge_at.is_some_and(|b| b <= next) {
            // Fault injection: off the lockstep by a hair, audibly nothing.
            if let Some(first) = block.first_mut() {
                *first += 1.0e-4;
            }
        }
        if loop_state.slow_micros > 0 {
            busy_wait(Duration::from_micros(u64::from(loop_state.slow_micros)));
        }
        if slot.write_block(next, &block) == WriteOutcome::Full {
            unwritten = Some(next);
        }
        slot.set_rendered(next + 1);
        slot.record_render_ns(started.elapsed().as_nanos() as u64);
        slot.set_voices(engine.patch().voices_sounding() as u64);
        slot.publish_counts(&worker_counts(&engine));
        // Old patches are freed here, outside the render path.
        while engine.take_retired().is_some() {}
        slot.beat();
    }
}

/// Requests picked up from the ring that act at a later block.
#[derive(Debug, Default)]
struct LoopState {
    /// Records up to this sequence number are already in the snapshot this worker joined
    /// from (0 for a fresh worker). Not `engine.last_seq()`: records may arrive out of seq
    /// order when the supervisor replays history after a cold restart.
    snapshot_seq: u64,
    snapshot: Option<(u64, u64)>,
    crash_at: Option<u64>,
    hang_at: Option<u64>,
    slow_from: Option<(u64, u32)>,
    diverge_at: Option<u64>,
    segv_at: Option<u64>,
    dsp_panic_at: Option<u64>,
    slow_micros: u32,
}

impl LoopState {
    fn inject_faults(&mut self, next: u64, engine: &mut Engine) {
        if self.crash_at.is_some_and(|b| b <= next) {
            // Fault injection, asked for explicitly by a server started with it enabled.
            std::process::abort();
        }
        if self.segv_at.is_some_and(|b| b <= next) {
            // As a memory error would: the default action of SIGSEGV ends the process.
            let _ = rustix::process::kill_process(
                rustix::process::getpid(),
                rustix::process::Signal::SEGV,
            );
        }
        if self.dsp_panic_at.take_if(|b| *b <= next).is_some() {
            engine.panic_in_next_process();
        }
        if self.hang_at.is_some_and(|b| b <= next) {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
        if let Some((from, micros)) = self.slow_from {
            if from <= next {
                self.slow_micros = micros;
                self.slow_from = None;
            }
        }
    }
}

/// Moves everything in the command ring into the engine (or the loop state).
///
/// # Errors
/// [`WorkerError::QueueOverflow`] when the engine cannot hold a command.
fn drain_ring(
    slot: &Slot,
    generation: u32,
    engine: &mut Engine,
    state: &mut LoopState,
) -> Result<(), WorkerError> {
    while let Some(record) = slot.pop_command() {
        if record.generation != generation {
            slot.count_rejected();
            continue;
        }
        match Instruction::from_record(&record) {
            Ok(Instruction::Stamped(stamped)) => {
                // Already contained in the snapshot we joined from.
                if stamped.seq <= state.snapshot_seq {
                    continue;
                }
                match engine.receive(stamped) {
                    Err(ReceiveError::Full) => {
                        return Err(WorkerError::QueueOverflow(engine.commands_waiting()))
                    }
                    // A patch switch it cannot use is counted by the engine and ignored,
                    // alike in every worker.
                    Ok(()) | Err(ReceiveError::BadPatch { .. }) => {}
                }
            }
            Ok(Instruction::Control(control)) => match control {
                Control::Snapshot { request, block } => state.snapshot = Some((request, block)),
                Control::Fault { fault, block } => match fault {
                    Fault::Crash => state.crash_at = Some(block),
                    Fault::Hang => state.hang_at = Some(block),
                    Fault::Slow { micros } => state.slow_from = Some((block, micros)),
                    Fault::Diverge => state.diverge_at = Some(block),
                    Fault::Segv => state.segv_at = Some(block),
                    Fault::DspPanic => state.dsp_panic_at = Some(block),
                },
            },
            Ok(Instruction::PatchChunk(chunk)) => {
                if chunk.seq > state.snapshot_seq {
                    engine.receive_chunk(&chunk);
                }
            }
            Err(_) => slot.count_rejected(),
        }
    }
    Ok(())
}

/// The engine's counts as the slot header carries them to the supervisor's metrics.
fn worker_counts(engine: &Engine) -> WorkerCounts {
    let counters = engine.counters();
    WorkerCounts {
        applied: counters.applied,
        late: counters.late,
        stale: counters.stale,
        bad_patches: counters.bad_patches,
        waiting: engine.commands_waiting() as u64,
        voice_steals: engine.patch().voice_steals(),
        clock_millibeats: engine
            .sequencer()
            .millibeats_at(engine.next_block() * engine.config().block_frames as u64)
            .unwrap_or(WorkerCounts::CLOCK_STOPPED),
        clock_millibpm: u64::from(engine.sequencer().millibpm()),
    }
}

fn check_parent(parent_pid: u32) -> Result<(), WorkerError> {
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if parent == parent_pid {
        Ok(())
    } else {
        Err(WorkerError::Orphaned(parent_pid))
    }
}

fn busy_wait(duration: Duration) {
    let until = Instant::now() + duration;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, StampedCommand};
    use chronus_ipc::SlotLayout;

    fn engine() -> Engine {
        let config = EngineConfig::new(48_000, 64, 0);
        Engine::new(&PatchDesc::default_patch(), config, 0).unwrap()
    }

    fn gate(seq: u64) -> StampedCommand {
        StampedCommand {
            seq,
            frame: 0,
            command: Command::Gate { node: 1, on: true },
        }
    }

    /// DESIGN.md invariant 4, at the worker: a slot reused many times, with records of
    /// older generations left in it (as if rebinding had not zeroed it), never lets a
    /// fresh worker act on them.
    #[test]
    fn records_of_other_generations_are_never_applied() {
        let slot =
            Slot::create("chronus-test-stale", SlotLayout::new(64, 2, 8, 64).unwrap()).unwrap();
        for generation in 1..=500u32 {
            slot.rebind(generation);
            // Stale and foreign records, then one genuine record.
            assert!(slot.push_command(&gate(1).to_record(generation - 1)));
            assert!(slot.push_command(&gate(2).to_record(generation + 1)));
            let mut garbage = gate(3).to_record(generation);
            garbage.kind = 77;
            assert!(slot.push_command(&garbage));
            let mut engine = engine();
            let mut state = LoopState::default();
            drain_ring(&slot, generation, &mut engine, &mut state).unwrap();
            assert_eq!(slot.rejected(), 3, "generation {generation}");
            assert_eq!(engine.last_seq(), 0, "nothing was received");
            assert!(slot.push_command(&gate(4).to_record(generation)));
            drain_ring(&slot, generation, &mut engine, &mut state).unwrap();
            assert_eq!(engine.last_seq(), 4);
        }
    }

    #[test]
    fn a_joined_worker_skips_records_already_in_its_snapshot() {
        let slot =
            Slot::create("chronus-test-skip", SlotLayout::new(64, 2, 8, 64).unwrap()).unwrap();
        slot.rebind(1);
        let mut engine = engine();
        engine.receive(gate(10)).unwrap();
        for seq in [9, 10, 11] {
            assert!(slot.push_command(&gate(seq).to_record(1)));
        }
        let mut state = LoopState {
            snapshot_seq: 10,
            ..LoopState::default()
        };
        drain_ring(&slot, 1, &mut engine, &mut state).unwrap();
        let mut block = vec![0.0; 128];
        engine.render_block(&mut block);
        assert_eq!(
            engine.counters().applied,
            2,
            "seq 10 (snapshot) and 11 (new), not 9 or 10 again"
        );
    }
}
