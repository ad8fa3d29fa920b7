//! The parser: text to [`Pattern`], or an error that points at the character.
//!
//! Recursive descent over the characters, with the grammar (spaces separate steps;
//! a step's modifiers follow it with no space):
//!
//! ```text
//! pattern   = layer ("," layer)*
//! layer     = item+                      ("." between items groups them: a b . c = [a b] [c])
//! item      = step | "_" | "!"           (_ lengthens the step before; ! repeats it)
//! step      = term modifier*
//! term      = "~" | atom | "[" pattern "]" | "<" pattern ">"
//! atom      = word ("'" chord)? (":" velocity)?
//! modifier  = "*" number | "/" number | "@" number | "!" count | "(" k "," n ("," r)? ")"
//! ```

use crate::ast::{Atom, Modifier, Pattern, Sequence, Step, Term};
use crate::sound::{Chord, Sound, CHORDS};
use crate::time::Time;
use crate::PatternError;

/// Deepest nesting of `[…]` and `<…>`: far beyond music, short of the stack's limits.
pub const MAX_DEPTH: usize = 32;
/// Most beats of a Euclidean rhythm `(k,n)`.
pub const MAX_EUCLID_STEPS: u32 = 256;
/// Most copies `!n` makes of one step.
pub const MAX_REPLICATE: u32 = 256;

struct Parser {
    chars: Vec<char>,
    pos: usize,
    depth: usize,
}

type Result<T> = std::result::Result<T, PatternError>;

fn error<T>(at: usize, message: impl Into<String>) -> Result<T> {
    Err(PatternError::at(at, message))
}

