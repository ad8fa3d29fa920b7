//! `chronus shell`: jam with a running server from a terminal, in a musical language
//! (`play Cmaj7 for 2 beats`, `drums "bd ~ sn ~"`, `brighter`, `set filter.cutoff 800
//! over 4 beats`), for people at a keyboard and for agents driving a terminal.
//!
//! The words are `chronus_shell`'s (pure: a line and the state in, messages and what to
//! say out); this file is the terminal and the connection around them. It connects over
//! TCP (`chronus_client::Connection`), asks the address table, and then:
//! - on a terminal: a line editor (rustyline) with history in
//!   `$XDG_STATE_HOME/chronus/shell_history` (else `~/.local/state/chronus/…`), Tab
//!   completion from the server's own table, a prompt with the tempo (`chronus 120bpm> `);
//! - from a pipe or a file (`chronus shell < set.chr`): nothing decorative, one line of
//!   answer per command, exit 1 at the first error unless `--keep-going`;
//! - `--json`: one JSON object per command (`line`, `ok`, `ran`, `said`, or `error` and
//!   `suggestion`), for programs and agents.
//!
//! After each line that sends, it waits for `/sync`: a `/fail` the server sent for it (a
//! pattern it refused, a library name it does not have) fails the line. If the server
//! went away, the next line connects again (and says `reconnected to ADDR`), or fails
//! saying the server is gone.

use std::cell::RefCell;
use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use chronus_client::{ClientError, Connection};
use chronus_protocol::{AddressTable, Reply};
use chronus_shell::{interpret, Heading, Outcome, Run, ShellError, State};
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

/// Arguments of `chronus shell`.
#[derive(clap::Args)]
pub struct ShellArgs {
    /// Server address (its TCP port is the same as its UDP one).
    #[arg(long, default_value = crate::DEFAULT_OSC, value_parser = crate::parse_osc)]
    osc: SocketAddr,
    /// From a pipe or a file: go on after a line that fails (the exit code is still 1).
    #[arg(long)]
    keep_going: bool,
    /// Answer each command with one JSON object on one line (for programs and agents).
    #[arg(long)]
    json: bool,
    /// Seconds to wait for each answer (0.1 to 3600).
    #[arg(long, default_value_t = 2.0, value_parser = parse_timeout)]
    timeout: f64,
}

/// `--timeout`: a finite number of seconds from 0.1 to 3600 (an hour is already far
/// longer than any answer takes; `inf` or `1e30` would not fit a `Duration`).
fn parse_timeout(text: &str) -> Result<f64, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds (e.g. 2 or 0.5)"))?;
    if seconds.is_finite() && (0.1..=3600.0).contains(&seconds) {
        Ok(seconds)
    } else {
        Err(format!("`{text}`: the timeout is from 0.1 to 3600 seconds"))
    }
}

/// What one line did, for the person or the program reading.
struct Answer {
    /// The OSC messages sent, as text.
    ran: Vec<String>,
    /// What happened, in words (may be several lines: help, status).
    said: String,
}

/// Why a line failed.
struct LineError {
    message: String,
    suggestion: Option<String>,
}

impl From<ShellError> for LineError {
    fn from(e: ShellError) -> LineError {
        LineError {
            message: e.message,
            suggestion: e.suggestion,
        }
    }
}

impl From<ClientError> for LineError {
    fn from(e: ClientError) -> LineError {
        LineError {
            message: match e {
                // The protocol's reasons name the address already.
                ClientError::Failed { address, reason } if reason.contains(&address) => reason,
                other => other.to_string(),
            },
            suggestion: None,
        }
    }
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(s) = &self.suggestion {
            write!(f, " (did you mean `{s}`?)")?;
        }
        Ok(())
    }
}

/// What a line asks of the loop.
enum Next {
    Go(Answer),
    Quit,
}

