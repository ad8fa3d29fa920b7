//! `ladder`: a 4-pole (24 dB/octave) Moog-style lowpass with resonance up to
//! self-oscillation.
//!
//! Model: the zero-delay-feedback (topology-preserving transform) ladder from Zavalishin,
//! *The Art of VA Filter Design* ch. 5: four trapezoidal one-pole stages with the global
//! feedback `u = x - k * y4` solved implicitly each sample, so the cutoff is exact (the
//! bilinear transform is prewarped at the cutoff) and fast cutoff sweeps stay stable. One
//! saturator sits at the loop input: `u = soft_clip(solved u)`, which bounds everything
//! after it (each stage is a stable lowpass), so self-oscillation settles at a steady
//! amplitude instead of growing, and `drive` pushes the input into it like an overdriven
//! ladder. `soft_clip` is a Padé approximation of tanh (see `common::soft_clip`):
//! the difference to tanh is inaudible and it costs a fraction of it.
//!
//! Behaviour (tested below):
//! - `resonance` r maps to the loop gain `k = 4.1 r`. The linear ladder oscillates at
//!   `k = 4`, so the filter **self-oscillates from r ≈ 0.976 up**, at the cutoff
//!   frequency (within a few percent), and rings down for smaller r. At r = 1 and above,
//!   silence plus any tiny impulse starts a sustained sine at the cutoff.
//! - With resonance 0 the response is four cascaded one-poles: -12 dB at the cutoff
//!   (each stage -3 dB) and a -24 dB/octave slope above it; with resonance the DC gain
//!   is `1/(1 + k)` (the classic Moog bass loss) and a peak grows at the cutoff.
//! - For small signals (`drive * |in|` well below 1) the response is the analytic ladder
//!   response; louder signals saturate smoothly.
//!
//! The four stage memories are f64 (at low cutoffs f32 adds audible noise), flushed
//! below 1e-20 every sample.

use crate::module::{sane_sample_rate, Module};
use crate::modules::common::{flush64, input, sanitize, soft_clip};
use crate::smoother::Smoother;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec, Rate, Unit};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `cutoff` parameter.
pub const CUTOFF: usize = 0;
/// Index of the `resonance` parameter.
pub const RESONANCE: usize = 1;
/// Index of the `drive` parameter.
pub const DRIVE: usize = 2;

/// Loop gain per unit of `resonance`: slightly above 4 so that resonance 1.0 is safely
/// past the self-oscillation threshold (k = 4) rather than balanced on it.
pub const K_PER_RESONANCE: f64 = 4.1;

/// Samples between coefficient updates while the cutoff glides (the `tan` is the only
/// costly part); the ZDF structure stays stable under any coefficient change.
pub const COEF_INTERVAL: u32 = 16;

/// Highest cutoff used, as a fraction of the sample rate (the prewarp `tan` grows
/// without bound at Nyquist).
pub const MAX_CUTOFF_FRACTION: f64 = 0.49;

/// Static description of the `ladder` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "ladder",
    doc: "4-pole Moog-style ladder lowpass (24 dB/oct, zero-delay feedback, soft saturation); self-oscillates from resonance ~0.98.",
    inputs: &[PortSpec {
        name: "in",
        rate: Rate::Audio,
    }],
    outputs: &[PortSpec {
        name: "out",
        rate: Rate::Audio,
    }],
    params: &[
        ParamSpec {
            name: "cutoff",
            unit: Unit::Hertz,
            min: 10.0,
            max: 20_000.0,
            default: 1_000.0,
            doc: "Cutoff frequency (glides over 10 ms; held below 0.49 x sample rate).",
        },
        ParamSpec {
            name: "resonance",
            unit: Unit::Linear,
            min: 0.0,
            max: 1.2,
            default: 0.1,
            doc: "Feedback: a peak at the cutoff that grows with it; self-oscillates (a sine at the cutoff) from ~0.98 up.",
        },
        ParamSpec {
            name: "drive",
            unit: Unit::Linear,
            min: 0.0,
            max: 4.0,
            default: 1.0,
            doc: "Input gain into the saturating feedback stage: above ~1 the filter overdrives.",
        },
    ],
    has_gate: false,
};

