//! The soak of issue 8, shortened for CI: `chronus bench soak --seconds 60` runs a real
//! server for a minute of fast control from three clients (UDP, TCP, and a TCP client that
//! never reads its replies) while the active worker is killed every 500 ms and both
//! workers at 30 s, and must find every figure holding: both accounting identities, no
//! lockstep mismatch, no underrun outside the double fault, no file descriptor or thread
//! more at the end. The 10-minute run is `chronus bench soak` (its figures are in the
//! closing note of issue 8).
//!
//! Real time: the server plays at depth 24 (32 ms of control latency); the soak waits up
//! to 30 s for each recovery and asserts counts, never timings.

mod common;

#[test]
fn a_minute_of_soak_holds_every_figure() {
    // The server logs at info into the captured stderr, shown only if a figure fails:
    // the story of each kill, failover and underrun, to tell what a rare failure was.
    let out = common::chronus()
        .args(["bench", "soak", "--seconds", "60"])
        .env("CHRONUS_LOG", "info")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    eprintln!("{table}");
    assert!(
        out.status.success() && table.contains("every figure holds"),
        "{table}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
