//! Admission at stamping (issue 8, findings 3 and 5): the output decides, once for both
//! workers, which commands may wait for their frame. It refuses with a notice (answered
//! `/fail`) a command no engine could be trusted to hold, keeps room for commands meant to
//! play now however many bundles wait, and refuses the commands a patch switch makes stale
//! when it stamps the switch, so a replay of the command log drops the same ones.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use chronus_engine::{Command, MAX_ADMITTED, MAX_ADMITTED_TIMED};
use chronus_ipc::{Slot, SlotLayout};
use chronus_supervisor::depth::DepthSetting;
use chronus_supervisor::metrics::Metrics;
use chronus_supervisor::output::{Inbound, Notice, OutputCore, OutputShared, Refusal};

const BLOCK: u64 = 64;

/// An output with no worker bound: stamping and its accounting work alike without one.
fn output(name: &str) -> (Arc<OutputShared>, OutputCore, Arc<Metrics>) {
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
    let core = OutputCore::new(Arc::clone(&shared));
    (shared, core, metrics)
}

fn command(at_frame: Option<u64>) -> Inbound {
    Inbound::Command {
        command: Command::EngineGain(0.5),
        received_ns: 0,
        at_frame,
        reply_to: None,
    }
}

/// Stamps everything queued (in blocks of at most 512 items) and sorts the notices.
fn stamp_all(shared: &OutputShared, core: &mut OutputCore) -> (usize, Vec<Refusal>) {
    let mut out = vec![0.0f32; 128];
    while !shared.inbound.is_empty() {
        core.render_next(&mut out);
    }
    let (mut stamped, mut refused) = (0, Vec::new());
    while let Some(notice) = shared.notices.pop() {
        match notice {
            Notice::Stamped { .. } => stamped += 1,
            Notice::Refused { why, .. } => refused.push(why),
            _ => {}
        }
    }
    (stamped, refused)
}

#[test]
fn far_future_bundles_fill_only_their_share_and_are_refused_beyond_it() {
    let (shared, mut core, metrics) = output("chronus-test-admit-timed");
    let far = 48_000 * 30;
    for n in 0..MAX_ADMITTED_TIMED + 100 {
        shared.inbound.push(command(Some(far + n as u64))).unwrap();
    }
    let (stamped, refused) = stamp_all(&shared, &mut core);
    assert_eq!(stamped, MAX_ADMITTED_TIMED);
    assert_eq!(refused, vec![Refusal::QueueFull; 100]);
    assert_eq!(
        metrics.commands_dropped_queue_full.load(Ordering::SeqCst),
        100
    );

    // Commands meant to play now still have room...
    for _ in 0..500 {
        shared.inbound.push(command(None)).unwrap();
    }
    let (stamped, refused) = stamp_all(&shared, &mut core);
    assert_eq!((stamped, refused.len()), (500, 0));
    // ...but not unbounded room: a burst beyond the total (stamped 512 a block, due at
    // the horizon, `depth` blocks ahead) is refused in part, never applied in part.
    for _ in 0..MAX_ADMITTED {
        shared.inbound.push(command(None)).unwrap();
    }
    let (stamped, refused) = stamp_all(&shared, &mut core);
    assert_eq!(stamped + refused.len(), MAX_ADMITTED);
    assert!(refused.len() >= 512, "{} refused", refused.len());
}

#[test]
fn room_comes_back_once_the_output_plays_past_their_frames() {
    let (shared, mut core, _metrics) = output("chronus-test-admit-later");
    // Due within 100 blocks.
    for n in 0..MAX_ADMITTED_TIMED as u64 {
        shared
            .inbound
            .push(command(Some(20 * BLOCK + n % 80 * BLOCK)))
            .unwrap();
    }
    let (stamped, refused) = stamp_all(&shared, &mut core);
    assert_eq!((stamped, refused.len()), (MAX_ADMITTED_TIMED, 0));
    shared.inbound.push(command(Some(200 * BLOCK))).unwrap();
    assert_eq!(stamp_all(&shared, &mut core).1, vec![Refusal::QueueFull]);
    let mut out = vec![0.0f32; 128];
    for _ in 0..100 {
        core.render_next(&mut out);
    }
    shared.inbound.push(command(Some(200 * BLOCK))).unwrap();
    assert_eq!(stamp_all(&shared, &mut core), (1, vec![]));
}

#[test]
fn a_patch_switch_refuses_the_commands_timed_after_it_and_is_never_refused_itself() {
    let (shared, mut core, _metrics) = output("chronus-test-admit-stale");
    let far = 48_000 * 10;
    // Fill the timed share, and the total with commands due now.
    for n in 0..MAX_ADMITTED_TIMED as u64 {
        shared.inbound.push(command(Some(far + n))).unwrap();
    }
    stamp_all(&shared, &mut core);
    for _ in 0..MAX_ADMITTED - MAX_ADMITTED_TIMED {
        shared.inbound.push(command(None)).unwrap();
    }
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
    // A bundle timed after the switch but stamped before it, and one after it.
    shared.inbound.push(command(Some(far * 2))).unwrap();
    shared.inbound.push(switch).unwrap();
    let (stamped, refused) = stamp_all(&shared, &mut core);
    assert_eq!(
        refused.iter().filter(|r| **r == Refusal::QueueFull).count(),
        1
    );
    assert_eq!(
        refused.iter().filter(|r| **r == Refusal::Stale).count(),
        MAX_ADMITTED_TIMED,
        "every command waiting for a frame after the switch"
    );
    assert!(stamped > 0);
    // The timed share is free again.
    shared.inbound.push(command(Some(far * 2))).unwrap();
    assert_eq!(stamp_all(&shared, &mut core), (1, vec![]));
}
