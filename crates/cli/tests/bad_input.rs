//! End to end: every kind of bad input gets `/fail <address> <reason>` (or, for bytes that
//! are not OSC at all, is counted), changes nothing, and the sound keeps playing.

mod common;

use std::time::Duration;

use common::{chronus, encode, grew, Server};
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

fn expect_fail(server: &Server, address: &str) -> String {
    let replies = server.sync(7);
    let fail = replies
        .iter()
        .find(|m| m.addr == "/fail")
        .unwrap_or_else(|| panic!("no /fail for {address}; got {replies:?}"));
    match (&fail.args[0], &fail.args[1]) {
        (OscType::String(a), OscType::String(reason)) => {
            assert_eq!(a, address);
            assert!(!reason.is_empty());
            reason.clone()
        }
        other => panic!("malformed /fail {other:?}"),
    }
}

#[test]
fn bad_messages_are_refused_and_the_sound_plays_on() {
    let server = Server::start(&["--output", "null"]);
    server.send("/gate/adsr", vec![OscType::Int(1)]);
    server.sync(1);
    let before = server.metrics();

    let cases: Vec<(&str, Vec<OscType>)> = vec![
        ("/mod/sinee/freq", vec![OscType::Float(440.0)]),
        ("/mod/sine/freq", vec![OscType::String("abc".into())]),
        ("/mod/sine/freq", vec![OscType::Float(f32::NAN)]),
        ("/mod/sine/freq", vec![OscType::Double(f64::INFINITY)]),
        ("/mod/sine/freq", vec![OscType::Float(30_000.0)]),
        ("/mod/sine/freq", vec![OscType::Float(-1.0)]),
        ("/mod/sine/freq", vec![]),
        (
            "/mod/sine/freq",
            vec![OscType::Float(440.0), OscType::Float(1.0)],
        ),
        ("/mod/sine/gain", vec![OscType::Float(1.5)]),
        ("/gate/adsr", vec![OscType::Int(2)]),
        ("/mod/adsr/sustain", vec![OscType::Blob(vec![1, 2, 3])]),
        ("/engine/gain", vec![OscType::Float(-0.1)]),
        ("/sync", vec![OscType::String("x".into())]),
        ("/debug/crash", vec![]), // fault injection is off
    ];
    for (address, args) in cases {
        server.send(address, args.clone());
        let reason = expect_fail(&server, address);
        eprintln!("{address} {args:?} -> /fail {reason}");
    }

    // A bundle with one bad message is refused whole.
    let bundle = OscPacket::Bundle(OscBundle {
        timetag: OscTime {
            seconds: 0,
            fractional: 1,
        },
        content: vec![
            OscPacket::Message(OscMessage {
                addr: "/mod/sine/freq".into(),
                args: vec![OscType::Float(880.0)],
            }),
            OscPacket::Message(OscMessage {
                addr: "/mod/sine/gain".into(),
                args: vec![OscType::Float(7.0)],
            }),
        ],
    });
    server.send_raw(&rosc::encoder::encode(&bundle).unwrap());
    let replies = server.sync(8);
    assert_eq!(
        replies.iter().filter(|m| m.addr == "/fail").count(),
        2,
        "{replies:?}"
    );

    // Bytes that are not OSC: counted, no reply, no harm.
    for garbage in [
        &b""[..],
        b"\0\0\0\0",
        b"hello world",
        &[0xff; 64],
        b"/mod/sine/freq\0\0,f\0\0\0\0",
    ] {
        server.send_raw(garbage);
    }
    server.sync(9);

    // OSC 1.0: a message may leave out its type-tag string (old clients send `/status`
    // so); it is a message without arguments, and answered.
    server.send_raw(b"/status\0");
    let replies = server.sync(10);
    assert!(
        replies.iter().any(|m| m.addr == "/status.reply"),
        "no answer to /status without type tags: {replies:?}"
    );
    // A bundle nested deeper than the limit is refused with a reason, not dropped unsaid.
    let mut deep = encode("/mod/sine/freq", vec![OscType::Float(300.0)]);
    for _ in 0..40 {
        let mut outer = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        outer.extend_from_slice(&(deep.len() as u32).to_be_bytes());
        outer.extend_from_slice(&deep);
        deep = outer;
    }
    server.send_raw(&deep);
    let reason = expect_fail(&server, "#bundle");
    assert!(reason.contains("nested"), "{reason}");
    // Also while /dumpOSC logs every packet (its logging read the packet with the
    // recursive decoder before the depth check: 500 levels overflowed the OSC thread's
    // stack, and the server died).
    server.send("/dumpOSC", vec![OscType::Int(1)]);
    assert_eq!(server.sync(11).len(), 1, "/done /dumpOSC");
    let mut deeper = encode("/status", vec![]);
    for _ in 0..3000 {
        let mut outer = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        outer.extend_from_slice(&(deeper.len() as u32).to_be_bytes());
        outer.extend_from_slice(&deeper);
        deeper = outer;
    }
    server.send_raw(&deeper);
    let reason = expect_fail(&server, "#bundle");
    assert!(reason.contains("nested"), "{reason}");
    server.send("/dumpOSC", vec![OscType::Int(0)]);
    assert_eq!(server.sync(12).len(), 1, "/done /dumpOSC");

    // Unknown module in a direct message still tells what to do.
    server.send("/mod/sinee/freq", vec![OscType::Float(440.0)]);
    let reason = expect_fail(&server, "/mod/sinee/freq");
    assert!(reason.contains("sine"), "no suggestion in {reason:?}");

    std::thread::sleep(Duration::from_millis(300));
    let after = server.metrics();
    // The too-deep bundle counts as undecodable (its messages were never read) though it
    // is answered.
    assert_eq!(
        grew(&before, &after, "commands_rejected"),
        17.0 + 7.0,
        "17 answered /fail, 5 not OSC, 2 bundles too deep: {after:?}"
    );
    assert_eq!(
        grew(&before, &after, "commands_rejected.undecodable"),
        7.0,
        "{after:?}"
    );
    assert_eq!(
        grew(&before, &after, "commands_accepted"),
        20.0 + 1.0 + 1.0 + 4.0,
        "nothing bad was accepted: only the 20 /syncs, the OSC 1.0 /status, this /metrics, and two /dumpOSC with their /syncs"
    );
    assert_eq!(after["underruns"], 0.0);
    assert_eq!(after["crash_count"], 0.0);
    assert!(
        after["blocks_played"] > before["blocks_played"] + 100.0,
        "the sound kept playing"
    );

    // Queries answer in scsynth's layouts.
    server.send("/status", vec![]);
    let status = server.recv().unwrap();
    assert_eq!(status.addr, "/status.reply");
    let types: String = status
        .args
        .iter()
        .map(|a| match a {
            OscType::Int(_) => 'i',
            OscType::Float(_) => 'f',
            OscType::Double(_) => 'd',
            _ => '?',
        })
        .collect();
    assert_eq!(types, "iiiiiffdd");
    assert_eq!(
        status.args[2],
        OscType::Int(1),
        "one voice sounding with the gate open"
    );
    server.send("/version", vec![]);
    let version = server.recv().unwrap();
    assert_eq!(version.addr, "/version.reply");
    // Program, major, minor, patch, branch, commit: the commit this binary was built from.
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
    if let Some(commit) = commit {
        assert_eq!(version.args[5], OscType::String(commit), "{version:?}");
    }
    server.quit();
}

