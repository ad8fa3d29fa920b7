//! The language of `chronus shell`: a line typed by a person or an agent, and the shell's
//! state (the server's address table, the tempo last seen, what `undo` reverts), in; the
//! OSC messages to send, each with its exact text, and what to say, out.
//!
//! This crate is for the words: notes and chords ([`music`]), patterns, tempo, ramps, the
//! library, and the plain phrases (`brighter`, `more reverb`), each mapped by one table
//! ([`phrases`]) to a ramped change of the running patch. It is pure: no sockets, no
//! terminal, no clock. What it needs to know of the server it is given: the table in
//! [`State`], and the current value of a parameter through the `current` function the
//! caller passes to [`interpret`] (the shell asks the server with `/get`). Every message
//! it produces is built with [`chronus_protocol::build_message`], which checks it exactly
//! as the server will, so a value out of range fails here with the server's own reason.
//!
//! ```
//! use chronus_shell::{interpret, Outcome, State};
//! # let table = chronus_shell::tests_support::table();
//! let state = State::new(table, 120.0);
//! let Ok(Outcome::Run(run)) = interpret(&state, "play Cmaj7 for 2 beats", &mut |_| None) else {
//!     panic!()
//! };
//! assert_eq!(run.said, "playing Cmaj7 (C4 E4 G4 B4) for 2 beats on keys");
//! assert_eq!(run.ran[0].text, "/note/play keys 60 100 1");
//! ```

pub mod help;
pub mod music;
pub mod phrases;
#[doc(hidden)]
pub mod tests_support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chronus_protocol::{build_message, AddressTable, ArgKind};
use rosc::{OscMessage, OscType};

/// What the shell knows between lines.
pub struct State {
    /// The server's address table (asked once with `/table`; again after `load`).
    pub table: AddressTable,
    /// The tempo last seen (the server's `clock_bpm` metric), for beats to seconds.
    pub bpm: f64,
    /// What `undo` reverts, the latest last.
    undo: Vec<Undo>,
    /// The pattern this shell last gave each track (the one `undo` of a pattern restores).
    patterns: BTreeMap<String, String>,
    /// The notes this shell holds (`hold`, not yet `release`d): (instrument, note text).
    held: BTreeSet<(String, String)>,
}

impl State {
    /// A fresh shell's state for a server with `table`, at `bpm`.
    pub fn new(table: AddressTable, bpm: f64) -> State {
        State {
            table,
            bpm,
            undo: Vec::new(),
            patterns: BTreeMap::new(),
            held: BTreeSet::new(),
        }
    }

    /// Takes in a run the server accepted: its undo, its tempo, its pattern. (A run the
    /// server refused changes nothing, so `undo` never reverts what did not happen.)
    pub fn applied(&mut self, run: &Run) {
        match &run.undo {
            UndoChange::Push(undo) => self.undo.push(undo.clone()),
            UndoChange::Pop => {
                self.undo.pop();
            }
            UndoChange::None => {}
        }
        if let Some(bpm) = run.bpm {
            self.bpm = bpm;
        }
        if let Some((track, pattern)) = &run.pattern {
            self.patterns.insert(track.clone(), pattern.clone());
        }
        for step in &run.ran {
            let args: Vec<String> = step.message.args.iter().map(arg_text).collect();
            match (step.message.addr.as_str(), args.as_slice()) {
                ("/note/on", [instrument, note, ..]) => {
                    self.held.insert((instrument.clone(), note.clone()));
                }
                ("/note/off", [instrument, note, ..]) => {
                    self.held.remove(&(instrument.clone(), note.clone()));
                }
                ("/panic", _) => self.held.clear(),
                _ => {}
            }
        }
    }

    /// How many changes `undo` can still revert.
    pub fn undo_depth(&self) -> usize {
        self.undo.len()
    }
}

/// Where the parameters this shell ramped are heading: address -> (target, when the
/// ramp ends). Relative phrases and `undo` start from a ramp's target while it runs, not
/// from `/get`'s value mid-ramp (else `brighter` twice in a row barely moves, and
/// `brighter` then `a bit darker` ends darker than before). The caller gives the time,
/// so this stays clock-free.
#[derive(Debug, Default, Clone)]
pub struct Heading {
    targets: BTreeMap<String, (f32, std::time::Instant)>,
}

impl Heading {
    /// Takes in a run the server accepted at `now`: each `/ramp` it sent is remembered
    /// until it ends; a plain set of a parameter forgets that parameter's ramp.
    pub fn note(&mut self, run: &Run, now: std::time::Instant) {
        self.targets.retain(|_, (_, end)| *end > now);
        for step in &run.ran {
            let args: Vec<String> = step.message.args.iter().map(arg_text).collect();
            match (step.message.addr.as_str(), args.as_slice()) {
                ("/ramp", [address, target, seconds, ..]) => {
                    if let (Ok(target), Ok(seconds)) =
                        (target.parse::<f32>(), seconds.parse::<f64>())
                    {
                        let length = (step.after + seconds).clamp(0.0, 86_400.0);
                        let end = now + std::time::Duration::from_secs_f64(length);
                        self.targets.insert(address.clone(), (target, end));
                    }
                }
                (address, _) if address.starts_with("/mod/") => {
                    self.targets.remove(address);
                }
                _ => {}
            }
        }
    }

    /// The target of the ramp of `address` still running at `now`, if there is one.
    pub fn target(&self, address: &str, now: std::time::Instant) -> Option<f32> {
        self.targets
            .get(address)
            .filter(|(_, end)| *end > now)
            .map(|(target, _)| *target)
    }

    /// Forgets every ramp (another patch, another server).
    pub fn clear(&mut self) {
        self.targets.clear();
    }
}

/// One OSC message to send, with its text as `chronus send` would take it.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The message, checked against the table.
    pub message: OscMessage,
    /// Its text: `/note/play keys 60 100 1` (a text with spaces in double quotes).
    pub text: String,
    /// Seconds after the line's first message it should sound (the notes of a scale
    /// after the first); 0 for now.
    pub after: f64,
}

