//! The supervisor: the wiring of a running server, and its loop over the two slots.
//!
//! The output clock alone decides which slot is heard; this loop follows its decisions
//! (notices) and manages processes: it detects deaths through pidfds, kills workers the
//! output found late, rebinds their slot with a new generation and spawns a spare that
//! joins from a snapshot of the active worker. It never renders audio. What a slot becomes
//! on each event is decided by [`slot_state`](crate::slot_state); restarts after losing
//! both workers by [`recovery`](crate::recovery); which output plays by
//! [`sinks`](crate::sinks).
//!
//! The loop sleeps until something happens: a worker's pidfd, or the
//! [`wake`](crate::wake) eventfd the output and the OSC thread signal when they hand it
//! notices or requests. It polls briefly only while it watches for a change no event
//! announces (a spare joining, a dead slot's grace, a snapshot being published). It never
//! builds the metrics report: it publishes each slot's state and pid in atomics, and the
//! [`report`](crate::report) is built by whoever asks.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chronus_engine::{EngineConfig, JoinPoint, PatchChunk, StartMode};
use chronus_ipc::{SnapshotArea, SnapshotMeta};
use chronus_protocol::table::{PanicThread, DEBUG_PANIC};
use chronus_protocol::{reply, AddressTable};

use crate::command_log::CommandLogWriter;
use crate::config::ServeConfig;
use crate::live_patch::LivePatch;
use crate::log_limit;
use crate::metrics::{Metrics, MetricsReport};
use crate::notify::{Notifier, NotifyEvent, NotifySender};
use crate::osc::{ControlRequest, OscServer};
use crate::output::{FailoverCause, Inbound, Notice, OutputShared, Refusal, NO_BLOCK};
use crate::recorder::Recorder;
use crate::recovery::{
    answer_address, restart_backoff, Recovery, Replayed, Restart, RestorePoint, Suspect,
    HEALTHY_PAIR,
};
use crate::report::Reporter;
use crate::resume::Resume;
use crate::sinks::{select, Playing};
use crate::slot_state::{self, Event, Replacement, SlotState};
use crate::slots::{self, SlotRuntime};
use crate::state_file::StateWriter;
use crate::transport::{self, Replier, ReplyTo};
use crate::workers::{Worker, WorkerSpec};

/// How often the loop looks while it watches for a change no event announces.
const WATCH_INTERVAL: Duration = Duration::from_millis(1);
/// The longest the loop sleeps when nothing happens (it also sees a stop signal then).
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// The most of a cold restart's replay queued ahead of the restored workers, as a share
/// of a command ring (a quarter): the rest is room for the live commands the output keeps
/// stamping into the rings meanwhile, from the moment the new pair is bound, before its
/// processes have started and loaded the snapshot (on a loaded machine, most of a second).
/// With 2,048 places kept (a replay fed up to the brim), 5,000 live commands a second
/// overflowed both rings of a pair still starting (CI, beside other test files), which
/// replaced it. The replay loses no speed: this loop tops it up as the workers drain it.
const REPLAY_AHEAD_DIVISOR: usize = 4;

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
    /// The UDP reader and the TCP listener (watched by the loop, like the OSC thread).
    transport_threads: Vec<std::thread::JoinHandle<()>>,
    /// The stamped patch, and the committed ones waiting for their switch.
    patch: LivePatch,
    control: Receiver<ControlRequest>,
    /// Writes the command log from its own thread.
    command_log: Option<CommandLogWriter>,
    /// Writes the recordings from its own thread.
    recorder: Option<Recorder>,
    /// Writes the state file (`--state`) from its own thread.
    state_writer: Option<StateWriter>,
    /// Failovers, workers' roles and patch switches for `/notify` subscribers.
    notify: NotifySender,
    /// The notify thread (it catches its own panics; its end is reported once).
    notify_thread: Option<std::thread::JoinHandle<()>>,
    /// Whether the notify thread's untimely end was reported.
    notify_thread_lost: bool,
    /// Whether the recorder's, the command log writer's and the state file writer's
    /// untimely end was reported.
    record_threads_lost: [bool; 3],
    output: Option<Playing>,
    /// What of the output was opened before the workers started (JACK's client), until
    /// the output starts with it.
    prepared_output: Option<select::Prepared>,
    osc_thread: Option<std::thread::JoinHandle<()>>,
    started: Instant,
    /// Who asked for `/quit`; answered once everything is stopped.
    quit_requests: Vec<ReplyTo>,
    /// The restore point and the commands since, for losing both workers at once.
    recovery: Recovery,
    /// A cold restart's replay still to be queued for the output (as room frees up),
    /// ending with its [`Inbound::ReplayDone`].
    replay_queue: VecDeque<Inbound>,
    /// Cold restarts begun, to tell their replays apart.
    restarts: u64,
    /// The cold restart waiting for its pair to be bound, and the last command in its
    /// restore point: what its replay starts after.
    replaying_from: Option<(u64, u64)>,
    /// When the last cold restart began.
    last_cold_restart: Option<Instant>,
    /// When the pending cold restart is due (it backs off), once decided.
    cold_restart_due: Option<Instant>,
    /// Double faults in a row, each within [`HEALTHY_PAIR`] of the last cold restart.
    double_faults_in_a_row: u32,
    /// Fault injection (`/debug/spare_dies`): the point of its join at which the next
    /// spare dies.
    spare_dies_at: Option<JoinPoint>,
}

