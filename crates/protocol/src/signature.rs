//! One argument: what it must be ([`ArgSpec`], [`ArgKind`]), the check of an OSC argument
//! against it ([`check_arg`]) and the checked [`Value`].
//!
//! The server, `chronus send`, the command files and the docs all read arguments through
//! this one file, so the documented type and range, the enforced ones and the `/fail`
//! reasons cannot drift apart. Any OSC number type is accepted for a number (clients send
//! `440` as an int); nothing else is ever coerced into one (scsynth's `/g_new "abc"` →
//! node 0 is the mistake we avoid).

use chronus_dsp::spec::Unit;
use rosc::OscType;

/// What kind of value an argument takes, with the range the server enforces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ArgKind {
    /// A finite number (OSC int, long, float or double) in `min..=max`, sent on as `f32`.
    Number {
        /// Unit the number is expressed in (shown in docs and error messages).
        unit: Unit,
        /// Smallest accepted value (inclusive).
        min: f32,
        /// Largest accepted value (inclusive).
        max: f32,
        /// Value a fresh module starts with (documentation only).
        default: f32,
    },
    /// A gate: OSC `T`/`F`, or a number that is exactly 0 or 1.
    Gate,
    /// An integer (any OSC number type with an integral value) in `min..=max`.
    Int {
        /// Smallest accepted value (inclusive).
        min: i64,
        /// Largest accepted value (inclusive).
        max: i64,
    },
    /// A non-empty OSC string (or symbol, `S`) of at most `max_len` bytes: module ids, type
    /// names, parameter addresses ([`MAX_NAME_BYTES`]) or patch text
    /// ([`MAX_PATCH_TEXT_BYTES`]). Numbers are never turned into text, nor text into numbers.
    Text {
        /// Longest accepted text, in bytes of UTF-8.
        max_len: usize,
    },
}

/// One declared argument of an address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArgSpec {
    /// Name shown in signatures and error messages (`freq`, `id`, `slot`).
    pub name: &'static str,
    /// Type and range of the value.
    pub kind: ArgKind,
    /// Whether the argument may be left out (only trailing arguments are optional).
    pub optional: bool,
}

impl ArgSpec {
    /// Human description of what the argument must be, used in `/fail` reasons:
    /// "a number in Hz", "0 or 1 (or T/F)", "an integer".
    pub fn expectation(&self) -> String {
        match self.kind {
            ArgKind::Number { unit, .. } => match unit_suffix(unit) {
                "" => "a number".to_string(),
                _ => format!("a number in {}", unit.symbol()),
            },
            ArgKind::Gate => "0 or 1 (or T/F)".to_string(),
            ArgKind::Int { .. } => "an integer".to_string(),
            ArgKind::Text { .. } => "a text (OSC string)".to_string(),
        }
    }

    /// Argument with its type and range, as shown in the markdown table:
    /// `freq: Hz 0.01..20000, default 440`.
    pub fn describe(&self) -> String {
        let mut text = match self.kind {
            ArgKind::Number { min, max, .. } if min == f32::MIN && max == f32::MAX => {
                format!("{}: number", self.name)
            }
            ArgKind::Number {
                unit,
                min,
                max,
                default,
            } => {
                let unit = match unit.symbol() {
                    "" | "0..1" => String::new(),
                    symbol => format!("{symbol} "),
                };
                format!("{}: {unit}{min}..{max}, default {default}", self.name)
            }
            ArgKind::Gate => format!("{}: 0/1 or T/F", self.name),
            ArgKind::Int { min, max } => {
                if min == i64::from(i32::MIN) && max == i64::from(i32::MAX) {
                    format!("{}: int", self.name)
                } else {
                    format!("{}: int {min}..{max}", self.name)
                }
            }
            ArgKind::Text { max_len } => format!("{}: text, up to {max_len} bytes", self.name),
        };
        if self.optional {
            text.push_str(", optional");
        }
        text
    }
}

/// Unit written after a value in messages ("30000 Hz"); empty for unitless and 0..1 values.
pub(crate) fn unit_suffix(unit: Unit) -> &'static str {
    match unit {
        Unit::Hertz => " Hz",
        Unit::Milliseconds => " ms",
        Unit::Seconds => " s",
        Unit::Decibels => " dB",
        Unit::Linear | Unit::Q | Unit::Number => "",
    }
}

