//! `lfo`: a sub-audio low-frequency oscillator for modulation.
//!
//! At 100 Hz and below the harmonics that matter sit far under Nyquist, so the shapes are
//! computed directly (no band-limiting) and the module stays cheap. Output:
//! `offset + depth × shape`, where the shape is
//!
//! | `shape` | waveform (one cycle, from phase 0) |
//! |---|---|
//! | 0 | sine, starting at 0 rising |
//! | 1 | triangle, starting at 0 rising, +1 at a quarter cycle |
//! | 2 | saw, rising from −1 to +1 |
//! | 3 | square, +1 for the first half, −1 for the second |
//! | 4 | sample-and-hold: a new random value in [−1, 1) at the start of every cycle |
//!
//! The random steps come from a SplitMix64 seeded with the node's seed, so lockstepped
//! workers agree; its state is in the snapshot. `freq`, `depth` and `offset` glide over
//! 10 ms; a `shape` change crossfades from the old shape to the new over 10 ms (a jump
//! of the control signal would click in whatever it modulates; the square and the
//! sample-and-hold keep their own steps).

use super::noise::SplitMix64;
use crate::modules::common::{mode_index, ChoiceFade};
use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `freq` parameter.
pub const FREQ: usize = 0;
/// Index of the `depth` parameter.
pub const DEPTH: usize = 1;
/// Index of the `shape` parameter.
pub const SHAPE: usize = 2;
/// Index of the `offset` parameter.
pub const OFFSET: usize = 3;

/// Static description of the `lfo` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "lfo",
    doc: "Low-frequency oscillator (sine, triangle, saw, square, sample-and-hold) for vibrato, tremolo and sweeps.",
    inputs: &[],
    outputs: &[PortSpec::control("out")],
    params: &[
        ParamSpec::hz("freq", 0.001..=100.0, 1.0).doc("Rate (glides over 10 ms)."),
        ParamSpec::linear("depth", 0.0..=1.0, 1.0).doc("Amplitude of the shape around the offset (glides over 10 ms)."),
        ParamSpec::number("shape", 0.0..=4.0, 0.0).doc("Waveform, rounded: 0 sine, 1 triangle, 2 saw, 3 square, 4 sample-and-hold; a change crossfades over 10 ms."),
        ParamSpec::number("offset", -1.0..=1.0, 0.0).doc("Constant added to the output (glides over 10 ms)."),
    ],
    has_gate: false,
};

/// LFO state: phase, held random value and generator, shape, and the smoothers.
#[derive(Debug, Clone)]
pub struct Lfo {
    inv_sample_rate: f64,
    seed: u64,
    rng: SplitMix64,
    /// Phase in cycles, in [0, 1).
    phase: f64,
    /// Current sample-and-hold value.
    held: f32,
    params: Params,
    /// The crossfade between shapes after a `shape` change.
    fade: ChoiceFade,
}

impl Lfo {
    /// A 1 Hz sine LFO of full depth; `seed` fixes its sample-and-hold sequence.
    pub fn new(sample_rate: f32, seed: u64) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let mut rng = SplitMix64::new(seed);
        let held = rng.next_bipolar();
        Lfo {
            inv_sample_rate: 1.0 / f64::from(sr),
            seed,
            rng,
            phase: 0.0,
            held,
            params: Params::new(&SPEC, sr).whole(&[SHAPE]),
            fade: ChoiceFade::new(0, sr),
        }
    }

    /// The value of shape `shape` (a `shape` parameter value) at the current phase.
    #[inline]
    fn wave(&self, shape: f32) -> f32 {
        let p = self.phase as f32;
        if shape < 1.5 {
            let tri = triangle(p);
            if shape < 0.5 {
                // sin(2πφ) = sin(π/2 · triangle(φ)): the triangle folds the phase into
                // [−π/2, π/2], where an odd polynomial is accurate to 2e-5 (plenty for
                // modulation) and far cheaper than `sin`.
                let y2 = tri * tri;
                tri * (std::f32::consts::FRAC_PI_2
                    + y2 * (-0.645_964_1 + y2 * (0.079_692_6 + y2 * -0.004_524_8)))
            } else {
                tri
            }
        } else if shape < 2.5 {
            2.0 * p - 1.0
        } else if shape < 3.5 {
            if p < 0.5 {
                1.0
            } else {
                -1.0
            }
        } else {
            self.held
        }
    }
}

/// Triangle at phase `p` in `[0, 1)`: 0 rising, +1 at a quarter, −1 at three quarters.
#[inline]
fn triangle(p: f32) -> f32 {
    let x = p + 0.25;
    let x = if x >= 1.0 { x - 1.0 } else { x };
    1.0 - 4.0 * (x - 0.5).abs()
}

