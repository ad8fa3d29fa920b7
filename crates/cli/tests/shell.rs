//! `chronus shell` as a person types it: driven in tmux (`send-keys`, `capture-pane`)
//! through a short jam against a recording server, checked on the screen to the line, in
//! the audio (the chord's four fundamentals) and in the server's command log, which the
//! same set of lines from a pipe must reproduce.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tmux::{Tmux, PATIENCE};
use common::{read_wav, Recorded};

/// A patch to jam on: an instrument `keys` of pure sines (so the chord's fundamentals
/// stand alone in the spectrum), a `filter` (biquad) with a chorus and a reverb after it
/// (both dry, so the recording is the sines), a track `d1` that plays `keys`, at 60 bpm
/// (a beat is a second: the mid-ramp `get` has time).
const PATCH: &str = r#"
[clock]
bpm = 60

[[tracks]]
name = "d1"
instrument = "keys"
pattern = "~"

[[instruments]]
name = "keys"
voices = 16
modules = [
  { id = "note", type = "note" },
  { id = "osc", type = "sine", params = { freq = 0.0, gain = 0.2 } },
  { id = "env", type = "adsr", params = { attack = 5.0, decay = 10.0, sustain = 1.0, release = 30.0 } },
  { id = "vca", type = "vca" },
]
connections = [
  { from = "note:freq", to = "osc:fm" },
  { from = "osc:out", to = "env:in" },
  { from = "env:out", to = "vca:in" },
  { from = "note:velocity", to = "vca:cv" },
  { from = "vca:out", to = "out" },
]

[[modules]]
id = "filter"
type = "biquad"
params = { cutoff = 5000.0 }

[[modules]]
id = "chorus"
type = "chorus"
params = { mix = 0.0 }

[[modules]]
id = "reverb"
type = "reverb"
params = { mix = 0.0 }

[[modules]]
id = "out"
type = "output"

[[connections]]
from = "keys:out"
to = "filter:in"

[[connections]]
from = "filter:out"
to = "chorus:in"

[[connections]]
from = "chorus:left"
to = "reverb:left"

[[connections]]
from = "chorus:right"
to = "reverb:right"

[[connections]]
from = "reverb:left"
to = "out:left"

[[connections]]
from = "reverb:right"
to = "out:right"
"#;

/// The jam, as typed and as piped: (line, the answer the screen shows).
const JAM: &[(&str, &str)] = &[
    (
        "play Cmaj7 for 2 beats",
        "playing Cmaj7 (C4 E4 G4 B4) for 2 beats on keys",
    ),
    ("wait 2 beats", "waited 2 beats"),
    (
        "d1 \"c3 e3 g3 ~\"",
        "d1 plays \"c3 e3 g3 ~\" from the next bar",
    ),
    (
        "set filter.cutoff 800 over 4 beats",
        "filter.cutoff 5000 -> 800 Hz over 4 beats",
    ),
];

/// After the mid-ramp `get`: the ramp ends, then a phrase (on the settled value, so the
/// pipe's run gives the same command), a typo, and a line completed with Tab.
const JAM_AFTER_GET: &[(&str, &str)] = &[
    ("wait 5 beats", "waited 5 beats"),
    (
        "brighter",
        "brighter -> set filter.cutoff 1200 over 1 beat (filter.cutoff 800 -> 1200 Hz over 1 beat)",
    ),
    (
        "plya C4",
        "error: `plya` is not a command (`help` lists them) (did you mean `play`?)",
    ),
];

