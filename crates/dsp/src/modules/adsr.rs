//! `adsr`: an attack/decay/sustain/release envelope that also acts as a VCA, with
//! straight-line or exponential (analog-style) segments.
//!
//! The `curve` parameter picks the segment shape. At 0 (the default) segments are
//! straight lines, so every stage ends exactly and a retrigger starts from the current
//! level (no click). Timing:
//! - attack rises at a constant slope of full scale per `attack` ms, from wherever the
//!   level is (a retrigger from 0.5 takes half the attack time);
//! - decay falls from 1 to `sustain` in `decay` ms;
//! - release falls from the level at gate-off to 0 in `release` ms.
//!
//! At 1 the segments are the RC curves of an analog envelope: attack charges towards
//! 1.2 and stops at 1 (fast first, then slowing), decay and release discharge towards a
//! point 0.1 % of their span beyond their target, so they are fast first and still
//! *arrive* (exact sustain, exact 0) instead of creeping towards it forever into
//! denormals. The one-pole coefficient of each segment is chosen so the segment takes
//! the same time as the straight line would (landing on the sample nearest to the
//! segment time), and it is computed when a time or the curve changes, never per
//! sample. Between 0 and 1 the aim point moves geometrically from 100 spans away
//! (practically straight) to those analog values, so the shape bends progressively;
//! the segment times hold at every setting. A retrigger restarts the attack from the
//! current level in both shapes, so it never jumps.
//!
//! Exponential segments run on an f64 accumulator: in f32 a 10 s decay's last steps
//! (a thousandth of the span times a coefficient near 1e-5) fall below half an ulp of
//! the level and the decay would stall just above the sustain level.
//!
//! Zero-length segments take one sample, never divide by zero. While the level is held
//! (sustaining at a settled level, or idle) a block is one multiply loop that the compiler
//! vectorises, in both shapes; the moving stages go sample by sample.

use crate::params::Params;
use crate::module::{sane_sample_rate, Module};
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `attack` parameter.
pub const ATTACK: usize = 0;
/// Index of the `decay` parameter.
pub const DECAY: usize = 1;
/// Index of the `sustain` parameter.
pub const SUSTAIN: usize = 2;
/// Index of the `release` parameter.
pub const RELEASE: usize = 3;
/// Index of the `curve` parameter (appended last, so the older indices never moved).
pub const CURVE: usize = 4;

/// Attack overshoot at `curve` 1: the attack aims at 1 + this and stops at 1, the
/// usual analog-envelope convention (a capacitor charging towards a higher rail).
const ATTACK_OVERSHOOT: f64 = 0.2;
/// Decay and release overshoot at `curve` 1, as a fraction of the segment's span: small
/// enough to sound fully exponential, large enough to arrive in finite time.
const FALL_OVERSHOOT: f64 = 1e-3;
/// Overshoot as `curve` approaches 0: aiming 100 spans away makes the segment's slope
/// vary by only 1 %, so the shape meets the exact straight line of `curve` 0 smoothly.
const NEAR_LINEAR_OVERSHOOT: f64 = 100.0;
/// Release levels at or below this are flushed to exactly 0 (and the envelope goes idle),
/// so no denormal ever reaches the output.
const RELEASE_FLOOR: f32 = 1e-20;

/// Static description of the `adsr` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "adsr",
    doc: "ADSR envelope: shapes `in` by the envelope (out) and also outputs the envelope itself (env).",
    inputs: &[PortSpec::audio("in")],
    outputs: &[
        PortSpec::audio("out"),
        PortSpec::control("env"),
    ],
    params: &[
        ParamSpec::ms("attack", 0.0..=10_000.0, 10.0).doc("Time to rise from 0 to full level after the gate opens."),
        ParamSpec::ms("decay", 0.0..=10_000.0, 100.0).doc("Time to fall from full level to the sustain level."),
        ParamSpec::linear("sustain", 0.0..=1.0, 0.7).doc("Level held while the gate stays open (glides over 10 ms when changed)."),
        ParamSpec::ms("release", 0.0..=20_000.0, 300.0).doc("Time to fall from the current level to 0 after the gate closes."),
        ParamSpec::number("curve", 0.0..=1.0, 0.0).doc("Segment shape: 0 = straight lines; 1 = analog exponential (attack aims at 1.2 and stops at 1, decay and release aim 0.1 % past their target, so they arrive); in between bends progressively. Segment times hold at every setting."),
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

/// One-pole shapes of the exponential segments for the current times and curve:
/// each segment is `x += (aim - x) * k`. Recomputed only when a time or the curve
/// changes, so the per-sample loop does no transcendental math.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ExpShape {
    /// Attack aims at `1 + attack_over`.
    attack_over: f64,
    /// Attack coefficient: covers 0 → 1 in the attack time.
    attack_k: f64,
    /// Decay aims `decay_over * (1 - sustain)` below the sustain level.
    decay_over: f64,
    /// Decay coefficient: covers 1 → sustain in the decay time.
    decay_k: f64,
    /// Release aims `release_over` times the gate-off level below 0.
    release_over: f64,
    /// Release coefficient for the current release time (latched at gate-off).
    release_k: f64,
}

