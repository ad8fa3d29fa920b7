//! Small numeric helpers shared by the filter, dynamics, utility and effect modules.
//!
//! Every recursive module needs the same three guards (flush denormals in software,
//! keep absurd inputs from overflowing a feedback loop, save and load whole buffers),
//! so they live here once instead of being re-typed, slightly differently, in each file.

use crate::state::{StateError, StateReader, StateWriter};

/// Magnitude below which recursive state (filter memories, comb stores, feedback
/// buffers) is flushed to zero: far below audibility (-400 dB), far above the f32
/// denormal range, so decaying tails end in exact zeros instead of slow denormals.
pub const DENORMAL_FLOOR: f32 = 1e-20;

/// The same floor for state kept in f64 (filter memories at low cutoffs).
pub const DENORMAL_FLOOR_F64: f64 = 1e-20;

/// Largest input magnitude a recursive module lets into its state (+180 dB over full
/// scale). Inputs are already finite (the patch silences non-finite outputs), but a
/// sum of huge finite values inside a feedback loop could still overflow to infinity;
/// clamping here makes that impossible without affecting any sensible signal.
pub const INPUT_LIMIT: f32 = 1e9;

/// Returns `x` with denormal-range magnitudes replaced by exact zero; used on every
/// value written into recursive state.
#[inline]
pub fn flush(x: f32) -> f32 {
    if x.abs() < DENORMAL_FLOOR {
        0.0
    } else {
        x
    }
}

/// f64 version of [`flush`], for filter memories kept in double precision.
#[inline]
pub fn flush64(x: f64) -> f64 {
    if x.abs() < DENORMAL_FLOOR_F64 {
        0.0
    } else {
        x
    }
}

/// `x.round() as i64` (halves away from zero, saturating; NaN gives 0), bit for bit,
/// without a call: with no SSE4.1 on the baseline target `f64::round` is a call into
/// libm, which an oscillator paid at every block of every voice. Truncation is one
/// instruction and `x - trunc(x)` is exact (below 2^52 both lie within 1 of each other;
/// above, `x` is a whole number).
#[inline]
pub fn round_to_i64(x: f64) -> i64 {
    let whole = x as i64;
    let fraction = x - whole as f64;
    if fraction >= 0.5 {
        whole.saturating_add(1)
    } else if fraction <= -0.5 {
        whole.saturating_sub(1)
    } else {
        whole
    }
}

/// Clamps an input sample into ±[`INPUT_LIMIT`] (NaN becomes `-INPUT_LIMIT`, still
/// finite), so no input can make a feedback loop overflow.
#[inline]
pub fn sanitize(x: f32) -> f32 {
    // Not `clamp`: that would pass NaN through; max/min map it to a finite bound.
    #[allow(clippy::manual_clamp)]
    let y = x.max(-INPUT_LIMIT).min(INPUT_LIMIT);
    y
}

/// 4-point cubic Hermite (Catmull-Rom) interpolation between `x0` and `x1` at `t` in
/// 0..1, with neighbours `xm1` (before `x0`) and `x2` (after `x1`); exactly `x0` at
/// `t = 0`. The read of modulated delay lines: smooth, and flat enough in the audio band.
#[inline]
pub fn hermite(xm1: f32, x0: f32, x1: f32, x2: f32, t: f32) -> f32 {
    let c1 = 0.5 * (x1 - xm1);
    let c2 = xm1 - 2.5 * x0 + 2.0 * x1 - 0.5 * x2;
    let c3 = 0.5 * (x2 - xm1) + 1.5 * (x0 - x1);
    ((c3 * t + c2) * t + c1) * t + x0
}

/// The input port `index` of a `process` call, or an empty slice if the caller passed
/// fewer inputs (modules then render as much as the shortest slice allows).
#[inline]
pub fn input<'a>(inputs: &[&'a [f32]], index: usize) -> &'a [f32] {
    inputs.get(index).copied().unwrap_or(&[])
}

