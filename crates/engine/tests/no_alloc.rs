//! The worker's render loop allocates nothing: draining the command ring, applying
//! stamped commands on their frames, rendering, and writing the block into the slot's
//! audio ring, measured with a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use chronus_dsp::PatchDesc;
use chronus_engine::{Command, Engine, EngineConfig, Instruction, StampedCommand};
use chronus_ipc::{Slot, SlotLayout, WriteOutcome};

struct Counting;

thread_local! {
    // Per thread: only the test's own thread is measured, not the test harness's.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn render_loop_allocates_nothing() {
    let config = EngineConfig::new(48_000, 64, 1);
    let mut engine = Engine::new(&PatchDesc::default_patch(), config, 0).unwrap();
    let slot = Slot::create(
        "chronus-test-noalloc",
        SlotLayout::new(64, 2, 64, 4096).unwrap(),
    )
    .unwrap();
    slot.rebind(1);
    let mut block = vec![0.0f32; 128];
    let mut heard = vec![0.0f32; 128];
    let mut snapshot = vec![0u8; engine.snapshot_len()];

    COUNTING.with(|c| c.set(true));
    for n in 0..2_000u64 {
        // The output side: stamp a few commands into the ring, open the horizon.
        let command = match n % 4 {
            0 => Command::SetParam {
                node: 0,
                param: 0,
                value: 200.0 + n as f32,
            },
            1 => Command::Gate {
                node: 1,
                on: n % 8 == 1,
            },
            2 => Command::EngineGain(0.5 + (n % 5) as f32 * 0.1),
            _ => Command::SetParam {
                node: 2,
                param: 0,
                value: 500.0 + n as f32,
            },
        };
        let stamped = StampedCommand {
            seq: n + 1,
            frame: n * 64 + (n % 64),
            command,
        };
        assert!(slot.push_command(&stamped.to_record(1)));
        slot.publish_horizon(n + 1);
        // The worker side.
        while let Some(record) = slot.pop_command() {
            if let Ok(Instruction::Stamped(c)) = Instruction::from_record(&record) {
                engine.receive(c).unwrap();
            }
        }
        engine.render_block(&mut block);
        assert_eq!(slot.write_block(n, &block), WriteOutcome::Written);
        if n % 500 == 0 {
            engine.save_snapshot(&mut snapshot);
        }
        // The output reads it back.
        assert!(slot.read_block(n, &mut heard));
        slot.release_through(n + 1);
    }
    COUNTING.with(|c| c.set(false));
    assert_eq!(
        ALLOCATIONS.with(Cell::get),
        0,
        "allocations in the render loop"
    );
    assert!(heard.iter().any(|&s| s != 0.0), "it did render sound");
}
