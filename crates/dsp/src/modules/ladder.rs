//! `ladder`: a 4-pole (24 dB/octave) Moog-style lowpass with resonance up to
//! self-oscillation.
//!
//! Model: the zero-delay-feedback (topology-preserving transform) ladder from Zavalishin,
//! *The Art of VA Filter Design* ch. 5: four trapezoidal one-pole stages with the global
//! feedback `u = x - k * y4` solved implicitly each sample, so the cutoff is exact (the
//! bilinear transform is prewarped at the cutoff) and fast cutoff sweeps stay stable. One
//! saturator sits at the loop input: `u = saturate(solved u)`, which bounds everything
//! after it (each stage is a stable lowpass), so self-oscillation settles at a steady
//! amplitude instead of growing, and `drive` pushes the input into it like an overdriven
//! ladder. The saturator is a cubic soft clipper ([`saturate`]), tanh-like but made of
//! multiplies only, and the stages are evaluated in state-space form (see `Coefs`) with
//! the feedback term carried from sample to sample while the parameters rest, so the
//! per-sample dependency chain is short (about 10 ns per sample on the target machine).
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
//! below 1e-20 every 16 samples.

use crate::params::Params;
use crate::module::{lane_frames, sane_sample_rate, Module, VoiceLanes, VOICE_LANES};
use crate::modules::common::{flush64, input, sanitize};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
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

/// Samples between coefficient updates while the cutoff glides: every sample. The ZDF
/// structure stays stable under any coefficient change, but updates 16 samples apart
/// stepped the response audibly on fast sweeps (`tests/click_free.rs`); the `tan` per
/// sample costs only while a glide lasts.
pub const COEF_INTERVAL: u32 = 1;

/// Samples between denormal flushes of the stage memories.
pub const FLUSH_INTERVAL: u32 = 16;

/// Highest cutoff used, as a fraction of the sample rate (the prewarp `tan` grows
/// without bound at Nyquist).
pub const MAX_CUTOFF_FRACTION: f64 = 0.49;

/// Static description of the `ladder` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "ladder",
    doc: "4-pole Moog-style ladder lowpass (24 dB/oct, zero-delay feedback, soft saturation); self-oscillates from resonance ~0.98.",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::hz("cutoff", 10.0..=20_000.0, 1_000.0).doc("Cutoff frequency (glides evenly in pitch over 30 ms; held below 0.49 x sample rate)."),
        ParamSpec::linear("resonance", 0.0..=1.2, 0.1).doc("Feedback: a peak at the cutoff that grows with it; self-oscillates (a sine at the cutoff) from ~0.98 up."),
        ParamSpec::linear("drive", 0.0..=4.0, 1.0).doc("Input gain into the saturating feedback stage: above ~1 the filter overdrives; 0 mutes the input (self-oscillation keeps ringing)."),
    ],
    has_gate: false,
};

/// Per-cutoff coefficients of the ladder written as a state-space update.
///
/// With `G = g/(1+g)`, `g = tan(pi fc / fs)`, one sample of the four trapezoidal stages
/// is linear in the four memories `s` and the loop input `u`:
/// `y4 = c . s + g4 u` and `s' = A s + b u` (A lower triangular: a stage only hears the
/// stages before it). Solving the feedback `u = sat((x - k y4) / (1 + k g4))`
/// then needs `c . s` only, and the new memories are one multiply-add each away from `u`:
/// a short dependency chain per sample instead of four stages in series, which is
/// what makes the filter cheap. The matrices are found by running the plain stage
/// equations on unit vectors, so they are the ZDF ladder by construction.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Coefs {
    /// Contribution of each memory to `y4`.
    c: [f64; 4],
    /// Contribution of `u` to `y4` (`G^4`).
    g4: f64,
    /// Memory-to-memory update (row = new memory).
    a: [[f64; 4]; 4],
    /// Contribution of `u` to each new memory.
    b: [f64; 4],
}

/// One sample of the four trapezoidal one-pole stages with stage gain `g1`: new memories
/// and `y4`. Only used to derive [`Coefs`].
fn stages(g1: f64, s: [f64; 4], u: f64) -> ([f64; 4], f64) {
    let mut x = u;
    let mut next = [0.0; 4];
    for (n, &m) in next.iter_mut().zip(&s) {
        let v = (x - m) * g1;
        let y = v + m;
        *n = y + v;
        x = y;
    }
    (next, x)
}