/// Types a line and waits for the prompt to come back after `answer`, which must be
/// the line just above the new prompt (and the line typed just above it).
fn say(tmux: &Tmux, line: &str, answer: &str) {
    tmux.type_keys(line, true);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let screen = tmux.lines();
        let n = screen.len();
        if n >= 3
            && screen[n - 1] == PROMPT.trim_end()
            && screen[n - 3] == format!("{PROMPT}{line}")
        {
            assert_eq!(
                screen[n - 2],
                answer,
                "the answer to {line:?}:\n{}",
                screen.join("\n")
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no answer to {line:?}:\n{}",
            screen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The prompt at the jam's tempo.
const PROMPT: &str = "chronus 60bpm> ";

/// The command log's engine commands without their frames (`@frame seq address args`
/// gives `seq address args`): what was played, not when.
fn commands(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .expect("a command log")
        .lines()
        .filter(|l| l.starts_with('@'))
        .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
        .collect()
}

/// The strongest frequency of `signal` between `low` and `high` Hz: the peak of an FFT
/// (Hann window, zero-padded to 2^20 points, 0.05 Hz a bin at 48 kHz).
fn peak_between(signal: &[f32], rate: f64, low: f64, high: f64) -> (f64, f64) {
    let size = 1 << 20;
    let n = signal.len().min(size);
    let mut buffer: Vec<rustfft::num_complex::Complex<f64>> = (0..size)
        .map(|i| {
            let x = if i < n {
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / (n - 1) as f64).cos();
                f64::from(signal[i]) * w
            } else {
                0.0
            };
            rustfft::num_complex::Complex::new(x, 0.0)
        })
        .collect();
    rustfft::FftPlanner::new()
        .plan_fft_forward(size)
        .process(&mut buffer);
    let bin = rate / size as f64;
    let (lo, hi) = ((low / bin) as usize, (high / bin) as usize);
    (lo..=hi)
        .map(|k| (k as f64 * bin, buffer[k].norm()))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("a band")
}

/// The jam in tmux, then the same lines from a pipe against a fresh server. Depth: the
/// real binary end to end (a terminal, the line editor, TCP OSC, both workers, the engine's
/// ramp, the sequencer), checked on the screen to the line, in the recording (FFT: the
/// chord's 4 fundamentals within 1 Hz) and in the command logs (the two runs send the
/// same engine commands). About 17 s (16.5 to 16.7 s in three runs at load 8 on 2 cores).
#[test]
fn a_jam_typed_in_tmux_sounds_and_reads_as_typed_and_a_pipe_sends_the_same() {
    if Command::new("tmux").arg("-V").output().is_err() {
        panic!("tmux is needed (scripts/setup.sh installs it)");
    }
    let patch_dir = common::temp_dir("shell-patch");
    let patch_path = patch_dir.join("jam.toml");
    std::fs::write(&patch_path, PATCH).unwrap();
    let typed = Recorded::start("shell-typed", &["--patch", patch_path.to_str().unwrap()]);
    let shell = format!(
        "env HOME={dir} XDG_STATE_HOME={dir} {bin} shell --osc {addr}",
        dir = typed.dir.display(),
        bin = env!("CARGO_BIN_EXE_chronus"),
        addr = typed.server.addr,
    );
    let tmux = Tmux::start(
        &format!("chronus-shell-test-{}", std::process::id()),
        100,
        30,
        &shell,
    );
    tmux.wait_for_line("the prompt", |l| l == PROMPT.trim_end());
    assert!(
        tmux.lines()[0].starts_with("chronus shell on 127.0.0.1:")
            && tmux.lines()[0].contains("instruments keys; tracks d1."),
        "the banner: {:?}",
        tmux.lines()
    );
    for (line, answer) in JAM {
        say(&tmux, line, answer);
    }
    // Mid-ramp (4 s from 5000 Hz to 800 Hz), the value lies strictly between.
    tmux.type_keys("get filter.cutoff", true);
    let got = tmux.wait_for_line("the value", |l| l.starts_with("filter.cutoff = "));
    let value: f64 = got
        .trim_start_matches("filter.cutoff = ")
        .trim_end_matches(" Hz")
        .parse()
        .unwrap_or_else(|_| panic!("a value: {got:?}"));
    assert!(800.0 < value && value < 5000.0, "mid-ramp: {value}");
    tmux.wait_for_line("the prompt", |l| l == PROMPT.trim_end());
    for (line, answer) in JAM_AFTER_GET {
        say(&tmux, line, answer);
    }
    // Tab completes a parameter from the server's table: `fil` has one continuation
    // (filter.cutoff, filter.gain, filter.mode, filter.q all start `filter.`).
    tmux.type_keys("set fil\t", false);
    tmux.wait_for_line("the completion", |l| {
        l == format!("{PROMPT}set filter.").as_str()
    });
    tmux.type_keys("q 2", true);
    tmux.wait_for_line("the answer", |l| l == "filter.q 0.707 -> 2");
    tmux.wait_for_line("the prompt", |l| l == PROMPT.trim_end());
    say(&tmux, "undo", "undone: filter.q back to 0.707");
    tmux.type_keys("quit", true);
    // The shell leaves, and with it the tmux session.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.session_alive() {
        assert!(Instant::now() < deadline, "the shell did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The lines typed are kept for the next session (XDG_STATE_HOME is the test's dir).
    let history =
        std::fs::read_to_string(typed.dir.join("chronus/shell_history")).expect("a history file");
    assert!(
        history.lines().any(|l| l == "play Cmaj7 for 2 beats"),
        "{history}"
    );
    let typed_log = typed.log.clone();
    let typed_wav = typed.wav.clone();
    let typed_dir = typed.dir.clone();
    typed.server.quit();

    // The audio: the chord's fundamentals, from its /note/play frame on for 1.6 s.
    let log = std::fs::read_to_string(&typed_log).unwrap();
    let chord_frame: usize = log
        .lines()
        .find(|l| l.contains("/note/play"))
        .and_then(|l| l.strip_prefix('@')?.split(' ').next()?.parse().ok())
        .expect("the chord in the command log");
    let (left, _) = read_wav(&typed_wav);
    let rate = 48_000.0;
    let window = &left[chord_frame + 9_600..(chord_frame + 86_400).min(left.len())];
    assert!(window.len() > 70_000, "the recording holds the chord");
    for expected in [261.626, 329.628, 391.995, 493.883] {
        let (freq, _) = peak_between(window, rate, expected - 5.0, expected + 5.0);
        assert!(
            (freq - expected).abs() <= 1.0,
            "a fundamental at {freq} Hz, not {expected} Hz"
        );
    }

    // The same lines from a pipe, against a fresh server: the same commands.
    let piped = Recorded::start("shell-piped", &["--patch", patch_path.to_str().unwrap()]);
    let mut script: Vec<&str> = JAM.iter().map(|(l, _)| *l).collect();
    script.push("get filter.cutoff");
    script.extend(
        JAM_AFTER_GET
            .iter()
            .map(|(l, _)| *l)
            .filter(|l| !l.starts_with("plya")),
    );
    script.push("set filter.q 2");
    script.push("undo");
    let mut child = common::chronus()
        .args(["shell", "--osc", &piped.server.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("# the jam, from a file\n\n{}\n", script.join("\n")).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the piped shell: {out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines.len(),
        script.len(),
        "one line per command, nothing else:\n{said}"
    );
    assert_eq!(lines[0], JAM[0].1);
    assert!(lines[4].starts_with("filter.cutoff = "), "{said}");
    let piped_log = piped.log.clone();
    let piped_dir = piped.dir.clone();
    piped.server.quit();
    assert_eq!(commands(&typed_log), commands(&piped_log));
    assert!(commands(&typed_log)
        .iter()
        .any(|c| c.contains("/ramp /mod/filter/cutoff 1200 1")));
    let _ = std::fs::remove_dir_all(typed_dir);
    let _ = std::fs::remove_dir_all(piped_dir);
    let _ = std::fs::remove_dir_all(patch_dir);
}

/// From a pipe, a line the server refuses (a pattern that does not parse) fails the run
/// at once (exit 1, the reason on stderr) unless `--keep-going`; `--json` answers one
/// object per line. Depth: the real binary against a real server; under 1 s.
#[test]
fn a_piped_shell_stops_at_the_first_error_and_json_answers_each_line() {
    let server = common::Server::start(&["--patch", "demo"]);
    let addr = server.addr.to_string();
    let run = |extra: &[&str], input: &str| {
        let mut child = common::chronus()
            .args(["shell", "--osc", &addr])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run(&[], "drums \"bd [sn\"\nbpm 100\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("chronus shell: line 1: drums \"bd [sn\": /seq/drums/pattern: "),
        "{err}"
    );
    let out = run(&["--keep-going", "--json"], "plya C4\nbpm 100\n");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines[0],
        serde_json::json!({"line": "plya C4", "ok": false, "error": "`plya` is not a command (`help` lists them)", "suggestion": "play"})
    );
    assert_eq!(
        lines[1],
        serde_json::json!({"line": "bpm 100", "ok": true, "ran": ["/clock/bpm 100"], "said": "tempo 120 -> 100 bpm, from the next beat"})
    );
    server.quit();
}

/// `chronus serve` on the fixed `addr` (so a second server can take the first one's place).
fn serve_on(addr: std::net::SocketAddr) -> common::Server {
    common::Server::start(&["--osc", &addr.to_string(), "--output", "null"])
}

/// `chronus shell --json <args>`, its standard streams piped to the test.
fn json_shell(args: &[&str]) -> std::process::Child {
    common::chronus()
        .args(["shell", "--json"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chronus shell starts")
}

/// Review 16, findings 5 and 11: a piped `--json --keep-going` shell outlives its server.
/// While the server is away a line fails saying so; once a new server listens on the same
/// address the next line reconnects (a `notice` object, then the line's answer, with the
/// tempo counted from the new server's); a line that is not UTF-8 fails alone. Depth: the
/// real binary against two real servers in turn; about 3 s (two server starts).
#[test]
fn a_piped_shell_reconnects_after_the_server_comes_back() {
    use std::io::{BufRead, BufReader};
    let first = serve_on("127.0.0.1:0".parse().unwrap());
    let addr = first.addr;
    let mut child = json_shell(&["--keep-going", "--osc", &addr.to_string()]);
    let mut stdin = child.stdin.take().unwrap();
    let mut answers = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || -> serde_json::Value {
        serde_json::from_str(&answers.next().expect("an answer").unwrap()).unwrap()
    };
    let mut write = |line: &[u8]| {
        stdin.write_all(line).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    };
    write(b"bpm 100");
    let answer = next();
    assert_eq!(answer["ok"], true, "{answer}");
    // A line that is not UTF-8: an error object for it, and the session goes on.
    write(b"play caf\xe9");
    let answer = next();
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("not UTF-8"),
        "{answer}"
    );
    first.quit();
    write(b"bpm 90");
    let answer = next();
    assert_eq!(answer["ok"], false, "{answer}");
    let error = answer["error"].as_str().unwrap();
    assert!(
        error.contains("gone") || error.contains("closed"),
        "{error}"
    );
    let second = serve_on(addr);
    let bpm = common::get(&second.metrics(), "clock_bpm");
    write(b"faster");
    assert_eq!(
        next(),
        serde_json::json!({ "notice": format!("reconnected to {addr}") })
    );
    let answer = next();
    assert_eq!(answer["ok"], true, "{answer}");
    // The tempo is the new server's (not the 100 this shell set on the old one).
    assert_eq!(
        answer["ran"],
        serde_json::json!([format!("/clock/bpm {}", bpm + 4.0)])
    );
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "two lines failed");
    second.quit();
}

/// Found by review: the server closes a TCP connection idle for its timeout (a minute),
/// and the shell reconnected quietly and forgot its undo: a player who paused for a
/// minute could not undo. The shell's connection holds a subscription, which the server
/// keeps open. Depth: a real server with a 1 s idle timeout; a pause of 3 s between a
/// change and its undo; about 4 s.
#[test]
fn a_pause_longer_than_the_idle_timeout_keeps_the_session() {
    use std::io::{BufRead, BufReader};
    let server = common::Server::start(&["--output", "null", "--tcp-idle-timeout", "1"]);
    let mut child = json_shell(&["--osc", &server.addr.to_string()]);
    let mut stdin = child.stdin.take().unwrap();
    let mut answers = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut say = |line: &str| -> serde_json::Value {
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
        serde_json::from_str(&answers.next().expect("an answer").unwrap()).unwrap()
    };
    let answer = say("set filter.cutoff 1000");
    assert_eq!(answer["ok"], true, "{answer}");
    std::thread::sleep(Duration::from_secs(3));
    // No `reconnected` notice first: the same session, which remembers the change.
    let answer = say("undo");
    assert_eq!(answer["ok"], true, "{answer}");
    assert!(
        answer["said"]
            .as_str()
            .unwrap()
            .starts_with("undone: filter.cutoff"),
        "{answer}"
    );
    let metrics = server.metrics();
    assert_eq!(common::get(&metrics, "tcp_idle_clients_closed"), 0.0);
    drop(child);
    server.quit();
}

/// Found by review: `--json` with no server printed its error as text on stderr and no
/// object, so a program reading objects got nothing. Now one object says why (exit 1).
/// No server: a port just freed.
#[test]
fn json_with_no_server_answers_one_object() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = json_shell(&["--osc", &format!("127.0.0.1:{port}")]);
    child.stdin.take().unwrap().write_all(b"bpm 120\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let object: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(object["ok"], false, "{object}");
    assert!(
        object["error"]
            .as_str()
            .unwrap()
            .contains("cannot reach the server"),
        "{object}"
    );
}