/// Per-cutoff coefficients: the stage gain `G = g/(1+g)` with `g = tan(pi fc / fs)`,
/// and its powers, which the implicit feedback solution needs.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Coefs {
    g1: f64,
    g2: f64,
    g3: f64,
    g4: f64,
    /// `1 - G`, the weight of a stage's memory in its output.
    beta: f64,
}

impl Coefs {
    fn new(sample_rate: f64, cutoff: f64) -> Coefs {
        let fc = cutoff.clamp(1.0, sample_rate * MAX_CUTOFF_FRACTION);
        let g = (std::f64::consts::PI * fc / sample_rate).tan();
        let g1 = g / (1.0 + g);
        Coefs {
            g1,
            g2: g1 * g1,
            g3: g1 * g1 * g1,
            g4: g1 * g1 * g1 * g1,
            beta: 1.0 - g1,
        }
    }
}

/// Ladder state: smoothed parameters, coefficients in use, and the four stage memories.
#[derive(Debug, Clone)]
pub struct Ladder {
    sample_rate: f64,
    cutoff: Smoother,
    resonance: Smoother,
    drive: Smoother,
    coefs: Coefs,
    s: [f64; 4],
    /// True while a parameter glide (or its final coefficient update) is in progress.
    gliding: bool,
    /// Samples until the next coefficient update while gliding.
    countdown: u32,
}

impl Ladder {
    /// A ladder at the default cutoff, resonance and drive, with silent memories.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let p = SPEC.params;
        Ladder {
            sample_rate: f64::from(sr),
            cutoff: Smoother::with_default_ramp(p[CUTOFF].default, sr),
            resonance: Smoother::with_default_ramp(p[RESONANCE].default, sr),
            drive: Smoother::with_default_ramp(p[DRIVE].default, sr),
            coefs: Coefs::new(f64::from(sr), f64::from(p[CUTOFF].default)),
            s: [0.0; 4],
            gliding: false,
            countdown: 0,
        }
    }

    /// One sample through the ladder with loop gain `k` and input gain `drive`.
    #[inline(always)]
    fn tick(&mut self, x: f32, k: f64, drive: f64) -> f32 {
        let Coefs {
            g1,
            g2,
            g3,
            g4,
            beta,
        } = self.coefs;
        let [s1, s2, s3, s4] = self.s;
        let x = f64::from(sanitize(x)) * drive;
        // y4 = G^4 u + sigma, where sigma is what the memories alone contribute.
        let sigma = beta * (g3 * s1 + g2 * s2 + g1 * s3 + s4);
        let u = soft_clip((x - k * sigma) / (1.0 + k * g4));
        let v1 = (u - s1) * g1;
        let y1 = v1 + s1;
        let v2 = (y1 - s2) * g1;
        let y2 = v2 + s2;
        let v3 = (y2 - s3) * g1;
        let y3 = v3 + s3;
        let v4 = (y3 - s4) * g1;
        let y4 = v4 + s4;
        self.s = [
            flush64(y1 + v1),
            flush64(y2 + v2),
            flush64(y3 + v3),
            flush64(y4 + v4),
        ];
        y4 as f32
    }
}

impl Module for Ladder {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn set_param(&mut self, index: usize, value: f32) {
        let Some(p) = SPEC.params.get(index) else {
            return;
        };
        let v = p.clamp(value);
        match index {
            CUTOFF => self.cutoff.set_target(v),
            RESONANCE => self.resonance.set_target(v),
            DRIVE => self.drive.set_target(v),
            _ => return,
        }
        self.gliding = true;
    }

    fn param(&self, index: usize) -> f32 {
        match index {
            CUTOFF => self.cutoff.target(),
            RESONANCE => self.resonance.target(),
            DRIVE => self.drive.target(),
            _ => 0.0,
        }
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let x = input(inputs, 0);
        if !self.gliding {
            // Fast path: nothing moves, so the per-sample values are constants.
            let k = f64::from(self.resonance.current()) * K_PER_RESONANCE;
            let drive = f64::from(self.drive.current());
            for (o, &x) in out.iter_mut().zip(x) {
                *o = self.tick(x, k, drive);
            }
            return;
        }
        for (o, &x) in out.iter_mut().zip(x) {
            let c = self.cutoff.next();
            let k = f64::from(self.resonance.next()) * K_PER_RESONANCE;
            let drive = f64::from(self.drive.next());
            if self.gliding {
                if self.countdown == 0 {
                    self.coefs = Coefs::new(self.sample_rate, f64::from(c));
                    if self.cutoff.is_settled()
                        && self.resonance.is_settled()
                        && self.drive.is_settled()
                    {
                        self.gliding = false;
                    } else {
                        self.countdown = COEF_INTERVAL;
                    }
                }
                self.countdown = self.countdown.saturating_sub(1);
            }
            *o = self.tick(x, k, drive);
        }
    }

