//! Every accepted command is applied once, by both workers alike, or refused with `/fail`
//! (issue 8, findings 3 and 5): admission to the engines' waiting queue is decided where
//! the commands are stamped, and so is the fate of commands a patch switch makes stale, so
//! the served audio equals the replay of the command log in both cases.
//!
//! Real time: `Recorded::start` plays at depth 24 (32 ms of control latency); nothing here
//! depends on timing beyond "eventually, within 30 s".

mod common;

use std::time::{Duration, Instant};

use chronus_engine::MAX_ADMITTED_TIMED;
use common::{
    assert_replay_equals_served, assert_replay_of_patch_equals_served_but_for_underruns, grew,
    signal, text_arg as s, timetag_in, Recorded,
};
use rosc::{OscBundle, OscMessage, OscPacket, OscType};

fn freq(hz: f32) -> OscPacket {
    OscPacket::Message(OscMessage {
        addr: "/mod/sine/freq".into(),
        args: vec![OscType::Float(hz)],
    })
}

/// The `/fail` replies among `replies` whose reason contains `why`.
fn fails(replies: &[OscMessage], why: &str) -> usize {
    replies
        .iter()
        .filter(|m| {
            m.addr == "/fail"
                && matches!(m.args.get(1), Some(OscType::String(reason)) if reason.contains(why))
        })
        .count()
}

/// Before: the engine's queue held 1,024 commands and dropped the rest silently (a counter
/// nobody read), and whether it was full depended on how far each worker had rendered.
/// Now 100 bundled commands beyond what may wait are refused with `/fail` at stamping, the
/// 2,048 admitted wait in both workers (and in the spare that joins while they wait), and
/// all of them play, as the replay of the command log does.
#[test]
fn finding_3_commands_beyond_the_engines_room_get_fail_and_both_workers_hold_the_same() {
    let Recorded {
        server,
        dir,
        wav,
        log,
    } = Recorded::start("admission", &[]);
    server.send("/gate/adsr", vec![OscType::Int(1)]);
    server.sync(1);
    let before = server.metrics();
    let refused = 100;
    let sent = MAX_ADMITTED_TIMED + refused;
    let due_in = Duration::from_secs(3);
    let due = Instant::now() + due_in;
    let timetag = timetag_in(due_in);
    let hz = |i: usize| 200.0 + (i % 400) as f32;
    for first in (0..sent).step_by(50) {
        let bundle = OscPacket::Bundle(rosc::OscBundle {
            timetag,
            content: (first..(first + 50).min(sent))
                .map(|i| freq(hz(i)))
                .collect(),
        });
        server.send_raw(&rosc::encoder::encode(&bundle).unwrap());
    }
    let replies = server.sync(2);
    assert_eq!(
        fails(&replies, "too many commands"),
        refused,
        "each command beyond the room answered /fail: {:?}",
        replies.first()
    );

    // A spare joins while they wait: it holds them all too.
    signal(server.active_pid(), "KILL");
    server.wait_until(Duration::from_secs(30), |m| {
        m["replacements"] == 1.0 && m["spare_ready"] == 1.0
    });
    std::thread::sleep(due.saturating_duration_since(Instant::now()) + Duration::from_millis(500));
    let after = server.metrics();
    server.quit();
    assert_eq!(
        grew(&before, &after, "commands_dropped.queue_full"),
        refused as f64
    );
    assert!(
        grew(&before, &after, "commands_applied.engine") >= MAX_ADMITTED_TIMED as f64,
        "{after:?}"
    );
    assert_eq!(after["lockstep_mismatches"], 0.0, "{after:?}");
    assert_eq!(after["underruns"], 0.0, "{after:?}");
    assert_replay_equals_served(&log, &wav);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Before: a bundle timed after a patch switch committed before its time was dropped by the
/// served engines as stale, while `render --replay` (handing commands over by frame)
/// applied it to the new patch: the two differed from the switch on. Now its sender gets
/// `/fail` when the switch is stamped, and the replay, handing commands over in stamping
/// order as a worker receives them, drops it too.
#[test]
fn finding_5_a_bundle_timed_after_a_patch_switch_gets_fail_and_the_replay_agrees() {
    let Recorded {
        server,
        dir,
        wav,
        log,
    } = Recorded::start("stale", &[]);
    server.send("/gate/adsr", vec![OscType::Int(1)]);
    server.sync(1);
    let before = server.metrics();
    let bundle = OscPacket::Bundle(OscBundle {
        timetag: timetag_in(Duration::from_millis(1500)),
        content: vec![OscPacket::Message(OscMessage {
            addr: "/gate/adsr".into(),
            args: vec![OscType::Int(0)],
        })],
    });
    server.send_raw(&rosc::encoder::encode(&bundle).unwrap());
    server.send(
        "/patch/set",
        vec![s("filter"), s("cutoff"), OscType::Float(3000.0)],
    );
    server.send("/patch/commit", vec![]);
    let replies = server.sync(2);
    assert_eq!(fails(&replies, "patch switch"), 1, "{replies:?}");
    std::thread::sleep(Duration::from_millis(2000));
    let after = server.metrics();
    server.quit();
    assert_eq!(
        grew(&before, &after, "commands_dropped.stale"),
        1.0,
        "{after:?}"
    );
    assert_eq!(after["lockstep_mismatches"], 0.0, "{after:?}");
    assert_replay_of_patch_equals_served_but_for_underruns(&log, &wav, None, &after);
    let _ = std::fs::remove_dir_all(&dir);
}
