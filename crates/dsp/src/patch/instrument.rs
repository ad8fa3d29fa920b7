//! Instruments: a voice's sub-graph rendered once per voice, and the voice allocator that
//! gives notes to voices.
//!
//! Every voice is a small [`Patch`] compiled from the instrument's modules (plus an
//! `output` called `out`), all compiled with the patch, so starting a note allocates
//! nothing. The allocator is deterministic, a function of the notes played and of the
//! rendered sound only (no clock, no randomness): a note takes the first free voice;
//! with none free it steals the voice released longest ago, else the quietest (the
//! smallest peak in its last block, ties to the lowest index). A stolen voice fades out
//! over [`FADE_SECONDS`] and is reset before the new note starts on it, so a steal never
//! clicks; the new note starts that much later. `/panic` fades every voice the same way.
//!
//! Only voices that sound are rendered: a voice whose envelopes are idle (released, or
//! held but percussive: an `ar` that does not hold, a `drum`, which end on their own) or,
//! in an instrument without an envelope, whose release fade has ended, is free and costs
//! nothing; a note-off for a note whose voice was freed so finds nothing to release.
//! Everything here is in the snapshot, so a spare continues every note exactly.

use super::{Patch, PatchDesc, PatchError};
use crate::module::VOICE_LANES;
use crate::modules::note;
use crate::spec::{ModuleSpec, PortSpec};
use crate::state::{StateError, StateReader, StateWriter};

/// Length of the fade of a stolen voice, of `/panic`, and of a voice released in an
/// instrument that has no envelope: long enough not to click, short enough not to smear.
pub const FADE_SECONDS: f64 = 0.003;
/// Most voices one instrument may declare.
pub const MAX_VOICES: usize = 4096;
/// Id of the implicit output module of a voice: connections to `out` are its output.
pub const VOICE_OUT: &str = "out";
/// How fast a voice's loudness measure falls: its time constant, in seconds.
const LEVEL_FALL_SECONDS: f64 = 0.05;
/// Whole-block voices whose loudness measures run together ([`Instrument::follow`]):
/// each measure is a chain of a multiply and a max per sample, so one alone waits on its
/// own latency; sixteen side by side keep four vectors of them busy.
const FOLLOW_LANES: usize = 16;

/// What an instrument is to the rest of the patch: a source with one output, the sum of
/// its voices. Listed as type `instrument` in `/table.reply`.
pub static INSTRUMENT_SPEC: ModuleSpec = ModuleSpec {
    type_name: "instrument",
    doc: "A polyphonic instrument: its voices' sub-graph rendered once per sounding voice and summed; played with /note/….",
    inputs: &[],
    outputs: &[PortSpec::audio("out")],
    params: &[],
    has_gate: false,
};

/// A per-note expression, the three dimensions of MPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expression {
    /// Pitch bend in semitones (the `note` module's `bend`).
    Bend,
    /// Pressure 0..1 (aftertouch).
    Pressure,
    /// Timbre 0..1 (MPE's Y axis).
    Timbre,
}

/// The three expressions, in the order a [`NoteStart`] keeps them.
const EXPRESSIONS: [Expression; 3] = [Expression::Bend, Expression::Pressure, Expression::Timbre];

impl Expression {
    /// Its place in a [`NoteStart`]'s expression.
    fn index(self) -> usize {
        match self {
            Expression::Bend => 0,
            Expression::Pressure => 1,
            Expression::Timbre => 2,
        }
    }

    /// The `note` module parameter this expression sets.
    fn param(self) -> u16 {
        (match self {
            Expression::Bend => note::BEND,
            Expression::Pressure => note::PRESSURE,
            Expression::Timbre => note::TIMBRE,
        }) as u16
    }
}

/// Where a voice is in a note's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Silent, not rendered, first to be given a note.
    Free,
    /// Its key is down.
    Held,
    /// Its key is up but the sustain pedal holds it.
    Sustained,
    /// Its key is up: the envelopes release.
    Released,
    /// Fading out (stolen, panicked or released without an envelope); then reset, and
    /// its `next` note starts, or it is free.
    Fading,
}

impl Phase {
    fn to_u8(self) -> u8 {
        match self {
            Phase::Free => 0,
            Phase::Held => 1,
            Phase::Sustained => 2,
            Phase::Released => 3,
            Phase::Fading => 4,
        }
    }

    fn from_u8(v: u8) -> Option<Phase> {
        Some(match v {
            0 => Phase::Free,
            1 => Phase::Held,
            2 => Phase::Sustained,
            3 => Phase::Released,
            4 => Phase::Fading,
            _ => return None,
        })
    }
}

/// A note to start on a voice.
#[derive(Debug, Clone, Copy, PartialEq)]
struct NoteStart {
    note: f32,
    /// 0..1.
    velocity: f32,
    id: u32,
    /// Frames until the note releases itself (`/note/play`); 0: held until a note-off.
    length: u64,
    /// Per-note expression sent while the note waited for its voice (bend, pressure,
    /// timbre), so a stealing note starts with it.
    expression: [f32; 3],
}

/// One voice: its own compiled sub-graph and where it is in a note's life.
struct Voice {
    patch: Patch,
    phase: Phase,
    note: f32,
    id: u32,
    /// Allocation order of its note (older notes have smaller numbers).
    started: u64,
    /// Order of its release (for stealing the one released longest ago).
    released: u64,
    /// Frames until the note releases itself; `u64::MAX`: not scheduled.
    release_in: u64,
    /// Frames of fade left (phase `Fading`).
    fade_left: u32,
    /// The note waiting for the fade to end.
    next: Option<NoteStart>,
    /// How loud it is, for stealing the quietest: a peak follower (instant rise, 50 ms
    /// fall) run sample by sample, so it does not depend on where blocks are split.
    level: f32,
}

