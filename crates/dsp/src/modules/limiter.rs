//! `limiter`: a lookahead peak limiter whose output never exceeds the ceiling.
//!
//! The signal is delayed by a 1 ms lookahead (L samples). For every input sample the
//! gain it needs is `r = min(1, ceiling / |x|)`. The applied gain is built so that it is
//! at most `r` of the sample it multiplies:
//! 1. a sliding minimum of `r` over the last L+1 samples (the peak is seen L samples early);
//! 2. release: the gain falls at once and recovers exponentially (`release` ms time
//!    constant), never above the sliding minimum;
//! 3. a moving average over L samples, which turns the instant drop into a smooth L-sample
//!    attack ramp. Every value averaged is at most the `r` of the delayed sample being
//!    output (each window covers it), so the average is too.
//!
//! Hence `|out| <= ceiling` by construction, with no overshoot and no distortion from
//! clipping; a final clamp to the ceiling only guards float rounding (the tests check it
//! practically never acts). Latency: L samples (48 at 48 kHz). Mono in, mono out.
//! A ceiling change glides over 10 ms (linearly in dB). Each sample is held to the
//! ceiling in effect when it came in (kept beside it in the lookahead ring), so lowering
//! the ceiling fades the level down instead of clipping the samples already in the
//! lookahead; the output reaches a new ceiling one lookahead after the glide.
//! Lookahead rings and gain state are part of the snapshot; the gain state and running
//! sum are f64.

use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::modules::common::{input, load_buffer, load_index, sanitize, save_buffer};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `ceiling` parameter.
pub const CEILING: usize = 0;
/// Index of the `release` parameter.
pub const RELEASE: usize = 1;

/// Lookahead (and attack) time.
pub const LOOKAHEAD_MS: f64 = 1.0;

/// Static description of the `limiter` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "limiter",
    doc: "Lookahead peak limiter (1 ms latency): the output never exceeds the ceiling, without clipping.",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::db("ceiling", -24.0..=0.0, -0.3).doc("Highest output peak, dBFS; never exceeded (a change glides over 10 ms)."),
        ParamSpec::ms("release", 1.0..=1_000.0, 50.0).doc("Time constant of the gain's recovery after a peak."),
    ],
    has_gate: false,
};

/// Limiter state: parameters, the lookahead rings and the gain computer.
#[derive(Debug, Clone)]
pub struct Limiter {
    params: Params,
    sample_rate: f32,
    /// Linear ceiling.
    ceiling: f32,
    /// Per-sample recovery factor of the release.
    release_coef: f64,
    /// Delayed input (L samples).
    delay: Vec<f32>,
    /// The linear ceiling in effect when each delayed sample came in.
    ceilings: Vec<f32>,
    /// Needed gains `r` of the last L+1 inputs.
    needs: Vec<f32>,
    /// Released gains of the last L samples (the moving average's window).
    window: Vec<f32>,
    /// Position in all three rings (`needs` is one longer and has its own).
    pos: usize,
    needs_pos: usize,
    /// Current sliding minimum of `needs` and samples until it leaves the window.
    held: f32,
    held_left: u32,
    /// Released gain (before the moving average).
    released: f64,
    /// Sum of `window`.
    sum: f64,
}

