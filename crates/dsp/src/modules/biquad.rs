//! `biquad`: a second-order filter from the RBJ Audio EQ Cookbook: lowpass, highpass,
//! bandpass, notch, peak, low shelf and high shelf.
//!
//! Direct form I with coefficients and state in f64: at low cutoffs the poles sit very
//! close to the unit circle and f32 state adds audible noise, while f64 costs nothing
//! here. Direct form I is also the fast form: the feed-forward part does not depend on
//! past outputs, so the per-sample recursion is one multiply and one subtraction long
//! (`y = (ff - a2 y[n-2]) - a1 y[n-1]`), where transposed form II chains three
//! operations. While they rest a block is one tight loop with everything in registers.
//!
//! Changes never click. Cutoff and q glide geometrically (an even sweep in pitch and in
//! dB) over [`FILTER_RAMP_MS`]; gain glides over 10 ms. While anything glides the
//! coefficients are designed every [`COEF_INTERVAL`] samples and move linearly from one
//! design to the next, sample by sample, so they never step. The response shape is a
//! [`FilterMode`], chosen by the `mode` parameter; a mode change crossfades the
//! coefficients from those in use to the new mode's over [`MODE_FADE_MS`].
//!
//! Why crossfading coefficients is safe: every frozen blend is a stable filter, because
//! the stable `(a1, a2)` pairs of a biquad form a convex set (the triangle
//! `|a2| < 1, |a1| < 1 + a2`), which holds every straight line between two stable designs;
//! and the time-varying part lasts a bounded number of samples, after which the filter is
//! the new, stable, design, so nothing can grow without bound. Crossfading coefficients,
//! not outputs, needs no second filter and starts from memories consistent with the
//! output: the old mode's output turns smoothly into the new one's (with the same poles,
//! as LP, HP, BP and notch share, it is exactly a crossfade of the feed-forward parts
//! followed by the common recursion).

use crate::params::Params;
use crate::smoother::FILTER_RAMP_MS;
use crate::module::{lane_frames, sane_sample_rate, Module, VoiceLanes, VOICE_LANES};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `cutoff` parameter.
pub const CUTOFF: usize = 0;
/// Index of the `q` parameter.
pub const Q: usize = 1;
/// Index of the `mode` parameter.
pub const MODE: usize = 2;
/// Index of the `gain` parameter (peak and shelves).
pub const GAIN: usize = 3;

/// Samples between coefficient updates while cutoff or q glide: often enough to sound
/// smooth, rare enough that the trigonometry costs little.
pub const COEF_INTERVAL: u32 = 16;

/// Length of a crossfade between two modes: the coefficients move from the old mode's
/// to the new mode's over this time, so a mode switch never jumps.
pub const MODE_FADE_MS: f32 = 10.0;

/// Highest cutoff used, as a fraction of the sample rate: 0.49 x sr, just below Nyquist
/// (0.5 x sr), where the RBJ formulas degenerate. At 44.1 kHz this is 21.6 kHz, so the whole
/// documented 20 kHz range is usable at common rates.
pub const MAX_CUTOFF_FRACTION: f64 = 0.49;

/// Static description of the `biquad` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "biquad",
    doc: "Biquad filter (RBJ Audio EQ Cookbook): lowpass, highpass, bandpass, notch, peak, low shelf or high shelf.",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::hz("cutoff", 10.0..=20_000.0, 2_000.0).doc("Cutoff frequency (glides evenly in pitch over 30 ms; held below 0.49 x sample rate)."),
        ParamSpec::q("q", 0.1..=20.0, 0.707).doc("Resonance: 0.707 is flat (Butterworth), higher values peak at the cutoff (for shelves: the slope); glides evenly in dB over 30 ms."),
        ParamSpec::number("mode", 0.0..=6.0, 0.0).doc("Response (rounded): 0 lowpass, 1 highpass, 2 bandpass (0 dB peak), 3 notch, 4 peak, 5 low shelf, 6 high shelf; a switch crossfades over 10 ms."),
        ParamSpec::db("gain", -24.0..=24.0, 0.0).doc("Boost or cut of the peak and shelf modes (glides over 10 ms)."),
    ],
    has_gate: false,
};

/// Which response the biquad computes; one variant per RBJ cookbook formula.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterMode {
    /// 12 dB/octave lowpass.
    Lowpass,
    /// 12 dB/octave highpass.
    Highpass,
    /// Bandpass with 0 dB at the centre.
    Bandpass,
    /// Notch (band reject).
    Notch,
    /// Peaking EQ: `gain` dB at the centre.
    Peak,
    /// Low shelf: `gain` dB below the corner.
    LowShelf,
    /// High shelf: `gain` dB above the corner.
    HighShelf,
}

impl FilterMode {
    /// The mode for a `mode` parameter value (rounded; out of range clamps).
    pub fn from_param(value: f32) -> FilterMode {
        match value.round() as i32 {
            i32::MIN..=0 => FilterMode::Lowpass,
            1 => FilterMode::Highpass,
            2 => FilterMode::Bandpass,
            3 => FilterMode::Notch,
            4 => FilterMode::Peak,
            5 => FilterMode::LowShelf,
            _ => FilterMode::HighShelf,
        }
    }
}

/// Normalised biquad coefficients (a0 divided out): y = b0 x + b1 x1 + b2 x2 - a1 y1 - a2 y2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefficients {
    /// Feed-forward coefficient of x\[n\].
    pub b0: f64,
    /// Feed-forward coefficient of x\[n-1\].
    pub b1: f64,
    /// Feed-forward coefficient of x\[n-2\].
    pub b2: f64,
    /// Feedback coefficient of y\[n-1\].
    pub a1: f64,
    /// Feedback coefficient of y\[n-2\].
    pub a2: f64,
}

