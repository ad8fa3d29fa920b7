//! Where played blocks go: a sound device, or nowhere (the null sink), each behind the one
//! [`Sink`] trait; and which one `--output` picks ([`select`]). A WAV file is not a sink:
//! `--output wav:PATH` is the null sink plus a recording (see [`crate::recorder`]), so
//! every output is recorded the same way.
//!
//! A device brings its own clock (its callback asks for frames). The null sink has none,
//! so [`paced`] plays one block per block period on a thread of its own. Either
//! way the output clock ([`OutputCore::render_next`]) fills one block at a time straight
//! into the destination's buffer: no sink adds buffering, allocation or locking.

pub mod device;
pub mod null;
pub mod paced;
pub mod select;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::output::OutputCore;

/// A destination for played blocks, with whatever paces it.
pub trait Sink: Send {
    /// What the operator should read in the log ("JACK", "null sink").
    fn describe(&self) -> String;

    /// Starts playing the blocks of `core` into this destination, until `stop` is set or
    /// the returned [`Playing`] is stopped. `realtime` asks for real-time scheduling of a
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
    /// A device's callback; dropping the stream stops it.
    Device(cpal::Stream),
}

impl Playing {
    /// A paced thread playing into a sink without a clock.
    pub fn paced(thread: std::thread::JoinHandle<anyhow::Result<()>>) -> Playing {
        Playing {
            clock: Clock::Paced(thread),
        }
    }

    /// A device stream that calls back for blocks.
    pub fn device(stream: cpal::Stream) -> Playing {
        Playing {
            clock: Clock::Device(stream),
        }
    }

    /// Whether it stopped by itself (its thread ended or panicked); a device never does.
    pub fn ended(&self) -> bool {
        match &self.clock {
            Clock::Paced(thread) => thread.is_finished(),
            Clock::Device(_) => false,
        }
    }

    /// Stops playing (a paced thread stops once `stop` is set; it is joined).
    ///
    /// # Errors
    /// The error the paced thread returned, or its panic.
    pub fn stop(self) -> anyhow::Result<()> {
        match self.clock {
            Clock::Paced(thread) => thread
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the output thread panicked"))),
            Clock::Device(stream) => {
                drop(stream);
                Ok(())
            }
        }
    }
}
