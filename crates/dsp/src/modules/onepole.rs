//! `onepole`: a one-pole (6 dB/octave) lowpass or highpass, the gentle smoother.
//!
//! For taming control signals (smoothing a stepped LFO or sequencer, de-zippering a CV)
//! and for gentle tone shaping. A trapezoidal (TPT) one-pole: `G = g/(1+g)`,
//! `g = tan(pi fc/fs)`; `lp = G (x - s) + s`, `s' = 2 lp - s`; `hp = x - lp`. Its response
//! is the analog `1/(1+s)` (lowpass) and `s/(1+s)` (highpass) at the prewarped
//! frequency, -3 dB at the cutoff. `mode` 0 lowpass, 1 highpass; a switch crossfades the
//! two outputs of the one core over 10 ms (exact, no transient). The cutoff glides
//! geometrically (evenly in pitch) over [`FILTER_RAMP_MS`] with the coefficient
//! recomputed every sample of the glide. The memory is f64, flushed below 1e-20 every
//! sample.

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

/// Highest cutoff used, as a fraction of the sample rate.
pub const MAX_CUTOFF_FRACTION: f64 = 0.49;

/// Static description of the `onepole` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "onepole",
    doc: "One-pole 6 dB/oct lowpass or highpass: smooths control signals, gentle tone shaping.",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::number("mode", 0.0..=1.0, 0.0)
            .doc("0 lowpass, 1 highpass (rounded to the nearest); a switch crossfades over 10 ms."),
        ParamSpec::hz("cutoff", 10.0..=20_000.0, 1_000.0)
            .doc("-3 dB frequency; glides evenly in pitch over 30 ms; held below 0.49 x sample rate."),
    ],
    has_gate: false,
};

/// Stage gain `G = g/(1+g)` for a cutoff.
fn stage_gain(sample_rate: f64, cutoff: f64) -> f64 {
    let fc = cutoff.clamp(1.0, sample_rate * MAX_CUTOFF_FRACTION);
    let g = (std::f64::consts::PI * fc / sample_rate).tan();
    g / (1.0 + g)
}

/// One-pole state: mode, smoothed cutoff, stage gain in use and the memory.
#[derive(Debug, Clone)]
pub struct OnePole {
    sample_rate: f64,
    params: Params,
    gain: f64,
    s: f64,
    gliding: bool,
    /// The crossfade between lowpass and highpass.
    fade: ChoiceFade,
}

impl OnePole {
    /// A lowpass at the default cutoff with a silent memory.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let cutoff = SPEC.params[CUTOFF].default;
        OnePole {
            sample_rate: f64::from(sr),
            params: Params::new(&SPEC, sr)
                .instant(&[MODE])
                .geometric(&[CUTOFF], FILTER_RAMP_MS),
            gain: stage_gain(f64::from(sr), f64::from(cutoff)),
            s: 0.0,
            gliding: false,
            fade: ChoiceFade::new(0, sr),
        }
    }
}

impl Module for OnePole {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn param_changed(&mut self, index: usize) {
        if index == CUTOFF {
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
        let mut s = self.s;
        let highpass = mode_index(self.params[MODE].target()) == 1;
        for (o, &x) in out.iter_mut().zip(x) {
            if self.gliding {
                let c = self.params[CUTOFF].next();
                self.gain = stage_gain(self.sample_rate, f64::from(c));
                self.gliding = !self.params[CUTOFF].is_settled();
            }
            let x = f64::from(sanitize(x));
            let lp = (x - s) * self.gain + s;
            s = flush64(2.0 * lp - s);
            *o = if self.fade.is_fading() {
                let w = self.fade.weights();
                f64::from(w[0]) * lp + f64::from(w[1]) * (x - lp)
            } else if highpass {
                x - lp
            } else {
                lp
            } as f32;
        }
        self.s = s;
    }

    fn clear(&mut self) {
        self.gain = stage_gain(self.sample_rate, f64::from(self.params[CUTOFF].target()));
        self.s = 0.0;
        self.gliding = false;
        self.fade.settle();
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_f64(self.gain);
        w.put_f64(self.s);
        w.put_bool(self.gliding);
        self.fade.save(w);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.gain = r.get_f64()?;
        self.s = r.get_f64()?;
        self.gliding = r.get_bool()?;
        self.fade.load(r, 2)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{gain_db, render, SR};

    fn onepole(mode: f32, cutoff: f32) -> OnePole {
        let mut f = OnePole::new(SR);
        f.set_param(MODE, mode);
        f.set_param(CUTOFF, cutoff);
        f.reset();
        f
    }

    fn analytic_db(highpass: bool, cutoff: f64, f: f64) -> f64 {
        let sr = f64::from(SR);
        let w = (std::f64::consts::PI * f / sr).tan() / (std::f64::consts::PI * cutoff / sr).tan();
        let num = if highpass { w * w } else { 1.0 };
        10.0 * (num / (1.0 + w * w)).log10()
    }

    #[test]
    fn lowpass_and_highpass_match_the_analytic_response() {
        for (mode, hp) in [(0.0f32, false), (1.0, true)] {
            for cutoff in [100.0f32, 1000.0, 5000.0] {
                for f in [50.0, 200.0, 1000.0, 4000.0, 12_000.0] {
                    let want = analytic_db(hp, f64::from(cutoff), f);
                    let got = gain_db(&mut onepole(mode, cutoff), 1, 0, f, 0.5);
                    assert!(
                        (got - want).abs() < 0.1,
                        "mode {mode} cutoff {cutoff} at {f}: {got:.3} vs {want:.3}"
                    );
                }
            }
        }
        // -3 dB at the cutoff, both modes.
        assert!((analytic_db(false, 1000.0, 1000.0) + 3.0103).abs() < 1e-3);
    }

    #[test]
    fn smooths_a_step_and_lowpass_plus_highpass_is_the_input() {
        let x: Vec<f32> = (0..4800).map(|i| if i < 100 { 0.0 } else { 1.0 }).collect();
        let lp = render(&mut onepole(0.0, 10.0), std::slice::from_ref(&x), 1).remove(0);
        let hp = render(&mut onepole(1.0, 10.0), std::slice::from_ref(&x), 1).remove(0);
        assert!(lp.windows(2).all(|w| w[1] >= w[0]), "monotonic rise");
        assert!(lp[4799] > 0.9 && lp[4799] < 1.0);
        for ((l, h), x) in lp.iter().zip(&hp).zip(&x) {
            assert!((l + h - x).abs() < 1e-6);
        }
    }
}
