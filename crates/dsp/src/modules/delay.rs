//! `delay`: a feedback delay line with interpolated reads and optional tempo sync.
//!
//! The delay time is `time` ms, or, when `bpm` is above 0, `beats * 60 / bpm` seconds
//! (a quarter note at 120 bpm with `beats` 1 is 500 ms); either way it is held to
//! 2 samples ..= 2 s. A time change crossfades over [`TIME_FADE_MS`] from a read head at
//! the old time to one at the new time: no click and no pitch bend (a gliding head, as
//! on tape, swept a jump from 0 to 2 s through the whole line at 20 times the speed, a
//! loud chirp). A change that arrives while a crossfade runs waits for it to end, then
//! fades from where it landed, so any sequence of changes is continuous. Reads between
//! samples use 4-point cubic Hermite interpolation. At a whole number of samples the
//! read is exact: an impulse comes back at exactly the set time, scaled by `feedback` on
//! every further trip.
//!
//! The line holds `max_time` (2 s unless the patch says less), is allocated when the
//! patch compiles and is part of the snapshot (4 bytes a sample: 384 KB for 2 s at
//! 48 kHz, 48 KB for 250 ms): a spare that loads it plays the same echoes. `max_time` is
//! fixed (it sizes memory, and the render path allocates nothing): a patch of many short
//! delays sets it to the longest time it will turn them to, and `time` (or `beats` at
//! `bpm`) is held to it. A patch switch that changes it keeps the newest echoes that fit. What is written back is flushed below 1e-20 and clamped, so the loop can never
//! hold denormals or overflow. `mix` crossfades linearly: `dry * (1 - mix) + wet * mix`.
//! A patch may only feed back through a module like this one (the graph itself is acyclic).

use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::modules::common::{flush, input, load_buffer, load_index, sanitize, save_buffer};
use crate::smoother::ramp_samples;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `time` parameter.
pub const TIME: usize = 0;
/// Index of the `feedback` parameter.
pub const FEEDBACK: usize = 1;
/// Index of the `mix` parameter.
pub const MIX: usize = 2;
/// Index of the `bpm` parameter.
pub const BPM: usize = 3;
/// Index of the `beats` parameter.
pub const BEATS: usize = 4;
/// Index of the `max_time` parameter (fixed: it sizes the line).
pub const MAX_TIME: usize = 5;

/// Longest delay, in seconds: the largest `max_time`.
pub const MAX_SECONDS: f64 = 2.0;
/// Samples the line holds beyond its longest delay: the cubic read's newer taps and one
/// spare.
const LINE_MARGIN: usize = 4;
/// Samples over which the oldest history carried into a longer line is mirrored and
/// faded out (2 ms at 48 kHz).
const CARRY_FADE_SAMPLES: usize = 96;
/// Crossfade time between the old and the new read head when the delay time changes.
pub const TIME_FADE_MS: f32 = 50.0;
/// Shortest delay in samples: the cubic read needs one newer sample than the one it reads.
pub const MIN_DELAY_SAMPLES: f32 = 2.0;

/// Static description of the `delay` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "delay",
    doc: "Feedback delay up to 2 s (its line sized by max_time), cubic-interpolated, gliding time changes, optional tempo sync (bpm x beats).",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::ms("time", 0.0..=2_000.0, 250.0).doc("Delay time when bpm is 0 (at least 2 samples, at most max_time); a change crossfades from the old time to the new over 50 ms (no pitch bend)."),
        ParamSpec::linear("feedback", 0.0..=0.95, 0.3).doc("Share of the output fed back into the line (echo decay per trip); glides over 10 ms."),
        ParamSpec::linear("mix", 0.0..=1.0, 0.5).doc("Wet share, linear: dry x (1 - mix) + wet x mix; glides over 10 ms."),
        ParamSpec::number("bpm", 0.0..=300.0, 0.0).doc("Tempo for sync: above 0 the time is beats x 60 / bpm seconds (held to max_time); 0 uses `time`. Changes crossfade like `time`."),
        ParamSpec::number("beats", 0.0625..=4.0, 1.0).doc("Delay in beats when bpm is above 0 (0.25 = a sixteenth at 4/4, 0.75 = dotted eighth). Changes crossfade like `time`."),
        ParamSpec::ms("max_time", 10.0..=2_000.0, 2_000.0).fixed().doc("Longest time the line holds, fixed when the patch compiles (4 bytes a sample of memory and snapshot: 384 KB at 2 s); time and beats are held to it. Change it with /patch/set and /patch/commit."),
    ],
    has_gate: false,
};

