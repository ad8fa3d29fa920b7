//! `crossfade`: blends input `a` into input `b`.
//!
//! `mix` 0 plays `a`, 1 plays `b`. The `curve` picks the law:
//! - 0, equal power (default): `a cos(mix pi/2) + b sin(mix pi/2)`; two unrelated
//!   signals keep their loudness through the fade (each is -3 dB at the middle);
//! - 1, linear: `a (1 - mix) + b mix`; right for two versions of the same signal
//!   (dry and wet of one source), whose sum would bulge +3 dB at the middle under
//!   the equal-power law.
//!
//! `mix` glides over 10 ms; a `curve` change crossfades from the old law's gains to the
//! new law's over 10 ms.

use crate::params::Params;
use crate::module::Module;
use crate::modules::common::{input, mode_index, sanitize, ChoiceFade};
use crate::state::{StateError, StateReader, StateWriter};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};

/// Index of the `mix` parameter.
pub const MIX: usize = 0;
/// Index of the `curve` parameter.
pub const CURVE: usize = 1;

/// Static description of the `crossfade` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "crossfade",
    doc: "Crossfader from a (mix 0) to b (mix 1), equal-power or linear.",
    inputs: &[PortSpec::audio("a"), PortSpec::audio("b")],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::linear("mix", 0.0..=1.0, 0.5)
            .doc("Position: 0 all a, 1 all b; glides over 10 ms."),
        ParamSpec::number("curve", 0.0..=1.0, 0.0)
            .doc("Law: 0 equal power (unrelated signals), 1 linear (versions of one signal); a switch crossfades over 10 ms."),
    ],
    has_gate: false,
};

/// Gains of `a` and `b` at `mix` under the chosen law.
#[inline]
pub fn gains(mix: f32, linear: bool) -> (f32, f32) {
    if linear {
        (1.0 - mix, mix)
    } else {
        let (s, c) = (f64::from(mix) * std::f64::consts::FRAC_PI_2).sin_cos();
        (c as f32, s as f32)
    }
}

/// Crossfader state: the smoothed position and the law.
#[derive(Debug, Clone)]
pub struct Crossfade {
    params: Params,
    /// The crossfade between the two laws after a `curve` change.
    law: ChoiceFade,
}

impl Crossfade {
    /// A crossfader in the middle, equal-power.
    pub fn new(sample_rate: f32) -> Self {
        Crossfade {
            params: Params::new(&SPEC, sample_rate).instant(&[CURVE]),
            law: ChoiceFade::new(0, crate::params::sane_sample_rate(sample_rate)),
        }
    }
}

impl Module for Crossfade {
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
        let (a, b) = (input(inputs, 0), input(inputs, 1));
        let linear = mode_index(self.params[CURVE].target()) == 1;
        if self.law.is_fading() {
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                let mix = self.params[MIX].next();
                let w = self.law.weights();
                let (pa, pb) = gains(mix, false);
                let (la, lb) = gains(mix, true);
                let (ga, gb) = (w[0] * pa + w[1] * la, w[0] * pb + w[1] * lb);
                *o = sanitize(a) * ga + sanitize(b) * gb;
            }
        } else if self.params[MIX].is_settled() {
            let (ga, gb) = gains(self.params[MIX].current(), linear);
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                *o = sanitize(a) * ga + sanitize(b) * gb;
            }
        } else {
            for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                let (ga, gb) = gains(self.params[MIX].next(), linear);
                *o = sanitize(a) * ga + sanitize(b) * gb;
            }
        }
    }

    fn param_changed(&mut self, index: usize) {
        if index == CURVE {
            self.law.switch(mode_index(self.params[CURVE].target()));
        }
    }

    fn clear(&mut self) {
        self.law.settle();
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        self.law.save(w);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.law.load(r, 2)
    }

}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{render, SR};

    fn fade(mix: f32, curve: f32, a: f32, b: f32) -> f32 {
        let mut x = Crossfade::new(SR);
        x.set_param(MIX, mix);
        x.set_param(CURVE, curve);
        x.reset();
        render(&mut x, &[vec![a; 4], vec![b; 4]], 1)[0][3]
    }

    #[test]
    fn ends_and_laws() {
        assert_eq!(fade(0.0, 0.0, 0.3, 0.9), 0.3);
        assert_eq!(fade(1.0, 0.0, 0.3, 0.9), 0.9 + 0.3 * gains(1.0, false).0);
        assert_eq!(fade(0.0, 1.0, 0.3, 0.9), 0.3);
        assert_eq!(fade(1.0, 1.0, 0.3, 0.9), 0.9);
        // Equal power: ga^2 + gb^2 = 1 everywhere; linear: ga + gb = 1.
        for i in 0..=10 {
            let m = i as f32 / 10.0;
            let (a, b) = gains(m, false);
            assert!((a * a + b * b - 1.0).abs() < 1e-6);
            let (a, b) = gains(m, true);
            assert!((a + b - 1.0).abs() < 1e-6);
        }
        assert!((fade(0.5, 0.0, 1.0, 0.0) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(fade(0.5, 1.0, 1.0, 0.0), 0.5);
    }
}
