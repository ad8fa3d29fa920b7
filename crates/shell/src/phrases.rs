//! Plain musical phrases (`brighter`, `a bit darker`, `more reverb`, `faster`, `stop the
//! drums`), each mapped by the one table [`PHRASES`] to a ramped change of the running
//! patch, echoed as the exact command it ran (`brighter -> set filter.cutoff 1800 over 1
//! beat`), so a person learns the precise form and an agent can rely on it.
//!
//! **The target rule.** A phrase acts on the parameter its row names, of the *first*
//! module, in the order of the server's address table (the patch's modules, then its
//! instruments' members, as `keys.filter`), whose type is one of the row's types. A patch
//! without one gets a message saying so. **The change** is relative to the current value
//! (asked with `/get`): multiplied by the row's factor (cutoff, drive, gain) or moved by
//! its step (mixes), clamped to the parameter's range, and ramped over 1 beat. `a bit`
//! (`a little`, `slightly`) takes a smaller step, `much` (`a lot`) a larger one (see
//! [`Size`]). Tempo phrases: `faster`/`slower` move the tempo by 4 bpm (2 for `a bit`, 8
//! for `much`), `half time` halves it, `double time` doubles it.

use crate::{change, closest, find_param, number, Outcome, Param, ShellError, State};

/// How large a step a phrase takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// `a bit`, `a little`, `slightly`: the square root of the factor, half the step.
    Small,
    /// The plain phrase.
    Normal,
    /// `much`, `a lot`, `way`: twice the step (factor squared).
    Large,
}

impl Size {
    fn scale(self) -> f64 {
        match self {
            Size::Small => 0.5,
            Size::Normal => 1.0,
            Size::Large => 2.0,
        }
    }

    fn words(self) -> &'static str {
        match self {
            Size::Small => "a bit ",
            Size::Normal => "",
            Size::Large => "much ",
        }
    }
}

/// How a phrase moves its parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Move {
    /// Multiply by this factor (to the power of the size's scale).
    Times(f64),
    /// Add this step (times the size's scale).
    Plus(f64),
}

/// One row of the phrase table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Phrase {
    /// The words (lower-case).
    pub words: &'static str,
    /// The module types it acts on, any of them: the first such module in the table.
    pub types: &'static [&'static str],
    /// The parameter of that module.
    pub param: &'static str,
    /// How it moves it.
    pub change: Move,
}

/// The phrase table: the one place a plain phrase's meaning is decided.
pub const PHRASES: &[Phrase] = &[
    Phrase {
        words: "brighter",
        types: &["biquad", "ladder", "svf"],
        param: "cutoff",
        change: Move::Times(1.5),
    },
    Phrase {
        words: "darker",
        types: &["biquad", "ladder", "svf"],
        param: "cutoff",
        change: Move::Times(1.0 / 1.5),
    },
    Phrase {
        words: "more reverb",
        types: &["reverb"],
        param: "mix",
        change: Move::Plus(0.1),
    },
    Phrase {
        words: "less reverb",
        types: &["reverb"],
        param: "mix",
        change: Move::Plus(-0.1),
    },
    Phrase {
        words: "more drive",
        types: &["distortion", "ladder"],
        param: "drive",
        change: Move::Times(1.25),
    },
    Phrase {
        words: "less drive",
        types: &["distortion", "ladder"],
        param: "drive",
        change: Move::Times(1.0 / 1.25),
    },
    Phrase {
        words: "louder",
        types: &["gain", "vca"],
        param: "gain",
        change: Move::Times(1.25),
    },
    Phrase {
        words: "quieter",
        types: &["gain", "vca"],
        param: "gain",
        change: Move::Times(1.0 / 1.25),
    },
    Phrase {
        words: "thicker",
        types: &["chorus"],
        param: "mix",
        change: Move::Plus(0.15),
    },
    Phrase {
        words: "thinner",
        types: &["chorus"],
        param: "mix",
        change: Move::Plus(-0.15),
    },
];