impl Step {
    fn new(message: OscMessage, after: f64) -> Step {
        Step {
            text: message_text(&message),
            message,
            after,
        }
    }
}

/// What `undo` does to revert one change: its steps, and what to say.
#[derive(Debug, Clone, PartialEq)]
pub struct Undo {
    /// What the change was, as said (`filter.cutoff back to 1200 Hz`).
    pub what: String,
    /// The messages that revert it.
    pub steps: Vec<Step>,
    /// The tempo it restores (so a later `faster` starts from it).
    pub bpm: Option<f64>,
    /// The track and pattern it restores (so a later pattern's undo restores this one).
    pub pattern: Option<(String, String)>,
}

/// What a run does to the undo history once the server accepted it.
#[derive(Debug, Clone, PartialEq)]
pub enum UndoChange {
    /// Nothing (a note, a query).
    None,
    /// A change to remember.
    Push(Undo),
    /// `undo` itself: the latest change is reverted.
    Pop,
}

/// Messages to send for one line, and what to say once they are taken in.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    /// For a phrase (`brighter`, `faster`): the exact command it ran, which the shell
    /// echoes so a person learns the precise form (`set filter.cutoff 1800 over 1 beat`).
    pub command: Option<String>,
    /// The messages, in order.
    pub ran: Vec<Step>,
    /// What happened, in words: `playing Cmaj7 (C4 E4 G4 B4) for 2 beats on keys`.
    pub said: String,
    /// What it does to the undo history.
    pub undo: UndoChange,
    /// The tempo it sets.
    pub bpm: Option<f64>,
    /// The track and pattern it sets.
    pub pattern: Option<(String, String)>,
}

/// What to do for one line.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Nothing: a blank line or a `#` comment.
    Nothing,
    /// Send messages (and wait for their answers: `/library/…` answer `/done`).
    Run(Run),
    /// Ask the value of a parameter with `/get` and show it as `name = value unit`.
    Get {
        /// The `/get` message.
        step: Step,
        /// The parameter as the user names it: `filter.cutoff`.
        name: String,
        /// Its unit symbol (`Hz`), empty for none.
        unit: String,
    },
    /// Show the server's status summary (`/status` and `/metrics`).
    Status,
    /// Wait (`wait 4 beats`): in a script, lets a ramp finish or a phrase sound before
    /// the next line; nothing is sent.
    Wait {
        /// How long, in seconds.
        seconds: f64,
        /// What to say: `waited 4 beats`.
        said: String,
    },
    /// Show a help text.
    Help(String),
    /// Leave the shell.
    Quit,
}

/// A line the shell cannot do: what is wrong, and what to type instead.
#[derive(Debug, Clone, PartialEq)]
pub struct ShellError {
    /// What went wrong, with which input.
    pub message: String,
    /// A close command, module or parameter (`play`), if there is one.
    pub suggestion: Option<String>,
}

impl ShellError {
    fn new(message: impl Into<String>) -> ShellError {
        ShellError {
            message: message.into(),
            suggestion: None,
        }
    }

    fn suggesting(message: impl Into<String>, suggestion: Option<String>) -> ShellError {
        ShellError {
            message: message.into(),
            suggestion,
        }
    }
}

impl fmt::Display for ShellError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, " (did you mean `{suggestion}`?)")?;
        }
        Ok(())
    }
}

impl std::error::Error for ShellError {}

/// The first words of the commands, for suggestions and completion.
pub const COMMANDS: &[&str] = &[
    "play", "hold", "release", "panic", "sustain", "bpm", "tempo", "set", "get", "load", "save",
    "list", "status", "undo", "wait", "help", "quit", "exit", "start", "stop", "mute", "unmute",
    "faster", "slower", "brighter", "darker", "louder", "quieter", "thicker", "thinner", "more",
    "less", "half", "double",
];

/// The text of an OSC message as `chronus send` takes it: the address, then each
/// argument; a text with a space, a quote or nothing in it goes in double quotes.
pub fn message_text(message: &OscMessage) -> String {
    let mut text = message.addr.clone();
    for arg in &message.args {
        text.push(' ');
        match arg {
            OscType::Float(v) => text.push_str(&number(f64::from(*v))),
            OscType::Double(v) => text.push_str(&number(*v)),
            OscType::Int(v) => text.push_str(&v.to_string()),
            OscType::Long(v) => text.push_str(&v.to_string()),
            OscType::String(s) if s.is_empty() || s.contains([' ', '"', '\t']) => {
                text.push('"');
                text.push_str(&s.replace('"', "\\\""));
                text.push('"');
            }
            OscType::String(s) => text.push_str(s),
            other => text.push_str(&format!("{other:?}")),
        }
    }
    text
}

/// One argument as [`message_text`] writes it, unquoted.
fn arg_text(arg: &OscType) -> String {
    match arg {
        OscType::Float(v) => number(f64::from(*v)),
        OscType::Double(v) => number(*v),
        OscType::Int(v) => v.to_string(),
        OscType::Long(v) => v.to_string(),
        OscType::String(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

/// The most notes one line may play: a line of thousands of notes would overrun the
/// server's rate limit and lose some of them.
pub const MAX_NOTES: usize = 128;

/// A number as the shell shows and sends it: at most 3 decimals, none when whole.
pub fn number(value: f64) -> String {
    let rounded = (value * 1000.0).round() / 1000.0;
    if rounded == rounded.trunc() && rounded.abs() < 1e15 {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}

/// A word or a double-quoted text of a line.
#[derive(Debug, Clone, PartialEq)]
struct Token {
    text: String,
    quoted: bool,
}

/// Splits a line into words and double-quoted texts (`d1 "c3 e3 g3 ~"`).
fn tokens(line: &str) -> Result<Vec<Token>, ShellError> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' || c == '\u{201c}' {
            chars.next();
            let mut text = String::new();
            let mut closed = false;
            for c in chars.by_ref() {
                if c == '"' || c == '\u{201d}' {
                    closed = true;
                    break;
                }
                text.push(c);
            }
            if !closed {
                return Err(ShellError::new(
                    "a quote is not closed: a pattern goes in double quotes, e.g. d1 \"c3 e3 g3 ~\"",
                ));
            }
            out.push(Token { text, quoted: true });
        } else {
            let mut text = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == '"' {
                    break;
                }
                text.push(c);
                chars.next();
            }
            out.push(Token {
                text,
                quoted: false,
            });
        }
    }
    Ok(out)
}

