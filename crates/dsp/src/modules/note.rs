//! `note`: a voice's note, as signals: the source module of an instrument's voice.
//!
//! An instrument (see [`crate::patch`]) renders its sub-graph once per voice; the voice
//! allocator gives each voice a note by setting this module's parameters (`pitch`,
//! `velocity`, and the per-note expression `bend`, `pressure`, `timbre`) and opening its
//! gate. The module turns them into control signals the rest of the voice reads: `freq`
//! (Hz, bend included) for an oscillator's `fm` input (with the oscillator's own `freq`
//! at 0), `velocity` for a VCA's `cv`, `gate`, `pressure`, `timbre` for anything
//! else, and `key`, the note number itself (bend included) for modules that choose by
//! note rather than play a frequency: a `drum` picks its drum from it, as a MIDI drum
//! machine does. `key` comes last so the older ports keep their indices. Keeping the note in parameters means it is saved, restored and carried like any
//! other module state, with nothing special in snapshots.
//!
//! Pitch changes while the gate is open glide over `glide` milliseconds, evenly in
//! pitch; a note started on a voice jumps there (the allocator resets the module first).
//! Bend, pressure and timbre glide over 10 ms, so per-note expression never clicks.

use crate::module::Module;
use crate::params::Params;
use crate::spec::{ModuleSpec, ParamSpec, PortSpec, Unit};
use crate::state::{StateError, StateReader, StateWriter};

/// Index of the `pitch` parameter.
pub const PITCH: usize = 0;
/// Index of the `velocity` parameter.
pub const VELOCITY: usize = 1;
/// Index of the `bend` parameter.
pub const BEND: usize = 2;
/// Index of the `pressure` parameter.
pub const PRESSURE: usize = 3;
/// Index of the `timbre` parameter.
pub const TIMBRE: usize = 4;
/// Index of the `glide` parameter.
pub const GLIDE: usize = 5;

/// The parameters the voice allocator owns: each voice has its own (its note and the
/// note's expression), so they are not addressed as `/mod/<instrument>.<note>/…` (which
/// sets a parameter on every voice): `/note/…` sets them.
pub const PER_NOTE: [usize; 5] = [PITCH, VELOCITY, BEND, PRESSURE, TIMBRE];

/// Index of the `freq` output.
pub const FREQ_OUT: usize = 0;
/// Index of the `gate` output.
const GATE_OUT: usize = 1;
/// Index of the `velocity` output.
const VELOCITY_OUT: usize = 2;
/// Index of the `pressure` output.
const PRESSURE_OUT: usize = 3;
/// Index of the `timbre` output.
const TIMBRE_OUT: usize = 4;
/// Index of the `key` output (the note number, bend included), the last port.
pub const KEY_OUT: usize = 5;

/// Static description of the `note` type.
pub static SPEC: ModuleSpec = ModuleSpec {
    type_name: "note",
    doc: "A voice's note inside an instrument: pitch as a frequency (bend included), gate, velocity, per-note expression and the note number itself (key), set by the voice allocator (/note/on …).",
    inputs: &[],
    outputs: &[
        PortSpec::control("freq"),
        PortSpec::control("gate"),
        PortSpec::control("velocity"),
        PortSpec::control("pressure"),
        PortSpec::control("timbre"),
        PortSpec::control("key"),
    ],
    params: &[
        ParamSpec::new("pitch", Unit::Number, 0.0..=127.0, 60.0)
            .doc("MIDI note number (C4 = 60, fractional for microtones); set by /note/on."),
        ParamSpec::linear("velocity", 0.0..=1.0, 0.0)
            .doc("Velocity of the note, 0..1 (/note/on's 0..127 divided by 127)."),
        ParamSpec::new("bend", Unit::Number, -96.0..=96.0, 0.0)
            .doc("Per-note pitch bend in semitones (/note/bend), added to pitch; glides over 10 ms."),
        ParamSpec::linear("pressure", 0.0..=1.0, 0.0)
            .doc("Per-note pressure (/note/pressure, MPE aftertouch); glides over 10 ms."),
        ParamSpec::linear("timbre", 0.0..=1.0, 0.0)
            .doc("Per-note timbre (/note/timbre, MPE Y axis); glides over 10 ms."),
        ParamSpec::ms("glide", 0.0..=10_000.0, 0.0)
            .doc("Time a pitch change takes while the note is held (portamento), evenly in pitch."),
    ],
    has_gate: true,
};

