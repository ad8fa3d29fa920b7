//! The filter, dynamics, utility and effect module types must not allocate on the render
//! thread: `process`, `set_param`, `set_gate`, `reset`, `save_state` and `load_state` are
//! called there. A counting global allocator checks each type directly (outside a patch,
//! so every port and parameter is exercised), after the one allocating call, `create`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use chronus_dsp::{create, StateReader, StateWriter};

struct Counting;

thread_local! {
    // Per thread: only the test's own thread is measured, not the test harness's.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
}

// SAFETY: delegates every call unchanged to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's; forwarded as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout (via `alloc` above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's; forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The types checked here.
const TYPES: &[&str] = &[
    "ladder",
    "reverb",
    "svf",
    "onepole",
    "delay",
    "limiter",
    "pan",
    "vca",
    "crossfade",
    "constant",
    "scale",
    "ringmod",
    "ar",
    "distortion",
    "chorus",
];

#[test]
fn render_thread_calls_do_not_allocate() {
    for type_name in TYPES {
        let mut m = create(type_name, 48_000.0, 64, 1).expect("registered");
        let spec = m.spec();
        let input: Vec<f32> = (0..64)
            .map(|i| ((i * 37) % 64) as f32 / 32.0 - 1.0)
            .collect();
        let ins: Vec<&[f32]> = vec![&input[..]; spec.inputs.len()];
        let mut bufs = vec![[0.0f32; 64]; spec.outputs.len()];
        let mut snap = vec![0u8; m.state_len()];

        let before = ALLOCATIONS.with(Cell::get);
        for i in 0..100usize {
            for (p, ps) in spec.params.iter().enumerate() {
                let t = ((i + p) % 7) as f32 / 6.0;
                m.set_param(p, ps.min + (ps.max - ps.min) * t);
            }
            m.set_gate(i % 10 < 5);
            let n = 1 + i % 64;
            let mut outs: [&mut [f32]; 3] = Default::default();
            for (slot, b) in outs.iter_mut().zip(bufs.iter_mut()) {
                *slot = &mut b[..n];
            }
            let ins_n: [&[f32]; 3] =
                std::array::from_fn(|k| ins.get(k).map_or(&[][..], |s| &s[..n]));
            m.process(&ins_n[..spec.inputs.len()], &mut outs[..spec.outputs.len()]);
            if i % 25 == 0 {
                let mut w = StateWriter::new(&mut snap);
                m.save_state(&mut w);
                assert!(!w.overflowed());
                m.load_state(&mut StateReader::new(&snap)).unwrap();
            }
            if i == 60 {
                m.reset();
            }
        }
        let after = ALLOCATIONS.with(Cell::get);
        assert_eq!(
            after - before,
            0,
            "{type_name} allocated on the render thread"
        );
    }
}