impl Coefficients {
    /// RBJ cookbook coefficients for `mode` at `cutoff` Hz, quality `q` and `gain_db` (used by
    /// peak and shelves). The cutoff is held in 1 Hz ..= 0.49 x sample rate and q at least
    /// 0.01, so the result is always stable and finite.
    pub fn rbj(
        mode: FilterMode,
        sample_rate: f64,
        cutoff: f64,
        q: f64,
        gain_db: f64,
    ) -> Coefficients {
        let f0 = cutoff.clamp(1.0, sample_rate * MAX_CUTOFF_FRACTION);
        let q = q.max(0.01);
        let w0 = std::f64::consts::TAU * f0 / sample_rate;
        let (sin_w0, cos_w0) = w0.sin_cos();
        let alpha = sin_w0 / (2.0 * q);
        let (b0, b1, b2, a0, a1, a2) = match mode {
            FilterMode::Lowpass => {
                let b1 = 1.0 - cos_w0;
                (
                    b1 / 2.0,
                    b1,
                    b1 / 2.0,
                    1.0 + alpha,
                    -2.0 * cos_w0,
                    1.0 - alpha,
                )
            }
            FilterMode::Highpass => {
                let b1 = -(1.0 + cos_w0);
                (
                    -b1 / 2.0,
                    b1,
                    -b1 / 2.0,
                    1.0 + alpha,
                    -2.0 * cos_w0,
                    1.0 - alpha,
                )
            }
            FilterMode::Bandpass => (alpha, 0.0, -alpha, 1.0 + alpha, -2.0 * cos_w0, 1.0 - alpha),
            FilterMode::Notch => (
                1.0,
                -2.0 * cos_w0,
                1.0,
                1.0 + alpha,
                -2.0 * cos_w0,
                1.0 - alpha,
            ),
            FilterMode::Peak => {
                let a = 10f64.powf(gain_db / 40.0);
                (
                    1.0 + alpha * a,
                    -2.0 * cos_w0,
                    1.0 - alpha * a,
                    1.0 + alpha / a,
                    -2.0 * cos_w0,
                    1.0 - alpha / a,
                )
            }
            FilterMode::LowShelf | FilterMode::HighShelf => {
                let a = 10f64.powf(gain_db / 40.0);
                let k = 2.0 * a.sqrt() * alpha;
                // The high shelf is the low shelf with cos w0 negated and b1, a1 flipped.
                let (c, s) = if mode == FilterMode::LowShelf {
                    (cos_w0, 1.0)
                } else {
                    (-cos_w0, -1.0)
                };
                (
                    a * ((a + 1.0) - (a - 1.0) * c + k),
                    s * 2.0 * a * ((a - 1.0) - (a + 1.0) * c),
                    a * ((a + 1.0) - (a - 1.0) * c - k),
                    (a + 1.0) + (a - 1.0) * c + k,
                    s * -2.0 * ((a - 1.0) + (a + 1.0) * c),
                    (a + 1.0) + (a - 1.0) * c - k,
                )
            }
        };
        Coefficients {
            b0: b0 / a0,
            b1: b1 / a0,
            b2: b2 / a0,
            a1: a1 / a0,
            a2: a2 / a0,
        }
    }

    /// Magnitude of the frequency response at `freq` Hz, from the coefficients; for tests
    /// and for plotting, not used while rendering.
    pub fn magnitude(&self, sample_rate: f64, freq: f64) -> f64 {
        let w = std::f64::consts::TAU * freq / sample_rate;
        let (s1, c1) = w.sin_cos();
        let (s2, c2) = (2.0 * w).sin_cos();
        // H(z) at z = e^{jw}: numerator and denominator in z^-1.
        let nr = self.b0 + self.b1 * c1 + self.b2 * c2;
        let ni = -(self.b1 * s1 + self.b2 * s2);
        let dr = 1.0 + self.a1 * c1 + self.a2 * c2;
        let di = -(self.a1 * s1 + self.a2 * s2);
        ((nr * nr + ni * ni) / (dr * dr + di * di)).sqrt()
    }
}

/// Filter state: smoothed parameters, current coefficients and the direct-form-I memories.
#[derive(Debug, Clone)]
pub struct Biquad {
    sample_rate: f64,
    params: Params,
    /// The coefficients in use now.
    coefs: Coefficients,
    /// Where the coefficients are heading in the current segment of a change.
    target: Coefficients,
    /// Per-sample increment of every coefficient in the current segment.
    step: Coefficients,
    /// The coefficients in use when the mode last changed: the side a mode crossfade
    /// fades from.
    from: Coefficients,
    /// Samples of the mode crossfade still to come (0: no crossfade).
    fade_remaining: u32,
    /// Memories: the last two inputs and the last two outputs.
    mem: Memories,
    /// True while the coefficients lag the parameters: a glide, a mode crossfade or the
    /// segment that lands on their final values is in progress.
    gliding: bool,
    /// Samples left in the current segment (0: a new segment is planned next sample).
    countdown: u32,
}

/// The direct-form-I memories: x\[n-1\], x\[n-2\], y\[n-1\], y\[n-2\].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Memories {
    x1: f64,
    x2: f64,
    y1: f64,
    y2: f64,
}