/// Edit distance by characters, counting a swap of two neighbours as one edit (`plya`
/// is one from `play`): the optimal string alignment distance.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for i in 0..=a.len() {
        d[i * width] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(width) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

/// The closest of `candidates` to `word` (case-insensitive), if close enough to be a
/// typo: at most a third of the word's length, at least 1 and at most 3 edits.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

/// A parameter of the running patch, as the shell names it (`filter.cutoff`,
/// `keys.filter.cutoff`).
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// `module.param`.
    pub name: String,
    /// `/mod/<module>/<param>`.
    pub address: String,
    /// Its range.
    pub min: f32,
    /// Its range.
    pub max: f32,
    /// Its unit's symbol (`Hz`), empty for none.
    pub unit: &'static str,
}

/// Every parameter of the table, in its (sorted) order.
pub fn params(table: &AddressTable) -> Vec<Param> {
    table
        .entries()
        .filter(|e| table.param_at(&e.address).is_some())
        .filter_map(|e| {
            let rest = e.address.strip_prefix("/mod/")?;
            let (module, param) = rest.rsplit_once('/')?;
            let ArgKind::Number { unit, min, max, .. } = e.args.first()?.kind else {
                return None;
            };
            Some(Param {
                name: format!("{module}.{param}"),
                address: e.address.clone(),
                min,
                max,
                // A linear factor's "unit" is its range (0..1), a Q a plain number: no unit shown.
                unit: Some(unit.symbol())
                    .filter(|u| !u.contains("..") && *u != "Q")
                    .unwrap_or(""),
            })
        })
        .collect()
}

/// The parameter a name means: exact, else case-insensitive, else the one member of an
/// instrument whose name ends so (`filter.cutoff` for `keys.filter.cutoff` when only
/// one instrument has a `filter`).
///
/// # Errors
/// No such parameter, with the closest name as the suggestion.
pub fn find_param(table: &AddressTable, name: &str) -> Result<Param, ShellError> {
    let all = params(table);
    let lower = name.to_lowercase();
    if let Some(p) = all.iter().find(|p| p.name == name) {
        return Ok(p.clone());
    }
    if let Some(p) = all.iter().find(|p| p.name.to_lowercase() == lower) {
        return Ok(p.clone());
    }
    let suffix = format!(".{lower}");
    let ending: Vec<&Param> = all
        .iter()
        .filter(|p| p.name.to_lowercase().ends_with(&suffix))
        .collect();
    if let [one] = ending.as_slice() {
        return Ok((*one).clone());
    }
    if ending.len() > 1 {
        let names: Vec<&str> = ending.iter().map(|p| p.name.as_str()).collect();
        return Err(ShellError::new(format!(
            "`{name}` is in more than one instrument: say which, {}",
            names.join(" or ")
        )));
    }
    // The names a parameter answers to: its own, and an instrument member's without the
    // instrument (`filter.cutoff` for `bass.filter.cutoff`), as accepted above.
    let spoken = || {
        all.iter().flat_map(|p| {
            let short = p.name.split_once('.').map(|(_, rest)| rest);
            std::iter::once(p.name.as_str()).chain(short.filter(|rest| rest.contains('.')))
        })
    };
    if !name.contains('.') {
        return Err(ShellError::suggesting(
            format!("`{name}` is not a parameter: name one as module.param, e.g. filter.cutoff"),
            closest(name, spoken()),
        ));
    }
    let (module, _) = name.rsplit_once('.').unwrap_or((name, ""));
    let modules: Vec<&str> = all
        .iter()
        .filter_map(|p| p.name.rsplit_once('.').map(|(m, _)| m))
        .collect();
    if modules.iter().any(|m| m.eq_ignore_ascii_case(module)) {
        let of_module = all.iter().filter(|p| {
            p.name
                .rsplit_once('.')
                .is_some_and(|(m, _)| m.eq_ignore_ascii_case(module))
        });
        let names: Vec<&str> = of_module.map(|p| p.name.as_str()).collect();
        return Err(ShellError::suggesting(
            format!(
                "module `{module}` has no parameter `{}`; it has {}",
                name.rsplit_once('.').map_or("", |(_, p)| p),
                names.join(", ")
            ),
            closest(name, names.iter().copied()),
        ));
    }
    Err(ShellError::suggesting(
        format!("this patch has no module `{module}`"),
        closest(name, spoken()).or_else(|| closest(module, modules.iter().copied())),
    ))
}

/// The patch's tracks (the sequencer's), in order.
pub fn tracks(table: &AddressTable) -> Vec<String> {
    table
        .module_types()
        .filter(|(_, t)| *t == "track")
        .map(|(id, _)| id.to_string())
        .collect()
}

/// The patch's instruments, in order (the first plays notes that name none).
pub fn instruments(table: &AddressTable) -> Vec<String> {
    table.instruments().map(|(n, _)| n.to_string()).collect()
}

/// Whether instrument `name` has a `drum` member (a kit, not pitches).
fn has_drums(table: &AddressTable, name: &str) -> bool {
    table.module_types().any(|(id, kind)| {
        kind == "drum"
            && id
                .strip_prefix(name)
                .is_some_and(|member| member.starts_with('.'))
    })
}

/// Builds a message from text arguments and checks it as the server will.
fn build(table: &AddressTable, address: &str, args: &[&str]) -> Result<OscMessage, ShellError> {
    build_message(table, address, args).map_err(|fail| ShellError::new(fail.reason))
}