/// The shell: its connection and its state.
struct Shell {
    /// The server's address, to connect again after it went away.
    server: SocketAddr,
    /// The connection; replaced by a new one when the server went away and came back.
    connection: RefCell<Connection>,
    /// Where the parameters this shell ramped are heading (phrases and `undo` start
    /// from a running ramp's target).
    heading: RefCell<Heading>,
    state: Rc<RefCell<State>>,
    timeout: Duration,
    /// The tempo this shell set and when: the server reports it only from the next beat,
    /// so until it does (or a few seconds pass) the shell counts with the one it set.
    tempo_sent: RefCell<Option<(f64, std::time::Instant)>>,
}

impl Shell {
    /// The tempo the server plays (its `clock_bpm` metric), else 120.
    fn bpm(&self) -> f64 {
        self.connection
            .borrow()
            .metrics(self.timeout)
            .ok()
            .and_then(|m| m.get("clock_bpm").copied())
            .filter(|bpm| *bpm > 0.0)
            .unwrap_or(120.0)
    }

    /// Connects again if the server closed the connection: a new connection, its table
    /// asked again, its tempo from its metrics, and this shell's memory of the old one
    /// (undo, patterns, held notes, ramps) forgotten. `Ok(Some(notice))` when it did.
    ///
    /// # Errors
    /// The server does not answer at its address: it is gone.
    fn reconnect(&self) -> Result<Option<String>, LineError> {
        if self.connection.borrow().is_open() {
            return Ok(None);
        }
        let gone = |why: String| LineError {
            message: format!(
                "the server at {} is gone ({why}); start it again and the next line reconnects",
                self.server
            ),
            suggestion: None,
        };
        let (connection, table) = connect(self.server, self.timeout)
            .map_err(|e| gone(format!("the connection closed and a new one fails: {e}")))?;
        *self.connection.borrow_mut() = connection;
        *self.state.borrow_mut() = State::new(table, self.bpm());
        self.heading.borrow_mut().clear();
        *self.tempo_sent.borrow_mut() = None;
        Ok(Some(format!("reconnected to {}", self.server)))
    }

