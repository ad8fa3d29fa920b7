//! The snapshot area: a memfd through which a joining worker receives the
//! active worker's engine state at a block boundary (DESIGN.md invariant 5).
//!
//! It is its own segment, sized by the supervisor for the largest patch that may ever
//! run ([`MAX_SNAPSHOT_BYTES`]), so a live edit to a patch of any size loads without a
//! new segment; its pages become memory only when a snapshot first touches them (the
//! mapping is not populated, and the processes lock pages on fault), so the area costs
//! the largest snapshot written, not its capacity.
//! One writer at a time (the active worker; the supervisor guarantees it by
//! having only one active worker), any number of readers (joining workers, or
//! the supervisor keeping the last good snapshot). The area holds one
//! snapshot, protected by a seqlock: the version word is odd while the writer
//! is inside, and a reader accepts a copy only if it saw the same even
//! version before and after copying.
//!
//! # Memory layout (bytes; all fields 64-bit atomics)
//!
//! ```text
//! offset  written by  field
//!      0  creator     magic "CHRNSNAP" (little endian)
//!      8  creator     layout version (SNAPSHOT_VERSION)
//!     16  creator     capacity in bytes
//!     24  creator     byte_len of the whole segment
//!     64  writer      seqlock version (odd = being written, 0 = never written)
//!     72  writer      meta.request
//!     80  writer      meta.block
//!     88  writer      meta.last_seq
//!     96  writer      meta.len (bytes of snapshot data)
//!    128  writer      data: capacity bytes packed little endian into u64
//!                     words, padded to a multiple of 64 bytes
//! ```
//!
//! A writer that finds the version odd (its predecessor died mid-publish)
//! simply takes over: the version stays odd while it writes and becomes even
//! when it is done.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::error::IpcError;
use crate::mapping::{Residency, SharedMapping};

/// "CHRNSNAP" as a little-endian u64: identifies a snapshot area.
pub const SNAPSHOT_MAGIC: u64 = u64::from_le_bytes(*b"CHRNSNAP");
/// Version of the layout documented in this file.
const SNAPSHOT_VERSION: u64 = 1;
/// Largest snapshot area, in bytes (1 GiB).
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

const HEADER_BYTES: usize = 128;
const W_MAGIC: usize = 0;
const W_VERSION: usize = 1;
const W_CAPACITY: usize = 2;
const W_BYTE_LEN: usize = 3;
const W_SEQ: usize = 8;
const W_REQUEST: usize = 9;
const W_BLOCK: usize = 10;
const W_LAST_SEQ: usize = 11;
const W_LEN: usize = 12;
const W_DATA: usize = HEADER_BYTES / 8;

/// What a snapshot is: who asked for it, where in the stream it was taken.
///
/// Why: a joining worker must know which of its requests the snapshot answers
/// and from which block and command sequence number to continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Id of the request this snapshot answers.
    pub request: u64,
    /// Block boundary the state belongs to (the next block to render).
    pub block: u64,
    /// Sequence number of the last command applied before the snapshot.
    pub last_seq: u64,
    /// Length of the snapshot data in bytes (set by [`SnapshotArea::publish`]).
    pub len: u64,
}

/// A shared area holding one engine snapshot (see the module docs).
///
/// `Send + Sync`; [`SnapshotArea::publish`] and [`SnapshotArea::read`] take
/// `&self` and work through atomics.
pub struct SnapshotArea {
    map: SharedMapping,
    capacity: usize,
}

impl std::fmt::Debug for SnapshotArea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotArea")
            .field("fd", &self.map.fd())
            .field("capacity", &self.capacity)
            .finish()
    }
}

fn byte_len_for(capacity: usize) -> usize {
    HEADER_BYTES + capacity.div_ceil(64) * 64
}

impl SnapshotArea {
    /// Supervisor: creates a zeroed, sealed memfd area for snapshots of up to
    /// `capacity_bytes` bytes.
    ///
    /// # Errors
    /// [`IpcError::TooLarge`] above [`MAX_SNAPSHOT_BYTES`];
    /// [`IpcError::Create`] if the memfd cannot be created, sized or mapped.
    pub fn create(name: &str, capacity_bytes: usize) -> Result<Self, IpcError> {
        if capacity_bytes > MAX_SNAPSHOT_BYTES {
            return Err(IpcError::TooLarge {
                what: "snapshot area",
                requested: capacity_bytes as u64,
                max: MAX_SNAPSHOT_BYTES as u64,
            });
        }
        let len = byte_len_for(capacity_bytes);
        let map = SharedMapping::create_with(name, len, Residency::OnTouch).map_err(|source| {
            IpcError::Create {
                name: name.to_owned(),
                source,
            }
        })?;
        let w = map.words();
        w[W_VERSION].store(SNAPSHOT_VERSION, Ordering::Relaxed);
        w[W_CAPACITY].store(capacity_bytes as u64, Ordering::Relaxed);
        w[W_BYTE_LEN].store(len as u64, Ordering::Relaxed);
        w[W_MAGIC].store(SNAPSHOT_MAGIC, Ordering::Release);
        Ok(Self {
            map,
            capacity: capacity_bytes,
        })
    }

