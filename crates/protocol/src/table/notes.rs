//! The note addresses: `/note/on`, `/note/off`, `/note/play`, `/note/bend`,
//! `/note/pressure`, `/note/timbre`, `/sustain`, `/panic` and `/voices/limit`.
//!
//! Each takes an optional leading instrument name (`/note/on keys 60 100`); without one,
//! the patch's first instrument plays (`/note/on 60 100`). Notes are MIDI note numbers
//! (C4 = 60, fractional for microtones), velocities 0..127 (fractional allowed; 0 is a
//! note-off, as in MIDI). An optional note id tells apart two held instances of one
//! note (as MPE controllers need); the expression addresses name a note by its id, or
//! by its number when no sounding note has that id.
//!
//! Every one is an engine command: stamped, logged, replayed and applied in lockstep,
//! like `/mod/…`. These are fixed entries of the address table like the ones in its
//! `mod.rs`, kept in a file of their own because they are one family.

use chronus_dsp::spec::Unit;
use chronus_dsp::Expression;
use chronus_engine::command::{Command, NodeIndex};

use super::{AddressTable, Call, Fixed, Request, MAX_NAME_BYTES};
use crate::signature::{clip, ArgKind, ArgSpec, Value};

/// Address of note-on: `/note/on [instrument] <note> <velocity> [id]`.
pub const NOTE_ON: &str = "/note/on";
/// Address of note-off: `/note/off [instrument] <note> [id]`.
pub const NOTE_OFF: &str = "/note/off";
/// Address of a note with its length: `/note/play [instrument] <note> <velocity> <seconds>`.
pub const NOTE_PLAY: &str = "/note/play";
/// Address of per-note pitch bend: `/note/bend [instrument] <id or note> <semitones>`.
pub const NOTE_BEND: &str = "/note/bend";
/// Address of per-note pressure: `/note/pressure [instrument] <id or note> <0..1>`.
pub const NOTE_PRESSURE: &str = "/note/pressure";
/// Address of per-note timbre: `/note/timbre [instrument] <id or note> <0..1>`.
pub const NOTE_TIMBRE: &str = "/note/timbre";
/// Address of the sustain pedal: `/sustain [instrument] 0|1`.
pub const SUSTAIN: &str = "/sustain";
/// Address that silences every voice at once: `/panic`.
pub const PANIC: &str = "/panic";
/// Address of the voice limit: `/voices/limit <voices>` (0: none).
pub const VOICES_LIMIT: &str = "/voices/limit";

/// Largest note id: ids travel as `f32` in the expression commands, which hold every
/// integer up to 2^24 exactly.
pub const MAX_NOTE_ID: i64 = (1 << 24) - 1;

/// The optional leading instrument name.
const INSTRUMENT: ArgSpec = ArgSpec {
    name: "instrument",
    kind: ArgKind::Text {
        max_len: MAX_NAME_BYTES,
    },
    optional: true,
};

const NOTE: ArgSpec = ArgSpec {
    name: "note",
    kind: ArgKind::Number {
        unit: Unit::Number,
        min: 0.0,
        max: 127.0,
        default: 60.0,
    },
    optional: false,
};

const VELOCITY: ArgSpec = ArgSpec {
    name: "velocity",
    kind: ArgKind::Number {
        unit: Unit::Number,
        min: 0.0,
        max: 127.0,
        default: 100.0,
    },
    optional: false,
};

const ID: ArgSpec = ArgSpec {
    name: "id",
    kind: ArgKind::Int {
        min: 0,
        max: MAX_NOTE_ID,
    },
    optional: true,
};

/// The note an expression is for: a note id, or a note number.
const TARGET: ArgSpec = ArgSpec {
    name: "id_or_note",
    kind: ArgKind::Number {
        unit: Unit::Number,
        min: 0.0,
        max: MAX_NOTE_ID as f32,
        default: 60.0,
    },
    optional: false,
};

const fn amount(name: &'static str, unit: Unit, min: f32, max: f32) -> ArgSpec {
    ArgSpec {
        name,
        kind: ArgKind::Number {
            unit,
            min,
            max,
            default: 0.0,
        },
        optional: false,
    }
}

