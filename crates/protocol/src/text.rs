//! Text forms of engine commands: command files (`chronus render --commands FILE`) and
//! command logs (`chronus serve --command-log`).
//!
//! Both go through the same typing and validation as OSC messages, so a line is accepted
//! exactly when the server would accept the message, and refused with the same reason
//! (prefixed by its line number).
//!
//! - Command file line: `<seconds> <address> [args…]`, e.g. `1.5 /mod/sine/freq 440`.
//! - Command log line: `@<frame> <seq> <address> [args…]`, e.g. `@96000 17 /mod/sine/freq 440`.
//!
//! In both, `#` starts a comment and blank lines are ignored.

use chronus_engine::command::Command;

use crate::args::type_message;
use crate::decode::{validate_message, Request};
use crate::table::AddressTable;

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

/// A line of a command file or log that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct TextError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with the line (the server's `/fail` reason for bad commands).
    pub reason: String,
}

/// The meaningful part of a line: everything before `#`, split on whitespace.
fn tokens(line: &str) -> Vec<&str> {
    line.split('#')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect()
}

/// Types and validates `address args…` as the server would, keeping only engine commands.
fn engine_command(table: &AddressTable, address: &str, args: &[&str]) -> Result<Command, String> {
    let message = type_message(table, address, args);
    match validate_message(table, &message) {
        Ok(Request::Engine(command)) => Ok(command),
        Ok(_) => Err(format!(
            "{address} is not an engine command; only /mod/…, /gate/…, /engine/gain and /test \
             may appear here"
        )),
        Err(fail) => Err(fail.reason),
    }
}

/// Parses a command file: one `<seconds> <address> [args…]` per line.
///
/// The result is sorted by time; commands with equal times keep their file order.
///
/// # Errors
/// The first bad line, by number: a missing or non-numeric, negative or non-finite time,
/// a missing address, a non-engine address (`/status`, `/quit`, …), or any reason the
/// server would give for the message.
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
        let tokens = tokens(line);
        let Some((&time, rest)) = tokens.split_first() else {
            continue;
        };
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
        let Some((&address, args)) = rest.split_first() else {
            return Err(error(format!("missing address after the time {time}")));
        };
        let command = engine_command(table, address, args).map_err(error)?;
        commands.push(TimedCommand { seconds, command });
    }
    commands.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    Ok(commands)
}

/// Formats one command-log line: `@<frame> <seq> <address> [args…]`.
///
/// Values are written with Rust's shortest round-trip form of the `f32`, so
/// [`parse_command_log`] gives back the command bit for bit. A command the table cannot
/// express (a node or parameter it does not have; the server never produces one) is
/// written as a `#` comment naming it, so the log stays readable and parseable.
pub fn format_log_line(table: &AddressTable, frame: u64, seq: u64, command: &Command) -> String {
    match table.describe(command) {
        Some((address, values)) => {
            let mut line = format!("@{frame} {seq} {address}");
            for value in values {
                // `describe` widened an f32; narrowing back is exact.
                line.push_str(&format!(" {}", value as f32));
            }
            line
        }
        None => format!("# @{frame} {seq} command not in the address table: {command:?}"),
    }
}

/// Parses a command log written with [`format_log_line`], in file order.
///
/// # Errors
/// The first bad line, by number: a missing `@frame`, a frame or sequence number that is
/// not an unsigned integer, a missing address, a non-engine address, or any reason the
/// server would give for the message.
pub fn parse_command_log(
    table: &AddressTable,
    text: &str,
) -> Result<Vec<LoggedCommand>, TextError> {
    let mut commands = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let error = |reason: String| TextError {
            line: index + 1,
            reason,
        };
        let tokens = tokens(line);
        let Some((&first, rest)) = tokens.split_first() else {
            continue;
        };
        let frame = first
            .strip_prefix('@')
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| {
                error(format!(
                    "expected `@<frame> <seq> <address> [args…]`, but {first:?} is not @<frame>"
                ))
            })?;
        let Some((&seq_text, rest)) = rest.split_first() else {
            return Err(error("missing sequence number after the frame".to_string()));
        };
        let seq = seq_text.parse::<u64>().map_err(|_| {
            error(format!(
                "sequence number {seq_text:?} is not an unsigned integer"
            ))
        })?;
        let Some((&address, args)) = rest.split_first() else {
            return Err(error(
                "missing address after the sequence number".to_string(),
            ));
        };
        let command = engine_command(table, address, args).map_err(error)?;
        commands.push(LoggedCommand {
            frame,
            seq,
            command,
        });
    }
    Ok(commands)
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
        ]
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
            for (logged, (frame, seq, command)) in parsed.iter().zip(&entries) {
                prop_assert_eq!(logged.frame, *frame);
                prop_assert_eq!(logged.seq, *seq);
                match (logged.command, *command) {
                    (
                        Command::SetParam { node: n1, param: p1, value: v1 },
                        Command::SetParam { node: n2, param: p2, value: v2 },
                    ) => {
                        prop_assert_eq!((n1, p1), (n2, p2));
                        prop_assert_eq!(v1.to_bits(), v2.to_bits());
                    }
                    (Command::EngineGain(g1), Command::EngineGain(g2)) => {
                        prop_assert_eq!(g1.to_bits(), g2.to_bits());
                    }
                    (a, b) => prop_assert_eq!(a, b),
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "[ -~\n]{0,200}") {
            let t = table();
            let _ = parse_command_file(&t, &text);
            let _ = parse_command_log(&t, &text);
        }
    }
}
