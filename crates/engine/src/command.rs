//! Engine commands: the only way anything outside a worker changes what it renders.
//!
//! A [`Command`] is decoded from OSC (or a command file) by the protocol crate, stamped
//! with the absolute frame at which it takes effect by the output clock, and shipped to
//! every worker as a fixed-size [`CommandRecord`]. Both workers apply the same records at
//! the same frames, which is what keeps them in lockstep.

use chronus_dsp::{ArpMode, Expression};

use crate::arpeggiator::{
    ArpSetting, MAX_GATE, MAX_OCTAVES, MAX_RATE_TICKS, MIN_GATE, MIN_OCTAVES, MIN_RATE_TICKS,
};
use chronus_ipc::CommandRecord;

/// Index of a module instance in a compiled patch (its position in the patch description).
pub type NodeIndex = u16;

/// Something that changes the sound, applied at an exact frame in every worker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Command {
    /// Set parameter `param` of module `node` to `value` (already range-checked; the DSP clamps too).
    SetParam {
        /// Module instance.
        node: NodeIndex,
        /// Parameter index within the module's spec.
        param: u16,
        /// New target value, in the parameter's documented unit.
        value: f32,
    },
    /// Open or close the gate of module `node` (envelopes).
    Gate {
        /// Module instance.
        node: NodeIndex,
        /// `true` opens the gate (note on), `false` closes it (note off).
        on: bool,
    },
    /// Set the engine's master gain (0..1), smoothed.
    EngineGain(f32),
    /// Play the built-in short test tone, mixed after the patch.
    TestTone,
    /// Glide parameter `param` of module `node` from its current value to `target`
    /// over `seconds`, inside the engine (deterministic, in lockstep).
    Ramp {
        /// Module instance.
        node: NodeIndex,
        /// Parameter index within the module's spec.
        param: u16,
        /// Value reached at the end of the ramp.
        target: f32,
        /// Length of the ramp in seconds (0 = jump, still smoothed).
        seconds: f32,
    },
    /// Fault injection (offered only by servers started with `--allow-fault-injection`):
    /// aborts every worker that applies it, in lockstep, to exercise the handling of a
    /// command that kills both workers at once.
    DebugPoison,
    /// Start note `note` (MIDI number, fractional allowed) at `velocity` (0..=127; 0 is a
    /// note-off) on instrument `instrument`, tagged `id` (0: none), held until a note-off.
    NoteOn {
        /// The instrument's node.
        instrument: NodeIndex,
        /// MIDI note number, C4 = 60.
        note: f32,
        /// 0..=127.
        velocity: f32,
        /// Tells apart two held instances of one note (MPE); 0: none.
        id: u32,
    },
    /// Release the oldest held instance of `note` (the one tagged `id`, if not 0).
    NoteOff {
        /// The instrument's node.
        instrument: NodeIndex,
        /// MIDI note number.
        note: f32,
        /// The note-on's id; 0: any instance of `note`.
        id: u32,
    },
    /// Start a note that releases itself after `seconds`, inside the engine (so the
    /// note-off is exact to the frame and survives a failover).
    NotePlay {
        /// The instrument's node.
        instrument: NodeIndex,
        /// MIDI note number.
        note: f32,
        /// 0..=127.
        velocity: f32,
        /// How long the note is held.
        seconds: f32,
    },
    /// A per-note expression (bend, pressure, timbre) on the voices playing the note
    /// tagged `target`, or, when no voice has that id, note number `target`.
    NoteExpression {
        /// The instrument's node.
        instrument: NodeIndex,
        /// A note id, or a note number.
        target: f32,
        /// Which expression.
        kind: Expression,
        /// Semitones for a bend, 0..1 for pressure and timbre.
        value: f32,
    },
    /// The sustain pedal of an instrument.
    Sustain {
        /// The instrument's node.
        instrument: NodeIndex,
        /// Down (held notes sound on after their note-off) or up (they release).
        on: bool,
    },
    /// Every voice of every instrument fades to silence at once.
    Panic,
    /// At most `voices` voices of each instrument sound at once from this frame (0: as
    /// many as it has): what the supervisor's overload protection lowers when the
    /// workers cannot render the voices in time, and `/voices/limit` sets. Voices over
    /// it fade out as a steal does; notes beyond it steal.
    VoiceLimit {
        /// The limit; 0 lifts it.
        voices: u16,
    },
    /// The clock's tempo, in beats per minute (20..=400): it lands on the next whole
    /// beat, so bar lines stay on exact frames.
    ClockTempo {
        /// Beats per minute.
        bpm: f32,
    },
    /// The clock's swing: where the off-beat sixteenth falls in its pair (0.5 straight
    /// to 0.75), from now on.
    ClockSwing {
        /// 0.5..=0.75.
        swing: f32,
    },
    /// Start the clock (from beat 0 at this frame, if it was stopped) or stop it.
    ClockRun {
        /// Start (true) or stop.
        on: bool,
    },
    /// Start or stop a sequencer track, on the next bar line.
    TrackRun {
        /// The track's place in the patch's `[[tracks]]`.
        track: u16,
        /// Start (true) or stop.
        on: bool,
    },
    /// Change a setting of an instrument's arpeggiator (`/arp/<instrument>/…`).
    Arp {
        /// The instrument's node.
        instrument: NodeIndex,
        /// The setting and its new value (already checked by the address table).
        setting: ArpSetting,
    },
    /// Switch to patch `version`, whose TOML text (`len` bytes) arrived in
    /// [`Instruction::PatchChunk`] records before this command: the whole patch with a
    /// short crossfade, or only its tracks on the next bar line or beat (`at`).
    SwitchPatch {
        /// Version of the patch text to switch to.
        version: u32,
        /// Total length of the patch text in bytes.
        len: u32,
        /// When the switch takes effect, and what it changes.
        at: SwitchAt,
    },
}

