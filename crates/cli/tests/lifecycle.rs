//! End to end: the server's life cycle and its cost at rest (issue 7, findings 5 and 6).
//!
//! Ctrl-C in a terminal signals the whole foreground process group: the server must stop
//! cleanly (no worker counted as crashed, no cold restart) and every stop, `/quit` included,
//! fades out so the last sample written is exactly 0.0. The real-time loops never read
//! `/proc`, and a flood of bad input is logged in bounded, unforgeable, colourless lines.
//!
//! Every server here plays at depth 24 (64-frame blocks, 32 ms), as `Server::start` does.

mod common;

use std::fs::File;
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{read_wav, serve_command, temp_dir, Server};
use rosc::OscType;

/// Frames in the 10 ms every stop must fade over, at 48 kHz.
const FADE_FRAMES: usize = 480;

/// Starts `chronus serve` at depth 24 as a shell starts a job: in a process group of its
/// own, so a signal to the group reaches every process the server started in it. Its log
/// (stderr, a file: not a terminal) goes to `log`.
fn start_as_a_job(extra: &[&str], log: &Path) -> Server {
    let mut command = serve_command(extra);
    command.stderr(File::create(log).unwrap()).process_group(0);
    Server::start_command(command)
}

/// The server's log must not show a fault: no worker died, no restart.
fn assert_no_fault_in(log: &str) {
    for line in log.lines() {
        for fault in [
            "died",
            "cold restart",
            "both workers",
            "missed block",
            "underrun",
        ] {
            assert!(
                !line.contains(fault),
                "a clean stop was logged as a fault: {line}"
            );
        }
    }
}

/// The WAV sounded, then faded out over the last 10 ms to exactly 0.0.
fn assert_fades_out(wav: &Path) {
    let (_, interleaved) = read_wav(wav);
    let frames: Vec<&[f32]> = interleaved.chunks(2).collect();
    assert!(frames.len() > 4 * FADE_FRAMES, "{} frames", frames.len());
    let last = frames[frames.len() - 1];
    assert!(
        last[0] == 0.0 && last[1] == 0.0,
        "the last sample written is {last:?}, not 0.0: a click at the stop"
    );
    let before = &frames[frames.len() - 4 * FADE_FRAMES..frames.len() - 2 * FADE_FRAMES];
    assert!(
        before.iter().any(|f| f[0].abs() > 0.05),
        "it was sounding before the stop"
    );
    // Over the last 10 ms, no sample is louder than a linear fade to 0 allows.
    let tail = &frames[frames.len() - FADE_FRAMES..];
    for (i, frame) in tail.iter().enumerate() {
        let left = (FADE_FRAMES - 1 - i) as f32 / FADE_FRAMES as f32;
        for &x in frame.iter() {
            assert!(
                x.abs() <= left + 1e-6,
                "{:.2} ms before the end the sample is {x}, louder than a 10 ms fade allows ({left})",
                (FADE_FRAMES - i) as f64 / 48.0
            );
        }
    }
}

/// Plays the default patch with the gate open into a WAV, stops it with `stop`, and checks
/// the stop was clean and faded out.
fn assert_clean_stop(name: &str, stop: impl FnOnce(&mut Server)) {
    let dir = temp_dir(name);
    let wav = dir.join("out.wav");
    let log_path = dir.join("serve.log");
    let mut server = start_as_a_job(&["--output", &format!("wav:{}", wav.display())], &log_path);
    server.send("/gate/adsr", vec![OscType::Int(1)]);
    server.sync(1);
    std::thread::sleep(Duration::from_millis(300));
    stop(&mut server);
    let status = server.wait_for_exit(Duration::from_secs(20), "serve did not exit");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "serve exited with {status}; log:\n{log}");
    assert_no_fault_in(&log);
    assert_fades_out(&wav);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn finding_5_ctrl_c_to_the_process_group_is_a_clean_stop_that_fades_out() {
    assert_clean_stop("ctrl-c", |server| {
        let group = rustix::process::Pid::from_raw(server.child.id() as i32).unwrap();
        rustix::process::kill_process_group(group, rustix::process::Signal::INT)
            .expect("SIGINT reaches the group");
    });
}

#[test]
fn finding_5_quit_fades_out_to_exactly_zero() {
    assert_clean_stop("quit", |server| {
        server.send("/quit", vec![]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if server.recv().is_some_and(|m| m.addr == "/done") {
                return;
            }
        }
        panic!("no /done /quit");
    });
}

#[test]
fn finding_5_sigterm_to_the_server_fades_out() {
    assert_clean_stop("sigterm", |server| {
        common::signal(server.child.id(), "TERM");
    });
}

