//! Mipmapped band-limited wavetables: the alias-free core shared by the `saw`, `square`,
//! `triangle` and `wavetable` oscillators.
//!
//! PolyBLEP only reaches about −35 dB of alias rejection; the issue asks for −100 dB. So
//! every waveform is stored as a ladder of tables ("levels"), each built by additive
//! synthesis (an inverse FFT in f64) with only as many harmonics as a note may carry
//! without any of them folding back below 20 kHz:
//!
//! - level `j` holds the first `K_j = floor(2^(j/4))` harmonics (quarter-octave steps,
//!   `K` from 1 up to [`MAX_HARMONICS`]);
//! - a note at `f` Hz may carry every harmonic up to `limit / f`, where `limit` is
//!   `sample_rate − 20 kHz` (a harmonic between Nyquist and `limit` folds to above 20 kHz,
//!   where nobody hears it), clamped into `0.45..0.6 × sample_rate`;
//! - the oscillator reads the two richest levels that are still alias-free at its current
//!   frequency and crossfades between them (over the upper half of each quarter-octave
//!   step; below that the poorer level plays alone), so a sweep glides through the
//!   ladder without steps and nothing above `limit` is ever played;
//! - each table has `max(2048, 16·K)` points (a power of two) and is read with 4-point,
//!   3rd-order Lagrange interpolation, whose error at that oversampling stays below
//!   −110 dB (measured in the oscillators' tests).
//!
//! Tables are built once per waveform, lazily, behind a [`OnceLock`] shared by all
//! instances; modules touch them in `new` so that building never happens while rendering.
//! The build is plain f64 arithmetic with no randomness, so every process computes the
//! same tables. The crossfade position is a pure function of the current frequency, so it
//! holds no state of its own. Phases are 64-bit fixed-point fractions of a cycle
//! ([`TableVoice`]): wrapping addition is exact and drift-free, and the table index and
//! interpolation fraction are plain bit fields of it.

use std::f64::consts::{PI, TAU};
use std::sync::OnceLock;

use crate::smoother::Smoother;

/// Highest harmonic count of the richest level: enough for full bandwidth (to 20 kHz at
/// 48 kHz) down to a fundamental of about 14 Hz; lower notes just get fewer overtones.
pub const MAX_HARMONICS: usize = 2048;

/// Number of levels per octave of harmonic count (the crossfade steps).
const LEVELS_PER_OCTAVE: usize = 4;

/// Index of the richest level: `2^(TOP_LEVEL/4) == MAX_HARMONICS`.
const TOP_LEVEL: usize = 44;

/// Fraction of each quarter-octave step spent on the poorer level alone before the richer
/// one fades in. Half the notes then need one table read instead of two, and the poorer
/// level still reaches `limit · 2^(−3/8)` (21.6 kHz at 48 kHz) where it plays alone.
const BLEND_START: f32 = 0.5;

/// Smallest table length; small harmonic counts get this much oversampling for free.
const MIN_TABLE_LEN: usize = 2048;

/// Table points per harmonic (before rounding up to a power of two): the oversampling
/// that keeps cubic interpolation error below −110 dB.
const OVERSAMPLING: usize = 16;

/// The built-in waveforms, each a fixed Fourier series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One harmonic: a pure sine.
    Sine,
    /// Rising ramp: harmonics `1/k`.
    Saw,
    /// 50 % square: odd harmonics `1/k`.
    Square,
    /// Triangle: odd harmonics `1/k²`, alternating sign.
    Triangle,
    /// Drawbar organ: a few octave and fifth partials (16', 8', 5⅓', 4', 2⅔', 2', 1⅗', 1⅓', 1').
    Organ,
    /// Vowel-like: two resonances around harmonics 4 and 11 over a quiet `1/k` tail.
    Formant,
}

impl Shape {
    /// Every shape, in the order the `wavetable` module numbers them.
    pub const ALL: [Shape; 6] = [
        Shape::Sine,
        Shape::Saw,
        Shape::Square,
        Shape::Triangle,
        Shape::Organ,
        Shape::Formant,
    ];

    fn index(self) -> usize {
        match self {
            Shape::Sine => 0,
            Shape::Saw => 1,
            Shape::Square => 2,
            Shape::Triangle => 3,
            Shape::Organ => 4,
            Shape::Formant => 5,
        }
    }

