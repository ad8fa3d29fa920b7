//! One slot as the supervisor manages it: its worker process, generation and back-off,
//! its state, and the mechanics behind the state machine's actions (kill, back off, mark
//! ready) and behind rebinding (unbind, bind, reap).
//!
//! The supervisor loop decides *when* (notices, timeouts, the other slot); what a slot
//! becomes is [`slot_state::next`]; this file does it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chronus_ipc::{Slot, SlotLayout, SnapshotArea};
use rustix::event::{PollFd, PollFlags};
use std::os::fd::BorrowedFd;

use crate::config::ServeConfig;
use crate::metrics::Metrics;
use crate::output::{OutputShared, NO_BLOCK};
use crate::recovery::Crash;
use crate::slot_state::{self, Action, Event, SlotState};
use crate::workers::Worker;

/// Blocks the output must have played after a slot was unbound before the slot may be
/// zeroed: the block in flight when it was unbound, plus one for good measure.
pub const UNBIND_GRACE_BLOCKS: u64 = 2;

/// Creates the two slots' shared memory (sized for `config`'s block and depth), the state
/// the output clock shares with them, and the snapshot area of `snapshot_capacity` bytes.
///
/// # Errors
/// An invalid block size or depth, or shared memory that cannot be created.
pub fn create_shared(
    config: &ServeConfig,
    snapshot_capacity: usize,
) -> anyhow::Result<(Arc<OutputShared>, SnapshotArea)> {
    let period_blocks = config.period_blocks();
    let layout = SlotLayout::new(
        config.block_frames as u32,
        2,
        (config.depth.ceiling().max(period_blocks + 1) + 8) as u32,
        16_384,
    )
    .context("invalid block size or depth")?;
    let slots = [
        Arc::new(Slot::create("chronus-slot-0", layout)?),
        Arc::new(Slot::create("chronus-slot-1", layout)?),
    ];
    let snapshots = SnapshotArea::create("chronus-snapshot", snapshot_capacity)?;
    let mut shared = OutputShared::new(
        slots,
        Arc::new(Metrics::default()),
        config.block_frames,
        config.sample_rate,
        config.depth,
        period_blocks,
    );
    if config.command_log.is_some() {
        shared = shared.with_command_log();
    }
    if !config.recordings().is_empty() {
        shared = shared.with_recording();
    }
    let shared = Arc::new(shared);
    Ok((shared, snapshots))
}

