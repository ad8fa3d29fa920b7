//! The drum kit as it is shipped (`patches/drums.toml`), played as the engine plays it:
//! each GM drum number sounds, a hit plays to its end whenever its note-off comes, and
//! its voice frees itself once the hit is silent, so a sequencer's beat never runs out
//! of voices (no steals) even if it never sends a note-off.

use chronus_dsp::{Patch, PatchDesc, StateReader, StateWriter};

const SR: f32 = 48_000.0;
const BLOCK: usize = 64;
/// The kit's drum numbers (the pattern notation's `bd rim sn cp hh lt oh mt ht cb`).
const DRUMS: [f32; 10] = [36.0, 37.0, 38.0, 39.0, 42.0, 45.0, 46.0, 47.0, 50.0, 56.0];

fn kit() -> Patch {
    let desc = PatchDesc::from_toml_str(include_str!("../../../patches/drums.toml"))
        .expect("patches/drums.toml parses");
    Patch::compile(&desc, SR, BLOCK, 11).expect("patches/drums.toml compiles")
}

/// Renders `frames` (a whole number of blocks) of the left channel.
fn render(p: &mut Patch, frames: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(frames);
    let (mut l, mut r) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
    for _ in 0..frames / BLOCK {
        p.process(&mut l, &mut r);
        assert_eq!(l, r, "the kit is centred");
        out.extend_from_slice(&l);
    }
    out
}

fn peak(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

#[test]
fn every_drum_sounds_and_frees_its_voice_without_a_note_off() {
    for key in DRUMS {
        let mut p = kit();
        let node = p.node_index("kit").unwrap();
        p.note_on(node, key, 100.0, 0, 0);
        let x = render(&mut p, 48_000 * 3 / 2);
        assert!(
            peak(&x) > 0.1 && peak(&x) <= 1.0,
            "{key}: peak {}",
            peak(&x)
        );
        assert!(x.iter().all(|v| v.is_finite()));
        assert_eq!(
            p.voices_sounding(),
            0,
            "{key}: voice freed without a note-off"
        );
        let end = x.iter().rposition(|v| *v != 0.0).unwrap();
        println!(
            "drum {key}: sounds for {:.0} ms, then its voice is free",
            end as f32 / SR * 1e3
        );
        // A note-off long after the voice freed itself finds nothing and changes nothing.
        p.note_off(node, key, 0);
        assert!(render(&mut p, 4_800).iter().all(|v| *v == 0.0));
        assert_eq!(p.voices_sounding(), 0);
    }
}

#[test]
fn a_hit_plays_to_its_end_whenever_the_note_off_comes() {
    for key in DRUMS {
        let mut held = kit();
        let node = held.node_index("kit").unwrap();
        held.note_on(node, key, 127.0, 0, 0);
        let a = render(&mut held, 48_000);
        let mut short = kit();
        short.note_on(node, key, 127.0, 0, 0);
        let mut b = render(&mut short, 512);
        short.note_off(node, key, 0);
        b.extend(render(&mut short, 48_000 - 512));
        assert_eq!(a, b, "{key}: a note-off 10 ms in cuts nothing");
        // A note with a length (as a sequencer sends) too.
        let mut timed = kit();
        timed.note_on(node, key, 127.0, 0, 100);
        assert_eq!(render(&mut timed, 48_000), a, "{key}");
    }
}

#[test]
fn a_beat_without_note_offs_never_steals() {
    // Sixteenth notes at 120 bpm (every 125 ms) for 8 s, two drums per step: far more
    // hits than 16 voices, but every voice frees itself.
    let mut p = kit();
    let node = p.node_index("kit").unwrap();
    let mut out = Vec::new();
    for step in 0..64usize {
        p.note_on(node, if step % 4 == 0 { 36.0 } else { 38.0 }, 100.0, 0, 0);
        p.note_on(node, if step % 8 == 7 { 46.0 } else { 42.0 }, 80.0, 0, 0);
        out.extend(render(&mut p, 6_016));
        assert!(p.voices_sounding() <= 16);
    }
    assert_eq!(p.voice_steals(), 0);
    assert!(peak(&out) <= 1.0, "{}", peak(&out));
    out.extend(render(&mut p, 96_000));
    assert_eq!(p.voices_sounding(), 0);
}

#[test]
fn the_kit_is_deterministic_and_a_snapshot_mid_hit_continues_bit_for_bit() {
    let play = |p: &mut Patch, from: usize, to: usize| {
        let node = p.node_index("kit").unwrap();
        let mut out = Vec::new();
        for step in from..to {
            p.note_on(node, DRUMS[step % DRUMS.len()], 90.0 + step as f32, 0, 0);
            out.extend(render(p, 3_200));
        }
        out
    };
    let mut a = kit();
    let mut b = kit();
    let whole = play(&mut a, 0, 20);
    assert_eq!(whole, play(&mut b, 0, 20), "same notes, same bits");

    let mut first = kit();
    let mut got = play(&mut first, 0, 7);
    let mut bytes = vec![0u8; first.state_len()];
    let mut w = StateWriter::new(&mut bytes);
    first.save_state(&mut w);
    assert_eq!(w.finish(), Ok(first.state_len()));
    let mut spare = kit();
    spare.load_state(&mut StateReader::new(&bytes)).unwrap();
    got.extend(play(&mut spare, 7, 20));
    assert!(
        got.iter()
            .zip(&whole)
            .all(|(x, y)| x.to_bits() == y.to_bits()),
        "a spare continues the kit bit for bit"
    );
}
