//! The arpeggiators: one per instrument, playing the notes held on it one after another
//! in time with the clock.
//!
//! Like the sequencer, this is engine state: changed only by stamped commands
//! (`/note/on`, `/note/off`, `/arp/<instrument>/…`), advanced by the frames rendered,
//! saved in the snapshot, so an arpeggio plays on through every failover bit for bit.
//!
//! **When it is on**, a note-on to its instrument adds the key to the *held set* (at
//! most [`MAX_HELD`] keys, in the order pressed; more are ignored) instead of sounding,
//! and a note-off takes it out. Each step plays one note of the held keys, spread over
//! `octaves` octaves, in the mode's order (`up`: lowest to highest, octave after octave;
//! `down`: the reverse; `updown`: up then down, the top and bottom played once per turn;
//! `random`: a seeded choice, the same in every worker and replay), at the velocity its
//! key was pressed with. A step's note sounds for `gate` of the step and releases itself
//! (its length counted in frames inside the engine, like a track's notes), so nothing
//! hangs. Releasing every key stops the arpeggio after the note sounding; the next key
//! starts it again from the first note of the order. `/note/play`, the sequencer's
//! tracks and the sustain pedal go past the arpeggiator: they play the instrument as they
//! always do.
//!
//! **Time.** A step's place is an exact beat (a rational), turned into a frame by the
//! clock's own mapping ([`Sequencer::note_frame`]) when it is due, never accumulated:
//! at 120 bpm and 48 kHz sixteenths (rate 1/4) are exactly 6,000 frames apart forever,
//! and steps swing with the clock as a track's notes do. While the clock runs, steps fall
//! on its grid, the multiples of the rate from beat 0 (so an arpeggio stays in phase with
//! the tracks), and the first key waits for the next grid line. While the clock is
//! stopped, an arpeggio still plays, at the clock's tempo, its grid anchored on the first
//! key: what a musician expects from pressing keys on a stopped synth. Stopping the clock,
//! or changing its tempo while stopped, leaves the next step where it was due (the
//! arpeggio goes on in rhythm, straight, at the clock's tempo); starting the clock puts a
//! running arpeggio on bar 1's grid at once.
//!
//! **Turning it off** with keys held makes them sound as plain held notes until they are
//! released (their note-offs reach the instrument as always); turning it on starts with
//! no key held (notes already sounding go on until released).

use chronus_dsp::{
    ArpDesc, ArpMode, Patch, PatchDesc, PatchError, StateError, StateReader, StateWriter,
};
use chronus_pattern::Time;

use crate::sequencer::Sequencer;

/// Most keys an arpeggiator holds at once; a key pressed beyond them is ignored. Fixed,
/// so that pressing a key never allocates.
pub const MAX_HELD: usize = 32;
/// Fewest octaves an arpeggio spans.
pub const MIN_OCTAVES: u8 = 1;
/// Most octaves an arpeggio spans.
pub const MAX_OCTAVES: u8 = 4;
/// The rate's resolution: steps are whole 96ths of a beat, so sixteenths (24), triplet
/// eighths (32) and thirty-second notes (3) are all exact.
pub const TICKS_PER_BEAT: u32 = 96;
/// Shortest step: a thirty-second note (1/32 beat).
pub const MIN_RATE_TICKS: u32 = 3;
/// Longest step: a bar (4 beats).
pub const MAX_RATE_TICKS: u32 = 4 * TICKS_PER_BEAT;
/// Shortest note, as a fraction of its step.
pub const MIN_GATE: f32 = 0.05;
/// Longest note: the whole step (legato).
pub const MAX_GATE: f32 = 1.0;
/// Steps a late arpeggio skips to get back in time before giving up (a tempo or swing
/// change can put its next step behind the frame being rendered); a bound, so rendering
/// always ends.
const MAX_SKIPPED_STEPS: usize = 64;

/// One setting of an arpeggiator, as a command carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArpSetting {
    /// On (the instrument's keys feed the arpeggio) or off (they sound as themselves).
    On(bool),
    /// The order of the notes.
    Mode(ArpMode),
    /// Octaves the held notes are spread over, [`MIN_OCTAVES`]..=[`MAX_OCTAVES`].
    Octaves(u8),
    /// Length of a step in 96ths of a beat, [`MIN_RATE_TICKS`]..=[`MAX_RATE_TICKS`].
    Rate(u32),
    /// Length of a note as a fraction of its step, [`MIN_GATE`]..=[`MAX_GATE`].
    Gate(f32),
}

/// The rate of `beats` per step in 96ths of a beat, or why it is not one: out of
/// 1/32..=4 beats, or not a whole number of 96ths (1/3 = 0.3333 is; 0.33 is not).
///
/// # Errors
/// The reason, for `/fail` and patch errors.
pub fn rate_ticks(beats: f64) -> Result<u32, String> {
    let shown = shown(beats);
    let min = f64::from(MIN_RATE_TICKS) / f64::from(TICKS_PER_BEAT);
    let max = f64::from(MAX_RATE_TICKS) / f64::from(TICKS_PER_BEAT);
    if !beats.is_finite() || beats < min - 1e-9 || beats > max + 1e-9 {
        return Err(format!(
            "rate {shown}: a step lasts 1/32 ({min}) to {max} beats"
        ));
    }
    let ticks = beats * f64::from(TICKS_PER_BEAT);
    let whole = ticks.round();
    if (ticks - whole).abs() > 0.05 {
        return Err(format!(
            "rate {shown}: steps are whole 96ths of a beat (0.25 sixteenths, 0.3333 triplet eighths, 0.5 eighths); nearest {:.4}",
            whole / f64::from(TICKS_PER_BEAT)
        ));
    }
    Ok(whole as u32)
}

/// `value` as a person wrote it: an `f32` from OSC widened to `f64` shows as 0.33, not
/// 0.33000001311302185.
fn shown(value: f64) -> f64 {
    if value.is_finite() {
        (value * 1e6).round() / 1e6
    } else {
        value
    }
}