impl Coefs {
    fn new(sample_rate: f64, cutoff: f64) -> Coefs {
        let fc = cutoff.clamp(1.0, sample_rate * MAX_CUTOFF_FRACTION);
        let g = (std::f64::consts::PI * fc / sample_rate).tan();
        let g1 = g / (1.0 + g);
        let mut c = [0.0; 4];
        let mut a = [[0.0; 4]; 4];
        for j in 0..4 {
            let mut unit = [0.0; 4];
            unit[j] = 1.0;
            let (next, y) = stages(g1, unit, 0.0);
            c[j] = y;
            for (row, v) in a.iter_mut().zip(next) {
                row[j] = v;
            }
        }
        let (b, g4) = stages(g1, [0.0; 4], 1.0);
        Coefs { c, g4, a, b }
    }

    fn words(&self) -> impl Iterator<Item = f64> + '_ {
        self.c
            .iter()
            .chain(std::iter::once(&self.g4))
            .chain(self.a.iter().flatten())
            .chain(&self.b)
            .copied()
    }
}

/// Cubic coefficient of [`saturate`]: `x - (4/27) x^3` meets ±1 with zero slope at ±1.5.
pub const SAT_CUBIC: f64 = 4.0 / 27.0;

/// The loop saturator: a cubic soft clipper, `x - 4x^3/27` for `|x| <= 1.5` and ±1
/// beyond, with slope 1 at 0 and slope 0 where it meets ±1. tanh-like, but only
/// multiplies: it sits on the filter's critical path, where a division or `tanh`
/// would cost more than the whole filter.
#[inline(always)]
pub fn saturate(x: f64) -> f64 {
    // max/min rather than `clamp`: they compile to branch-free minsd/maxsd, while
    // `clamp`'s comparisons may become branches that noisy audio mispredicts.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-1.5).min(1.5);
    // x - (4/27) x^3, grouped so the two products run in parallel.
    x - (x * SAT_CUBIC) * (x * x)
}

/// Ladder state: smoothed parameters, coefficients in use, and the four stage memories.
#[derive(Debug, Clone)]
pub struct Ladder {
    sample_rate: f64,
    params: Params,
    coefs: Coefs,
    s: [f64; 4],
    /// True while a parameter glide (or its final coefficient update) is in progress.
    gliding: bool,
    /// Samples until the next coefficient update while gliding.
    countdown: u32,
    /// Samples until the next denormal flush of the memories (1..=FLUSH_INTERVAL).
    flush_countdown: u32,
    /// While settled: the feedback term `ck . s` for the next sample, carried from sample
    /// to sample by the fast path (computed directly once when a glide ends). Part of the
    /// state, so where blocks are split never matters.
    fb: f64,
}

