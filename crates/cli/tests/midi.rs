//! `chronus midi` end to end, through a real JACK server: the test starts its own dummy
//! JACK server, `chronus serve --output wav:… --command-log …` (the default patch, whose
//! instrument `keys` plays the notes), `chronus midi --port midi_test` on that JACK server,
//! and a small JACK client of its own whose MIDI output port writes a phrase at chosen
//! frames: four notes 250 ms (12,000 frames) apart with velocities 40, 70, 100 and 127, then
//! a held note bent up 2 semitones (full pitch bend at the default range of 2).
//!
//! From the server's command log (the frames each command was stamped with, exact) the note
//! ons keep the sent spacing: each within ±1 frame of its place on the line through them,
//! whose rate (the two clocks', the test's JACK server's and the server's) is within 200
//! ppm of the sent one (a paced sink's clock restart, counted by the server, excuses one
//! note each, as in `timetags.rs`) and carry the sent velocities, and the
//! bend lands 500 ms after its note (±2 frames: each end's rounding and the clocks' wander); from the recording, the held note's dominant frequency
//! after the bend is 2^(2/12) times the one before (within 1 %).
//!
//! Real-time depth: the server runs at depth 24 (64-frame blocks, 32 ms, `serve_command`'s
//! default) on the WAV sink (a period of 8 blocks, 10.7 ms), so `chronus midi` would add
//! its control latency, its period and 2 ms: 44.7 ms; the test asks `--latency 200`, for
//! a client at normal priority on a loaded machine (under `stress-ng --cpu 2` the first
//! note once reached the server 4 ms after its frame was stamped: a late command, 203
//! frames off). The phrase
//! plays about 3.5 s in real time. The JACK server runs with a period of 1024 frames (as in
//! `jack.rs`, for a loaded 2-core machine).
//!
//! Also: with no JACK server (and no ALSA sequencer, as in CI containers, or no ALSA input)
//! `chronus midi` says so and exits non-zero; `--list` says what there is.
//!
//! libjack reads `JACK_DEFAULT_SERVER` at each client open, so the phrase test sets it once,
//! before its client opens (the other test opens no JACK client in this process, and names
//! its own server for the processes it starts).

mod common;

use common::jackd::Jackd;

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{dominant_frequency, get, read_wav, signal, Recorded};

/// 250 ms at 48 kHz.
const SPACING: u32 = 12_000;

/// Where the controller part starts: after the bent note's release.
const SWEEP: u32 = 4 * SPACING + 96_000;
/// Frames between the steps of the controller 74 sweep.
const SWEEP_STEP: u32 = 3_000;
/// Where controller 1 moves, a second after the test's `/midi/learn`.
const LEARNED: u32 = SWEEP + 120_000;

/// The phrase: (frame from its start, MIDI bytes). Note ons on channel 1, then the held
/// note (A4) bent full up half a second after it starts, released a second later; then a
/// held A3 whose cutoff controller 74 sweeps from 0 to 127 in eight steps (mapped by the
/// patch's `[midi]`), controller 1 moved once (mapped by `/midi/learn`), and a C5 still
/// held when the client is stopped.
const PHRASE: [(u32, [u8; 3]); 25] = [
    (0, [0x90, 60, 40]),
    (6_000, [0x80, 60, 0]),
    (SPACING, [0x90, 62, 70]),
    (SPACING + 6_000, [0x80, 62, 0]),
    (2 * SPACING, [0x90, 64, 100]),
    (2 * SPACING + 6_000, [0x80, 64, 0]),
    (3 * SPACING, [0x90, 65, 127]),
    (3 * SPACING + 6_000, [0x80, 65, 0]),
    (4 * SPACING, [0x90, 69, 100]),
    (4 * SPACING + 24_000, [0xE0, 0x7F, 0x7F]),
    (4 * SPACING + 72_000, [0x80, 69, 0]),
    (4 * SPACING + 72_001, [0xE0, 0x00, 0x40]),
    (SWEEP, [0xB0, 74, 0]),
    (SWEEP + 1, [0x90, 57, 100]),
    (SWEEP + 24_000, [0xB0, 74, 16]),
    (SWEEP + 24_000 + SWEEP_STEP, [0xB0, 74, 32]),
    (SWEEP + 24_000 + 2 * SWEEP_STEP, [0xB0, 74, 48]),
    (SWEEP + 24_000 + 3 * SWEEP_STEP, [0xB0, 74, 64]),
    (SWEEP + 24_000 + 4 * SWEEP_STEP, [0xB0, 74, 80]),
    (SWEEP + 24_000 + 5 * SWEEP_STEP, [0xB0, 74, 96]),
    (SWEEP + 24_000 + 6 * SWEEP_STEP, [0xB0, 74, 112]),
    (SWEEP + 24_000 + 7 * SWEEP_STEP, [0xB0, 74, 127]),
    (SWEEP + 72_000, [0x80, 57, 0]),
    (LEARNED, [0xB0, 1, 127]),
    // Held when `chronus midi` is stopped: it lets go of it.
    (LEARNED + 4_800, [0x90, 72, 90]),
];