/// A compiled instrument: its voices and their allocator.
pub(crate) struct Instrument {
    voices: Vec<Voice>,
    /// Node of the first `note` module in each voice's patch, if there is one.
    note: Option<u16>,
    /// Nodes with a gate in each voice (the note and the envelopes).
    gated: Vec<u16>,
    /// Whether a module other than `note` has a gate: an envelope whose end frees the voice.
    has_envelope: bool,
    sustain: bool,
    /// Counter giving allocation and release orders.
    order: u64,
    steals: u64,
    fade_frames: u32,
    /// Per-sample factor of the loudness measure's fall.
    level_fall: f32,
    /// One voice's block, before it is added to the sum.
    scratch: Vec<f32>,
    /// Member ids and specs, in declaration order (the voice patches' node order).
    members: Vec<(String, &'static ModuleSpec)>,
    /// Whether whole-block voices are rendered side by side (always, but for the tests
    /// that compare the two ways bit for bit).
    side_by_side: bool,
    /// Most voices that may sound at once (see [`Instrument::set_limit`]): all of them
    /// unless the engine's voice limit is lower.
    limit: usize,
    /// Voice indices, sorted when a lower limit sheds voices (preallocated: shedding
    /// allocates nothing).
    shed_order: Vec<u32>,
    /// Whole-block voices rendered in this block whose loudness measures have not run
    /// yet (the first `following` of them): run [`FOLLOW_LANES`] at a time.
    to_follow: [usize; FOLLOW_LANES],
    following: usize,
}

impl Voice {
    /// The voice is done: fresh again (so its state does not depend on when its end was
    /// noticed) and free.
    fn free(&mut self) {
        self.patch.reset();
        self.level = 0.0;
        self.phase = Phase::Free;
        self.release_in = u64::MAX;
    }
}

/// One step of a voice's loudness measure: `level` falls by `fall` and rises at once to
/// `|x|`. The samples are finite (the NaN guard silences a module's non-finite block),
/// so a plain comparison is `f32::max` without its NaN handling, in fewer instructions.
#[inline(always)]
fn follow(level: f32, x: f32, fall: f32) -> f32 {
    let (x, fallen) = (x.abs(), level * fall);
    if x > fallen {
        x
    } else {
        fallen
    }
}

/// Unit gain of a fade at `left` frames left of `total`: 1 just before it starts, exactly
/// 0 on its last frame.
#[inline]
fn fade_gain(left: u32, total: u32) -> f32 {
    left.saturating_sub(1) as f32 / total.max(1) as f32
}

impl Voice {
    /// True if the voice sounds for the whole next block of `n` frames with nothing
    /// happening to it: not free, not fading, no release due within the block.
    fn plays_whole_block(&self, n: usize) -> bool {
        matches!(self.phase, Phase::Held | Phase::Sustained | Phase::Released)
            && self.release_in >= n as u64
    }
}

impl Instrument {
    /// Compiles `voices` copies of the instrument's sub-graph. `seed` is split per voice,
    /// so noise differs between voices and is the same in every process.
    pub(crate) fn compile(
        desc: &super::InstrumentDesc,
        sample_rate: f32,
        max_block: usize,
        seed: u64,
    ) -> Result<Instrument, PatchError> {
        let invalid = |reason: String| PatchError::Instrument {
            name: desc.name.clone(),
            reason,
        };
        if !(1..=MAX_VOICES).contains(&desc.voices) {
            return Err(invalid(format!(
                "voices = {}: an instrument has 1 to {MAX_VOICES} voices",
                desc.voices
            )));
        }
        if let Some(m) = desc.modules.iter().find(|m| m.id == VOICE_OUT) {
            return Err(invalid(format!(
                "module id '{}' is reserved: `{VOICE_OUT}` is the voice's output",
                m.id
            )));
        }
        if let Some(m) = desc.modules.iter().find(|m| m.type_name == "output") {
            return Err(invalid(format!(
                "module '{}' is an output; a voice has none of its own: connect to `{VOICE_OUT}`",
                m.id
            )));
        }
        if desc.name.parse::<f64>().is_ok() {
            return Err(invalid(
                "a name that reads as a number could not be told from a note in /note/on"
                    .to_string(),
            ));
        }
        let notes = desc
            .modules
            .iter()
            .filter(|m| m.type_name == note::SPEC.type_name)
            .count();
        if notes > 1 {
            return Err(invalid(format!(
                "{notes} note modules; a voice plays one note: give it one `note` and connect its outputs wherever they are needed"
            )));
        }
        if let Some(c) = desc
            .connections
            .iter()
            .find(|c| c.to.starts_with(&format!("{VOICE_OUT}:")))
        {
            return Err(invalid(format!(
                "connection '{}' -> '{}': a voice's output is mono, connect to `{VOICE_OUT}` (pan after the instrument)",
                c.from, c.to
            )));
        }
        match desc
            .connections
            .iter()
            .filter(|c| c.to == VOICE_OUT)
            .count()
        {
            0 => {
                return Err(invalid(format!(
                    "nothing is connected to `{VOICE_OUT}`: its voices would be silent"
                )))
            }
            1 => {}
            n => {
                return Err(invalid(format!(
                    "{n} connections into `{VOICE_OUT}`; it takes one: sum them with a mixer first"
                )))
            }
        }
        let mut modules = desc.modules.clone();
        modules.push(super::ModuleDesc::new(VOICE_OUT, "output"));
        let connections = desc
            .connections
            .iter()
            .map(|c| super::Connection {
                from: c.from.clone(),
                to: if c.to == VOICE_OUT {
                    "out:left".to_string()
                } else {
                    c.to.clone()
                },
            })
            .collect();
        let voice_desc = PatchDesc {
            modules,
            connections,
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        };
        let mut voices = Vec::with_capacity(desc.voices);
        for v in 0..desc.voices {
            let voice_seed = super::splitmix64(seed ^ super::splitmix64(v as u64 + 1));
            let patch = Patch::compile(&voice_desc, sample_rate, max_block, voice_seed)
                .map_err(|e| invalid(e.to_string()))?;
            voices.push(Voice {
                patch,
                phase: Phase::Free,
                note: 0.0,
                id: 0,
                started: 0,
                released: 0,
                release_in: u64::MAX,
                fade_left: 0,
                next: None,
                level: 0.0,
            });
        }
        let first = &voices[0].patch;
        let members: Vec<(String, &'static ModuleSpec)> = desc
            .modules
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Some((m.id.clone(), first.node_spec(i as u16)?)))
            .collect();
        let note = members
            .iter()
            .position(|(_, s)| s.type_name == note::SPEC.type_name)
            .map(|i| i as u16);
        let gated: Vec<u16> = (0..members.len() as u16)
            .filter(|&i| members[usize::from(i)].1.has_gate)
            .collect();
        let has_envelope = gated
            .iter()
            .any(|&i| members[usize::from(i)].1.type_name != note::SPEC.type_name);
        Ok(Instrument {
            voices,
            note,
            gated,
            has_envelope,
            sustain: false,
            order: 0,
            steals: 0,
            fade_frames: ((FADE_SECONDS * f64::from(sample_rate)).round() as u32).max(1),
            level_fall: (-1.0 / (LEVEL_FALL_SECONDS * f64::from(sample_rate))).exp() as f32,
            scratch: vec![0.0; max_block],
            members,
            side_by_side: true,
            limit: desc.voices,
            shed_order: Vec::with_capacity(desc.voices),
            to_follow: [0; FOLLOW_LANES],
            following: 0,
        })
    }

