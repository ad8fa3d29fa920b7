//! The index-tagged SPSC audio ring: worker → output.
//!
//! `capacity` (a power of two) entries, each a tag word (`AtomicU64`) and one
//! block of interleaved samples (`AtomicU32` holding `f32` bits). Block `n`
//! lives in entry `n % capacity`. Two cursors on separate cache lines:
//! `written` (worker: every block < it has been written at least once; a
//! progress hint) and `read` (output: every block < it is consumed, so its
//! entry may be reused).
//!
//! Beside the tag, in its cache line, the writer notes when it wrote the block (CLOCK_MONOTONIC),
//! so the output can measure how long before its deadline a block was ready.
//!
//! The tag holds `n + 1` when the entry holds block `n`, and 0 when it is
//! empty (zeroed memory reads as "no block", including for block 0) or being
//! rewritten. The entry is a small seqlock:
//!
//! * writer: tag ← 0 (Relaxed), fence(Release), samples (Relaxed),
//!   tag ← n + 1 (Release);
//! * reader: tag (Acquire) == n + 1, copy samples (Relaxed), fence(Acquire),
//!   tag (Relaxed) == n + 1 again, else the copy may be torn and is refused.
//!
//! So a reader can never accept a block that was overwritten while it copied.
//! (The one window it cannot see is the same index being written twice while
//! it copies; with deterministic rendering both writes carry the same bits.)
//!
//! The output never "jumps to the latest": it asks for block `n` by number.
//! Block `u64::MAX` cannot be tagged and is never available. Nothing here
//! allocates, locks or panics; the peer's cursor only ever makes the ring look
//! full or the block stale.

use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

/// What [`crate::Slot::write_block`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The block is stored and tagged; the output may read it.
    Written,
    /// The output has already consumed past this index; nothing was written.
    Stale,
    /// Writing would overwrite a block the output has not consumed yet (or the
    /// index cannot be represented); nothing was written. Retry later.
    Full,
    /// `samples.len()` is not `block_frames * channels`; nothing was written.
    BadLength,
}

/// A borrowed view of one audio ring inside a mapping.
pub(crate) struct AudioRing<'a> {
    /// Tag words; entry `i`'s tag is `tags[i * tag_stride]`.
    pub(crate) tags: &'a [AtomicU64],
    /// Distance between two tags, in words.
    pub(crate) tag_stride: usize,
    /// Sample words; entry `i`'s block is `samples[i * sample_stride..][..block_len]`.
    pub(crate) samples: &'a [AtomicU32],
    /// Distance between two blocks, in 32-bit words.
    pub(crate) sample_stride: usize,
    /// Samples per block (`block_frames * channels`).
    pub(crate) block_len: usize,
    /// `capacity - 1`, capacity a power of two.
    pub(crate) mask: u64,
    /// Worker cursor: max(index + 1) of the blocks written.
    pub(crate) written: &'a AtomicU64,
    /// Output cursor: every block below it is consumed.
    pub(crate) read: &'a AtomicU64,
}

