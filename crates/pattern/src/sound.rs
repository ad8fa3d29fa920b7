//! What one step of a pattern plays: a note name, a MIDI number or a drum, optionally a
//! chord built on it and a velocity.
//!
//! Names follow the conventions musicians and TidalCycles users already type: `c4` is
//! middle C (MIDI 60), a bare `c` is `c4`, `s` or `#` sharpens and `f` or `b` flattens
//! (`fs3`, `f#3`, `eb2`); printed back, Tidal's `s` and `f`. Drums are the General MIDI
//! percussion notes (`bd` is 36), so a drum instrument, a MIDI drum machine and
//! `/note/on 36` agree. `cb` is the cowbell: C-flat is `cf` (or `b3`).

use std::fmt;

/// The drum names, with their General MIDI percussion notes.
pub const DRUMS: [(&str, u8); 10] = [
    ("bd", 36),
    ("rim", 37),
    ("sn", 38),
    ("cp", 39),
    ("hh", 42),
    ("lt", 45),
    ("oh", 46),
    ("mt", 47),
    ("ht", 50),
    ("cb", 56),
];

/// Velocity of a step that names none (MIDI's 0..=127).
pub const DEFAULT_VELOCITY: f64 = 100.0;

/// The chords a step can build (`c3'maj7`): names, aliases, and semitones above the root.
pub const CHORDS: [(&str, &[&str], &[u8]); 18] = [
    ("maj", &["major", "M"], &[0, 4, 7]),
    ("min", &["minor", "m"], &[0, 3, 7]),
    ("aug", &["plus"], &[0, 4, 8]),
    ("dim", &[], &[0, 3, 6]),
    ("sus2", &[], &[0, 2, 7]),
    ("sus4", &["sus"], &[0, 5, 7]),
    ("five", &["5", "power"], &[0, 7]),
    ("six", &["6"], &[0, 4, 7, 9]),
    ("min6", &["m6"], &[0, 3, 7, 9]),
    ("maj7", &["major7", "M7"], &[0, 4, 7, 11]),
    ("dom7", &["7", "seven"], &[0, 4, 7, 10]),
    ("min7", &["m7"], &[0, 3, 7, 10]),
    ("dim7", &[], &[0, 3, 6, 9]),
    ("min7b5", &["m7b5", "hdim"], &[0, 3, 6, 10]),
    ("add9", &[], &[0, 4, 7, 14]),
    ("maj9", &["M9"], &[0, 4, 7, 11, 14]),
    ("dom9", &["9", "nine"], &[0, 4, 7, 10, 14]),
    ("min9", &["m9"], &[0, 3, 7, 10, 14]),
];

/// A chord: an index into [`CHORDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chord(pub(crate) u8);

impl Chord {
    /// The chord called `name` (canonical or an alias).
    pub fn named(name: &str) -> Option<Chord> {
        CHORDS
            .iter()
            .position(|(canonical, aliases, _)| *canonical == name || aliases.contains(&name))
            .map(|i| Chord(i as u8))
    }

    /// Semitones above the root, root first.
    pub fn intervals(self) -> &'static [u8] {
        CHORDS[usize::from(self.0)].2
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        CHORDS[usize::from(self.0)].0
    }
}

/// The sound of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sound {
    /// A note name: `letter` 0..=6 for c..b, `accidental` semitones (+ sharp, − flat),
    /// `octave` as written (0..=9; a bare name is octave 4).
    Note {
        /// 0 = c, 1 = d, … 6 = b.
        letter: u8,
        /// Sharps (positive) or flats (negative), at most two either way.
        accidental: i8,
        /// The octave written, if any.
        octave: Option<u8>,
    },
    /// A MIDI note number, fractional for microtonal steps (0..=127).
    Number(f64),
    /// A drum: an index into [`DRUMS`].
    Drum(u8),
}

/// Semitones of c, d, e, f, g, a, b above c.
const LETTER_SEMITONES: [u8; 7] = [0, 2, 4, 5, 7, 9, 11];
const LETTERS: &[u8; 7] = b"cdefgab";
/// The octave of a note name written without one: middle C's.
pub const DEFAULT_OCTAVE: u8 = 4;

