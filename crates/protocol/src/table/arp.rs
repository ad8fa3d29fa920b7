//! The arpeggiators' addresses: `/arp/<instrument>/on`, `…/mode`, `…/octaves`, `…/rate`
//! and `…/gate`, made for each instrument of the patch (like a track's `/seq/<track>/…`).
//!
//! Every one is an engine command (`Command::Arp`): stamped, logged, replayed and
//! applied in lockstep. Values are checked here, with the reason in `/fail`: a mode that
//! is not one of `up`, `down`, `updown`, `random`; a rate that is not a whole number of
//! 96ths of a beat; anything out of range.

use chronus_dsp::spec::Unit;
use chronus_dsp::ArpMode;
use chronus_engine::arpeggiator::{
    gate_permille, rate_ticks, ArpSetting, MAX_GATE, MAX_OCTAVES, MAX_RATE_TICKS, MIN_GATE,
    MIN_OCTAVES, MIN_RATE_TICKS, TICKS_PER_BEAT,
};
use chronus_engine::command::{Command, NodeIndex};

use super::{Call, MAX_NAME_BYTES};
use crate::signature::{clip, ArgKind, ArgSpec, Value};

/// Prefix of an instrument's arpeggiator addresses: `/arp/<instrument>/on` and the rest.
pub const ARP_PREFIX: &str = "/arp/";

/// Which setting an arpeggiator address changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Knob {
    On,
    Mode,
    Octaves,
    Rate,
    Gate,
}

impl Knob {
    /// Every knob, in the order they are documented.
    pub(crate) const ALL: [Knob; 5] = [Knob::On, Knob::Mode, Knob::Octaves, Knob::Rate, Knob::Gate];

    fn name(self) -> &'static str {
        match self {
            Knob::On => "on",
            Knob::Mode => "mode",
            Knob::Octaves => "octaves",
            Knob::Rate => "rate",
            Knob::Gate => "gate",
        }
    }

    /// Its one argument.
    pub(crate) fn arg(self) -> ArgSpec {
        let kind = match self {
            Knob::On => ArgKind::Gate,
            Knob::Mode => ArgKind::Text {
                max_len: MAX_NAME_BYTES,
            },
            Knob::Octaves => ArgKind::Int {
                min: i64::from(MIN_OCTAVES),
                max: i64::from(MAX_OCTAVES),
            },
            Knob::Rate => ArgKind::Number {
                unit: Unit::Number,
                min: MIN_RATE_TICKS as f32 / TICKS_PER_BEAT as f32,
                max: MAX_RATE_TICKS as f32 / TICKS_PER_BEAT as f32,
                default: 0.25,
            },
            Knob::Gate => ArgKind::Number {
                unit: Unit::Linear,
                min: MIN_GATE,
                max: MAX_GATE,
                default: 0.5,
            },
        };
        ArgSpec {
            name: match self {
                Knob::On => "on",
                Knob::Mode => "mode",
                Knob::Octaves => "octaves",
                Knob::Rate => "beats",
                Knob::Gate => "gate",
            },
            kind,
            optional: false,
        }
    }

    /// The address of this knob of `instrument`'s arpeggiator.
    pub(crate) fn address(self, instrument: &str) -> String {
        format!("{ARP_PREFIX}{instrument}/{}", self.name())
    }

    /// What the address does, for the docs.
    pub(crate) fn doc(self, instrument: &str) -> String {
        match self {
            Knob::On => format!("Turns the arpeggiator of `{instrument}` on (1: its notes feed the arpeggio instead of sounding; releasing them all stops it after the note playing) or off (0: the keys still held sound as plain notes). Steps fall on the clock's grid; with the clock stopped it steps at its tempo from the first key."),
            Knob::Mode => format!("The order `{instrument}`'s arpeggiator plays the held notes in: `up` (lowest first), `down`, `updown` (the ends once per turn) or `random` (seeded: the same in every replay)."),
            Knob::Octaves => format!("Octaves `{instrument}`'s arpeggio spans (1..4): the held notes, then an octave up, and so on."),
            Knob::Rate => format!("Beats per step of `{instrument}`'s arpeggio (0.25: sixteenths; whole 96ths of a beat, so 0.3333 is triplet eighths), from the next step on the new grid."),
            Knob::Gate => format!("How long each note of `{instrument}`'s arpeggio sounds, as a fraction of its step (0.05..1; 1 is legato)."),
        }
    }

    /// The command a checked message to this knob of `instrument` stands for, or the
    /// `/fail` reason.
    pub(crate) fn request(self, instrument: NodeIndex, call: &Call<'_>) -> Result<Command, String> {
        let setting = match self {
            Knob::On => ArpSetting::On(call.gate(0)?),
            Knob::Mode => {
                let name = call.text(0)?;
                let mode = ArpMode::from_name(&name).ok_or_else(|| {
                    format!(
                        "{}: unknown mode '{}' (modes: up, down, updown, random)",
                        call.address,
                        clip(&name)
                    )
                })?;
                ArpSetting::Mode(mode)
            }
            Knob::Octaves => {
                ArpSetting::Octaves(u8::try_from(call.int(0)?).map_err(|_| call.internal())?)
            }
            Knob::Rate => ArpSetting::Rate(
                rate_ticks(f64::from(call.number(0)?))
                    .map_err(|why| format!("{}: {why}", call.address))?,
            ),
            Knob::Gate => {
                let gate = call.number(0)?;
                gate_permille(f64::from(gate)).map_err(|why| format!("{}: {why}", call.address))?;
                ArpSetting::Gate(gate)
            }
        };
        Ok(Command::Arp {
            instrument,
            setting,
        })
    }
}

/// Address and argument of an arpeggiator command, for `name`d instrument.
pub(crate) fn describe(name: &str, setting: ArpSetting) -> (String, Vec<Value>) {
    let (knob, value) = match setting {
        ArpSetting::On(on) => (Knob::On, Value::Gate(on)),
        ArpSetting::Mode(mode) => (Knob::Mode, Value::Text(mode.name().to_string())),
        ArpSetting::Octaves(octaves) => (Knob::Octaves, Value::Int(i64::from(octaves))),
        ArpSetting::Rate(ticks) => (
            Knob::Rate,
            Value::Number(ticks as f32 / TICKS_PER_BEAT as f32),
        ),
        ArpSetting::Gate(gate) => (Knob::Gate, Value::Number(gate)),
    };
    (knob.address(name), vec![value])
}