/// Other words people use for rows of [`PHRASES`]: each does what its row does and is
/// echoed as that row (`more chorus -> set chorus.mix …` is `thicker`), so the player
/// learns the table's word.
pub const ALIASES: &[(&str, &str)] = &[
    ("more chorus", "thicker"),
    ("less chorus", "thinner"),
    ("more distortion", "more drive"),
    ("less distortion", "less drive"),
    ("softer", "quieter"),
    ("duller", "darker"),
];

/// The tempo phrases: words and what they do to the tempo (normal size).
pub const TEMPO_PHRASES: &[(&str, &str)] = &[
    ("faster", "+4 bpm (a bit: +2, much: +8)"),
    ("slower", "-4 bpm (a bit: -2, much: -8)"),
    ("half time", "bpm / 2"),
    ("double time", "bpm x 2"),
];

/// Single words of the phrases, for "did you mean" among first words.
pub const PHRASE_WORDS: &[&str] = &[
    "brighter", "darker", "louder", "quieter", "thicker", "thinner", "faster", "slower", "softer",
    "duller",
];

/// A phrase recognised in a line's words.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Parsed {
    /// A row of [`PHRASES`], with its size.
    Patch(&'static Phrase, Size),
    /// A tempo phrase: the bpm change as a function of the current tempo.
    Tempo(&'static str, Size),
}

/// The phrase `words` (lower-case) say, if they are one.
pub fn parse(words: &[String]) -> Option<Parsed> {
    let mut text = words.join(" ");
    let mut size = Size::Normal;
    for (prefix, s) in [
        ("a bit ", Size::Small),
        ("a little ", Size::Small),
        ("slightly ", Size::Small),
        ("a little bit ", Size::Small),
        ("much ", Size::Large),
        ("a lot ", Size::Large),
        ("way ", Size::Large),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            text = rest.to_string();
            size = s;
            break;
        }
    }
    let text = text.trim_end_matches(['!', '.', ',']).trim();
    let text = ALIASES
        .iter()
        .find(|(alias, _)| *alias == text)
        .map_or(text, |(_, row)| *row);
    if let Some(row) = PHRASES.iter().find(|p| p.words == text) {
        return Some(Parsed::Patch(row, size));
    }
    ["faster", "slower", "half time", "double time"]
        .into_iter()
        .find(|t| *t == text)
        .map(|t| Parsed::Tempo(t, size))
}

/// The parameter a row acts on in this patch: of the first module of one of its types.
///
/// # Errors
/// The patch has no such module: says which types the phrase needs.
pub fn target(state: &State, row: &Phrase) -> Result<Param, ShellError> {
    let module = state
        .table
        .module_types()
        .find(|(_, t)| row.types.contains(t))
        .map(|(id, _)| id.to_string())
        .ok_or_else(|| {
            ShellError::new(format!(
                "`{}` needs a {} module, and this patch has none (`set <module>.<param> <value>` changes any parameter)",
                row.words,
                row.types.join(" or ")
            ))
        })?;
    find_param(&state.table, &format!("{module}.{}", row.param))
}