impl Sound {
    /// Reads a word of the notation as a sound: a drum name, a MIDI number or a note
    /// name. The error says what the word should have been.
    pub fn parse(word: &str) -> Result<Sound, String> {
        if let Some(i) = DRUMS.iter().position(|(name, _)| *name == word) {
            return Ok(Sound::Drum(i as u8));
        }
        let first = word.chars().next().unwrap_or(' ');
        if first.is_ascii_digit() {
            let value: f64 = word
                .parse()
                .ok()
                .filter(|_| word.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
                .ok_or_else(|| format!("'{word}' is not a number"))?;
            if !(0.0..=127.0).contains(&value) {
                return Err(format!("MIDI note {word} is out of range 0..127"));
            }
            return Ok(Sound::Number(value));
        }
        let lower = first.to_ascii_lowercase();
        let Some(letter) = LETTERS.iter().position(|&l| char::from(l) == lower) else {
            return Err(unknown(word));
        };
        let rest = &word[1..];
        let digits_at = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (accidentals, octave) = rest.split_at(digits_at);
        let mut accidental = 0i8;
        for c in accidentals.chars() {
            accidental += match c {
                's' | '#' => 1,
                'f' | 'b' => -1,
                _ => return Err(unknown(word)),
            };
        }
        if accidental.abs() > 2 {
            return Err(format!("'{word}': at most two sharps or flats"));
        }
        let octave = if octave.is_empty() {
            None
        } else {
            match octave.parse::<u8>() {
                Ok(o) if o <= 9 => Some(o),
                _ => return Err(format!("'{word}': the octave is 0 to 9 (c4 is middle C)")),
            }
        };
        let sound = Sound::Note {
            letter: letter as u8,
            accidental,
            octave,
        };
        if !(0.0..=127.0).contains(&sound.midi()) {
            return Err(format!(
                "'{word}' is beyond MIDI's range (by name c0 to g9; as a number 0 to 127)"
            ));
        }
        Ok(sound)
    }

    /// Its MIDI note number (C4 = 60; drums: their General MIDI note).
    pub fn midi(self) -> f64 {
        match self {
            Sound::Note {
                letter,
                accidental,
                octave,
            } => {
                let octave = i32::from(octave.unwrap_or(DEFAULT_OCTAVE));
                f64::from(
                    12 * (octave + 1)
                        + i32::from(LETTER_SEMITONES[usize::from(letter)])
                        + i32::from(accidental),
                )
            }
            Sound::Number(n) => n,
            Sound::Drum(i) => f64::from(DRUMS[usize::from(i)].1),
        }
    }
}

fn unknown(word: &str) -> String {
    let drums: Vec<&str> = DRUMS.iter().map(|(n, _)| *n).collect();
    format!(
        "unknown sound '{word}': a note (c4 = middle C, fs3, eb2), a MIDI number (60) or a drum ({})",
        drums.join(" ")
    )
}

impl fmt::Display for Sound {
    /// The canonical spelling, which [`Sound::parse`] reads back to the same sound.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Sound::Note {
                letter,
                accidental,
                octave,
            } => {
                write!(f, "{}", char::from(LETTERS[usize::from(letter)]))?;
                let mark = if accidental > 0 { "s" } else { "f" };
                for _ in 0..accidental.unsigned_abs() {
                    f.write_str(mark)?;
                }
                if let Some(o) = octave {
                    write!(f, "{o}")?;
                }
                Ok(())
            }
            Sound::Number(n) => write!(f, "{n}"),
            Sound::Drum(i) => f.write_str(DRUMS[usize::from(i)].0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_the_midi_notes_musicians_expect() {
        for (word, midi) in [
            ("c4", 60.0),
            ("c", 60.0),
            ("a4", 69.0),
            ("c3", 48.0),
            ("fs3", 54.0),
            ("f#3", 54.0),
            ("eb2", 39.0),
            ("ef2", 39.0),
            ("bb3", 58.0),
            ("b3", 59.0),
            ("C4", 60.0),
            ("css4", 62.0),
            ("c0", 12.0),
            ("g9", 127.0),
            ("60", 60.0),
            ("60.5", 60.5),
            ("bd", 36.0),
            ("sn", 38.0),
            ("hh", 42.0),
            ("cb", 56.0),
        ] {
            assert_eq!(Sound::parse(word).map(Sound::midi), Ok(midi), "{word}");
        }
    }

    #[test]
    fn bad_words_say_what_was_expected() {
        for (word, says) in [
            ("x", "unknown sound 'x'"),
            ("cx4", "unknown sound 'cx4'"),
            ("c10", "octave is 0 to 9"),
            ("gs9", "beyond MIDI's range"),
            ("128", "out of range"),
            ("6x", "not a number"),
            ("cssss", "at most two"),
        ] {
            let err = Sound::parse(word).unwrap_err();
            assert!(err.contains(says), "{word}: {err}");
        }
    }

    #[test]
    fn printing_reads_back() {
        for word in ["c4", "fs3", "eb2", "bb", "cf3", "60.25", "rim", "g9"] {
            let sound = Sound::parse(word).unwrap();
            assert_eq!(Sound::parse(&sound.to_string()), Ok(sound), "{word}");
        }
    }

    #[test]
    fn chords_have_their_aliases() {
        assert_eq!(
            Chord::named("maj7").map(Chord::intervals),
            Some(&[0, 4, 7, 11][..])
        );
        assert_eq!(Chord::named("m"), Chord::named("min"));
        assert_eq!(Chord::named("7").map(Chord::name), Some("dom7"));
        assert_eq!(Chord::named("nope"), None);
        let names: Vec<_> = CHORDS
            .iter()
            .flat_map(|(n, a, _)| std::iter::once(*n).chain(a.iter().copied()))
            .collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "a chord name is taken twice");
    }
}
