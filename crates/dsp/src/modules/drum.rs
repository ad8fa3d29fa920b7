//! `drum`: ten synthesized drums in one module, chosen per hit by MIDI note number.
//!
//! A drum kit is an instrument whose voices are `note -> drum -> out` (see
//! `patches/drums.toml`): the sequencer or a player sends General MIDI percussion
//! numbers, and each hit picks its drum from the note's `key`, as a MIDI drum machine
//! does. Nothing is sampled, so there is nothing to ship, and every drum is a few
//! oscillators, seeded noise and filters in the manner of the TR-808:
//!
//! | key | name  | drum          | how it is made                                              |
//! |-----|-------|---------------|-------------------------------------------------------------|
//! | 36  | `bd`  | kick          | sine swept 160 -> 50 Hz (25 ms), a 1 ms sweep click; 500 ms |
//! | 37  | `rim` | rim shot      | sines at 1.7 kHz and 480 Hz plus a high-passed noise tick; 70 ms |
//! | 38  | `sn`  | snare         | sines at 180 and 330 Hz (250 ms) plus noise band-passed at 3 kHz; 300 ms |
//! | 39  | `cp`  | hand clap     | noise band-passed at 1.25 kHz: three bursts 10 ms apart, then a tail; 330 ms |
//! | 42  | `hh`  | closed hi-hat | the 808's six square partials (205–800 Hz) band-passed at 10 kHz, soft-clipped, high-passed at 9 kHz; 150 ms |
//! | 45  | `lt`  | low tom       | sine at 100 Hz swept down from 150 Hz, a low noise thud; 650 ms |
//! | 46  | `oh`  | open hi-hat   | the same partials band-passed at 7 kHz, high-passed at 5 kHz; 600 ms |
//! | 47  | `mt`  | mid tom       | the same at 145 Hz; 550 ms                                  |
//! | 50  | `ht`  | high tom      | the same at 210 Hz; 450 ms                                  |
//! | 56  | `cb`  | cowbell       | squares at 540 and 800 Hz band-passed at 1 kHz, a fast and a slow decay; 450 ms |
//!
//! The times are where a hit ends in exact silence (at `decay` 1); the level has fallen
//! 60 dB at three quarters of it. The other keys of the GM percussion map (35–81) play
//! the nearest drum by family ([`kind_for_key`]: a crash or ride plays the open hat, a
//! conga a tom, claves the rim); keys below 35 play the kick and keys above 81 the open
//! hat. The numbers are the ones the pattern notation's drum names stand for.
//!
//! # Triggering
//! A hit starts on a rising edge of the gate: the module's own gate (an instrument opens
//! it when a note starts on the voice) or the `gate` input crossing 0.5, whichever rises
//! first; `key` and `velocity` are read on that sample. Velocity scales the amplitude
//! linearly; a velocity of 0 at the edge (the input left unconnected: a note always has
//! a velocity above 0) plays at full velocity. The gate's length does not matter: a drum
//! plays to its end, and once it has ended in exact silence the module reports itself
//! idle, so an instrument frees the voice whenever the note-off comes.
//!
//! `tune` and `decay` are read at each hit, as on a drum machine, so turning them never
//! bends a ringing drum; `level` glides over 10 ms. A retrigger while a drum rings
//! starts the new hit from silence and lets the last output sample fall to 0 over about
//! a millisecond underneath it, so a hit never jumps. Noise comes from the module's seed
//! (SplitMix64, as in `noise`), restarted by a reset, and everything is in the snapshot:
//! a spare continues a drum bit for bit.

use crate::module::{sane_sample_rate, Module};
use crate::modules::common::{flush64, input, load_tag, sanitize};
use crate::modules::noise::SplitMix64;
use crate::params::Params;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `tune` parameter.
pub const TUNE: usize = 0;
/// Index of the `decay` parameter.
pub const DECAY: usize = 1;
/// Index of the `level` parameter.
pub const LEVEL: usize = 2;

/// Index of the `key` input.
pub const KEY_IN: usize = 0;
/// Index of the `gate` input.
pub const GATE_IN: usize = 1;
/// Index of the `velocity` input.
pub const VELOCITY_IN: usize = 2;

/// Static description of the `drum` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "drum",
    doc: "Synthesized drums chosen by General MIDI percussion number on `key` (36 kick, 37 rim, 38 snare, 39 clap, 42 closed hat, 45/47/50 toms, 46 open hat, 56 cowbell), struck by a rising gate at `velocity`; ends in exact silence.",
    inputs: &[
        PortSpec::control("key"),
        PortSpec::control("gate"),
        PortSpec::control("velocity"),
    ],
    outputs: &[PortSpec::audio("out")],
    params: &[
        ParamSpec::number("tune", -24.0..=24.0, 0.0)
            .doc("Pitch of every drum in semitones (oscillators, and the snare's and clap's noise bands); read at each hit."),
        ParamSpec::number("decay", 0.25..=4.0, 1.0)
            .doc("Multiplies every drum's decay time (4 rings four times as long); read at each hit."),
        ParamSpec::linear("level", 0.0..=1.0, 1.0)
            .doc("Output level (glides over 10 ms); the drums are balanced against each other at any level."),
    ],
    has_gate: true,
};

/// The ten drums, in the order of their GM numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Bass drum, GM 36 (`bd`).
    Kick,
    /// Side stick / rim shot, GM 37 (`rim`).
    Rim,
    /// Snare, GM 38 (`sn`).
    Snare,
    /// Hand clap, GM 39 (`cp`).
    Clap,
    /// Closed hi-hat, GM 42 (`hh`).
    ClosedHat,
    /// Low tom, GM 45 (`lt`).
    LowTom,
    /// Open hi-hat, GM 46 (`oh`).
    OpenHat,
    /// Mid tom, GM 47 (`mt`).
    MidTom,
    /// High tom, GM 50 (`ht`).
    HighTom,
    /// Cowbell, GM 56 (`cb`).
    Cowbell,
}

