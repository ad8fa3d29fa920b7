//! The clock of the sinks that have none (the null sink, which `--output wav:` also
//! plays through): a thread of ours plays a period of blocks per period against absolute
//! deadlines, as a sound card's interrupt would.
//!
//! The period is several blocks, not one: each wake-up costs more than the blocks it
//! plays (a timer, and a futex wake of each worker in another process, which on a virtual
//! machine is an interrupt to another CPU), and the server should be cheap at rest. It
//! costs no slack: the horizon moves a period at a time as well, so a block is still
//! allowed to render `depth` blocks' time before it is read, as long as the period divides
//! the depth ([`period_blocks`]). It costs latency instead: a command waits for the next
//! period to be stamped, as it would with a sound card of that period.
//!
//! If that thread wakes too late (a stalled machine), it drops the backlog instead of
//! bursting: bursting would ask the workers for blocks the horizon has only just let them
//! render and turn one late wake-up into underruns. It catches up at most one period, and
//! at most half the depth.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::Playing;
use crate::depth::DepthSetting;
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

/// Frames a paced sink plays per wake-up unless `--device-buffer` says otherwise: a
/// common sound-card period (10.7 ms at 48 kHz).
pub const DEFAULT_PERIOD_FRAMES: u32 = 512;

/// Blocks per period of a paced sink: `requested_frames` (or [`DEFAULT_PERIOD_FRAMES`]) in
/// whole blocks, at least one. With a fixed depth, also at most the depth and a divisor of
/// it: within that, every block may render `depth` blocks' time before it is read, as with
/// a period of one block; a longer period would read blocks the horizon has not let the
/// workers render yet. A request cut down is logged. With `--depth auto` the period is as
/// asked, and the depth keeps above it ([`crate::depth`]).
pub fn period_blocks(
    requested_frames: Option<u32>,
    block_frames: usize,
    depth: DepthSetting,
) -> usize {
    let frames = requested_frames.unwrap_or(DEFAULT_PERIOD_FRAMES) as usize;
    let wanted = (frames / block_frames.max(1)).max(1);
    let DepthSetting::Fixed(depth) = depth else {
        // The depth keeps one block above the period, within what the rings hold.
        let most = (crate::depth::MAX_AUTO_DEPTH - 1) as usize;
        if wanted > most {
            tracing::warn!(
                "--device-buffer {frames}: the null sink plays at most {most} blocks of {block_frames} frames per period with --depth auto"
            );
        }
        return wanted.min(most);
    };
    let depth = usize::try_from(depth).unwrap_or(usize::MAX).max(1);
    let period = (1..=wanted.min(depth))
        .rev()
        .find(|p| depth.is_multiple_of(*p))
        .unwrap_or(1);
    if period != wanted && requested_frames.is_some() {
        tracing::warn!(
            "--device-buffer {frames}: the null sink plays {period} blocks of {block_frames} frames per period, the most that divides the depth ({depth} blocks); raise --depth for longer periods"
        );
    }
    period
}

/// Plays `period_blocks` blocks per period, in real time, into `write` until `stop` is
/// set, and then the fade-out (the output clock's,
/// [`OutputShared::request_fade_out`](crate::output::OutputShared::request_fade_out)):
/// the last sample written is exactly 0.0.
pub fn run_paced(
    mut core: OutputCore,
    period_blocks: usize,
    stop: &AtomicBool,
    write: impl FnMut(&[f32]),
) {
    pace(
        &mut core,
        period_blocks,
        stop,
        &AtomicBool::new(false),
        write,
    );
}

