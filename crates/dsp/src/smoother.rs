//! Linear parameter ramps, so that a parameter jump never clicks.
//!
//! A [`Smoother`] glides from its current value to a new target in a fixed number of
//! samples and lands on the target exactly (no exponential tail that would take forever
//! and decay into denormals). Its whole state is four plain numbers, saved in snapshots.
//! A glide is linear in the value, or, for a [`Smoother::geometric`] one, linear in its
//! logarithm (a constant ratio per sample): the right curve for values heard on a log
//! scale, such as a cutoff (pitch) or a resonance, whose linear glide would spend its
//! first few samples on most of the audible change.

use crate::state::{StateError, StateReader, StateWriter};

/// Default glide time for smoothed parameters: long enough to remove clicks,
/// short enough to feel immediate.
pub const DEFAULT_RAMP_MS: f32 = 10.0;

/// Glide time of geometric glides ([`Smoother::geometric`]) of filter cutoffs and
/// resonances: an 11-octave cutoff jump or a q jump from 0.707 to 20 swept over this time
/// neither clicks nor strikes the filter's resonance like a bell (checked for every
/// module by `tests/click_free.rs`), yet still feels immediate.
pub const FILTER_RAMP_MS: f32 = 30.0;

/// A deterministic linear ramp towards a target value.
///
/// Used for every parameter whose jump would be audible (gains, frequencies, cutoffs).
/// The ramp length is fixed at construction (from the sample rate), so the same calls
/// always produce the same samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Smoother {
    current: f32,
    target: f32,
    step: f32,
    remaining: u32,
    ramp_len: u32,
    /// Glides multiply `current` by `step` (a ratio) instead of adding it.
    geometric: bool,
}

impl Smoother {
    /// Bytes written by [`Smoother::save_state`], for modules summing their `state_len`.
    pub const STATE_LEN: usize = 4 + 4 + 4 + 4;

    /// A smoother settled at `value` that takes `ramp_len` samples per glide
    /// (0 means jumps are applied immediately).
    pub fn new(value: f32, ramp_len: u32) -> Self {
        Smoother {
            current: value,
            target: value,
            step: 0.0,
            remaining: 0,
            ramp_len,
            geometric: false,
        }
    }

    /// Like [`Smoother::new`], but glides at a constant ratio per sample (linear in the
    /// logarithm of the value). For positive values only: a glide from or to a value that
    /// is not positive lands at once.
    pub fn geometric(value: f32, ramp_len: u32) -> Self {
        Smoother {
            geometric: true,
            ..Smoother::new(value, ramp_len)
        }
    }

    /// True if glides are geometric (see [`Smoother::geometric`]).
    pub fn is_geometric(&self) -> bool {
        self.geometric
    }

    /// A smoother settled at `value` whose glides take [`DEFAULT_RAMP_MS`] at `sample_rate`;
    /// the usual constructor for module parameters.
    pub fn with_default_ramp(value: f32, sample_rate: f32) -> Self {
        Smoother::new(value, ramp_samples(sample_rate, DEFAULT_RAMP_MS))
    }

    /// Starts a glide from the current value to `target`, arriving exactly after the
    /// ramp length. Setting the target it already has does nothing.
    pub fn set_target(&mut self, target: f32) {
        if target.to_bits() == self.target.to_bits() {
            return;
        }
        self.target = target;
        if self.ramp_len == 0 {
            self.current = target;
            self.step = 0.0;
            self.remaining = 0;
        } else {
            self.step = if self.geometric {
                if self.current > 0.0 && target > 0.0 {
                    // The per-sample ratio, in f64 so that the product lands close to the
                    // target (the last sample lands on it exactly).
                    (f64::from(target) / f64::from(self.current))
                        .powf(1.0 / f64::from(self.ramp_len)) as f32
                } else {
                    f32::NAN
                }
            } else {
                (target - self.current) / self.ramp_len as f32
            };
            self.remaining = self.ramp_len;
            let still = if self.geometric { 1.0 } else { 0.0 };
            if !self.step.is_finite() || self.step == still {
                // Degenerate glide (infinite distance, or too small to move): land now.
                self.current = target;
                self.step = 0.0;
                self.remaining = 0;
            }
        }
    }

    /// Jumps to `value` with no glide; used by `reset` and for the initial value.
    pub fn set_immediate(&mut self, value: f32) {
        self.current = value;
        self.target = value;
        self.step = 0.0;
        self.remaining = 0;
    }

    /// Ends any glide by landing on the target; used by module `reset`.
    pub fn settle(&mut self) {
        self.set_immediate(self.target);
    }

    /// Advances one sample and returns the new value; on the last sample of a glide the
    /// value is exactly the target.
    // `next` is the name the other crates code against; a Smoother is deliberately not an
    // Iterator (it never ends, and `Option` would cost a branch per sample).
    #[allow(clippy::should_implement_trait)]
    #[inline]
    pub fn next(&mut self) -> f32 {
        if self.remaining > 0 {
            self.remaining -= 1;
            if self.remaining == 0 {
                self.current = self.target;
            } else if self.geometric {
                self.current *= self.step;
            } else {
                self.current += self.step;
            }
        }
        self.current
    }

    /// The value most recently returned by [`Smoother::next`].
    pub fn current(&self) -> f32 {
        self.current
    }

    /// Where the glide is going: the parameter value last set.
    pub fn target(&self) -> f32 {
        self.target
    }

    /// True when no glide is in progress, so callers can skip per-sample work
    /// (e.g. filter coefficient updates).
    pub fn is_settled(&self) -> bool {
        self.remaining == 0
    }