/// The note addresses, in the order they are documented.
pub(crate) static FIXED: &[Fixed] = &[
    Fixed {
        address: NOTE_ON,
        args: &[INSTRUMENT, NOTE, VELOCITY, ID],
        reply: "none",
        doc: "Starts a note on the instrument (default: the patch's first) on a free voice, else the one released longest ago, else the quietest (faded out over 3 ms first). Velocity 0 is a note-off. `id` (0..16777215) tells apart two held instances of one note.",
        engine: true,
        fault_injection: false,
        build: |call| {
            Ok(Request::Engine(Command::NoteOn {
                instrument: instrument(call)?,
                note: call.number(1)?,
                velocity: call.number(2)?,
                id: id(call, 3)?,
            }))
        },
    },
    Fixed {
        address: NOTE_OFF,
        args: &[INSTRUMENT, NOTE, ID],
        reply: "none",
        doc: "Releases the oldest held instance of the note (the one started with `id`, if given) that waits for a note-off: notes with their own length (/note/play, a sequencer track's) end by themselves. With the sustain pedal down it sounds on until the pedal is up.",
        engine: true,
        fault_injection: false,
        build: |call| {
            Ok(Request::Engine(Command::NoteOff {
                instrument: instrument(call)?,
                note: call.number(1)?,
                id: id(call, 2)?,
            }))
        },
    },
    Fixed {
        address: NOTE_PLAY,
        args: &[
            INSTRUMENT,
            NOTE,
            VELOCITY,
            amount("seconds", Unit::Seconds, 0.0, 3600.0),
        ],
        reply: "none",
        doc: "Plays a note for `seconds`: its note-off is scheduled inside the engine, exact to the frame and kept across a failover.",
        engine: true,
        fault_injection: false,
        build: |call| {
            Ok(Request::Engine(Command::NotePlay {
                instrument: instrument(call)?,
                note: call.number(1)?,
                velocity: call.number(2)?,
                seconds: call.number(3)?,
            }))
        },
    },
    Fixed {
        address: NOTE_BEND,
        args: &[
            INSTRUMENT,
            TARGET,
            amount("semitones", Unit::Number, -96.0, 96.0),
        ],
        reply: "none",
        doc: "Bends one note (by its id, or its number when no sounding note has that id) by `semitones`, gliding over 10 ms; the other notes keep their pitch.",
        engine: true,
        fault_injection: false,
        build: |call| expression(call, Expression::Bend),
    },
    Fixed {
        address: NOTE_PRESSURE,
        args: &[
            INSTRUMENT,
            TARGET,
            amount("pressure", Unit::Linear, 0.0, 1.0),
        ],
        reply: "none",
        doc: "Sets one note's pressure (MPE aftertouch), the `pressure` output of its voice's `note` module.",
        engine: true,
        fault_injection: false,
        build: |call| expression(call, Expression::Pressure),
    },
    Fixed {
        address: NOTE_TIMBRE,
        args: &[
            INSTRUMENT,
            TARGET,
            amount("timbre", Unit::Linear, 0.0, 1.0),
        ],
        reply: "none",
        doc: "Sets one note's timbre (MPE's Y axis), the `timbre` output of its voice's `note` module.",
        engine: true,
        fault_injection: false,
        build: |call| expression(call, Expression::Timbre),
    },
    Fixed {
        address: SUSTAIN,
        args: &[
            INSTRUMENT,
            ArgSpec {
                name: "on",
                kind: ArgKind::Gate,
                optional: false,
            },
        ],
        reply: "none",
        doc: "The sustain pedal: 1 holds the notes released after it, 0 releases them.",
        engine: true,
        fault_injection: false,
        build: |call| {
            Ok(Request::Engine(Command::Sustain {
                instrument: instrument(call)?,
                on: call.gate(1)?,
            }))
        },
    },
    Fixed {
        address: PANIC,
        args: &[],
        reply: "none",
        doc: "Every voice of every instrument fades to silence within 3 ms (no click); the sustain pedals go up.",
        engine: true,
        fault_injection: false,
        build: |_| Ok(Request::Engine(Command::Panic)),
    },
    Fixed {
        address: VOICES_LIMIT,
        args: &[ArgSpec {
            name: "voices",
            kind: ArgKind::Int {
                min: 0,
                max: chronus_dsp::patch::MAX_VOICES as i64,
            },
            optional: false,
        }],
        reply: "none",
        doc: "At most `voices` voices of each instrument sound at once (0 lifts the limit): voices over it fade out as a steal does (released longest ago first, then the quietest), and notes beyond it steal. The server sets it itself when the workers cannot render the voices in time (overload protection: `voice_limit` in /metrics); a limit set here holds until the next one.",
        engine: true,
        fault_injection: false,
        build: |call| {
            Ok(Request::Engine(Command::VoiceLimit {
                voices: u16::try_from(call.int(0)?).map_err(|_| call.internal())?,
            }))
        },
    },
];

