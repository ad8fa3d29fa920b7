//! Shared-memory IPC between the Chronus supervisor and its worker processes.
//!
//! What it is for: the [`Slot`] (a memfd holding a header, an SPSC command
//! ring supervisor → worker and an index-tagged SPSC audio ring worker →
//! output, plus the horizon clock and the worker's status words) and the
//! [`SnapshotArea`] (a memfd through which a joining worker receives the
//! active worker's engine state). What it is not for: it knows nothing of DSP,
//! OSC, processes or fd passing; command records are opaque 64-byte values.
//!
//! Every access to shared memory is an atomic load or store, so a crashed,
//! buggy or malicious peer can only ever produce wrong values (which are
//! range-checked), never a data race or an out-of-bounds access in this
//! process. The only `unsafe` code is in `mapping.rs` (mmap/munmap and turning
//! the mapping into slices of atomics).

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod audio_ring;
mod command_ring;
mod error;
pub mod futex;
mod mapping;
mod slot;
mod snapshot;

pub use audio_ring::WriteOutcome;
pub use error::{IpcError, LayoutError};
pub use mapping::live_segments;
pub use slot::{
    Slot, SlotLayout, WorkerCounts, LAYOUT_VERSION, MAX_AUDIO_BLOCKS, MAX_BLOCK_FRAMES,
    MAX_CHANNELS, MAX_COMMANDS, SLOT_MAGIC,
};
pub use snapshot::{SnapshotArea, SnapshotMeta, MAX_SNAPSHOT_BYTES, SNAPSHOT_MAGIC};

/// One fixed-size entry of a slot's command ring: 64 bytes, opaque to this crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommandRecord {
    /// Sequence number assigned by the producer.
    pub seq: u64,
    /// Generation of the slot binding the record was written for.
    pub generation: u32,
    /// Kind of record (meaning defined by the engine crate).
    pub kind: u32,
    /// Absolute frame (or block) the record refers to.
    pub frame: u64,
    /// Kind-specific payload.
    pub payload: [u64; 5],
}

/// Nanoseconds of CLOCK_MONOTONIC: a clock all processes of the machine share, so a time
/// one process notes in shared memory means the same to another.
pub fn monotonic_ns() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}