/// Delay state: parameters, smoothers, the read heads, the line and its write position.
#[derive(Debug, Clone)]
pub struct Delay {
    sample_rate: f32,
    /// Delay in samples (fractional) of the head faded to (the only one when no
    /// crossfade runs).
    delay: f32,
    /// Delay of the head faded from.
    from: f32,
    /// Samples of the crossfade still to come (0: none).
    remaining: u32,
    /// Crossfade length in samples.
    fade_len: u32,
    params: Params,
    buf: Vec<f32>,
    /// Where the next sample is written.
    pos: usize,
}

impl Delay {
    /// A delay at the default settings with a silent 2 s line; allocates the line.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let len = line_len(sr, SPEC.params[MAX_TIME].default);
        let mut d = Delay {
            sample_rate: sr,
            delay: 0.0,
            from: 0.0,
            remaining: 0,
            fade_len: ramp_samples(sr, TIME_FADE_MS).max(1),
            params: Params::new(&SPEC, sr).instant(&[TIME, BPM, BEATS, MAX_TIME]),
            buf: vec![0.0; len],
            pos: 0,
        };
        d.delay = d.target_delay();
        d.from = d.delay;
        d
    }

    /// Longest delay in samples the line supports.
    fn max_delay(&self) -> f32 {
        (self.buf.len() - LINE_MARGIN) as f32
    }

    /// Samples in the line (its memory is 4 bytes each).
    pub fn line_len(&self) -> usize {
        self.buf.len()
    }

    /// The delay in samples the parameters ask for (tempo sync or ms), held in range.
    fn target_delay(&self) -> f32 {
        let (bpm, beats) = (self.params[BPM].target(), self.params[BEATS].target());
        let ms = if bpm > 0.0 {
            beats * 60_000.0 / bpm
        } else {
            self.params[TIME].target()
        };
        (ms * self.sample_rate / 1000.0).clamp(MIN_DELAY_SAMPLES, self.max_delay())
    }

    /// The delay in samples of the read head playing now (or being faded to).
    pub fn delay_samples(&self) -> f32 {
        self.delay
    }

    /// Reads the line `d` samples back from the next write position (d >= 2).
    #[inline]
    fn read(&self, d: f32) -> f32 {
        let len = self.buf.len();
        let d = d.clamp(MIN_DELAY_SAMPLES, self.max_delay());
        // In range and non-negative: the cast truncates to the integer part.
        let whole = d as usize;
        let t = d - whole as f32;
        // Sample written `k` samples ago.
        // (k is 1..len-1 and pos < len, so one subtraction wraps it.)
        let at = |k: usize| {
            let mut i = self.pos + len - k;
            if i >= len {
                i -= len;
            }
            self.buf.get(i).copied().unwrap_or(0.0)
        };
        let (xm1, x0, x1, x2) = (at(whole - 1), at(whole), at(whole + 1), at(whole + 2));
        let c1 = 0.5 * (x1 - xm1);
        let c2 = xm1 - 2.5 * x0 + 2.0 * x1 - 0.5 * x2;
        let c3 = 0.5 * (x2 - xm1) + 1.5 * (x0 - x1);
        ((c3 * t + c2) * t + c1) * t + x0
    }
}

/// Samples of a line that holds `max_ms` at `sample_rate`.
fn line_len(sample_rate: f32, max_ms: f32) -> usize {
    (f64::from(max_ms) / 1000.0 * f64::from(sample_rate)).ceil() as usize + LINE_MARGIN
}

impl Delay {
    /// Starts a crossfade from the head playing to one at the parameters' delay, if it
    /// differs.
    fn start_fade(&mut self) {
        let target = self.target_delay();
        if target.to_bits() != self.delay.to_bits() {
            self.from = self.delay;
            self.delay = target;
            self.remaining = self.fade_len;
        }
    }
}

impl Module for Delay {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Sizes the line for `max_time` (the patch compiler calls it, never the render path).
    fn allocate_for_params(&mut self) {
        let len = line_len(self.sample_rate, self.params[MAX_TIME].target());
        if len != self.buf.len() {
            self.buf = vec![0.0; len];
            self.pos = 0;
            self.delay = self.target_delay();
            self.from = self.delay;
            self.remaining = 0;
        }
    }

