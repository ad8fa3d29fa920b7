//! `wavetable`: an alias-free oscillator over built-in tables, with morphing between them.
//!
//! The built-in tables, selected by the `table` parameter (rounded to an integer):
//!
//! | `table` | waveform | spectrum |
//! |---|---|---|
//! | 0 | sine | the fundamental only |
//! | 1 | saw | every harmonic, `1/k` |
//! | 2 | square | odd harmonics, `1/k` |
//! | 3 | triangle | odd harmonics, `1/k²` |
//! | 4 | organ | drawbar partials 1, 2, 3, 4, 6, 8, 10, 12, 16 |
//! | 5 | formant | resonances near harmonics 4 and 11 over a quiet `1/k` tail (vowel-like) |
//!
//! `morph` crossfades from table `table` towards table `table + 1` (at the last table it
//! has nothing to blend with). A change of either parameter crossfades over 10 ms from
//! the blend of tables playing to the new one, directly: a jump from the sine to the
//! triangle never sweeps through the bright saw and square between them (a morph change
//! within one pair of tables is the same as gliding the morph).
//!
//! Every table is a mipmapped band-limited ladder (see [`crate::modules::bandlimited`]),
//! so aliases stay more than 100 dB down, and each is normalised to peak at 1. The `fm`
//! input is linear FM in Hz added to `freq` per sample (through zero); unconnected, 0.

use super::bandlimited::{
    apply_gain, fm_freq, fm_is_silent, phase_increment, Ladder, LevelPair, Mipmap, Shape, LANES,
};
use super::table_oscillator::{FM_IN, FREQ_PARAM, GAIN_PARAM, TONE_OUT};
use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::smoother::{ramp_samples, DEFAULT_RAMP_MS};
use crate::spec::{ModuleSpec, ParamSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `freq` parameter.
pub const FREQ: usize = 0;
/// Index of the `gain` parameter.
pub const GAIN: usize = 1;
/// Index of the `table` parameter.
pub const TABLE: usize = 2;
/// Index of the `morph` parameter.
pub const MORPH: usize = 3;

/// Number of built-in tables; `table` ranges over `0..TABLES`.
pub const TABLES: usize = Shape::ALL.len();

/// Static description of the `wavetable` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "wavetable",
    doc: "Band-limited wavetable oscillator: 6 built-in tables (0 sine, 1 saw, 2 square, 3 triangle, 4 organ, 5 formant) with morphing.",
    inputs: FM_IN,
    outputs: TONE_OUT,
    params: &[
        FREQ_PARAM,
        GAIN_PARAM,
        ParamSpec::number("table", 0.0..=5.0, 1.0).doc("Table index, rounded: 0 sine, 1 saw, 2 square, 3 triangle, 4 organ, 5 formant; a change crossfades directly to the new table over 10 ms."),
        ParamSpec::linear("morph", 0.0..=1.0, 0.0).doc("Crossfade from `table` towards the next table (glides over 10 ms)."),
    ],
    has_gate: false,
};

/// Wavetable state: phase, the read position `table + morph` with its crossfade, and
/// parameters.
#[derive(Debug, Clone)]
pub struct Wavetable {
    inv_sample_rate: f64,
    ladder: Ladder,
    tables: [&'static Mipmap; TABLES],
    /// Fixed-point phase: a fraction of a cycle in units of 2⁻⁶⁴.
    phase: u64,
    params: Params,
    /// `table + morph`, clamped to `[0, TABLES − 1]`: where the crossfade goes.
    position: f32,
    /// The weight of every table when the crossfade started.
    start: [f32; TABLES],
    /// Samples of the crossfade still to come (0: playing `position` alone).
    remaining: u32,
    /// Crossfade length in samples.
    fade_len: u32,
    /// Frequency the increment and level pairs were computed for; they are a pure
    /// function of it, so not part of the snapshot.
    cached_freq: f32,
    inc: u64,
    pairs: [LevelPair; TABLES],
}

impl Wavetable {
    /// A wavetable oscillator on the saw table at the default frequency and gain. Builds
    /// the shared tables on first use (allocates), so call it when compiling a patch.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let ladder = Ladder::new(sr);
        let params = Params::new(&SPEC, sr).whole(&[TABLE]).instant(&[MORPH]);
        let tables = Shape::ALL.map(Mipmap::get);
        let at = ladder.position(0.0);
        Wavetable {
            inv_sample_rate: 1.0 / f64::from(sr),
            ladder,
            tables,
            phase: 0,
            position: read_position(params.get(TABLE), params.get(MORPH)),
            start: weights_of(read_position(params.get(TABLE), params.get(MORPH))),
            remaining: 0,
            fade_len: ramp_samples(sr, DEFAULT_RAMP_MS).max(1),
            params,
            cached_freq: 0.0,
            inc: 0,
            pairs: tables.map(|t| t.pair(at)),
        }
    }
}