    fn reset(&mut self) {
        self.cutoff.settle();
        self.resonance.settle();
        self.drive.settle();
        self.coefs = Coefs::new(self.sample_rate, f64::from(self.cutoff.target()));
        self.s = [0.0; 4];
        self.gliding = false;
        self.countdown = 0;
    }

    fn state_len(&self) -> usize {
        3 * Smoother::STATE_LEN + 5 * 8 + 4 * 8 + 1 + 4
    }

    fn save_state(&self, w: &mut StateWriter<'_>) {
        self.cutoff.save_state(w);
        self.resonance.save_state(w);
        self.drive.save_state(w);
        let c = &self.coefs;
        for v in [c.g1, c.g2, c.g3, c.g4, c.beta] {
            w.put_f64(v);
        }
        for v in self.s {
            w.put_f64(v);
        }
        w.put_bool(self.gliding);
        w.put_u32(self.countdown);
    }

    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.cutoff.load_state(r)?;
        self.resonance.load_state(r)?;
        self.drive.load_state(r)?;
        self.coefs = Coefs {
            g1: r.get_f64()?,
            g2: r.get_f64()?,
            g3: r.get_f64()?,
            g4: r.get_f64()?,
            beta: r.get_f64()?,
        };
        for s in &mut self.s {
            *s = r.get_f64()?;
        }
        self.gliding = r.get_bool()?;
        self.countdown = r.get_u32()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{gain_db, render, SR};

    fn ladder(cutoff: f32, resonance: f32) -> Ladder {
        let mut l = Ladder::new(SR);
        l.set_param(CUTOFF, cutoff);
        l.set_param(RESONANCE, resonance);
        l.reset();
        l
    }

    /// Analytic small-signal response of the TPT ladder: the analog prototype
    /// `1 / ((1 + s)^4 + k)` at the prewarped frequency `s = j tan(pi f/fs) / tan(pi fc/fs)`.
    fn analytic_db(cutoff: f64, resonance: f64, f: f64) -> f64 {
        let sr = f64::from(SR);
        let w = (std::f64::consts::PI * f / sr).tan() / (std::f64::consts::PI * cutoff / sr).tan();
        let k = resonance * K_PER_RESONANCE;
        // (1 + jw)^4 by repeated complex multiplication.
        let (mut re, mut im) = (1.0f64, 0.0f64);
        for _ in 0..4 {
            (re, im) = (re - im * w, re * w + im);
        }
        re += k;
        -10.0 * (re * re + im * im).log10()
    }

    #[test]
    fn small_signal_response_matches_analytic_ladder() {
        // Amplitude 0.001: the saturator is linear to within 1e-6 there.
        for (cutoff, res) in [
            (1000.0f32, 0.0f32),
            (1000.0, 0.5),
            (500.0, 0.9),
            (3000.0, 0.2),
        ] {
            for f in [100.0, 500.0, 1000.0, 2000.0, 8000.0] {
                let want = analytic_db(f64::from(cutoff), f64::from(res), f);
                let got = gain_db(&mut ladder(cutoff, res), 1, 0, f, 0.001);
                assert!(
                    (got - want).abs() < 0.1,
                    "cutoff {cutoff} res {res} at {f} Hz: {got:.3} dB vs {want:.3} dB"
                );
            }
        }
    }

    #[test]
    fn cutoff_is_minus_12_db_and_slope_is_24_db_per_octave() {
        let db = |f| gain_db(&mut ladder(1000.0, 0.0), 1, 0, f, 0.001);
        let dc = db(20.0);
        assert!(dc.abs() < 0.05, "passband {dc}");
        let at_cutoff = db(1000.0);
        assert!((at_cutoff + 12.04).abs() < 0.1, "at cutoff {at_cutoff}");
        // Two octaves well above the cutoff (and well below Nyquist): ~-24 dB/octave.
        let slope = db(8000.0) - db(4000.0);
        assert!((-26.0..=-22.5).contains(&slope), "slope {slope} dB/oct");
    }

