//! The OSC surface as clients see it: address patterns applied per match, all or nothing;
//! `chronus send` checking against the patch the server plays (asked with `/table`), and
//! saying so when it can only check offline; `chronus status` as a summary for people.
//!
//! Real time: each test plays a few seconds at the common settings (block 64, depth 24:
//! 32 ms), asserting answers and values, never timings.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::*;
use rosc::OscType;

fn send(server: &Server, args: &[&str]) -> Output {
    chronus()
        .args(["send", "--osc", &server.addr.to_string()])
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The `/get.reply` values for `/get <pattern>`, by address.
fn get_all(server: &Server, pattern: &str) -> Vec<(String, f32)> {
    server.send("/get", vec![OscType::String(pattern.into())]);
    let mut values: Vec<(String, f32)> = server
        .sync(7)
        .into_iter()
        .filter(|m| m.addr == "/get.reply")
        .map(|m| match (&m.args[0], &m.args[1]) {
            (OscType::String(address), OscType::Float(value)) => (address.clone(), *value),
            other => panic!("{other:?}"),
        })
        .collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    values
}

#[test]
fn an_address_pattern_sets_every_match_or_nothing() {
    let server = Server::start(&["--output", "null"]);
    server.send("/mod/*/gain", vec![OscType::Float(0.5)]);
    let replies = server.sync(1);
    assert!(replies.is_empty(), "{replies:?}");
    let gains = get_all(&server, "/mod/*/gain");
    assert_eq!(
        gains,
        [
            ("/mod/filter/gain".to_string(), 0.5),
            ("/mod/gain/gain".to_string(), 0.5),
            ("/mod/keys.osc/gain".to_string(), 0.5),
            ("/mod/keys.vca/gain".to_string(), 0.5),
            ("/mod/sine/gain".to_string(), 0.5)
        ]
    );

    // One match out of range: /fail, and no match changed.
    server.send("/mod/{sine,gain}/gain", vec![OscType::Float(50.0)]);
    let replies = server.sync(2);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].addr, "/fail");
    let reason = format!("{:?}", replies[0].args);
    assert!(reason.contains("nothing applied"), "{reason}");
    assert_eq!(get_all(&server, "/mod/*/gain"), gains);

    // A pattern that matches nothing, and one that does not parse.
    for pattern in ["/mod/nothing*/gain", "/mod/[sine/gain"] {
        server.send(pattern, vec![OscType::Float(0.5)]);
        let replies = server.sync(3);
        assert_eq!(replies.len(), 1, "{pattern}: {replies:?}");
        assert_eq!(replies[0].addr, "/fail", "{pattern}");
    }
    // A gate pattern opens the gate.
    server.send("/gate/a*", vec![OscType::Int(1)]);
    assert!(server.sync(4).is_empty());

    // Every message is accounted for, a pattern once per match.
    let metrics = server.metrics();
    assert_eq!(
        get(&metrics, "commands_received"),
        get(&metrics, "commands_accepted") + get(&metrics, "commands_rejected")
    );
    server.quit();
}

#[test]
fn send_checks_against_the_patch_the_server_plays() {
    let bass = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../patches/bass.toml");
    let server = Server::start(&["--output", "null", "--patch", bass.to_str().unwrap()]);

    // Its addresses are accepted: they are not in the built-in patch.
    for args in [
        vec!["/params", "osc"],
        vec!["/ramp", "/mod/osc/freq", "110", "1"],
        vec!["/mod/osc/freq", "220"],
    ] {
        let out = send(&server, &args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(
            !text(&out.stderr).contains("offline"),
            "{}",
            text(&out.stderr)
        );
    }
    // The built-in patch's are refused with the server's reason, before anything is sent.
    let out = send(&server, &["/mod/sine/freq", "440"]);
    assert!(!out.status.success());
    // Named once.
    assert_eq!(
        text(&out.stderr).trim(),
        "chronus: unknown address /mod/sine/freq (did you mean /mod/osc/freq?)"
    );
    // Offline against a patch the user names, an address it lacks is refused too.
    let out = chronus()
        .args([
            "send",
            "--osc",
            "127.0.0.1:9",
            "--timeout",
            "0.5",
            "--patch",
        ])
        .arg(&bass)
        .args(["/gate/adsr", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("checked offline against")
            && text(&out.stderr).contains("unknown address /gate/adsr"),
        "{}",
        text(&out.stderr)
    );
    // A module added live is known at once.
    let out = send(&server, &["/patch/add", "lfo", "sine"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = send(&server, &["/patch/commit"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = send(&server, &["/get", "/mod/lfo/freq"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("/mod/lfo/freq 440"),
        "{}",
        text(&out.stdout)
    );

    // The summary, and the JSON.
    let summary = chronus()
        .args(["status", "--osc", &server.addr.to_string()])
        .output()
        .unwrap();
    let summary = text(&summary.stdout);
    for expected in ["workers    slot 0 ", "active", "standby", "depth 24 blocks"] {
        assert!(summary.contains(expected), "{expected:?} not in\n{summary}");
    }
    let json = chronus()
        .args(["status", "--json", "--osc", &server.addr.to_string()])
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["depth_blocks"], 24);

    let addr = server.addr.to_string();
    server.quit();
    // No server: only the offline check, and `send` says so.
    let out = chronus()
        .args([
            "send",
            "--timeout",
            "0.3",
            "--osc",
            &addr,
            "/mod/sine/freq",
            "440",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("checked offline against the built-in patch"),
        "{}",
        text(&out.stderr)
    );
}