    /// Does one line, connecting again first if the server went away and came back:
    /// (the notice that it did, what the line did).
    fn line(&self, line: &str) -> (Option<String>, Result<Next, LineError>) {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return (None, self.line_on(line));
        }
        // The subscription's pushes (see `connect`): nothing to show.
        while self.connection.borrow().pushes().try_recv().is_ok() {}
        match self.reconnect() {
            Ok(notice) => (notice, self.line_on(line)),
            Err(e) => (None, Err(e)),
        }
    }

    /// Does one line on the connection there is.
    fn line_on(&self, line: &str) -> Result<Next, LineError> {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            return Ok(Next::Go(Answer {
                ran: Vec::new(),
                said: String::new(),
            }));
        }
        // The tempo last seen: another client may have changed it.
        let server = self.bpm();
        let bpm = match *self.tempo_sent.borrow() {
            Some((sent, at)) if sent != server && at.elapsed() < Duration::from_secs(5) => sent,
            _ => server,
        };
        self.state.borrow_mut().bpm = bpm;
        let outcome = {
            let state = self.state.borrow();
            let connection = self.connection.borrow();
            let heading = self.heading.borrow();
            let timeout = self.timeout;
            let mut current = |address: &str| -> Option<f32> {
                // Mid-ramp, where the parameter is heading is what a phrase changes.
                if let Some(target) = heading.target(address, std::time::Instant::now()) {
                    return Some(target);
                }
                let ask = OscMessage {
                    addr: "/get".into(),
                    args: vec![OscType::String(address.to_string())],
                };
                match connection.ask(ask, timeout) {
                    Ok(Reply::Get { value, .. }) => Some(value),
                    _ => None,
                }
            };
            interpret(&state, line, &mut current)?
        };
        match outcome {
            Outcome::Nothing => Ok(Next::Go(Answer {
                ran: Vec::new(),
                said: String::new(),
            })),
            Outcome::Quit => Ok(Next::Quit),
            Outcome::Help(text) => Ok(Next::Go(Answer {
                ran: Vec::new(),
                said: text,
            })),
            Outcome::Get { step, name, unit } => {
                match self
                    .connection
                    .borrow()
                    .ask(step.message.clone(), self.timeout)?
                {
                    Reply::Get { value, .. } => Ok(Next::Go(Answer {
                        ran: vec![step.text],
                        said: format!(
                            "{name} = {}{}{unit}",
                            chronus_shell::number(f64::from(value)),
                            if unit.is_empty() { "" } else { " " }
                        ),
                    })),
                    other => Err(LineError {
                        message: format!("an unexpected answer to /get: {other:?}"),
                        suggestion: None,
                    }),
                }
            }
            Outcome::Status => {
                let ask = OscMessage {
                    addr: "/metrics".into(),
                    args: vec![],
                };
                match self.connection.borrow().ask(ask, self.timeout)? {
                    Reply::Metrics(pairs) => Ok(Next::Go(Answer {
                        ran: vec!["/metrics".into()],
                        said: crate::client::summary(&crate::client::metrics_to_json(&pairs))
                            .trim_end()
                            .to_string(),
                    })),
                    other => Err(LineError {
                        message: format!("an unexpected answer to /metrics: {other:?}"),
                        suggestion: None,
                    }),
                }
            }
            Outcome::Wait { seconds, said } => {
                std::thread::sleep(Duration::from_secs_f64(seconds));
                Ok(Next::Go(Answer {
                    ran: Vec::new(),
                    said,
                }))
            }
            Outcome::Run(run) => self.run(run).map(Next::Go),
        }
    }

    /// Sends a run's messages, waits until the server took them in, and reports its
    /// `/fail`s as the line's error.
    fn run(&self, run: Run) -> Result<Answer, LineError> {
        let mut said = run.said.clone();
        let timed = run.ran.iter().any(|s| s.after > 0.0);
        // Timed notes (a scale) go as bundles stamped from one moment, a little ahead so
        // the first is not late.
        let start = SystemTime::now() + Duration::from_millis(50);
        let mut loaded = false;
        for step in &run.ran {
            let address = step.message.addr.as_str();
            if address.starts_with("/library/") {
                match self
                    .connection
                    .borrow()
                    .ask(step.message.clone(), self.timeout)?
                {
                    Reply::LibraryList(patches) => {
                        let names: Vec<String> = patches
                            .iter()
                            .map(|(name, kind)| format!("{name} ({kind})"))
                            .collect();
                        said = format!("the library: {}", names.join(", "));
                    }
                    _ => loaded |= address == "/library/load",
                }
            } else if timed {
                let at = start + Duration::from_secs_f64(step.after);
                let bundle = OscBundle {
                    timetag: OscTime::try_from(at).unwrap_or(OscTime {
                        seconds: 0,
                        fractional: 1,
                    }),
                    content: vec![OscPacket::Message(step.message.clone())],
                };
                self.connection.borrow().send(OscPacket::Bundle(bundle))?;
            } else {
                self.connection.borrow().send(step.message.clone())?;
            }
        }
        if !run.ran.is_empty() {
            let fails = self.connection.borrow().sync(self.timeout)?;
            if let Some((address, reason)) = fails.into_iter().next() {
                return Err(ClientError::Failed { address, reason }.into());
            }
        }
        if loaded {
            // Another patch: its own table, tempo and nothing to undo.
            let table = self.connection.borrow().table(self.timeout)?;
            *self.state.borrow_mut() = State::new(table, self.bpm());
            self.heading.borrow_mut().clear();
        } else {
            self.state.borrow_mut().applied(&run);
            self.heading
                .borrow_mut()
                .note(&run, std::time::Instant::now());
            if let Some(bpm) = run.bpm {
                *self.tempo_sent.borrow_mut() = Some((bpm, std::time::Instant::now()));
            }
        }
        Ok(Answer {
            ran: run.ran.iter().map(|s| s.text.clone()).collect(),
            said,
        })
    }
}

