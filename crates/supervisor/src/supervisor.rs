//! The supervisor loop: slots, workers, roles, and the shutdown.
//!
//! Each slot runs a small state machine, every transition logged:
//!
//! ```text
//!   empty ─▶ starting ─▶ standby ─▶ active ─▶ dead ─▶ (rebound) joining ─▶ standby …
//!                (fresh)       ▲                          │
//!                              └──────────────────────────┘
//! ```
//!
//! The output clock alone decides which slot is heard; this loop follows its decisions
//! (notices) and manages processes: it detects deaths through pidfds, kills workers the
//! output found late, rebinds their slot with a new generation and spawns a spare that
//! joins from a snapshot of the active worker. It never renders audio.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chronus_dsp::Patch;
use chronus_engine::{Engine, EngineConfig, StartMode};
use chronus_ipc::{Slot, SlotLayout, SnapshotArea};
use chronus_protocol::{reply, AddressTable};
use rustix::event::{PollFd, PollFlags};

use crate::config::{OutputChoice, ServeConfig};
use crate::metrics::{Metrics, MetricsReport, WorkerReport};
use crate::osc::{ControlRequest, OscServer};
use crate::output::{FailoverCause, Inbound, Notice, OutputCore, OutputShared, NO_BLOCK};
use crate::sinks::{self, device, Sink};
use crate::transport::{self, Replier, ReplyTo};
use crate::workers::{Worker, WorkerSpec};

/// The life cycle of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    /// No worker, not bound.
    Empty,
    /// A fresh worker was spawned and is rendering its first blocks.
    Starting,
    /// A spare was spawned and is restoring a snapshot and catching up.
    Joining,
    /// A joined worker, ready to take over at the next block.
    Standby,
    /// The worker the output reads from.
    Active,
    /// The worker died or was killed; the slot waits to be rebound.
    Dead,
}

impl SlotState {
    /// The name used in logs, metrics and `chronus status`.
    pub fn name(self) -> &'static str {
        match self {
            SlotState::Empty => "empty",
            SlotState::Starting => "starting",
            SlotState::Joining => "joining",
            SlotState::Standby => "standby",
            SlotState::Active => "active",
            SlotState::Dead => "dead",
        }
    }
}

/// Blocks the output must have played after a slot was unbound before the slot may be
/// zeroed: the block in flight when it was unbound, plus one for good measure.
const UNBIND_GRACE_BLOCKS: u64 = 2;
/// How often the restore point (a snapshot for restarting after losing both workers) is
/// refreshed: bounds the history replayed and the catch-up rendering.
const RESTORE_REFRESH: Duration = Duration::from_secs(2);
/// Two workers dying on the same block within this time died of the same command.
const POISON_WINDOW: Duration = Duration::from_millis(500);
/// Most commands kept for a replay after losing both workers (below the engine's
/// pending-command capacity, so a restarted worker can take them all at once).
const MAX_HISTORY: usize = 1000;
/// Stack of the threads we start: small, because real-time mode locks all memory.
const THREAD_STACK: usize = 256 * 1024;
/// How often the loop wakes when nothing happens.
const POLL_INTERVAL: Duration = Duration::from_millis(1);

struct SlotRuntime {
    state: SlotState,
    worker: Option<Worker>,
    generation: u32,
    /// When unbound: the block the output must reach before the slot may be rebound.
    rebind_after: Option<u64>,
    /// The spare is a replacement (counts in `replacements` once joined).
    replacement: bool,
    /// Workers of this slot that died before becoming ready, in a row.
    early_deaths: u32,
    /// Back-off: no new worker for this slot before this instant.
    respawn_not_before: Instant,
}

/// First back-off after a worker died before becoming ready; doubles each time.
const RESPAWN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest back-off.
const RESPAWN_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// A running server. Build with [`Supervisor::start`], then [`Supervisor::run`] on the
/// thread that must outlive every worker (it spawns them).
pub struct Supervisor {
    config: ServeConfig,
    engine_config: EngineConfig,
    shared: Arc<OutputShared>,
    snapshots: SnapshotArea,
    slots: [SlotRuntime; 2],
    next_request: u64,
    stop: Arc<AtomicBool>,
    socket: Arc<UdpSocket>,
    replier: Arc<Replier>,
    /// The UDP reader and the TCP listener.
    transport_threads: Vec<std::thread::JoinHandle<()>>,
    /// Table of the patch the output is stamping for (follows stamped patch switches).
    table: AddressTable,
    /// Committed patches whose switch has not been stamped yet: version → (text, table).
    committed: std::collections::BTreeMap<u32, (String, AddressTable)>,
    /// Patch file new workers start from (the latest stamped patch).
    patch_path: Option<std::path::PathBuf>,
    /// Private directory for patch files written after live edits.
    work_dir: std::path::PathBuf,
    report: Arc<Mutex<MetricsReport>>,
    control: Receiver<ControlRequest>,
    command_log: Option<BufWriter<File>>,
    output: Option<RunningOutput>,
    osc_thread: Option<std::thread::JoinHandle<()>>,
    started: Instant,
    /// Who asked for `/quit`; answered once everything is stopped.
    quit_requests: Vec<ReplyTo>,
    /// Commands stamped since the restore point's snapshot, in seq order: replayed to a
    /// new pair of workers if both are lost at once.
    history: std::collections::VecDeque<(chronus_engine::StampedCommand, Option<ReplyTo>)>,
    /// The block at which both workers died in the last cold restart, if they died on
    /// the same one: a second loss at that block means the restore point itself is poisoned.
    poisoned_block: Option<u64>,
    /// Per slot: the block its last worker had reached when it died, and when.
    last_death: [Option<(u64, Instant)>; 2],
    /// The snapshot a cold restart can start from: (request id, last seq in it).
    restore_point: Option<(u64, u64)>,
    /// A snapshot requested (for a join or a refresh) whose publication we watch for.
    watched_snapshot: Option<u64>,
    /// When the restore point was last refreshed.
    last_refresh: Instant,
    /// Peak render time per slot over the current load window.
    load_peak_ns: [u64; 2],
    load_window_start: Instant,
}

