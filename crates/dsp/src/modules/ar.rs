//! `ar`: an attack/release envelope for percussive sounds, with an amplifier built in.
//!
//! A gate-on starts the attack from the current level (a retrigger never jumps); at full
//! level the release follows at once (`hold` 0, percussive: the gate's length does not
//! matter), or, with `hold` 1, the level stays at 1 until the gate closes. Outputs:
//! `out = in * env` and `env` itself.
//!
//! `shape` 0 is linear: the attack rises at full scale per `attack` ms, the release falls
//! from where it starts to 0 in `release` ms. `shape` 1 is exponential, like an analog
//! RC envelope but ending exactly: the attack charges towards 1.3 and stops at 1 after
//! `attack` ms (from 0), the release decays towards -0.0001 and stops at 0 after
//! `release` ms (from 1), so it spends most of its time in the quiet tail (about -40 dB
//! at half the release time), and neither segment leaves a denormal tail. Zero-length
//! segments take one sample.

use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::modules::common::{input, load_tag, mode_index, sanitize};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `attack` parameter.
pub const ATTACK: usize = 0;
/// Index of the `release` parameter.
pub const RELEASE: usize = 1;
/// Index of the `shape` parameter.
pub const SHAPE: usize = 2;
/// Index of the `hold` parameter.
pub const HOLD: usize = 3;

/// How far above 1 the exponential attack aims (its curvature).
pub const ATTACK_OVERSHOOT: f64 = 0.3;
/// How far below 0 the exponential release aims (its curvature: -80 dB).
pub const RELEASE_UNDERSHOOT: f64 = 1e-4;

/// Static description of the `ar` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "ar",
    doc: "Attack/release envelope (percussive or gate-held, linear or exponential): shapes `in` (out) and outputs itself (env).",
    inputs: &[PortSpec::audio("in")],
    outputs: &[
        PortSpec::audio("out"),
        PortSpec::control("env"),
    ],
    params: &[
        ParamSpec::ms("attack", 0.0..=10_000.0, 5.0).doc("Time to rise from 0 to full level after the gate opens."),
        ParamSpec::ms("release", 0.0..=20_000.0, 300.0).doc("Time to fall from full level to 0."),
        ParamSpec::number("shape", 0.0..=1.0, 0.0).doc("Segment shape: 0 linear, 1 exponential (analog-like, ends exactly)."),
        ParamSpec::number("hold", 0.0..=1.0, 0.0).doc("0 percussive (release right after the attack), 1 hold full level while the gate is open."),
    ],
    has_gate: true,
};

/// Where the envelope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Silent, waiting for a gate.
    Idle,
    /// Rising to full level.
    Attack,
    /// At full level while the gate is open (`hold` 1 only).
    Hold,
    /// Falling to 0.
    Release,
}

impl Stage {
    fn to_u8(self) -> u8 {
        match self {
            Stage::Idle => 0,
            Stage::Attack => 1,
            Stage::Hold => 2,
            Stage::Release => 3,
        }
    }

    fn from_u8(v: u8) -> Stage {
        match v {
            1 => Stage::Attack,
            2 => Stage::Hold,
            3 => Stage::Release,
            _ => Stage::Idle,
        }
    }
}

/// Envelope state: parameters, derived rates, stage, level and gate.
#[derive(Debug, Clone)]
pub struct Ar {
    params: Params,
    samples_per_ms: f64,
    /// Linear attack increment per sample.
    attack_step: f64,
    /// Exponential attack and release factors per sample.
    attack_coef: f64,
    release_coef: f64,
    stage: Stage,
    level: f64,
    /// Linear release decrement, fixed when the release starts.
    release_step: f64,
    gate: bool,
}

impl Ar {
    /// An idle envelope with the default times, linear, percussive.
    pub fn new(sample_rate: f32) -> Self {
        let mut a = Ar {
            samples_per_ms: f64::from(sane_sample_rate(sample_rate)) / 1000.0,
            params: Params::new(&SPEC, sample_rate).instant(&[ATTACK, RELEASE, SHAPE, HOLD]),
            attack_step: 0.0,
            attack_coef: 0.0,
            release_coef: 0.0,
            stage: Stage::Idle,
            level: 0.0,
            release_step: 0.0,
            gate: false,
        };
        a.update();
        a
    }

    /// Current stage, for tests and diagnostics.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    fn segment_samples(&self, ms: f32) -> f64 {
        (f64::from(ms) * self.samples_per_ms).max(1.0)
    }

    fn exponential(&self) -> bool {
        mode_index(self.params[SHAPE].target()) == 1
    }

    fn holds(&self) -> bool {
        mode_index(self.params[HOLD].target()) == 1
    }

    fn update(&mut self) {
        let a = self.segment_samples(self.params[ATTACK].target());
        let r = self.segment_samples(self.params[RELEASE].target());
        self.attack_step = 1.0 / a;
        self.attack_coef = (ATTACK_OVERSHOOT / (1.0 + ATTACK_OVERSHOOT)).powf(1.0 / a);
        self.release_coef = (RELEASE_UNDERSHOOT / (1.0 + RELEASE_UNDERSHOOT)).powf(1.0 / r);
    }

    fn start_release(&mut self) {
        self.stage = Stage::Release;
        self.release_step = self.level / self.segment_samples(self.params[RELEASE].target());
    }

    #[inline]
    fn tick(&mut self, exponential: bool) -> f32 {
        match self.stage {
            Stage::Idle | Stage::Hold => {}
            Stage::Attack => {
                self.level = if exponential {
                    let target = 1.0 + ATTACK_OVERSHOOT;
                    target + (self.level - target) * self.attack_coef
                } else {
                    self.level + self.attack_step
                };
                if self.level >= 1.0 {
                    self.level = 1.0;
                    if self.gate && self.holds() {
                        self.stage = Stage::Hold;
                    } else {
                        self.start_release();
                    }
                }
            }
            Stage::Release => {
                self.level = if exponential {
                    let target = -RELEASE_UNDERSHOOT;
                    target + (self.level - target) * self.release_coef
                } else {
                    self.level - self.release_step
                };
                if self.level <= 0.0 {
                    self.level = 0.0;
                    self.stage = Stage::Idle;
                }
            }
        }
        self.level as f32
    }
}

