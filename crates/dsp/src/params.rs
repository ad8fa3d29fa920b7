//! The parameters of one module instance: its type's specs and their current values.
//!
//! Every module needs the same plumbing around its parameters: clamp a new value into
//! the documented range, glide or jump to it, report it back, settle glides on reset, and
//! save and load it in snapshots. [`Params`] does all of that once, so a module file holds
//! only its DSP and reads its parameters from here.

use crate::smoother::Smoother;
use crate::spec::ModuleSpec;
use crate::state::{StateError, StateReader, StateWriter};

/// Most parameters a module type may declare (the mixer has eight levels); the values
/// live in a fixed array so that reading one by a constant index costs nothing.
pub const MAX_PARAMS: usize = 8;

/// Sample rate modules actually use: the given one if it is finite and positive, else
/// 48 kHz. `Patch::compile` refuses bad rates; this only keeps a module built directly
/// with a bad rate from dividing by zero.
pub fn sane_sample_rate(sample_rate: f32) -> f32 {
    if sample_rate.is_finite() && sample_rate > 0.0 {
        sample_rate
    } else {
        48_000.0
    }
}

/// How a new value of a parameter reaches the DSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Glides over [`crate::smoother::DEFAULT_RAMP_MS`] (or the time and curve set by
    /// [`Params::geometric`] or [`Params::glide_ms`]): a jump would click (gains,
    /// frequencies, cutoffs). Saved as the whole smoother.
    Glide,
    /// Takes effect at once (times, modes, values read when something happens); a module
    /// whose output a jump of it would click crossfades itself (see
    /// `modules::common::ChoiceFade`). Saved as the value.
    Instant,
    /// Takes effect at once, rounded to a whole number (a choice among shapes).
    Whole,
}

/// The parameters of one module: its spec and, per parameter, a [`Smoother`] whose
/// target is the value last set (clamped) and whose current value is what the DSP
/// uses now. Parameters that do not glide are smoothers that never ramp.
#[derive(Debug, Clone)]
pub struct Params {
    spec: &'static ModuleSpec,
    kinds: [Kind; MAX_PARAMS],
    values: [Smoother; MAX_PARAMS],
    sample_rate: f32,
}

impl Params {
    /// The parameters of a module of type `spec`, at their defaults; every one glides
    /// until [`Params::instant`] or [`Params::whole`] says otherwise.
    pub fn new(spec: &'static ModuleSpec, sample_rate: f32) -> Params {
        let sr = sane_sample_rate(sample_rate);
        Params {
            spec,
            kinds: [Kind::Glide; MAX_PARAMS],
            values: std::array::from_fn(|i| {
                Smoother::with_default_ramp(spec.params.get(i).map_or(0.0, |p| p.default), sr)
            }),
            sample_rate: sr,
        }
    }

    /// The same parameters with `indices` taking effect at once instead of gliding.
    pub fn instant(self, indices: &[usize]) -> Params {
        self.with_kind(Kind::Instant, indices)
    }

    /// The same parameters with `indices` taking effect at once, rounded to whole numbers.
    pub fn whole(self, indices: &[usize]) -> Params {
        self.with_kind(Kind::Whole, indices)
    }

    /// The same parameters with `indices` gliding geometrically (at a constant ratio per
    /// sample, see [`Smoother::geometric`]) over `ms` milliseconds: for positive values
    /// heard on a log scale (cutoffs, resonance). Snapshots are the same size.
    pub fn geometric(mut self, indices: &[usize], ms: f32) -> Params {
        let sr = self.sample_rate;
        for &i in indices {
            if let (Some(Kind::Glide), Some(s)) = (self.kinds.get(i), self.values.get_mut(i)) {
                *s = Smoother::geometric(s.target(), crate::smoother::ramp_samples(sr, ms));
            }
        }
        self
    }

    /// The same parameters with `indices` gliding linearly over `ms` milliseconds instead
    /// of the default 10 ms (a delay-modulation depth, whose fast glide bends pitch).
    pub fn glide_ms(mut self, indices: &[usize], ms: f32) -> Params {
        let sr = self.sample_rate;
        for &i in indices {
            if let (Some(Kind::Glide), Some(s)) = (self.kinds.get(i), self.values.get_mut(i)) {
                *s = Smoother::new(s.target(), crate::smoother::ramp_samples(sr, ms));
            }
        }
        self
    }

    fn with_kind(mut self, kind: Kind, indices: &[usize]) -> Params {
        for &i in indices {
            if let (Some(k), Some(s)) = (self.kinds.get_mut(i), self.values.get_mut(i)) {
                *k = kind;
                *s = Smoother::new(s.target(), 0);
            }
        }
        self
    }