/// Index in [`PHRASE`] of the event after which the test sends `/midi/learn`.
const LEARN_AFTER: usize = 22;

/// The default patch with controller 74 mapped to the cutoff of every voice of `keys`.
fn patch_with_a_mapping() -> String {
    let default = chronus_dsp::PatchDesc::default_patch().to_toml_string();
    format!(
        "{default}\n[midi]\ncc74 = {{ param = \"keys.filter.cutoff\", min = 200.0, max = 8000.0 }}\n"
    )
}

/// The RMS frequency (Hz) of `x`: by Parseval, the square root of the power-weighted mean
/// of the squared frequencies of its spectrum, from the RMS of its first difference
/// against its own (exact for a sine, higher the brighter the sound).
fn rms_frequency(x: &[f32]) -> f64 {
    let rms = |v: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = v.fold((0.0, 0usize), |(s, n), y| (s + y * y, n + 1));
        (sum / n.max(1) as f64).sqrt()
    };
    let level = rms(&mut x.iter().map(|&y| f64::from(y)));
    let slope = rms(&mut x.windows(2).map(|w| f64::from(w[1] - w[0])));
    // A difference of a sine at f has RMS 2 sin(pi f / sr) times its own.
    let ratio = (slope / level / 2.0).min(1.0);
    48_000.0 / std::f64::consts::PI * ratio.asin()
}

/// The phrase's player: writes each event of [`PHRASE`] in the period that holds its frame.
struct Player {
    out: jack::Port<jack::MidiOut>,
    /// The JACK frame the phrase starts at; 0 until armed.
    start: Arc<AtomicU32>,
    /// Events written so far.
    written: Arc<AtomicUsize>,
}

impl jack::ProcessHandler for Player {
    fn process(&mut self, _: &jack::Client, scope: &jack::ProcessScope) -> jack::Control {
        let mut writer = self.out.writer(scope);
        let start = self.start.load(Ordering::Acquire);
        if start == 0 {
            return jack::Control::Continue;
        }
        let first = scope.last_frame_time();
        let frames = scope.n_frames();
        let mut next = self.written.load(Ordering::Relaxed);
        while let Some((at, bytes)) = PHRASE.get(next) {
            let offset = start.wrapping_add(*at).wrapping_sub(first);
            // Due before this period (armed late): at its start. Due later: not yet.
            let offset = if offset > u32::MAX / 2 { 0 } else { offset };
            if offset >= frames {
                break;
            }
            writer
                .write(&jack::RawMidi {
                    time: offset,
                    bytes: &bytes[..],
                })
                .expect("the MIDI event fits");
            next += 1;
        }
        self.written.store(next, Ordering::Relaxed);
        jack::Control::Continue
    }
}

/// The commands the log stamped: (frame, address, arguments). A line is `@<frame> <n>
/// <address> <arguments…>`, the instrument named (`keys`) even where the client left it out.
fn stamped(log: &Path) -> Vec<(u64, String, Vec<String>)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let frame = words.next()?.strip_prefix('@')?.parse().ok()?;
            words.next()?;
            let address = words.next()?.to_string();
            Some((frame, address, words.map(str::to_string).collect()))
        })
        .collect()
}

