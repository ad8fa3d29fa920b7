//! `sine`: a sine oscillator with smoothed frequency and gain.
//!
//! The phase is an exact fixed-point accumulator: 52 fractional bits of a cycle in a `u64`,
//! advanced by integer additions, so it never drifts (no rounding accumulates, the pitch
//! is exact to 48 kHz / 2^52 ≈ 1e-11 Hz) and the samples do not depend on how blocks are
//! split (sample n's phase is the start phase plus n increments, exactly). It is saved in
//! snapshots as an `f64` in cycles, which holds 52 fractional bits exactly.
//!
//! The sine itself is a degree-9 odd minimax-style polynomial on a quarter cycle, in f32:
//! its own error is below 7e-9 of full scale, and the 24 phase bits it reads bound the
//! phase error to 2^-24 cycle, so harmonics and spurs stay far below -100 dB (the
//! `purity_*` test measures them). While neither parameter glides and the `fm` input
//! holds one value for the block, a block is one branch-free loop that the compiler
//! vectorises.
//!
//! The `fm` input is linear FM in Hz, added to `freq` per sample (through zero: a
//! negative sum runs the phase backwards), as the table oscillators' `fm`; a `note`
//! module's `freq` output drives it, with the sine's own `freq` at 0. Unconnected it
//! reads 0, and the sine gives the same bits as without the input.

use super::bandlimited::fm_freq;
use super::table_oscillator::{constant, FM_IN};
use crate::module::{sane_sample_rate, Module};
use crate::modules::common::round_to_i64;
use crate::params::Params;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `freq` parameter.
pub const FREQ: usize = 0;
/// Index of the `gain` parameter.
pub const GAIN: usize = 1;

/// Static description of the `sine` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "sine",
    doc: "Sine oscillator: the plainest tone source, and a test signal.",
    inputs: FM_IN,
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::hz("freq", 0.0..=20_000.0, 440.0)
            .doc("Oscillator frequency (glides over 10 ms); the fm input in Hz is added to it."),
        ParamSpec::linear("gain", 0.0..=1.0, 0.5).doc("Output amplitude (glides over 10 ms)."),
    ],
    has_gate: false,
};

/// Fractional bits of the fixed-point phase: a whole cycle is `1 << PHASE_BITS`.
pub const PHASE_BITS: u32 = 52;
/// Mask of the phase bits (the phase is kept modulo one cycle).
const PHASE_MASK: u64 = (1 << PHASE_BITS) - 1;
/// One cycle in phase units, as f64 (exact).
const PHASE_ONE: f64 = (1u64 << PHASE_BITS) as f64;
/// Phase bits the polynomial reads (the top of the 52), which f32 holds exactly.
const LOOKUP_BITS: u32 = 24;

/// Polynomial for `sin(2 pi t) / t` in `u = t^2`, `|t| <= 1/4` (a Chebyshev fit; highest
/// power first). Maximum error of `t * p(t^2)` against `sin(2 pi t)`: 6.7e-9.
const SIN_POLY: [f32; 5] = [
    39.759_827,
    -76.581_17,
    81.602_48,
    -41.341_682,
    // The fitted 6.283_185_280 rounds to the same f32 as 2 pi.
    std::f32::consts::TAU,
];

/// `-sin(2 pi x)` for `x` in [0, 1), the core the render loops share (so the vectorised
/// and the per-sample paths give the same bits). Branch-free: the quarter-cycle fold is
/// a select.
#[inline(always)]
fn neg_sin_cycle(x: f32) -> f32 {
    // t in [-0.5, 0.5): sin(2 pi x) = -sin(2 pi t).
    let t = x - 0.5;
    // Fold into [-1/4, 1/4]: sin(2 pi t) = sin(2 pi (sign(t)/2 - t)); exact subtraction.
    let r = if t.abs() > 0.25 {
        0.5f32.copysign(t) - t
    } else {
        t
    };
    let u = r * r;
    let [c9, c7, c5, c3, c1] = SIN_POLY;
    r * ((((c9 * u + c7) * u + c5) * u + c3) * u + c1)
}

/// Phase (52-bit fixed point, any high bits ignored) to the f32 cycle position [0, 1).
#[inline(always)]
fn cycle_position(phase: u64) -> f32 {
    let top = ((phase & PHASE_MASK) >> (PHASE_BITS - LOOKUP_BITS)) as i32;
    top as f32 * (1.0 / (1u32 << LOOKUP_BITS) as f32)
}