    /// The module type these parameters belong to.
    #[inline]
    pub fn spec(&self) -> &'static ModuleSpec {
        self.spec
    }

    /// Clamps `value` via `ParamSpec::clamp` and makes it parameter `index`'s new value
    /// (a glide target, or the value at once). Returns false, changing nothing, for an
    /// index the type does not have: the render thread must never panic on a command.
    #[inline]
    pub fn set(&mut self, index: usize, value: f32) -> bool {
        let (Some(p), Some(&kind), Some(s)) = (
            self.spec.params.get(index),
            self.kinds.get(index),
            self.values.get_mut(index),
        ) else {
            return false;
        };
        let v = p.clamp(value);
        match kind {
            Kind::Glide => s.set_target(v),
            Kind::Instant => s.set_immediate(v),
            Kind::Whole => s.set_immediate(v.round()),
        }
        true
    }

    /// The value last set for parameter `index` (clamped; for a gliding one, where it is
    /// going), or 0.0 for an index the type does not have.
    #[inline]
    pub fn get(&self, index: usize) -> f32 {
        if index < self.spec.params.len() {
            self.values.get(index).map_or(0.0, Smoother::target)
        } else {
            0.0
        }
    }

    /// Ends every glide on its target; part of a module's reset.
    pub fn settle(&mut self) {
        for s in &mut self.values {
            s.settle();
        }
    }

    /// Writes every parameter in index order: a gliding one as its smoother, the others
    /// as their value.
    pub fn save(&self, w: &mut StateWriter<'_>) {
        for (s, kind) in self
            .values
            .iter()
            .zip(self.kinds)
            .take(self.spec.params.len())
        {
            match kind {
                Kind::Glide => s.save_state(w),
                Kind::Instant | Kind::Whole => w.put_f32(s.target()),
            }
        }
    }

    /// Reads what [`Params::save`] wrote. Values are clamped (and rounded) again, and a
    /// glide is refused unless it stays near its range ([`Smoother::stays_near`]), so a
    /// damaged snapshot cannot put a parameter out of its range, or make it infinite.
    ///
    /// # Errors
    /// [`StateError::Truncated`] if the snapshot is short; [`StateError::InvalidValue`]
    /// for a glide no smoother could have saved.
    pub fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let params = self.spec.params.iter().zip(self.kinds);
        for ((p, kind), s) in params.zip(&mut self.values) {
            match kind {
                Kind::Glide => {
                    // Checked before it is taken: a refused glide leaves the one in use.
                    let offset = r.position();
                    let mut loaded = s.clone();
                    loaded.load_state(r)?;
                    if !loaded.stays_near(p.min, p.max) {
                        return Err(StateError::InvalidValue {
                            what: "parameter glide",
                            offset,
                        });
                    }
                    *s = loaded;
                }
                Kind::Instant => s.set_immediate(p.clamp(r.get_f32()?)),
                Kind::Whole => s.set_immediate(p.clamp(r.get_f32()?).round()),
            }
        }
        Ok(())
    }
}

impl std::ops::Index<usize> for Params {
    type Output = Smoother;

    /// Parameter `index`'s smoother, for the DSP: `next()` per sample while gliding,
    /// `current()` or `target()` otherwise. Modules index with their parameter constants,
    /// which are in range by construction (the registry tests check every index).
    #[inline(always)]
    fn index(&self, index: usize) -> &Smoother {
        &self.values[index]
    }
}

impl std::ops::IndexMut<usize> for Params {
    #[inline(always)]
    fn index_mut(&mut self, index: usize) -> &mut Smoother {
        &mut self.values[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ModuleSpec, ParamSpec};

    static SPEC: ModuleSpec = ModuleSpec {
        type_name: "test",
        doc: "",
        inputs: &[],
        outputs: &[],
        params: &[
            ParamSpec::linear("level", 0.0..=1.0, 0.5),
            ParamSpec::ms("time", 0.0..=100.0, 10.0),
            ParamSpec::number("shape", 0.0..=3.0, 1.0),
        ],
        has_gate: false,
    };

    fn params() -> Params {
        Params::new(&SPEC, 48_000.0).instant(&[1]).whole(&[2])
    }

    #[test]
    fn set_clamps_glides_jumps_and_rounds() {
        let mut p = params();
        assert!(p.set(0, 7.0) && p.set(1, -3.0) && p.set(2, 1.6));
        assert!(!p.set(3, 1.0) && !p.set(usize::MAX, 1.0));
        assert_eq!(
            [p.get(0), p.get(1), p.get(2), p.get(3)],
            [1.0, 0.0, 2.0, 0.0]
        );
        // The level glides from 0.5; the others are there at once.
        assert_eq!(p[0].current(), 0.5);
        assert!(!p[0].is_settled() && p[1].is_settled() && p[2].is_settled());
        p.set(1, f32::NAN);
        assert_eq!(p.get(1), 10.0, "NaN means the default");
        p.settle();
        assert_eq!(p[0].current(), 1.0);
    }

    #[test]
    fn save_and_load_round_trip_mid_glide() {
        let mut a = params();
        a.set(0, 0.9);
        a.set(2, 3.0);
        a[0].next();
        let mut counter = StateWriter::counter();
        a.save(&mut counter);
        // The gliding level as a smoother, the two others as values.
        assert_eq!(counter.position(), Smoother::STATE_LEN + 4 + 4);
        let mut buf = vec![0u8; counter.position()];
        let mut w = StateWriter::new(&mut buf);
        a.save(&mut w);
        let mut b = params();
        b.load(&mut StateReader::new(&buf)).unwrap();
        assert_eq!(a[0], b[0]);
        assert_eq!((b.get(1), b.get(2)), (10.0, 3.0));
        assert!(params().load(&mut StateReader::new(&buf[..5])).is_err());
    }
}