/// A checked argument value, typed by its [`ArgKind`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A finite number inside its range.
    Number(f32),
    /// A gate state.
    Gate(bool),
    /// An integer inside its range.
    Int(i64),
    /// A non-empty text within its length limit.
    Text(String),
    /// A leading optional text argument the message left out (`/note/on 60 100` names
    /// no instrument: the patch's first plays it). See `Entry::declared_for`.
    Absent,
}

/// Longest string or address quoted back in a reason, so replies stay small.
const QUOTE_LIMIT: usize = 64;

/// Shortens `text` to at most [`QUOTE_LIMIT`] characters for quoting in reasons.
pub(crate) fn clip(text: &str) -> String {
    if text.chars().count() <= QUOTE_LIMIT {
        text.to_string()
    } else {
        let mut clipped: String = text.chars().take(QUOTE_LIMIT).collect();
        clipped.push('…');
        clipped
    }
}

/// How an argument is shown after "got": `string "abc"`, `float NaN`, `blob of 4 bytes`.
pub(crate) fn show(arg: &OscType) -> String {
    match arg {
        OscType::Int(v) => format!("int {v}"),
        OscType::Long(v) => format!("long {v}"),
        OscType::Float(v) => format!("float {v}"),
        OscType::Double(v) => format!("double {v}"),
        OscType::String(s) => format!("string {:?}", clip(s)),
        OscType::Blob(b) => format!("blob of {} bytes", b.len()),
        OscType::Bool(true) => "T (true)".to_string(),
        OscType::Bool(false) => "F (false)".to_string(),
        OscType::Nil => "N (nil)".to_string(),
        OscType::Inf => "I (infinitum)".to_string(),
        OscType::Char(c) => format!("char {c:?}"),
        OscType::Time(_) => "a timetag".to_string(),
        OscType::Color(_) => "a color".to_string(),
        OscType::Midi(_) => "a MIDI message".to_string(),
        OscType::Array(a) => format!("an array of {} elements", a.content.len()),
    }
}

/// The number an argument carries, if it is one of the four OSC number types.
fn as_number(arg: &OscType) -> Option<f64> {
    match *arg {
        OscType::Int(v) => Some(f64::from(v)),
        // i64 → f64 may round; only the range check sees it, and ranges are far smaller.
        OscType::Long(v) => Some(v as f64),
        OscType::Float(v) => Some(f64::from(v)),
        OscType::Double(v) => Some(v),
        _ => None,
    }
}

/// How a number is written in a range error: as it was sent.
fn show_value(arg: &OscType) -> String {
    match arg {
        OscType::Int(v) => v.to_string(),
        OscType::Long(v) => v.to_string(),
        OscType::Float(v) => v.to_string(),
        OscType::Double(v) => v.to_string(),
        other => show(other),
    }
}

