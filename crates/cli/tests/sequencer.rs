//! The sequencer end to end: a real server plays `patches/groove.toml` (drums, bass and
//! chords on three tracks) while a client changes the tempo and the swing, stops and
//! starts tracks and the clock, edits the tracks' patterns, instruments and lengths, and
//! the workers are killed; the clock and the tracks are
//! engine state, so the served WAV equals an offline render of the server's own command
//! log.
//!
//! Real time: the server plays at its default depth to a WAV file, paced, for about 15 s; a
//! client sends a clock or track command every 150–450 ms. Nothing depends on timing
//! beyond "eventually, within 30 s".

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    assert_replay_of_patch_equals_served_but_for_restarts, encode, read_wav, signal, Recorded,
};
use rosc::OscType;

fn groove() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../patches/groove.toml")
}

/// Bass lines the jam switches between.
const BASS_LINES: [&str; 3] = ["c2*4", "c2 ~ eb2 [g2 bb2]", "<c2 f2> ~ c3 ~"];
/// Beats the jam switches between.
const BEATS: [&str; 2] = ["bd*4, hh*8", "bd ~ sn ~, hh(5,8)"];

/// Changes the groove until `stop`: tempo and swing, tracks and the clock stopped and
/// started, a few notes of its own on `keys`, and live edits of the tracks' patterns,
/// instruments and lengths. Returns how many messages it sent.
fn jam(to: std::net::SocketAddr, stop: Arc<AtomicBool>, steps: Arc<AtomicU64>) -> u64 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |address: &str, args: Vec<OscType>| {
        socket.send_to(&encode(address, args), to).unwrap();
    };
    let mut sent = 0u64;
    let mut step = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match step % 8 {
            0 => send(
                "/clock/bpm",
                vec![OscType::Float(100.0 + (step * 17 % 60) as f32 + 0.25)],
            ),
            1 => send("/seq/chords/stop", vec![]),
            2 => send(
                "/clock/swing",
                vec![OscType::Float(0.5 + (step % 5) as f32 * 0.05)],
            ),
            3 => send("/seq/chords/start", vec![]),
            4 => send(
                "/note/play",
                vec![
                    OscType::String("keys".into()),
                    OscType::Int(72 + (step % 12) as i32),
                    OscType::Int(90),
                    OscType::Float(0.2),
                ],
            ),
            5 => send(
                if step % 16 == 5 {
                    "/seq/drums/stop"
                } else {
                    "/seq/drums/start"
                },
                vec![],
            ),
            6 if step % 24 == 6 => send("/clock/stop", vec![]),
            6 => send("/clock/start", vec![]),
            // Live edits of the tracks, on the bar or the beat, among the sound's.
            _ => match step % 32 {
                7 | 39 => send(
                    "/seq/bass/pattern",
                    vec![OscType::String(BASS_LINES[(step / 32 % 3) as usize].into())],
                ),
                15 => send(
                    "/seq/drums/pattern",
                    vec![
                        OscType::String(BEATS[(step / 32 % 2) as usize].into()),
                        OscType::String("beat".into()),
                    ],
                ),
                23 => send(
                    "/seq/chords/length",
                    vec![OscType::Int(1 + (step / 32 % 2) as i32)],
                ),
                31 => send(
                    "/seq/bass/instrument",
                    vec![OscType::String(
                        ["keys", "bass"][(step / 32 % 2) as usize].into(),
                    )],
                ),
                _ => send(
                    "/mod/bass.filter/cutoff",
                    vec![OscType::Float(300.0 + (step % 9) as f32 * 100.0)],
                ),
            },
        }
        sent += 1;
        step += 1;
        steps.store(step, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(150 + step * 37 % 300));
    }
    send("/clock/start", vec![]);
    sent + 1
}

