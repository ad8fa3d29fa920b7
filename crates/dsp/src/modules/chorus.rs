//! `chorus`: three modulated delay voices that thicken a sound into an ensemble.
//!
//! Each voice reads the input [`BASE_MS`] ms back, moved by `depth` ms either way by a
//! sine LFO at `rate` Hz; the three LFOs are a third of a cycle apart, so the voices
//! never bend the same way at once. Reads use cubic Hermite interpolation.
//!
//! Outputs: `out` is mono (dry plus the three voices averaged); `left` and `right` put
//! voice 1 and voice 2 on their own side with voice 3 in the middle, for a wide stereo
//! chorus. `mix` crossfades linearly: `dry * (1 - mix) + wet * mix`.
//!
//! The delay buffer (about 27 ms) is allocated at creation and is part of the snapshot,
//! with the LFO phase. Depth glides over [`DEPTH_RAMP_MS`], mix over 10 ms; a rate change keeps the phase
//! (no jump). No feedback, so nothing recirculates.

use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::modules::common::{
    flush, hermite, input, load_buffer, load_index, sanitize, save_buffer,
};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `rate` parameter.
pub const RATE: usize = 0;
/// Index of the `depth` parameter.
pub const DEPTH: usize = 1;
/// Index of the `mix` parameter.
pub const MIX: usize = 2;

/// Centre delay of the voices.
pub const BASE_MS: f32 = 15.0;
/// Largest `depth` (the buffer is sized for `BASE_MS + MAX_DEPTH_MS`).
pub const MAX_DEPTH_MS: f32 = 10.0;
/// Glide time of `depth`: the delay of each voice moves with it, so a 10 ms glide of a
/// 10 ms depth bent the voices by up to an octave; over 100 ms the bend stays a few
/// percent, like the modulation itself.
pub const DEPTH_RAMP_MS: f32 = 100.0;
/// Number of voices.
pub const VOICES: usize = 3;

/// Static description of the `chorus` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "chorus",
    doc: "Three-voice chorus: LFO-modulated delays a third of a cycle apart; mono out plus a wide left/right pair.",
    inputs: &[PortSpec::audio("in")],
    outputs: &[
        PortSpec::audio("out"),
        PortSpec::audio("left"),
        PortSpec::audio("right"),
    ],
    params: &[
        ParamSpec::hz("rate", 0.01..=10.0, 0.8).doc("LFO speed of the delay modulation."),
        ParamSpec::ms("depth", 0.0..=10.0, 3.0).doc("How far each voice's delay swings either side of 15 ms; glides over 100 ms (a faster glide would bend the pitch)."),
        ParamSpec::linear("mix", 0.0..=1.0, 0.5).doc("Wet share, linear: dry x (1 - mix) + wet x mix; glides over 10 ms."),
    ],
    has_gate: false,
};

/// Chorus state: parameters, LFO phase, the delay line and its write position.
#[derive(Debug, Clone)]
pub struct Chorus {
    samples_per_ms: f32,
    sample_rate: f64,
    params: Params,
    /// LFO phase in cycles, 0..1.
    phase: f64,
    buf: Vec<f32>,
    pos: usize,
}

impl Chorus {
    /// A chorus at the default settings with a silent line; allocates the line.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let len = (f64::from(BASE_MS + MAX_DEPTH_MS) * f64::from(sr) / 1000.0).ceil() as usize + 4;
        Chorus {
            samples_per_ms: sr / 1000.0,
            sample_rate: f64::from(sr),
            params: Params::new(&SPEC, sr)
                .instant(&[RATE])
                .glide_ms(&[DEPTH], DEPTH_RAMP_MS),
            phase: 0.0,
            buf: vec![0.0; len],
            pos: 0,
        }
    }

    /// Reads the line `d` samples back from the next write position.
    #[inline]
    fn read(&self, d: f32) -> f32 {
        let len = self.buf.len();
        let d = d.clamp(2.0, (len - 4) as f32);
        // In range and positive: truncation is the integer part.
        let whole = d as usize;
        let t = d - whole as f32;
        // k is 1..len-1 and pos < len, so one subtraction wraps.
        let at = |k: usize| {
            let mut i = self.pos + len - k;
            if i >= len {
                i -= len;
            }
            self.buf.get(i).copied().unwrap_or(0.0)
        };
        hermite(at(whole - 1), at(whole), at(whole + 1), at(whole + 2), t)
    }
}

