//! Resume after the supervisor's own death (issue 8, finding 9): a server started with
//! `--state FILE` keeps its restore point on disk; after a `kill -9` of the whole server, a
//! new one started with `--resume FILE` and the same command log and WAV plays again at
//! once, with the music as it was (including what was set after the last state, from the
//! command log), and goes on in the same files, so the replay of the whole command log
//! still renders what was served, but for the silence while no server ran.
//!
//! Real time: `serve_command` plays at depth 24 (32 ms of control latency); nothing here
//! depends on timing beyond "eventually, within 20 s".

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{
    assert_ends_at, assert_replay_equals_served_but_for_restarts, chronus, read_wav, serve_command,
    temp_dir, Server,
};
use rosc::OscType;

/// A server's records in a fresh directory: its WAV, its command log, its state file.
struct Files {
    dir: std::path::PathBuf,
    wav: std::path::PathBuf,
    log: std::path::PathBuf,
    state: std::path::PathBuf,
}

impl Files {
    fn new(name: &str) -> Files {
        let dir = temp_dir(name);
        Files {
            wav: dir.join("served.wav"),
            log: dir.join("commands.log"),
            state: dir.join("chronus.state"),
            dir,
        }
    }

    /// `serve`'s arguments to write them all.
    fn args(wav: &std::path::Path, log: &std::path::Path, state: &std::path::Path) -> Vec<String> {
        vec![
            "--output".into(),
            format!("wav:{}", wav.display()),
            "--command-log".into(),
            log.display().to_string(),
            "--state".into(),
            state.display().to_string(),
        ]
    }
}

#[test]
fn kill_9_of_the_server_then_resume_brings_the_music_back_in_the_same_files() {
    let Files {
        dir,
        wav,
        log,
        state,
    } = Files::new("resume");
    let args = Files::args(&wav, &log, &state);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut first = Server::start(&args);
    first.play_note(330.0);
    // The state is refreshed every 2 s; this change comes after it, from the command log.
    std::thread::sleep(Duration::from_millis(2_500));
    first.send("/mod/sine/freq", vec![OscType::Float(495.0)]);
    first.sync(2);
    std::thread::sleep(Duration::from_millis(500));
    let before = first.metrics();
    assert!(before["state_saves"] >= 2.0, "{before:?}");
    first.child.kill().unwrap(); // SIGKILL: no shutdown at all
    first.child.wait().unwrap();

    let launched = Instant::now();
    let mut resumed = serve_command(&args);
    resumed.args(["--resume", state.to_str().unwrap()]);
    let second = Server::start_command(resumed);
    eprintln!(
        "resumed and playing with the spare ready {:?} after launch",
        launched.elapsed()
    );
    std::thread::sleep(Duration::from_millis(500));
    let metrics = second.metrics();
    second.quit();
    // The output plays (silence) from launch while the pair catches up.
    assert_eq!(metrics["lockstep_mismatches"], 0.0, "{metrics:?}");
    assert_ends_at(&wav, 495.0, "the last frequency set came back");
    // One stretch differs: the silence padded where no server played (up to the restore
    // point's age, a few seconds at most).
    let allowance = BTreeMap::from([("underruns".to_string(), 6.0 * 48_000.0 / 64.0)]);
    assert_replay_equals_served_but_for_restarts(&log, &wav, 1, &allowance);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn resume_from_a_file_that_is_not_a_state_is_a_clear_error() {
    let dir = temp_dir("resume-bad");
    let state = dir.join("not-a-state");
    std::fs::write(&state, "hello\n").unwrap();
    let out = chronus()
        .args([
            "serve",
            "--osc",
            "127.0.0.1:0",
            "--output",
            "null",
            "--resume",
        ])
        .arg(&state)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not a usable state file") && stderr.contains("not a chronus state file"),
        "{stderr}"
    );
    let missing = chronus()
        .args([
            "serve",
            "--osc",
            "127.0.0.1:0",
            "--output",
            "null",
            "--resume",
        ])
        .arg(dir.join("missing"))
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read the state file"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The systemd unit in `contrib/` passes `systemd-analyze verify` (where systemd is
/// installed), with its `ExecStart` pointed at the binary under test, whose command line
/// it must match.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../contrib/chronus.service"
    ))
    .unwrap();
    assert!(unit.contains("Restart=always") && unit.contains("--resume auto"));
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze is not installed: skipping the unit's verification");
        return;
    }
    let dir = temp_dir("systemd-unit");
    let path = dir.join("chronus.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/chronus", env!("CARGO_BIN_EXE_chronus")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The service's command line is one chronus accepts.
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/usr/local/bin/chronus "))
        .unwrap();
    let help = chronus()
        .args(exec.split_whitespace().take(1))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in exec.split_whitespace().filter(|w| w.starts_with("--")) {
        assert!(help.contains(flag), "chronus serve has no {flag}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Found by review: a second server given the files of one still running wrote into them,
/// and a state resumed with another server's command log mixed two sessions. Both are
/// refused with a clear error and a non-zero exit, and the running server's files stay
/// its own; a state file that cannot be written is an error at start-up.
#[test]
fn files_in_use_another_sessions_log_and_an_unwritable_state_are_refused() {
    let Files {
        dir,
        wav,
        log,
        state,
    } = Files::new("resume-refusals");
    let args = Files::args(&wav, &log, &state);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let running = Server::start(&args);
    running.play_note(330.0);
    let serve = |extra: &[&str]| {
        chronus()
            .args(["serve", "--osc", "127.0.0.1:0"])
            .args(extra)
            .output()
            .unwrap()
    };
    let second = serve(&[&args[..], &["--resume", state.to_str().unwrap()]].concat());
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    let before = running.metrics();
    running.quit();
    assert_eq!(before["lockstep_mismatches"], 0.0);
    let played = before["blocks_played"] * 64.0;
    let recorded = read_wav(&wav).0.len() as f64;
    assert!(
        recorded >= played,
        "the running server's recording is whole: {recorded} frames of {played} played"
    );

    // Another server's command log: its session is not the state's.
    let other_log = dir.join("other.log");
    std::fs::write(
        &other_log,
        "# chronus session 0000000000000001\n@0 1 /gate/adsr 1\n",
    )
    .unwrap();
    let mixed = serve(&[
        "--output",
        "null",
        "--command-log",
        other_log.to_str().unwrap(),
        "--resume",
        state.to_str().unwrap(),
    ]);
    assert!(!mixed.status.success());
    let stderr = String::from_utf8_lossy(&mixed.stderr);
    assert!(
        stderr.contains("not the one of the server that wrote the state"),
        "{stderr}"
    );

    // A state file where none can be written.
    let nowhere = serve(&["--output", "null", "--state", "/proc/chronus-no/state"]);
    assert!(!nowhere.status.success());
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("state file"));
    let _ = std::fs::remove_dir_all(&dir);
}
