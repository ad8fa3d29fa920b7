//! Evaluation: a pattern to the table of events one loop of it plays.
//!
//! The semantics are TidalCycles': a sequence divides each cycle among its steps by
//! weight, and a step plays *its own* cycle `c` squeezed into its slot of cycle `c`;
//! `*n` and `/n` speed a step up or down; `<…>` is its sequence slowed by its length, so
//! it plays one step per cycle; layers sound together. A pattern repeats after a whole
//! number of cycles (its period: 2 for `<a b>`, 3 for `a/3`, the least common multiple
//! across layers), and the table holds every event whose onset falls in one period,
//! with exact onsets and lengths in cycles. A note lasts as long as its step would
//! (`c3/2 e3`: the c3 lasts a whole cycle, over the e3, as in Tidal), so `c3'maj7/4` is a
//! chord held for four cycles.
//!
//! Evaluation is bounded: a period over [`MAX_CYCLES`], a table over [`MAX_EVENTS`], or
//! work beyond a fixed budget (`[~ ~]*1000000` has no events but a million cycles to
//! look through) is an error, found before anything is played.

use crate::ast::{Atom, Modifier, Pattern, Sequence, Step, Term};
use crate::sound::DEFAULT_VELOCITY;
use crate::time::Time;
use crate::PatternError;

/// Most events in one period of a pattern (chords count each note): the size of the
/// table a sequencer track holds.
pub const MAX_EVENTS: usize = 4096;
/// Longest period, in cycles, before a pattern repeats.
pub const MAX_CYCLES: u64 = 256;
/// Steps of evaluation allowed (cycles visited plus events made).
const MAX_WORK: u64 = 1_000_000;

/// One note of a pattern's loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// When it starts, in cycles from the start of the loop.
    pub onset: Time,
    /// How long its step lasts, in cycles.
    pub duration: Time,
    /// MIDI note number (C4 = 60; drums: General MIDI percussion notes).
    pub note: f64,
    /// MIDI velocity, 0..=127.
    pub velocity: f64,
}

/// Everything one loop of a pattern plays.
#[derive(Debug, Clone, PartialEq)]
pub struct Events {
    /// Cycles before the pattern repeats.
    pub cycles: u64,
    /// The events, by onset (ties in the order the pattern writes them, a chord from its
    /// root up).
    pub events: Vec<Event>,
}

impl std::fmt::Display for Events {
    /// One line per event, `onset +duration note velocity`, exact: the form the docs
    /// list each example's table in.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} cycle{}",
            self.cycles,
            if self.cycles == 1 { "" } else { "s" }
        )?;
        for e in &self.events {
            writeln!(f, "{} +{} {} {}", e.onset, e.duration, e.note, e.velocity)?;
        }
        Ok(())
    }
}

/// An event before chords are spread: its span and its atom.
struct Hap {
    onset: Time,
    stop: Time,
    atom: Atom,
}

type Result<T> = std::result::Result<T, PatternError>;

/// The pattern a slot or a speed change plays, queried on a span of its own time.
type Inner<'a> = &'a mut dyn FnMut(&mut Query, Time, Time, &mut Vec<Hap>) -> Result<()>;

fn too_complex<T>() -> Result<T> {
    Err(PatternError::whole(
        "too complex to evaluate (its timing needs numbers beyond 64 bits or too much work): simplify the nesting or the factors",
    ))
}

fn lcm(a: u64, b: u64) -> Result<u64> {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    let l = u128::from(a) / u128::from(x.max(1)) * u128::from(b);
    if l > u128::from(MAX_CYCLES) {
        return Err(PatternError::whole(format!(
            "it repeats only every {l} cycles or more; the most is {MAX_CYCLES}"
        )));
    }
    Ok(l as u64)
}

