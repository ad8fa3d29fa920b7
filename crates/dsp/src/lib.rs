//! Chronus DSP: module types, patch graphs and deterministic block rendering.
//!
//! This crate turns a patch description into audio: [`PatchDesc`] (from TOML or code) is
//! compiled into a [`Patch`], which renders stereo blocks without allocating, locking or
//! panicking, and can snapshot its whole state into bytes so a spare worker can join the
//! lockstep bit-identically. It knows nothing of processes, sockets or OSC.
//!
//! Determinism is the contract: the same patch and the same calls produce the same bits
//! (no hash-map iteration, no time, no threads; denormals flushed in software).
#![deny(unsafe_code)]

pub mod module;
pub mod modules;
pub mod patch;
pub mod smoother;
pub mod spec;
pub mod state;

pub use module::{Module, MAX_PORTS};
pub use modules::{all_specs, create, spec_for};
pub use patch::{Connection, ModuleDesc, Patch, PatchDesc, PatchError};
pub use smoother::Smoother;
pub use spec::{ModuleSpec, ParamSpec, PortSpec, Rate, Unit};
pub use state::{StateError, StateReader, StateWriter};
