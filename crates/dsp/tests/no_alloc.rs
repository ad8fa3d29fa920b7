//! `Patch::process`, `set_param`, `set_gate`, the note calls and `save_state` must not
//! allocate: they run on the render thread. A counting global allocator checks it for
//! this test binary.

use chronus_dsp::patch::Expression;
use chronus_dsp::{Patch, PatchDesc, StateReader, StateWriter};

#[global_allocator]
static GLOBAL: chronus_alloc_counter::CountingAllocator = chronus_alloc_counter::CountingAllocator;

#[test]
fn render_thread_calls_do_not_allocate() {
    chronus_alloc_counter::counting(true);
    let mut p = Patch::compile(&PatchDesc::default_patch(), 48_000.0, 64, 1).unwrap();
    let mut snap = vec![0u8; p.state_len()];
    let mut l = [0.0f32; 64];
    let mut r = [0.0f32; 64];

    let before = chronus_alloc_counter::allocations();
    p.set_gate(1, true);
    for i in 0..200u16 {
        p.set_param(0, 0, 100.0 + f32::from(i));
        p.set_param(2, 0, 200.0 + f32::from(i) * 10.0);
        p.set_param(3, 0, 0.5);
        if i == 100 {
            p.set_gate(1, false);
        }
        let n = 1 + usize::from(i) % 64;
        p.process(&mut l[..n], &mut r[..n]);
        if i % 50 == 0 {
            let mut w = StateWriter::new(&mut snap);
            p.save_state(&mut w);
            assert!(!w.overflowed());
            p.load_state(&mut StateReader::new(&snap)).unwrap();
        }
        let _ = p.voices_sounding();
    }
    let after = chronus_alloc_counter::allocations();
    assert_eq!(after - before, 0, "render-thread calls allocated");
}

#[test]
fn playing_notes_does_not_allocate() {
    // The default patch's 16-voice `keys`: chords held (rendered side by side), notes
    // released on their frame, steals, expression, sustain, cutoff glides, panic.
    chronus_alloc_counter::counting(true);
    let mut p = Patch::compile(&PatchDesc::default_patch(), 48_000.0, 64, 1).unwrap();
    let keys = p.node_index("keys").unwrap();
    let cutoff = p.node_index("keys.filter").unwrap();
    let mut snap = vec![0u8; p.state_len()];
    let mut l = [0.0f32; 64];
    let mut r = [0.0f32; 64];

    let before = chronus_alloc_counter::allocations();
    for i in 0..600u16 {
        let note = 36.0 + f32::from(i * 7 % 48);
        match i % 8 {
            0 | 3 | 5 => p.note_on(keys, note, 100.0, 0, 0),
            1 => p.note_on(keys, note, 80.0, u32::from(i), 700),
            2 => p.note_off(keys, 36.0 + f32::from((i - 16) * 7 % 48), 0),
            4 => p.note_expression(keys, note, Expression::Bend, 1.0),
            6 => p.set_param(cutoff, 0, 500.0 + f32::from(i)),
            _ => p.sustain(keys, i % 16 == 7),
        }
        if i == 400 {
            p.panic_notes();
        }
        let n = if i % 5 == 0 {
            1 + usize::from(i) % 64
        } else {
            64
        };
        p.process(&mut l[..n], &mut r[..n]);
        if i % 100 == 0 {
            let mut w = StateWriter::new(&mut snap);
            p.save_state(&mut w);
            assert!(!w.overflowed());
            p.load_state(&mut StateReader::new(&snap)).unwrap();
        }
        let _ = (p.voices_sounding(), p.voice_steals());
    }
    let after = chronus_alloc_counter::allocations();
    assert!(
        p.voice_steals() > 0,
        "the voices were all taken at some point"
    );
    assert_eq!(after - before, 0, "render-thread calls allocated");
}
