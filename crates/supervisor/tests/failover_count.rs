//! Which slot the output blames, and what it counts. A failover is counted only when the
//! output serves a block from a live standby: a standby whose worker had already died may
//! still hold good blocks, and the output plays them, but it neither switches to that slot
//! nor counts a failover (issue 7, item 7). When no slot has the blocks due for longer than
//! a stall (`STALL_GRACE`), every live slot that lacks them is reported late, so two hung
//! workers are both replaced (issue 8, finding 1); a shorter gap is a stall ridden out.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chronus_ipc::{Slot, SlotLayout};
use chronus_supervisor::depth::DepthSetting;
use chronus_supervisor::metrics::Metrics;
use chronus_supervisor::output::{Notice, OutputCore, OutputShared, STALL_GRACE};

fn shared_with_two_ready_slots(name: &str) -> (Arc<OutputShared>, Arc<Metrics>) {
    let layout = SlotLayout::new(64, 2, 64, 64).unwrap();
    let slots = [
        Arc::new(Slot::create(&format!("{name}-0"), layout).unwrap()),
        Arc::new(Slot::create(&format!("{name}-1"), layout).unwrap()),
    ];
    let metrics = Arc::new(Metrics::default());
    let shared = Arc::new(OutputShared::new(
        slots,
        Arc::clone(&metrics),
        64,
        48_000,
        DepthSetting::Fixed(4),
        1,
    ));
    for link in &shared.slots {
        link.slot.rebind(1);
        link.generation.store(1, Ordering::SeqCst);
        link.bound.store(true, Ordering::SeqCst);
        link.ready.store(true, Ordering::SeqCst);
    }
    (shared, metrics)
}

#[test]
fn a_dead_standby_is_read_but_never_failed_over_to() {
    let (shared, metrics) = shared_with_two_ready_slots("chronus-test-deadfo");
    let mut core = OutputCore::new(Arc::clone(&shared));
    let block = vec![0.25f32; 128];
    let mut out = vec![0.0f32; 128];
    // Block 0 from both; then the standby's worker dies (its blocks 1.. were written
    // before), and the active one, alive, misses block 1.
    for slot in &shared.slots {
        for n in 0..3 {
            slot.slot.write_block(n, &block);
        }
    }
    core.render_next(&mut out);
    shared.slots[1].dead_since_ns.store(1, Ordering::SeqCst);
    // Slot 0 loses block 1 and 2: rebinding is the simplest way to empty its ring.
    shared.slots[0].slot.rebind(1);
    core.render_next(&mut out);
    assert_eq!(out, block, "the dead standby's good block is played");
    assert_eq!(
        shared.active.load(Ordering::SeqCst),
        0,
        "no switch to a dead slot"
    );
    assert_eq!(metrics.failover_count.load(Ordering::SeqCst), 0);
    assert_eq!(metrics.underruns.load(Ordering::SeqCst), 0);
    let mut failovers = 0;
    while let Some(notice) = shared.notices.pop() {
        if matches!(notice, Notice::Failover { .. }) {
            failovers += 1;
        }
    }
    assert_eq!(failovers, 0);

    // A live standby is failed over to, and counted.
    shared.slots[1].dead_since_ns.store(0, Ordering::SeqCst);
    core.render_next(&mut out);
    assert_eq!(shared.active.load(Ordering::SeqCst), 1);
    assert_eq!(metrics.failover_count.load(Ordering::SeqCst), 1);
}

/// Late-slot reports: (slot, block) pairs.
type Reports = Vec<(usize, u64)>;

/// The late-slot reports among the notices the output left: (active, standby).
fn late_reports(shared: &OutputShared) -> (Reports, Reports) {
    let (mut active, mut standby) = (Vec::new(), Vec::new());
    while let Some(notice) = shared.notices.pop() {
        match notice {
            Notice::ActiveMissed { slot, block } => active.push((slot, block)),
            Notice::StandbyMissed { slot, block } => standby.push((slot, block)),
            _ => {}
        }
    }
    (active, standby)
}

/// Blocks of 64 frames at 48 kHz that no slot may lack before its workers are hung.
fn grace_blocks() -> u64 {
    (STALL_GRACE.as_nanos() as u64).div_ceil(1_333_333)
}

#[test]
fn when_neither_worker_has_the_blocks_past_a_stall_both_are_reported_late() {
    let (shared, metrics) = shared_with_two_ready_slots("chronus-test-bothlate");
    let mut core = OutputCore::new(Arc::clone(&shared));
    let mut out = vec![0.0f32; 128];
    // Two hung workers: neither ever writes a block. A stall's worth of blocks first.
    for _ in 0..grace_blocks() {
        core.render_next(&mut out);
        assert_eq!(late_reports(&shared), (vec![], vec![]));
    }
    let last = grace_blocks();
    core.render_next(&mut out);
    assert_eq!(metrics.underruns.load(Ordering::SeqCst), last + 1);
    assert_eq!(late_reports(&shared), (vec![(0, last)], vec![(1, last)]));
    // Each is reported once, not once per block.
    core.render_next(&mut out);
    assert_eq!(late_reports(&shared), (vec![], vec![]));
}

#[test]
fn a_stall_shorter_than_the_grace_replaces_no_one() {
    let (shared, metrics) = shared_with_two_ready_slots("chronus-test-stall");
    let mut core = OutputCore::new(Arc::clone(&shared));
    let mut out = vec![0.0f32; 128];
    let block = vec![0.25f32; 128];
    // Both workers late for two blocks (a machine that stalled), then back in time.
    core.render_next(&mut out);
    core.render_next(&mut out);
    for slot in &shared.slots {
        for n in 2..4 {
            slot.slot.write_block(n, &block);
        }
    }
    core.render_next(&mut out);
    core.render_next(&mut out);
    assert_eq!(metrics.underruns.load(Ordering::SeqCst), 2);
    assert_eq!(late_reports(&shared), (vec![], vec![]));
    // A later gap counts its grace afresh.
    for _ in 0..grace_blocks() {
        core.render_next(&mut out);
    }
    assert_eq!(late_reports(&shared), (vec![], vec![]));
}

#[test]
fn a_live_standby_that_lacks_the_blocks_when_the_active_is_dead_is_reported_late() {
    let (shared, _metrics) = shared_with_two_ready_slots("chronus-test-deadlate");
    let mut core = OutputCore::new(Arc::clone(&shared));
    let mut out = vec![0.0f32; 128];
    shared.slots[0].dead_since_ns.store(1, Ordering::SeqCst);
    for _ in 0..=grace_blocks() {
        core.render_next(&mut out);
    }
    assert_eq!(late_reports(&shared), (vec![], vec![(1, grace_blocks())]));
}