    /// A new time or tempo starts a crossfade to a head there, unless one runs: then
    /// the crossfade that follows it picks the new time up.
    fn param_changed(&mut self, index: usize) {
        if matches!(index, TIME | BPM | BEATS) && self.remaining == 0 {
            self.start_fade();
        }
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let x = input(inputs, 0);
        let len = self.buf.len();
        for (o, &x) in out.iter_mut().zip(x) {
            let fb = self.params[FEEDBACK].next();
            let mix = self.params[MIX].next();
            let x = sanitize(x);
            let wet = if self.remaining > 0 {
                self.remaining -= 1;
                let t = self.remaining as f32 / self.fade_len as f32;
                let (old, new) = (self.read(self.from), self.read(self.delay));
                let wet = new + (old - new) * t;
                if self.remaining == 0 {
                    // Landed; a change that came during the fade starts the next one.
                    self.from = self.delay;
                    self.start_fade();
                }
                wet
            } else {
                self.read(self.delay)
            };
            if let Some(slot) = self.buf.get_mut(self.pos) {
                *slot = flush(sanitize(x + fb * wet));
            }
            self.pos += 1;
            if self.pos >= len {
                self.pos = 0;
            }
            *o = x * (1.0 - mix) + wet * mix;
        }
    }

    fn clear(&mut self) {
        self.delay = self.target_delay();
        self.from = self.delay;
        self.remaining = 0;
        self.buf.fill(0.0);
        self.pos = 0;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_f32(self.delay);
        w.put_f32(self.from);
        w.put_u32(self.remaining);
        w.put_u32(self.buf.len() as u32);
        w.put_u32(self.pos as u32);
        save_buffer(w, &self.buf);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        // `read` holds any delay in range, so a damaged snapshot cannot read outside the
        // line; NaN is replaced by the parameters' delay.
        let target = self.target_delay();
        let sane = |d: f32| if d.is_finite() { d } else { target };
        self.delay = sane(r.get_f32()?);
        self.from = sane(r.get_f32()?);
        self.remaining = r.get_u32()?.min(self.fade_len);
        let offset = r.position();
        let saved_len = r.get_u32()? as usize;
        if saved_len <= LINE_MARGIN {
            return Err(StateError::InvalidValue {
                what: "delay line length",
                offset,
            });
        }
        let saved_pos = load_index(r, saved_len, "delay write position")?;
        if saved_len == self.buf.len() {
            self.pos = saved_pos;
            return load_buffer(r, &mut self.buf);
        }
        // A patch switch changed `max_time` (the state is carried to the new line),
        // without allocating: the newest samples that fit, in order. Where a longer line
        // has nothing older, the oldest history is mirrored and faded out, so a head that
        // later moves past it reads no edge (an edge would come round on every trip). A
        // line too short for the head playing now starts empty: reading it at the
        // shorter time would write a step into the loop, which would come back on every
        // trip; the patch switch's crossfade fades the old line's echoes out.
        if r.remaining() < saved_len * 4 {
            return Err(StateError::Truncated {
                offset: r.position(),
                needed: saved_len * 4,
                remaining: r.remaining(),
            });
        }
        let len = self.buf.len();
        self.buf.fill(0.0);
        self.pos = 0;
        let carried = saved_len.min(len);
        let fits = self.delay.max(self.from) <= self.max_delay();
        for i in 0..saved_len {
            let x = r.get_f32()?;
            // Written `age` samples before the saved write position (1..=saved_len).
            let age = (saved_pos + saved_len - i - 1) % saved_len + 1;
            if fits && age <= carried {
                if let Some(slot) = self.buf.get_mut(len - age) {
                    *slot = x;
                }
            }
        }
        let mirrored = CARRY_FADE_SAMPLES.min(carried).min(len - carried);
        if fits {
            for j in 1..=mirrored {
                let gain = 1.0 - j as f32 / (mirrored + 1) as f32;
                let mirror = self.buf.get(len - (carried + 1 - j)).copied().unwrap_or(0.0);
                if let Some(slot) = self.buf.get_mut(len - (carried + j)) {
                    *slot = mirror * gain;
                }
            }
        }
        if !fits {
            self.delay = self.target_delay();
            self.from = self.delay;
            self.remaining = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{render, sine, SR};
    use crate::smoother::Smoother;

    fn delay(time: f32, feedback: f32, mix: f32) -> Delay {
        let mut d = Delay::new(SR);
        d.set_param(TIME, time);
        d.set_param(FEEDBACK, feedback);
        d.set_param(MIX, mix);
        d.reset();
        d
    }

    fn impulse(n: usize) -> Vec<f32> {
        let mut x = vec![0.0f32; n];
        x[0] = 1.0;
        x
    }

    #[test]
    fn impulse_returns_at_exactly_the_set_time_and_decays_by_feedback() {
        let mut d = delay(10.0, 0.5, 1.0);
        let out = render(&mut d, &[impulse(2000)], 1).remove(0);
        for (i, &y) in out.iter().enumerate() {
            let want = match i {
                480 => 1.0,
                960 => 0.5,
                1440 => 0.25,
                1920 => 0.125,
                _ => 0.0,
            };
            assert_eq!(y, want, "sample {i}");
        }
    }

    #[test]
    fn tempo_sync_sets_the_time_from_bpm_and_beats() {
        let mut d = delay(10.0, 0.0, 1.0);
        d.set_param(BPM, 120.0);
        d.set_param(BEATS, 0.5);
        d.reset();
        assert_eq!(d.delay_samples(), 12_000.0); // an eighth at 120 bpm: 250 ms
        let out = render(&mut d, &[impulse(13_000)], 1).remove(0);
        assert_eq!(out.iter().position(|&y| y != 0.0), Some(12_000));
        // Too slow a tempo is held at the 2 s maximum; bpm 0 returns to `time`.
        d.set_param(BPM, 1.0);
        d.reset();
        assert_eq!(d.delay_samples(), 96_000.0);
        d.set_param(BPM, 0.0);
        d.reset();
        assert_eq!(d.delay_samples(), 480.0);
        // Time 0 is held at the 2-sample minimum.
        d.set_param(TIME, 0.0);
        d.reset();
        assert_eq!(d.delay_samples(), MIN_DELAY_SAMPLES);
    }

    #[test]
    fn dry_mix_is_the_input() {
        let mut d = delay(100.0, 0.9, 0.0);
        let x = sine(440.0, 0.5, 3000);
        let out = render(&mut d, std::slice::from_ref(&x), 1).remove(0);
        assert_eq!(out, x);
    }

    #[test]
    fn changing_the_time_crossfades_without_a_click_or_a_bend() {
        let mut d = delay(100.0, 0.0, 1.0);
        let x = sine(200.0, 1.0, 48_000);
        let mut out = Vec::new();
        for (b, block) in x.chunks(64).enumerate() {
            if b == 200 {
                d.set_param(TIME, 300.0);
            }
            let mut o = [0.0f32; 64];
            d.process(&[block], &mut [&mut o]);
            out.extend_from_slice(&o);
        }
        // A 200 Hz sine moves at most 0.026 per sample; the crossfade of two heads of it
        // never moves faster (no jump, no bend).
        let max_step = out[5000..]
            .windows(2)
            .fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()));
        assert!(max_step < 0.027, "{max_step}");
        assert_eq!(d.delay_samples(), 14_400.0);
        // Two changes in quick succession: the second waits for the first fade, then
        // fades on; the time lands on the last one.
        d.set_param(TIME, 50.0);
        let _ = render(&mut d, &[vec![0.0; 64]], 1);
        d.set_param(TIME, 20.0);
        assert_eq!(d.delay_samples(), 2_400.0);
        let _ = render(&mut d, &[vec![0.0; 2400]], 1);
        assert_eq!((d.delay_samples(), d.from), (960.0, 2_400.0));
        let _ = render(&mut d, &[vec![0.0; 2400]], 1);
        assert_eq!((d.delay_samples(), d.remaining), (960.0, 0));
    }

