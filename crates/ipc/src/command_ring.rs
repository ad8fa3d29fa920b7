//! The SPSC command ring: supervisor (output thread) → worker.
//!
//! A power-of-two array of 64-byte records (8 `AtomicU64` words each) and two
//! free-running `u64` cursors on separate cache lines: `write` (only the
//! producer stores it) and `read` (only the consumer stores it). Record `n`
//! lives at entry `n % capacity`; the cursors never wrap in practice (2^64
//! records).
//!
//! Protocol: the producer writes the record's words (Relaxed) and then
//! publishes `write = n + 1` (Release); the consumer loads `write` (Acquire),
//! reads the record (Relaxed) and then publishes `read = n + 1` (Release),
//! which the producer loads (Acquire) before reusing the entry.
//!
//! The peer's cursor is never trusted: a distance outside `0..=capacity`
//! makes the ring look full (producer) or empty (consumer), and every entry
//! index is reduced with the power-of-two mask, so garbage can only produce
//! garbage records (which the worker rejects by generation/sequence), never
//! an out-of-bounds access. Nothing here allocates, locks or panics.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::CommandRecord;

/// Number of `u64` words in one command record.
pub(crate) const RECORD_WORDS: usize = 8;

/// A borrowed view of one command ring inside a mapping.
pub(crate) struct CommandRing<'a> {
    /// `capacity * RECORD_WORDS` words.
    pub(crate) records: &'a [AtomicU64],
    /// Producer cursor: number of records ever pushed.
    pub(crate) write: &'a AtomicU64,
    /// Consumer cursor: number of records ever popped.
    pub(crate) read: &'a AtomicU64,
    /// `capacity - 1`, capacity a power of two.
    pub(crate) mask: u64,
}

impl CommandRing<'_> {
    fn capacity(&self) -> u64 {
        self.mask + 1
    }

    fn entry(&self, cursor: u64) -> &[AtomicU64] {
        // `cursor & mask < capacity` and `records.len() == capacity * 8` by
        // construction in slot.rs, so `get` always succeeds; the fallback
        // keeps this panic-free even if that invariant were ever broken.
        let start = ((cursor & self.mask) as usize) * RECORD_WORDS;
        self.records.get(start..start + RECORD_WORDS).unwrap_or(&[])
    }

    /// Producer: appends `record`; false if the ring is full (or the peer's
    /// read cursor is garbage).
    pub(crate) fn push(&self, record: &CommandRecord) -> bool {
        let write = self.write.load(Ordering::Relaxed);
        let read = self.read.load(Ordering::Acquire);
        if write.wrapping_sub(read) >= self.capacity() {
            return false;
        }
        let words = encode(record);
        for (dst, w) in self.entry(write).iter().zip(words) {
            dst.store(w, Ordering::Relaxed);
        }
        self.write.store(write.wrapping_add(1), Ordering::Release);
        true
    }

    /// Consumer: takes the oldest record, if any.
    pub(crate) fn pop(&self) -> Option<CommandRecord> {
        let read = self.read.load(Ordering::Relaxed);
        let write = self.write.load(Ordering::Acquire);
        let available = write.wrapping_sub(read);
        if available == 0 || available > self.capacity() {
            return None;
        }
        let mut words = [0u64; RECORD_WORDS];
        for (w, src) in words.iter_mut().zip(self.entry(read)) {
            *w = src.load(Ordering::Relaxed);
        }
        self.read.store(read.wrapping_add(1), Ordering::Release);
        Some(decode(&words))
    }

    /// Records pushed and not yet popped (clamped to the capacity).
    pub(crate) fn pending(&self) -> u64 {
        let write = self.write.load(Ordering::Acquire);
        let read = self.read.load(Ordering::Acquire);
        let n = write.wrapping_sub(read);
        if n > self.capacity() {
            // One cursor is garbage, or we raced between the two loads.
            self.capacity()
        } else {
            n
        }
    }
}

/// Lays a record out as 8 words: seq, generation | kind << 32, frame, payload.
fn encode(r: &CommandRecord) -> [u64; RECORD_WORDS] {
    [
        r.seq,
        u64::from(r.generation) | (u64::from(r.kind) << 32),
        r.frame,
        r.payload[0],
        r.payload[1],
        r.payload[2],
        r.payload[3],
        r.payload[4],
    ]
}