/// `block` if output `port` is read (its bit in `read`), else an empty block, so that
/// nothing is written to an output nobody reads.
#[inline(always)]
fn if_read(read: u8, port: usize, block: &mut [f32]) -> &mut [f32] {
    if read >> port & 1 == 1 {
        block
    } else {
        &mut []
    }
}

/// Frequency of a (fractional) MIDI note number, A4 = 69 = 440 Hz.
#[inline]
pub fn note_hz(note: f64) -> f32 {
    // The clamp keeps a corrupt but accepted glide from reaching infinity (the note
    // module is `always_finite`); every playable note is far inside it.
    (440.0 * ((note.clamp(-1000.0, 1000.0) - 69.0) / 12.0).exp2()) as f32
}

/// The note module's state: the pitch it sounds now (gliding towards the `pitch`
/// parameter) and the gate.
#[derive(Debug, Clone)]
pub struct Note {
    params: Params,
    sample_rate: f32,
    /// Pitch sounding now, in note numbers.
    pitch_now: f64,
    /// Change of `pitch_now` per sample while gliding.
    glide_step: f64,
    /// Samples of glide left (0: `pitch_now` is the parameter).
    glide_left: u32,
    gate: bool,
    /// The last held note's pitch (bend included) and its frequency, so a held note
    /// computes its `exp2` once rather than every block. Derived, not state: a miss
    /// (NaN after creation or a snapshot) recomputes the same value.
    held: (f64, f32),
    /// The outputs some module reads ([`Module::outputs_read`], bit per output): the
    /// others are left unwritten. Not state: the patch tells every compiled instance.
    read: u8,
}

impl Note {
    /// A note module at rest: gate closed, pitch 60, velocity 0.
    pub fn new(sample_rate: f32) -> Self {
        Note {
            params: Params::new(&SPEC, sample_rate).instant(&[PITCH, VELOCITY, GLIDE]),
            sample_rate: crate::params::sane_sample_rate(sample_rate),
            pitch_now: f64::from(SPEC.params[PITCH].default),
            glide_step: 0.0,
            glide_left: 0,
            gate: false,
            held: (f64::NAN, 0.0),
            read: u8::MAX,
        }
    }

    /// The pitch of the next sample, stepping the glide.
    #[inline]
    fn next_pitch(&mut self) -> f64 {
        if self.glide_left > 0 {
            self.glide_left -= 1;
            self.pitch_now = if self.glide_left == 0 {
                f64::from(self.params.get(PITCH))
            } else {
                self.pitch_now + self.glide_step
            };
        }
        self.pitch_now
    }
}

impl Module for Note {
    fn params(&self) -> &Params {
        &self.params
    }

    fn params_mut(&mut self) -> &mut Params {
        &mut self.params
    }

    fn param_changed(&mut self, index: usize) {
        if index != PITCH {
            return;
        }
        let target = f64::from(self.params.get(PITCH));
        let glide = (f64::from(self.params.get(GLIDE)) * 1e-3 * f64::from(self.sample_rate))
            .round() as u32;
        if self.gate && glide > 0 {
            self.glide_step = (target - self.pitch_now) / f64::from(glide);
            self.glide_left = glide;
        } else {
            self.pitch_now = target;
            self.glide_left = 0;
        }
    }

    fn set_gate(&mut self, on: bool) {
        self.gate = on;
    }

    /// Its outputs are clamped parameters, 0 or 1, and `note_hz` of a pitch within
    /// 0..=127 plus a bend within ±96 (a snapshot's pitch is checked finite): at most
    /// 440 * 2^(154/12) Hz, far from overflow. Five outputs a voice, scanned for
    /// nothing at every block, were a tenth of a thousand voices' time.
    fn always_finite(&self) -> bool {
        true
    }

    fn outputs_read(&mut self, read: u8) {
        self.read = read;
    }

