//! `chronus status --watch`: the live status screen (ratatui on crossterm).
//!
//! Fed by `/notify` pushes over one TCP [`Connection`]: nothing polls the real-time path
//! (one `/metrics` ask at connect fills in the workers before the first push). Three
//! parts: [`model`] (pure: pushes in, state out), [`draw`] (pure: a model onto a frame),
//! and here the loop that wires them to the terminal and the network.
//!
//! The draw loop never waits on the network: a connector thread makes (and remakes) the
//! connection, the connection's own reader thread reads, and the loop takes what has
//! arrived with `try_recv`, then waits at most one frame (~30 fps) for a key from the
//! thread that reads the keyboard (crossterm's reader never runs on the draw loop: it
//! spins forever on a dead terminal; a hang-up ends the screen instead). When the
//! server goes away the screen says so and the connector tries again every second,
//! subscribing afresh when the server is back. The terminal is restored however the
//! screen ends: a guard undoes raw mode and the alternate screen in `Drop`, and a panic
//! hook does the same before the panic is printed.

pub mod draw;
pub mod model;

use std::io::Stdout;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chronus_client::Connection;
use chronus_protocol::Reply;
use crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;
use rosc::OscMessage;

use model::{Model, Stamp};

/// The topics the screen subscribes to (`failover` and `worker` must be named, since
/// naming any topic replaces the default set): metrics at 4 Hz.
pub const TOPICS: [&str; 7] = [
    "failover",
    "worker",
    "metrics=4",
    "levels",
    "scope",
    "spectrum",
    "seq",
];
/// One frame of the draw loop: the longest it waits for a key (~30 fps).
const FRAME: Duration = Duration::from_millis(33);
/// How long after a failed try the connector tries again.
const RETRY: Duration = Duration::from_secs(1);
/// How long one connect, ask or subscribe may take before it counts as failed.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);
/// The most pushes taken in one frame (the rest wait for the next: drawing goes on).
const PUSHES_PER_FRAME: usize = 4096;

/// Runs the status screen on the terminal until `q`, Esc or Ctrl-C (or SIGINT, SIGTERM,
/// SIGHUP).
///
/// # Errors
/// The terminal cannot be put in raw mode or drawn on (not a terminal, say). A server
/// that is not there is no error: the screen says so and keeps trying.
pub fn run(server: SocketAddr) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!(
            "status --watch draws on a terminal, and stdout is not one (for a program, use `chronus status --json`)"
        );
    }
    // A signal (SIGTERM from a supervisor, SIGHUP from a closed terminal, SIGINT from
    // `kill -INT`: in raw mode Ctrl-C is a key) ends the screen the same way `q` does, so
    // the terminal is restored.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, std::sync::Arc::clone(&stop))?;
    }
    let mut terminal = TerminalGuard::enter()?;
    let origin = Instant::now();
    let stamp = move || Stamp {
        mono: origin.elapsed().as_secs_f64(),
        unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
    };
    let keys = read_keys()?;
    let mut model = Model::new(server.to_string());
    let mut connector = Connector::start(server, Duration::ZERO);
    let mut connection: Option<Connection> = None;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        // The network: take a new connection, notice a lost one, take the pushes.
        if connection.is_none() {
            match connector.poll() {
                Some(Ok((conn, pairs))) => {
                    model.apply_metrics(&pairs, stamp());
                    model.connected();
                    connection = Some(conn);
                }
                Some(Err(reason)) => {
                    model.lost(reason);
                    connector = Connector::start(server, RETRY);
                }
                None => {}
            }
        }
        if let Some(conn) = &connection {
            let ended = drain(conn.pushes(), &mut model, &stamp).is_err();
            if ended || !conn.is_open() {
                // Take what arrived before it closed, then say so and try again.
                let _ = drain(conn.pushes(), &mut model, &stamp);
                model.lost("the server closed the connection");
                connection = None;
                connector = Connector::start(server, RETRY);
            }
        }
        model.tick(stamp().mono);
        terminal.terminal.draw(|frame| draw::draw(frame, &model))?;
        // The keyboard (and resizes: the next draw fits the new size), waiting at most a
        // frame; then whatever else came meanwhile.
        let mut next = keys.recv_timeout(FRAME);
        let mut quit = false;
        while let Ok(event) = next {
            quit |= on_event(&event, &mut terminal.terminal)?;
            next = keys.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            });
        }
        // The terminal went away (its input ended, or it hung up): nothing to draw on.
        if quit || next == Err(RecvTimeoutError::Disconnected) || hung_up() {
            break;
        }
    }
    drop(terminal);
    Ok(ExitCode::SUCCESS)
}