impl Supervisor {
    /// Compiles the patch, creates the slots, binds the OSC socket and starts two fresh
    /// workers; the output starts in [`run`](Self::run) as soon as one has rendered ahead.
    ///
    /// # Errors
    /// A patch that does not compile, an OSC address in use, shared memory that cannot be
    /// created, a command log or recording that cannot be created (or two in one file),
    /// workers that cannot be spawned.
    pub fn start(mut config: ServeConfig, stop: Arc<AtomicBool>) -> anyhow::Result<Supervisor> {
        config.check_record_files()?;
        // JACK imposes its sample rate and period: learn them before anything is sized.
        let prepared_output = select::prepare(&mut config)?;
        let resume = config.resume.take();
        // A resumed server goes on in its predecessor's session (and files).
        let session = resume
            .as_ref()
            .map_or_else(crate::state_file::new_session, |r| r.saved.session);
        let engine_config = EngineConfig {
            master: config.master,
            ..EngineConfig::new(config.sample_rate, config.block_frames, config.seed)
        };
        let table = LivePatch::compile(&config.patch, engine_config, config.allow_fault_injection)?;
        // Room for the state of any patch that fits in memory (the pages are memory only
        // once a snapshot touches them): a live edit never outgrows it.
        let snapshot_capacity = chronus_ipc::MAX_SNAPSHOT_BYTES;
        let mut editor = crate::patch_editor::PatchEditor::new(
            config.patch.clone(),
            engine_config,
            snapshot_capacity,
        )
        .map_err(anyhow::Error::msg)?;
        let (shared, snapshots) = slots::create_shared(&config, snapshot_capacity)?;
        if let Some(resume) = &resume {
            editor.number_after(resume.last_patch_version);
            shared.start_at(resume.start_block, resume.last_seq);
            // `/get` goes on from what the dead server played: the restore point's
            // values, then the commands replayed after it.
            if let Ok(engine) =
                chronus_engine::Engine::from_snapshot(&resume.saved.point.snapshot, engine_config)
            {
                editor.follow(engine.patch());
            }
            for replayed in &resume.replay {
                if let crate::recovery::Replayed::Command(stamped) = replayed {
                    editor.observe(&stamped.command, std::time::Instant::now());
                }
            }
        }
        // TCP on the same port number as UDP (OSC 1.0 size-prefixed packets).
        let (socket, tcp_listener) = transport::bind_osc(config.osc)?;
        let metrics = &shared.metrics;
        let (command_log, log_patches) = match (&config.command_log, &shared.command_log) {
            (Some(path), Some(queue)) => {
                let (writer, patches) = CommandLogWriter::start(
                    path,
                    table.clone(),
                    Arc::clone(queue),
                    shared.epoch,
                    Arc::clone(metrics),
                    resume.is_some(),
                    session,
                )?;
                (Some(writer), Some(patches))
            }
            _ => (None, None),
        };
        let recorder = match &shared.recording {
            Some(ring) => Some(Recorder::start(
                &config.recordings(),
                Arc::clone(ring),
                config.sample_rate,
                Arc::clone(metrics),
                resume
                    .as_ref()
                    .map(|r| r.start_block * config.block_frames as u64),
            )?),
            None => None,
        };
        let (control_tx, control) = mpsc::channel();
        let socket = Arc::new(socket);
        let exposure = Arc::new(config.exposure.clone());
        let replier = Arc::new(Replier::new(
            Arc::clone(&socket),
            config.tcp_framing,
            Arc::clone(&exposure),
            Arc::clone(&shared.metrics),
        ));
        let (packets_tx, packets) = mpsc::sync_channel(transport::HANDLER_QUEUE);
        // One reporter for `/metrics` answers and `metrics` pushes: a report takes the
        // workers' render times since the last one.
        let reporter = Arc::new(Mutex::new(Reporter::new(Arc::clone(&shared))));
        let (notify, notify_thread) =
            Notifier::start(&shared, &replier, Arc::clone(&reporter), &stop)
                .context("cannot start the notify thread")?;
        let transport_threads = transport::spawn_all(
            &socket,
            tcp_listener,
            &replier,
            &transport::Readers {
                packets: packets_tx,
                stop: Arc::clone(&stop),
                exposure: Arc::clone(&exposure),
                metrics: Arc::clone(&shared.metrics),
            },
            config.tcp_framing,
            config.tcp_idle_timeout,
        )?;
        let server = OscServer {
            replier: Arc::clone(&replier),
            packets,
            table: table.clone(),
            editor,
            fault_injection: config.allow_fault_injection,
            exposure,
            reply_budget: crate::exposure::ReplyBudget::unlimited(),
            shared: Arc::clone(&shared),
            reporter,
            notify: notify.clone(),
            dump_osc: false,
            stop: Arc::clone(&stop),
            control: control_tx,
            handling: None,
            die: false,
            command_log: log_patches,
            library: config.library.clone(),
            learning: None,
        };
        let osc_thread = std::thread::Builder::new()
            .name("chronus-osc".into())
            .stack_size(chronus_realtime::THREAD_STACK)
            .spawn(move || server.run())
            .context("cannot start the OSC thread")?;
        let patch = LivePatch::new(table, &config.patch, config.patch_path.clone());
        let initial = match &resume {
            Some(resume) => resume.saved.point.clone(),
            None => RestorePoint::of_patch(&config.patch, engine_config)?,
        };
        let state_writer = match &config.state {
            Some(path) => Some(StateWriter::start(
                path.clone(),
                engine_config,
                Arc::clone(&shared.metrics),
                &initial,
                session,
            )?),
            None => None,
        };
        let mut supervisor = Supervisor {
            patch,
            config,
            engine_config,
            shared,
            snapshots,
            slots: Default::default(),
            next_request: 1,
            stop,
            socket,
            replier,
            transport_threads,
            control,
            command_log,
            recorder,
            record_threads_lost: [false; 3],
            output: None,
            prepared_output: Some(prepared_output),
            osc_thread: Some(osc_thread),
            started: Instant::now(),
            quit_requests: Vec::new(),
            recovery: Recovery::new(Instant::now(), engine_config, initial),
            replay_queue: VecDeque::new(),
            restarts: 0,
            replaying_from: None,
            last_cold_restart: None,
            cold_restart_due: None,
            double_faults_in_a_row: 0,
            spare_dies_at: None,
            state_writer,
            notify,
            notify_thread: Some(notify_thread),
            notify_thread_lost: false,
        };
        match resume {
            Some(resume) => supervisor.resume(resume)?,
            None => {
                for slot in 0..2 {
                    supervisor.slots[slot].bind(slot, &supervisor.shared);
                    supervisor.spawn(slot, StartMode::Fresh { block: 0 }, false, None)?;
                }
            }
        }
        Ok(supervisor)
    }

