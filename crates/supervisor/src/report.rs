//! The metrics report, built on the thread that asks for it (the OSC thread answering
//! `/metrics` or `/status`), never on a real-time one.
//!
//! Building a report reads `/proc` and scans every histogram: work the supervisor loop and
//! the output clock must not do at real-time priority. They publish what only they know
//! (each slot's state and worker pid, in [`SlotLink`](crate::output::SlotLink) atomics);
//! a [`Reporter`] reads those, the counters and the workers' render times when asked.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crate::metrics::{LoadTracker, MetricsReport, SlotSample};
use crate::output::OutputShared;
use crate::slot_state::SlotState;

/// Builds reports from the shared state; owned by the one thread that answers queries
/// (it keeps the peak worker load between reports).
pub struct Reporter {
    shared: Arc<OutputShared>,
    loads: LoadTracker,
}

impl Reporter {
    /// A reporter over the output's shared state.
    pub fn new(shared: Arc<OutputShared>) -> Reporter {
        Reporter {
            shared,
            loads: LoadTracker::default(),
        }
    }

    /// A fresh copy of every metric. Reads `/proc` and the histograms: call it only from a
    /// thread of normal priority.
    pub fn build(&mut self) -> MetricsReport {
        let shared = &self.shared;
        let mut report = MetricsReport::counters(
            &shared.metrics,
            &shared.engine_counts(),
            shared.control_latency_ms(),
        );
        report.depth_blocks = shared.depth();
        report.clock_drift_ppm = shared.clock.drift_ppm();
        (report.clock_residual_us, report.clock_residual_rms_us) = shared.clock.residual_us();
        report.clock_restarts = shared.clock.restarts();
        let slots = [0, 1].map(|i| sample(shared, i));
        let active = shared.active.load(Ordering::Relaxed).min(1);
        let voices = shared.slots[active].slot.voices();
        let block_ns = shared.block_ns() as f64;
        self.loads
            .add_workers(&mut report, slots, block_ns, voices, Instant::now());
        report
    }
}

/// Slot `index` as the loop last published it, with its render times since the last
/// sample.
fn sample(shared: &OutputShared, index: usize) -> SlotSample {
    let link = &shared.slots[index];
    let state = SlotState::from_index(link.published_state.load(Ordering::Acquire));
    let pid = link.published_pid.load(Ordering::Acquire);
    let (last_ns, peak_ns) = link.slot.take_render_stats();
    // A standby counts as a ready spare only while it holds the block being played: a
    // stopped or stalled one, not yet found out, does not.
    let playing = shared.played.load(Ordering::Acquire);
    SlotSample {
        pid: (pid != 0).then_some(pid),
        role: state.name(),
        serving: matches!(state, SlotState::Active | SlotState::Standby),
        standby: state == SlotState::Standby && link.slot.written() > playing,
        last_ns,
        peak_ns,
        records_rejected: link.slot.rejected(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::paced::tests::idle_shared;

    #[test]
    fn a_standby_is_a_ready_spare_only_while_it_holds_the_block_being_played() {
        let shared = idle_shared();
        let standby = &shared.slots[1];
        standby
            .published_state
            .store(SlotState::Standby.index(), Ordering::Release);
        standby.published_pid.store(4242, Ordering::Release);
        standby.slot.rebind(1);
        shared.played.store(5, Ordering::Release);
        let mut reporter = Reporter::new(Arc::clone(&shared));
        // Stalled behind the output: no spare, whatever its state says.
        assert!(!reporter.build().spare_ready);
        standby.slot.write_block(5, &[0.0; 128]);
        assert!(reporter.build().spare_ready);
    }
}
