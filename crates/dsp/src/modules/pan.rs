//! `pan`: places a mono signal in the stereo field with an equal-power law.
//!
//! `left = in * cos(theta)`, `right = in * sin(theta)`, `theta = (pan + 1) * pi/4`: the
//! power `left^2 + right^2` is the same at every position, so a source keeps its
//! loudness while it moves (a linear law dips 3 dB in the middle). Centre is -3 dB per
//! side. `pan` glides over 10 ms.

use crate::params::Params;
use crate::module::Module;
use crate::modules::common::input;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};

/// Index of the `pan` parameter.
pub const PAN: usize = 0;

/// Static description of the `pan` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "pan",
    doc: "Equal-power panner: mono in, left and right out, constant loudness at every position.",
    inputs: &[PortSpec::audio("in")],
    outputs: &[PortSpec::audio("left"), PortSpec::audio("right")],
    params: &[ParamSpec::number("pan", -1.0..=1.0, 0.0)
        .doc("Position: -1 left, 0 centre (-3 dB each side), 1 right; glides over 10 ms.")],
    has_gate: false,
};

/// Left and right gains for a pan position.
#[inline]
pub fn gains(pan: f32) -> (f32, f32) {
    let theta = (f64::from(pan) + 1.0) * std::f64::consts::FRAC_PI_4;
    let (s, c) = theta.sin_cos();
    (c as f32, s as f32)
}

/// Panner state: the smoothed position.
#[derive(Debug, Clone)]
pub struct Pan {
    params: Params,
}

impl Pan {
    /// A centred panner.
    pub fn new(sample_rate: f32) -> Self {
        Pan {
            params: Params::new(&SPEC, sample_rate),
        }
    }
}

impl Module for Pan {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let x = input(inputs, 0);
        let (left, right): (&mut [f32], &mut [f32]) = match outputs {
            [l, r, ..] => (l, r),
            [l] => (l, &mut []),
            [] => return,
        };
        let n = x.len().min(left.len().max(right.len()));
        if self.params[PAN].is_settled() {
            let (gl, gr) = gains(self.params[PAN].current());
            for (o, &x) in left.iter_mut().zip(x) {
                *o = x * gl;
            }
            for (o, &x) in right.iter_mut().zip(x) {
                *o = x * gr;
            }
        } else {
            for (i, &x) in x.iter().enumerate().take(n) {
                let (gl, gr) = gains(self.params[PAN].next());
                if let Some(o) = left.get_mut(i) {
                    *o = x * gl;
                }
                if let Some(o) = right.get_mut(i) {
                    *o = x * gr;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{render, SR};

    #[test]
    fn power_is_constant_across_positions() {
        for i in -10..=10 {
            let mut p = Pan::new(SR);
            p.set_param(PAN, i as f32 / 10.0);
            p.reset();
            let outs = render(&mut p, &[vec![0.5; 8]], 2);
            let (l, r) = (outs[0][7], outs[1][7]);
            assert!((l * l + r * r - 0.25).abs() < 1e-6, "pan {i}: {l} {r}");
        }
        assert_eq!(gains(-1.0), (1.0, 0.0));
        let (l, r) = gains(1.0);
        assert!(l.abs() < 1e-7 && r == 1.0);
        let (l, r) = gains(0.0);
        assert!((l - r).abs() < 1e-7 && (l - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-7);
    }

    #[test]
    fn moving_keeps_power_and_glides() {
        let mut p = Pan::new(SR);
        p.set_param(PAN, -1.0);
        let outs = render(&mut p, &[vec![1.0; 600]], 2);
        for (l, r) in outs[0].iter().zip(&outs[1]) {
            assert!((l * l + r * r - 1.0).abs() < 1e-5);
        }
        assert!(outs[0][0] < 0.72 && outs[0][599] == 1.0 && outs[1][599] == 0.0);
    }
}