    /// Every output is a fill or a per-sample ramp of its own, so an output nobody reads
    /// is left unwritten: a voice's `note` feeds one or two of its six (five fills a
    /// voice at every block were a fifteenth of a voice's time). Its smoothers advance
    /// the same either way.
    fn process(&mut self, _inputs: &[&[f32]], outputs: &mut [&mut [f32]]) {
        let gate = if self.gate { 1.0 } else { 0.0 };
        let velocity = self.params.get(VELOCITY);
        let read = self.read;
        let [freq, gate_out, velocity_out, pressure, timbre, rest @ ..] = outputs else {
            return;
        };
        let n = freq.len();
        // `key` is optional: a caller that predates it passes five outputs.
        let mut key = rest.first_mut().map(|k| if_read(read, KEY_OUT, k));
        let freq = if_read(read, FREQ_OUT, freq);
        if_read(read, GATE_OUT, gate_out).fill(gate);
        if_read(read, VELOCITY_OUT, velocity_out).fill(velocity);
        for (i, port, p) in [
            (PRESSURE, PRESSURE_OUT, &mut **pressure),
            (TIMBRE, TIMBRE_OUT, &mut **timbre),
        ] {
            let s = &mut self.params[i];
            let block = if_read(read, port, p);
            if s.is_settled() {
                block.fill(s.current());
            } else {
                // Every frame, read or not: the ramp advances.
                for k in 0..n {
                    let value = s.next();
                    if let Some(o) = block.get_mut(k) {
                        *o = value;
                    }
                }
            }
        }
        if self.glide_left == 0 && self.params[BEND].is_settled() {
            // A held note: one frequency (and one key) for the whole block.
            let pitch = self.pitch_now + f64::from(self.params[BEND].current());
            if pitch.to_bits() != self.held.0.to_bits() {
                self.held = (pitch, note_hz(pitch));
            }
            freq.fill(self.held.1);
            if let Some(k) = key.as_deref_mut() {
                k.fill(pitch as f32);
            }
        } else {
            // Every frame of the block, read or not: the glide and the bend advance.
            for i in 0..n {
                let bend = f64::from(self.params[BEND].next());
                let note = self.next_pitch() + bend;
                if let Some(o) = freq.get_mut(i) {
                    *o = note_hz(note);
                }
                if let Some(k) = key.as_deref_mut().and_then(|k| k.get_mut(i)) {
                    *k = note as f32;
                }
            }
        }
    }

    fn clear(&mut self) {
        self.pitch_now = f64::from(self.params.get(PITCH));
        self.glide_step = 0.0;
        self.glide_left = 0;
        self.gate = false;
    }

    fn save_dsp(&self, w: &mut StateWriter<'_>) {
        w.put_f64(self.pitch_now);
        w.put_f64(self.glide_step);
        w.put_u32(self.glide_left);
        w.put_u8(u8::from(self.gate));
    }