    /// Sine-phase amplitude of harmonic `k >= 1` (all shapes here are sums of sines, so
    /// they start at zero and a fresh oscillator does not click).
    fn harmonic(self, k: usize) -> f64 {
        let kf = k as f64;
        let odd = k % 2 == 1;
        match self {
            Shape::Sine => {
                if k == 1 {
                    1.0
                } else {
                    0.0
                }
            }
            // 2φ − 1 = −(2/π) Σ sin(2πkφ)/k
            Shape::Saw => -2.0 / (PI * kf),
            Shape::Square => {
                if odd {
                    4.0 / (PI * kf)
                } else {
                    0.0
                }
            }
            Shape::Triangle => {
                if odd {
                    let sign = if k % 4 == 1 { 1.0 } else { -1.0 };
                    sign * 8.0 / (PI * PI * kf * kf)
                } else {
                    0.0
                }
            }
            Shape::Organ => match k {
                1 => 0.8,
                2 => 1.0,
                3 => 0.6,
                4 => 0.7,
                6 => 0.45,
                8 => 0.4,
                10 => 0.25,
                12 => 0.2,
                16 => 0.15,
                _ => 0.0,
            },
            Shape::Formant => {
                let bump = |centre: f64, width: f64| {
                    let d = (kf - centre) / width;
                    (-0.5 * d * d).exp()
                };
                bump(4.0, 1.5) + 0.6 * bump(11.0, 2.5) + 0.25 / kf
            }
        }
    }
}

/// Harmonic count of level `j`: `floor(2^(j/4))`, computed without `powf` so the
/// integer part is exact on every machine.
fn harmonics_of_level(j: usize) -> usize {
    const QUARTER_STEPS: [f64; 4] = [
        1.0,
        1.189_207_115_002_721,
        std::f64::consts::SQRT_2,
        1.681_792_830_507_429,
    ];
    let octave = (1usize << (j / LEVELS_PER_OCTAVE)) as f64;
    // floor of a positive finite value below 2^12: exact.
    (octave * QUARTER_STEPS[j % LEVELS_PER_OCTAVE]).floor() as usize
}

/// One band-limited table: `2^bits` points of one cycle plus one guard point before and
/// two after, so the 4-point interpolator never wraps.
pub struct Level {
    /// `len + 3` samples: `data[i + 1]` is point `i` of the cycle.
    data: Vec<f32>,
    /// `log2(len)`.
    bits: u32,
}

impl std::fmt::Debug for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Level({} points)", self.data.len().saturating_sub(3))
    }
}

impl Level {
    /// Cubic (4-point, 3rd-order Lagrange) read at a fixed-point `phase` (a fraction of a
    /// cycle in units of 2⁻⁶⁴): the top `bits` bits pick the point, the next 24 the
    /// fraction between points.
    #[inline]
    pub fn read(&self, phase: u64) -> f32 {
        let i = (phase >> (64 - self.bits)) as usize;
        // 24 bits: exact in f32, and converting from u32 is one instruction.
        let x = ((phase << self.bits) >> 40) as u32 as f32 * (1.0 / 16_777_216.0);
        let Some(&[ym1, y0, y1, y2]) = self.data.get(i..i + 4) else {
            return 0.0;
        };
        lagrange3(ym1, y0, y1, y2, x)
    }

    /// [`Level::read`] at [`LANES`] phases at once: the loads are scalar, the arithmetic
    /// is written lane by lane so the compiler vectorises it. Same operations in the same
    /// order as `read`, so the same bits.
    #[inline]
    pub fn read_lanes(&self, phases: &[u64; LANES]) -> [f32; LANES] {
        let (mut ym1, mut y0, mut y1, mut y2, mut x) = (
            [0.0f32; LANES],
            [0.0f32; LANES],
            [0.0f32; LANES],
            [0.0f32; LANES],
            [0.0f32; LANES],
        );
        for (k, phase) in phases.iter().enumerate() {
            let i = (phase >> (64 - self.bits)) as usize;
            x[k] = ((phase << self.bits) >> 40) as u32 as f32 * (1.0 / 16_777_216.0);
            if let Some(&[a, b, c, d]) = self.data.get(i..i + 4) {
                (ym1[k], y0[k], y1[k], y2[k]) = (a, b, c, d);
            }
        }
        let mut out = [0.0f32; LANES];
        for k in 0..LANES {
            out[k] = lagrange3(ym1[k], y0[k], y1[k], y2[k], x[k]);
        }
        out
    }
}