/// The gate in thousandths of a step, or why it is out of range.
///
/// # Errors
/// The reason, for `/fail` and patch errors.
pub fn gate_permille(gate: f64) -> Result<u16, String> {
    if !gate.is_finite() || gate < f64::from(MIN_GATE) - 1e-6 || gate > f64::from(MAX_GATE) + 1e-6 {
        return Err(format!(
            "gate {}: a note lasts {MIN_GATE} to {MAX_GATE} of its step",
            shown(gate)
        ));
    }
    Ok((gate.clamp(f64::from(MIN_GATE), f64::from(MAX_GATE)) * 1000.0).round() as u16)
}

/// An arpeggiator's settings, in exact units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    on: bool,
    mode: ArpMode,
    octaves: u8,
    /// 96ths of a beat per step.
    rate: u32,
    /// Thousandths of a step each note sounds.
    gate: u16,
}

impl Settings {
    /// Off, at the defaults of [`ArpDesc`] (up, one octave, sixteenths, half-step notes).
    const OFF: Settings = Settings {
        on: false,
        mode: ArpMode::Up,
        octaves: 1,
        rate: TICKS_PER_BEAT / 4,
        gate: 500,
    };

    fn from_desc(desc: &ArpDesc) -> Result<Settings, String> {
        let octaves = u8::try_from(desc.octaves)
            .ok()
            .filter(|o| (MIN_OCTAVES..=MAX_OCTAVES).contains(o))
            .ok_or_else(|| {
                format!(
                    "octaves = {}: an arpeggio spans {MIN_OCTAVES} to {MAX_OCTAVES} octaves",
                    desc.octaves
                )
            })?;
        Ok(Settings {
            on: desc.on,
            mode: desc.mode,
            octaves,
            rate: rate_ticks(desc.rate)?,
            gate: gate_permille(desc.gate)?,
        })
    }

    /// A step's length in beats.
    fn step(&self) -> Time {
        Time::new(u64::from(self.rate), u64::from(TICKS_PER_BEAT)).unwrap_or(Time::ONE)
    }
}

/// A key held on an arpeggiated instrument.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Held {
    note: f32,
    velocity: f32,
    id: u32,
}

const NO_KEY: Held = Held {
    note: 0.0,
    velocity: 0.0,
    id: 0,
};

/// One instrument's arpeggiator.
#[derive(Debug, Clone)]
struct Arpeggiator {
    /// The instrument's name (a patch switch carries the state to its namesake).
    name: String,
    /// The instrument's node.
    instrument: u16,
    settings: Settings,
    /// What the patch declares (`arp = {…}`), if anything: a patch switch changes the
    /// settings only when this differs, so an edit of the patch keeps settings made live.
    declared: Option<Settings>,
    /// The keys held, in the order pressed.
    held: [Held; MAX_HELD],
    held_len: usize,
    /// Indices into `held`, lowest note first (equal notes in the order pressed).
    by_pitch: [u8; MAX_HELD],
    /// Steps played since the first key went down: the place in the order.
    played: u64,
    /// The beat of the grid's line 0: beat 0 while the clock runs, the first key's beat
    /// while it is stopped.
    origin: Time,
    /// The beat of the next step; `None` when no key is held.
    next: Option<Time>,
    /// State of the random order's generator (xorshift64*, never 0).
    rng: u64,
    /// The frame of the next step, kept while the clock's beats move under it
    /// ([`Arpeggiators::keep_steps_through`]); only meaningful during that call, so not
    /// in the snapshot.
    kept_frame: Option<u64>,
}

impl Arpeggiator {
    fn keys(&self) -> &[Held] {
        &self.held[..self.held_len]
    }

    /// Sorts `by_pitch` again after the held keys changed (at most 32: an insertion
    /// sort, no allocation).
    fn sort(&mut self) {
        for (i, slot) in self.by_pitch.iter_mut().enumerate().take(self.held_len) {
            *slot = i as u8;
        }
        let held = self.held;
        let order = &mut self.by_pitch[..self.held_len];
        for i in 1..order.len() {
            let mut j = i;
            while j > 0 && held[usize::from(order[j - 1])].note > held[usize::from(order[j])].note {
                order.swap(j - 1, j);
                j -= 1;
            }
        }
    }

    /// The first line of the grid at or after `beat`.
    fn snap(&self, beat: Time) -> Option<Time> {
        let step = self.settings.step();
        let since = beat.checked_sub(self.origin).unwrap_or(Time::ZERO);
        let lines = since.checked_div(step)?.ceil();
        self.origin
            .checked_add(Time::whole(lines).checked_mul(step)?)
    }

    /// Puts the next step on the first grid line at or after `now` whose frame is not
    /// behind `now` (swing can move a line earlier than its beat).
    fn place(&mut self, now: u64, seq: &Sequencer) {
        self.next = seq
            .beat_at_frame(now)
            .and_then(|beat| self.snap(beat))
            .and_then(|beat| self.catch_up(beat, now, seq, false));
    }

    /// `beat`, or the first step after it whose frame is after `now` (`strictly`) or at
    /// or after it; `None` if none is within [`MAX_SKIPPED_STEPS`].
    fn catch_up(&self, mut beat: Time, now: u64, seq: &Sequencer, strictly: bool) -> Option<Time> {
        let step = self.settings.step();
        for _ in 0..MAX_SKIPPED_STEPS {
            let frame = seq.note_frame(beat)?;
            if frame > now || (!strictly && frame == now) {
                return Some(beat);
            }
            beat = beat.checked_add(step)?;
        }
        None
    }

    /// The first key went down at `now`: the order starts again from its first note.
    fn start(&mut self, now: u64, seq: &Sequencer) {
        self.played = 0;
        self.origin = if seq.running() {
            Time::ZERO
        } else {
            seq.beat_at_frame(now).unwrap_or(Time::ZERO)
        };
        self.place(now, seq);
    }

