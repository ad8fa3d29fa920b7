//! `triangle`: an alias-free triangle, read from the mipmapped band-limited tables.
//!
//! A triangle's odd harmonics fall as `1/k²`, so it aliases less than a saw, but a naive
//! one still folds audibly at high notes. This one reads [`Mipmap`] tables that hold only
//! the harmonics that cannot fold below 20 kHz, crossfading between table levels as the
//! frequency moves (see [`crate::modules::bandlimited`]); aliases stay more than 100 dB down.
//!
//! The waveform starts at 0 rising, peaks at +1 a quarter cycle in. The `fm` input is
//! linear FM in Hz, added to `freq` per sample (through zero); unconnected it reads 0.

use super::bandlimited::Shape;
pub use super::table_oscillator::{TableOscillator, FREQ, GAIN};
use super::table_oscillator::{FM_IN, FREQ_PARAM, GAIN_PARAM, TONE_OUT};
use crate::spec::ModuleSpec;

/// Static description of the `triangle` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "triangle",
    doc: "Band-limited triangle (alias-free mipmapped tables): a soft, flute-like tone with only odd harmonics.",
    inputs: FM_IN,
    outputs: TONE_OUT,
    params: &[
        FREQ_PARAM,
        GAIN_PARAM,
    ],
    has_gate: false,
};

/// The `triangle` module: a [`TableOscillator`] over the triangle tables.
pub type Triangle = TableOscillator;

/// A triangle at the default frequency and gain, phase 0 (builds the shared tables on first
/// use: call it when compiling a patch).
pub fn new(sample_rate: f32) -> Triangle {
    TableOscillator::new(&SPEC, Shape::Triangle, sample_rate)
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

    fn triangle_at(freq: f32) -> Triangle {
        let mut s = new(SR);
        s.set_param(FREQ, freq);
        s.set_param(GAIN, 1.0);
        s.reset();
        s
    }

    #[test]
    fn alias_free_to_100_db() {
        for freq in [1_760.0f32, 5_000.0, 55.0, 220.0, 10_000.0] {
            let out = render(&mut triangle_at(freq), &[], LEN);
            let (db, at) = worst_alias_db(&out, f64::from(SR), f64::from(freq));
            println!("triangle {freq} Hz: worst alias {db:.1} dB (at {at:.0} Hz)");
            assert!(
                db <= -100.0,
                "triangle {freq} Hz: alias {db:.1} dB at {at:.0} Hz"
            );
        }
    }

    #[test]
    fn shape_frequency_and_fm() {
        let mut s = triangle_at(100.0);
        let out = render(&mut s, &[], 480);
        // Quarter cycle in (120 samples) it peaks near +1, half way it is back at 0.
        assert!((out[120] - 1.0).abs() < 0.01, "{}", out[120]);
        assert!(out[240].abs() < 0.01 && (out[360] + 1.0).abs() < 0.01);
        assert!(out[0].abs() < 1e-6);
        let mut s = triangle_at(440.0);
        let fm = vec![440.0f32; SR as usize];
        let out = render(&mut s, &[&fm], SR as usize);
        let rising = out.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!((rising as f32 - 880.0).abs() <= 1.0, "{rising}");
    }

    #[test]
    fn snapshot_continues_bit_identically() {
        let mut a = triangle_at(333.0);
        let _ = render(&mut a, &[], 1000);
        a.set_param(FREQ, 2000.0);
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
            || crate::modules::create("triangle", SR, 64, 0).unwrap(),
            |m| {
                m.set_param(GAIN, 0.3);
                m.set_param(FREQ, 3_000.0);
            },
        );
    }
}
