//! `reverb`: a freeverb-class stereo reverb (Jezar's Freeverb topology).
//!
//! Per channel, eight parallel lowpass-feedback comb filters feed four series allpasses,
//! with Jezar's tunings (given at 44.1 kHz) scaled to the sample rate; the right channel's
//! delays are 23 samples (at 44.1 kHz) longer than the left's, which decorrelates the two
//! tails into a wide stereo image. `width` blends the two wet channels (1 = fully apart,
//! 0 = mono), `mix` crossfades dry and wet linearly (`dry * (1 - mix) + wet * mix`).
//!
//! Inputs: `in` is a mono input fed to both sides; `left` and `right` add a stereo input
//! (connect either style or both: left side = `in + left`, right side = `in + right`).
//! As in Freeverb the combs hear the sum of both sides, and the stereo comes from the
//! different tunings.
//!
//! Every delay buffer is allocated when the module is created (about 28 k samples at
//! 48 kHz, 110 KB) and is part of the snapshot. Comb stores and allpass buffers are
//! flushed below 1e-20, so a tail ends in exact zeros. Parameters glide per sample, so
//! the output does not depend on how the caller splits blocks; internally the samples
//! are processed one comb at a time over runs of up to 64 (the comb's state then stays
//! in registers), which is what makes sixteen combs and eight allpasses cheap.

use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::modules::common::{flush, input, load_buffer, load_index, sanitize, save_buffer};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `room` parameter.
pub const ROOM: usize = 0;
/// Index of the `damp` parameter.
pub const DAMP: usize = 1;
/// Index of the `width` parameter.
pub const WIDTH: usize = 2;
/// Index of the `mix` parameter.
pub const MIX: usize = 3;

/// Jezar's comb delays in samples at 44.1 kHz (left channel).
pub const COMB_TUNINGS: [usize; 8] = [1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617];
/// Jezar's allpass delays in samples at 44.1 kHz (left channel).
pub const ALLPASS_TUNINGS: [usize; 4] = [556, 441, 341, 225];
/// Extra delay of the right channel, in samples at 44.1 kHz.
pub const STEREO_SPREAD: usize = 23;
/// Freeverb's input gain into the combs (keeps the eight-comb sum near unity).
pub const FIXED_GAIN: f32 = 0.015;
/// Room 0..1 maps to comb feedback `0.7 + 0.28 room` (Freeverb's scaling).
pub const ROOM_SCALE: f32 = 0.28;
/// Comb feedback at room 0.
pub const ROOM_OFFSET: f32 = 0.7;
/// Damp 0..1 maps to the comb lowpass coefficient `0.4 damp`.
pub const DAMP_SCALE: f32 = 0.4;
/// Feedback of the series allpasses.
pub const ALLPASS_FEEDBACK: f32 = 0.5;

/// Samples processed per inner run (stack scratch size).
const RUN: usize = 64;

/// Static description of the `reverb` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "reverb",
    doc: "Freeverb-style stereo reverb: 8 damped combs and 4 allpasses per side, decorrelated left/right tails.",
    inputs: &[
        PortSpec::audio("in"),
        PortSpec::audio("left"),
        PortSpec::audio("right"),
    ],
    outputs: &[
        PortSpec::audio("left"),
        PortSpec::audio("right"),
    ],
    params: &[
        ParamSpec::linear("room", 0.0..=1.0, 0.5).doc("Room size: comb feedback 0.7..0.98 (longer tail); glides over 10 ms."),
        ParamSpec::linear("damp", 0.0..=1.0, 0.5).doc("High-frequency damping of the tail (0 bright, 1 dark); glides over 10 ms."),
        ParamSpec::linear("width", 0.0..=1.0, 1.0).doc("Stereo width of the wet signal (0 mono, 1 fully decorrelated); glides over 10 ms."),
        ParamSpec::linear("mix", 0.0..=1.0, 0.3).doc("Wet share, linear crossfade: dry x (1 - mix) + wet x mix; glides over 10 ms."),
    ],
    has_gate: false,
};

/// A lowpass-feedback comb: the delay line, its write/read position and the one-pole store.
#[derive(Debug, Clone)]
struct Comb {
    buf: Vec<f32>,
    idx: usize,
    store: f32,
}

impl Comb {
    fn new(len: usize) -> Comb {
        Comb {
            buf: vec![0.0; len.max(1)],
            idx: 0,
            store: 0.0,
        }
    }

    /// Samples until this comb's position wraps.
    fn until_wrap(&self) -> usize {
        self.buf.len().saturating_sub(self.idx)
    }

