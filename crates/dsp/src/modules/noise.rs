//! `noise`: seeded white, pink and brown noise.
//!
//! Noise must be deterministic too: both lockstepped workers create the module with the
//! same per-node seed, and the generator's state is part of the snapshot, so a spare
//! continues the exact same sequence. The generator is SplitMix64 (tiny, fast, and any
//! 64-bit state is valid, so a snapshot can never hold a "stuck" state).
//!
//! - white: uniform in [−1, 1) (RMS 0.58);
//! - pink (−3 dB/octave): Paul Kellet's refined filter (seven one-pole sections), scaled
//!   to about 0.2 RMS;
//! - brown (−6 dB/octave): white through a leaky integrator (corner 10 Hz, so it cannot
//!   drift to infinity), scaled to about 0.2 RMS.
//!
//! Pink and brown are clamped to ±1, which at 5 σ practically never bites. Their
//! filters are fed with fresh noise every sample, so they never decay into denormals.

use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `color` parameter.
pub const COLOR: usize = 0;
/// Index of the `gain` parameter.
pub const GAIN: usize = 1;

/// Static description of the `noise` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "noise",
    doc: "Seeded noise: white (0), pink (1) or brown (2); for percussion, wind, and random modulation.",
    inputs: &[],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::number("color", 0.0..=2.0, 0.0).doc("Noise colour, rounded: 0 white (flat), 1 pink (−3 dB/oct), 2 brown (−6 dB/oct)."),
        ParamSpec::linear("gain", 0.0..=1.0, 0.5).doc("Output level (glides over 10 ms)."),
    ],
    has_gate: false,
};

/// SplitMix64: a 64-bit counter through a strong mixer. Deterministic, seedable with any
/// value, and its whole state is one `u64`, so snapshots are trivial. Shared with `lfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// Next 64 random bits.
    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [−1, 1), from the top 24 bits (every value exactly representable).
    #[inline]
    pub fn next_bipolar(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32) * (1.0 / 8_388_608.0) - 1.0
    }

    /// The raw state, for snapshots.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Restores a state from a snapshot (every value is valid).
    pub fn set_state(&mut self, state: u64) {
        self.state = state;
    }
}

/// Paul Kellet's refined pink filter: pole coefficient and input weight of six sections.
const PINK_SECTIONS: [(f32, f32); 6] = [
    (0.998_86, 0.055_517_9),
    (0.993_32, 0.075_075_9),
    (0.969_00, 0.153_852),
    (0.866_50, 0.310_485_6),
    (0.550_00, 0.532_952_2),
    (-0.761_6, -0.016_898),
];

/// Scales Kellet's output (about 1.6 RMS for uniform white input) to about 0.2 RMS.
const PINK_SCALE: f32 = 0.125;

/// Target RMS of the brown output.
const BROWN_RMS: f64 = 0.2;

/// Noise state: generator, pink and brown filter memories, colour and gain.
#[derive(Debug, Clone)]
pub struct Noise {
    seed: u64,
    rng: SplitMix64,
    /// Kellet sections b0..b5 and the one-sample term b6.
    pink: [f32; 7],
    brown: f32,
    brown_leak: f32,
    brown_in: f32,
    params: Params,
}

impl Noise {
    /// White noise at the default gain, its sequence fixed by `seed`.
    pub fn new(sample_rate: f32, seed: u64) -> Self {
        let sr = f64::from(sane_sample_rate(sample_rate));
        // Brown: y = leak·y + c·white, a leaky integrator (one-pole lowpass at 10 Hz) with
        // c chosen for BROWN_RMS from uniform input (variance 1/3): var(y) = c²/3/(1 − leak²).
        let leak = (-std::f64::consts::TAU * 10.0 / sr).exp();
        let brown_in = BROWN_RMS * (3.0 * (1.0 - leak * leak)).sqrt();
        Noise {
            seed,
            rng: SplitMix64::new(seed),
            pink: [0.0; 7],
            brown: 0.0,
            brown_leak: leak as f32,
            brown_in: brown_in as f32,
            params: Params::new(&SPEC, sample_rate).whole(&[COLOR]),
        }
    }

    /// Advances the pink filter by one white sample.
    #[inline]
    fn pink(&mut self, white: f32) -> f32 {
        let mut sum = self.pink[6];
        for (b, (pole, weight)) in self.pink.iter_mut().zip(PINK_SECTIONS) {
            *b = pole * *b + weight * white;
            sum += *b;
        }
        self.pink[6] = 0.115_926 * white;
        ((sum + 0.536_2 * white) * PINK_SCALE).clamp(-1.0, 1.0)
    }

    /// Advances the brown integrator by one white sample.
    #[inline]
    fn brown(&mut self, white: f32) -> f32 {
        self.brown = self.brown_leak * self.brown + self.brown_in * white;
        self.brown.clamp(-1.0, 1.0)
    }
}