impl Kind {
    /// Every drum, in tag order.
    pub const ALL: [Kind; 10] = [
        Kind::Kick,
        Kind::Rim,
        Kind::Snare,
        Kind::Clap,
        Kind::ClosedHat,
        Kind::LowTom,
        Kind::OpenHat,
        Kind::MidTom,
        Kind::HighTom,
        Kind::Cowbell,
    ];

    /// The GM percussion number that plays this drum (and the pattern notation's name
    /// for it stands for).
    pub fn key(self) -> u8 {
        match self {
            Kind::Kick => 36,
            Kind::Rim => 37,
            Kind::Snare => 38,
            Kind::Clap => 39,
            Kind::ClosedHat => 42,
            Kind::LowTom => 45,
            Kind::OpenHat => 46,
            Kind::MidTom => 47,
            Kind::HighTom => 50,
            Kind::Cowbell => 56,
        }
    }

    /// The pattern notation's name of the drum.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kick => "bd",
            Kind::Rim => "rim",
            Kind::Snare => "sn",
            Kind::Clap => "cp",
            Kind::ClosedHat => "hh",
            Kind::LowTom => "lt",
            Kind::OpenHat => "oh",
            Kind::MidTom => "mt",
            Kind::HighTom => "ht",
            Kind::Cowbell => "cb",
        }
    }

    fn tag(self) -> u8 {
        Kind::ALL.iter().position(|&k| k == self).unwrap_or(0) as u8
    }

    fn from_tag(tag: u8) -> Kind {
        Kind::ALL
            .get(usize::from(tag))
            .copied()
            .unwrap_or(Kind::Kick)
    }
}

/// The drum the GM percussion map puts nearest to `key` (rounded to a whole number):
/// the ten drums on their own numbers, every other number of the map (35–81) on the drum
/// of its family, below 35 the kick, above 81 the open hat. A pure table, so a kit maps
/// the same everywhere.
pub fn kind_for_key(key: f32) -> Kind {
    use Kind::*;
    // GM percussion 35..=81, one entry each.
    const MAP: [Kind; 47] = [
        Kick,      // 35 acoustic bass drum
        Kick,      // 36 bass drum 1
        Rim,       // 37 side stick
        Snare,     // 38 acoustic snare
        Clap,      // 39 hand clap
        Snare,     // 40 electric snare
        LowTom,    // 41 low floor tom
        ClosedHat, // 42 closed hi-hat
        LowTom,    // 43 high floor tom
        ClosedHat, // 44 pedal hi-hat
        LowTom,    // 45 low tom
        OpenHat,   // 46 open hi-hat
        MidTom,    // 47 low-mid tom
        MidTom,    // 48 hi-mid tom
        OpenHat,   // 49 crash cymbal 1
        HighTom,   // 50 high tom
        OpenHat,   // 51 ride cymbal 1
        OpenHat,   // 52 chinese cymbal
        Cowbell,   // 53 ride bell
        ClosedHat, // 54 tambourine
        OpenHat,   // 55 splash cymbal
        Cowbell,   // 56 cowbell
        OpenHat,   // 57 crash cymbal 2
        Rim,       // 58 vibraslap
        OpenHat,   // 59 ride cymbal 2
        HighTom,   // 60 hi bongo
        MidTom,    // 61 low bongo
        HighTom,   // 62 mute hi conga
        HighTom,   // 63 open hi conga
        MidTom,    // 64 low conga
        HighTom,   // 65 high timbale
        MidTom,    // 66 low timbale
        Cowbell,   // 67 high agogo
        Cowbell,   // 68 low agogo
        ClosedHat, // 69 cabasa
        ClosedHat, // 70 maracas
        Rim,       // 71 short whistle
        Rim,       // 72 long whistle
        ClosedHat, // 73 short guiro
        ClosedHat, // 74 long guiro
        Rim,       // 75 claves
        Rim,       // 76 hi wood block
        Rim,       // 77 low wood block
        Cowbell,   // 78 mute cuica
        Cowbell,   // 79 open cuica
        ClosedHat, // 80 mute triangle
        OpenHat,   // 81 open triangle
    ];
    let k = sanitize(key).round();
    if k < 35.0 {
        Kick
    } else if k > 81.0 {
        OpenHat
    } else {
        MAP[(k as usize - 35).min(MAP.len() - 1)]
    }
}

/// How far below 0 a decay aims, so it reaches exact 0 in a finite time (-80 dB): the
/// same curve as `ar`'s exponential release.
const UNDERSHOOT: f64 = 1e-4;

/// The 808's six hi-hat (and, the last two, cowbell) square-wave partials, Hz.
const METAL: [f64; 6] = [205.3, 304.4, 369.6, 522.7, 540.0, 800.0];

/// The largest balance gain of a drum (the clap's), the bound of a loaded amplitude.
const MAX_BALANCE: f64 = 2.0;

/// Gain into the hats' soft clip.
const HAT_DRIVE: f64 = 40.0;

/// Time constant of the retrigger's fall of the last sample to 0, seconds.
const CARRY_SECONDS: f64 = 0.000_7;

/// Below this the retrigger carry is exactly 0 (-140 dB: inaudible, and it ends).
const CARRY_FLOOR: f32 = 1e-7;

/// An exponential decay from 1 that ends in exact 0 after a set time (aiming at
/// -[`UNDERSHOOT`], like an RC discharge that a comparator stops).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Decay {
    level: f64,
    coef: f64,
}

