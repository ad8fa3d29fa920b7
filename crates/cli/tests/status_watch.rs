//! End to end: `chronus status --watch` in a real terminal (a private tmux server), against
//! the real binary playing into the null sink with fault injection on.
//!
//! Each test plays a note, crashes the active worker with `/debug/crash`, and reads the
//! screen with `tmux capture-pane` until the failover is in the timeline with its cause;
//! then it presses `q` and compares `stty -g`, run in the same pane before and after, so
//! the terminal is exactly as it was. The server runs at the helpers' generous depth (64-frame
//! blocks, depth 24: 32 ms); every wait is for what the screen shows, with timeouts of
//! tens of seconds, never a timing.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::tmux::{Tmux, PATIENCE};
use common::{temp_dir, Server};
use rosc::OscType;

/// Waits until `path` exists (written by the pane's shell).
fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} was not written within {PATIENCE:?}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The slot playing now, from the metrics.
fn active_slot(server: &Server) -> i32 {
    let texts = server.metrics_full().1;
    (0..2)
        .find(|i| texts.get(&format!("slot.{i}.role")).map(String::as_str) == Some("active"))
        .expect("an active slot")
}

/// Runs the screen at `width`×`height` through a jam and a failover, then quits it.
fn watch_a_failover(name: &str, width: u16, height: u16) {
    let server = Server::start(&["--output", "null", "--allow-fault-injection"]);
    let dir: PathBuf = temp_dir(name);
    let binary = env!("CARGO_BIN_EXE_chronus");
    let script = format!(
        "cd '{dir}' && stty -g > before && '{binary}' status --watch --osc {addr}; \
         echo $? > code; stty -g > after; sleep 600",
        dir = dir.display(),
        addr = server.addr,
    );
    let tmux = Tmux::start(
        &format!("chronus-watch-{name}-{}", std::process::id()),
        width,
        height,
        &script,
    );

    let screen = tmux.wait_for("connected screen with both workers", |s| {
        s.contains("connected")
            && s.contains(" active ")
            && s.contains(" standby ")
            && s.contains("none yet")
    });
    let active = server.active_pid();
    assert!(
        screen.contains(&format!("pid {active}")),
        "the active worker's pid {active}:\n{screen}"
    );
    assert_eq!(screen.lines().count(), usize::from(height), "{screen}");

    // A jam: a note sounding, then the active worker crashed.
    server.play_note(220.0);
    tmux.wait_for("level on the meters", |s| {
        s.lines().any(|l| l.contains("│L █"))
    });
    let crashed = active_slot(&server);
    server.send("/debug/crash", vec![]);
    let expected = format!("→ slot {}  worker died", 1 - crashed);
    let screen = tmux.wait_for("failover in the timeline", |s| {
        s.contains(&expected) && s.contains("failovers 1")
    });
    let timeline: Vec<&str> = screen.lines().filter(|l| l.contains('→')).collect();
    assert_eq!(timeline.len(), 1, "one failover:\n{screen}");
    eprintln!("status --watch at {width}x{height} after the failover:\n{screen}");

    // `q` leaves the terminal exactly as it was.
    tmux.send_keys("q");
    let code = wait_for_file(&dir.join("code"));
    assert_eq!(code.trim(), "0", "status --watch exits 0 on q");
    let after = wait_for_file(&dir.join("after"));
    let before = std::fs::read_to_string(dir.join("before")).unwrap();
    assert_eq!(before, after, "stty -g before and after status --watch");
    assert!(
        !tmux.capture().contains("failovers (newest first)"),
        "the alternate screen is left:\n{}",
        tmux.capture()
    );
    drop(tmux);
    server.send("/gate/adsr", vec![OscType::Int(0)]);
    server.quit();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Depth 24 blocks of 64 (32 ms). At 80×24, the least the screen is made for: the workers
/// with roles and pids, a crash's failover in the timeline with its cause, and after `q`
/// the terminal's settings as before.
#[test]
fn a_failover_shows_in_the_timeline_at_80x24_and_q_restores_the_terminal() {
    watch_a_failover("80x24", 80, 24);
}

/// Depth 24 blocks of 64 (32 ms). The same at 120×40.
#[test]
fn a_failover_shows_in_the_timeline_at_120x40_and_q_restores_the_terminal() {
    watch_a_failover("120x40", 120, 40);
}

/// `chronus serve` on the fixed `addr` (so a second server can take the first one's place).
fn serve_on(addr: std::net::SocketAddr) -> Server {
    Server::start(&["--osc", &addr.to_string(), "--output", "null"])
}

/// Depth 24 blocks of 64 (32 ms). The server goes away under the screen: it says so and
/// keeps trying; a new server on the same address is found, subscribed to, and shown
/// (its workers' pids), and `q` still restores the terminal.
#[test]
fn a_server_restart_is_survived() {
    // A free port for both servers (UDP and TCP): the first takes it as the kernel gave it.
    let first = Server::start(&["--output", "null"]);
    let addr = first.addr;
    let dir = temp_dir("restart");
    let binary = env!("CARGO_BIN_EXE_chronus");
    let script = format!(
        "cd '{dir}' && stty -g > before && '{binary}' status --watch --osc {addr}; \
         echo $? > code; stty -g > after; sleep 600",
        dir = dir.display(),
    );
    let tmux = Tmux::start(
        &format!("chronus-watch-restart-{}", std::process::id()),
        80,
        24,
        &script,
    );
    let first_pid = first.active_pid();
    tmux.wait_for("the first server's active worker", |s| {
        s.contains("connected") && s.contains(&format!("pid {first_pid} "))
    });

    first.quit();
    tmux.wait_for("the server gone", |s| {
        s.contains("connection lost") && s.contains("retrying every second")
    });

    let second = serve_on(addr);
    let second_pid = second.active_pid();
    let screen = tmux.wait_for("the second server's active worker", |s| {
        s.contains(" connected ") && s.contains(&format!("pid {second_pid} "))
    });
    assert!(!screen.contains("connection lost"), "{screen}");
    // Subscribed again: the sequencer's pushes arrive from the new server.
    tmux.wait_for("the sequencer's position", |s| s.contains(" bpm running"));

    tmux.send_keys("q");
    assert_eq!(wait_for_file(&dir.join("code")).trim(), "0");
    let after = wait_for_file(&dir.join("after"));
    assert_eq!(std::fs::read_to_string(dir.join("before")).unwrap(), after);
    drop(tmux);
    second.quit();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Depth 24 blocks of 64 (32 ms). The terminal closes under the screen (its tmux server is
/// killed, as when a window is closed): the screen ends, once with the hang-up signal and
/// once without it (a new session: only the dead terminal tells), rather than being left
/// behind reading a dead terminal.
#[test]
fn a_closed_terminal_ends_the_screen() {
    let server = Server::start(&["--output", "null"]);
    let dir = temp_dir("hangup");
    let binary = env!("CARGO_BIN_EXE_chronus");
    for (name, wrap) in [("signal", ""), ("no-signal", "setsid ")] {
        let pid_file = dir.join(format!("{name}.pid"));
        let script = format!(
            "{wrap}sh -c 'echo $$ > \"{pid}\"; exec \"{binary}\" status --watch --osc {addr}'; sleep 600",
            pid = pid_file.display(),
            addr = server.addr,
        );
        let tmux = Tmux::start(
            &format!("chronus-watch-hangup-{name}-{}", std::process::id()),
            80,
            24,
            &script,
        );
        tmux.wait_for("the connected screen", |s| s.contains(" connected "));
        let pid = wait_for_file(&pid_file).trim().to_string();
        drop(tmux);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting to be reaped: either way it has ended.
            if state.is_empty() || state.split(") ").nth(1).is_some_and(|s| s.starts_with('Z')) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "status --watch ({name}) still running {PATIENCE:?} after its terminal closed: {state}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    server.quit();
    let _ = std::fs::remove_dir_all(&dir);
}
