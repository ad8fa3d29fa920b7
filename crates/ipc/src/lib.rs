//! Shared-memory IPC between the Chronus supervisor and its worker processes.
//! (Being written; see crates/ipc/SPEC in the task description.)

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