/// The period of `p` played `r` times as fast: the fewest cycles `k` with `k * r` a
/// whole number of `p`'s periods.
fn fast_period(period: u64, r: Time) -> Result<u64> {
    let pb = u128::from(period) * u128::from(r.denominator());
    let a = u128::from(r.numerator());
    let (mut x, mut y) = (pb, a);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    let k = pb / x.max(1);
    if k > u128::from(MAX_CYCLES) {
        return Err(PatternError::whole(format!(
            "it repeats only every {k} cycles; the most is {MAX_CYCLES}"
        )));
    }
    Ok(k as u64)
}

fn total_weight(seq: &Sequence) -> Result<Time> {
    seq.steps
        .iter()
        .try_fold(Time::ZERO, |w, s| w.checked_add(s.weight))
        .map_or_else(too_complex, Ok)
}

fn pattern_period(p: &Pattern) -> Result<u64> {
    p.layers
        .iter()
        .try_fold(1, |acc, layer| lcm(acc, sequence_period(layer)?))
}

fn sequence_period(seq: &Sequence) -> Result<u64> {
    seq.steps
        .iter()
        .try_fold(1, |acc, step| lcm(acc, step_period(step)?))
}

fn step_period(step: &Step) -> Result<u64> {
    let mut period = match &step.term {
        Term::Rest | Term::Atom(_) => 1,
        Term::Group(p) => pattern_period(p)?,
        Term::Alternation(p) => p.layers.iter().try_fold(1, |acc, layer| {
            let w = total_weight(layer)?;
            let slowed = Time::ONE.checked_div(w).map_or_else(too_complex, Ok)?;
            lcm(acc, fast_period(sequence_period(layer)?, slowed)?)
        })?,
    };
    for m in &step.modifiers {
        period = match *m {
            Modifier::Fast(r) => fast_period(period, r)?,
            Modifier::Slow(r) => fast_period(
                period,
                Time::ONE.checked_div(r).map_or_else(too_complex, Ok)?,
            )?,
            Modifier::Euclid { .. } => period,
        };
    }
    Ok(period)
}

/// The query state: the work done so far, against the budget.
struct Query {
    work: u64,
}

fn checked(t: Option<Time>) -> Result<Time> {
    t.map_or_else(too_complex, Ok)
}

impl Query {
    fn spend(&mut self) -> Result<()> {
        self.work += 1;
        if self.work > MAX_WORK {
            return too_complex();
        }
        Ok(())
    }

    /// Every event of `p` with its onset in `[s, e)`.
    fn pattern(&mut self, p: &Pattern, s: Time, e: Time, out: &mut Vec<Hap>) -> Result<()> {
        for layer in &p.layers {
            self.sequence(layer, s, e, out)?;
        }
        Ok(())
    }

    /// The slots of a sequence: for each cycle overlapping `[s, e)`, each step's slot
    /// plays that cycle of the step, squeezed into it.
    fn sequence(&mut self, seq: &Sequence, s: Time, e: Time, out: &mut Vec<Hap>) -> Result<()> {
        let total = total_weight(seq)?;
        let mut offsets = Vec::with_capacity(seq.steps.len());
        let mut offset = Time::ZERO;
        for step in &seq.steps {
            let start = checked(offset.checked_div(total))?;
            offset = checked(offset.checked_add(step.weight))?;
            offsets.push((start, checked(offset.checked_div(total))?));
        }
        for (step, &(from, to)) in seq.steps.iter().zip(&offsets) {
            self.slots(s, e, from, to, out, &mut |q, s, e, out| {
                q.step(step, &step.modifiers, s, e, out)
            })?;
        }
        Ok(())
    }