/// Sine oscillator state: fixed-point phase plus the two parameter smoothers.
#[derive(Debug, Clone)]
pub struct Sine {
    /// Phase units per hertz: 2^52 / sample rate.
    units_per_hz: f64,
    /// Phase in 1/2^52 cycles, in [0, 2^52).
    phase: u64,
    params: Params,
}

impl Sine {
    /// A sine at the default frequency and gain, phase 0.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        Sine {
            units_per_hz: PHASE_ONE / f64::from(sr),
            phase: 0,
            params: Params::new(&SPEC, sample_rate),
        }
    }

    /// Current phase in cycles, in [0, 1).
    pub fn phase(&self) -> f64 {
        self.phase as f64 / PHASE_ONE
    }

    /// Phase increment per sample at `freq` Hz (rounded to the nearest unit), as the
    /// two's complement of the decrement for a negative frequency.
    #[inline]
    fn increment(&self, freq: f32) -> u64 {
        // freq (with fm, through `fm_freq`) is within ±20 kHz, so this is finite and far
        // inside ±2^63; the cast through i64 wraps a negative one (the same bits as a
        // plain cast to u64 for a positive one).
        round_to_i64(f64::from(freq) * self.units_per_hz) as u64
    }
}

impl Module for Sine {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Its output is a polynomial of a cycle position in [0, 1) (at most 1 in size)
    /// times the gain, which stays near its range even when read from a snapshot
    /// (`Params::load`); the `fm` input only moves the phase, through `fm_freq`, which
    /// takes a non-finite sample as 0 and clamps the sum.
    fn always_finite(&self) -> bool {
        true
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let fm = inputs.first().copied().unwrap_or(&[]);
        // The phase wraps modulo 2^64 inside the loops (a plain induction variable the
        // vectoriser understands); only its low 52 bits are ever read.
        let mut phase = self.phase;
        let steady = self.params[FREQ].is_settled() && self.params[GAIN].is_settled();
        if let (Some(fm), true) = (constant(fm), steady) {
            // `fm_freq(freq, 0.0)` is `freq` itself: unconnected, the same bits as a
            // sine without the input.
            let inc = self.increment(fm_freq(self.params[FREQ].current(), fm));
            let neg_gain = -self.params[GAIN].current();
            for o in out.iter_mut() {
                *o = neg_sin_cycle(cycle_position(phase)) * neg_gain;
                phase = phase.wrapping_add(inc);
            }
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                let freq = fm_freq(self.params[FREQ].next(), fm.get(i).copied().unwrap_or(0.0));
                let inc = self.increment(freq);
                let neg_gain = -self.params[GAIN].next();
                *o = neg_sin_cycle(cycle_position(phase)) * neg_gain;
                phase = phase.wrapping_add(inc);
            }
        }
        self.phase = phase & PHASE_MASK;
    }

    fn clear(&mut self) {
        self.phase = 0;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        // Exact: a value below 2^53 scaled by a power of two.
        w.put_f64(self.phase());
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let offset = r.position();
        let phase = r.get_f64()?;
        if !(0.0..1.0).contains(&phase) {
            return Err(StateError::InvalidValue {
                what: "sine phase",
                offset,
            });
        }
        // Exact for every phase `save_state` writes; other values round down to the grid.
        self.phase = (phase * PHASE_ONE) as u64 & PHASE_MASK;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f32 = 48_000.0;

    fn render(m: &mut Sine, n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; n];
        for chunk in out.chunks_mut(64) {
            m.process(&[], &mut [chunk]);
        }
        out
    }

    #[test]
    fn frequency_by_zero_crossings() {
        for freq in [50.0f32, 440.0, 1234.0, 9000.0] {
            let mut s = Sine::new(SR);
            s.set_param(FREQ, freq);
            s.reset();
            let out = render(&mut s, SR as usize);
            let rising = out.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
            assert!(
                (rising as f32 - freq).abs() <= 1.0,
                "{freq} Hz gave {rising} rising crossings in 1 s"
            );
        }
    }

    #[test]
    fn frequency_by_dft_bin_and_amplitude() {
        let mut s = Sine::new(SR);
        s.set_param(GAIN, 0.8);
        s.reset();
        let n = SR as usize;
        let out = render(&mut s, n);
        let bin = |f: f64| {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            for (i, &x) in out.iter().enumerate() {
                let w = std::f64::consts::TAU * f * i as f64 / f64::from(SR);
                re += f64::from(x) * w.cos();
                im += f64::from(x) * w.sin();
            }
            2.0 * (re * re + im * im).sqrt() / n as f64
        };
        let a = bin(440.0);
        assert!((a - 0.8).abs() < 1e-3, "amplitude at 440 Hz: {a}");
        assert!(bin(441.0) < 1e-3 && bin(439.0) < 1e-3);
        let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!((peak - 0.8).abs() < 1e-3, "peak {peak}");
    }

    #[test]
    fn param_clamped_and_reported() {
        let mut s = Sine::new(SR);
        s.set_param(FREQ, 1e9);
        assert_eq!(s.param(FREQ), 20_000.0);
        s.set_param(GAIN, f32::NAN);
        assert_eq!(s.param(GAIN), 0.5);
        s.set_param(99, 1.0);
        assert_eq!(s.param(99), 0.0);
    }

    fn max_step(out: &[f32]) -> f32 {
        out.windows(2)
            .fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()))
    }

    #[test]
    fn freq_jump_glides_without_steps() {
        let mut s = Sine::new(SR);
        s.set_param(GAIN, 1.0);
        s.set_param(FREQ, 100.0);
        s.reset();
        let _ = render(&mut s, 1000);
        s.set_param(FREQ, 5000.0);
        let out = render(&mut s, 4800);
        // A sine of amplitude 1 at 5 kHz changes by at most 2*pi*f/sr per sample.
        let limit = std::f32::consts::TAU * 5000.0 / SR;
        assert!(max_step(&out) <= limit + 1e-3, "{}", max_step(&out));
    }

    #[test]
    fn gain_jump_glides_without_steps() {
        let mut s = Sine::new(SR);
        s.set_param(GAIN, 0.0);
        s.reset();
        let _ = render(&mut s, 1000);
        s.set_param(GAIN, 1.0);
        let out = render(&mut s, 4800);
        let limit = std::f32::consts::TAU * 440.0 / SR + 1.0 / 480.0;
        assert!(max_step(&out) <= limit + 1e-4, "{}", max_step(&out));
        // And it arrives.
        let peak = out[2400..].iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!((peak - 1.0).abs() < 1e-3);
    }

    fn render_fm(m: &mut Sine, fm: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; fm.len()];
        for (o, f) in out.chunks_mut(64).zip(fm.chunks(64)) {
            m.process(&[f], &mut [o]);
        }
        out
    }

    #[test]
    fn fm_adds_hertz_and_a_steady_fm_is_a_plain_freq() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        // freq 0 with the pitch at fm (a note's freq output) gives the bits of freq alone;
        // so does an fm of zeros beside no input at all.
        let mut plain = Sine::new(SR);
        plain.set_param(FREQ, 261.625_58);
        plain.reset();
        let mut by_fm = Sine::new(SR);
        by_fm.set_param(FREQ, 0.0);
        by_fm.reset();
        let mut zeros = Sine::new(SR);
        zeros.set_param(FREQ, 261.625_58);
        zeros.reset();
        let n = 4096;
        let expected = render(&mut plain, n);
        assert_eq!(bits(&render_fm(&mut by_fm, &vec![261.625_58; n])), bits(&expected));
        assert_eq!(bits(&render_fm(&mut zeros, &vec![0.0; n])), bits(&expected));
        // A varying fm moves the pitch per sample: 440 + 440 Hz counts 880 crossings.
        let mut s = Sine::new(SR);
        s.set_param(FREQ, 440.0);
        s.reset();
        let fm: Vec<f32> = (0..SR as usize).map(|i| 440.0 + (i % 2) as f32 * 1e-3).collect();
        let out = render_fm(&mut s, &fm);
        let rising = out.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!((rising as f32 - 880.0).abs() <= 1.0, "{rising}");
        // Through zero: a negative sum runs the phase backwards (a sine of the opposite
        // sign), and the phase stays in range.
        let mut fwd = Sine::new(SR);
        fwd.set_param(FREQ, 300.0);
        fwd.reset();
        let mut back = Sine::new(SR);
        back.set_param(FREQ, 0.0);
        back.reset();
        let (x, y) = (render(&mut fwd, 960), render_fm(&mut back, &vec![-300.0; 960]));
        assert!(x.iter().zip(&y).all(|(a, b)| (a + b).abs() < 1e-6));
        assert!((0.0..1.0).contains(&back.phase()));
    }

    #[test]
    fn long_run_keeps_phase_in_range() {
        let mut s = Sine::new(SR);
        s.set_param(FREQ, 20_000.0);
        s.reset();
        let _ = render(&mut s, 100_000);
        assert!((0.0..1.0).contains(&s.phase()));
    }

    /// In-place radix-2 FFT (f64), enough for a purity measurement.
    fn fft(re: &mut [f64], im: &mut [f64]) {
        let n = re.len();
        let mut j = 0;
        for i in 1..n {
            let mut bit = n >> 1;
            while j & bit != 0 {
                j ^= bit;
                bit >>= 1;
            }
            j |= bit;
            if i < j {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= n {
            let ang = -std::f64::consts::TAU / len as f64;
            for start in (0..n).step_by(len) {
                for k in 0..len / 2 {
                    let (ws, wc) = (ang * k as f64).sin_cos();
                    let (a, b) = (start + k, start + k + len / 2);
                    let (tr, ti) = (re[b] * wc - im[b] * ws, re[b] * ws + im[b] * wc);
                    re[b] = re[a] - tr;
                    im[b] = im[a] - ti;
                    re[a] += tr;
                    im[a] += ti;
                }
            }
            len <<= 1;
        }
    }

    /// Renders `n` samples of a full-scale sine at exactly `bin` cycles per `n` samples
    /// (so no window is needed: every other bin is leakage-free) and returns
    /// (THD of harmonics 2..=20, strongest other bin), both in dB below the fundamental.
    fn purity_db(bin: usize, n: usize) -> (f64, f64) {
        let freq = bin as f64 * f64::from(SR) / n as f64;
        let mut s = Sine::new(SR);
        s.set_param(FREQ, freq as f32);
        s.set_param(GAIN, 1.0);
        s.reset();
        assert_eq!(
            f64::from(s.param(FREQ)),
            freq,
            "choose an f32-exact frequency"
        );
        let out = render(&mut s, n);
        let mut re: Vec<f64> = out.iter().map(|&x| f64::from(x)).collect();
        let mut im = vec![0.0; n];
        fft(&mut re, &mut im);
        let power = |k: usize| re[k] * re[k] + im[k] * im[k];
        let fundamental = power(bin);
        let harmonics: f64 = (2..=20)
            .map(|h| h * bin)
            .filter(|&k| k < n / 2)
            .map(power)
            .sum();
        let spur = (0..n / 2)
            .filter(|&k| k != bin)
            .map(power)
            .fold(0.0, f64::max);
        let db = |p: f64| 10.0 * (p / fundamental).log10();
        (db(harmonics), db(spur))
    }

    #[test]
    fn purity_harmonics_and_spurs_below_minus_100_db() {
        // 440.19 Hz, 5.13 kHz and 15.0 kHz at 48 kHz, over 65536 samples.
        for bin in [601usize, 7001, 20_480] {
            let (thd, spur) = purity_db(bin, 1 << 16);
            eprintln!("sine bin {bin}: THD {thd:.1} dB, worst spur {spur:.1} dB");
            assert!(thd < -100.0, "bin {bin}: THD {thd:.1} dB");
            assert!(spur < -100.0, "bin {bin}: worst spur {spur:.1} dB");
        }
    }

    #[test]
    fn snapshot_phase_is_exact_and_validated() {
        let mut a = Sine::new(SR);
        a.set_param(FREQ, 1234.5);
        let _ = render(&mut a, 777);
        let mut buf = vec![0u8; a.state_len()];
        let mut w = StateWriter::new(&mut buf);
        a.save_state(&mut w);
        assert_eq!(w.finish(), Ok(a.state_len()));
        let mut b = Sine::new(SR);
        b.load_state(&mut StateReader::new(&buf)).unwrap();
        assert_eq!(a.phase, b.phase);
        assert_eq!(render(&mut a, 300), render(&mut b, 300));
        // The phase follows the parameters (the freq and gain smoothers).
        let at = 2 * crate::smoother::Smoother::STATE_LEN;
        for bad in [f64::NAN, f64::INFINITY, 1.0, -0.25] {
            buf[at..at + 8].copy_from_slice(&bad.to_le_bytes());
            let err = Sine::new(SR)
                .load_state(&mut StateReader::new(&buf))
                .unwrap_err();
            assert!(matches!(
                err,
                StateError::InvalidValue {
                    what: "sine phase",
                    ..
                }
            ));
        }
    }
}