impl Memories {
    /// Filters one sample with `c` and returns y\[n\].
    #[inline(always)]
    fn tick(&mut self, c: &Coefficients, x: f64) -> f64 {
        // Feed-forward and the older output first, the newest output last: the
        // sample-to-sample dependency is then one multiply and one subtraction.
        let older = c.b0 * x + c.b1 * self.x1 + c.b2 * self.x2 - c.a2 * self.y2;
        let y = older - c.a1 * self.y1;
        self.x2 = self.x1;
        self.x1 = x;
        self.y2 = self.y1;
        self.y1 = y;
        // Flush both outputs together once they are negligible, so a decaying filter
        // never reaches denormals (slow on x86); in software, never through FPU flags.
        // A predictable branch, so the check stays off the recursion's critical path.
        // The inputs need no flush: they are f32 values, always normal as f64.
        if y.abs() < DENORMAL_FLOOR && self.y2.abs() < DENORMAL_FLOOR {
            self.y1 = 0.0;
            self.y2 = 0.0;
        }
        y
    }
}

impl Coefficients {
    /// `self + (other - self) x t`, coefficient by coefficient.
    #[inline]
    fn lerp(&self, other: &Coefficients, t: f64) -> Coefficients {
        Coefficients {
            b0: self.b0 + (other.b0 - self.b0) * t,
            b1: self.b1 + (other.b1 - self.b1) * t,
            b2: self.b2 + (other.b2 - self.b2) * t,
            a1: self.a1 + (other.a1 - self.a1) * t,
            a2: self.a2 + (other.a2 - self.a2) * t,
        }
    }

    /// Adds `d` to every coefficient.
    #[inline(always)]
    fn add(&mut self, d: &Coefficients) {
        self.b0 += d.b0;
        self.b1 += d.b1;
        self.b2 += d.b2;
        self.a1 += d.a1;
        self.a2 += d.a2;
    }

    /// All zero: no step.
    const ZERO: Coefficients = Coefficients {
        b0: 0.0,
        b1: 0.0,
        b2: 0.0,
        a1: 0.0,
        a2: 0.0,
    };

    fn to_array(self) -> [f64; 5] {
        [self.b0, self.b1, self.b2, self.a1, self.a2]
    }

    fn read(r: &mut StateReader<'_>) -> Result<Coefficients, StateError> {
        Ok(Coefficients {
            b0: r.get_f64()?,
            b1: r.get_f64()?,
            b2: r.get_f64()?,
            a1: r.get_f64()?,
            a2: r.get_f64()?,
        })
    }
}

impl Biquad {
    /// A lowpass at the default cutoff and q, with silent memories.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let cutoff = SPEC.params[CUTOFF].default;
        let q = SPEC.params[Q].default;
        let coefs = Coefficients::rbj(
            FilterMode::Lowpass,
            f64::from(sr),
            f64::from(cutoff),
            f64::from(q),
            0.0,
        );
        Biquad {
            sample_rate: f64::from(sr),
            params: Params::new(&SPEC, sr)
                .instant(&[MODE])
                .geometric(&[CUTOFF, Q], FILTER_RAMP_MS),
            coefs,
            target: coefs,
            step: Coefficients::ZERO,
            from: coefs,
            fade_remaining: 0,
            mem: Memories::default(),
            gliding: false,
            countdown: 0,
        }
    }

    /// The coefficients in use now, for tests and diagnostics.
    pub fn coefficients(&self) -> Coefficients {
        self.coefs
    }

    /// The response shape chosen by the `mode` parameter.
    pub fn mode(&self) -> FilterMode {
        FilterMode::from_param(self.params[MODE].target())
    }

    /// The coefficients of the mode at these parameter values.
    fn design(&self, cutoff: f32, q: f32, gain_db: f32) -> Coefficients {
        Coefficients::rbj(
            self.mode(),
            self.sample_rate,
            f64::from(cutoff),
            f64::from(q),
            f64::from(gain_db),
        )
    }

    /// At a segment boundary: where the coefficients should be [`COEF_INTERVAL`] samples
    /// from now (the design at the current parameter values, blended with the faded-from
    /// coefficients while a mode crossfade runs; the crossfade advances by one segment).
    fn next_target(&mut self, cutoff: f32, q: f32, gain_db: f32) -> Coefficients {
        let to = self.design(cutoff, q, gain_db);
        if self.fade_remaining == 0 {
            return to;
        }
        self.fade_remaining = self.fade_remaining.saturating_sub(COEF_INTERVAL);
        let t = 1.0 - f64::from(self.fade_remaining) / f64::from(self.mode_fade_len());
        self.from.lerp(&to, t)
    }

    /// Length of a mode crossfade in samples: [`MODE_FADE_MS`], a whole number of segments.
    fn mode_fade_len(&self) -> u32 {
        let n = crate::smoother::ramp_samples(self.sample_rate as f32, MODE_FADE_MS);
        n.div_ceil(COEF_INTERVAL).max(1) * COEF_INTERVAL
    }

    /// One sample of the gliding path: advances the parameters, plans a segment at each
    /// boundary, and moves the coefficients one step along it.
    #[inline]
    fn glide_step(&mut self) {
        let c = self.params[CUTOFF].next();
        let q = self.params[Q].next();
        let g = self.params[GAIN].next();
        if self.countdown == 0 {
            let target = self.next_target(c, q, g);
            let settled = self.params[CUTOFF].is_settled()
                && self.params[Q].is_settled()
                && self.params[GAIN].is_settled()
                && self.fade_remaining == 0;
            if settled && target == self.coefs {
                // Arrived: rest until the next change.
                self.gliding = false;
                self.step = Coefficients::ZERO;
                return;
            }
            let n = f64::from(COEF_INTERVAL);
            self.step = Coefficients {
                b0: (target.b0 - self.coefs.b0) / n,
                b1: (target.b1 - self.coefs.b1) / n,
                b2: (target.b2 - self.coefs.b2) / n,
                a1: (target.a1 - self.coefs.a1) / n,
                a2: (target.a2 - self.coefs.a2) / n,
            };
            self.target = target;
            self.countdown = COEF_INTERVAL;
        }
        self.countdown -= 1;
        if self.countdown == 0 {
            // Land on the segment's target exactly (no drift from the summed steps).
            self.coefs = self.target;
        } else {
            self.coefs.add(&self.step);
        }
    }
}

