//! `Patch::process`, `set_param`, `set_gate` and `save_state` must not allocate: they run
//! on the render thread. A counting global allocator checks it for this test binary.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use chronus_dsp::{Patch, PatchDesc, StateReader, StateWriter};

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

#[test]
fn render_thread_calls_do_not_allocate() {
    let mut p = Patch::compile(&PatchDesc::default_patch(), 48_000.0, 64, 1).unwrap();
    let mut snap = vec![0u8; p.state_len()];
    let mut l = [0.0f32; 64];
    let mut r = [0.0f32; 64];

    let before = ALLOCATIONS.with(Cell::get);
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
    let after = ALLOCATIONS.with(Cell::get);
    assert_eq!(after - before, 0, "render-thread calls allocated");
}
