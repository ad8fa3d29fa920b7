//! Static descriptions of modules and their parameters.
//!
//! Every module type publishes one [`ModuleSpec`]: its ports and its parameters with
//! unit, range and default. The protocol crate builds the OSC address table from these,
//! so the documented range and the enforced range can never drift apart.

use std::ops::RangeInclusive;

/// The unit a parameter is expressed in; shown to users in the address table and `/params`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Frequency in hertz.
    Hertz,
    /// Time in milliseconds.
    Milliseconds,
    /// Time in seconds.
    Seconds,
    /// A linear factor, usually 0..1 (gain, level, mix).
    Linear,
    /// Filter quality factor.
    Q,
    /// Level in decibels.
    Decibels,
    /// A plain number with no unit.
    Number,
}

impl Unit {
    /// Short symbol used in tables and replies ("Hz", "ms", …).
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Hertz => "Hz",
            Unit::Milliseconds => "ms",
            Unit::Seconds => "s",
            Unit::Linear => "0..1",
            Unit::Q => "Q",
            Unit::Decibels => "dB",
            Unit::Number => "",
        }
    }
}

/// One parameter of a module type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    /// Name used in addresses: `/mod/<module>/<name>`.
    pub name: &'static str,
    /// Unit of `min`, `max` and `default`.
    pub unit: Unit,
    /// Smallest accepted value (inclusive).
    pub min: f32,
    /// Largest accepted value (inclusive).
    pub max: f32,
    /// Value a fresh module starts with.
    pub default: f32,
    /// One line for users: what the parameter does.
    pub doc: &'static str,
    /// Whether it may change while the patch plays (`/mod`, `/ramp`). A fixed parameter
    /// sizes memory when the patch compiles (a delay's `max_time`), and the render path
    /// never allocates: it changes with the patch (`/patch/set` and `/patch/commit`).
    pub live: bool,
}

impl ParamSpec {
    /// A parameter with an empty doc; the unit constructors below are the short way to
    /// write one in a module's `SPEC`, with [`ParamSpec::doc`] chained on.
    pub const fn new(
        name: &'static str,
        unit: Unit,
        range: RangeInclusive<f32>,
        default: f32,
    ) -> ParamSpec {
        ParamSpec {
            name,
            unit,
            min: *range.start(),
            max: *range.end(),
            default,
            doc: "",
            live: true,
        }
    }

    /// A frequency in hertz.
    pub const fn hz(name: &'static str, range: RangeInclusive<f32>, default: f32) -> ParamSpec {
        ParamSpec::new(name, Unit::Hertz, range, default)
    }

    /// A time in milliseconds.
    pub const fn ms(name: &'static str, range: RangeInclusive<f32>, default: f32) -> ParamSpec {
        ParamSpec::new(name, Unit::Milliseconds, range, default)
    }

    /// A linear factor (gain, level, mix).
    pub const fn linear(name: &'static str, range: RangeInclusive<f32>, default: f32) -> ParamSpec {
        ParamSpec::new(name, Unit::Linear, range, default)
    }

    /// A filter quality factor.
    pub const fn q(name: &'static str, range: RangeInclusive<f32>, default: f32) -> ParamSpec {
        ParamSpec::new(name, Unit::Q, range, default)
    }

    /// A level in decibels.
    pub const fn db(name: &'static str, range: RangeInclusive<f32>, default: f32) -> ParamSpec {
        ParamSpec::new(name, Unit::Decibels, range, default)
    }

    /// A plain number (a mode, a tempo, a count of beats).
    pub const fn number(name: &'static str, range: RangeInclusive<f32>, default: f32) -> ParamSpec {
        ParamSpec::new(name, Unit::Number, range, default)
    }

    /// The same parameter with its one line for users.
    pub const fn doc(self, doc: &'static str) -> ParamSpec {
        ParamSpec { doc, ..self }
    }

    /// The same parameter, fixed when the patch compiles (see [`ParamSpec::live`]).
    pub const fn fixed(self) -> ParamSpec {
        ParamSpec {
            live: false,
            ..self
        }
    }

    /// Clamps `value` into the documented range (the DSP's second line of defence;
    /// the OSC layer refuses out-of-range values before they get here). NaN maps to `default`.
    pub fn clamp(&self, value: f32) -> f32 {
        if value.is_nan() {
            self.default
        } else {
            value.clamp(self.min, self.max)
        }
    }
}

/// Whether a port carries audio-rate or control-rate signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    /// One value per sample, audible.
    Audio,
    /// One value per sample too, but meant as modulation (envelopes, LFOs).
    Control,
}

/// One input or output port of a module type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    /// Port name used in connections (`module:port`).
    pub name: &'static str,
    /// Signal rate of the port.
    pub rate: Rate,
}

/// Everything static about a module type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModuleSpec {
    /// Type name used in patch files (`type = "sine"`).
    pub type_name: &'static str,
    /// One line for users: what the module is for.
    pub doc: &'static str,
    /// Input ports, in order; unconnected inputs read silence.
    pub inputs: &'static [PortSpec],
    /// Output ports, in order.
    pub outputs: &'static [PortSpec],
    /// Parameters, in order; their index is the parameter's id in commands.
    pub params: &'static [ParamSpec],
    /// Whether the module reacts to `/gate/<module>`.
    pub has_gate: bool,
}

impl PortSpec {
    /// An audio-rate port called `name`.
    pub const fn audio(name: &'static str) -> PortSpec {
        PortSpec {
            name,
            rate: Rate::Audio,
        }
    }

    /// A control-rate port called `name` (envelopes, LFOs, cv).
    pub const fn control(name: &'static str) -> PortSpec {
        PortSpec {
            name,
            rate: Rate::Control,
        }
    }
}

impl ModuleSpec {
    /// Index of the parameter called `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }
}