    fn stop(&mut self) {
        self.held_len = 0;
        self.next = None;
    }

    fn press(&mut self, now: u64, seq: &Sequencer, key: Held) {
        if let Some(known) = self.held[..self.held_len]
            .iter_mut()
            .find(|h| h.note == key.note && h.id == key.id)
        {
            known.velocity = key.velocity;
            return;
        }
        if self.held_len == MAX_HELD {
            return;
        }
        self.held[self.held_len] = key;
        self.held_len += 1;
        self.sort();
        if self.held_len == 1 {
            self.start(now, seq);
        }
    }

    fn release(&mut self, note: f32, id: u32) {
        let Some(i) = self
            .keys()
            .iter()
            .position(|h| h.note == note && (id == 0 || h.id == id))
        else {
            return;
        };
        self.held.copy_within(i + 1..self.held_len, i);
        self.held_len -= 1;
        self.held[self.held_len] = NO_KEY;
        self.sort();
        if self.held_len == 0 {
            self.next = None;
        }
    }

    /// The next number of the random order.
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The note (and its key's velocity) of step `played`.
    fn note_of_step(&mut self) -> Option<(f32, f32)> {
        let keys = self.held_len as u64;
        let total = keys.checked_mul(u64::from(self.settings.octaves))?;
        if total == 0 {
            return None;
        }
        let p = self.played;
        let i = match self.settings.mode {
            ArpMode::Up => p % total,
            ArpMode::Down => total - 1 - p % total,
            ArpMode::UpDown if total == 1 => 0,
            ArpMode::UpDown => {
                let period = 2 * total - 2;
                let j = p % period;
                if j < total {
                    j
                } else {
                    period - j
                }
            }
            ArpMode::Random => (self.random() >> 32) % total,
        };
        let key = self.held[usize::from(self.by_pitch[(i % keys) as usize])];
        let octave = (i / keys) as f32;
        Some((key.note + 12.0 * octave, key.velocity))
    }
}

/// Every instrument's arpeggiator, in the patch's instrument order.
#[derive(Debug, Clone)]
pub struct Arpeggiators {
    arps: Vec<Arpeggiator>,
}

impl Arpeggiators {
    /// One arpeggiator per instrument of `patch` (compiled from `desc`), set as `desc`
    /// declares (off otherwise); `seed` seeds the random orders. Allocates: done when a
    /// patch is compiled, never while rendering.
    ///
    /// # Errors
    /// [`PatchError::Arp`]: an `arp` setting out of range.
    pub fn new(desc: &PatchDesc, patch: &Patch, seed: u64) -> Result<Arpeggiators, PatchError> {
        let mut arps = Vec::new();
        for (index, (name, instrument)) in patch.instruments().enumerate() {
            let declared = match desc
                .instruments
                .iter()
                .find(|i| i.name == name)
                .and_then(|i| i.arp.as_ref())
            {
                Some(arp) => Some(Settings::from_desc(arp).map_err(|reason| PatchError::Arp {
                    instrument: name.to_string(),
                    reason,
                })?),
                None => None,
            };
            arps.push(Arpeggiator {
                name: name.to_string(),
                instrument,
                settings: declared.unwrap_or(Settings::OFF),
                declared,
                held: [NO_KEY; MAX_HELD],
                held_len: 0,
                by_pitch: [0; MAX_HELD],
                played: 0,
                origin: Time::ZERO,
                next: None,
                rng: splitmix(seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                kept_frame: None,
            });
        }
        Ok(Arpeggiators { arps })
    }

    fn find(&mut self, instrument: u16) -> Option<&mut Arpeggiator> {
        self.arps.iter_mut().find(|a| a.instrument == instrument)
    }

    /// Whether the arpeggiator of `instrument` is on.
    pub fn is_on(&self, instrument: u16) -> bool {
        self.arps
            .iter()
            .any(|a| a.instrument == instrument && a.settings.on)
    }

    /// A note-on for `instrument` at `now`: true if its arpeggiator took it (it is on),
    /// false if the instrument should play it itself. Velocity 0 is a note-off, as in
    /// MIDI.
    pub fn note_on(
        &mut self,
        now: u64,
        seq: &Sequencer,
        instrument: u16,
        note: f32,
        velocity: f32,
        id: u32,
    ) -> bool {
        let Some(arp) = self.find(instrument).filter(|a| a.settings.on) else {
            return false;
        };
        if velocity <= 0.0 {
            arp.release(note, id);
        } else {
            arp.press(now, seq, Held { note, velocity, id });
        }
        true
    }

    /// A note-off for `instrument`: the key leaves the held set (the instrument gets the
    /// note-off too, for a note it sounds itself).
    pub fn note_off(&mut self, instrument: u16, note: f32, id: u32) {
        if let Some(arp) = self.find(instrument).filter(|a| a.settings.on) {
            arp.release(note, id);
        }
    }

    /// `/panic`: every arpeggio stops and forgets its keys.
    pub fn panic(&mut self) {
        for arp in &mut self.arps {
            arp.stop();
        }
    }

    /// `/arp/<instrument>/…` at `now`. Turning one off sounds its held keys on `patch`
    /// as plain held notes. An instrument without an arpeggiator is ignored (the address
    /// table has no such one).
    pub fn set(
        &mut self,
        now: u64,
        seq: &Sequencer,
        patch: &mut Patch,
        instrument: u16,
        setting: ArpSetting,
    ) {
        let Some(arp) = self.find(instrument) else {
            return;
        };
        match setting {
            ArpSetting::On(on) if on == arp.settings.on => {}
            ArpSetting::On(true) => {
                arp.settings.on = true;
                arp.stop();
            }
            ArpSetting::On(false) => {
                arp.settings.on = false;
                for key in arp.keys() {
                    patch.note_on(arp.instrument, key.note, key.velocity, key.id, 0);
                }
                arp.stop();
            }
            ArpSetting::Mode(mode) => arp.settings.mode = mode,
            ArpSetting::Octaves(octaves) => {
                arp.settings.octaves = octaves.clamp(MIN_OCTAVES, MAX_OCTAVES);
            }
            ArpSetting::Rate(ticks) => {
                arp.settings.rate = ticks.clamp(MIN_RATE_TICKS, MAX_RATE_TICKS);
                // The next step moves to the new grid's first line not before now.
                if arp.next.is_some() {
                    arp.place(now, seq);
                }
            }
            ArpSetting::Gate(gate) => {
                arp.settings.gate = gate_permille(f64::from(gate)).unwrap_or(500);
            }
        }
    }

    /// The clock started (its beats start again from 0 at `now`): each running arpeggio
    /// goes on from `now`, on the new grid, in phase with the tracks starting with it.
    pub fn clock_started(&mut self, now: u64, seq: &Sequencer) {
        for arp in &mut self.arps {
            if arp.next.is_some() {
                arp.origin = Time::ZERO;
                arp.place(now, seq);
            }
        }
    }

    /// Applies `change` to the clock at `now` (a stop, or a tempo change while stopped:
    /// changes that move its beats to other frames at once) keeping each running
    /// arpeggio's next step on the frame it was due: the arpeggio goes on in rhythm, its
    /// steps after that one at the clock's (new) tempo, anchored there.
    pub fn keep_steps_through(
        &mut self,
        now: u64,
        seq: &mut Sequencer,
        change: impl FnOnce(&mut Sequencer),
    ) {
        for arp in &mut self.arps {
            arp.kept_frame = arp.next.and_then(|beat| seq.note_frame(beat));
        }
        change(seq);
        for arp in &mut self.arps {
            let Some(frame) = arp.kept_frame.take() else {
                continue;
            };
            let frame = frame.max(now);
            match seq.beat_at_frame(frame) {
                Some(beat) if !seq.running() => {
                    arp.origin = beat;
                    arp.next = Some(beat);
                }
                // Running (a change that moved no beat): the grid stays.
                _ => {}
            }
        }
    }

    /// The earliest frame at which an arpeggio plays a step; `u64::MAX` if none will.
    pub fn next_frame(&self, seq: &Sequencer) -> u64 {
        self.arps
            .iter()
            .filter_map(|a| seq.note_frame(a.next?))
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Plays every step due at or before `now`, handing each note to `play(instrument,
    /// note, velocity, length in frames)` (the engine starts a note that releases
    /// itself). Afterwards every next step falls after `now`. Allocates nothing.
    pub fn run_due(&mut self, now: u64, seq: &Sequencer, mut play: impl FnMut(u16, f32, f32, u64)) {
        for arp in &mut self.arps {
            let Some(beat) = arp.next else {
                continue;
            };
            let Some(frame) = seq.note_frame(beat) else {
                arp.next = None;
                continue;
            };
            if frame > now {
                continue;
            }
            let after = beat.checked_add(arp.settings.step());
            let next_frame = after.and_then(|b| seq.note_frame(b));
            let step_frames = next_frame.map_or(1, |f| f.saturating_sub(frame).max(1));
            let length = (u128::from(step_frames) * u128::from(arp.settings.gate) / 1000).max(1);
            if let Some((note, velocity)) = arp.note_of_step() {
                play(
                    arp.instrument,
                    note,
                    velocity,
                    u64::try_from(length).unwrap_or(u64::MAX),
                );
            }
            arp.played += 1;
            // A step already behind `now` (a tempo or swing change moved it) is skipped.
            arp.next = after.and_then(|b| arp.catch_up(b, now, seq, true));
        }
    }

    /// After a patch switch at `now`: each arpeggiator of this (the new patch's) set
    /// takes over the keys, place and settings of its namesake in `old`; only a patch
    /// whose `arp` declaration differs from the previous one's changes the settings, so
    /// an edit of other parts keeps what was set live.
    pub fn take_over(&mut self, old: &Arpeggiators, now: u64, seq: &Sequencer) {
        for arp in &mut self.arps {
            let Some(before) = old.arps.iter().find(|a| a.name == arp.name) else {
                continue;
            };
            let own = arp.settings;
            arp.settings = before.settings;
            arp.held = before.held;
            arp.held_len = before.held_len;
            arp.by_pitch = before.by_pitch;
            arp.played = before.played;
            arp.origin = before.origin;
            arp.next = before.next;
            arp.rng = before.rng;
            if arp.declared.is_some() && arp.declared != before.declared {
                arp.settings = own;
                if !own.on {
                    arp.stop();
                } else if arp.next.is_some() {
                    arp.place(now, seq);
                }
            }
        }
    }

    /// Writes every arpeggiator's settings, keys and place (the instruments come from
    /// the patch).
    pub fn save_state(&self, w: &mut StateWriter<'_>) {
        for arp in &self.arps {
            let s = &arp.settings;
            w.put_bool(s.on);
            w.put_u8(s.mode.code());
            w.put_u8(s.octaves);
            w.put_u32(s.rate);
            w.put_u32(u32::from(s.gate));
            w.put_u8(arp.held_len as u8);
            for key in arp.keys() {
                w.put_f32(key.note);
                w.put_f32(key.velocity);
                w.put_u32(key.id);
            }
            w.put_u64(arp.played);
            put_time(w, Some(arp.origin));
            put_time(w, arp.next);
            w.put_u64(arp.rng);
        }
    }

    /// Reads what [`Arpeggiators::save_state`] wrote, for the same patch.
    ///
    /// # Errors
    /// [`StateError`] when the bytes run out or hold impossible values.
    pub fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        for arp in &mut self.arps {
            let bad = |r: &StateReader<'_>| StateError::InvalidValue {
                what: "arpeggiator",
                offset: r.position(),
            };
            let on = r.get_bool()?;
            let mode = ArpMode::from_code(u64::from(r.get_u8()?)).ok_or_else(|| bad(r))?;
            let octaves = r.get_u8()?;
            let rate = r.get_u32()?;
            let gate = u16::try_from(r.get_u32()?).map_err(|_| bad(r))?;
            if !(MIN_OCTAVES..=MAX_OCTAVES).contains(&octaves)
                || !(MIN_RATE_TICKS..=MAX_RATE_TICKS).contains(&rate)
                || !(50..=1000).contains(&gate)
            {
                return Err(bad(r));
            }
            let held_len = usize::from(r.get_u8()?);
            if held_len > MAX_HELD {
                return Err(bad(r));
            }
            let mut held = [NO_KEY; MAX_HELD];
            for key in &mut held[..held_len] {
                key.note = r.get_f32()?;
                key.velocity = r.get_f32()?;
                key.id = r.get_u32()?;
                if !key.note.is_finite() || !key.velocity.is_finite() {
                    return Err(bad(r));
                }
            }
            let played = r.get_u64()?;
            let origin = get_time(r)?.ok_or_else(|| bad(r))?;
            let next = get_time(r)?;
            let rng = r.get_u64()?;
            if rng == 0 {
                return Err(bad(r));
            }
            arp.settings = Settings {
                on,
                mode,
                octaves,
                rate,
                gate,
            };
            arp.held = held;
            arp.held_len = held_len;
            arp.sort();
            arp.played = played;
            arp.origin = origin;
            arp.next = next;
            arp.rng = rng;
        }
        Ok(())
    }
}

/// A beat, or none (a denominator of 0).
fn put_time(w: &mut StateWriter<'_>, time: Option<Time>) {
    let (num, den) = time.map_or((0, 0), |t| (t.numerator(), t.denominator()));
    w.put_u64(num);
    w.put_u64(den);
}

fn get_time(r: &mut StateReader<'_>) -> Result<Option<Time>, StateError> {
    let (num, den) = (r.get_u64()?, r.get_u64()?);
    Ok(Time::new(num, den))
}

/// A well-mixed, never-zero state for the random order from any seed.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    /// A sixteenth at 120 bpm and 48 kHz.
    const SIXTEENTH: u64 = 6_000;

