//! The clock and track addresses through the crate's public surface: each track of the
//! patch gets `/seq/<track>/start` and `…/stop`, a client rebuilds them from
//! `/table.reply`'s instances, bad values are refused, command-log lines replay the
//! same commands, and each track's live edits (`…/pattern`, `…/instrument`, `…/length`)
//! decode to patch edits that land on the bar or the beat.

use chronus_dsp::{PatchDesc, TrackDesc};
use chronus_engine::{Command, SwitchAt};
use chronus_protocol::{
    format_log_line, format_patch_log_line, parse_command_log, table_for_patch, validate_message,
    AddressTable, LogEntry, LoggedCommand, PatchEdit, Request, TrackChange,
};
use rosc::{OscMessage, OscType};

fn groove() -> PatchDesc {
    let mut desc = PatchDesc::default_patch();
    for (name, pattern) in [("bass", "c2 ~ c2 eb2"), ("chords", "c4'min7")] {
        desc.tracks.push(TrackDesc {
            name: name.to_string(),
            instrument: None,
            pattern: pattern.to_string(),
            bars: 1,
            playing: true,
        });
    }
    desc
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
fn each_track_has_its_start_and_stop() {
    let t = table_for_patch(&groove(), false).unwrap();
    assert_eq!(
        check(&t, "/seq/bass/start", vec![]),
        Ok(Command::TrackRun { track: 0, on: true })
    );
    assert_eq!(
        check(&t, "/seq/chords/stop", vec![]),
        Ok(Command::TrackRun {
            track: 1,
            on: false
        })
    );
    assert!(check(&t, "/seq/drums/start", vec![]).is_err());
    assert!(check(&t, "/seq/bass/start", vec![OscType::Int(1)]).is_err());
    // Without tracks, no /seq/ address at all.
    let plain = table_for_patch(&PatchDesc::default_patch(), false).unwrap();
    assert!(check(&plain, "/seq/bass/start", vec![]).is_err());
}

#[test]
fn a_client_rebuilds_the_tracks_from_the_table_reply() {
    let t = table_for_patch(&groove(), false).unwrap();
    let listed: Vec<(String, String)> = t
        .module_types()
        .map(|(id, type_name)| (id.to_string(), type_name.to_string()))
        .collect();
    assert!(listed.contains(&("bass".to_string(), "track".to_string())));
    let rebuilt = AddressTable::from_type_names(&listed, false).unwrap();
    assert_eq!(rebuilt, t);
}

#[test]
fn the_clock_takes_its_range_and_nothing_else() {
    let t = table_for_patch(&groove(), false).unwrap();
    assert_eq!(
        check(&t, "/clock/bpm", vec![OscType::Float(133.5)]),
        Ok(Command::ClockTempo { bpm: 133.5 })
    );
    assert_eq!(
        check(&t, "/clock/bpm", vec![OscType::Int(90)]),
        Ok(Command::ClockTempo { bpm: 90.0 })
    );
    for bad in [
        vec![OscType::Float(10.0)],
        vec![OscType::Float(401.0)],
        vec![OscType::String("fast".into())],
        vec![],
    ] {
        assert!(check(&t, "/clock/bpm", bad.clone()).is_err(), "{bad:?}");
    }
    assert_eq!(
        check(&t, "/clock/swing", vec![OscType::Float(0.66)]),
        Ok(Command::ClockSwing { swing: 0.66 })
    );
    assert!(check(&t, "/clock/swing", vec![OscType::Float(0.9)]).is_err());
    assert_eq!(
        check(&t, "/clock/stop", vec![]),
        Ok(Command::ClockRun { on: false })
    );
    assert_eq!(
        check(&t, "/clock/start", vec![]),
        Ok(Command::ClockRun { on: true })
    );
}

#[test]
fn clock_and_track_commands_are_logged_and_replay_the_same() {
    let t = table_for_patch(&groove(), false).unwrap();
    let commands = [
        Command::ClockTempo { bpm: 97.25 },
        Command::ClockSwing { swing: 0.625 },
        Command::ClockRun { on: false },
        Command::ClockRun { on: true },
        Command::TrackRun {
            track: 1,
            on: false,
        },
        Command::TrackRun { track: 0, on: true },
    ];
    for (seq, command) in commands.iter().enumerate() {
        let line = format_log_line(&t, 96_000, seq as u64 + 1, command);
        let parsed = parse_command_log(&t, &line).unwrap();
        let expected = LogEntry::Command(LoggedCommand {
            frame: 96_000,
            seq: seq as u64 + 1,
            command: *command,
        });
        assert_eq!(parsed, [expected], "{line}");
    }
    let line = format_log_line(&t, 0, 1, &commands[4]);
    assert!(line.ends_with("/seq/chords/stop"), "{line}");
}

fn edit(table: &AddressTable, address: &str, args: Vec<OscType>) -> Result<Request, String> {
    let msg = OscMessage {
        addr: address.to_string(),
        args,
    };
    validate_message(table, &msg).map_err(|fail| fail.reason)
}

#[test]
fn each_track_can_be_edited_live_on_the_bar_or_the_beat() {
    let t = table_for_patch(&groove(), false).unwrap();
    let text = |s: &str| OscType::String(s.to_string());
    let track = |change, at| {
        Ok(Request::Patch(PatchEdit::Track {
            track: "bass".to_string(),
            change,
            at,
        }))
    };
    assert_eq!(
        edit(&t, "/seq/bass/pattern", vec![text("c2*4")]),
        track(TrackChange::Pattern("c2*4".into()), SwitchAt::TracksAtBar)
    );
    assert_eq!(
        edit(&t, "/seq/bass/pattern", vec![text("c2*4"), text("beat")]),
        track(TrackChange::Pattern("c2*4".into()), SwitchAt::TracksAtBeat)
    );
    assert_eq!(
        edit(&t, "/seq/bass/instrument", vec![text("keys"), text("bar")]),
        track(
            TrackChange::Instrument("keys".into()),
            SwitchAt::TracksAtBar
        )
    );
    assert_eq!(
        edit(&t, "/seq/bass/length", vec![OscType::Int(2)]),
        track(TrackChange::Bars(2), SwitchAt::TracksAtBar)
    );
    // Refused, with the reason: when is bar or beat; bars 1..=64; a pattern is text.
    let when = edit(&t, "/seq/bass/pattern", vec![text("c2"), text("now")]).unwrap_err();
    assert!(when.contains("'bar'") && when.contains("'beat'"), "{when}");
    let when = edit(
        &t,
        "/seq/bass/length",
        vec![OscType::Int(2), text("sixteenth")],
    );
    assert!(when.unwrap_err().contains("'beat'"));
    // Checked when decoded, so a bundle holding a bad edit is refused whole: a pattern
    // that does not parse (pointing at the mistake), an instrument the patch lacks.
    let pattern = edit(&t, "/seq/bass/pattern", vec![text("c2 [e2")]).unwrap_err();
    assert!(
        pattern.starts_with("/seq/bass/pattern: ") && pattern.contains("never closed"),
        "{pattern}"
    );
    assert!(pattern.contains("^"), "{pattern}");
    let tuba = edit(&t, "/seq/bass/instrument", vec![text("tuba")]).unwrap_err();
    assert!(
        tuba.contains("unknown instrument 'tuba' (instruments: keys)"),
        "{tuba}"
    );
    assert!(edit(&t, "/seq/bass/length", vec![OscType::Int(65)]).is_err());
    assert!(edit(&t, "/seq/bass/length", vec![OscType::Int(0)]).is_err());
    assert!(edit(&t, "/seq/bass/pattern", vec![OscType::Int(3)]).is_err());
    assert!(edit(&t, "/seq/drums/pattern", vec![text("bd")]).is_err());
    let too_long = "c4 ".repeat(2000);
    assert!(edit(&t, "/seq/bass/pattern", vec![text(&too_long)]).is_err());
}

#[test]
fn a_tracks_switch_is_logged_with_its_bar_or_beat_and_read_back() {
    let toml = groove().to_toml_string();
    for at in [SwitchAt::Now, SwitchAt::TracksAtBar, SwitchAt::TracksAtBeat] {
        let line = format_patch_log_line(96_000, 4, &toml, at);
        let t = table_for_patch(&groove(), false).unwrap();
        assert_eq!(
            parse_command_log(&t, &line),
            Ok(vec![LogEntry::Patch {
                frame: 96_000,
                seq: 4,
                toml: toml.clone(),
                at
            }])
        );
    }
}