    /// For each cycle `c` overlapping `[s, e)`, the slot `[c + from, c + to)` plays
    /// cycle `c` of `inner` squeezed into it: `inner` is queried on the part of its cycle
    /// that maps into `[s, e)`, and its events are mapped by the same squeeze.
    fn slots(
        &mut self,
        s: Time,
        e: Time,
        from: Time,
        to: Time,
        out: &mut Vec<Hap>,
        inner: Inner<'_>,
    ) -> Result<()> {
        let width = checked(to.checked_sub(from))?;
        for c in s.floor()..e.ceil() {
            self.spend()?;
            let cycle = Time::whole(c);
            let a = checked(cycle.checked_add(from))?;
            let b = checked(cycle.checked_add(to))?;
            let (lo, hi) = (a.max(s), b.min(e));
            if lo >= hi {
                continue;
            }
            let inner_s = checked(
                cycle.checked_add(checked(checked(lo.checked_sub(a))?.checked_div(width))?),
            )?;
            let inner_e = checked(
                cycle.checked_add(checked(checked(hi.checked_sub(a))?.checked_div(width))?),
            )?;
            let first = out.len();
            inner(self, inner_s, inner_e, out)?;
            for hap in &mut out[first..] {
                let map = |t: Time| -> Result<Time> {
                    checked(
                        a.checked_add(checked(checked(t.checked_sub(cycle))?.checked_mul(width))?),
                    )
                };
                hap.onset = map(hap.onset)?;
                hap.stop = map(hap.stop)?;
            }
        }
        Ok(())
    }

    /// A step with `modifiers` (the last applied outermost).
    fn step(
        &mut self,
        step: &Step,
        modifiers: &[Modifier],
        s: Time,
        e: Time,
        out: &mut Vec<Hap>,
    ) -> Result<()> {
        let Some((last, inner)) = modifiers.split_last() else {
            return self.term(&step.term, s, e, out);
        };
        match *last {
            Modifier::Fast(r) => self.faster(r, s, e, out, &mut |q, s, e, out| {
                q.step(step, inner, s, e, out)
            }),
            Modifier::Slow(r) => {
                let r = checked(Time::ONE.checked_div(r))?;
                self.faster(r, s, e, out, &mut |q, s, e, out| {
                    q.step(step, inner, s, e, out)
                })
            }
            Modifier::Euclid {
                pulses,
                steps,
                rotation,
            } => {
                let beats = bjorklund(pulses, steps);
                let n = u64::from(steps);
                for (i, _) in (0..steps as usize)
                    .filter(|&i| beats[(i + rotation as usize) % steps as usize])
                    .map(|i| (i, ()))
                {
                    let from = checked(Time::new(i as u64, n))?;
                    let to = checked(Time::new(i as u64 + 1, n))?;
                    self.slots(s, e, from, to, out, &mut |q, s, e, out| {
                        q.step(step, inner, s, e, out)
                    })?;
                }
                Ok(())
            }
        }
    }

    /// `inner` played `r` times as fast.
    fn faster(
        &mut self,
        r: Time,
        s: Time,
        e: Time,
        out: &mut Vec<Hap>,
        inner: Inner<'_>,
    ) -> Result<()> {
        let first = out.len();
        inner(
            self,
            checked(s.checked_mul(r))?,
            checked(e.checked_mul(r))?,
            out,
        )?;
        for hap in &mut out[first..] {
            hap.onset = checked(hap.onset.checked_div(r))?;
            hap.stop = checked(hap.stop.checked_div(r))?;
        }
        Ok(())
    }

    fn term(&mut self, term: &Term, s: Time, e: Time, out: &mut Vec<Hap>) -> Result<()> {
        match term {
            Term::Rest => Ok(()),
            Term::Atom(atom) => {
                for c in s.ceil()..e.ceil() {
                    self.spend()?;
                    if out.len() >= MAX_EVENTS {
                        return Err(too_many());
                    }
                    out.push(Hap {
                        onset: Time::whole(c),
                        stop: Time::whole(c + 1),
                        atom: *atom,
                    });
                }
                Ok(())
            }
            Term::Group(p) => self.pattern(p, s, e, out),
            Term::Alternation(p) => {
                for layer in &p.layers {
                    let w = total_weight(layer)?;
                    let r = checked(Time::ONE.checked_div(w))?;
                    self.faster(r, s, e, out, &mut |q, s, e, out| {
                        q.sequence(layer, s, e, out)
                    })?;
                }
                Ok(())
            }
        }
    }
}

fn too_many() -> PatternError {
    PatternError::whole(format!(
        "more than {MAX_EVENTS} events in one loop: make it shorter or sparser"
    ))
}

