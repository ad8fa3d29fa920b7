//! Server metrics: one declarative list of every metric users see, the atomics the
//! server's threads bump, and the report that `/metrics` and `chronus status` show.
//!
//! [`metrics!`] below is the only place a metric is declared: each entry gives its name,
//! its doc and its kind, and generates the atomic in [`Metrics`] (for counters), the field
//! in [`MetricsReport`], its entry in [`METRICS`] (which `/metrics.reply`, `chronus status
//! --json` and docs/metrics.md are made from) and its value in [`MetricsReport::values`].
//! To add a counter, add one line to the `counters` section and bump it where it happens.
//! The output thread, the OSC thread and the supervisor loop update the atomics without
//! locks or allocation. The report is made of [`MetricsReport::counters`] (the counters,
//! histograms and `/proc`) and [`LoadTracker`] (the workers' view);
//! [`report`](crate::report) builds it, off the real-time threads.

use std::sync::atomic::{
    AtomicU64,
    Ordering::{Acquire, Relaxed, Release},
};
use std::time::{Duration, Instant};

use chronus_ipc::WorkerCounts;
use chronus_protocol::MetricValue;
use serde::Serialize;

/// A latency histogram over fixed buckets of 10 µs, up to 200 ms; lock-free.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    last_ns: AtomicU64,
}

/// Width of one histogram bucket.
const BUCKET_NS: u64 = 10_000;
/// Number of buckets: 10 µs × 20 000 = 200 ms; slower samples land in the last bucket.
const BUCKETS: usize = 20_000;

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Histogram {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            last_ns: AtomicU64::new(0),
        }
    }

    /// Records one sample, in nanoseconds. Lock- and allocation-free.
    pub fn record_ns(&self, ns: u64) {
        let index = ((ns / BUCKET_NS) as usize).min(BUCKETS - 1);
        if let Some(bucket) = self.buckets.get(index) {
            bucket.fetch_add(1, Relaxed);
        }
        self.last_ns.store(ns, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Samples recorded so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The last sample in milliseconds, or `None` before the first.
    pub fn last_ms(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.last_ns.load(Relaxed) as f64 / 1e6)
    }

    /// The `q` quantile (0..1) in milliseconds (bucket upper edge), or `None` if empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let total: u64 = self.buckets.iter().map(|b| b.load(Relaxed)).sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Relaxed);
            if seen >= rank {
                return Some(((i as u64 + 1) * BUCKET_NS) as f64 / 1e6);
            }
        }
        None
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

/// What a metric measures, which says how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Events since the server started: only ever grows.
    Counter,
    /// A level right now (a count of things, a load, a setting).
    Gauge,
    /// A time in ms from a histogram; absent until the first sample.
    Time,
}

impl MetricKind {
    /// The word docs/metrics.md uses.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Time => "time (ms)",
        }
    }
}

/// One entry of the list of metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricInfo {
    /// The name users see in `/metrics.reply` and `chronus status --json`.
    pub name: &'static str,
    /// What it means (the doc comment of its declaration).
    pub doc: &'static str,
    /// Counter, gauge or time.
    pub kind: MetricKind,
}

/// A report field's value as the number `/metrics.reply` carries (`None`: not measured yet).
trait MetricNumber {
    fn number(&self) -> Option<f64>;
}

impl MetricNumber for u64 {
    fn number(&self) -> Option<f64> {
        Some(*self as f64)
    }
}

impl MetricNumber for f64 {
    fn number(&self) -> Option<f64> {
        Some(*self)
    }
}

impl MetricNumber for bool {
    fn number(&self) -> Option<f64> {
        Some(f64::from(u8::from(*self)))
    }
}

impl MetricNumber for Option<f64> {
    fn number(&self) -> Option<f64> {
        *self
    }
}

