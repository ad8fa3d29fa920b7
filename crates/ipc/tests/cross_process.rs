//! Cross-process test: a slot and a snapshot area shared with a child process.
//!
//! The test binary re-executes itself (`current_exe`) with an environment
//! variable that turns the `child_entry` test into the child's program. The
//! fds are handed over the way the supervisor does it: duplicated without
//! `CLOEXEC` before spawning. The child reopens them through
//! `/proc/self/fd/N`, which yields an `OwnedFd` without any `unsafe`.
//!
//! Proves: both processes see the same memory (commands parent → child,
//! blocks and status child → parent, a snapshot child → parent), and a futex
//! wake-up from the parent releases the child's `wait_for_horizon` promptly
//! (the child's timeout is 10 s; the wake-ups must arrive in well under 1 s).

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chronus_ipc::{CommandRecord, Slot, SlotLayout, SnapshotArea, SnapshotMeta, WriteOutcome};

const ENV_SLOT: &str = "CHRONUS_IPC_TEST_CHILD_SLOT_FD";
const ENV_SNAP: &str = "CHRONUS_IPC_TEST_CHILD_SNAP_FD";
const GENERATION: u32 = 7;
const COMMANDS: u64 = 10;
const WAKE_ROUNDS: u64 = 20;
const FIRST_HORIZON: u64 = 100;

fn record(i: u64) -> CommandRecord {
    CommandRecord {
        seq: i,
        generation: GENERATION,
        kind: 3,
        frame: i * 64,
        payload: [i * 1000, i + 1, !i, 0x5555, i << 20],
    }
}

/// The block the child renders for command `i`: derived from the record it
/// received, so the parent checks the whole round trip.
fn block_for(r: &CommandRecord, len: usize) -> Vec<f32> {
    (0..len)
        .map(|k| (r.payload[0] as f32) + (r.payload[1] as f32) * 0.25 + k as f32)
        .collect()
}

fn snapshot_bytes() -> Vec<u8> {
    (0..3000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn reopen_inherited(var: &str) -> OwnedFd {
    let n: i32 = std::env::var(var).unwrap().parse().unwrap();
    rustix::fs::open(
        format!("/proc/self/fd/{n}"),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .unwrap()
}

/// The child's program; a no-op when run as an ordinary test.
#[test]
fn child_entry() {
    if std::env::var_os(ENV_SLOT).is_none() {
        return;
    }
    let slot = Slot::attach(reopen_inherited(ENV_SLOT)).unwrap();
    let snaps = SnapshotArea::attach(reopen_inherited(ENV_SNAP)).unwrap();
    let generation = slot.generation();
    assert_eq!(generation, GENERATION);
    slot.set_worker_pid(std::process::id());
    slot.mark_attached(generation);

    // Commands in, blocks out.
    let len = slot.layout().block_len();
    let mut i = 0;
    let start = Instant::now();
    while i < COMMANDS {
        assert!(start.elapsed() < Duration::from_secs(10), "no commands");
        let Some(r) = slot.pop_command() else {
            std::thread::yield_now();
            continue;
        };
        assert_eq!(r, record(i));
        assert_eq!(
            slot.write_block(i, &block_for(&r, len)),
            WriteOutcome::Written
        );
        i += 1;
    }

    // Futex wake-ups from the other process.
    for k in 0..WAKE_ROUNDS {
        let h = slot.wait_for_horizon(FIRST_HORIZON + k, Duration::from_secs(10));
        assert_eq!(
            h,
            FIRST_HORIZON + k + 1,
            "round {k}: woken without the horizon"
        );
        slot.set_rendered(k + 1);
        slot.beat();
    }

    let meta = SnapshotMeta {
        request: 42,
        block: 12,
        last_seq: COMMANDS - 1,
        len: 0,
    };
    snaps.publish(meta, &snapshot_bytes()).unwrap();
    slot.mark_joined(generation);
}

#[test]
fn slot_and_snapshot_are_shared_across_processes() {
    let layout = SlotLayout::new(32, 2, 16, 16).unwrap();
    let slot = Slot::create("chronus-test-xproc", layout).unwrap();
    let snaps = SnapshotArea::create("chronus-test-xproc-snap", 4096).unwrap();
    slot.rebind(GENERATION);
    for i in 0..COMMANDS {
        assert!(slot.push_command(&record(i)));
    }

    // Inheritable copies (rustix::io::dup does not set CLOEXEC).
    let slot_fd = rustix::io::dup(slot.fd()).unwrap();
    let snap_fd = rustix::io::dup(snaps.fd()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(ENV_SLOT, slot_fd.as_raw_fd().to_string())
        .env(ENV_SNAP, snap_fd.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    drop((slot_fd, snap_fd));

    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until("attach", Duration::from_secs(20), || {
            slot.attached_generation() == GENERATION
        });
        assert_eq!(slot.worker_pid(), child.id());

        // Blocks rendered by the child from our commands.
        let len = layout.block_len();
        let mut out = vec![0.0; len];
        for i in 0..COMMANDS {
            wait_until("block", Duration::from_secs(10), || slot.has_block(i));
            assert!(slot.read_block(i, &mut out));
            assert_eq!(out, block_for(&record(i), len));
            assert_eq!(slot.block_equals(i, &out), Some(true));
        }
        slot.release_through(COMMANDS);
        assert_eq!(slot.commands_pending(), 0);

        // Each publish must wake the sleeping child promptly.
        let mut latencies = Vec::new();
        for k in 0..WAKE_ROUNDS {
            std::thread::sleep(Duration::from_millis(20)); // let the child fall asleep
            let t0 = Instant::now();
            slot.publish_horizon(FIRST_HORIZON + k + 1);
            wait_until("wake-up", Duration::from_secs(5), || {
                slot.rendered() == k + 1
            });
            latencies.push(t0.elapsed());
        }
        latencies.sort();
        let worst = *latencies.last().unwrap();
        eprintln!(
            "cross-process futex wake-up latency: median {:?}, worst {:?}",
            latencies[latencies.len() / 2],
            worst
        );
        assert!(worst < Duration::from_secs(1), "wake-up took {worst:?}");
        assert_eq!(slot.heartbeat(), WAKE_ROUNDS);

        wait_until("join", Duration::from_secs(10), || {
            slot.joined_generation() == GENERATION
        });
        let mut bytes = Vec::new();
        let meta = snaps.read(42, &mut bytes).expect("snapshot from the child");
        assert_eq!(
            (meta.block, meta.last_seq, meta.len),
            (12, COMMANDS - 1, 3000)
        );
        assert_eq!(bytes, snapshot_bytes());
        assert_eq!(snaps.read(41, &mut bytes), None);
    }));

    // Reap the child (kill it if the parent side failed or it hangs).
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if result.is_err() || start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(status.success(), "child failed: {status}");
}
