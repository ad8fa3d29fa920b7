//! The clock of the sinks that have none (the null sink, which `--output wav:` also
//! plays through): a thread of ours plays one block per block period against absolute
//! deadlines.
//!
//! If that thread wakes far too late (a stalled machine), it drops the backlog instead of
//! bursting: bursting would ask the workers for blocks the horizon has not let them render
//! yet and turn one late wake-up into underruns.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Playing;
use crate::metrics::Metrics;
use crate::output::OutputCore;

/// Starts the output thread, scheduled in real time if `realtime`, running `play` (which
/// calls [`run_paced`]); logs `description` as the output.
///
/// # Errors
/// When the thread cannot be started.
pub fn spawn(
    description: &str,
    realtime: bool,
    play: impl FnOnce() -> anyhow::Result<()> + Send + 'static,
) -> anyhow::Result<Playing> {
    tracing::info!("output: {description}");
    let thread = std::thread::Builder::new()
        .name("chronus-output".into())
        .stack_size(chronus_realtime::THREAD_STACK)
        .spawn(move || {
            chronus_realtime::mark_realtime_thread();
            if realtime {
                let scheduling = chronus_realtime::make_current_thread_realtime(
                    chronus_realtime::OUTPUT_PRIORITY,
                );
                chronus_realtime::log_scheduling("output thread", &scheduling);
            }
            play()
        })
        .context("cannot start the output thread")?;
    Ok(Playing::paced(thread))
}

/// Plays blocks in real time into `write` until `stop` is set, and then the fade-out
/// (the output clock's, [`OutputShared::request_fade_out`](crate::output::OutputShared::request_fade_out)):
/// the last block written ends in exactly 0.0.
pub fn run_paced(mut core: OutputCore, stop: &AtomicBool, mut write: impl FnMut(&[f32])) {
    let shared = Arc::clone(core.shared());
    let period = Duration::from_nanos(shared.block_ns());
    let mut block = vec![0.0f32; shared.block_frames * 2];
    let mut deadline = Instant::now();
    while !shared.has_faded_out() {
        if stop.load(Ordering::Acquire) {
            shared.request_fade_out();
        }
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep(deadline - now);
        } else if now > deadline + period * 4 {
            // Woke far too late: start the schedule again from now rather than burst.
            Metrics::bump(&shared.metrics.output_late_wakeups);
            deadline = now;
        }
        core.render_next(&mut block);
        write(&block);
        deadline += period;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chronus_ipc::{Slot, SlotLayout};

    /// Output state over two fresh slots with no worker (the clock plays silence).
    pub(crate) fn idle_shared() -> Arc<crate::output::OutputShared> {
        let layout = SlotLayout::new(64, 2, 64, 8192).unwrap();
        let slots = [
            Arc::new(Slot::create("chronus-test-sink-0", layout).unwrap()),
            Arc::new(Slot::create("chronus-test-sink-1", layout).unwrap()),
        ];
        Arc::new(crate::output::OutputShared::new(
            slots,
            Arc::new(Metrics::default()),
            64,
            48_000,
            4,
        ))
    }

    #[test]
    fn the_paced_loop_keeps_real_time_and_ends_when_stopped() {
        let shared = idle_shared();
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let mut blocks = 0u32;
        let mut last_block = Vec::new();
        run_paced(OutputCore::new(Arc::clone(&shared)), &stop, |block| {
            assert_eq!(block.len(), 128);
            blocks += 1;
            last_block = block.to_vec();
            if blocks == 10 {
                stop.store(true, Ordering::Release);
            }
        });
        // The ten blocks, then the fade-out (10 ms: 8 blocks of 64 frames at 48 kHz).
        let fade = shared.fade_out_blocks() as u32;
        assert_eq!(fade, 8);
        assert_eq!(blocks, 10 + fade);
        assert!(shared.has_faded_out());
        assert_eq!(
            last_block.last().map(|x| x.to_bits()),
            Some(0.0f32.to_bits())
        );
        // Those blocks took their block periods at least.
        assert!(started.elapsed() >= Duration::from_nanos(shared.block_ns() * u64::from(9 + fade)));
    }
}
