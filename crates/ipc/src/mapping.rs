//! The one place in Chronus that touches raw shared memory.
//!
//! A [`SharedMapping`] owns a memfd and a `MAP_SHARED` mapping of the whole
//! file. It hands the mapping out only as slices of atomics (`&[AtomicU64]`
//! and `&[AtomicU32]`), so every other line of the crate is safe code and every
//! cross-process access is an atomic one: a buggy or malicious peer can put
//! garbage into the words, but cannot cause a Rust-level data race here.
//!
//! The two views alias the same bytes. Callers keep the regions they access
//! with 64-bit atomics disjoint from those they access with 32-bit atomics
//! (mixed-size atomic access to the same bytes is not something Rust defines);
//! `slot.rs` and `snapshot.rs` document which region uses which width.
//!
//! Mappings are made with `MAP_POPULATE`, so the pages are faulted in up
//! front and not on the first touch from a real-time thread.
//!
//! Segments created here are sealed against shrinking and growing
//! (`F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`), so a peer holding the fd can
//! not `ftruncate` it under our feet and turn a read into a `SIGBUS`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ptr::{self, NonNull};
use std::slice;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use rustix::fs::{self, MemfdFlags, SealFlags};
use rustix::mm::{self, MapFlags, ProtFlags};

/// Number of [`SharedMapping`]s alive in this process (for the `mapped
/// segments` / `shm_leaks` metrics).
static LIVE_SEGMENTS: AtomicUsize = AtomicUsize::new(0);

/// How many shared-memory segments (slots and snapshot areas) this process
/// currently has mapped.
///
/// Why: the supervisor's `shm_leaks` metric compares this with the number of
/// segments its live slots own; anything extra is a leak.
pub fn live_segments() -> usize {
    LIVE_SEGMENTS.load(Ordering::Relaxed)
}

/// When the pages of a mapping become memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Residency {
    /// All at once, when mapped: what the audio path touches (rings, headers) never
    /// waits for a page.
    Populated,
    /// Each when first touched: a large area of which a part is used (the snapshot
    /// area, sized for the largest patch that may ever run) costs only that part.
    OnTouch,
}

/// A memfd together with a read/write `MAP_SHARED` mapping of all of it.
///
/// Unmapped on drop (the fd is closed with it). The mapping's length is a
/// non-zero multiple of 8 bytes and its start is page aligned.
pub(crate) struct SharedMapping {
    fd: OwnedFd,
    ptr: NonNull<AtomicU64>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value; it is only
// ever accessed through atomics (see `words` / `words32`), which are Sync, and
// unmapping happens once, in Drop, which needs exclusive ownership.
unsafe impl Send for SharedMapping {}
// SAFETY: as above: `&SharedMapping` only exposes `&[AtomicU64]` /
// `&[AtomicU32]`, which are safe to share between threads.
unsafe impl Sync for SharedMapping {}

impl SharedMapping {
    /// Creates a new zero-filled, sealed memfd segment of `len` bytes and maps
    /// it, every page resident at once. `len` must be a non-zero multiple of 8.
    pub(crate) fn create(name: &str, len: usize) -> io::Result<Self> {
        Self::create_with(name, len, Residency::Populated)
    }

