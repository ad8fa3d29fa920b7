//! `svf`: a state-variable filter (Andrew Simper's trapezoidal "SVF", Cytomic 2013).
//!
//! One core computes lowpass, bandpass and highpass at once; `mode` picks what comes out
//! (0 lowpass, 1 highpass, 2 bandpass, 3 notch). The trapezoidal integrators make the
//! response exactly the analog prototype's through the bilinear transform prewarped at
//! the cutoff, and the structure stays stable however fast cutoff and q move (unlike a
//! direct-form biquad, whose memories do not match new coefficients), so it is the filter
//! to sweep. The bandpass is normalised to 0 dB at its peak (`k * band`), so raising q
//! narrows it without making it louder.
//!
//! Responses with `s = j tan(pi f / fs) / tan(pi fc / fs)` and `k = 1/q`:
//! lowpass `1/(s^2 + k s + 1)`, highpass `s^2/(…)`, bandpass `k s/(…)`, notch `(s^2 + 1)/(…)`.
//! Cutoff and q glide geometrically (evenly in pitch and in dB) over [`FILTER_RAMP_MS`]
//! with the coefficients recomputed every sample of a glide; a mode change crossfades
//! the outputs of the old and new mode (both come from the one core, so the fade is
//! exact and starts no transient) over 10 ms. Memories are f64, flushed below 1e-20
//! every sample.

use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::modules::common::{flush64, input, mode_index, sanitize, ChoiceFade};
use crate::smoother::FILTER_RAMP_MS;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `mode` parameter.
pub const MODE: usize = 0;
/// Index of the `cutoff` parameter.
pub const CUTOFF: usize = 1;
/// Index of the `q` parameter.
pub const Q: usize = 2;

/// Highest cutoff used, as a fraction of the sample rate (the prewarp `tan` grows without
/// bound at Nyquist).
pub const MAX_CUTOFF_FRACTION: f64 = 0.49;

/// Static description of the `svf` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "svf",
    doc: "State-variable filter (trapezoidal SVF): lowpass, highpass, bandpass or notch from one core; stable under fast sweeps.",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::number("mode", 0.0..=3.0, 0.0).doc("Response: 0 lowpass, 1 highpass, 2 bandpass (0 dB peak), 3 notch (rounded to the nearest); a switch crossfades over 10 ms."),
        ParamSpec::hz("cutoff", 10.0..=20_000.0, 1_000.0).doc("Cutoff (centre for bandpass and notch); glides evenly in pitch over 30 ms; held below 0.49 x sample rate."),
        ParamSpec::q("q", 0.1..=20.0, 0.707).doc("Resonance: 0.707 is flat (Butterworth); higher peaks (lowpass/highpass) or narrows (bandpass/notch); glides evenly in dB over 30 ms."),
    ],
    has_gate: false,
};

/// Which output of the core the module plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 12 dB/octave lowpass.
    Lowpass,
    /// 12 dB/octave highpass.
    Highpass,
    /// Bandpass with 0 dB peak at the cutoff.
    Bandpass,
    /// Notch (band reject) at the cutoff.
    Notch,
}

impl Mode {
    fn from_index(i: u8) -> Mode {
        match i {
            0 => Mode::Lowpass,
            1 => Mode::Highpass,
            2 => Mode::Bandpass,
            _ => Mode::Notch,
        }
    }
}

/// Simper's coefficients: `g = tan(pi fc/fs)`, `k = 1/q`, `a1 = 1/(1 + g(g + k))`,
/// `a2 = g a1`, `a3 = g a2`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Coefs {
    k: f64,
    a1: f64,
    a2: f64,
    a3: f64,
}

impl Coefs {
    fn new(sample_rate: f64, cutoff: f64, q: f64) -> Coefs {
        let fc = cutoff.clamp(1.0, sample_rate * MAX_CUTOFF_FRACTION);
        let g = (std::f64::consts::PI * fc / sample_rate).tan();
        let k = 1.0 / q.max(0.01);
        let a1 = 1.0 / (1.0 + g * (g + k));
        let a2 = g * a1;
        Coefs {
            k,
            a1,
            a2,
            a3: g * a2,
        }
    }
}

/// Filter state: mode, smoothed cutoff and q, coefficients in use, integrator memories.
#[derive(Debug, Clone)]
pub struct Svf {
    sample_rate: f64,
    params: Params,
    coefs: Coefs,
    ic1: f64,
    ic2: f64,
    /// True while the coefficients lag the parameter targets.
    gliding: bool,
    /// The crossfade between modes.
    fade: ChoiceFade,
}