/// The loop of [`run_paced`] on a borrowed clock, which also ends (between two periods)
/// when `hand_back` is set, so that another clock can drive `core` from the next block on:
/// the JACK output plays on this loop while its server is away. Returns whether it ended
/// because the fade-out is over (else `hand_back` was set).
pub fn pace(
    core: &mut OutputCore,
    period_blocks: usize,
    stop: &AtomicBool,
    hand_back: &AtomicBool,
    mut write: impl FnMut(&[f32]),
) -> bool {
    let shared = Arc::clone(core.shared());
    let period_blocks = period_blocks.max(1);
    let period = Duration::from_nanos(shared.block_ns() * period_blocks as u64);
    // Lateness the schedule absorbs by playing the next period at once. Each block of it
    // may render for `depth` blocks' time before it is read; catching up takes that time
    // away, so never more than half of it (nor more than one period: no bursts).
    let most_late = |shared: &crate::output::OutputShared| {
        period.min(Duration::from_nanos(shared.block_ns() * shared.depth() / 2))
    };
    let mut samples = vec![0.0f32; shared.block_frames * 2 * period_blocks];
    // Deadlines in exact arithmetic from the schedule's start (a period in whole ns would
    // run the clock 0.25 ppm fast at 64-frame blocks).
    let period_frames = (shared.block_frames * period_blocks) as u128;
    let rate = u128::from(shared.sample_rate.max(1));
    let mut schedule_start = Instant::now();
    let mut periods: u128 = 0;
    let mut deadline = schedule_start;
    while !shared.has_faded_out() {
        if hand_back.load(Ordering::Acquire) {
            return false;
        }
        if stop.load(Ordering::Acquire) {
            shared.request_fade_out();
        }
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep(deadline - now);
        } else if now > deadline + most_late(&shared) {
            // Woke too late: start the schedule again from now rather than burst.
            Metrics::bump(&shared.metrics.output_late_wakeups);
            core.clock_jumped();
            schedule_start = now;
            periods = 0;
            deadline = now;
        }
        // The period is handed over at its deadline: the schedule is this sink's clock.
        let handed_at = deadline.saturating_duration_since(shared.epoch).as_nanos() as u64;
        core.handed_over(core.next_frame(), handed_at);
        core.render_next(&mut samples);
        write(&samples);
        periods += 1;
        let since_start = periods * period_frames * 1_000_000_000 / rate;
        deadline = schedule_start + Duration::from_nanos(since_start as u64);
    }
    true
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
            DepthSetting::Fixed(4),
            1,
        ))
    }

    #[test]
    fn the_paced_loop_keeps_real_time_and_ends_when_stopped() {
        let shared = idle_shared();
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        let mut blocks = 0u32;
        let mut last_block = Vec::new();
        run_paced(OutputCore::new(Arc::clone(&shared)), 1, &stop, |block| {
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

    #[test]
    fn a_period_of_four_blocks_plays_them_in_one_write_and_ends_on_zero() {
        let shared = idle_shared();
        let stop = AtomicBool::new(false);
        let mut writes = 0u32;
        let mut last = None;
        run_paced(OutputCore::new(Arc::clone(&shared)), 4, &stop, |samples| {
            assert_eq!(samples.len(), 4 * 128);
            writes += 1;
            last = samples.last().map(|x| x.to_bits());
            if writes == 3 {
                stop.store(true, Ordering::Release);
            }
        });
        // Three periods, then the 8-block fade-out: two more periods of four.
        assert_eq!(writes, 5);
        assert_eq!(shared.played.load(Ordering::Acquire), 20);
        assert_eq!(last, Some(0.0f32.to_bits()));
    }

    #[test]
    fn a_late_wake_up_restarts_the_schedule_instead_of_bursting() {
        let shared = idle_shared();
        let stop = AtomicBool::new(false);
        let mut written_at = Vec::new();
        run_paced(OutputCore::new(Arc::clone(&shared)), 2, &stop, |_| {
            if written_at.len() == 3 {
                // A stall of three periods, as a descheduled thread sees.
                std::thread::sleep(Duration::from_millis(8));
            }
            written_at.push(Instant::now());
            if written_at.len() == 8 {
                stop.store(true, Ordering::Release);
            }
        });
        // The period after the stall is played at once (it was due), the next one a whole
        // period later, never the stall's backlog back to back.
        let period = Duration::from_nanos(shared.block_ns() * 2);
        assert!(
            written_at[5] - written_at[3] >= period,
            "the stall's backlog was played in a burst: {:?}",
            written_at[5] - written_at[3]
        );
        assert!(shared.metrics.output_late_wakeups.load(Ordering::Relaxed) >= 1);
    }

    #[test]
    fn with_depth_auto_the_period_is_as_asked() {
        assert_eq!(period_blocks(None, 64, DepthSetting::Auto), 8);
        assert_eq!(period_blocks(Some(64), 64, DepthSetting::Auto), 1);
        assert_eq!(period_blocks(Some(256), 64, DepthSetting::Auto), 4);
        assert_eq!(period_blocks(Some(100), 64, DepthSetting::Auto), 1);
    }

    #[test]
    fn the_period_is_whole_blocks_and_divides_the_depth() {
        assert_eq!(DEFAULT_PERIOD_FRAMES, 512);
        assert_eq!(period_blocks(None, 64, DepthSetting::Fixed(8)), 8);
        assert_eq!(period_blocks(None, 64, DepthSetting::Fixed(24)), 8);
        assert_eq!(period_blocks(None, 64, DepthSetting::Fixed(12)), 6);
        assert_eq!(period_blocks(None, 64, DepthSetting::Fixed(7)), 7);
        assert_eq!(period_blocks(None, 64, DepthSetting::Fixed(2)), 2);
        assert_eq!(period_blocks(None, 64, DepthSetting::Fixed(1)), 1);
        assert_eq!(period_blocks(None, 512, DepthSetting::Fixed(24)), 1);
        assert_eq!(period_blocks(Some(100), 64, DepthSetting::Fixed(24)), 1);
        assert_eq!(period_blocks(Some(1024), 64, DepthSetting::Fixed(24)), 12);
        assert_eq!(period_blocks(Some(256), 64, DepthSetting::Fixed(8)), 4);
        assert_eq!(period_blocks(Some(64), 64, DepthSetting::Fixed(8)), 1);
        assert_eq!(period_blocks(Some(64 * 5), 64, DepthSetting::Fixed(8)), 4);
    }
}