    /// The member modules: (id within the instrument, spec), in declaration order.
    pub(crate) fn members(&self) -> &[(String, &'static ModuleSpec)] {
        &self.members
    }

    /// Sets parameter `param` of member `member` in every voice (each glides on its own).
    pub(crate) fn set_param(&mut self, member: u16, param: u16, value: f32) {
        for v in &mut self.voices {
            v.patch.set_param(member, param, value);
        }
    }

    /// The value of parameter `param` of member `member` (every voice has the same).
    pub(crate) fn param(&self, member: u16, param: u16) -> Option<f32> {
        self.voices.first()?.patch.param(member, param)
    }

    /// Voices making sound (any phase but free).
    pub(crate) fn voices_sounding(&self) -> usize {
        self.voices
            .iter()
            .filter(|v| v.phase != Phase::Free)
            .count()
    }

    /// Voices that sound or are about to: every voice but the free ones and those
    /// fading out with no note waiting for them. What [`Instrument::set_limit`] bounds.
    fn voices_taken(&self) -> usize {
        self.voices
            .iter()
            .filter(|v| !matches!(v.phase, Phase::Free | Phase::Fading) || v.next.is_some())
            .count()
    }

    /// Lets at most `limit` voices sound at once (`None`, or more than the instrument
    /// has: all of them), the engine's protection against more voices than the machine
    /// can render in time. Voices over a lower limit fade out now, as a steal fades
    /// (released longest ago first, then the quietest, ties to the lowest index, so every
    /// process sheds the same ones), and from then on a note beyond the limit steals.
    /// Returns how many voices it shed. Allocates nothing.
    pub(crate) fn set_limit(&mut self, limit: Option<usize>) -> usize {
        self.limit = limit.map_or(self.voices.len(), |n| n.clamp(1, self.voices.len()));
        let excess = self.voices_taken().saturating_sub(self.limit);
        if excess == 0 {
            return 0;
        }
        // Shed first what is least heard: released voices (oldest release first), then
        // held ones (quietest first), last the notes waiting for a fading voice.
        let rank = |v: &Voice| -> (u8, u64) {
            match v.phase {
                Phase::Released => (0, v.released),
                Phase::Held | Phase::Sustained => (1, u64::from(v.level.to_bits())),
                _ => (2, u64::from(v.fade_left)),
            }
        };
        self.shed_order.clear();
        self.shed_order.extend(
            (0..self.voices.len() as u32)
                .filter(|&i| self.voices[i as usize].phase != Phase::Free)
                .filter(|&i| {
                    let v = &self.voices[i as usize];
                    v.phase != Phase::Fading || v.next.is_some()
                }),
        );
        let voices = &self.voices;
        self.shed_order
            .sort_unstable_by_key(|&i| (rank(&voices[i as usize]), i));
        let fade = self.fade_frames;
        for &i in self.shed_order.iter().take(excess) {
            let v = &mut self.voices[i as usize];
            if v.phase != Phase::Fading {
                v.fade_left = fade;
            }
            v.phase = Phase::Fading;
            v.next = None;
            v.release_in = u64::MAX;
        }
        excess
    }

    /// Notes that took a voice from another note (or replaced one waiting for a voice).
    pub(crate) fn steals(&self) -> u64 {
        self.steals
    }

    fn next_order(&mut self) -> u64 {
        self.order = self.order.wrapping_add(1);
        self.order
    }

    /// Starts a note (velocity 0..=127; 0 is a note-off, as in MIDI) held until
    /// [`Instrument::note_off`], or for `length` frames if that is not 0.
    pub(crate) fn note_on(&mut self, note: f32, velocity: f32, id: u32, length: u64) {
        if velocity <= 0.0 {
            self.note_off(note, id);
            return;
        }
        let start = NoteStart {
            note,
            velocity: (velocity / 127.0).clamp(0.0, 1.0),
            id,
            length,
            expression: [0.0; 3],
        };
        // Below the limit a note may take a voice of its own; at it, it steals.
        let room = self.voices_taken() < self.limit;
        let voices = &self.voices;
        let fading = |waiting: bool| {
            // The fading voice that ends first (ties: the lowest index).
            (0..voices.len())
                .filter(|&i| {
                    voices[i].phase == Phase::Fading && voices[i].next.is_some() == waiting
                })
                .min_by_key(|&i| voices[i].fade_left)
        };
        if let Some(i) = voices
            .iter()
            .position(|v| v.phase == Phase::Free)
            .filter(|_| room)
        {
            self.start(i, start);
        } else if let Some(i) = fading(false).filter(|_| room) {
            // A voice already fading out (a /panic, a release without an envelope) with
            // no note waiting: the note takes it when the fade ends; nothing is stolen.
            self.voices[i].next = Some(start);
        } else if let Some(i) = (0..voices.len())
            .filter(|&i| voices[i].phase == Phase::Released)
            .min_by_key(|&i| voices[i].released)
            .or_else(|| {
                // The quietest held or sustained voice (ties: the lowest index).
                (0..voices.len())
                    .filter(|&i| matches!(voices[i].phase, Phase::Held | Phase::Sustained))
                    .min_by(|&a, &b| voices[a].level.total_cmp(&voices[b].level))
            })
        {
            // Steal the voice released longest ago, else the quietest.
            self.steals += 1;
            let fade = self.fade_frames;
            let v = &mut self.voices[i];
            v.phase = Phase::Fading;
            v.fade_left = fade;
            v.release_in = u64::MAX;
            v.next = Some(start);
        } else if let Some(i) = fading(true) {
            // Every voice fades with a note waiting for it: the note that has waited
            // longest (its voice ends first) gives its place, a note lost as by a steal.
            self.steals += 1;
            self.voices[i].next = Some(start);
        }
    }

    /// Gives voice `i` the note `start` now: its note module jumps to the pitch, the
    /// gates open.
    fn start(&mut self, i: usize, start: NoteStart) {
        let order = self.next_order();
        let Some(v) = self.voices.get_mut(i) else {
            return;
        };
        if let Some(n) = self.note {
            v.patch.set_param(n, note::PITCH as u16, start.note);
            v.patch.set_param(n, note::VELOCITY as u16, start.velocity);
            for (e, value) in EXPRESSIONS.into_iter().zip(start.expression) {
                v.patch.set_param(n, e.param(), value);
            }
            // A new note on a voice jumps to its pitch and expression.
            v.patch.reset_node(n);
        }
        for &g in &self.gated {
            v.patch.set_gate(g, true);
        }
        v.phase = Phase::Held;
        v.note = start.note;
        v.id = start.id;
        v.started = order;
        v.release_in = if start.length == 0 {
            u64::MAX
        } else {
            start.length
        };
        v.next = None;
    }

    /// Releases the oldest held voice playing `note` (with `id`, if not 0) that waits
    /// for a note-off (not one with its own length), or sustains it while the pedal is
    /// down. A note still waiting for its voice is released as soon as it starts.
    pub(crate) fn note_off(&mut self, note: f32, id: u32) {
        let matches = |v_note: f32, v_id: u32| {
            if id != 0 {
                v_id == id
            } else {
                v_note == note
            }
        };
        // Only notes waiting for a note-off: a note with its own length (`/note/play`, a
        // sequencer track's) ends by itself, and a client's note-off never cuts it.
        let held = (0..self.voices.len())
            .filter(|&i| {
                let v = &self.voices[i];
                v.phase == Phase::Held && v.release_in == u64::MAX && matches(v.note, v.id)
            })
            .min_by_key(|&i| self.voices[i].started);
        if let Some(i) = held {
            if self.sustain {
                self.voices[i].phase = Phase::Sustained;
            } else {
                self.release(i);
            }
            return;
        }
        if let Some(next) = self
            .voices
            .iter_mut()
            .filter_map(|v| v.next.as_mut())
            .find(|n| matches(n.note, n.id) && n.length == 0)
        {
            next.length = 1;
        }
    }

    /// Closes voice `i`'s gates: its envelopes release (or, without one, it fades).
    fn release(&mut self, i: usize) {
        let order = self.next_order();
        let (fade, has_envelope) = (self.fade_frames, self.has_envelope);
        let Some(v) = self.voices.get_mut(i) else {
            return;
        };
        for &g in &self.gated {
            v.patch.set_gate(g, false);
        }
        v.release_in = u64::MAX;
        v.released = order;
        if has_envelope {
            v.phase = Phase::Released;
        } else {
            v.phase = Phase::Fading;
            v.fade_left = fade;
            v.next = None;
        }
    }

    /// Sets a per-note expression on the voices playing note id `target` (if a voice has
    /// that id) or else note number `target`.
    pub(crate) fn expression(&mut self, target: f32, kind: Expression, value: f32) {
        let Some(n) = self.note else {
            return;
        };
        let playing =
            |v: &Voice| matches!(v.phase, Phase::Held | Phase::Sustained | Phase::Released);
        let has_id = |id: u32| id != 0 && id as f32 == target;
        let by_id = target >= 1.0
            && target.fract() == 0.0
            && self
                .voices
                .iter()
                .any(|v| (playing(v) && has_id(v.id)) || v.next.is_some_and(|n| has_id(n.id)));
        let hit = |note: f32, id: u32| if by_id { has_id(id) } else { note == target };
        for v in &mut self.voices {
            if playing(v) && hit(v.note, v.id) {
                v.patch.set_param(n, kind.param(), value);
            }
            // A note waiting for its voice starts with it.
            if let Some(next) = v.next.as_mut().filter(|next| hit(next.note, next.id)) {
                next.expression[kind.index()] = value;
            }
        }
    }

    /// Sustain pedal: down holds released notes; up releases every note it held.
    pub(crate) fn set_sustain(&mut self, on: bool) {
        self.sustain = on;
        if !on {
            for i in 0..self.voices.len() {
                if self.voices[i].phase == Phase::Sustained {
                    self.release(i);
                }
            }
        }
    }

    /// Every voice fades to silence at once (no note waits), the pedal is up.
    pub(crate) fn panic(&mut self) {
        self.sustain = false;
        let fade = self.fade_frames;
        for v in &mut self.voices {
            if v.phase != Phase::Free {
                if v.phase != Phase::Fading {
                    v.fade_left = fade;
                }
                v.phase = Phase::Fading;
                v.next = None;
                v.release_in = u64::MAX;
            }
        }
    }

    /// Renders `out.len()` (<= max_block) frames: the sum of the sounding voices, in
    /// index order.
    ///
    /// Voices that play the whole block with nothing happening to them (no release, no
    /// fade, no note starting) are gathered [`VOICE_LANES`] at a time and rendered side
    /// by side ([`Instrument::render_group`]); a voice with something happening in the
    /// block renders alone ([`Instrument::render_voice`]), after the whole-block voices
    /// gathered before it, which then render alone too, so every voice is summed in
    /// index order and the sum has the same bits either way. A group is summed right
    /// after it renders, while its blocks are still in the caches.
    pub(crate) fn process(&mut self, out: &mut [f32]) {
        out.fill(0.0);
        let n = out.len();
        let side_by_side = self.side_by_side && n > 0;
        let mut group = [0usize; VOICE_LANES];
        let mut gathered = 0;
        for i in 0..self.voices.len() {
            let v = &self.voices[i];
            if v.phase == Phase::Free {
                continue;
            }
            if side_by_side && v.plays_whole_block(n) {
                if let Some(slot) = group.get_mut(gathered) {
                    *slot = i;
                    gathered += 1;
                }
                if gathered == VOICE_LANES {
                    self.render_group(group, out);
                    gathered = 0;
                }
                continue;
            }
            for g in group.into_iter().take(gathered) {
                self.render_voice(g, out);
            }
            gathered = 0;
            self.render_voice(i, out);
        }
        for g in group.into_iter().take(gathered) {
            self.render_voice(g, out);
        }
        self.follow(n);
    }

    /// Renders the whole-block voices `group` (ascending indices) side by side
    /// ([`Patch::render_side_by_side`]), adds them to `out` in order, each straight from
    /// its patch, and queues their loudness measures for [`Instrument::follow`].
    fn render_group(&mut self, group: [usize; VOICE_LANES], out: &mut [f32]) {
        let n = out.len();
        let (first, last) = (group[0], group[VOICE_LANES - 1]);
        let Some(range) = self.voices.get_mut(first..=last) else {
            return;
        };
        let mut members = range
            .iter_mut()
            .enumerate()
            .filter(|(k, _)| group.contains(&(first + k)))
            .map(|(_, v)| v);
        let (Some(a), Some(b), Some(c), Some(d)) = (
            members.next(),
            members.next(),
            members.next(),
            members.next(),
        ) else {
            return;
        };
        let mut voices = [a, b, c, d];
        {
            let [a, b, c, d] = &mut voices;
            let mut patches = [&mut a.patch, &mut b.patch, &mut c.patch, &mut d.patch];
            Patch::render_side_by_side(&mut patches, n);
        }
        // The sum, in voice order: per frame the same additions in the same order as
        // adding each voice's block in turn, four frames to a vector.
        let [b0, b1, b2, b3] = voices.each_ref().map(|v| v.patch.mono_block(n));
        for ((((o, &x0), &x1), &x2), &x3) in out.iter_mut().zip(b0).zip(b1).zip(b2).zip(b3) {
            *o = (((*o + x0) + x1) + x2) + x3;
        }
        // Their loudness measures run later, with those of the next groups (before
        // `process` returns; a voice freed meanwhile keeps the level `free` gave it).
        for i in group {
            if let Some(slot) = self.to_follow.get_mut(self.following) {
                *slot = i;
                self.following += 1;
            }
        }
        if self.following == FOLLOW_LANES {
            self.follow(n);
        }
        for i in group {
            let Some(v) = self.voices.get_mut(i) else {
                continue;
            };
            if v.release_in != u64::MAX {
                v.release_in -= n as u64;
            }
            if v.release_in == 0 {
                // Its `/note/play` length ends with the block, as in `render_voice`.
                v.release_in = u64::MAX;
                if v.phase == Phase::Held {
                    if self.sustain {
                        v.phase = Phase::Sustained;
                    } else {
                        self.release(i);
                    }
                }
            }
            self.free_if_ended(i);
        }
    }

    /// Runs the loudness measures of the whole-block voices waiting in `to_follow` over
    /// their `n` frames just rendered, side by side: each lane the loop of
    /// `render_voice`, sample by sample, so each measure has the bits it would have alone.
    fn follow(&mut self, n: usize) {
        let fall = self.level_fall;
        let waiting = self.to_follow.get(..self.following).unwrap_or(&[]);
        let mut levels = [0.0f32; FOLLOW_LANES];
        let mut blocks: [&[f32]; FOLLOW_LANES] = [&[]; FOLLOW_LANES];
        for ((level, block), &i) in levels.iter_mut().zip(&mut blocks).zip(waiting) {
            if let Some(v) = self.voices.get(i) {
                *level = v.level;
                *block = v.patch.mono_block(n);
            }
        }
        // Lanes past the waiting voices measure the first one's block again (the frames
        // are iterated as far as every lane reaches), and are dropped.
        let first = blocks[0];
        for block in blocks.iter_mut().skip(waiting.len()) {
            *block = first;
        }
        // Sixteen lanes as four vectors of four, four frames at a time: each voice's
        // four frames are one load, turned into four frames of four lanes by shuffles
        // in registers (a gather of single samples was most of the work).
        let mut quads: [[f32; 4]; 4] =
            std::array::from_fn(|q| std::array::from_fn(|k| levels[4 * q + k]));
        let n = blocks.iter().map(|b| b.len()).min().unwrap_or(0);
        let tiles = n / 4;
        for t in 0..tiles {
            for (q, lanes) in quads.iter_mut().zip(blocks.chunks_exact(4)) {
                let rows: [[f32; 4]; 4] = std::array::from_fn(|k| {
                    lanes
                        .get(k)
                        .and_then(|b| b.get(4 * t..4 * t + 4))
                        .and_then(|f| <[f32; 4]>::try_from(f).ok())
                        .unwrap_or([0.0; 4])
                });
                let [r0, r1, r2, r3] = rows;
                for (((a, b), c), d) in r0.into_iter().zip(r1).zip(r2).zip(r3) {
                    let x = [a, b, c, d];
                    *q = std::array::from_fn(|k| follow(q[k], x[k], fall));
                }
            }
        }
        for at in 4 * tiles..n {
            for (q, lanes) in quads.iter_mut().zip(blocks.chunks_exact(4)) {
                let x: [f32; 4] = std::array::from_fn(|k| {
                    lanes.get(k).and_then(|b| b.get(at)).copied().unwrap_or(0.0)
                });
                *q = std::array::from_fn(|k| follow(q[k], x[k], fall));
            }
        }
        let levels: [f32; FOLLOW_LANES] = std::array::from_fn(|l| quads[l / 4][l % 4]);
        for (&i, level) in waiting.iter().zip(levels) {
            // A voice whose envelopes ended with this block was freed after its render:
            // fresh, its level 0, as when its measure ran before `free`.
            if let Some(v) = self.voices.get_mut(i).filter(|v| v.phase != Phase::Free) {
                v.level = level;
            }
        }
        self.following = 0;
    }

    /// Renders voice `i` alone for `out.len()` frames, split where something happens
    /// to it (a release, the end of a fade and the note waiting for it), measures its
    /// loudness and adds it to `out`.
    fn render_voice(&mut self, i: usize, out: &mut [f32]) {
        let n = out.len();
        let fall = self.level_fall;
        let mut done = 0;
        // Where this call's loudness measure starts: after a fade that freed the voice.
        let mut level_from = 0;
        while done < n {
            let v = &mut self.voices[i];
            let mut end = n;
            if v.release_in < (n - done) as u64 {
                end = done + v.release_in as usize;
            }
            if v.phase == Phase::Fading && (v.fade_left as usize) < end - done {
                end = done + v.fade_left as usize;
            }
            if v.phase == Phase::Free {
                self.scratch[done..n].fill(0.0);
                break;
            }
            if end > done {
                let block = &mut self.scratch[done..end];
                v.patch.process_mono(block);
                if v.phase == Phase::Fading {
                    for x in block.iter_mut() {
                        *x *= fade_gain(v.fade_left, self.fade_frames);
                        v.fade_left -= 1;
                    }
                }
                if v.release_in != u64::MAX {
                    v.release_in -= (end - done) as u64;
                }
            }
            done = end;
            if v.release_in == 0 {
                v.release_in = u64::MAX;
                if v.phase == Phase::Held {
                    if self.sustain {
                        v.phase = Phase::Sustained;
                    } else {
                        self.release(i);
                    }
                }
            }
            let v = &mut self.voices[i];
            if v.phase == Phase::Fading && v.fade_left == 0 {
                v.free();
                level_from = done;
                if let Some(next) = v.next.take() {
                    self.start(i, next);
                }
            }
        }
        let v = &mut self.voices[i];
        let mut level = v.level;
        for (k, (o, &x)) in out.iter_mut().zip(&self.scratch[..n]).enumerate() {
            *o += x;
            // A voice freed during this call measures only what followed (its new
            // note), as it would had the call been split there.
            if k >= level_from {
                level = follow(level, x, fall);
            }
        }
        v.level = level;
        self.free_if_ended(i);
    }

    /// Frees voice `i` if its envelopes have ended (at some frame of this call: after it,
    /// it rendered exact silence; freed here or at an earlier split, the voice is the
    /// same). A held or sustained note whose envelopes ended on their own (a percussive
    /// `ar`, a `drum`) is silent for good too: it frees its voice without waiting for a
    /// note-off, which a sequencer may send at any time or never.
    fn free_if_ended(&mut self, i: usize) {
        let has_envelope = self.has_envelope;
        let Some(v) = self.voices.get_mut(i) else {
            return;
        };
        let ended = match v.phase {
            Phase::Released => true,
            Phase::Held | Phase::Sustained => has_envelope,
            Phase::Free | Phase::Fading => false,
        };
        if ended && v.patch.voices_sounding() == 0 {
            v.free();
        }
    }

    /// Every voice free and fresh (parameter targets kept), the pedal up.
    pub(crate) fn reset(&mut self) {
        self.sustain = false;
        for v in &mut self.voices {
            v.patch.reset();
            v.phase = Phase::Free;
            v.next = None;
            v.release_in = u64::MAX;
            v.fade_left = 0;
            v.level = 0.0;
        }
    }

    /// Writes the allocator and every voice (a constant number of bytes).
    pub(crate) fn save_state(&self, w: &mut StateWriter<'_>) {
        w.put_bool(self.sustain);
        w.put_u64(self.order);
        w.put_u64(self.steals);
        for v in &self.voices {
            w.put_u8(v.phase.to_u8());
            w.put_f32(v.note);
            w.put_u32(v.id);
            w.put_u64(v.started);
            w.put_u64(v.released);
            w.put_u64(v.release_in);
            w.put_u32(v.fade_left);
            let next = v.next.unwrap_or(NoteStart {
                note: 0.0,
                velocity: 0.0,
                id: 0,
                length: 0,
                expression: [0.0; 3],
            });
            w.put_bool(v.next.is_some());
            w.put_f32(next.note);
            w.put_f32(next.velocity);
            w.put_u32(next.id);
            w.put_u64(next.length);
            for x in next.expression {
                w.put_f32(x);
            }
            w.put_f32(v.level);
            v.patch.save_state(w);
        }
    }

    /// Reads what [`Instrument::save_state`] wrote. On error the caller resets.
    pub(crate) fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        self.sustain = r.get_bool()?;
        self.order = r.get_u64()?;
        self.steals = r.get_u64()?;
        let fade_frames = self.fade_frames;
        for v in &mut self.voices {
            let offset = r.position();
            v.phase = Phase::from_u8(r.get_u8()?).ok_or(StateError::InvalidValue {
                what: "voice phase",
                offset,
            })?;
            v.note = r.get_f32()?;
            v.id = r.get_u32()?;
            v.started = r.get_u64()?;
            v.released = r.get_u64()?;
            v.release_in = r.get_u64()?;
            let offset = r.position();
            v.fade_left = r.get_u32()?;
            if v.fade_left > fade_frames {
                return Err(StateError::InvalidValue {
                    what: "voice fade",
                    offset,
                });
            }
            let has_next = r.get_bool()?;
            let next = NoteStart {
                note: r.get_f32()?,
                velocity: r.get_f32()?,
                id: r.get_u32()?,
                length: r.get_u64()?,
                expression: [r.get_f32()?, r.get_f32()?, r.get_f32()?],
            };
            v.next = has_next.then_some(next);
            v.level = r.get_f32()?;
            v.patch.load_state(r)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::{Connection, InstrumentDesc, ModuleDesc};

    const SR: f32 = 48_000.0;
    const BLOCK: usize = 64;

    /// A patch with one instrument `inst` (`voices` voices of `modules`, wired by
    /// `connections`) straight into the output.
    fn patch_with(instrument: InstrumentDesc) -> Patch {
        let name = instrument.name.clone();
        let desc = PatchDesc {
            modules: vec![ModuleDesc::new("out", "output")],
            connections: vec![Connection::new(&format!("{name}:out"), "out:left")],
            instruments: vec![instrument],
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        };
        Patch::compile(&desc, SR, BLOCK, 3).unwrap()
    }

    fn keys(voices: usize) -> Patch {
        patch_with(InstrumentDesc {
            voices,
            ..InstrumentDesc::keys()
        })
    }

    /// `keys` with a biquad lowpass for its filter (the other module type with a
    /// side-by-side kernel).
    fn keys_biquad(voices: usize) -> Patch {
        let mut i = InstrumentDesc {
            voices,
            ..InstrumentDesc::keys()
        };
        i.modules[2] = ModuleDesc::new("filter", "biquad").with_param("cutoff", 2_500.0);
        patch_with(i)
    }

    /// Triangle voices (smooth: a click stands out): note -> triangle -> adsr -> vca.
    fn triangles(voices: usize) -> Patch {
        patch_with(InstrumentDesc {
            name: "tri".to_string(),
            voices,
            modules: vec![
                ModuleDesc::new("note", "note"),
                ModuleDesc::new("osc", "triangle")
                    .with_param("freq", 0.0)
                    .with_param("gain", 0.2),
                ModuleDesc::new("env", "adsr")
                    .with_param("attack", 2.0)
                    .with_param("release", 200.0),
                ModuleDesc::new("vca", "vca"),
            ],
            connections: vec![
                Connection::new("note:freq", "osc:fm"),
                Connection::new("osc:out", "env:in"),
                Connection::new("env:out", "vca:in"),
                Connection::new("note:velocity", "vca:cv"),
                Connection::new("vca", "out"),
            ],
            arp: None,
        })
    }

    fn render(p: &mut Patch, frames: usize) -> Vec<f32> {
        let mut left = vec![0.0; frames];
        let mut right = vec![0.0; frames];
        for (l, r) in left.chunks_mut(BLOCK).zip(right.chunks_mut(BLOCK)) {
            p.process(l, r);
        }
        left
    }

    /// Level in dB of the `hz` component of `signal` (Hann window, one DFT bin).
    fn level_db(signal: &[f32], hz: f64) -> f64 {
        let n = signal.len() as f64;
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (i, &x) in signal.iter().enumerate() {
            let window = 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n).cos();
            let w = std::f64::consts::TAU * hz * i as f64 / f64::from(SR);
            re += f64::from(x) * window * w.cos();
            im += f64::from(x) * window * w.sin();
        }
        20.0 * ((re * re + im * im).sqrt() * 4.0 / n).max(1e-12).log10()
    }

    /// The largest sample-to-sample step in `signal`.
    fn largest_jump(signal: &[f32]) -> f32 {
        signal
            .windows(2)
            .map(|w| (w[1] - w[0]).abs())
            .fold(0.0, f32::max)
    }

    fn instrument(p: &Patch, node: u16) -> &Instrument {
        match &p.nodes[p.exec_of[usize::from(node)]].unit {
            super::super::Unit::Instrument(i) => i,
            super::super::Unit::Module(_) => panic!("not an instrument"),
        }
    }

    fn instrument_mut(p: &mut Patch, node: u16) -> &mut Instrument {
        let exec = p.exec_of[usize::from(node)];
        match &mut p.nodes[exec].unit {
            super::super::Unit::Instrument(i) => i,
            super::super::Unit::Module(_) => panic!("not an instrument"),
        }
    }

    /// One step of a played sequence for the side-by-side comparison.
    #[derive(Debug, Clone)]
    enum Event {
        On(u8, u8),
        Off(u8),
        Play(u8, u16),
        Sustain(bool),
        Bend(u8, i8),
        Cutoff(u16),
        Panic,
        Render(u16),
    }

    fn event() -> impl proptest::strategy::Strategy<Value = Event> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (30u8..90, 1u8..128).prop_map(|(n, v)| Event::On(n, v)),
            2 => (30u8..90).prop_map(Event::Off),
            1 => (30u8..90, 1u16..3000).prop_map(|(n, l)| Event::Play(n, l)),
            1 => any::<bool>().prop_map(Event::Sustain),
            1 => (30u8..90, -24i8..24).prop_map(|(n, b)| Event::Bend(n, b)),
            1 => (100u16..8000).prop_map(Event::Cutoff),
            1 => Just(Event::Panic),
            6 => (1u16..700).prop_map(Event::Render),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Voices rendered side by side (whole blocks, four at a time) sound bit for bit
        /// as voices rendered one by one, through notes, steals, fades, releases on
        /// their frame, sustain, bends, gliding cutoffs and uneven blocks; and a
        /// snapshot taken midway continues identically in a spare.
        #[test]
        fn side_by_side_voices_are_bit_identical_to_one_by_one(
            voices in 1usize..24,
            biquad in proptest::bool::ANY,
            events in proptest::collection::vec(event(), 1..60),
        ) {
            let make = |voices| if biquad { keys_biquad(voices) } else { keys(voices) };
            let mut a = make(voices);
            let mut b = make(voices);
            let inst = node(&a, "keys");
            let cutoff = node(&a, "keys.filter");
            instrument_mut(&mut b, inst).side_by_side = false;
            let mut snapshot = None;
            for (k, e) in events.iter().enumerate() {
                for p in [&mut a, &mut b] {
                    match *e {
                        Event::On(n, v) => p.note_on(inst, f32::from(n), f32::from(v), 0, 0),
                        Event::Off(n) => p.note_off(inst, f32::from(n), 0),
                        Event::Play(n, l) => p.note_on(inst, f32::from(n), 100.0, 0, u64::from(l)),
                        Event::Sustain(on) => p.sustain(inst, on),
                        Event::Bend(n, st) => p.note_expression(inst, f32::from(n), Expression::Bend, f32::from(st)),
                        Event::Cutoff(hz) => p.set_param(cutoff, 0, f32::from(hz)),
                        Event::Panic => p.panic_notes(),
                        Event::Render(_) => {}
                    }
                }
                if let Event::Render(frames) = *e {
                    let (x, y) = (render(&mut a, usize::from(frames)), render(&mut b, usize::from(frames)));
                    proptest::prop_assert!(
                        x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                        "event {}: outputs differ", k
                    );
                }
                if k == events.len() / 2 {
                    let mut bytes = vec![0u8; a.state_len()];
                    a.save_state(&mut StateWriter::new(&mut bytes));
                    snapshot = Some(bytes);
                }
            }
            proptest::prop_assert_eq!(a.voices_sounding(), b.voices_sounding());
            proptest::prop_assert_eq!(a.voice_steals(), b.voice_steals());
            let mut end_a = vec![0u8; a.state_len()];
            a.save_state(&mut StateWriter::new(&mut end_a));
            let mut end_b = vec![0u8; b.state_len()];
            b.save_state(&mut StateWriter::new(&mut end_b));
            proptest::prop_assert!(end_a == end_b, "the states differ");
            if let Some(bytes) = snapshot {
                let mut spare = make(voices);
                spare.load_state(&mut StateReader::new(&bytes)).unwrap();
                let mut from = make(voices);
                from.load_state(&mut StateReader::new(&bytes)).unwrap();
                instrument_mut(&mut from, inst).side_by_side = false;
                let (x, y) = (render(&mut spare, 3000), render(&mut from, 3000));
                proptest::prop_assert!(x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()));
            }
        }
    }

