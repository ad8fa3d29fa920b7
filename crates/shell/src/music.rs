//! Note names, chord names and scales: the musical words of the shell, as MIDI notes.
//!
//! - A note is a letter `A`..`G`, an optional accidental (`#` or `b`; `s` for sharp too)
//!   and an octave from `-1` to `9`: `C4` = MIDI 60 (so A4 = 69 = 440 Hz), `F#3` = 54,
//!   `Bb2` = 46, `c#-1` = 1, `G9` = 127. A plain number is a MIDI note, fractional for
//!   microtones (`60.5`).
//! - A chord is a root (letter and accidental), an optional octave (default 4), an
//!   optional `'` and a quality from [`QUALITIES`], and an optional `/bass`: `Cmaj7`,
//!   `Am`, `G7/B`, `Dm7b5`, `C3maj7`, `C3'7`. Where a name could be either (`C7`, `C9`,
//!   `C6`, `C11`, `C13`), it is the chord, as musicians read it: the note in that octave
//!   is its MIDI number (`96` for C7). A letter alone (`C`, `Bb`) is its major chord.
//!   A slash bass sounds below the chord: the highest note of its name under the root.
//! - A scale is a root, an optional octave (default 4) and a name from [`SCALES`]: it is
//!   played up one octave, the top root included.
//!
//! Every word is matched lower-cased, so `m` and `M` both mean minor: write `maj7` for
//! a major seventh (`CM7` is C minor 7).

/// Pitch class of each letter, from C.
fn letter_class(letter: char) -> Option<i32> {
    Some(match letter.to_ascii_lowercase() {
        'c' => 0,
        'd' => 2,
        'e' => 4,
        'f' => 5,
        'g' => 7,
        'a' => 9,
        'b' => 11,
        _ => return None,
    })
}

/// A root: its pitch class (0 = C, may be -1 or 12 before wrapping: `Cb`, `B#`), whether
/// it was spelled flat (names then print with flats), and the rest of the word.
fn root(word: &str) -> Option<(i32, bool, &str)> {
    let mut chars = word.chars();
    let class = letter_class(chars.next()?)?;
    let rest = chars.as_str();
    if let Some(rest) = rest.strip_prefix('#') {
        return Some((class + 1, false, rest));
    }
    // `b` after the letter is a flat (`Bb`), `s` a sharp (`Fs`, as in some trackers).
    if let Some(rest) = rest.strip_prefix(['b', 'B']) {
        return Some((class - 1, true, rest));
    }
    if let Some(rest) = rest.strip_prefix('s') {
        if !rest.starts_with("us") {
            return Some((class + 1, false, rest));
        }
    }
    Some((class, false, rest))
}

/// An octave number from -1 to 9 at the start of `text`, and the rest.
fn octave(text: &str) -> Option<(i32, &str)> {
    let digits_from = usize::from(text.starts_with('-'));
    let end = text
        .char_indices()
        .skip(digits_from)
        .find(|(_, c)| !c.is_ascii_digit())
        .map_or(text.len(), |(i, _)| i);
    if end == digits_from {
        return None;
    }
    let number: i32 = text.get(..end)?.parse().ok()?;
    (-1..=9)
        .contains(&number)
        .then_some((number, text.get(end..)?))
}

/// MIDI note of pitch class `class` in `octave` (C4 = 60).
fn midi(class: i32, octave: i32) -> i32 {
    (octave + 1) * 12 + class
}

/// The MIDI note a word names: a note name (`C4`, `F#3`, `Bb2`, `c#-1`) or a number
/// from 0 to 127 (`60`, `60.5`). `None` if it is neither, or out of 0..127.
pub fn parse_note(word: &str) -> Option<f32> {
    if let Ok(number) = word.parse::<f32>() {
        return (number.is_finite() && (0.0..=127.0).contains(&number)).then_some(number);
    }
    let (class, _, rest) = root(word)?;
    let (octave, rest) = octave(rest)?;
    let note = midi(class, octave);
    (rest.is_empty() && (0..=127).contains(&note)).then_some(note as f32)
}

/// The name of MIDI note `note` (rounded): `C4`, `F#3`, or with flats `Bb2`.
pub fn note_name(note: f32, flats: bool) -> String {
    if note.fract() != 0.0 {
        return format!("{note}");
    }
    let note = note as i32;
    const SHARPS: [&str; 12] = [
        "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
    ];
    const FLATS: [&str; 12] = [
        "C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B",
    ];
    let names = if flats { FLATS } else { SHARPS };
    format!(
        "{}{}",
        names[note.rem_euclid(12) as usize],
        note.div_euclid(12) - 1
    )
}