    /// The sequencer, the arpeggiators and the patch, as the engine holds them.
    struct Rig {
        seq: Sequencer,
        arps: Arpeggiators,
        patch: Patch,
        keys: u16,
    }

    /// The default patch (instrument `keys`) at 120 bpm, its arpeggiator as `arp` says.
    fn rig_with(arp: Option<ArpDesc>, seed: u64) -> Rig {
        let mut desc = PatchDesc::default_patch();
        desc.instruments[0].arp = arp;
        let patch = Patch::compile(&desc, RATE as f32, 64, 0).unwrap();
        let seq = Sequencer::new(&desc, &patch, RATE).unwrap();
        let arps = Arpeggiators::new(&desc, &patch, seed).unwrap();
        let keys = patch.node_index("keys").unwrap();
        Rig {
            seq,
            arps,
            patch,
            keys,
        }
    }

    fn rig(mode: ArpMode, octaves: u32, gate: f64) -> Rig {
        rig_with(
            Some(ArpDesc {
                on: true,
                mode,
                octaves,
                rate: 0.25,
                gate,
            }),
            7,
        )
    }

    /// A played note: (frame, note, velocity, length).
    type Played = (u64, f32, f32, u64);

    /// Something done on a frame (a command, as the engine applies it).
    type Action<'a> = (u64, &'a mut dyn FnMut(&mut Rig, u64));

