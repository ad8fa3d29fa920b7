//! Fixed-size, little-endian byte snapshots of module and patch state.
//!
//! A spare worker joins the lockstep by loading the active worker's snapshot, so the
//! bytes must capture everything that affects future output and must be writable from a
//! real-time thread: [`StateWriter`] fills a caller-provided slice and never allocates,
//! [`StateReader`] reads one back and reports damage as a [`StateError`] instead of panicking.

/// Why a snapshot could not be written or read back.
///
/// Snapshots cross process boundaries through shared memory, so a reader must treat the
/// bytes as untrusted: every way they can be wrong is an error, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The snapshot ended before everything was read (a short or truncated buffer).
    #[error(
        "state snapshot truncated: needed {needed} bytes at offset {offset}, only {remaining} left"
    )]
    Truncated {
        /// Byte offset where the read started.
        offset: usize,
        /// Bytes the read needed.
        needed: usize,
        /// Bytes that were left in the buffer.
        remaining: usize,
    },
    /// The buffer given to a [`StateWriter`] was smaller than what was written; size it
    /// with `state_len()`.
    #[error("state buffer too small: {needed} bytes needed, {capacity} available (size it with state_len())")]
    Overflow {
        /// Bytes the snapshot needed.
        needed: usize,
        /// Bytes the buffer had.
        capacity: usize,
    },
    /// A field held a value no valid snapshot can contain (e.g. an unknown envelope stage).
    #[error("invalid state snapshot: bad value for {what} at offset {offset}")]
    InvalidValue {
        /// Which field was bad.
        what: &'static str,
        /// Byte offset of the field.
        offset: usize,
    },
    /// The bytes do not start with the snapshot magic number: not a Chronus patch snapshot.
    #[error("not a Chronus patch snapshot (magic {found:#010x}, expected {expected:#010x})")]
    BadMagic {
        /// Magic number found.
        found: u32,
        /// Magic number expected.
        expected: u32,
    },
    /// The snapshot was written by an incompatible snapshot format version.
    #[error("unsupported snapshot version {found} (this build reads version {supported})")]
    UnsupportedVersion {
        /// Version found in the snapshot.
        found: u32,
        /// Version this build reads.
        supported: u32,
    },
    /// The snapshot was taken from a patch with a different structure or sample rate;
    /// loading it would produce garbage, so it is refused.
    #[error("snapshot belongs to a different patch (fingerprint {found:#018x}, this patch is {expected:#018x}); compile the same patch at the same sample rate")]
    PatchMismatch {
        /// Fingerprint of the patch loading the snapshot.
        expected: u64,
        /// Fingerprint stored in the snapshot.
        found: u64,
    },
}

/// Writes a snapshot into a fixed, caller-provided byte slice.
///
/// It never allocates (snapshots are taken at block boundaries on the render thread)
/// and never panics: writes past the end are dropped and reported by [`StateWriter::finish`].
#[derive(Debug)]
pub struct StateWriter<'a> {
    buf: &'a mut [u8],
    /// Bytes written or attempted so far; may exceed `buf.len()` after an overflow.
    pos: usize,
}

impl<'a> StateWriter<'a> {
    /// Starts writing at the beginning of `buf`; size `buf` with the object's `state_len()`.
    pub fn new(buf: &'a mut [u8]) -> Self {
        StateWriter { buf, pos: 0 }
    }

