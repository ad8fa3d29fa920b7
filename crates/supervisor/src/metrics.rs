//! Server metrics: counters and latency histograms kept in atomics.
//!
//! The output thread, the OSC thread and the supervisor loop all update these without
//! locks or allocation; `/metrics`, `/status` and `chronus status` read a consistent
//! enough [`MetricsReport`] out of them. Every name here is the name users see. The report
//! is built here too: [`MetricsReport::counters`] reads the counters, [`LoadTracker`] adds
//! the supervisor's view of the workers, [`MetricsReport::live`] merges the two for replies.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

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

/// All counters of a running server.
#[derive(Default)]
pub struct Metrics {
    /// Workers lost to any fault (death or missed deadline).
    pub crash_count: AtomicU64,
    /// The part of `crash_count` detected by a missed deadline (hang, stop, too slow).
    pub deadline_misses: AtomicU64,
    /// Spares built and joined after a loss.
    pub replacements: AtomicU64,
    /// Times the output switched to the other slot.
    pub failover_count: AtomicU64,
    /// Blocks the output could fill from neither slot.
    pub underruns: AtomicU64,
    /// Engine commands accepted from clients.
    pub commands_received: AtomicU64,
    /// Commands stamped and handed to the workers.
    pub commands_applied: AtomicU64,
    /// Messages answered with `/fail`.
    pub commands_rejected: AtomicU64,
    /// Commands whose timetag had already passed the horizon when stamped.
    pub late_commands: AtomicU64,
    /// Datagrams that were not OSC at all.
    pub undecodable_packets: AtomicU64,
    /// Blocks present in both slots and compared bit for bit.
    pub lockstep_blocks_compared: AtomicU64,
    /// Of those, blocks that differed (must stay 0).
    pub lockstep_mismatches: AtomicU64,
    /// Blocks played since start.
    pub blocks_played: AtomicU64,
    /// Times the paced output woke too late and dropped its backlog.
    pub output_late_wakeups: AtomicU64,
    /// Records a full command ring could not take (the slot is then replaced).
    pub ring_overflows: AtomicU64,
    /// Notices the output could not hand to the supervisor (must stay 0).
    pub notices_dropped: AtomicU64,
    /// Cold restarts: both workers lost at once, a new pair started from a snapshot.
    pub cold_restarts: AtomicU64,
    /// Commands that killed both workers at once and were dropped (poison commands).
    pub poisoned_commands: AtomicU64,
    /// Packets whose handling panicked; each was answered `/fail` and the server went on.
    pub handler_panics: AtomicU64,
    /// UDP replies dropped because the socket could not take them at once.
    pub udp_replies_dropped: AtomicU64,
    /// TCP clients disconnected because they left too many replies unread.
    pub tcp_slow_clients_dropped: AtomicU64,
    /// TCP connections closed for being idle (timeout, or the longest idle at the limit).
    pub tcp_idle_clients_closed: AtomicU64,
    /// Played blocks the recording ring could not take (the recorder fell seconds behind).
    pub record_blocks_dropped: AtomicU64,
    /// Recordings that failed to write (each is logged with its path and reason).
    pub record_write_errors: AtomicU64,
    /// Stamped commands not in the command log (its queue was full, or writing failed).
    pub command_log_dropped: AtomicU64,
    /// Command logs that failed to write (logged with the path and reason).
    pub command_log_write_errors: AtomicU64,
    /// Stamping to `write` of the command log's last batch, in ns.
    pub command_log_lag_ns: AtomicU64,
    /// The largest such lag since start, in ns.
    pub command_log_lag_max_ns: AtomicU64,
    /// Detection to first block served from the new slot.
    pub failover: Histogram,
    /// Spawn of a spare to its joining the lockstep.
    pub rebuild: Histogram,
    /// Receive of a command to the first frame that reflects it.
    pub command_latency: Histogram,
}

impl Metrics {
    /// Adds one to a counter.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
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
}

