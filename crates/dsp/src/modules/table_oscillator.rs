//! One oscillator over one band-limited table shape: what `saw` and `triangle` share.
//!
//! The two types differ only in their tables and their descriptions, so they are this one
//! struct built with another [`Shape`] and [`ModuleSpec`]. `square` (two reads of the saw
//! table) and `wavetable` (morphing between tables) have their own structs.

use super::bandlimited::{apply_gain, fm_freq, Shape, TableVoice};
use crate::module::{sane_sample_rate, Module};
use crate::params::Params;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `freq` parameter.
pub const FREQ: usize = 0;
/// Index of the `gain` parameter.
pub const GAIN: usize = 1;

/// The ports every table oscillator has: linear FM in, the tone out.
pub const FM_IN: &[PortSpec] = &[PortSpec::audio("fm")];
/// See [`FM_IN`].
pub const TONE_OUT: &[PortSpec] = &[PortSpec::audio("out")];
/// The `freq` parameter every table oscillator starts with (index [`FREQ`]).
pub const FREQ_PARAM: ParamSpec = ParamSpec::hz("freq", 0.0..=20_000.0, 440.0)
    .doc("Oscillator frequency (glides over 10 ms); the fm input in Hz is added to it.");
/// The `gain` parameter every table oscillator has second (index [`GAIN`]).
pub const GAIN_PARAM: ParamSpec =
    ParamSpec::linear("gain", 0.0..=1.0, 0.5).doc("Peak output amplitude (glides over 10 ms).");

/// An oscillator reading one band-limited table shape: phase and the two parameter
/// smoothers (the table level follows from the frequency, so it needs no state).
#[derive(Debug, Clone)]
pub struct TableOscillator {
    /// Fixed-point phase and the table read for the current frequency.
    voice: TableVoice,
    params: Params,
}

impl TableOscillator {
    /// An oscillator of type `spec` (whose parameters are `freq` then `gain`) reading the
    /// `shape` tables, at the default frequency and gain, phase 0. Builds the shared tables
    /// on first use (allocates), so call it when compiling a patch.
    pub fn new(spec: &'static ModuleSpec, shape: Shape, sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        TableOscillator {
            voice: TableVoice::new(shape, sr),
            params: Params::new(spec, sr),
        }
    }
}

impl Module for TableOscillator {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Its output interpolates between values of its finite tables (each about 1 at
    /// most) and scales them by the gain, which stays near its range even when read
    /// from a snapshot (`Params::load`); the `fm` input only moves the phase, through
    /// `fm_freq`, which takes a non-finite sample as 0 and clamps the sum.
    fn always_finite(&self) -> bool {
        true
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let fm = inputs.first().copied().unwrap_or(&[]);
        if let (Some(fm), true) = (constant(fm), self.params[FREQ].is_settled()) {
            // Constant frequency (a held note's pitch at `fm`, or none): the vectorised
            // block path (same bits).
            self.voice.tune(fm_freq(self.params[FREQ].current(), fm));
            self.voice.fill(out);
            apply_gain(out, &mut self.params[GAIN]);
            return;
        }
        for (i, o) in out.iter_mut().enumerate() {
            let f = fm_freq(self.params[FREQ].next(), fm.get(i).copied().unwrap_or(0.0));
            let g = self.params[GAIN].next();
            self.voice.tune(f);
            *o = self.voice.read(self.voice.phase) * g;
            self.voice.advance();
        }
    }

    fn clear(&mut self) {
        self.voice.phase = 0;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_u64(self.voice.phase);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.voice.phase = r.get_u64()?;
        Ok(())
    }
}

/// The value every sample of `signal` holds, if they are all the same (bit for bit), 0.0
/// for an empty signal; `None` if it varies. (Also `sine`'s test of a steady `fm`.)
#[inline]
pub(crate) fn constant(signal: &[f32]) -> Option<f32> {
    let Some(&first) = signal.first() else {
        return Some(0.0);
    };
    // Branch-free, so it vectorises: every block of every oscillator with an `fm`
    // input asks.
    let bits = first.to_bits();
    let differ = signal
        .iter()
        .fold(0u32, |acc, x| acc | (x.to_bits() ^ bits));
    (differ == 0).then_some(first)
}