impl Ladder {
    /// A ladder at the default cutoff, resonance and drive, with silent memories.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let p = SPEC.params;
        Ladder {
            sample_rate: f64::from(sr),
            params: Params::new(&SPEC, sr).geometric(&[CUTOFF], crate::smoother::FILTER_RAMP_MS),
            coefs: Coefs::new(f64::from(sr), f64::from(p[CUTOFF].default)),
            s: [0.0; 4],
            gliding: false,
            countdown: 0,
            flush_countdown: FLUSH_INTERVAL,
            fb: 0.0,
        }
    }

    /// Loop constants for resonance `r` and `drive`: the memory weights of `y4` scaled by
    /// `k / (1 + k g4)`, and the input gain `drive / (1 + k g4)`, so the solved loop input
    /// is `x * din - ck . s` (one subtraction after the dot product).
    #[inline(always)]
    fn loop_constants(&self, r: f32, drive: f32) -> ([f64; 4], f64) {
        let k = f64::from(r) * K_PER_RESONANCE;
        let inv = 1.0 / (1.0 + k * self.coefs.g4);
        let kinv = k * inv;
        (self.coefs.c.map(|c| c * kinv), f64::from(drive) * inv)
    }

    /// One sample through the ladder with the constants from [`Ladder::loop_constants`]
    /// (the per-sample path, used while parameters glide).
    #[inline(always)]
    fn tick(&mut self, x: f32, ck: [f64; 4], din: f64) -> f32 {
        let (s, y) = step(&self.coefs, ck, din, x, self.s);
        self.s = s;
        self.count_flush();
        y
    }

    /// Counts one sample towards the next denormal flush and flushes when it is due.
    /// The counter is part of the state, so block splits do not matter; memories fall
    /// by far less than 1e-18 in 16 samples, so none sits in the denormal range for
    /// more than a moment, and the flush stays off the per-sample dependency chain.
    #[inline(always)]
    fn count_flush(&mut self) {
        self.flush_countdown = self.flush_countdown.wrapping_sub(1);
        if self.flush_countdown == 0 {
            self.flush_countdown = FLUSH_INTERVAL;
            self.s = self.s.map(flush64);
        }
    }

    /// True when the next block takes the settled path (no parameter glides): what
    /// [`LadderLanes`] renders.
    pub fn is_settled(&self) -> bool {
        !self.gliding
    }

    /// The settled path's constants: `din` ([`Ladder::loop_constants`] at the resting
    /// parameters), then `d = A^T ck`, `e = ck . b` (the next feedback term is
    /// `d . s + e u`) and `e` times the saturator's cubic coefficient.
    #[inline(always)]
    fn settled_constants(&self) -> (f64, [f64; 4], f64, f64) {
        let (ck, din) = self.loop_constants(self.params[RESONANCE].current(), self.params[DRIVE].current());
        let Coefs { a, b, .. } = self.coefs;
        let d: [f64; 4] = std::array::from_fn(|j| {
            (ck[0] * a[0][j] + ck[1] * a[1][j]) + (ck[2] * a[2][j] + ck[3] * a[3][j])
        });
        let e = (ck[0] * b[0] + ck[1] * b[1]) + (ck[2] * b[2] + ck[3] * b[3]);
        (din, d, e, e * SAT_CUBIC)
    }

    /// A whole block with constant coefficients: the memories stay in registers, and
    /// the feedback term is carried from sample to sample (see [`Ladder::fb`]), which
    /// leaves only the saturator and a few multiplies on the per-sample dependency chain.
    fn run_settled(&mut self, x: &[f32], out: &mut [f32]) {
        let (din, d, e, eq) = self.settled_constants();
        let Coefs { c, g4, a, b } = self.coefs;
        let mut s = self.s;
        let mut fb = self.fb;
        let mut countdown = self.flush_countdown;
        for (o, &x) in out.iter_mut().zip(x) {
            let [s0, s1, s2, s3] = s;
            // max/min: branch-free (see `saturate`).
            #[allow(clippy::manual_clamp)]
            let xc = (f64::from(sanitize(x)) * din - fb).max(-1.5).min(1.5);
            let x2 = xc * xc;
            let u = xc - (xc * SAT_CUBIC) * x2;
            // d . s + e u, distributed so that only x2 is waited for.
            let ds = (d[0] * s0 + d[1] * s1) + (d[2] * s2 + d[3] * s3);
            fb = (ds + e * xc) - (eq * xc) * x2;
            let sigma = (c[0] * s0 + c[1] * s1) + (c[2] * s2 + c[3] * s3);
            *o = (sigma + g4 * u) as f32;
            s = [
                a[0][0] * s0 + b[0] * u,
                (a[1][0] * s0 + a[1][1] * s1) + b[1] * u,
                (a[2][0] * s0 + a[2][1] * s1 + a[2][2] * s2) + b[2] * u,
                ((a[3][0] * s0 + a[3][1] * s1) + (a[3][2] * s2 + a[3][3] * s3)) + b[3] * u,
            ];
            countdown = countdown.wrapping_sub(1);
            if countdown == 0 {
                countdown = FLUSH_INTERVAL;
                s = s.map(flush64);
                fb = flush64(fb);
            }
        }
        self.s = s;
        self.fb = fb;
        self.flush_countdown = countdown;
    }
}

/// `L` settled ladders (one per voice of an instrument) rendered side by side: the loop
/// of [`Ladder::run_settled`] with every value an array over the lanes, written lane by
/// lane with the same operations in the same order, so each lane gives the bits its
/// ladder gives alone (`lanes_match_ladders_alone` compares them). The lanes are
/// independent, so the compiler packs them into vectors, and their chains overlap.
///
/// Used as [`LadderLanes::load`] each ladder, [`LadderLanes::run`] over interleaved
/// samples (frame-major, `[frame][lane]`), [`LadderLanes::store`] each ladder back.
#[derive(Debug, Clone, Copy)]
pub struct LadderLanes<const L: usize> {
    c: [[f64; L]; 4],
    g4: [f64; L],
    a: [[[f64; L]; 4]; 4],
    b: [[f64; L]; 4],
    d: [[f64; L]; 4],
    e: [f64; L],
    eq: [f64; L],
    din: [f64; L],
    s: [[f64; L]; 4],
    fb: [f64; L],
    countdown: [u32; L],
}