/// Samples processed together by the vectorised block paths.
pub const LANES: usize = 8;

/// 4-point, 3rd-order Lagrange interpolation between `y0` (x = 0) and `y1` (x = 1).
#[inline(always)]
fn lagrange3(ym1: f32, y0: f32, y1: f32, y2: f32, x: f32) -> f32 {
    let c1 = y1 - ym1 * (1.0 / 3.0) - y0 * 0.5 - y2 * (1.0 / 6.0);
    let c2 = 0.5 * (ym1 + y1) - y0;
    let c3 = (y2 - ym1) * (1.0 / 6.0) + 0.5 * (y0 - y1);
    ((c3 * x + c2) * x + c1) * x + y0
}

/// All levels of one waveform, richest last.
pub struct Mipmap {
    levels: Vec<Level>,
}

impl std::fmt::Debug for Mipmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mipmap({} levels)", self.levels.len())
    }
}

impl Mipmap {
    /// Builds every level of `shape` by inverse FFT, normalised so the loudest level
    /// peaks at exactly 1 (every level shares that factor, so crossfades keep loudness,
    /// and no level exceeds 1).
    fn build(shape: Shape) -> Mipmap {
        let mut raw: Vec<Vec<f64>> = Vec::with_capacity(TOP_LEVEL + 1);
        for j in 0..=TOP_LEVEL {
            let k_max = harmonics_of_level(j);
            let len = (OVERSAMPLING * k_max)
                .next_power_of_two()
                .max(MIN_TABLE_LEN);
            // x[n] = Σ b_k sin(2πkn/N) = Re Σ (−i b_k) e^{+i2πkn/N}
            let mut re = vec![0.0f64; len];
            let mut im = vec![0.0f64; len];
            for (k, v) in im.iter_mut().enumerate().take(k_max + 1).skip(1) {
                *v = -shape.harmonic(k);
            }
            fft_in_place(&mut re, &mut im, true);
            raw.push(re);
        }
        let peak = raw.iter().flatten().fold(0.0f64, |m, x| m.max(x.abs()));
        let scale = if peak > 0.0 { 1.0 / peak } else { 1.0 };
        let levels = raw
            .into_iter()
            .map(|t| {
                let len = t.len();
                let mut data = Vec::with_capacity(len + 3);
                data.push((t[len - 1] * scale) as f32);
                data.extend(t.iter().map(|x| (x * scale) as f32));
                data.push((t[0] * scale) as f32);
                data.push((t[1] * scale) as f32);
                Level {
                    data,
                    bits: len.trailing_zeros(),
                }
            })
            .collect();
        Mipmap { levels }
    }

    /// The shared tables of `shape`, built on first use (allocates then: call it from a
    /// module's `new`, never from `process`).
    pub fn get(shape: Shape) -> &'static Mipmap {
        static TABLES: [OnceLock<Mipmap>; 6] = [const { OnceLock::new() }; 6];
        TABLES[shape.index()].get_or_init(|| Mipmap::build(shape))
    }

    /// The two levels (and blend) to read at crossfade position `at`.
    pub fn pair(&'static self, at: LevelPos) -> LevelPair {
        let top = self.levels.len() - 1;
        let lo = &self.levels[at.lower.min(top)];
        let hi = &self.levels[(at.lower + 1).min(top)];
        LevelPair {
            lo,
            hi,
            weight: at.upper_weight,
        }
    }
}

/// Two adjacent levels of one [`Mipmap`] and the weight of the richer one: what an
/// oscillator reads every sample, cached until its frequency changes.
#[derive(Debug, Clone, Copy)]
pub struct LevelPair {
    lo: &'static Level,
    hi: &'static Level,
    weight: f32,
}

impl LevelPair {
    /// Band-limited value at the fixed-point `phase`: one table read, or two blended.
    #[inline]
    pub fn read(&self, phase: u64) -> f32 {
        let a = self.lo.read(phase);
        if self.weight == 0.0 {
            a
        } else {
            a + self.weight * (self.hi.read(phase) - a)
        }
    }

