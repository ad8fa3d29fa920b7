//! Text forms of engine commands: command files (`chronus render --commands FILE`) and
//! command logs (`chronus serve --command-log`).
//!
//! Both go through the same typing and validation as OSC messages, so a line is accepted
//! exactly when the server would accept the message, and refused with the same reason
//! (prefixed by its line number).
//!
//! - Command file line: `<seconds> <address> [args…]`, e.g. `1.5 /mod/sine/freq 440` or
//!   `2.0 /ramp /mod/sine/freq 880 1.5`.
//! - Command log line: `@<frame> <seq> <address> [args…]`, e.g. `@96000 17 /mod/sine/freq 440`.
//! - Patch switch in a command log: `@<frame> <seq> /patch/load <patch TOML as one JSON
//!   string>`; the lines after it name the new patch's modules, so the log is parsed
//!   against that patch's address table from there on.
//!
//! In both, `#` starts a comment and blank lines are ignored. A text argument is written
//! as it is when it has no whitespace, no `#` and does not start with `"`; otherwise as a
//! JSON string (`"…"` with JSON escapes), which is read back exactly. A quoted argument is
//! always text: `"440"` is never read as a number.

use chronus_dsp::PatchDesc;
use chronus_engine::command::{Command, SwitchAt};
use rosc::OscType;

use crate::args::type_message;
use crate::decode::validate_message;
use crate::signature::Value;
use crate::table::{engine_command_addresses, table_for_patch, AddressTable, Request, PATCH_LOAD};

/// An engine command from a command file, with the time (in seconds from the start of the
/// render) at which it takes effect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimedCommand {
    /// Seconds from the start of the render (finite, not negative).
    pub seconds: f64,
    /// The command.
    pub command: Command,
}

/// An engine command from a command log: the frame it was stamped with and its sequence
/// number, so a run can be replayed exactly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoggedCommand {
    /// Absolute frame at which the command took effect.
    pub frame: u64,
    /// Sequence number the output clock gave it.
    pub seq: u64,
    /// The command.
    pub command: Command,
}

/// One entry of a command log: an engine command, or a patch switch (whose TOML text a
/// replay needs to switch to the same patch at the same frame).
#[derive(Debug, Clone, PartialEq)]
pub enum LogEntry {
    /// `@<frame> <seq> <address> [args…]`: an engine command.
    Command(LoggedCommand),
    /// `@<frame> <seq> /patch/load <toml> [bar|beat]`: the server switched to this patch
    /// (with `bar` or `beat`, only to its tracks, on the next bar line or beat).
    Patch {
        /// Absolute frame at which the switch took effect.
        frame: u64,
        /// Sequence number of the switch.
        seq: u64,
        /// The patch's TOML text, exactly as it was logged.
        toml: String,
        /// The whole patch, or its tracks only.
        at: SwitchAt,
    },
}

/// A line of a command file or log that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct TextError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line (the server's `/fail` reason for bad commands).
    pub reason: String,
}

/// A word of a line: as written, or a JSON-quoted string (unescaped, always text).
#[derive(Debug, Clone, PartialEq)]
enum Token<'a> {
    /// A run of characters up to whitespace or `#`.
    Bare(&'a str),
    /// A `"…"` JSON string.
    Quoted(String),
}

impl Token<'_> {
    fn as_str(&self) -> &str {
        match self {
            Token::Bare(text) => text,
            Token::Quoted(text) => text,
        }
    }
}

/// The meaningful part of a line: words up to a `#` outside quotes, split on whitespace,
/// with JSON strings as single words.
///
/// # Errors
/// A reason when a `"` starts a string that is not valid JSON or is glued to what follows.
fn tokens(line: &str) -> Result<Vec<Token<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = line;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() || rest.starts_with('#') {
            return Ok(out);
        }
        if rest.starts_with('"') {
            let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<String>();
            match stream.next() {
                Some(Ok(text)) => {
                    rest = &rest[stream.byte_offset()..];
                    out.push(Token::Quoted(text));
                    if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
                        return Err(
                            "a quoted text must be followed by a space or the end of the line"
                                .to_string(),
                        );
                    }
                }
                Some(Err(e)) => return Err(format!("bad quoted text (JSON string): {e}")),
                None => return Err("bad quoted text (JSON string)".to_string()),
            }
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '#')
                .unwrap_or(rest.len());
            out.push(Token::Bare(&rest[..end]));
            rest = &rest[end..];
        }
    }
}