/// The instrument named by argument 0, or the patch's first when it is left out.
fn instrument(call: &Call<'_>) -> Result<NodeIndex, String> {
    let table = call.table;
    match call.values.first() {
        Some(Value::Absent) => table
            .instruments()
            .next()
            .map(|(_, node)| node)
            .ok_or_else(|| {
                format!(
                "{}: this patch has no instrument (a patch declares them under [[instruments]])",
                call.address
            )
            }),
        Some(Value::Text(name)) => table.instrument(name).ok_or_else(|| {
            let known: Vec<&str> = table.instruments().map(|(name, _)| name).collect();
            let hint = match known.as_slice() {
                [] => "this patch has none".to_string(),
                names => format!("instruments: {}", names.join(", ")),
            };
            format!(
                "{}: unknown instrument '{}' ({hint})",
                call.address,
                clip(name)
            )
        }),
        _ => Err(call.internal()),
    }
}

/// An optional note id: 0 when left out.
fn id(call: &Call<'_>, i: usize) -> Result<u32, String> {
    match call.values.get(i) {
        None => Ok(0),
        Some(_) => u32::try_from(call.int(i)?).map_err(|_| call.internal()),
    }
}

fn expression(call: &Call<'_>, kind: Expression) -> Result<Request, String> {
    Ok(Request::Engine(Command::NoteExpression {
        instrument: instrument(call)?,
        target: call.number(1)?,
        kind,
        value: call.number(2)?,
    }))
}

/// Address and arguments of a note command, always naming its instrument (so a command
/// log reads the same whatever instrument comes first); `None` for other commands and
/// for an instrument this table does not have.
pub(crate) fn describe(table: &AddressTable, command: &Command) -> Option<(String, Vec<Value>)> {
    let name = |node: NodeIndex| {
        table
            .instrument_name(node)
            .map(|n| Value::Text(n.to_string()))
    };
    let (address, values) = match *command {
        Command::NoteOn {
            instrument,
            note,
            velocity,
            id,
        } => (
            NOTE_ON,
            vec![
                name(instrument)?,
                Value::Number(note),
                Value::Number(velocity),
                Value::Int(i64::from(id)),
            ],
        ),
        Command::NoteOff {
            instrument,
            note,
            id,
        } => (
            NOTE_OFF,
            vec![
                name(instrument)?,
                Value::Number(note),
                Value::Int(i64::from(id)),
            ],
        ),
        Command::NotePlay {
            instrument,
            note,
            velocity,
            seconds,
        } => (
            NOTE_PLAY,
            vec![
                name(instrument)?,
                Value::Number(note),
                Value::Number(velocity),
                Value::Number(seconds),
            ],
        ),
        Command::NoteExpression {
            instrument,
            target,
            kind,
            value,
        } => (
            match kind {
                Expression::Bend => NOTE_BEND,
                Expression::Pressure => NOTE_PRESSURE,
                Expression::Timbre => NOTE_TIMBRE,
            },
            vec![
                name(instrument)?,
                Value::Number(target),
                Value::Number(value),
            ],
        ),
        Command::Sustain { instrument, on } => (SUSTAIN, vec![name(instrument)?, Value::Gate(on)]),
        Command::Panic => (PANIC, vec![]),
        Command::VoiceLimit { voices } => (VOICES_LIMIT, vec![Value::Int(i64::from(voices))]),
        _ => return None,
    };
    Some((address.to_string(), values))
}