    fn press(rig: &mut Rig, now: u64, notes: &[f32]) {
        for &note in notes {
            let keys = rig.keys;
            assert!(rig.arps.note_on(now, &rig.seq, keys, note, 100.0, 0));
        }
    }

    /// Runs the rig as the engine does from `from` up to `until`, applying `actions` on
    /// their frames first: every arpeggio note played.
    fn run(rig: &mut Rig, from: u64, until: u64, actions: &mut [Action<'_>]) -> Vec<Played> {
        let mut played = Vec::new();
        let mut now = from;
        let mut next_action = 0;
        loop {
            while next_action < actions.len() && actions[next_action].0 <= now {
                (actions[next_action].1)(rig, now);
                next_action += 1;
            }
            rig.seq.run_due(now, |_, _, _, _| {});
            rig.arps
                .run_due(now, &rig.seq, |_, note, velocity, length| {
                    played.push((now, note, velocity, length));
                });
            let mut next = rig.seq.next_frame().min(rig.arps.next_frame(&rig.seq));
            if let Some(&(frame, _)) = actions.get(next_action) {
                next = next.min(frame);
            }
            assert!(next > now, "the arpeggiators must move on (at {now})");
            if next > until {
                return played;
            }
            now = next;
        }
    }

    fn notes(played: &[Played]) -> Vec<f32> {
        played.iter().map(|p| p.1).collect()
    }

    fn frames(played: &[Played]) -> Vec<u64> {
        played.iter().map(|p| p.0).collect()
    }

    /// C major held from frame 0, played for `steps` sixteenths.
    fn c_major(mode: ArpMode, octaves: u32, steps: u64) -> Vec<Played> {
        let mut rig = rig(mode, octaves, 0.5);
        let mut chord = |r: &mut Rig, now: u64| press(r, now, &[64.0, 60.0, 67.0]);
        run(&mut rig, 0, steps * SIXTEENTH - 1, &mut [(0, &mut chord)])
    }

    #[test]
    fn up_plays_the_held_notes_lowest_first_on_exact_sixteenths() {
        let played = c_major(ArpMode::Up, 1, 400);
        assert_eq!(played.len(), 400);
        for (i, &(frame, _, velocity, length)) in played.iter().enumerate() {
            assert_eq!(frame, SIXTEENTH * i as u64, "step {i}");
            assert_eq!((velocity, length), (100.0, 3_000));
        }
        assert_eq!(
            notes(&played[..7]),
            [60.0, 64.0, 67.0, 60.0, 64.0, 67.0, 60.0]
        );
    }

    #[test]
    fn down_plays_them_highest_first() {
        let played = c_major(ArpMode::Down, 1, 7);
        assert_eq!(
            frames(&played),
            (0..7).map(|i| i * SIXTEENTH).collect::<Vec<_>>()
        );
        assert_eq!(notes(&played), [67.0, 64.0, 60.0, 67.0, 64.0, 60.0, 67.0]);
    }

    #[test]
    fn updown_does_not_repeat_the_ends() {
        let played = c_major(ArpMode::UpDown, 1, 9);
        assert_eq!(
            notes(&played),
            [60.0, 64.0, 67.0, 64.0, 60.0, 64.0, 67.0, 64.0, 60.0]
        );
        let played = c_major(ArpMode::UpDown, 2, 12);
        assert_eq!(
            notes(&played),
            [60.0, 64.0, 67.0, 72.0, 76.0, 79.0, 76.0, 72.0, 67.0, 64.0, 60.0, 64.0]
        );
        // One note: it repeats.
        let mut rig = rig(ArpMode::UpDown, 1, 0.5);
        let mut one = |r: &mut Rig, now: u64| press(r, now, &[60.0]);
        let played = run(&mut rig, 0, 3 * SIXTEENTH - 1, &mut [(0, &mut one)]);
        assert_eq!(notes(&played), [60.0, 60.0, 60.0]);
    }

    #[test]
    fn octaves_spread_the_notes_upwards() {
        let played = c_major(ArpMode::Up, 3, 10);
        assert_eq!(
            notes(&played),
            [60.0, 64.0, 67.0, 72.0, 76.0, 79.0, 84.0, 88.0, 91.0, 60.0]
        );
        let played = c_major(ArpMode::Down, 2, 7);
        assert_eq!(notes(&played), [79.0, 76.0, 72.0, 67.0, 64.0, 60.0, 79.0]);
    }

    #[test]
    fn the_gate_is_a_fraction_of_the_step_in_frames() {
        for (gate, length) in [(0.05, 300), (0.25, 1_500), (0.8, 4_800), (1.0, 6_000)] {
            let mut rig = rig(ArpMode::Up, 1, gate);
            let mut key = |r: &mut Rig, now: u64| press(r, now, &[60.0]);
            let played = run(&mut rig, 0, 4 * SIXTEENTH - 1, &mut [(0, &mut key)]);
            assert!(
                played.iter().all(|p| p.3 == length),
                "gate {gate}: {played:?}"
            );
        }
        // Triplet eighths at 120 bpm: 8,000 frames; half of it.
        let mut rig = rig(ArpMode::Up, 1, 0.5);
        let mut key = |r: &mut Rig, now: u64| press(r, now, &[60.0]);
        let mut triplets = |r: &mut Rig, now: u64| {
            let keys = r.keys;
            r.arps
                .set(now, &r.seq, &mut r.patch, keys, ArpSetting::Rate(32));
        };
        let played = run(
            &mut rig,
            0,
            48_000 - 1,
            &mut [(0, &mut triplets), (0, &mut key)],
        );
        assert_eq!(
            frames(&played),
            (0..6).map(|i| i * 8_000).collect::<Vec<_>>()
        );
        assert!(played.iter().all(|p| p.3 == 4_000));
    }

    #[test]
    fn the_first_key_waits_for_the_grid_and_all_released_stops() {
        let mut rig = rig(ArpMode::Up, 1, 0.5);
        let mut chord = |r: &mut Rig, now: u64| press(r, now, &[60.0, 64.0]);
        let mut release = |r: &mut Rig, _: u64| {
            let keys = r.keys;
            r.arps.note_off(keys, 60.0, 0);
            r.arps.note_off(keys, 64.0, 0);
        };
        let mut again = |r: &mut Rig, now: u64| press(r, now, &[62.0, 65.0]);
        let played = run(
            &mut rig,
            0,
            100_000,
            &mut [
                (1_000, &mut chord),
                (20_000, &mut release),
                (50_000, &mut again),
            ],
        );
        // On the grid from 6,000; stops after the note at 18,000; starts again from the
        // first note of the order on the next sixteenth after 50,000 (54,000).
        assert_eq!(
            frames(&played),
            [
                6_000, 12_000, 18_000, 54_000, 60_000, 66_000, 72_000, 78_000, 84_000, 90_000,
                96_000
            ]
        );
        assert_eq!(notes(&played)[..5], [60.0, 64.0, 60.0, 62.0, 65.0]);
    }

    #[test]
    fn a_key_pressed_mid_pattern_joins_in_pitch_order() {
        let mut rig = rig(ArpMode::Up, 1, 0.5);
        let mut chord = |r: &mut Rig, now: u64| press(r, now, &[60.0, 67.0]);
        let mut more = |r: &mut Rig, now: u64| press(r, now, &[64.0]);
        let mut less = |r: &mut Rig, _: u64| {
            let keys = r.keys;
            r.arps.note_off(keys, 67.0, 0);
        };
        let played = run(
            &mut rig,
            0,
            8 * SIXTEENTH - 1,
            &mut [(0, &mut chord), (13_000, &mut more), (31_000, &mut less)],
        );
        // The place in the order goes on counting: step n plays note n mod the keys
        // held, lowest first. 60 67 60 | 64 joins (13,000): 60 64 67 | 67 gone: 60 64.
        assert_eq!(
            notes(&played),
            [60.0, 67.0, 60.0, 60.0, 64.0, 67.0, 60.0, 64.0]
        );
    }

    #[test]
    fn random_is_reproducible_from_its_seed() {
        let play = |seed: u64| {
            let mut rig = rig_with(
                Some(ArpDesc {
                    mode: ArpMode::Random,
                    octaves: 2,
                    ..ArpDesc::default()
                }),
                seed,
            );
            let mut chord = |r: &mut Rig, now: u64| press(r, now, &[60.0, 64.0, 67.0]);
            run(&mut rig, 0, 64 * SIXTEENTH - 1, &mut [(0, &mut chord)])
        };
        let a = play(1);
        assert_eq!(a.len(), 64);
        assert_eq!(a, play(1));
        assert_ne!(notes(&a), notes(&play(2)));
        let allowed = [60.0, 64.0, 67.0, 72.0, 76.0, 79.0];
        assert!(a.iter().all(|p| allowed.contains(&p.1)));
        for note in allowed {
            assert!(a.iter().any(|p| p.1 == note), "{note} never played");
        }
        assert_eq!(
            frames(&a),
            (0..64).map(|i| i * SIXTEENTH).collect::<Vec<_>>()
        );
    }

    #[test]
    fn with_the_clock_stopped_it_steps_from_the_first_key() {
        let mut rig = rig(ArpMode::Up, 1, 0.5);
        let mut stop = |r: &mut Rig, now: u64| r.seq.run_clock(now, false);
        let mut chord = |r: &mut Rig, now: u64| press(r, now, &[60.0, 64.0]);
        let played = run(
            &mut rig,
            0,
            10_000 + 4 * SIXTEENTH - 1,
            &mut [(500, &mut stop), (10_000, &mut chord)],
        );
        assert_eq!(frames(&played), [10_000, 16_000, 22_000, 28_000]);
    }

    #[test]
    fn starting_the_clock_puts_the_arpeggio_on_its_grid() {
        let mut rig = rig(ArpMode::Up, 1, 0.5);
        let mut stop = |r: &mut Rig, now: u64| {
            r.arps
                .keep_steps_through(now, &mut r.seq, |s| s.run_clock(now, false));
        };
        let mut chord = |r: &mut Rig, now: u64| press(r, now, &[60.0, 64.0]);
        let mut start = |r: &mut Rig, now: u64| {
            r.seq.run_clock(now, true);
            r.arps.clock_started(now, &r.seq);
        };
        let played = run(
            &mut rig,
            0,
            40_000,
            &mut [(500, &mut stop), (1_000, &mut chord), (20_001, &mut start)],
        );
        // Free from 1,000 while stopped; from 20,001 on the new beat 0.
        assert_eq!(
            frames(&played),
            [1_000, 7_000, 13_000, 19_000, 20_001, 26_001, 32_001, 38_001]
        );
    }

    #[test]
    fn stopping_the_clock_or_changing_its_tempo_while_stopped_keeps_the_rhythm() {
        let clock = chronus_dsp::ClockDesc {
            bpm: 120.0,
            swing: 0.6,
        };
        let mut desc = PatchDesc::default_patch();
        desc.clock = Some(clock);
        desc.instruments[0].arp = Some(ArpDesc::default());
        let patch = Patch::compile(&desc, RATE as f32, 64, 0).unwrap();
        let mut rig = Rig {
            seq: Sequencer::new(&desc, &patch, RATE).unwrap(),
            arps: Arpeggiators::new(&desc, &patch, 0).unwrap(),
            keys: patch.node_index("keys").unwrap(),
            patch,
        };
        let mut chord = |r: &mut Rig, now: u64| press(r, now, &[60.0, 64.0]);
        let mut stop = |r: &mut Rig, now: u64| {
            r.arps
                .keep_steps_through(now, &mut r.seq, |s| s.run_clock(now, false));
        };
        let mut slower = |r: &mut Rig, now: u64| {
            r.arps
                .keep_steps_through(now, &mut r.seq, |s| s.set_tempo(now, 60.0));
        };
        let played = run(
            &mut rig,
            0,
            72_000,
            &mut [(0, &mut chord), (13_000, &mut stop), (31_000, &mut slower)],
        );
        // Swung sixteenths (pairs of 12,000, the off-beat at 0.6: 7,200) while the clock
        // runs; stopped at 13,000 the step due at 19,200 stays and the arpeggio goes on
        // straight from it at 120 bpm; at 60 bpm from 31,200 (the step due then).
        assert_eq!(
            frames(&played),
            [0, 7_200, 12_000, 19_200, 25_200, 31_200, 43_200, 55_200, 67_200]
        );
    }

    #[test]
    fn a_tempo_change_keeps_the_steps_on_the_clocks_beats() {
        let mut rig = rig(ArpMode::Up, 1, 0.5);
        let mut chord = |r: &mut Rig, now: u64| press(r, now, &[60.0]);
        let mut faster = |r: &mut Rig, now: u64| r.seq.set_tempo(now, 150.0);
        let played = run(
            &mut rig,
            0,
            48_000 + 4 * 4_800 - 1,
            &mut [(0, &mut chord), (30_000, &mut faster)],
        );
        // 120 bpm up to beat 2 (48,000), then 150 bpm: sixteenths of 4,800 frames.
        let expected: Vec<u64> = (0..8)
            .map(|i| i * SIXTEENTH)
            .chain((0..4).map(|i| 48_000 + i * 4_800))
            .collect();
        assert_eq!(frames(&played), expected);
        // The step before the change lasts to the change's beat exactly.
        assert_eq!(played[7].3, 3_000);
        assert_eq!(played[8].3, 2_400);
    }

    #[test]
    fn turning_it_off_sounds_the_held_keys_and_on_again_starts_empty() {
        let mut rig = rig(ArpMode::Up, 1, 0.5);
        press(&mut rig, 0, &[60.0, 64.0]);
        assert_eq!(rig.patch.voices_sounding(), 0);
        let keys = rig.keys;
        rig.arps
            .set(10, &rig.seq, &mut rig.patch, keys, ArpSetting::On(false));
        assert_eq!(rig.patch.voices_sounding(), 2);
        assert!(!rig.arps.is_on(keys));
        assert!(!rig.arps.note_on(20, &rig.seq, keys, 67.0, 100.0, 0));
        assert_eq!(rig.arps.next_frame(&rig.seq), u64::MAX);
        rig.arps
            .set(30, &rig.seq, &mut rig.patch, keys, ArpSetting::On(true));
        assert_eq!(rig.arps.next_frame(&rig.seq), u64::MAX);
        assert!(rig.arps.note_on(40, &rig.seq, keys, 67.0, 100.0, 0));
        assert_eq!(rig.arps.next_frame(&rig.seq), SIXTEENTH);
    }

    #[test]
    fn a_full_hand_is_refused_without_allocating() {
        let mut rig = rig(ArpMode::Up, 1, 0.5);
        for n in 0..40 {
            press(&mut rig, 0, &[20.0 + n as f32]);
        }
        assert_eq!(rig.arps.arps[0].held_len, MAX_HELD);
        let played = run(&mut rig, 0, 40 * SIXTEENTH - 1, &mut []);
        assert_eq!(played[MAX_HELD].1, 20.0, "32 keys then round again");
        assert_eq!(played[MAX_HELD - 1].1, 51.0);
    }

    #[test]
    fn a_restored_arpeggio_plays_on_bit_for_bit() {
        let desc = ArpDesc {
            mode: ArpMode::Random,
            octaves: 3,
            rate: 1.0 / 3.0,
            gate: 0.7,
            on: true,
        };
        let mut chord = |r: &mut Rig, now: u64| press(r, now, &[60.0, 63.0, 67.0, 70.0]);
        let mut whole = rig_with(Some(desc), 3);
        let all = run(&mut whole, 0, 400_000, &mut [(777, &mut chord)]);
        let mut first = rig_with(Some(desc), 3);
        let mut before = run(&mut first, 0, 150_000, &mut [(777, &mut chord)]);
        let mut bytes = vec![0u8; 8192];
        let mut w = StateWriter::new(&mut bytes);
        first.seq.save_state(&mut w);
        first.arps.save_state(&mut w);
        let len = w.finish().unwrap();
        let mut restored = rig_with(None, 99);
        let mut r = StateReader::new(&bytes[..len]);
        restored.seq.load_state(&mut r).unwrap();
        restored.arps.load_state(&mut r).unwrap();
        assert_eq!(r.remaining(), 0);
        before.extend(run(&mut restored, 150_001, 400_000, &mut []));
        assert_eq!(before, all);
    }

    #[test]
    fn a_patch_switch_keeps_the_arpeggio_unless_its_declaration_changed() {
        let declared = ArpDesc {
            mode: ArpMode::Down,
            ..ArpDesc::default()
        };
        let mut old = rig_with(Some(declared), 1);
        let mut chord = |r: &mut Rig, now: u64| press(r, now, &[60.0, 64.0, 67.0]);
        let mut faster = |r: &mut Rig, now: u64| {
            let keys = r.keys;
            r.arps
                .set(now, &r.seq, &mut r.patch, keys, ArpSetting::Rate(12));
        };
        let before = run(
            &mut old,
            0,
            20_000,
            &mut [(0, &mut chord), (10, &mut faster)],
        );
        assert_eq!(notes(&before)[..3], [67.0, 64.0, 60.0]);
        // The same declaration (an edit of other parts): keys, place and the rate set
        // live go on.
        let mut same = rig_with(Some(declared), 1);
        same.arps.take_over(&old.arps, 20_001, &old.seq);
        same.seq = old.seq.clone();
        let after = run(&mut same, 20_001, 30_000, &mut []);
        assert_eq!(frames(&after), [21_000, 24_000, 27_000, 30_000]);
        assert_eq!(after[0].1, [67.0, 64.0, 60.0][before.len() % 3]);
        // Another declaration: its own settings, the keys still held.
        let mut other = rig_with(Some(ArpDesc::default()), 1);
        other.arps.take_over(&old.arps, 20_001, &old.seq);
        other.seq = old.seq.clone();
        let after = run(&mut other, 20_001, 30_000, &mut []);
        assert_eq!(frames(&after), [24_000, 30_000]);
        let up = [60.0, 64.0, 67.0];
        let n = before.len();
        assert_eq!(notes(&after), [up[n % 3], up[(n + 1) % 3]]);
    }

    #[test]
    fn rates_and_gates_are_checked_with_the_reason() {
        assert_eq!(rate_ticks(0.25), Ok(24));
        assert_eq!(rate_ticks(0.3333), Ok(32));
        assert_eq!(rate_ticks(1.0 / 32.0), Ok(3));
        assert_eq!(rate_ticks(4.0), Ok(384));
        let err = rate_ticks(0.33).unwrap_err();
        assert!(
            err.contains("whole 96ths of a beat") && err.contains("0.3333"),
            "{err}"
        );
        assert!(rate_ticks(8.0)
            .unwrap_err()
            .contains("1/32 (0.03125) to 4 beats"));
        assert!(rate_ticks(0.0).is_err());
        assert_eq!(gate_permille(0.5), Ok(500));
        assert!(gate_permille(0.01)
            .unwrap_err()
            .contains("0.05 to 1 of its step"));
        let mut desc = PatchDesc::default_patch();
        desc.instruments[0].arp = Some(ArpDesc {
            octaves: 5,
            ..ArpDesc::default()
        });
        let patch = Patch::compile(&desc, RATE as f32, 64, 0).unwrap();
        let err = Arpeggiators::new(&desc, &patch, 0).unwrap_err().to_string();
        assert_eq!(
            err,
            "instrument 'keys': arp: octaves = 5: an arpeggio spans 1 to 4 octaves"
        );
    }
}