/// A text argument as one word: as it is when that reads back unchanged, else quoted.
fn write_text(text: &str) -> String {
    let bare = !text.is_empty()
        && !text.starts_with('"')
        && !text.contains(|c: char| c.is_whitespace() || c == '#' || c.is_control());
    if bare {
        text.to_string()
    } else {
        json_string(text)
    }
}

/// `text` as a JSON string literal: one line, every control character escaped.
fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

/// Types and validates `address args…` as the server would, keeping only engine commands.
/// Quoted words are always sent as OSC strings, so they are refused where a number is due.
fn engine_command(
    table: &AddressTable,
    address: &str,
    args: &[Token<'_>],
) -> Result<Command, String> {
    let words: Vec<&str> = args.iter().map(Token::as_str).collect();
    let mut message = type_message(table, address, &words);
    for (arg, token) in message.args.iter_mut().zip(args) {
        if let Token::Quoted(text) = token {
            *arg = OscType::String(text.clone());
        }
    }
    match validate_message(table, &message) {
        Ok(Request::Engine(command)) => Ok(command),
        Ok(_) => Err(format!(
            "{address} is not an engine command; only {} may appear here",
            engine_command_addresses()
        )),
        Err(fail) => Err(fail.reason),
    }
}

/// A word that must be written as it is (a time, frame or sequence number): a quoted
/// word is shown with its quotes, so it fails to parse as a number, with a clear reason.
fn bare<'a>(token: &'a Token<'_>) -> std::borrow::Cow<'a, str> {
    match token {
        Token::Bare(text) => std::borrow::Cow::Borrowed(text),
        Token::Quoted(text) => std::borrow::Cow::Owned(json_string(text)),
    }
}

/// The address word of a line, which must be written as it is (not quoted).
fn address_of<'a>(token: &'a Token<'_>) -> Result<&'a str, String> {
    match token {
        Token::Bare(address) => Ok(address),
        Token::Quoted(_) => Err("the address must not be quoted".to_string()),
    }
}

/// Parses a command file: one `<seconds> <address> [args…]` per line.
///
/// The result is sorted by time; commands with equal times keep their file order.
///
/// # Errors
/// The first bad line, by number: a missing or non-numeric, negative or non-finite time,
/// a missing address, a non-engine address (`/status`, `/quit`, …), a malformed quoted
/// text, or any reason the server would give for the message.
pub fn parse_command_file(
    table: &AddressTable,
    text: &str,
) -> Result<Vec<TimedCommand>, TextError> {
    let mut commands = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let error = |reason: String| TextError {
            line: index + 1,
            reason,
        };
        let tokens = tokens(line).map_err(error)?;
        let Some((time, rest)) = tokens.split_first() else {
            continue;
        };
        let time = bare(time);
        let seconds: f64 = time.parse().map_err(|_| {
            error(format!(
                "expected `<seconds> <address> [args…]`, but {time:?} is not a number of seconds"
            ))
        })?;
        if !seconds.is_finite() || seconds < 0.0 {
            return Err(error(format!(
                "time {time} must be a finite number of seconds, not negative"
            )));
        }
        let Some((address, args)) = rest.split_first() else {
            return Err(error(format!("missing address after the time {time}")));
        };
        let address = address_of(address).map_err(error)?;
        let command = engine_command(table, address, args).map_err(error)?;
        commands.push(TimedCommand { seconds, command });
    }
    commands.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    Ok(commands)
}