impl Decay {
    /// Starts at 1, ending after `samples`.
    fn start(&mut self, samples: f64) {
        self.level = 1.0;
        self.coef = (UNDERSHOOT / (1.0 + UNDERSHOOT)).powf(1.0 / samples.max(1.0));
    }

    /// The next level (exactly 0 once ended).
    #[inline]
    fn tick(&mut self) -> f64 {
        if self.level > 0.0 {
            self.level = -UNDERSHOOT + (self.level + UNDERSHOOT) * self.coef;
            if self.level <= 0.0 {
                self.level = 0.0;
            }
        }
        self.level
    }

    fn save(&self, w: &mut StateWriter<'_>) {
        w.put_f64(self.level);
        w.put_f64(self.coef);
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.level = finite(r, "drum envelope")?.clamp(0.0, 1.0);
        self.coef = finite(r, "drum envelope")?.clamp(0.0, 1.0);
        Ok(())
    }
}

/// A state-variable filter (the trapezoidal "TPT" form after Zavalishin and Simper):
/// stable at any coefficient, cheap, with low-, band- and high-pass from one state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Svf {
    ic1: f64,
    ic2: f64,
    a1: f64,
    a2: f64,
    a3: f64,
    k: f64,
}

/// The three outputs of one [`Svf`] step; the band-pass is normalized to unity gain at
/// its centre.
#[derive(Debug, Clone, Copy)]
struct SvfOut {
    low: f64,
    band: f64,
    high: f64,
}

impl Svf {
    /// Cleared, tuned to `hz` (held below 0.45 of the sample rate) with quality `q`.
    fn tune(&mut self, hz: f64, q: f64, sample_rate: f64) {
        let g = (std::f64::consts::PI * hz.clamp(10.0, 0.45 * sample_rate) / sample_rate).tan();
        self.k = 1.0 / q;
        self.a1 = 1.0 / (1.0 + g * (g + self.k));
        self.a2 = g * self.a1;
        self.a3 = g * self.a2;
        self.ic1 = 0.0;
        self.ic2 = 0.0;
    }

    #[inline]
    fn tick(&mut self, x: f64) -> SvfOut {
        let v3 = x - self.ic2;
        let v1 = self.a1 * self.ic1 + self.a2 * v3;
        let v2 = self.ic2 + self.a2 * self.ic1 + self.a3 * v3;
        self.ic1 = flush64(2.0 * v1 - self.ic1);
        self.ic2 = flush64(2.0 * v2 - self.ic2);
        SvfOut {
            low: v2,
            band: self.k * v1,
            high: x - self.k * v1 - v2,
        }
    }

    fn save(&self, w: &mut StateWriter<'_>) {
        for v in [self.ic1, self.ic2, self.a1, self.a2, self.a3, self.k] {
            w.put_f64(v);
        }
    }

    fn load(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        for v in [
            &mut self.ic1,
            &mut self.ic2,
            &mut self.a1,
            &mut self.a2,
            &mut self.a3,
            &mut self.k,
        ] {
            *v = finite(r, "drum filter")?;
        }
        Ok(())
    }
}

/// Reads an f64 that must be finite.
fn finite(r: &mut StateReader<'_>, what: &'static str) -> Result<f64, StateError> {
    let offset = r.position();
    let v = r.get_f64()?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(StateError::InvalidValue { what, offset })
    }
}

/// PolyBLEP correction of a unit step at phase 0, for a phase `t` in cycles (0..1)
/// advancing `dt` per sample: takes the aliasing edge off the squares.
#[inline]
fn blep(t: f64, dt: f64) -> f64 {
    if t < dt {
        let x = t / dt;
        x + x - x * x - 1.0
    } else if t > 1.0 - dt {
        let x = (t - 1.0) / dt;
        x * x + x + x + 1.0
    } else {
        0.0
    }
}

/// A band-limited square (±1) at phase `t` with increment `dt`.
#[inline]
fn square(t: f64, dt: f64) -> f64 {
    let naive = if t < 0.5 { 1.0 } else { -1.0 };
    let half = if t < 0.5 { t + 0.5 } else { t - 0.5 };
    naive + blep(t, dt) - blep(half, dt)
}

/// Advances phase `p` (cycles) by `dt`, wrapping to 0..1.
#[inline]
fn advance(p: &mut f64, dt: f64) {
    *p += dt;
    if *p >= 1.0 {
        *p -= p.floor();
    }
}

#[inline]
fn sin_cycles(p: f64) -> f64 {
    (std::f64::consts::TAU * p).sin()
}

/// The drum module: its parameters, the gate, and the state of the hit that sounds.
#[derive(Debug, Clone)]
pub struct Drum {
    params: Params,
    sample_rate: f64,
    seed: u64,
    rng: SplitMix64,
    /// The drum of the hit sounding (or last sounded).
    kind: Kind,
    /// True from a hit until its sound has ended.
    active: bool,
    /// The module's own gate (set by an instrument).
    gate: bool,
    /// Whether the combined gate (own or input) was high on the last sample.
    high: bool,
    /// Amplitude of the hit: the drum's balance times velocity.
    amp: f64,
    /// Samples since the hit.
    t: u32,
    /// Length of the hit's raised-cosine onset, in samples (0: none): a sine struck at
    /// its crest (no DC) rises over it without a click.
    attack: u32,
    /// The hit's `decay` factor (read at the hit).
    decay: f64,
    /// Oscillator base frequencies (tune applied) and phases, in cycles.
    freq: [f64; 6],
    phase: [f64; 6],
    /// Pitch sweeps: the level of each (decaying towards 0) and its per-sample factor.
    sweep: [f64; 2],
    sweep_coef: [f64; 2],
    /// Amplitude envelopes: the body and a second part (noise, tail).
    env: [Decay; 2],
    filter: [Svf; 2],
    /// The last sample output, and the part of it still falling to 0 after a retrigger.
    last: f32,
    carry: f32,
    carry_coef: f32,
}