/// A length: `N beats` (or `beat`, `b`), `N bars` (4 beats), `N seconds` (`s`, `sec`),
/// `N ms`; a bare number is beats. Returns (seconds, the words as shown: `2 beats`).
fn duration(words: &[String], bpm: f64) -> Result<(f64, String), ShellError> {
    let bad = || {
        ShellError::new(format!(
            "`{}` is not a length: say e.g. `2 beats`, `1 bar` or `0.5 seconds`",
            words.join(" ")
        ))
    };
    let (amount, unit) = match words {
        [one] => {
            // `2beats`, `500ms`, `2`
            let split = one
                .find(|c: char| c.is_ascii_alphabetic())
                .unwrap_or(one.len());
            (
                one.get(..split).unwrap_or(""),
                one.get(split..).unwrap_or(""),
            )
        }
        [amount, unit] => (amount.as_str(), unit.as_str()),
        _ => return Err(bad()),
    };
    let amount: f64 = amount.parse().map_err(|_| bad())?;
    if !amount.is_finite() || amount < 0.0 {
        return Err(bad());
    }
    let plural = |n: f64, one: &str| {
        if n == 1.0 {
            format!("{} {one}", number(n))
        } else {
            format!("{} {one}s", number(n))
        }
    };
    let beat_seconds = 60.0 / bpm;
    Ok(match unit.to_lowercase().as_str() {
        "" | "beat" | "beats" | "b" => (amount * beat_seconds, plural(amount, "beat")),
        "bar" | "bars" => (amount * 4.0 * beat_seconds, plural(amount, "bar")),
        "s" | "sec" | "secs" | "second" | "seconds" => (amount, plural(amount, "second")),
        "ms" => (amount / 1000.0, format!("{} ms", number(amount))),
        _ => return Err(bad()),
    })
}

/// Interprets one line against `state`. `current` gives the current value of a
/// parameter by address (the shell asks `/get`; `None` if it cannot), used by relative
/// phrases and to remember what `undo` restores.
///
/// # Errors
/// A [`ShellError`] saying what is wrong with the line and, where one is close, what
/// was meant: an unknown word, module, parameter, instrument or track, a value out of
/// range (with the range), a pattern the server would refuse (with its reason).
pub fn interpret(
    state: &State,
    line: &str,
    current: &mut dyn FnMut(&str) -> Option<f32>,
) -> Result<Outcome, ShellError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Outcome::Nothing);
    }
    let tokens = tokens(line)?;
    let words: Vec<String> = tokens.iter().map(|t| t.text.to_lowercase()).collect();
    let Some(first) = words.first() else {
        return Ok(Outcome::Nothing);
    };
    let rest = &words[1..];
    let table = &state.table;
    // A pattern for a track: `<track> "<pattern>"`.
    if let [name, pattern, tail @ ..] = tokens.as_slice() {
        if pattern.quoted && !name.quoted {
            return set_pattern(state, &name.text, &pattern.text, tail);
        }
    }
    if let Some(phrase) = phrases::parse(&words) {
        return phrases::run(state, phrase, current);
    }
    match first.as_str() {
        "quit" | "exit" | "bye" | "q" if rest.is_empty() => Ok(Outcome::Quit),
        "help" | "?" => match rest {
            [] | [_] => help::text(rest.first().map(String::as_str))
                .map(Outcome::Help)
                .ok_or_else(|| {
                    ShellError::suggesting(
                        format!(
                            "no help on `{}`; the topics are {}",
                            rest[0],
                            help::TOPICS.join(", ")
                        ),
                        closest(&rest[0], help::TOPICS.iter().copied()),
                    )
                }),
            _ => Err(ShellError::new(format!(
                "say one topic: `help play`; the topics are {}",
                help::TOPICS.join(", ")
            ))),
        },
        "play" => play(state, &tokens[1..], Hold::Play),
        "hold" => play(state, &tokens[1..], Hold::On),
        "release" => play(state, &tokens[1..], Hold::Off),
        "panic" => simple(table, "/panic", &[], "every voice silenced"),
        "sustain" => sustain(state, rest),
        "bpm" | "tempo" => match rest {
            [bpm] => {
                let value: f64 = bpm.parse().map_err(|_| {
                    ShellError::new(format!("`{bpm}` is not a tempo: say e.g. `bpm 124`"))
                })?;
                tempo(state, value, None)
            }
            _ => Err(ShellError::new(
                "say the tempo in beats per minute: `bpm 124`",
            )),
        },
        "set" => set(state, &tokens[1..], current),
        "get" => match rest {
            [_] => {
                let param = find_param(table, &tokens[1].text)?;
                let message = build(table, "/get", &[&param.address])?;
                Ok(Outcome::Get {
                    step: Step::new(message, 0.0),
                    name: param.name,
                    unit: param.unit.to_string(),
                })
            }
            _ => Err(ShellError::new("say which parameter: `get filter.cutoff`")),
        },
        "load" | "save" => match tokens.get(1..) {
            Some([name]) => {
                let address = format!("/library/{first}");
                let message = build(table, &address, &[&name.text])?;
                let said = if first == "load" {
                    format!("loaded {}", name.text)
                } else {
                    format!("saved the running patch as {}", name.text)
                };
                Ok(Outcome::Run(Run {
                    command: None,
                    ran: vec![Step::new(message, 0.0)],
                    said,
                    undo: UndoChange::None,
                    bpm: None,
                    pattern: None,
                }))
            }
            _ => Err(ShellError::new(format!(
                "say the patch's name: `{first} pad` (letters, digits, _ and -)"
            ))),
        },
        "list" | "ls" if rest.is_empty() => simple(table, "/library/list", &[], "the library:"),
        "status" if rest.is_empty() => Ok(Outcome::Status),
        "wait" | "sleep" => {
            let (seconds, shown) = duration(rest, state.bpm)?;
            if seconds > 600.0 {
                return Err(ShellError::new("wait at most 10 minutes at a time"));
            }
            Ok(Outcome::Wait {
                seconds,
                said: format!("waited {shown}"),
            })
        }
        "undo" if rest.is_empty() => undo(state),
        "start" | "unmute" => start_stop(state, first, rest, true),
        "stop" | "mute" => start_stop(state, first, rest, false),
        _ => Err(unknown(state, &tokens)),
    }
}