/// Formats one command-log line: `@<frame> <seq> <address> [args…]`.
///
/// Values are written with Rust's shortest round-trip form of the `f32`, so
/// [`parse_command_log`] gives back the command bit for bit; text (the parameter address
/// of a `/ramp`) as it is, or JSON-quoted if it has whitespace or `#`. A command the table
/// cannot express (a node or parameter it does not have; the server never produces one)
/// and [`Command::SwitchPatch`] (log switches with [`format_patch_log_line`]) are written
/// as a `#` comment naming them, so the log stays readable and parseable.
pub fn format_log_line(table: &AddressTable, frame: u64, seq: u64, command: &Command) -> String {
    match table.describe(command) {
        Some((address, values)) => {
            let mut line = format!("@{frame} {seq} {address}");
            for value in values {
                let word = match value {
                    Value::Number(v) => v.to_string(),
                    Value::Gate(on) => (if on { "1" } else { "0" }).to_string(),
                    Value::Int(v) => v.to_string(),
                    Value::Text(text) => write_text(&text),
                    Value::Absent => continue,
                };
                line.push(' ');
                line.push_str(&word);
            }
            line
        }
        None => format!("# @{frame} {seq} command not in the address table: {command:?}"),
    }
}

/// Formats the command-log line of a patch switch:
/// `@<frame> <seq> /patch/load <toml as one JSON string>`, followed by `bar` or `beat`
/// for a switch of the tracks only (a live edit of a track).
///
/// The TOML text is kept byte for byte (quotes, newlines, `#`, any Unicode), so a replay
/// switches to exactly the same patch at the same frame, and [`parse_command_log`] reads
/// the lines after it against that patch's address table.
pub fn format_patch_log_line(frame: u64, seq: u64, toml: &str, at: SwitchAt) -> String {
    let line = format!("@{frame} {seq} {PATCH_LOAD} {}", json_string(toml));
    match at {
        SwitchAt::Now => line,
        SwitchAt::TracksAtBar => line + " bar",
        SwitchAt::TracksAtBeat => line + " beat",
    }
}