    #[test]
    fn held_chords_take_the_side_by_side_path() {
        // 9 held notes of 16 voices: two groups of four side by side, one voice alone;
        // the sum is what one-by-one rendering gives.
        let mut a = keys(16);
        let mut b = keys(16);
        let inst = node(&a, "keys");
        instrument_mut(&mut b, inst).side_by_side = false;
        for p in [&mut a, &mut b] {
            for k in 0..9 {
                p.note_on(inst, 40.0 + 3.0 * k as f32, 90.0, 0, 0);
            }
        }
        let (x, y) = (render(&mut a, 24_000), render(&mut b, 24_000));
        assert!(x.iter().any(|&v| v != 0.0));
        assert_eq!(
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn played_notes_ending_with_a_side_by_side_block_match_one_by_one() {
        // Eight `/note/play` notes whose lengths end exactly on block edges (and one
        // not), with and without the pedal: released on the same frame either way.
        for sustain in [false, true] {
            let mut a = keys(16);
            let mut b = keys(16);
            let inst = node(&a, "keys");
            instrument_mut(&mut b, inst).side_by_side = false;
            for p in [&mut a, &mut b] {
                p.sustain(inst, sustain);
                for k in 0..8u64 {
                    let length = if k == 7 {
                        1000
                    } else {
                        BLOCK as u64 * (3 + k % 2)
                    };
                    p.note_on(inst, 40.0 + 3.0 * k as f32, 90.0, 0, length);
                }
            }
            let (x, y) = (render(&mut a, 12_000), render(&mut b, 12_000));
            assert!(x.iter().any(|&v| v != 0.0));
            assert_eq!(
                x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                y.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(a.voices_sounding(), b.voices_sounding());
            let mut sa = vec![0u8; a.state_len()];
            a.save_state(&mut StateWriter::new(&mut sa));
            let mut sb = vec![0u8; b.state_len()];
            b.save_state(&mut StateWriter::new(&mut sb));
            assert!(sa == sb, "the states differ");
        }
    }

    fn node(p: &Patch, id: &str) -> u16 {
        p.node_index(id).unwrap()
    }

    #[test]
    fn a_chord_of_four_notes_peaks_at_its_four_bins_within_3_db() {
        let mut p = keys(16);
        let keys = node(&p, "keys");
        let chord = [57.0, 60.0, 64.0, 67.0];
        for note in chord {
            p.note_on(keys, note, 100.0, 0, 0);
        }
        assert_eq!(p.voices_sounding(), 4);
        let _ = render(&mut p, 24_000);
        // One second: bins 1 Hz apart.
        let second = render(&mut p, 48_000);
        let mut levels = Vec::new();
        for note in chord {
            let hz = f64::from(crate::modules::note::note_hz(f64::from(note)));
            let bin = hz.round();
            let around: Vec<(f64, f64)> = (-4..=4)
                .map(|k| (bin + f64::from(k), level_db(&second, bin + f64::from(k))))
                .collect();
            let (peak_at, peak) =
                around
                    .iter()
                    .copied()
                    .fold((0.0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a });
            assert!(
                (peak_at - hz).abs() <= 1.0,
                "note {note}: peak at {peak_at} Hz, expected {hz:.1} Hz ({around:?})"
            );
            levels.push(peak);
        }
        let (lo, hi) = levels
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &l| (lo.min(l), hi.max(l)));
        assert!(hi - lo <= 3.0, "levels {levels:?} dB");
        assert!(lo > -30.0, "levels {levels:?} dB");
    }

    #[test]
    fn a_steal_jumps_no_more_than_the_same_notes_on_enough_voices() {
        // 64 notes, one every 5 ms, each held 150 ms: 16 voices steal from note 17 on
        // (the quietest held or the oldest released), 64 voices never do.
        let play = |voices: usize| {
            let mut p = triangles(voices);
            let tri = node(&p, "tri");
            let mut out = Vec::new();
            let step = 240;
            let mut held: Vec<(usize, f32)> = Vec::new();
            for k in 0..64 + 40 {
                let now = k * step;
                held.retain(|&(end, note)| {
                    if end <= now {
                        p.note_off(tri, note, 0);
                    }
                    end > now
                });
                if k < 64 {
                    // Low notes: slow slopes, so a click would stand out.
                    let note = 30.0 + (k * 7 % 24) as f32;
                    p.note_on(tri, note, 100.0, 0, 0);
                    held.push((now + 7200, note));
                }
                out.extend(render(&mut p, step));
            }
            (out, p.voice_steals())
        };
        let (few, steals) = play(16);
        let (many, none) = play(64);
        assert_eq!(none, 0);
        assert!(steals >= 40, "{steals} steals");
        // Around each steal: from the sample before the note-on that steals to the new
        // note's first milliseconds on its voice.
        let fade = (FADE_SECONDS * f64::from(SR)) as usize;
        let around_steals = |signal: &[f32]| {
            (16..64)
                .map(|k| largest_jump(&signal[k * 240 - 1..k * 240 + fade + 240]))
                .fold(0.0, f32::max)
        };
        let (a, b) = (around_steals(&few), around_steals(&many));
        assert!(a <= 1.1 * b, "largest jump {a} with 16 voices, {b} with 64");
        // A voice cut dead would jump by up to its peak, 0.2 x 100/127.
        assert!(a < 0.03, "{a}");
    }

    #[test]
    fn panic_reaches_exact_silence_within_the_fade_without_a_jump() {
        let mut p = keys(16);
        let keys = node(&p, "keys");
        for note in [48.0, 55.0, 60.0, 64.0, 67.0, 72.0] {
            p.note_on(keys, note, 127.0, 0, 0);
        }
        let before = render(&mut p, 4800);
        p.panic_notes();
        let fade = (FADE_SECONDS * f64::from(SR)).round() as usize;
        let after = render(&mut p, 4800);
        assert!(
            after[fade..].iter().all(|&x| x == 0.0),
            "silent after the fade"
        );
        assert!(after[..fade].iter().any(|&x| x != 0.0), "a fade, not a cut");
        let mut joined = before[4700..].to_vec();
        joined.extend(&after[..fade + 10]);
        assert!(largest_jump(&joined) <= 1.1 * largest_jump(&before[2400..]));
        assert_eq!(p.voices_sounding(), 0);
    }

    #[test]
    fn a_lower_voice_limit_sheds_the_oldest_released_then_the_quietest_without_a_jump() {
        // Six held notes, the last two quiet; then two released.
        let played = || {
            let mut p = keys(16);
            let keys = node(&p, "keys");
            for (note, velocity) in [(48.0, 127.0), (55.0, 127.0), (60.0, 127.0), (64.0, 127.0)] {
                p.note_on(keys, note, velocity, 0, 0);
            }
            for note in [67.0, 72.0] {
                p.note_on(keys, note, 20.0, 0, 0);
            }
            for note in [76.0, 79.0] {
                p.note_on(keys, note, 127.0, 0, 0);
            }
            let _ = render(&mut p, 2400);
            p.note_off(keys, 79.0, 0);
            p.note_off(keys, 76.0, 0);
            let before = render(&mut p, 480);
            (p, before)
        };
        let (mut unlimited, _) = played();
        let (mut p, before) = played();
        let keys = node(&p, "keys");
        assert_eq!(p.set_voice_limit(Some(4)), 4, "8 sounding, 4 shed");
        let fade = (FADE_SECONDS * f64::from(SR)).round() as usize;
        let after = render(&mut p, 4800);
        // The shed voices fade as a steal does: no jump larger than the same notes make
        // when every voice plays on.
        let mut joined = before[380..].to_vec();
        joined.extend(&after[..fade + 10]);
        let all_on = render(&mut unlimited, 4800);
        assert!(largest_jump(&joined) <= 1.1 * largest_jump(&all_on));
        assert_eq!(p.voices_sounding(), 4);
        let i = instrument(&p, keys);
        let held: Vec<f32> = i
            .voices
            .iter()
            .filter(|v| v.phase == Phase::Held)
            .map(|v| v.note)
            .collect();
        assert_eq!(held, [48.0, 55.0, 60.0, 64.0], "the loud held notes stay");
        // At the limit a new note steals (the quietest held), and never sounds a fifth.
        p.note_on(keys, 84.0, 100.0, 0, 0);
        let _ = render(&mut p, 4800);
        assert_eq!(p.voices_sounding(), 4);
        assert_eq!(
            p.set_voice_limit(Some(4)),
            0,
            "setting it again sheds nothing"
        );
        // Lifted, notes take free voices again.
        assert_eq!(p.set_voice_limit(None), 0);
        p.note_on(keys, 36.0, 100.0, 0, 0);
        let _ = render(&mut p, 480);
        assert_eq!(p.voices_sounding(), 5);
    }

    #[test]
    fn a_held_note_whose_percussive_envelope_ended_frees_its_voice() {
        // note -> triangle -> ar (percussive: ends on its own while the key is down).
        let mut p = patch_with(InstrumentDesc {
            name: "perc".to_string(),
            voices: 2,
            modules: vec![
                ModuleDesc::new("note", "note"),
                ModuleDesc::new("osc", "triangle").with_param("freq", 0.0),
                ModuleDesc::new("env", "ar")
                    .with_param("attack", 1.0)
                    .with_param("release", 50.0),
            ],
            connections: vec![
                Connection::new("note:freq", "osc:fm"),
                Connection::new("osc:out", "env:in"),
                Connection::new("env:out", "out"),
            ],
            arp: None,
        });
        let perc = node(&p, "perc");
        p.note_on(perc, 60.0, 100.0, 0, 0);
        p.sustain(perc, true);
        p.note_on(perc, 64.0, 100.0, 0, 0);
        p.note_off(perc, 64.0, 0); // sustained by the pedal
        assert_eq!(p.voices_sounding(), 2);
        let rang = render(&mut p, 4_800);
        assert!(rang.iter().any(|&x| x != 0.0));
        // Both ended, one held, one sustained: both voices are free, no note-off needed.
        assert_eq!(p.voices_sounding(), 0);
        // Three new notes on two voices: the free ones first, so only the third steals.
        for note in [62.0, 65.0, 69.0] {
            p.note_on(perc, note, 100.0, 0, 0);
        }
        assert_eq!(p.voice_steals(), 1);
        // A note-off for the long-freed note finds nothing to release.
        p.note_off(perc, 60.0, 0);
        assert_eq!(p.voices_sounding(), 2);
    }

    #[test]
    fn a_held_note_with_a_sustaining_envelope_keeps_its_voice() {
        let mut p = keys(2);
        let keys = node(&p, "keys");
        p.note_on(keys, 60.0, 100.0, 0, 0);
        let _ = render(&mut p, 96_000);
        assert_eq!(p.voices_sounding(), 1);
    }

    #[test]
    fn sustain_holds_released_notes_until_the_pedal_is_up() {
        let mut p = keys(4);
        let keys = node(&p, "keys");
        p.note_on(keys, 60.0, 100.0, 0, 0);
        p.sustain(keys, true);
        let _ = render(&mut p, 4800);
        p.note_off(keys, 60.0, 0);
        // Far longer than the release (250 ms): still sounding.
        let held = render(&mut p, 48_000);
        assert!(held[47_000..].iter().any(|&x| x.abs() > 0.01));
        assert_eq!(p.voices_sounding(), 1);
        p.sustain(keys, false);
        let released = render(&mut p, 96_000);
        assert!(released[90_000..].iter().all(|&x| x == 0.0));
        assert_eq!(p.voices_sounding(), 0);
        // Without the pedal, a note-off releases at once.
        p.note_on(keys, 60.0, 100.0, 0, 0);
        let _ = render(&mut p, 4800);
        p.note_off(keys, 60.0, 0);
        let _ = render(&mut p, 96_000);
        assert_eq!(p.voices_sounding(), 0);
    }

    #[test]
    fn a_bend_moves_one_notes_bin_only() {
        let mut p = keys(16);
        let keys = node(&p, "keys");
        p.note_on(keys, 60.0, 100.0, 1, 0);
        p.note_on(keys, 67.0, 100.0, 2, 0);
        let _ = render(&mut p, 24_000);
        let plain = render(&mut p, 48_000);
        // By id: the note tagged 1 (C4) bends up a whole tone, to D4.
        p.note_expression(keys, 1.0, Expression::Bend, 2.0);
        let _ = render(&mut p, 4_800);
        let bent = render(&mut p, 48_000);
        let hz = |note: f64| f64::from(crate::modules::note::note_hz(note));
        let (c4, d4, g4) = (hz(60.0), hz(62.0), hz(67.0));
        assert!(level_db(&bent, c4) < level_db(&plain, c4) - 30.0, "C4 gone");
        assert!(
            level_db(&bent, d4) > level_db(&plain, d4) + 30.0,
            "D4 there"
        );
        assert!(
            (level_db(&bent, g4) - level_db(&plain, g4)).abs() < 0.5,
            "G4 untouched"
        );
        // By note number, when no voice has that id: G4 bends down to F4.
        p.note_expression(keys, 67.0, Expression::Bend, -2.0);
        let _ = render(&mut p, 4_800);
        let both = render(&mut p, 48_000);
        assert!(level_db(&both, hz(65.0)) > level_db(&bent, hz(65.0)) + 30.0);
        assert!((level_db(&both, d4) - level_db(&bent, d4)).abs() < 0.5);
    }

    #[test]
    fn a_chord_after_a_panic_plays_every_note_and_steals_nothing() {
        let mut p = keys(16);
        let keys = node(&p, "keys");
        for note in 40..56 {
            p.note_on(keys, note as f32, 100.0, 0, 0);
        }
        let _ = render(&mut p, 4800);
        let steals = p.voice_steals();
        p.panic_notes();
        for note in [60.0, 64.0, 67.0] {
            p.note_on(keys, note, 100.0, 0, 0);
        }
        assert_eq!(
            p.voice_steals(),
            steals,
            "fading voices are taken, not stolen"
        );
        let _ = render(&mut p, 24_000);
        assert_eq!(p.voices_sounding(), 3);
        let second = render(&mut p, 48_000);
        for note in [60.0, 64.0, 67.0] {
            let hz = f64::from(crate::modules::note::note_hz(note));
            assert!(level_db(&second, hz) > -30.0, "{note} sounds");
        }
    }

    #[test]
    fn a_chord_change_on_one_frame_without_an_envelope_keeps_every_note() {
        let mut p = patch_with(InstrumentDesc {
            name: "organ".to_string(),
            voices: 4,
            modules: vec![
                ModuleDesc::new("note", "note"),
                ModuleDesc::new("osc", "triangle").with_param("freq", 0.0),
                ModuleDesc::new("vca", "vca"),
            ],
            connections: vec![
                Connection::new("note:freq", "osc:fm"),
                Connection::new("osc", "vca:in"),
                Connection::new("note:velocity", "vca:cv"),
                Connection::new("vca", "out"),
            ],
            arp: None,
        });
        let organ = node(&p, "organ");
        for note in [53.0, 57.0, 60.0, 65.0] {
            p.note_on(organ, note, 100.0, 0, 0);
        }
        let _ = render(&mut p, 4800);
        for (off, on) in [(53.0, 55.0), (57.0, 59.0), (60.0, 62.0), (65.0, 67.0)] {
            p.note_off(organ, off, 0);
            p.note_on(organ, on, 100.0, 0, 0);
        }
        let _ = render(&mut p, 24_000);
        assert_eq!(p.voices_sounding(), 4);
        let second = render(&mut p, 48_000);
        for note in [55.0, 59.0, 62.0, 67.0] {
            let hz = f64::from(crate::modules::note::note_hz(note));
            assert!(level_db(&second, hz) > -30.0, "{note} sounds");
        }
        assert_eq!(p.voice_steals(), 0);
    }

    #[test]
    fn expression_sent_with_a_stealing_note_reaches_it() {
        let mut p = keys(2);
        let keys = node(&p, "keys");
        // Notes whose harmonics miss 71 and 83.
        p.note_on(keys, 49.0, 100.0, 0, 0);
        p.note_on(keys, 50.0, 100.0, 0, 0);
        let _ = render(&mut p, 4800);
        // Both voices held: the note steals one, and its bend arrives while it waits.
        p.note_on(keys, 71.0, 127.0, 7, 0);
        p.note_expression(keys, 7.0, Expression::Bend, 12.0);
        let _ = render(&mut p, 24_000);
        let second = render(&mut p, 48_000);
        let hz = |note: f64| f64::from(crate::modules::note::note_hz(note));
        assert!(level_db(&second, hz(83.0)) > -30.0, "bent up an octave");
        assert!(level_db(&second, hz(71.0)) < level_db(&second, hz(83.0)) - 30.0);
    }

    #[test]
    fn notes_take_free_voices_first_then_the_oldest_released() {
        let mut p = keys(2);
        let keys = node(&p, "keys");
        p.note_on(keys, 60.0, 100.0, 0, 0);
        p.note_on(keys, 64.0, 100.0, 0, 0);
        let _ = render(&mut p, 480);
        assert_eq!(p.voice_steals(), 0);
        p.note_off(keys, 64.0, 0);
        p.note_off(keys, 60.0, 0);
        let _ = render(&mut p, 480);
        // Both released, 64 first: it is the one taken.
        p.note_on(keys, 72.0, 100.0, 0, 0);
        let i = instrument(&p, keys);
        assert_eq!(i.voices[1].next.map(|n| n.note), Some(72.0));
        assert_eq!(i.voices[0].phase, Phase::Released);
        assert_eq!(p.voice_steals(), 1);
        // After the fade the new note holds that voice.
        let _ = render(&mut p, 480);
        let i = instrument(&p, keys);
        assert_eq!((i.voices[1].phase, i.voices[1].note), (Phase::Held, 72.0));
    }

    #[test]
    fn a_played_note_releases_itself_on_its_frame() {
        let mut p = keys(4);
        let keys = node(&p, "keys");
        // 1000 frames: not a block boundary.
        p.note_on(keys, 60.0, 100.0, 0, 1000);
        let _ = render(&mut p, 960);
        let i = instrument(&p, keys);
        assert_eq!(
            (i.voices[0].phase, i.voices[0].release_in),
            (Phase::Held, 40)
        );
        let _ = render(&mut p, 64);
        let i = instrument(&p, keys);
        assert_eq!(i.voices[0].phase, Phase::Released);
        let _ = render(&mut p, 48_000);
        assert_eq!(p.voices_sounding(), 0);
    }

    #[test]
    fn a_note_off_leaves_notes_with_their_own_length_alone() {
        let mut p = keys(4);
        let keys = node(&p, "keys");
        // A sequencer's (or /note/play's) note of one second, then a client's held note
        // of the same pitch: the client's note-off releases the client's note.
        p.note_on(keys, 60.0, 100.0, 0, 48_000);
        let _ = render(&mut p, 100);
        p.note_on(keys, 60.0, 100.0, 0, 0);
        let _ = render(&mut p, 100);
        p.note_off(keys, 60.0, 0);
        let i = instrument(&p, keys);
        assert_eq!(
            (i.voices[0].phase, i.voices[1].phase),
            (Phase::Held, Phase::Released)
        );
        // With nothing waiting for a note-off, a note-off changes nothing.
        p.note_off(keys, 60.0, 0);
        assert_eq!(instrument(&p, keys).voices[0].phase, Phase::Held);
        let _ = render(&mut p, 48_000);
        assert_eq!(instrument(&p, keys).voices[0].phase, Phase::Released);
    }

    #[test]
    fn a_snapshot_mid_steal_continues_bit_identically() {
        let mut p = keys(2);
        let inst = node(&p, "keys");
        for (k, note) in [60.0, 64.0, 67.0].into_iter().enumerate() {
            p.note_on(inst, note, 90.0, k as u32 + 1, 0);
            let _ = render(&mut p, 64);
        }
        p.sustain(inst, true);
        p.note_expression(inst, 3.0, Expression::Pressure, 0.5);
        let mut bytes = vec![0u8; p.state_len()];
        let mut w = StateWriter::new(&mut bytes);
        p.save_state(&mut w);
        assert_eq!(w.finish(), Ok(p.state_len()));
        let mut spare = keys(2);
        spare.load_state(&mut StateReader::new(&bytes)).unwrap();
        let a = render(&mut p, 9600);
        let b = render(&mut spare, 9600);
        assert_eq!(
            a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        );
        assert_eq!(p.voice_steals(), spare.voice_steals());
    }

    #[test]
    fn bad_instruments_are_refused_with_the_reason() {
        let bad = |i: InstrumentDesc| {
            let desc = PatchDesc {
                modules: vec![ModuleDesc::new("out", "output")],
                connections: vec![],
                instruments: vec![i],
                clock: None,
                tracks: Vec::new(),
                midi: Default::default(),
            };
            Patch::compile(&desc, SR, BLOCK, 3).unwrap_err().to_string()
        };
        let e = bad(InstrumentDesc {
            voices: 0,
            ..InstrumentDesc::keys()
        });
        assert!(
            e.contains("instrument 'keys'") && e.contains("1 to 4096"),
            "{e}"
        );
        let mut i = InstrumentDesc::keys();
        i.modules[1].type_name = "sawe".to_string();
        let e = bad(i);
        assert!(
            e.contains("instrument 'keys'") && e.contains("did you mean 'saw'"),
            "{e}"
        );
        let mut i = InstrumentDesc::keys();
        i.modules.push(ModuleDesc::new("out", "gain"));
        assert!(bad(i).contains("reserved"));
        let mut i = InstrumentDesc::keys();
        i.name = "out".to_string();
        assert!(bad(i).contains("'out'"));
        let mut i = InstrumentDesc::keys();
        i.name = "7".to_string();
        assert!(bad(i).contains("reads as a number"));
        let mut i = InstrumentDesc::keys();
        i.modules.push(ModuleDesc::new("note2", "note"));
        assert!(bad(i).contains("2 note modules"));
        let mut i = InstrumentDesc::keys();
        i.connections.last_mut().unwrap().to = "out:zzz".to_string();
        assert!(bad(i).contains("mono"));
        let mut i = InstrumentDesc::keys();
        i.connections.pop();
        assert!(bad(i).contains("nothing is connected"));
        let mut i = InstrumentDesc::keys();
        i.connections.push(Connection::new("osc:out", "out"));
        assert!(bad(i).contains("2 connections into `out`"));
    }
}