/// Writes a buffer of samples into a snapshot, one f32 bit pattern each.
pub fn save_buffer(w: &mut StateWriter<'_>, buf: &[f32]) {
    w.put_f32s(buf);
}

/// Reads a buffer written by [`save_buffer`] into `buf` (same length).
///
/// # Errors
/// [`StateError::Truncated`] if the snapshot is short.
pub fn load_buffer(r: &mut StateReader<'_>, buf: &mut [f32]) -> Result<(), StateError> {
    if r.remaining() < buf.len() * 4 {
        return Err(StateError::Truncated {
            offset: r.position(),
            needed: buf.len() * 4,
            remaining: r.remaining(),
        });
    }
    for x in buf.iter_mut() {
        *x = r.get_f32()?;
    }
    Ok(())
}

/// Reads a u32 index that must be below `len` (a ring-buffer position), so a damaged
/// snapshot can never make a later read go out of bounds.
///
/// # Errors
/// [`StateError::Truncated`] if short; [`StateError::InvalidValue`] naming `what` if the
/// index is out of range.
pub fn load_index(
    r: &mut StateReader<'_>,
    len: usize,
    what: &'static str,
) -> Result<usize, StateError> {
    let offset = r.position();
    let v = r.get_u32()? as usize;
    if v < len {
        Ok(v)
    } else {
        Err(StateError::InvalidValue { what, offset })
    }
}

/// Reads a small enum tag (mode, stage) that must be below `count`.
///
/// # Errors
/// [`StateError::Truncated`] if short; [`StateError::InvalidValue`] naming `what` if the
/// tag is out of range.
pub fn load_tag(r: &mut StateReader<'_>, count: u8, what: &'static str) -> Result<u8, StateError> {
    let offset = r.position();
    let v = r.get_u8()?;
    if v < count {
        Ok(v)
    } else {
        Err(StateError::InvalidValue { what, offset })
    }
}

/// Rounds a `Number` parameter that selects a mode (0, 1, 2, …) to its index, for
/// parameters whose range is already clamped to `0..=max`.
#[inline]
pub fn mode_index(value: f32) -> u8 {
    // Clamped ranges are tiny (0..=3); the cast saturates anyway.
    value.round().max(0.0) as u8
}

/// Length of the crossfade when a stepped parameter (a mode, a shape, a law) changes.
pub const CHOICE_FADE_MS: f32 = 10.0;

/// Most choices a [`ChoiceFade`] fades between (a stepped parameter's values 0..=7).
pub const MAX_CHOICES: usize = 8;

/// A click-free switch between the choices of a stepped parameter (a filter's mode, a
/// waveshaper's curve): instead of jumping, the output crossfades linearly from what
/// played to the new choice over [`CHOICE_FADE_MS`].
///
/// It holds a weight per choice: at a switch it records the weights in use, and they
/// move in a straight line to the new choice alone. A switch in the middle of a fade
/// starts from the blend playing at that moment, so any sequence of switches is
/// continuous. The module computes the output of every choice whose weight is not zero
/// and sums them with [`ChoiceFade::weights`]; while no fade runs it plays
/// [`ChoiceFade::choice`] alone, on its resting path.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceFade {
    /// The weights when the fade started.
    start: [f32; MAX_CHOICES],
    /// The choice faded to (and played alone when no fade runs).
    choice: u8,
    /// Samples of the fade still to come.
    remaining: u32,
    /// Fade length in samples.
    len: u32,
}

impl ChoiceFade {
    /// Playing `choice` alone, with fades of [`CHOICE_FADE_MS`] at `sample_rate`.
    pub fn new(choice: u8, sample_rate: f32) -> ChoiceFade {
        let len = crate::smoother::ramp_samples(sample_rate, CHOICE_FADE_MS).max(1);
        let mut start = [0.0; MAX_CHOICES];
        start[usize::from(choice).min(MAX_CHOICES - 1)] = 1.0;
        ChoiceFade {
            start,
            choice: choice.min(MAX_CHOICES as u8 - 1),
            remaining: 0,
            len,
        }
    }

