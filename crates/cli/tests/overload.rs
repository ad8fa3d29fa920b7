//! End to end: overload protection. A patch whose instrument is asked for more voices
//! than the machine can render in a block period (2,400 held notes on a 4,096-voice pad:
//! several times a core's worth) must not leave the workers behind for good: the server
//! lowers its voice limit (a stamped `/voices/limit`, in the command log), the workers
//! catch up, a `/panic` sent afterwards silences everything in seconds, not minutes, and
//! the served recording equals the replay of the log but for the blocks it underran.
//!
//! Real time at the helpers' depth (64-frame blocks, depth 24: 32 ms). It asserts that
//! the limit comes and that the server recovers, within tens of seconds, never how fast.

mod common;

use std::time::Duration;

use common::{assert_replay_of_patch_equals_served_but_for_underruns, get, Recorded};
use rosc::OscType;

#[test]
fn too_many_voices_lower_the_voice_limit_and_the_server_catches_up() {
    let patch_dir = common::temp_dir("overload-patch");
    let patch = patch_dir.join("big.toml");
    let poly = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../patches/poly.toml"
    ))
    .unwrap();
    std::fs::write(&patch, poly.replace("voices = 32", "voices = 4096")).unwrap();
    let patch_arg = patch.to_str().unwrap();
    let recorded = Recorded::start("overload", &["--patch", patch_arg]);
    let server = &recorded.server;

    for i in 0..2400 {
        let note = 30.0 + (i % 60) as f32;
        server.send(
            "/note/on",
            vec![
                OscType::Float(note),
                OscType::Float(100.0),
                OscType::Int(i + 1),
            ],
        );
        if i % 100 == 99 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    server.wait_until(Duration::from_secs(60), |m| {
        get(m, "voice_limit_changes") >= 1.0
    });

    // Caught up: a /panic is heard and every voice ends within seconds.
    server.send("/panic", vec![]);
    let silent = server.wait_until(Duration::from_secs(60), |m| {
        get(m, "voices_sounding") == 0.0 && get(m, "commands_pending") == 0.0
    });
    eprintln!(
        "voice limit {} after {} changes; {} underruns; {} failovers",
        get(&silent, "voice_limit"),
        get(&silent, "voice_limit_changes"),
        get(&silent, "underruns"),
        get(&silent, "failover_count"),
    );
    let accounting = get(&silent, "commands_accepted")
        - get(&silent, "commands_applied")
        - get(&silent, "commands_dropped");
    assert_eq!(
        accounting, 0.0,
        "the server's own limits are not clients' commands"
    );

    // The first limit stamped is below the notes held (a later one may put it back, if
    // a loaded machine made a cut look futile).
    let log = std::fs::read_to_string(&recorded.log).unwrap();
    let first: f64 = log
        .lines()
        .find_map(|line| line.split("/voices/limit ").nth(1))
        .expect("the limit is in the command log")
        .trim()
        .parse()
        .unwrap();
    assert!((4.0..2400.0).contains(&first), "first limit {first}");
    let metrics = server.metrics();
    let Recorded {
        server, dir, wav, ..
    } = recorded;
    server.quit();
    assert_replay_of_patch_equals_served_but_for_underruns(
        &dir.join("commands.log"),
        &wav,
        Some(&patch),
        &metrics,
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(patch_dir);
}
