//! Errors of the IPC crate: creating, attaching and publishing into shared
//! segments. The ring operations themselves cannot fail (they report full,
//! empty or stale through their return values).

use std::io;

/// A slot geometry outside the supported bounds.
///
/// Why: the layout comes from the command line (supervisor) or from shared
/// memory (worker); both are validated the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Block size not in 1..=4096 frames.
    #[error("block size {0} frames is out of range (1..=4096)")]
    BlockFrames(u64),
    /// Channel count not in 1..=8.
    #[error("channel count {0} is out of range (1..=8)")]
    Channels(u64),
    /// Audio ring capacity zero, not a power of two, or above 1024 blocks.
    #[error("audio ring capacity {0} blocks is invalid (a power of two in 1..=1024)")]
    AudioCapacity(u64),
    /// Command ring capacity zero, not a power of two, or above 65536 records.
    #[error("command ring capacity {0} records is invalid (a power of two in 1..=65536)")]
    CommandCapacity(u64),
}

/// Why a shared segment could not be created, attached or written.
#[derive(Debug, thiserror::Error)]
pub enum IpcError {
    /// `memfd_create`, `ftruncate`, sealing or `mmap` failed in the creator.
    #[error("cannot create shared segment '{name}': {source}")]
    Create {
        /// Name given to the memfd.
        name: String,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// The fd handed over could not be mapped (not a memfd/file, bad size).
    #[error("cannot map the shared segment passed by fd: {source} (is it the fd the supervisor passed?)")]
    Map {
        /// What the kernel (or the size check) said.
        #[source]
        source: io::Error,
    },
    /// The segment is smaller than a header.
    #[error("{what} segment is {actual} bytes, too small for its {needed}-byte header")]
    TooSmall {
        /// "slot" or "snapshot area".
        what: &'static str,
        /// Size of the segment.
        actual: usize,
        /// Size of the header.
        needed: usize,
    },
    /// The header does not start with the expected magic number.
    #[error(
        "{what} segment has magic {found:#018x}, expected {expected:#018x}: not a Chronus {what}"
    )]
    BadMagic {
        /// "slot" or "snapshot area".
        what: &'static str,
        /// Value found.
        found: u64,
        /// Value expected.
        expected: u64,
    },
    /// The header was written by a build with another layout version.
    #[error("{what} layout version {found}, this build speaks {expected}: supervisor and worker binaries differ")]
    BadVersion {
        /// "slot" or "snapshot area".
        what: &'static str,
        /// Version found.
        found: u64,
        /// Version of this build.
        expected: u64,
    },
    /// The geometry in the header (or given to `create`) is out of bounds.
    #[error("invalid slot layout: {0}")]
    BadLayout(#[from] LayoutError),
    /// The segment's size disagrees with the size its header implies.
    #[error("{what} segment is {actual} bytes, its header claims {claimed} and its layout implies {expected}")]
    SizeMismatch {
        /// "slot" or "snapshot area".
        what: &'static str,
        /// Size implied by the layout / capacity.
        expected: u64,
        /// Size recorded in the header.
        claimed: u64,
        /// Size of the file.
        actual: u64,
    },
    /// A capacity beyond what this crate supports.
    #[error("{what} capacity {requested} bytes exceeds the maximum {max}")]
    TooLarge {
        /// "snapshot area".
        what: &'static str,
        /// Requested capacity.
        requested: u64,
        /// Largest supported capacity.
        max: u64,
    },
    /// A snapshot larger than the snapshot area.
    #[error("snapshot of {len} bytes does not fit the {capacity}-byte snapshot area (size it from the compiled patch)")]
    SnapshotTooLarge {
        /// Size of the snapshot.
        len: usize,
        /// Capacity of the area.
        capacity: usize,
    },
}