    /// [`LevelPair::read`] at [`LANES`] phases at once (same bits).
    #[inline]
    pub fn read_lanes(&self, phases: &[u64; LANES]) -> [f32; LANES] {
        let mut a = self.lo.read_lanes(phases);
        if self.weight != 0.0 {
            let b = self.hi.read_lanes(phases);
            for (a, b) in a.iter_mut().zip(b) {
                *a += self.weight * (b - *a);
            }
        }
        a
    }
}

/// Fixed-point phase value of one whole cycle, 2⁶⁴.
const CYCLE: f64 = 18_446_744_073_709_551_616.0;

/// Phase increment per sample for `freq` Hz (either sign), as a fraction of a cycle in
/// units of 2⁻⁶⁴. Frequencies beyond ±Nyquist are held at Nyquist. Wrapping addition of
/// the increment is the whole phase accumulator: exact, drift-free, no wrap branches.
#[inline]
pub fn phase_increment(freq: f32, inv_sample_rate: f64) -> u64 {
    let cycles = (f64::from(freq) * inv_sample_rate).clamp(-0.5, 0.5);
    // |cycles · 2⁶⁴| ≤ 2⁶³: in i64 range (+2⁶³ saturates to i64::MAX, harmless).
    (cycles * CYCLE) as i64 as u64
}

/// A fraction of a cycle (clamped to `[0, 1]`) as a fixed-point phase offset.
#[inline]
pub fn phase_offset(fraction: f32) -> u64 {
    // Through i64 (a single conversion instruction, unlike f64 → u64), one bit short.
    ((f64::from(fraction).clamp(0.0, 1.0) * (CYCLE / 2.0)) as i64 as u64) << 1
}

/// The moving part of a table oscillator: fixed-point phase, and the increment and level
/// pair cached for the current frequency. Shared by `saw`, `square` and `triangle`.
#[derive(Debug, Clone)]
pub struct TableVoice {
    mipmap: &'static Mipmap,
    ladder: Ladder,
    inv_sample_rate: f64,
    /// Phase: fraction of a cycle in units of 2⁻⁶⁴ (every value valid; saved in snapshots).
    pub phase: u64,
    /// Frequency the cache below was computed for; a pure function of it, so not state.
    freq: f32,
    inc: u64,
    pair: LevelPair,
}

impl TableVoice {
    /// A voice over `shape`'s tables at `sample_rate` (finite, positive), phase 0. Builds
    /// the shared tables on first use (allocates).
    pub fn new(shape: Shape, sample_rate: f32) -> Self {
        let mipmap = Mipmap::get(shape);
        let ladder = Ladder::new(sample_rate);
        let inv_sample_rate = 1.0 / f64::from(sample_rate);
        TableVoice {
            mipmap,
            ladder,
            inv_sample_rate,
            phase: 0,
            freq: 0.0,
            inc: 0,
            pair: mipmap.pair(ladder.position(0.0)),
        }
    }

    /// Sets the frequency for the next [`TableVoice::read`] and [`TableVoice::advance`];
    /// recomputes the increment and the level pair only when it changed.
    #[inline]
    pub fn tune(&mut self, freq: f32) {
        if freq != self.freq {
            self.freq = freq;
            self.inc = phase_increment(freq, self.inv_sample_rate);
            self.pair = self.mipmap.pair(self.ladder.position(freq));
        }
    }

    /// Band-limited value at `phase` for the current frequency.
    #[inline]
    pub fn read(&self, phase: u64) -> f32 {
        self.pair.read(phase)
    }

    /// Moves the phase on by one sample at the current frequency.
    #[inline]
    pub fn advance(&mut self) {
        self.phase = self.phase.wrapping_add(self.inc);
    }