/// Parses a command log written with [`format_log_line`] and [`format_patch_log_line`],
/// in file order.
///
/// Lines are read against `table` (the patch the server started with) until a
/// `/patch/load` line; from there on against the table of the loaded patch (built with
/// [`table_for_patch`], fault injection off), because a patch switch changes node
/// indices and addresses.
///
/// # Errors
/// The first bad line, by number: a missing `@frame`, a frame or sequence number that is
/// not an unsigned integer, a missing address, a non-engine address, a malformed quoted
/// text, a `/patch/load` whose argument is not one quoted TOML text that parses into a
/// patch of known module types, or any reason the server would give for the message.
pub fn parse_command_log(table: &AddressTable, text: &str) -> Result<Vec<LogEntry>, TextError> {
    let mut entries = Vec::new();
    let mut loaded: Option<AddressTable> = None;
    for (index, line) in text.lines().enumerate() {
        let error = |reason: String| TextError {
            line: index + 1,
            reason,
        };
        let tokens = tokens(line).map_err(error)?;
        let Some((first, rest)) = tokens.split_first() else {
            continue;
        };
        let first = bare(first);
        let frame = first
            .strip_prefix('@')
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| {
                error(format!(
                    "expected `@<frame> <seq> <address> [args…]`, but {first:?} is not @<frame>"
                ))
            })?;
        let Some((seq_text, rest)) = rest.split_first() else {
            return Err(error("missing sequence number after the frame".to_string()));
        };
        let seq_text = bare(seq_text);
        let seq = seq_text.parse::<u64>().map_err(|_| {
            error(format!(
                "sequence number {seq_text:?} is not an unsigned integer"
            ))
        })?;
        let Some((address, args)) = rest.split_first() else {
            return Err(error(
                "missing address after the sequence number".to_string(),
            ));
        };
        let address = address_of(address).map_err(error)?;
        if address == PATCH_LOAD {
            let (toml, at) = match args {
                [Token::Quoted(toml)] => (toml.clone(), SwitchAt::Now),
                [Token::Quoted(toml), Token::Bare("bar")] => (toml.clone(), SwitchAt::TracksAtBar),
                [Token::Quoted(toml), Token::Bare("beat")] => {
                    (toml.clone(), SwitchAt::TracksAtBeat)
                }
                _ => {
                    return Err(error(format!(
                        "{PATCH_LOAD}: expected `@<frame> <seq> {PATCH_LOAD} <patch TOML as one \
                         JSON string> [bar|beat]`"
                    )))
                }
            };
            let desc =
                PatchDesc::from_toml_str(&toml).map_err(|e| error(format!("{PATCH_LOAD}: {e}")))?;
            let table =
                table_for_patch(&desc, false).map_err(|e| error(format!("{PATCH_LOAD}: {e}")))?;
            loaded = Some(table);
            entries.push(LogEntry::Patch {
                frame,
                seq,
                toml,
                at,
            });
            continue;
        }
        let current = loaded.as_ref().unwrap_or(table);
        let command = engine_command(current, address, args).map_err(error)?;
        entries.push(LogEntry::Command(LoggedCommand {
            frame,
            seq,
            command,
        }));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::tests::table;
    use proptest::prelude::*;

    #[test]
    fn command_files_parse_with_comments_and_blank_lines() {
        let text = "# a demo\n\n0 /mod/sine/freq 440\n  1.5 /gate/env on # note on\n0.5 /engine/gain 0.25\n2 /test\n";
        let commands = parse_command_file(&table(), text).unwrap();
        assert_eq!(
            commands,
            vec![
                TimedCommand {
                    seconds: 0.0,
                    command: Command::SetParam {
                        node: 0,
                        param: 0,
                        value: 440.0
                    }
                },
                TimedCommand {
                    seconds: 0.5,
                    command: Command::EngineGain(0.25)
                },
                TimedCommand {
                    seconds: 1.5,
                    command: Command::Gate { node: 1, on: true }
                },
                TimedCommand {
                    seconds: 2.0,
                    command: Command::TestTone
                },
            ]
        );
    }

    #[test]
    fn command_file_errors_name_the_line() {
        let t = table();
        let err = |text| parse_command_file(&t, text).unwrap_err();
        let e = err("0 /test\n1 /mod/sine/freq 30000\n");
        assert_eq!(e.line, 2);
        assert_eq!(
            e.to_string(),
            "line 2: /mod/sine/freq: 30000 Hz is out of range 0.01..20000 Hz"
        );
        let e = err("0 /status\n");
        assert_eq!(e.line, 1);
        assert!(e.reason.contains("not an engine command"), "{}", e.reason);
        assert!(err("abc /test\n")
            .reason
            .contains("not a number of seconds"));
        assert!(err("-1 /test\n").reason.contains("not negative"));
        assert!(err("inf /test\n").reason.contains("finite"));
        assert!(err("NaN /test\n").reason.contains("finite"));
        assert!(err("1\n").reason.contains("missing address"));
        assert!(err("1 /mod/sine/freqq 3\n").reason.contains("did you mean"));
        assert!(err("1 /mod/sine/freq abc\n").reason.contains("got string"));
        assert!(err("1 /gate/env 2\n").reason.contains("must be 0 or 1"));
        assert!(err("1 /debug/crash\n")
            .reason
            .contains("not an engine command"));
    }

    #[test]
    fn log_lines_look_as_documented() {
        let t = table();
        let line = format_log_line(
            &t,
            96000,
            17,
            &Command::SetParam {
                node: 0,
                param: 0,
                value: 440.0,
            },
        );
        assert_eq!(line, "@96000 17 /mod/sine/freq 440");
        assert_eq!(
            format_log_line(&t, 0, 1, &Command::Gate { node: 1, on: false }),
            "@0 1 /gate/env 0"
        );
        assert_eq!(format_log_line(&t, 5, 2, &Command::TestTone), "@5 2 /test");
        assert_eq!(
            format_log_line(&t, 5, 3, &Command::EngineGain(0.1)),
            "@5 3 /engine/gain 0.1"
        );
        let unknown = format_log_line(&t, 5, 4, &Command::Gate { node: 0, on: true });
        assert!(unknown.starts_with('#'));
        assert_eq!(parse_command_log(&t, &unknown), Ok(vec![]));
        let switch = format_log_line(
            &t,
            5,
            5,
            &Command::SwitchPatch {
                version: 1,
                len: 9,
                at: SwitchAt::Now,
            },
        );
        assert!(switch.starts_with("# @5 5 "), "{switch}");
        assert_eq!(parse_command_log(&t, &switch), Ok(vec![]));
    }

    fn ramp(node: u16, param: u16, target: f32, seconds: f32) -> Command {
        Command::Ramp {
            node,
            param,
            target,
            seconds,
        }
    }

    fn logged(frame: u64, seq: u64, command: Command) -> LogEntry {
        LogEntry::Command(LoggedCommand {
            frame,
            seq,
            command,
        })
    }

    #[test]
    fn command_files_express_ramps() {
        let t = table();
        let text = "2.0 /ramp /mod/sine/freq 880 1.5\n0 /ramp \"/mod/env/level\" -12 0 # quoted\n";
        assert_eq!(
            parse_command_file(&t, text),
            Ok(vec![
                TimedCommand {
                    seconds: 0.0,
                    command: ramp(1, 1, -12.0, 0.0)
                },
                TimedCommand {
                    seconds: 2.0,
                    command: ramp(0, 0, 880.0, 1.5)
                },
            ])
        );
        let err = |text| parse_command_file(&t, text).unwrap_err();
        assert_eq!(
            err("0 /test\n1 /ramp /mod/sine/freq 30000 1\n").to_string(),
            "line 2: /ramp: 30000 Hz is out of range 0.01..20000 Hz for /mod/sine/freq"
        );
        assert_eq!(
            err("1 /ramp /mod/sine/freq \"880\" 1").reason,
            "/ramp: argument 2 (target) must be a number, got string \"880\""
        );
        assert_eq!(
            err("1 /ramp /mod/sine/frq 880 1").reason,
            "/ramp: /mod/sine/frq is not a parameter address (did you mean /mod/sine/freq?)"
        );
        assert_eq!(err("1 \"/test\"").reason, "the address must not be quoted");
        assert!(err("1 /ramp \"/mod/sine/freq 880 1")
            .reason
            .starts_with("bad quoted text"));
        assert_eq!(
            err("1 /ramp \"/mod/sine/freq\"880 1").reason,
            "a quoted text must be followed by a space or the end of the line"
        );
        // The list is the table's (`engine_command_addresses` is checked there).
        assert_eq!(
            err("1 /get /mod/sine/freq").reason,
            format!(
                "/get is not an engine command; only {} may appear here",
                engine_command_addresses()
            )
        );
        assert!(err("1 /patch/commit")
            .reason
            .contains("not an engine command"));
    }

    #[test]
    fn ramp_log_lines_round_trip() {
        let t = table();
        let line = format_log_line(&t, 48000, 3, &ramp(0, 0, 880.0, 1.5));
        assert_eq!(line, "@48000 3 /ramp /mod/sine/freq 880 1.5");
        let line2 = format_log_line(&t, 48001, 4, &ramp(1, 1, -0.1, 0.0));
        assert_eq!(line2, "@48001 4 /ramp /mod/env/level -0.1 0");
        assert_eq!(
            parse_command_log(&t, &format!("{line}\n{line2}\n")),
            Ok(vec![
                logged(48000, 3, ramp(0, 0, 880.0, 1.5)),
                logged(48001, 4, ramp(1, 1, -0.1, 0.0)),
            ])
        );
        assert!(format_log_line(&t, 1, 1, &ramp(5, 0, 1.0, 1.0)).starts_with('#'));
    }

    #[test]
    fn text_arguments_are_quoted_only_when_needed() {
        assert_eq!(write_text("/mod/sine/freq"), "/mod/sine/freq");
        assert_eq!(write_text("/mod/ünï/freq"), "/mod/ünï/freq");
        assert_eq!(write_text("/mod/a b/freq"), "\"/mod/a b/freq\"");
        assert_eq!(write_text("/mod/a#b/freq"), "\"/mod/a#b/freq\"");
        assert_eq!(write_text("\"q"), "\"\\\"q\"");
        assert_eq!(write_text("a\tb"), "\"a\\tb\"");
        assert_eq!(write_text(""), "\"\"");
        for text in [
            "/mod/a b/freq",
            "/mod/a#b/freq",
            "\"q",
            "a\tb",
            "x\r\ny",
            "",
        ] {
            let written = format!("@1 2 {}", write_text(text));
            let words = tokens(&written).unwrap();
            assert_eq!(words.len(), 3, "{written}");
            assert_eq!(words[2].as_str(), text, "{written}");
        }
    }

    /// A patch of two sines and an adsr in a different order from the test table, so node
    /// indices and addresses change when it is loaded. Ids and comments carry quotes,
    /// `#`, backslashes, tabs, newlines and non-ASCII text to test the quoting.
    const TRICKY_PATCH: &str = "# a \"tricky\" patch: é ♪ 日本 \\ # not a log comment\n\
[[modules]]\n\
id = \"env\"\n\
type = \"adsr\"\n\
\n\
[[modules]]\n\
id = 'osc \"b\"'\t# tab before\n\
type = \"sine\"\n\
params = { freq = 220.0 }\n\
\n\
[[modules]]\n\
id = \"sine\"\n\
type = \"sine\"\r\n\
\"\"\"\n";

    #[test]
    fn patch_log_lines_round_trip_exactly() {
        for toml in [
            TRICKY_PATCH,
            "",
            "\"",
            "\\",
            "# only a comment",
            "a\u{0}b\u{1f}c\u{7f}\u{2028}",
            "\n\n\r\n",
        ] {
            let line = format_patch_log_line(96000, 12, toml, SwitchAt::Now);
            assert!(line.starts_with("@96000 12 /patch/load \""), "{line}");
            assert_eq!(line.lines().count(), 1, "{line}");
            let words = tokens(&line).unwrap();
            assert_eq!(words.len(), 4, "{line}");
            assert_eq!(words[3], Token::Quoted(toml.to_string()), "{line}");
        }
    }

    /// `TRICKY_PATCH` as valid TOML (the round-trip one above ends in a stray `"""`).
    fn tricky_valid() -> String {
        TRICKY_PATCH.trim_end_matches("\"\"\"\n").to_string()
    }

    #[test]
    fn log_parsing_switches_tables_after_a_patch_load() {
        let t = table();
        let toml = tricky_valid();
        let text = [
            "@0 1 /mod/sine/freq 440".to_string(),
            "@10 2 /gate/env 1".to_string(),
            format_patch_log_line(100, 3, &toml, SwitchAt::Now),
            // The new patch: env = node 0, 'osc "b"' = node 1, sine = node 2.
            "@200 4 /mod/sine/freq 330".to_string(),
            "@201 5 /gate/env 0".to_string(),
            "@202 6 /ramp \"/mod/osc \\\"b\\\"/freq\" 110 2".to_string(),
            format_patch_log_line(300, 7, &toml, SwitchAt::Now),
            "@300 8 /test".to_string(),
        ]
        .join("\n");
        let entries = parse_command_log(&t, &text).unwrap();
        assert_eq!(
            entries,
            vec![
                logged(
                    0,
                    1,
                    Command::SetParam {
                        node: 0,
                        param: 0,
                        value: 440.0
                    }
                ),
                logged(10, 2, Command::Gate { node: 1, on: true }),
                LogEntry::Patch {
                    frame: 100,
                    seq: 3,
                    toml: toml.clone(),
                    at: SwitchAt::Now,
                },
                logged(
                    200,
                    4,
                    Command::SetParam {
                        node: 2,
                        param: 0,
                        value: 330.0
                    }
                ),
                logged(201, 5, Command::Gate { node: 0, on: false }),
                logged(202, 6, ramp(1, 0, 110.0, 2.0)),
                LogEntry::Patch {
                    frame: 300,
                    seq: 7,
                    toml: toml.clone(),
                    at: SwitchAt::Now,
                },
                logged(300, 8, Command::TestTone),
            ]
        );
        // And the ramp line is what `format_log_line` writes with the new patch's table.
        let desc = PatchDesc::from_toml_str(&toml).unwrap();
        let loaded = table_for_patch(&desc, false).unwrap();
        assert_eq!(
            format_log_line(&loaded, 202, 6, &ramp(1, 0, 110.0, 2.0)),
            "@202 6 /ramp \"/mod/osc \\\"b\\\"/freq\" 110 2"
        );
        // `/mod/sine/…` exists in both tables (at other node indices), `/mod/sine/freq` moved from node 0 to 2;
        // an address of the old patch only is refused after the switch.
        let stale = format!(
            "{}\n@400 9 /mod/sine/gain 0.5\n@401 10 /mod/old/freq 1\n",
            format_patch_log_line(1, 1, &toml, SwitchAt::Now)
        );
        let e = parse_command_log(&t, &stale).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(
            e.reason.starts_with("unknown address /mod/old/freq"),
            "{}",
            e.reason
        );
    }

    #[test]
    fn bad_patch_load_lines_are_refused() {
        let t = table();
        let err = |text: &str| parse_command_log(&t, text).unwrap_err();
        let e = err("@1 1 /test\n@2 2 /patch/load");
        assert_eq!(e.line, 2);
        assert!(e.reason.contains("as one JSON string"), "{}", e.reason);
        assert!(err("@2 2 /patch/load [[modules]]")
            .reason
            .contains("as one JSON string"));
        assert!(err("@2 2 /patch/load \"\" \"\"")
            .reason
            .contains("as one JSON string"));
        let e = err(&format_patch_log_line(
            2,
            2,
            "[[modules]]\nid = 1\n",
            SwitchAt::Now,
        ));
        assert!(
            e.reason.starts_with("/patch/load: patch TOML:"),
            "{}",
            e.reason
        );
        let e = err(&format_patch_log_line(
            2,
            2,
            "[[modules]]\nid = \"x\"\ntype = \"sinee\"\n",
            SwitchAt::Now,
        ));
        assert_eq!(
            e.reason,
            "/patch/load: unknown module type 'sinee' for module 'x' (did you mean 'sine'?)"
        );
        assert!(err("@2 2 /patch/load \"unterminated")
            .reason
            .starts_with("bad quoted text"));
    }

    #[test]
    fn quoted_numbers_are_never_numbers_in_logs() {
        let t = table();
        let e = parse_command_log(&t, "@1 2 /mod/sine/freq \"440\"").unwrap_err();
        assert!(e.reason.contains("got string \"440\""), "{}", e.reason);
        let e = parse_command_log(&t, "@1 \"2\" /test").unwrap_err();
        assert!(e.reason.contains("sequence number"), "{}", e.reason);
    }

    #[test]
    fn log_errors_name_the_line() {
        let t = table();
        let err = |text| parse_command_log(&t, text).unwrap_err();
        assert_eq!(err("@1 1 /test\n96000 17 /test\n").line, 2);
        assert!(err("@x 1 /test").reason.contains("not @<frame>"));
        assert!(err("@1 -1 /test").reason.contains("sequence number"));
        assert!(err("@1").reason.contains("missing sequence number"));
        assert!(err("@1 2").reason.contains("missing address"));
        assert!(err("@1 2 /quit").reason.contains("not an engine command"));
        assert!(err("@1 2 /mod/sine/freq 0").reason.contains("out of range"));
    }

    /// Parameters of the test table with their ranges: (node, param, min, max).
    const PARAMS: [(u16, u16, f32, f32); 4] = [
        (0, 0, 0.01, 20000.0),
        (0, 1, 0.0, 1.0),
        (1, 0, 0.0, 10000.0),
        (1, 1, -60.0, 0.0),
    ];

    fn value_in(min: f32, max: f32) -> BoxedStrategy<f32> {
        let bits = if min >= 0.0 {
            (min.to_bits()..=max.to_bits())
                .prop_map(f32::from_bits)
                .boxed()
        } else {
            // Negative floats: bigger bit patterns are more negative.
            (max.to_bits().max((-0.0f32).to_bits())..=min.to_bits())
                .prop_map(f32::from_bits)
                .boxed()
        };
        prop_oneof![Just(min), Just(max), min..=max, bits].boxed()
    }

    fn command() -> impl Strategy<Value = Command> {
        let set_param = (0..PARAMS.len()).prop_flat_map(|i| {
            let (node, param, min, max) = PARAMS[i];
            value_in(min, max).prop_map(move |value| Command::SetParam { node, param, value })
        });
        prop_oneof![
            set_param,
            any::<bool>().prop_map(|on| Command::Gate { node: 1, on }),
            value_in(0.0, 1.0).prop_map(Command::EngineGain),
            Just(Command::TestTone),
            (0..PARAMS.len(), 0.0f32..=3600.0).prop_flat_map(|(i, seconds)| {
                let (node, param, min, max) = PARAMS[i];
                value_in(min, max).prop_map(move |target| Command::Ramp {
                    node,
                    param,
                    target,
                    seconds,
                })
            }),
        ]
    }

    /// Bit-exact comparison (so `-0.0` and `0.0` differ, as they would in a replay).
    fn same_bits(a: &Command, b: &Command) -> bool {
        match (*a, *b) {
            (
                Command::SetParam {
                    node: n1,
                    param: p1,
                    value: v1,
                },
                Command::SetParam {
                    node: n2,
                    param: p2,
                    value: v2,
                },
            ) => (n1, p1, v1.to_bits()) == (n2, p2, v2.to_bits()),
            (Command::EngineGain(g1), Command::EngineGain(g2)) => g1.to_bits() == g2.to_bits(),
            (
                Command::Ramp {
                    node: n1,
                    param: p1,
                    target: t1,
                    seconds: s1,
                },
                Command::Ramp {
                    node: n2,
                    param: p2,
                    target: t2,
                    seconds: s2,
                },
            ) => (n1, p1, t1.to_bits(), s1.to_bits()) == (n2, p2, t2.to_bits(), s2.to_bits()),
            (a, b) => a == b,
        }
    }

    proptest! {
        #[test]
        fn log_lines_round_trip_bit_exactly(
            entries in proptest::collection::vec((any::<u64>(), any::<u64>(), command()), 0..20)
        ) {
            let t = table();
            let text: String = entries
                .iter()
                .map(|(frame, seq, command)| format_log_line(&t, *frame, *seq, command) + "\n")
                .collect();
            let parsed = parse_command_log(&t, &text).unwrap();
            prop_assert_eq!(parsed.len(), entries.len());
            for (entry, (frame, seq, command)) in parsed.iter().zip(&entries) {
                let LogEntry::Command(logged) = entry else {
                    return Err(TestCaseError::fail(format!("not a command: {entry:?}")));
                };
                prop_assert_eq!(logged.frame, *frame);
                prop_assert_eq!(logged.seq, *seq);
                prop_assert!(same_bits(&logged.command, command), "{:?} != {:?}", logged.command, command);
            }
        }

        #[test]
        fn patch_log_lines_round_trip_any_text(
            frame in any::<u64>(),
            seq in any::<u64>(),
            toml in "(?s).{0,200}",
        ) {
            let line = format_patch_log_line(frame, seq, &toml, SwitchAt::Now);
            prop_assert_eq!(line.lines().count(), 1);
            let words = tokens(&line).unwrap();
            prop_assert_eq!(words.len(), 4);
            prop_assert_eq!(&words[3], &Token::Quoted(toml.clone()));
        }

        #[test]
        fn arbitrary_quoted_text_never_panics(text in "[ -~\"\\\\#\n]{0,200}") {
            let t = table();
            let _ = parse_command_file(&t, &text);
            let _ = parse_command_log(&t, &text);
        }

        #[test]
        fn arbitrary_text_never_panics(text in "[ -~\n]{0,200}") {
            let t = table();
            let _ = parse_command_file(&t, &text);
            let _ = parse_command_log(&t, &text);
        }
    }
}
