//! A private tmux server for the tests that drive a terminal program as a person would
//! (`shell.rs` types a jam, `status_watch.rs` reads the status screen): one detached
//! session of a chosen size on a socket of the test's own, read with `capture-pane`,
//! typed into with `send-keys`, and killed when dropped, its socket file removed (tmux
//! leaves it behind when its server is killed).

use std::process::Command;
use std::time::{Duration, Instant};

/// How long a test waits for something it expects on the screen.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A private tmux server with one session.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts a tmux server named `socket` with one detached session of `width`×`height`
    /// running `command` in `sh`.
    pub fn start(socket: &str, width: u16, height: u16, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: socket.to_string(),
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-x", &width.to_string()])
            .args(["-y", &height.to_string(), "sh", "-c", command])
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux runs (scripts/setup.sh installs it)");
        assert!(status.success(), "tmux new-session failed: {status}");
        tmux
    }

    /// A `tmux` command on this server's socket.
    pub fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    /// Runs `tmux args` on this server; its output (a failure panics with tmux's reason).
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pane's text now, one line per row.
    pub fn capture(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// The pane's lines now, trailing spaces and the empty lines at the end dropped.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .capture()
            .lines()
            .map(|l| l.trim_end().to_string())
            .collect();
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines
    }

    /// Waits until `wanted` holds for the screen; returns that screen, or panics with the
    /// last one seen after [`PATIENCE`].
    pub fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let screen = self.capture();
            if wanted(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no {what} on the screen within {PATIENCE:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the screen has a line for which `found` holds; returns the lowest such.
    pub fn wait_for_line(&self, what: &str, found: impl Fn(&str) -> bool) -> String {
        let screen = self.wait_for(what, |s| s.lines().any(|l| found(l.trim_end())));
        let line = screen.lines().rev().find(|l| found(l.trim_end()));
        line.unwrap_or_default().trim_end().to_string()
    }

    /// Types `text` literally and then, if `enter`, the Enter key.
    pub fn type_keys(&self, text: &str, enter: bool) {
        if !text.is_empty() {
            self.run(&["send-keys", "-l", text]);
        }
        if enter {
            self.send_keys("Enter");
        }
    }

    /// Presses `keys`, a tmux key name (`q`, `Enter`, `C-c`).
    pub fn send_keys(&self, keys: &str) {
        self.run(&["send-keys", keys]);
    }

    /// Whether the session still runs (its program has not exited).
    pub fn session_alive(&self) -> bool {
        self.command()
            .arg("has-session")
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let socket = self
            .command()
            .args(["display-message", "-p", "#{socket_path}"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let _ = self.command().arg("kill-server").status();
        if !socket.is_empty() {
            let _ = std::fs::remove_file(socket);
        }
    }
}
