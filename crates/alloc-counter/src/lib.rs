//! A counting global allocator for the tests that prove a code path allocates nothing
//! (the render loop, ring reads and writes, the output clock, every module's `process`).
//!
//! Counting is per thread: only allocations made by the test's own thread while counting
//! is on are counted, never those of the test harness's threads. It is for tests only;
//! nothing in the server links it.
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: chronus_alloc_counter::CountingAllocator = chronus_alloc_counter::CountingAllocator;
//!
//! chronus_alloc_counter::counting(true);
//! render_many_blocks();
//! chronus_alloc_counter::counting(false);
//! assert_eq!(chronus_alloc_counter::allocations(), 0);
//! ```
#![deny(unsafe_op_in_unsafe_fn)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting this thread's allocations while [`counting`] is on.
pub struct CountingAllocator;

fn note_allocation() {
    // `try_with`: the thread-locals may already be gone while a thread exits.
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCATIONS.try_with(|a| a.set(a.get() + 1));
    }
}

// SAFETY: forwards every call unchanged to the system allocator; it only counts, using
// const-initialised thread-locals that never allocate themselves.
unsafe impl GlobalAlloc for CountingAllocator {
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

/// Turns counting on or off for the calling thread.
pub fn counting(on: bool) {
    COUNTING.with(|c| c.set(on));
}

/// Allocations counted on the calling thread so far.
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Sets the calling thread's count back to zero.
pub fn reset() {
    ALLOCATIONS.with(|a| a.set(0));
}