    /// A writer with no buffer that only counts: running the same save code through it
    /// gives the exact snapshot size, so no size is ever summed by hand.
    pub fn counter() -> StateWriter<'static> {
        StateWriter {
            buf: &mut [],
            pos: 0,
        }
    }

    /// Bytes written (or attempted) so far, so callers can check a module wrote exactly
    /// its `state_len()`; on a [`StateWriter::counter`], the size of what was saved.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when some write did not fit; the snapshot is then incomplete.
    pub fn overflowed(&self) -> bool {
        self.pos > self.buf.len()
    }

    /// Ends writing: the number of bytes written, or [`StateError::Overflow`] if the
    /// buffer was too small (the snapshot is then unusable).
    ///
    /// # Errors
    /// [`StateError::Overflow`] when any write did not fit in the buffer.
    pub fn finish(self) -> Result<usize, StateError> {
        if self.overflowed() {
            Err(StateError::Overflow {
                needed: self.pos,
                capacity: self.buf.len(),
            })
        } else {
            Ok(self.pos)
        }
    }

    /// Copies raw bytes; the building block of the typed writers.
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        let start = self.pos;
        self.pos = self.pos.saturating_add(bytes.len());
        if let Some(dst) = self.buf.get_mut(start..self.pos) {
            dst.copy_from_slice(bytes);
        }
    }

    /// Writes one byte (enum tags, small counters).
    pub fn put_u8(&mut self, v: u8) {
        self.put_bytes(&[v]);
    }

    /// Writes a bool as one byte, 0 or 1.
    pub fn put_bool(&mut self, v: bool) {
        self.put_u8(u8::from(v));
    }

    /// Writes a little-endian u32 (sample countdowns, versions).
    pub fn put_u32(&mut self, v: u32) {
        self.put_bytes(&v.to_le_bytes());
    }

    /// Writes a little-endian u64 (counters, fingerprints, random generator state).
    pub fn put_u64(&mut self, v: u64) {
        self.put_bytes(&v.to_le_bytes());
    }

    /// Writes an f32 by its exact bit pattern, so NaN payloads and -0.0 survive a round trip.
    pub fn put_f32(&mut self, v: f32) {
        self.put_u32(v.to_bits());
    }

    /// Writes an f64 by its exact bit pattern (phases, filter memories).
    pub fn put_f64(&mut self, v: f64) {
        self.put_u64(v.to_bits());
    }

    /// Writes a buffer of samples, one f32 bit pattern each (delay lines, comb filters);
    /// the same bytes as [`StateWriter::put_f32`] per sample, but counting a whole buffer
    /// costs one addition.
    pub fn put_f32s(&mut self, values: &[f32]) {
        let start = self.pos;
        self.pos = start.saturating_add(values.len().saturating_mul(4));
        if let Some(dst) = self.buf.get_mut(start..self.pos) {
            for (d, v) in dst.chunks_exact_mut(4).zip(values) {
                d.copy_from_slice(&v.to_bits().to_le_bytes());
            }
        }
    }
}