impl Module for Ar {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Gate on (re)starts the attack from the current level; gate off starts the release
    /// in `hold` mode (percussive mode ignores it).
    fn param_changed(&mut self, _index: usize) {
        self.update();
    }

    fn set_gate(&mut self, on: bool) {
        if on {
            self.gate = true;
            self.stage = Stage::Attack;
        } else {
            self.gate = false;
            if self.holds() && matches!(self.stage, Stage::Attack | Stage::Hold) {
                self.start_release();
            }
        }
    }

    fn is_sounding(&self) -> bool {
        self.stage != Stage::Idle
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let x = input(inputs, 0);
        let exponential = self.exponential();
        let (out, env) = match outputs {
            [out, env, ..] => (&mut **out, &mut **env),
            [out] => (&mut **out, &mut [][..]),
            [] => return,
        };
        // Envelope first (as long as either output), then the amplifier.
        let n = out.len().max(env.len());
        for i in 0..n {
            let level = self.tick(exponential);
            if let Some(e) = env.get_mut(i) {
                *e = level;
            }
            if let Some(o) = out.get_mut(i) {
                *o = sanitize(x.get(i).copied().unwrap_or(0.0)) * level;
            }
        }
    }

    fn clear(&mut self) {
        self.stage = Stage::Idle;
        self.level = 0.0;
        self.release_step = 0.0;
        self.gate = false;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_u8(self.stage.to_u8());
        w.put_f64(self.level);
        w.put_f64(self.release_step);
        w.put_bool(self.gate);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.update();
        self.stage = Stage::from_u8(load_tag(r, 4, "ar stage")?);
        self.level = r.get_f64()?;
        self.release_step = r.get_f64()?;
        self.gate = r.get_bool()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{render, SR};

    fn ar(attack: f32, release: f32, shape: f32, hold: f32) -> Ar {
        let mut a = Ar::new(SR);
        a.set_param(ATTACK, attack);
        a.set_param(RELEASE, release);
        a.set_param(SHAPE, shape);
        a.set_param(HOLD, hold);
        a.reset();
        a
    }

    fn env(a: &mut Ar, n: usize) -> Vec<f32> {
        render(a, &[vec![1.0; n]], 2).remove(1)
    }

    #[test]
    fn percussive_linear_rises_then_falls_regardless_of_the_gate() {
        let mut a = ar(10.0, 100.0, 0.0, 0.0);
        a.set_gate(true);
        a.set_gate(false); // ignored: percussive
        let e = env(&mut a, 6000);
        let peak = e.iter().position(|&v| v == 1.0).unwrap();
        assert!((478..=481).contains(&peak), "peak at {peak}");
        let end = e.iter().rposition(|&v| v > 0.0).unwrap();
        assert!(
            (end - peak).abs_diff(4800) <= 2,
            "release took {}",
            end - peak
        );
        assert!((e[peak + 2400] - 0.5).abs() < 1e-3, "linear");
        assert_eq!(a.stage(), Stage::Idle);
        assert!(!a.is_sounding());
    }

    #[test]
    fn exponential_segments_end_on_time_and_curve() {
        let mut a = ar(10.0, 100.0, 1.0, 0.0);
        a.set_gate(true);
        let e = env(&mut a, 6000);
        let peak = e.iter().position(|&v| v == 1.0).unwrap();
        assert!((479..=481).contains(&peak), "peak at {peak}");
        // Concave attack: past the halfway level well before half the time.
        assert!(e[peak / 2] > 0.6);
        let end = e.iter().rposition(|&v| v > 0.0).unwrap();
        assert!(
            (end - peak).abs_diff(4800) <= 2,
            "release took {}",
            end - peak
        );
        // About -40 dB at half the release time.
        let half = e[peak + 2400];
        assert!(half > 0.005 && half < 0.02, "{half}");
        assert!(e[end + 1..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn hold_mode_sustains_while_the_gate_is_open() {
        let mut a = ar(1.0, 10.0, 0.0, 1.0);
        a.set_gate(true);
        let e = env(&mut a, 2000);
        assert!(e[100..].iter().all(|&v| v == 1.0));
        assert_eq!(a.stage(), Stage::Hold);
        a.set_gate(false);
        let e = env(&mut a, 1000);
        assert!(e[0] < 1.0 && e[470] > 0.0 && e[482] == 0.0);
    }

    #[test]
    fn retrigger_continues_from_the_current_level() {
        let mut a = ar(10.0, 100.0, 1.0, 0.0);
        a.set_gate(true);
        let mut e = env(&mut a, 1500);
        let before = *e.last().unwrap();
        a.set_gate(true);
        e.extend(env(&mut a, 2000));
        assert!(before > 0.05 && before < 1.0);
        let max_step = e.windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()));
        assert!(max_step < 0.01, "{max_step}");
    }
}