    /// Block path at a constant (already tuned) frequency: for each run of [`LANES`]
    /// samples, hands `wave` the level pair and the lanes' phases and copies what it
    /// returns into `out`; then advances the phase by `out.len()` samples. Gives the same
    /// bits as `read`/`advance` per sample, several times faster.
    #[inline]
    pub fn fill_with(
        &mut self,
        out: &mut [f32],
        wave: impl Fn(&LevelPair, &[u64; LANES]) -> [f32; LANES],
    ) {
        let mut phase = self.phase;
        for chunk in out.chunks_mut(LANES) {
            let mut phases = [0u64; LANES];
            for p in &mut phases {
                *p = phase;
                phase = phase.wrapping_add(self.inc);
            }
            let v = wave(&self.pair, &phases);
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        self.phase = self
            .phase
            .wrapping_add(self.inc.wrapping_mul(out.len() as u64));
    }

    /// [`TableVoice::fill_with`] for the plain waveform.
    #[inline]
    pub fn fill(&mut self, out: &mut [f32]) {
        self.fill_with(out, LevelPair::read_lanes);
    }
}

/// True when an `fm` input block is silent (or absent), so the frequency is the `freq`
/// parameter alone and the block paths can run. NaN counts as not silent.
#[inline]
pub fn fm_is_silent(fm: &[f32]) -> bool {
    fm.iter().all(|x| *x == 0.0)
}

/// Multiplies `out` by the gain smoother sample by sample (`x * gain.next()`, the same
/// bits as the per-sample paths), with a vectorisable loop when the gain is settled.
#[inline]
pub fn apply_gain(out: &mut [f32], gain: &mut Smoother) {
    if gain.is_settled() {
        let g = gain.current();
        for o in out.iter_mut() {
            *o *= g;
        }
    } else {
        for o in out.iter_mut() {
            *o *= gain.next();
        }
    }
}

/// Which two adjacent levels to read and how to blend them; from [`Ladder::position`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LevelPos {
    /// Poorer (fewer harmonics) of the two levels.
    pub lower: usize,
    /// Weight of level `lower + 1`, in `[0, 1)`.
    pub upper_weight: f32,
}

/// Maps a frequency to a [`LevelPos`] for one sample rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ladder {
    /// Highest frequency any harmonic may have, in Hz (see the module docs).
    limit_hz: f32,
}

impl Ladder {
    /// The ladder for `sample_rate` (finite and positive; modules pass `sane_sample_rate`).
    pub fn new(sample_rate: f32) -> Self {
        let limit = (sample_rate - 20_000.0).clamp(0.45 * sample_rate, 0.6 * sample_rate);
        Ladder { limit_hz: limit }
    }

    /// Crossfade position for a note at `freq` Hz (sign ignored; NaN treated as 0 Hz).
    ///
    /// `p = 4·log2(limit/|freq|)` counts quarter-octaves of headroom; level `j` is
    /// alias-free while `j <= p`, so the two levels below `p` are blended, the richer
    /// one fading in over the upper half of each step ([`BLEND_START`]). `log2` is a
    /// cheap bit-level approximation that never overestimates, so rounding can only
    /// choose fewer harmonics, never alias.
    #[inline]
    pub fn position(&self, freq: f32) -> LevelPos {
        let ratio = self.limit_hz / freq.abs();
        // NaN or tiny freq → ratio NaN/inf → richest level.
        let p = if ratio.is_nan() {
            f32::INFINITY
        } else {
            LEVELS_PER_OCTAVE as f32 * log2_lower_bound(ratio)
        };
        let p = p.clamp(0.0, (TOP_LEVEL + 1) as f32);
        // p is in [0, TOP_LEVEL + 1], so truncation is the floor (and cheaper than
        // `floor`, which is a libm call on baseline x86-64).
        let j = p as usize;
        let whole = j as f32;
        if j < 1 {
            return LevelPos {
                lower: 0,
                upper_weight: 0.0,
            };
        }
        if j > TOP_LEVEL {
            return LevelPos {
                lower: TOP_LEVEL,
                upper_weight: 0.0,
            };
        }
        LevelPos {
            lower: j - 1,
            upper_weight: ((p - whole - BLEND_START) * (1.0 / (1.0 - BLEND_START))).max(0.0),
        }
    }
}

/// `log2(x)` for finite positive `x`, approximated from the float's bits: exponent plus
/// `t + t(1−t)/4` for the mantissa `1 + t`. Exact at powers of two, continuous,
/// monotonic, and never above the true value (by at most 0.03).
#[inline]
fn log2_lower_bound(x: f32) -> f32 {
    if x.is_infinite() {
        return f32::INFINITY;
    }
    if x < f32::MIN_POSITIVE {
        return f32::NEG_INFINITY;
    }
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 127;
    let t = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000) - 1.0;
    exponent as f32 + t + 0.25 * t * (1.0 - t)
}