impl Drum {
    /// A silent drum with its noise fixed by `seed`.
    pub fn new(sample_rate: f32, seed: u64) -> Self {
        let sr = f64::from(sane_sample_rate(sample_rate));
        Drum {
            params: Params::new(&SPEC, sample_rate).instant(&[TUNE, DECAY]),
            sample_rate: sr,
            seed,
            rng: SplitMix64::new(seed),
            kind: Kind::Kick,
            active: false,
            gate: false,
            high: false,
            amp: 0.0,
            t: 0,
            attack: 0,
            decay: 1.0,
            freq: [0.0; 6],
            phase: [0.0; 6],
            sweep: [0.0; 2],
            sweep_coef: [0.0; 2],
            env: [Decay::default(); 2],
            filter: [Svf::default(); 2],
            last: 0.0,
            carry: 0.0,
            carry_coef: (-1.0 / (CARRY_SECONDS * sr)).exp() as f32,
        }
    }

    /// The drum of the hit sounding, or last sounded.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Samples in `ms` milliseconds.
    fn samples(&self, ms: f64) -> f64 {
        ms * 1e-3 * self.sample_rate
    }

    /// Starts envelope `i` ending after `ms` times the hit's decay.
    fn start_env(&mut self, i: usize, ms: f64) {
        let n = self.samples(ms * self.decay);
        self.env[i].start(n);
    }

    /// Starts pitch sweep `i` at 1, falling with time constant `ms`.
    fn start_sweep(&mut self, i: usize, ms: f64) {
        self.sweep[i] = 1.0;
        self.sweep_coef[i] = (-1.0 / self.samples(ms).max(1.0)).exp();
    }

    /// Clap: the burst spacing, in samples.
    fn clap_period(&self) -> u32 {
        self.samples(10.0).round().max(1.0) as u32
    }

    /// A hit of the drum `key` picks at `velocity` (0: full).
    fn strike(&mut self, key: f32, velocity: f32) {
        let kind = kind_for_key(key);
        let velocity = f64::from(sanitize(velocity));
        let velocity = if velocity > 0.0 {
            velocity.min(1.0)
        } else {
            1.0
        };
        let ratio = (f64::from(self.params[TUNE].target()) / 12.0).exp2();
        self.decay = f64::from(self.params[DECAY].target());
        // What sounded falls to 0 underneath the new hit.
        self.carry = self.last;
        self.kind = kind;
        self.active = true;
        self.t = 0;
        self.attack = 0;
        self.phase = [0.0; 6];
        self.freq = [0.0; 6];
        self.sweep = [0.0; 2];
        self.env = [Decay::default(); 2];
        let sr = self.sample_rate;
        // Balance: each drum's peak gain, chosen so the kit sits together (kick and
        // snare loudest, hats and rim quieter; see the test that measures them).
        let balance = match kind {
            Kind::Kick => {
                self.freq[0] = 50.0 * ratio;
                self.phase[0] = 0.25;
                self.attack = self.samples(2.0) as u32;
                self.start_sweep(0, 25.0);
                self.start_sweep(1, 1.0);
                self.start_env(0, 500.0);
                0.75
            }
            Kind::Rim => {
                self.freq[0] = 1_700.0 * ratio;
                self.freq[1] = 480.0 * ratio;
                self.filter[0].tune(5_000.0, 0.7, sr);
                self.start_env(0, 70.0);
                self.start_env(1, 6.0);
                0.7
            }
            Kind::Snare => {
                self.freq[0] = 180.0 * ratio;
                self.freq[1] = 330.0 * ratio;
                self.phase = [0.25; 6];
                self.attack = self.samples(1.0) as u32;
                self.start_sweep(0, 8.0);
                self.filter[0].tune(3_000.0 * ratio, 0.7, sr);
                self.filter[1].tune(8_000.0 * ratio, 0.7, sr);
                self.start_env(0, 250.0);
                self.start_env(1, 300.0);
                0.6
            }
            Kind::Clap => {
                self.filter[0].tune(1_250.0 * ratio, 1.8, sr);
                // (The bursts keep their length whatever the decay.)
                self.start_env(0, 9.0 / self.decay);
                MAX_BALANCE
            }
            Kind::ClosedHat | Kind::OpenHat => {
                for (f, m) in self.freq.iter_mut().zip(METAL) {
                    *f = m * ratio;
                }
                let closed = kind == Kind::ClosedHat;
                let (band, high, ms) = if closed {
                    (10_000.0, 9_000.0, 150.0)
                } else {
                    (7_000.0, 5_000.0, 600.0)
                };
                self.filter[0].tune(band, 1.2, sr);
                self.filter[1].tune(high, 0.7, sr);
                self.start_env(0, ms);
                if closed {
                    0.6
                } else {
                    0.35
                }
            }
            Kind::LowTom | Kind::MidTom | Kind::HighTom => {
                let (hz, ms) = match kind {
                    Kind::LowTom => (100.0, 650.0),
                    Kind::MidTom => (145.0, 550.0),
                    _ => (210.0, 450.0),
                };
                self.freq[0] = hz * ratio;
                self.phase[0] = 0.25;
                self.attack = self.samples(1.5) as u32;
                self.start_sweep(0, 40.0);
                self.filter[0].tune(1_500.0, 0.7, sr);
                self.start_env(0, ms);
                self.start_env(1, 40.0);
                0.45
            }
            Kind::Cowbell => {
                self.freq[0] = 540.0 * ratio;
                self.freq[1] = 800.0 * ratio;
                self.filter[0].tune(1_000.0, 1.0, sr);
                self.start_env(0, 70.0);
                self.start_env(1, 450.0);
                0.6
            }
        };
        self.amp = balance * velocity;
    }

