//! Argument checking: one OSC argument against its declared [`ArgSpec`], and the client
//! side's typing of command-line strings into OSC arguments.
//!
//! The server and `chronus send` share this code, so `chronus send /mod/sine/freq 30000`
//! fails locally with exactly the reason the server would give. Any OSC number type is
//! accepted for a number (clients send `440` as an int); nothing else is ever coerced
//! into one (scsynth's `/g_new "abc"` → node 0 is the mistake we avoid).

use rosc::{OscMessage, OscType};

use crate::decode::{validate_message, Fail};
use crate::table::{unit_suffix, AddressTable, ArgKind, ArgSpec};

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

/// Types one command-line string the way the table declares the argument, before the
/// server's own validation runs on it. Strings that are not numbers stay strings, so the
/// validation refuses them with the server's reason.
fn type_arg(kind: Option<ArgKind>, text: &str) -> OscType {
    if let Some(ArgKind::Text { .. }) = kind {
        // Text is sent exactly as written (patch text keeps its whitespace).
        return OscType::String(text.to_string());
    }
    let text = text.trim();
    let integer = |text: &str| match text.parse::<i64>() {
        Ok(v) => Some(i32::try_from(v).map_or(OscType::Long(v), OscType::Int)),
        Err(_) => None,
    };
    match kind {
        Some(ArgKind::Number { .. }) => match text.parse::<f32>() {
            Ok(v) => OscType::Float(v),
            Err(_) => OscType::String(text.to_string()),
        },
        Some(ArgKind::Gate) => match text.to_ascii_lowercase().as_str() {
            "on" | "true" | "t" => OscType::Int(1),
            "off" | "false" | "f" => OscType::Int(0),
            _ => integer(text)
                .or_else(|| text.parse::<f64>().ok().map(OscType::Double))
                .unwrap_or_else(|| OscType::String(text.to_string())),
        },
        Some(ArgKind::Int { .. } | ArgKind::Text { .. }) | None => integer(text)
            .or_else(|| text.parse::<f64>().ok().map(OscType::Double))
            .unwrap_or_else(|| OscType::String(text.to_string())),
    }
}

/// Builds the OSC message `chronus send` sends, typing each command-line string as the
/// table declares it (numbers → float for a number, int for an integer, int 0/1 for a gate,
/// which also takes on/off/true/false, OSC string for a text), then validates it exactly
/// as the server would.
///
/// # Errors
/// Returns the same [`Fail`] the server would answer: unknown address (with a
/// suggestion), wrong argument count, a value that is not a number, not finite, not
/// integral, or out of range.
pub fn build_message(
    table: &AddressTable,
    address: &str,
    args: &[&str],
) -> Result<OscMessage, Fail> {
    let message = type_message(table, address, args);
    validate_message(table, &message)?;
    Ok(message)
}