/// Filter memories below this are flushed to zero, so a decaying filter never reaches
/// denormals (slow on x86); done in software, never through FPU flags.
const DENORMAL_FLOOR: f64 = 1e-20;

/// [`VOICE_LANES`] settled biquads (one per voice of an instrument) side by side: the
/// settled loop of [`Biquad`]'s `process` with every value an array over the lanes,
/// the same operations in the same order per lane (the denormal flush checked as
/// [`VoiceLanes::run`] says), so each lane gives the bits its biquad gives alone
/// (`lanes_match_biquads_alone`).
#[derive(Debug, Clone, Copy, Default)]
pub struct BiquadLanes {
    b0: [f64; VOICE_LANES],
    b1: [f64; VOICE_LANES],
    b2: [f64; VOICE_LANES],
    a1: [f64; VOICE_LANES],
    a2: [f64; VOICE_LANES],
    x1: [f64; VOICE_LANES],
    x2: [f64; VOICE_LANES],
    y1: [f64; VOICE_LANES],
    y2: [f64; VOICE_LANES],
}

impl VoiceLanes for BiquadLanes {
    type Module = Biquad;

    fn ready(m: &Biquad) -> bool {
        !m.gliding
    }

    fn load(&mut self, lane: usize, m: &Biquad) {
        if lane >= VOICE_LANES {
            return;
        }
        let Coefficients { b0, b1, b2, a1, a2 } = m.coefs;
        (self.b0[lane], self.b1[lane], self.b2[lane]) = (b0, b1, b2);
        (self.a1[lane], self.a2[lane]) = (a1, a2);
        let Memories { x1, x2, y1, y2 } = m.mem;
        (self.x1[lane], self.x2[lane], self.y1[lane], self.y2[lane]) = (x1, x2, y1, y2);
    }

    fn store(&self, lane: usize, m: &mut Biquad) {
        if lane >= VOICE_LANES {
            return;
        }
        m.mem = Memories {
            x1: self.x1[lane],
            x2: self.x2[lane],
            y1: self.y1[lane],
            y2: self.y2[lane],
        };
    }

    /// Runs the block without the denormal flush first, watching the smallest output
    /// magnitude of each lane: a flush needs an output below [`DENORMAL_FLOOR`], so if
    /// none came, no flush would have happened and the result is exact. Otherwise (a
    /// decaying or silent voice: rare) the block runs again from the same state with
    /// the flush, exactly as `process` does. The flush's check thus stays off the
    /// recursion's dependency chain and out of its vector ports.
    fn run(&mut self, x: [&[f32]; VOICE_LANES], mut y: [&mut [f32]; VOICE_LANES]) {
        let start = *self;
        if !self.run_frames::<false>(x, y.each_mut().map(|s| &mut **s)) {
            *self = start;
            self.run_frames::<true>(x, y);
        }
    }
}

impl BiquadLanes {
    /// The settled loop of [`Biquad`]'s `process` with every value an array over the
    /// lanes, the same operations in the same order per lane: with `FLUSH` its denormal
    /// flush too (then it returns true), without it none, returning whether no output
    /// came below [`DENORMAL_FLOOR`] (so none would have been flushed).
    #[inline(always)]
    fn run_frames<const FLUSH: bool>(
        &mut self,
        x: [&[f32]; VOICE_LANES],
        y: [&mut [f32]; VOICE_LANES],
    ) -> bool {
        let BiquadLanes {
            b0, b1, b2, a1, a2, ..
        } = *self;
        let (mut x1, mut x2, mut y1, mut y2) = (self.x1, self.x2, self.y1, self.y2);
        let mut least = [f64::MAX; VOICE_LANES];
        for (xi, yo) in lane_frames(x, y) {
            // Statement by statement across the lanes (so the compiler packs them), each
            // lane exactly the settled loop of `process`.
            let x = xi.map(f64::from);
            let y: [f64; VOICE_LANES] = std::array::from_fn(|l| {
                let older = b0[l] * x[l] + b1[l] * x1[l] + b2[l] * x2[l] - a2[l] * y2[l];
                older - a1[l] * y1[l]
            });
            x2 = x1;
            x1 = x;
            y2 = y1;
            y1 = y;
            if FLUSH {
                for l in 0..VOICE_LANES {
                    if y[l].abs() < DENORMAL_FLOOR && y2[l].abs() < DENORMAL_FLOOR {
                        y1[l] = 0.0;
                        y2[l] = 0.0;
                    }
                }
            } else {
                least = std::array::from_fn(|l| {
                    let size = y[l].abs();
                    if size < least[l] {
                        size
                    } else {
                        least[l]
                    }
                });
            }
            for (o, v) in yo.into_iter().zip(y) {
                *o = v as f32;
            }
        }
        (self.x1, self.x2, self.y1, self.y2) = (x1, x2, y1, y2);
        FLUSH || least.iter().all(|&size| size >= DENORMAL_FLOOR)
    }
}

