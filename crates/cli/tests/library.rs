//! The patch library end to end: a real server saves the patch it plays (with a change
//! made live) and loads it back, lists the library, refuses bad and unknown names while it
//! plays on, serves the demo by name; `chronus render` takes a name or a file; and a preset
//! loaded live replays from the command log to the very samples served.
//!
//! Real time: the servers play at depth 24 (32 ms); nothing depends on timing beyond
//! "eventually, within 30 s".

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{
    assert_replay_of_patch_equals_served_but_for_underruns, chronus, read_wav, temp_dir, Recorded,
    Server,
};
use rosc::{OscMessage, OscType};

fn text(s: &str) -> OscType {
    OscType::String(s.to_string())
}

/// The next reply to `address` (`/done <address>`, `/fail <address> …` or `<address>.reply`),
/// skipping others.
fn answer(server: &Server, address: &str) -> OscMessage {
    loop {
        let m = server
            .recv()
            .unwrap_or_else(|| panic!("an answer to {address}"));
        let about = matches!(m.args.first(), Some(OscType::String(a)) if a == address);
        if (m.addr == "/done" || m.addr == "/fail") && about || m.addr == format!("{address}.reply")
        {
            return m;
        }
    }
}

/// Sends `address name` and expects `/done address`.
fn expect_done(server: &Server, address: &str, name: &str) {
    server.send(address, vec![text(name)]);
    let m = answer(server, address);
    assert_eq!(m.addr, "/done", "{address} {name}: {m:?}");
}

/// Sends `address name` and returns the reason of its `/fail`.
fn expect_fail(server: &Server, address: &str, name: &str) -> String {
    server.send(address, vec![text(name)]);
    let m = answer(server, address);
    assert_eq!(m.addr, "/fail", "{address} {name}: {m:?}");
    match &m.args[1] {
        OscType::String(reason) => reason.clone(),
        other => panic!("{other:?}"),
    }
}

fn get(server: &Server, address: &str) -> f32 {
    server.send("/get", vec![text(address)]);
    let m = answer(server, "/get");
    match m.args.as_slice() {
        [OscType::String(a), OscType::Float(v)] if a == address => *v,
        other => panic!("/get {address}: {other:?}"),
    }
}

/// `/library/list`'s (name, kind) pairs.
fn list(server: &Server) -> Vec<(String, String)> {
    server.send("/library/list", vec![]);
    let m = answer(server, "/library/list");
    m.args
        .chunks(2)
        .map(|pair| match pair {
            [OscType::String(name), OscType::String(kind)] => (name.clone(), kind.clone()),
            other => panic!("{other:?}"),
        })
        .collect()
}

/// `chronus render` of `patch` for `seconds`, with `library`; the interleaved samples.
fn render(patch: &str, library: &Path, seconds: &str, out: &Path) -> Vec<f32> {
    let status = chronus()
        .args([
            "render",
            "--seconds",
            seconds,
            "--patch",
            patch,
            "--library",
        ])
        .arg(library)
        .arg("-o")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success(), "render --patch {patch}");
    read_wav(out).1
}

fn demo_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../patches/demo.toml")
}