impl Module for Chorus {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let x = input(inputs, 0);
        let [out, rest @ ..] = outputs else {
            return;
        };
        let (left, right): (&mut [f32], &mut [f32]) = match rest {
            [l, r, ..] => (l, r),
            [l] => (l, &mut []),
            [] => (&mut [], &mut []),
        };
        let inc = f64::from(self.params[RATE].target()) / self.sample_rate;
        let len = self.buf.len();
        for (i, &x) in x.iter().enumerate().take(out.len()) {
            let x = sanitize(x);
            let depth = self.params[DEPTH].next() * self.samples_per_ms;
            let mix = self.params[MIX].next();
            let base = BASE_MS * self.samples_per_ms;
            let mut v = [0.0f32; VOICES];
            for (k, v) in v.iter_mut().enumerate() {
                let ph = (self.phase + k as f64 / VOICES as f64) * std::f64::consts::TAU;
                *v = self.read(base + depth * ph.sin() as f32);
            }
            if let Some(slot) = self.buf.get_mut(self.pos) {
                *slot = flush(x);
            }
            self.pos += 1;
            if self.pos >= len {
                self.pos = 0;
            }
            self.phase += inc;
            if self.phase >= 1.0 {
                self.phase -= 1.0;
            }
            let dry = x * (1.0 - mix);
            if let Some(o) = out.get_mut(i) {
                *o = dry + mix * (v[0] + v[1] + v[2]) * (1.0 / 3.0);
            }
            if let Some(o) = left.get_mut(i) {
                *o = dry + mix * (v[0] + 0.5 * v[2]) * (1.0 / 1.5);
            }
            if let Some(o) = right.get_mut(i) {
                *o = dry + mix * (v[1] + 0.5 * v[2]) * (1.0 / 1.5);
            }
        }
    }

    fn clear(&mut self) {
        self.phase = 0.0;
        self.buf.fill(0.0);
        self.pos = 0;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_f64(self.phase);
        w.put_u32(self.pos as u32);
        save_buffer(w, &self.buf);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let offset = r.position();
        self.phase = r.get_f64()?;
        if !(0.0..1.0).contains(&self.phase) {
            return Err(StateError::InvalidValue {
                what: "chorus phase",
                offset,
            });
        }
        self.pos = load_index(r, self.buf.len(), "chorus write position")?;
        load_buffer(r, &mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{bin, render, sine, SR};

    fn chorus(rate: f32, depth: f32, mix: f32) -> Chorus {
        let mut c = Chorus::new(SR);
        c.set_param(RATE, rate);
        c.set_param(DEPTH, depth);
        c.set_param(MIX, mix);
        c.reset();
        c
    }

    #[test]
    fn zero_depth_is_an_exact_15_ms_delay_and_zero_mix_is_dry() {
        let mut x = vec![0.0f32; 2000];
        x[10] = 1.0;
        let outs = render(&mut chorus(1.0, 0.0, 1.0), &[x.clone()], 3);
        for o in &outs {
            assert_eq!(o.iter().position(|&v| v != 0.0), Some(10 + 720));
            assert!((o[730] - 1.0).abs() < 1e-6);
        }
        let outs = render(&mut chorus(1.0, 5.0, 0.0), std::slice::from_ref(&x), 3);
        assert!(outs.iter().all(|o| *o == x));
    }

    #[test]
    fn modulation_spreads_the_spectrum_and_widens_the_stereo() {
        let x = sine(1000.0, 0.5, 96_000);
        let outs = render(&mut chorus(2.0, 5.0, 1.0), &[x], 3);
        let tail = |o: &Vec<f32>| o[48_000..].to_vec();
        let (mono, l, r) = (tail(&outs[0]), tail(&outs[1]), tail(&outs[2]));
        // Pitch wobble: energy leaves the 1 kHz line (a plain delay would keep it all).
        assert!(bin(&mono, 1000.0) < 0.4, "{}", bin(&mono, 1000.0));
        assert!(l != r);
        assert!(outs.iter().flatten().all(|v| v.abs() < 0.7));
    }
}