    #[test]
    fn maximum_feedback_stays_bounded_and_decays_to_zero() {
        let mut d = delay(1.0, 0.95, 1.0);
        let out = render(&mut d, &[impulse(48_000 * 4)], 1).remove(0);
        assert!(out.iter().all(|y| y.is_finite() && y.abs() <= 1.0));
        assert!(out[48_000 * 3..].iter().all(|&y| y == 0.0));
        assert!(d.buf.iter().all(|&y| y == 0.0));
    }

    #[test]
    fn buffer_is_two_seconds_and_in_the_snapshot() {
        let d = Delay::new(SR);
        assert_eq!(d.buf.len(), 96_004);
        assert_eq!(
            d.state_len(),
            16 + 2 * Smoother::STATE_LEN + 4 + 4 + 4 + 4 + 4 + 4 * 96_004
        );
    }

    /// A delay compiled with `max_time` (as the patch compiler makes it).
    fn sized(max_ms: f32, time: f32) -> Delay {
        let mut d = Delay::new(SR);
        d.set_param(MAX_TIME, max_ms);
        d.set_param(TIME, time);
        d.set_param(MIX, 1.0);
        d.set_param(FEEDBACK, 0.0);
        d.allocate_for_params();
        d.reset();
        d
    }

    #[test]
    fn the_line_holds_max_time_and_the_time_is_held_to_it() {
        let d = sized(250.0, 100.0);
        assert_eq!(d.line_len(), 12_004);
        assert!(d.state_len() < 50_000, "{}", d.state_len());
        assert_eq!(d.delay_samples(), 4_800.0);
        let d = sized(250.0, 1_000.0);
        assert_eq!(d.delay_samples(), 12_000.0);
        // An impulse comes back at exactly max_time.
        let mut d = sized(250.0, 1_000.0);
        let out = render(&mut d, &[impulse(20_000)], 1).remove(0);
        assert_eq!(out[12_000], 1.0);
        assert_eq!(out.iter().filter(|&&y| y != 0.0).count(), 1);
    }