/// Chord qualities: the names (lower-case; the first is the one shown) and the intervals
/// above the root, in semitones.
pub const QUALITIES: &[(&[&str], &[i32])] = &[
    (&["", "maj", "major"], &[0, 4, 7]),
    (&["m", "min", "minor", "-"], &[0, 3, 7]),
    (&["7", "dom7"], &[0, 4, 7, 10]),
    (&["maj7", "^7", "ma7"], &[0, 4, 7, 11]),
    (&["m7", "min7", "-7"], &[0, 3, 7, 10]),
    (&["mmaj7", "minmaj7"], &[0, 3, 7, 11]),
    (&["dim", "o"], &[0, 3, 6]),
    (&["dim7", "o7"], &[0, 3, 6, 9]),
    (&["m7b5", "ø", "half-dim"], &[0, 3, 6, 10]),
    (&["aug", "+"], &[0, 4, 8]),
    (&["sus2"], &[0, 2, 7]),
    (&["sus4", "sus"], &[0, 5, 7]),
    (&["6", "maj6"], &[0, 4, 7, 9]),
    (&["m6", "min6"], &[0, 3, 7, 9]),
    (&["9", "dom9"], &[0, 4, 7, 10, 14]),
    (&["maj9"], &[0, 4, 7, 11, 14]),
    (&["m9", "min9"], &[0, 3, 7, 10, 14]),
    (&["add9"], &[0, 4, 7, 14]),
    (&["11"], &[0, 4, 7, 10, 14, 17]),
    (&["13"], &[0, 4, 7, 10, 14, 21]),
    (&["power"], &[0, 7]),
];

/// Scales: names (lower-case, the first shown) and the steps of one octave.
pub const SCALES: &[(&[&str], &[i32])] = &[
    (&["major", "ionian"], &[0, 2, 4, 5, 7, 9, 11]),
    (
        &["minor", "aeolian", "natural minor"],
        &[0, 2, 3, 5, 7, 8, 10],
    ),
    (&["harmonic minor"], &[0, 2, 3, 5, 7, 8, 11]),
    (&["melodic minor"], &[0, 2, 3, 5, 7, 9, 11]),
    (&["dorian"], &[0, 2, 3, 5, 7, 9, 10]),
    (&["phrygian"], &[0, 1, 3, 5, 7, 8, 10]),
    (&["lydian"], &[0, 2, 4, 6, 7, 9, 11]),
    (&["mixolydian"], &[0, 2, 4, 5, 7, 9, 10]),
    (&["locrian"], &[0, 1, 3, 5, 6, 8, 10]),
    (&["pentatonic", "major pentatonic"], &[0, 2, 4, 7, 9]),
    (&["minor pentatonic"], &[0, 3, 5, 7, 10]),
    (&["blues"], &[0, 3, 5, 6, 7, 10]),
    (&["whole tone", "whole-tone"], &[0, 2, 4, 6, 8, 10]),
    (&["chromatic"], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]),
];

/// A chord as named: its notes (the slash bass first), and its name as shown.
#[derive(Debug, Clone, PartialEq)]
pub struct Chord {
    /// MIDI notes, low to high.
    pub notes: Vec<f32>,
    /// Whether its names print with flats (its root was spelled flat).
    pub flats: bool,
}

fn quality(name: &str) -> Option<&'static [i32]> {
    let name = name.to_ascii_lowercase();
    QUALITIES
        .iter()
        .find(|(names, _)| names.contains(&name.as_str()))
        .map(|(_, steps)| *steps)
}