    /// Starts both workers from a dead server's restore point, with what its command log
    /// holds after it replayed, as a cold restart does: the output starts at once at the
    /// block `resume` says (silence until the pair has caught up), and the replay reaches
    /// the pair as fast as their rings drain, however long it is.
    fn resume(&mut self, resume: Resume) -> anyhow::Result<()> {
        for replayed in resume.replay {
            match replayed {
                Replayed::Command(stamped) => self.recovery.stamped(stamped, None),
                Replayed::Patch { switch, text } => self.recovery.stamped_switch(switch, text),
            }
        }
        let point = resume.saved.point;
        tracing::info!(
            "resuming: the restore point at block {} (command {}), {} commands from the command log after it; playing from block {}",
            point.block,
            point.last_seq,
            self.recovery.history_len(),
            resume.start_block
        );
        self.start_output()?;
        self.restart_from_copy(&point)
    }

    /// The settings it runs with: those it was started with, and what the output imposed
    /// (JACK's sample rate and period).
    pub fn config(&self) -> &ServeConfig {
        &self.config
    }

    /// Starts the output `--output` chose (with the JACK client opened at start, if any).
    fn start_output(&mut self) -> anyhow::Result<()> {
        let prepared = self.prepared_output.take().unwrap_or_default();
        self.output = Some(select::start(
            &self.config,
            prepared,
            &self.shared,
            &self.stop,
        )?);
        Ok(())
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
        self.patch.table()
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
        chronus_realtime::mark_realtime_thread();
        if self.config.realtime {
            // Detection of a dead worker must not wait behind ordinary processes.
            use chronus_realtime as realtime;
            let scheduling = realtime::make_current_thread_realtime(realtime::SUPERVISOR_PRIORITY);
            realtime::log_scheduling("supervisor loop", &scheduling);
        }
        let result = self.run_loop();
        self.shutdown(result)
    }

    /// One pass of the loop: wait for an event (or the next look), then handle deaths,
    /// notices, requests and slot transitions. Public so a benchmark can drive the
    /// supervisor from its own loop; [`run`](Self::run) calls it.
    ///
    /// # Errors
    /// When the output could not be started.
    pub fn step(&mut self) -> anyhow::Result<()> {
        self.poll_deaths(self.next_wait());
        // Before looking at what the signals announced, so none is missed.
        self.shared.wake.clear();
        self.drain_notices();
        self.drain_control();
        self.check_flags();
        self.advance_slots()?;
        self.cancel_stale_restart();
        self.feed_replay();
        self.keep_restore_point();
        self.forget_old_double_faults();
        if self.output.is_none() {
            self.start_output_when_ready()?;
        }
        self.publish_slots();
        Ok(())
    }

    /// How long the next wait may last when no event comes: [`WATCH_INTERVAL`] while the
    /// loop watches for a change no event announces (the output not started yet, a spare
    /// starting or joining, a dead slot waiting out its grace or back-off, a snapshot
    /// being published), else [`IDLE_WAIT`].
    fn next_wait(&self) -> Duration {
        let watching = self.output.is_none()
            || self.recovery.watched().is_some()
            || !self.replay_queue.is_empty()
            || self.replaying_from.is_some()
            || self
                .slots
                .iter()
                .any(|s| !matches!(s.state, SlotState::Active | SlotState::Standby));
        if let Some(due) = self.cold_restart_due {
            // Backing off: nothing to watch until the restart is due.
            return due
                .saturating_duration_since(Instant::now())
                .clamp(WATCH_INTERVAL, IDLE_WAIT);
        }
        if watching {
            WATCH_INTERVAL
        } else {
            IDLE_WAIT
        }
    }

    /// Publishes each slot's state and worker pid for reports built on other threads, and
    /// a change of either to `/notify` subscribers of `worker`.
    fn publish_slots(&self) {
        for (slot, (runtime, link)) in self.slots.iter().zip(&self.shared.slots).enumerate() {
            let pid = runtime.worker.as_ref().map_or(0, |w| w.pid);
            let state = runtime.state.index();
            let old_state = link.published_state.swap(state, Ordering::AcqRel);
            let old_pid = link.published_pid.swap(pid, Ordering::AcqRel);
            let wanted = self
                .notify
                .wanted()
                .contains(chronus_protocol::Topic::Worker);
            if wanted && (old_state != state || old_pid != pid) {
                let role = runtime.state.name();
                self.notify.send(NotifyEvent::Worker { slot, role, pid });
            }
        }
    }

    fn run_loop(&mut self) -> anyhow::Result<()> {
        while !self.stop.load(Ordering::Acquire) {
            self.step()?;
            if self.output.as_ref().is_some_and(Playing::ended)
                && !self.stop.load(Ordering::Acquire)
            {
                bail!("the output stopped unexpectedly");
            }
            if let Some(name) = self.ended_thread() {
                if !self.stop.load(Ordering::Acquire) {
                    bail!("the {name} thread stopped unexpectedly; exiting rather than play on without answering (a service manager should restart the server)");
                }
            }
            self.watch_record_threads();
            self.watch_notify_thread();
        }
        Ok(())
    }

