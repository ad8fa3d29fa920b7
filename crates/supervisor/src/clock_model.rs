//! The audio clock against the system clock: which frame the output hands to the sound
//! system at a given moment, so that an OSC timetag lands on the frame that plays at the
//! time it names.
//!
//! The output knows *frames* (it counts what it hands over); clients know *time* (a
//! timetag). Once per period the sink reports the frame it is handing over and when
//! ([`ClockModel::observe`]); a delay-locked loop (Fons Adriaensen, "Using a DLL to filter
//! time", LAC 2005 — the loop JACK and scsynth keep) smooths those reports into a line,
//! `frame = F0 + (t − t0) / ns_per_frame`, which the output publishes after each period
//! and the OSC thread reads ([`ClockModel::mapping`]) to stamp a timetag with its frame.
//!
//! Why a loop and not the raw reports: a period's wake-up jitters by tens to hundreds of
//! microseconds (several frames), and the played-block counter moves a whole period at a
//! time; the loop's line moves by a fraction of a frame per period. Why not a fixed
//! `sample_rate`: a sound card's crystal is not the system's (tens of ppm apart), and over
//! minutes that is many frames. The loop follows the card's rate (`clock_drift_ppm`).
//!
//! The mapping only decides which frame a timetag is stamped with; the stamped frame is
//! what the workers and the command log see, so replays stay exact whatever the loop did.
//! The publication is a sequence lock over atomics: the output thread (the one writer)
//! never waits, a reader retries in the rare case it raced a publication.

use std::sync::atomic::{fence, AtomicU64, Ordering};

/// The loop's bandwidth once settled: low, so the line moves by far less than a frame per
/// period even when wake-ups jitter by a millisecond (scsynth uses 0.012 Hz; JACK 0.125 Hz).
const SETTLED_BANDWIDTH_HZ: f64 = 0.05;

/// The loop's bandwidth right after a (re)start, so it locks on in a second or two.
const START_BANDWIDTH_HZ: f64 = 2.0;

/// Seconds of audio over which the bandwidth narrows from start to settled.
const SETTLING_SECONDS: f64 = 4.0;

/// The furthest the estimated rate may stray from the nominal one: further is a
/// measurement gone wrong (a suspended machine), not a crystal.
const MAX_DRIFT: f64 = 0.01;

/// Two reports in a row further than half a period (and [`JUMP_MIN_NS`]) from the loop's
/// prediction restart the loop from the second: the audio clock jumped (an xrun skipped a
/// period, a paced sink restarted its schedule after a stall, a device reconnected), and
/// following a jump slowly would stamp frames against a clock that no longer exists. One
/// such report alone is a late wake-up, and is left out.
const JUMP_PERIODS: f64 = 0.5;

/// The least error taken for a jump, however short the period: wake-up jitter alone can
/// reach a millisecond on a loaded machine.
const JUMP_MIN_NS: f64 = 2e6;

/// The line from time to frames: frame `frame` is handed over at `at_ns` (the output's
/// monotonic nanoseconds, [`OutputShared::now_ns`](crate::output::OutputShared::now_ns)),
/// and one frame lasts `ns_per_frame`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mapping {
    /// A frame of the output's count.
    pub frame: u64,
    /// When it is handed over, in ns since the output's epoch (fractional: the loop's
    /// estimate is finer than a nanosecond's rounding would keep over a long line).
    pub at_ns: f64,
    /// Nanoseconds per frame, as measured (nominal: 1e9 / sample rate).
    pub ns_per_frame: f64,
}

impl Mapping {
    /// The frame handed over at `t_ns` (rounded to the nearest frame; never before 0).
    pub fn frame_at(&self, t_ns: f64) -> u64 {
        let offset = ((t_ns - self.at_ns) / self.ns_per_frame).round();
        if offset >= 0.0 {
            self.frame.saturating_add(offset as u64)
        } else {
            self.frame.saturating_sub((-offset) as u64)
        }
    }

    /// When `frame` is handed over, in ns since the output's epoch.
    pub fn time_of(&self, frame: u64) -> f64 {
        let frames = if frame >= self.frame {
            (frame - self.frame) as f64
        } else {
            -((self.frame - frame) as f64)
        };
        self.at_ns + frames * self.ns_per_frame
    }
}

/// The published clock model: written by the output thread after each period, read by
/// anyone (lock-free, allocation-free, both sides).
pub struct ClockModel {
    /// Sequence lock: odd while a publication is under way.
    sequence: AtomicU64,
    frame: AtomicU64,
    at_ns: AtomicU64,
    ns_per_frame: AtomicU64,
    /// Frames per second the engine renders at (what drift is measured against).
    nominal_rate: u32,
    /// The loop's last error, in ns (f64 bits): how far the last report was from the line.
    residual_ns: AtomicU64,
    /// Root mean square of the recent errors, in ns (f64 bits).
    residual_rms_ns: AtomicU64,
    /// Times the loop restarted (first report, and every jump).
    restarts: AtomicU64,
}

