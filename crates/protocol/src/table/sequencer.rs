//! The sequencer's addresses: the tempo clock (`/clock/bpm`, `/clock/swing`,
//! `/clock/start`, `/clock/stop`), each track's `/seq/<track>/start` and `…/stop`, and
//! the live edits of a track: `/seq/<track>/pattern`, `…/instrument` and `…/length`.
//!
//! The clock's are fixed entries of the address table; a track's are made for each track
//! the patch declares, which the table lists after the patch's nodes as instances of type
//! `track` (`chronus_engine::sequencer::TRACK_SPEC`). The clock's and start/stop are
//! engine commands: stamped, logged, replayed and applied in lockstep. An edit is a patch
//! edit: the supervisor checks it and sends the running patch with the track changed as
//! a tracks switch (`chronus_engine::SwitchAt`), which the engines apply on the next bar
//! line (or beat) while the sound plays on.

use chronus_dsp::spec::Unit;
use chronus_engine::command::{Command, SwitchAt};
use chronus_engine::sequencer::{check_pattern, MAX_BARS, MAX_BPM, MAX_SWING, MIN_BPM, STRAIGHT};

use super::{AddressTable, Call, Fixed, PatchEdit, Request, TrackChange, MAX_NAME_BYTES};
use crate::signature::{ArgKind, ArgSpec, Value};

/// Longest pattern text `/seq/<track>/pattern` accepts, in bytes. (The events one cycle
/// of a pattern may hold are bounded too: `chronus_pattern::MAX_EVENTS`.)
pub const MAX_PATTERN_BYTES: usize = 4096;

/// Address of the tempo: `/clock/bpm <bpm>`.
pub const CLOCK_BPM: &str = "/clock/bpm";
/// Address of the swing: `/clock/swing <0.5..0.75>`.
pub const CLOCK_SWING: &str = "/clock/swing";
/// Address that starts the clock: `/clock/start`.
pub const CLOCK_START: &str = "/clock/start";
/// Address that stops the clock: `/clock/stop`.
pub const CLOCK_STOP: &str = "/clock/stop";
/// Prefix of a track's addresses: `/seq/<track>/start`, `/seq/<track>/stop`.
pub const SEQ_PREFIX: &str = "/seq/";

/// The clock's addresses, in the order they are documented.
pub(crate) static FIXED: &[Fixed] = &[
    Fixed {
        address: CLOCK_BPM,
        args: &[ArgSpec {
            name: "bpm",
            kind: ArgKind::Number {
                unit: Unit::Number,
                min: MIN_BPM as f32,
                max: MAX_BPM as f32,
                default: 120.0,
            },
            optional: false,
        }],
        reply: "none",
        doc: "The tempo in beats per minute (to a thousandth), landing on the next beat so bar lines stay on exact frames. Bars are 4 beats.",
        engine: true,
        fault_injection: false,
        build: |call| {
            Ok(Request::Engine(Command::ClockTempo {
                bpm: call.number(0)?,
            }))
        },
    },
    Fixed {
        address: CLOCK_SWING,
        args: &[ArgSpec {
            name: "swing",
            kind: ArgKind::Number {
                unit: Unit::Linear,
                min: STRAIGHT as f32,
                max: MAX_SWING as f32,
                default: 0.5,
            },
            optional: false,
        }],
        reply: "none",
        doc: "Swing: where each off-beat sixteenth falls within its pair, 0.5 (straight) to 0.75; 0.66 is a triplet feel.",
        engine: true,
        fault_injection: false,
        build: |call| {
            Ok(Request::Engine(Command::ClockSwing {
                swing: call.number(0)?,
            }))
        },
    },
    Fixed {
        address: CLOCK_START,
        args: &[],
        reply: "none",
        doc: "Starts the clock from bar 1 (the tracks that play start with it); running already, it runs on.",
        engine: true,
        fault_injection: false,
        build: |_| Ok(Request::Engine(Command::ClockRun { on: true })),
    },
    Fixed {
        address: CLOCK_STOP,
        args: &[],
        reply: "none",
        doc: "Stops the clock and with it every track (notes already playing end as they would).",
        engine: true,
        fault_injection: false,
        build: |_| Ok(Request::Engine(Command::ClockRun { on: false })),
    },
];

/// The address of `/seq/<track>/start` (`on`) or `…/stop`.
pub(crate) fn track_address(name: &str, on: bool) -> String {
    format!("{SEQ_PREFIX}{name}/{}", if on { "start" } else { "stop" })
}

/// The doc of a track's address.
pub(crate) fn track_doc(name: &str, on: bool) -> String {
    if on {
        format!("Starts track `{name}` on the next bar line, in phase with the clock.")
    } else {
        format!("Stops track `{name}` on the next bar line (its notes playing end as they would).")
    }
}