#[test]
fn a_jack_midi_phrase_keeps_its_spacing_velocities_and_bend() {
    let name = format!("chronus-midi-test-{}", std::process::id());
    // Before any JACK client of this process opens.
    std::env::set_var("JACK_DEFAULT_SERVER", &name);
    let dir = common::temp_dir("midi-patch");
    let patch = dir.join("mapped.toml");
    std::fs::write(&patch, patch_with_a_mapping()).unwrap();
    let run = Recorded::start("midi", &["--patch", patch.to_str().unwrap()]);
    let _jackd = Jackd::start(&name, &run.dir.join("jackd.log"));

    // The test's MIDI source.
    let (client, _) = jack::Client::new("midi_test", jack::ClientOptions::NO_START_SERVER)
        .expect("the test's JACK client opens");
    let out = client
        .register_port("out", jack::MidiOut::default())
        .unwrap();
    let start = Arc::new(AtomicU32::new(0));
    let written = Arc::new(AtomicUsize::new(0));
    let player = client
        .activate_async(
            (),
            Player {
                out,
                start: Arc::clone(&start),
                written: Arc::clone(&written),
            },
        )
        .unwrap();

    // `chronus midi`, connected to it by `--port`.
    let midi_log = run.dir.join("midi.stderr");
    let mut midi = common::chronus()
        .args([
            "midi",
            "--osc",
            &run.server.addr.to_string(),
            "--port",
            "midi_test",
            "--latency",
            "200",
        ])
        .env("JACK_DEFAULT_SERVER", &name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&midi_log).unwrap())
        .spawn()
        .expect("chronus midi starts");
    let started = Instant::now();
    let ours = player.as_client().port_by_name("midi_test:out").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ours.connected_count().unwrap_or(0) == 0 {
        assert!(
            Instant::now() < deadline && midi.try_wait().unwrap().is_none(),
            "chronus midi did not connect to midi_test:out: {}",
            std::fs::read_to_string(&midi_log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The server's clock model narrows its loop over its first 4 s of audio, and `chronus
    // midi` fits its line through JACK's periods over up to 10 s (either moves by a frame
    // or two meanwhile on a loaded machine): the phrase is played 5 s after both started.
    std::thread::sleep(
        (started + Duration::from_secs(5)).saturating_duration_since(Instant::now()),
    );
    // Play: the phrase starts half a second from now.
    let restarts_before = get(&run.server.metrics(), "clock_restarts");
    let now = player.as_client().frame_time();
    start.store(now.wrapping_add(24_000).max(1), Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut learning = false;
    while written.load(Ordering::Relaxed) < PHRASE.len() {
        assert!(Instant::now() < deadline, "the phrase was not played");
        if !learning && written.load(Ordering::Relaxed) > LEARN_AFTER {
            // A second before controller 1 moves (and after every controller 74 move).
            run.server.send(
                "/midi/learn",
                vec![rosc::OscType::String("/mod/keys.filter/resonance".into())],
            );
            learning = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    // The last events' latency, then the commands are surely stamped.
    std::thread::sleep(Duration::from_millis(500));
    let replies = run.server.sync(1);
    assert!(
        replies.iter().any(|m| m.addr == "/done"
            && m.args
                == [
                    rosc::OscType::String("/midi/learn".into()),
                    rosc::OscType::String("/mod/keys.filter/resonance".into()),
                    rosc::OscType::Int(1),
                    rosc::OscType::Int(1),
                ]),
        "the learner is told what it learned: {replies:?}"
    );
    let restarts = (get(&run.server.metrics(), "clock_restarts") - restarts_before) as usize;
    let late = get(&run.server.metrics(), "late_commands");
    assert_eq!(
        late, 0.0,
        "a command reached the server after its frame: `chronus midi` was held up longer \
         than its 200 ms latency"
    );

    // SIGTERM ends `chronus midi` cleanly.
    signal(midi.id(), "TERM");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = midi.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "chronus midi did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let midi_said = std::fs::read_to_string(&midi_log).unwrap();
    println!("chronus midi said:\n{midi_said}");
    assert!(status.success(), "chronus midi exited with {status}");
    assert!(midi_said.contains("latency "), "{midi_said}");
    assert!(!midi_said.contains("refused"), "{midi_said}");
    drop(player);

    let (wav, log, dir) = (run.wav.clone(), run.log.clone(), run.dir.clone());
    run.server.quit();

    let commands = stamped(&log);
    let ons: Vec<&(u64, String, Vec<String>)> = commands
        .iter()
        .filter(|(_, a, _)| a == "/note/on")
        .collect();
    assert_eq!(ons.len(), 7, "note ons in the command log: {commands:?}");
    // The velocities sent (the argument after the instrument and the note number).
    let velocities: Vec<&str> = ons.iter().map(|(_, _, args)| args[2].as_str()).collect();
    assert_eq!(
        velocities,
        ["40", "70", "100", "127", "100", "100", "90"],
        "{ons:?}"
    );
    // The C5 held when the client stopped: let go of, by its id.
    let (_, _, held) = ons[6];
    assert!(
        commands
            .iter()
            .any(|(_, a, args)| a == "/note/off" && args[1] == "72" && args[2] == held[3]),
        "the note held at the stop is released: {commands:?}"
    );
    let frames: Vec<u64> = ons.iter().take(5).map(|(f, _, _)| *f).collect();
    let spacing: Vec<i64> = frames
        .windows(2)
        .map(|w| w[1] as i64 - w[0] as i64)
        .collect();
    // Two clocks: the test's JACK frames and the server's. Between them a constant rate
    // (each side's estimate of it, over the seconds it has seen) moves a spacing of 12,000
    // by up to a frame (83 ppm), the same way for every note. So: each onset lies within
    // a frame of its place on the line fitted through them (the sent timing on the
    // server's clock), and that line's rate is within 200 ppm of the sent one.
    let n = frames.len() as f64;
    let sent: Vec<f64> = (0..frames.len())
        .map(|k| f64::from(SPACING) * k as f64)
        .collect();
    let got: Vec<f64> = frames.iter().map(|&f| (f - frames[0]) as f64).collect();
    let (mean_sent, mean_got) = (sent.iter().sum::<f64>() / n, got.iter().sum::<f64>() / n);
    let rate = sent
        .iter()
        .zip(&got)
        .map(|(x, y)| (x - mean_sent) * (y - mean_got))
        .sum::<f64>()
        / sent.iter().map(|x| (x - mean_sent).powi(2)).sum::<f64>();
    let residuals: Vec<f64> = sent
        .iter()
        .zip(&got)
        .map(|(x, y)| y - (mean_got + rate * (x - mean_sent)))
        .collect();
    println!(
        "note ons stamped at {frames:?}, spacing {spacing:?}, {restarts} clock restarts, \
         the clocks' rate {:+.0} ppm, each onset off its place by {residuals:.2?}",
        (rate - 1.0) * 1e6
    );
    let off = residuals.iter().filter(|r| r.abs() > 1.0).count();
    assert!(
        off <= restarts,
        "notes 12,000 frames apart were stamped {spacing:?} frames apart, off their places \
         by {residuals:.2?} ({restarts} clock restarts)"
    );
    assert!(
        restarts > 0 || (rate - 1.0).abs() < 200e-6,
        "the two clocks differ by {:.0} ppm",
        (rate - 1.0) * 1e6
    );

    // The bend: stamped 24,000 frames after the held note (±2), and audible. Each of the
    // two stamped frames lies within half a frame of its exact place (±1 between them),
    // and the two clock models (`chronus midi`'s JACK line, the server's loop) wander by
    // up to a frame over the half second between them as the onsets show theirs doing:
    // 23,998 for 23,999.6 was seen in CI.
    let bends: Vec<&(u64, String, Vec<String>)> = commands
        .iter()
        .filter(|(_, a, _)| a == "/note/bend")
        .collect();
    // (The centre bend after the note off reaches no held note: nothing sent.)
    assert_eq!(bends.len(), 1, "bends in the command log: {commands:?}");
    let (held, bend) = (frames[4], bends[0].0);
    assert!(
        (bend as f64 - held as f64 - 24_000.0 * rate).abs() <= 2.0 + restarts as f64 * 2_000.0,
        "the bend was stamped {} frames after its note",
        bend as i64 - held as i64
    );
    let (left, _) = read_wav(&wav);
    let window = |from: u64| &left[from as usize..from as usize + 7_200];
    let before = dominant_frequency(window(bend - 9_600), 48_000.0);
    let after = dominant_frequency(window(bend + 4_800), 48_000.0);
    let ratio = after / before;
    let expected = 2f64.powf(2.0 / 12.0);
    println!("held note: {before} Hz, bent: {after} Hz, ratio {ratio:.4} (expected {expected:.4})");
    assert!(
        (ratio / expected - 1.0).abs() < 0.01,
        "the bend is not 2 semitones: {before} Hz -> {after} Hz"
    );

    // The sweep: nine /mod lines, from 200 Hz to 8 kHz, each on its controller's frame
    // (the steps 3,000 frames apart, ±1), and the held note brighter after it.
    let cutoffs: Vec<(u64, f64)> = commands
        .iter()
        .filter(|(_, a, _)| a == "/mod/keys.filter/cutoff")
        .map(|(f, _, args)| (*f, args[0].parse().unwrap()))
        .collect();
    assert_eq!(cutoffs.len(), 9, "cutoffs in the command log: {commands:?}");
    assert_eq!(cutoffs[0].1, 200.0, "{cutoffs:?}");
    assert_eq!(cutoffs[8].1, 8_000.0, "{cutoffs:?}");
    assert!(cutoffs.windows(2).all(|w| w[1].1 > w[0].1), "{cutoffs:?}");
    let steps: Vec<i64> = cutoffs[1..]
        .windows(2)
        .map(|w| w[1].0 as i64 - w[0].0 as i64)
        .collect();
    let off = steps
        .iter()
        .filter(|d| (**d - i64::from(SWEEP_STEP)).abs() > 1)
        .count();
    assert!(
        off <= restarts,
        "the sweep's steps were stamped {steps:?} apart"
    );
    let held = ons[5].0 as usize;
    let (dark, bright) = (
        rms_frequency(&left[held + 4_800..held + 14_400]),
        rms_frequency(&left[cutoffs[8].0 as usize + 4_800..cutoffs[8].0 as usize + 14_400]),
    );
    println!("A3 at a cutoff of 200 Hz: {dark:.0} Hz RMS; at 8 kHz: {bright:.0} Hz RMS");
    assert!(
        bright > 3.0 * dark,
        "the sweep brightens the note: {dark} -> {bright} Hz"
    );

    // The learned mapping: a patch switch that maps controller 1 of channel 1 (in the
    // log, so a replay and a resumed server keep it), then the controller's move, at the
    // top of resonance's range.
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.lines().any(|l| l.contains("/patch/load")
            && l.contains("[midi.cc1]")
            && l.contains("keys.filter.resonance")),
        "{logged}"
    );
    let resonance: Vec<f64> = commands
        .iter()
        .filter(|(_, a, _)| a == "/mod/keys.filter/resonance")
        .map(|(_, _, args)| args[0].parse().unwrap())
        .collect();
    assert_eq!(resonance.len(), 1, "{commands:?}");
    assert!((resonance[0] - 1.2).abs() < 1e-4, "{resonance:?}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(common::temp_dir("midi-patch"));
}

#[test]
fn with_no_midi_to_read_it_says_so_and_fails() {
    let server = common::Server::start(&[]);
    let no_server = "chronus-midi-test-no-such-server";
    let output = common::chronus()
        .args(["midi", "--osc", &server.addr.to_string()])
        .env("JACK_DEFAULT_SERVER", no_server)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains("no MIDI to read"), "{said}");
    assert!(said.contains("no JACK server running"), "{said}");
    if !Path::new("/dev/snd/seq").exists() {
        assert!(
            said.contains("no ALSA sequencer here (/dev/snd/seq): JACK MIDI only"),
            "{said}"
        );
    }
    let listed = common::chronus()
        .args(["midi", "--list"])
        .env("JACK_DEFAULT_SERVER", no_server)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success());
    assert!(text.contains("ALSA MIDI inputs:"), "{text}");
    assert!(
        text.contains("JACK MIDI outputs: no JACK server running"),
        "{text}"
    );
    server.quit();
}

/// The server's side alone, over plain OSC (what `chronus midi` sends): a mapped
/// controller becomes its `/mod` in the command log, an unmapped one nothing; `/midi/learn`
/// maps the next one moved and a second learn replaces the first (`/fail` to the first
/// learner); `/midi/forget` removes a mapping, and a second forget of it gets `/fail`.
/// Real time: `Recorded` plays at depth 24 (32 ms); nothing depends on timing.
#[test]
fn controllers_map_learn_and_forget_over_plain_osc() {
    let dir = common::temp_dir("midi-osc-patch");
    let patch = dir.join("mapped.toml");
    std::fs::write(&patch, patch_with_a_mapping()).unwrap();
    let run = Recorded::start("midi-osc", &["--patch", patch.to_str().unwrap()]);
    let s = |text: &str| rosc::OscType::String(text.to_string());
    let cc = |channel: i32, controller: i32, value: i32| {
        vec![
            rosc::OscType::Int(channel),
            rosc::OscType::Int(controller),
            rosc::OscType::Int(value),
        ]
    };
    run.server.send("/midi/cc", cc(3, 74, 127));
    run.server.send("/midi/cc", cc(1, 7, 64));
    run.server.send("/midi/learn", vec![s("/mod/sine/freq")]);
    run.server
        .send("/midi/learn", vec![s("/mod/keys.filter/resonance")]);
    run.server.send("/midi/cc", cc(2, 7, 0));
    run.server.send("/midi/cc", cc(2, 7, 127));
    run.server.send("/midi/cc", cc(3, 7, 127));
    run.server
        .send("/midi/forget", vec![rosc::OscType::Int(74)]);
    run.server
        .send("/midi/forget", vec![rosc::OscType::Int(74)]);
    run.server.send("/midi/cc", cc(3, 74, 0));
    let replies = run.server.sync(5);
    let fails: Vec<String> = replies
        .iter()
        .filter(|m| m.addr == "/fail")
        .map(|m| format!("{:?}", m.args))
        .collect();
    assert_eq!(fails.len(), 2, "{replies:?}");
    assert!(fails[0].contains("/mod/sine/freq: replaced by a later /midi/learn"));
    assert!(fails[1].contains("controller 74 is mapped to nothing"));
    assert!(replies.iter().any(|m| m.addr == "/done"
        && m.args
            == [
                s("/midi/learn"),
                s("/mod/keys.filter/resonance"),
                rosc::OscType::Int(2),
                rosc::OscType::Int(7)
            ]));
    assert!(replies
        .iter()
        .any(|m| m.addr == "/done" && m.args == [s("/midi/forget")]));
    // Every command accounted for: a learn and a forget are applied as the switches that
    // carry them (before: answered as well, so the engine applied more than was accepted).
    let metrics = run
        .server
        .wait_until(Duration::from_secs(10), |m| m["commands_pending"] == 0.0);
    common::assert_metrics(
        &metrics,
        &[
            (
                "commands_received",
                metrics["commands_accepted"] + metrics["commands_rejected"],
            ),
            (
                "commands_accepted",
                metrics["commands_applied"] + metrics["commands_dropped"],
            ),
        ],
    );
    let (log, dir2) = (run.log.clone(), run.dir.clone());
    run.server.quit();
    let mods: Vec<(String, String)> = stamped(&log)
        .into_iter()
        .filter(|(_, a, _)| a.starts_with("/mod/"))
        .map(|(_, a, args)| (a, args.join(" ")))
        .collect();
    // cc74 of any channel at 127: 8 kHz; cc7 before the learn: nothing; the learned cc7
    // of channel 2 at 0 and 127 (channel 3's move is not its channel); after the forget,
    // cc74 nothing.
    let expected = [
        ("/mod/keys.filter/cutoff", "8000"),
        ("/mod/keys.filter/resonance", "0"),
        ("/mod/keys.filter/resonance", "1.2"),
    ];
    assert_eq!(mods.len(), expected.len(), "{mods:?}");
    for ((address, value), (want, want_value)) in mods.iter().zip(expected) {
        assert_eq!(address, want);
        let (got, want_value): (f64, f64) = (value.parse().unwrap(), want_value.parse().unwrap());
        assert!((got - want_value).abs() < 1e-4, "{mods:?}");
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    let switches: Vec<&str> = logged
        .lines()
        .filter(|l| l.contains("/patch/load"))
        .collect();
    assert_eq!(switches.len(), 2, "the learn and the forget: {logged}");
    assert!(switches[0].contains("[midi.cc7]") && switches[0].contains("[midi.cc74]"));
    assert!(switches[1].contains("[midi.cc7]") && !switches[1].contains("[midi.cc74]"));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}