impl Module for Lfo {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn process(&mut self, _inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        for o in out.iter_mut() {
            let f = f64::from(self.params[FREQ].next());
            let depth = self.params[DEPTH].next();
            let offset = self.params[OFFSET].next();
            let wave = if self.fade.is_fading() {
                let mut v = 0.0;
                for (i, w) in self.fade.weights().into_iter().enumerate().take(5) {
                    if w != 0.0 {
                        v += w * self.wave(i as f32);
                    }
                }
                v
            } else {
                self.wave(self.params[SHAPE].target())
            };
            *o = offset + depth * wave;
            // freq > 0 and far below the sample rate: one subtraction wraps.
            self.phase += f * self.inv_sample_rate;
            if self.phase >= 1.0 {
                self.phase -= 1.0;
                if self.phase >= 1.0 {
                    self.phase = 0.0;
                }
                self.held = self.rng.next_bipolar();
            }
        }
    }

    fn param_changed(&mut self, index: usize) {
        if index == SHAPE {
            self.fade.switch(mode_index(self.params[SHAPE].target()));
        }
    }

    fn clear(&mut self) {
        self.fade.settle();
        self.rng = SplitMix64::new(self.seed);
        self.held = self.rng.next_bipolar();
        self.phase = 0.0;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_u64(self.rng.state());
        w.put_f64(self.phase);
        w.put_f32(self.held);
        self.fade.save(w);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.rng.set_state(r.get_u64()?);
        let at = r.position();
        let phase = r.get_f64()?;
        let held = r.get_f32()?;
        if !(0.0..1.0).contains(&phase) || !(-1.0..=1.0).contains(&held) {
            return Err(StateError::InvalidValue {
                what: "lfo phase or held value",
                offset: at,
            });
        }
        self.phase = phase;
        self.held = held;
        self.fade.load(r, 5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::bandlimited::measure::render;

    const SR: f32 = 48_000.0;

    fn lfo(freq: f32, shape: f32) -> Lfo {
        let mut l = Lfo::new(SR, 11);
        l.set_param(FREQ, freq);
        l.set_param(SHAPE, shape);
        l.reset();
        l
    }

    #[test]
    fn shapes_at_quarter_points() {
        // 100 Hz: 480 samples per cycle; values at 0, 1/4, 1/2, 3/4 of a cycle.
        let expect: [[f32; 4]; 4] = [
            [0.0, 1.0, 0.0, -1.0],
            [0.0, 1.0, 0.0, -1.0],
            [-1.0, -0.5, 0.0, 0.5],
            [1.0, 1.0, -1.0, -1.0],
        ];
        for (shape, want) in expect.iter().enumerate() {
            let out = render(&mut lfo(100.0, shape as f32), &[], 480);
            // The square flips exactly at half a cycle: look one sample past each point.
            let nudge = usize::from(shape == 3);
            for (q, w) in want.iter().enumerate() {
                let got = out[q * 120 + nudge];
                assert!(
                    (got - w).abs() < 1e-4,
                    "shape {shape} at {q}/4: {got} vs {w}"
                );
            }
        }
    }

    #[test]
    fn sine_polynomial_is_close() {
        let mut l = lfo(1.0, 0.0);
        for i in 0..10_000 {
            l.phase = f64::from(i) / 10_000.0;
            let want = (std::f64::consts::TAU * l.phase).sin();
            let err = (f64::from(l.wave(0.0)) - want).abs();
            assert!(err < 5e-5, "{}: {err}", l.phase);
        }
    }

    #[test]
    fn depth_and_offset() {
        let mut l = lfo(100.0, 3.0);
        l.set_param(DEPTH, 0.25);
        l.set_param(OFFSET, 0.5);
        l.reset();
        let out = render(&mut l, &[], 480);
        assert!((out[10] - 0.75).abs() < 1e-6 && (out[300] - 0.25).abs() < 1e-6);
    }

    #[test]
    fn sample_and_hold_steps_once_per_cycle_and_is_seeded() {
        let out = render(&mut lfo(10.0, 4.0), &[], 48_000);
        let changes = out.windows(2).filter(|w| w[0] != w[1]).count();
        assert!((9..=10).contains(&changes), "{changes}");
        assert!(out.iter().all(|x| (-1.0..1.0).contains(x)));
        let again = render(&mut lfo(10.0, 4.0), &[], 48_000);
        assert_eq!(out, again);
        let mut other = Lfo::new(SR, 12);
        other.set_param(FREQ, 10.0);
        other.set_param(SHAPE, 4.0);
        other.reset();
        assert_ne!(render(&mut other, &[], 48_000), out);
    }

    #[test]
    fn snapshot_continues_bit_identically() {
        for shape in 0..5 {
            let mut a = lfo(37.0, shape as f32);
            let _ = render(&mut a, &[], 5000);
            a.set_param(FREQ, 80.0);
            let _ = render(&mut a, &[], 100);
            let mut buf = vec![0u8; a.state_len()];
            let mut w = StateWriter::new(&mut buf);
            a.save_state(&mut w);
            assert_eq!(w.finish(), Ok(a.state_len()));
            let mut b = Lfo::new(SR, 0);
            b.load_state(&mut StateReader::new(&buf)).unwrap();
            let (x, y) = (render(&mut a, &[], 5000), render(&mut b, &[], 5000));
            assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
    }
}
