//! The note addresses through the crate's public surface: validation (the first
//! instrument when none is named), refusals with their reasons, command-line typing of the
//! optional leading instrument, and command-log lines that replay the same commands.

use chronus_dsp::{Expression, PatchDesc};
use chronus_engine::Command;
use chronus_protocol::{
    build_message, format_log_line, parse_command_log, table_for_patch, validate_message,
    AddressTable, LogEntry, LoggedCommand, Request,
};
use rosc::{OscMessage, OscType};
fn table() -> AddressTable {
    table_for_patch(&PatchDesc::default_patch(), false).unwrap()
}

fn check(table: &AddressTable, address: &str, args: Vec<OscType>) -> Result<Command, String> {
    let msg = OscMessage {
        addr: address.to_string(),
        args,
    };
    match validate_message(table, &msg) {
        Ok(Request::Engine(command)) => Ok(command),
        Ok(other) => panic!("{other:?}"),
        Err(fail) => Err(fail.reason),
    }
}

#[test]
fn notes_go_to_the_first_instrument_unless_one_is_named() {
    let t = table();
    let keys = t.instrument("keys").unwrap();
    assert_eq!(
        check(&t, "/note/on", vec![OscType::Int(60), OscType::Int(100)]),
        Ok(Command::NoteOn {
            instrument: keys,
            note: 60.0,
            velocity: 100.0,
            id: 0
        })
    );
    assert_eq!(
        check(
            &t,
            "/note/on",
            vec![
                OscType::String("keys".into()),
                OscType::Float(60.5),
                OscType::Float(90.5),
                OscType::Int(7)
            ]
        ),
        Ok(Command::NoteOn {
            instrument: keys,
            note: 60.5,
            velocity: 90.5,
            id: 7
        })
    );
    assert_eq!(
        check(&t, "/note/off", vec![OscType::Int(60)]),
        Ok(Command::NoteOff {
            instrument: keys,
            note: 60.0,
            id: 0
        })
    );
    assert_eq!(
        check(
            &t,
            "/note/bend",
            vec![OscType::Int(7), OscType::Float(-1.5)]
        ),
        Ok(Command::NoteExpression {
            instrument: keys,
            target: 7.0,
            kind: Expression::Bend,
            value: -1.5
        })
    );
    assert_eq!(
        check(&t, "/sustain", vec![OscType::Bool(true)]),
        Ok(Command::Sustain {
            instrument: keys,
            on: true
        })
    );
    assert_eq!(check(&t, "/panic", vec![]), Ok(Command::Panic));
}

#[test]
fn bad_notes_are_refused_with_the_reason() {
    let t = table();
    let err = |address: &str, args: Vec<OscType>| check(&t, address, args).unwrap_err();
    let e = err(
        "/note/on",
        vec![
            OscType::String("kyes".into()),
            OscType::Int(60),
            OscType::Int(1),
        ],
    );
    assert_eq!(e, "/note/on: unknown instrument 'kyes' (instruments: keys)");
    let e = err("/note/on", vec![OscType::Int(60), OscType::Int(128)]);
    assert!(e.contains("out of range 0..127"), "{e}");
    // Four numbers: the instrument is left out, so at most three.
    let e = err(
        "/note/on",
        vec![
            OscType::Int(60),
            OscType::Int(1),
            OscType::Int(2),
            OscType::Int(3),
        ],
    );
    assert!(e.contains("expected 2 to 3 arguments"), "{e}");
    let e = err("/note/on", vec![OscType::String("keys".into())]);
    assert!(e.contains("expected 3 to 4 arguments"), "{e}");
    let e = err(
        "/note/on",
        vec![OscType::Int(60), OscType::Int(1), OscType::Int(-1)],
    );
    assert!(e.contains("id"), "{e}");
    let e = err(
        "/note/pressure",
        vec![OscType::Int(60), OscType::Float(1.5)],
    );
    assert!(e.contains("out of range"), "{e}");
    // A patch without instruments says so.
    let mut bare = PatchDesc::default_patch();
    bare.instruments.clear();
    bare.connections.retain(|c| !c.from.starts_with("keys"));
    let t = table_for_patch(&bare, false).unwrap();
    let e = check(&t, "/note/on", vec![OscType::Int(60), OscType::Int(100)]).unwrap_err();
    assert!(e.contains("this patch has no instrument"), "{e}");
}

#[test]
fn the_command_line_types_an_instrument_only_when_one_is_written() {
    let t = table();
    let typed = |words: &[&str]| build_message(&t, "/note/on", words);
    let plain = typed(&["60", "100"]).unwrap();
    assert_eq!(plain.args, [OscType::Float(60.0), OscType::Float(100.0)]);
    let named = typed(&["keys", "60", "100", "3"]).unwrap();
    assert_eq!(named.args[0], OscType::String("keys".into()));
    assert_eq!(named.args[3], OscType::Int(3));
    assert!(typed(&["piano", "60", "100"]).is_err());
}

#[test]
fn note_commands_are_logged_with_their_instrument_and_replay_the_same() {
    let t = table();
    let keys = t.instrument("keys").unwrap();
    let commands = [
        Command::NoteOn {
            instrument: keys,
            note: 61.25,
            velocity: 99.5,
            id: 12,
        },
        Command::NotePlay {
            instrument: keys,
            note: 64.0,
            velocity: 80.0,
            seconds: 0.5,
        },
        Command::NoteExpression {
            instrument: keys,
            target: 12.0,
            kind: Expression::Timbre,
            value: 0.25,
        },
        Command::Sustain {
            instrument: keys,
            on: false,
        },
        Command::Panic,
        Command::VoiceLimit { voices: 0 },
        Command::VoiceLimit { voices: 4096 },
    ];
    for (seq, command) in commands.iter().enumerate() {
        let line = format_log_line(&t, 4800, seq as u64 + 1, command);
        let parsed = parse_command_log(&t, &line).unwrap();
        let expected = LogEntry::Command(LoggedCommand {
            frame: 4800,
            seq: seq as u64 + 1,
            command: *command,
        });
        assert_eq!(parsed, [expected], "{line}");
    }
    let line = format_log_line(&t, 0, 1, &commands[0]);
    assert!(line.contains("/note/on keys 61.25 99.5 12"), "{line}");
}

#[test]
fn the_voice_limit_is_a_count_of_voices_up_to_an_instruments_most() {
    let t = table();
    assert_eq!(
        check(&t, "/voices/limit", vec![OscType::Int(12)]),
        Ok(Command::VoiceLimit { voices: 12 })
    );
    assert_eq!(
        check(&t, "/voices/limit", vec![OscType::Int(0)]),
        Ok(Command::VoiceLimit { voices: 0 })
    );
    for bad in [OscType::Int(-1), OscType::Int(4097), OscType::Float(3.5)] {
        let refused = check(&t, "/voices/limit", vec![bad.clone()]);
        assert!(refused.is_err(), "{bad:?}: {refused:?}");
    }
}