/// When a patch switch takes effect, and what it changes. A live edit of a track
/// (`/seq/<track>/pattern`, `…/instrument`, `…/length`) is sent as the whole patch text
/// with the track changed, like any patch edit, so logs, replays and restarts carry it
/// the same way; but it must not restart the sound nor land mid-bar, hence the tracks
/// switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwitchAt {
    /// At its frame: the whole patch, crossfaded from the running one.
    #[default]
    Now,
    /// Only the clock and tracks, on the next bar line (at once when the clock is
    /// stopped); the sound (modules, voices, parameter values) plays on untouched. A
    /// patch whose sound differs from the running one's is switched [`SwitchAt::Now`].
    TracksAtBar,
    /// As [`SwitchAt::TracksAtBar`], on the next beat.
    TracksAtBeat,
}

impl SwitchAt {
    /// Its code in records, snapshots and logs.
    pub fn code(self) -> u64 {
        match self {
            SwitchAt::Now => 0,
            SwitchAt::TracksAtBar => 1,
            SwitchAt::TracksAtBeat => 2,
        }
    }

    /// The switch of code `code`, if any.
    pub fn from_code(code: u64) -> Option<SwitchAt> {
        match code {
            0 => Some(SwitchAt::Now),
            1 => Some(SwitchAt::TracksAtBar),
            2 => Some(SwitchAt::TracksAtBeat),
            _ => None,
        }
    }

    /// Whether only the tracks switch.
    pub fn tracks_only(self) -> bool {
        self != SwitchAt::Now
    }
}

/// Record kinds. Lockstep kinds go to every worker; control kinds address one worker.
mod kind {
    pub const SET_PARAM: u32 = 1;
    pub const GATE: u32 = 2;
    pub const ENGINE_GAIN: u32 = 3;
    pub const TEST_TONE: u32 = 4;
    pub const RAMP: u32 = 5;
    pub const SWITCH_PATCH: u32 = 6;
    pub const PATCH_CHUNK: u32 = 7;
    pub const DEBUG_POISON: u32 = 8;
    pub const NOTE_ON: u32 = 9;
    pub const NOTE_OFF: u32 = 10;
    pub const NOTE_PLAY: u32 = 11;
    pub const NOTE_EXPRESSION: u32 = 12;
    pub const SUSTAIN: u32 = 13;
    pub const PANIC: u32 = 14;
    pub const CLOCK_TEMPO: u32 = 15;
    pub const CLOCK_SWING: u32 = 16;
    pub const CLOCK_RUN: u32 = 17;
    pub const TRACK_RUN: u32 = 18;
    pub const ARP: u32 = 19;
    pub const VOICE_LIMIT: u32 = 20;
    pub const SNAPSHOT: u32 = 100;
    pub const DEBUG_CRASH: u32 = 101;
    pub const DEBUG_HANG: u32 = 102;
    pub const DEBUG_SLOW: u32 = 103;
    pub const DEBUG_DIVERGE: u32 = 104;
    pub const DEBUG_SEGV: u32 = 105;
    pub const DEBUG_DSP_PANIC: u32 = 106;
}

