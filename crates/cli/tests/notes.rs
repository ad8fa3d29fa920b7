//! Notes and voices end to end: a real server plays the default patch's `keys` instrument
//! from OSC notes while its workers are killed; the voices are engine state, so the served
//! WAV equals an offline render of the server's own command log.
//!
//! Real time: the server plays at its default depth to a WAV file, paced; a client sends a
//! note event every 20–60 ms for about 8 s. Nothing depends on timing beyond "eventually,
//! within 30 s".

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_replay_equals_served_but_for_restarts, encode, read_wav, Recorded};
use rosc::OscType;

/// Plays notes until `stop`: chords, releases, notes with their own length, bends and
/// the sustain pedal, more notes than the 16 voices (so voices are stolen). Returns how
/// many messages it sent.
fn play(to: std::net::SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let send = |address: &str, args: Vec<OscType>| {
        socket.send_to(&encode(address, args), to).unwrap();
    };
    let mut sent = 0u64;
    let mut step = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let note = 36 + (step * 7 % 48) as i32;
        match step % 9 {
            0..=3 => send("/note/on", vec![OscType::Int(note), OscType::Int(90)]),
            4 => send("/note/off", vec![OscType::Int(note - 7)]),
            5 => send(
                "/note/play",
                vec![
                    OscType::String("keys".into()),
                    OscType::Float(note as f32 + 0.5),
                    OscType::Float(100.0),
                    OscType::Float(0.3),
                ],
            ),
            6 => send(
                "/note/bend",
                vec![OscType::Int(note - 14), OscType::Float(1.0)],
            ),
            7 => send("/sustain", vec![OscType::Int((step / 9 % 2) as i32)]),
            _ => send(
                "/mod/keys.filter/cutoff",
                vec![OscType::Float(800.0 + (step % 30) as f32 * 100.0)],
            ),
        }
        sent += 1;
        step += 1;
        std::thread::sleep(Duration::from_millis(20 + step * 13 % 40));
    }
    send("/panic", vec![]);
    sent + 1
}

/// Ten kills of the active worker and one of both workers while notes play: every note
/// survives each failover bit for bit (the served WAV equals `render --replay` of the log
/// everywhere but the double fault's restart), nothing is dropped, voices were stolen and
/// the notes sounded.
#[test]
fn notes_survive_ten_failovers_and_a_double_fault_as_the_replay_renders_them() {
    let Recorded {
        server,
        dir,
        wav,
        log,
    } = Recorded::start("notes-failover", &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (to, stop) = (server.addr, Arc::clone(&stop));
        std::thread::spawn(move || play(to, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    server.kill_active_worker(10, 100, 300);
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
        "{sent} note messages; {} replacements, {} cold restarts, {} underruns, {} voice steals",
        metrics["replacements"],
        metrics["cold_restarts"],
        metrics["underruns"],
        metrics["voice_steals"]
    );
    assert_eq!(metrics["lockstep_mismatches"], 0.0, "{metrics:?}");
    assert_eq!(metrics["commands_dropped"], 0.0, "{metrics:?}");
    assert_eq!(metrics["commands_rejected"], 0.0, "{metrics:?}");
    assert_eq!(metrics["cold_restarts"], 1.0, "{metrics:?}");
    assert!(metrics["voice_steals"] > 0.0, "{metrics:?}");
    let (left, _) = read_wav(&wav);
    let loud = left.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(loud > 0.05, "the notes sounded (peak {loud})");
    assert_replay_equals_served_but_for_restarts(&log, &wav, 1, &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh server plays `/note/on 60 100` (the default patch's `keys`), reports the voice
/// in `/status.reply` and `/metrics`, and `/panic` brings it back to none.
#[test]
fn a_fresh_server_plays_a_note_and_counts_its_voice() {
    let server = common::Server::start(&["--output", "null"]);
    server.send("/note/on", vec![OscType::Int(60), OscType::Int(100)]);
    server.sync(1);
    server.wait_until(Duration::from_secs(30), |m| m["voices_sounding"] == 1.0);
    server.send("/status", vec![]);
    let reply = loop {
        let m = server.recv().expect("a /status.reply");
        if m.addr == "/status.reply" {
            break m;
        }
    };
    assert_eq!(reply.args[2], OscType::Int(1), "voices sounding: {reply:?}");
    server.send("/panic", vec![]);
    server.sync(2);
    server.wait_until(Duration::from_secs(30), |m| m["voices_sounding"] == 0.0);
    // Bad notes are refused with the reason, and the server plays on.
    server.send(
        "/note/on",
        vec![
            OscType::String("piano".into()),
            OscType::Int(60),
            OscType::Int(1),
        ],
    );
    let fail = server.recv().expect("a /fail");
    assert_eq!(fail.addr, "/fail");
    assert_eq!(
        fail.args[1],
        OscType::String("/note/on: unknown instrument 'piano' (instruments: keys)".into())
    );
    server.quit();
}