/// Runs a phrase: the change it means for the running patch, ramped over 1 beat.
///
/// # Errors
/// No target module, or its current value cannot be read.
pub fn run(
    state: &State,
    phrase: Parsed,
    current: &mut dyn FnMut(&str) -> Option<f32>,
) -> Result<Outcome, ShellError> {
    match phrase {
        Parsed::Tempo(words, size) => {
            let bpm = state.bpm;
            let step = 4.0 * size.scale();
            let target = match words {
                "faster" => bpm + step,
                "slower" => bpm - step,
                "half time" => bpm / 2.0,
                _ => bpm * 2.0,
            };
            // Within the clock's range, as the table declares it.
            let (low, high) = match state
                .table
                .lookup("/clock/bpm")
                .and_then(|e| e.args.first())
                .map(|a| a.kind)
            {
                Some(chronus_protocol::ArgKind::Number { min, max, .. }) => {
                    (f64::from(min), f64::from(max))
                }
                _ => (20.0, 300.0),
            };
            let wanted = target;
            let target = target.clamp(low, high);
            let said = if matches!(words, "faster" | "slower") {
                format!("{}{words}", size.words())
            } else {
                words.to_string()
            };
            if number(target) == number(bpm) {
                let end = if wanted >= bpm { "top" } else { "bottom" };
                return Ok(already(format!(
                    "{said}: the tempo is already {} bpm, its {end}",
                    number(bpm)
                )));
            }
            let mut outcome = crate::tempo(state, target, Some(&said))?;
            if let Outcome::Run(run) = &mut outcome {
                let command = run.command.clone().unwrap_or_default();
                let held = if target == wanted {
                    String::new()
                } else {
                    format!(
                        "; held to the clock's {}..{} bpm",
                        number(low),
                        number(high)
                    )
                };
                run.said = format!("{said} -> {command} ({}{held})", run.said);
            }
            Ok(outcome)
        }
        Parsed::Patch(row, size) => {
            let param = target(state, row)?;
            let now = current(&param.address).ok_or_else(|| {
                ShellError::new(format!(
                    "cannot read {} (asked with /get) to change it relative to its value",
                    param.name
                ))
            })?;
            let now = f64::from(now);
            let wanted = match row.change {
                Move::Times(factor) => now * factor.powf(size.scale()),
                Move::Plus(step) => now + step * size.scale(),
            };
            // Cutoffs and the like round to whole units; mixes and factors to 0.001.
            let wanted = if wanted.abs() >= 100.0 {
                wanted.round()
            } else {
                wanted
            };
            let target = wanted.clamp(f64::from(param.min), f64::from(param.max));
            let words = format!("{}{}", size.words(), row.words);
            if number(target) == number(now) {
                let end = if target >= now { "top" } else { "bottom" };
                return Ok(already(format!(
                    "{words}: {} is already {}{}{}, its {end}",
                    param.name,
                    number(now),
                    if param.unit.is_empty() { "" } else { " " },
                    param.unit
                )));
            }
            let beat = 60.0 / state.bpm;
            let mut asked = Some(now as f32);
            change(
                state,
                &param,
                target,
                Some((beat, "1 beat".to_string())),
                Some(words),
                &mut |_| asked.take(),
            )
        }
    }
}

/// The closest phrase to mistyped words.
pub fn suggest(text: &str) -> Option<String> {
    closest(text, PHRASES.iter().map(|p| p.words))
}

/// A phrase whose parameter (or tempo) is at the end it moves towards already: `said`,
/// and nothing sent or to undo.
fn already(said: String) -> Outcome {
    Outcome::Run(crate::Run {
        command: None,
        ran: Vec::new(),
        said,
        undo: crate::UndoChange::None,
        bpm: None,
        pattern: None,
    })
}

/// The phrase table as Markdown (for `help phrases` and docs/shell.md).
pub fn table_markdown() -> String {
    let mut out = String::from(
        "| phrase | acts on (first module of type) | change, over 1 beat |\n| --- | --- | --- |\n",
    );
    for row in PHRASES {
        let how = match row.change {
            Move::Times(f) if f >= 1.0 => format!(
                "`{}` x {} (a bit: x {}, much: x {})",
                row.param,
                number(f),
                number(f.sqrt()),
                number(f * f)
            ),
            Move::Times(f) => format!(
                "`{}` / {} (a bit: / {}, much: / {})",
                row.param,
                number(1.0 / f),
                number((1.0 / f).sqrt()),
                number(1.0 / (f * f))
            ),
            Move::Plus(s) => format!(
                "`{}` {}{} (a bit: {}, much: {})",
                row.param,
                if s > 0.0 { "+" } else { "" },
                number(s),
                number(s / 2.0),
                number(s * 2.0)
            ),
        };
        out.push_str(&format!(
            "| {} | {} | {how}, clamped to its range |\n",
            row.words,
            row.types.join(", ")
        ));
    }
    for (words, how) in TEMPO_PHRASES {
        out.push_str(&format!(
            "| {words} | the clock | {how} (`bpm N`, from the next beat) |\n"
        ));
    }
    out.push_str("| stop the <track> | that track | `/seq/<track>/stop` on the next bar line (`start <track>` or `undo` brings it back) |\n");
    for (alias, row) in ALIASES {
        out.push_str(&format!(
            "| {alias} | as `{row}` | the same, echoed as `{row}` |\n"
        ));
    }
    out
}