/// A point-in-time copy of every metric, as `/metrics` and `chronus status --json` show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MetricsReport {
    /// See [`Metrics::crash_count`].
    pub crash_count: u64,
    /// See [`Metrics::deadline_misses`].
    pub deadline_misses: u64,
    /// See [`Metrics::replacements`].
    pub replacements: u64,
    /// Whether a standby is joined and ready to take over.
    pub spare_ready: bool,
    /// See [`Metrics::failover_count`].
    pub failover_count: u64,
    /// See [`Metrics::underruns`].
    pub underruns: u64,
    /// See [`Metrics::commands_received`].
    pub commands_received: u64,
    /// See [`Metrics::commands_applied`].
    pub commands_applied: u64,
    /// See [`Metrics::commands_rejected`].
    pub commands_rejected: u64,
    /// See [`Metrics::late_commands`].
    pub late_commands: u64,
    /// See [`Metrics::undecodable_packets`].
    pub undecodable_packets: u64,
    /// See [`Metrics::lockstep_blocks_compared`].
    pub lockstep_blocks_compared: u64,
    /// See [`Metrics::lockstep_mismatches`].
    pub lockstep_mismatches: u64,
    /// See [`Metrics::blocks_played`].
    pub blocks_played: u64,
    /// See [`Metrics::output_late_wakeups`].
    pub output_late_wakeups: u64,
    /// See [`Metrics::ring_overflows`].
    pub ring_overflows: u64,
    /// See [`Metrics::cold_restarts`].
    pub cold_restarts: u64,
    /// See [`Metrics::poisoned_commands`].
    pub poisoned_commands: u64,
    /// See [`Metrics::handler_panics`].
    pub handler_panics: u64,
    /// See [`Metrics::udp_replies_dropped`].
    pub udp_replies_dropped: u64,
    /// See [`Metrics::tcp_slow_clients_dropped`].
    pub tcp_slow_clients_dropped: u64,
    /// See [`Metrics::tcp_idle_clients_closed`].
    pub tcp_idle_clients_closed: u64,
    /// See [`Metrics::record_blocks_dropped`].
    pub record_blocks_dropped: u64,
    /// See [`Metrics::record_write_errors`].
    pub record_write_errors: u64,
    /// See [`Metrics::command_log_dropped`].
    pub command_log_dropped: u64,
    /// See [`Metrics::command_log_write_errors`].
    pub command_log_write_errors: u64,
    /// Stamping to `write` of the command log's last batch, in ms.
    pub command_log_lag_ms: f64,
    /// The largest such lag since start, in ms.
    pub command_log_lag_ms_max: f64,
    /// Last failover time in ms (null before the first).
    pub failover_ms_last: Option<f64>,
    /// p99 failover time in ms.
    pub failover_ms_p99: Option<f64>,
    /// Last spare rebuild time in ms (null before the first).
    pub rebuild_ms_last: Option<f64>,
    /// p95 spare rebuild time in ms.
    pub rebuild_ms_p95: Option<f64>,
    /// Command latency percentiles in ms (receive → first frame reflecting it).
    pub command_latency_ms_p50: Option<f64>,
    /// See `command_latency_ms_p50`.
    pub command_latency_ms_p95: Option<f64>,
    /// See `command_latency_ms_p50`.
    pub command_latency_ms_p99: Option<f64>,
    /// Control latency set by `--depth`, in ms.
    pub control_latency_ms: f64,
    /// Voices (envelopes) sounding in the active worker.
    pub voices_sounding: u64,
    /// Average worker load in % of the block period (active and standby).
    pub worker_load_percent: f64,
    /// Peak worker load in % since the last report.
    pub worker_load_peak_percent: f64,
    /// Open file descriptors of the supervisor.
    pub open_fds: u64,
    /// Shared-memory segments mapped by the supervisor.
    pub mapped_segments: u64,
    /// Segments mapped that no live slot owns (always 0).
    pub shm_leaks: u64,
    /// Live worker processes.
    pub live_children: u64,
    /// One entry per slot.
    pub workers: Vec<WorkerReport>,
}

impl MetricsReport {
    /// Name/value pairs for `/metrics.reply`: every number, plus `slot.<i>.pid`, and
    /// `slot.<i>.role` as a string. Missing values (before the first event) are left out.
    pub fn to_pairs(&self) -> Vec<(String, MetricValue)> {
        let json = serde_json::to_value(self).unwrap_or_default();
        let mut pairs = Vec::new();
        if let serde_json::Value::Object(map) = json {
            for (name, value) in map {
                match value {
                    serde_json::Value::Number(n) => {
                        pairs.push((name, MetricValue::Number(n.as_f64().unwrap_or(0.0))))
                    }
                    serde_json::Value::Bool(b) => {
                        pairs.push((name, MetricValue::Number(f64::from(u8::from(b)))))
                    }
                    _ => {}
                }
            }
        }
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
        }
        pairs
    }
}