/// A fault to inject into one worker (offered only by servers started with
/// `--allow-fault-injection`): the one name of each fault from the OSC request to the
/// worker that acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Abort the worker process.
    Crash,
    /// Stop making progress (sleep forever).
    Hang,
    /// Add `micros` of busy delay to every block.
    Slow {
        /// Extra time per block, in microseconds.
        micros: u32,
    },
    /// Render every block slightly differently from now on (as a memory error or a
    /// nondeterminism bug would): the worker leaves the lockstep, and the output must
    /// notice and retire it.
    Diverge,
    /// Raise SIGSEGV in the worker (as a memory error would).
    Segv,
    /// Panic inside the next module's `process` (as a bug in DSP code would).
    DspPanic,
}

/// Requests addressed to a single worker rather than to the lockstep stream.
///
/// They travel in the same ring (so they are ordered with the commands around them) but
/// never change the audio: a worker that acts on one renders exactly what it would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Write a snapshot of the engine state as it is at the start of block `block`
    /// into the snapshot area, tagged with `request`.
    Snapshot {
        /// Identifies the request, so a joining worker knows the snapshot is the one it waits for.
        request: u64,
        /// Block boundary at which the snapshot is taken.
        block: u64,
    },
    /// Fault injection: `fault` takes effect before the worker renders `block` (a slowed
    /// worker stays slow from then on).
    Fault {
        /// What to inject.
        fault: Fault,
        /// First block affected.
        block: u64,
    },
}

/// What a worker finds in its command ring.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Instruction {
    /// A lockstep command taking effect at absolute `frame`.
    Stamped(StampedCommand),
    /// A request for this worker alone.
    Control(Control),
    /// A piece of a new patch's TOML text (lockstep, ordered before its `SwitchPatch`).
    PatchChunk(PatchChunk),
}

/// Bytes of patch text one ring record carries.
pub const PATCH_CHUNK_BYTES: usize = 32;

/// A piece of patch text: `len` bytes of `bytes` belong at `offset` of patch `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchChunk {
    /// Sequence number (same sequence as stamped commands).
    pub seq: u64,
    /// Patch version the text belongs to.
    pub version: u32,
    /// Byte offset in the patch text.
    pub offset: u32,
    /// Number of meaningful bytes in `bytes`.
    pub len: u8,
    /// The text bytes.
    pub bytes: [u8; PATCH_CHUNK_BYTES],
}

impl PatchChunk {
    /// Splits `text` into chunks for patch `version`, numbered from `first_seq` on.
    pub fn split(version: u32, text: &[u8]) -> impl Iterator<Item = PatchChunk> + '_ {
        text.chunks(PATCH_CHUNK_BYTES)
            .enumerate()
            .map(move |(i, piece)| {
                let mut bytes = [0u8; PATCH_CHUNK_BYTES];
                bytes[..piece.len()].copy_from_slice(piece);
                PatchChunk {
                    seq: 0,
                    version,
                    offset: (i * PATCH_CHUNK_BYTES) as u32,
                    len: piece.len() as u8,
                    bytes,
                }
            })
    }

    /// Encodes into a ring record for slot `generation`.
    pub fn to_record(&self, generation: u32) -> CommandRecord {
        let mut payload = [0u64; 5];
        payload[0] = u64::from(self.version) | (u64::from(self.len) << 32);
        for (word, piece) in payload[1..].iter_mut().zip(self.bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(piece);
            *word = u64::from_le_bytes(b);
        }
        CommandRecord {
            seq: self.seq,
            generation,
            kind: kind::PATCH_CHUNK,
            frame: u64::from(self.offset),
            payload,
        }
    }
}

/// A command with the absolute frame at which it takes effect and its sequence number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StampedCommand {
    /// Global sequence number, assigned by the output clock; strictly increasing.
    pub seq: u64,
    /// Absolute frame (sample index since the stream started) at which it takes effect.
    pub frame: u64,
    /// The command itself.
    pub command: Command,
}

/// Why a record from shared memory was not accepted. Workers count and skip these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record's kind is not one this build knows.
    #[error("unknown command record kind {0}")]
    UnknownKind(u32),
    /// A field held a value no encoder produces (e.g. a non-finite float).
    #[error("malformed command record of kind {0}")]
    Malformed(u32),
}