impl Limiter {
    /// A limiter at the default ceiling and release; allocates the lookahead rings.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let look = (f64::from(sr) * LOOKAHEAD_MS / 1000.0)
            .round()
            .clamp(1.0, 65_536.0) as usize;
        let mut l = Limiter {
            sample_rate: sr,
            params: Params::new(&SPEC, sr).instant(&[RELEASE]),
            ceiling: 1.0,
            release_coef: 0.0,
            delay: vec![0.0; look],
            ceilings: vec![1.0; look],
            needs: vec![1.0; look + 1],
            window: vec![1.0; look],
            pos: 0,
            needs_pos: 0,
            held: 1.0,
            held_left: 0,
            released: 1.0,
            sum: look as f64,
        };
        l.update();
        l
    }

    /// Lookahead in samples (the latency).
    pub fn lookahead(&self) -> usize {
        self.delay.len()
    }

    fn update(&mut self) {
        self.ceiling = db_to_linear(self.params[CEILING].current());
        let samples = f64::from(self.params[RELEASE].target()) * f64::from(self.sample_rate) / 1000.0;
        self.release_coef = (-1.0 / samples.max(1.0)).exp();
    }

    /// Recomputes the sliding minimum from the ring (when the held one leaves the window).
    fn rescan(&mut self) {
        let len = self.needs.len();
        let mut best = f32::INFINITY;
        let mut age_of_best = 0;
        // Age 0 is the newest; a minimum at age a stays in the window len-1-a more samples.
        for age in 0..len {
            let i = (self.needs_pos + len - 1 - age) % len;
            let v = self.needs.get(i).copied().unwrap_or(1.0);
            if v < best {
                best = v;
                age_of_best = age;
            }
        }
        self.held = best;
        self.held_left = (len - 1 - age_of_best) as u32;
    }

    #[inline]
    fn tick(&mut self, x: f32) -> f32 {
        let x = sanitize(x);
        if !self.params[CEILING].is_settled() {
            self.ceiling = db_to_linear(self.params[CEILING].next());
        }
        let ceiling = self.ceiling;
        let need = if x.abs() > ceiling {
            ceiling / x.abs()
        } else {
            1.0
        };
        // 1. Sliding minimum over the last L+1 needs.
        let nlen = self.needs.len();
        if let Some(slot) = self.needs.get_mut(self.needs_pos) {
            *slot = need;
        }
        self.needs_pos += 1;
        if self.needs_pos >= nlen {
            self.needs_pos = 0;
        }
        if need <= self.held {
            self.held = need;
            self.held_left = (nlen - 1) as u32;
        } else if self.held_left == 0 {
            self.rescan();
        } else {
            self.held_left -= 1;
        }
        // 2. Instant fall, exponential recovery, never above the minimum.
        let held = f64::from(self.held);
        self.released = if held < self.released {
            held
        } else {
            held + (self.released - held) * self.release_coef
        };
        // 3. Moving average over L samples.
        let len = self.delay.len();
        let released = self.released as f32;
        let old = self.window.get(self.pos).copied().unwrap_or(1.0);
        if let Some(slot) = self.window.get_mut(self.pos) {
            *slot = released;
        }
        self.sum += f64::from(released) - f64::from(old);
        let gain = (self.sum / len as f64) as f32;
        // Delay line: the sample L behind.
        let delayed = self.delay.get(self.pos).copied().unwrap_or(0.0);
        if let Some(slot) = self.delay.get_mut(self.pos) {
            *slot = x;
        }
        let delayed_ceiling = self.ceilings.get(self.pos).copied().unwrap_or(ceiling);
        if let Some(slot) = self.ceilings.get_mut(self.pos) {
            *slot = ceiling;
        }
        self.pos += 1;
        if self.pos >= len {
            self.pos = 0;
            // Re-sum once per lap so rounding in the running sum cannot drift.
            self.sum = self.window.iter().map(|&g| f64::from(g)).sum();
        }
        (delayed * gain).clamp(-delayed_ceiling, delayed_ceiling)
    }
}