/// `pulses` beats spread over `steps` as evenly as possible, the first beat first: the
/// Bjorklund algorithm as TidalCycles runs it, so `(3,8)` is `x..x..x.` and `(5,8)` is
/// `x.xx.xx.`.
pub fn bjorklund(pulses: u32, steps: u32) -> Vec<bool> {
    let pulses = pulses.min(steps) as usize;
    let rests = steps as usize - pulses;
    let mut xs: Vec<Vec<bool>> = vec![vec![true]; pulses];
    let mut ys: Vec<Vec<bool>> = vec![vec![false]; rests];
    let (mut i, mut j) = (pulses, rests);
    while i.min(j) > 1 {
        if i > j {
            // Left: the first j of xs take ys; the rest of xs become the remainder.
            let rest = xs.split_off(j);
            for (x, y) in xs.iter_mut().zip(ys) {
                x.extend(y);
            }
            ys = rest;
            (i, j) = (j, i - j);
        } else {
            // Right: every x takes one of ys; the ys left over stay the remainder.
            let rest = ys.split_off(i);
            for (x, y) in xs.iter_mut().zip(ys) {
                x.extend(y);
            }
            ys = rest;
            (i, j) = (i, j - i);
        }
    }
    xs.into_iter().chain(ys).flatten().collect()
}