    /// Says once when the notify thread ended before the stop (it catches its own panics,
    /// so this is a bug): subscribers get no more pushes, and the sound plays on.
    fn watch_notify_thread(&mut self) {
        let ended = self
            .notify_thread
            .as_ref()
            .is_some_and(std::thread::JoinHandle::is_finished);
        if ended && !self.notify_thread_lost && !self.stop.load(Ordering::Acquire) {
            self.notify_thread_lost = true;
            Metrics::bump(&self.shared.metrics.notify_panics);
            tracing::error!("the notify thread stopped: /notify subscribers get no more pushes; the sound plays on");
        }
    }

    /// Says at once when the recorder or the command log's writer ends before the stop (a
    /// bug, as only a panic ends them): their files end there, and the server exits with
    /// an error at its stop ([`shutdown`](Self::shutdown) collects the panic), but plays on
    /// meanwhile, since the sound does not depend on its records.
    fn watch_record_threads(&mut self) {
        let ended = [
            self.recorder.as_ref().is_some_and(Recorder::ended),
            self.command_log
                .as_ref()
                .is_some_and(CommandLogWriter::ended),
            self.state_writer.as_ref().is_some_and(StateWriter::ended),
        ];
        let what = [
            "recorder thread stopped: the recordings end",
            "command log's writer stopped: the command log ends",
            "state file's writer stopped: the state file stays as it was",
        ];
        for ((ended, reported), what) in ended
            .into_iter()
            .zip(&mut self.record_threads_lost)
            .zip(what)
        {
            if ended && !*reported {
                *reported = true;
                tracing::error!("the {what} here (valid up to their last write); the sound plays on, and the server will exit with an error");
                Metrics::bump(&self.shared.metrics.record_threads_lost);
            }
        }
    }

    /// The name of a thread that serves clients (the OSC handler, the UDP reader, the TCP
    /// listener) and has ended: each one's end leaves the server deaf to someone, so the
    /// loop watches them all. (Panics in packet handling are caught per packet; this is
    /// for what escapes anyway.)
    fn ended_thread(&self) -> Option<String> {
        self.osc_thread
            .iter()
            .chain(&self.transport_threads)
            .find(|handle| handle.is_finished())
            .map(|handle| handle.thread().name().unwrap_or("an OSC").to_string())
    }

    /// Moves `slot` through the state machine on `event` (see [`SlotRuntime::apply`]).
    fn apply(&mut self, slot: usize, event: Event) {
        self.slots[slot].apply(slot, &self.shared, event);
    }

    /// Waits up to `timeout` for a worker to end or a wake-up, and handles the workers
    /// that ended.
    fn poll_deaths(&mut self, timeout: Duration) {
        for slot in slots::wait_for_exits(&self.slots, self.shared.wake.fd(), timeout) {
            let crashed = self.slots[slot].reap(slot, &self.shared);
            self.recovery.worker_died(slot, crashed);
            self.apply(slot, Event::Exited);
        }
    }

    fn drain_notices(&mut self) {
        while let Some(notice) = self.shared.notices.pop() {
            match notice {
                Notice::Stamped {
                    stamped, reply_to, ..
                } => {
                    if let chronus_engine::Command::SwitchPatch { version, .. } = stamped.command {
                        if let Some(text) = self.on_patch_switch(version, stamped.frame) {
                            self.recovery.stamped_switch(stamped, text);
                        }
                        continue;
                    }
                    self.recovery.stamped(stamped, reply_to);
                }
                Notice::Refused {
                    command,
                    reply_to,
                    why,
                } => self.refused(command, reply_to, why),
                Notice::Synced { id, reply_to } => {
                    self.replier.send_deferred(&reply::synced(id), reply_to);
                }
                Notice::SnapshotRequested {
                    request,
                    slot,
                    block,
                } => {
                    tracing::debug!("slot {slot}: snapshot {request} requested at block {block}");
                    self.recovery.snapshot_requested(request);
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
                    self.apply(to, Event::MadeActive);
                    self.apply(from, Event::DroppedByOutput { block });
                    let cause = match cause {
                        FailoverCause::Dead => "worker died",
                        FailoverCause::MissedDeadline => "missed deadline",
                    };
                    let frame = block * self.shared.block_frames as u64;
                    self.notify.send(NotifyEvent::Failover {
                        slot: to,
                        frame,
                        cause,
                    });
                }
                Notice::ActiveMissed { slot, block } => {
                    self.apply(slot, Event::ActiveMissed { block });
                }
                Notice::StandbyMissed { slot, block } => {
                    self.apply(slot, Event::StandbyMissed { block });
                }
                Notice::Diverged { slot, block } => {
                    self.apply(slot, Event::Diverged { block });
                }
                Notice::PairBound { restart, first_seq } => {
                    self.replay_to_new_pair(restart, first_seq);
                }
                Notice::DepthChanged(change) => log_depth_change(change, &self.shared),
                Notice::VoiceLimitChanged(change) => log_voice_limit(change),
                Notice::Underrun { block } => {
                    if log_limit::UNDERRUNS.allow() {
                        tracing::warn!("output: underrun at block {block}: no slot had it; played a fade to silence");
                    }
                }
            }
        }
    }