impl ExpShape {
    fn save_state(&self, w: &mut StateWriter<'_>) {
        for v in [
            self.attack_over,
            self.attack_k,
            self.decay_over,
            self.decay_k,
            self.release_over,
            self.release_k,
        ] {
            w.put_f64(v);
        }
    }

    fn load_state(r: &mut StateReader<'_>) -> Result<ExpShape, StateError> {
        Ok(ExpShape {
            attack_over: r.get_f64()?,
            attack_k: r.get_f64()?,
            decay_over: r.get_f64()?,
            decay_k: r.get_f64()?,
            release_over: r.get_f64()?,
            release_k: r.get_f64()?,
        })
    }
}

/// Overshoot (aim distance past the target, as a fraction of the span) for a `curve`
/// value: `at_one` at curve 1, moving geometrically towards [`NEAR_LINEAR_OVERSHOOT`] as
/// the curve goes to 0.
fn overshoot(at_one: f64, curve: f32) -> f64 {
    at_one * (NEAR_LINEAR_OVERSHOOT / at_one).powf(1.0 - f64::from(curve))
}

/// One-pole coefficient `k` with which the distance to the aim shrinks from
/// `1 + over` spans to `over` spans (the target) in `samples - 0.5` samples. The half
/// sample makes the segment land on the sample nearest to its exact length, so f64
/// rounding can never make it a sample late; `samples >= 1`, so `k` stays in (0, 1).
fn one_pole_k(samples: f32, over: f64) -> f64 {
    let n = f64::from(samples) - 0.5;
    -(-(1.0 / over).ln_1p() / n).exp_m1()
}

/// Envelope state: stage, level, gate, the release shape fixed at gate-off, and params.
#[derive(Debug, Clone)]
pub struct Adsr {
    /// Samples per millisecond.
    samples_per_ms: f32,
    params: Params,
    stage: Stage,
    level: f32,
    /// Per-sample decrement during a straight release, computed at gate-off from level
    /// and release time.
    release_step: f32,
    gate: bool,
    /// Exponential segment shapes for the current times and curve.
    shape: ExpShape,
    /// The level as the exponential segments track it (f64, see the module doc);
    /// `level` is its f32 rounding. Resynchronised from `level` when a straight-line
    /// block or the held fast path moved `level` on its own.
    exp_level: f64,
    /// Where an exponential release aims (below 0), fixed at gate-off.
    release_aim: f64,
    /// Coefficient of an exponential release, fixed at gate-off like `release_step`.
    release_k: f64,
    /// Whether another module reads the `env` output ([`Module::outputs_read`]): if not,
    /// it is left unwritten. Not state: the patch tells every compiled instance.
    env_read: bool,
}