    /// One sample of the hit sounding (before `amp` and `level`).
    #[inline]
    fn tick(&mut self) -> f64 {
        let inv = 1.0 / self.sample_rate;
        let t = self.t;
        self.t = self.t.saturating_add(1);
        let y = match self.kind {
            Kind::Kick => {
                let (p, q) = (self.sweep[0], self.sweep[1]);
                self.sweep[0] = flush64(p * self.sweep_coef[0]);
                self.sweep[1] = flush64(q * self.sweep_coef[1]);
                // 160 Hz falling to 50, plus a 1 ms sweep from 400 Hz: the click.
                let hz = self.freq[0] * (1.0 + 2.2 * p) + 400.0 * q;
                let y = sin_cycles(self.phase[0]);
                advance(&mut self.phase[0], hz * inv);
                y * self.env[0].tick()
            }
            Kind::Rim => {
                let body =
                    0.65 * sin_cycles(self.phase[0]) + 0.35 * sin_cycles(self.phase[1]);
                advance(&mut self.phase[0], self.freq[0] * inv);
                advance(&mut self.phase[1], self.freq[1] * inv);
                let tick = self.filter[0].tick(f64::from(self.rng.next_bipolar())).high;
                body * self.env[0].tick() + 0.25 * tick * self.env[1].tick()
            }
            Kind::Snare => {
                let p = self.sweep[0];
                self.sweep[0] = flush64(p * self.sweep_coef[0]);
                let bend = 1.0 + 0.25 * p;
                let body =
                    0.6 * sin_cycles(self.phase[0]) + 0.4 * sin_cycles(self.phase[1]);
                advance(&mut self.phase[0], self.freq[0] * bend * inv);
                advance(&mut self.phase[1], self.freq[1] * bend * inv);
                let band = self.filter[0].tick(f64::from(self.rng.next_bipolar())).band;
                let noise = self.filter[1].tick(band).low;
                0.8 * body * self.env[0].tick() + 0.9 * noise * self.env[1].tick()
            }
            Kind::Clap => {
                // Three bursts 10 ms apart, the fourth the tail.
                let period = self.clap_period();
                if t == period || t == 2 * period {
                    self.start_env(0, 9.0 / self.decay);
                } else if t == 3 * period {
                    self.start_env(1, 300.0);
                }
                let noise = self.filter[0].tick(f64::from(self.rng.next_bipolar())).band;
                noise * (self.env[0].tick() + self.env[1].tick())
            }
            Kind::ClosedHat | Kind::OpenHat => {
                let mut metal = 0.0;
                for (p, &f) in self.phase.iter_mut().zip(&self.freq) {
                    let dt = (f * inv).min(0.5);
                    metal += square(*p, dt);
                    advance(p, dt);
                }
                // The band-passed edges of six squares are sparse spikes; driving them
                // into a soft clip makes them the dense sizzle of a hat (and keeps the
                // peaks in hand), the high-pass after takes the clip's low products.
                let band = self.filter[0].tick(metal * (1.0 / 6.0)).band;
                let high = self.filter[1].tick((HAT_DRIVE * band).tanh()).high;
                high * self.env[0].tick()
            }
            Kind::LowTom | Kind::MidTom | Kind::HighTom => {
                let p = self.sweep[0];
                self.sweep[0] = flush64(p * self.sweep_coef[0]);
                let y = sin_cycles(self.phase[0]);
                advance(&mut self.phase[0], self.freq[0] * (1.0 + 0.5 * p) * inv);
                let stick = self.filter[0].tick(f64::from(self.rng.next_bipolar())).low;
                y * self.env[0].tick() + 0.15 * stick * self.env[1].tick()
            }
            Kind::Cowbell => {
                let mut metal = 0.0;
                for i in 0..2 {
                    let dt = (self.freq[i] * inv).min(0.5);
                    metal += square(self.phase[i], dt);
                    advance(&mut self.phase[i], dt);
                }
                let band = self.filter[0].tick(0.5 * metal).band;
                band * (0.6 * self.env[0].tick() + 0.4 * self.env[1].tick())
            }
        };
        let pending = self.kind == Kind::Clap && t <= 3 * self.clap_period();
        if !pending && self.env[0].level == 0.0 && self.env[1].level == 0.0 {
            self.active = false;
        }
        if t < self.attack {
            let x = (f64::from(t) + 0.5) / f64::from(self.attack);
            y * (0.5 - 0.5 * (std::f64::consts::PI * x).cos())
        } else {
            y
        }
    }
}

impl Module for Drum {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    /// Opening the gate strikes on the next sample rendered (unless the `gate` input is
    /// already high); closing it changes nothing: a drum plays to its end.
    fn set_gate(&mut self, on: bool) {
        self.gate = on;
    }

    /// Sounding while a hit rings, while a retrigger's carry falls, and between a gate
    /// opening and the sample that strikes.
    fn is_sounding(&self) -> bool {
        self.active || self.carry != 0.0 || (self.gate && !self.high)
    }

    fn process(&mut self, inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let Some(out) = outputs.get_mut(0) else {
            return;
        };
        let (key, gate, velocity) = (
            input(inputs, KEY_IN),
            input(inputs, GATE_IN),
            input(inputs, VELOCITY_IN),
        );
        for (i, o) in out.iter_mut().enumerate() {
            let high = self.gate || gate.get(i).is_some_and(|&g| g >= 0.5);
            if high && !self.high {
                let k = key.get(i).copied().unwrap_or(0.0);
                let v = velocity.get(i).copied().unwrap_or(0.0);
                self.strike(k, v);
            }
            self.high = high;
            let level = self.params[LEVEL].next();
            let y = if self.active {
                (self.tick() * self.amp) as f32 * level
            } else {
                0.0
            };
            if self.carry != 0.0 {
                self.carry *= self.carry_coef;
                if self.carry.abs() < CARRY_FLOOR {
                    self.carry = 0.0;
                }
            }
            let y = y + self.carry;
            self.last = y;
            *o = y;
        }
    }