/// The error for a line whose first word is no command.
fn unknown(state: &State, tokens: &[Token]) -> ShellError {
    let word = tokens.first().map_or("", |t| t.text.as_str());
    let tracks = tracks(&state.table);
    if tracks.iter().any(|t| t.eq_ignore_ascii_case(word)) {
        return ShellError::new(format!(
            "a pattern for track `{word}` goes in double quotes: {word} \"c3 e3 g3 ~\""
        ));
    }
    let mut candidates: Vec<&str> = COMMANDS.to_vec();
    candidates.extend(phrases::PHRASE_WORDS);
    candidates.extend(tracks.iter().map(String::as_str));
    ShellError::suggesting(
        format!("`{word}` is not a command (`help` lists them)"),
        closest(word, candidates),
    )
}

/// A run of one message with nothing to undo.
fn simple(
    table: &AddressTable,
    address: &str,
    args: &[&str],
    said: &str,
) -> Result<Outcome, ShellError> {
    Ok(Outcome::Run(Run {
        command: None,
        ran: vec![Step::new(build(table, address, args)?, 0.0)],
        said: said.to_string(),
        undo: UndoChange::None,
        bpm: None,
        pattern: None,
    }))
}

/// What a note word does.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hold {
    /// `/note/play` for a length.
    Play,
    /// `/note/on`.
    On,
    /// `/note/off`.
    Off,
}

/// The instrument named after `on`, or else the patch's first that plays pitches (one
/// without a `drum` member: a chord on the demo's drum kit would be noise), or else its
/// first.
fn instrument(state: &State, named: Option<&str>) -> Result<String, ShellError> {
    let all = instruments(&state.table);
    match named {
        Some(name) => all
            .iter()
            .find(|i| i.eq_ignore_ascii_case(name))
            .cloned()
            .ok_or_else(|| {
                ShellError::suggesting(
                    format!(
                        "this patch has no instrument `{name}`{}",
                        if all.is_empty() {
                            String::new()
                        } else {
                            format!(" (it has {})", all.join(", "))
                        }
                    ),
                    closest(name, all.iter().map(String::as_str)),
                )
            }),
        None => all
            .iter()
            .find(|i| !has_drums(&state.table, i))
            .or(all.first())
            .cloned()
            .ok_or_else(|| {
                ShellError::new(
                    "this patch has no instrument to play notes on (`load keys` loads one)",
                )
            }),
    }
}

/// `play …`, `hold …`, `release …`.
fn play(state: &State, tokens: &[Token], hold: Hold) -> Result<Outcome, ShellError> {
    let verb = match hold {
        Hold::Play => "play",
        Hold::On => "hold",
        Hold::Off => "release",
    };
    let words: Vec<String> = tokens.iter().map(|t| t.text.clone()).collect();
    // The things to play, up to the first keyword.
    let keyword = |w: &str| {
        matches!(
            w.to_lowercase().as_str(),
            "for" | "on" | "velocity" | "vel" | "at"
        )
    };
    let end = words.iter().position(|w| keyword(w)).unwrap_or(words.len());
    let things = &words[..end];
    if things.is_empty() {
        return Err(ShellError::new(format!(
            "say what to {verb}: a note (C4, F#3, 60), a chord (Cmaj7, Am, G7/B) or a scale (C minor scale)"
        )));
    }
    let mut seconds_words: Option<Vec<String>> = None;
    let mut named_instrument = None;
    let mut velocity = 100.0f64;
    let mut said_clauses: Vec<&str> = Vec::new();
    let mut i = end;
    while i < words.len() {
        let word = words[i].to_lowercase();
        let clause = match word.as_str() {
            "vel" | "at" => "velocity",
            "for" => "for",
            "on" => "on",
            _ => "velocity",
        };
        if said_clauses.contains(&clause) {
            return Err(ShellError::new(format!(
                "`{clause}` is said twice: say it once, e.g. `{verb} C4 on keys velocity 90`"
            )));
        }
        said_clauses.push(clause);
        let value_end = (i + 1..words.len())
            .find(|&j| keyword(&words[j]))
            .unwrap_or(words.len());
        let values = &words[i + 1..value_end];
        match word.as_str() {
            "for" if hold == Hold::Play => seconds_words = Some(values.to_vec()),
            "on" => match values {
                [name] => named_instrument = Some(name.clone()),
                _ => return Err(ShellError::new("say one instrument after `on`: `on keys`")),
            },
            "velocity" | "vel" | "at" if hold != Hold::Off => {
                velocity = match values {
                    [v] => v.parse().ok().filter(|v: &f64| (1.0..=127.0).contains(v)),
                    _ => None,
                }
                .ok_or_else(|| {
                    ShellError::new(
                        "a velocity is a number from 1 to 127: `velocity 90` (velocity 0 is a note-off: say `release C4`)",
                    )
                })?;
            }
            _ => {
                return Err(ShellError::new(format!(
                    "`{word}` does not go with {verb}: say `{verb} C4{} [on keys] [velocity 90]`",
                    if hold == Hold::Play {
                        " [for 2 beats]"
                    } else {
                        ""
                    }
                )))
            }
        }
        i = value_end;
    }
    let instrument = instrument(state, named_instrument.as_deref())?;
    // What to play: a scale, or notes and chords at once.
    let lower: Vec<String> = things.iter().map(|w| w.to_lowercase()).collect();
    let scale = scale_of(&lower);
    let (notes, name, flats, gap) = match &scale {
        Some((root, flats, steps, shown)) => {
            let mut notes: Vec<f32> = steps.iter().map(|s| (root + s) as f32).collect();
            notes.push((root + 12) as f32);
            (notes, shown.clone(), *flats, true)
        }
        None => {
            let mut notes = Vec::new();
            let mut flats = false;
            for word in things {
                if let Some(chord) = music::parse_chord(word) {
                    flats |= chord.flats;
                    notes.extend(chord.notes);
                } else if let Some(note) = music::parse_note(word) {
                    flats |= word.get(1..2) == Some("b");
                    notes.push(note);
                } else {
                    return Err(ShellError::new(format!(
                        "`{word}` is not a note (C4, F#3, Bb2, 60), a chord (Cmaj7, Am, G7/B, Dm7b5) or a scale (C minor scale)"
                    )));
                }
            }
            let shown: Vec<String> = things.iter().map(|w| shown_name(w)).collect();
            (notes, shown.join(" "), flats, false)
        }
    };
    if notes.len() > MAX_NOTES {
        return Err(ShellError::new(format!(
            "{} notes in one line: at most {MAX_NOTES} (play the rest in another line)",
            notes.len()
        )));
    }
    if notes.iter().any(|n| !(0.0..=127.0).contains(n)) {
        return Err(ShellError::new(format!(
            "`{name}` goes beyond the notes 0..127 (C-1..G9)"
        )));
    }
    let (length, shown_length) = match &seconds_words {
        Some(w) => duration(w, state.bpm)?,
        None if gap => duration(&["0.5".to_string()], state.bpm)?,
        None => duration(&["1".to_string()], state.bpm)?,
    };
    if hold == Hold::Play && (length <= 0.0 || number(length) == "0") {
        return Err(ShellError::new(
            "a note lasts longer than nothing: `for 1 beat`",
        ));
    }
    let seconds = number(length);
    let velocity_text = number(velocity);
    let table = &state.table;
    let mut ran = Vec::new();
    for (i, note) in notes.iter().enumerate() {
        let note_text = number(f64::from(*note));
        let message = match hold {
            Hold::Play => build(
                table,
                "/note/play",
                &[&instrument, &note_text, &velocity_text, &seconds],
            )?,
            Hold::On => build(
                table,
                "/note/on",
                &[&instrument, &note_text, &velocity_text],
            )?,
            Hold::Off => build(table, "/note/off", &[&instrument, &note_text])?,
        };
        let after = if gap { i as f64 * length } else { 0.0 };
        ran.push(Step::new(message, after));
    }
    let spelled: Vec<String> = notes.iter().map(|n| music::note_name(*n, flats)).collect();
    let spelled = spelled.join(" ");
    let shows_notes = name.to_uppercase() != spelled.to_uppercase();
    let named = if shows_notes {
        format!("{name} ({spelled})")
    } else {
        name.clone()
    };
    let said = match hold {
        Hold::Play if gap => format!("playing {named}, each for {shown_length}, on {instrument}"),
        Hold::Play => format!("playing {named} for {shown_length} on {instrument}"),
        Hold::On => format!("holding {named} on {instrument} (`release {name}` ends it)"),
        Hold::Off => {
            let notes: Vec<String> = notes.iter().map(|n| number(f64::from(*n))).collect();
            let held = notes
                .iter()
                .filter(|n| state.held.contains(&(instrument.clone(), (*n).clone())))
                .count();
            if held == notes.len() {
                format!("released {named} on {instrument}")
            } else if held == 0 {
                format!("sent note-off for {named} on {instrument} (this shell was not holding it)")
            } else {
                format!("released {named} on {instrument} ({held} of {} notes were held by this shell; note-off sent for all)", notes.len())
            }
        }
    };
    Ok(Outcome::Run(Run {
        command: None,
        ran,
        said,
        undo: UndoChange::None,
        bpm: None,
        pattern: None,
    }))
}