/// Where the history is kept: `$XDG_STATE_HOME/chronus/shell_history`, else
/// `~/.local/state/chronus/shell_history`.
fn history_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/state"))
        })?;
    Some(base.join("chronus").join("shell_history"))
}

/// Tab completion from the shell's state (the server's table).
struct Helper {
    state: Rc<RefCell<State>>,
}

impl rustyline::completion::Completer for Helper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &rustyline::Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let before = line.get(..pos).unwrap_or(line);
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        Ok((
            start,
            chronus_shell::completions(&self.state.borrow(), before),
        ))
    }
}

impl rustyline::hint::Hinter for Helper {
    type Hint = String;
}
impl rustyline::highlight::Highlighter for Helper {}
impl rustyline::validate::Validator for Helper {}
impl rustyline::Helper for Helper {}

/// Connects to the server and asks its address table; the connection subscribed to the
/// `failover` topic, which keeps it open while the player thinks: the server closes a TCP
/// connection idle for a minute unless it holds a subscription, and a reconnect forgets
/// what this shell remembers of the session (undo, held notes, ramps). Failovers are rare,
/// and their pushes are only drained ([`Shell::line`]).
fn connect(server: SocketAddr, timeout: Duration) -> Result<(Connection, AddressTable), String> {
    let connection = Connection::connect(server, timeout).map_err(|e| {
        format!("cannot reach the server at {server} (is `chronus serve` running?): {e}")
    })?;
    let table = connection
        .table(timeout)
        .map_err(|e| format!("the server at {server} did not give its address table: {e}"))?;
    connection
        .subscribe(&["failover"], timeout)
        .map_err(|e| format!("the server at {server} refused a subscription: {e}"))?;
    Ok((connection, table))
}

/// `chronus shell`.
pub fn run(args: ShellArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs_f64(args.timeout.clamp(0.1, 3600.0));
    let (connection, table) = match connect(args.osc, timeout) {
        Ok(connected) => connected,
        Err(why) if args.json => {
            // A program reading objects gets one for this too (and the exit code).
            println!("{}", serde_json::json!({ "ok": false, "error": why }));
            return Ok(ExitCode::FAILURE);
        }
        Err(why) => anyhow::bail!(why),
    };
    let shell = Shell {
        server: args.osc,
        connection: RefCell::new(connection),
        heading: RefCell::new(Heading::default()),
        state: Rc::new(RefCell::new(State::new(table, 120.0))),
        timeout,
        tempo_sent: RefCell::new(None),
    };
    let bpm = shell.bpm();
    shell.state.borrow_mut().bpm = bpm;
    if std::io::stdin().is_terminal() && !args.json {
        interactive(&shell)
    } else {
        piped(&shell, &args)
    }
}

