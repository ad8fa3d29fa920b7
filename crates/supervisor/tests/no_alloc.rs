//! The output clock allocates nothing per block: stamping commands into both slots'
//! rings, refusing what cannot wait (too many timed commands, commands a patch switch
//! makes stale), publishing the horizon, reading the active slot, comparing the standby,
//! failing over, playing an underrun, fading out at the stop, handing blocks to the
//! recording ring and stamped commands to the command log's queue, and blocks to the
//! monitor ring while a `/notify` subscriber wants levels, measured with a counting global
//! allocator.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chronus_engine::Command;
use chronus_ipc::{Slot, SlotLayout};
use chronus_supervisor::depth::DepthSetting;
use chronus_supervisor::metrics::Metrics;
use chronus_supervisor::output::{Inbound, OutputCore, OutputShared};

#[global_allocator]
static GLOBAL: chronus_alloc_counter::CountingAllocator = chronus_alloc_counter::CountingAllocator;

#[test]
fn output_clock_allocates_nothing() {
    let layout = SlotLayout::new(64, 2, 64, 8192).unwrap();
    let slots = [
        Arc::new(Slot::create("chronus-test-out-0", layout).unwrap()),
        Arc::new(Slot::create("chronus-test-out-1", layout).unwrap()),
    ];
    let metrics = Arc::new(Metrics::default());
    let shared = Arc::new(
        OutputShared::new(
            slots.clone(),
            Arc::clone(&metrics),
            64,
            48_000,
            DepthSetting::Fixed(4),
            1,
        )
        .with_command_log()
        .with_recording(),
    );
    for link in &shared.slots {
        link.slot.rebind(1);
        link.generation.store(1, Ordering::SeqCst);
        link.bound.store(true, Ordering::SeqCst);
        link.ready.store(true, Ordering::SeqCst);
    }
    let mut core = OutputCore::new(Arc::clone(&shared));
    let block: Vec<f32> = (0..128).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
    let mut out = vec![0.0f32; 128];
    // A `/notify levels` subscriber: the output copies every block to the monitor ring,
    // which the notify thread (here: this loop) drains into a buffer allocated before.
    let levels = chronus_protocol::Topics::of(&[chronus_protocol::Topic::Levels]);
    shared.notify_topics.store(levels.bits(), Ordering::Relaxed);
    let mut monitored = Vec::with_capacity(1 << 16);
    let mut monitored_samples = 0;

    chronus_alloc_counter::counting(true);
    for n in 0..3_000u64 {
        shared
            .inbound
            .push(Inbound::Command {
                command: Command::SetParam {
                    node: 0,
                    param: 0,
                    value: 440.0,
                },
                received_ns: 0,
                at_frame: None,
                reply_to: None,
            })
            .unwrap();
        // Bundles for ten seconds later, more than may wait; then a patch switch that makes
        // those admitted stale.
        if (100..108).contains(&n) {
            for _ in 0..300 {
                let far = Inbound::Command {
                    command: Command::EngineGain(0.5),
                    received_ns: 0,
                    at_frame: Some(480_000),
                    reply_to: None,
                };
                shared.inbound.push(far).unwrap();
            }
        }
        if n == 1_500 {
            let switch = Inbound::Command {
                command: Command::SwitchPatch {
                    version: 2,
                    len: 10,
                    at: chronus_engine::SwitchAt::Now,
                },
                received_ns: 0,
                at_frame: None,
                reply_to: None,
            };
            shared.inbound.push(switch).unwrap();
        }
        // Stand-in workers: slot 0 stops delivering at block 1000 (fails over to slot 1),
        // and both stop at 2000..2010 (underruns, faded).
        for (i, slot) in slots.iter().enumerate() {
            let silent = (2_000..2_010).contains(&n) || (i == 0 && n >= 1_000);
            if !silent {
                slot.write_block(n, &block);
            }
            while slot.pop_command().is_some() {}
        }
        if n == 2_900 {
            shared.request_fade_out();
        }
        core.render_next(&mut out);
        while shared.notices.pop().is_some() {}
        if n % 100 == 99 {
            shared.monitor.take_words_into(&mut monitored);
            monitored_samples += chronus_supervisor::recorder::stamped_blocks(&monitored)
                .map(|(_, block)| block.len())
                .sum::<usize>();
        }
    }
    chronus_alloc_counter::counting(false);
    assert_eq!(
        chronus_alloc_counter::allocations(),
        0,
        "allocations in the output clock"
    );
    assert_eq!(metrics.failover_count.load(Ordering::SeqCst), 1);
    assert_eq!(metrics.underruns.load(Ordering::SeqCst), 10);
    assert_eq!(metrics.lockstep_mismatches.load(Ordering::SeqCst), 0);
    assert!(metrics.lockstep_blocks_compared.load(Ordering::SeqCst) >= 999);
    // Every block and every command went to the recorder's and the log's queues.
    assert_eq!(metrics.record_blocks_dropped.load(Ordering::SeqCst), 0);
    assert_eq!(metrics.command_log_dropped.load(Ordering::SeqCst), 0);
    // Every block played reached the monitor ring (each behind its stamp).
    assert_eq!(metrics.notify_dropped.load(Ordering::SeqCst), 0);
    assert_eq!(monitored_samples, 3_000 * 128);
    let timed_admitted = chronus_engine::MAX_ADMITTED_TIMED;
    assert_eq!(
        metrics.commands_dropped_queue_full.load(Ordering::SeqCst),
        (2_400 - timed_admitted) as u64
    );
    assert_eq!(
        shared.command_log.as_ref().unwrap().len(),
        3_000 + timed_admitted + 1
    );
    let mut recorded = Vec::new();
    shared.recording.as_ref().unwrap().take_into(&mut recorded);
    // The recording ends with the fade-out (a callback clock goes on asking for blocks
    // until it is closed; those silent blocks are not recorded), on exactly 0.0.
    let faded = 2_900 + shared.fade_out_blocks() as usize;
    assert_eq!(recorded.len(), faded * 128);
    assert_eq!(recorded.last().map(|x| x.to_bits()), Some(0));
    assert!(shared.has_faded_out());
    assert!(
        out.iter().all(|x| x.to_bits() == 0),
        "silence after the fade"
    );
}