/// Linear amplitude of a level in dB.
fn db_to_linear(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

impl Module for Limiter {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn param_changed(&mut self, _index: usize) {
        self.update();
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let x = input(inputs, 0);
        for (o, &x) in out.iter_mut().zip(x) {
            *o = self.tick(x);
        }
    }

    fn clear(&mut self) {
        let look = self.delay.len();
        self.update();
        self.delay.fill(0.0);
        self.ceilings.fill(self.ceiling);
        self.needs.fill(1.0);
        self.window.fill(1.0);
        self.pos = 0;
        self.needs_pos = 0;
        self.held = 1.0;
        self.held_left = 0;
        self.released = 1.0;
        self.sum = look as f64;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        save_buffer(w, &self.delay);
        save_buffer(w, &self.ceilings);
        save_buffer(w, &self.needs);
        save_buffer(w, &self.window);
        w.put_u32(self.pos as u32);
        w.put_u32(self.needs_pos as u32);
        w.put_f32(self.held);
        w.put_u32(self.held_left);
        w.put_f64(self.released);
        w.put_f64(self.sum);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.update();
        load_buffer(r, &mut self.delay)?;
        load_buffer(r, &mut self.ceilings)?;
        for c in &mut self.ceilings {
            // A damaged snapshot must not make the output clamp panic (NaN or negative
            // bounds); the ceilings are never above full scale.
            if !(*c > 0.0 && *c <= 1.0) {
                *c = 1.0;
            }
        }
        load_buffer(r, &mut self.needs)?;
        load_buffer(r, &mut self.window)?;
        self.pos = load_index(r, self.delay.len(), "limiter position")?;
        self.needs_pos = load_index(r, self.needs.len(), "limiter needs position")?;
        self.held = r.get_f32()?;
        let offset = r.position();
        self.held_left = r.get_u32()?;
        if self.held_left as usize >= self.needs.len() {
            return Err(StateError::InvalidValue {
                what: "limiter hold count",
                offset,
            });
        }
        self.released = r.get_f64()?;
        self.sum = r.get_f64()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{bin, noise, render, sine, SR};

    fn limiter(ceiling: f32, release: f32) -> Limiter {
        let mut l = Limiter::new(SR);
        l.set_param(CEILING, ceiling);
        l.set_param(RELEASE, release);
        l.reset();
        l
    }

    #[test]
    fn a_20_db_burst_never_exceeds_the_ceiling_and_is_not_clipped() {
        for (ceiling, release) in [(-0.3f32, 50.0f32), (-6.0, 1.0), (-24.0, 1000.0), (0.0, 5.0)] {
            let mut l = limiter(ceiling, release);
            let c = 10f32.powf(ceiling / 20.0);
            // Quiet, a burst 20 dB over full scale (sine and noise), quiet again.
            let mut x = sine(440.0, 0.05, 4800);
            x.extend(sine(440.0, 10.0, 9600));
            x.extend(noise(9600, 3).iter().map(|v| v * 10.0));
            x.extend(sine(440.0, 0.05, 48_000));
            let out = render(&mut l, std::slice::from_ref(&x), 1).remove(0);
            let peak = out.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            assert!(peak <= c, "ceiling {ceiling}: peak {peak} over {c}");
            assert!(peak > c * 0.9, "it does reach the ceiling ({peak})");
            // The gain did the work, not a clipper: the loud sine stays a sine (clipping
            // it 20 dB over would put the 3rd harmonic near -10 dB).
            let look = l.lookahead();
            assert_eq!(look, 48);
            let steady = &out[4800 + 2400 + look..4800 + 7200 + look];
            let thd3 = 20.0 * (bin(steady, 1320.0) / bin(steady, 440.0)).log10();
            assert!(
                thd3 < -40.0,
                "ceiling {ceiling}: 3rd harmonic at {thd3:.1} dB"
            );
            for i in 100..4700 {
                assert_eq!(out[i + look], x[i], "quiet start, sample {i}");
            }
            if release <= 50.0 {
                let end = x.len() - 1000;
                assert!(
                    (out[end + look] - x[end]).abs() < 1e-3,
                    "recovered after release"
                );
            }
        }
    }

    #[test]
    fn single_spike_is_held_down_with_a_smooth_ramp() {
        let mut l = limiter(-6.0, 50.0);
        let mut x = vec![0.25f32; 2000];
        x[1000] = 20.0;
        let out = render(&mut l, &[x], 1).remove(0);
        let c = 10f32.powf(-6.0 / 20.0);
        assert!(out.iter().all(|v| v.abs() <= c));
        // The gain ramps down over the lookahead before the spike: no step.
        let steps = out[900..1048].windows(2).map(|w| (w[1] - w[0]).abs());
        assert!(steps.fold(0.0f32, f32::max) < 0.01);
    }
}