impl Svf {
    /// A lowpass at the default cutoff and q, with silent memories.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let p = SPEC.params;
        Svf {
            sample_rate: f64::from(sr),
            params: Params::new(&SPEC, sr)
                .instant(&[MODE])
                .geometric(&[CUTOFF, Q], FILTER_RAMP_MS),
            coefs: Coefs::new(
                f64::from(sr),
                f64::from(p[CUTOFF].default),
                f64::from(p[Q].default),
            ),
            ic1: 0.0,
            ic2: 0.0,
            gliding: false,
            fade: ChoiceFade::new(0, sr),
        }
    }

    /// The response being played now.
    pub fn mode(&self) -> Mode {
        Mode::from_index(mode_index(self.params[MODE].target()))
    }
}

/// One sample of the core: updates the memories and returns input, band and low
/// (`v0`, `v1`, `v2`).
#[inline(always)]
fn core(c: &Coefs, x: f32, ic1: &mut f64, ic2: &mut f64) -> (f64, f64, f64) {
    let v0 = f64::from(sanitize(x));
    let v3 = v0 - *ic2;
    let v1 = c.a1 * *ic1 + c.a2 * v3;
    let v2 = *ic2 + c.a2 * *ic1 + c.a3 * v3;
    *ic1 = flush64(2.0 * v1 - *ic1);
    *ic2 = flush64(2.0 * v2 - *ic2);
    (v0, v1, v2)
}

/// The output of `mode` from the core's signals.
#[inline(always)]
fn select(c: &Coefs, mode: Mode, (v0, v1, v2): (f64, f64, f64)) -> f64 {
    match mode {
        Mode::Lowpass => v2,
        Mode::Highpass => v0 - c.k * v1 - v2,
        Mode::Bandpass => c.k * v1,
        Mode::Notch => v0 - c.k * v1,
    }
}

/// One sample of the core; returns the selected output and updates the memories.
#[inline(always)]
fn step(c: &Coefs, mode: Mode, x: f32, ic1: &mut f64, ic2: &mut f64) -> f32 {
    select(c, mode, core(c, x, ic1, ic2)) as f32
}

impl Module for Svf {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn param_changed(&mut self, index: usize) {
        if index == CUTOFF || index == Q {
            self.gliding = true;
        } else if index == MODE {
            self.fade.switch(mode_index(self.params[MODE].target()));
        }
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let x = input(inputs, 0);
        let (mut ic1, mut ic2) = (self.ic1, self.ic2);
        let mode = self.mode();
        if self.fade.is_fading() {
            for (o, &x) in out.iter_mut().zip(x) {
                if self.gliding {
                    let c = self.params[CUTOFF].next();
                    let q = self.params[Q].next();
                    self.coefs = Coefs::new(self.sample_rate, f64::from(c), f64::from(q));
                    self.gliding = !(self.params[CUTOFF].is_settled() && self.params[Q].is_settled());
                }
                let v = core(&self.coefs, x, &mut ic1, &mut ic2);
                let mut y = 0.0;
                for (i, w) in self.fade.weights().into_iter().enumerate().take(4) {
                    if w != 0.0 {
                        y += f64::from(w) * select(&self.coefs, Mode::from_index(i as u8), v);
                    }
                }
                *o = y as f32;
            }
        } else if self.gliding {
            for (o, &x) in out.iter_mut().zip(x) {
                if self.gliding {
                    let c = self.params[CUTOFF].next();
                    let q = self.params[Q].next();
                    self.coefs = Coefs::new(self.sample_rate, f64::from(c), f64::from(q));
                    self.gliding = !(self.params[CUTOFF].is_settled() && self.params[Q].is_settled());
                }
                *o = step(&self.coefs, mode, x, &mut ic1, &mut ic2);
            }
        } else {
            let c = self.coefs;
            for (o, &x) in out.iter_mut().zip(x) {
                *o = step(&c, mode, x, &mut ic1, &mut ic2);
            }
        }
        self.ic1 = ic1;
        self.ic2 = ic2;
    }

