//! End-to-end tests of the metrics: every command a client sends is accounted for, once,
//! under the reason it deserves, and every metric of the list reaches `/metrics.reply` and
//! `chronus status --json`.
//!
//! Real time: `Server::start` plays at depth 24 (32 ms of control latency), generous for a
//! loaded 2-core machine; nothing here depends on timing beyond "eventually, within 20 s".

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chronus_supervisor::{MetricKind, METRICS, SLOT_METRICS};
use common::{get, grew, timetag_in, Server};
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

fn freq(hz: f32) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: "/mod/sine/freq".into(),
        args: vec![OscType::Float(hz)],
    })
}

/// Both identities of the command accounting, exactly.
fn assert_identities(m: &BTreeMap<String, f64>) {
    assert_eq!(
        get(m, "commands_received"),
        get(m, "commands_accepted") + get(m, "commands_rejected"),
        "received = accepted + rejected: {m:?}"
    );
    assert_eq!(
        get(m, "commands_accepted"),
        get(m, "commands_applied") + get(m, "commands_pending") + get(m, "commands_dropped"),
        "accepted = applied + pending + dropped: {m:?}"
    );
}

/// Finding 7: `commands_received` counted only accepted commands, `commands_applied`
/// counted commands stamped but not yet due, and the engine's counts never reached
/// `/metrics`. A mix of every kind of message, then `/sync`: each count equals what was
/// sent and both identities hold exactly.
#[test]
fn finding_7_every_command_is_accounted_for_and_applied_means_applied_by_the_engine() {
    let server = Server::start(&[]); // depth 24
    let before = server.metrics();

    // 5 valid commands for now, in a bundle of 2 and 3 single messages.
    let now_bundle = OscPacket::Bundle(OscBundle {
        timetag: OscTime {
            seconds: 0,
            fractional: 1,
        },
        content: vec![freq(300.0), freq(310.0)],
    });
    server.send_raw(&rosc::encoder::encode(&now_bundle).unwrap());
    for hz in [320.0, 330.0, 340.0] {
        server.send_raw(&rosc::encoder::encode(&freq(hz)).unwrap());
    }
    // 3 valid commands due in 30 s: accepted, not applied while the test runs.
    let later_bundle = OscPacket::Bundle(OscBundle {
        timetag: timetag_in(Duration::from_secs(30)),
        content: vec![freq(500.0), freq(510.0), freq(520.0)],
    });
    server.send_raw(&rosc::encoder::encode(&later_bundle).unwrap());
    // 4 invalid ones: an unknown address, a text for a number, out of range, no argument.
    server.send("/nope", vec![]);
    server.send("/mod/sine/freq", vec![OscType::String("loud".into())]);
    server.send("/mod/sine/freq", vec![OscType::Float(1e9)]);
    server.send("/mod/sine/freq", vec![]);
    // 3 undecodable packets.
    for garbage in [&b"not osc at all"[..], &[0xff; 7][..], &b"/x\0\0,q\0\0"[..]] {
        server.send_raw(garbage);
    }
    // 4 queries, one patch edit the editor refuses and one it answers.
    server.send("/status", vec![]);
    server.send("/version", vec![]);
    server.send("/get", vec![OscType::String("/mod/sine/freq".into())]);
    server.send("/status", vec![]);
    server.send(
        "/patch/add",
        vec![OscType::String("x".into()), OscType::String("sinee".into())],
    );
    server.send("/patch/dump", vec![]);
    let replies = server.sync(7);
    let fails = replies.iter().filter(|m| m.addr == "/fail").count();
    assert_eq!(
        fails, 5,
        "4 invalid and 1 refused edit answered /fail: {replies:?}"
    );

    // The 5 commands for now are applied by the engine within the control latency; poll
    // (each poll is itself a command: received, accepted and applied when answered).
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut polls = 0.0;
    let after = loop {
        let m = server.metrics();
        polls += 1.0;
        let applied = |m: &BTreeMap<String, f64>| m.get("commands_applied.engine").copied();
        let engine_applied = applied(&m).zip(applied(&before)).map(|(a, b)| a - b);
        if engine_applied >= Some(5.0) || Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    let sent = 5.0 + 3.0 + 4.0 + 3.0 + 4.0 + 2.0 + 1.0; // + the /sync
    assert_eq!(
        grew(&before, &after, "commands_received"),
        sent + polls,
        "commands_received: every message that arrived: {after:?}"
    );
    assert_eq!(grew(&before, &after, "commands_rejected.undecodable"), 3.0);
    assert_eq!(grew(&before, &after, "commands_rejected.invalid"), 4.0);
    assert_eq!(grew(&before, &after, "commands_rejected.patch_edit"), 1.0);
    assert_eq!(grew(&before, &after, "commands_rejected.busy"), 0.0);
    assert_eq!(grew(&before, &after, "commands_rejected"), 8.0);
    assert_eq!(
        grew(&before, &after, "commands_accepted"),
        5.0 + 3.0 + 4.0 + 1.0 + 1.0 + polls
    );
    assert_eq!(
        grew(&before, &after, "commands_applied.engine"),
        5.0,
        "the engine applied the 5 commands due now and not the 3 due in 30 s: {after:?}"
    );
    assert_eq!(
        grew(&before, &after, "commands_applied.answered"),
        4.0 + 1.0 + 1.0 + polls
    );
    assert_eq!(
        get(&after, "commands_pending"),
        3.0,
        "the 3 commands due in 30 s are pending"
    );
    assert_eq!(get(&after, "engine.commands_waiting"), 3.0);
    assert_eq!(get(&after, "commands_dropped"), 0.0);
    assert_identities(&after);

    // Still not applied a second later (they are due in 30 s), and still exact.
    std::thread::sleep(Duration::from_secs(1));
    let later = server.metrics();
    assert_eq!(grew(&before, &later, "commands_applied.engine"), 5.0);
    assert_eq!(get(&later, "commands_pending"), 3.0);
    assert_identities(&later);
    assert_eq!(get(&later, "underruns"), 0.0);
    server.quit();
}

/// Every metric of the list reaches `/metrics.reply` (times once measured) and
/// `chronus status --json`, both slots' per-slot metrics included.
#[test]
fn every_listed_metric_is_reported_by_the_server_and_by_status() {
    let server = Server::start(&[]); // depth 24
    server.send("/mod/sine/freq", vec![OscType::Float(330.0)]);
    server.sync(1);
    let numbers = server.wait_until(Duration::from_secs(20), |m| {
        m.contains_key("command_latency_ms_p50")
    });
    let (numbers_now, texts) = server.metrics_full();
    for metric in METRICS {
        if metric.kind == MetricKind::Time && !metric.name.starts_with("command_latency") {
            continue; // failover and rebuild times: none yet
        }
        assert!(
            numbers.contains_key(metric.name) && numbers_now.contains_key(metric.name),
            "{} missing from /metrics.reply",
            metric.name
        );
    }
    for slot in 0..2 {
        for metric in SLOT_METRICS {
            let name = metric.name.replace(".N.", &format!(".{slot}."));
            assert!(
                numbers_now.contains_key(&name) || texts.contains_key(&name),
                "{name} missing from /metrics.reply"
            );
        }
        assert_eq!(numbers_now[&format!("slot.{slot}.records_rejected")], 0.0);
    }
    assert_identities(&numbers_now);

    let json = server.status_json();
    for metric in METRICS.iter().filter(|m| m.kind != MetricKind::Time) {
        assert!(
            json.get(metric.name).is_some(),
            "{} missing in {json}",
            metric.name
        );
    }
    assert_eq!(json["workers"].as_array().map(Vec::len), Some(2), "{json}");
    server.quit();
}
