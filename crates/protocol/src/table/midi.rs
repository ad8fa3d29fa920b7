//! The MIDI addresses: `/midi/cc <channel> <controller> <value>`, which `chronus midi`
//! forwards for every controller it does not turn into a note's expression, and
//! `/midi/learn <address>`, which maps the next controller moved to a parameter.
//!
//! Neither is an engine command. The server looks the controller up in the running
//! patch's `[midi]` mappings and sends the parameter value it maps to as the `/mod` it
//! stands for (stamped, logged and replayed like one, at the bundle's time when it came
//! in one), so the engine, the command log and a failover never see a controller. A
//! learned mapping is an edit of the running patch, so `/patch/dump`, `/library/save` and
//! the command log keep it.

use chronus_dsp::spec::Unit;

use super::{Fixed, Request};
use crate::signature::{ArgKind, ArgSpec};

/// Address of a controller's move: `/midi/cc <channel> <controller> <value>`.
pub const MIDI_CC: &str = "/midi/cc";
/// Address that maps the next controller moved: `/midi/learn <address>`.
pub const MIDI_LEARN: &str = "/midi/learn";
/// Address that removes a controller's mapping: `/midi/forget <controller>`.
pub const MIDI_FORGET: &str = "/midi/forget";

/// What a client asks of the MIDI mappings.
#[derive(Debug, Clone, PartialEq)]
pub enum MidiRequest {
    /// A controller moved: the parameter mapped to it (if any) takes the value it maps to.
    Cc {
        /// MIDI channel, 1..=16.
        channel: u8,
        /// Controller number, 0..=127.
        controller: u8,
        /// Its value, 0..=127 (fractional allowed, for 14-bit controllers).
        value: f32,
    },
    /// Map the next controller moved to the parameter at `address`.
    Learn {
        /// A `/mod/<id>/<param>` address of the running patch.
        address: String,
    },
    /// Remove the mapping of controller `controller`.
    Forget {
        /// Controller number, 0..=127.
        controller: u8,
    },
}

/// The MIDI addresses, in the order they are documented.
pub(crate) static FIXED: &[Fixed] = &[
    Fixed {
        address: MIDI_CC,
        args: &[
            ArgSpec {
                name: "channel",
                kind: ArgKind::Int { min: 1, max: 16 },
                optional: false,
            },
            ArgSpec {
                name: "controller",
                kind: ArgKind::Int { min: 0, max: 127 },
                optional: false,
            },
            ArgSpec {
                name: "value",
                kind: ArgKind::Number {
                    unit: Unit::Number,
                    min: 0.0,
                    max: 127.0,
                    default: 0.0,
                },
                optional: false,
            },
        ],
        reply: "none (the mapped /mod; /done /midi/learn … to the learner when it maps)",
        doc: "A controller moved (what `chronus midi` sends): the parameter the running patch's `[midi]` maps controller `controller` of `channel` to takes the value it maps `value` to, as its /mod would (at the bundle's time when timed). A controller mapped to nothing changes nothing; while a /midi/learn waits, it is mapped first.",
        engine: false,
        fault_injection: false,
        build: |call| {
            let channel = call.int(0)?;
            let controller = call.int(1)?;
            Ok(Request::Midi(MidiRequest::Cc {
                channel: u8::try_from(channel).map_err(|_| call.internal())?,
                controller: u8::try_from(controller).map_err(|_| call.internal())?,
                value: call.number(2)?,
            }))
        },
    },
    Fixed {
        address: MIDI_LEARN,
        args: &[ArgSpec {
            name: "address",
            kind: ArgKind::Text {
                max_len: super::MAX_NAME_BYTES,
            },
            optional: false,
        }],
        reply: "/done /midi/learn <address> <channel:i> <controller:i>, when a controller moves",
        doc: "Maps the next controller moved (its next /midi/cc) to the parameter at `address` (a `/mod/<id>/<param>` of this table), over the parameter's whole range (exponential for frequencies), on that controller's channel; it replaces the controller's mapping, if any. The mapping is an edit of the running patch (`[midi]`): /patch/dump, /library/save and the command log keep it. A second /midi/learn before a controller moves replaces the first.",
        engine: false,
        fault_injection: false,
        build: |call| {
            let (address, _, _) = call.param(0)?;
            Ok(Request::Midi(MidiRequest::Learn { address }))
        },
    },
    Fixed {
        address: MIDI_FORGET,
        args: &[ArgSpec {
            name: "controller",
            kind: ArgKind::Int { min: 0, max: 127 },
            optional: false,
        }],
        reply: "/done /midi/forget",
        doc: "Removes the mapping of controller `controller` from the running patch's `[midi]` (an edit of the running patch, like /midi/learn); /fail when it has none. The parameter keeps its value.",
        engine: false,
        fault_injection: false,
        build: |call| {
            let controller = call.int(0)?;
            Ok(Request::Midi(MidiRequest::Forget {
                controller: u8::try_from(controller).map_err(|_| call.internal())?,
            }))
        },
    },
];