    /// A committed patch's switch was stamped (see [`LivePatch::switched`]): its text.
    fn on_patch_switch(&mut self, version: u32, frame: u64) -> Option<String> {
        self.drain_control();
        self.notify.send(NotifyEvent::Patch { version, frame });
        self.patch.switched(version, frame)
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
                } => self.patch.committed(version, text, table),
                ControlRequest::SpareDies { point } => {
                    tracing::warn!(
                        "fault injection: the next spare will die at its join's '{}' point",
                        point.name()
                    );
                    self.spare_dies_at = Some(point);
                }
                ControlRequest::DebugPanic { thread, reply_to } => {
                    let injected = match thread {
                        PanicThread::Recorder => self.recorder.as_ref().map(Recorder::inject_panic),
                        _ => self
                            .command_log
                            .as_ref()
                            .map(CommandLogWriter::inject_panic),
                    };
                    let answer = match injected {
                        Some(()) => reply::done(DEBUG_PANIC),
                        None => reply::fail(
                            DEBUG_PANIC,
                            "that thread is not running: record with --record wav:PATH, log with --command-log PATH",
                        ),
                    };
                    self.replier.send_deferred(&answer, reply_to);
                }
            }
        }
    }

    /// Ring overflows mean a worker stopped draining its commands: replace it.
    fn check_flags(&mut self) {
        for slot in 0..2 {
            if self.shared.slots[slot].overflowed.load(Ordering::Acquire) {
                let block = self.shared.played.load(Ordering::Acquire);
                self.apply(slot, Event::RingOverflow { block });
            }
        }
    }

    fn advance_slots(&mut self) -> anyhow::Result<()> {
        let played = self.shared.played.load(Ordering::Acquire);
        for slot in 0..2 {
            match self.slots[slot].state {
                SlotState::Dead => {
                    if self.slots[slot].rebind_after.is_none() {
                        self.slots[slot].unbind(slot, &self.shared, played);
                    }
                    if self.slots[slot].rebind_after.is_some_and(|b| played < b)
                        && self.output.is_some()
                    {
                        continue;
                    }
                    if Instant::now() < self.slots[slot].respawn_not_before {
                        continue;
                    }
                    let other = &self.slots[1 - slot];
                    match slot_state::replace_dead(other.state, other.worker.is_some()) {
                        Replacement::JoinActive => self.spawn_spare(slot)?,
                        Replacement::RestartBoth => return self.cold_restart_when_due(played),
                        Replacement::Wait => {}
                    }
                }
                SlotState::Starting | SlotState::Joining => {
                    let runtime = &self.slots[slot];
                    let link = &self.shared.slots[slot];
                    // Joined, and holding the block the output plays next: from the
                    // block it restored at, it is in lockstep with the active worker.
                    let played = self.shared.played.load(Ordering::Acquire);
                    if link.slot.joined_generation() == runtime.generation
                        && link.slot.has_block(played)
                    {
                        self.apply(slot, Event::Joined);
                    } else if runtime
                        .worker
                        .as_ref()
                        .is_some_and(|w| w.spawned_at.elapsed() > self.config.join_timeout)
                    {
                        self.apply(slot, Event::JoinTimedOut);
                    }
                }
                SlotState::Standby
                    if self.shared.active.load(Ordering::Acquire) == slot
                        && self.output.is_some() =>
                {
                    self.apply(slot, Event::MadeActive);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The usual replacement: a spare joins the lockstep from a snapshot of the active worker.
    fn spawn_spare(&mut self, slot: usize) -> anyhow::Result<()> {
        self.slots[slot].bind(slot, &self.shared);
        let request = self.next_request;
        self.next_request += 1;
        let die_at = self.spare_dies_at.take();
        self.spawn(slot, StartMode::Join { request }, true, die_at)?;
        self.slots[slot].replacement = true;
        if self
            .shared
            .inbound
            .push(Inbound::Snapshot { request })
            .is_err()
        {
            tracing::warn!("slot {slot}: could not request a snapshot (queue full); will retry");
            self.apply(slot, Event::SnapshotUnqueued);
        }
        Ok(())
    }

    /// Hands the restore point to the state file's writer (`--state`), which writes it off
    /// this loop.
    fn save_state(&self) {
        if let (Some(writer), Some(point)) = (&self.state_writer, self.recovery.restore_point()) {
            writer.save(point);
        }
    }

    /// Keeps a recent snapshot and the commands since, so that losing both workers at once
    /// costs a few blocks of silence, not the state of the music: watches for requested
    /// snapshots to be published, and asks for a fresh one every few seconds.
    fn keep_restore_point(&mut self) {
        let now = Instant::now();
        if let Some(request) = self.recovery.watched() {
            let mut bytes = Vec::new();
            match self.snapshots.read(request, &mut bytes) {
                Some(meta) => {
                    self.recovery
                        .snapshot_published(bytes, meta.block, meta.last_seq, now);
                    self.save_state();
                }
                None => self.recovery.snapshot_pending(now),
            }
            return;
        }
        let pair_ready = matches!(
            (self.slots[0].state, self.slots[1].state),
            (SlotState::Active, SlotState::Standby) | (SlotState::Standby, SlotState::Active)
        );
        if self.output.is_some() && pair_ready && self.recovery.refresh_due(now) {
            let request = self.next_request;
            self.next_request += 1;
            let queued = self.shared.inbound.push(Inbound::Snapshot { request });
            self.recovery
                .refresh_requested(queued.is_ok().then_some(request), now);
        }
    }

    /// A cold restart waiting out its back-off is called off when a slot came back by
    /// itself meanwhile (a spare joined from a worker that had not died after all, and
    /// serves).
    fn cancel_stale_restart(&mut self) {
        // Back means serving again (a standby or active). A spare still joining is not:
        // the restart was decided with it there (it joins from an active that is gone),
        // and calling the restart off for it decided it again at once, round after round.
        let serving = self
            .slots
            .iter()
            .any(|s| matches!(s.state, SlotState::Active | SlotState::Standby));
        if self.cold_restart_due.is_some() && serving {
            tracing::info!("a slot came back by itself: the pending cold restart is called off");
            self.cold_restart_due = None;
            self.shared
                .metrics
                .cold_restart_backoff_ms
                .store(0, Ordering::Relaxed);
        }
    }

    /// A pair that has played [`HEALTHY_PAIR`] since the last cold restart starts the count
    /// of double faults in a row again.
    fn forget_old_double_faults(&mut self) {
        if self.double_faults_in_a_row > 0
            && self.cold_restart_due.is_none()
            && self
                .last_cold_restart
                .is_some_and(|at| at.elapsed() >= HEALTHY_PAIR)
        {
            self.double_faults_in_a_row = 0;
            self.shared
                .metrics
                .double_faults_in_a_row
                .store(0, Ordering::Relaxed);
        }
    }

    /// Both workers lost at once: a cold restart, at once for the first double fault, after
    /// a back-off for one more in a row (within [`HEALTHY_PAIR`] of the last restart).
    fn cold_restart_when_due(&mut self, played: u64) -> anyhow::Result<()> {
        let now = Instant::now();
        let due = match self.cold_restart_due {
            Some(due) => due,
            None => {
                let again = self
                    .last_cold_restart
                    .is_some_and(|at| now.duration_since(at) < HEALTHY_PAIR);
                self.double_faults_in_a_row = if again {
                    self.double_faults_in_a_row + 1
                } else {
                    0
                };
                let wait = restart_backoff(self.double_faults_in_a_row);
                if !wait.is_zero() {
                    tracing::error!(
                        "both workers lost again, {} times in a row within 10 s of a restart: restarting in {wait:?}",
                        self.double_faults_in_a_row
                    );
                }
                let metrics = &self.shared.metrics;
                metrics
                    .double_faults_in_a_row
                    .store(u64::from(self.double_faults_in_a_row), Ordering::Relaxed);
                metrics
                    .cold_restart_backoff_ms
                    .store(wait.as_millis() as u64, Ordering::Relaxed);
                *self.cold_restart_due.insert(now + wait)
            }
        };
        if now < due {
            return Ok(());
        }
        self.cold_restart_due = None;
        self.last_cold_restart = Some(now);
        self.shared
            .metrics
            .cold_restart_backoff_ms
            .store(0, Ordering::Relaxed);
        self.cold_restart(played)
    }

    /// Both workers lost at once: start a new pair from the restore point, with every
    /// command since replayed (less a poison command), or from the patch at the horizon if
    /// the restore point itself is poisoned.
    fn cold_restart(&mut self, played: u64) -> anyhow::Result<()> {
        Metrics::bump(&self.shared.metrics.cold_restarts);
        if let Some(suspect) = self.recovery.take_suspect() {
            self.refuse_poison(suspect);
        }
        for slot in 0..2 {
            if let Some(worker) = self.slots[slot].worker.take() {
                worker.kill_and_reap();
            }
            if self.slots[slot].rebind_after.is_none() {
                self.slots[slot].unbind(slot, &self.shared, played);
            }
        }
        if self.output.is_some() {
            slots::wait_until_unused(&self.shared, played);
        }
        // A replay still queued from an earlier restart is for workers that are gone.
        self.replay_queue.clear();
        self.replaying_from = None;
        self.recovery.restarted();
        if let Restart::FromRestorePoint(point) = self.recovery.restart() {
            tracing::error!("both workers lost: restarting both from the restore point");
            self.save_state();
            match self.restart_from_copy(&point) {
                Ok(()) => return Ok(()),
                Err(e) => tracing::error!("{e:#}: restarting from the patch"),
            }
        }
        tracing::error!("both workers lost and the restore point is poisoned: cold restart of both slots from the patch, at the horizon");
        self.recovery.restarted_from_patch();
        self.shared.replay_gate.open();
        let start = self.shared.horizon.load(Ordering::Acquire) + 1;
        for slot in 0..2 {
            self.slots[slot].bind(slot, &self.shared);
            self.spawn(slot, StartMode::Fresh { block: start }, false, None)?;
        }
        Ok(())
    }

    /// Publishes the supervisor's copy of restore point `point` in the snapshot area (no
    /// worker lives to write it now) and starts both workers from it
    /// ([`restart_from`](Self::restart_from)).
    fn restart_from_copy(&mut self, point: &RestorePoint) -> anyhow::Result<()> {
        let request = self.next_request;
        self.next_request += 1;
        let meta = SnapshotMeta {
            request,
            block: point.block,
            last_seq: point.last_seq,
            len: point.snapshot.len() as u64,
        };
        self.snapshots
            .publish(meta, &point.snapshot)
            .context("cannot publish the restore point")?;
        self.restart_from(request, point)
    }

    /// Starts both workers from restore point `point` (published as snapshot `request`),
    /// held there ([`ReplayGate::hold`](crate::output::ReplayGate::hold)) until everything stamped since is in
    /// their rings: the output binds both slots in one block and says from which command
    /// on it stamps into them ([`Notice::PairBound`]); the rest is replayed then
    /// ([`replay_to_new_pair`](Self::replay_to_new_pair)).
    fn restart_from(&mut self, request: u64, point: &RestorePoint) -> anyhow::Result<()> {
        self.restarts += 1;
        tracing::info!(
            "starting both workers from the restore point at block {} (command {})",
            point.block,
            point.last_seq,
        );
        if self.output.is_none() {
            // Nothing is stamped before the output starts: this loop fills the new pair's
            // rings itself, before they start, with everything since the restore point.
            for slot in 0..2 {
                self.slots[slot].bind(slot, &self.shared);
            }
            self.replay_into_rings(point.last_seq)?;
            for slot in 0..2 {
                self.spawn(slot, StartMode::Join { request }, false, None)?;
            }
            return Ok(());
        }
        self.replaying_from = Some((self.restarts, point.last_seq));
        self.shared.replay_gate.hold(self.restarts, point.block);
        for slot in 0..2 {
            self.slots[slot].prepare(slot, &self.shared);
            self.spawn(slot, StartMode::Join { request }, false, None)?;
        }
        self.shared.bind_pair(self.restarts);
        Ok(())
    }

    /// Before the output starts (both workers lost at start-up), when this loop is the
    /// only writer of the rings: pushes every command after `last_seq` into both bound
    /// slots' rings (a patch switch's text first, as its chunks, numbered with the
    /// switch's seq).
    ///
    /// # Errors
    /// When the rings cannot hold them all.
    fn replay_into_rings(&mut self, last_seq: u64) -> anyhow::Result<()> {
        let replay = self.recovery.replay(last_seq, u64::MAX);
        for link in &self.shared.slots {
            let generation = link.generation.load(Ordering::Acquire);
            let mut records = Vec::new();
            for replayed in &replay {
                match replayed {
                    Replayed::Command(stamped) => records.push(stamped.to_record(generation)),
                    Replayed::Patch { switch, text } => {
                        let chronus_engine::Command::SwitchPatch { version, .. } = switch.command
                        else {
                            continue;
                        };
                        for mut chunk in PatchChunk::split(version, text.as_bytes()) {
                            chunk.seq = switch.seq;
                            records.push(chunk.to_record(generation));
                        }
                        records.push(switch.to_record(generation));
                    }
                }
            }
            if !records.iter().all(|record| link.slot.push_command(record)) {
                bail!(
                    "the command rings cannot hold the {} commands to replay",
                    replay.len()
                );
            }
        }
        tracing::info!(
            "replaying the {} commands stamped since the restore point",
            replay.len()
        );
        Ok(())
    }

    /// The new pair of cold restart `restart` receives every command from `first_live` on
    /// in its rings: queue the replay of those before it, since the restore point, and the
    /// end of the replay, which lets them render on.
    fn replay_to_new_pair(&mut self, restart: u64, first_live: u64) {
        let Some((current, last_seq)) = self.replaying_from else {
            return;
        };
        if current != restart {
            return;
        }
        self.replaying_from = None;
        let replay = self.recovery.replay(last_seq, first_live);
        tracing::info!(
            "replaying the {} commands stamped since the restore point",
            replay.len()
        );
        // The gate after each command: the earliest block among the frames of those after
        // it (a timed one may come before commands due sooner).
        let frames = self.shared.block_frames as u64;
        let mut gates = vec![NO_BLOCK; replay.len()];
        for i in (1..replay.len()).rev() {
            gates[i - 1] = gates[i].min(replay[i].stamped().frame / frames);
        }
        for (replayed, gate_after) in replay.into_iter().zip(gates) {
            match replayed {
                Replayed::Command(stamped) => self.replay_queue.push_back(Inbound::Replay {
                    stamped,
                    restart,
                    gate_after,
                }),
                Replayed::Patch { switch, text } => {
                    let chronus_engine::Command::SwitchPatch { version, .. } = switch.command
                    else {
                        continue;
                    };
                    for chunk in PatchChunk::split(version, text.as_bytes()) {
                        self.replay_queue.push_back(Inbound::PatchChunk(chunk));
                    }
                    self.replay_queue.push_back(Inbound::Replay {
                        stamped: switch,
                        restart,
                        gate_after,
                    });
                }
            }
        }
        self.replay_queue.push_back(Inbound::ReplayDone { restart });
        self.feed_replay();
    }

    /// Queues as much of a cold restart's replay as its share of the rings has room for
    /// ([`REPLAY_AHEAD_DIVISOR`]): the output pushes each item into both rings, and the
    /// restored workers drain them as the gate rises, so the replay never overflows a ring
    /// however long it is, nor leaves the live commands without room.
    fn feed_replay(&mut self) {
        if self.replay_queue.is_empty() {
            return;
        }
        let capacity = self.shared.slots[0].slot.layout().command_capacity as usize;
        let in_rings = self
            .shared
            .slots
            .iter()
            .map(|link| link.slot.commands_pending() as usize)
            .max()
            .unwrap_or(0);
        let mut room =
            (capacity / REPLAY_AHEAD_DIVISOR).saturating_sub(in_rings + self.shared.inbound.len());
        while room > 0 {
            let Some(&item) = self.replay_queue.front() else {
                return;
            };
            if self.shared.inbound.push(item).is_err() {
                return;
            }
            self.replay_queue.pop_front();
            room -= 1;
        }
    }

    /// The output refused a command at stamping: its sender is told (commands are decoded
    /// against the patch stamped when the output meets them, which is this loop's table
    /// until the next switch notice).
    fn refused(&self, command: chronus_engine::Command, reply_to: Option<ReplyTo>, why: Refusal) {
        let address = answer_address(self.patch.table(), &command);
        if log_limit::REFUSED.allow() {
            let from = reply_to.map_or_else(|| "the server".to_string(), |to| to.to_string());
            tracing::info!(
                "refused {address} from {from} at stamping: {}",
                why.reason()
            );
        }
        if let Some(to) = reply_to {
            self.replier
                .send_deferred(&reply::fail(&address, why.reason()), to);
        }
    }

    /// The command both workers died of (DESIGN.md invariant 6) is not applied again, and
    /// its sender is told.
    fn refuse_poison(&mut self, suspect: Suspect) {
        Metrics::bump(&self.shared.metrics.commands_dropped_poison);
        let address = suspect.command.map_or_else(
            || "an unknown command".to_string(),
            |c| answer_address(self.patch.table(), &c.command),
        );
        tracing::error!(
            "both workers died on block {} applying command {} ({address}); it will not be applied again",
            suspect.block,
            suspect.seq,
        );
        if let Some(to) = suspect.reply_to {
            self.replier.send_deferred(
                &reply::fail(&address, "this command made both workers fail; it was dropped and the sound restored without it"),
                to,
            );
        }
    }

    /// Starts a worker in `slot`; `spare`: one joining a heard worker, which catches up
    /// quietly; `die_at` is fault injection for it.
    fn spawn(
        &mut self,
        slot: usize,
        start: StartMode,
        spare: bool,
        die_at: Option<JoinPoint>,
    ) -> anyhow::Result<()> {
        let link = &self.shared.slots[slot];
        let spec = WorkerSpec {
            exe: &self.config.worker_exe,
            slot_fd: link.slot.fd(),
            snapshot_fd: self.snapshots.fd(),
            generation: self.slots[slot].generation,
            start,
            config: self.engine_config,
            patch_path: self.patch.path(),
            realtime: self.config.realtime,
            die_at,
            spare,
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
        let event = match start {
            StartMode::Fresh { .. } => Event::SpawnedFresh,
            StartMode::Join { .. } => Event::SpawnedSpare,
        };
        self.apply(slot, event);
        Ok(())
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
        self.apply(first, Event::MadeActive);
        self.start_output()?;
        Ok(())
    }

    /// A fresh copy of every metric (for a benchmark driving [`step`](Self::step); not
    /// from the loop of [`run`](Self::run), which never builds reports).
    pub fn build_report(&self) -> MetricsReport {
        self.publish_slots();
        Reporter::new(Arc::clone(&self.shared)).build()
    }

    fn shutdown(mut self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Release);
        let output_result = self.output.take().map_or(Ok(()), Playing::stop);
        // Commands stamped in the last blocks.
        self.drain_notices();
        // The output has stopped: the writers take its last blocks and commands, and end.
        let logged = self
            .command_log
            .take()
            .map_or(Ok(()), CommandLogWriter::finish);
        let recorded = self.recorder.take().map_or(Ok(()), Recorder::finish);
        if let Some(writer) = self.state_writer.take() {
            writer.finish();
        }
        for slot in 0..2 {
            if let Some(worker) = self.slots[slot].worker.take() {
                worker.kill_and_reap();
            }
        }
        if let Some(handle) = self.osc_thread.take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.notify_thread.take() {
            let _ = handle.join();
        }
        for handle in std::mem::take(&mut self.transport_threads) {
            let _ = handle.join();
        }
        self.drain_control();
        self.patch.remove_files();
        for to in std::mem::take(&mut self.quit_requests) {
            self.replier.send_deferred(&reply::done("/quit"), to);
        }
        // TCP clients' writers send what is queued (`/done /quit` included) before exit.
        self.replier.finish(Duration::from_secs(1));
        tracing::info!("stopped");
        // Every failure is told, the loop's first (it is why the server stopped).
        let failures: Vec<String> = [result, output_result, logged, recorded]
            .into_iter()
            .filter_map(|r| r.err().map(|e| format!("{e:#}")))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            Err(anyhow::anyhow!("{}", failures.join("; ")))
        }
    }
}

/// Says in the log why the depth changed, and what it means for latency.
fn log_voice_limit(change: crate::overload::LimitChange) {
    use crate::overload::{LimitReason, FUTILE_HOLD_NS, LOW_LOAD};
    let limit = |voices: u16| match voices {
        0 => "none".to_string(),
        n => format!("{n} voices per instrument"),
    };
    let (from, to) = (limit(change.from), limit(change.voices));
    let load = change.load * 100.0;
    match change.reason {
        LimitReason::Overload => tracing::warn!(
            "overload: the workers take {load:.0} % of a block period with {} voices sounding; voice limit {from} -> {to} (/voices/limit sets one yourself)",
            change.sounding
        ),
        LimitReason::NotTheVoices => tracing::warn!(
            "overload: shedding voices did not lower the load ({load:.0} % of a block period with {} voices): the time goes elsewhere; voice limit back {from} -> {to}, no cut for {} s",
            change.sounding,
            FUTILE_HOLD_NS / 1_000_000_000
        ),
        LimitReason::Calm => tracing::info!(
            "voice limit {from} -> {to}: the load has stayed under {:.0} % for 10 s ({load:.0} % now)",
            LOW_LOAD * 100.0
        ),
    }
}

fn log_depth_change(change: crate::depth::DepthChange, shared: &OutputShared) {
    use crate::depth::DepthReason;
    let block_ms = shared.block_ns() as f64 / 1e6;
    let (from, to) = (change.from, change.to);
    let latency = format!(
        "depth {from} -> {to} blocks (control latency {:.1} ms)",
        to as f64 * block_ms
    );
    match change.reason {
        DepthReason::LowSlack(ns) => tracing::info!(
            "{latency}: a block was ready only {:.2} ms before it was played",
            ns as f64 / 1e6
        ),
        DepthReason::Missed => {
            tracing::warn!("{latency}: a worker missed a block's deadline")
        }
        DepthReason::Period(blocks) => tracing::warn!(
            "{latency}: the output takes {blocks} blocks ({} frames) at a time, and a smaller depth would read blocks before the workers may render them",
            blocks * shared.block_frames as u64
        ),
        DepthReason::Calm => tracing::info!(
            "{latency}: the blocks of the last 10 s were ready early enough for one block less"
        ),
    }
}