impl MetricsReport {
    /// The counters as they are right now, with no view of the workers yet (no roles,
    /// pids or loads): the base of every report. `control_latency_ms` is what `--depth`
    /// sets, which the counters do not know.
    pub fn counters(metrics: &Metrics, control_latency_ms: f64) -> MetricsReport {
        let m = metrics;
        let get = |c: &AtomicU64| c.load(Relaxed);
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
            handler_panics: get(&m.handler_panics),
            udp_replies_dropped: get(&m.udp_replies_dropped),
            tcp_slow_clients_dropped: get(&m.tcp_slow_clients_dropped),
            tcp_idle_clients_closed: get(&m.tcp_idle_clients_closed),
            record_blocks_dropped: get(&m.record_blocks_dropped),
            record_write_errors: get(&m.record_write_errors),
            command_log_dropped: get(&m.command_log_dropped),
            command_log_write_errors: get(&m.command_log_write_errors),
            command_log_lag_ms: get(&m.command_log_lag_ns) as f64 / 1e6,
            command_log_lag_ms_max: get(&m.command_log_lag_max_ns) as f64 / 1e6,
            failover_ms_last: m.failover.last_ms(),
            failover_ms_p99: m.failover.quantile_ms(0.99),
            rebuild_ms_last: m.rebuild.last_ms(),
            rebuild_ms_p95: m.rebuild.quantile_ms(0.95),
            command_latency_ms_p50: m.command_latency.quantile_ms(0.50),
            command_latency_ms_p95: m.command_latency.quantile_ms(0.95),
            command_latency_ms_p99: m.command_latency.quantile_ms(0.99),
            control_latency_ms,
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

    /// The counters as they are right now, with the supervisor's view (roles, pids, loads)
    /// taken from `view`: what `/metrics` answers, so a reply never lags behind the
    /// commands that came before it.
    pub fn live(metrics: &Metrics, control_latency_ms: f64, view: &MetricsReport) -> MetricsReport {
        let mut report = MetricsReport::counters(metrics, control_latency_ms);
        report.spare_ready = view.spare_ready;
        report.live_children = view.live_children;
        report.worker_load_percent = view.worker_load_percent;
        report.worker_load_peak_percent = view.worker_load_peak_percent;
        report.voices_sounding = view.voices_sounding;
        report.workers = view.workers.clone();
        report
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
        }
    }

    #[test]
    fn live_report_takes_the_workers_from_the_view_and_the_counters_from_now() {
        let metrics = Metrics::default();
        let mut view = MetricsReport::counters(&metrics, 2.5);
        view.spare_ready = true;
        view.live_children = 2;
        view.worker_load_percent = 12.0;
        view.voices_sounding = 3;
        view.workers.push(WorkerReport {
            slot: 0,
            pid: 42,
            role: "active",
            load_percent: 12.0,
        });
        Metrics::bump(&metrics.crash_count);
        let live = MetricsReport::live(&metrics, 2.5, &view);
        assert_eq!(live.crash_count, 1);
        assert_eq!(view.crash_count, 0);
        assert!(live.spare_ready);
        assert_eq!(live.live_children, 2);
        assert_eq!(live.voices_sounding, 3);
        assert_eq!(live.workers, view.workers);
        assert_eq!(live.control_latency_ms, 2.5);
    }

    #[test]
    fn worker_loads_average_the_serving_workers_and_keep_the_peak_over_the_window() {
        let start = Instant::now();
        let mut tracker = LoadTracker {
            peak_ns: [0; 2],
            window_start: start,
        };
        let block_ns = 1000.0;
        let mut report = MetricsReport::counters(&Metrics::default(), 0.0);
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
        let mut report = MetricsReport::counters(&Metrics::default(), 0.0);
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
        let mut report = MetricsReport::counters(&Metrics::default(), 0.0);
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