    #[test]
    fn a_new_max_time_keeps_the_newest_echoes_in_order() {
        // Echoes in flight in a 2 s line move to a 300 ms one (as a patch switch's carry
        // does: the old state loaded into the new module): those that fit come back at
        // the same moment as from the old line.
        for (from_ms, to_ms) in [(2_000.0, 300.0), (300.0, 2_000.0), (300.0, 300.0)] {
            let mut old = sized(from_ms, 250.0);
            let mut reference = sized(from_ms, 250.0);
            let x = sine(300.0, 0.5, 20_000);
            let _ = render(&mut old, std::slice::from_ref(&x), 1);
            let _ = render(&mut reference, std::slice::from_ref(&x), 1);
            let mut bytes = vec![0u8; old.state_len()];
            old.save_state(&mut StateWriter::new(&mut bytes));
            let mut new = sized(to_ms, 250.0);
            new.load_state(&mut StateReader::new(&bytes)).unwrap();
            new.set_param(MAX_TIME, to_ms);
            let silence = vec![0.0f32; 12_000];
            let a = render(&mut new, std::slice::from_ref(&silence), 1).remove(0);
            let b = render(&mut reference, std::slice::from_ref(&silence), 1).remove(0);
            assert_eq!(a, b, "{from_ms} ms -> {to_ms} ms");
            assert!(a.iter().any(|y| y.abs() > 0.1));
        }
    }

    #[test]
    fn a_line_resized_under_the_playing_time_starts_empty_and_a_longer_one_has_no_edge() {
        // The review's cases: echoes of 250 ms ringing in a 300 ms line, moved to a 120
        // ms one (the head cannot stay at 250 ms), and echoes held at 120 ms in a 120 ms
        // line moved to a 2 s one, then the head moved to the 250 ms asked for, past the
        // start of the history carried. Neither may write a step into the loop: no step
        // in the 2 s after is larger than the steady echoes' own (before: a step came
        // round on every trip).
        let steepest = |x: &[f32]| x.windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()));
        for (from_ms, to_ms) in [(300.0, 120.0), (120.0, 2_000.0)] {
            let mut old = sized(from_ms, 250.0);
            old.set_param(FEEDBACK, 0.6);
            // The tone, then 50 ms of its echoes alone, as when a tone is muted before
            // the commit.
            let mut x = sine(300.0, 0.5, 48_000);
            x.extend([0.0; 2_400]);
            let played = render(&mut old, std::slice::from_ref(&x), 1).remove(0);
            let own = steepest(&played[24_000..]);
            let mut bytes = vec![0u8; old.state_len()];
            old.save_state(&mut StateWriter::new(&mut bytes));
            let mut new = sized(to_ms, 250.0);
            new.load_state(&mut StateReader::new(&bytes)).unwrap();
            new.set_param(MAX_TIME, to_ms);
            new.set_param(FEEDBACK, 0.6);
            let mut out = render(&mut new, &[vec![0.0f32; 4_800]], 1).remove(0);
            new.set_param(TIME, 240.0);
            new.set_param(TIME, 250.0);
            out.extend(render(&mut new, &[vec![0.0f32; 96_000]], 1).remove(0));
            // The last sample played before the switch, then the new line.
            let joined: Vec<f32> = played[played.len() - 1..].iter().chain(&out).copied().collect();
            let step = steepest(if to_ms < from_ms { &out } else { &joined });
            assert!(
                step <= own * 1.05,
                "{from_ms} -> {to_ms} ms: a step of {step}, the echoes' own {own}"
            );
            assert!(out.iter().all(|y| y.is_finite()));
        }
    }

    #[test]
    fn a_damaged_line_length_is_refused() {
        let d = sized(250.0, 100.0);
        let mut bytes = vec![0u8; d.state_len()];
        d.save_state(&mut StateWriter::new(&mut bytes));
        let at = bytes.len() - 4 * d.line_len() - 8;
        for bad in [0u32, 3, u32::MAX] {
            bytes[at..at + 4].copy_from_slice(&bad.to_le_bytes());
            let mut e = sized(250.0, 100.0);
            assert!(e.load_state(&mut StateReader::new(&bytes)).is_err(), "{bad}");
        }
    }
}