/// A note or chord word as shown: a note name spelled as [`music::note_name`] does
/// (`c4` is `C4`), a chord with its root capitalised (`cmaj7` is `Cmaj7`).
fn shown_name(word: &str) -> String {
    if music::parse_chord(word).is_none() && word.parse::<f32>().is_err() {
        if let Some(note) = music::parse_note(word) {
            return music::note_name(note, word.get(1..2) == Some("b"));
        }
    }
    let mut chars = word.chars();
    chars.next().map_or(String::new(), |c| {
        c.to_uppercase().collect::<String>() + chars.as_str()
    })
}

/// A scale in the words of `play`: `c minor scale`, `d dorian`, `eb3 blues scale`:
/// (root, flats, steps, name as shown).
fn scale_of(words: &[String]) -> Option<(i32, bool, &'static [i32], String)> {
    let (root_word, rest) = words.split_first()?;
    let (root, flats) = music::parse_scale_root(root_word)?;
    let said_scale = rest.last().is_some_and(|w| w == "scale");
    let name_words = if said_scale {
        &rest[..rest.len() - 1]
    } else {
        rest
    };
    if name_words.is_empty() {
        return None;
    }
    let name = name_words.join(" ");
    let steps = music::scale_steps(&name)?;
    // Without the word `scale`, `C minor` is the chord (and so is `C major`).
    if !said_scale && matches!(name.as_str(), "major" | "minor") {
        return None;
    }
    let shown_root = music::note_name(root as f32, flats);
    let shown_root = shown_root.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
    Some((root, flats, steps, format!("{shown_root} {name} scale")))
}

/// `sustain on|off [on <instrument>]`.
fn sustain(state: &State, rest: &[String]) -> Result<Outcome, ShellError> {
    let (down, named) = match rest {
        [v] => (v.as_str(), None),
        [v, on, name] if on == "on" => (v.as_str(), Some(name.as_str())),
        _ => return Err(ShellError::new("say `sustain on` or `sustain off`")),
    };
    let down = match down {
        "on" | "down" | "1" => true,
        "off" | "up" | "0" => false,
        _ => return Err(ShellError::new("say `sustain on` or `sustain off`")),
    };
    let instrument = instrument(state, named)?;
    simple(
        &state.table,
        "/sustain",
        &[&instrument, if down { "1" } else { "0" }],
        &format!(
            "sustain pedal {} on {instrument}",
            if down { "down" } else { "up" }
        ),
    )
}

/// A change of tempo to `bpm` (the phrase it came from, if one).
pub(crate) fn tempo(state: &State, bpm: f64, phrase: Option<&str>) -> Result<Outcome, ShellError> {
    let bpm = (bpm * 1000.0).round() / 1000.0;
    let text = number(bpm);
    let message = build(&state.table, "/clock/bpm", &[&text])?;
    let before = number(state.bpm);
    let undo = build(&state.table, "/clock/bpm", &[&before])
        .map(|m| Undo {
            what: format!("tempo back to {before} bpm"),
            steps: vec![Step::new(m, 0.0)],
            bpm: Some(state.bpm),
            pattern: None,
        })
        .map_or(UndoChange::None, UndoChange::Push);
    Ok(Outcome::Run(Run {
        command: phrase.map(|_| format!("bpm {text}")),
        ran: vec![Step::new(message, 0.0)],
        said: format!("tempo {before} -> {text} bpm, from the next beat"),
        undo,
        bpm: Some(bpm),
        pattern: None,
    }))
}