/// Waits until the output has played past both slots' grace after an unbind at `played`
/// (it no longer touches them), at most one second.
pub fn wait_until_unused(shared: &OutputShared, played: u64) {
    let until = played + UNBIND_GRACE_BLOCKS;
    let deadline = Instant::now() + Duration::from_secs(1);
    while shared.played.load(Ordering::Acquire) < until && Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// The supervisor's side of one slot.
pub struct SlotRuntime {
    /// Where it is in its life cycle.
    pub state: SlotState,
    /// Its worker process, while it has one.
    pub worker: Option<Worker>,
    /// Bumped at every rebind, so a late write of an old worker is told apart.
    pub generation: u32,
    /// When unbound: the block the output must reach before the slot may be rebound.
    pub rebind_after: Option<u64>,
    /// The spare is a replacement (counts in `replacements` once joined).
    pub replacement: bool,
    /// Workers of this slot that died before becoming ready, in a row.
    pub early_deaths: u32,
    /// Back-off: no new worker for this slot before this instant.
    pub respawn_not_before: Instant,
}

impl Default for SlotRuntime {
    fn default() -> Self {
        SlotRuntime {
            state: SlotState::Empty,
            worker: None,
            generation: 0,
            rebind_after: None,
            replacement: false,
            early_deaths: 0,
            respawn_not_before: Instant::now(),
        }
    }
}

impl SlotRuntime {
    /// Marks slot `index` dead for the output (it reads from it no more, nor fails over to
    /// it) and kills its worker: its pid and how it ended, if it had one.
    fn retire(&mut self, index: usize, shared: &OutputShared) -> Option<(u32, String)> {
        shared.slots[index]
            .dead_since_ns
            .store(shared.now_ns().max(1), Ordering::Release);
        let worker = self.worker.take()?;
        let pid = worker.pid;
        Some((pid, worker.kill_and_reap()))
    }

    /// Moves slot `index` through the state machine on `event`, carrying out its actions
    /// first, and logs the transition.
    pub fn apply(&mut self, index: usize, shared: &OutputShared, event: Event) {
        let from = self.state;
        let (to, actions) = slot_state::next(from, event);
        for action in actions {
            match action {
                Action::KillLate { block } => {
                    Metrics::bump(&shared.metrics.crash_count);
                    Metrics::bump(&shared.metrics.deadline_misses);
                    if let Some((pid, how)) = self.retire(index, shared) {
                        tracing::warn!(
                            "slot {index}: worker {pid} missed block {block}; killed ({how})"
                        );
                    }
                }
                Action::KillDiverged { block } => {
                    Metrics::bump(&shared.metrics.lockstep_standbys_retired);
                    if let Some((pid, how)) = self.retire(index, shared) {
                        tracing::warn!(
                            "slot {index}: worker {pid} left the lockstep (block {block} differs from the active worker's); retired ({how}), a spare joins from the active one"
                        );
                    }
                }
                Action::KillSpare(why) => {
                    if let Some(worker) = self.worker.take() {
                        let pid = worker.pid;
                        let how = worker.kill_and_reap();
                        tracing::warn!("slot {index}: spare {pid} {why}; killed ({how})");
                    }
                }
                Action::BackOff => {
                    self.respawn_not_before =
                        Instant::now() + slot_state::backoff(self.early_deaths);
                    self.early_deaths += 1;
                }
                Action::MarkReady => self.mark_ready(index, shared),
                Action::ResetBackOff => self.early_deaths = 0,
            }
        }
        if from != to {
            tracing::info!("slot {index}: {} -> {}", from.name(), to.name());
            self.state = to;
        }
    }

    /// The worker holds the block the output plays next: tell the output it may read it.
    fn mark_ready(&mut self, index: usize, shared: &OutputShared) {
        let link = &shared.slots[index];
        link.missed_block.store(NO_BLOCK, Ordering::Release);
        link.diverged_block.store(NO_BLOCK, Ordering::Release);
        link.ready.store(true, Ordering::Release);
        if self.replacement {
            if let Some(worker) = &self.worker {
                shared
                    .metrics
                    .rebuild
                    .record_ns(worker.spawned_at.elapsed().as_nanos() as u64);
            }
            Metrics::bump(&shared.metrics.replacements);
            self.replacement = false;
            tracing::info!(
                "slot {index}: spare joined the lockstep in {:.1} ms",
                shared.metrics.rebuild.last_ms().unwrap_or(0.0)
            );
        }
    }

    /// The worker of slot `index` ended: marks the slot dead for the output, reaps and logs
    /// it. Returns how it crashed, if it crashed by itself (not killed from outside): the
    /// block it was rendering and the command it was applying in it, which may have
    /// killed it.
    pub fn reap(&mut self, index: usize, shared: &OutputShared) -> Option<Crash> {
        let link = &shared.slots[index];
        let rendered = link.slot.rendered();
        let applying = link
            .slot
            .applying()
            .filter(|&(block, _)| block == rendered)
            .map(|(_, seq)| seq);
        let detected = shared.now_ns();
        link.dead_since_ns.store(detected.max(1), Ordering::Release);
        let mut worker = self.worker.take()?;
        let how = worker.reap();
        // Only a worker killed by a signal of its own making (abort, a memory error) while
        // rendering may have been killed by a command: not one killed from outside, nor
        // one that exited on an error, nor one that never rendered a block.
        let by_itself =
            how.contains("signal") && !how.contains("SIGKILL") && !how.contains("SIGTERM");
        let crashed = (by_itself && rendered > 0).then(|| Crash {
            block: rendered,
            applying,
            at: Instant::now(),
        });
        Metrics::bump(&shared.metrics.crash_count);
        tracing::warn!(
            "slot {index}: worker {} died ({how}) while {}",
            worker.pid,
            self.state.name()
        );
        crashed
    }

    /// Stops the output from touching slot `index`, and notes when it may be zeroed.
    pub fn unbind(&mut self, index: usize, shared: &OutputShared, played: u64) {
        let link = &shared.slots[index];
        link.ready.store(false, Ordering::Release);
        link.bound.store(false, Ordering::Release);
        self.rebind_after = Some(played + UNBIND_GRACE_BLOCKS);
    }

    /// Zeroes slot `index` under a new generation and lets the output use it again.
    pub fn bind(&mut self, index: usize, shared: &OutputShared) {
        self.prepare(index, shared);
        shared.slots[index].bound.store(true, Ordering::Release);
    }

    /// Zeroes slot `index` under a new generation, ready for the output to bind (which
    /// [`bind`](Self::bind) does at once; a cold restart asks the output to bind both
    /// slots in one block, see [`OutputShared::bind_pair`]).
    pub fn prepare(&mut self, index: usize, shared: &OutputShared) {
        self.generation += 1;
        self.rebind_after = None;
        let link = &shared.slots[index];
        link.slot.rebind(self.generation);
        link.generation.store(self.generation, Ordering::Release);
        link.dead_since_ns.store(0, Ordering::Release);
        link.overflowed.store(false, Ordering::Release);
        link.missed_block.store(NO_BLOCK, Ordering::Release);
        link.diverged_block.store(NO_BLOCK, Ordering::Release);
        link.slot
            .publish_horizon(shared.worker_horizon(shared.horizon.load(Ordering::Acquire)));
        link.slot
            .release_through(shared.played.load(Ordering::Acquire));
    }
}

/// Waits up to `timeout` for a worker's pidfd or `wake` to become readable; returns the
/// slots whose worker ended.
pub fn wait_for_exits(
    slots: &[SlotRuntime; 2],
    wake: Option<BorrowedFd<'_>>,
    timeout: Duration,
) -> Vec<usize> {
    let mut fds = Vec::with_capacity(3);
    let mut owners = Vec::with_capacity(2);
    for (i, slot) in slots.iter().enumerate() {
        if let Some(worker) = &slot.worker {
            fds.push(PollFd::from_borrowed_fd(worker.pidfd(), PollFlags::IN));
            owners.push(i);
        }
    }
    // After the workers', so `owners` lines up with the first fds.
    if let Some(fd) = wake {
        fds.push(PollFd::from_borrowed_fd(fd, PollFlags::IN));
    }
    let wait = rustix::time::Timespec {
        tv_sec: timeout.as_secs() as i64,
        tv_nsec: i64::from(timeout.subsec_nanos()),
    };
    if fds.is_empty() {
        std::thread::sleep(timeout);
        return Vec::new();
    }
    if rustix::event::poll(&mut fds, Some(&wait)).unwrap_or(0) == 0 {
        return Vec::new();
    }
    fds.iter()
        .zip(&owners)
        .filter(|(fd, _)| !fd.revents().is_empty())
        .map(|(_, &slot)| slot)
        .collect()
}
