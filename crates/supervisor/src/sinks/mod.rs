//! Where played blocks go: a sound device, a WAV file, or nowhere (the null sink).
//!
//! A device brings its own clock (its callback asks for frames). The WAV and null sinks
//! have none, so [`run_paced`] plays one block per block period on a thread of its own,
//! against absolute deadlines. If that thread wakes far too late (a stalled machine), it
//! drops the backlog instead of bursting: bursting would ask the workers for blocks the
//! horizon has not let them render yet and turn one late wake-up into underruns.

pub mod device;
pub mod null;
pub mod wav;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::output::OutputCore;

/// A destination for blocks that has no clock of its own.
pub trait Sink: Send {
    /// Takes one block of interleaved stereo samples.
    ///
    /// # Errors
    /// I/O errors of the destination (disk full, …); the paced loop stops on them.
    fn write_block(&mut self, interleaved: &[f32]) -> anyhow::Result<()>;

    /// Flushes and closes (e.g. finalises the WAV header).
    ///
    /// # Errors
    /// I/O errors while finalising.
    fn finish(&mut self) -> anyhow::Result<()>;

    /// What the operator should read in the log ("WAV file out.wav", "null sink").
    fn describe(&self) -> String;
}

/// Plays blocks in real time into `sink` until `stop` is set, then finishes the sink.
///
/// # Errors
/// The sink's write or finish errors.
pub fn run_paced(
    mut core: OutputCore,
    mut sink: Box<dyn Sink>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let shared = Arc::clone(core.shared());
    let period = Duration::from_nanos(shared.block_ns());
    let mut block = vec![0.0f32; shared.block_frames * 2];
    let mut deadline = Instant::now();
    let mut result = Ok(());
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep(deadline - now);
        } else if now > deadline + period * 4 {
            // Woke far too late: start the schedule again from now rather than burst.
            Metrics::bump(&shared.metrics.output_late_wakeups);
            deadline = now;
        }
        core.render_next(&mut block);
        if let Err(error) = sink.write_block(&block) {
            result = Err(error);
            break;
        }
        deadline += period;
    }
    let finished = sink.finish();
    result.and(finished)
}