    /// True if every value this smoother holds or can still reach is finite and lies
    /// within `[min, max]` widened by the range's width on each side: what any snapshot
    /// a smoother saved holds (rounding carries a ramp at most a hair past its ends), so
    /// [`crate::params::Params::load`] refuses the rest. With it, a parameter read from
    /// a snapshot is as bounded as one that was set, which the modules that are
    /// [`crate::module::Module::always_finite`] rely on.
    pub fn stays_near(&self, min: f32, max: f32) -> bool {
        let span = f64::from(max) - f64::from(min);
        let (low, high) = (f64::from(min) - span, f64::from(max) + span);
        let near = |v: f64| v.is_finite() && (low..=high).contains(&v);
        let (current, step) = (f64::from(self.current), f64::from(self.step));
        let end = if self.geometric {
            current * step.powi(self.remaining.min(i32::MAX as u32) as i32)
        } else {
            current + step * f64::from(self.remaining)
        };
        near(current) && near(f64::from(self.target)) && step.is_finite() && near(end)
    }

    /// Glide length in samples (fixed at construction).
    pub fn ramp_len(&self) -> u32 {
        self.ramp_len
    }

    /// Writes current, target, step and remaining samples ([`Smoother::STATE_LEN`] bytes).
    pub fn save_state(&self, w: &mut StateWriter<'_>) {
        w.put_f32(self.current);
        w.put_f32(self.target);
        w.put_f32(self.step);
        w.put_u32(self.remaining);
    }

    /// Restores what [`Smoother::save_state`] wrote; the ramp length stays this instance's.
    ///
    /// # Errors
    /// [`StateError::Truncated`] if the snapshot is short.
    pub fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let current = r.get_f32()?;
        let target = r.get_f32()?;
        let step = r.get_f32()?;
        let remaining = r.get_u32()?;
        self.current = current;
        self.target = target;
        self.step = step;
        self.remaining = remaining;
        Ok(())
    }
}

/// Number of samples in `ms` milliseconds at `sample_rate` (rounded, at least 1 when
/// `ms > 0`); shared by smoothers and envelopes so they agree on time.
pub fn ramp_samples(sample_rate: f32, ms: f32) -> u32 {
    let n = (f64::from(sample_rate) * f64::from(ms) / 1000.0).round();
    if n.is_nan() || n <= 0.0 {
        0
    } else if n >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        // In range and integral: the cast is exact.
        n as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{StateReader, StateWriter};

    #[test]
    fn arrives_exactly_after_ramp_len() {
        let mut s = Smoother::new(0.0, 480);
        s.set_target(0.3);
        let mut last = 0.0;
        for i in 0..480 {
            let v = s.next();
            assert!(v >= last, "monotonic at {i}");
            last = v;
            if i < 479 {
                assert!(!s.is_settled());
            }
        }
        assert_eq!(last, 0.3);
        assert!(s.is_settled());
        assert_eq!(s.next(), 0.3);
    }

    #[test]
    fn steps_are_even() {
        let mut s = Smoother::new(1.0, 100);
        s.set_target(0.0);
        let mut prev = 1.0f32;
        for _ in 0..100 {
            let v = s.next();
            assert!(((prev - v) - 0.01).abs() < 1e-5);
            prev = v;
        }
        assert_eq!(prev, 0.0);
    }

    #[test]
    fn retarget_mid_glide_starts_from_current() {
        let mut s = Smoother::new(0.0, 10);
        s.set_target(1.0);
        for _ in 0..5 {
            s.next();
        }
        let mid = s.current();
        s.set_target(0.0);
        let v = s.next();
        assert!((mid - v - mid / 10.0).abs() < 1e-6);
    }

    #[test]
    fn zero_ramp_is_immediate() {
        let mut s = Smoother::new(0.0, 0);
        s.set_target(5.0);
        assert!(s.is_settled());
        assert_eq!(s.next(), 5.0);
    }

    #[test]
    fn geometric_glide_has_a_constant_ratio_and_lands_exactly() {
        let mut s = Smoother::geometric(0.707, 480);
        s.set_target(20.0);
        let mut prev = 0.707f32;
        let ratio = (20.0f64 / 0.707).powf(1.0 / 480.0);
        for i in 0..480 {
            let v = s.next();
            if i < 479 {
                assert!((f64::from(v / prev) - ratio).abs() < 1e-5, "at {i}");
            }
            prev = v;
        }
        assert_eq!(prev, 20.0);
        assert!(s.is_settled());
        // Not positive: no glide, it lands at once.
        s.set_target(0.0);
        assert_eq!((s.next(), s.is_settled()), (0.0, true));
    }

    #[test]
    fn ramp_samples_rounding() {
        assert_eq!(ramp_samples(48_000.0, 10.0), 480);
        assert_eq!(ramp_samples(44_100.0, 10.0), 441);
        assert_eq!(ramp_samples(48_000.0, 0.0), 0);
        assert_eq!(ramp_samples(f32::NAN, 10.0), 0);
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let mut a = Smoother::new(0.0, 100);
        a.set_target(2.0);
        for _ in 0..37 {
            a.next();
        }
        let mut buf = [0u8; Smoother::STATE_LEN];
        let mut w = StateWriter::new(&mut buf);
        a.save_state(&mut w);
        assert_eq!(w.finish(), Ok(Smoother::STATE_LEN));
        let mut b = Smoother::new(9.0, 100);
        b.load_state(&mut StateReader::new(&buf)).unwrap();
        for _ in 0..100 {
            assert_eq!(a.next().to_bits(), b.next().to_bits());
        }
    }
}
