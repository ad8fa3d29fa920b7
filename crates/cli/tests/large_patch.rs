//! A patch grown live far beyond the one the server started with: its state travels
//! through the snapshot area to a joining spare and to a pair restarted after a double
//! fault. A test binary of its own, so its load (forty delay lines, snapshots of 15 MB)
//! never runs beside a test that counts underruns.

mod common;

use std::time::Duration;

use common::{expect_done, signal, text_arg as s, Server};
use rosc::OscType;

/// Adds `count` delays `echo0`, `echo1`, … after the filter, in a chain, each with the
/// parameter values `set`, and commits them.
fn commit_a_chain_of_delays(server: &Server, count: usize, set: &[(&str, f32)]) {
    for i in 0..count {
        let id = format!("echo{i}");
        server.send("/patch/add", vec![s(&id), s("delay")]);
        for &(param, value) in set {
            server.send("/patch/set", vec![s(&id), s(param), OscType::Float(value)]);
        }
        let from = if i == 0 {
            "filter".to_string()
        } else {
            format!("echo{}", i - 1)
        };
        server.send("/patch/connect", vec![s(&from), s(&id)]);
    }
    server.send("/patch/commit", vec![]);
    expect_done(server, "/patch/commit");
}

/// Real time, paced null output at the default depth, a few seconds. Before: the snapshot
/// area was sized once at start (at least 2 MiB), and a live edit that grew the patch's
/// state beyond it was refused; each delay line holds 2 s (384 KB of state), so about
/// five delays were the limit. Now the area has room for any patch that fits in memory
/// (its pages are memory only once written): 40 delays (15 MB of state) commit, a spare
/// joins from a snapshot of them after the active worker is killed, and a pair restarts
/// from them after both are.
#[test]
fn a_live_edit_to_forty_delays_commits_and_survives_failover_and_a_double_fault() {
    let server = Server::start(&["--output", "null", "--allow-fault-injection"]);
    server.send("/gate/adsr", vec![OscType::Int(1)]);
    commit_a_chain_of_delays(&server, 40, &[]);
    signal(server.active_pid(), "KILL");
    server.wait_until(Duration::from_secs(30), |m| {
        m["replacements"] >= 1.0 && m["spare_ready"] == 1.0
    });
    let pids = server.signal_both_workers("KILL");
    let metrics = server.wait_for_new_pair(&pids);
    server.quit();
    common::assert_metrics(
        &metrics,
        &[
            ("lockstep_mismatches", 0.0),
            ("commands_rejected", 0.0),
            ("cold_restarts", 1.0),
        ],
    );
    assert!(metrics["voices_sounding"] >= 1.0, "{metrics:?}");
}

/// Real time, paced null output at the default depth, a few seconds. Sixty delays whose
/// lines hold 250 ms (`max_time`: 48 KB each, where a 2 s line is 384 KB) commit live.
/// `max_time` sizes memory, so it is no live parameter: `/mod` of it gets `/fail` saying
/// how to change it, and that way (`/patch/set`, `/patch/commit`) works; a spare joins
/// from a snapshot of the resized lines.
#[test]
fn sixty_short_delays_commit_and_their_line_length_changes_with_the_patch() {
    let server = Server::start(&["--output", "null", "--allow-fault-injection"]);
    server.send("/gate/adsr", vec![OscType::Int(1)]);
    commit_a_chain_of_delays(&server, 60, &[("max_time", 250.0), ("time", 100.0)]);

    server.send("/mod/echo7/max_time", vec![OscType::Float(500.0)]);
    let replies = server.sync(43);
    assert!(
        replies.iter().any(|m| m.addr == "/fail"
            && m.args.iter().any(|a| matches!(a, OscType::String(why)
                if why.contains("fixed when the patch compiles")
                    && why.contains("/patch/set echo7 max_time")))),
        "{replies:?}"
    );
    server.send(
        "/patch/set",
        vec![s("echo7"), s("max_time"), OscType::Float(500.0)],
    );
    server.send(
        "/patch/set",
        vec![s("echo7"), s("time"), OscType::Float(400.0)],
    );
    server.send("/patch/commit", vec![]);
    expect_done(&server, "/patch/commit");
    server.send("/params", vec![s("echo7")]);
    let replies = server.sync(44);
    let params = replies
        .iter()
        .find(|m| m.addr == "/params.reply")
        .expect("a /params.reply");
    let at = params
        .args
        .iter()
        .position(|a| *a == s("max_time"))
        .expect("max_time listed");
    // name, unit, min, max, default, current
    assert_eq!(params.args[at + 5], OscType::Float(500.0), "{params:?}");

    signal(server.active_pid(), "KILL");
    let metrics = server.wait_until(Duration::from_secs(30), |m| {
        m["replacements"] >= 1.0 && m["spare_ready"] == 1.0
    });
    server.quit();
    common::assert_metrics(
        &metrics,
        &[
            ("lockstep_mismatches", 0.0),
            ("commands_dropped", 0.0),
            ("cold_restarts", 0.0),
        ],
    );
}
