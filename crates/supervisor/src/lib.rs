//! Chronus supervisor: everything `chronus serve` does except rendering audio.
//!
//! - [`supervisor`]: the loop that owns the two slots, spawns and watches the worker
//!   processes, follows the output's failovers and builds spares.
//! - [`output`]: the output clock, which stamps commands, gates rendering with the
//!   horizon and reads each block from the active (or standby) slot.
//! - [`sinks`]: device (cpal: JACK, ALSA), WAV file and null destinations.
//! - [`osc`]: the OSC handler; [`transport`]: UDP and TCP in, replies out.
//! - [`workers`]: spawning the re-executed worker processes.
//! - [`metrics`]: lock-free counters and histograms behind `/metrics`.

pub mod config;
pub mod metrics;
pub mod osc;
pub mod output;
pub mod patch_editor;
pub mod sinks;
pub mod supervisor;
pub mod transport;
pub mod workers;

pub use config::{OutputChoice, ServeConfig};
pub use metrics::{Metrics, MetricsReport};
pub use supervisor::{SlotState, Supervisor};
