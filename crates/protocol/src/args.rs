//! The client side's typing of command-line strings into OSC arguments.
//!
//! `chronus send` and the command files type each string the way the table declares the
//! argument, then validate the message exactly as the server does, so
//! `chronus send /mod/sine/freq 30000` fails locally with the server's own reason.

use rosc::{OscMessage, OscType};

use crate::decode::Fail;
use crate::signature::ArgKind;
use crate::table::AddressTable;

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
/// as the server would. An address pattern (`/mod/*/gain`) is typed as its first match
/// and checked for every match, as the server does.
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
    let mut budget = crate::pattern::PACKET_MATCH_BUDGET;
    crate::decode::decode_one(
        table,
        message.clone(),
        crate::decode::When::Now,
        0,
        &mut budget,
    )?;
    Ok(message)
}

/// Types text arguments per the table into an OSC message, without validating it.
pub(crate) fn type_message(table: &AddressTable, address: &str, args: &[&str]) -> OscMessage {
    // A pattern is typed as the first address it matches (a patch's modules of one kind
    // share their types; a mismatch is refused by the check after).
    let first_match = crate::pattern::is_pattern(address)
        .then(|| {
            let untyped = OscMessage {
                addr: address.to_string(),
                args: Vec::new(),
            };
            crate::pattern::expand(table, &untyped, &mut {
                crate::pattern::PACKET_MATCH_BUDGET
            })
            .ok()
            .flatten()?
            .into_iter()
            .next()
        })
        .flatten();
    let exact = first_match.as_ref().map_or(address, |m| m.addr.as_str());
    // The leading optional text (an instrument) is a word naming one, or any other word
    // but a number and a gate's words (`/sustain T` is the pedal down, not an instrument).
    let first_is_text = args.first().is_some_and(|word| {
        let word = word.trim();
        table.instrument(word).is_some()
            || (word.parse::<f64>().is_err()
                && !matches!(
                    word.to_ascii_lowercase().as_str(),
                    "on" | "off" | "true" | "false" | "t" | "f"
                ))
    });
    let kinds: Vec<ArgKind> = table
        .lookup(exact)
        .map(|entry| {
            let (declared, _) = entry.declared_for(first_is_text);
            declared.iter().map(|a| a.kind).collect()
        })
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
    use crate::decode::validate_message;
    use crate::table::tests::table;

    #[test]
    fn a_gate_word_after_an_optional_instrument_is_the_gate() {
        let t = crate::table_for_patch(&chronus_dsp::PatchDesc::default_patch(), false).unwrap();
        for (word, on) in [("T", 1), ("on", 1), ("off", 0), ("1", 1)] {
            let m = build_message(&t, "/sustain", &[word]).unwrap();
            assert_eq!(m.args, vec![OscType::Int(on)], "{word}");
        }
        let m = build_message(&t, "/sustain", &["keys", "T"]).unwrap();
        assert_eq!(
            m.args,
            vec![OscType::String("keys".into()), OscType::Int(1)]
        );
        // An unknown name is still taken for an instrument, and refused as one.
        let e = build_message(&t, "/note/on", &["piano", "60", "100"]).unwrap_err();
        assert!(e.to_string().contains("unknown instrument 'piano'"), "{e}");
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
