//! Server metrics: counters and latency histograms kept in atomics.
//!
//! The output thread, the OSC thread and the supervisor loop all update these without
//! locks or allocation; `/metrics`, `/status` and `chronus status` read a consistent
//! enough [`MetricsReport`] out of them. Every name here is the name users see.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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

#[cfg(test)]
mod tests {
    use super::*;

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