impl StampedCommand {
    /// Encodes into a ring record for slot `generation`.
    pub fn to_record(&self, generation: u32) -> CommandRecord {
        let mut payload = [0u64; 5];
        let kind = match self.command {
            Command::SetParam { node, param, value } => {
                payload[0] = u64::from(node);
                payload[1] = u64::from(param);
                payload[2] = u64::from(value.to_bits());
                kind::SET_PARAM
            }
            Command::Gate { node, on } => {
                payload[0] = u64::from(node);
                payload[1] = u64::from(on);
                kind::GATE
            }
            Command::EngineGain(gain) => {
                payload[0] = u64::from(gain.to_bits());
                kind::ENGINE_GAIN
            }
            Command::TestTone => kind::TEST_TONE,
            Command::Ramp {
                node,
                param,
                target,
                seconds,
            } => {
                payload[0] = u64::from(node);
                payload[1] = u64::from(param);
                payload[2] = u64::from(target.to_bits());
                payload[3] = u64::from(seconds.to_bits());
                kind::RAMP
            }
            Command::SwitchPatch { version, len, at } => {
                payload[0] = u64::from(version);
                payload[1] = u64::from(len);
                payload[2] = at.code();
                kind::SWITCH_PATCH
            }
            Command::DebugPoison => kind::DEBUG_POISON,
            Command::NoteOn {
                instrument,
                note,
                velocity,
                id,
            } => {
                payload[0] = u64::from(instrument);
                payload[1] = u64::from(note.to_bits());
                payload[2] = u64::from(velocity.to_bits());
                payload[3] = u64::from(id);
                kind::NOTE_ON
            }
            Command::NoteOff {
                instrument,
                note,
                id,
            } => {
                payload[0] = u64::from(instrument);
                payload[1] = u64::from(note.to_bits());
                payload[3] = u64::from(id);
                kind::NOTE_OFF
            }
            Command::NotePlay {
                instrument,
                note,
                velocity,
                seconds,
            } => {
                payload[0] = u64::from(instrument);
                payload[1] = u64::from(note.to_bits());
                payload[2] = u64::from(velocity.to_bits());
                payload[3] = u64::from(seconds.to_bits());
                kind::NOTE_PLAY
            }
            Command::NoteExpression {
                instrument,
                target,
                kind,
                value,
            } => {
                payload[0] = u64::from(instrument);
                payload[1] = u64::from(target.to_bits());
                payload[2] = u64::from(value.to_bits());
                payload[3] = match kind {
                    Expression::Bend => 0,
                    Expression::Pressure => 1,
                    Expression::Timbre => 2,
                };
                kind::NOTE_EXPRESSION
            }
            Command::Sustain { instrument, on } => {
                payload[0] = u64::from(instrument);
                payload[1] = u64::from(on);
                kind::SUSTAIN
            }
            Command::Panic => kind::PANIC,
            Command::VoiceLimit { voices } => {
                payload[0] = u64::from(voices);
                kind::VOICE_LIMIT
            }
            Command::ClockTempo { bpm } => {
                payload[0] = u64::from(bpm.to_bits());
                kind::CLOCK_TEMPO
            }
            Command::ClockSwing { swing } => {
                payload[0] = u64::from(swing.to_bits());
                kind::CLOCK_SWING
            }
            Command::ClockRun { on } => {
                payload[0] = u64::from(on);
                kind::CLOCK_RUN
            }
            Command::TrackRun { track, on } => {
                payload[0] = u64::from(track);
                payload[1] = u64::from(on);
                kind::TRACK_RUN
            }
            Command::Arp {
                instrument,
                setting,
            } => {
                payload[0] = u64::from(instrument);
                (payload[1], payload[2]) = match setting {
                    ArpSetting::On(on) => (0, u64::from(on)),
                    ArpSetting::Mode(mode) => (1, u64::from(mode.code())),
                    ArpSetting::Octaves(octaves) => (2, u64::from(octaves)),
                    ArpSetting::Rate(ticks) => (3, u64::from(ticks)),
                    ArpSetting::Gate(gate) => (4, u64::from(gate.to_bits())),
                };
                kind::ARP
            }
        };
        CommandRecord {
            seq: self.seq,
            generation,
            kind,
            frame: self.frame,
            payload,
        }
    }
}

