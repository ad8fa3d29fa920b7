//! `adsr`: a linear attack/decay/sustain/release envelope that also acts as a VCA.
//!
//! Segments are straight lines, so every stage ends exactly (no exponential tail decaying
//! into denormals) and a retrigger starts from the current level (no click). Timing:
//! - attack rises at a constant slope of full scale per `attack` ms, from wherever the
//!   level is (a retrigger from 0.5 takes half the attack time);
//! - decay falls from 1 to `sustain` in `decay` ms;
//! - release falls from the level at gate-off to 0 in `release` ms.
//!
//! Zero-length segments take one sample, never divide by zero. While the level is held
//! (sustaining at a settled level, or idle) a block is one multiply loop that the compiler
//! vectorises; the moving stages go sample by sample.

use crate::module::{sane_sample_rate, Module};
use crate::smoother::Smoother;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec, Rate, Unit};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `attack` parameter.
pub const ATTACK: usize = 0;
/// Index of the `decay` parameter.
pub const DECAY: usize = 1;
/// Index of the `sustain` parameter.
pub const SUSTAIN: usize = 2;
/// Index of the `release` parameter.
pub const RELEASE: usize = 3;

/// Static description of the `adsr` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "adsr",
    doc: "ADSR envelope: shapes `in` by the envelope (out) and also outputs the envelope itself (env).",
    inputs: &[PortSpec {
        name: "in",
        rate: Rate::Audio,
    }],
    outputs: &[
        PortSpec {
            name: "out",
            rate: Rate::Audio,
        },
        PortSpec {
            name: "env",
            rate: Rate::Control,
        },
    ],
    params: &[
        ParamSpec {
            name: "attack",
            unit: Unit::Milliseconds,
            min: 0.0,
            max: 10_000.0,
            default: 10.0,
            doc: "Time to rise from 0 to full level after the gate opens.",
        },
        ParamSpec {
            name: "decay",
            unit: Unit::Milliseconds,
            min: 0.0,
            max: 10_000.0,
            default: 100.0,
            doc: "Time to fall from full level to the sustain level.",
        },
        ParamSpec {
            name: "sustain",
            unit: Unit::Linear,
            min: 0.0,
            max: 1.0,
            default: 0.7,
            doc: "Level held while the gate stays open (glides over 10 ms when changed).",
        },
        ParamSpec {
            name: "release",
            unit: Unit::Milliseconds,
            min: 0.0,
            max: 20_000.0,
            default: 300.0,
            doc: "Time to fall from the current level to 0 after the gate closes.",
        },
    ],
    has_gate: true,
};

/// Where the envelope is; saved in snapshots as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Silent, waiting for a gate.
    Idle,
    /// Rising towards 1.
    Attack,
    /// Falling from 1 to the sustain level.
    Decay,
    /// Holding the sustain level while the gate is open.
    Sustain,
    /// Falling to 0 after the gate closed.
    Release,
}

impl Stage {
    fn to_u8(self) -> u8 {
        match self {
            Stage::Idle => 0,
            Stage::Attack => 1,
            Stage::Decay => 2,
            Stage::Sustain => 3,
            Stage::Release => 4,
        }
    }

    fn from_u8(b: u8) -> Option<Stage> {
        Some(match b {
            0 => Stage::Idle,
            1 => Stage::Attack,
            2 => Stage::Decay,
            3 => Stage::Sustain,
            4 => Stage::Release,
            _ => return None,
        })
    }
}

/// Envelope state: stage, level, gate, the release slope fixed at gate-off, and params.
#[derive(Debug, Clone)]
pub struct Adsr {
    /// Samples per millisecond.
    samples_per_ms: f32,
    attack_ms: f32,
    decay_ms: f32,
    release_ms: f32,
    sustain: Smoother,
    stage: Stage,
    level: f32,
    /// Per-sample decrement during release, computed at gate-off from level and release time.
    release_step: f32,
    gate: bool,
}

impl Adsr {
    /// An idle envelope with the default times and sustain level.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        Adsr {
            samples_per_ms: sr / 1000.0,
            attack_ms: SPEC.params[ATTACK].default,
            decay_ms: SPEC.params[DECAY].default,
            release_ms: SPEC.params[RELEASE].default,
            sustain: Smoother::with_default_ramp(SPEC.params[SUSTAIN].default, sr),
            stage: Stage::Idle,
            level: 0.0,
            release_step: 0.0,
            gate: false,
        }
    }

    /// Current stage, for tests and diagnostics.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// Current envelope level (0..=1).
    pub fn level(&self) -> f32 {
        self.level
    }

    /// Length of a segment in samples, at least 1 so a zero time never divides by zero.
    fn segment_samples(&self, ms: f32) -> f32 {
        (ms * self.samples_per_ms).max(1.0)
    }

    /// Advances the envelope by one sample and returns the new level.
    #[inline]
    fn tick(&mut self, attack_step: f32, decay_samples: f32) -> f32 {
        let sustain = self.sustain.next();
        match self.stage {
            Stage::Idle => {}
            Stage::Attack => {
                self.level += attack_step;
                if self.level >= 1.0 {
                    self.level = 1.0;
                    self.stage = Stage::Decay;
                }
            }
            Stage::Decay => {
                if self.level <= sustain {
                    // Sustain was raised above the decaying level: glide via Sustain.
                    self.stage = Stage::Sustain;
                } else {
                    self.level -= (1.0 - sustain) / decay_samples;
                    if self.level <= sustain {
                        self.level = sustain;
                        self.stage = Stage::Sustain;
                    }
                }
            }
            Stage::Sustain => {
                // The sustain smoother glides, so following it never clicks.
                self.level = sustain;
            }
            Stage::Release => {
                self.level -= self.release_step;
                if self.level <= 1e-20 {
                    self.level = 0.0;
                    self.stage = Stage::Idle;
                }
            }
        }
        self.level
    }
}