    fn clear(&mut self) {
        let fresh = Drum::new(self.sample_rate as f32, self.seed);
        let params = self.params.clone();
        *self = Drum { params, ..fresh };
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_u64(self.rng.state());
        w.put_u8(self.kind.tag());
        w.put_bool(self.active);
        w.put_bool(self.gate);
        w.put_bool(self.high);
        w.put_f64(self.amp);
        w.put_u32(self.t);
        w.put_u32(self.attack);
        w.put_f64(self.decay);
        for v in self.freq.iter().chain(&self.phase) {
            w.put_f64(*v);
        }
        for v in self.sweep.iter().chain(&self.sweep_coef) {
            w.put_f64(*v);
        }
        for e in &self.env {
            e.save(w);
        }
        for f in &self.filter {
            f.save(w);
        }
        w.put_f32(self.last);
        w.put_f32(self.carry);
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.rng.set_state(r.get_u64()?);
        self.kind = Kind::from_tag(load_tag(r, Kind::ALL.len() as u8, "drum kind")?);
        self.active = r.get_bool()?;
        self.gate = r.get_bool()?;
        self.high = r.get_bool()?;
        self.amp = finite(r, "drum amplitude")?.clamp(0.0, MAX_BALANCE);
        self.t = r.get_u32()?;
        self.attack = r.get_u32()?;
        self.decay = finite(r, "drum decay")?.clamp(0.25, 4.0);
        for v in self.freq.iter_mut() {
            *v = finite(r, "drum frequency")?.clamp(0.0, 1e6);
        }
        for v in self.phase.iter_mut() {
            *v = finite(r, "drum phase")?.rem_euclid(1.0);
        }
        for v in self.sweep.iter_mut().chain(self.sweep_coef.iter_mut()) {
            *v = finite(r, "drum sweep")?.clamp(0.0, 1.0);
        }
        for e in &mut self.env {
            e.load(r)?;
        }
        for f in &mut self.filter {
            f.load(r)?;
        }
        for v in [&mut self.last, &mut self.carry] {
            let offset = r.position();
            let x = r.get_f32()?;
            if !x.is_finite() {
                return Err(StateError::InvalidValue {
                    what: "drum output",
                    offset,
                });
            }
            *v = x;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::bandlimited::fft_in_place;
    use crate::modules::common::testing::{render, snapshot, SR};

    /// One hit of `kind` at MIDI velocity `velocity` (gate rising on the first sample),
    /// rendered for `seconds`.
    fn hit(kind: Kind, velocity: f32, seconds: f32, decay: f32) -> (Drum, Vec<f32>) {
        let mut d = Drum::new(SR, 7);
        d.set_param(DECAY, decay);
        let n = (seconds * SR) as usize;
        let key = vec![f32::from(kind.key()); n];
        let gate = vec![1.0; n];
        let velocity = vec![velocity / 127.0; n];
        let out = render(&mut d, &[key, gate, velocity], 1).remove(0);
        (d, out)
    }

    fn db(x: f64) -> f64 {
        20.0 * x.max(1e-30).log10()
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Magnitude spectrum of `x` zero-padded to 65536 points: (bin width in Hz, |X|).
    fn spectrum(x: &[f32]) -> (f64, Vec<f64>) {
        let n = 1 << 16;
        let mut re: Vec<f64> = x.iter().take(n).map(|v| f64::from(*v)).collect();
        re.resize(n, 0.0);
        let mut im = vec![0.0; n];
        fft_in_place(&mut re, &mut im, false);
        let mag = (0..n / 2).map(|k| re[k].hypot(im[k])).collect();
        (f64::from(SR) / n as f64, mag)
    }

    /// Spectral centroid (magnitude-weighted mean frequency, the common definition),
    /// Hz; with `power`, weighted by power instead (what the ear's loudness follows
    /// more closely, and less swayed by quiet broadband skirts).
    fn centroid_by(x: &[f32], power: bool) -> f64 {
        let (hz, mag) = spectrum(x);
        let w = |m: f64| if power { m * m } else { m };
        let total: f64 = mag.iter().map(|m| w(*m)).sum();
        mag.iter()
            .enumerate()
            .map(|(k, m)| k as f64 * hz * w(*m))
            .sum::<f64>()
            / total
    }

    fn centroid(x: &[f32]) -> f64 {
        centroid_by(x, false)
    }

    /// Energy per octave band (centres 31 Hz .. 16 kHz), in dB relative to the total,
    /// floored at -50 dB (so bands nobody hears do not count as differences).
    fn bands(x: &[f32]) -> Vec<f64> {
        let (hz, mag) = spectrum(x);
        let total: f64 = mag.iter().map(|m| m * m).sum();
        (0..10)
            .map(|b| {
                let centre = 31.25 * f64::from(1u32 << b);
                let (lo, hi) = (centre / 2f64.sqrt(), centre * 2f64.sqrt());
                let e: f64 = mag
                    .iter()
                    .enumerate()
                    .filter(|(k, _)| (lo..hi).contains(&(*k as f64 * hz)))
                    .map(|(_, m)| m * m)
                    .sum();
                10.0 * (e / total).max(1e-5).log10()
            })
            .collect()
    }

    /// Last sample that is not exactly 0, and the first after which the level stays
    /// 60 dB under the peak.
    fn ends(x: &[f32]) -> (usize, usize) {
        let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let end = x.iter().rposition(|v| *v != 0.0).map_or(0, |i| i + 1);
        let quiet = x.iter().rposition(|v| v.abs() > peak * 1e-3).map_or(0, |i| i + 1);
        (end, quiet)
    }

    #[test]
    fn the_gm_numbers_pick_their_drums() {
        for kind in Kind::ALL {
            assert_eq!(kind_for_key(f32::from(kind.key())), kind, "{}", kind.name());
            assert_eq!(Kind::from_tag(kind.tag()), kind);
        }
        // The same numbers as the pattern notation's drum names.
        let names: Vec<(&str, u8)> = Kind::ALL.iter().map(|k| (k.name(), k.key())).collect();
        assert_eq!(
            names,
            [
                ("bd", 36),
                ("rim", 37),
                ("sn", 38),
                ("cp", 39),
                ("hh", 42),
                ("lt", 45),
                ("oh", 46),
                ("mt", 47),
                ("ht", 50),
                ("cb", 56)
            ]
        );
        assert_eq!(kind_for_key(35.0), Kind::Kick);
        assert_eq!(kind_for_key(40.0), Kind::Snare);
        assert_eq!(kind_for_key(49.0), Kind::OpenHat);
        assert_eq!(kind_for_key(36.4), Kind::Kick);
        assert_eq!(kind_for_key(37.6), Kind::Snare);
        assert_eq!(kind_for_key(0.0), Kind::Kick);
        assert_eq!(kind_for_key(-1e30), Kind::Kick);
        assert_eq!(kind_for_key(f32::NAN), Kind::Kick);
        assert_eq!(kind_for_key(127.0), Kind::OpenHat);
        assert_eq!(kind_for_key(1e30), Kind::OpenHat);
    }

    /// The measurements the issue asks of every drum, printed as a table (run with
    /// `--nocapture`): clean, balanced, ending, and each its own sound.
    #[test]
    fn every_drum_is_clean_balanced_and_distinct() {
        let mut profiles = Vec::new();
        println!(
            "{:<4} {:>4} {:>9} {:>9} {:>11} {:>10} {:>10} {:>9} {:>9}",
            "drum", "vel", "peak dB", "mean dB", "rms200 dB", "centroid", "(power)", "-60dB ms", "end ms"
        );
        for kind in Kind::ALL {
            for velocity in [100.0, 127.0] {
                let (d, x) = hit(kind, velocity, 1.0, 1.0);
                let name = kind.name();
                assert!(x.iter().all(|v| v.is_finite()), "{name}: finite");
                let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                let mean = x.iter().map(|v| f64::from(*v)).sum::<f64>() / x.len() as f64;
                let rms200 = db(rms(&x[..(0.2 * SR) as usize]));
                let c = centroid(&x);
                let (end, quiet) = ends(&x);
                let ms = |i: usize| i as f64 * 1000.0 / f64::from(SR);
                println!(
                    "{name:<4} {velocity:>4} {:>9.1} {:>9.1} {rms200:>11.1} {c:>10.0} {:>10.0} {:>9.0} {:>9.0}",
                    db(f64::from(peak)),
                    db(mean.abs()),
                    centroid_by(&x, true),
                    ms(quiet),
                    ms(end),
                );
                if std::env::var("DRUM_SURVEY").is_ok() {
                    continue;
                }
                assert!(peak <= 1.0, "{name} at {velocity}: peak {peak}");
                assert!(db(mean.abs()) < -60.0, "{name} at {velocity}: DC {mean}");
                assert!(
                    (-30.0..=-6.0).contains(&rms200),
                    "{name} at {velocity}: RMS of the first 200 ms {rms200:.1} dBFS"
                );
                assert!(end < x.len(), "{name}: ends in exact silence within 1 s");
                assert!(!d.is_sounding(), "{name}: idle once ended");
                match kind {
                    Kind::Kick => assert!(c < 200.0, "kick centroid {c:.0} Hz"),
                    Kind::ClosedHat | Kind::OpenHat => {
                        assert!(c > 5_000.0, "{name} centroid {c:.0} Hz")
                    }
                    _ => {}
                }
                if velocity == 127.0 {
                    profiles.push((name, c, bands(&x)));
                }
            }
        }
        // Pairwise distinct: centroids at least 10 % apart, or octave-band profiles
        // differing by 6 dB RMS over the bands.
        for (i, (a, ca, pa)) in profiles.iter().enumerate() {
            for (b, cb, pb) in &profiles[i + 1..] {
                let ratio = ca.max(*cb) / ca.min(*cb);
                let diff = (pa.iter().zip(pb).map(|(x, y)| (x - y).powi(2)).sum::<f64>()
                    / pa.len() as f64)
                    .sqrt();
                println!("{a:>4} vs {b:<4} centroid ratio {ratio:5.2}, band profile {diff:5.1} dB");
                assert!(
                    ratio > 1.1 || diff > 6.0,
                    "{a} and {b} sound alike: centroids {ca:.0} and {cb:.0} Hz, bands {diff:.1} dB apart"
                );
            }
        }
    }

    #[test]
    fn long_decays_still_end_in_exact_silence() {
        for kind in Kind::ALL {
            let (d, x) = hit(kind, 127.0, 3.0, 4.0);
            let (end, _) = ends(&x);
            assert!(end > 0 && end < x.len(), "{}: ends at {end}", kind.name());
            assert!(!d.is_sounding());
        }
    }

    #[test]
    fn velocity_scales_and_unconnected_velocity_is_full() {
        let (_, loud) = hit(Kind::Snare, 127.0, 0.3, 1.0);
        let (_, soft) = hit(Kind::Snare, 63.5, 0.3, 1.0);
        let ratio = rms(&loud) / rms(&soft);
        assert!((ratio - 2.0).abs() < 1e-3, "{ratio}");
        let (_, zero) = hit(Kind::Snare, 0.0, 0.3, 1.0);
        assert_eq!(zero, loud);
    }

    #[test]
    fn renders_are_deterministic_and_snapshots_continue_bit_for_bit() {
        for kind in Kind::ALL {
            let (_, a) = hit(kind, 100.0, 0.5, 1.0);
            let (_, b) = hit(kind, 100.0, 0.5, 1.0);
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
            // Snapshot 15 ms into the hit (mid-burst for the clap), continue in a spare.
            let n = 48_000;
            let key = vec![f32::from(kind.key()); n];
            let ins = [key, vec![1.0; n], vec![0.8; n]];
            let cut = 720;
            let head: Vec<Vec<f32>> = ins.iter().map(|v| v[..cut].to_vec()).collect();
            let tail: Vec<Vec<f32>> = ins.iter().map(|v| v[cut..].to_vec()).collect();
            let mut d = Drum::new(SR, 3);
            let _ = render(&mut d, &head, 1);
            let mut spare = Drum::new(SR, 99);
            spare
                .load_state(&mut StateReader::new(&snapshot(&d)))
                .unwrap();
            let (x, y) = (render(&mut d, &tail, 1), render(&mut spare, &tail, 1));
            assert!(
                x[0].iter().zip(&y[0]).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{}",
                kind.name()
            );
        }
    }

    #[test]
    fn a_retrigger_does_not_jump() {
        // A kick, struck again 30 ms in (near the top of a cycle), then a hat on it.
        let n = 9_600;
        let key: Vec<f32> = (0..n).map(|i| if i < 4_000 { 36.0 } else { 42.0 }).collect();
        let gate: Vec<f32> = (0..n)
            .map(|i| if (1_439..1_440).contains(&i) || (3_999..4_000).contains(&i) { 0.0 } else { 1.0 })
            .collect();
        let mut d = Drum::new(SR, 1);
        let x = render(&mut d, &[key, gate, vec![1.0; n]], 1).remove(0);
        let step = |r: std::ops::Range<usize>| {
            x[r].windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()))
        };
        let first = step(1..1_400);
        assert!(x[1_438].abs() > 0.15, "the kick rings when struck again: {}", x[1_438]);
        let retrigger = step(1_430..1_500);
        // The new kick's own start, plus the old one's last value falling away.
        assert!(retrigger <= 1.25 * first, "{retrigger} against {first}");
        assert!((x[1_440] - x[1_438]).abs() < 0.2 * x[1_438].abs());
        // The hat's own edges are sharp, but the kick under it falls away smoothly.
        assert!((x[4_000] - x[3_998]).abs() < 0.25, "{} {}", x[3_998], x[4_000]);
    }

    #[test]
    fn the_module_gate_strikes_without_a_gate_input_and_closing_it_cuts_nothing() {
        let mut a = Drum::new(SR, 5);
        a.set_gate(true);
        assert!(a.is_sounding(), "pending strike");
        let n = 24_000;
        let key = vec![38.0; n];
        let held = render(&mut a, &[key.clone(), vec![0.0; n], vec![1.0; n]], 1).remove(0);
        let mut b = Drum::new(SR, 5);
        b.set_gate(true);
        let mut short = render(&mut b, &[key[..64].to_vec(), vec![0.0; 64], vec![1.0; 64]], 1)
            .remove(0);
        b.set_gate(false);
        short.extend(render(&mut b, &[key[64..].to_vec(), vec![0.0; n - 64], vec![1.0; n - 64]], 1).remove(0));
        assert!(held.iter().any(|v| *v != 0.0));
        assert_eq!(held, short);
    }

    /// The generic click test changes parameters after every drum has ended (nothing to
    /// click); here they change while an open hat rings: tune and decay wait for the next
    /// hit (the ringing one is untouched), level glides.
    #[test]
    fn parameter_changes_while_a_drum_rings_do_not_click() {
        let n = 24_000;
        let ins = [vec![46.0; n], vec![1.0; n], vec![1.0; n]];
        let (head, tail): (Vec<Vec<f32>>, Vec<Vec<f32>>) = ins
            .iter()
            .map(|v| (v[..4_800].to_vec(), v[4_800..].to_vec()))
            .unzip();
        let run = |change: &dyn Fn(&mut Drum)| {
            let mut d = Drum::new(SR, 2);
            let mut out = render(&mut d, &head, 1).remove(0);
            change(&mut d);
            out.extend(render(&mut d, &tail, 1).remove(0));
            out
        };
        let plain = run(&|_| {});
        assert_eq!(run(&|d| d.set_param(TUNE, 24.0)), plain);
        assert_eq!(run(&|d| d.set_param(DECAY, 0.25)), plain);
        let quiet = run(&|d| d.set_param(LEVEL, 0.0));
        // The gain the change applied, sample by sample (where the hat is not near 0).
        let gains: Vec<(usize, f32)> = (4_800..5_400)
            .filter(|&i| plain[i].abs() > 1e-3)
            .map(|i| (i, quiet[i] / plain[i]))
            .collect();
        assert!(gains.len() > 300);
        for w in gains.windows(2) {
            let ((i, a), (j, b)) = (w[0], w[1]);
            let per_sample = (a - b) / (j - i) as f32;
            // A 10 ms glide: 1/480 per sample.
            assert!((-1e-4..0.0022).contains(&per_sample), "{i}: {per_sample}");
        }
        assert!(quiet[4_800 + 480..].iter().all(|v| *v == 0.0));
    }
}