impl Module for Biquad {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Every change starts the gliding path, which plans a new segment from the
    /// coefficients in use at once. A mode change starts a crossfade from them (setting
    /// the mode it already has fades between equal coefficients: nothing changes). A mode
    /// reads back as the whole number of the response in use.
    fn param_changed(&mut self, index: usize) {
        if index == MODE {
            let mode = self.mode();
            self.params[MODE].set_immediate(f32::from(mode as u8));
            self.from = self.coefs;
            self.fade_remaining = self.mode_fade_len();
        }
        self.gliding = true;
        self.countdown = 0;
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let input: &[f32] = inputs.first().copied().unwrap_or(&[]);
        // Work on copies so the loop keeps everything in registers.
        let mut mem = self.mem;
        if !self.gliding {
            // `Memories::tick` spelled out on plain locals: kept as separate scalars the
            // compiler does not pack y1 and y2 into one vector register, which would put
            // shuffles on the recursion's critical path. Same operations, same order, so
            // the same bits as `tick`.
            let Coefficients { b0, b1, b2, a1, a2 } = self.coefs;
            let Memories {
                mut x1,
                mut x2,
                mut y1,
                mut y2,
            } = mem;
            for (o, &x) in out.iter_mut().zip(input) {
                let x = f64::from(x);
                let older = b0 * x + b1 * x1 + b2 * x2 - a2 * y2;
                let y = older - a1 * y1;
                x2 = x1;
                x1 = x;
                y2 = y1;
                y1 = y;
                if y.abs() < DENORMAL_FLOOR && y2.abs() < DENORMAL_FLOOR {
                    y1 = 0.0;
                    y2 = 0.0;
                }
                *o = y as f32;
            }
            mem = Memories { x1, x2, y1, y2 };
        } else {
            for (o, &x) in out.iter_mut().zip(input) {
                if self.gliding {
                    self.glide_step();
                }
                *o = mem.tick(&self.coefs, f64::from(x)) as f32;
            }
        }
        self.mem = mem;
    }

    fn side_by_side(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }

    fn clear(&mut self) {
        self.coefs = self.design(
            self.params[CUTOFF].target(),
            self.params[Q].target(),
            self.params[GAIN].target(),
        );
        self.target = self.coefs;
        self.from = self.coefs;
        self.step = Coefficients::ZERO;
        self.fade_remaining = 0;
        self.mem = Memories::default();
        self.gliding = false;
        self.countdown = 0;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        let m = &self.mem;
        for c in [self.coefs, self.target, self.step, self.from] {
            for v in c.to_array() {
                w.put_f64(v);
            }
        }
        for v in [m.x1, m.x2, m.y1, m.y2] {
            w.put_f64(v);
        }
        w.put_u32(self.fade_remaining);
        w.put_bool(self.gliding);
        w.put_u32(self.countdown);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.coefs = Coefficients::read(r)?;
        self.target = Coefficients::read(r)?;
        self.step = Coefficients::read(r)?;
        self.from = Coefficients::read(r)?;
        self.mem = Memories {
            x1: r.get_f64()?,
            x2: r.get_f64()?,
            y1: r.get_f64()?,
            y2: r.get_f64()?,
        };
        // Held in range, so a damaged snapshot cannot stall a crossfade or a segment.
        self.fade_remaining = r.get_u32()?.min(self.mode_fade_len());
        self.gliding = r.get_bool()?;
        self.countdown = r.get_u32()?.min(COEF_INTERVAL);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smoother::ramp_samples;

    const SR: f32 = 48_000.0;

    /// Independent RBJ lowpass magnitude, straight from the cookbook's analog prototype
    /// mapped through the bilinear transform: |H| of (1 - cos w0)/2 (1 + 2z^-1 + z^-2) /
    /// ((1 + alpha) - 2 cos w0 z^-1 + (1 - alpha) z^-2).
    fn analytic_db(f0: f64, q: f64, f: f64) -> f64 {
        let sr = f64::from(SR);
        let w0 = std::f64::consts::TAU * f0 / sr;
        let alpha = w0.sin() / (2.0 * q);
        let w = std::f64::consts::TAU * f / sr;
        let k = (1.0 - w0.cos()) / 2.0;
        // Numerator: k (1 + e^{-jw})^2 has magnitude k * 4 cos^2(w/2).
        let num = k * 4.0 * (w / 2.0).cos().powi(2);
        let (a0, a1, a2) = (1.0 + alpha, -2.0 * w0.cos(), 1.0 - alpha);
        let re = a0 + a1 * w.cos() + a2 * (2.0 * w).cos();
        let im = -(a1 * w.sin() + a2 * (2.0 * w).sin());
        20.0 * (num / (re * re + im * im).sqrt()).log10()
    }

    /// Measures the filter's gain at `f` Hz with a long sine: one DFT bin over a whole
    /// number of cycles, after the transient has died away.
    fn measured_db(cutoff: f32, q: f32, f: f64) -> f64 {
        measured_mode_db(0.0, 0.0, cutoff, q, f)
    }

    /// Like [`measured_db`] for any `mode` parameter value and `gain` in dB.
    fn measured_mode_db(mode: f32, gain: f32, cutoff: f32, q: f32, f: f64) -> f64 {
        let mut b = Biquad::new(SR);
        b.set_param(CUTOFF, cutoff);
        b.set_param(Q, q);
        b.set_param(MODE, mode);
        b.set_param(GAIN, gain);
        b.reset();
        let sr = f64::from(SR);
        let settle = SR as usize;
        let n = SR as usize; // 1 s: integer cycles for integer f
        let input: Vec<f32> = (0..settle + n)
            .map(|i| (std::f64::consts::TAU * f * i as f64 / sr).sin() as f32)
            .collect();
        let mut out = vec![0.0f32; input.len()];
        for (o, x) in out.chunks_mut(64).zip(input.chunks(64)) {
            b.process(&[x], &mut [o]);
        }
        let bin = |sig: &[f32]| {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            for (i, &x) in sig.iter().enumerate() {
                let w = std::f64::consts::TAU * f * i as f64 / sr;
                re += f64::from(x) * w.cos();
                im += f64::from(x) * w.sin();
            }
            (re * re + im * im).sqrt()
        };
        20.0 * (bin(&out[settle..]) / bin(&input[settle..])).log10()
    }

    #[test]
    fn lowpass_matches_rbj_response_within_a_tenth_db() {
        for (cutoff, q) in [(1000.0f32, 0.707f32), (2000.0, 4.0), (300.0, 0.5)] {
            for f in [100.0, 500.0, 1000.0, 2000.0, 5000.0] {
                let want = analytic_db(f64::from(cutoff), f64::from(q), f);
                let got = measured_db(cutoff, q, f);
                assert!(
                    (got - want).abs() < 0.1,
                    "cutoff {cutoff} q {q} at {f} Hz: measured {got:.3} dB, RBJ {want:.3} dB"
                );
            }
        }
    }

    #[test]
    fn magnitude_helper_agrees_with_analytic() {
        let c = Coefficients::rbj(FilterMode::Lowpass, f64::from(SR), 1000.0, 0.707, 0.0);
        for f in [50.0, 1000.0, 8000.0] {
            let a = 20.0 * c.magnitude(f64::from(SR), f).log10();
            assert!((a - analytic_db(1000.0, 0.707, f)).abs() < 1e-9);
        }
        // Butterworth: -3 dB at the cutoff.
        assert!(
            (analytic_db(1000.0, std::f64::consts::FRAC_1_SQRT_2, 1000.0) + 3.0103).abs() < 1e-3
        );
    }

    #[test]
    fn cutoff_above_nyquist_is_held_below_it() {
        let mut b = Biquad::new(8_000.0);
        b.set_param(CUTOFF, 20_000.0);
        b.reset();
        let c = b.coefficients();
        let expect = Coefficients::rbj(
            FilterMode::Lowpass,
            8_000.0,
            8_000.0 * 0.49,
            f64::from(0.707f32),
            0.0,
        );
        assert_eq!(c, expect);
        let input = [1.0f32; 64];
        let mut out = [0.0f32; 64];
        for _ in 0..100 {
            b.process(&[&input], &mut [&mut out]);
        }
        assert!(out.iter().all(|x| x.is_finite()));
        assert!((out[63] - 1.0).abs() < 1e-4, "DC passes: {}", out[63]);
    }

    #[test]
    fn silence_decays_to_exact_zero() {
        let mut b = Biquad::new(SR);
        b.set_param(CUTOFF, 10.0);
        b.set_param(Q, 20.0);
        b.reset();
        let mut out = [0.0f32; 64];
        b.process(&[&[1.0; 64]], &mut [&mut out]);
        for _ in 0..100_000 {
            b.process(&[&[0.0; 64]], &mut [&mut out]);
        }
        assert_eq!((b.mem.y1, b.mem.y2), (0.0, 0.0));
        assert!(out.iter().all(|&x| x == 0.0));
    }

    #[test]
    fn cutoff_glide_moves_coefficients_in_small_steps_and_arrives() {
        let mut b = Biquad::new(SR);
        let before = b.coefficients();
        b.set_param(CUTOFF, 500.0);
        let mut out = [0.0f32; 1];
        let mut largest = 0.0f64;
        let mut last = before;
        for _ in 0..2000 {
            b.process(&[&[0.0]], &mut [&mut out]);
            largest = largest.max((b.coefficients().a1 - last.a1).abs());
            last = b.coefficients();
        }
        let want = Coefficients::rbj(FilterMode::Lowpass, f64::from(SR), 500.0, 0.707_f32.into(), 0.0);
        // The coefficients move every sample, each step a small part of the whole way.
        assert!(largest < (want.a1 - before.a1).abs() / 200.0, "step {largest}");
        assert_eq!(b.coefficients(), want);
        assert!(!b.gliding);
    }

    #[test]
    fn mode_switch_crossfades_the_coefficients_and_arrives() {
        let mut b = Biquad::new(SR);
        let lowpass = b.coefficients();
        b.set_param(MODE, 2.0);
        let bandpass = Coefficients::rbj(FilterMode::Bandpass, f64::from(SR), 2000.0, 0.707_f32.into(), 0.0);
        let mut out = [0.0f32; 1];
        let mut largest = 0.0f64;
        let mut last = lowpass;
        let mut samples = 0;
        while b.gliding {
            b.process(&[&[0.0]], &mut [&mut out]);
            largest = largest.max((b.coefficients().b0 - last.b0).abs());
            last = b.coefficients();
            samples += 1;
        }
        assert_eq!(b.coefficients(), bandpass);
        let fade = ramp_samples(SR, MODE_FADE_MS);
        assert!((fade..fade + 2 * COEF_INTERVAL + 2).contains(&samples), "{samples} samples");
        assert!(largest <= (bandpass.b0 - lowpass.b0).abs() / f64::from(fade) * 1.01);
    }

    #[test]
    fn a_snapshot_mid_crossfade_and_mid_glide_continues_bit_identically() {
        let input: Vec<f32> = (0..4096)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut a = Biquad::new(SR);
        let mut out = vec![0.0f32; 4096];
        a.process(&[&input[..1000]], &mut [&mut out[..1000]]);
        a.set_param(MODE, 4.0);
        a.set_param(GAIN, 12.0);
        a.set_param(Q, 15.0);
        // 203 samples in: mid-segment, mid-crossfade, mid-glide.
        a.process(&[&input[1000..1203]], &mut [&mut out[1000..1203]]);
        assert!(a.gliding && a.fade_remaining > 0 && a.countdown > 0);
        let mut bytes = vec![0u8; a.state_len()];
        a.save_state(&mut StateWriter::new(&mut bytes));
        let mut b = Biquad::new(SR);
        b.load_state(&mut StateReader::new(&bytes)).unwrap();
        let mut other = vec![0.0f32; 4096];
        a.process(&[&input[1203..]], &mut [&mut out[1203..]]);
        b.process(&[&input[1203..]], &mut [&mut other[1203..]]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out[1203..]), bits(&other[1203..]));
        assert!(!a.gliding && !b.gliding);
        assert_eq!(a.coefficients(), b.coefficients());
    }