impl Module for Adsr {
    fn spec(&self) -> &'static ModuleSpec {
        &SPEC
    }

    fn set_param(&mut self, index: usize, value: f32) {
        let Some(p) = SPEC.params.get(index) else {
            return;
        };
        let v = p.clamp(value);
        match index {
            ATTACK => self.attack_ms = v,
            DECAY => self.decay_ms = v,
            SUSTAIN => self.sustain.set_target(v),
            RELEASE => self.release_ms = v,
            _ => {}
        }
    }

    fn param(&self, index: usize) -> f32 {
        match index {
            ATTACK => self.attack_ms,
            DECAY => self.decay_ms,
            SUSTAIN => self.sustain.target(),
            RELEASE => self.release_ms,
            _ => 0.0,
        }
    }

    /// Gate on (re)starts the attack from the current level, also when the gate was
    /// already on (a new note); gate off starts the release from the current level.
    fn set_gate(&mut self, on: bool) {
        if on {
            self.gate = true;
            self.stage = Stage::Attack;
        } else if self.gate {
            self.gate = false;
            if self.level > 0.0 {
                self.stage = Stage::Release;
                self.release_step = self.level / self.segment_samples(self.release_ms);
            } else {
                self.stage = Stage::Idle;
            }
        }
    }

    fn is_sounding(&self) -> bool {
        self.stage != Stage::Idle
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let attack_step = 1.0 / self.segment_samples(self.attack_ms);
        let decay_samples = self.segment_samples(self.decay_ms);
        let input: &[f32] = inputs.first().copied().unwrap_or(&[]);
        let (out, env) = match outputs {
            [out, env, ..] => (&mut **out, &mut **env),
            [out] => (&mut **out, &mut [][..]),
            [] => return,
        };
        // Held level (sustaining with a settled sustain, or idle): every sample of the
        // block gets the same level, so the block is one vectorised multiply. `tick`
        // would compute exactly this, sample by sample.
        let held = match self.stage {
            Stage::Sustain if self.sustain.is_settled() => Some(self.sustain.current()),
            Stage::Idle if self.sustain.is_settled() => Some(self.level),
            _ => None,
        };
        if let Some(level) = held {
            self.level = level;
            let n = out.len().min(input.len());
            for (o, &x) in out.iter_mut().zip(input) {
                *o = x * level;
            }
            env.iter_mut().take(n).for_each(|e| *e = level);
            return;
        }
        if env.is_empty() {
            for (o, &x) in out.iter_mut().zip(input) {
                *o = x * self.tick(attack_step, decay_samples);
            }
        } else {
            for ((o, e), &x) in out.iter_mut().zip(env.iter_mut()).zip(input) {
                let level = self.tick(attack_step, decay_samples);
                *o = x * level;
                *e = level;
            }
        }
    }

    fn reset(&mut self) {
        self.sustain.settle();
        self.stage = Stage::Idle;
        self.level = 0.0;
        self.release_step = 0.0;
        self.gate = false;
    }

    fn state_len(&self) -> usize {
        4 * 3 + Smoother::STATE_LEN + 1 + 4 + 4 + 1
    }

    fn save_state(&self, w: &mut StateWriter<'_>) {
        w.put_f32(self.attack_ms);
        w.put_f32(self.decay_ms);
        w.put_f32(self.release_ms);
        self.sustain.save_state(w);
        w.put_u8(self.stage.to_u8());
        w.put_f32(self.level);
        w.put_f32(self.release_step);
        w.put_bool(self.gate);
    }

    fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.attack_ms = r.get_f32()?;
        self.decay_ms = r.get_f32()?;
        self.release_ms = r.get_f32()?;
        self.sustain.load_state(r)?;
        let offset = r.position();
        self.stage = Stage::from_u8(r.get_u8()?).ok_or(StateError::InvalidValue {
            what: "adsr stage",
            offset,
        })?;
        self.level = r.get_f32()?;
        self.release_step = r.get_f32()?;
        self.gate = r.get_bool()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f32 = 48_000.0;

    /// Renders `n` samples with a constant input of 1.0; returns (out, env).
    fn render(a: &mut Adsr, n: usize) -> (Vec<f32>, Vec<f32>) {
        let ones = vec![1.0f32; 64];
        let mut out = vec![0.0f32; n];
        let mut env = vec![0.0f32; n];
        for (o, e) in out.chunks_mut(64).zip(env.chunks_mut(64)) {
            let len = o.len();
            a.process(&[&ones[..len]], &mut [o, e]);
        }
        (out, env)
    }

    fn max_step(x: &[f32]) -> f32 {
        x.windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()))
    }

    #[test]
    fn stages_reach_their_levels() {
        let mut a = Adsr::new(SR);
        assert!(!a.is_sounding());
        a.set_gate(true);
        assert!(a.is_sounding());
        let (out, env) = render(&mut a, 10_000);
        assert_eq!(out, env, "input 1.0 times envelope is the envelope");
        // 10 ms attack: full level after 480 samples (float accumulation: +-2).
        let peak_at = env.iter().position(|&e| e == 1.0).unwrap();
        assert!((478..=482).contains(&peak_at), "peak at {peak_at}");
        assert!(env[..peak_at].windows(2).all(|w| w[1] > w[0]));
        // 100 ms decay from 1 to 0.7: halfway after 50 ms.
        assert!((env[peak_at + 2400] - 0.85).abs() < 1e-3);
        let sustain_at = env.iter().position(|&e| e == 0.7).unwrap();
        assert!((sustain_at - peak_at).abs_diff(4800) <= 2, "{sustain_at}");
        assert!(env[sustain_at..].iter().all(|&e| e == 0.7));
        assert_eq!(a.stage(), Stage::Sustain);
        // 300 ms release from 0.7 to 0 (14400 samples, within 0.1 %).
        a.set_gate(false);
        let (_, env) = render(&mut a, 20_000);
        let zero_at = env.iter().position(|&e| e == 0.0).unwrap();
        assert!(zero_at.abs_diff(14_400) <= 15, "zero at {zero_at}");
        assert!(env[zero_at..].iter().all(|&e| e == 0.0));
        assert_eq!(a.stage(), Stage::Idle);
        assert!(!a.is_sounding());
    }

    #[test]
    fn retrigger_during_release_has_no_jump() {
        let mut a = Adsr::new(SR);
        a.set_gate(true);
        let (_, mut all) = render(&mut a, 10_000);
        a.set_gate(false);
        let (_, env) = render(&mut a, 2000);
        all.extend(env);
        let before = a.level();
        assert!(before > 0.1 && before < 0.7);
        a.set_gate(true);
        let (_, env) = render(&mut a, 5000);
        assert!((env[0] - before).abs() <= 1.0 / 480.0 + 1e-6);
        all.extend(env);
        // Largest per-sample change anywhere is the attack slope.
        assert!(max_step(&all) <= 1.0 / 480.0 + 1e-6, "{}", max_step(&all));
    }

    #[test]
    fn retrigger_during_attack_continues_upwards() {
        let mut a = Adsr::new(SR);
        a.set_gate(true);
        let (_, e1) = render(&mut a, 200);
        a.set_gate(true);
        let (_, e2) = render(&mut a, 10);
        assert!(e2[0] > *e1.last().unwrap());
    }

    #[test]
    fn zero_length_segments_are_finite() {
        let mut a = Adsr::new(SR);
        for p in [ATTACK, DECAY, RELEASE] {
            a.set_param(p, 0.0);
        }
        a.set_param(SUSTAIN, 0.5);
        a.reset();
        a.set_gate(true);
        let (_, env) = render(&mut a, 3);
        assert_eq!(env, vec![1.0, 0.5, 0.5]);
        a.set_gate(false);
        let (_, env) = render(&mut a, 2);
        assert_eq!(env, vec![0.0, 0.0]);
        assert!(!a.is_sounding());
    }

    #[test]
    fn sustain_change_glides() {
        let mut a = Adsr::new(SR);
        a.set_gate(true);
        let _ = render(&mut a, 10_000);
        a.set_param(SUSTAIN, 0.0);
        let (_, env) = render(&mut a, 1000);
        assert!(max_step(&env) <= 0.7 / 480.0 + 1e-6);
        assert_eq!(*env.last().unwrap(), 0.0);
    }

    #[test]
    fn gate_off_while_idle_stays_idle() {
        let mut a = Adsr::new(SR);
        a.set_gate(false);
        let (out, env) = render(&mut a, 64);
        assert!(out.iter().chain(&env).all(|&x| x == 0.0));
        assert!(!a.is_sounding());
    }

    #[test]
    fn bad_stage_byte_is_an_error() {
        let a = Adsr::new(SR);
        let mut buf = vec![0u8; a.state_len()];
        let mut w = StateWriter::new(&mut buf);
        a.save_state(&mut w);
        assert_eq!(w.finish(), Ok(a.state_len()));
        let stage_at = 12 + Smoother::STATE_LEN;
        buf[stage_at] = 9;
        let mut b = Adsr::new(SR);
        let err = b.load_state(&mut StateReader::new(&buf)).unwrap_err();
        assert!(matches!(
            err,
            StateError::InvalidValue {
                what: "adsr stage",
                ..
            }
        ));
    }
}