/// Address and arguments of a clock or track command; `None` for other commands and
/// for a track this table does not have.
pub(crate) fn describe(table: &AddressTable, command: &Command) -> Option<(String, Vec<Value>)> {
    Some(match *command {
        Command::ClockTempo { bpm } => (CLOCK_BPM.to_string(), vec![Value::Number(bpm)]),
        Command::ClockSwing { swing } => (CLOCK_SWING.to_string(), vec![Value::Number(swing)]),
        Command::ClockRun { on } => (
            (if on { CLOCK_START } else { CLOCK_STOP }).to_string(),
            vec![],
        ),
        Command::TrackRun { track, on } => (track_address(table.track_name(track)?, on), vec![]),
        _ => return None,
    })
}

/// What a live edit of a track changes: one address each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrackField {
    /// `/seq/<track>/pattern <pattern> [bar|beat]`.
    Pattern,
    /// `/seq/<track>/instrument <name> [bar|beat]`.
    Instrument,
    /// `/seq/<track>/length <bars> [bar|beat]`.
    Length,
}

/// The optional last argument of a track edit: when it lands.
const WHEN: ArgSpec = ArgSpec {
    name: "when",
    kind: ArgKind::Text {
        max_len: MAX_NAME_BYTES,
    },
    optional: true,
};

impl TrackField {
    /// Every edit, in the order they are documented.
    pub(crate) const ALL: [TrackField; 3] = [
        TrackField::Pattern,
        TrackField::Instrument,
        TrackField::Length,
    ];

    /// The address of this edit of track `name`.
    pub(crate) fn address(self, name: &str) -> String {
        let what = match self {
            TrackField::Pattern => "pattern",
            TrackField::Instrument => "instrument",
            TrackField::Length => "length",
        };
        format!("{SEQ_PREFIX}{name}/{what}")
    }

    /// Its arguments.
    pub(crate) fn args(self) -> &'static [ArgSpec] {
        match self {
            TrackField::Pattern => &[
                ArgSpec {
                    name: "pattern",
                    kind: ArgKind::Text {
                        max_len: MAX_PATTERN_BYTES,
                    },
                    optional: false,
                },
                WHEN,
            ],
            TrackField::Instrument => &[
                ArgSpec {
                    name: "instrument",
                    kind: ArgKind::Text {
                        max_len: MAX_NAME_BYTES,
                    },
                    optional: false,
                },
                WHEN,
            ],
            TrackField::Length => &[
                ArgSpec {
                    name: "bars",
                    kind: ArgKind::Int {
                        min: 1,
                        max: MAX_BARS as i64,
                    },
                    optional: false,
                },
                WHEN,
            ],
        }
    }

    /// Its doc line.
    pub(crate) fn doc(self, name: &str) -> String {
        let what = match self {
            TrackField::Pattern => format!(
                "Plays a new pattern on track `{name}` (TidalCycles mini-notation, docs/patterns.md; a mistake gets /fail pointing at it)"
            ),
            TrackField::Instrument => format!("Plays track `{name}` on another instrument"),
            TrackField::Length => format!("Sets how many bars one cycle of track `{name}`'s pattern lasts"),
        };
        format!(
            "{what}, from the next bar line (`beat`: the next beat), in phase; the sound and the notes playing go on."
        )
    }
}

/// The request of a track edit: the change and when it lands.
pub(crate) fn track_edit(
    call: &Call<'_>,
    track: u16,
    field: TrackField,
) -> Result<Request, String> {
    let name = call
        .table
        .track_name(track)
        .ok_or_else(|| call.internal())?
        .to_string();
    // Checked here, so a bundle holding a bad edit is refused whole.
    let change = match field {
        TrackField::Pattern => {
            let pattern = call.text(0)?;
            check_pattern(&pattern).map_err(|reason| format!("{}: {reason}", call.address))?;
            TrackChange::Pattern(pattern)
        }
        TrackField::Instrument => {
            let name = call.text(0)?;
            if call.table.instrument(&name).is_none() {
                let known: Vec<&str> = call.table.instruments().map(|(n, _)| n).collect();
                return Err(format!(
                    "{}: unknown instrument '{name}' (instruments: {})",
                    call.address,
                    known.join(", ")
                ));
            }
            TrackChange::Instrument(name)
        }
        TrackField::Length => {
            TrackChange::Bars(u32::try_from(call.int(0)?).map_err(|_| call.internal())?)
        }
    };
    let at = match call.values.get(1) {
        None => SwitchAt::TracksAtBar,
        Some(Value::Text(when)) if when == "bar" => SwitchAt::TracksAtBar,
        Some(Value::Text(when)) if when == "beat" => SwitchAt::TracksAtBeat,
        Some(_) => {
            return Err(format!(
                "{}: when is 'bar' (the next bar line, the default) or 'beat' (the next beat)",
                call.address
            ))
        }
    };
    Ok(Request::Patch(PatchEdit::Track {
        track: name,
        change,
        at,
    }))
}