    #[test]
    fn every_mode_crossfade_stays_bounded_at_extreme_settings() {
        // Every blend of two stable designs is stable (a convex set); this plays every
        // switch at the extremes of cutoff and q with a full-scale input.
        for cutoff in [10.0f32, 20_000.0] {
            for q in [0.1f32, 20.0] {
                for from in 0..=6 {
                    for to in 0..=6 {
                        let mut b = Biquad::new(SR);
                        for (i, v) in [(CUTOFF, cutoff), (Q, q), (MODE, from as f32), (GAIN, 24.0)] {
                            b.set_param(i, v);
                        }
                        b.reset();
                        let input: Vec<f32> = (0..64).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
                        let mut out = [0.0f32; 64];
                        let mut peak = 0.0f32;
                        for block in 0..200 {
                            if block == 50 {
                                b.set_param(MODE, to as f32);
                            }
                            b.process(&[&input], &mut [&mut out]);
                            peak = out.iter().fold(peak, |m, x| m.max(x.abs()));
                        }
                        assert!(peak.is_finite() && peak < 1e4, "{from} -> {to} at {cutoff} Hz, q {q}: {peak}");
                    }
                }
            }
        }
    }

    #[test]
    fn resting_fast_path_gives_the_same_bits_as_the_per_sample_path() {
        // Setting a parameter to its current value sends the filter through the
        // per-sample (gliding) path with unchanged coefficients.
        let input: Vec<f32> = (0..640)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let (mut fast, mut slow) = (Biquad::new(SR), Biquad::new(SR));
        let (mut a, mut b) = (vec![0.0f32; 640], vec![0.0f32; 640]);
        for ((x, oa), ob) in input.chunks(64).zip(a.chunks_mut(64)).zip(b.chunks_mut(64)) {
            slow.set_param(CUTOFF, 2_000.0);
            assert!(slow.gliding);
            fast.process(&[x], &mut [oa]);
            slow.process(&[x], &mut [ob]);
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b));
        assert_eq!(fast.mem, slow.mem);
    }

    /// The cookbook's transfer functions, written out independently of `Coefficients::rbj`
    /// (unnormalised, evaluated as complex polynomials): the oracle for every mode.
    fn cookbook_db(mode: usize, gain_db: f64, f0: f64, q: f64, f: f64) -> f64 {
        let sr = f64::from(SR);
        let w0 = std::f64::consts::TAU * f0 / sr;
        let (sn, cs) = w0.sin_cos();
        let alpha = sn / (2.0 * q);
        let a = 10f64.powf(gain_db / 40.0);
        let sa = 2.0 * a.sqrt() * alpha;
        let (b, den) = match mode {
            0 => (
                [(1.0 - cs) / 2.0, 1.0 - cs, (1.0 - cs) / 2.0],
                [1.0 + alpha, -2.0 * cs, 1.0 - alpha],
            ),
            1 => (
                [(1.0 + cs) / 2.0, -(1.0 + cs), (1.0 + cs) / 2.0],
                [1.0 + alpha, -2.0 * cs, 1.0 - alpha],
            ),
            2 => ([alpha, 0.0, -alpha], [1.0 + alpha, -2.0 * cs, 1.0 - alpha]),
            3 => ([1.0, -2.0 * cs, 1.0], [1.0 + alpha, -2.0 * cs, 1.0 - alpha]),
            4 => (
                [1.0 + alpha * a, -2.0 * cs, 1.0 - alpha * a],
                [1.0 + alpha / a, -2.0 * cs, 1.0 - alpha / a],
            ),
            5 => (
                [
                    a * ((a + 1.0) - (a - 1.0) * cs + sa),
                    2.0 * a * ((a - 1.0) - (a + 1.0) * cs),
                    a * ((a + 1.0) - (a - 1.0) * cs - sa),
                ],
                [
                    (a + 1.0) + (a - 1.0) * cs + sa,
                    -2.0 * ((a - 1.0) + (a + 1.0) * cs),
                    (a + 1.0) + (a - 1.0) * cs - sa,
                ],
            ),
            _ => (
                [
                    a * ((a + 1.0) + (a - 1.0) * cs + sa),
                    -2.0 * a * ((a - 1.0) + (a + 1.0) * cs),
                    a * ((a + 1.0) + (a - 1.0) * cs - sa),
                ],
                [
                    (a + 1.0) - (a - 1.0) * cs + sa,
                    2.0 * ((a - 1.0) - (a + 1.0) * cs),
                    (a + 1.0) - (a - 1.0) * cs - sa,
                ],
            ),
        };
        let w = std::f64::consts::TAU * f / sr;
        let eval = |c: [f64; 3]| {
            let re = c[0] + c[1] * w.cos() + c[2] * (2.0 * w).cos();
            let im = -(c[1] * w.sin() + c[2] * (2.0 * w).sin());
            (re * re + im * im).sqrt()
        };
        20.0 * (eval(b) / eval(den)).log10()
    }

    #[test]
    fn every_mode_matches_the_cookbook_within_a_tenth_db() {
        let names = [
            "lowpass",
            "highpass",
            "bandpass",
            "notch",
            "peak",
            "low shelf",
            "high shelf",
        ];
        for (mode, name) in names.iter().enumerate() {
            for (cutoff, q, gain) in [(1000.0f32, 0.707f32, 6.0f32), (2500.0, 2.0, -9.0)] {
                for f in [100.0, 700.0, 1000.0, 3000.0, 9000.0] {
                    let want =
                        cookbook_db(mode, f64::from(gain), f64::from(cutoff), f64::from(q), f);
                    if want < -60.0 {
                        continue; // deep in a notch or stopband: a DFT bin is no ruler there
                    }
                    let got = measured_mode_db(mode as f32, gain, cutoff, q, f);
                    assert!(
                        (got - want).abs() < 0.1,
                        "{name} cutoff {cutoff} q {q} gain {gain} at {f} Hz: measured {got:.3} dB, cookbook {want:.3} dB"
                    );
                }
            }
        }
    }

    #[test]
    fn shelves_and_peak_reach_their_gain() {
        // Far below a low shelf's corner (and far above a high shelf's) the gain is `gain` dB;
        // a peak has `gain` dB at its centre.
        assert!((cookbook_db(5, 12.0, 2000.0, 0.707, 20.0) - 12.0).abs() < 0.05);
        assert!((cookbook_db(6, -12.0, 500.0, 0.707, 20_000.0) + 12.0).abs() < 0.2);
        assert!((cookbook_db(4, 9.0, 1000.0, 1.0, 1000.0) - 9.0).abs() < 1e-9);
        let c = Coefficients::rbj(FilterMode::Peak, f64::from(SR), 1000.0, 1.0, 9.0);
        assert!((20.0 * c.magnitude(f64::from(SR), 1000.0).log10() - 9.0).abs() < 1e-9);
    }

    #[test]
    fn mode_and_gain_survive_a_snapshot() {
        let mut b = Biquad::new(SR);
        b.set_param(MODE, 5.0);
        b.set_param(GAIN, -6.0);
        let mut bytes = vec![0u8; b.state_len()];
        b.save_state(&mut StateWriter::new(&mut bytes));
        let mut c = Biquad::new(SR);
        c.load_state(&mut StateReader::new(&bytes)).unwrap();
        assert_eq!(c.param(MODE), 5.0);
        assert_eq!(c.param(GAIN), -6.0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Four biquads (their own modes, coefficients and memories, one ringing down
        /// into the denormal flush) rendered side by side give exactly the bits each
        /// gives alone.
        #[test]
        fn lanes_match_biquads_alone(
            settings in proptest::collection::vec(
                (10.0f32..20_000.0, 0.1f32..20.0, 0u8..7, -24.0f32..24.0, 1usize..300), 4),
            signal in proptest::collection::vec(-2.0f32..2.0, 64..300),
            quiet in 0usize..4,
        ) {
            let render = |b: &mut Biquad, x: &[f32]| {
                let mut out = vec![0.0f32; x.len()];
                b.process(&[x], &mut [&mut out]);
                out
            };
            let mut alone: Vec<Biquad> = settings
                .iter()
                .map(|&(cutoff, q, mode, gain, warm)| {
                    let mut b = Biquad::new(SR);
                    b.set_param(CUTOFF, cutoff);
                    b.set_param(Q, q);
                    b.set_param(MODE, f32::from(mode));
                    b.set_param(GAIN, gain);
                    b.reset();
                    let warm_up: Vec<f32> =
                        (0..warm).map(|i| ((i * 5 % 11) as f32 - 5.0) * 0.2).collect();
                    let _ = render(&mut b, &warm_up);
                    b
                })
                .collect();
            let mut side: Vec<Biquad> = alone.clone();
            // Lane `quiet` hears silence after a tiny impulse: its memories decay to
            // the flush.
            let input = |lane: usize, i: usize| {
                if lane == quiet {
                    if i == 0 { 1e-15 } else { 0.0 }
                } else {
                    signal[(i + 13 * lane) % signal.len()]
                }
            };
            let n = signal.len() * 20;
            let mut want = Vec::new();
            for (lane, b) in alone.iter_mut().enumerate() {
                proptest::prop_assert!(BiquadLanes::ready(b));
                let x: Vec<f32> = (0..n).map(|i| input(lane, i)).collect();
                want.push(render(b, &x));
            }
            let mut lanes = BiquadLanes::default();
            for (lane, b) in side.iter().enumerate() {
                lanes.load(lane, b);
            }
            let x: Vec<Vec<f32>> = (0..4).map(|lane| (0..n).map(|i| input(lane, i)).collect()).collect();
            let mut y = vec![vec![0.0f32; n]; 4];
            let cut = n / 3;
            for range in [0..cut, cut..n] {
                let xs = [0, 1, 2, 3].map(|l| &x[l][range.clone()]);
                let [y0, y1, y2, y3] = &mut y[..] else { unreachable!() };
                let ys = [y0, y1, y2, y3].map(|v| &mut v[range.clone()]);
                lanes.run(xs, ys);
            }
            for (lane, b) in side.iter_mut().enumerate() {
                lanes.store(lane, b);
                let got: Vec<u32> = y[lane].iter().map(|f| f.to_bits()).collect();
                let expected: Vec<u32> = want[lane].iter().map(|v| v.to_bits()).collect();
                proptest::prop_assert_eq!(got, expected, "lane {}", lane);
                proptest::prop_assert_eq!(b.mem, alone[lane].mem);
            }
        }
    }
}