impl ClockModel {
    /// A model with no report yet, for an engine at `sample_rate` frames per second.
    pub fn new(sample_rate: u32) -> ClockModel {
        ClockModel {
            sequence: AtomicU64::new(0),
            frame: AtomicU64::new(0),
            at_ns: AtomicU64::new(0),
            ns_per_frame: AtomicU64::new(0),
            nominal_rate: sample_rate,
            residual_ns: AtomicU64::new(0),
            residual_rms_ns: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        }
    }

    /// The line as last published, or `None` before the output's first period.
    pub fn mapping(&self) -> Option<Mapping> {
        loop {
            let before = self.sequence.load(Ordering::Acquire);
            if before == 0 {
                return None;
            }
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let mapping = Mapping {
                frame: self.frame.load(Ordering::Relaxed),
                at_ns: f64::from_bits(self.at_ns.load(Ordering::Relaxed)),
                ns_per_frame: f64::from_bits(self.ns_per_frame.load(Ordering::Relaxed)),
            };
            fence(Ordering::Acquire);
            if self.sequence.load(Ordering::Relaxed) == before {
                return Some(mapping);
            }
        }
    }

    /// How far the measured rate is from the nominal one, in parts per million (0 before
    /// the first period).
    pub fn drift_ppm(&self) -> f64 {
        self.mapping().map_or(0.0, |m| {
            let nominal = 1e9 / f64::from(self.nominal_rate);
            (nominal / m.ns_per_frame - 1.0) * 1e6
        })
    }

    /// The loop's last error and the RMS of recent ones, in microseconds.
    pub fn residual_us(&self) -> (f64, f64) {
        let load = |a: &AtomicU64| f64::from_bits(a.load(Ordering::Relaxed)) / 1e3;
        (load(&self.residual_ns), load(&self.residual_rms_ns))
    }

    /// How many times the loop started from a report instead of following it.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Publishes `mapping`. Only the output thread calls this (one writer).
    fn publish(&self, mapping: Mapping) {
        let sequence = self.sequence.load(Ordering::Relaxed);
        self.sequence.store(sequence + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        self.frame.store(mapping.frame, Ordering::Relaxed);
        self.at_ns.store(mapping.at_ns.to_bits(), Ordering::Relaxed);
        self.ns_per_frame
            .store(mapping.ns_per_frame.to_bits(), Ordering::Relaxed);
        self.sequence.store(sequence + 2, Ordering::Release);
    }
}

/// The delay-locked loop, owned by the output thread: fed one report per period, it
/// publishes the smoothed line to a [`ClockModel`].
#[derive(Debug, Clone)]
pub struct ClockLoop {
    nominal_ns_per_frame: f64,
    /// The line: frame `frame` at `at_ns`, `ns_per_frame` per frame. `None` until the
    /// first report.
    line: Option<Mapping>,
    /// Frames followed since the last restart (the bandwidth narrows with them).
    frames_since_restart: u64,
    /// The last report was off the line by a jump (left out, unless the next one is too).
    off_the_line: bool,
    /// The sink said its clock jumped: the next report starts the line afresh.
    jumped: bool,
    mean_square_ns: f64,
}

impl ClockLoop {
    /// A loop for an engine at `sample_rate`, waiting for its first report.
    pub fn new(sample_rate: u32) -> ClockLoop {
        ClockLoop {
            nominal_ns_per_frame: 1e9 / f64::from(sample_rate.max(1)),
            line: None,
            frames_since_restart: 0,
            off_the_line: false,
            jumped: false,
            mean_square_ns: 0.0,
        }
    }

    /// The sink's word that its clock jumped (a paced sink that restarted its schedule
    /// after a late wake-up): the next report starts the line afresh, however small the
    /// jump, rather than bend the line toward it.
    pub fn jumped(&mut self) {
        self.jumped = true;
    }

    /// The current line, if any (the same as published).
    pub fn mapping(&self) -> Option<Mapping> {
        self.line
    }