#[test]
fn send_and_status_cli() {
    let server = Server::start(&["--output", "null"]);
    let osc = server.addr.to_string();
    let ok = chronus()
        .args(["send", "--osc", &osc, "/mod/sine/freq", "330"])
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let gate = chronus()
        .args(["send", "--osc", &osc, "/gate/adsr", "on"])
        .output()
        .unwrap();
    assert!(gate.status.success(), "{gate:?}");
    // Refused locally, with the server's own words.
    let bad = chronus()
        .args(["send", "--osc", &osc, "/mod/sine/freq", "30000"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("out of range"),
        "{bad:?}"
    );
    // Refused locally too: an address the server's own table (asked with /table) lacks.
    let unknown = chronus()
        .args(["send", "--osc", &osc, "/nope", "1"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("chronus: unknown address /nope "),
        "{unknown:?}"
    );
    // The server refuses it too, from a client that does not check (counted below).
    server.send("/nope", vec![OscType::Int(1)]);
    assert_eq!(server.sync(9).len(), 1, "a /fail for /nope");

    let json = server.status_json();
    for key in [
        "crash_count",
        "deadline_misses",
        "replacements",
        "spare_ready",
        "failover_count",
        "underruns",
        "commands_received",
        "commands_applied",
        "commands_rejected",
        "failover_ms_last",
        "rebuild_ms_last",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {json}");
    }
    assert_eq!(json["spare_ready"], serde_json::json!(true));
    assert_eq!(json["failover_ms_last"], serde_json::Value::Null);
    assert_eq!(
        json["commands_rejected.invalid"],
        serde_json::json!(1),
        "/nope"
    );
    let count = |name: &str| {
        json[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {json}"))
    };
    assert_eq!(
        count("commands_received"),
        count("commands_accepted") + count("commands_rejected")
    );
    let workers = json["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 2);
    let roles: Vec<&str> = workers
        .iter()
        .map(|w| w["role"].as_str().unwrap())
        .collect();
    assert!(
        roles.contains(&"active") && roles.contains(&"standby"),
        "{roles:?}"
    );
    assert!(workers.iter().all(|w| w["pid"].as_u64().unwrap() > 0));

    let quit = chronus()
        .args(["send", "--osc", &osc, "/quit"])
        .output()
        .unwrap();
    assert!(quit.status.success(), "{quit:?}");
    let _ = encode; // shared helper
}