    /// Moves the position on by `n` samples (at most up to the wrap).
    fn advance(&mut self, n: usize) {
        self.idx += n;
        if self.idx >= self.buf.len() {
            self.idx = 0;
        }
    }

    /// The next `n` samples of the line (all of them readable before the wrap).
    fn line(&mut self, n: usize) -> &mut [f32] {
        let end = self.idx.saturating_add(n).min(self.buf.len());
        self.buf.get_mut(self.idx.min(end)..end).unwrap_or(&mut [])
    }
}

/// A Schroeder allpass (Freeverb's approximation): the delay line and its position.
#[derive(Debug, Clone)]
struct Allpass {
    buf: Vec<f32>,
    idx: usize,
}

impl Allpass {
    fn new(len: usize) -> Allpass {
        Allpass {
            buf: vec![0.0; len.max(1)],
            idx: 0,
        }
    }

    /// Filters `io` in place.
    #[inline(always)]
    fn run(&mut self, io: &mut [f32]) {
        let mut start = 0;
        let n = io.len();
        while start < n {
            let idx = self.idx.min(self.buf.len());
            let take = (self.buf.len() - idx).min(n - start);
            let Some(line) = self.buf.get_mut(idx..idx + take) else {
                return;
            };
            let xs = io.get_mut(start..start + take).unwrap_or(&mut []);
            for (d, x) in line.iter_mut().zip(xs) {
                let bufout = *d;
                let input = *x;
                *d = flush(input + bufout * ALLPASS_FEEDBACK);
                *x = bufout - input;
            }
            self.idx = idx + take;
            if self.idx >= self.buf.len() {
                self.idx = 0;
            }
            start += take;
        }
    }
}

/// One channel's network: eight combs in parallel, then four allpasses in series.
#[derive(Debug, Clone)]
struct Channel {
    combs: [Comb; 8],
    allpasses: [Allpass; 4],
}

impl Channel {
    fn new(scale: f64, extra: usize) -> Channel {
        let len = |t: usize| ((t + extra) as f64 * scale).round().max(1.0) as usize;
        Channel {
            combs: COMB_TUNINGS.map(|t| Comb::new(len(t))),
            allpasses: ALLPASS_TUNINGS.map(|t| Allpass::new(len(t))),
        }
    }

    /// Renders the wet signal for `input` (already scaled by the fixed gain) into `out`,
    /// with per-sample comb feedback `fb` and damping `damp1` (all the same length).
    fn run(&mut self, input: &[f32], fb: &[f32], damp1: &[f32], out: &mut [f32]) {
        out.fill(0.0);
        let n = input.len().min(fb.len()).min(damp1.len()).min(out.len());
        let mut start = 0;
        while start < n {
            // All eight combs at once: their recursions are independent, so the CPU
            // overlaps them (one comb at a time would wait on each store in turn).
            let take = self
                .combs
                .iter()
                .map(Comb::until_wrap)
                .fold(n - start, usize::min);
            if take == 0 {
                break;
            }
            let mut stores = self.combs.each_ref().map(|c| c.store);
            let [c0, c1, c2, c3, c4, c5, c6, c7] = &mut self.combs;
            let lines = [
                c0.line(take),
                c1.line(take),
                c2.line(take),
                c3.line(take),
                c4.line(take),
                c5.line(take),
                c6.line(take),
                c7.line(take),
            ];
            let [l0, l1, l2, l3, l4, l5, l6, l7] = lines;
            let end = start + take;
            let ins = input.get(start..end).unwrap_or(&[]);
            let fbs = fb.get(start..end).unwrap_or(&[]);
            let ds = damp1.get(start..end).unwrap_or(&[]);
            let outs = out.get_mut(start..end).unwrap_or(&mut []);
            let it = ins.iter().zip(fbs).zip(ds).zip(outs.iter_mut());
            let it = it.zip(l0.iter_mut().zip(l1.iter_mut()));
            let it = it.zip(l2.iter_mut().zip(l3.iter_mut()));
            let it = it.zip(l4.iter_mut().zip(l5.iter_mut()));
            let it = it.zip(l6.iter_mut().zip(l7.iter_mut()));
            for (((((((&x, &fb), &d1), o), (a0, a1)), (a2, a3)), (a4, a5)), (a6, a7)) in it {
                let d2 = 1.0 - d1;
                let tick = |d: &mut f32, store: &mut f32| {
                    let y = *d;
                    *store = flush(y * d2 + *store * d1);
                    *d = x + *store * fb;
                    y
                };
                let [s0, s1, s2, s3, s4, s5, s6, s7] = &mut stores;
                let y = (tick(a0, s0) + tick(a1, s1)) + (tick(a2, s2) + tick(a3, s3));
                let z = (tick(a4, s4) + tick(a5, s5)) + (tick(a6, s6) + tick(a7, s7));
                *o = y + z;
            }
            for (c, s) in self.combs.iter_mut().zip(stores) {
                c.store = s;
                c.advance(take);
            }
            start = end;
        }
        for a in &mut self.allpasses {
            a.run(out);
        }
    }

