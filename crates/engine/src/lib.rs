//! Chronus engine: turns frame-stamped commands and a compiled patch into blocks of audio.
//!
//! - [`arpeggiator`]: each instrument's arpeggiator, playing the keys held in time.
//! - [`command`]: the commands and the fixed-size records they travel in.
//! - [`engine`]: [`Engine`], a patch plus pending commands, rendered block by block,
//!   snapshotted and restored as bytes.
//! - [`sequencer`]: the tempo clock and the tracks that play patterns on instruments.
//! - [`worker`]: the worker process loop over one shared-memory slot.
//!
//! The engine renders the same samples in any process for the same patch, seed and
//! stamped commands: that determinism is what lets two workers run in lockstep.
#![deny(unsafe_code)]

pub mod arpeggiator;
pub mod command;
pub mod engine;
pub mod master;
pub mod sequencer;
pub mod worker;

pub use command::{
    Command, Control, Fault, Instruction, NodeIndex, PatchChunk, StampedCommand, SwitchAt,
};
pub use engine::{
    Engine, EngineConfig, EngineCounters, ReceiveError, Retired, SnapshotError, MAX_ADMITTED,
    MAX_ADMITTED_TIMED, MAX_PENDING,
};
pub use master::MasterConfig;
pub use worker::{run_worker, JoinPoint, StartMode, WorkerArgs, WorkerError};