/// `set <module>.<param> [to] <value> [over <length>]`.
fn set(
    state: &State,
    tokens: &[Token],
    current: &mut dyn FnMut(&str) -> Option<f32>,
) -> Result<Outcome, ShellError> {
    let usage =
        || ShellError::new("say `set filter.cutoff 800` or `set filter.cutoff 800 over 4 beats`");
    let words: Vec<String> = tokens.iter().map(|t| t.text.clone()).collect();
    let (name, rest) = words.split_first().ok_or_else(usage)?;
    let rest: Vec<String> = match rest.first().map(|w| w.to_lowercase()) {
        Some(w) if w == "to" || w == "=" => rest[1..].to_vec(),
        _ => rest.to_vec(),
    };
    let (value, over) = match rest.as_slice() {
        [value] => (value, None),
        [value, over, length @ ..] if over.eq_ignore_ascii_case("over") && !length.is_empty() => {
            (value, Some(length.to_vec()))
        }
        _ => return Err(usage()),
    };
    let param = find_param(&state.table, name)?;
    let target: f64 = value.parse().map_err(|_| {
        ShellError::new(format!(
            "`{value}` is not a number: {} takes {}..{} {}",
            param.name,
            number(f64::from(param.min)),
            number(f64::from(param.max)),
            param.unit
        ))
    })?;
    let over = match over {
        Some(words) => Some(duration(&words, state.bpm)?),
        None => None,
    };
    change(state, &param, target, over, None, current)
}

/// Sets `param` to `target` now or over a length, remembering the value before for `undo`.
pub(crate) fn change(
    state: &State,
    param: &Param,
    target: f64,
    over: Option<(f64, String)>,
    phrase: Option<String>,
    current: &mut dyn FnMut(&str) -> Option<f32>,
) -> Result<Outcome, ShellError> {
    let table = &state.table;
    let target_text = number(target);
    let unit = if param.unit.is_empty() {
        String::new()
    } else {
        format!(" {}", param.unit)
    };
    let (message, over_said, command) = match &over {
        Some((seconds, shown)) => {
            let message = build(
                table,
                "/ramp",
                &[&param.address, &target_text, &number(*seconds)],
            )
            .map_err(|e| ShellError::new(e.message.replace("/ramp", &param.name)))?;
            // The ramp's own check names no range: check the value as a set would.
            build(table, &param.address, &[&target_text])?;
            (
                message,
                format!(" over {shown}"),
                format!("set {} {target_text} over {shown}", param.name),
            )
        }
        None => (
            build(table, &param.address, &[&target_text])?,
            String::new(),
            format!("set {} {target_text}", param.name),
        ),
    };
    let before = current(&param.address);
    let undo = match before {
        Some(before) => {
            let before_text = number(f64::from(before));
            let beat = number(60.0 / state.bpm);
            build(table, "/ramp", &[&param.address, &before_text, &beat])
                .map(|m| {
                    UndoChange::Push(Undo {
                        what: format!("{} back to {before_text}{unit}", param.name),
                        steps: vec![Step::new(m, 0.0)],
                        bpm: None,
                        pattern: None,
                    })
                })
                .unwrap_or(UndoChange::None)
        }
        None => UndoChange::None,
    };
    let from = before.map_or(String::new(), |b| format!("{} -> ", number(f64::from(b))));
    let said = format!("{} {from}{target_text}{unit}{over_said}", param.name);
    let said = match &phrase {
        Some(words) => format!("{words} -> {command} ({said})"),
        None => said,
    };
    Ok(Outcome::Run(Run {
        command: phrase.map(|_| command),
        ran: vec![Step::new(message, 0.0)],
        said,
        undo,
        bpm: None,
        pattern: None,
    }))
}

/// The patch's track called `name` (in any case), or an error naming the tracks there are
/// and the closest one.
fn track_named(table: &AddressTable, name: &str) -> Result<String, ShellError> {
    let all = tracks(table);
    all.iter()
        .find(|t| t.eq_ignore_ascii_case(name))
        .cloned()
        .ok_or_else(|| {
            ShellError::suggesting(
                if all.is_empty() {
                    format!("this patch has no track `{name}` (no tracks at all: `load demo` has drums, bass and chords)")
                } else {
                    format!("this patch has no track `{name}` (it has {})", all.join(", "))
                },
                closest(name, all.iter().map(String::as_str)),
            )
        })
}

/// `<track> "<pattern>" [bar|beat]`.
fn set_pattern(
    state: &State,
    track: &str,
    pattern: &str,
    tail: &[Token],
) -> Result<Outcome, ShellError> {
    let track = track_named(&state.table, track)?;
    let when: Vec<String> = tail.iter().map(|t| t.text.to_lowercase()).collect();
    let when = match when.as_slice() {
        [] => None,
        [w] if w == "bar" || w == "beat" => Some(w.clone()),
        _ => {
            return Err(ShellError::new(
                "after a pattern only `bar` or `beat` (when it lands) may follow",
            ))
        }
    };
    let address = format!("/seq/{track}/pattern");
    let mut args = vec![pattern];
    if let Some(w) = &when {
        args.push(w);
    }
    let message = build(&state.table, &address, &args)?;
    let undo = match state.patterns.get(&track) {
        Some(before) => build(&state.table, &address, &[before])
            .map(|m| {
                UndoChange::Push(Undo {
                    what: format!("{track} back to \"{before}\""),
                    steps: vec![Step::new(m, 0.0)],
                    bpm: None,
                    pattern: Some((track.clone(), before.clone())),
                })
            })
            .unwrap_or(UndoChange::None),
        None => UndoChange::None,
    };
    Ok(Outcome::Run(Run {
        command: None,
        ran: vec![Step::new(message, 0.0)],
        said: format!(
            "{track} plays \"{pattern}\" from the next {}",
            when.as_deref().unwrap_or("bar")
        ),
        undo,
        bpm: None,
        pattern: Some((track, pattern.to_string())),
    }))
}