    /// The choice playing (or being faded to).
    #[inline]
    pub fn choice(&self) -> u8 {
        self.choice
    }

    /// True while a fade runs.
    #[inline]
    pub fn is_fading(&self) -> bool {
        self.remaining > 0
    }

    /// Starts a fade from what plays now to `choice`; switching to the choice already
    /// playing alone does nothing.
    pub fn switch(&mut self, choice: u8) {
        let choice = choice.min(MAX_CHOICES as u8 - 1);
        if choice == self.choice && self.remaining == 0 {
            return;
        }
        self.start = self.current();
        self.choice = choice;
        self.remaining = self.len;
    }

    /// The weights in use now (they sum to 1).
    fn current(&self) -> [f32; MAX_CHOICES] {
        let t = self.remaining as f32 / self.len as f32;
        let mut w = [0.0; MAX_CHOICES];
        for (i, (w, s)) in w.iter_mut().zip(self.start).enumerate() {
            let target = if i == usize::from(self.choice) {
                1.0
            } else {
                0.0
            };
            *w = target + (s - target) * t;
        }
        w
    }

    /// Advances one sample and returns the weights of every choice for it.
    #[inline]
    pub fn weights(&mut self) -> [f32; MAX_CHOICES] {
        self.remaining = self.remaining.saturating_sub(1);
        self.current()
    }

    /// Ends any fade on the choice; part of a module's reset.
    pub fn settle(&mut self) {
        self.start = [0.0; MAX_CHOICES];
        self.start[usize::from(self.choice)] = 1.0;
        self.remaining = 0;
    }

    /// Writes the fade (start weights, choice, samples remaining).
    pub fn save(&self, w: &mut StateWriter<'_>) {
        for v in self.start {
            w.put_f32(v);
        }
        w.put_u8(self.choice);
        w.put_u32(self.remaining);
    }

    /// Reads what [`ChoiceFade::save`] wrote; `choices` is how many the module has.
    ///
    /// # Errors
    /// [`StateError::Truncated`] for short input; [`StateError::InvalidValue`] for a
    /// choice out of range.
    pub fn load(&mut self, r: &mut StateReader<'_>, choices: u8) -> Result<(), StateError> {
        for v in &mut self.start {
            let x = r.get_f32()?;
            *v = if x.is_finite() {
                x.clamp(0.0, 1.0)
            } else {
                0.0
            };
        }
        self.choice = load_tag(r, choices, "choice")?;
        self.remaining = r.get_u32()?.min(self.len);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Shared test helpers: render through `process`, measure a sine's gain, and the
    //! generic snapshot / reset / hygiene checks run over every type this file's
    //! siblings define.

    use crate::module::Module;
    use crate::modules::create;
    use crate::state::{StateReader, StateWriter};

    /// Sample rate used by the tests.
    pub const SR: f32 = 48_000.0;

    /// Renders `inputs` (one Vec per input port, equal lengths) through `m` in 64-sample
    /// blocks and returns one Vec per output port.
    pub fn render(m: &mut dyn Module, inputs: &[Vec<f32>], n_out: usize) -> Vec<Vec<f32>> {
        let n = inputs.first().map_or(0, Vec::len);
        render_len(m, inputs, n_out, n)
    }

    /// [`render`] for `n` samples, also for modules without inputs.
    pub fn render_len(
        m: &mut dyn Module,
        inputs: &[Vec<f32>],
        n_out: usize,
        n: usize,
    ) -> Vec<Vec<f32>> {
        let mut outs = vec![vec![0.0f32; n]; n_out];
        let mut start = 0;
        while start < n {
            let end = (start + 64).min(n);
            let ins: Vec<&[f32]> = inputs.iter().map(|v| &v[start..end]).collect();
            let mut chunks: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[start..end]).collect();
            m.process(&ins, &mut chunks);
            start = end;
        }
        outs
    }

