//! One oscillator over one band-limited table shape: what `saw` and `triangle` share.
//!
//! The two types differ only in their tables and their descriptions, so they are this one
//! struct built with another [`Shape`] and [`ModuleSpec`]. `square` (two reads of the saw
//! table) and `wavetable` (morphing between tables) have their own structs.

use super::bandlimited::{apply_gain, fm_freq, fm_is_silent, Shape, TableVoice};
use crate::module::{sane_sample_rate, Module};
use crate::smoother::Smoother;
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
pub const FREQ_PARAM: ParamSpec = ParamSpec::hz("freq", 0.01..=20_000.0, 440.0)
    .doc("Oscillator frequency (glides over 10 ms); the fm input in Hz is added to it.");
/// The `gain` parameter every table oscillator has second (index [`GAIN`]).
pub const GAIN_PARAM: ParamSpec =
    ParamSpec::linear("gain", 0.0..=1.0, 0.5).doc("Peak output amplitude (glides over 10 ms).");

/// An oscillator reading one band-limited table shape: phase and the two parameter
/// smoothers (the table level follows from the frequency, so it needs no state).
#[derive(Debug, Clone)]
pub struct TableOscillator {
    /// The module type it is (`saw`, `triangle`): ports and parameters.
    spec: &'static ModuleSpec,
    /// Fixed-point phase and the table read for the current frequency.
    voice: TableVoice,
    freq: Smoother,
    gain: Smoother,
}

impl TableOscillator {
    /// An oscillator of type `spec` (whose parameters are `freq` then `gain`) reading the
    /// `shape` tables, at the default frequency and gain, phase 0. Builds the shared tables
    /// on first use (allocates), so call it when compiling a patch.
    pub fn new(spec: &'static ModuleSpec, shape: Shape, sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let default = |i: usize| spec.params.get(i).map_or(0.0, |p| p.default);
        TableOscillator {
            spec,
            voice: TableVoice::new(shape, sr),
            freq: Smoother::with_default_ramp(default(FREQ), sr),
            gain: Smoother::with_default_ramp(default(GAIN), sr),
        }
    }

    fn smoother(&self, index: usize) -> Option<&Smoother> {
        match index {
            FREQ => Some(&self.freq),
            GAIN => Some(&self.gain),
            _ => None,
        }
    }
}

impl Module for TableOscillator {
    fn spec(&self) -> &'static ModuleSpec {
        self.spec
    }

    fn set_param(&mut self, index: usize, value: f32) {
        let Some(p) = self.spec.params.get(index) else {
            return;
        };
        let v = p.clamp(value);
        match index {
            FREQ => self.freq.set_target(v),
            GAIN => self.gain.set_target(v),
            _ => {}
        }
    }

    fn param(&self, index: usize) -> f32 {
        self.smoother(index).map_or(0.0, Smoother::target)
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let fm = inputs.first().copied().unwrap_or(&[]);
        if fm_is_silent(fm) && self.freq.is_settled() {
            // Constant frequency: the vectorised block path (same bits).
            self.voice.tune(fm_freq(self.freq.current(), 0.0));
            self.voice.fill(out);
            apply_gain(out, &mut self.gain);
            return;
        }
        for (i, o) in out.iter_mut().enumerate() {
            let f = fm_freq(self.freq.next(), fm.get(i).copied().unwrap_or(0.0));
            let g = self.gain.next();
            self.voice.tune(f);
            *o = self.voice.read(self.voice.phase) * g;
            self.voice.advance();
        }
    }

    fn reset(&mut self) {
        self.voice.phase = 0;
        self.freq.settle();
        self.gain.settle();
    }

    fn save_state(&self, w: &mut StateWriter<'_>) {
        w.put_u64(self.voice.phase);
        self.freq.save_state(w);
        self.gain.save_state(w);
    }

    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.voice.phase = r.get_u64()?;
        self.freq.load_state(r)?;
        self.gain.load_state(r)?;
        Ok(())
    }
}