/// `start`/`stop` (the clock), `start drums`, `stop the drums`, `mute drums`, `unmute drums`.
fn start_stop(state: &State, verb: &str, rest: &[String], on: bool) -> Result<Outcome, ShellError> {
    // `stop the drums` is the phrase for `stop drums`: echoed as the command it ran.
    let phrased = rest.iter().any(|w| w == "the");
    let rest: Vec<&str> = rest
        .iter()
        .map(String::as_str)
        .filter(|w| *w != "the")
        .collect();
    let table = &state.table;
    let Some(&track) = rest.first() else {
        if verb == "mute" || verb == "unmute" {
            return Err(ShellError::new(format!("say which track: `{verb} drums`")));
        }
        let address = if on { "/clock/start" } else { "/clock/stop" };
        let other = if on { "/clock/stop" } else { "/clock/start" };
        return Ok(Outcome::Run(Run {
            command: None,
            ran: vec![Step::new(build(table, address, &[])?, 0.0)],
            said: if on {
                "the clock runs from bar 1".to_string()
            } else {
                "the clock stopped".to_string()
            },
            undo: UndoChange::Push(Undo {
                what: format!("the clock {}", if on { "stopped" } else { "started" }),
                steps: vec![Step::new(build(table, other, &[])?, 0.0)],
                bpm: None,
                pattern: None,
            }),
            bpm: None,
            pattern: None,
        }));
    };
    if rest.len() > 1 {
        return Err(ShellError::new(format!("say one track: `{verb} drums`")));
    }
    let track = track_named(table, track)?;
    let address = |on: bool| format!("/seq/{track}/{}", if on { "start" } else { "stop" });
    let plain = format!(
        "{track} {} on the next bar line",
        if on { "starts" } else { "stops" }
    );
    Ok(Outcome::Run(Run {
        command: None,
        ran: vec![Step::new(build(table, &address(on), &[])?, 0.0)],
        said: if phrased {
            format!("{verb} the {track} -> {verb} {track} ({plain})")
        } else {
            plain
        },
        undo: UndoChange::Push(Undo {
            what: format!("{track} {}", if on { "stopped" } else { "playing again" }),
            steps: vec![Step::new(build(table, &address(!on), &[])?, 0.0)],
            bpm: None,
            pattern: None,
        }),
        bpm: None,
        pattern: None,
    }))
}

/// `undo`: the latest change's revert.
fn undo(state: &State) -> Result<Outcome, ShellError> {
    let last = state.undo.last().ok_or_else(|| {
        ShellError::new("nothing to undo (undo reverts the sets, phrases, tempos, patterns and mutes of this shell)")
    })?;
    Ok(Outcome::Run(Run {
        command: None,
        ran: last.steps.clone(),
        said: format!("undone: {}", last.what),
        undo: UndoChange::Pop,
        // What the change replaced is the shell's again: the tempo later beats count
        // in, the pattern a later change of the track would restore.
        bpm: last.bpm,
        pattern: last.pattern.clone(),
    }))
}

/// Words to complete the last word of `line` with: commands first, then (in their
/// places) instruments, parameters, tracks, chords and notes, phrases and help topics.
pub fn completions(state: &State, line: &str) -> Vec<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let typing_new = line.is_empty() || line.ends_with(char::is_whitespace);
    let before: Vec<&str> = if typing_new {
        words.clone()
    } else {
        words[..words.len().saturating_sub(1)].to_vec()
    };
    let prefix = if typing_new {
        ""
    } else {
        words.last().copied().unwrap_or("")
    };
    let lower = prefix.to_lowercase();
    let table = &state.table;
    let mut candidates: Vec<String> = Vec::new();
    match before.first().map(|w| w.to_lowercase()).as_deref() {
        None => {
            candidates.extend(COMMANDS.iter().map(|c| c.to_string()));
            candidates.extend(phrases::PHRASES.iter().map(|p| p.words.to_string()));
            candidates.extend(tracks(table));
        }
        Some("set" | "get") if before.len() == 1 => {
            let names: Vec<String> = params(table).into_iter().map(|p| p.name).collect();
            // An instrument member's short name too (`lp.cutoff` for `keys.lp.cutoff`),
            // where it names one parameter, as `find_param` takes it.
            let shorts: Vec<String> = names
                .iter()
                .filter_map(|n| n.split_once('.').map(|(_, rest)| rest))
                .filter(|rest| rest.contains('.'))
                .filter(|rest| {
                    let dotted = format!(".{rest}");
                    names
                        .iter()
                        .filter(|n| n == rest || n.ends_with(&dotted))
                        .count()
                        == 1
                })
                .map(str::to_string)
                .collect();
            candidates.extend(names);
            candidates.extend(shorts);
        }
        Some("play" | "hold" | "release") => {
            if before.last().is_some_and(|w| w.eq_ignore_ascii_case("on")) {
                candidates.extend(instruments(table));
            } else {
                candidates
                    .extend(["for", "on", "velocity", "beats", "bars", "scale"].map(String::from));
                for root in [
                    "C", "C#", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B",
                ] {
                    for quality in ["", "m", "7", "maj7", "m7", "dim", "aug", "sus4"] {
                        candidates.push(format!("{root}{quality}"));
                    }
                    candidates.push(format!("{root}4"));
                }
                candidates.extend(music::SCALES.iter().map(|(n, _)| n[0].to_string()));
            }
        }
        Some("start" | "stop" | "mute" | "unmute") => candidates.extend(tracks(table)),
        Some("help") => candidates.extend(help::TOPICS.iter().map(|t| t.to_string())),
        Some("load") => candidates.extend(
            [
                "demo", "pad", "keys", "bass", "bell", "drone", "drums", "lead", "pluck",
            ]
            .map(String::from),
        ),
        _ => {}
    }
    let mut out: Vec<String> = candidates
        .into_iter()
        .filter(|c| c.to_lowercase().starts_with(&lower))
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests;