    /// Worker: maps an inherited snapshot-area fd and validates its header
    /// (magic, version, capacity, size).
    ///
    /// # Errors
    /// [`IpcError::Map`] if the fd cannot be mapped; [`IpcError::TooSmall`],
    /// [`IpcError::BadMagic`], [`IpcError::BadVersion`],
    /// [`IpcError::TooLarge`] or [`IpcError::SizeMismatch`] if the header does
    /// not describe this segment.
    pub fn attach(fd: OwnedFd) -> Result<Self, IpcError> {
        let map =
            SharedMapping::open_with(fd, byte_len_for(MAX_SNAPSHOT_BYTES), Residency::OnTouch)
                .map_err(|source| IpcError::Map { source })?;
        if map.len() < HEADER_BYTES {
            return Err(IpcError::TooSmall {
                what: "snapshot area",
                actual: map.len(),
                needed: HEADER_BYTES,
            });
        }
        let w = map.words();
        let magic = w[W_MAGIC].load(Ordering::Acquire);
        if magic != SNAPSHOT_MAGIC {
            return Err(IpcError::BadMagic {
                what: "snapshot area",
                found: magic,
                expected: SNAPSHOT_MAGIC,
            });
        }
        let version = w[W_VERSION].load(Ordering::Acquire);
        if version != SNAPSHOT_VERSION {
            return Err(IpcError::BadVersion {
                what: "snapshot area",
                found: version,
                expected: SNAPSHOT_VERSION,
            });
        }
        let capacity = w[W_CAPACITY].load(Ordering::Acquire);
        let capacity = match usize::try_from(capacity) {
            Ok(c) if c <= MAX_SNAPSHOT_BYTES => c,
            _ => {
                return Err(IpcError::TooLarge {
                    what: "snapshot area",
                    requested: capacity,
                    max: MAX_SNAPSHOT_BYTES as u64,
                })
            }
        };
        let expected = byte_len_for(capacity);
        let claimed = w[W_BYTE_LEN].load(Ordering::Acquire);
        if claimed != expected as u64 || map.len() != expected {
            return Err(IpcError::SizeMismatch {
                what: "snapshot area",
                expected: expected as u64,
                claimed,
                actual: map.len() as u64,
            });
        }
        Ok(Self { map, capacity })
    }

    /// The memfd of the area, to hand to workers.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }

    /// Largest snapshot the area holds, in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn data(&self) -> &[AtomicU64] {
        let words = self.map.words();
        let n = self.capacity.div_ceil(8);
        words.get(W_DATA..W_DATA + n).unwrap_or(&[])
    }

    /// Writer (the active worker): stores `meta` and `bytes` as the current
    /// snapshot (`meta.len` is set to `bytes.len()`), with the seqlock version
    /// odd while writing. Allocates nothing.
    ///
    /// # Errors
    /// [`IpcError::SnapshotTooLarge`] if `bytes` exceeds the capacity (nothing
    /// is written then).
    pub fn publish(&self, meta: SnapshotMeta, bytes: &[u8]) -> Result<(), IpcError> {
        if bytes.len() > self.capacity {
            return Err(IpcError::SnapshotTooLarge {
                len: bytes.len(),
                capacity: self.capacity,
            });
        }
        let w = self.map.words();
        let seq = &w[W_SEQ];
        let v = seq.load(Ordering::Relaxed);
        // Odd while writing; if a previous writer died mid-publish the version
        // is already odd and stays odd (but changes) until we are done.
        let writing = if v & 1 == 0 {
            v.wrapping_add(1)
        } else {
            v.wrapping_add(2)
        };
        seq.store(writing, Ordering::Relaxed);
        fence(Ordering::Release);
        w[W_REQUEST].store(meta.request, Ordering::Relaxed);
        w[W_BLOCK].store(meta.block, Ordering::Relaxed);
        w[W_LAST_SEQ].store(meta.last_seq, Ordering::Relaxed);
        w[W_LEN].store(bytes.len() as u64, Ordering::Relaxed);
        let mut chunks = bytes.chunks(8);
        for (dst, chunk) in self.data().iter().zip(&mut chunks) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            dst.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        // `writing` is odd, so this is even and never 0 ("never written").
        seq.store(writing.wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// Reader (a joining worker): if the current snapshot answers `request`,
    /// copies its bytes into `out` (resized to fit; this side may allocate)
    /// and returns its meta. `None` if no snapshot for `request` is there yet,
    /// or if it was being (re)written while we copied: retry later. `out` is
    /// unspecified when this returns `None`.
    pub fn read(&self, request: u64, out: &mut Vec<u8>) -> Option<SnapshotMeta> {
        self.read_filtered(Some(request), out)
    }

    /// Reader: like [`SnapshotArea::read`] but for whatever snapshot is
    /// current, whichever request it answers (the supervisor uses it to keep
    /// the last good snapshot).
    pub fn read_latest(&self, out: &mut Vec<u8>) -> Option<SnapshotMeta> {
        self.read_filtered(None, out)
    }

    fn read_filtered(&self, request: Option<u64>, out: &mut Vec<u8>) -> Option<SnapshotMeta> {
        let w = self.map.words();
        let seq = &w[W_SEQ];
        let before = seq.load(Ordering::Acquire);
        if before == 0 || before & 1 == 1 {
            return None;
        }
        let meta = SnapshotMeta {
            request: w[W_REQUEST].load(Ordering::Relaxed),
            block: w[W_BLOCK].load(Ordering::Relaxed),
            last_seq: w[W_LAST_SEQ].load(Ordering::Relaxed),
            len: w[W_LEN].load(Ordering::Relaxed),
        };
        if request.is_some_and(|r| r != meta.request) {
            return None;
        }
        let len = usize::try_from(meta.len)
            .ok()
            .filter(|&l| l <= self.capacity)?;
        out.clear();
        out.resize(len, 0);
        for (chunk, src) in out.chunks_mut(8).zip(self.data()) {
            let word = src.load(Ordering::Relaxed).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        fence(Ordering::Acquire);
        if seq.load(Ordering::Relaxed) != before {
            return None;
        }
        Some(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    fn payload(k: u64) -> Vec<u8> {
        let len = 1 + (k as usize * 37) % 3000;
        (0..len)
            .map(|i| (k.wrapping_mul(131) as usize + i * 7) as u8)
            .collect()
    }

    fn checksum(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
    }

    /// Memory the area's memfd holds, in KiB (its allocated blocks).
    fn held_kib(area: &SnapshotArea) -> u64 {
        rustix::fs::fstat(area.fd()).unwrap().st_blocks as u64 / 2
    }

    #[test]
    fn the_largest_area_costs_only_the_snapshot_written_in_it() {
        let area = SnapshotArea::create("chronus-test-big", MAX_SNAPSHOT_BYTES).unwrap();
        let mapped = held_kib(&area);
        let snapshot = vec![7u8; 4 << 20];
        let meta = SnapshotMeta {
            request: 1,
            block: 10,
            last_seq: 0,
            len: 0,
        };
        area.publish(meta, &snapshot).unwrap();
        let written = held_kib(&area);
        assert!(mapped <= 64, "{mapped} KiB held once mapped");
        assert!(
            (4 * 1024..4 * 1024 + 64).contains(&written),
            "{written} KiB held once a 4 MiB snapshot is written"
        );
        let mut out = Vec::new();
        assert_eq!(area.read(1, &mut out).map(|m| m.len), Some(4 << 20));
        assert_eq!(out, snapshot);
    }

    #[test]
    fn publish_read_round_trip() {
        let a = SnapshotArea::create("chronus-test-snap", 100).unwrap();
        assert_eq!(a.capacity(), 100);
        let mut out = Vec::new();
        assert_eq!(a.read(0, &mut out), None, "nothing published yet");
        assert_eq!(a.read_latest(&mut out), None);
        for len in [0usize, 1, 7, 8, 9, 99, 100] {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8 ^ 0xa5).collect();
            let meta = SnapshotMeta {
                request: len as u64 + 1,
                block: 640,
                last_seq: 17,
                len: 0,
            };
            a.publish(meta, &bytes).unwrap();
            let got = a.read(len as u64 + 1, &mut out).unwrap();
            assert_eq!(
                got,
                SnapshotMeta {
                    len: len as u64,
                    ..meta
                }
            );
            assert_eq!(out, bytes);
            assert_eq!(a.read(len as u64 + 2, &mut out), None, "wrong request id");
            assert_eq!(a.read_latest(&mut out), Some(got));
        }
        assert!(matches!(
            a.publish(SnapshotMeta::default(), &[0; 101]),
            Err(IpcError::SnapshotTooLarge {
                len: 101,
                capacity: 100
            })
        ));
    }

    #[test]
    fn attach_shares_and_validates() {
        let a = SnapshotArea::create("chronus-test-snap", 4000).unwrap();
        let b = SnapshotArea::attach(rustix::io::dup(a.fd()).unwrap()).unwrap();
        assert_eq!(b.capacity(), 4000);
        let meta = SnapshotMeta {
            request: 9,
            block: 3,
            last_seq: 4,
            len: 0,
        };
        a.publish(meta, &payload(5)).unwrap();
        let mut out = Vec::new();
        assert_eq!(b.read(9, &mut out).map(|m| m.block), Some(3));
        assert_eq!(out, payload(5));

        // Corrupt headers are refused.
        a.map.words()[W_CAPACITY].store(5000, Ordering::Relaxed);
        assert!(matches!(
            SnapshotArea::attach(rustix::io::dup(a.fd()).unwrap()),
            Err(IpcError::SizeMismatch { .. })
        ));
        a.map.words()[W_CAPACITY].store(u64::MAX, Ordering::Relaxed);
        assert!(SnapshotArea::attach(rustix::io::dup(a.fd()).unwrap()).is_err());
        a.map.words()[W_MAGIC].store(1, Ordering::Relaxed);
        assert!(matches!(
            SnapshotArea::attach(rustix::io::dup(a.fd()).unwrap()),
            Err(IpcError::BadMagic { .. })
        ));
        // A slot is not a snapshot area.
        let slot = crate::Slot::create(
            "chronus-test-slot",
            crate::SlotLayout::new(8, 1, 2, 2).unwrap(),
        )
        .unwrap();
        assert!(SnapshotArea::attach(rustix::io::dup(slot.fd()).unwrap()).is_err());
        assert!(SnapshotArea::create("chronus-test-huge", MAX_SNAPSHOT_BYTES + 1).is_err());
    }

    #[test]
    fn garbage_len_is_refused() {
        let a = SnapshotArea::create("chronus-test-snap", 64).unwrap();
        a.publish(
            SnapshotMeta {
                request: 1,
                ..Default::default()
            },
            &[1; 10],
        )
        .unwrap();
        a.map.words()[W_LEN].store(1 << 40, Ordering::Relaxed);
        assert_eq!(a.read(1, &mut Vec::new()), None);
    }

    #[test]
    fn writer_that_died_mid_publish_is_taken_over() {
        let a = SnapshotArea::create("chronus-test-snap", 64).unwrap();
        a.map.words()[W_SEQ].store(7, Ordering::Relaxed); // odd: a dead writer
        assert_eq!(a.read_latest(&mut Vec::new()), None);
        a.publish(
            SnapshotMeta {
                request: 2,
                ..Default::default()
            },
            &[3; 5],
        )
        .unwrap();
        let mut out = Vec::new();
        assert!(a.read(2, &mut out).is_some());
        assert_eq!(out, [3; 5]);
    }

    #[test]
    fn concurrent_writer_never_yields_a_torn_snapshot() {
        let a = Arc::new(SnapshotArea::create("chronus-test-snap", 4096).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let a = Arc::clone(&a);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut k = 1u64;
                while !stop.load(Ordering::Relaxed) {
                    let bytes = payload(k);
                    let meta = SnapshotMeta {
                        request: k,
                        block: k * 10,
                        last_seq: checksum(&bytes),
                        len: 0,
                    };
                    a.publish(meta, &bytes).unwrap();
                    k += 1;
                }
                k
            })
        };
        let b = SnapshotArea::attach(rustix::io::dup(a.fd()).unwrap()).unwrap();
        let mut out = Vec::new();
        let (mut ok, mut refused) = (0u32, 0u32);
        let start = std::time::Instant::now();
        while ok < 20_000 && start.elapsed() < std::time::Duration::from_secs(20) {
            match b.read_latest(&mut out) {
                Some(meta) => {
                    assert_eq!(meta.len as usize, out.len());
                    assert_eq!(meta.block, meta.request * 10, "torn meta");
                    assert_eq!(
                        checksum(&out),
                        meta.last_seq,
                        "torn data for {}",
                        meta.request
                    );
                    assert_eq!(out, payload(meta.request));
                    // The filtered read agrees, or the snapshot moved on.
                    if let Some(m2) = b.read(meta.request, &mut out) {
                        assert_eq!(m2, meta);
                        assert_eq!(out, payload(meta.request));
                    }
                    ok += 1;
                }
                None => refused += 1,
            }
        }
        stop.store(true, Ordering::Relaxed);
        let published = writer.join().unwrap();
        assert!(
            ok > 100,
            "only {ok} consistent reads ({refused} refused, {published} published)"
        );
    }
}