impl Adsr {
    /// An idle envelope with the default times, sustain level and curve.
    pub fn new(sample_rate: f32) -> Self {
        let sr = sane_sample_rate(sample_rate);
        let mut a = Adsr {
            samples_per_ms: sr / 1000.0,
            params: Params::new(&SPEC, sr).instant(&[ATTACK, DECAY, RELEASE, CURVE]),
            stage: Stage::Idle,
            level: 0.0,
            release_step: 0.0,
            gate: false,
            shape: ExpShape {
                attack_over: 0.0,
                attack_k: 0.0,
                decay_over: 0.0,
                decay_k: 0.0,
                release_over: 0.0,
                release_k: 0.0,
            },
            exp_level: 0.0,
            env_read: true,
            release_aim: 0.0,
            release_k: 0.0,
        };
        a.update_shape_for(CURVE);
        a
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

    /// Recomputes the exponential shape affected by a change of parameter `index`
    /// (a time: its segment; the curve: all three). Runs on parameter changes only.
    fn update_shape_for(&mut self, index: usize) {
        let curve = self.params[CURVE].target();
        if index == ATTACK || index == CURVE {
            self.shape.attack_over = overshoot(ATTACK_OVERSHOOT, curve);
            self.shape.attack_k =
                one_pole_k(self.segment_samples(self.params[ATTACK].target()), self.shape.attack_over);
        }
        if index == DECAY || index == CURVE {
            self.shape.decay_over = overshoot(FALL_OVERSHOOT, curve);
            self.shape.decay_k =
                one_pole_k(self.segment_samples(self.params[DECAY].target()), self.shape.decay_over);
        }
        if index == RELEASE || index == CURVE {
            self.shape.release_over = overshoot(FALL_OVERSHOOT, curve);
            self.shape.release_k = one_pole_k(
                self.segment_samples(self.params[RELEASE].target()),
                self.shape.release_over,
            );
        }
    }

    /// Advances the straight-line envelope by one sample and returns the new level.
    #[inline]
    fn tick(&mut self, attack_step: f32, decay_samples: f32) -> f32 {
        let sustain = self.params[SUSTAIN].next();
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
                if self.level <= RELEASE_FLOOR {
                    self.level = 0.0;
                    self.stage = Stage::Idle;
                }
            }
        }
        self.level
    }

    /// Advances the exponential envelope by one sample and returns the new level.
    /// `attack_aim` is `1 + shape.attack_over`, hoisted out of the loop by the caller.
    #[inline]
    fn tick_exp(&mut self, attack_aim: f64, shape: &ExpShape) -> f32 {
        let sustain = self.params[SUSTAIN].next();
        let x = self.exp_level;
        match self.stage {
            Stage::Idle => {}
            Stage::Attack => {
                let next = x + (attack_aim - x) * shape.attack_k;
                if next >= 1.0 {
                    self.exp_level = 1.0;
                    self.stage = Stage::Decay;
                } else {
                    self.exp_level = next;
                }
            }
            Stage::Decay => {
                let s = f64::from(sustain);
                if x <= s {
                    // Sustain was raised above the decaying level: glide via Sustain.
                    self.stage = Stage::Sustain;
                } else {
                    let aim = s - shape.decay_over * (1.0 - s);
                    let next = x + (aim - x) * shape.decay_k;
                    if next <= s {
                        self.exp_level = s;
                        self.stage = Stage::Sustain;
                    } else {
                        self.exp_level = next;
                    }
                }
            }
            Stage::Sustain => {
                self.exp_level = f64::from(sustain);
            }
            Stage::Release => {
                let next = x + (self.release_aim - x) * self.release_k;
                if next <= f64::from(RELEASE_FLOOR) {
                    self.exp_level = 0.0;
                    self.stage = Stage::Idle;
                } else {
                    self.exp_level = next;
                }
            }
        }
        // Rounding an f64 above RELEASE_FLOOR (or exactly 0) never gives an f32 denormal.
        self.level = self.exp_level as f32;
        self.level
    }

    /// Runs `next_level` once per sample of the block: `out = in * level`, `env = level`.
    /// Shared by both shapes so their loops stay identical apart from the tick.
    #[inline(always)]
    fn render_moving(
        input: &[f32],
        out: &mut [f32],
        env: &mut [f32],
        mut next_level: impl FnMut() -> f32,
    ) {
        if env.is_empty() {
            for (o, &x) in out.iter_mut().zip(input) {
                *o = x * next_level();
            }
        } else {
            for ((o, e), &x) in out.iter_mut().zip(env.iter_mut()).zip(input) {
                let level = next_level();
                *o = x * level;
                *e = level;
            }
        }
    }
}

impl Module for Adsr {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// A new time or curve reshapes the exponential segments.
    fn param_changed(&mut self, index: usize) {
        if index != SUSTAIN {
            self.update_shape_for(index);
        }
    }