/// The line editor's loop: banner, prompt with the tempo, history, completion.
fn interactive(shell: &Shell) -> anyhow::Result<ExitCode> {
    use rustyline::error::ReadlineError;
    let config = rustyline::Config::builder()
        .completion_type(rustyline::CompletionType::List)
        .auto_add_history(true)
        .max_history_size(10_000)?
        .build();
    let mut editor: rustyline::Editor<Helper, rustyline::history::DefaultHistory> =
        rustyline::Editor::with_config(config)?;
    editor.set_helper(Some(Helper {
        state: Rc::clone(&shell.state),
    }));
    let history = history_file();
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = editor.load_history(path);
    }
    {
        let state = shell.state.borrow();
        let instruments = chronus_shell::instruments(&state.table);
        let tracks = chronus_shell::tracks(&state.table);
        println!(
            "chronus shell on {}: instruments {}; tracks {}. `help` lists the commands, Tab completes, Ctrl-D leaves.",
            shell.server,
            if instruments.is_empty() { "none".to_string() } else { instruments.join(", ") },
            if tracks.is_empty() { "none".to_string() } else { tracks.join(", ") },
        );
    }
    loop {
        let prompt = format!(
            "chronus {}bpm> ",
            chronus_shell::number(shell.state.borrow().bpm)
        );
        match editor.readline(&prompt) {
            Ok(line) => {
                let (notice, result) = shell.line(&line);
                if let Some(notice) = notice {
                    println!("{notice}");
                }
                match result {
                    Ok(Next::Quit) => break,
                    Ok(Next::Go(answer)) => {
                        if !answer.said.is_empty() {
                            println!("{}", answer.said);
                        }
                    }
                    Err(e) => println!("error: {e}"),
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(ExitCode::SUCCESS)
}

/// From a pipe or a file (or `--json`): one answer line per command, nothing else.
fn piped(shell: &Shell, args: &ShellArgs) -> anyhow::Result<ExitCode> {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    let mut failed = false;
    let mut input = stdin.lock();
    let mut bytes = Vec::new();
    let mut number = 0usize;
    loop {
        bytes.clear();
        if input
            .read_until(b'\n', &mut bytes)
            .context("cannot read the commands")?
            == 0
        {
            break;
        }
        number += 1;
        while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            bytes.pop();
        }
        // A line that is not UTF-8 is an error of that line, not the end of the session.
        let (line, result) = match String::from_utf8(bytes.clone()) {
            Ok(line) => {
                let trimmed = line.trim();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let (notice, result) = shell.line(&line);
                if let Some(notice) = notice {
                    if args.json {
                        let object = serde_json::json!({ "notice": notice });
                        writeln!(out, "{object}")?;
                    } else {
                        eprintln!("chronus shell: {notice}");
                    }
                }
                (line, result)
            }
            Err(_) => (
                String::from_utf8_lossy(&bytes).into_owned(),
                Err(LineError {
                    message: "this line is not UTF-8 text (type the commands as UTF-8)".into(),
                    suggestion: None,
                }),
            ),
        };
        let trimmed = line.trim();
        match (&result, args.json) {
            (Ok(Next::Quit), _) => break,
            (Ok(Next::Go(answer)), false) => {
                writeln!(out, "{}", answer.said.replace('\n', " | "))?;
            }
            (Ok(Next::Go(answer)), true) => {
                let object = serde_json::json!({
                    "line": trimmed,
                    "ok": true,
                    "ran": answer.ran,
                    "said": answer.said,
                });
                writeln!(out, "{object}")?;
            }
            (Err(e), false) => {
                eprintln!("chronus shell: line {number}: {trimmed}: {e}");
            }
            (Err(e), true) => {
                let object = serde_json::json!({
                    "line": trimmed,
                    "ok": false,
                    "error": e.message,
                    "suggestion": e.suggestion,
                });
                writeln!(out, "{object}")?;
            }
        }
        out.flush()?;
        if result.is_err() {
            failed = true;
            if !args.keep_going {
                break;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Review 16, finding 10: `--timeout` is a finite number from 0.1 to 3600 s, checked
    /// by clap's value parser, so `inf`, `1e30`, `-1` and `nan` never reach a `Duration`.
    #[test]
    fn the_timeout_is_finite_and_sane() {
        assert_eq!(parse_timeout("2"), Ok(2.0));
        assert_eq!(parse_timeout("0.1"), Ok(0.1));
        assert_eq!(parse_timeout("3600"), Ok(3600.0));
        for bad in ["inf", "1e30", "-1", "nan", "0", "0.05", "3601", "soon"] {
            let error = parse_timeout(bad).unwrap_err();
            assert!(error.contains(bad), "{bad}: {error}");
        }
    }
}
