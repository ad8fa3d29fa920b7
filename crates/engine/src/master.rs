//! The master section after every patch: a DC blocker and a safety limiter.
//!
//! No patch, however wild, can push DC into speakers or samples beyond the ceiling into
//! a converter: the DC blocker removes what sits below a few hertz, and the limiter
//! lowers the gain instantly when a sample would exceed the ceiling (so the ceiling holds
//! for every sample, with no look-ahead latency), then recovers smoothly. Both are on by
//! default; a limiter that never engages multiplies by exactly 1.0 and changes nothing.

use chronus_dsp::{StateError, StateReader, StateWriter};

/// Highest sample magnitude the limiter lets through: -0.3 dBFS.
pub const CEILING: f32 = 0.966_050_9;
/// Corner of the DC blocker.
const DC_CORNER_HZ: f64 = 5.0;
/// Time for the limiter's gain to recover most of the way to 1.
const RELEASE_SECONDS: f64 = 0.1;

/// Which parts of the master section are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterConfig {
    /// Remove DC and sub-audio drift.
    pub dc_blocker: bool,
    /// Keep every sample within [`CEILING`].
    pub limiter: bool,
}

impl Default for MasterConfig {
    fn default() -> Self {
        MasterConfig {
            dc_blocker: true,
            limiter: true,
        }
    }
}

/// State of the master section (two channels).
#[derive(Debug, Clone)]
pub struct Master {
    config: MasterConfig,
    dc_coefficient: f32,
    release_coefficient: f32,
    dc_in: [f32; 2],
    dc_out: [f32; 2],
    gain: f32,
}

impl Master {
    /// A fresh master section for `sample_rate`.
    pub fn new(config: MasterConfig, sample_rate: u32) -> Master {
        let rate = f64::from(sample_rate.max(1));
        Master {
            config,
            dc_coefficient: (1.0 - std::f64::consts::TAU * DC_CORNER_HZ / rate) as f32,
            release_coefficient: (1.0 - (-1.0 / (RELEASE_SECONDS * rate)).exp()) as f32,
            dc_in: [0.0; 2],
            dc_out: [0.0; 2],
            gain: 1.0,
        }
    }

    /// Processes one interleaved stereo frame in place.
    #[inline]
    pub fn process_frame(&mut self, frame: &mut [f32]) {
        if self.config.dc_blocker {
            for ((x, x1), y1) in frame.iter_mut().zip(&mut self.dc_in).zip(&mut self.dc_out) {
                let y = *x - *x1 + self.dc_coefficient * *y1;
                *x1 = *x;
                *y1 = if y.abs() < 1e-20 { 0.0 } else { y };
                *x = *y1;
            }
        }
        if self.config.limiter {
            let peak = frame.iter().fold(0.0f32, |m, x| m.max(x.abs()));
            if peak * self.gain > CEILING {
                self.gain = CEILING / peak;
            } else if self.gain < 1.0 {
                self.gain += (1.0 - self.gain) * self.release_coefficient;
                if 1.0 - self.gain < 1e-6 {
                    self.gain = 1.0;
                }
            }
            if self.gain < 1.0 {
                for x in frame.iter_mut() {
                    // The division can round a hair above the ceiling: clamp the last ulp.
                    *x = (*x * self.gain).clamp(-CEILING, CEILING);
                }
            }
        }
    }

    /// Writes the filter memories and the limiter gain.
    pub fn save_state(&self, w: &mut StateWriter<'_>) {
        for v in self.dc_in.iter().chain(&self.dc_out) {
            w.put_f32(*v);
        }
        w.put_f32(self.gain);
    }

    /// Restores what [`save_state`](Self::save_state) wrote.
    ///
    /// # Errors
    /// A truncated snapshot.
    pub fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let values = [
            r.get_f32()?,
            r.get_f32()?,
            r.get_f32()?,
            r.get_f32()?,
            r.get_f32()?,
        ];
        self.dc_in = [values[0], values[1]];
        self.dc_out = [values[2], values[3]];
        self.gain = values[4].clamp(0.0, 1.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_holds_the_ceiling_for_any_input() {
        let mut master = Master::new(MasterConfig::default(), 48_000);
        let mut max = 0.0f32;
        for i in 0..48_000 {
            let x = 10.0 * (i as f32 * 0.05).sin() * if i % 7 == 0 { 3.0 } else { 1.0 };
            let mut frame = [x, -x * 0.5];
            master.process_frame(&mut frame);
            max = max.max(frame[0].abs()).max(frame[1].abs());
        }
        assert!(max <= CEILING, "{max}");
    }

    #[test]
    fn quiet_signals_pass_the_limiter_unchanged() {
        let config = MasterConfig {
            dc_blocker: false,
            limiter: true,
        };
        let mut master = Master::new(config, 48_000);
        for i in 0..1000 {
            let x = 0.5 * (i as f32 * 0.01).sin();
            let mut frame = [x, x];
            master.process_frame(&mut frame);
            assert_eq!(frame, [x, x]);
        }
    }

    #[test]
    fn dc_is_removed() {
        let mut master = Master::new(MasterConfig::default(), 48_000);
        let mut frame = [0.0; 2];
        for _ in 0..48_000 {
            frame = [0.5, 0.5];
            master.process_frame(&mut frame);
        }
        assert!(frame[0].abs() < 1e-3, "{frame:?}");
    }
}