/// Checks argument number `position` (1-based) of a message to `address` against `spec`.
///
/// # Errors
/// Returns the `/fail` reason (starting with the address) when the argument has the wrong
/// type (string, blob, nil, … for a number; a number for a text), is not finite, is not
/// integral where an integer is declared, is not exactly 0 or 1 for a gate, is out of the
/// declared range, or is an empty or too long text.
pub fn check_arg(
    address: &str,
    position: usize,
    spec: &ArgSpec,
    arg: &OscType,
) -> Result<Value, String> {
    let wrong_type = || {
        format!(
            "{address}: argument {position} ({}) must be {}, got {}",
            spec.name,
            spec.expectation(),
            show(arg)
        )
    };
    match spec.kind {
        ArgKind::Number { unit, min, max, .. } => {
            let value = as_number(arg).ok_or_else(wrong_type)?;
            if !value.is_finite() {
                return Err(wrong_type());
            }
            if value < f64::from(min) || value > f64::from(max) {
                let suffix = unit_suffix(unit);
                return Err(format!(
                    "{address}: {}{suffix} is out of range {min}..{max}{suffix}",
                    show_value(arg)
                ));
            }
            // In range in f64 with f32 bounds, so the f32 rounding stays in range too.
            Ok(Value::Number(value as f32))
        }
        ArgKind::Gate => match *arg {
            OscType::Bool(on) => Ok(Value::Gate(on)),
            _ => match as_number(arg) {
                Some(0.0) => Ok(Value::Gate(false)),
                Some(1.0) => Ok(Value::Gate(true)),
                _ => Err(wrong_type()),
            },
        },
        ArgKind::Int { min, max } => {
            let value = match *arg {
                OscType::Int(v) => i64::from(v),
                OscType::Long(v) => v,
                OscType::Float(_) | OscType::Double(_) => {
                    let v = as_number(arg).ok_or_else(wrong_type)?;
                    // Integral and well inside i64, so the cast is exact.
                    if v.is_finite() && v.fract() == 0.0 && v.abs() < 9.0e15 {
                        v as i64
                    } else {
                        return Err(wrong_type());
                    }
                }
                _ => return Err(wrong_type()),
            };
            if value < min || value > max {
                return Err(format!(
                    "{address}: {} {} is out of range {min}..{max}",
                    spec.name,
                    show_value(arg)
                ));
            }
            Ok(Value::Int(value))
        }
        ArgKind::Text { max_len } => {
            // OSC symbols (`S`) arrive here as strings: `decode_packet` retags them.
            let OscType::String(text) = arg else {
                return Err(wrong_type());
            };
            if text.is_empty() {
                return Err(format!(
                    "{address}: argument {position} ({}) must not be empty",
                    spec.name
                ));
            }
            if text.len() > max_len {
                return Err(format!(
                    "{address}: argument {position} ({}) is {} bytes long, more than the limit of {max_len}",
                    spec.name,
                    text.len()
                ));
            }
            Ok(Value::Text(text.clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronus_dsp::spec::Unit;

    const FREQ: ArgSpec = ArgSpec {
        name: "freq",
        kind: ArgKind::Number {
            unit: Unit::Hertz,
            min: 0.01,
            max: 20000.0,
            default: 440.0,
        },
        optional: false,
    };
    const GATE: ArgSpec = ArgSpec {
        name: "on",
        kind: ArgKind::Gate,
        optional: false,
    };
    const MICROS: ArgSpec = ArgSpec {
        name: "micros",
        kind: ArgKind::Int {
            min: 0,
            max: 1_000_000,
        },
        optional: false,
    };

    fn freq(arg: OscType) -> Result<Value, String> {
        check_arg("/mod/sine/freq", 1, &FREQ, &arg)
    }

    #[test]
    fn numbers_accept_every_osc_number_type() {
        assert_eq!(freq(OscType::Int(440)), Ok(Value::Number(440.0)));
        assert_eq!(freq(OscType::Long(440)), Ok(Value::Number(440.0)));
        assert_eq!(freq(OscType::Float(440.5)), Ok(Value::Number(440.5)));
        assert_eq!(freq(OscType::Double(440.25)), Ok(Value::Number(440.25)));
        assert_eq!(freq(OscType::Float(20000.0)), Ok(Value::Number(20000.0)));
        assert_eq!(freq(OscType::Float(0.01)), Ok(Value::Number(0.01)));
    }

    #[test]
    fn numbers_refuse_everything_else() {
        assert_eq!(
            freq(OscType::String("abc".into())),
            Err(
                "/mod/sine/freq: argument 1 (freq) must be a number in Hz, got string \"abc\""
                    .to_string()
            )
        );
        assert!(freq(OscType::Blob(vec![1, 2, 3]))
            .unwrap_err()
            .contains("got blob of 3 bytes"));
        assert!(freq(OscType::Float(f32::NAN))
            .unwrap_err()
            .contains("got float NaN"));
        assert!(freq(OscType::Double(f64::INFINITY))
            .unwrap_err()
            .contains("got double inf"));
        assert!(freq(OscType::Float(f32::NEG_INFINITY))
            .unwrap_err()
            .contains("got float -inf"));
        assert!(freq(OscType::Bool(true)).unwrap_err().contains("got T"));
        assert!(freq(OscType::Nil).unwrap_err().contains("got N"));
        assert!(freq(OscType::Inf).unwrap_err().contains("infinitum"));
        assert!(freq(OscType::Char('x')).is_err());
        assert!(freq(OscType::Time((1, 2).into())).is_err());
    }

    #[test]
    fn numbers_are_range_checked() {
        assert_eq!(
            freq(OscType::Int(30000)),
            Err("/mod/sine/freq: 30000 Hz is out of range 0.01..20000 Hz".to_string())
        );
        assert_eq!(
            freq(OscType::Float(0.0)),
            Err("/mod/sine/freq: 0 Hz is out of range 0.01..20000 Hz".to_string())
        );
        assert!(freq(OscType::Float(-1.0)).is_err());
        assert!(freq(OscType::Double(20000.000001)).is_err());
        assert!(freq(OscType::Double(1e300)).is_err());
        assert!(freq(OscType::Long(i64::MAX)).is_err());
    }

    #[test]
    fn gates_take_bools_and_exact_zero_or_one() {
        let gate = |arg| check_arg("/gate/env", 1, &GATE, &arg);
        assert_eq!(gate(OscType::Bool(true)), Ok(Value::Gate(true)));
        assert_eq!(gate(OscType::Bool(false)), Ok(Value::Gate(false)));
        assert_eq!(gate(OscType::Int(1)), Ok(Value::Gate(true)));
        assert_eq!(gate(OscType::Int(0)), Ok(Value::Gate(false)));
        assert_eq!(gate(OscType::Long(1)), Ok(Value::Gate(true)));
        assert_eq!(gate(OscType::Float(0.0)), Ok(Value::Gate(false)));
        assert_eq!(gate(OscType::Double(1.0)), Ok(Value::Gate(true)));
        assert_eq!(
            gate(OscType::Int(2)),
            Err("/gate/env: argument 1 (on) must be 0 or 1 (or T/F), got int 2".to_string())
        );
        assert!(gate(OscType::Float(0.5)).is_err());
        assert!(gate(OscType::Float(f32::NAN)).is_err());
        assert!(gate(OscType::String("1".into())).is_err());
    }

    #[test]
    fn ints_must_be_integral_and_in_range() {
        let micros = |arg| check_arg("/debug/slow", 1, &MICROS, &arg);
        assert_eq!(micros(OscType::Int(500)), Ok(Value::Int(500)));
        assert_eq!(micros(OscType::Long(500)), Ok(Value::Int(500)));
        assert_eq!(micros(OscType::Float(500.0)), Ok(Value::Int(500)));
        assert_eq!(micros(OscType::Double(500.0)), Ok(Value::Int(500)));
        assert!(micros(OscType::Float(1.5))
            .unwrap_err()
            .contains("must be an integer, got float 1.5"));
        assert!(micros(OscType::Double(f64::NAN)).is_err());
        assert!(micros(OscType::Double(1e30)).is_err());
        assert_eq!(
            micros(OscType::Int(-1)),
            Err("/debug/slow: micros -1 is out of range 0..1000000".to_string())
        );
        assert!(micros(OscType::Long(1_000_001)).is_err());
        assert!(micros(OscType::String("5".into())).is_err());
    }

    const ID: ArgSpec = ArgSpec {
        name: "id",
        kind: ArgKind::Text { max_len: 8 },
        optional: false,
    };

    #[test]
    fn texts_take_strings_only() {
        let id = |arg| check_arg("/params", 1, &ID, &arg);
        assert_eq!(
            id(OscType::String("sine".into())),
            Ok(Value::Text("sine".into()))
        );
        assert_eq!(
            id(OscType::String("12345678".into())),
            Ok(Value::Text("12345678".into()))
        );
        assert_eq!(
            id(OscType::Int(3)),
            Err("/params: argument 1 (id) must be a text (OSC string), got int 3".to_string())
        );
        assert!(id(OscType::Float(1.5))
            .unwrap_err()
            .contains("got float 1.5"));
        assert!(id(OscType::Bool(true)).is_err());
        assert!(id(OscType::Blob(b"sine".to_vec())).is_err());
        assert!(id(OscType::Char('s')).is_err());
        assert_eq!(
            id(OscType::String(String::new())),
            Err("/params: argument 1 (id) must not be empty".to_string())
        );
        assert_eq!(
            id(OscType::String("123456789".into())),
            Err("/params: argument 1 (id) is 9 bytes long, more than the limit of 8".to_string())
        );
        // The limit is in bytes: 3 × 3-byte characters is 9 bytes.
        assert!(id(OscType::String("ééé€".into())).is_err());
        // And strings are still refused for numbers.
        assert!(freq(OscType::String("440".into())).is_err());
    }

    #[test]
    fn long_strings_are_clipped_in_reasons() {
        let reason = freq(OscType::String("a".repeat(10_000))).unwrap_err();
        assert!(reason.len() < 200, "{reason}");
    }
}