    /// As [`create`](Self::create), with pages resident as `residency` says.
    pub(crate) fn create_with(name: &str, len: usize, residency: Residency) -> io::Result<Self> {
        check_len(len)?;
        let fd = fs::memfd_create(name, MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
        fs::ftruncate(&fd, len as u64)?;
        fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
        Self::map(fd, len, residency)
    }

    /// Maps an existing segment (for instance an inherited memfd) with the
    /// length the file has now, which must not exceed `max_len` (so a bogus fd
    /// cannot make us map and populate an absurd amount of memory).
    pub(crate) fn open(fd: OwnedFd, max_len: usize) -> io::Result<Self> {
        Self::open_with(fd, max_len, Residency::Populated)
    }

    /// As [`open`](Self::open), with pages resident as `residency` says.
    pub(crate) fn open_with(fd: OwnedFd, max_len: usize, residency: Residency) -> io::Result<Self> {
        let stat = fs::fstat(&fd)?;
        let len = usize::try_from(stat.st_size)
            .ok()
            .filter(|&l| l <= max_len)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "shared segment size {} is negative or above the maximum {max_len}",
                        stat.st_size
                    ),
                )
            })?;
        check_len(len)?;
        Self::map(fd, len, residency)
    }

    fn map(fd: OwnedFd, len: usize, residency: Residency) -> io::Result<Self> {
        let populate = match residency {
            Residency::Populated => MapFlags::POPULATE,
            Residency::OnTouch => MapFlags::empty(),
        };
        // SAFETY: we ask the kernel for a fresh mapping at an address of its
        // choice (null hint, no MAP_FIXED), so no existing memory is
        // affected. `fd` is an open file of at least `len` bytes (checked by
        // the callers: ftruncate'd by us, or fstat'ed just before).
        let raw = unsafe {
            mm::mmap(
                ptr::null_mut(),
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::SHARED | populate,
                &fd,
                0,
            )
        }?;
        let ptr = NonNull::new(raw.cast::<AtomicU64>())
            .ok_or_else(|| io::Error::other("mmap returned a null pointer"))?;
        LIVE_SEGMENTS.fetch_add(1, Ordering::Relaxed);
        Ok(Self { fd, ptr, len })
    }

    /// The memfd backing the mapping.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Length of the mapping in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The whole mapping as 64-bit atomics.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` points to a live mapping of `len` bytes (a multiple of
        // 8, page aligned so aligned for AtomicU64) that stays mapped for as
        // long as `self` is borrowed. AtomicU64 has the size and alignment of
        // u64 and every bit pattern is a valid value. Shared mutation through
        // `&AtomicU64` is exactly what atomics permit, including by the peer
        // process.
        unsafe { slice::from_raw_parts(self.ptr.as_ptr(), self.len / 8) }
    }

    /// The whole mapping as 32-bit atomics (same bytes as [`Self::words`];
    /// callers keep the regions they use with each width disjoint).
    pub(crate) fn words32(&self) -> &[AtomicU32] {
        // SAFETY: same mapping, length and lifetime argument as `words`;
        // page alignment satisfies AtomicU32's alignment, `len` is a multiple
        // of 4, and every bit pattern is a valid AtomicU32.
        unsafe { slice::from_raw_parts(self.ptr.as_ptr().cast::<AtomicU32>(), self.len / 4) }
    }
}

impl Drop for SharedMapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned; every reference
        // into the mapping borrows `self`, so none can outlive this point.
        let result = unsafe { mm::munmap(self.ptr.as_ptr().cast(), self.len) };
        debug_assert!(result.is_ok(), "munmap failed: {result:?}");
        LIVE_SEGMENTS.fetch_sub(1, Ordering::Relaxed);
    }
}

fn check_len(len: usize) -> io::Result<()> {
    if len == 0 || len & 7 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("shared segment size {len} is not a non-zero multiple of 8 bytes"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_is_zeroed_and_shared_between_two_mappings() {
        let a = SharedMapping::create("chronus-test-map", 4096).unwrap();
        assert!(a.words().iter().all(|w| w.load(Ordering::Relaxed) == 0));
        let b = SharedMapping::open(rustix::io::dup(a.fd()).unwrap(), 4096).unwrap();
        assert_eq!(b.len(), 4096);
        a.words()[7].store(0xdead_beef, Ordering::Release);
        assert_eq!(b.words()[7].load(Ordering::Acquire), 0xdead_beef);
        b.words32()[100].store(42, Ordering::Release);
        assert_eq!(a.words32()[100].load(Ordering::Acquire), 42);
    }

    #[test]
    fn created_segment_cannot_be_shrunk_or_grown() {
        let a = SharedMapping::create("chronus-test-seal", 4096).unwrap();
        assert!(fs::ftruncate(a.fd(), 0).is_err());
        assert!(fs::ftruncate(a.fd(), 8192).is_err());
    }

    #[test]
    fn bad_lengths_are_refused() {
        assert!(SharedMapping::create("chronus-test-len", 0).is_err());
        assert!(SharedMapping::create("chronus-test-len", 12).is_err());
        let fd = fs::memfd_create("chronus-test-empty", MemfdFlags::CLOEXEC).unwrap();
        assert!(SharedMapping::open(fd, 4096).is_err());
        let a = SharedMapping::create("chronus-test-max", 8192).unwrap();
        assert!(SharedMapping::open(rustix::io::dup(a.fd()).unwrap(), 4096).is_err());
    }

    #[test]
    fn live_segments_counts_mappings() {
        // Other tests run in parallel, so only check that ours is counted.
        let a = SharedMapping::create("chronus-test-count", 64).unwrap();
        assert!(live_segments() >= 1);
        drop(a);
    }
}