    /// One report: `frame` is handed over at `at_ns`. Updates the line and publishes it
    /// to `model`. Never allocates, locks or panics.
    pub fn observe(&mut self, model: &ClockModel, frame: u64, at_ns: u64) {
        let at_ns = at_ns as f64;
        let line = match self.line {
            Some(line) if std::mem::take(&mut self.jumped) => {
                self.restart(model, frame, at_ns, line.ns_per_frame)
            }
            Some(line) if frame > line.frame => {
                let frames = (frame - line.frame) as f64;
                let predicted = line.time_of(frame);
                let error = at_ns - predicted;
                let period_ns = frames * line.ns_per_frame;
                let jumped = error.abs() > (JUMP_PERIODS * period_ns).max(JUMP_MIN_NS);
                let was_off = std::mem::replace(&mut self.off_the_line, jumped);
                match (jumped, was_off) {
                    (true, true) => self.restart(model, frame, at_ns, line.ns_per_frame),
                    // One late report: the line stays as it was.
                    (true, false) => return,
                    (false, _) => self.follow(model, line, frame, predicted, error, frames),
                }
            }
            // The first report, or a count that went back (a resumed or restarted output).
            _ => self.restart(model, frame, at_ns, self.nominal_ns_per_frame),
        };
        self.line = Some(line);
        model.publish(line);
    }

    fn restart(
        &mut self,
        model: &ClockModel,
        frame: u64,
        at_ns: f64,
        ns_per_frame: f64,
    ) -> Mapping {
        model.restarts.fetch_add(1, Ordering::Relaxed);
        self.frames_since_restart = 0;
        self.off_the_line = false;
        Mapping {
            frame,
            at_ns,
            ns_per_frame,
        }
    }