    fn load_dsp(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let offset = r.position();
        let pitch_now = r.get_f64()?;
        // A pitch glides between values of the `pitch` parameter (0..=127), by steps
        // no larger than that range: finite, so its frequency is (see `always_finite`).
        if !(0.0..=127.0).contains(&pitch_now) {
            return Err(StateError::InvalidValue {
                what: "note pitch",
                offset,
            });
        }
        let offset = r.position();
        let glide_step = r.get_f64()?;
        if !(-127.0..=127.0).contains(&glide_step) {
            return Err(StateError::InvalidValue {
                what: "note glide",
                offset,
            });
        }
        self.pitch_now = pitch_now;
        self.glide_step = glide_step;
        self.glide_left = r.get_u32()?;
        self.gate = r.get_u8()? != 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::common::testing::{render_len, SR};

    fn outputs(n: &mut Note, frames: usize) -> Vec<Vec<f32>> {
        render_len(n, &[], SPEC.outputs.len(), frames)
    }

    /// An unread output is left unwritten, and what is read (and the state) has the same
    /// bits as when everything is read: gliding pitch, bend, pressure and timbre ramps
    /// advance either way.
    #[test]
    fn unread_outputs_are_left_unwritten_and_change_nothing_else() {
        use crate::state::StateWriter;
        let play = |n: &mut Note| {
            n.set_param(GLIDE, 30.0);
            n.set_gate(true);
            let mut all = Vec::new();
            for block in 0..40 {
                match block {
                    3 => n.set_param(PITCH, 72.5),
                    5 => n.set_param(BEND, -2.0),
                    7 => n.set_param(PRESSURE, 0.8),
                    9 => n.set_param(TIMBRE, 0.3),
                    _ => {}
                }
                let mut bufs = vec![[f32::NAN; 64]; SPEC.outputs.len()];
                let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
                n.process(&[], &mut outs);
                all.push(bufs);
            }
            let mut state = vec![0u8; n.state_len()];
            n.save_state(&mut StateWriter::new(&mut state));
            (all, state)
        };
        let (every, every_state) = play(&mut Note::new(SR));
        let only = (1u8 << KEY_OUT) | (1 << PRESSURE_OUT);
        let mut some = Note::new(SR);
        some.outputs_read(only);
        let (read, read_state) = play(&mut some);
        assert_eq!(read_state, every_state);
        for (block, (a, b)) in every.iter().zip(&read).enumerate() {
            for port in 0..SPEC.outputs.len() {
                let bits = |x: &[f32; 64]| x.map(f32::to_bits);
                if only >> port & 1 == 1 {
                    assert_eq!(bits(&a[port]), bits(&b[port]), "block {block} port {port}");
                } else {
                    assert!(b[port].iter().all(|x| x.is_nan()), "port {port} was written");
                }
            }
        }
    }

    #[test]
    fn a4_is_440_and_c4_is_middle_c() {
        assert_eq!(note_hz(69.0), 440.0);
        assert!((note_hz(60.0) - 261.6256).abs() < 1e-3);
        assert!((note_hz(60.5) / note_hz(60.0) - 2f32.powf(1.0 / 24.0)).abs() < 1e-6);
    }

    #[test]
    fn always_finite_holds_at_the_extremes_and_for_accepted_snapshots() {
        use crate::state::{StateReader, StateWriter};
        for (pitch, bend) in [(127.0, 96.0), (0.0, -96.0)] {
            let mut n = Note::new(SR);
            n.set_param(PITCH, pitch);
            n.set_param(BEND, bend);
            n.reset();
            assert!(n.always_finite());
            let out = outputs(&mut n, 256);
            assert!(out.iter().flatten().all(|x| x.is_finite()), "{pitch} {bend}");
        }
        // A corrupt pitch or glide step is refused; an extreme accepted glide stays finite.
        let mut n = Note::new(SR);
        let mut buf = vec![0u8; n.state_len()];
        n.save_state(&mut StateWriter::new(&mut buf));
        let at = buf.len() - (8 + 8 + 4 + 1);
        for (offset, bad) in [(0, 128.0f64), (0, -1.0), (0, f64::NAN), (8, 200.0), (8, f64::INFINITY)] {
            let mut b = buf.clone();
            b[at + offset..at + offset + 8].copy_from_slice(&bad.to_le_bytes());
            assert!(Note::new(SR).load_state(&mut StateReader::new(&b)).is_err(), "{bad}");
        }
        buf[at + 8..at + 16].copy_from_slice(&127.0f64.to_le_bytes());
        buf[at + 16..at + 20].copy_from_slice(&u32::MAX.to_le_bytes());
        n.load_state(&mut StateReader::new(&buf)).unwrap();
        assert!(outputs(&mut n, 4096).iter().flatten().all(|x| x.is_finite()));
    }

    #[test]
    fn outputs_follow_the_note() {
        let mut n = Note::new(SR);
        n.set_param(PITCH, 69.0);
        n.set_param(VELOCITY, 0.5);
        n.reset();
        n.set_gate(true);
        let out = outputs(&mut n, 64);
        assert!(out[0].iter().all(|&f| f == 440.0));
        assert!(out[1].iter().all(|&g| g == 1.0));
        assert!(out[2].iter().all(|&v| v == 0.5));
        assert!(out[KEY_OUT].iter().all(|&k| k == 69.0));
        n.set_gate(false);
        assert!(outputs(&mut n, 8)[1].iter().all(|&g| g == 0.0));
    }

    #[test]
    fn bend_glides_to_its_pitch() {
        let mut n = Note::new(SR);
        n.set_param(PITCH, 69.0);
        n.reset();
        n.set_param(BEND, 12.0);
        let out = outputs(&mut n, 1000);
        let (freq, key) = (&out[FREQ_OUT], &out[KEY_OUT]);
        assert!(freq.windows(2).all(|w| w[1] >= w[0]), "rises smoothly");
        assert_eq!(freq[999], 880.0);
        // The key follows the same glide, in note numbers.
        assert!(key.windows(2).all(|w| w[1] >= w[0]));
        assert!(key[0] > 69.0 && key[0] < 70.0);
        assert_eq!(key[999], 81.0);
        for (&f, &k) in freq.iter().zip(key) {
            assert!((note_hz(f64::from(k)) / f - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn pitch_glides_only_while_held() {
        let mut n = Note::new(SR);
        n.set_param(GLIDE, 10.0);
        n.set_param(PITCH, 57.0);
        // Gate closed: a jump.
        assert_eq!(outputs(&mut n, 4)[0][0], 220.0);
        n.set_gate(true);
        n.set_param(PITCH, 69.0);
        let freq = outputs(&mut n, 600).remove(0);
        assert!(freq[0] > 220.0 && freq[0] < 221.0, "{}", freq[0]);
        assert!(freq[239] < 440.0 && freq[240] > 300.0);
        assert_eq!(freq[479], 440.0);
        assert!(freq.windows(2).all(|w| w[1] >= w[0]));
    }
}
