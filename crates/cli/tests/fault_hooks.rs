//! Every deterministic fault hook (issue 8), end to end: a worker that aborts, raises
//! SIGSEGV, panics inside a module's `process`, hangs or runs slower than real time, and a
//! spare that dies at each named point of its join. One worker always survives, so the
//! served audio has no gap and equals the replay of the command log sample for sample,
//! and the metrics say what happened.
//!
//! Real time: `Recorded::start` plays at depth 24 (32 ms of control latency); nothing here
//! depends on timing beyond "eventually, within 30 s".

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{assert_replay_equals_served, Recorded};
use rosc::OscType;

/// Plays a note, sends `hooks` (address, arguments) one after another, and waits until
/// `expected_losses` workers were lost and the pair is whole again; checks there was no
/// gap and no divergence, and that the served audio equals the replay. Returns the
/// metrics.
fn survive(
    name: &str,
    hooks: &[(&str, Vec<OscType>)],
    expected_losses: f64,
) -> BTreeMap<String, f64> {
    let Recorded {
        server,
        dir,
        wav,
        log,
    } = Recorded::start(name, &["--allow-fault-injection"]);
    server.play_note(330.0);
    std::thread::sleep(Duration::from_millis(300));
    for (address, args) in hooks {
        server.send(address, args.clone());
    }
    server.sync(2);
    server.wait_until(Duration::from_secs(30), |m| {
        m["crash_count"] >= expected_losses && m["spare_ready"] == 1.0 && m["live_children"] == 2.0
    });
    server.send("/mod/sine/freq", vec![OscType::Float(440.0)]);
    server.sync(3);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = server.metrics();
    server.quit();
    assert_eq!(metrics["underruns"], 0.0, "{name}: no gap: {metrics:?}");
    assert_eq!(metrics["lockstep_mismatches"], 0.0, "{name}: {metrics:?}");
    assert_eq!(metrics["cold_restarts"], 0.0, "{name}: {metrics:?}");
    assert_replay_equals_served(&log, &wav);
    let _ = std::fs::remove_dir_all(&dir);
    metrics
}

/// Checks that `expected` workers were lost to the hooks, and any more only to missed
/// deadlines a loaded machine caused (replaced like the ones we hit, and as hitless). A
/// hooked worker may itself be found late before it is found dead, so up to `expected`
/// deadline misses are the hooks' own.
fn assert_losses(metrics: &BTreeMap<String, f64>, expected: f64) {
    let extra = (metrics["deadline_misses"] - expected).max(0.0);
    assert_eq!(metrics["crash_count"], expected + extra, "{metrics:?}");
}

#[test]
fn a_worker_that_aborts() {
    let m = survive("hook-abort", &[("/debug/crash", vec![])], 1.0);
    assert_losses(&m, 1.0);
}

#[test]
fn a_worker_that_raises_sigsegv() {
    let m = survive("hook-segv", &[("/debug/segv", vec![])], 1.0);
    assert_losses(&m, 1.0);
}

#[test]
fn a_worker_whose_module_panics_in_process() {
    let m = survive("hook-dsp-panic", &[("/debug/dsp_panic", vec![])], 1.0);
    assert_losses(&m, 1.0);
}

#[test]
fn a_worker_that_hangs() {
    let m = survive("hook-hang", &[("/debug/hang", vec![])], 1.0);
    assert_losses(&m, 1.0);
    assert!(
        m["deadline_misses"] >= 1.0,
        "found by its missed deadline: {m:?}"
    );
}

#[test]
fn a_worker_slower_than_real_time() {
    // 5 ms of work for every 1.3 ms block.
    let m = survive(
        "hook-slow",
        &[("/debug/slow", vec![OscType::Int(5_000)])],
        1.0,
    );
    assert_losses(&m, 1.0);
    assert!(
        m["deadline_misses"] >= 1.0,
        "found by its missed deadline: {m:?}"
    );
}

/// A spare that dies at `point` of its join after the active worker aborts: the survivor
/// plays on alone, a second spare joins.
fn spare_dies(point: &str) -> BTreeMap<String, f64> {
    let hooks = [
        (
            "/debug/spare_dies",
            vec![OscType::String(point.to_string())],
        ),
        ("/debug/crash", vec![]),
    ];
    let m = survive(&format!("hook-spare-{point}"), &hooks, 2.0);
    assert_losses(&m, 2.0);
    m
}

#[test]
fn a_spare_that_dies_starting() {
    spare_dies("starting");
}

#[test]
fn a_spare_that_dies_mid_snapshot() {
    spare_dies("snapshot");
}

#[test]
fn a_spare_that_dies_catching_up() {
    spare_dies("catching-up");
}

#[test]
fn a_spare_that_dies_when_ready() {
    let m = spare_dies("ready");
    assert_eq!(m["replacements"], 2.0, "it had joined: {m:?}");
}