    #[test]
    fn resonance_peak_grows_with_resonance() {
        let mut last = f64::NEG_INFINITY;
        for res in [0.0f32, 0.3, 0.6, 0.9] {
            // Peak relative to the passband, measured at the cutoff.
            let peak = gain_db(&mut ladder(1000.0, res), 1, 0, 1000.0, 0.001)
                - gain_db(&mut ladder(1000.0, res), 1, 0, 20.0, 0.001);
            assert!(peak > last + 3.0, "res {res}: {peak} dB after {last} dB");
            last = peak;
        }
        assert!(last > 15.0, "res 0.9 peaks {last} dB over the passband");
    }

    /// Impulse response of length `n`: a tiny click, then silence.
    fn ring(cutoff: f32, resonance: f32, n: usize) -> Vec<f32> {
        let mut x = vec![0.0f32; n];
        x[0] = 1e-4;
        let mut l = ladder(cutoff, resonance);
        render(&mut l, &[x], 1).remove(0)
    }

    /// Frequency from upward zero crossings over `sig`.
    fn zero_crossing_hz(sig: &[f32]) -> f64 {
        let ups: Vec<usize> = sig
            .windows(2)
            .enumerate()
            .filter(|(_, w)| w[0] <= 0.0 && w[1] > 0.0)
            .map(|(i, _)| i)
            .collect();
        let (first, last) = (ups[0], *ups.last().unwrap());
        (ups.len() - 1) as f64 * f64::from(SR) / (last - first) as f64
    }

    #[test]
    fn self_oscillates_at_the_cutoff_from_resonance_one() {
        for (cutoff, res) in [
            (1000.0f32, 1.0f32),
            (440.0, 1.0),
            (2000.0, 1.2),
            (300.0, 1.1),
        ] {
            let out = ring(cutoff, res, 2 * SR as usize);
            let tail = &out[SR as usize * 3 / 2..];
            let peak = tail.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            assert!(peak > 0.05, "cutoff {cutoff} res {res}: tail peak {peak}");
            // Steady: the last quarter second is as loud as the one before.
            let rms = |s: &[f32]| (s.iter().map(|x| x * x).sum::<f32>() / s.len() as f32).sqrt();
            let (a, b) = tail.split_at(tail.len() / 2);
            assert!((rms(a) / rms(b) - 1.0).abs() < 0.02, "steady amplitude");
            let hz = zero_crossing_hz(tail);
            assert!(
                (hz / f64::from(cutoff) - 1.0).abs() < 0.03,
                "cutoff {cutoff} res {res}: oscillates at {hz:.1} Hz"
            );
            assert!(out.iter().all(|x| x.is_finite() && x.abs() < 2.0));
        }
    }

    #[test]
    fn below_threshold_the_ring_decays_to_exact_zero() {
        for res in [0.5f32, 0.9, 0.95] {
            let out = ring(1000.0, res, 2 * SR as usize);
            let tail = &out[SR as usize * 3 / 2..];
            assert!(tail.iter().all(|&x| x.abs() < 1e-12), "res {res} decays");
        }
        // Silence into a settled filter ends in exact zeros (no denormal tail).
        let mut x = vec![0.0f32; 4 * SR as usize];
        x[0] = 1.0;
        let mut l = ladder(100.0, 0.5);
        let out = render(&mut l, &[x], 1).remove(0);
        assert_eq!(l.s, [0.0; 4]);
        assert_eq!(*out.last().unwrap(), 0.0);
    }

    #[test]
    fn loud_input_and_fast_sweeps_stay_bounded() {
        let mut l = ladder(1000.0, 1.2);
        l.set_param(DRIVE, 4.0);
        let x: Vec<f32> = (0..48_000)
            .map(|i| if i % 100 < 50 { 10.0 } else { -10.0 })
            .collect();
        for block in x.chunks(64) {
            // Cutoff jumps every block: 10 Hz <-> 20 kHz.
            l.set_param(
                CUTOFF,
                if l.param(CUTOFF) > 100.0 {
                    10.0
                } else {
                    20_000.0
                },
            );
            let mut out = [0.0f32; 64];
            l.process(&[block], &mut [&mut out]);
            assert!(out.iter().all(|v| v.is_finite() && v.abs() < 4.0));
        }
    }
}