impl AudioRing<'_> {
    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    /// The tag and sample words of the entry for block `index`. Always `Some`
    /// given the geometry checks in slot.rs; `None` keeps this panic-free.
    fn entry(&self, index: u64) -> Option<(&AtomicU64, &[AtomicU32])> {
        let i = (index & self.mask) as usize;
        let tag = self.tags.get(i * self.tag_stride)?;
        let start = i * self.sample_stride;
        let samples = self.samples.get(start..start + self.block_len)?;
        Some((tag, samples))
    }

    /// Worker: stores block `index` (see [`crate::Slot::write_block`]).
    pub(crate) fn write(&self, index: u64, samples: &[f32]) -> WriteOutcome {
        if samples.len() != self.block_len {
            return WriteOutcome::BadLength;
        }
        let read = self.read.load(Ordering::Acquire);
        if index < read {
            return WriteOutcome::Stale;
        }
        if index - read >= self.capacity() || index == u64::MAX {
            return WriteOutcome::Full;
        }
        let Some((tag, dst)) = self.entry(index) else {
            return WriteOutcome::Full;
        };
        tag.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        for (d, s) in dst.iter().zip(samples) {
            d.store(s.to_bits(), Ordering::Relaxed);
        }
        if let Some(done) = self.done_word(index) {
            done.store(crate::monotonic_ns(), Ordering::Relaxed);
        }
        tag.store(index + 1, Ordering::Release);
        self.written.fetch_max(index + 1, Ordering::Release);
        WriteOutcome::Written
    }

    /// Runs `visit` over the samples of block `index` under the seqlock;
    /// returns `Some(result)` only if the entry carried block `index` both
    /// before and after the visit.
    fn with_block<R>(&self, index: u64, visit: impl FnOnce(&[AtomicU32]) -> R) -> Option<R> {
        let want = index.checked_add(1)?;
        let (tag, src) = self.entry(index)?;
        if tag.load(Ordering::Acquire) != want {
            return None;
        }
        let result = visit(src);
        fence(Ordering::Acquire);
        if tag.load(Ordering::Relaxed) != want {
            return None;
        }
        Some(result)
    }

    /// Output: copies block `index` into `out` if it is there and untorn.
    /// `out` is unspecified when this returns false.
    pub(crate) fn read(&self, index: u64, out: &mut [f32]) -> bool {
        if out.len() != self.block_len {
            return false;
        }
        self.with_block(index, |src| {
            for (o, s) in out.iter_mut().zip(src) {
                *o = f32::from_bits(s.load(Ordering::Relaxed));
            }
        })
        .is_some()
    }

    /// Output: is block `index` in the ring?
    pub(crate) fn has(&self, index: u64) -> bool {
        match (index.checked_add(1), self.entry(index)) {
            (Some(want), Some((tag, _))) => tag.load(Ordering::Acquire) == want,
            _ => false,
        }
    }

    /// The word beside entry `index`'s tag that holds when its block was written (the
    /// tag's cache line has room; a ring packed without it has none).
    fn done_word(&self, index: u64) -> Option<&AtomicU64> {
        if self.tag_stride < 2 {
            return None;
        }
        let i = (index & self.mask) as usize;
        self.tags.get(i * self.tag_stride + 1)
    }

    /// Output: when block `index` was written ([`crate::monotonic_ns`]), if it is in
    /// the ring and the ring keeps the time.
    pub(crate) fn done_ns(&self, index: u64) -> Option<u64> {
        let done = self.done_word(index)?;
        self.with_block(index, |_| done.load(Ordering::Relaxed))
    }

    /// Output: bitwise comparison of block `index` with `samples`.
    pub(crate) fn equals(&self, index: u64, samples: &[f32]) -> Option<bool> {
        if samples.len() != self.block_len {
            return None;
        }
        self.with_block(index, |src| {
            // Compare everything (no early exit) so the seqlock check covers a
            // consistent view; the result is only trusted if the tag held.
            src.iter().zip(samples).fold(true, |eq, (s, x)| {
                eq & (s.load(Ordering::Relaxed) == x.to_bits())
            })
        })
    }

    /// Output: every block < `next_wanted` is consumed. Monotonic: a smaller
    /// value than the current cursor changes nothing.
    pub(crate) fn release_through(&self, next_wanted: u64) {
        self.read.fetch_max(next_wanted, Ordering::Release);
    }

    /// The output's read cursor.
    pub(crate) fn read_cursor(&self) -> u64 {
        self.read.load(Ordering::Acquire)
    }

    /// The worker's written cursor.
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const LEN: usize = 6;

    struct Owned {
        tags: Vec<AtomicU64>,
        samples: Vec<AtomicU32>,
        written: AtomicU64,
        read: AtomicU64,
        mask: u64,
    }

    impl Owned {
        fn new(capacity: usize) -> Self {
            Owned {
                tags: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
                samples: (0..capacity * LEN).map(|_| AtomicU32::new(0)).collect(),
                written: AtomicU64::new(0),
                read: AtomicU64::new(0),
                mask: capacity as u64 - 1,
            }
        }
        fn ring(&self) -> AudioRing<'_> {
            AudioRing {
                tags: &self.tags,
                tag_stride: 1,
                samples: &self.samples,
                sample_stride: LEN,
                block_len: LEN,
                mask: self.mask,
                written: &self.written,
                read: &self.read,
            }
        }
    }

    fn block(i: u64) -> [f32; LEN] {
        std::array::from_fn(|k| (i as f32) * 0.5 + k as f32 * 0.001 - 3.0)
    }

    #[test]
    fn write_then_read_by_index() {
        let o = Owned::new(4);
        let r = o.ring();
        let mut out = [0.0; LEN];
        assert!(!r.has(0), "zeroed memory must not read as block 0");
        assert!(!r.read(0, &mut out));
        assert_eq!(r.write(0, &block(0)), WriteOutcome::Written);
        assert_eq!(r.write(2, &block(2)), WriteOutcome::Written);
        assert!(r.has(0) && r.has(2) && !r.has(1) && !r.has(4));
        assert!(r.read(2, &mut out));
        assert_eq!(out, block(2));
        assert!(!r.read(1, &mut out));
        assert_eq!(r.written(), 3);
        assert_eq!(r.equals(0, &block(0)), Some(true));
        assert_eq!(r.equals(0, &block(9)), Some(false));
        assert_eq!(r.equals(1, &block(1)), None);
        assert_eq!(r.equals(0, &[0.0; 2]), None);
        // Negative zero differs from zero bitwise.
        let mut z = block(0);
        z[0] = 0.0;
        assert_eq!(r.write(0, &z), WriteOutcome::Written);
        z[0] = -0.0;
        assert_eq!(r.equals(0, &z), Some(false));
    }

    #[test]
    fn stale_full_bad_length() {
        let o = Owned::new(4);
        let r = o.ring();
        assert_eq!(r.write(0, &[0.0; 3]), WriteOutcome::BadLength);
        assert_eq!(r.write(4, &block(4)), WriteOutcome::Full);
        assert_eq!(r.write(3, &block(3)), WriteOutcome::Written);
        r.release_through(2);
        assert_eq!(r.read_cursor(), 2);
        assert_eq!(r.write(1, &block(1)), WriteOutcome::Stale);
        assert_eq!(r.write(5, &block(5)), WriteOutcome::Written);
        assert_eq!(r.write(6, &block(6)), WriteOutcome::Full);
        r.release_through(1); // monotonic: no effect
        assert_eq!(r.read_cursor(), 2);
        r.release_through(u64::MAX);
        assert_eq!(r.write(u64::MAX, &block(0)), WriteOutcome::Full);
        assert!(!r.has(u64::MAX));
        let mut out = [0.0; LEN];
        assert!(!r.read(u64::MAX, &mut out));
    }

    #[test]
    fn overwritten_entry_reads_as_missing() {
        let o = Owned::new(2);
        let r = o.ring();
        let mut out = [0.0; LEN];
        for i in 0..1000u64 {
            assert_eq!(r.write(i, &block(i)), WriteOutcome::Written);
            assert!(r.read(i, &mut out));
            assert_eq!(out, block(i));
            if i >= 2 {
                assert!(!r.has(i - 2), "block {} was overwritten", i - 2);
            }
            r.release_through(i);
        }
    }

    #[test]
    fn wrong_length_output_buffer_reads_nothing() {
        let o = Owned::new(2);
        let r = o.ring();
        r.write(0, &block(0));
        assert!(!r.read(0, &mut [0.0; LEN + 1]));
    }

    proptest! {
        #[test]
        fn matches_model(
            cap_log in 0u32..4,
            ops in proptest::collection::vec((0u8..3, 0u64..40), 0..300),
        ) {
            let cap = 1u64 << cap_log;
            let o = Owned::new(cap as usize);
            let r = o.ring();
            let mut model: BTreeMap<u64, u64> = BTreeMap::new(); // entry -> block index held
            let mut read = 0u64;
            for (op, idx) in ops {
                match op {
                    0 => {
                        let expect = if idx < read {
                            WriteOutcome::Stale
                        } else if idx - read >= cap {
                            WriteOutcome::Full
                        } else {
                            model.insert(idx % cap, idx);
                            WriteOutcome::Written
                        };
                        prop_assert_eq!(r.write(idx, &block(idx)), expect);
                    }
                    1 => {
                        let present = model.get(&(idx % cap)) == Some(&idx);
                        prop_assert_eq!(r.has(idx), present);
                        let mut out = [0.0; LEN];
                        prop_assert_eq!(r.read(idx, &mut out), present);
                        if present { prop_assert_eq!(out, block(idx)); }
                        prop_assert_eq!(r.equals(idx, &block(idx)), present.then_some(true));
                    }
                    _ => {
                        read = read.max(idx / 2);
                        r.release_through(idx / 2);
                        prop_assert_eq!(r.read_cursor(), read);
                    }
                }
            }
        }
    }
}
