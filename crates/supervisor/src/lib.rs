//! Chronus supervisor: everything `chronus serve` does except rendering audio.
//!
//! - [`supervisor`]: the wiring of a running server and the loop that owns the two slots,
//!   spawns and watches the worker processes, follows the output's failovers and builds
//!   spares.
//! - [`slot_state`]: the slot state machine, a pure function the loop follows;
//!   [`slots`]: one slot's worker, generation and back-off, and the machine's actions.
//! - [`recovery`]: the restore point, the command history and poison commands, for
//!   losing both workers at once; [`state_file`]: the restore point on disk (`--state`),
//!   and [`resume`]: starting from it after the supervisor's own death (`--resume`).
//! - [`output`]: the output clock, which stamps commands, gates rendering with the
//!   horizon and reads each block from the active (or standby) slot; [`clock_model`]:
//!   which frame plays at which time, for timetags; [`depth`]: how far ahead the
//!   workers render, adapted to the slack they leave.
//! - [`sinks`]: JACK (the `jack` crate), ALSA device (cpal) and null destinations, and which one
//!   `--output` picks; [`recorder`]: WAV recordings of whatever plays (`--record`,
//!   `--output wav:`); [`record_lock`]: one server per record file.
//! - [`osc`]: the OSC handler; [`transport`]: UDP and TCP in, replies out; [`framing`]:
//!   TCP framings (OSC 1.0 size prefix, SLIP); [`exposure`]: who may talk, how much,
//!   and what goes back (`--allow`, rate and size limits, no UDP amplification);
//!   [`notify`]: pushes to `/notify` subscribers (events, metrics, levels, scope,
//!   spectrum).
//! - [`workers`]: spawning the re-executed worker processes.
//! - [`metrics`]: lock-free counters and histograms behind `/metrics`, and the report;
//!   [`report`]: building it on the thread that asks, never on a real-time one.
//! - [`wake`]: the eventfd the supervisor loop sleeps on between events;
//!   [`log_limit`]: rate-limited log lines and escaped client text.
//! - [`command_log`]: the `--command-log` file and its writer thread; [`live_patch`]: the
//!   stamped patch the loop follows through live edits; [`library`]: patches saved by
//!   name and the presets built in (`/library/…`, `--patch NAME`).

pub mod clock_model;
pub mod command_log;
pub mod config;
pub mod depth;
pub mod exposure;
pub mod framing;
pub mod library;
pub mod live_patch;
pub mod log_limit;
pub mod metrics;
pub mod notify;
pub mod osc;
pub mod output;
pub mod overload;
pub mod packet_path;
pub mod patch_editor;
pub mod record_lock;
pub mod recorder;
pub mod recovery;
pub mod report;
pub mod resume;
pub mod sinks;
pub mod slot_state;
pub mod slots;
pub mod state_file;
pub mod supervisor;
pub mod transport;
pub mod wake;
pub mod workers;

pub use config::{OutputChoice, ServeConfig};
pub use metrics::{MetricInfo, MetricKind, Metrics, MetricsReport, METRICS, SLOT_METRICS};
pub use slot_state::SlotState;
pub use supervisor::Supervisor;