/// Window over which the peak worker load is reported.
const LOAD_PEAK_WINDOW: Duration = Duration::from_secs(1);

enum RunningOutput {
    Paced(std::thread::JoinHandle<anyhow::Result<()>>),
    Device(device::DeviceOutput),
}

impl Supervisor {
    /// Compiles the patch, creates the slots, binds the OSC socket and starts two fresh
    /// workers; the output starts in [`run`](Self::run) as soon as one has rendered ahead.
    ///
    /// # Errors
    /// A patch that does not compile, an OSC address in use, shared memory that cannot be
    /// created, a command log that cannot be opened, workers that cannot be spawned.
    pub fn start(config: ServeConfig, stop: Arc<AtomicBool>) -> anyhow::Result<Supervisor> {
        let engine_config = EngineConfig {
            master: config.master,
            ..EngineConfig::new(config.sample_rate, config.block_frames, config.seed)
        };
        // The supervisor compiles the patch too, never to render: to size the snapshot
        // area and to build the address table from the real module instances.
        let engine =
            Engine::new(&config.patch, engine_config, 0).context("the patch does not compile")?;
        let patch: &Patch = engine.patch();
        let modules: Vec<(String, &'static chronus_dsp::ModuleSpec)> = (0..patch.node_count()
            as u16)
            .filter_map(|n| Some((patch.node_id(n)?.to_string(), patch.node_spec(n)?)))
            .collect();
        let table = AddressTable::new(&modules, config.allow_fault_injection);
        // Room for the state of a patch several times larger than the first one, so
        // live edits can grow it; at least 2 MiB.
        let snapshot_capacity = (engine.snapshot_len() * 4).max(2 << 20);
        let editor = crate::patch_editor::PatchEditor::new(
            config.patch.clone(),
            engine_config,
            snapshot_capacity,
        )
        .map_err(anyhow::Error::msg)?;
        let layout = SlotLayout::new(
            config.block_frames as u32,
            2,
            (config.depth + 8) as u32,
            16_384,
        )
        .context("invalid block size or depth")?;
        let slots = [
            Arc::new(Slot::create("chronus-slot-0", layout)?),
            Arc::new(Slot::create("chronus-slot-1", layout)?),
        ];
        let snapshots = SnapshotArea::create("chronus-snapshot", snapshot_capacity)?;
        let metrics = Arc::new(Metrics::default());
        let shared = Arc::new(OutputShared::new(
            slots,
            metrics,
            config.block_frames,
            config.sample_rate,
            config.depth,
        ));
        let socket = UdpSocket::bind(config.osc).with_context(|| {
            format!(
                "cannot listen for OSC on udp {} (in use? try --osc 127.0.0.1:0)",
                config.osc
            )
        })?;
        let command_log = match &config.command_log {
            Some(path) => Some(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create command log {}", path.display())
            })?)),
            None => None,
        };
        let (control_tx, control) = mpsc::channel();
        let socket = Arc::new(socket);
        let replier = Arc::new(Replier::new(Arc::clone(&socket)));
        let (packets_tx, packets) = mpsc::sync_channel(4096);
        let mut transport_threads = vec![transport::spawn_udp_reader(
            Arc::clone(&socket),
            packets_tx.clone(),
            Arc::clone(&stop),
        )
        .context("cannot start the UDP reader")?];
        // TCP on the same port number as UDP (OSC 1.0 size-prefixed packets).
        let udp_addr = socket.local_addr().unwrap_or(config.osc);
        match TcpListener::bind(udp_addr) {
            Ok(listener) => transport_threads.push(
                transport::spawn_tcp_listener(
                    listener,
                    Arc::clone(&replier),
                    packets_tx,
                    Arc::clone(&stop),
                )
                .context("cannot start the TCP listener")?,
            ),
            Err(e) => tracing::warn!("OSC over TCP unavailable on {udp_addr}: {e}; UDP only"),
        }
        let report = Arc::new(Mutex::new(empty_report(&shared)));
        let server = OscServer {
            replier: Arc::clone(&replier),
            packets,
            table: table.clone(),
            editor,
            fault_injection: config.allow_fault_injection,
            shared: Arc::clone(&shared),
            report: Arc::clone(&report),
            stop: Arc::clone(&stop),
            control: control_tx,
        };
        let osc_thread = std::thread::Builder::new()
            .name("chronus-osc".into())
            .stack_size(THREAD_STACK)
            .spawn(move || server.run())
            .context("cannot start the OSC thread")?;
        let fresh = || SlotRuntime {
            state: SlotState::Empty,
            worker: None,
            generation: 0,
            rebind_after: None,
            replacement: false,
            early_deaths: 0,
            respawn_not_before: Instant::now(),
        };
        let patch_path = config.patch_path.clone();
        let mut supervisor = Supervisor {
            patch_path,
            config,
            engine_config,
            shared,
            snapshots,
            slots: [fresh(), fresh()],
            next_request: 1,
            stop,
            socket,
            replier,
            transport_threads,
            table,
            committed: std::collections::BTreeMap::new(),
            work_dir: std::env::temp_dir().join(format!("chronus-{}", std::process::id())),
            report,
            control,
            command_log,
            output: None,
            osc_thread: Some(osc_thread),
            started: Instant::now(),
            quit_requests: Vec::new(),
            load_peak_ns: [0; 2],
            load_window_start: Instant::now(),
            history: std::collections::VecDeque::new(),
            poisoned_block: None,
            last_death: [None; 2],
            restore_point: None,
            watched_snapshot: None,
            last_refresh: Instant::now(),
        };
        for slot in 0..2 {
            supervisor.bind(slot);
            supervisor.spawn(slot, StartMode::Fresh { block: 0 })?;
        }
        Ok(supervisor)
    }

    /// The OSC address actually bound (useful with port 0).
    pub fn osc_addr(&self) -> SocketAddr {
        self.socket.local_addr().unwrap_or(self.config.osc)
    }

    /// The state shared with the output clock (for benchmarks and tests).
    pub fn shared(&self) -> &Arc<OutputShared> {
        &self.shared
    }

    /// The address table of the running patch.
    pub fn table(&self) -> &AddressTable {
        &self.table
    }

    /// Pid of the worker in `slot`, if any.
    pub fn worker_pid(&self, slot: usize) -> Option<u32> {
        self.slots.get(slot)?.worker.as_ref().map(|w| w.pid)
    }

    /// Current state of `slot`.
    pub fn slot_state(&self, slot: usize) -> SlotState {
        self.slots.get(slot).map_or(SlotState::Empty, |s| s.state)
    }

    /// Runs until `/quit`, SIGINT/SIGTERM (the `stop` flag) or a fatal output error.
    ///
    /// # Errors
    /// When no worker becomes ready at start-up, or the output fails.
    pub fn run(mut self) -> anyhow::Result<()> {
        if self.config.realtime {
            // Detection of a dead worker must not wait behind ordinary processes.
            use chronus_realtime as realtime;
            let scheduling = realtime::make_current_thread_realtime(realtime::SUPERVISOR_PRIORITY);
            realtime::log_scheduling("supervisor loop", &scheduling);
        }
        let result = self.run_loop();
        self.shutdown(result)
    }

    /// One pass of the loop: handle deaths, notices and slot transitions. Public so a
    /// benchmark can drive the supervisor from its own loop; [`run`](Self::run) calls it.
    ///
    /// # Errors
    /// When the output could not be started.
    pub fn step(&mut self) -> anyhow::Result<()> {
        self.poll_deaths();
        self.drain_notices();
        self.check_flags();
        self.advance_slots()?;
        self.keep_restore_point();
        if self.output.is_none() {
            self.start_output_when_ready()?;
        }
        self.refresh_report();
        Ok(())
    }

    fn run_loop(&mut self) -> anyhow::Result<()> {
        while !self.stop.load(Ordering::Acquire) {
            self.step()?;
            if let Some(RunningOutput::Paced(handle)) = &self.output {
                if handle.is_finished() && !self.stop.load(Ordering::Acquire) {
                    bail!("the output stopped unexpectedly");
                }
            }
        }
        Ok(())
    }

    /// Waits up to one poll interval for a worker's pidfd to become readable.
    fn poll_deaths(&mut self) {
        let mut fds = Vec::with_capacity(2);
        let mut owners = Vec::with_capacity(2);
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(worker) = &slot.worker {
                fds.push(PollFd::from_borrowed_fd(worker.pidfd(), PollFlags::IN));
                owners.push(i);
            }
        }
        let timeout = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: POLL_INTERVAL.as_nanos() as i64,
        };
        if fds.is_empty() {
            std::thread::sleep(POLL_INTERVAL);
            return;
        }
        if rustix::event::poll(&mut fds, Some(&timeout)).unwrap_or(0) == 0 {
            return;
        }
        let dead: Vec<usize> = fds
            .iter()
            .zip(&owners)
            .filter(|(fd, _)| !fd.revents().is_empty())
            .map(|(_, &slot)| slot)
            .collect();
        for slot in dead {
            let rendered = self.shared.slots[slot].slot.rendered();
            let detected = self.shared.now_ns();
            self.shared.slots[slot]
                .dead_since_ns
                .store(detected.max(1), Ordering::Release);
            self.last_death[slot] = None;
            if let Some(mut worker) = self.slots[slot].worker.take() {
                let how = worker.reap();
                // A worker that crashed by itself (not killed from outside) may have been
                // killed by a command: remember where, to find a poison command.
                if !how.contains("SIGKILL") && !how.contains("SIGTERM") {
                    self.last_death[slot] = Some((rendered, Instant::now()));
                }
                Metrics::bump(&self.shared.metrics.crash_count);
                tracing::warn!(
                    "slot {slot}: worker {} died ({how}) while {}",
                    worker.pid,
                    self.slots[slot].state.name()
                );
            }
            self.transition(slot, SlotState::Dead);
        }
    }

    fn drain_notices(&mut self) {
        while let Some(notice) = self.shared.notices.pop() {
            match notice {
                Notice::Stamped {
                    stamped, reply_to, ..
                } => {
                    if let chronus_engine::Command::SwitchPatch { version, .. } = stamped.command {
                        self.on_patch_switch(version, stamped.frame, stamped.seq);
                        // Patch text is not kept in the history: start a new restore point.
                        self.restore_point = None;
                        self.history.clear();
                        continue;
                    }
                    if self.history.len() < MAX_HISTORY {
                        self.history.push_back((stamped, reply_to));
                    } else {
                        // Too long to replay: wait for the next snapshot.
                        self.restore_point = None;
                        self.history.clear();
                    }
                    if let Some(log) = self.command_log.as_mut() {
                        let line = chronus_protocol::text::format_log_line(
                            &self.table,
                            stamped.frame,
                            stamped.seq,
                            &stamped.command,
                        );
                        let _ = writeln!(log, "{line}");
                    }
                }
                Notice::Synced { id, reply_to } => {
                    if let Some(log) = self.command_log.as_mut() {
                        let _ = log.flush();
                    }
                    self.send(&reply::synced(id), reply_to);
                }
                Notice::SnapshotRequested {
                    request,
                    slot,
                    block,
                } => {
                    tracing::debug!("slot {slot}: snapshot {request} requested at block {block}");
                    self.watched_snapshot = Some(request);
                }
                Notice::Failover {
                    from,
                    to,
                    block,
                    cause,
                } => {
                    let why = match cause {
                        FailoverCause::Dead => "its worker died",
                        FailoverCause::MissedDeadline => "it missed its deadline",
                    };
                    tracing::warn!(
                        "output: slot {to} now active from block {block}; slot {from} dropped because {why}; failover {:.3} ms, 0 samples lost",
                        self.shared.metrics.failover.last_ms().unwrap_or(0.0)
                    );
                    // A late notice must not revive a slot whose worker has died since.
                    if self.slots[to].state == SlotState::Standby {
                        self.transition(to, SlotState::Active);
                    }
                    if self.slots[from].state != SlotState::Dead {
                        self.fail_late_worker(from, block);
                    }
                }
                Notice::ActiveMissed { slot, block } => {
                    if matches!(self.slots[slot].state, SlotState::Active) {
                        self.fail_late_worker(slot, block);
                    }
                }
                Notice::StandbyMissed { slot, block } => {
                    if matches!(self.slots[slot].state, SlotState::Standby) {
                        self.fail_late_worker(slot, block);
                    }
                }
                Notice::Underrun { block } => {
                    tracing::warn!("output: underrun at block {block}: no slot had it; played a fade to silence");
                }
            }
        }
    }

    /// A committed patch's switch was stamped: log it, follow its table, and start new
    /// workers from it from now on.
    fn on_patch_switch(&mut self, version: u32, frame: u64, seq: u64) {
        self.drain_control();
        let Some((text, table)) = self.committed.remove(&version) else {
            tracing::error!("patch {version} was stamped but its text is unknown");
            return;
        };
        if let Some(log) = self.command_log.as_mut() {
            let _ = writeln!(
                log,
                "{}",
                chronus_protocol::format_patch_log_line(frame, seq, &text)
            );
        }
        self.table = table;
        let path = self.work_dir.join(format!("patch-{version}.toml"));
        match std::fs::create_dir_all(&self.work_dir).and_then(|()| std::fs::write(&path, &text)) {
            Ok(()) => self.patch_path = Some(path),
            Err(e) => tracing::warn!("cannot keep patch {version} for new workers: {e}"),
        }
        tracing::info!("patch {version} takes effect at frame {frame}");
    }

    /// Handles what the OSC thread asked of this loop.
    fn drain_control(&mut self) {
        while let Ok(request) = self.control.try_recv() {
            match request {
                ControlRequest::Quit { reply_to } => self.quit_requests.push(reply_to),
                ControlRequest::PatchCommitted {
                    version,
                    text,
                    table,
                } => {
                    self.committed.insert(version, (text, table));
                }
            }
        }
    }

    /// A worker that did not have a block when it was due is treated as dead.
    fn fail_late_worker(&mut self, slot: usize, block: u64) {
        Metrics::bump(&self.shared.metrics.crash_count);
        Metrics::bump(&self.shared.metrics.deadline_misses);
        self.shared.slots[slot]
            .dead_since_ns
            .store(self.shared.now_ns().max(1), Ordering::Release);
        if let Some(worker) = self.slots[slot].worker.take() {
            let pid = worker.pid;
            let how = worker.kill_and_reap();
            tracing::warn!("slot {slot}: worker {pid} missed block {block}; killed ({how})");
        }
        self.transition(slot, SlotState::Dead);
    }

    /// Ring overflows mean a worker stopped draining its commands: replace it.
    fn check_flags(&mut self) {
        for slot in 0..2 {
            let link = &self.shared.slots[slot];
            if link.overflowed.load(Ordering::Acquire) && self.slots[slot].state != SlotState::Dead
            {
                let block = self.shared.played.load(Ordering::Acquire);
                self.fail_late_worker(slot, block);
            }
        }
    }

    fn advance_slots(&mut self) -> anyhow::Result<()> {
        let played = self.shared.played.load(Ordering::Acquire);
        for slot in 0..2 {
            match self.slots[slot].state {
                SlotState::Dead => {
                    let other = 1 - slot;
                    let other_state = self.slots[other].state;
                    if self.slots[slot].rebind_after.is_none() {
                        self.unbind(slot, played);
                    }
                    if self.slots[slot].rebind_after.is_some_and(|b| played < b)
                        && self.output.is_some()
                    {
                        continue;
                    }
                    if Instant::now() < self.slots[slot].respawn_not_before {
                        continue;
                    }
                    if other_state == SlotState::Active && self.slots[other].worker.is_some() {
                        // The usual case: join the lockstep from a snapshot of the active worker.
                        self.bind(slot);
                        let request = self.next_request;
                        self.next_request += 1;
                        self.spawn(slot, StartMode::Join { request })?;
                        self.slots[slot].replacement = true;
                        if self
                            .shared
                            .inbound
                            .push(Inbound::Snapshot { request })
                            .is_err()
                        {
                            tracing::warn!("slot {slot}: could not request a snapshot (queue full); will retry");
                            self.fail_spare(slot, "snapshot request could not be queued");
                        }
                    } else if matches!(
                        other_state,
                        SlotState::Dead | SlotState::Joining | SlotState::Empty
                    ) || self.slots[other].worker.is_none()
                    {
                        self.cold_restart(played)?;
                        return Ok(());
                    }
                    // Otherwise (the other slot is a standby about to be made active, or
                    // starting), wait for the output to settle on it.
                }
                SlotState::Starting | SlotState::Joining => {
                    let runtime = &self.slots[slot];
                    let generation = runtime.generation;
                    let link = &self.shared.slots[slot];
                    // Joined, and holding the block the output plays next: from the
                    // block it restored at, it is in lockstep with the active worker.
                    let played = self.shared.played.load(Ordering::Acquire);
                    if link.slot.joined_generation() == generation && link.slot.has_block(played) {
                        self.on_joined(slot);
                    } else if runtime
                        .worker
                        .as_ref()
                        .is_some_and(|w| w.spawned_at.elapsed() > self.config.join_timeout)
                    {
                        self.fail_spare(slot, "did not join in time");
                    }
                }
                SlotState::Standby
                    if self.shared.active.load(Ordering::Acquire) == slot
                        && self.output.is_some() =>
                {
                    self.transition(slot, SlotState::Active);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn on_joined(&mut self, slot: usize) {
        let link = &self.shared.slots[slot];
        link.missed_block.store(NO_BLOCK, Ordering::Release);
        link.ready.store(true, Ordering::Release);
        if self.slots[slot].replacement {
            if let Some(worker) = &self.slots[slot].worker {
                self.shared
                    .metrics
                    .rebuild
                    .record_ns(worker.spawned_at.elapsed().as_nanos() as u64);
            }
            Metrics::bump(&self.shared.metrics.replacements);
            self.slots[slot].replacement = false;
            tracing::info!(
                "slot {slot}: spare joined the lockstep in {:.1} ms",
                self.shared.metrics.rebuild.last_ms().unwrap_or(0.0)
            );
        }
        self.transition(slot, SlotState::Standby);
    }

    fn fail_spare(&mut self, slot: usize, why: &str) {
        if let Some(worker) = self.slots[slot].worker.take() {
            let pid = worker.pid;
            let how = worker.kill_and_reap();
            tracing::warn!("slot {slot}: spare {pid} {why}; killed ({how})");
        }
        self.transition(slot, SlotState::Dead);
    }

    /// Both workers lost at once: start a new pair from the patch at the horizon.
    /// Keeps a recent snapshot and the commands since, so that losing both workers at once
    /// costs a few blocks of silence, not the state of the music: watches for requested
    /// snapshots to be published, and asks for a fresh one every few seconds.
    fn keep_restore_point(&mut self) {
        if let Some(request) = self.watched_snapshot {
            let mut bytes = Vec::new();
            if let Some(meta) = self.snapshots.read(request, &mut bytes) {
                self.restore_point = Some((request, meta.last_seq));
                self.history.retain(|(c, _)| c.seq > meta.last_seq);
                self.watched_snapshot = None;
                self.last_refresh = Instant::now();
            } else if self.last_refresh.elapsed() > RESTORE_REFRESH * 3 {
                self.watched_snapshot = None; // its worker died before publishing it
            }
            return;
        }
        let pair_ready = matches!(
            (self.slots[0].state, self.slots[1].state),
            (SlotState::Active, SlotState::Standby) | (SlotState::Standby, SlotState::Active)
        );
        if self.output.is_some() && pair_ready && self.last_refresh.elapsed() > RESTORE_REFRESH {
            let request = self.next_request;
            self.next_request += 1;
            if self
                .shared
                .inbound
                .push(Inbound::Snapshot { request })
                .is_ok()
            {
                self.watched_snapshot = Some(request);
            }
            self.last_refresh = Instant::now();
        }
    }

    fn cold_restart(&mut self, played: u64) -> anyhow::Result<()> {
        Metrics::bump(&self.shared.metrics.cold_restarts);
        // Both stopped on the same block: the last command they applied is the suspect
        // (DESIGN.md invariant 6). It is left out of the replay and refused.
        let same_block = match self.last_death {
            [Some((a, at_a)), Some((b, at_b))]
                if a == b && at_a.max(at_b).duration_since(at_a.min(at_b)) < POISON_WINDOW =>
            {
                Some(a)
            }
            _ => None,
        };
        let rendered = self.last_death.map(|d| d.map(|(block, _)| block));
        if same_block.is_some() && same_block == self.poisoned_block {
            tracing::error!("both workers died again on block {rendered:?}: the restore point itself is poisoned");
            self.restore_point = None;
        }
        self.poisoned_block = same_block;
        if let Some(block) = same_block {
            let frames = self.shared.block_frames as u64;
            let in_block = |frame: u64| frame >= block * frames && frame < (block + 1) * frames;
            if let Some(index) = self.history.iter().rposition(|(c, _)| in_block(c.frame)) {
                if let Some((suspect, reply_to)) = self.history.remove(index) {
                    Metrics::bump(&self.shared.metrics.poisoned_commands);
                    let address = self
                        .table
                        .describe(&suspect.command)
                        .map_or_else(|| format!("{:?}", suspect.command), |(a, _)| a);
                    tracing::error!(
                        "both workers died on block {block}: command {} ({address}, frame {}) is the suspect; it will not be applied again",
                        suspect.seq,
                        suspect.frame
                    );
                    if let Some(to) = reply_to {
                        let address = if address.starts_with('/') {
                            address
                        } else {
                            "/debug/poison".to_string()
                        };
                        self.send(
                            &reply::fail(&address, "this command made both workers fail; it was dropped and the sound restored without it"),
                            to,
                        );
                    }
                }
            }
        }
        for slot in 0..2 {
            if let Some(worker) = self.slots[slot].worker.take() {
                worker.kill_and_reap();
            }
            if self.slots[slot].rebind_after.is_none() {
                self.unbind(slot, played);
            }
        }
        // Wait until the output no longer touches either slot.
        let until = played + UNBIND_GRACE_BLOCKS;
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.output.is_some()
            && self.shared.played.load(Ordering::Acquire) < until
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        // From the last snapshot, with every command since replayed at its own frame, if
        // the snapshot is still there and the queue can take the history; else afresh.
        let mut bytes = Vec::new();
        let restorable = self.restore_point.filter(|&(request, _)| {
            self.snapshots.read(request, &mut bytes).is_some()
                && self.history.len() < self.shared.inbound.capacity() - self.shared.inbound.len()
        });
        if let Some((request, last_seq)) = restorable {
            tracing::error!(
                "both workers lost: restarting both from snapshot {request} and replaying {} commands",
                self.history.len()
            );
            for slot in 0..2 {
                self.bind(slot);
                self.spawn(slot, StartMode::Join { request })?;
            }
            for (stamped, _) in self.history.iter().filter(|(c, _)| c.seq > last_seq) {
                // Room was checked above.
                let _ = self.shared.inbound.push(Inbound::Replay(*stamped));
            }
            return Ok(());
        }
        tracing::error!("both workers lost and no snapshot to restore: cold restart of both slots from the patch");
        let start = self.shared.horizon.load(Ordering::Acquire) + 1;
        for slot in 0..2 {
            self.bind(slot);
            self.spawn(slot, StartMode::Fresh { block: start })?;
        }
        Ok(())
    }

    /// Stops the output from touching `slot`, and notes when it may be zeroed.
    fn unbind(&mut self, slot: usize, played: u64) {
        let link = &self.shared.slots[slot];
        link.ready.store(false, Ordering::Release);
        link.bound.store(false, Ordering::Release);
        self.slots[slot].rebind_after = Some(played + UNBIND_GRACE_BLOCKS);
    }

    /// Zeroes `slot` under a new generation and lets the output use it again.
    fn bind(&mut self, slot: usize) {
        let runtime = &mut self.slots[slot];
        runtime.generation += 1;
        runtime.rebind_after = None;
        let link = &self.shared.slots[slot];
        link.slot.rebind(runtime.generation);
        link.generation.store(runtime.generation, Ordering::Release);
        link.dead_since_ns.store(0, Ordering::Release);
        link.overflowed.store(false, Ordering::Release);
        link.missed_block.store(NO_BLOCK, Ordering::Release);
        link.slot
            .publish_horizon(self.shared.horizon.load(Ordering::Acquire));
        link.slot
            .release_through(self.shared.played.load(Ordering::Acquire));
        link.bound.store(true, Ordering::Release);
    }

    fn spawn(&mut self, slot: usize, start: StartMode) -> anyhow::Result<()> {
        let link = &self.shared.slots[slot];
        let spec = WorkerSpec {
            exe: &self.config.worker_exe,
            slot_fd: link.slot.fd(),
            snapshot_fd: self.snapshots.fd(),
            generation: self.slots[slot].generation,
            start,
            config: self.engine_config,
            patch_path: self.patch_path.as_deref(),
            realtime: self.config.realtime,
        };
        let worker = Worker::spawn(&spec)?;
        tracing::info!(
            "slot {slot}: worker {} spawned (generation {}, {})",
            worker.pid,
            self.slots[slot].generation,
            match start {
                StartMode::Fresh { block } => format!("fresh from block {block}"),
                StartMode::Join { request } => format!("joining from snapshot {request}"),
            }
        );
        self.slots[slot].worker = Some(worker);
        let state = match start {
            StartMode::Fresh { .. } => SlotState::Starting,
            StartMode::Join { .. } => SlotState::Joining,
        };
        self.transition(slot, state);
        Ok(())
    }

    fn transition(&mut self, slot: usize, to: SlotState) {
        let from = self.slots[slot].state;
        let runtime = &mut self.slots[slot];
        match (from, to) {
            (SlotState::Starting | SlotState::Joining, SlotState::Dead) => {
                // Died before it was ever ready: back off, so a worker that cannot start
                // does not turn into a respawn storm.
                let backoff = RESPAWN_BACKOFF.saturating_mul(1 << runtime.early_deaths.min(6));
                runtime.early_deaths += 1;
                runtime.respawn_not_before = Instant::now() + backoff.min(RESPAWN_BACKOFF_MAX);
            }
            (_, SlotState::Standby | SlotState::Active) => runtime.early_deaths = 0,
            _ => {}
        }
        if from != to {
            tracing::info!("slot {slot}: {} -> {}", from.name(), to.name());
            self.slots[slot].state = to;
        }
    }

    fn start_output_when_ready(&mut self) -> anyhow::Result<()> {
        let ready = (0..2).find(|&s| self.slots[s].state == SlotState::Standby);
        let Some(first) = ready else {
            if self.started.elapsed() > self.config.join_timeout {
                bail!(
                    "no worker became ready within {:?}",
                    self.config.join_timeout
                );
            }
            return Ok(());
        };
        self.shared.active.store(first, Ordering::Release);
        self.transition(first, SlotState::Active);
        let core = OutputCore::new(Arc::clone(&self.shared));
        let output = match &self.config.output {
            OutputChoice::Null => self.start_paced(core, Box::new(sinks::null::NullSink))?,
            OutputChoice::Wav(path) => {
                let sink = sinks::wav::WavSink::create(path, self.config.sample_rate)?;
                self.start_paced(core, Box::new(sink))?
            }
            OutputChoice::Device => {
                let host = if device::jack_server_running() {
                    device::DeviceHost::Jack
                } else {
                    device::DeviceHost::Alsa
                };
                self.start_device(host, core)?
            }
            OutputChoice::Auto => {
                // Each candidate in DESIGN.md's order; one that fails to open hands over to
                // the next (the clock has not started, so a fresh core is equivalent).
                let mut candidates = Vec::new();
                if device::jack_server_running() {
                    candidates.push(device::DeviceHost::Jack);
                }
                if device::alsa_has_card() {
                    candidates.push(device::DeviceHost::Alsa);
                }
                let mut chosen = None;
                let mut core = Some(core);
                for host in candidates {
                    let attempt = core
                        .take()
                        .unwrap_or_else(|| OutputCore::new(Arc::clone(&self.shared)));
                    match self.start_device(host, attempt) {
                        Ok(output) => {
                            chosen = Some(output);
                            break;
                        }
                        Err(e) => tracing::warn!(
                            "output auto: {host:?} did not open ({e:#}); trying the next"
                        ),
                    }
                }
                match chosen {
                    Some(output) => output,
                    None => {
                        tracing::info!("output auto: no usable JACK server or ALSA sound card; playing to the null sink");
                        let core =
                            core.unwrap_or_else(|| OutputCore::new(Arc::clone(&self.shared)));
                        self.start_paced(core, Box::new(sinks::null::NullSink))?
                    }
                }
            }
        };
        self.output = Some(output);
        Ok(())
    }

    fn start_paced(&self, core: OutputCore, sink: Box<dyn Sink>) -> anyhow::Result<RunningOutput> {
        tracing::info!("output: {}", sink.describe());
        let stop = Arc::clone(&self.stop);
        let realtime = self.config.realtime;
        let handle = std::thread::Builder::new()
            .name("chronus-output".into())
            .stack_size(THREAD_STACK)
            .spawn(move || {
                if realtime {
                    use chronus_realtime as realtime;
                    let scheduling =
                        realtime::make_current_thread_realtime(realtime::OUTPUT_PRIORITY);
                    realtime::log_scheduling("output thread", &scheduling);
                }
                sinks::run_paced(core, sink, stop)
            })
            .context("cannot start the output thread")?;
        Ok(RunningOutput::Paced(handle))
    }

    fn start_device(
        &self,
        host: device::DeviceHost,
        core: OutputCore,
    ) -> anyhow::Result<RunningOutput> {
        let output = device::start(
            host,
            core,
            self.config.sample_rate,
            self.config.device_buffer,
        )?;
        tracing::info!("output: {}", output.describe());
        Ok(RunningOutput::Device(output))
    }

    fn refresh_report(&mut self) {
        let report = self.build_report();
        if let Ok(mut shared) = self.report.lock() {
            *shared = report;
        }
        self.drain_control();
    }

    /// A fresh copy of every metric.
    pub fn build_report(&mut self) -> MetricsReport {
        let mut report = empty_report(&self.shared);
        let block_ns = self.shared.block_ns() as f64;
        let mut loads = Vec::new();
        if self.load_window_start.elapsed() > LOAD_PEAK_WINDOW {
            self.load_window_start = Instant::now();
            self.load_peak_ns = [0; 2];
        }
        let mut peak: f64 = 0.0;
        for (i, slot) in self.slots.iter().enumerate() {
            let (last_ns, peak_ns) = self.shared.slots[i].slot.take_render_stats();
            self.load_peak_ns[i] = self.load_peak_ns[i].max(peak_ns);
            let load = last_ns as f64 / block_ns * 100.0;
            if slot.worker.is_some() && matches!(slot.state, SlotState::Active | SlotState::Standby)
            {
                loads.push(load);
                peak = peak.max(self.load_peak_ns[i] as f64 / block_ns * 100.0);
            }
            report.workers.push(WorkerReport {
                slot: i,
                pid: slot.worker.as_ref().map_or(0, |w| w.pid),
                role: slot.state.name(),
                load_percent: load,
            });
        }
        report.worker_load_percent = if loads.is_empty() {
            0.0
        } else {
            loads.iter().sum::<f64>() / loads.len() as f64
        };
        report.worker_load_peak_percent = peak;
        report.spare_ready = self.slots.iter().any(|s| s.state == SlotState::Standby);
        report.live_children = self.slots.iter().filter(|s| s.worker.is_some()).count() as u64;
        report.voices_sounding = self.shared.slots
            [self.shared.active.load(Ordering::Relaxed).min(1)]
        .slot
        .voices();
        report
    }

    fn send(&self, bytes: &[u8], to: ReplyTo) {
        self.replier.send(bytes, to);
    }

    fn shutdown(mut self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Release);
        let output_result = match self.output.take() {
            Some(RunningOutput::Paced(handle)) => handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the output thread panicked"))),
            Some(RunningOutput::Device(device)) => {
                drop(device);
                Ok(())
            }
            None => Ok(()),
        };
        // Commands stamped in the last blocks.
        self.drain_notices();
        if let Some(mut log) = self.command_log.take() {
            let _ = log.flush();
        }
        for slot in 0..2 {
            if let Some(worker) = self.slots[slot].worker.take() {
                worker.kill_and_reap();
            }
        }
        if let Some(handle) = self.osc_thread.take() {
            let _ = handle.join();
        }
        for handle in std::mem::take(&mut self.transport_threads) {
            let _ = handle.join();
        }
        self.drain_control();
        let _ = std::fs::remove_dir_all(&self.work_dir);
        for to in std::mem::take(&mut self.quit_requests) {
            self.send(&reply::done("/quit"), to);
        }
        tracing::info!("stopped");
        result.and(output_result)
    }
}

/// The counters as they are right now, with the supervisor's view (roles, pids, loads)
/// taken from `view`: what `/metrics` answers, so a reply never lags behind the commands
/// that came before it.
pub(crate) fn live_report(shared: &OutputShared, view: &MetricsReport) -> MetricsReport {
    let mut report = empty_report(shared);
    report.spare_ready = view.spare_ready;
    report.live_children = view.live_children;
    report.worker_load_percent = view.worker_load_percent;
    report.worker_load_peak_percent = view.worker_load_peak_percent;
    report.voices_sounding = view.voices_sounding;
    report.workers = view.workers.clone();
    report
}

fn empty_report(shared: &OutputShared) -> MetricsReport {
    let m = &shared.metrics;
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (open_fds, mapped_segments) = process_resources();
    MetricsReport {
        crash_count: get(&m.crash_count),
        deadline_misses: get(&m.deadline_misses),
        replacements: get(&m.replacements),
        spare_ready: false,
        failover_count: get(&m.failover_count),
        underruns: get(&m.underruns),
        commands_received: get(&m.commands_received),
        commands_applied: get(&m.commands_applied),
        commands_rejected: get(&m.commands_rejected),
        late_commands: get(&m.late_commands),
        undecodable_packets: get(&m.undecodable_packets),
        lockstep_blocks_compared: get(&m.lockstep_blocks_compared),
        lockstep_mismatches: get(&m.lockstep_mismatches),
        blocks_played: get(&m.blocks_played),
        output_late_wakeups: get(&m.output_late_wakeups),
        ring_overflows: get(&m.ring_overflows),
        cold_restarts: get(&m.cold_restarts),
        poisoned_commands: get(&m.poisoned_commands),
        failover_ms_last: m.failover.last_ms(),
        failover_ms_p99: m.failover.quantile_ms(0.99),
        rebuild_ms_last: m.rebuild.last_ms(),
        rebuild_ms_p95: m.rebuild.quantile_ms(0.95),
        command_latency_ms_p50: m.command_latency.quantile_ms(0.50),
        command_latency_ms_p95: m.command_latency.quantile_ms(0.95),
        command_latency_ms_p99: m.command_latency.quantile_ms(0.99),
        control_latency_ms: shared.depth as f64 * shared.block_ns() as f64 / 1e6,
        worker_load_percent: 0.0,
        worker_load_peak_percent: 0.0,
        voices_sounding: 0,
        open_fds,
        mapped_segments,
        shm_leaks: mapped_segments.saturating_sub(EXPECTED_SEGMENTS),
        live_children: 0,
        workers: Vec::new(),
    }
}

/// Segments the supervisor maps while running: two slots and the snapshot area.
const EXPECTED_SEGMENTS: u64 = 3;

/// Open fds and mapped chronus memfd segments of this process, from /proc.
fn process_resources() -> (u64, u64) {
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    let segments = std::fs::read_to_string("/proc/self/maps").map_or(0, |maps| {
        let mut names: Vec<&str> = maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|name| name.starts_with("/memfd:chronus"))
            .collect();
        names.sort_unstable();
        names.dedup();
        names.len() as u64
    });
    (fds, segments)
}