/// Acts on one terminal event: true to quit (`q`, Esc, Ctrl-C); a resize fits the screen
/// to the new size at once.
fn on_event(
    event: &Event,
    terminal: &mut Terminal<CrosstermBackend<Stdout>>,
) -> anyhow::Result<bool> {
    match event {
        Event::Key(key) if key.kind != KeyEventKind::Release => {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            Ok(ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc))
        }
        Event::Resize(..) => {
            terminal.autoresize()?;
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// Reads the terminal's events on a thread of its own, so the draw loop never calls into
/// crossterm's reader: once the terminal is gone, crossterm's `poll` never returns (it
/// re-reads the dead tty forever, crossterm issue 793). The thread ends at a read error;
/// if it spins instead, the draw loop still sees the hang-up ([`hung_up`]) and the
/// process ends with it.
///
/// # Errors
/// The thread cannot be started.
fn read_keys() -> anyhow::Result<Receiver<Event>> {
    let (tx, keys) = mpsc::channel();
    std::thread::Builder::new()
        .name("watch-keys".into())
        .spawn(move || {
            while let Ok(event) = event::read() {
                if tx.send(event).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the thread that reads the keyboard")?;
    Ok(keys)
}

/// Whether the terminal hung up (its window closed, its tmux pane killed): `poll` on
/// stdout reports `POLLHUP` or `POLLERR` at once, without reading anything.
fn hung_up() -> bool {
    use rustix::event::{PollFd, PollFlags};
    use std::os::fd::AsFd;
    let stdout = std::io::stdout();
    let mut fds = [PollFd::from_borrowed_fd(stdout.as_fd(), PollFlags::empty())];
    let now = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match rustix::event::poll(&mut fds, Some(&now)) {
        Ok(0) | Err(_) => false,
        Ok(_) => fds[0]
            .revents()
            .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::NVAL),
    }
}

/// Feeds the pushes that have arrived into the model, at most [`PUSHES_PER_FRAME`].
///
/// # Errors
/// `Err(())` when the channel is disconnected (the reader thread ended).
fn drain(
    pushes: &Receiver<OscMessage>,
    model: &mut Model,
    stamp: &impl Fn() -> Stamp,
) -> Result<(), ()> {
    let at = stamp();
    for _ in 0..PUSHES_PER_FRAME {
        match pushes.try_recv() {
            Ok(push) => model.apply(&push, at),
            Err(TryRecvError::Empty) => return Ok(()),
            Err(TryRecvError::Disconnected) => return Err(()),
        }
    }
    Ok(())
}

/// What a connector hands over: the subscribed connection and the `/metrics` answer.
type Connected = (Connection, Vec<(String, chronus_protocol::MetricValue)>);

/// A thread that connects, asks `/metrics` once and subscribes, so the draw loop never
/// waits for a connect timeout.
struct Connector {
    result: Receiver<Result<Connected, String>>,
}

impl Connector {
    /// Starts one try after `delay`.
    fn start(server: SocketAddr, delay: Duration) -> Connector {
        let (tx, result) = mpsc::channel();
        std::thread::spawn(move || {
            std::thread::sleep(delay);
            let _ = tx.send(connect(server));
        });
        Connector { result }
    }

    /// The try's outcome, once it is known.
    fn poll(&self) -> Option<Result<Connected, String>> {
        match self.result.try_recv() {
            Ok(outcome) => Some(outcome),
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => Some(Err("the connector thread ended".into())),
        }
    }
}

/// Connects to `server`, asks `/metrics` (the workers' roles and pids, every number) and
/// subscribes to [`TOPICS`].
fn connect(server: SocketAddr) -> Result<Connected, String> {
    let conn = Connection::connect(server, ASK_TIMEOUT).map_err(|e| e.to_string())?;
    let message = OscMessage {
        addr: "/metrics".into(),
        args: vec![],
    };
    let pairs = match conn.ask(message, ASK_TIMEOUT).map_err(|e| e.to_string())? {
        Reply::Metrics(pairs) => pairs,
        other => return Err(format!("/metrics answered {other:?}")),
    };
    conn.subscribe(&TOPICS, ASK_TIMEOUT)
        .map_err(|e| e.to_string())?;
    Ok((conn, pairs))
}

/// The terminal in raw mode on the alternate screen, cursor hidden, until dropped.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl TerminalGuard {
    /// Enters raw mode and the alternate screen, and installs the panic hook that leaves
    /// them before a panic's message is printed (so it is readable, and the shell sane).
    fn enter() -> anyhow::Result<TerminalGuard> {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            previous(info);
        }));
        ENTERED.store(true, std::sync::atomic::Ordering::SeqCst);
        crossterm::terminal::enable_raw_mode()?;
        let mut stdout = std::io::stdout();
        if let Err(e) = crossterm::execute!(
            stdout,
            crossterm::terminal::EnterAlternateScreen,
            crossterm::cursor::Hide
        ) {
            restore();
            return Err(e.into());
        }
        match Terminal::new(CrosstermBackend::new(stdout)) {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e.into())
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Whether the terminal is in the screen's state (raw, alternate screen) to be undone.
static ENTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Leaves the alternate screen, shows the cursor and ends raw mode (each step alone, so
/// one failing does not keep the others from running). Only the first call after
/// [`TerminalGuard::enter`] does it: leaving the alternate screen twice would move the
/// cursor back over what was printed between (a panic's message, printed by the hook
/// before the guard is dropped).
fn restore() {
    if !ENTERED.swap(false, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let mut stdout = std::io::stdout();
    let _ = crossterm::execute!(
        stdout,
        crossterm::terminal::LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = crossterm::terminal::disable_raw_mode();
}