/// Largest |frequency| an oscillator plays, parameter plus FM: the top of the `freq` range.
pub const MAX_FREQ: f32 = 20_000.0;

/// Instantaneous frequency of a table oscillator: the `freq` parameter plus the `fm` input
/// in Hz (linear, through-zero FM: a negative sum runs the phase backwards). A non-finite
/// `fm` sample counts as 0, and the sum is clamped to ±[`MAX_FREQ`].
#[inline]
pub fn fm_freq(base: f32, fm: f32) -> f32 {
    let fm = if fm.is_finite() { fm } else { 0.0 };
    (base + fm).clamp(-MAX_FREQ, MAX_FREQ)
}

/// In-place radix-2 complex FFT in f64 (`inverse` flips the exponent sign; no scaling).
///
/// Used to build the tables (and by tests to measure spectra). Twiddles are computed
/// directly with `sin`/`cos` (not by recurrence), so errors do not accumulate.
/// Lengths that are not a power of two are left untouched.
pub(crate) fn fft_in_place(re: &mut [f64], im: &mut [f64], inverse: bool) {
    let n = re.len();
    if n < 2 || !n.is_power_of_two() || im.len() != n {
        return;
    }
    let bits = n.trailing_zeros();
    for i in 0..n {
        let j = i.reverse_bits() >> (usize::BITS - bits);
        if j > i {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let sign = if inverse { 1.0 } else { -1.0 };
    let (tw_re, tw_im): (Vec<f64>, Vec<f64>) = (0..n / 2)
        .map(|k| {
            let a = TAU * k as f64 / n as f64;
            (a.cos(), sign * a.sin())
        })
        .unzip();
    let mut half = 1;
    while half < n {
        let stride = n / (2 * half);
        for start in (0..n).step_by(2 * half) {
            for k in 0..half {
                let (wr, wi) = (tw_re[k * stride], tw_im[k * stride]);
                let (a, b) = (start + k, start + k + half);
                let xr = re[b] * wr - im[b] * wi;
                let xi = re[b] * wi + im[b] * wr;
                re[b] = re[a] - xr;
                im[b] = im[a] - xi;
                re[a] += xr;
                im[a] += xi;
            }
        }
        half *= 2;
    }
}

/// Spectrum measurement for the oscillators' alias tests.
#[cfg(test)]
pub(crate) mod measure {
    use super::fft_in_place;
    use crate::module::Module;
    use std::f64::consts::TAU;

    /// Runs `m` for `n` samples in 64-sample blocks with the given input signals
    /// (each at least `n` long) and returns its first output.
    pub fn render(m: &mut dyn Module, inputs: &[&[f32]], n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; n];
        for (b, chunk) in out.chunks_mut(64).enumerate() {
            let start = b * 64;
            let ins: Vec<&[f32]> = inputs
                .iter()
                .map(|x| &x[start..start + chunk.len()])
                .collect();
            m.process(&ins, &mut [chunk]);
        }
        out
    }

    /// FFT length: 1.37 s at 48 kHz, 0.73 Hz per bin.
    pub const LEN: usize = 1 << 16;

    /// Checks that the vectorised block path (silent `fm`, settled parameters) and the
    /// per-sample path give the same bits: one module gets a silent `fm` (input 0), the
    /// other an `fm` of 1e-30 Hz, which is not silent (so per-sample) but leaves every
    /// frequency unchanged. `tweak` changes parameters half-way, on both.
    pub fn assert_block_path_matches(
        make: impl Fn() -> Box<dyn Module>,
        tweak: impl Fn(&mut dyn Module),
    ) {
        let n = 4000;
        let (silent, tiny) = (vec![0.0f32; n], vec![1e-30f32; n]);
        let (mut a, mut b) = (make(), make());
        let mut x = render(a.as_mut(), &[&silent], n);
        let mut y = render(b.as_mut(), &[&tiny], n);
        tweak(a.as_mut());
        tweak(b.as_mut());
        x.extend(render(a.as_mut(), &[&silent], n));
        y.extend(render(b.as_mut(), &[&tiny], n));
        for (i, (p, q)) in x.iter().zip(&y).enumerate() {
            assert_eq!(p.to_bits(), q.to_bits(), "sample {i}: {p} vs {q}");
        }
    }

    /// 7-term Blackman-Harris window (sidelobes near −180 dB, main lobe ±7 bins).
    fn window(n: usize) -> Vec<f64> {
        const A: [f64; 7] = [
            0.271_051_400_693_42,
            0.433_297_939_234_48,
            0.218_122_999_543_11,
            0.065_925_446_388_03,
            0.010_811_742_098_37,
            0.000_776_584_825_22,
            0.000_013_887_217_35,
        ];
        (0..n)
            .map(|i| {
                let x = TAU * i as f64 / n as f64;
                A.iter()
                    .enumerate()
                    .map(|(k, a)| {
                        let s = if k % 2 == 0 { 1.0 } else { -1.0 };
                        s * a * (k as f64 * x).cos()
                    })
                    .sum()
            })
            .collect()
    }

    /// Magnitude spectrum (bins 0..=LEN/2) of `x` (LEN samples) through the window.
    pub fn spectrum(x: &[f32]) -> Vec<f64> {
        let w = window(x.len());
        let mut re: Vec<f64> = x.iter().zip(&w).map(|(s, w)| f64::from(*s) * w).collect();
        let mut im = vec![0.0; x.len()];
        fft_in_place(&mut re, &mut im, false);
        (0..=x.len() / 2)
            .map(|i| (re[i] * re[i] + im[i] * im[i]).sqrt())
            .collect()
    }

    /// Strongest component below 20 kHz that is not a harmonic of `f0` (nor below 20 Hz),
    /// in dB relative to the fundamental; also returns its frequency.
    pub fn worst_alias_db(x: &[f32], sr: f64, f0: f64) -> (f64, f64) {
        let mag = spectrum(x);
        let hz_per_bin = sr / x.len() as f64;
        let guard = 10.0 * hz_per_bin;
        let bin0 = (f0 / hz_per_bin).round() as usize;
        let fundamental = mag[bin0 - 3..=bin0 + 3]
            .iter()
            .fold(0.0f64, |m, v| m.max(*v));
        let mut worst = (0.0f64, 0.0f64);
        for (i, m) in mag.iter().enumerate() {
            let f = i as f64 * hz_per_bin;
            if !(20.0..20_000.0).contains(&f) {
                continue;
            }
            let k = (f / f0).round();
            if k >= 1.0 && (f - k * f0).abs() <= guard {
                continue;
            }
            if *m > worst.0 {
                worst = (*m, f);
            }
        }
        (20.0 * (worst.0 / fundamental).log10(), worst.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_harmonic_counts() {
        assert_eq!(harmonics_of_level(0), 1);
        assert_eq!(harmonics_of_level(4), 2);
        assert_eq!(harmonics_of_level(5), 2);
        assert_eq!(harmonics_of_level(6), 2);
        assert_eq!(harmonics_of_level(7), 3);
        assert_eq!(harmonics_of_level(40), 1024);
        assert_eq!(harmonics_of_level(TOP_LEVEL), MAX_HARMONICS);
        for j in 0..=TOP_LEVEL {
            let k = harmonics_of_level(j) as f64;
            assert!(k <= 2f64.powf(j as f64 / 4.0) + 1e-9);
        }
    }

    #[test]
    fn log2_never_overestimates() {
        let mut x = 1e-3f32;
        while x < 1e6 {
            let approx = log2_lower_bound(x);
            let exact = x.log2();
            assert!(approx <= exact + 1e-6, "{x}: {approx} > {exact}");
            assert!(exact - approx < 0.03, "{x}: {approx} vs {exact}");
            x *= 1.0173;
        }
    }

    #[test]
    fn chosen_levels_are_alias_free_and_continuous() {
        let ladder = Ladder::new(48_000.0);
        let mut f = 1.0f32;
        let mut last = ladder.position(f);
        while f < 20_000.0 {
            let at = ladder.position(f);
            let richest = if at.upper_weight > 0.0 {
                at.lower + 1
            } else {
                at.lower
            };
            let k = harmonics_of_level(richest) as f32;
            assert!(
                k * f <= 28_000.0 || richest == 0,
                "{f} Hz reads {k} harmonics"
            );
            // Position moves monotonically (towards poorer levels) as f rises.
            let before = last.lower as f32 + last.upper_weight;
            let now = at.lower as f32 + at.upper_weight;
            assert!(
                now <= before + 1e-6 && before - now < 0.05,
                "{f}: {before} -> {now}"
            );
            last = at;
            f *= 1.001;
        }
    }

    #[test]
    fn measurement_sees_aliases_and_not_its_own_floor() {
        use super::measure::{worst_alias_db, LEN};
        let (sr, f) = (48_000.0f64, 1_760.0f64);
        // A naive (aliasing) saw must be caught…
        let naive: Vec<f32> = (0..LEN)
            .map(|i| (2.0 * ((i as f64 * f / sr) % 1.0) - 1.0) as f32)
            .collect();
        let (db, _) = worst_alias_db(&naive, sr, f);
        assert!(db > -40.0, "naive saw measured at {db:.1} dB");
        // …while an f64 sine rounded to f32 shows the window and f32 floor far below −100.
        let sine: Vec<f32> = (0..LEN)
            .map(|i| (TAU * i as f64 * f / sr).sin() as f32)
            .collect();
        let (db, _) = worst_alias_db(&sine, sr, f);
        assert!(db < -140.0, "measurement floor {db:.1} dB");
    }

    #[test]
    fn fft_matches_dft() {
        let n = 64;
        let x: Vec<f64> = (0..n).map(|i| ((i * 7 + 3) % 11) as f64 - 5.0).collect();
        let mut re = x.clone();
        let mut im = vec![0.0; n];
        fft_in_place(&mut re, &mut im, false);
        for k in 0..n {
            let (mut r, mut i) = (0.0, 0.0);
            for (t, v) in x.iter().enumerate() {
                let a = -TAU * (k * t) as f64 / n as f64;
                r += v * a.cos();
                i += v * a.sin();
            }
            assert!((r - re[k]).abs() < 1e-9 && (i - im[k]).abs() < 1e-9);
        }
    }

    #[test]
    fn fixed_point_phase() {
        assert_eq!(phase_increment(12_000.0, 1.0 / 48_000.0), 1 << 62);
        assert_eq!(
            phase_increment(-12_000.0, 1.0 / 48_000.0),
            (1u64 << 62).wrapping_neg()
        );
        assert_eq!(phase_increment(1e9, 1.0 / 48_000.0), i64::MAX as u64);
        assert_eq!(phase_offset(0.5), 1 << 63);
        assert_eq!(phase_offset(-3.0), 0);
        let saw = Mipmap::get(Shape::Saw);
        let level = &saw.levels[10];
        // Last point of the cycle interpolates towards the first, through the guard points.
        let near_end = level.read(u64::MAX);
        assert!((near_end - level.read(0)).abs() < 1e-3, "{near_end}");
    }

    #[test]
    fn tables_match_their_series() {
        let saw = Mipmap::get(Shape::Saw);
        // A 3-harmonic level, read between points, against the series itself.
        let level = &saw.levels[7];
        let top = saw.levels.last().unwrap();
        let peak = top.data.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak <= 1.0 && peak > 0.99, "{peak}");
        let norm = {
            // Same normalisation factor for every level: recover it from the top level.
            let series = |phase: f64, k_max: usize| -> f64 {
                (1..=k_max)
                    .map(|k| Shape::Saw.harmonic(k) * (TAU * k as f64 * phase).sin())
                    .sum()
            };
            let ph = 0.123_456_7;
            series(ph, MAX_HARMONICS) / f64::from(top.read((ph * CYCLE) as u64))
        };
        for i in 0..1000 {
            let ph = i as f64 / 1000.0 + 0.000_37;
            let want: f64 = (1..=3)
                .map(|k| Shape::Saw.harmonic(k) * (TAU * k as f64 * ph).sin())
                .sum::<f64>()
                / norm;
            let got = f64::from(level.read((ph * CYCLE) as u64));
            assert!((want - got).abs() < 1e-6, "{ph}: {want} vs {got}");
        }
    }
}
