//! Chronus patterns: the notation sequencer tracks are written in, in the spirit of
//! TidalCycles' mini-notation, parsed, printed back, and evaluated into the exact table
//! of events one loop plays.
//!
//! This crate is for text → events: the server parses a track's pattern here and sends
//! the workers the table (the workers never parse or allocate); the CLI and the shell
//! check patterns here before they send them. It knows nothing of tempo, frames,
//! instruments or OSC: a cycle is a unit of time the sequencer maps onto bars.
//!
//! | write | means |
//! | --- | --- |
//! | `c3 e3 g3 ~` | four steps sharing the cycle; `~` is a rest; `c4` = MIDI 60 (a bare `c` too); `fs3`/`f#3` sharp, `eb3`/`ef3` flat |
//! | `60 64 67.5` | MIDI note numbers, fractional for microtones |
//! | `bd sn cp hh oh lt mt ht rim cb` | drums (General MIDI percussion notes: `bd` = 36) |
//! | `[e3 g3]` | one step subdivided |
//! | `c3*2`, `c3/2` | a step played twice as fast (twice in its slot), or half as fast |
//! | `<a3 b3>` | one per cycle, in turn |
//! | `bd ~ sn ~, hh*8` | layers played together |
//! | `c3:80` | velocity (0 to 127; 100 when not written) |
//! | `c3'maj7` | a chord on the note (`maj min aug dim sus2 sus4 five six min6 maj7 dom7 min7 dim7 min7b5 add9 maj9 dom9 min9`, and aliases `m`, `7`, `m7`, …) |
//! | `c3@3 e3`, `c3 _ _ e3` | elongation: a step three times as long as the others |
//! | `c3!3`, `c3 ! !` | the step repeated: `c3 c3 c3` |
//! | `bd(3,8)`, `bd(3,8,2)` | Euclidean rhythm: 3 beats spread over 8, rotated left by 2 |
//! | `a b . c d e` | groups: `[a b] [c d e]` |
//!
//! ```
//! let pattern = chronus_pattern::parse("bd ~ sn ~, hh*8").unwrap();
//! let events = pattern.events().unwrap();
//! assert_eq!(events.cycles, 1);
//! assert_eq!(events.events.len(), 10);
//! assert_eq!(pattern.to_string(), "bd ~ sn ~, hh*8");
//!
//! let err = chronus_pattern::parse("c3 e3 [g3").unwrap_err();
//! assert_eq!(err.at, Some(6));
//! assert_eq!(err.pointing_into("c3 e3 [g3"), "c3 e3 [g3\n      ^ '[' is never closed (expected ']')");
//! ```

pub mod ast;
pub mod events;
pub mod parse;
pub mod sound;
pub mod time;

pub use ast::Pattern;
pub use events::{Event, Events, MAX_CYCLES, MAX_EVENTS};
pub use parse::parse;
pub use time::Time;

/// Why a pattern cannot be played: where (a character position, when one thing is to
/// blame) and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", at.map(|a| format!("at character {}: ", a + 1)).unwrap_or_default())]
pub struct PatternError {
    /// Index of the offending character (0-based, in characters, not bytes), or `None`
    /// for a problem of the whole pattern (too long a loop, too many events).
    pub at: Option<usize>,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl PatternError {
    fn at(at: usize, message: impl Into<String>) -> PatternError {
        PatternError {
            at: Some(at),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> PatternError {
        PatternError {
            at: None,
            message: message.into(),
        }
    }

    /// The pattern with a caret under the offending character and the message after
    /// it: how a terminal shows the error.
    pub fn pointing_into(&self, text: &str) -> String {
        match self.at {
            Some(at) => format!("{text}\n{}^ {}", " ".repeat(at), self.message),
            None => format!("{text}\n{}", self.message),
        }
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Pattern, PatternError> {
        parse(text)
    }
}