/// Splits a read position into the first table's index and the weight of the next one.
/// The position is in `[0, TABLES − 1]` (clamped when set; a glide stays between clamped
/// values), so truncation is the floor and both parts are exact.
#[inline]
fn split_position(pos: f32) -> (usize, f32) {
    let index = pos as usize;
    (index, pos - index as f32)
}

/// The weight of every table when reading at `pos`.
fn weights_of(pos: f32) -> [f32; TABLES] {
    let (index, blend) = split_position(pos);
    let mut w = [0.0; TABLES];
    if let Some(x) = w.get_mut(index) {
        *x = 1.0 - blend;
    }
    if let Some(x) = w.get_mut(index + 1) {
        *x += blend;
    }
    w
}

/// Where `table` and `morph` point: `table + morph`, never past the last table.
fn read_position(table: f32, morph: f32) -> f32 {
    (table + morph).clamp(0.0, (TABLES - 1) as f32)
}

impl Wavetable {
    /// The weight of every table now: from the start weights in a straight line to the
    /// position's, by the part of the crossfade done.
    fn weights(&self) -> [f32; TABLES] {
        let t = self.remaining as f32 / self.fade_len as f32;
        let to = weights_of(self.position);
        let mut w = [0.0; TABLES];
        for ((w, s), to) in w.iter_mut().zip(self.start).zip(to) {
            *w = to + (s - to) * t;
        }
        w
    }

    /// Caches the phase increment and every table's level pair for frequency `f`.
    #[inline]
    fn retune(&mut self, f: f32) {
        if f != self.cached_freq {
            self.cached_freq = f;
            self.inc = phase_increment(f, self.inv_sample_rate);
            let at = self.ladder.position(f);
            for (pair, table) in self.pairs.iter_mut().zip(self.tables) {
                *pair = table.pair(at);
            }
        }
    }
}

impl Module for Wavetable {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn param_changed(&mut self, index: usize) {
        if index == TABLE || index == MORPH {
            let (table, morph) = (self.params[TABLE].target(), self.params[MORPH].target());
            let position = read_position(table, morph);
            if position.to_bits() != self.position.to_bits() {
                // From the blend playing now, so a change mid-crossfade is continuous too.
                self.start = self.weights();
                self.position = position;
                self.remaining = self.fade_len;
            }
        }
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let fm = inputs.first().copied().unwrap_or(&[]);
        if fm_is_silent(fm) && self.params[FREQ].is_settled() && self.remaining == 0 {
            // Constant frequency and tables: the vectorised block path (same bits).
            self.retune(fm_freq(self.params[FREQ].current(), 0.0));
            let (index, blend) = split_position(self.position);
            let first = self.pairs.get(index).copied();
            let second = self.pairs.get(index + 1).copied().filter(|_| blend > 0.0);
            let mut phase = self.phase;
            for chunk in out.chunks_mut(LANES) {
                let mut phases = [0u64; LANES];
                for p in &mut phases {
                    *p = phase;
                    phase = phase.wrapping_add(self.inc);
                }
                let mut v = first.map_or([0.0; LANES], |p| p.read_lanes(&phases));
                if let Some(next) = second {
                    let b = next.read_lanes(&phases);
                    for (a, b) in v.iter_mut().zip(b) {
                        *a += blend * (b - *a);
                    }
                }
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            self.phase = self
                .phase
                .wrapping_add(self.inc.wrapping_mul(out.len() as u64));
            apply_gain(out, &mut self.params[GAIN]);
            return;
        }
        for (i, o) in out.iter_mut().enumerate() {
            let f = fm_freq(self.params[FREQ].next(), fm.get(i).copied().unwrap_or(0.0));
            let g = self.params[GAIN].next();
            self.retune(f);
            let v = if self.remaining > 0 {
                self.remaining -= 1;
                let mut v = 0.0;
                for (w, pair) in self.weights().into_iter().zip(&self.pairs) {
                    if w != 0.0 {
                        v += w * pair.read(self.phase);
                    }
                }
                v
            } else {
                let (index, blend) = split_position(self.position);
                let a = self.pairs.get(index).map_or(0.0, |p| p.read(self.phase));
                match self.pairs.get(index + 1) {
                    Some(next) if blend > 0.0 => a + blend * (next.read(self.phase) - a),
                    _ => a,
                }
            };
            *o = v * g;
            self.phase = self.phase.wrapping_add(self.inc);
        }
    }