impl Module for Noise {
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
        // Colour is fixed for the block: one branch outside the loop.
        if self.params[COLOR].target() >= 1.5 {
            for o in out.iter_mut() {
                let w = self.rng.next_bipolar();
                *o = self.brown(w) * self.params[GAIN].next();
            }
        } else if self.params[COLOR].target() >= 0.5 {
            for o in out.iter_mut() {
                let w = self.rng.next_bipolar();
                *o = self.pink(w) * self.params[GAIN].next();
            }
        } else {
            for o in out.iter_mut() {
                *o = self.rng.next_bipolar() * self.params[GAIN].next();
            }
        }
    }

    fn clear(&mut self) {
        self.rng = SplitMix64::new(self.seed);
        self.pink = [0.0; 7];
        self.brown = 0.0;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_u64(self.rng.state());
        for b in self.pink {
            w.put_f32(b);
        }
        w.put_f32(self.brown);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.rng.set_state(r.get_u64()?);
        for b in &mut self.pink {
            let at = r.position();
            let v = r.get_f32()?;
            if !v.is_finite() {
                return Err(StateError::InvalidValue {
                    what: "pink noise filter",
                    offset: at,
                });
            }
            *b = v;
        }
        let at = r.position();
        let brown = r.get_f32()?;
        if !brown.is_finite() {
            return Err(StateError::InvalidValue {
                what: "brown noise integrator",
                offset: at,
            });
        }
        self.brown = brown;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::bandlimited::fft_in_place;
    use crate::modules::bandlimited::measure::{render, LEN};

    const SR: f32 = 48_000.0;

    fn noise(color: f32, seed: u64) -> Noise {
        let mut n = Noise::new(SR, seed);
        n.set_param(COLOR, color);
        n.set_param(GAIN, 1.0);
        n.reset();
        n
    }

    /// Power in an octave band, averaged over several FFT frames (Hann-windowed).
    fn band_power(x: &[f32], lo: f64, hi: f64) -> f64 {
        let n = 4096;
        let mut total = 0.0;
        for frame in x.chunks_exact(n) {
            let mut re: Vec<f64> = frame
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let w = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos();
                    f64::from(*s) * w
                })
                .collect();
            let mut im = vec![0.0; n];
            fft_in_place(&mut re, &mut im, false);
            let hz = f64::from(SR) / n as f64;
            for k in (lo / hz).ceil() as usize..(hi / hz) as usize {
                total += re[k] * re[k] + im[k] * im[k];
            }
        }
        total
    }

    #[test]
    fn spectra_have_their_slopes_and_levels_are_sane() {
        // Octave 250–500 Hz against 4–8 kHz (4 octaves up): white +12 dB (power per
        // octave doubles), pink 0 dB, brown −12 dB.
        for (color, want_db) in [(0.0f32, 12.0f64), (1.0, 0.0), (2.0, -12.0)] {
            let out = render(&mut noise(color, 42), &[], 4 * LEN);
            let ratio =
                10.0 * (band_power(&out, 4000.0, 8000.0) / band_power(&out, 250.0, 500.0)).log10();
            assert!(
                (ratio - want_db).abs() < 1.5,
                "color {color}: {ratio:.1} dB"
            );
            let mean = out.iter().map(|x| f64::from(*x)).sum::<f64>() / out.len() as f64;
            let rms =
                (out.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / out.len() as f64).sqrt();
            println!(
                "noise color {color}: rms {rms:.3}, mean {mean:.4}, high/low octave {ratio:.1} dB"
            );
            assert!(mean.abs() < 0.05, "color {color}: mean {mean}");
            assert!((0.15..0.6).contains(&rms), "color {color}: rms {rms}");
            assert!(out.iter().all(|x| x.is_finite() && x.abs() <= 1.0));
        }
    }

    #[test]
    fn seeded_and_snapshot_continues_bit_identically() {
        let a1 = render(&mut noise(1.0, 7), &[], 1000);
        let a2 = render(&mut noise(1.0, 7), &[], 1000);
        let b = render(&mut noise(1.0, 8), &[], 1000);
        assert_eq!(a1, a2);
        assert_ne!(a1, b);
        for color in [0.0, 1.0, 2.0] {
            let mut a = noise(color, 99);
            let _ = render(&mut a, &[], 777);
            let mut buf = vec![0u8; a.state_len()];
            let mut w = StateWriter::new(&mut buf);
            a.save_state(&mut w);
            assert_eq!(w.finish(), Ok(a.state_len()));
            let mut c = Noise::new(SR, 1);
            c.load_state(&mut StateReader::new(&buf)).unwrap();
            assert_eq!(c.param(COLOR), color);
            let (x, y) = (render(&mut a, &[], 2000), render(&mut c, &[], 2000));
            assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
        }
    }

    #[test]
    fn brown_does_not_drift_over_a_long_run() {
        let mut n = noise(2.0, 3);
        for _ in 0..20 {
            let out = render(&mut n, &[], 48_000);
            let mean = out.iter().map(|x| f64::from(*x)).sum::<f64>() / out.len() as f64;
            assert!(mean.abs() < 0.2, "{mean}");
        }
    }

    #[test]
    fn reset_restarts_the_sequence() {
        let mut n = noise(0.0, 5);
        let first = render(&mut n, &[], 100);
        n.reset();
        assert_eq!(render(&mut n, &[], 100), first);
    }
}