/// Ten kills of the active worker and one of both workers while the groove plays and is
/// changed: the clock and every track go on bit for bit through each failover (the
/// served WAV equals `render --replay` of the log everywhere but the double fault's
/// restart), and nothing is dropped or refused.
#[test]
fn a_groove_survives_ten_failovers_and_a_double_fault_as_the_replay_renders_it() {
    let patch = groove();
    let Recorded {
        server,
        dir,
        wav,
        log,
    } = Recorded::start("groove-failover", &["--patch", patch.to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let steps = Arc::new(AtomicU64::new(0));
    let client = {
        let (to, stop, steps) = (server.addr, Arc::clone(&stop), Arc::clone(&steps));
        std::thread::spawn(move || jam(to, stop, steps))
    };
    std::thread::sleep(Duration::from_millis(500));
    server.kill_active_worker(10, 150, 300);
    // Every kind of edit made (a step every 150-450 ms).
    while steps.load(Ordering::Relaxed) < 33 {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(400));
    let pids = server.signal_both_workers("KILL");
    server.wait_for_new_pair(&pids);
    std::thread::sleep(Duration::from_millis(1_000));
    stop.store(true, Ordering::Relaxed);
    let sent = client.join().unwrap();
    server.sync(1);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = server.metrics();
    server.quit();
    eprintln!(
        "{sent} clock and track messages; {} replacements, {} cold restarts, {} underruns",
        metrics["replacements"], metrics["cold_restarts"], metrics["underruns"],
    );
    assert_eq!(metrics["lockstep_mismatches"], 0.0, "{metrics:?}");
    assert_eq!(metrics["commands_dropped"], 0.0, "{metrics:?}");
    assert_eq!(metrics["commands_rejected"], 0.0, "{metrics:?}");
    assert_eq!(metrics["cold_restarts"], 1.0, "{metrics:?}");
    // The edits are in the log as tracks switches, on the bar and on the beat.
    let logged = std::fs::read_to_string(&log).unwrap();
    let switches = |at: &str| {
        logged
            .lines()
            .filter(|l| l.contains("/patch/load") && l.ends_with(at))
            .count()
    };
    assert!(switches(" bar") >= 3 && switches(" beat") >= 1, "{logged}");
    let (left, _) = read_wav(&wav);
    let loud = left.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(loud > 0.05, "the groove sounded (peak {loud})");
    assert_replay_of_patch_equals_served_but_for_restarts(&log, &wav, Some(&patch), 1, &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A server started with the groove plays at once (voices sound with no note sent), and
/// bad clock and track messages get `/fail` with the reason while it plays on.
#[test]
fn a_groove_plays_at_once_and_bad_messages_are_refused() {
    let patch = groove();
    let server = common::Server::start(&["--output", "null", "--patch", patch.to_str().unwrap()]);
    server.wait_until(Duration::from_secs(30), |m| m["voices_sounding"] > 0.0);
    for (address, args, says) in [
        ("/seq/piano/start", vec![], "/seq/piano/start"),
        ("/clock/bpm", vec![OscType::Float(1000.0)], "/clock/bpm"),
        ("/clock/swing", vec![OscType::Float(0.2)], "/clock/swing"),
        (
            "/seq/drums/start",
            vec![OscType::Int(1)],
            "/seq/drums/start",
        ),
        // Pointing at the mistake.
        (
            "/seq/drums/pattern",
            vec![OscType::String("bd [sn hh".into())],
            "character",
        ),
        (
            "/seq/drums/instrument",
            vec![OscType::String("tuba".into())],
            "unknown instrument 'tuba'",
        ),
        (
            "/seq/drums/length",
            vec![OscType::Int(65)],
            "/seq/drums/length",
        ),
    ] {
        server.send(address, args);
        let fail = loop {
            let m = server.recv().expect("a /fail");
            if m.addr == "/fail" {
                break m;
            }
        };
        let reason = format!("{:?}", fail.args);
        assert!(reason.contains(says), "{address}: {reason}");
    }
    server.send("/clock/bpm", vec![OscType::Float(140.0)]);
    server.send("/seq/drums/stop", vec![]);
    server.sync(1);
    let metrics = server.metrics();
    assert_eq!(metrics["commands_rejected"], 7.0, "{metrics:?}");
    server.quit();
}

/// Real time, paced WAV output at the default depth, about 12 s. The demo (drums, a bass
/// line, chords and a slow sweep on tracks at 120 bpm), its faults timed by the
/// sequencer's own steps: a `seq` subscriber kills the active worker at every third
/// sixteenth (375 ms at 120 bpm) once a spare is ready, twelve times, then both workers
/// once; a pattern edit is sent mid-bar between them. The served WAV equals the replay of
/// the log sample for sample, but for the double fault's gap.
#[test]
fn the_demo_killed_at_every_third_step_plays_on_as_the_replay_renders_it() {
    let patch = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../patches/demo.toml");
    let Recorded {
        server,
        dir,
        wav,
        log,
    } = Recorded::start("demo-steps", &["--patch", patch.to_str().unwrap()]);
    let steps = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    steps
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let notify = encode(
        "/notify",
        vec![OscType::Int(1), OscType::String("seq".into())],
    );
    steps.send_to(&notify, server.addr).unwrap();
    let mut buf = vec![0u8; 1024];
    let mut next_step = || loop {
        let Ok((len, _)) = steps.recv_from(&mut buf) else {
            continue;
        };
        if let Ok((_, rosc::OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..len]) {
            if let [OscType::Int(bar), OscType::Int(sixteenth), ..] = m.args[..] {
                return bar * 16 + sixteenth;
            }
        }
    };
    let mut kills = 0;
    let mut last_kill = next_step();
    while kills < 12 {
        let step = next_step();
        if step < last_kill + 3 {
            continue;
        }
        if server.metrics()["spare_ready"] != 1.0 {
            continue;
        }
        signal(server.active_pid(), "KILL");
        kills += 1;
        last_kill = step;
        if kills == 6 {
            server.send(
                "/seq/bass/pattern",
                vec![OscType::String("c2 eb2 [g2 c3] bb2".into())],
            );
        }
    }
    server.wait_until(Duration::from_secs(30), |m| {
        m["replacements"] >= 12.0 && m["spare_ready"] == 1.0
    });
    let pids = server.signal_both_workers("KILL");
    server.wait_for_new_pair(&pids);
    std::thread::sleep(Duration::from_millis(1_000));
    server.sync(1);
    let metrics = server.metrics();
    server.quit();
    common::assert_metrics(
        &metrics,
        &[
            ("lockstep_mismatches", 0.0),
            ("commands_dropped", 0.0),
            ("commands_rejected", 0.0),
            ("cold_restarts", 1.0),
        ],
    );
    assert!(metrics["replacements"] >= 12.0, "{metrics:?}");
    assert_replay_of_patch_equals_served_but_for_restarts(&log, &wav, Some(&patch), 1, &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}
