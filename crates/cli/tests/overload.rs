//! End to end: overload protection. A patch whose instrument is asked for more voices
//! than the machine can render in a block period (2,400 held notes on a 4,096-voice pad:
//! several times a core's worth) must not leave the workers behind for good: the server
//! lowers its voice limit (a stamped `/voices/limit`, in the command log), the workers
//! catch up, a `/panic` sent afterwards silences everything in seconds, not minutes, and
//! the served recording equals the replay of the log but for the blocks it underran.
//!
//! Also: a pair restarted from the restore point into an overload (both workers hung
//! while a big chord was due) catches up, for the guard watches a pair catching up too.
//!
//! Real time at the helpers' depth (64-frame blocks, depth 24: 32 ms). It asserts that
//! the limit comes and that the server recovers, within tens of seconds, never how fast.

mod common;

use std::time::Duration;

use common::{assert_replay_of_patch_equals_served_but_for_underruns, get, timetag_in, Recorded};
use rosc::{OscBundle, OscMessage, OscPacket, OscType};

/// The 32-voice pad of `patches/poly.toml` with 4,096 voices, in a new directory.
fn big_pad(name: &str) -> std::path::PathBuf {
    let patch_dir = common::temp_dir(name);
    let patch = patch_dir.join("big.toml");
    let poly = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../patches/poly.toml"
    ))
    .unwrap();
    std::fs::write(&patch, poly.replace("voices = 32", "voices = 4096")).unwrap();
    patch
}

/// `/note/on` of note `i` of a chord spread over five octaves.
fn chord_note(i: i32) -> OscMessage {
    OscMessage {
        addr: "/note/on".into(),
        args: vec![
            OscType::Float(30.0 + (i % 60) as f32),
            OscType::Float(100.0),
            OscType::Int(i + 1),
        ],
    }
}

/// Stops the server, checks that its recording equals the replay of its command log on
/// `patch` but for the blocks it underran (as `metrics` counts them), and removes the
/// test's directories.
fn quit_and_check_the_replay(
    recorded: Recorded,
    patch: &std::path::Path,
    metrics: &std::collections::BTreeMap<String, f64>,
) {
    let Recorded {
        server, dir, wav, ..
    } = recorded;
    server.quit();
    assert_replay_of_patch_equals_served_but_for_underruns(
        &dir.join("commands.log"),
        &wav,
        Some(patch),
        metrics,
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(patch.parent().unwrap());
}

#[test]
fn too_many_voices_lower_the_voice_limit_and_the_server_catches_up() {
    let patch = big_pad("overload-patch");
    let patch_arg = patch.to_str().unwrap();
    let recorded = Recorded::start("overload", &["--patch", patch_arg]);
    let server = &recorded.server;

    for i in 0..2400 {
        let note = chord_note(i);
        server.send(&note.addr, note.args);
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
    quit_and_check_the_replay(recorded, &patch, &metrics);
}

/// Before: both workers hung (a machine stall) while a chord of 2,000 notes was due: the
/// pair restarted from the restore point replayed the chord, rendered it slower than real
/// time, and so never caught up with the output and never became ready; the guard
/// watched only ready workers, and never cut. Seen on a machine loaded by real-time
/// processes: 60 s of silence, 44,366 underruns, no limit. Now the guard watches the
/// pair catching up, its cut reaches them, and the server plays again.
///
/// On a quiet machine the restarted pair renders its first chord block while the output
/// still waits for it, becomes ready within that window and is watched either way: this
/// test then passes without the fix too. It keeps the path (restart into an overload,
/// cut, recovery, replay) covered; the window is missed only when the machine starves
/// the supervisor, which no test here can cause reliably.
#[test]
fn a_pair_restarted_into_an_overload_catches_up() {
    let patch = big_pad("overload-restart-patch");
    let recorded = Recorded::start("overload-restart", &["--patch", patch.to_str().unwrap()]);
    let server = &recorded.server;

    // 2,000 notes due in 1 s (in bundles that fit a datagram), then both workers
    // stopped before the workers render that far: nothing of the chord has been
    // measured when they are found hung, and the restore point precedes it.
    let due = timetag_in(Duration::from_secs(1));
    for first in (0..2000).step_by(100) {
        let bundle = OscPacket::Bundle(OscBundle {
            timetag: due,
            content: (first..first + 100)
                .map(|i| OscPacket::Message(chord_note(i)))
                .collect(),
        });
        server.send_raw(&rosc::encoder::encode(&bundle).unwrap());
    }
    server.sync(1);
    server.signal_both_workers("STOP");

    server.wait_until(Duration::from_secs(60), |m| {
        get(m, "cold_restarts") >= 1.0
            && get(m, "voice_limit_changes") >= 1.0
            && get(m, "spare_ready") == 1.0
    });
    server.send("/panic", vec![]);
    let silent = server.wait_until(Duration::from_secs(60), |m| {
        get(m, "voices_sounding") == 0.0 && get(m, "commands_pending") == 0.0
    });
    eprintln!(
        "voice limit {} after {} changes; {} underruns; {} cold restarts",
        get(&silent, "voice_limit"),
        get(&silent, "voice_limit_changes"),
        get(&silent, "underruns"),
        get(&silent, "cold_restarts"),
    );
    let metrics = server.metrics();
    quit_and_check_the_replay(recorded, &patch, &metrics);
}