/// The chord a word names (`Cmaj7`, `Am`, `G7/B`, `C3maj7`, `C3'7`, `C`), or `None`. A
/// word that is a note name (`C4`) is not a chord (but `C7`, `C9`, `C6`, `C11`, `C13` are).
pub fn parse_chord(word: &str) -> Option<Chord> {
    let (chord, bass) = match word.split_once('/') {
        Some((chord, bass)) => (chord, Some(bass)),
        None => (word, None),
    };
    let (class, flats, rest) = root(chord)?;
    // The quality alone (octave 4), else an octave then the quality.
    let (oct, steps) = match quality(rest) {
        Some(steps) => (4, steps),
        _ => {
            let (oct, rest) = octave(rest)?;
            let rest = rest.strip_prefix('\'').unwrap_or(rest);
            if rest.is_empty() && bass.is_none() {
                return None; // a note
            }
            (oct, quality(rest)?)
        }
    };
    let base = midi(class, oct);
    let mut notes: Vec<f32> = steps.iter().map(|s| (base + s) as f32).collect();
    if let Some(bass) = bass {
        let (bass_class, _, rest) = root(bass)?;
        if !rest.is_empty() {
            return None;
        }
        // The highest note of that name below the root.
        let mut low = base - 1;
        while (low - bass_class).rem_euclid(12) != 0 {
            low -= 1;
        }
        notes.insert(0, low as f32);
    }
    notes
        .iter()
        .all(|n| (0.0..=127.0).contains(n))
        .then_some(Chord { notes, flats })
}

/// The steps of the scale called `name` (lower-case words joined by one space).
pub fn scale_steps(name: &str) -> Option<&'static [i32]> {
    SCALES
        .iter()
        .find(|(names, _)| names.contains(&name))
        .map(|(_, steps)| *steps)
}

/// A scale's root: a letter, accidental and optional octave (default 4); MIDI note and
/// whether it was spelled flat.
pub fn parse_scale_root(word: &str) -> Option<(i32, bool)> {
    let (class, flats, rest) = root(word)?;
    let oct = if rest.is_empty() {
        4
    } else {
        octave(rest).filter(|(_, r)| r.is_empty())?.0
    };
    Some((midi(class, oct), flats))
}

/// Every chord quality and scale name, for help and completion.
pub fn quality_names() -> impl Iterator<Item = &'static str> {
    QUALITIES
        .iter()
        .flat_map(|(names, _)| names.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_names_are_midi_numbers() {
        for (word, note) in [
            ("C4", 60.0),
            ("c4", 60.0),
            ("A4", 69.0),
            ("F#3", 54.0),
            ("Bb2", 46.0),
            ("c#-1", 1.0),
            ("C-1", 0.0),
            ("G9", 127.0),
            ("60.5", 60.5),
            ("0", 0.0),
        ] {
            assert_eq!(parse_note(word), Some(note), "{word}");
        }
        for bad in [
            "H4", "G#9", "C10", "128", "-1", "C", "Cmaj7", "", "NaN", "inf",
        ] {
            assert_eq!(parse_note(bad), None, "{bad}");
        }
    }

    #[test]
    fn chords_spell_their_notes() {
        let names = |word: &str| -> String {
            let chord = parse_chord(word).unwrap_or_else(|| panic!("{word} is a chord"));
            chord
                .notes
                .iter()
                .map(|n| note_name(*n, chord.flats))
                .collect::<Vec<_>>()
                .join(" ")
        };
        for (word, notes) in [
            ("Cmaj7", "C4 E4 G4 B4"),
            ("Am", "A4 C5 E5"),
            ("G7/B", "B3 G4 B4 D5 F5"),
            ("Dm7b5", "D4 F4 G#4 C5"),
            ("Fsus4", "F4 A#4 C5"),
            ("Caug", "C4 E4 G#4"),
            ("Bdim7", "B4 D5 F5 G#5"),
            ("C6", "C4 E4 G4 A4"),
            ("C9", "C4 E4 G4 A#4 D5"),
            ("Cadd9", "C4 E4 G4 D5"),
            ("C", "C4 E4 G4"),
            ("C3maj7", "C3 E3 G3 B3"),
            ("C3'7", "C3 E3 G3 A#3"),
            ("Bbm", "Bb4 Db5 F5"),
            ("cmaj7", "C4 E4 G4 B4"),
        ] {
            assert_eq!(names(word), notes, "{word}");
        }
        for not_chord in ["C4", "H", "Cfoo", "C/H", "G9x", ""] {
            assert_eq!(parse_chord(not_chord), None, "{not_chord}");
        }
    }

    #[test]
    fn scales_are_found_by_name() {
        assert_eq!(scale_steps("minor"), Some(&[0, 2, 3, 5, 7, 8, 10][..]));
        assert_eq!(scale_steps("minor pentatonic").map(<[i32]>::len), Some(5));
        assert_eq!(parse_scale_root("C"), Some((60, false)));
        assert_eq!(parse_scale_root("Eb3"), Some((51, true)));
    }
}