    fn clear(&mut self) {
        self.coefs = Coefs::new(
            self.sample_rate,
            f64::from(self.params[CUTOFF].target()),
            f64::from(self.params[Q].target()),
        );
        self.ic1 = 0.0;
        self.ic2 = 0.0;
        self.gliding = false;
        self.fade.settle();
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        let c = &self.coefs;
        for v in [c.k, c.a1, c.a2, c.a3, self.ic1, self.ic2] {
            w.put_f64(v);
        }
        w.put_bool(self.gliding);
        self.fade.save(w);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.coefs = Coefs {
            k: r.get_f64()?,
            a1: r.get_f64()?,
            a2: r.get_f64()?,
            a3: r.get_f64()?,
        };
        self.ic1 = r.get_f64()?;
        self.ic2 = r.get_f64()?;
        self.gliding = r.get_bool()?;
        self.fade.load(r, 4)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{gain_db, render, SR};

    fn svf(mode: f32, cutoff: f32, q: f32) -> Svf {
        let mut f = Svf::new(SR);
        f.set_param(MODE, mode);
        f.set_param(CUTOFF, cutoff);
        f.set_param(Q, q);
        f.reset();
        f
    }

    /// The analytic response of the trapezoidal SVF: the analog prototype at the
    /// prewarped frequency.
    fn analytic_db(mode: u8, cutoff: f64, q: f64, f: f64) -> f64 {
        let sr = f64::from(SR);
        let w = (std::f64::consts::PI * f / sr).tan() / (std::f64::consts::PI * cutoff / sr).tan();
        let k = 1.0 / q;
        // Denominator 1 - w^2 + j k w.
        let (dr, di) = (1.0 - w * w, k * w);
        let (nr, ni) = match mode {
            0 => (1.0, 0.0),
            1 => (-w * w, 0.0),
            2 => (0.0, k * w),
            _ => (1.0 - w * w, 0.0),
        };
        10.0 * ((nr * nr + ni * ni) / (dr * dr + di * di)).log10()
    }

    #[test]
    fn every_mode_matches_the_analytic_response_within_a_tenth_db() {
        for mode in 0..4u8 {
            for (cutoff, q) in [(1000.0f32, 0.707f32), (2000.0, 4.0), (300.0, 0.5)] {
                for f in [100.0, 500.0, 1000.0, 2000.0, 5000.0] {
                    let want = analytic_db(mode, f64::from(cutoff), f64::from(q), f);
                    if want < -80.0 {
                        continue; // the notch's zero: measurement noise, not response
                    }
                    let mut filter = svf(f32::from(mode), cutoff, q);
                    let got = gain_db(&mut filter, 1, 0, f, 0.5);
                    assert!(
                        (got - want).abs() < 0.1,
                        "mode {mode} cutoff {cutoff} q {q} at {f} Hz: {got:.3} vs {want:.3} dB"
                    );
                }
            }
        }
    }

    #[test]
    fn known_points() {
        // Butterworth lowpass and highpass: -3 dB at the cutoff; bandpass 0 dB there;
        // notch very deep there.
        let at = |mode: f32| gain_db(&mut svf(mode, 1000.0, 0.707), 1, 0, 1000.0, 0.5);
        assert!((at(0.0) + 3.01).abs() < 0.05);
        assert!((at(1.0) + 3.01).abs() < 0.05);
        assert!(at(2.0).abs() < 0.05);
        assert!(at(3.0) < -60.0);
    }

    #[test]
    fn audio_rate_sweeps_stay_stable_and_bounded() {
        let mut f = svf(0.0, 1000.0, 20.0);
        let x: Vec<f32> = (0..48_000)
            .map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0)
            .collect();
        for (b, block) in x.chunks(32).enumerate() {
            f.set_param(CUTOFF, if b % 2 == 0 { 20.0 } else { 18_000.0 });
            f.set_param(MODE, (b % 4) as f32);
            let mut out = [0.0f32; 32];
            f.process(&[block], &mut [&mut out]);
            assert!(
                out.iter().all(|v| v.is_finite() && v.abs() < 100.0),
                "block {b}"
            );
        }
    }

    #[test]
    fn silence_decays_to_exact_zero() {
        let mut f = svf(0.0, 20.0, 20.0);
        let mut x = vec![0.0f32; 48_000 * 20];
        x[0] = 1.0;
        let out = render(&mut f, &[x], 1).remove(0);
        assert_eq!((f.ic1, f.ic2), (0.0, 0.0));
        assert_eq!(*out.last().unwrap(), 0.0);
    }
}
