//! Where played blocks go: JACK, an ALSA device, or nowhere (the null sink), each behind the one
//! [`Sink`] trait; and which one `--output` picks ([`select`]). A WAV file is not a sink:
//! `--output wav:PATH` is the null sink plus a recording (see [`crate::recorder`]), so
//! every output is recorded the same way.
//!
//! JACK and a device bring their own clock (a callback asks for frames). The null sink has none,
//! so [`paced`] plays a period of blocks per period on a thread of its own. Either
//! way the output clock ([`OutputCore::render_next`]) fills whole blocks straight
//! into the destination's buffer: no sink adds buffering, allocation or locking.

pub mod device;
pub mod jack;
pub mod null;
pub mod paced;
pub mod select;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::output::{OutputCore, OutputShared};

/// How long a stop waits for a device to call back through the fade-out (a stalled
/// device must not hang the shutdown).
const DEVICE_FADE_WAIT: Duration = Duration::from_secs(1);

/// A destination for played blocks, with whatever paces it.
pub trait Sink: Send {
    /// What the operator should read in the log ("JACK", "null sink").
    fn describe(&self) -> String;

    /// Starts playing the blocks of `core` into this destination, until `stop` is set or
    /// the returned [`Playing`] is stopped, and then through the output's fade-out.
    /// `realtime` asks for real-time scheduling of a
    /// thread the sink starts. Logs what it opened.
    ///
    /// # Errors
    /// When the destination cannot be opened or its thread started.
    fn start(
        self: Box<Self>,
        core: OutputCore,
        stop: Arc<AtomicBool>,
        realtime: bool,
    ) -> anyhow::Result<Playing>;
}

/// An output that is playing.
pub struct Playing {
    clock: Clock,
}

/// What drives a playing output.
enum Clock {
    /// A paced thread of ours (it ends when `stop` is set).
    Paced(std::thread::JoinHandle<anyhow::Result<()>>),
    /// A device's callback; dropping the stream stops it (once the output faded out).
    Device(cpal::Stream, Arc<OutputShared>),
    /// JACK's process callback, and the thread that owns the client.
    Jack(jack::JackPlaying),
}

impl Playing {
    /// A paced thread playing into a sink without a clock.
    pub fn paced(thread: std::thread::JoinHandle<anyhow::Result<()>>) -> Playing {
        Playing {
            clock: Clock::Paced(thread),
        }
    }

    /// A device stream that calls back for blocks from the output clock over `shared`.
    pub fn device(stream: cpal::Stream, shared: Arc<OutputShared>) -> Playing {
        Playing {
            clock: Clock::Device(stream, shared),
        }
    }

    /// A JACK client playing the output clock, watched by a thread of its own.
    pub fn jack(playing: jack::JackPlaying) -> Playing {
        Playing {
            clock: Clock::Jack(playing),
        }
    }

    /// Whether it stopped by itself (its thread ended or panicked; for JACK, the thread
    /// that watches the client); a device never does.
    pub fn ended(&self) -> bool {
        match &self.clock {
            Clock::Paced(thread) => thread.is_finished(),
            Clock::Device(..) => false,
            Clock::Jack(playing) => playing.ended(),
        }
    }

    /// Stops playing after the output's fade-out, so the last sample played is 0.0 (a
    /// paced thread fades out and ends once `stop` is set; it is joined; a device keeps
    /// being called until the fade is out, a second at most; so is a JACK client, which is
    /// then deactivated and closed from a thread of ours).
    ///
    /// # Errors
    /// The error the paced thread (or JACK's watcher) returned, or its panic.
    pub fn stop(self) -> anyhow::Result<()> {
        match self.clock {
            Clock::Paced(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the output thread panicked"))),
            Clock::Device(stream, shared) => {
                shared.request_fade_out();
                let deadline = Instant::now() + DEVICE_FADE_WAIT;
                while !shared.has_faded_out() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(1));
                }
                drop(stream);
                Ok(())
            }
            Clock::Jack(playing) => playing.stop(),
        }
    }
}
