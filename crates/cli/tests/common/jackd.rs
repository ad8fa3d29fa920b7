//! A private dummy JACK server for the tests that play through JACK (`jack.rs`, `midi.rs`):
//! started under a unique name, waited for, and stopped with SIGTERM, so that it leaves
//! JACK's shared registry (room for 8 servers; one killed with SIGKILL keeps its place
//! under its name, and the ninth start fails with "Too many servers already active").

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The JACK period, in frames: large, so that JACK's own threads keep up on a loaded
/// 2-core machine.
pub const PERIOD: &str = "1024";

/// A dummy JACK server of the test's own.
pub struct Jackd {
    child: Option<Child>,
    name: String,
}

impl Jackd {
    /// Starts `jackd` under `name` (48 kHz, [`PERIOD`]), its output appended to `log`,
    /// and waits until it takes clients.
    pub fn start(name: &str, log: &Path) -> Jackd {
        let file = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap()
        };
        // Real-time where allowed, above the workers' priorities (any server's): a JACK
        // thread (the server's, Chronus's process callback, the test's clients') descheduled
        // for a period is an xrun, and on a loaded 2-core machine an ordinary thread is.
        let scheduling: &[&str] = if may_use_realtime() {
            &["-R", "-P", "89"]
        } else {
            &["-r"]
        };
        let child = Command::new("jackd")
            .args(scheduling)
            .args(["-n", name, "-d", "dummy", "-r", "48000", "-p", PERIOD])
            .stdin(Stdio::null())
            .stdout(file())
            .stderr(file())
            .spawn()
            .expect("jackd starts (install jackd2: scripts/setup.sh)");
        let status = Command::new("jack_wait")
            .args(["-w", "-s", name, "-t", "20"])
            .stdout(Stdio::null())
            // libjack complains at each try until the server is up.
            .stderr(Stdio::null())
            .status()
            .expect("jack_wait runs");
        assert!(
            status.success(),
            "the JACK server {name} did not start: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        Jackd {
            child: Some(child),
            name: name.to_string(),
        }
    }

    /// SIGTERM, and waits for it to exit (SIGKILL only if it has not within 10 s).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// The ports `jack_lsp -s NAME -c` lists, with their connections.
    pub fn ports(&self) -> String {
        let out = Command::new("jack_lsp")
            .args(["-s", &self.name, "-c"])
            .output()
            .expect("jack_lsp runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Jackd {
    /// Stops it the same way when a test ends early (a failed assertion).
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether this process may use real-time scheduling (SCHED_FIFO).
pub fn may_use_realtime() -> bool {
    Command::new("chrt")
        .args(["-f", "1", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