impl VoiceLanes for LadderLanes<VOICE_LANES> {
    type Module = Ladder;

    fn ready(m: &Ladder) -> bool {
        m.is_settled()
    }

    fn load(&mut self, lane: usize, m: &Ladder) {
        LadderLanes::load(self, lane, m);
    }

    fn store(&self, lane: usize, m: &mut Ladder) {
        LadderLanes::store(self, lane, m);
    }

    fn run(&mut self, x: [&[f32]; VOICE_LANES], y: [&mut [f32]; VOICE_LANES]) {
        self.run_frames(lane_frames(x, y));
    }
}

impl<const L: usize> Default for LadderLanes<L> {
    fn default() -> Self {
        LadderLanes {
            c: [[0.0; L]; 4],
            g4: [0.0; L],
            a: [[[0.0; L]; 4]; 4],
            b: [[0.0; L]; 4],
            d: [[0.0; L]; 4],
            e: [0.0; L],
            eq: [0.0; L],
            din: [0.0; L],
            s: [[0.0; L]; 4],
            fb: [0.0; L],
            countdown: [FLUSH_INTERVAL; L],
        }
    }
}

impl<const L: usize> LadderLanes<L> {
    /// Takes `ladder` (settled: [`Ladder::is_settled`]) into lane `lane`: the constants
    /// of its resting parameters, its memories, feedback term and flush countdown.
    /// Ignored for a lane past `L`.
    pub fn load(&mut self, lane: usize, ladder: &Ladder) {
        if lane >= L {
            return;
        }
        let (din, d, e, eq) = ladder.settled_constants();
        let Coefs { c, g4, a, b } = ladder.coefs;
        for k in 0..4 {
            self.c[k][lane] = c[k];
            self.b[k][lane] = b[k];
            self.d[k][lane] = d[k];
            self.s[k][lane] = ladder.s[k];
            for (to, &from) in self.a[k].iter_mut().zip(&a[k]) {
                to[lane] = from;
            }
        }
        self.g4[lane] = g4;
        self.e[lane] = e;
        self.eq[lane] = eq;
        self.din[lane] = din;
        self.fb[lane] = ladder.fb;
        self.countdown[lane] = ladder.flush_countdown;
    }

    /// Writes lane `lane`'s state back into `ladder` (the one loaded there).
    pub fn store(&self, lane: usize, ladder: &mut Ladder) {
        if lane >= L {
            return;
        }
        ladder.s = [0, 1, 2, 3].map(|k| self.s[k][lane]);
        ladder.fb = self.fb[lane];
        ladder.flush_countdown = self.countdown[lane];
    }

    /// Renders `x` (frame-major: `x[i][lane]`) into `y` as far as both reach.
    pub fn run(&mut self, x: &[[f32; L]], y: &mut [[f32; L]]) {
        self.run_frames(x.iter().zip(y.iter_mut()).map(|(x, y)| (*x, y.each_mut())));
    }

