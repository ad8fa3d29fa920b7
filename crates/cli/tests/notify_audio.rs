//! End to end: `/notify audio`, the output's samples pushed to a TCP subscriber, against
//! the real binary playing into a WAV file (`--output wav:`): the pushes laid end to end
//! by their `first frame` are the recording's samples at those frames, bit for bit; a UDP
//! subscription to `audio` is refused, and so is a fifth audio subscriber.
//!
//! Depth: the helpers' generous real-time settings (64-frame blocks, depth 24: 32 ms).
//! Every wait is a poll with a deadline of seconds; nothing asserts a timing, and a gap in
//! the pushes (a stalled notify thread on a loaded machine) is allowed: only the samples
//! that did arrive are compared.

mod common;

use std::time::{Duration, Instant};

use chronus_client::{ClientError, Connection};
use common::{read_wav, Recorded};
use rosc::OscType;

/// How long a test waits for what it expects.
const PATIENCE: Duration = Duration::from_secs(30);

/// The pushes' samples equal the recording's at the frames they name (depth above).
#[test]
fn audio_pushes_are_the_recordings_samples_at_their_frames() {
    let recorded = Recorded::start("notify-audio", &[]);
    let server = &recorded.server;

    // Over UDP: refused, with the reason.
    server.send(
        "/notify",
        vec![OscType::Int(1), OscType::String("audio".into())],
    );
    let refusal = std::iter::from_fn(|| server.recv())
        .find(|m| m.addr == "/fail" || m.addr == "/done")
        .expect("an answer to /notify audio over UDP");
    assert_eq!(refusal.addr, "/fail", "{refusal:?}");
    assert!(
        format!("{:?}", refusal.args).contains("TCP only"),
        "{refusal:?}"
    );

    // Four audio subscribers at most.
    let listeners: Vec<Connection> = (0..4)
        .map(|_| Connection::connect(server.addr, PATIENCE).unwrap())
        .collect();
    for listener in &listeners {
        listener.subscribe(&["audio"], PATIENCE).unwrap();
    }
    let fifth = Connection::connect(server.addr, PATIENCE).unwrap();
    match fifth.subscribe(&["audio", "levels"], PATIENCE) {
        Err(ClientError::Failed { reason, .. }) => {
            assert!(reason.contains("4 audio subscribers"), "{reason}");
        }
        other => panic!("a fifth audio subscriber was not refused: {other:?}"),
    }
    // Without audio it may subscribe.
    fifth.subscribe(&["levels"], PATIENCE).unwrap();

    server.play_note(440.0);
    let listener = &listeners[0];
    let mut pushes: Vec<(u64, Vec<f32>)> = Vec::new();
    let mut frames = 0;
    let deadline = Instant::now() + PATIENCE;
    // A second and a half of sound (the note's attack is in it).
    while frames < 72_000 {
        assert!(Instant::now() < deadline, "only {frames} frames arrived");
        let Ok(push) = listener.pushes().recv_timeout(Duration::from_millis(100)) else {
            continue;
        };
        assert_eq!(push.addr, "/chronus/audio");
        let [OscType::Long(first), OscType::Blob(bytes)] = push.args.as_slice() else {
            panic!("a malformed push: {push:?}");
        };
        assert_eq!(bytes.len() % 8, 0);
        let samples: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert!(samples.len() <= 2 * 1024, "{} samples", samples.len());
        frames += samples.len() / 2;
        pushes.push((*first as u64, samples));
    }
    drop(listeners);
    drop(fifth);
    let Recorded {
        server, wav, dir, ..
    } = recorded;
    server.quit();

    let (_, recording) = read_wav(&wav);
    let mut gaps = 0;
    let mut loud = 0;
    for window in pushes.windows(2) {
        let (first, samples) = &window[0];
        if window[1].0 != first + (samples.len() / 2) as u64 {
            gaps += 1;
        }
    }
    for (first, samples) in &pushes {
        let start = 2 * *first as usize;
        let served = recording
            .get(start..start + samples.len())
            .unwrap_or_else(|| panic!("frame {first} is past the recording's end"));
        let same = served
            .iter()
            .zip(samples)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "the push at frame {first} differs from the recording");
        loud += samples.iter().filter(|v| v.abs() > 0.01).count();
    }
    assert!(loud > 1000, "the note is not in the pushes");
    eprintln!(
        "{} pushes, {frames} frames, {gaps} gaps, all equal to the recording",
        pushes.len()
    );
    let _ = std::fs::remove_dir_all(dir);
}
