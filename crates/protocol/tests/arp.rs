//! The arpeggiator addresses through the crate's public surface: each instrument of the
//! patch gets `/arp/<instrument>/on|mode|octaves|rate|gate`, a client rebuilds them from
//! `/table.reply`'s instances, bad values are refused with the reason, and command-log
//! lines replay the same commands.

use chronus_dsp::{ArpMode, PatchDesc};
use chronus_engine::arpeggiator::ArpSetting;
use chronus_engine::Command;
use chronus_protocol::{
    format_log_line, parse_command_log, table_for_patch, validate_message, AddressTable, LogEntry,
    LoggedCommand, Request,
};
use rosc::{OscMessage, OscType};

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

fn keys(table: &AddressTable) -> u16 {
    table.instrument("keys").unwrap()
}

fn arp(instrument: u16, setting: ArpSetting) -> Result<Command, String> {
    Ok(Command::Arp {
        instrument,
        setting,
    })
}

#[test]
fn each_instrument_has_its_arpeggiator_addresses() {
    let t = table_for_patch(&PatchDesc::default_patch(), false).unwrap();
    let k = keys(&t);
    assert_eq!(
        check(&t, "/arp/keys/on", vec![OscType::Int(1)]),
        arp(k, ArpSetting::On(true))
    );
    assert_eq!(
        check(&t, "/arp/keys/on", vec![OscType::Bool(false)]),
        arp(k, ArpSetting::On(false))
    );
    for mode in ArpMode::ALL {
        assert_eq!(
            check(
                &t,
                "/arp/keys/mode",
                vec![OscType::String(mode.name().into())]
            ),
            arp(k, ArpSetting::Mode(mode))
        );
    }
    assert_eq!(
        check(&t, "/arp/keys/octaves", vec![OscType::Int(3)]),
        arp(k, ArpSetting::Octaves(3))
    );
    assert_eq!(
        check(&t, "/arp/keys/rate", vec![OscType::Float(0.25)]),
        arp(k, ArpSetting::Rate(24))
    );
    assert_eq!(
        check(&t, "/arp/keys/rate", vec![OscType::Int(1)]),
        arp(k, ArpSetting::Rate(96))
    );
    assert_eq!(
        check(&t, "/arp/keys/rate", vec![OscType::Double(1.0 / 3.0)]),
        arp(k, ArpSetting::Rate(32))
    );
    assert_eq!(
        check(&t, "/arp/keys/gate", vec![OscType::Float(0.8)]),
        arp(k, ArpSetting::Gate(0.8))
    );
    assert!(check(&t, "/arp/piano/on", vec![OscType::Int(1)]).is_err());
    let entry = t.lookup("/arp/keys/rate").unwrap();
    assert!(entry.is_engine_command());
    assert!(entry.doc.contains("sixteenths"), "{}", entry.doc);
}

#[test]
fn bad_values_are_refused_with_the_reason() {
    let t = table_for_patch(&PatchDesc::default_patch(), false).unwrap();
    let reason = |address: &str, args: Vec<OscType>| check(&t, address, args).unwrap_err();
    let r = reason("/arp/keys/mode", vec![OscType::String("sideways".into())]);
    assert_eq!(
        r,
        "/arp/keys/mode: unknown mode 'sideways' (modes: up, down, updown, random)"
    );
    let r = reason("/arp/keys/rate", vec![OscType::Float(0.33)]);
    assert!(
        r.starts_with("/arp/keys/rate: rate 0.33: ")
            && r.contains("whole 96ths of a beat")
            && r.contains("nearest 0.3333"),
        "{r}"
    );
    for (address, args) in [
        ("/arp/keys/rate", vec![OscType::Float(8.0)]),
        ("/arp/keys/rate", vec![OscType::Float(0.0)]),
        ("/arp/keys/octaves", vec![OscType::Int(0)]),
        ("/arp/keys/octaves", vec![OscType::Int(5)]),
        ("/arp/keys/octaves", vec![OscType::Float(1.5)]),
        ("/arp/keys/gate", vec![OscType::Float(0.01)]),
        ("/arp/keys/gate", vec![OscType::Float(1.5)]),
        ("/arp/keys/on", vec![OscType::Int(2)]),
        ("/arp/keys/on", vec![]),
        ("/arp/keys/mode", vec![OscType::Int(1)]),
    ] {
        let r = reason(address, args.clone());
        assert!(r.contains(address), "{address} {args:?}: {r}");
    }
}

#[test]
fn a_client_rebuilds_the_arpeggiators_from_the_table_reply() {
    let t = table_for_patch(&PatchDesc::default_patch(), false).unwrap();
    let listed: Vec<(String, String)> = t
        .module_types()
        .map(|(id, type_name)| (id.to_string(), type_name.to_string()))
        .collect();
    let rebuilt = AddressTable::from_type_names(&listed, false).unwrap();
    assert_eq!(rebuilt, t);
    assert!(rebuilt.lookup("/arp/keys/gate").is_some());
}

#[test]
fn arpeggiator_commands_are_logged_and_replay_the_same() {
    let t = table_for_patch(&PatchDesc::default_patch(), false).unwrap();
    let k = keys(&t);
    let settings = [
        ArpSetting::On(true),
        ArpSetting::Mode(ArpMode::UpDown),
        ArpSetting::Mode(ArpMode::Random),
        ArpSetting::Octaves(4),
        ArpSetting::Rate(32),
        ArpSetting::Rate(3),
        ArpSetting::Rate(384),
        ArpSetting::Gate(0.35),
        ArpSetting::On(false),
    ];
    for (seq, setting) in settings.into_iter().enumerate() {
        let command = Command::Arp {
            instrument: k,
            setting,
        };
        let line = format_log_line(&t, 6_000, seq as u64 + 1, &command);
        let parsed = parse_command_log(&t, &line).unwrap();
        let expected = LogEntry::Command(LoggedCommand {
            frame: 6_000,
            seq: seq as u64 + 1,
            command,
        });
        assert_eq!(parsed, [expected], "{line}");
    }
    let line = format_log_line(
        &t,
        0,
        1,
        &Command::Arp {
            instrument: k,
            setting: ArpSetting::Mode(ArpMode::UpDown),
        },
    );
    assert!(line.ends_with("/arp/keys/mode updown"), "{line}");
}
