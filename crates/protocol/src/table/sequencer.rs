//! The sequencer's addresses: the tempo clock (`/clock/bpm`, `/clock/swing`,
//! `/clock/start`, `/clock/stop`) and each track's `/seq/<track>/start` and `…/stop`.
//!
//! The clock's are fixed entries of the address table; a track's are made for each track
//! the patch declares, which the table lists after the patch's nodes as instances of type
//! `track` (`chronus_engine::sequencer::TRACK_SPEC`). Every one is an engine command:
//! stamped, logged, replayed and applied in lockstep.

use chronus_dsp::spec::Unit;
use chronus_engine::command::Command;
use chronus_engine::sequencer::{MAX_BPM, MAX_SWING, MIN_BPM, STRAIGHT};

use super::{AddressTable, Fixed, Request};
use crate::signature::{ArgKind, ArgSpec, Value};

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
