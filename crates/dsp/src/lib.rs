//! Chronus DSP: module types, patch graphs and deterministic block rendering.
//!
//! This crate turns a patch description into audio: [`PatchDesc`] (from TOML or code) is
//! compiled into a [`Patch`], which renders stereo blocks without allocating, locking or
//! panicking, and can snapshot its whole state into bytes so a spare worker can join the
//! lockstep bit-identically. It knows nothing of processes, sockets or OSC.
//!
//! Determinism is the contract: the same patch and the same calls produce the same bits
//! (no hash-map iteration, no time, no threads; denormals flushed in software).
//!
//! ```
//! use chronus_dsp::{Patch, PatchDesc, StateReader, StateWriter};
//!
//! let desc = PatchDesc::default_patch();
//! let mut patch = Patch::compile(&desc, 48_000.0, 64, 0)?;
//! let adsr = patch.node_index("adsr").unwrap();
//! patch.set_gate(adsr, true);
//! let (mut left, mut right) = ([0.0f32; 64], [0.0f32; 64]);
//! patch.process(&mut left, &mut right);
//!
//! // Snapshot, and continue in a fresh patch exactly where this one is.
//! let mut bytes = vec![0u8; patch.state_len()];
//! let mut w = StateWriter::new(&mut bytes);
//! patch.save_state(&mut w);
//! w.finish()?;
//! let mut spare = Patch::compile(&desc, 48_000.0, 64, 0)?;
//! spare.load_state(&mut StateReader::new(&bytes))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

pub mod module;
pub mod modules;
pub mod params;
pub mod patch;
pub mod smoother;
pub mod spec;
pub mod state;

pub use module::{Module, MAX_PORTS};
pub use modules::{all_specs, create, spec_for};
pub use params::{Params, MAX_PARAMS};
pub use patch::{
    ArpDesc, ArpMode, ClockDesc, Connection, Expression, InstrumentDesc, ModuleDesc, Patch,
    PatchDesc, PatchError, TrackDesc, INSTRUMENT_SPEC,
};
pub use smoother::Smoother;
pub use spec::{ModuleSpec, ParamSpec, PortSpec, Rate, Unit};
pub use state::{StateError, StateReader, StateWriter};