    /// Gate on (re)starts the attack from the current level, also when the gate was
    /// already on (a new note); gate off starts the release from the current level.
    /// Both release shapes are fixed here, so a curve change mid-release stays smooth.
    fn set_gate(&mut self, on: bool) {
        if on {
            self.gate = true;
            self.stage = Stage::Attack;
        } else if self.gate {
            self.gate = false;
            if self.level > 0.0 {
                self.stage = Stage::Release;
                self.release_step = self.level / self.segment_samples(self.params[RELEASE].target());
                self.release_aim = -self.shape.release_over * f64::from(self.level);
                self.release_k = self.shape.release_k;
            } else {
                self.stage = Stage::Idle;
            }
        }
    }

    fn is_sounding(&self) -> bool {
        self.stage != Stage::Idle
    }

    /// `env` is the level `out` is scaled by, so nobody reading it, it is not written
    /// (the level still moves with `out`).
    fn outputs_read(&mut self, read: u8) {
        self.env_read = read >> 1 & 1 == 1;
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let input: &[f32] = inputs.first().copied().unwrap_or(&[]);
        let (out, env) = match outputs {
            [out, env, ..] if self.env_read => (&mut **out, &mut **env),
            [out, ..] => (&mut **out, &mut [][..]),
            [] => return,
        };
        // Held level (sustaining with a settled sustain, or idle): every sample of the
        // block gets the same level, so the block is one vectorised multiply. `tick`
        // and `tick_exp` would compute exactly this, sample by sample.
        let held = match self.stage {
            Stage::Sustain if self.params[SUSTAIN].is_settled() => Some(self.params[SUSTAIN].current()),
            Stage::Idle if self.params[SUSTAIN].is_settled() => Some(self.level),
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
        // A curve of exactly 0 takes the straight-line path.
        if self.params[CURVE].target() == 0.0 {
            let attack_step = 1.0 / self.segment_samples(self.params[ATTACK].target());
            let decay_samples = self.segment_samples(self.params[DECAY].target());
            Self::render_moving(input, out, env, || self.tick(attack_step, decay_samples));
        } else {
            // The straight path and the held fast path move only `level`: pick it up.
            if (self.exp_level as f32).to_bits() != self.level.to_bits() {
                self.exp_level = f64::from(self.level);
            }
            let shape = self.shape;
            let attack_aim = 1.0 + shape.attack_over;
            Self::render_moving(input, out, env, || self.tick_exp(attack_aim, &shape));
        }
    }

    fn clear(&mut self) {
        self.stage = Stage::Idle;
        self.level = 0.0;
        self.release_step = 0.0;
        self.gate = false;
        self.exp_level = 0.0;
        self.release_aim = 0.0;
        self.release_k = 0.0;
    }

    /// The straight-line fields come first (stage, level, gate), then the exponential
    /// shapes and the f64 level.
    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_u8(self.stage.to_u8());
        w.put_f32(self.level);
        w.put_f32(self.release_step);
        w.put_bool(self.gate);
        self.shape.save_state(w);
        w.put_f64(self.exp_level);
        w.put_f64(self.release_aim);
        w.put_f64(self.release_k);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let offset = r.position();
        self.stage = Stage::from_u8(r.get_u8()?).ok_or(StateError::InvalidValue {
            what: "adsr stage",
            offset,
        })?;
        self.level = r.get_f32()?;
        self.release_step = r.get_f32()?;
        self.gate = r.get_bool()?;
        self.shape = ExpShape::load_state(r)?;
        self.exp_level = r.get_f64()?;
        self.release_aim = r.get_f64()?;
        self.release_k = r.get_f64()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: f32 = 48_000.0;

    /// With `env` unread it is left unwritten, and `out` and the state have the bits
    /// they have with it read: through attack, decay, sustain and release, straight and
    /// curved.
    #[test]
    fn an_unread_env_is_left_unwritten_and_changes_nothing_else() {
        use crate::state::StateWriter;
        for curve in [0.0, 0.6] {
            let play = |a: &mut Adsr| {
                a.set_param(CURVE, curve);
                let input: Vec<f32> = (0..64).map(|i| (i as f32 * 0.1).sin()).collect();
                let mut blocks = Vec::new();
                for block in 0..60 {
                    a.set_gate((3..40).contains(&block));
                    let (mut out, mut env) = ([f32::NAN; 64], [f32::NAN; 64]);
                    a.process(&[&input], &mut [&mut out, &mut env]);
                    blocks.push((out.map(f32::to_bits), env.map(f32::to_bits)));
                }
                let mut state = vec![0u8; a.state_len()];
                a.save_state(&mut StateWriter::new(&mut state));
                (blocks, state)
            };
            let (every, every_state) = play(&mut Adsr::new(SR));
            let mut only_out = Adsr::new(SR);
            only_out.outputs_read(1);
            let (some, some_state) = play(&mut only_out);
            assert_eq!(some_state, every_state);
            for ((out_a, _), (out_b, env_b)) in every.iter().zip(&some) {
                assert_eq!(out_a, out_b);
                assert!(env_b.iter().all(|&e| f32::from_bits(e).is_nan()));
            }
        }
    }

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
        // After the parameters: attack and decay (f32 each), the sustain smoother,
        // release and curve (f32 each).
        let stage_at = 16 + crate::smoother::Smoother::STATE_LEN;
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

    /// An envelope with `curve` 1 and the given times (ms) and sustain, reset to idle.
    fn exp_adsr(attack: f32, decay: f32, sustain: f32, release: f32) -> Adsr {
        let mut a = Adsr::new(SR);
        a.set_param(CURVE, 1.0);
        a.set_param(ATTACK, attack);
        a.set_param(DECAY, decay);
        a.set_param(SUSTAIN, sustain);
        a.set_param(RELEASE, release);
        a.reset();
        a
    }

    /// Asserts `at` samples is within 5 % of `ms` milliseconds at [`SR`].
    fn within_5_percent(at: usize, ms: f32, what: &str) {
        let expected = ms * SR / 1000.0;
        let err = (at as f32 - expected).abs() / expected;
        assert!(err <= 0.05, "{what}: {at} samples, expected {expected}");
    }

    fn diffs(x: &[f32]) -> Vec<f32> {
        x.windows(2).map(|w| w[1] - w[0]).collect()
    }

    #[test]
    fn curve_param_is_appended_and_defaults_to_straight_lines() {
        assert_eq!(SPEC.params.len(), 5);
        assert_eq!(SPEC.param_index("curve"), Some(CURVE));
        let names: Vec<_> = SPEC.params.iter().map(|p| p.name).collect();
        assert_eq!(names, ["attack", "decay", "sustain", "release", "curve"]);
        let mut a = Adsr::new(SR);
        assert_eq!(a.param(CURVE), 0.0);
        a.set_param(CURVE, 7.0);
        assert_eq!(a.param(CURVE), 1.0);
        a.set_param(CURVE, f32::NAN);
        assert_eq!(a.param(CURVE), 0.0);
    }

    #[test]
    fn curve_back_to_zero_is_bit_identical_to_never_touched() {
        let mut fresh = Adsr::new(SR);
        let mut toggled = Adsr::new(SR);
        toggled.set_param(CURVE, 1.0);
        toggled.set_param(CURVE, 0.0);
        for a in [&mut fresh, &mut toggled] {
            a.set_gate(true);
        }
        let (_, e1) = render(&mut fresh, 6000);
        let (_, e2) = render(&mut toggled, 6000);
        fresh.set_gate(false);
        toggled.set_gate(false);
        let (_, r1) = render(&mut fresh, 16_000);
        let (_, r2) = render(&mut toggled, 16_000);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&e1), bits(&e2));
        assert_eq!(bits(&r1), bits(&r2));
    }

    #[test]
    fn exp_attack_reaches_full_level_at_the_attack_time_and_is_concave() {
        for attack in [1.0f32, 10.0, 250.0, 3000.0] {
            let mut a = exp_adsr(attack, 100.0, 0.5, 300.0);
            a.set_gate(true);
            let n = (attack * SR / 1000.0) as usize;
            let (out, env) = render(&mut a, n + n / 10 + 8);
            assert_eq!(out, env);
            let peak_at = env.iter().position(|&e| e == 1.0).unwrap() + 1;
            within_5_percent(peak_at, attack, "attack");
            let rise = &env[..peak_at];
            let d = diffs(rise);
            assert!(d.iter().all(|&s| s > 0.0), "rises monotonically");
            // Concave: every step is no larger than the one before (f32 rounding of the
            // level allows an ulp of jitter on long attacks).
            let ulp = f32::EPSILON;
            assert!(d.windows(2).all(|w| w[1] <= w[0] + ulp), "concave");
            // Fast first: well above the straight line halfway through.
            assert!(rise[peak_at / 2] > 0.6, "{}", rise[peak_at / 2]);
        }
    }

    #[test]
    fn exp_decay_and_release_are_convex_and_arrive_exactly() {
        for (decay, release) in [(100.0f32, 300.0f32), (10_000.0, 20_000.0)] {
            let mut a = exp_adsr(10.0, decay, 0.5, release);
            a.set_gate(true);
            let nd = (decay * SR / 1000.0) as usize;
            let (_, env) = render(&mut a, 480 + nd + nd / 10 + 64);
            let peak_at = env.iter().position(|&e| e == 1.0).unwrap();
            let sustain_at = env.iter().position(|&e| e == 0.5).unwrap();
            within_5_percent(sustain_at - peak_at, decay, "decay");
            assert!(env[sustain_at..].iter().all(|&e| e == 0.5));
            assert_eq!(a.stage(), Stage::Sustain);
            // Long decays end in steps below an f32 ulp (the f64 accumulator still
            // moves), so the f32 output may repeat a value: monotonic, not strictly.
            let d = diffs(&env[peak_at..=sustain_at]);
            assert!(d.iter().all(|&s| s <= 0.0), "falls monotonically");
            assert!(d.windows(2).all(|w| w[1] >= w[0] - f32::EPSILON), "convex");
            // Fast first: more than half of the fall is done a quarter of the way in.
            assert!(env[peak_at + nd / 4] < 0.75, "{}", env[peak_at + nd / 4]);

            a.set_gate(false);
            let nr = (release * SR / 1000.0) as usize;
            let (out, env) = render(&mut a, nr + nr / 10 + 64);
            let zero_at = env.iter().position(|&e| e == 0.0).unwrap() + 1;
            within_5_percent(zero_at, release, "release");
            assert!(env[zero_at - 1..].iter().all(|&e| e == 0.0));
            assert!(out[zero_at - 1..].iter().all(|&e| e == 0.0));
            // No denormals on the way down: every value is 0 or a normal float.
            assert!(env.iter().all(|&e| e == 0.0 || e.is_normal()));
            let d = diffs(&env[..zero_at]);
            assert!(d.iter().all(|&s| s <= 0.0), "falls monotonically");
            assert!(d.windows(2).all(|w| w[1] >= w[0] - f32::EPSILON), "convex");
            assert_eq!(a.stage(), Stage::Idle);
            assert_eq!(a.level(), 0.0);
            assert!(!a.is_sounding());
        }
    }

    #[test]
    fn exp_retrigger_during_release_has_no_click() {
        let mut a = exp_adsr(10.0, 100.0, 0.7, 300.0);
        a.set_gate(true);
        let (_, mut all) = render(&mut a, 10_000);
        // The attack's own largest step: its first one, from 0.
        let attack_step = all[0];
        assert!(attack_step >= max_step(&all[..480]));
        a.set_gate(false);
        let (_, env) = render(&mut a, 2000);
        all.extend(env);
        let before = a.level();
        assert!(before > 0.05 && before < 0.7, "{before}");
        a.set_gate(true);
        let (_, env) = render(&mut a, 5000);
        assert!(env[0] > before && env[0] - before <= attack_step);
        all.extend(env);
        assert!(max_step(&all) <= attack_step, "{}", max_step(&all));
        // And a retrigger mid-attack keeps rising.
        let mut b = exp_adsr(10.0, 100.0, 0.7, 300.0);
        b.set_gate(true);
        let (_, e1) = render(&mut b, 200);
        b.set_gate(true);
        let (_, e2) = render(&mut b, 10);
        assert!(e2[0] > *e1.last().unwrap());
    }

    #[test]
    fn exp_zero_length_segments_take_one_sample() {
        let mut a = exp_adsr(0.0, 0.0, 0.5, 0.0);
        a.set_gate(true);
        let (_, env) = render(&mut a, 3);
        assert_eq!(env, vec![1.0, 0.5, 0.5]);
        a.set_gate(false);
        let (_, env) = render(&mut a, 2);
        assert_eq!(env, vec![0.0, 0.0]);
        assert!(!a.is_sounding());
    }

    #[test]
    fn intermediate_curve_bends_between_line_and_exponential() {
        let halfway = |curve: f32| {
            let mut a = exp_adsr(100.0, 100.0, 0.5, 300.0);
            a.set_param(CURVE, curve);
            a.set_gate(true);
            let (_, env) = render(&mut a, 6000);
            let peak_at = env.iter().position(|&e| e == 1.0).unwrap() + 1;
            within_5_percent(peak_at, 100.0, "attack");
            env[2399]
        };
        let (line, mid, exp) = (halfway(0.0), halfway(0.5), halfway(1.0));
        assert!(line < mid && mid < exp, "{line} {mid} {exp}");
        // Just above 0 the shape is within about 1 % of the straight line.
        assert!((halfway(1e-6) - line).abs() < 0.01);
    }

    #[test]
    fn curve_change_mid_segment_does_not_jump() {
        let mut a = Adsr::new(SR);
        a.set_gate(true);
        let (_, mut all) = render(&mut a, 200);
        a.set_param(CURVE, 1.0);
        // The exponential attack's largest step (its first, from 0) bounds every step.
        let bound = (1.0 + a.shape.attack_over as f32) * a.shape.attack_k as f32;
        all.extend(render(&mut a, 5000).1);
        a.set_gate(false);
        all.extend(render(&mut a, 3000).1);
        a.set_param(CURVE, 0.0);
        all.extend(render(&mut a, 20_000).1);
        assert!(max_step(&all) <= bound, "{} > {bound}", max_step(&all));
        assert_eq!(a.stage(), Stage::Idle);
        assert_eq!(a.level(), 0.0);
    }

    #[test]
    fn exp_snapshot_mid_segment_continues_bit_identically() {
        // Cut points: mid attack, mid decay, sustain gliding, mid release (and the
        // gate events after the cut are replayed on both).
        for cut in [100usize, 2_000, 7_000, 9_000] {
            let mut a = exp_adsr(10.0, 100.0, 0.6, 300.0);
            let script = |a: &mut Adsr, t: usize| match t {
                0 => a.set_gate(true),
                6_000 => a.set_param(SUSTAIN, 0.3),
                8_000 => a.set_gate(false),
                12_000 => a.set_gate(true),
                _ => {}
            };
            let mut t = 0;
            while t < cut {
                script(&mut a, t);
                render(&mut a, 1);
                t += 1;
            }
            let mut buf = vec![0u8; a.state_len()];
            let mut w = StateWriter::new(&mut buf);
            a.save_state(&mut w);
            assert_eq!(w.finish(), Ok(a.state_len()));
            let mut b = Adsr::new(SR);
            b.set_param(ATTACK, 3.0);
            b.load_state(&mut StateReader::new(&buf)).unwrap();
            assert_eq!(b.param(CURVE), 1.0);
            let mut ea = Vec::new();
            let mut eb = Vec::new();
            while t < 20_000 {
                script(&mut a, t);
                script(&mut b, t);
                let n = if (t + 64) / 2_000 == t / 2_000 { 64 } else { 1 };
                ea.extend(render(&mut a, n).1);
                eb.extend(render(&mut b, n).1);
                t += n;
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ea), bits(&eb), "cut at {cut}");
            assert!(
                ea.iter().any(|&e| e != ea[0]),
                "something moved after {cut}"
            );
        }
    }

    #[test]
    fn state_len_matches_what_save_writes() {
        let mut a = exp_adsr(10.0, 100.0, 0.5, 300.0);
        a.set_gate(true);
        let _ = render(&mut a, 300);
        let mut buf = vec![0u8; a.state_len() + 8];
        let mut w = StateWriter::new(&mut buf);
        a.save_state(&mut w);
        assert_eq!(w.finish(), Ok(a.state_len()));
        let mut short = vec![0u8; a.state_len() - 1];
        short.copy_from_slice(&buf[..a.state_len() - 1]);
        let mut b = Adsr::new(SR);
        assert!(matches!(
            b.load_state(&mut StateReader::new(&short)),
            Err(StateError::Truncated { .. })
        ));
    }
}