/// Types text arguments per the table into an OSC message, without validating it.
pub(crate) fn type_message(table: &AddressTable, address: &str, args: &[&str]) -> OscMessage {
    let kinds: Vec<ArgKind> = table
        .lookup(address)
        .map(|entry| entry.args.iter().map(|a| a.kind).collect())
        .unwrap_or_default();
    OscMessage {
        addr: address.to_string(),
        args: args
            .iter()
            .enumerate()
            .map(|(i, text)| type_arg(kinds.get(i).copied(), text))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::table;
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
    fn build_message_sends_text_as_strings() {
        let t = table();
        let m = build_message(&t, "/params", &["sine"]).unwrap();
        assert_eq!(m.args, vec![OscType::String("sine".into())]);
        // A number-looking text is still text where text is declared.
        let m = build_message(&t, "/patch/add", &["42", "sine"]).unwrap();
        assert_eq!(
            m.args,
            vec![OscType::String("42".into()), OscType::String("sine".into())]
        );
        let m = build_message(&t, "/ramp", &["/mod/sine/freq", "880", "1.5"]).unwrap();
        assert_eq!(
            m.args,
            vec![
                OscType::String("/mod/sine/freq".into()),
                OscType::Float(880.0),
                OscType::Float(1.5)
            ]
        );
        let m = build_message(&t, "/patch/set", &["sine", "freq", "-1e9"]).unwrap();
        assert_eq!(m.args[2], OscType::Float(-1e9));
        let e = build_message(&t, "/ramp", &["/mod/sine/freq", "30000", "1"]).unwrap_err();
        assert_eq!(
            e.reason,
            "/ramp: 30000 Hz is out of range 0.01..20000 Hz for /mod/sine/freq"
        );
        let e = build_message(&t, "/patch/set", &["sine", "freq", "loud"]).unwrap_err();
        assert_eq!(
            e.reason,
            "/patch/set: argument 3 (value) must be a number, got string \"loud\""
        );
        let e = build_message(&t, "/patch/add", &["", "sine"]).unwrap_err();
        assert_eq!(e.reason, "/patch/add: argument 1 (id) must not be empty");
    }

    #[test]
    fn long_strings_are_clipped_in_reasons() {
        let reason = freq(OscType::String("a".repeat(10_000))).unwrap_err();
        assert!(reason.len() < 200, "{reason}");
    }

    #[test]
    fn build_message_types_by_the_table() {
        let t = table();
        let m = build_message(&t, "/mod/sine/freq", &["440"]).unwrap();
        assert_eq!(m.args, vec![OscType::Float(440.0)]);
        let m = build_message(&t, "/gate/env", &["on"]).unwrap();
        assert_eq!(m.args, vec![OscType::Int(1)]);
        let m = build_message(&t, "/gate/env", &["false"]).unwrap();
        assert_eq!(m.args, vec![OscType::Int(0)]);
        let m = build_message(&t, "/gate/env", &["1"]).unwrap();
        assert_eq!(m.args, vec![OscType::Int(1)]);
        let m = build_message(&t, "/sync", &["42"]).unwrap();
        assert_eq!(m.args, vec![OscType::Int(42)]);
        let m = build_message(&t, "/debug/slow", &["500", "1"]).unwrap();
        assert_eq!(m.args, vec![OscType::Int(500), OscType::Int(1)]);
        let m = build_message(&t, "/status", &[]).unwrap();
        assert!(m.args.is_empty());
    }

    #[test]
    fn build_message_fails_with_the_server_reason() {
        let t = table();
        let local = build_message(&t, "/mod/sine/freq", &["30000"]).unwrap_err();
        let server = validate_message(
            &t,
            &OscMessage {
                addr: "/mod/sine/freq".into(),
                args: vec![OscType::Int(30000)],
            },
        )
        .unwrap_err();
        assert_eq!(local, server);
        assert_eq!(
            local.reason,
            "/mod/sine/freq: 30000 Hz is out of range 0.01..20000 Hz"
        );
        let e = build_message(&t, "/mod/sine/freq", &["abc"]).unwrap_err();
        assert!(e.reason.contains("got string \"abc\""), "{}", e.reason);
        let e = build_message(&t, "/mod/sine/freq", &["nan"]).unwrap_err();
        assert!(e.reason.contains("got float NaN"), "{}", e.reason);
        let e = build_message(&t, "/gate/env", &["2"]).unwrap_err();
        assert!(e.reason.contains("got int 2"), "{}", e.reason);
        let e = build_message(&t, "/sync", &["1.5"]).unwrap_err();
        assert!(e.reason.contains("must be an integer"), "{}", e.reason);
        let e = build_message(&t, "/mod/sine/freqq", &["1"]).unwrap_err();
        assert!(
            e.reason.contains("did you mean /mod/sine/freq?"),
            "{}",
            e.reason
        );
        let e = build_message(&t, "/test", &["1"]).unwrap_err();
        assert!(e.reason.contains("expected no arguments"), "{}", e.reason);
    }
}