/// Parses `text` as a pattern.
///
/// # Errors
/// [`PatternError`] with the position (in characters) of the first thing that cannot
/// be read and what was expected there.
pub fn parse(text: &str) -> Result<Pattern> {
    let mut p = Parser {
        chars: text.chars().collect(),
        pos: 0,
        depth: 0,
    };
    p.skip_spaces();
    if p.peek().is_none() {
        return error(0, "empty pattern: write ~ for silence");
    }
    let pattern = p.pattern(None)?;
    match p.peek() {
        None => Ok(pattern),
        Some(c @ (']' | '>')) => error(p.pos, format!("'{c}' closes nothing")),
        Some(c) => error(p.pos, format!("unexpected '{c}'")),
    }
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Layers up to `close` (or the end of the text at the top).
    fn pattern(&mut self, close: Option<char>) -> Result<Pattern> {
        let mut layers = vec![self.layer(close)?];
        while self.peek() == Some(',') {
            self.pos += 1;
            self.skip_spaces();
            layers.push(self.layer(close)?);
        }
        Ok(Pattern { layers })
    }

    /// One layer: items up to `,`, `close` or the end; `.` splits it into groups.
    fn layer(&mut self, close: Option<char>) -> Result<Sequence> {
        let start = self.pos;
        let mut groups: Vec<Vec<Step>> = vec![Vec::new()];
        loop {
            self.skip_spaces();
            let at = self.pos;
            let Some(c) = self.peek() else { break };
            if c == ',' || Some(c) == close {
                break;
            }
            let steps = groups.last_mut().expect("never empty");
            match c {
                ']' | '>' => return error(at, format!("'{c}' closes nothing here")),
                '_' => {
                    self.pos += 1;
                    let Some(last) = steps.last_mut() else {
                        return error(at, "'_' lengthens the step before it, and there is none");
                    };
                    last.weight = last
                        .weight
                        .checked_add(Time::ONE)
                        .ok_or_else(|| PatternError::at(at, "step too long"))?;
                    self.end_of_item()?;
                }
                '!' => {
                    self.pos += 1;
                    let Some(last) = steps.last().cloned() else {
                        return error(at, "'!' repeats the step before it, and there is none");
                    };
                    steps.push(last);
                    self.end_of_item()?;
                }
                '.' => {
                    self.pos += 1;
                    if steps.is_empty() {
                        return error(at, "'.' separates groups of steps, and none is before it");
                    }
                    groups.push(Vec::new());
                    self.end_of_item()?;
                }
                _ => {
                    let (step, copies) = self.step()?;
                    for _ in 0..copies {
                        steps.push(step.clone());
                    }
                }
            }
        }
        let Some(last) = groups.last() else {
            return error(start, "empty");
        };
        if last.is_empty() {
            let at = self.pos;
            return if groups.len() > 1 {
                error(at, "'.' must be followed by steps")
            } else {
                error(at, "expected a step here (a note, a drum, ~, [ or <)")
            };
        }
        if groups.len() == 1 {
            let steps = groups.pop().expect("one group");
            return Ok(Sequence { steps });
        }
        let steps = groups
            .into_iter()
            .map(|steps| Step {
                term: Term::Group(Pattern {
                    layers: vec![Sequence { steps }],
                }),
                modifiers: Vec::new(),
                weight: Time::ONE,
            })
            .collect();
        Ok(Sequence { steps })
    }

    /// After `_`, `!` or `.`: a space, a separator or the end must follow.
    fn end_of_item(&mut self) -> Result<()> {
        match self.peek() {
            None | Some(',' | ']' | '>') => Ok(()),
            Some(c) if c.is_whitespace() => Ok(()),
            Some(c) => error(self.pos, format!("unexpected '{c}': put a space before it")),
        }
    }

    /// A step and how many copies `!n` asked for.
    fn step(&mut self) -> Result<(Step, u32)> {
        let at = self.pos;
        let term = match self.peek() {
            Some('~') => {
                self.pos += 1;
                Term::Rest
            }
            Some(open @ ('[' | '<')) => {
                if self.depth >= MAX_DEPTH {
                    return error(at, format!("nested more than {MAX_DEPTH} deep"));
                }
                let close = if open == '[' { ']' } else { '>' };
                self.pos += 1;
                self.depth += 1;
                self.skip_spaces();
                if self.peek() == Some(close) {
                    return error(at, format!("empty '{open}{close}': write ~ for silence"));
                }
                let inner = self.pattern(Some(close))?;
                self.depth -= 1;
                if self.peek() != Some(close) {
                    return error(at, format!("'{open}' is never closed (expected '{close}')"));
                }
                self.pos += 1;
                if open == '[' {
                    Term::Group(inner)
                } else {
                    Term::Alternation(inner)
                }
            }
            Some(c) if c.is_ascii_alphanumeric() => Term::Atom(self.atom()?),
            Some('?') => {
                return error(
                    at,
                    "'?' (random removal) is not supported: a pattern plays the same on every loop",
                )
            }
            Some('{') => return error(at, "'{…}' (polymeter) is not supported: use [ ] and < >"),
            Some(c) => {
                return error(
                    at,
                    format!("unexpected '{c}': expected a step (a note, a drum, ~, [ or <)"),
                )
            }
            None => return error(at, "expected a step"),
        };
        let mut step = Step {
            term,
            modifiers: Vec::new(),
            weight: Time::ONE,
        };
        let mut weighted = false;
        let mut copies = 1;
        loop {
            let at = self.pos;
            match self.peek() {
                Some('*') => {
                    self.pos += 1;
                    let factor = self.factor("'*' speeds the step up by a factor")?;
                    step.modifiers.push(Modifier::Fast(factor));
                }
                Some('/') => {
                    self.pos += 1;
                    let factor = self.factor("'/' slows the step down by a factor")?;
                    step.modifiers.push(Modifier::Slow(factor));
                }
                Some('@') => {
                    self.pos += 1;
                    if weighted {
                        return error(at, "the step's weight '@' is given twice");
                    }
                    step.weight = self.factor("'@' gives the step a weight")?;
                    weighted = true;
                }
                Some('(') => step.modifiers.push(self.euclid()?),
                Some('!') => {
                    self.pos += 1;
                    if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        // A bare `!` after a step with no space: repeat it once more.
                        copies += 1;
                        continue;
                    }
                    let count = self.integer()?;
                    if !(1..=MAX_REPLICATE).contains(&count) {
                        return error(at + 1, format!("'!' makes 1 to {MAX_REPLICATE} copies"));
                    }
                    copies = count;
                }
                Some(c @ (':' | '\'')) => {
                    let what = if c == ':' { "a velocity" } else { "a chord" };
                    return error(at, format!("{what} belongs right after a note: c3'maj7:80"));
                }
                Some('?') => return error(
                    at,
                    "'?' (random removal) is not supported: a pattern plays the same on every loop",
                ),
                None | Some(',' | ']' | '>') => break,
                Some(c) if c.is_whitespace() => break,
                Some(c) => return error(at, format!("unexpected '{c}' after a step")),
            }
        }
        Ok((step, copies))
    }

    /// A sound word, then its chord and velocity.
    fn atom(&mut self) -> Result<Atom> {
        let at = self.pos;
        let word = self.word();
        let sound = Sound::parse(&word).map_err(|m| PatternError::at(at, m))?;
        let mut atom = Atom {
            sound,
            chord: None,
            velocity: None,
        };
        if self.peek() == Some('\'') {
            let at = self.pos;
            self.pos += 1;
            let name = self.word();
            if matches!(sound, Sound::Drum(_)) {
                return error(at, "a drum has no chords");
            }
            let known: Vec<&str> = CHORDS.iter().map(|(n, _, _)| *n).collect();
            atom.chord = Some(Chord::named(&name).ok_or_else(|| {
                PatternError::at(
                    at + 1,
                    format!("unknown chord '{name}': one of {}", known.join(" ")),
                )
            })?);
        }
        if self.peek() == Some(':') {
            self.pos += 1;
            let at = self.pos;
            let word = self.word();
            if word.is_empty() {
                return error(at - 1, "':' is followed by a velocity, a number 0 to 127");
            }
            let velocity: f64 = word
                .parse()
                .ok()
                .filter(|v| {
                    (0.0..=127.0).contains(v)
                        && word.bytes().all(|b| b.is_ascii_digit() || b == b'.')
                })
                .ok_or_else(|| {
                    PatternError::at(at, format!("velocity '{word}': a number 0 to 127"))
                })?;
            atom.velocity = Some(velocity);
        }
        Ok(atom)
    }

    /// Letters, digits, `#`, and a `.` inside a number (`60.5`).
    fn word(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek() {
            let numeric = word.bytes().all(|b| b.is_ascii_digit() || b == b'.');
            let dot_in_number = c == '.'
                && !word.is_empty()
                && numeric
                && self
                    .chars
                    .get(self.pos + 1)
                    .is_some_and(char::is_ascii_digit);
            if c.is_ascii_alphanumeric() || c == '#' || dot_in_number {
                word.push(c);
                self.pos += 1;
            } else {
                break;
            }
        }
        word
    }

    /// A positive decimal factor (`2`, `1.5`).
    fn factor(&mut self, what: &str) -> Result<Time> {
        let at = self.pos;
        let word = self.word();
        let decimal = !word.is_empty()
            && word.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && word.bytes().filter(|&b| b == b'.').count() <= 1;
        match Time::from_decimal(&word) {
            Some(t) if !t.is_zero() => Ok(t),
            _ if word.is_empty() => error(at, format!("{what}: a number must follow")),
            Some(_) => error(at, format!("{what}: '{word}' is not a positive number")),
            None if decimal => error(
                at,
                format!("{what}: '{word}' has too many digits (at most 18 after the point, and below 10^19)"),
            ),
            None => error(
                at,
                format!("{what}: '{word}' is not a decimal number (write 2, 1.5 or 0.25)"),
            ),
        }
    }

    fn integer(&mut self) -> Result<u32> {
        let at = self.pos;
        let mut digits = String::new();
        while let Some(c) = self.peek().filter(char::is_ascii_digit) {
            digits.push(c);
            self.pos += 1;
        }
        digits
            .parse()
            .map_err(|_| PatternError::at(at, "expected a whole number"))
    }

    /// `(k,n)` or `(k,n,r)`.
    fn euclid(&mut self) -> Result<Modifier> {
        let open = self.pos;
        self.pos += 1;
        let mut numbers = Vec::new();
        loop {
            self.skip_spaces();
            numbers.push(self.integer()?);
            self.skip_spaces();
            match self.peek() {
                Some(',') if numbers.len() < 3 => self.pos += 1,
                Some(')') if numbers.len() >= 2 => {
                    self.pos += 1;
                    break;
                }
                _ => {
                    return error(
                        self.pos,
                        "a Euclidean rhythm is (beats, steps) or (beats, steps, rotation)",
                    )
                }
            }
        }
        let (pulses, steps) = (numbers[0], numbers[1]);
        let rotation = numbers.get(2).copied().unwrap_or(0);
        if !(1..=MAX_EUCLID_STEPS).contains(&steps) || pulses > steps {
            return error(
                open,
                format!("({pulses},{steps}): beats 0 to steps, steps 1 to {MAX_EUCLID_STEPS}"),
            );
        }
        Ok(Modifier::Euclid {
            pulses,
            steps,
            rotation: rotation % steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each mistake, where the error points (a character index) and what it says.
    #[test]
    fn errors_point_at_the_character() {
        for (text, at, says) in [
            ("", 0, "empty pattern"),
            ("   ", 0, "empty pattern"),
            ("c3 e3 [g3", 6, "'[' is never closed"),
            ("c3 <e3 g3", 3, "'<' is never closed"),
            ("c3 e3]", 5, "']' closes nothing"),
            ("c3 >", 3, "'>' closes nothing"),
            ("c3 []", 3, "empty '[]'"),
            ("c3 xyz", 3, "unknown sound 'xyz'"),
            ("c3 e12", 3, "octave is 0 to 9"),
            ("c3 200", 3, "out of range"),
            ("c3*", 3, "a number must follow"),
            ("c3*0", 3, "not a positive number"),
            ("c3/x", 3, "'x' is not a decimal number"),
            ("c3*1e10", 3, "'1e10' is not a decimal number"),
            ("c3*0.1234567890123456789", 3, "too many digits"),
            ("c3@99999999999999999999", 3, "too many digits"),
            ("c3:", 2, "':' is followed by a velocity"),
            ("c3@2@3", 4, "given twice"),
            ("c3'foo", 3, "unknown chord 'foo'"),
            ("bd'maj", 2, "a drum has no chords"),
            ("c3:200", 3, "velocity '200'"),
            ("c3*2:80", 4, "belongs right after a note"),
            ("_ c3", 0, "'_' lengthens the step before it"),
            ("! c3", 0, "'!' repeats the step before it"),
            (". c3", 0, "'.' separates groups"),
            ("c3 .", 4, "'.' must be followed by steps"),
            ("c3 e3,", 6, "expected a step here"),
            ("c3 ?", 3, "not supported"),
            ("c3? e3", 2, "not supported"),
            ("{c3 e3}", 0, "polymeter"),
            ("bd(3)", 4, "Euclidean rhythm is"),
            ("bd(9,8)", 2, "beats 0 to steps"),
            ("bd(3,0)", 2, "steps 1 to 256"),
            ("c3!0", 3, "1 to 256"),
            ("c3 $", 3, "unexpected '$'"),
            ("c3 e3&", 5, "unexpected '&' after a step"),
            ("é3", 0, "unexpected 'é'"),
            ("c3 é", 3, "unexpected 'é'"),
        ] {
            let err = parse(text).unwrap_err();
            assert_eq!(err.at, Some(at), "{text:?}: {err}");
            assert!(err.message.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}c3{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&deep).is_ok());
        let deeper = format!(
            "{}c3{}",
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        let err = parse(&deeper).unwrap_err();
        assert_eq!(err.at, Some(MAX_DEPTH));
        assert!(err.message.contains("nested"));
        // Far deeper than any stack would take recursively: still an error, not a crash.
        let absurd = "[".repeat(1_000_000);
        assert!(parse(&absurd).is_err());
    }

    #[test]
    fn spelling_variants_parse_to_one_tree() {
        for (a, b) in [
            ("c3@3 e3", "c3 _ _ e3"),
            ("c3!3", "c3 c3 c3"),
            ("c3 ! !", "c3 c3 c3"),
            ("a b . c d e", "[a b] [c d e]"),
            ("f#3 eb2", "fs3 ef2"),
            ("c3'm7", "c3'min7"),
            ("bd(3,8,9)", "bd(3,8,1)"),
            ("  c3   e3  ", "c3 e3"),
        ] {
            assert_eq!(parse(a), parse(b), "{a} vs {b}");
        }
    }
}
