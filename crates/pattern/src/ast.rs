//! The parsed form of a pattern, and its printing back into the notation.
//!
//! The tree is what was written, minus spelling: `a!3` is stored as three steps, `a _ _`
//! as one step of weight 3, `a b . c d` as two groups, aliases as their canonical names.
//! Printing writes the canonical notation, which parses back to an equal tree (a property
//! test holds the two to that).

use std::fmt;

use crate::sound::{Chord, Sound};
use crate::time::Time;

/// A pattern: one or more layers played at once (`bd ~ sn ~, hh*8` is two), each a
/// sequence of steps that divides the cycle.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    /// The layers, stacked; never empty.
    pub layers: Vec<Sequence>,
}

/// Steps sharing a span of time in proportion to their weights.
#[derive(Debug, Clone, PartialEq)]
pub struct Sequence {
    /// The steps, in order; never empty.
    pub steps: Vec<Step>,
}

/// One step: what it plays, transformed by its modifiers in the order written, taking
/// `weight` shares of its sequence's span.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// What the step plays.
    pub term: Term,
    /// `*2`, `/2`, `(3,8)`, applied left to right.
    pub modifiers: Vec<Modifier>,
    /// Shares of the sequence's span (`@3`, or `_` continuations); 1 by default.
    pub weight: Time,
}

/// What a step plays.
#[derive(Debug, Clone, PartialEq)]
pub enum Term {
    /// `~`: silence.
    Rest,
    /// A sound, possibly a chord, possibly with a velocity.
    Atom(Atom),
    /// `[…]`: a subdivision (layers stacked with `,`).
    Group(Pattern),
    /// `<…>`: one step per cycle, in turn (each layer on its own).
    Alternation(Pattern),
}

/// A sounding step: `c3`, `c3'maj7`, `bd:80`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Atom {
    /// The note or drum.
    pub sound: Sound,
    /// A chord built on the note, if any (never on a drum).
    pub chord: Option<Chord>,
    /// MIDI velocity 0..=127, if written.
    pub velocity: Option<f64>,
}

/// A transformation of a step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Modifier {
    /// `*n`: plays the step `n` times as fast (so `n` times in its span).
    Fast(Time),
    /// `/n`: plays the step `n` times as slow (one cycle of it over `n` spans).
    Slow(Time),
    /// `(k,n,r)`: the step on `k` of `n` equal beats spread as evenly as possible
    /// (Bjorklund's algorithm, as in TidalCycles), rotated left by `r`.
    Euclid {
        /// Beats that play.
        pulses: u32,
        /// Beats in all.
        steps: u32,
        /// Beats rotated left.
        rotation: u32,
    },
}

/// Writes a factor or weight as the decimal the notation reads (the parser only makes
/// decimals, so every tree it makes prints; other values print as `n/d`, which does not
/// parse back).
fn decimal(f: &mut fmt::Formatter<'_>, t: Time) -> fmt::Result {
    match t.to_decimal() {
        Some(text) => f.write_str(&text),
        None => write!(f, "{t}"),
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, layer) in self.layers.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{layer}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Sequence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.steps.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.term {
            Term::Rest => f.write_str("~")?,
            Term::Atom(atom) => write!(f, "{atom}")?,
            Term::Group(p) => write!(f, "[{p}]")?,
            Term::Alternation(p) => write!(f, "<{p}>")?,
        }
        for m in &self.modifiers {
            match *m {
                Modifier::Fast(t) => {
                    f.write_str("*")?;
                    decimal(f, t)?;
                }
                Modifier::Slow(t) => {
                    f.write_str("/")?;
                    decimal(f, t)?;
                }
                Modifier::Euclid {
                    pulses,
                    steps,
                    rotation: 0,
                } => write!(f, "({pulses},{steps})")?,
                Modifier::Euclid {
                    pulses,
                    steps,
                    rotation,
                } => write!(f, "({pulses},{steps},{rotation})")?,
            }
        }
        if self.weight != Time::ONE {
            f.write_str("@")?;
            decimal(f, self.weight)?;
        }
        Ok(())
    }
}

impl fmt::Display for Atom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.sound)?;
        if let Some(chord) = self.chord {
            write!(f, "'{}", chord.name())?;
        }
        if let Some(v) = self.velocity {
            write!(f, ":{v}")?;
        }
        Ok(())
    }
}
