//! The arpeggiator end to end: a real server plays `patches/arp.toml` (an arpeggiated
//! pluck on `keys`) while a client holds and changes chords, changes every setting of the
//! arpeggiator, the tempo, and stops and starts the clock, and the active worker is
//! killed again and again; the arpeggiator is engine state, so the served WAV equals an
//! offline render of the server's own command log, sample for sample.
//!
//! Real time: the server plays at its default depth to a WAV file, paced, for about 6 s;
//! a client sends a message every 100–400 ms. Nothing depends on timing beyond
//! "eventually, within 30 s".

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_replay_of_patch_equals_served_but_for_underruns, encode, read_wav, Recorded};
use rosc::OscType;

fn arp_patch() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../patches/arp.toml")
}

/// Plays chords into the arpeggiator and changes it until `stop`. Returns how many
/// messages it sent.
fn jam(to: std::net::SocketAddr, stop: Arc<AtomicBool>) -> u64 {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut sent = 0u64;
    let mut send = |address: &str, args: Vec<OscType>| {
        socket.send_to(&encode(address, args), to).unwrap();
        sent += 1;
    };
    let keys = || OscType::String("keys".into());
    let mut step = 0u64;
    let mut root = 48;
    while !stop.load(Ordering::Relaxed) {
        match step % 10 {
            0 => {
                root = 48 + (step * 7 % 12) as i32;
                for interval in [0, 3, 7] {
                    send(
                        "/note/on",
                        vec![keys(), OscType::Int(root + interval), OscType::Int(80)],
                    );
                }
            }
            1 => send(
                "/arp/keys/mode",
                vec![OscType::String(
                    ["up", "down", "updown", "random"][(step / 10 % 4) as usize].into(),
                )],
            ),
            2 => send(
                "/arp/keys/octaves",
                vec![OscType::Int(1 + (step / 10 % 4) as i32)],
            ),
            3 => send(
                "/arp/keys/rate",
                vec![OscType::Float(
                    [0.25, 0.3333, 0.125, 0.5][(step / 10 % 4) as usize],
                )],
            ),
            4 => send(
                "/arp/keys/gate",
                vec![OscType::Float(0.1 + (step % 9) as f32 * 0.1)],
            ),
            5 if step % 20 == 5 => {
                // Every key up: the arpeggio stops after its note.
                for interval in [0, 3, 7] {
                    send("/note/off", vec![keys(), OscType::Int(root + interval)]);
                }
            }
            5 => send(
                "/note/on",
                vec![keys(), OscType::Int(root + 12), OscType::Int(110)],
            ),
            6 => send(
                "/clock/bpm",
                vec![OscType::Float(100.0 + (step * 13 % 60) as f32 + 0.5)],
            ),
            7 if step % 30 == 7 => send("/arp/keys/on", vec![OscType::Int(0)]),
            7 => send("/arp/keys/on", vec![OscType::Int(1)]),
            8 if step % 40 == 8 => send("/clock/stop", vec![]),
            8 => send("/clock/start", vec![]),
            _ => send("/note/off", vec![keys(), OscType::Int(root + 12)]),
        }
        step += 1;
        std::thread::sleep(Duration::from_millis(100 + step * 37 % 300));
    }
    sent
}

/// Eight kills of the active worker while arpeggios play and change: each failover is
/// seamless (the served WAV equals `render --replay` of the log everywhere), and nothing
/// is dropped or refused.
#[test]
fn an_arpeggio_survives_eight_failovers_as_the_replay_renders_it() {
    let patch = arp_patch();
    let Recorded {
        server,
        dir,
        wav,
        log,
    } = Recorded::start("arp-failover", &["--patch", patch.to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let client = {
        let (to, stop) = (server.addr, Arc::clone(&stop));
        std::thread::spawn(move || jam(to, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    server.kill_active_worker(8, 150, 400);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let sent = client.join().unwrap();
    server.sync(1);
    std::thread::sleep(Duration::from_millis(300));
    let metrics = server.metrics();
    server.quit();
    eprintln!(
        "{sent} messages; {} replacements, {} underruns",
        metrics["replacements"], metrics["underruns"],
    );
    assert_eq!(metrics["lockstep_mismatches"], 0.0, "{metrics:?}");
    assert_eq!(metrics["commands_dropped"], 0.0, "{metrics:?}");
    assert_eq!(metrics["commands_rejected"], 0.0, "{metrics:?}");
    assert_eq!(metrics["cold_restarts"], 0.0, "{metrics:?}");
    let (left, _) = read_wav(&wav);
    let loud = left.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    assert!(loud > 0.05, "the arpeggio sounded (peak {loud})");
    assert_replay_of_patch_equals_served_but_for_underruns(&log, &wav, Some(&patch), &metrics);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Bad arpeggiator messages get `/fail` with the reason while the server plays on.
#[test]
fn bad_arpeggiator_messages_are_refused_with_the_reason() {
    let patch = arp_patch();
    let server = common::Server::start(&["--output", "null", "--patch", patch.to_str().unwrap()]);
    for (address, args, says) in [
        (
            "/arp/keys/mode",
            vec![OscType::String("sideways".into())],
            "unknown mode 'sideways' (modes: up, down, updown, random)",
        ),
        (
            "/arp/keys/rate",
            vec![OscType::Float(0.33)],
            "whole 96ths of a beat",
        ),
        (
            "/arp/keys/octaves",
            vec![OscType::Int(5)],
            "/arp/keys/octaves",
        ),
        (
            "/arp/keys/gate",
            vec![OscType::Float(0.0)],
            "/arp/keys/gate",
        ),
        ("/arp/piano/on", vec![OscType::Int(1)], "/arp/piano/on"),
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
    server.send(
        "/note/on",
        vec![
            OscType::String("keys".into()),
            OscType::Int(60),
            OscType::Int(100),
        ],
    );
    server.send("/arp/keys/mode", vec![OscType::String("random".into())]);
    server.sync(1);
    server.wait_until(Duration::from_secs(30), |m| m["voices_sounding"] > 0.0);
    let metrics = server.metrics();
    assert_eq!(metrics["commands_rejected"], 5.0, "{metrics:?}");
    server.quit();
}