    fn clear(&mut self) {
        for c in &mut self.combs {
            c.buf.fill(0.0);
            c.idx = 0;
            c.store = 0.0;
        }
        for a in &mut self.allpasses {
            a.buf.fill(0.0);
            a.idx = 0;
        }
    }

    fn save_state(&self, w: &mut StateWriter<'_>) {
        for c in &self.combs {
            w.put_u32(c.idx as u32);
            w.put_f32(c.store);
            save_buffer(w, &c.buf);
        }
        for a in &self.allpasses {
            w.put_u32(a.idx as u32);
            save_buffer(w, &a.buf);
        }
    }

    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        for c in &mut self.combs {
            c.idx = load_index(r, c.buf.len(), "reverb comb index")?;
            c.store = r.get_f32()?;
            load_buffer(r, &mut c.buf)?;
        }
        for a in &mut self.allpasses {
            a.idx = load_index(r, a.buf.len(), "reverb allpass index")?;
            load_buffer(r, &mut a.buf)?;
        }
        Ok(())
    }
}

/// Reverb state: smoothed parameters and both channels' delay networks.
#[derive(Debug, Clone)]
pub struct Reverb {
    params: Params,
    left: Channel,
    right: Channel,
}

impl Reverb {
    /// A reverb at the default settings with silent buffers; allocates every buffer.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let scale = f64::from(sr) / 44_100.0;
        Reverb {
            params: Params::new(&SPEC, sr),
            left: Channel::new(scale, 0),
            right: Channel::new(scale, STEREO_SPREAD),
        }
    }

    /// Delay lengths in samples of the left and right combs, for tests and diagnostics.
    pub fn comb_lengths(&self) -> ([usize; 8], [usize; 8]) {
        (
            std::array::from_fn(|i| self.left.combs[i].buf.len()),
            std::array::from_fn(|i| self.right.combs[i].buf.len()),
        )
    }

    fn settled(&self) -> bool {
        self.params[ROOM].is_settled()
            && self.params[DAMP].is_settled()
            && self.params[WIDTH].is_settled()
            && self.params[MIX].is_settled()
    }

    /// Renders one run of at most [`RUN`] samples (`x` sets the length).
    fn run(&mut self, x: &[f32], xl: &[f32], xr: &[f32], out_l: &mut [f32], out_r: &mut [f32]) {
        let n = x.len().min(RUN);
        let mut dry_l = [0.0f32; RUN];
        let mut dry_r = [0.0f32; RUN];
        let mut comb_in = [0.0f32; RUN];
        let (dry_l, dry_r, comb_in) = (&mut dry_l[..n], &mut dry_r[..n], &mut comb_in[..n]);
        for (d, &m) in dry_l.iter_mut().zip(x) {
            *d = m;
        }
        dry_r.copy_from_slice(dry_l);
        for (d, &v) in dry_l.iter_mut().zip(xl) {
            *d += v;
        }
        for (d, &v) in dry_r.iter_mut().zip(xr) {
            *d += v;
        }
        for ((c, l), r) in comb_in
            .iter_mut()
            .zip(dry_l.iter_mut())
            .zip(dry_r.iter_mut())
        {
            *l = sanitize(*l);
            *r = sanitize(*r);
            *c = (*l + *r) * FIXED_GAIN;
        }
        let mut fb = [0.0f32; RUN];
        let mut damp1 = [0.0f32; RUN];
        let mut w1 = [0.0f32; RUN];
        let mut w2 = [0.0f32; RUN];
        let mut dry = [0.0f32; RUN];
        let (fb, damp1) = (&mut fb[..n], &mut damp1[..n]);
        let (w1, w2, dry) = (&mut w1[..n], &mut w2[..n], &mut dry[..n]);
        if self.settled() {
            fb.fill(self.params[ROOM].current() * ROOM_SCALE + ROOM_OFFSET);
            damp1.fill(self.params[DAMP].current() * DAMP_SCALE);
            let (a, b, c) = mix_gains(self.params[WIDTH].current(), self.params[MIX].current());
            w1.fill(a);
            w2.fill(b);
            dry.fill(c);
        } else {
            for i in 0..n {
                fb[i] = self.params[ROOM].next() * ROOM_SCALE + ROOM_OFFSET;
                damp1[i] = self.params[DAMP].next() * DAMP_SCALE;
                (w1[i], w2[i], dry[i]) = mix_gains(self.params[WIDTH].next(), self.params[MIX].next());
            }
        }
        let mut wet_l = [0.0f32; RUN];
        let mut wet_r = [0.0f32; RUN];
        let (wet_l, wet_r) = (&mut wet_l[..n], &mut wet_r[..n]);
        self.left.run(comb_in, fb, damp1, wet_l);
        self.right.run(comb_in, fb, damp1, wet_r);
        let gains = w1.iter().zip(w2.iter()).zip(dry.iter());
        let wets = wet_l.iter().zip(wet_r.iter());
        let drys = dry_l.iter().zip(dry_r.iter());
        for (i, (((&a, &b), &g), ((&l, &r), (&dl, &dr)))) in gains.zip(wets.zip(drys)).enumerate() {
            if let Some(o) = out_l.get_mut(i) {
                *o = l * a + r * b + dl * g;
            }
            if let Some(o) = out_r.get_mut(i) {
                *o = r * a + l * b + dr * g;
            }
        }
    }
}