/// Declares every metric once; see the module comment. `counters` are atomics the
/// server's threads bump (and copied into the report); `report` fields are filled when a
/// report is built (from histograms, the workers, /proc or other counters). An entry's
/// name is its field name unless `= "name"` gives another (for dotted names).
macro_rules! metrics {
    (
        counters {
            $( $(#[doc = $cdoc:literal])+ $cfield:ident $(= $cname:literal)?; )*
        }
        report {
            $( $(#[doc = $rdoc:literal])+ $rfield:ident $(= $rname:literal)?: $rty:ty, $rkind:ident; )*
        }
    ) => {
        /// All counters of a running server, one atomic each, and the latency histograms.
        #[derive(Default)]
        pub struct Metrics {
            $( $(#[doc = $cdoc])+ pub $cfield: AtomicU64, )*
            /// Detection to first block served from the new slot.
            pub failover: Histogram,
            /// Spawn of a spare to its joining the lockstep.
            pub rebuild: Histogram,
            /// Receive of a command to the first frame that reflects it.
            pub command_latency: Histogram,
            /// Stamping to `write` of the command log's last batch, in ns (reported as
            /// `command_log_lag_ms`).
            pub command_log_lag_ns: AtomicU64,
            /// The largest such lag since start, in ns (reported as `command_log_lag_ms_max`).
            pub command_log_lag_max_ns: AtomicU64,
            /// Set by the supervisor loop: the wait before a cold restart that backs off, in
            /// ms (0: none waiting).
            pub cold_restart_backoff_ms: AtomicU64,
            /// Set by the supervisor loop: double faults in a row, each within 10 s of
            /// the last cold restart.
            pub double_faults_in_a_row: AtomicU64,
            /// Set by the output: the least depth its sink allows, in blocks.
            pub depth_floor_blocks: AtomicU64,
            /// Set by the output: the voice limit last stamped, per instrument (0: none).
            pub voice_limit: AtomicU64,
            /// Set by the output every second: the least slack of a block read in the last
            /// second, in ns (0: none measured yet).
            pub block_slack_min_ns: AtomicU64,
            /// Set by a device output: its period in frames (0: a paced sink).
            pub device_period_frames: AtomicU64,
            /// Set by a device output: the sample rate it runs at (0: a paced sink).
            pub device_sample_rate: AtomicU64,
            /// Set by the JACK output: whether it is connected to a JACK server now.
            pub jack_connected: AtomicU64,
            /// Set by the notify thread: its subscribers now.
            pub notify_subscribers: AtomicU64,
        }

        /// A point-in-time copy of every metric, as `/metrics` and `chronus status --json`
        /// show it.
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct MetricsReport {
            $( $(#[doc = $cdoc])+ pub $cfield: u64, )*
            $( $(#[doc = $rdoc])+ pub $rfield: $rty, )*
            /// One entry per slot.
            pub workers: Vec<WorkerReport>,
        }

        /// Every metric of the server but the per-slot ones ([`SLOT_METRICS`]), in the
        /// order `/metrics.reply` lists them.
        pub const METRICS: &[MetricInfo] = &[
            $( MetricInfo {
                name: metrics!(@name $cfield $($cname)?),
                doc: concat!($($cdoc),+),
                kind: MetricKind::Counter,
            }, )*
            $( MetricInfo {
                name: metrics!(@name $rfield $($rname)?),
                doc: concat!($($rdoc),+),
                kind: MetricKind::$rkind,
            }, )*
        ];

        impl MetricsReport {
            /// A report holding the counters as they are now; everything else at zero.
            /// Read in declaration order, each with `Acquire` against [`Metrics::bump`]'s
            /// `Release`: a counter bumped before another (on one thread) is seen by any
            /// report that sees the later bump.
            fn read_counters(metrics: &Metrics) -> MetricsReport {
                MetricsReport {
                    $( $cfield: metrics.$cfield.load(Acquire), )*
                    ..MetricsReport::default()
                }
            }

            /// Every metric of [`METRICS`] with its value, in the same order (`None`:
            /// a time not measured yet).
            pub fn values(&self) -> Vec<(&'static str, Option<f64>)> {
                vec![
                    $( (metrics!(@name $cfield $($cname)?), self.$cfield.number()), )*
                    $( (metrics!(@name $rfield $($rname)?), self.$rfield.number()), )*
                ]
            }
        }
    };
    (@name $field:ident $name:literal) => { $name };
    (@name $field:ident) => { stringify!($field) };
}

metrics! {
    counters {
        /// Workers lost to any fault (death or missed deadline).
        crash_count;
        /// The part of `crash_count` detected by a missed deadline (hang, stop, too slow).
        deadline_misses;
        /// Spares built and joined after a loss.
        replacements;
        /// Times the output switched to the other slot.
        failover_count;
        /// Blocks played since start. (Read before `underruns`, which the output counts
        /// before it counts the block played: so a report's `underruns` holds every
        /// underrun of its first `blocks_played` blocks.)
        blocks_played;
        /// Blocks the output could fill from neither slot.
        underruns;
        /// Commands that arrived: every OSC message (each message of a bundle counts,
        /// queries and `/sync` included; a message to an address pattern counts once per
        /// address it matches, once if refused), and each undecodable packet as one. Each is then
        /// either accepted or rejected: `commands_received = commands_accepted +
        /// commands_rejected`.
        commands_received;
        /// Commands taken on: decoded, valid, and queued or answered. Each is then applied,
        /// pending or dropped: `commands_accepted = commands_applied + commands_pending +
        /// commands_dropped` (exact once `/sync` is answered and the workers have caught up).
        commands_accepted;
        /// Rejected: a packet that was not OSC (no `/fail`: there is no address to answer).
        commands_rejected_undecodable = "commands_rejected.undecodable";
        /// Rejected with `/fail`: unknown address, arguments that do not fit it, or a bundle
        /// timed too far ahead.
        commands_rejected_invalid = "commands_rejected.invalid";
        /// Rejected with `/fail`: the queue to the output clock had no room (a bundle that
        /// does not fit is refused whole).
        commands_rejected_busy = "commands_rejected.busy";
        /// Rejected with `/fail`: a `/patch/...` edit the patch editor refused, or a
        /// `/library/...` request that failed (unknown name, unreadable file, a patch that
        /// does not compile).
        commands_rejected_patch_edit = "commands_rejected.patch_edit";
        /// Rejected: handling the message panicked (a bug; counted in `handler_panics`), or
        /// it came after that message in the same packet.
        commands_rejected_panic = "commands_rejected.panic";
        /// Rejected with `/fail`: `/quit` or `/debug/...` from a client other than loopback
        /// (taken only with `--allow-remote-quit`); a bundle holding one is refused whole.
        commands_rejected_not_permitted = "commands_rejected.not_permitted";
        /// Applied by the supervisor: queries answered, `/sync` (once everything before it is
        /// stamped), patch edits other than commit, `/quit`, `/debug/...` (once handed to a
        /// worker).
        commands_answered = "commands_applied.answered";
        /// Dropped: the command killed both workers at once (a poison command, answered
        /// with `/fail`).
        commands_dropped_poison = "commands_dropped.poison";
        /// Dropped with `/fail` at stamping: `MAX_ADMITTED` commands were already waiting
        /// for their frame (or `MAX_ADMITTED_TIMED` timed ones), so no worker's engine could
        /// be trusted to hold one more. Decided once, for both workers.
        commands_dropped_queue_full = "commands_dropped.queue_full";
        /// Commands whose timetag had already passed the horizon when stamped (applied at
        /// the horizon, as soon as possible).
        late_commands;
        /// Blocks present in both slots and compared bit for bit.
        lockstep_blocks_compared;
        /// Of those, blocks that differed (must stay 0).
        lockstep_mismatches;
        /// Standbys retired for leaving the lockstep (a block differed from the active
        /// worker's); each is replaced by a spare joined from the active worker.
        lockstep_standbys_retired;
        /// Times the paced output woke too late and dropped its backlog.
        output_late_wakeups;
        /// JACK xruns: periods the JACK server could not complete in time (server-wide: a
        /// late client anywhere in the JACK graph counts). Must stay 0.
        jack_xruns;
        /// Times the output reconnected to a JACK server that had gone away (it plays on
        /// a paced fallback meanwhile).
        jack_reconnects;
        /// Records a full command ring could not take (the slot is then replaced).
        ring_overflows;
        /// Notices the output could not hand to the supervisor (must stay 0).
        notices_dropped;
        /// Cold restarts: both workers lost at once, a new pair started from a snapshot.
        cold_restarts;
        /// Packets whose handling panicked; each was answered `/fail` and the server went on.
        handler_panics;
        /// UDP replies dropped because the socket could not take them at once.
        udp_replies_dropped;
        /// UDP datagrams read but dropped unread because the OSC handler was
        /// `HANDLER_QUEUE` packets behind (a flood); they are not in `commands_received`.
        /// (Datagrams the kernel drops when the socket's buffer is full are not seen at all.)
        udp_datagrams_dropped;
        /// Packets ignored (no answer) because their sender is neither loopback nor in a
        /// network `--allow` names. Like every `packets_*` refusal, counted before decoding
        /// and not in `commands_received`: every packet read is either handed to the OSC
        /// handler or counted in exactly one of `packets_refused_not_allowed`,
        /// `packets_rate_limited`, `packets_too_large` and `udp_datagrams_dropped`.
        packets_refused_not_allowed;
        /// Packets dropped (no answer) because their client sent more than `--rate-limit`
        /// packets a second (a UDP source address or a TCP connection is one client).
        packets_rate_limited;
        /// Packets dropped (no answer) for being larger than `--max-packet` bytes.
        packets_too_large;
        /// Replies not sent over UDP because they were larger than what their client (not
        /// loopback, not allow-listed) had sent: each packet's client got one short `/fail`
        /// saying to ask over TCP instead, and nothing more. Replies made later (a `/fail`
        /// at stamping, `/done /quit`) larger than the smallest request (16 bytes) are
        /// dropped for such clients and counted here too.
        replies_refused_amplification;
        /// TCP connections closed at once because their peer is not allowed (`--allow`).
        tcp_clients_refused_not_allowed;
        /// TCP clients disconnected because they left too many replies unread.
        tcp_slow_clients_dropped;
        /// TCP connections closed for being idle (timeout, or the longest idle at the limit).
        tcp_idle_clients_closed;
        /// Played blocks the recording ring could not take (the recorder fell seconds behind).
        record_blocks_dropped;
        /// Recordings that failed to write (each is logged with its path and reason).
        record_write_errors;
        /// Threads writing records (the recorder, the command log's writer, the state
        /// file's writer) that ended before the server stopped: a bug; their files end
        /// there, the sound plays on, and the server exits with an error.
        record_threads_lost;
        /// Stamped commands not in the command log (its queue was full, or writing failed).
        command_log_dropped;
        /// Command logs that failed to write (logged with the path and reason).
        command_log_write_errors;
        /// State files written (`--state`): one per refresh of the restore point.
        state_saves;
        /// State files that could not be written (logged with the path and reason); the
        /// previous one stays whole.
        state_save_errors;
        /// Times the depth changed (`--depth auto` adapting it, or a depth raised to the
        /// sink's period); each change is logged with its reason.
        depth_changes;
        /// Voice limits the overload protection stamped (lowered when the workers could
        /// not render the voices in time, raised again after a calm stretch); each is
        /// logged with the load that decided it. The engine applies them like the
        /// clients' commands; `commands_applied` leaves them out.
        voice_limit_changes;
        /// Messages pushed to `/notify` subscribers (one per subscriber and message).
        notify_pushes;
        /// What the notify thread never got: events its queue had no room for, and played
        /// blocks the monitor ring had no room for (it fell behind). Nothing waits for it.
        notify_dropped;
        /// Panics caught in the notify thread (a bug; logged): it drops what it was doing
        /// and pushes on.
        notify_panics;
    }
    report {
        /// Sum of the `commands_rejected.*` reasons.
        commands_rejected: u64, Counter;
        /// Commands applied: `commands_applied.engine + commands_applied.answered`, less
        /// the server's own (`voice_limit_changes`).
        commands_applied: u64, Counter;
        /// Engine commands applied by the engine of the active worker, at their frame (a
        /// command timed for later is pending until then). Engine state, carried in
        /// snapshots, so it continues across failovers and joins.
        commands_applied_by_engine = "commands_applied.engine": u64, Counter;
        /// Accepted commands neither applied nor dropped yet: queued, in a command ring, or
        /// waiting in the engine for their frame (`engine.commands_waiting`).
        commands_pending: u64, Gauge;
        /// Sum of the `commands_dropped.*` reasons: accepted commands that were never applied.
        commands_dropped: u64, Counter;
        /// Dropped by the engine: due after a patch switch stamped after them, so addressed
        /// to modules of the replaced patch (their senders got `/fail` when the switch was
        /// stamped).
        commands_dropped_stale = "commands_dropped.stale": u64, Counter;
        /// Dropped by the engine: a patch switch whose text was missing or did not compile.
        commands_dropped_bad_patch = "commands_dropped.bad_patch": u64, Counter;
        /// Applied by the engine after their frame had passed (replays after a restart).
        engine_late_commands = "engine.late_commands": u64, Counter;
        /// Commands waiting in the active worker's engine for a frame not reached yet.
        engine_commands_waiting = "engine.commands_waiting": u64, Gauge;
        /// Whether a standby is joined, ready to take over, and holds the block being played
        /// (a stalled one does not count, even before it is found out).
        spare_ready: bool, Gauge;
        /// Last failover time in ms: detection to the first block served from the new slot.
        failover_ms_last: Option<f64>, Time;
        /// p99 failover time in ms.
        failover_ms_p99: Option<f64>, Time;
        /// Last spare rebuild time in ms: spawn to joined.
        rebuild_ms_last: Option<f64>, Time;
        /// p95 spare rebuild time in ms.
        rebuild_ms_p95: Option<f64>, Time;
        /// Command latency p50 in ms: receive to the first frame reflecting the command.
        command_latency_ms_p50: Option<f64>, Time;
        /// Command latency p95 in ms.
        command_latency_ms_p95: Option<f64>, Time;
        /// Command latency p99 in ms.
        command_latency_ms_p99: Option<f64>, Time;
        /// Control latency the depth makes now, in ms (`depth_blocks` blocks).
        control_latency_ms: f64, Gauge;
        /// The depth now: how many blocks ahead of the one playing the workers may render,
        /// and how far ahead commands are stamped (`--depth auto` adapts it).
        depth_blocks: u64, Gauge;
        /// The least depth the sink allows: the blocks it takes at a time (its period).
        depth_floor_blocks: u64, Gauge;
        /// Most voices each instrument may sound now (0: no limit): set by `/voices/limit`
        /// or by the overload protection (`voice_limit_changes`).
        voice_limit: u64, Gauge;
        /// The least slack of a block in the last second, in ms: how long before the
        /// output read it both serving workers had written it (under 0.5 ms, `--depth
        /// auto` raises the depth).
        block_slack_ms_min: Option<f64>, Time;
        /// How fast the output's audio clock runs against the system clock, in parts per
        /// million off the nominal sample rate: the clock model's measure, which timetags
        /// follow (a sound card's crystal is tens of ppm off; the paced sink, 0).
        clock_drift_ppm: f64, Gauge;
        /// The clock model's last error, in µs: how far the last period's report was from
        /// its line (wake-up jitter; the line itself moves far less).
        clock_residual_us: f64, Gauge;
        /// Root mean square of the clock model's recent errors, in µs.
        clock_residual_rms_us: f64, Gauge;
        /// Times the clock model started its line afresh: at the output's start, and at
        /// every jump of the audio clock (a stall, an xrun, a reconnected device).
        clock_restarts: u64, Counter;
        /// Stamping to `write` of the command log's last batch, in ms.
        command_log_lag_ms: f64, Gauge;
        /// The largest such lag since start, in ms.
        command_log_lag_ms_max: f64, Gauge;
        /// Voices sounding in the active worker: instrument voices not free, and the
        /// patch's own envelopes not idle.
        voices_sounding: u64, Gauge;
        /// Notes that took a voice from another note (an instrument with too few voices
        /// for what is played), in the active worker's engine.
        voice_steals: u64, Counter;
        /// Whether the sequencer's tempo clock runs (in the active worker's engine).
        clock_running: bool, Gauge;
        /// The tempo clock's tempo, in beats per minute.
        clock_bpm: f64, Gauge;
        /// Where the tempo clock is, in beats since bar 1 (a bar is 4 beats), to a
        /// thousandth; 0 while it is stopped.
        clock_beats: f64, Gauge;
        /// Average worker load in % of the block period (active and standby).
        worker_load_percent: f64, Gauge;
        /// Peak worker load in % over the last second.
        worker_load_peak_percent: f64, Gauge;
        /// Open file descriptors of the supervisor.
        open_fds: u64, Gauge;
        /// Shared-memory segments mapped by the supervisor.
        mapped_segments: u64, Gauge;
        /// Segments mapped that no live slot owns (always 0).
        shm_leaks: u64, Gauge;
        /// Live worker processes.
        live_children: u64, Gauge;
        /// Both workers lost again within 10 s of the last cold restart, so many times
        /// in a row (0 once the pair has played 10 s since).
        double_faults_in_a_row: u64, Gauge;
        /// How long the pending cold restart waits, in ms: repeated double faults back off
        /// 1, 2, 4 … up to 30 s between restarts (0: none waiting).
        cold_restart_backoff_ms: u64, Gauge;
        /// The period of the sound device (JACK's buffer size) in frames, as it imposes
        /// it; 0 for the null sink and `--output wav:` (see `--device-buffer`).
        device_period_frames: u64, Gauge;
        /// The sample rate of the sound device (JACK's) in Hz; 0 for the null sink. When
        /// it differs from the engine's (a JACK server restarted at another rate), the
        /// music plays at the wrong speed until the server is restarted: see the log.
        device_sample_rate: u64, Gauge;
        /// 1 while the JACK output is connected to its server; 0 while it waits for a
        /// server that went away (or the output is not JACK).
        jack_connected: u64, Gauge;
        /// `/notify` subscribers now (at most 32).
        notify_subscribers: u64, Gauge;
    }
}

/// The per-slot metrics, named `slot.<i>.<name>` for slot 0 and 1.
pub const SLOT_METRICS: &[MetricInfo] = &[
    MetricInfo {
        name: "slot.N.pid",
        doc: " The slot's worker process id (0 when none).",
        kind: MetricKind::Gauge,
    },
    MetricInfo {
        name: "slot.N.role",
        doc: " The slot's state, as a string: empty, starting, joining, standby, active or dead.",
        kind: MetricKind::Gauge,
    },
    MetricInfo {
        name: "slot.N.load_percent",
        doc: " Render time of the slot's last block in % of the block period.",
        kind: MetricKind::Gauge,
    },
    MetricInfo {
        name: "slot.N.records_rejected",
        doc: " Command-ring records the slot's worker refused since the slot was last bound \
               (another generation's, or garbage; must stay 0).",
        kind: MetricKind::Counter,
    },
];

impl Metrics {
    /// Adds one to a counter (`Release`: see `read_counters`; on x86 the same
    /// instruction as a relaxed add).
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Release);
    }
}

/// One worker's line in the report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WorkerReport {
    /// Slot index (0 or 1).
    pub slot: usize,
    /// Worker process id (0 when none).
    pub pid: u32,
    /// The slot's state: empty, starting, joining, standby, active or dead.
    pub role: &'static str,
    /// Render time of the last block as a percentage of the block period.
    pub load_percent: f64,
    /// Records its worker refused in this binding (another generation's, or garbage).
    pub records_rejected: u64,
}

impl MetricsReport {
    /// Name/value pairs for `/metrics.reply`: every metric of [`METRICS`] in its order,
    /// then per slot `slot.<i>.pid`, `slot.<i>.role` (a string) and
    /// `slot.<i>.load_percent`. Times not measured yet are left out.
    pub fn to_pairs(&self) -> Vec<(String, MetricValue)> {
        let mut pairs: Vec<(String, MetricValue)> = self
            .values()
            .into_iter()
            .filter_map(|(name, value)| Some((name.to_string(), MetricValue::Number(value?))))
            .collect();
        for worker in &self.workers {
            let prefix = format!("slot.{}", worker.slot);
            pairs.push((
                format!("{prefix}.pid"),
                MetricValue::Number(f64::from(worker.pid)),
            ));
            pairs.push((
                format!("{prefix}.role"),
                MetricValue::Text(worker.role.to_string()),
            ));
            pairs.push((
                format!("{prefix}.load_percent"),
                MetricValue::Number(worker.load_percent),
            ));
            pairs.push((
                format!("{prefix}.records_rejected"),
                MetricValue::Number(worker.records_rejected as f64),
            ));
        }
        pairs
    }

    /// The counters as they are right now, with the engine's counts as the active worker
    /// published them (`engine`), and no view of the workers yet (no roles, pids or
    /// loads): the base of every report. `control_latency_ms` is what `--depth` sets,
    /// which the counters do not know.
    pub fn counters(
        metrics: &Metrics,
        engine: &WorkerCounts,
        control_latency_ms: f64,
    ) -> MetricsReport {
        let m = metrics;
        let (open_fds, mapped_segments) = process_resources().unwrap_or((0, 0));
        let mut report = MetricsReport {
            failover_ms_last: m.failover.last_ms(),
            failover_ms_p99: m.failover.quantile_ms(0.99),
            rebuild_ms_last: m.rebuild.last_ms(),
            rebuild_ms_p95: m.rebuild.quantile_ms(0.95),
            command_latency_ms_p50: m.command_latency.quantile_ms(0.50),
            command_latency_ms_p95: m.command_latency.quantile_ms(0.95),
            command_latency_ms_p99: m.command_latency.quantile_ms(0.99),
            control_latency_ms,
            command_log_lag_ms: m.command_log_lag_ns.load(Relaxed) as f64 / 1e6,
            command_log_lag_ms_max: m.command_log_lag_max_ns.load(Relaxed) as f64 / 1e6,
            double_faults_in_a_row: m.double_faults_in_a_row.load(Relaxed),
            depth_floor_blocks: m.depth_floor_blocks.load(Relaxed),
            voice_limit: m.voice_limit.load(Relaxed),
            block_slack_ms_min: match m.block_slack_min_ns.load(Relaxed) {
                0 => None,
                ns => Some(ns as f64 / 1e6),
            },
            cold_restart_backoff_ms: m.cold_restart_backoff_ms.load(Relaxed),
            device_period_frames: m.device_period_frames.load(Relaxed),
            device_sample_rate: m.device_sample_rate.load(Relaxed),
            jack_connected: m.jack_connected.load(Relaxed),
            notify_subscribers: m.notify_subscribers.load(Relaxed),
            open_fds,
            mapped_segments,
            shm_leaks: mapped_segments.saturating_sub(EXPECTED_SEGMENTS),
            ..MetricsReport::read_counters(m)
        };
        report.add_command_accounting(engine);
        report
    }

    /// Fills the engine's counts and the sums of the command accounting.
    fn add_command_accounting(&mut self, engine: &WorkerCounts) {
        self.commands_applied_by_engine = engine.applied;
        self.commands_dropped_stale = engine.stale;
        self.commands_dropped_bad_patch = engine.bad_patches;
        self.engine_late_commands = engine.late;
        self.engine_commands_waiting = engine.waiting;
        self.voice_steals = engine.voice_steals;
        self.clock_running = engine.clock_millibeats != WorkerCounts::CLOCK_STOPPED;
        self.clock_bpm = engine.clock_millibpm as f64 / 1000.0;
        self.clock_beats = if self.clock_running {
            engine.clock_millibeats as f64 / 1000.0
        } else {
            0.0
        };
        self.commands_rejected = self.commands_rejected_undecodable
            + self.commands_rejected_invalid
            + self.commands_rejected_busy
            + self.commands_rejected_patch_edit
            + self.commands_rejected_panic
            + self.commands_rejected_not_permitted;
        // The overload protection's voice limits are applied by the engine but were
        // never received: they are no client's command.
        self.commands_applied = (self.commands_applied_by_engine + self.commands_answered)
            .saturating_sub(self.voice_limit_changes);
        self.commands_dropped = self.commands_dropped_stale
            + self.commands_dropped_queue_full
            + self.commands_dropped_bad_patch
            + self.commands_dropped_poison;
        self.commands_pending = self
            .commands_accepted
            .saturating_sub(self.commands_applied + self.commands_dropped);
    }
}

/// The list of metrics as Markdown: what docs/metrics.md holds (a test keeps it current).
pub fn metrics_markdown() -> String {
    let mut text = String::from(
        "# Metrics\n\n\
         Generated from the list in `crates/supervisor/src/metrics.rs` (a test fails until\n\
         this file matches it; `CHRONUS_BLESS=1 cargo test -p chronus-supervisor metrics_doc`\n\
         rewrites it). `/metrics` answers every one as name/value pairs and\n\
         `chronus status --json` prints them as one JSON object (times not measured yet are\n\
         left out of `/metrics.reply`; per-slot metrics go in `workers`).\n\n\
         ## Command accounting\n\n\
         A *command* is every OSC message that arrives (each message of a bundle counts;\n\
         queries, `/sync`, patch edits and `/quit` included), and every packet that is not\n\
         OSC, as one. Each is received, then accepted or rejected (`commands_rejected.*`,\n\
         by reason). An accepted command is then applied, pending or dropped:\n\
         engine commands (`/mod/...`, `/gate/...`, `/engine/...`, and `/patch/commit`,\n\
         whose patch switch the engine applies) are applied by the engine at their frame\n\
         (`commands_applied.engine`, counted in the active worker and carried in its\n\
         snapshots, so a failover or a spare's join continues the count); everything else\n\
         is applied when the server answers it (`commands_applied.answered`). So\n\n\
         - `commands_received = commands_accepted + commands_rejected`, exactly, whenever\n\
           the server is between packets (for example once a `/sync` sent after them is\n\
           answered);\n\
         - `commands_accepted = commands_applied + commands_pending + commands_dropped`,\n\
           where `commands_pending` is what is accepted and neither applied nor dropped\n\
           (queued, in a command ring, or waiting in the engine for its frame: compare\n\
           `engine.commands_waiting`). A timetagged command due later is pending, not\n\
           applied, until its frame plays.\n\n\
         After a cold restart from the patch (both workers lost with no snapshot to restart\n\
         from) the engine's counts start again from zero.\n\n\
         ## Packet accounting\n\n\
         Before a packet is decoded, its transport's reader may refuse it whole, without an\n\
         answer: its sender is not allowed (`--allow`: `packets_refused_not_allowed`), is over\n\
         its rate (`--rate-limit`: `packets_rate_limited`), the packet is larger than\n\
         `--max-packet` (`packets_too_large`), or, over UDP, the OSC thread is\n\
         `HANDLER_QUEUE` packets behind (`udp_datagrams_dropped`). A refused packet is in none\n\
         of the `commands_*` counts; every other packet is handed to the OSC thread, where each\n\
         of its messages (or the packet, if it is not OSC) is one command received. So for a\n\
         client that sends only single messages (no bundles), once the server is between\n\
         packets:\n\n\
         - `packets sent = commands_received + packets_refused_not_allowed +\n\
           packets_rate_limited + packets_too_large + udp_datagrams_dropped + the datagrams\n\
           the kernel dropped` (`RcvbufErrors` in /proc/net/snmp: the socket's buffer was\n\
           full). `crates/cli/tests/flood.rs` checks it with a million malformed packets.\n\n\
         ## The list\n\n\
         | name | kind | meaning |\n| --- | --- | --- |\n",
    );
    for metric in METRICS.iter().chain(SLOT_METRICS) {
        text.push_str(&format!(
            "| `{}` | {} | {} |\n",
            metric.name,
            metric.kind.name(),
            metric.doc.trim().replace('|', "\\|")
        ));
    }
    text
}

/// Segments the supervisor maps while running: two slots and the snapshot area.
const EXPECTED_SEGMENTS: u64 = 3;

/// Open fds and mapped chronus memfd segments of this process, from /proc; `None`, and an
/// error in the log, when called on a real-time thread (a bug: `/proc` reads take locks in
/// the kernel and allocate; reports are built on the thread that asks for them).
fn process_resources() -> Option<(u64, u64)> {
    if chronus_realtime::is_realtime_thread() {
        tracing::error!(
            "bug: /proc read on a real-time thread; reports must be built off the real-time loops"
        );
        return None;
    }
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
    Some((fds, segments))
}

/// Window over which the peak worker load is reported.
const LOAD_PEAK_WINDOW: Duration = Duration::from_secs(1);

/// One slot as the supervisor sees it when it reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotSample {
    /// Its worker's pid, if it has one.
    pub pid: Option<u32>,
    /// The slot's state name (the `role` users see).
    pub role: &'static str,
    /// Active or standby: its load counts in the average and the peak (if it has a worker).
    pub serving: bool,
    /// A standby: ready to take over.
    pub standby: bool,
    /// Render time of its last block, in ns.
    pub last_ns: u64,
    /// Its longest render time since the last sample, in ns.
    pub peak_ns: u64,
    /// Records its worker refused in this binding.
    pub records_rejected: u64,
}

/// Adds the workers' view to a report: loads averaged over the serving workers, and the
/// peak load kept over a window of [`LOAD_PEAK_WINDOW`] so a short spike is still seen.
#[derive(Debug)]
pub struct LoadTracker {
    peak_ns: [u64; 2],
    window_start: Instant,
}

impl Default for LoadTracker {
    fn default() -> Self {
        LoadTracker {
            peak_ns: [0; 2],
            window_start: Instant::now(),
        }
    }
}

impl LoadTracker {
    /// Fills the workers' part of `report` from the two slots' samples at `now`, for a
    /// block period of `block_ns`, with `voices` sounding in the active worker.
    pub fn add_workers(
        &mut self,
        report: &mut MetricsReport,
        slots: [SlotSample; 2],
        block_ns: f64,
        voices: u64,
        now: Instant,
    ) {
        if now.duration_since(self.window_start) > LOAD_PEAK_WINDOW {
            self.window_start = now;
            self.peak_ns = [0; 2];
        }
        let mut loads = Vec::new();
        let mut peak: f64 = 0.0;
        for (i, slot) in slots.iter().enumerate() {
            self.peak_ns[i] = self.peak_ns[i].max(slot.peak_ns);
            let load = slot.last_ns as f64 / block_ns * 100.0;
            if slot.pid.is_some() && slot.serving {
                loads.push(load);
                peak = peak.max(self.peak_ns[i] as f64 / block_ns * 100.0);
            }
            report.workers.push(WorkerReport {
                slot: i,
                pid: slot.pid.unwrap_or(0),
                role: slot.role,
                load_percent: load,
                records_rejected: slot.records_rejected,
            });
        }
        report.worker_load_percent = if loads.is_empty() {
            0.0
        } else {
            loads.iter().sum::<f64>() / loads.len() as f64
        };
        report.worker_load_peak_percent = peak;
        report.spare_ready = slots.iter().any(|s| s.standby);
        report.live_children = slots.iter().filter(|s| s.pid.is_some()).count() as u64;
        report.voices_sounding = voices;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(pid: Option<u32>, role: &'static str, last_ns: u64, peak_ns: u64) -> SlotSample {
        SlotSample {
            pid,
            role,
            serving: role == "active" || role == "standby",
            standby: role == "standby",
            last_ns,
            peak_ns,
            records_rejected: 0,
        }
    }

    #[test]
    fn proc_is_read_on_a_normal_thread_and_refused_on_a_real_time_one() {
        let (fds, _) = process_resources().expect("a normal thread reads /proc");
        assert!(fds >= 3);
        let on_realtime = std::thread::spawn(|| {
            chronus_realtime::mark_realtime_thread();
            process_resources()
        })
        .join()
        .unwrap();
        assert_eq!(on_realtime, None);
    }

    #[test]
    fn worker_loads_average_the_serving_workers_and_keep_the_peak_over_the_window() {
        let start = Instant::now();
        let mut tracker = LoadTracker {
            peak_ns: [0; 2],
            window_start: start,
        };
        let block_ns = 1000.0;
        let mut report =
            MetricsReport::counters(&Metrics::default(), &WorkerCounts::default(), 0.0);
        let slots = [
            sample(Some(10), "active", 200, 500),
            sample(Some(11), "standby", 400, 300),
        ];
        tracker.add_workers(&mut report, slots, block_ns, 4, start);
        assert!((report.worker_load_percent - 30.0).abs() < 1e-9);
        assert!((report.worker_load_peak_percent - 50.0).abs() < 1e-9);
        assert!(report.spare_ready);
        assert_eq!(report.live_children, 2);
        assert_eq!(report.voices_sounding, 4);
        assert_eq!(report.workers[1].pid, 11);
        assert_eq!(report.workers[1].role, "standby");

        // Within the window the peak stays; a joining spare's load does not count.
        let mut report =
            MetricsReport::counters(&Metrics::default(), &WorkerCounts::default(), 0.0);
        let slots = [
            sample(Some(10), "active", 100, 100),
            sample(Some(12), "joining", 900, 900),
        ];
        let later = start + Duration::from_millis(500);
        tracker.add_workers(&mut report, slots, block_ns, 0, later);
        assert!((report.worker_load_percent - 10.0).abs() < 1e-9);
        assert!((report.worker_load_peak_percent - 50.0).abs() < 1e-9);
        assert!(!report.spare_ready);

        // After the window the peak starts again; a slot without a worker counts nowhere.
        let mut report =
            MetricsReport::counters(&Metrics::default(), &WorkerCounts::default(), 0.0);
        let slots = [
            sample(Some(10), "active", 100, 100),
            sample(None, "dead", 0, 0),
        ];
        tracker.add_workers(
            &mut report,
            slots,
            block_ns,
            0,
            later + LOAD_PEAK_WINDOW * 2,
        );
        assert!((report.worker_load_peak_percent - 10.0).abs() < 1e-9);
        assert_eq!(report.live_children, 1);
        assert_eq!(report.workers[1].pid, 0);
    }

    /// A report in which every histogram has a sample, so every metric has a value.
    fn full_report() -> MetricsReport {
        let metrics = Metrics::default();
        for histogram in [
            &metrics.failover,
            &metrics.rebuild,
            &metrics.command_latency,
        ] {
            histogram.record_ns(1_000_000);
        }
        metrics.block_slack_min_ns.store(1_000_000, Relaxed);
        MetricsReport::counters(&metrics, &WorkerCounts::default(), 1.0)
    }

    #[test]
    fn every_metric_of_the_list_is_reported_once_with_a_doc() {
        let mut names: Vec<&str> = METRICS.iter().chain(SLOT_METRICS).map(|m| m.name).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "metric names must be unique");
        for metric in METRICS.iter().chain(SLOT_METRICS) {
            assert!(
                metric.doc.trim().len() > 10,
                "{} needs a doc comment saying what it means",
                metric.name
            );
        }

        let mut report = full_report();
        report.workers = (0..2)
            .map(|slot| WorkerReport {
                slot,
                pid: 1,
                role: "active",
                load_percent: 0.0,
                records_rejected: 0,
            })
            .collect();
        let pairs = report.to_pairs();
        let reported: Vec<&str> = pairs.iter().map(|(name, _)| name.as_str()).collect();
        let listed: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        assert_eq!(
            reported.get(..listed.len()),
            Some(&listed[..]),
            "in list order"
        );
        for slot in 0..2 {
            for metric in SLOT_METRICS {
                let name = metric.name.replace(".N.", &format!(".{slot}."));
                assert!(reported.contains(&name.as_str()), "{name} missing");
            }
        }
        assert_eq!(reported.len(), listed.len() + 2 * SLOT_METRICS.len());
    }

    #[test]
    fn times_not_measured_yet_are_left_out() {
        let pairs =
            MetricsReport::counters(&Metrics::default(), &WorkerCounts::default(), 1.0).to_pairs();
        let times = METRICS.iter().filter(|m| m.kind == MetricKind::Time);
        for time in times {
            assert!(
                !pairs.iter().any(|(name, _)| name == time.name),
                "{}",
                time.name
            );
        }
        assert_eq!(
            pairs.len(),
            METRICS
                .iter()
                .filter(|m| m.kind != MetricKind::Time)
                .count()
        );
    }

    #[test]
    fn metrics_doc_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/metrics.md");
        let wanted = metrics_markdown();
        if std::env::var_os("CHRONUS_BLESS").is_some() {
            std::fs::write(path, &wanted).unwrap();
        }
        let found = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            found == wanted,
            "docs/metrics.md is out of date: run `CHRONUS_BLESS=1 cargo test -p chronus-supervisor metrics_doc`"
        );
    }

    #[test]
    fn histogram_quantiles() {
        let h = Histogram::new();
        assert_eq!(h.quantile_ms(0.5), None);
        assert_eq!(h.last_ms(), None);
        for i in 1..=100u64 {
            h.record_ns(i * 100_000); // 0.1 .. 10 ms
        }
        let p50 = h.quantile_ms(0.5).unwrap();
        assert!((p50 - 5.01).abs() < 0.02, "{p50}");
        let p99 = h.quantile_ms(0.99).unwrap();
        assert!((p99 - 9.91).abs() < 0.02, "{p99}");
        assert_eq!(h.last_ms(), Some(10.0));
        h.record_ns(u64::MAX);
        assert_eq!(h.count(), 101);
    }
}