impl Control {
    /// Encodes into a ring record for slot `generation`, with sequence number `seq`.
    pub fn to_record(&self, seq: u64, generation: u32) -> CommandRecord {
        let mut payload = [0u64; 5];
        let (kind, frame) = match *self {
            Control::Snapshot { request, block } => {
                payload[0] = request;
                (kind::SNAPSHOT, block)
            }
            Control::Fault { fault, block } => match fault {
                Fault::Crash => (kind::DEBUG_CRASH, block),
                Fault::Hang => (kind::DEBUG_HANG, block),
                Fault::Slow { micros } => {
                    payload[0] = u64::from(micros);
                    (kind::DEBUG_SLOW, block)
                }
                Fault::Diverge => (kind::DEBUG_DIVERGE, block),
                Fault::Segv => (kind::DEBUG_SEGV, block),
                Fault::DspPanic => (kind::DEBUG_DSP_PANIC, block),
            },
        };
        CommandRecord {
            seq,
            generation,
            kind,
            frame,
            payload,
        }
    }
}

impl Instruction {
    /// Decodes a record read from shared memory, checking every field: the bytes come
    /// from another process and are trusted no further than their bounds.
    pub fn from_record(record: &CommandRecord) -> Result<Instruction, RecordError> {
        let p = &record.payload;
        let small = |v: u64| u16::try_from(v).map_err(|_| RecordError::Malformed(record.kind));
        let float = |v: u64| {
            let f = u32::try_from(v)
                .map(f32::from_bits)
                .map_err(|_| RecordError::Malformed(record.kind))?;
            if f.is_finite() {
                Ok(f)
            } else {
                Err(RecordError::Malformed(record.kind))
            }
        };
        let flag = |v: u64| match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(RecordError::Malformed(record.kind)),
        };
        let id = |v: u64| u32::try_from(v).map_err(|_| RecordError::Malformed(record.kind));
        let stamped = |command| {
            Ok(Instruction::Stamped(StampedCommand {
                seq: record.seq,
                frame: record.frame,
                command,
            }))
        };
        let fault = |fault| {
            Ok(Instruction::Control(Control::Fault {
                fault,
                block: record.frame,
            }))
        };
        match record.kind {
            kind::SET_PARAM => stamped(Command::SetParam {
                node: small(p[0])?,
                param: small(p[1])?,
                value: float(p[2])?,
            }),
            kind::GATE => stamped(Command::Gate {
                node: small(p[0])?,
                on: flag(p[1])?,
            }),
            kind::NOTE_ON => stamped(Command::NoteOn {
                instrument: small(p[0])?,
                note: float(p[1])?,
                velocity: float(p[2])?,
                id: id(p[3])?,
            }),
            kind::NOTE_OFF => stamped(Command::NoteOff {
                instrument: small(p[0])?,
                note: float(p[1])?,
                id: id(p[3])?,
            }),
            kind::NOTE_PLAY => {
                let seconds = float(p[3])?;
                if seconds < 0.0 {
                    return Err(RecordError::Malformed(record.kind));
                }
                stamped(Command::NotePlay {
                    instrument: small(p[0])?,
                    note: float(p[1])?,
                    velocity: float(p[2])?,
                    seconds,
                })
            }
            kind::NOTE_EXPRESSION => stamped(Command::NoteExpression {
                instrument: small(p[0])?,
                target: float(p[1])?,
                value: float(p[2])?,
                kind: match p[3] {
                    0 => Expression::Bend,
                    1 => Expression::Pressure,
                    2 => Expression::Timbre,
                    _ => return Err(RecordError::Malformed(record.kind)),
                },
            }),
            kind::SUSTAIN => stamped(Command::Sustain {
                instrument: small(p[0])?,
                on: flag(p[1])?,
            }),
            kind::PANIC => stamped(Command::Panic),
            kind::VOICE_LIMIT => stamped(Command::VoiceLimit {
                voices: small(p[0])?,
            }),
            kind::CLOCK_TEMPO => stamped(Command::ClockTempo { bpm: float(p[0])? }),
            kind::CLOCK_SWING => stamped(Command::ClockSwing {
                swing: float(p[0])?,
            }),
            kind::CLOCK_RUN => stamped(Command::ClockRun { on: flag(p[0])? }),
            kind::TRACK_RUN => stamped(Command::TrackRun {
                track: small(p[0])?,
                on: flag(p[1])?,
            }),
            kind::ARP => {
                let malformed = RecordError::Malformed(record.kind);
                let setting = match p[1] {
                    0 => ArpSetting::On(flag(p[2])?),
                    1 => ArpSetting::Mode(ArpMode::from_code(p[2]).ok_or(malformed)?),
                    2 => ArpSetting::Octaves(
                        u8::try_from(p[2])
                            .ok()
                            .filter(|o| (MIN_OCTAVES..=MAX_OCTAVES).contains(o))
                            .ok_or(malformed)?,
                    ),
                    3 => ArpSetting::Rate(
                        u32::try_from(p[2])
                            .ok()
                            .filter(|t| (MIN_RATE_TICKS..=MAX_RATE_TICKS).contains(t))
                            .ok_or(malformed)?,
                    ),
                    4 => {
                        let gate = float(p[2])?;
                        if !(MIN_GATE..=MAX_GATE).contains(&gate) {
                            return Err(malformed);
                        }
                        ArpSetting::Gate(gate)
                    }
                    _ => return Err(malformed),
                };
                stamped(Command::Arp {
                    instrument: small(p[0])?,
                    setting,
                })
            }
            kind::ENGINE_GAIN => stamped(Command::EngineGain(float(p[0])?)),
            kind::TEST_TONE => stamped(Command::TestTone),
            kind::DEBUG_POISON => stamped(Command::DebugPoison),
            kind::RAMP => {
                let seconds = float(p[3])?;
                if seconds < 0.0 {
                    return Err(RecordError::Malformed(record.kind));
                }
                stamped(Command::Ramp {
                    node: small(p[0])?,
                    param: small(p[1])?,
                    target: float(p[2])?,
                    seconds,
                })
            }
            kind::SWITCH_PATCH => stamped(Command::SwitchPatch {
                version: u32::try_from(p[0]).map_err(|_| RecordError::Malformed(record.kind))?,
                len: u32::try_from(p[1]).map_err(|_| RecordError::Malformed(record.kind))?,
                at: SwitchAt::from_code(p[2]).ok_or(RecordError::Malformed(record.kind))?,
            }),
            kind::PATCH_CHUNK => {
                let len = (p[0] >> 32) as usize;
                if len > PATCH_CHUNK_BYTES || record.frame > u64::from(u32::MAX) {
                    return Err(RecordError::Malformed(record.kind));
                }
                let mut bytes = [0u8; PATCH_CHUNK_BYTES];
                for (piece, word) in bytes.chunks_exact_mut(8).zip(&p[1..]) {
                    piece.copy_from_slice(&word.to_le_bytes());
                }
                Ok(Instruction::PatchChunk(PatchChunk {
                    seq: record.seq,
                    version: p[0] as u32,
                    offset: record.frame as u32,
                    len: len as u8,
                    bytes,
                }))
            }
            kind::SNAPSHOT => Ok(Instruction::Control(Control::Snapshot {
                request: p[0],
                block: record.frame,
            })),
            kind::DEBUG_CRASH => fault(Fault::Crash),
            kind::DEBUG_HANG => fault(Fault::Hang),
            kind::DEBUG_DIVERGE => fault(Fault::Diverge),
            kind::DEBUG_SEGV => fault(Fault::Segv),
            kind::DEBUG_DSP_PANIC => fault(Fault::DspPanic),
            kind::DEBUG_SLOW => fault(Fault::Slow {
                micros: u32::try_from(p[0]).map_err(|_| RecordError::Malformed(record.kind))?,
            }),
            other => Err(RecordError::UnknownKind(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_records() {
        let commands = [
            Command::SetParam {
                node: 3,
                param: 1,
                value: 1234.5,
            },
            Command::Gate { node: 1, on: true },
            Command::Gate { node: 1, on: false },
            Command::EngineGain(0.25),
            Command::TestTone,
            Command::Ramp {
                node: 2,
                param: 0,
                target: 800.0,
                seconds: 1.5,
            },
            Command::SwitchPatch {
                version: 3,
                len: 900,
                at: SwitchAt::Now,
            },
            Command::SwitchPatch {
                version: 4,
                len: 901,
                at: SwitchAt::TracksAtBar,
            },
            Command::SwitchPatch {
                version: 5,
                len: 902,
                at: SwitchAt::TracksAtBeat,
            },
            Command::DebugPoison,
            Command::NoteOn {
                instrument: 6,
                note: 60.5,
                velocity: 100.0,
                id: 77,
            },
            Command::NoteOff {
                instrument: 6,
                note: 60.5,
                id: 0,
            },
            Command::NotePlay {
                instrument: 7,
                note: 64.0,
                velocity: 1.0,
                seconds: 0.25,
            },
            Command::NoteExpression {
                instrument: 6,
                target: 77.0,
                kind: Expression::Bend,
                value: -2.5,
            },
            Command::NoteExpression {
                instrument: 6,
                target: 60.0,
                kind: Expression::Pressure,
                value: 0.5,
            },
            Command::NoteExpression {
                instrument: 6,
                target: 60.0,
                kind: Expression::Timbre,
                value: 1.0,
            },
            Command::Sustain {
                instrument: 6,
                on: true,
            },
            Command::Panic,
            Command::VoiceLimit { voices: 12 },
            Command::ClockTempo { bpm: 133.5 },
            Command::ClockSwing { swing: 0.66 },
            Command::ClockRun { on: false },
            Command::TrackRun { track: 3, on: true },
            Command::Arp {
                instrument: 5,
                setting: ArpSetting::On(true),
            },
            Command::Arp {
                instrument: 5,
                setting: ArpSetting::Mode(ArpMode::UpDown),
            },
            Command::Arp {
                instrument: 5,
                setting: ArpSetting::Mode(ArpMode::Random),
            },
            Command::Arp {
                instrument: 5,
                setting: ArpSetting::Octaves(4),
            },
            Command::Arp {
                instrument: 5,
                setting: ArpSetting::Rate(32),
            },
            Command::Arp {
                instrument: 5,
                setting: ArpSetting::Gate(0.05),
            },
        ];
        for (i, command) in commands.into_iter().enumerate() {
            let stamped = StampedCommand {
                seq: i as u64 + 10,
                frame: 4096 + i as u64,
                command,
            };
            let record = stamped.to_record(7);
            assert_eq!(record.generation, 7);
            assert_eq!(
                Instruction::from_record(&record),
                Ok(Instruction::Stamped(stamped))
            );
        }
    }

    #[test]
    fn controls_round_trip_through_records() {
        let controls = [
            Control::Snapshot {
                request: 9,
                block: 100,
            },
            Control::Fault {
                fault: Fault::Crash,
                block: 5,
            },
            Control::Fault {
                fault: Fault::Hang,
                block: 6,
            },
            Control::Fault {
                fault: Fault::Slow { micros: 900 },
                block: 7,
            },
            Control::Fault {
                fault: Fault::Diverge,
                block: 8,
            },
            Control::Fault {
                fault: Fault::Segv,
                block: 9,
            },
            Control::Fault {
                fault: Fault::DspPanic,
                block: 10,
            },
        ];
        for control in controls {
            let record = control.to_record(1, 2);
            assert_eq!(
                Instruction::from_record(&record),
                Ok(Instruction::Control(control))
            );
        }
    }

    #[test]
    fn patch_text_round_trips_through_chunks() {
        let text = "[[modules]]\nid = \"sine\"\ntype = \"sine\"\n# é and more text than one chunk";
        let mut rebuilt = vec![0u8; text.len()];
        for (i, mut chunk) in PatchChunk::split(4, text.as_bytes()).enumerate() {
            chunk.seq = i as u64 + 1;
            let Ok(Instruction::PatchChunk(back)) = Instruction::from_record(&chunk.to_record(1))
            else {
                panic!("not a chunk");
            };
            assert_eq!(back, chunk);
            let at = back.offset as usize;
            rebuilt[at..at + back.len as usize].copy_from_slice(&back.bytes[..back.len as usize]);
        }
        assert_eq!(rebuilt, text.as_bytes());
    }

    #[test]
    fn garbage_records_are_refused() {
        let mut record = StampedCommand {
            seq: 1,
            frame: 0,
            command: Command::EngineGain(0.5),
        }
        .to_record(1);
        record.payload[0] = u64::from(f32::NAN.to_bits());
        assert!(Instruction::from_record(&record).is_err());
        record.kind = 9999;
        assert_eq!(
            Instruction::from_record(&record),
            Err(RecordError::UnknownKind(9999))
        );
        let mut gate = StampedCommand {
            seq: 1,
            frame: 0,
            command: Command::Gate { node: 0, on: true },
        }
        .to_record(1);
        gate.payload[1] = 2;
        assert!(Instruction::from_record(&gate).is_err());
    }
}