/// `s[start..end]`, cut short where `s` is (an input shorter than the block reads silence).
fn seg(s: &[f32], start: usize, end: usize) -> &[f32] {
    s.get(start.min(s.len())..end.min(s.len())).unwrap_or(&[])
}

/// Wet gains (same side, other side) and dry gain for `width` and `mix` (Freeverb's
/// `wet1`/`wet2`, with a linear dry/wet crossfade).
#[inline]
fn mix_gains(width: f32, mix: f32) -> (f32, f32, f32) {
    (
        mix * (width * 0.5 + 0.5),
        mix * ((1.0 - width) * 0.5),
        1.0 - mix,
    )
}

impl Module for Reverb {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let (x, xl, xr) = (input(inputs, 0), input(inputs, 1), input(inputs, 2));
        let (out_l, out_r): (&mut [f32], &mut [f32]) = match outputs {
            [l, r, ..] => (l, r),
            [l] => (l, &mut []),
            [] => return,
        };
        // Render as many frames as the longest output; missing inputs read silence.
        let n = out_l.len().max(out_r.len());
        let mut start = 0;
        while start < n {
            let end = (start + RUN).min(n);
            let (sx, sl, sr) = (seg(x, start, end), seg(xl, start, end), seg(xr, start, end));
            let zeros = [0.0f32; RUN];
            // The mono input sets the run length; pad a missing one with silence.
            let sx = if sx.len() == end - start {
                sx
            } else {
                &zeros[..end - start]
            };
            let ol_len = out_l.len();
            let or_len = out_r.len();
            let ol = out_l
                .get_mut(start.min(ol_len)..end.min(ol_len))
                .unwrap_or(&mut []);
            let or = out_r
                .get_mut(start.min(or_len)..end.min(or_len))
                .unwrap_or(&mut []);
            self.run(sx, sl, sr, ol, or);
            start = end;
        }
    }

    fn clear(&mut self) {
        self.left.clear();
        self.right.clear();
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        self.left.save_state(w);
        self.right.save_state(w);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.left.load_state(r)?;
        self.right.load_state(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{render, SR};

    fn reverb(room: f32, damp: f32, mix: f32) -> Reverb {
        let mut r = Reverb::new(SR);
        r.set_param(ROOM, room);
        r.set_param(DAMP, damp);
        r.set_param(MIX, mix);
        r.reset();
        r
    }

    fn impulse(n: usize) -> Vec<f32> {
        let mut x = vec![0.0f32; n];
        x[0] = 1.0;
        x
    }

    fn energy(s: &[f32]) -> f64 {
        s.iter().map(|&x| f64::from(x) * f64::from(x)).sum()
    }

    #[test]
    fn tunings_scale_with_the_sample_rate_and_spread_right() {
        let (l, r) = Reverb::new(44_100.0).comb_lengths();
        assert_eq!(l, COMB_TUNINGS);
        assert_eq!(r, COMB_TUNINGS.map(|t| t + STEREO_SPREAD));
        let (l, _) = Reverb::new(48_000.0).comb_lengths();
        assert_eq!(l[0], (1116.0f64 * 48_000.0 / 44_100.0).round() as usize);
    }

    #[test]
    fn tail_is_stereo_decorrelated_and_decays() {
        let sr = SR as usize;
        let mut r = reverb(0.5, 0.5, 1.0);
        let outs = render(&mut r, &[impulse(3 * sr)], 2);
        let (l, rt) = (&outs[0], &outs[1]);
        // Nothing comes out before the shortest comb (wet only).
        let first = l.iter().position(|&x| x != 0.0).unwrap();
        assert!(first >= 1000, "first wet sample at {first}");
        // Decorrelated: normalised cross-correlation of the tail well below 1.
        let tail = sr / 4..sr;
        let dot: f64 = l[tail.clone()]
            .iter()
            .zip(&rt[tail.clone()])
            .map(|(&a, &b)| f64::from(a) * f64::from(b))
            .sum();
        let corr = dot / (energy(&l[tail.clone()]) * energy(&rt[tail.clone()])).sqrt();
        assert!(corr.abs() < 0.3, "L/R correlation {corr}");
        // Decay: room 0.5 (feedback 0.84) loses well over 20 dB per half second.
        let e1 = energy(&l[sr / 2..sr]) + energy(&rt[sr / 2..sr]);
        let e2 = energy(&l[sr..3 * sr / 2]) + energy(&rt[sr..3 * sr / 2]);
        let e3 = energy(&l[2 * sr..5 * sr / 2]) + energy(&rt[2 * sr..5 * sr / 2]);
        let db1 = 10.0 * (e1 / e2).log10();
        let db2 = 10.0 * (e2 / e3).log10();
        assert!(db1 > 20.0 && db2 > 40.0, "decay {db1:.1} dB, {db2:.1} dB");
    }

    #[test]
    fn bigger_room_rings_longer() {
        let sr = SR as usize;
        let tail_energy = |room| {
            let mut r = reverb(room, 0.5, 1.0);
            let outs = render(&mut r, &[impulse(sr)], 2);
            energy(&outs[0][sr / 2..])
        };
        let (small, big) = (tail_energy(0.2), tail_energy(0.9));
        assert!(big > 100.0 * small, "{small} vs {big}");
    }

    #[test]
    fn silence_after_a_tail_is_exactly_zero() {
        let sr = SR as usize;
        let mut r = reverb(0.5, 0.5, 1.0);
        let outs = render(&mut r, &[impulse(12 * sr)], 2);
        assert!(outs[0][11 * sr..].iter().all(|&x| x == 0.0));
        assert!(outs[1][11 * sr..].iter().all(|&x| x == 0.0));
        assert!(r
            .left
            .combs
            .iter()
            .all(|c| c.store == 0.0 && c.buf.iter().all(|&x| x == 0.0)));
    }

    #[test]
    fn max_room_loud_noise_stays_finite() {
        let mut r = reverb(1.0, 0.0, 1.0);
        let x: Vec<f32> = (0..SR as usize)
            .map(|i| if i % 37 < 18 { 1e9 } else { -1e9 })
            .collect();
        let outs = render(&mut r, &[x.clone(), x.clone(), x], 2);
        assert!(outs.iter().flatten().all(|v| v.is_finite()));
        let mut r = reverb(1.0, 0.0, 1.0);
        let outs = render(&mut r, &[impulse(4 * SR as usize)], 2);
        assert!(outs
            .iter()
            .flatten()
            .all(|v| v.is_finite() && v.abs() < 1.0));
    }

    #[test]
    fn dry_mix_passes_input_and_width_zero_is_mono() {
        let mut r = reverb(0.5, 0.5, 0.0);
        let x: Vec<f32> = (0..500).map(|i| (i as f32 * 0.01).sin()).collect();
        let outs = render(&mut r, std::slice::from_ref(&x), 2);
        assert_eq!(outs[0], x);
        assert_eq!(outs[1], x);
        let mut r = reverb(0.5, 0.5, 1.0);
        r.set_param(WIDTH, 0.0);
        r.reset();
        let outs = render(&mut r, &[impulse(SR as usize)], 2);
        assert_eq!(outs[0], outs[1]);
    }

    #[test]
    fn stereo_inputs_are_used() {
        let mut r = reverb(0.5, 0.5, 0.0);
        let zero = vec![0.0f32; 100];
        let one = vec![1.0f32; 100];
        let outs = render(&mut r, &[zero.clone(), one, zero], 2);
        assert!(outs[0].iter().all(|&x| x == 1.0));
        assert!(outs[1].iter().all(|&x| x == 0.0));
    }
}