/// Inverse of [`encode`].
fn decode(w: &[u64; RECORD_WORDS]) -> CommandRecord {
    CommandRecord {
        seq: w[0],
        generation: w[1] as u32,
        kind: (w[1] >> 32) as u32,
        frame: w[2],
        payload: [w[3], w[4], w[5], w[6], w[7]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::VecDeque;

    struct Owned {
        records: Vec<AtomicU64>,
        write: AtomicU64,
        read: AtomicU64,
        mask: u64,
    }

    impl Owned {
        fn new(capacity: usize) -> Self {
            Self::starting_at(capacity, 0)
        }
        fn starting_at(capacity: usize, cursor: u64) -> Self {
            assert!(capacity.is_power_of_two());
            Owned {
                records: (0..capacity * RECORD_WORDS)
                    .map(|_| AtomicU64::new(0))
                    .collect(),
                write: AtomicU64::new(cursor),
                read: AtomicU64::new(cursor),
                mask: capacity as u64 - 1,
            }
        }
        fn ring(&self) -> CommandRing<'_> {
            CommandRing {
                records: &self.records,
                write: &self.write,
                read: &self.read,
                mask: self.mask,
            }
        }
    }

    fn rec(i: u64) -> CommandRecord {
        CommandRecord {
            seq: i,
            generation: (i as u32).wrapping_mul(7),
            kind: (i >> 3) as u32 ^ 0xabcd,
            frame: i.wrapping_mul(64),
            payload: [i, !i, i << 1, i.rotate_left(17), u64::MAX - i],
        }
    }

    #[test]
    fn encode_decode_round_trip() {
        for i in [0, 1, 99, u64::MAX, 1 << 40] {
            assert_eq!(decode(&encode(&rec(i))), rec(i));
        }
    }

    #[test]
    fn fifo_full_and_empty() {
        let o = Owned::new(4);
        let r = o.ring();
        assert_eq!(r.pop(), None);
        for i in 0..4 {
            assert!(r.push(&rec(i)));
        }
        assert!(!r.push(&rec(4)), "ring of 4 must be full");
        assert_eq!(r.pending(), 4);
        assert_eq!(r.pop(), Some(rec(0)));
        assert!(r.push(&rec(4)));
        for i in 1..5 {
            assert_eq!(r.pop(), Some(rec(i)));
        }
        assert_eq!(r.pop(), None);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn wraps_over_many_laps_and_across_u64_max() {
        for start in [0, u64::MAX - 20] {
            let o = Owned::starting_at(8, start);
            let r = o.ring();
            let mut next_in = 0u64;
            let mut next_out = 0u64;
            for lap in 0..1000u64 {
                let burst = 1 + lap % 8;
                for _ in 0..burst {
                    assert!(r.push(&rec(next_in)));
                    next_in += 1;
                }
                for _ in 0..burst {
                    assert_eq!(r.pop(), Some(rec(next_out)));
                    next_out += 1;
                }
            }
            assert_eq!(r.pop(), None);
        }
    }

    #[test]
    fn garbage_peer_cursors_are_harmless() {
        let o = Owned::new(4);
        let r = o.ring();
        // Consumer cursor ahead of the producer: the producer sees "full".
        o.read.store(1000, Ordering::Relaxed);
        assert!(!r.push(&rec(0)));
        assert_eq!(r.pending(), 4);
        // Producer cursor far ahead of the consumer: the consumer sees "empty".
        o.read.store(0, Ordering::Relaxed);
        o.write.store(u64::MAX / 2, Ordering::Relaxed);
        assert_eq!(r.pop(), None);
    }

    proptest! {
        #[test]
        fn matches_vecdeque_model(
            cap_log in 0u32..5,
            start in prop_oneof![Just(0u64), Just(u64::MAX - 5), any::<u64>()],
            ops in proptest::collection::vec(any::<bool>(), 0..400),
        ) {
            let cap = 1usize << cap_log;
            let o = Owned::starting_at(cap, start);
            let r = o.ring();
            let mut model = VecDeque::new();
            let mut next = 0u64;
            for push in ops {
                if push {
                    let ok = r.push(&rec(next));
                    prop_assert_eq!(ok, model.len() < cap);
                    if ok { model.push_back(rec(next)); }
                    next += 1;
                } else {
                    prop_assert_eq!(r.pop(), model.pop_front());
                }
                prop_assert_eq!(r.pending(), model.len() as u64);
            }
        }
    }
}