    /// A sine of `f` Hz and `amp` amplitude, `n` samples long.
    pub fn sine(f: f64, amp: f64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (amp * (std::f64::consts::TAU * f * i as f64 / f64::from(SR)).sin()) as f32)
            .collect()
    }

    /// Amplitude of the `f` Hz component of `sig` (one DFT bin; `sig` should hold a whole
    /// number of cycles).
    pub fn bin(sig: &[f32], f: f64) -> f64 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (i, &x) in sig.iter().enumerate() {
            let w = std::f64::consts::TAU * f * i as f64 / f64::from(SR);
            re += f64::from(x) * w.cos();
            im += f64::from(x) * w.sin();
        }
        2.0 * (re * re + im * im).sqrt() / sig.len() as f64
    }

    /// Gain in dB at `f` Hz of a single-in, single-out module (output port `out_port`),
    /// measured with a sine of amplitude `amp` after 0.25 s of settling over 1 s.
    pub fn gain_db(m: &mut dyn Module, n_out: usize, out_port: usize, f: f64, amp: f64) -> f64 {
        let settle = (SR / 4.0) as usize;
        let n = SR as usize;
        let x = sine(f, amp, settle + n);
        let outs = render(m, std::slice::from_ref(&x), n_out);
        20.0 * (bin(&outs[out_port][settle..], f) / bin(&x[settle..], f)).log10()
    }

    /// A deterministic pseudo-random test signal in -1..1 (xorshift).
    pub fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
            })
            .collect()
    }

    /// Snapshot bytes of a module.
    pub fn snapshot(m: &dyn Module) -> Vec<u8> {
        let mut buf = vec![0u8; m.state_len()];
        let mut w = StateWriter::new(&mut buf);
        m.save_state(&mut w);
        assert_eq!(w.finish(), Ok(m.state_len()), "{}", m.spec().type_name);
        buf
    }

    /// Sets every parameter of `m` to a value a fraction `t` (0..1) into its range.
    pub fn set_params(m: &mut dyn Module, t: f32) {
        for (i, p) in m.spec().params.iter().enumerate() {
            m.set_param(i, p.min + (p.max - p.min) * t);
        }
    }

    /// Renders `blocks` blocks of noise on every input with the gate toggled along the way
    /// and parameters moved mid-way, so a snapshot taken afterwards has glides, buffers and
    /// envelope stages in flight.
    pub fn exercise(m: &mut dyn Module, blocks: usize, seed: u64) -> Vec<Vec<f32>> {
        let spec = m.spec();
        let mut all = vec![Vec::new(); spec.outputs.len()];
        for b in 0..blocks {
            if b == 1 {
                m.set_gate(true);
            }
            if b == blocks / 2 {
                set_params(m, 0.37);
                m.set_gate(false);
            }
            let ins: Vec<Vec<f32>> = (0..spec.inputs.len())
                .map(|p| noise(64, seed + 977 * b as u64 + p as u64))
                .collect();
            let outs = render_len(m, &ins, spec.outputs.len(), 64);
            for (a, o) in all.iter_mut().zip(outs) {
                a.extend(o);
            }
        }
        all
    }

    /// Asserts two renders are bit-identical, naming the first differing sample.
    pub fn assert_same(a: &[Vec<f32>], b: &[Vec<f32>], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: port count");
        for (port, (x, y)) in bits(a).iter().zip(bits(b).iter()).enumerate() {
            assert_eq!(x.len(), y.len(), "{what}: length of port {port}");
            if let Some(i) = x.iter().zip(y).position(|(p, q)| p != q) {
                panic!("{what}: port {port} differs first at sample {i}");
            }
        }
    }

    /// Bit patterns, for exact comparisons that treat -0.0 and NaN payloads strictly.
    pub fn bits(v: &[Vec<f32>]) -> Vec<Vec<u32>> {
        v.iter()
            .map(|o| o.iter().map(|x| x.to_bits()).collect())
            .collect()
    }

    /// Fresh instance of a registered type at the test sample rate.
    pub fn make(type_name: &str) -> Box<dyn Module> {
        create(type_name, SR, 64, 7).unwrap_or_else(|| panic!("type {type_name} registered"))
    }

    /// Snapshot after some processing, load into a fresh instance, continue both: the
    /// outputs must be bit-identical and the re-saved snapshot byte-identical.
    pub fn check_round_trip(type_name: &str) {
        let mut a = make(type_name);
        set_params(a.as_mut(), 0.6);
        exercise(a.as_mut(), 12, 1);
        let bytes = snapshot(a.as_ref());
        let mut b = make(type_name);
        let mut r = StateReader::new(&bytes);
        b.load_state(&mut r).unwrap();
        assert_eq!(r.remaining(), 0, "{type_name}: load reads everything");
        assert_eq!(
            snapshot(b.as_ref()),
            bytes,
            "{type_name}: re-saved snapshot"
        );
        let oa = exercise(a.as_mut(), 12, 99);
        let ob = exercise(b.as_mut(), 12, 99);
        assert_same(&oa, &ob, type_name);
        for i in 0..a.spec().params.len() {
            assert_eq!(
                a.param(i).to_bits(),
                b.param(i).to_bits(),
                "{type_name} param {i}"
            );
        }
        // A short snapshot is an error, not a panic.
        let mut c = make(type_name);
        if !bytes.is_empty() {
            assert!(c
                .load_state(&mut StateReader::new(&bytes[..bytes.len() - 1]))
                .is_err());
        }
    }

    /// After processing, `reset` must give the same state as a fresh instance with the
    /// same parameters (reset).
    pub fn check_reset(type_name: &str) {
        let mut a = make(type_name);
        exercise(a.as_mut(), 10, 5);
        a.reset();
        let mut fresh = make(type_name);
        set_params(fresh.as_mut(), 0.37);
        fresh.reset();
        assert_eq!(
            snapshot(a.as_ref()),
            snapshot(fresh.as_ref()),
            "{type_name}"
        );
    }

    /// Rendering in odd block sizes gives the same bits as 64-sample blocks (the patch
    /// relies on this: how a request is split must not change the sound).
    pub fn check_split_invariance(type_name: &str) {
        let mut a = make(type_name);
        let mut b = make(type_name);
        let spec = a.spec();
        for m in [&mut a, &mut b] {
            m.set_param(0, spec.params.first().map_or(0.0, |p| p.max * 0.5));
            m.set_gate(true);
        }
        let n = 3000;
        let ins: Vec<Vec<f32>> = (0..spec.inputs.len())
            .map(|p| noise(n, 11 + p as u64))
            .collect();
        let whole = render_len(a.as_mut(), &ins, spec.outputs.len(), n);
        let mut pieces = vec![Vec::new(); spec.outputs.len()];
        let mut start = 0;
        for len in [1usize, 7, 13, 64, 3, 50].iter().cycle() {
            if start >= n {
                break;
            }
            let end = (start + len).min(n);
            let seg: Vec<&[f32]> = ins.iter().map(|v| &v[start..end]).collect();
            let mut outs = vec![vec![0.0f32; end - start]; spec.outputs.len()];
            let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[..]).collect();
            b.process(&seg, &mut refs);
            for (p, o) in pieces.iter_mut().zip(outs) {
                p.extend(o);
            }
            start = end;
        }
        assert_same(&whole, &pieces, type_name);
    }

    /// Extreme inputs and parameters never produce NaN or infinity.
    pub fn check_hygiene(type_name: &str) {
        for t in [0.0f32, 1.0] {
            let mut m = make(type_name);
            set_params(m.as_mut(), t);
            m.reset();
            m.set_gate(true);
            let spec = m.spec();
            for x in [1e30f32, -1e30, f32::MAX, 0.0, 1e-39, 1.0] {
                let ins = vec![vec![x; 256]; spec.inputs.len()];
                let outs = render(m.as_mut(), &ins, spec.outputs.len());
                assert!(
                    outs.iter().flatten().all(|v| v.is_finite()),
                    "{type_name} at params {t} input {x}"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::round_to_i64;
    use super::testing::{check_hygiene, check_reset, check_round_trip, check_split_invariance};

    #[test]
    fn round_to_i64_is_round_as_i64() {
        let edges = [
            0.0,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            0.49999999999999994,
            -0.49999999999999994,
            4503599627370495.5,
            -4503599627370495.5,
            4503599627370497.0,
            9.3e18,
            -9.3e18,
            f64::MAX,
            f64::MIN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1e-300,
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let random = (0..100_000).map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let scale = [1.0, 1e3, 1e9, 1e15, 1e19][(state >> 60) as usize % 5];
            ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * scale
        });
        for x in edges.into_iter().chain(random) {
            assert_eq!(round_to_i64(x), x.round() as i64, "{x:e}");
        }
    }

    use crate::modules::all_specs;

    /// Every registered type's name: each gets the generic checks.
    fn types() -> impl Iterator<Item = &'static str> {
        all_specs().iter().map(|s| s.type_name)
    }

    #[test]
    fn snapshot_round_trip_is_bit_identical_for_every_type() {
        for t in types() {
            check_round_trip(t);
        }
    }

    #[test]
    fn reset_returns_to_the_fresh_state_for_every_type() {
        for t in types() {
            check_reset(t);
        }
    }

    #[test]
    fn block_splits_do_not_change_the_output_for_any_type() {
        for t in types() {
            check_split_invariance(t);
        }
    }

    /// Types that let extreme inputs through unclamped (a sum of eight near-`f32::MAX`
    /// inputs, a filter fed one), where the patch's non-finite guard silences the block.
    const UNCLAMPED_INPUTS: &[&str] = &["biquad", "mixer"];

    #[test]
    fn extreme_inputs_and_params_stay_finite_for_every_type() {
        for t in types().filter(|t| !UNCLAMPED_INPUTS.contains(t)) {
            check_hygiene(t);
        }
    }

    /// Rough ns per sample of each type at 64-sample blocks, settled parameters; run with
    /// `cargo test -p chronus-dsp --release -- --ignored --nocapture speed`. A report, not
    /// a pass/fail check (timing belongs to benchmarks).
    #[test]
    #[ignore]
    fn speed_report() {
        use super::testing::{make, noise};
        // SPEED_TYPES=a,b compares other registered types (e.g. biquad) on the same run.
        let extra = std::env::var("SPEED_TYPES").unwrap_or_default();
        let types: Vec<&str> = match extra.as_str() {
            "" => types().collect(),
            list => list.split(',').collect(),
        };
        for t in types {
            let mut m = make(t);
            let spec = m.spec();
            m.set_gate(true);
            let ins: Vec<Vec<f32>> = (0..spec.inputs.len())
                .map(|p| noise(64, p as u64))
                .collect();
            let ins: Vec<&[f32]> = ins.iter().map(|v| &v[..]).collect();
            let mut outs = vec![[0.0f32; 64]; spec.outputs.len()];
            let blocks = 5_000;
            // Best of several runs: the machine is shared, the minimum is the signal.
            let mut ns = f64::INFINITY;
            for _ in 0..9 {
                let start = std::time::Instant::now();
                for _ in 0..blocks {
                    let mut refs: Vec<&mut [f32]> = outs.iter_mut().map(|v| &mut v[..]).collect();
                    m.process(&ins, &mut refs);
                }
                ns = ns.min(start.elapsed().as_nanos() as f64 / (blocks * 64) as f64);
            }
            println!("{t:>12}: {ns:6.2} ns/sample");
            assert!(outs.iter().flatten().all(|x| x.is_finite()));
        }
    }
}
