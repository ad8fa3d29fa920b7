//! `sine`: a sine oscillator with smoothed frequency and gain.
//!
//! The phase accumulates in f64 so that long renders do not drift in pitch; the sine
//! itself is evaluated in f32, which is all the output precision needs.

use crate::module::{sane_sample_rate, Module};
use crate::smoother::Smoother;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec, Rate, Unit};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `freq` parameter.
pub const FREQ: usize = 0;
/// Index of the `gain` parameter.
pub const GAIN: usize = 1;

/// Static description of the `sine` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "sine",
    doc: "Sine oscillator: the plainest tone source, and a test signal.",
    inputs: &[],
    outputs: &[PortSpec {
        name: "out",
        rate: Rate::Audio,
    }],
    params: &[
        ParamSpec {
            name: "freq",
            unit: Unit::Hertz,
            min: 0.01,
            max: 20_000.0,
            default: 440.0,
            doc: "Oscillator frequency (glides over 10 ms).",
        },
        ParamSpec {
            name: "gain",
            unit: Unit::Linear,
            min: 0.0,
            max: 1.0,
            default: 0.5,
            doc: "Output amplitude (glides over 10 ms).",
        },
    ],
    has_gate: false,
};

/// Sine oscillator state: phase plus the two parameter smoothers.
#[derive(Debug, Clone)]
pub struct Sine {
    sample_rate: f64,
    /// Phase in cycles, in [0, 1).
    phase: f64,
    freq: Smoother,
    gain: Smoother,
}

impl Sine {
    /// A sine at the default frequency and gain, phase 0.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        Sine {
            sample_rate: f64::from(sr),
            phase: 0.0,
            freq: Smoother::with_default_ramp(SPEC.params[FREQ].default, sr),
            gain: Smoother::with_default_ramp(SPEC.params[GAIN].default, sr),
        }
    }

    fn smoother(&self, index: usize) -> Option<&Smoother> {
        match index {
            FREQ => Some(&self.freq),
            GAIN => Some(&self.gain),
            _ => None,
        }
    }
}

impl Module for Sine {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn set_param(&mut self, index: usize, value: f32) {
        let Some(p) = SPEC.params.get(index) else {
            return;
        };
        let v = p.clamp(value);
        match index {
            FREQ => self.freq.set_target(v),
            GAIN => self.gain.set_target(v),
            _ => {}
        }
    }

    fn param(&self, index: usize) -> f32 {
        self.smoother(index).map_or(0.0, Smoother::target)
    }

    fn process(&mut self, _inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let inv_sr = 1.0 / self.sample_rate;
        for o in out.iter_mut() {
            let f = f64::from(self.freq.next());
            let g = self.gain.next();
            *o = ((self.phase * std::f64::consts::TAU) as f32).sin() * g;
            self.phase += f * inv_sr;
            if self.phase >= 1.0 {
                self.phase -= self.phase.floor();
            }
        }
    }

    fn reset(&mut self) {
        self.phase = 0.0;
        self.freq.settle();
        self.gain.settle();
    }

    fn state_len(&self) -> usize {
        8 + 2 * Smoother::STATE_LEN
    }

    fn save_state(&self, w: &mut StateWriter<'_>) {
        w.put_f64(self.phase);
        self.freq.save_state(w);
        self.gain.save_state(w);
    }

    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.phase = r.get_f64()?;
        self.freq.load_state(r)?;
        self.gain.load_state(r)?;
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

    #[test]
    fn long_run_keeps_phase_in_range() {
        let mut s = Sine::new(SR);
        s.set_param(FREQ, 20_000.0);
        s.reset();
        let _ = render(&mut s, 100_000);
        assert!((0.0..1.0).contains(&s.phase));
    }
}