/// Reads a snapshot written by [`StateWriter`], treating the bytes as untrusted.
#[derive(Debug, Clone)]
pub struct StateReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> StateReader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        StateReader { buf, pos: 0 }
    }

    /// Current read offset, used in error messages and by callers that read nested records.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read, so a loader can refuse a short snapshot before changing anything.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Reads `N` raw bytes.
    ///
    /// # Errors
    /// [`StateError::Truncated`] if fewer than `N` bytes remain.
    pub fn get_array<const N: usize>(&mut self) -> Result<[u8; N], StateError> {
        let end = self.pos.saturating_add(N);
        let src = self.buf.get(self.pos..end).ok_or(StateError::Truncated {
            offset: self.pos,
            needed: N,
            remaining: self.remaining(),
        })?;
        let mut out = [0u8; N];
        out.copy_from_slice(src);
        self.pos = end;
        Ok(out)
    }

    /// Reads one byte.
    ///
    /// # Errors
    /// [`StateError::Truncated`] at the end of the buffer.
    pub fn get_u8(&mut self) -> Result<u8, StateError> {
        let [b] = self.get_array::<1>()?;
        Ok(b)
    }

    /// Reads a bool written by [`StateWriter::put_bool`].
    ///
    /// # Errors
    /// [`StateError::Truncated`] at the end of the buffer; [`StateError::InvalidValue`]
    /// if the byte is neither 0 nor 1.
    pub fn get_bool(&mut self) -> Result<bool, StateError> {
        let offset = self.pos;
        match self.get_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(StateError::InvalidValue {
                what: "bool",
                offset,
            }),
        }
    }

    /// Reads a little-endian u32.
    ///
    /// # Errors
    /// [`StateError::Truncated`] if fewer than 4 bytes remain.
    pub fn get_u32(&mut self) -> Result<u32, StateError> {
        Ok(u32::from_le_bytes(self.get_array()?))
    }

    /// Reads a little-endian u64.
    ///
    /// # Errors
    /// [`StateError::Truncated`] if fewer than 8 bytes remain.
    pub fn get_u64(&mut self) -> Result<u64, StateError> {
        Ok(u64::from_le_bytes(self.get_array()?))
    }

    /// Reads an f32 bit pattern.
    ///
    /// # Errors
    /// [`StateError::Truncated`] if fewer than 4 bytes remain.
    pub fn get_f32(&mut self) -> Result<f32, StateError> {
        Ok(f32::from_bits(self.get_u32()?))
    }

    /// Reads an f64 bit pattern.
    ///
    /// # Errors
    /// [`StateError::Truncated`] if fewer than 8 bytes remain.
    pub fn get_f64(&mut self) -> Result<f64, StateError> {
        Ok(f64::from_bits(self.get_u64()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_types() {
        let mut buf = [0u8; 1 + 1 + 4 + 8 + 4 + 8];
        let mut w = StateWriter::new(&mut buf);
        w.put_u8(7);
        w.put_bool(true);
        w.put_u32(0xdead_beef);
        w.put_u64(u64::MAX - 3);
        w.put_f32(-0.0);
        w.put_f64(f64::NAN);
        assert_eq!(w.finish(), Ok(26));

        let mut r = StateReader::new(&buf);
        assert_eq!(r.get_u8(), Ok(7));
        assert_eq!(r.get_bool(), Ok(true));
        assert_eq!(r.get_u32(), Ok(0xdead_beef));
        assert_eq!(r.get_u64(), Ok(u64::MAX - 3));
        assert_eq!(r.get_f32().map(f32::to_bits), Ok((-0.0f32).to_bits()));
        assert_eq!(r.get_f64().map(f64::to_bits), Ok(f64::NAN.to_bits()));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn counter_counts_what_a_writer_writes() {
        let save = |w: &mut StateWriter<'_>| {
            w.put_u8(1);
            w.put_f64(2.0);
            w.put_f32s(&[1.0, -0.0, f32::NAN]);
        };
        let mut c = StateWriter::counter();
        save(&mut c);
        assert_eq!(c.position(), 1 + 8 + 12);
        let mut buf = [0u8; 21];
        let mut w = StateWriter::new(&mut buf);
        save(&mut w);
        assert_eq!(w.finish(), Ok(21));
        let mut one_by_one = [0u8; 12];
        let mut w = StateWriter::new(&mut one_by_one);
        for v in [1.0, -0.0, f32::NAN] {
            w.put_f32(v);
        }
        assert_eq!(buf[9..], one_by_one);
    }

    #[test]
    fn overflow_is_reported_not_panicked() {
        let mut buf = [0u8; 6];
        let mut w = StateWriter::new(&mut buf);
        w.put_u32(1);
        w.put_u32(2);
        assert!(w.overflowed());
        assert_eq!(
            w.finish(),
            Err(StateError::Overflow {
                needed: 8,
                capacity: 6
            })
        );
    }

    #[test]
    fn truncation_and_bad_bool_are_errors() {
        let buf = [2u8, 0, 0];
        let mut r = StateReader::new(&buf);
        assert_eq!(
            r.get_bool(),
            Err(StateError::InvalidValue {
                what: "bool",
                offset: 0
            })
        );
        assert_eq!(
            r.get_u32(),
            Err(StateError::Truncated {
                offset: 1,
                needed: 4,
                remaining: 2
            })
        );
    }
}
