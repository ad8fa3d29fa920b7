//! `saw`: an alias-free rising sawtooth, read from the mipmapped band-limited tables.
//!
//! A saw has every harmonic at `1/k`, which is why naive or PolyBLEP saws alias audibly
//! at high notes. This one reads [`Mipmap`] tables that hold only the harmonics that
//! cannot fold below 20 kHz, crossfading between table levels as the frequency moves
//! (see [`crate::modules::bandlimited`]); aliases stay more than 100 dB down.
//!
//! The tables are normalised so the peak (the Gibbs overshoot at the falling edge) is
//! `gain`; the ramp itself spans ±0.85. The `fm` input is linear FM in Hz, added to
//! `freq` per sample (through zero: a negative sum runs the saw backwards); unconnected
//! it reads 0.

use super::bandlimited::Shape;
pub use super::table_oscillator::{TableOscillator, FREQ, GAIN};
use super::table_oscillator::{FM_IN, FREQ_PARAM, GAIN_PARAM, TONE_OUT};
use crate::spec::ModuleSpec;

/// Static description of the `saw` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "saw",
    doc: "Band-limited sawtooth (alias-free mipmapped tables): the bright, buzzy source for subtractive patches.",
    inputs: FM_IN,
    outputs: TONE_OUT,
    params: &[
        FREQ_PARAM,
        GAIN_PARAM,
    ],
    has_gate: false,
};

/// The `saw` module: a [`TableOscillator`] over the saw tables.
pub type Saw = TableOscillator;

/// A saw at the default frequency and gain, phase 0 (builds the shared tables on first
/// use: call it when compiling a patch).
pub fn new(sample_rate: f32) -> Saw {
    TableOscillator::new(&SPEC, Shape::Saw, sample_rate)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::Module;
    use crate::modules::bandlimited::measure::{
        assert_block_path_matches, render, worst_alias_db, LEN,
    };
    use crate::state::{StateReader, StateWriter};

    const SR: f32 = 48_000.0;

    fn saw_at(freq: f32) -> Saw {
        let mut s = new(SR);
        s.set_param(FREQ, freq);
        s.set_param(GAIN, 1.0);
        s.reset();
        s
    }

    #[test]
    fn alias_free_to_100_db() {
        for freq in [1_760.0f32, 5_000.0, 55.0, 220.0, 10_000.0] {
            let out = render(&mut saw_at(freq), &[], LEN);
            let (db, at) = worst_alias_db(&out, f64::from(SR), f64::from(freq));
            println!("saw {freq} Hz: worst alias {db:.1} dB (at {at:.0} Hz)");
            assert!(
                db <= -100.0,
                "saw {freq} Hz: alias {db:.1} dB at {at:.0} Hz"
            );
        }
    }

    #[test]
    fn frequency_by_zero_crossings_and_fm() {
        for (freq, fm, want) in [
            (100.0f32, 0.0f32, 100.0f32),
            (1234.0, 0.0, 1234.0),
            (440.0, 440.0, 880.0),
        ] {
            let mut s = saw_at(freq);
            let fm_in = vec![fm; SR as usize];
            let out = render(&mut s, &[&fm_in], SR as usize);
            // A rising saw falls through zero once per cycle.
            let falling = out.windows(2).filter(|w| w[0] > 0.0 && w[1] <= 0.0).count();
            assert!(
                (falling as f32 - want).abs() <= 1.0,
                "{freq}+{fm}: {falling}"
            );
            assert!(out.iter().all(|x| x.abs() <= 1.0 + 1e-4));
        }
    }

    #[test]
    fn nan_fm_and_extreme_fm_stay_finite() {
        let mut s = saw_at(440.0);
        let fm: Vec<f32> = (0..4096)
            .map(|i| match i % 4 {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => -1e30,
                _ => 3e4,
            })
            .collect();
        let out = render(&mut s, &[&fm], 4096);
        assert!(out.iter().all(|x| x.is_finite() && x.abs() <= 1.0 + 1e-4));
    }

    #[test]
    fn sweep_stays_bounded() {
        // A 30 Hz → 1.6 kHz sweep walks through ~25 table levels; the crossfade position
        // is continuous in frequency (tested in `bandlimited`), and the output stays sane.
        let mut s = saw_at(30.0);
        let mut out = Vec::new();
        for step in 0..200 {
            s.set_param(FREQ, 30.0 * 1.02f32.powi(step));
            out.extend(render(&mut s, &[], 480));
        }
        assert!(out.iter().all(|x| x.is_finite() && x.abs() <= 1.0 + 1e-4));
    }

    #[test]
    fn snapshot_continues_bit_identically() {
        let mut a = saw_at(777.0);
        let _ = render(&mut a, &[], 1000);
        a.set_param(FREQ, 3000.0);
        let _ = render(&mut a, &[], 100);
        let mut buf = vec![0u8; a.state_len()];
        let mut w = StateWriter::new(&mut buf);
        a.save_state(&mut w);
        assert_eq!(w.finish(), Ok(a.state_len()));
        let mut b = new(SR);
        b.load_state(&mut StateReader::new(&buf)).unwrap();
        let (x, y) = (render(&mut a, &[], 2000), render(&mut b, &[], 2000));
        assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
    }

    #[test]
    fn block_path_matches_per_sample_path() {
        assert_block_path_matches(
            || crate::modules::create("saw", SR, 64, 0).unwrap(),
            |m| {
                m.set_param(GAIN, 0.3);
                m.set_param(FREQ, 3_000.0);
            },
        );
    }
}
