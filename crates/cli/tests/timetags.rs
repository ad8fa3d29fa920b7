//! Timetags exact to the frame: a python-osc client plays notes as timetagged bundles
//! 100 ms apart, each sent 60 ms ahead of its time (as a sequencer sends them), and every
//! note must land 4,800 frames after the one before (±1), on the frame the server stamped
//! it with (its command log), with none late.
//!
//! Each test plays about 1.5 s in real time at depth 24 (32 ms). 60 ms ahead is the depth,
//! the null sink's period of 8 blocks (10.7 ms: a command waits for the next period to be
//! stamped) and a margin for a loaded machine.

mod common;

use std::path::Path;

use common::{get, python, read_wav, Recorded};

/// A sine through an envelope with no attack and no release: silence (exactly 0.0)
/// between notes, and a note's first sample is not 0.0, so its onset is a frame.
const CLICK_PATCH: &str = r#"
[[modules]]
id = "tone"
type = "sine"
params = { freq = 1000.3, gain = 0.5 }

[[modules]]
id = "env"
type = "adsr"
params = { attack = 0.0, decay = 0.0, sustain = 1.0, release = 0.0 }

[[modules]]
id = "out"
type = "output"

[[connections]]
from = "tone"
to = "env"

[[connections]]
from = "env:out"
to = "out:left"

[[connections]]
from = "env:out"
to = "out:right"
"#;

/// Frames where a note starts: a sample not 0.0 after one that is.
fn onsets(left: &[f32]) -> Vec<u64> {
    (1..left.len())
        .filter(|&i| left[i] != 0.0 && left[i - 1] == 0.0)
        .map(|i| i as u64)
        .collect()
}

/// The frames the command log stamped `/gate/env 1` with.
fn stamped_note_ons(log: &Path) -> Vec<u64> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter(|l| l.ends_with(" /gate/env 1"))
        .map(|l| l.split_whitespace().next().unwrap()[1..].parse().unwrap())
        .collect()
}

fn notes_land_4800_frames_apart(name: &str, extra: &[&str]) {
    let dir = common::temp_dir(&format!("{name}-patch"));
    let patch = dir.join("click.toml");
    std::fs::write(&patch, CLICK_PATCH).unwrap();
    // No master DC blocker (its tail is not 0.0) and no limiter: what the patch plays.
    let mut args = vec![
        "--patch",
        patch.to_str().unwrap(),
        "--no-dc-blocker",
        "--no-limiter",
    ];
    args.extend_from_slice(extra);
    let run = Recorded::start(name, &args);
    let port = run.server.addr.port().to_string();
    let restarts_before = get(&run.server.metrics(), "clock_restarts");
    let client = python()
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/timed_bundles.py"))
        .args(["127.0.0.1", &port, "/gate/env", "10", "0.1", "0.06", "0.05"])
        .output()
        .unwrap();
    assert!(
        client.status.success(),
        "the python-osc client failed: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    run.server.sync(1);
    let metrics = run.server.metrics();
    assert_eq!(get(&metrics, "late_commands"), 0.0, "a bundle came late");
    // A paced sink that wakes later than it can absorb (a period, at most half the depth)
    // starts its schedule again from then: its output really slips, as a device's would at
    // an xrun, and one spacing across the slip differs. Such slips are counted; a loaded
    // 2-core machine makes them now and then at a period of one block (1.3 ms).
    let slips = (get(&metrics, "clock_restarts") - restarts_before) as usize;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (wav, log) = (run.wav.clone(), run.log.clone());
    run.server.quit();

    let stamped = stamped_note_ons(&log);
    assert_eq!(stamped.len(), 10, "notes in the command log: {stamped:?}");
    let spacing: Vec<i64> = stamped
        .windows(2)
        .map(|w| w[1] as i64 - w[0] as i64)
        .collect();
    println!("{name}: stamped at {stamped:?}, spacing {spacing:?}, {slips} clock restarts");
    let off = spacing.iter().filter(|d| (*d - 4_800).abs() > 1).count();
    assert!(
        off <= slips,
        "notes 100 ms apart were stamped {spacing:?} frames apart, with {slips} clock restarts"
    );
    let (left, _) = read_wav(&wav);
    assert_eq!(
        onsets(&left),
        stamped,
        "the notes did not sound on the frames they were stamped with"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(log.parent().unwrap());
}

#[test]
fn bundles_100_ms_apart_land_4800_frames_apart_on_the_null_sink() {
    notes_land_4800_frames_apart("timetags-null", &[]);
}

#[test]
fn bundles_100_ms_apart_land_4800_frames_apart_with_a_period_of_one_block() {
    notes_land_4800_frames_apart("timetags-one-block", &["--device-buffer", "64"]);
}
