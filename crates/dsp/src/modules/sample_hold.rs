//! `sample_hold`: samples its input when a trigger rises, and holds it until the next one.
//!
//! The classic source of stepped random melodies (noise into `in`, a clock or LFO square
//! into `trig`). A trigger is `trig` crossing 0.5 upwards: the sample where the previous
//! value was below 0.5 and the current one is at least 0.5. The trigger memory starts low,
//! so a `trig` that is already high samples once at the start. A non-finite `trig` counts
//! as low; a non-finite `in` is not sampled (the old value is kept), so NaN never leaves,
//! and a denormal `in` is held as 0.

use crate::params::Params;
use crate::module::Module;
use crate::spec::{ModuleSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `in` input.
pub const IN: usize = 0;
/// Index of the `trig` input.
pub const TRIG: usize = 1;

/// Trigger threshold: a rising crossing of this value samples the input.
pub const THRESHOLD: f32 = 0.5;

/// Static description of the `sample_hold` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "sample_hold",
    doc: "Sample-and-hold: holds `in` from each rising crossing of `trig` through 0.5 until the next.",
    inputs: &[
        PortSpec::audio("in"),
        PortSpec::control("trig"),
    ],
    outputs: &[PortSpec::audio("out")],
    params: &[],
    has_gate: false,
};

/// Sample-and-hold state: the held value and whether the trigger was high last sample.
#[derive(Debug, Clone)]
pub struct SampleHold {
    params: Params,
    held: f32,
    trig_high: bool,
}

impl SampleHold {
    /// Holding 0, trigger low.
    pub fn new(sample_rate: f32) -> Self {
        SampleHold {
            params: Params::new(&SPEC, sample_rate),
            held: 0.0,
            trig_high: false,
        }
    }
}

impl Module for SampleHold {
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
        let input = inputs.get(IN).copied().unwrap_or(&[]);
        let trig = inputs.get(TRIG).copied().unwrap_or(&[]);
        for (i, o) in out.iter_mut().enumerate() {
            // NaN compares false: a non-finite trigger reads as low (+inf counts as high,
            // which is a finite decision either way).
            let high = trig.get(i).is_some_and(|t| *t >= THRESHOLD);
            if high && !self.trig_high {
                let x = input.get(i).copied().unwrap_or(0.0);
                if x.is_finite() {
                    // Flush denormals in software: a held tiny value would otherwise
                    // slow down every module downstream for as long as it is held.
                    self.held = if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x };
                }
            }
            self.trig_high = high;
            *o = self.held;
        }
    }

    fn clear(&mut self) {
        self.held = 0.0;
        self.trig_high = false;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_f32(self.held);
        w.put_bool(self.trig_high);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let at = r.position();
        let held = r.get_f32()?;
        if !held.is_finite() {
            return Err(StateError::InvalidValue {
                what: "sample-and-hold value",
                offset: at,
            });
        }
        self.held = held;
        self.trig_high = r.get_bool()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut SampleHold, input: &[f32], trig: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0; input.len()];
        m.process(&[input, trig], &mut [&mut out]);
        out
    }

    #[test]
    fn samples_on_rising_edges_only() {
        let mut m = SampleHold::new(48_000.0);
        let input = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let trig = [0.0, 0.6, 0.9, 0.4, 0.5, 0.5, 0.49, 1.0];
        assert_eq!(
            run(&mut m, &input, &trig),
            [0.0, 2.0, 2.0, 2.0, 5.0, 5.0, 5.0, 8.0]
        );
        // The edge memory carries across blocks: still high, no new sample.
        assert_eq!(run(&mut m, &[9.0], &[1.0]), [8.0]);
    }

    #[test]
    fn already_high_trigger_samples_once_and_nan_never_leaves() {
        let mut m = SampleHold::new(48_000.0);
        assert_eq!(run(&mut m, &[3.0, 4.0], &[1.0, 1.0]), [3.0, 3.0]);
        let mut m = SampleHold::new(48_000.0);
        let out = run(
            &mut m,
            &[f32::NAN, 1.0, f32::INFINITY, 2.0],
            &[1.0, 0.0, 1.0, f32::NAN],
        );
        assert!(out.iter().all(|x| x.is_finite()));
        assert_eq!(out, [0.0, 0.0, 0.0, 0.0]);
        // Unconnected inputs (empty here, zeros in a patch) hold the last value.
        assert_eq!(run(&mut m, &[0.0; 3], &[0.0; 3]), [0.0; 3]);
    }

    #[test]
    fn snapshot_round_trip() {
        let mut a = SampleHold::new(48_000.0);
        let _ = run(&mut a, &[0.25, 0.75], &[1.0, 1.0]);
        let mut buf = [0u8; 5];
        let mut w = StateWriter::new(&mut buf);
        a.save_state(&mut w);
        assert_eq!(w.finish(), Ok(a.state_len()));
        let mut b = SampleHold::new(48_000.0);
        b.load_state(&mut StateReader::new(&buf)).unwrap();
        assert_eq!(run(&mut a, &[0.5], &[1.0]), run(&mut b, &[0.5], &[1.0]));
        assert_eq!(run(&mut b, &[0.5, 0.1], &[0.0, 1.0]), [0.25, 0.1]);
    }
}