/// Context switches the thread `tid` of `pid` made so far (voluntary and not).
fn context_switches(pid: u32, tid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .filter(|l| l.contains("ctxt_switches"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum()
}

#[test]
fn finding_6_the_supervisor_loop_sleeps_until_something_happens() {
    let dir = temp_dir("idle-loop");
    let log_path = dir.join("serve.log");
    let mut server = start_as_a_job(&["--output", "null"], &log_path);
    // The loop runs on the server's main thread (its tid is the pid). Woken every 1 ms it
    // would switch about 2,000 times in 2 s; woken by events it switches a few dozen
    // times (an idle wait of 100 ms, and a restore-point snapshot every 2 s).
    let pid = server.child.id();
    let before = context_switches(pid, pid);
    std::thread::sleep(Duration::from_secs(2));
    let switches = context_switches(pid, pid) - before;
    eprintln!("supervisor loop: {switches} context switches in 2 s at rest");
    assert!(
        switches < 400,
        "the supervisor loop woke {switches} times in 2 s while nothing happened"
    );
    // Reports are built off the real-time loops, whatever happens: queries, a failover
    // and a spare joining.
    for _ in 0..20 {
        server.metrics();
        server.send("/status", vec![]);
    }
    common::signal(server.active_pid(), "KILL");
    server.wait_until(Duration::from_secs(20), |m| {
        m.get("replacements").copied().unwrap_or(0.0) >= 1.0 && m.get("spare_ready") == Some(&1.0)
    });
    server.send("/quit", vec![]);
    let status = server.wait_for_exit(Duration::from_secs(20), "serve did not exit");
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("real-time thread"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn finding_6_a_flood_of_bad_input_keeps_the_log_small_unforged_and_colourless() {
    let dir = temp_dir("log-flood");
    let log_path = dir.join("serve.log");
    let mut command = serve_command(&["--output", "null", "--allow-fault-injection"]);
    // Panic reports with a backtrace each, the longest a client can make the log write.
    command
        .env("RUST_BACKTRACE", "1")
        .stderr(File::create(&log_path).unwrap())
        .process_group(0);
    let mut server = Server::start_command(command);
    let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
    let started = Instant::now();
    let forged = common::encode(
        "/mod/sine/freq\n2026-01-01T00:00:00.000000Z  INFO chronus: FORGED \u{1b}[31mline",
        vec![OscType::Float(440.0)],
    );
    let panic = common::encode("/debug/panic", vec![]);
    for i in 0..100_000u32 {
        // Not OSC at all, then a refused message whose address carries a newline, and
        // now and then a message that panics in the handler (caught, a bug's stand-in).
        let _ = flood.send_to(&i.to_be_bytes(), server.addr);
        let _ = flood.send_to(&forged, server.addr);
        if i % 5 == 0 {
            let _ = flood.send_to(&panic, server.addr);
        }
    }
    // One more of each in a later second, so the summaries of the flood are written.
    std::thread::sleep(Duration::from_millis(1_100));
    let _ = flood.send_to(b"late", server.addr);
    let _ = flood.send_to(&forged, server.addr);
    let elapsed = started.elapsed().as_secs() + 1;
    // Still answering.
    server.sync(7);
    assert!(
        server
            .metrics()
            .get("commands_rejected.undecodable")
            .copied()
            .unwrap_or(0.0)
            > 0.0
    );
    server.send("/quit", vec![]);
    let status = server.wait_for_exit(Duration::from_secs(20), "serve did not exit");
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    // Bound: the start-up and stop lines (well under 16 KiB), plus per second of flood
    // at most 11 lines (10 and a summary) of each of three kinds (undecodable, refused,
    // dropped datagrams), each under 400 bytes, and 10 panic reports (the hook's, with its
    // backtrace, under 16 KiB, and the handler's line) and their summary.
    let bound = 16 * 1024 + elapsed as usize * (3 * 11 * 400 + 10 * 16 * 1024 + 400);
    eprintln!(
        "log: {} bytes for {elapsed} s of flood (bound {bound})",
        log.len()
    );
    assert!(
        log.len() <= bound,
        "{} bytes of log for {elapsed} s of flood (bound {bound})",
        log.len()
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal"
    );
    for line in log.lines() {
        assert!(
            !line.contains("FORGED") || line.contains("refused"),
            "a forged log line: {line}"
        );
    }
    assert!(
        log.contains("more undecodable packets in the last second"),
        "the flood is summarised"
    );
    assert!(
        log.contains("more panic reports in the last second"),
        "the panics are summarised"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
