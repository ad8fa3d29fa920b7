//! `distortion`: a waveshaper with three curves and a dry/wet mix.
//!
//! The input is multiplied by `drive` and bent by the `shape`:
//! - 0 tanh: smooth saturation, warm, odd harmonics growing gently with drive;
//! - 1 hard clip: flat tops at ±1, bright and buzzy;
//! - 2 foldback: whatever passes ±1 is folded back (a triangle fold), metallic and
//!   rich, and keeps changing character as the drive rises.
//!
//! Every curve keeps the wet signal within ±1. `mix` crossfades linearly:
//! `dry * (1 - mix) + wet * mix`. Drive and mix glide over 10 ms; a shape change
//! crossfades the old curve's output into the new one's over 10 ms. Not oversampled: at high drive the harmonics above Nyquist alias, which is
//! part of the character at these settings; put a lowpass after it to tame it.

use crate::params::Params;
use crate::module::Module;
use crate::modules::common::{input, mode_index, sanitize, ChoiceFade};
use crate::state::{StateError, StateReader, StateWriter};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};

/// Index of the `drive` parameter.
pub const DRIVE: usize = 0;
/// Index of the `shape` parameter.
pub const SHAPE: usize = 1;
/// Index of the `mix` parameter.
pub const MIX: usize = 2;

/// Static description of the `distortion` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "distortion",
    doc: "Waveshaper: drive into tanh, hard clip or foldback, with dry/wet mix.",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::linear("drive", 1.0..=50.0, 4.0)
            .doc("Gain into the curve: 1 is gentle, 50 is brutal; glides over 10 ms."),
        ParamSpec::number("shape", 0.0..=2.0, 0.0)
            .doc("Curve: 0 tanh (smooth), 1 hard clip, 2 foldback (rounded to the nearest); a change crossfades over 10 ms."),
        ParamSpec::linear("mix", 0.0..=1.0, 1.0)
            .doc("Wet share, linear: dry x (1 - mix) + wet x mix; glides over 10 ms."),
    ],
    has_gate: false,
};

/// The waveshaping curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Smooth saturation.
    Tanh,
    /// Flat tops at ±1.
    HardClip,
    /// Triangle folding back into ±1.
    Foldback,
}

impl Shape {
    fn from_index(i: u8) -> Shape {
        match i {
            0 => Shape::Tanh,
            1 => Shape::HardClip,
            _ => Shape::Foldback,
        }
    }

    /// The curve applied to an already driven sample; always within ±1.
    #[inline]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Shape::Tanh => v.tanh(),
            Shape::HardClip => v.clamp(-1.0, 1.0),
            Shape::Foldback => {
                // Triangle wave of period 4 through (0, 0), (1, 1), (-1, -1): identity
                // inside ±1, folded beyond.
                let t = (v + 1.0) * 0.25;
                1.0 - 4.0 * (t - t.floor() - 0.5).abs()
            }
        }
    }
}

/// Distortion state: smoothed drive and mix, and the curve.
#[derive(Debug, Clone)]
pub struct Distortion {
    params: Params,
    /// The crossfade between curves after a `shape` change.
    fade: ChoiceFade,
}

impl Distortion {
    /// A distortion at the default drive, tanh, fully wet.
    pub fn new(sample_rate: f32) -> Self {
        Distortion {
            params: Params::new(&SPEC, sample_rate).instant(&[SHAPE]),
            fade: ChoiceFade::new(0, crate::params::sane_sample_rate(sample_rate)),
        }
    }
}

impl Module for Distortion {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let shape = Shape::from_index(mode_index(self.params[SHAPE].target()));
        for (o, &x) in out.iter_mut().zip(input(inputs, 0)) {
            let drive = self.params[DRIVE].next();
            let mix = self.params[MIX].next();
            let x = sanitize(x);
            let wet = if self.fade.is_fading() {
                let mut wet = 0.0;
                for (i, w) in self.fade.weights().into_iter().enumerate().take(3) {
                    if w != 0.0 {
                        wet += w * Shape::from_index(i as u8).apply(x * drive);
                    }
                }
                wet
            } else {
                shape.apply(x * drive)
            };
            *o = x * (1.0 - mix) + wet * mix;
        }
    }

    fn param_changed(&mut self, index: usize) {
        if index == SHAPE {
            self.fade.switch(mode_index(self.params[SHAPE].target()));
        }
    }

    fn clear(&mut self) {
        self.fade.settle();
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        self.fade.save(w);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.fade.load(r, 3)
    }

}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{bin, render, sine, SR};

    fn distort(drive: f32, shape: f32, mix: f32, x: &[f32]) -> Vec<f32> {
        let mut d = Distortion::new(SR);
        d.set_param(DRIVE, drive);
        d.set_param(SHAPE, shape);
        d.set_param(MIX, mix);
        d.reset();
        render(&mut d, &[x.to_vec()], 1).remove(0)
    }

    #[test]
    fn curves() {
        assert_eq!(Shape::HardClip.apply(3.0), 1.0);
        assert_eq!(Shape::HardClip.apply(-0.5), -0.5);
        for (v, want) in [
            (0.0, 0.0),
            (0.5, 0.5),
            (1.0, 1.0),
            (1.5, 0.5),
            (2.0, 0.0),
            (3.0, -1.0),
            (-1.5, -0.5),
            (5.0, 1.0),
        ] {
            assert!((Shape::Foldback.apply(v) - want).abs() < 1e-6, "fold {v}");
        }
        assert!((Shape::Tanh.apply(0.5) - 0.5f32.tanh()).abs() < 1e-7);
        for shape in [Shape::Tanh, Shape::HardClip, Shape::Foldback] {
            for i in -1000..1000 {
                assert!(shape.apply(i as f32 * 0.05).abs() <= 1.0);
            }
        }
    }

    #[test]
    fn more_drive_more_harmonics_and_mix_zero_is_dry() {
        let x = sine(1000.0, 0.5, 48_000);
        let h3 = |drive, shape| {
            let y = distort(drive, shape, 1.0, &x);
            bin(&y, 3000.0) / bin(&y, 1000.0)
        };
        for shape in [0.0, 1.0, 2.0] {
            assert!(h3(10.0, shape) > h3(1.5, shape), "shape {shape}");
        }
        assert_eq!(distort(50.0, 2.0, 0.0, &x), x);
    }
}