    /// Renders each frame's lanes from its input samples into its output places:
    /// [`LadderLanes::run`] on interleaved buffers, the instrument on each voice's own
    /// buffers ([`lane_frames`]: no interleaving copies, no bounds checks).
    #[inline(always)]
    pub fn run_frames<'a>(&mut self, frames: impl Iterator<Item = ([f32; L], [&'a mut f32; L])>) {
        let LadderLanes {
            c, g4, a, b, d, e, eq, din, ..
        } = *self;
        let mut s = self.s;
        let mut fb = self.fb;
        let mut countdown = self.countdown;
        for (xi, places) in frames {
            let mut yo = [0.0f32; L];
            // Lane by lane, exactly the statements of `run_settled`.
            for l in 0..L {
                let [s0, s1, s2, s3] = [s[0][l], s[1][l], s[2][l], s[3][l]];
                #[allow(clippy::manual_clamp)]
                let xc = (f64::from(sanitize(xi[l])) * din[l] - fb[l]).max(-1.5).min(1.5);
                let x2 = xc * xc;
                let u = xc - (xc * SAT_CUBIC) * x2;
                let ds = (d[0][l] * s0 + d[1][l] * s1) + (d[2][l] * s2 + d[3][l] * s3);
                fb[l] = (ds + e[l] * xc) - (eq[l] * xc) * x2;
                let sigma = (c[0][l] * s0 + c[1][l] * s1) + (c[2][l] * s2 + c[3][l] * s3);
                yo[l] = (sigma + g4[l] * u) as f32;
                s[0][l] = a[0][0][l] * s0 + b[0][l] * u;
                s[1][l] = (a[1][0][l] * s0 + a[1][1][l] * s1) + b[1][l] * u;
                s[2][l] = (a[2][0][l] * s0 + a[2][1][l] * s1 + a[2][2][l] * s2) + b[2][l] * u;
                s[3][l] = ((a[3][0][l] * s0 + a[3][1][l] * s1)
                    + (a[3][2][l] * s2 + a[3][3][l] * s3))
                    + b[3][l] * u;
            }
            for l in 0..L {
                countdown[l] = countdown[l].wrapping_sub(1);
                if countdown[l] == 0 {
                    countdown[l] = FLUSH_INTERVAL;
                    for sk in &mut s {
                        sk[l] = flush64(sk[l]);
                    }
                    fb[l] = flush64(fb[l]);
                }
            }
            for (place, y) in places.into_iter().zip(yo) {
                *place = y;
            }
        }
        self.s = s;
        self.fb = fb;
        self.countdown = countdown;
    }
}

/// One sample of the ladder: new memories and output, from the memories `s`, the input
/// `x` and the loop constants (see [`Ladder::loop_constants`]).
#[inline(always)]
fn step(coefs: &Coefs, ck: [f64; 4], din: f64, x: f32, s: [f64; 4]) -> ([f64; 4], f32) {
    let Coefs { c, g4, a, b } = *coefs;
    let [s0, s1, s2, s3] = s;
    // Pairwise sums: shorter dependency chains than a running sum.
    let fed_back = (ck[0] * s0 + ck[1] * s1) + (ck[2] * s2 + ck[3] * s3);
    let u = saturate(f64::from(sanitize(x)) * din - fed_back);
    let sigma = (c[0] * s0 + c[1] * s1) + (c[2] * s2 + c[3] * s3);
    let next = [
        a[0][0] * s0 + b[0] * u,
        (a[1][0] * s0 + a[1][1] * s1) + b[1] * u,
        (a[2][0] * s0 + a[2][1] * s1 + a[2][2] * s2) + b[2] * u,
        ((a[3][0] * s0 + a[3][1] * s1) + (a[3][2] * s2 + a[3][3] * s3)) + b[3] * u,
    ];
    (next, (sigma + g4 * u) as f32)
}

impl Module for Ladder {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Every change ends the fast path until the coefficients have caught up.
    fn param_changed(&mut self, _index: usize) {
        self.gliding = true;
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let x = input(inputs, 0);
        if !self.gliding {
            // Fast path: nothing moves, so the per-sample values are constants.
            self.run_settled(x, out);
            return;
        }
        let n = out.len().min(x.len());
        for i in 0..n {
            let c = self.params[CUTOFF].next();
            let r = self.params[RESONANCE].next();
            let drive = self.params[DRIVE].next();
            if self.countdown == 0 {
                self.coefs = Coefs::new(self.sample_rate, f64::from(c));
                if self.params[CUTOFF].is_settled()
                    && self.params[RESONANCE].is_settled()
                    && self.params[DRIVE].is_settled()
                {
                    self.gliding = false;
                } else {
                    self.countdown = COEF_INTERVAL;
                }
            }
            self.countdown = self.countdown.saturating_sub(1);
            let (ck, din) = self.loop_constants(r, drive);
            let y = self.tick(x.get(i).copied().unwrap_or(0.0), ck, din);
            if let Some(o) = out.get_mut(i) {
                *o = y;
            }
            if !self.gliding {
                // The glide is over: seed the carried feedback term and finish the block
                // on the fast path (exactly what the next block would do).
                let [s0, s1, s2, s3] = self.s;
                self.fb = (ck[0] * s0 + ck[1] * s1) + (ck[2] * s2 + ck[3] * s3);
                let rest = (i + 1).min(n);
                self.run_settled(&x[rest..n], &mut out[rest..n]);
                return;
            }
        }
    }

    fn side_by_side(&mut self) -> Option<&mut dyn std::any::Any> {
        Some(self)
    }