    /// The loop's step (the second-order DLL of the paper, for a period of `frames`):
    /// the line's origin moves by `b·e` past the prediction, its slope by `c·e` per period.
    fn follow(
        &mut self,
        model: &ClockModel,
        line: Mapping,
        frame: u64,
        predicted: f64,
        error: f64,
        frames: f64,
    ) -> Mapping {
        let period_s = frames * line.ns_per_frame / 1e9;
        let settled = self.frames_since_restart as f64 * line.ns_per_frame / 1e9;
        let narrowing = (settled / SETTLING_SECONDS).min(1.0);
        let bandwidth =
            START_BANDWIDTH_HZ * (SETTLED_BANDWIDTH_HZ / START_BANDWIDTH_HZ).powf(narrowing);
        let omega = 2.0 * std::f64::consts::PI * bandwidth * period_s;
        let b = std::f64::consts::SQRT_2 * omega;
        let c = omega * omega;
        let nominal = self.nominal_ns_per_frame;
        let ns_per_frame = (line.ns_per_frame + c * error / frames)
            .clamp(nominal * (1.0 - MAX_DRIFT), nominal * (1.0 + MAX_DRIFT));
        self.frames_since_restart = self.frames_since_restart.saturating_add(frames as u64);
        self.mean_square_ns = 0.99 * self.mean_square_ns + 0.01 * error * error;
        model.residual_ns.store(error.to_bits(), Ordering::Relaxed);
        model
            .residual_rms_ns
            .store(self.mean_square_ns.sqrt().to_bits(), Ordering::Relaxed);
        Mapping {
            frame,
            at_ns: predicted + b * error,
            ns_per_frame,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic jitter in −1..1 (a hash of `i`), for reports that wobble.
    fn jitter(i: u64) -> f64 {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17) ^ 0x2545_F491_4F6C_DD1D;
        (x % 20_001) as f64 / 10_000.0 - 1.0
    }

    #[test]
    fn no_mapping_before_the_first_report() {
        let model = ClockModel::new(48_000);
        assert_eq!(model.mapping(), None);
        assert_eq!(model.drift_ppm(), 0.0);
    }

    #[test]
    fn a_clock_exact_to_its_rate_maps_100_ms_to_4800_frames() {
        let model = ClockModel::new(48_000);
        let mut clock = ClockLoop::new(48_000);
        for period in 0..1_000u64 {
            let frame = period * 256;
            clock.observe(&model, frame, 1_000_000 + frame * 1_000_000_000 / 48_000);
        }
        let m = model.mapping().unwrap();
        let t = m.time_of(200_000);
        assert_eq!(m.frame_at(t + 100e6) - m.frame_at(t), 4_800);
        assert!(model.drift_ppm().abs() < 0.01, "{}", model.drift_ppm());
    }

    #[test]
    fn wake_ups_that_jitter_by_half_a_millisecond_still_map_to_the_frame() {
        // A sound card 40 ppm fast against the system clock, reported by wake-ups that
        // jitter by ±500 µs (24 frames): the line must land within a frame of the truth.
        let model = ClockModel::new(48_000);
        let mut clock = ClockLoop::new(48_000);
        let true_ns_per_frame = 1e9 / (48_000.0 * (1.0 + 40e-6));
        let true_time = |frame: u64| 5e6 + frame as f64 * true_ns_per_frame;
        let mut worst: f64 = 0.0;
        for period in 0..20_000u64 {
            let frame = period * 128;
            let reported = true_time(frame) + 500e3 * jitter(period);
            clock.observe(&model, frame, reported as u64);
            if period > 6_000 {
                let m = model.mapping().unwrap();
                let probe = frame + 1_000;
                let off = m.frame_at(true_time(probe)) as f64 - probe as f64;
                worst = worst.max(off.abs());
            }
        }
        assert!(
            worst <= 1.0,
            "the line strayed {worst} frames from the truth"
        );
        let ppm = model.drift_ppm();
        assert!((ppm - 40.0).abs() < 5.0, "drift {ppm} ppm, expected 40");
    }

    #[test]
    fn a_jump_restarts_the_line_at_the_new_report() {
        let model = ClockModel::new(48_000);
        let mut clock = ClockLoop::new(48_000);
        for period in 0..100u64 {
            let frame = period * 512;
            clock.observe(&model, frame, frame * 1_000_000_000 / 48_000);
        }
        assert_eq!(model.restarts(), 1);
        // A stall of 50 ms: the next period is handed over late and the schedule goes on
        // from there. The first late report alone could be a late wake-up: left out.
        let time = |frame: u64| frame * 1_000_000_000 / 48_000 + 50_000_000;
        clock.observe(&model, 100 * 512, time(100 * 512));
        assert_eq!(model.restarts(), 1);
        clock.observe(&model, 101 * 512, time(101 * 512));
        assert_eq!(model.restarts(), 2);
        let m = model.mapping().unwrap();
        assert_eq!(m.frame_at(time(101 * 512) as f64), 101 * 512);
    }

    #[test]
    fn one_late_wake_up_is_left_out() {
        let model = ClockModel::new(48_000);
        let mut clock = ClockLoop::new(48_000);
        let time = |frame: u64| frame * 1_000_000_000 / 48_000;
        for period in 0..100u64 {
            clock.observe(&model, period * 256, time(period * 256));
        }
        let before = model.mapping().unwrap();
        // A callback 4 ms late (its frames are not), then on time again.
        clock.observe(&model, 100 * 256, time(100 * 256) + 4_000_000);
        assert_eq!(model.mapping().unwrap(), before);
        clock.observe(&model, 101 * 256, time(101 * 256));
        assert_eq!(model.restarts(), 1);
        let m = model.mapping().unwrap();
        assert_eq!(m.frame_at(time(150 * 256) as f64), 150 * 256);
    }

    #[test]
    fn a_jump_the_sink_reports_restarts_the_line_however_small() {
        let model = ClockModel::new(48_000);
        let mut clock = ClockLoop::new(48_000);
        let time = |frame: u64| frame * 1_000_000_000 / 48_000;
        for period in 0..100u64 {
            clock.observe(&model, period * 64, time(period * 64));
        }
        let slope = model.mapping().unwrap().ns_per_frame;
        // A schedule restarted 1.5 ms late: below the jump threshold, but the sink knows.
        clock.jumped();
        clock.observe(&model, 100 * 64, time(100 * 64) + 1_500_000);
        assert_eq!(model.restarts(), 2);
        let m = model.mapping().unwrap();
        assert_eq!(m.ns_per_frame, slope, "the slope is kept");
        assert_eq!(m.frame_at((time(200 * 64) + 1_500_000) as f64), 200 * 64);
    }

    #[test]
    fn a_count_that_goes_back_restarts_the_line() {
        let model = ClockModel::new(48_000);
        let mut clock = ClockLoop::new(48_000);
        clock.observe(&model, 10_000, 1_000_000);
        clock.observe(&model, 64, 2_000_000);
        assert_eq!(model.restarts(), 2);
        assert_eq!(model.mapping().unwrap().frame, 64);
    }

    #[test]
    fn frames_before_the_line_map_back_without_wrapping() {
        let m = Mapping {
            frame: 100,
            at_ns: 1e9,
            ns_per_frame: 1e9 / 48_000.0,
        };
        assert_eq!(m.frame_at(0.0), 0);
        assert_eq!(m.frame_at(1e9 - 1e9 / 480.0), 0);
        assert_eq!(m.frame_at(1e9 - 50.0 * 1e9 / 48_000.0), 50);
        assert!((m.time_of(52) - (1e9 - 48.0 * 1e9 / 48_000.0)).abs() < 1e-3);
    }

    #[test]
    fn a_reader_never_sees_half_a_publication() {
        let model = std::sync::Arc::new(ClockModel::new(48_000));
        let writer = {
            let model = std::sync::Arc::clone(&model);
            std::thread::spawn(move || {
                let mut clock = ClockLoop::new(48_000);
                for period in 0..200_000u64 {
                    // Every publication keeps frame == at_ns / 1000 (a line through 0).
                    clock.line = None;
                    clock.observe(&model, period + 1, (period + 1) * 1_000);
                }
            })
        };
        while !writer.is_finished() {
            if let Some(m) = model.mapping() {
                assert_eq!(m.at_ns, m.frame as f64 * 1_000.0, "a torn read: {m:?}");
            }
        }
        writer.join().unwrap();
    }
}