/// A `/mod` change (and a tempo, a stopped track, a pattern edited live) survives a save
/// and a load (of another patch in between); the list
/// shows the saved patch before the presets; bad and unknown names get `/fail` with the
/// reason while the server plays on, every command accounted for; the saved patch renders
/// by name as by file.
#[test]
fn a_saved_patch_keeps_a_live_change_and_loads_back_while_bad_names_are_refused() {
    let dir = temp_dir("library-round-trip");
    let library = dir.join("patches");
    let server = Server::start(&[
        "--output",
        "null",
        "--patch",
        "demo",
        "--library",
        library.to_str().unwrap(),
    ]);
    server.send("/mod/bass.filter/cutoff", vec![OscType::Float(900.0)]);
    server.send("/mod/sweep/freq", vec![OscType::Float(0.25)]);
    server.send("/clock/bpm", vec![OscType::Float(132.0)]);
    server.send("/seq/chords/stop", vec![]);
    server.send("/seq/drums/pattern", vec![text("bd*4, hh*8")]);
    assert_eq!(answer(&server, "/seq/drums/pattern").addr, "/done");
    expect_done(&server, "/library/save", "mine");
    let saved = library.join("mine.toml");
    let saved_text = std::fs::read_to_string(&saved).unwrap();
    for wanted in [
        "cutoff = 900.0",
        "freq = 0.25",
        "bpm = 132.0",
        "playing = false",
        "pattern = \"bd*4, hh*8\"",
    ] {
        assert!(saved_text.contains(wanted), "{wanted}: {saved_text}");
    }

    // Another patch, then the saved one again: its values, not the demo's.
    expect_done(&server, "/library/load", "pad");
    assert_eq!(get(&server, "/mod/pad.filter/cutoff"), 1400.0);
    expect_done(&server, "/library/load", "mine");
    assert_eq!(get(&server, "/mod/bass.filter/cutoff"), 900.0);
    assert_eq!(get(&server, "/mod/sweep/freq"), 0.25);
    server.send("/patch/dump", vec![]);
    let dump = answer(&server, "/patch/dump");
    assert!(
        format!("{:?}", dump.args).contains("bpm = 132.0"),
        "{dump:?}"
    );

    let listed = list(&server);
    assert_eq!(listed[0], ("mine".to_string(), "saved".to_string()));
    let presets: Vec<&str> = listed[1..]
        .iter()
        .map(|(name, kind)| {
            assert_eq!(kind, "preset");
            name.as_str()
        })
        .collect();
    assert_eq!(
        presets,
        ["bass", "bell", "demo", "drone", "drums", "keys", "lead", "pad", "pluck"]
    );

    // Bad and unknown names: /fail with the reason; the sound plays on.
    let before = server.metrics();
    for (address, name, says) in [
        ("/library/save", "../evil", "not allowed"),
        ("/library/load", "../../etc/passwd", "not allowed"),
        ("/library/save", "two words", "not allowed"),
        ("/library/load", "nope", "no patch 'nope' in the library"),
    ] {
        let reason = expect_fail(&server, address, name);
        assert!(reason.contains(says), "{address} {name}: {reason}");
    }
    let unknown = expect_fail(&server, "/library/load", "missing");
    assert!(
        unknown.contains("mine") && unknown.contains("presets: bass, bell, demo"),
        "{unknown}"
    );
    assert!(!dir.join("evil.toml").exists() && !library.join("evil.toml").exists());
    server.sync(7);
    let after = server.wait_until(Duration::from_secs(30), |m| {
        m["blocks_played"] > before["blocks_played"] + 100.0
    });
    assert_eq!(
        after["commands_rejected"] - before["commands_rejected"],
        5.0
    );
    assert_eq!(after["commands_dropped"], 0.0, "{after:?}");
    assert_eq!(
        after["commands_received"],
        after["commands_accepted"] + after["commands_rejected"],
        "every command accepted or rejected: {after:?}"
    );
    assert_eq!(
        get(&server, "/mod/bass.filter/cutoff"),
        900.0,
        "the patch plays on"
    );
    server.quit();

    // The saved patch renders by name as by file; an unknown name says what there is.
    let by_name = render("mine", &library, "1", &dir.join("by-name.wav"));
    let by_file = render(
        saved.to_str().unwrap(),
        &library,
        "1",
        &dir.join("by-file.wav"),
    );
    assert_eq!(by_name.len(), by_file.len());
    assert!(by_name
        .iter()
        .zip(&by_file)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    assert!(by_name.iter().any(|x| x.abs() > 0.01), "it sounds");
    let unknown = chronus()
        .args(["render", "--seconds", "1", "--patch", "nope", "--library"])
        .arg(&library)
        .arg("-o")
        .arg(dir.join("nope.wav"))
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains("no patch 'nope'") && said.contains("mine") && said.contains("demo"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `serve --patch demo` plays at once (voices sound with no note sent); `render --patch
/// demo` renders the same patch as the file, not silent; `serve --patch` with an unknown
/// name exits non-zero saying what there is.
#[test]
fn the_demo_serves_and_renders_by_name_and_an_unknown_name_is_an_error() {
    let dir = temp_dir("library-demo");
    let library = dir.join("empty");
    let server = Server::start(&[
        "--output",
        "null",
        "--patch",
        "demo",
        "--library",
        library.to_str().unwrap(),
    ]);
    let playing = server.wait_until(Duration::from_secs(30), |m| m["voices_sounding"] > 0.0);
    assert_eq!(playing["commands_rejected"], 0.0);
    server.quit();

    let by_name = render("demo", &library, "4", &dir.join("demo.wav"));
    let by_file = render(
        demo_file().to_str().unwrap(),
        &library,
        "4",
        &dir.join("file.wav"),
    );
    assert!(by_name
        .iter()
        .zip(&by_file)
        .all(|(a, b)| a.to_bits() == b.to_bits()));
    let peak = by_name.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let rms =
        (by_name.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / by_name.len() as f64).sqrt();
    let rms_db = 20.0 * rms.log10();
    assert!(peak > 0.1 && peak < 1.0, "peak {peak}");
    assert!((-24.0..-8.0).contains(&rms_db), "RMS {rms_db:.1} dBFS");

    let unknown = chronus()
        .args(["serve", "--osc", "127.0.0.1:0", "--output", "null"])
        .args(["--patch", "no-such-patch", "--library"])
        .arg(&library)
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains("no patch 'no-such-patch'") && said.contains("presets: bass, bell, demo"),
        "{said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A preset loaded live is logged as the patch text it switched to: `render --replay` of
/// the log, which never reads the library, equals the served audio sample for sample.
#[test]
fn a_preset_loaded_live_replays_from_the_command_log_as_served() {
    let library = temp_dir("library-replay-lib");
    let Recorded {
        server,
        dir,
        wav,
        log,
    } = Recorded::start("library-replay", &["--library", library.to_str().unwrap()]);
    server.play_note(440.0);
    std::thread::sleep(Duration::from_millis(300));
    expect_done(&server, "/library/load", "bass");
    for (i, note) in [36, 43, 48, 41].into_iter().enumerate() {
        server.send(
            "/note/play",
            vec![
                text("bass"),
                OscType::Int(note),
                OscType::Int(100),
                OscType::Float(0.2),
            ],
        );
        server.sync(10 + i as i32);
        std::thread::sleep(Duration::from_millis(250));
    }
    expect_done(&server, "/library/load", "demo");
    std::thread::sleep(Duration::from_millis(1_500));
    server.sync(20);
    let metrics = server.metrics();
    server.quit();
    assert_eq!(metrics["commands_rejected"], 0.0, "{metrics:?}");
    assert_eq!(metrics["commands_dropped"], 0.0, "{metrics:?}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(logged.matches(" /patch/load ").count(), 2, "{logged}");
    assert!(!logged.contains("/library/"), "{logged}");
    let (left, _) = read_wav(&wav);
    assert!(left.iter().any(|x| x.abs() > 0.05), "it sounded");
    // A load compiles on the workers' render threads: on a loaded machine it may miss a
    // block, which the replay cannot know of.
    assert_replay_of_patch_equals_served_but_for_underruns(&log, &wav, None, &metrics);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&library);
}