    fn clear(&mut self) {
        self.phase = 0;
        self.remaining = 0;
        self.start = weights_of(self.position);
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_u64(self.phase);
        w.put_f32(self.position);
        for v in self.start {
            w.put_f32(v);
        }
        w.put_u32(self.remaining);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.phase = r.get_u64()?;
        let at = r.position();
        self.position = r.get_f32()?;
        if !(0.0..=(TABLES - 1) as f32).contains(&self.position) {
            return Err(StateError::InvalidValue {
                what: "wavetable position",
                offset: at,
            });
        }
        for v in &mut self.start {
            let x = r.get_f32()?;
            *v = if x.is_finite() { x.clamp(0.0, 1.0) } else { 0.0 };
        }
        self.remaining = r.get_u32()?.min(self.fade_len);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::bandlimited::measure::{
        assert_block_path_matches, render, spectrum, worst_alias_db, LEN,
    };

    const SR: f32 = 48_000.0;

    fn osc(freq: f32, table: f32, morph: f32) -> Wavetable {
        let mut s = Wavetable::new(SR);
        s.set_param(FREQ, freq);
        s.set_param(GAIN, 1.0);
        s.set_param(TABLE, table);
        s.set_param(MORPH, morph);
        s.reset();
        s
    }

    #[test]
    fn every_table_alias_free_to_100_db() {
        for table in 0..TABLES {
            for (freq, morph) in [
                (1_760.0f32, 0.0f32),
                (5_000.0, 0.0),
                (220.0, 0.0),
                (1_760.0, 0.5),
            ] {
                let out = render(&mut osc(freq, table as f32, morph), &[], LEN);
                let (db, at) = worst_alias_db(&out, f64::from(SR), f64::from(freq));
                println!("wavetable {table} morph {morph} {freq} Hz: worst alias {db:.1} dB (at {at:.0} Hz)");
                assert!(
                    db <= -100.0,
                    "table {table} {freq} Hz: {db:.1} dB at {at:.0} Hz"
                );
                let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
                assert!(
                    peak <= 1.0 + 1e-3 && peak > 0.3,
                    "table {table}: peak {peak}"
                );
            }
        }
    }

    #[test]
    fn sine_table_is_a_sine_and_morph_adds_harmonics() {
        let hz_per_bin = f64::from(SR) / LEN as f64;
        let level = |mag: &[f64], f: f64| {
            let b = (f / hz_per_bin).round() as usize;
            mag[b - 3..=b + 3].iter().fold(0.0f64, |m, v| m.max(*v))
        };
        let pure = spectrum(&render(&mut osc(500.0, 0.0, 0.0), &[], LEN));
        let half = spectrum(&render(&mut osc(500.0, 0.0, 0.5), &[], LEN));
        let db = |a: f64, b: f64| 20.0 * (a / b).log10();
        // Pure sine: second harmonic at the measurement floor; half-way to the saw: −12 dB-ish.
        assert!(db(level(&pure, 1000.0), level(&pure, 500.0)) < -120.0);
        let h2 = db(level(&half, 1000.0), level(&half, 500.0));
        assert!((-20.0..-3.0).contains(&h2), "{h2}");
    }

    #[test]
    fn table_param_is_integer_and_jumps_crossfade() {
        let mut s = osc(220.0, 0.0, 0.0);
        s.set_param(TABLE, 2.6);
        assert_eq!(s.param(TABLE), 3.0);
        s.set_param(MORPH, 2.0);
        assert_eq!(s.param(MORPH), 1.0);
        s.set_param(TABLE, 5.0);
        let _ = render(&mut s, &[], 480);
        assert_eq!((s.position, s.remaining), (5.0, 0));
        // A jump from sine to formant crossfades the two directly: the tables between
        // (saw, square, ...) never play.
        let mut s = osc(100.0, 0.0, 0.0);
        let _ = render(&mut s, &[], 480);
        s.set_param(TABLE, 5.0);
        for _ in 0..480 {
            let w = s.weights();
            assert_eq!(w[1..5], [0.0; 4]);
            assert!((w[0] + w[5] - 1.0).abs() < 1e-6);
            let _ = render(&mut s, &[], 1);
        }
        assert_eq!(s.weights()[5], 1.0);
        let mut s = osc(100.0, 0.0, 0.0);
        let _ = render(&mut s, &[], 480);
        s.set_param(TABLE, 5.0);
        let out = render(&mut s, &[], 960);
        assert!(out.iter().all(|x| x.is_finite() && x.abs() <= 1.0 + 1e-3));
    }

    #[test]
    fn snapshot_continues_bit_identically() {
        let mut a = osc(330.0, 1.0, 0.3);
        let _ = render(&mut a, &[], 1000);
        a.set_param(TABLE, 4.0);
        let _ = render(&mut a, &[], 100);
        let mut buf = vec![0u8; a.state_len()];
        let mut w = StateWriter::new(&mut buf);
        a.save_state(&mut w);
        assert_eq!(w.finish(), Ok(a.state_len()));
        let mut b = Wavetable::new(SR);
        b.load_state(&mut StateReader::new(&buf)).unwrap();
        assert_eq!((b.param(TABLE), b.param(MORPH)), (4.0, 0.3));
        let (x, y) = (render(&mut a, &[], 2000), render(&mut b, &[], 2000));
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    #[test]
    fn block_path_matches_per_sample_path() {
        assert_block_path_matches(
            || {
                let mut m = crate::modules::create("wavetable", SR, 64, 0).unwrap();
                m.set_param(MORPH, 0.3);
                m
            },
            |m| {
                m.set_param(TABLE, 4.0);
                m.set_param(FREQ, 3_000.0);
            },
        );
    }
}