impl Pattern {
    /// The table of one loop of the pattern.
    ///
    /// # Errors
    /// [`PatternError`] (with no position: it is the whole pattern's) if it repeats only
    /// after more than [`MAX_CYCLES`] cycles, holds more than [`MAX_EVENTS`] events in
    /// one loop, or needs too much work or too large numbers to evaluate.
    pub fn events(&self) -> Result<Events> {
        let cycles = pattern_period(self)?;
        let mut haps = Vec::new();
        let mut query = Query { work: 0 };
        query.pattern(self, Time::ZERO, Time::whole(cycles), &mut haps)?;
        haps.sort_by_key(|h| h.onset);
        let mut events = Vec::with_capacity(haps.len());
        for hap in haps {
            let root = hap.atom.sound.midi();
            let velocity = hap.atom.velocity.unwrap_or(DEFAULT_VELOCITY);
            let duration = checked(hap.stop.checked_sub(hap.onset))?;
            let intervals = hap.atom.chord.map_or(&[0u8][..], |c| c.intervals());
            for &i in intervals {
                let note = root + f64::from(i);
                if note > 127.0 {
                    return Err(PatternError::whole(format!(
                        "the chord {} reaches note {note}, above MIDI's 127: play it an octave lower",
                        hap.atom
                    )));
                }
                if events.len() >= MAX_EVENTS {
                    return Err(too_many());
                }
                events.push(Event {
                    onset: hap.onset,
                    duration,
                    note,
                    velocity,
                });
            }
        }
        Ok(Events { cycles, events })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Events {
        crate::parse(text)
            .and_then(|p| p.events())
            .unwrap_or_else(|e| panic!("{}", e.pointing_into(text)))
    }

    fn onsets(text: &str) -> Vec<String> {
        table(text)
            .events
            .iter()
            .map(|e| e.onset.to_string())
            .collect()
    }

    #[test]
    fn bjorklund_gives_tidals_rhythms() {
        // The table of hmt's `Music.Theory.Bjorklund`, the code TidalCycles runs.
        for (k, n, expected) in [
            (2, 3, "xx."),
            (2, 5, "x.x.."),
            (3, 4, "xxx."),
            (3, 5, "x.x.x"),
            (3, 8, "x..x..x."),
            (4, 7, "x.x.x.x"),
            (4, 9, "x.x.x.x.."),
            (4, 12, "x..x..x..x.."),
            (5, 6, "xxxxx."),
            (5, 7, "x.xx.xx"),
            (5, 8, "x.xx.xx."),
            (5, 9, "x.x.x.x.x"),
            (5, 12, "x..x.x..x.x."),
            (5, 16, "x..x..x..x..x..."),
            (7, 8, "xxxxxxx."),
            (7, 12, "x.xx.x.xx.x."),
            (7, 16, "x..x.x.x..x.x.x."),
            (9, 16, "x.xx.x.x.xx.x.x."),
            (11, 24, "x..x.x.x.x.x..x.x.x.x.x."),
            (13, 24, "x.xx.x.x.x.x.xx.x.x.x.x."),
            (15, 34, "x..x.x.x.x..x.x.x.x..x.x.x.x..x.x."),
            (0, 4, "...."),
            (4, 4, "xxxx"),
            (1, 1, "x"),
        ] {
            let got: String = bjorklund(k, n)
                .iter()
                .map(|&b| if b { 'x' } else { '.' })
                .collect();
            assert_eq!(got, expected, "({k},{n})");
        }
    }

    #[test]
    fn periods() {
        for (text, cycles) in [
            ("a b c", 1),
            ("<a b>", 2),
            ("<a b c> <d e>", 6),
            ("a/3", 3),
            ("a/1.5", 3),
            ("a*1.5", 2),
            ("<a b>*2", 1),
            ("<a b>/2", 4),
            ("<a@3 b>", 4),
            ("[<a b>, <c d e>]", 6),
            ("<a <b c>>", 4),
        ] {
            assert_eq!(table(text).cycles, cycles, "{text}");
        }
    }

    #[test]
    fn steps_divide_the_cycle_exactly() {
        assert_eq!(onsets("a b c"), ["0", "1/3", "2/3"]);
        assert_eq!(onsets("a [b c d]"), ["0", "1/2", "2/3", "5/6"]);
        assert_eq!(onsets("a*3"), ["0", "1/3", "2/3"]);
        assert_eq!(onsets("[a b]*2"), ["0", "1/4", "1/2", "3/4"]);
        assert_eq!(onsets("<a b>*2"), ["0", "1/2"]);
        assert_eq!(onsets("a@2 b"), ["0", "2/3"]);
        // Seven steps: bar lines and sevenths stay exact, however deep.
        assert_eq!(onsets("[[a b c d e f g]]")[6], "6/7");
    }

    #[test]
    fn alternation_plays_one_step_per_cycle() {
        let notes: Vec<f64> = table("<60 62 64>").events.iter().map(|e| e.note).collect();
        assert_eq!(notes, [60.0, 62.0, 64.0]);
        let t = table("<60 [62 64]>");
        assert_eq!(onsets("<60 [62 64]>"), ["0", "1", "3/2"]);
        assert_eq!(t.events[1].duration, Time::new(1, 2).unwrap());
    }

    #[test]
    fn slow_steps_last_and_skip() {
        let t = table("c3/2 e3");
        assert_eq!(t.cycles, 2);
        assert_eq!(t.events[0].duration, Time::ONE);
        assert_eq!(onsets("c3/2 e3"), ["0", "1/2", "3/2"]);
        assert_eq!(table("c3'maj7/4").events[0].duration, Time::whole(4));
    }

    #[test]
    fn chords_velocities_and_drums() {
        let t = table("c4'min:64 bd");
        let notes: Vec<(f64, f64)> = t.events.iter().map(|e| (e.note, e.velocity)).collect();
        assert_eq!(
            notes,
            [(60.0, 64.0), (63.0, 64.0), (67.0, 64.0), (36.0, 100.0)]
        );
    }

    #[test]
    fn limits_are_errors_not_hangs() {
        for text in [
            "hh*5000",
            "[~ ~]*1000000",
            "<a b c d e f g>/40",
            "[1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16]*300",
        ] {
            let err = crate::parse(text).unwrap().events().unwrap_err();
            assert_eq!(err.at, None, "{text}");
        }
        let deep = format!("{}a{}", "[a*1000 ".repeat(8), "]".repeat(8));
        assert!(crate::parse(&deep).unwrap().events().is_err());
        assert!(table("hh*4096").events.len() == MAX_EVENTS);
        assert!(crate::parse("g9'maj").unwrap().events().is_err());
    }
}