    fn clear(&mut self) {
        self.coefs = Coefs::new(self.sample_rate, f64::from(self.params[CUTOFF].target()));
        self.s = [0.0; 4];
        self.gliding = false;
        self.countdown = 0;
        self.flush_countdown = FLUSH_INTERVAL;
        self.fb = 0.0;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        for v in self.coefs.words() {
            w.put_f64(v);
        }
        for v in self.s {
            w.put_f64(v);
        }
        w.put_bool(self.gliding);
        w.put_u32(self.countdown);
        w.put_u32(self.flush_countdown);
        w.put_f64(self.fb);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let mut coefs = Coefs {
            c: [0.0; 4],
            g4: 0.0,
            a: [[0.0; 4]; 4],
            b: [0.0; 4],
        };
        for v in coefs.c.iter_mut() {
            *v = r.get_f64()?;
        }
        coefs.g4 = r.get_f64()?;
        for v in coefs.a.iter_mut().flatten() {
            *v = r.get_f64()?;
        }
        for v in coefs.b.iter_mut() {
            *v = r.get_f64()?;
        }
        self.coefs = coefs;
        for s in &mut self.s {
            *s = r.get_f64()?;
        }
        self.gliding = r.get_bool()?;
        self.countdown = r.get_u32()?;
        let offset = r.position();
        self.flush_countdown = r.get_u32()?;
        if !(1..=FLUSH_INTERVAL).contains(&self.flush_countdown) {
            return Err(StateError::InvalidValue {
                what: "ladder flush countdown",
                offset,
            });
        }
        self.fb = r.get_f64()?;
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Four ladders (their own parameters, memories, feedback terms and flush
        /// phases) rendered side by side give exactly the bits each gives alone.
        #[test]
        fn lanes_match_ladders_alone(
            settings in proptest::collection::vec(
                (10.0f32..20_000.0, 0.0f32..1.2, 0.0f32..4.0, 1usize..200), 4),
            signal in proptest::collection::vec(-3.0f32..3.0, 64..300),
            loud in 0usize..4,
        ) {
            let mut alone: Vec<Ladder> = settings
                .iter()
                .map(|&(cutoff, resonance, drive, warm)| {
                    let mut l = ladder(cutoff, resonance);
                    l.set_param(DRIVE, drive);
                    l.reset();
                    // Different memories and flush countdowns in every lane.
                    let warm_up: Vec<f32> = (0..warm).map(|i| ((i * 7 % 13) as f32 - 6.0) * 0.3).collect();
                    let _ = render(&mut l, &[warm_up], 1);
                    l
                })
                .collect();
            let mut side: Vec<Ladder> = alone.clone();
            // Lane `loud` gets an input far past the saturator and the sanitizer.
            let input = |lane: usize, i: usize| {
                let x = signal[(i + 17 * lane) % signal.len()];
                if lane == loud { x * 1e12 } else { x }
            };
            let n = signal.len();
            let mut want = Vec::new();
            for (lane, l) in alone.iter_mut().enumerate() {
                proptest::prop_assert!(l.is_settled());
                let x: Vec<f32> = (0..n).map(|i| input(lane, i)).collect();
                want.push(render(l, &[x], 1).remove(0));
            }
            let mut lanes = LadderLanes::<4>::default();
            for (lane, l) in side.iter().enumerate() {
                lanes.load(lane, l);
            }
            let x: Vec<[f32; 4]> = (0..n).map(|i| [0, 1, 2, 3].map(|lane| input(lane, i))).collect();
            let mut y = vec![[0.0f32; 4]; n];
            // In two uneven pieces: the state carries across calls.
            let cut = n / 3;
            lanes.run(&x[..cut], &mut y[..cut]);
            lanes.run(&x[cut..], &mut y[cut..]);
            for (lane, l) in side.iter_mut().enumerate() {
                lanes.store(lane, l);
                let got: Vec<u32> = y.iter().map(|f| f[lane].to_bits()).collect();
                let expected: Vec<u32> = want[lane].iter().map(|v| v.to_bits()).collect();
                proptest::prop_assert_eq!(got, expected, "lane {}", lane);
                // And the state left behind continues identically.
                let tail = vec![0.25f32; 100];
                let a = render(l, std::slice::from_ref(&tail), 1).remove(0);
                let b = render(&mut alone[lane], &[tail], 1).remove(0);
                proptest::prop_assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
            }
        }
    }
}
