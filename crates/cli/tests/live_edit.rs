//! End to end: edit the patch live over OSC, glide a parameter with /ramp, query it with
//! /get and /params, and kill the active worker right after the commit. The spare joins
//! with the new patch (it travels in the snapshot), nothing is heard missing, and the
//! served WAV still equals the offline replay of the command log, patch switch included.

mod common;

use std::time::Duration;

use common::{
    assert_ends_at, assert_replay_equals_served, expect_done, signal, text_arg as s, Recorded,
};
use rosc::OscType;

#[test]
fn live_patch_edit_ramp_and_failover_replay_exactly() {
    let Recorded {
        server,
        dir,
        wav,
        log,
    } = Recorded::start("live-edit", &[]);
    server.send("/gate/adsr", vec![OscType::Int(1)]);
    server.send("/mod/filter/cutoff", vec![OscType::Float(5000.0)]);
    server.sync(1);
    std::thread::sleep(Duration::from_millis(300));

    // /get and /params see what was set.
    server.send("/get", vec![s("/mod/filter/cutoff")]);
    let get = server.recv().unwrap();
    assert_eq!(get.addr, "/get.reply");
    assert_eq!(
        get.args,
        vec![s("/mod/filter/cutoff"), OscType::Float(5000.0)]
    );
    server.send("/params", vec![s("sine")]);
    let params = server.recv().unwrap();
    assert_eq!(params.addr, "/params.reply");
    assert_eq!(params.args[0], s("sine"));
    assert_eq!(params.args[1], s("freq"));
    assert_eq!(params.args[2], s("Hz"));

    // A bad edit is refused and changes nothing.
    server.send("/patch/add", vec![s("x"), s("sinee")]);
    let replies = server.sync(2);
    assert!(replies.iter().any(|m| m.addr == "/fail"), "{replies:?}");
    server.send("/patch/revert", vec![]);
    expect_done(&server, "/patch/revert");

    // Insert a second gain stage between gain and out, commit.
    server.send("/patch/add", vec![s("boost"), s("gain")]);
    expect_done(&server, "/patch/add");
    server.send("/patch/disconnect", vec![s("gain"), s("mix")]);
    expect_done(&server, "/patch/disconnect");
    server.send("/patch/connect", vec![s("gain"), s("boost")]);
    expect_done(&server, "/patch/connect");
    server.send("/patch/connect", vec![s("boost"), s("mix:in1")]);
    expect_done(&server, "/patch/connect");
    server.send(
        "/patch/set",
        vec![s("boost"), s("gain"), OscType::Float(0.9)],
    );
    expect_done(&server, "/patch/set");
    server.send("/patch/commit", vec![]);
    expect_done(&server, "/patch/commit");
    // The new module is addressable at once; the old ones keep their values.
    server.send("/mod/boost/gain", vec![OscType::Float(0.8)]);
    server.send("/get", vec![s("/mod/filter/cutoff")]);
    assert_eq!(server.recv().unwrap().args[1], OscType::Float(5000.0));
    server.send("/patch/dump", vec![]);
    let dump = server.recv().unwrap();
    assert_eq!(dump.addr, "/patch/dump.reply");
    let OscType::String(toml) = &dump.args[0] else {
        panic!()
    };
    assert!(toml.contains("boost"), "{toml}");

    // A ramp inside the engine, and a kill in the middle of it; /get follows the ramp.
    let freq_now = || {
        server.send("/get", vec![s("/mod/sine/freq")]);
        let get = server.recv().unwrap();
        match get.args.as_slice() {
            [_, OscType::Float(value)] => *value,
            other => panic!("{other:?}"),
        }
    };
    let start = freq_now();
    assert!(start < 600.0, "{start}");
    server.send(
        "/ramp",
        vec![
            s("/mod/sine/freq"),
            OscType::Float(660.0),
            OscType::Float(0.6),
        ],
    );
    server.sync(3);
    std::thread::sleep(Duration::from_millis(150));
    let mid = freq_now();
    assert!(
        start < mid && mid < 660.0,
        "mid-ramp /get: {start} < {mid} < 660"
    );
    signal(server.active_pid(), "KILL");
    server.wait_until(Duration::from_secs(30), |m| {
        m["replacements"] == 1.0 && m["spare_ready"] == 1.0
    });
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(freq_now(), 660.0, "/get after the ramp");
    let metrics = server.metrics();
    server.quit();
    assert_eq!(metrics["underruns"], 0.0, "{metrics:?}");
    assert_eq!(metrics["lockstep_mismatches"], 0.0, "{metrics:?}");

    assert_ends_at(&wav, 660.0, "the ramp arrived");
    assert_replay_equals_served(&log, &wav);
    let _ = std::fs::remove_dir_all(&dir);
}
