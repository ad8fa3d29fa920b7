//! The sequencer: a tempo clock, and tracks that play patterns on instruments in time
//! with it.
//!
//! Everything here is engine state: changed only by stamped commands, advanced by the
//! frames rendered, saved in the snapshot. So a groove plays on through every failover
//! and restart, bit for bit, as the notes a client plays do.
//!
//! **Exact time.** The clock holds its tempo in thousandths of a beat per minute and an
//! *anchor*: the frame on which a whole beat fell when the tempo last changed. Beat `b`
//! falls on frame `anchor_frame + ⌊(b − anchor_beat) · 60 · rate · 1000 / millibpm⌋`,
//! computed from integers every time, never accumulated: at 120 bpm and 48 kHz bar `k`
//! (four beats) starts on frame `k · 96,000` exactly, after any number of bars. A tempo
//! change waits for the next whole beat and moves the anchor there, so bar lines stay on
//! exact frames however the tempo got there.
//!
//! **Tracks** hold the table of one loop of a pattern (`chronus_pattern`: onsets and
//! lengths in exact cycles); a cycle lasts `bars` bars. A track's place is not state of
//! its own: its next event is the first one at or after the clock's beat, in a loop that
//! started on beat 0 — so a track started, or its patch switched, mid-song falls into
//! phase with the others, as in TidalCycles. Starting and stopping a track waits for the
//! next bar line. A note a track plays is a note with its length (the voice releases
//! itself), so stopping the clock or a track never leaves a note hanging.
//!
//! **Swing** moves every off-beat sixteenth later within its pair of sixteenths (0.5 of
//! the pair is straight, 0.75 the most), by a piecewise-linear warp of each event's beat,
//! in exact arithmetic too.

use chronus_dsp::{Patch, PatchDesc, PatchError, StateError, StateReader, StateWriter};
use chronus_pattern::{Event, Time};

/// What a track is to the address table: listed after the patch's nodes as an instance
/// of type `track` (in `/table.reply` too, so a client rebuilds `/seq/<track>/…`), with
/// no ports and no parameters of its own.
pub static TRACK_SPEC: chronus_dsp::ModuleSpec = chronus_dsp::ModuleSpec {
    type_name: "track",
    doc: "A sequencer track: a pattern played on an instrument in time with the clock; /seq/<track>/start and …/stop.",
    inputs: &[],
    outputs: &[],
    params: &[],
    has_gate: false,
};

/// Beats in a bar.
pub const BEATS_PER_BAR: u64 = 4;
/// Most tracks one patch may declare.
pub const MAX_TRACKS: usize = 64;
/// Slowest tempo, in beats per minute.
pub const MIN_BPM: f64 = 20.0;
/// Fastest tempo, in beats per minute.
pub const MAX_BPM: f64 = 400.0;
/// Straight time: the off-beat sixteenth halfway through its pair.
pub const STRAIGHT: f64 = 0.5;
/// The most swing: the off-beat sixteenth three quarters through its pair.
pub const MAX_SWING: f64 = 0.75;
/// Most bars one cycle of a track's pattern may last.
pub const MAX_BARS: u32 = 64;
/// Most events one call of [`Sequencer::run_due`] plays (the notes due on one frame);
/// a bound, so rendering a block always ends.
const MAX_EVENTS_PER_FRAME: usize = 4 * chronus_pattern::MAX_EVENTS;

/// Tempo in thousandths of a beat per minute, held inside the clock's range.
fn millibpm(bpm: f64) -> u32 {
    let bpm = if bpm.is_finite() { bpm } else { 120.0 };
    (bpm.clamp(MIN_BPM, MAX_BPM) * 1000.0).round() as u32
}

/// Swing in thousandths of a pair of sixteenths, held inside its range.
fn swing_permille(swing: f64) -> u32 {
    let swing = if swing.is_finite() { swing } else { STRAIGHT };
    (swing.clamp(STRAIGHT, MAX_SWING) * 1000.0).round() as u32
}

/// The tempo clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clock {
    sample_rate: u64,
    running: bool,
    millibpm: u32,
    swing: u32,
    /// Frame on which beat `anchor_beat` fell.
    anchor_frame: u64,
    anchor_beat: u64,
    /// A tempo change waiting for its beat: (beat, millibpm).
    pending_tempo: Option<(u64, u32)>,
}

impl Clock {
    /// Frames a beat lasts, as the fraction `num / den`.
    fn frames_per_beat(&self) -> (u128, u128) {
        (
            60_000 * u128::from(self.sample_rate),
            u128::from(self.millibpm.max(1)),
        )
    }

    /// The frame `beat` falls on (at or after the anchor), rounded down; `None` before
    /// the anchor or beyond 64 bits.
    fn frame_of(&self, beat: Time) -> Option<u64> {
        let since = beat.checked_sub(Time::whole(self.anchor_beat))?;
        let (num, den) = self.frames_per_beat();
        let frames = u128::from(since.numerator()).checked_mul(num)?
            / u128::from(since.denominator()).checked_mul(den)?;
        self.anchor_frame.checked_add(u64::try_from(frames).ok()?)
    }

    /// The exact beat at `frame` (at or after the anchor).
    fn beat_at(&self, frame: u64) -> Option<Time> {
        let (num, den) = self.frames_per_beat();
        let since = u128::from(frame.checked_sub(self.anchor_frame)?) * den;
        let g = gcd(since, num);
        let beats = Time::new(u64::try_from(since / g).ok()?, u64::try_from(num / g).ok()?)?;
        beats.checked_add(Time::whole(self.anchor_beat))
    }

    /// The first whole beat falling at or after `frame`.
    fn beat_at_or_after(&self, frame: u64) -> Option<u64> {
        self.beat_at(frame).map(Time::ceil)
    }

    /// The first bar line (a multiple of [`BEATS_PER_BAR`]) at or after `frame`.
    fn bar_at_or_after(&self, frame: u64) -> Option<u64> {
        let beat = self.beat_at_or_after(frame)?;
        beat.div_ceil(BEATS_PER_BAR).checked_mul(BEATS_PER_BAR)
    }

    /// Where `beat` sounds with the swing: the second sixteenth of each pair moved from
    /// the middle of the pair to `swing` of it, the rest stretched evenly around it.
    fn swung(&self, beat: Time) -> Option<Time> {
        if self.swing == 500 {
            return Some(beat);
        }
        let half = Time::new(1, 2)?;
        let quarter = Time::new(1, 4)?;
        let pair = beat.checked_mul(Time::whole(2))?.floor();
        let pair_start = Time::new(pair, 2)?;
        let x = beat.checked_sub(pair_start)?;
        let s = Time::new(u64::from(self.swing), 1000)?;
        let moved = if x < quarter {
            x.checked_mul(s.checked_mul(Time::whole(2))?)?
        } else {
            // s/2 + (x − 1/4) · (2 − 2s)
            let rest = Time::whole(2).checked_sub(s.checked_mul(Time::whole(2))?)?;
            s.checked_mul(half)?
                .checked_add(x.checked_sub(quarter)?.checked_mul(rest)?)?
        };
        pair_start.checked_add(moved)
    }

    /// Moves the anchor to `beat` at `frame` with tempo `millibpm`.
    fn re_anchor(&mut self, frame: u64, beat: u64, millibpm: u32) {
        self.anchor_frame = frame;
        self.anchor_beat = beat;
        self.millibpm = millibpm;
        self.pending_tempo = None;
    }

    /// The frame of the tempo change waiting, if any.
    fn pending_tempo_frame(&self) -> Option<u64> {
        let (beat, _) = self.pending_tempo?;
        self.frame_of(Time::whole(beat))
    }
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Where a track is: the event it plays next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cursor {
    /// Loops of the pattern since beat 0.
    lap: u64,
    /// Index of the event in the table.
    index: usize,
}

/// One track.
#[derive(Debug, Clone)]
struct Track {
    name: String,
    /// Its pattern's text, to know a table that can be reused.
    pattern: String,
    /// The instrument's node.
    instrument: u16,
    /// Beats one cycle of the pattern lasts.
    beats_per_cycle: u64,
    /// Cycles before the pattern repeats.
    cycles: u64,
    events: Vec<Event>,
    playing: bool,
    /// A start (true) or stop (false) waiting for its bar line: (beat, start).
    pending_run: Option<(u64, bool)>,
    /// The next event, when the track plays and the clock runs.
    cursor: Option<Cursor>,
    /// The frame the cursor's event falls on with the clock as it is (`u64::MAX`: none):
    /// worked out when the cursor or the clock changes, not every time it is asked for.
    due: u64,
}

impl Track {
    /// The beat of `cursor`'s event, before swing.
    fn beat_of(&self, cursor: Cursor) -> Option<Time> {
        let onset = self.events.get(cursor.index)?.onset;
        let cycle = Time::whole(cursor.lap.checked_mul(self.cycles)?).checked_add(onset)?;
        cycle.checked_mul(Time::whole(self.beats_per_cycle))
    }

    /// The first event at or after `beat`.
    fn cursor_at(&self, beat: Time) -> Option<Cursor> {
        if self.events.is_empty() {
            return None;
        }
        let loop_beats = Time::whole(self.beats_per_cycle.checked_mul(self.cycles)?);
        let lap = beat.checked_div(loop_beats)?.floor();
        let into = beat
            .checked_sub(Time::whole(lap).checked_mul(loop_beats)?)?
            .checked_div(Time::whole(self.beats_per_cycle))?;
        let index = self.events.partition_point(|e| e.onset < into);
        Some(if index < self.events.len() {
            Cursor { lap, index }
        } else {
            Cursor {
                lap: lap.checked_add(1)?,
                index: 0,
            }
        })
    }

    /// The event after `cursor`.
    fn after(&self, cursor: Cursor) -> Option<Cursor> {
        if cursor.index + 1 < self.events.len() {
            Some(Cursor {
                lap: cursor.lap,
                index: cursor.index + 1,
            })
        } else {
            Some(Cursor {
                lap: cursor.lap.checked_add(1)?,
                index: 0,
            })
        }
    }
}

/// The clock and the tracks of the running patch.
#[derive(Debug, Clone)]
pub struct Sequencer {
    clock: Clock,
    tracks: Vec<Track>,
    /// The patch's own `[clock]` (tempo in thousandths, swing in thousandths), if it has
    /// one: a patch switch changes the running clock only when this differs from the
    /// previous patch's, so an edit of the patch keeps a tempo set live.
    declared: Option<(u32, u32)>,
}

impl Sequencer {
    /// The clock and tracks `desc` declares, their instruments found in `patch` (the
    /// patch compiled from `desc`), the clock running from frame 0. Evaluates every
    /// pattern (allocates): done when a patch is compiled, never while rendering.
    ///
    /// # Errors
    /// [`PatchError::Track`]: a pattern that does not parse or is too large, an unknown
    /// instrument (or none in the patch), `bars` out of `1..=64`, a repeated track name,
    /// too many tracks, a tempo or swing out of range.
    pub fn new(desc: &PatchDesc, patch: &Patch, sample_rate: u32) -> Result<Sequencer, PatchError> {
        Sequencer::new_reusing(desc, patch, sample_rate, None)
    }

    /// [`Sequencer::new`], taking over from `previous` the table of each track whose
    /// pattern is the same text: a live edit of one track evaluates that track's pattern
    /// only (a table of thousands of events costs milliseconds, paid in the workers).
    ///
    /// # Errors
    /// As [`Sequencer::new`].
    pub fn new_reusing(
        desc: &PatchDesc,
        patch: &Patch,
        sample_rate: u32,
        previous: Option<&Sequencer>,
    ) -> Result<Sequencer, PatchError> {
        let clock_desc = desc.clock.unwrap_or_default();
        let invalid = |name: &str, reason: String| PatchError::Track {
            name: name.to_string(),
            reason,
        };
        let bad_clock = |reason: String| PatchError::Clock { reason };
        if !(MIN_BPM..=MAX_BPM).contains(&clock_desc.bpm) {
            return Err(bad_clock(format!(
                "bpm = {}: the tempo is {MIN_BPM} to {MAX_BPM}",
                clock_desc.bpm
            )));
        }
        if !(STRAIGHT..=MAX_SWING).contains(&clock_desc.swing) {
            return Err(bad_clock(format!(
                "swing = {}: {STRAIGHT} (straight) to {MAX_SWING}",
                clock_desc.swing
            )));
        }
        if desc.tracks.len() > MAX_TRACKS {
            return Err(invalid(
                &desc.tracks[MAX_TRACKS].name,
                format!("a patch has at most {MAX_TRACKS} tracks"),
            ));
        }
        let mut tracks = Vec::with_capacity(desc.tracks.len());
        for (i, t) in desc.tracks.iter().enumerate() {
            if desc.tracks[..i].iter().any(|other| other.name == t.name) {
                return Err(invalid(&t.name, "a second track of that name".to_string()));
            }
            let valid_name = !t.name.is_empty()
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid_name {
                return Err(invalid(
                    &t.name,
                    "a track name is ASCII letters, digits, '_' and '-'".to_string(),
                ));
            }
            let instrument = match &t.instrument {
                Some(name) => patch
                    .instruments()
                    .find(|(known, _)| known == name)
                    .map(|(_, node)| node)
                    .ok_or_else(|| {
                        let known: Vec<&str> = patch.instruments().map(|(n, _)| n).collect();
                        invalid(
                            &t.name,
                            format!(
                                "unknown instrument '{name}' (instruments: {})",
                                if known.is_empty() {
                                    "none".to_string()
                                } else {
                                    known.join(", ")
                                }
                            ),
                        )
                    })?,
                None => patch
                    .instruments()
                    .next()
                    .map(|(_, node)| node)
                    .ok_or_else(|| {
                        invalid(
                        &t.name,
                        "the patch has no instrument to play it (declare one under [[instruments]])"
                            .to_string(),
                    )
                    })?,
            };
            if !(1..=MAX_BARS).contains(&t.bars) {
                return Err(invalid(
                    &t.name,
                    format!("bars = {}: a cycle lasts 1 to {MAX_BARS} bars", t.bars),
                ));
            }
            let same = previous
                .into_iter()
                .flat_map(|p| &p.tracks)
                .find(|known| known.pattern == t.pattern);
            let (cycles, events) = match same {
                Some(known) => (known.cycles, known.events.clone()),
                None => {
                    let table = chronus_pattern::parse(&t.pattern)
                        .and_then(|p| p.events())
                        .map_err(|e| invalid(&t.name, pointed(&e, &t.pattern)))?;
                    (table.cycles, table.events)
                }
            };
            tracks.push(Track {
                name: t.name.clone(),
                pattern: t.pattern.clone(),
                instrument,
                beats_per_cycle: u64::from(t.bars) * BEATS_PER_BAR,
                cycles,
                events,
                playing: t.playing,
                pending_run: None,
                cursor: None,
                due: u64::MAX,
            });
        }
        let mut sequencer = Sequencer {
            clock: Clock {
                sample_rate: u64::from(sample_rate),
                running: true,
                millibpm: millibpm(clock_desc.bpm),
                swing: swing_permille(clock_desc.swing),
                anchor_frame: 0,
                anchor_beat: 0,
                pending_tempo: None,
            },
            tracks,
            declared: desc
                .clock
                .map(|c| (millibpm(c.bpm), swing_permille(c.swing))),
        };
        sequencer.place_tracks(Time::ZERO);
        Ok(sequencer)
    }

    /// Track names, in declaration order (a track's index in commands is its place here).
    pub fn track_names(&self) -> impl Iterator<Item = &str> {
        self.tracks.iter().map(|t| t.name.as_str())
    }

    /// Whether the clock runs.
    pub fn running(&self) -> bool {
        self.clock.running
    }

    /// Where the clock is at `frame`, in thousandths of a beat since bar 1 (rounded down);
    /// `None` when it is stopped. For screens: it is reported, never computed with.
    pub fn millibeats_at(&self, frame: u64) -> Option<u64> {
        if !self.clock.running {
            return None;
        }
        let beat = self.clock.beat_at(frame)?;
        let millibeats =
            u128::from(beat.numerator()) * 1000 / u128::from(beat.denominator().max(1));
        u64::try_from(millibeats).ok()
    }

    /// The tempo, in thousandths of a beat per minute.
    pub fn millibpm(&self) -> u32 {
        self.clock.millibpm
    }

    /// The tempo, in beats per minute.
    pub fn bpm(&self) -> f64 {
        f64::from(self.clock.millibpm) / 1000.0
    }

    /// The beat a tracks switch made at `now` lands on: the next bar line
    /// ([`SwitchAt::TracksAtBar`](crate::SwitchAt)) or whole beat at or after `now`;
    /// `None` when the clock is stopped (it lands at once).
    pub fn boundary_beat(&self, now: u64, on_beat: bool) -> Option<u64> {
        if !self.clock.running {
            return None;
        }
        if on_beat {
            self.clock.beat_at_or_after(now)
        } else {
            self.clock.bar_at_or_after(now)
        }
    }

    /// The frame whole beat `beat` falls on, with the clock as it is (`None` when the
    /// clock is stopped, or before its anchor).
    pub fn frame_of_beat(&self, beat: u64) -> Option<u64> {
        if !self.clock.running {
            return None;
        }
        self.clock.frame_of(Time::whole(beat))
    }

    /// The exact beat at `frame` on the clock's timeline (counted from its start, or
    /// from where it stopped), before swing: what the arpeggiators place their steps by.
    /// `None` before the clock's last re-anchoring.
    pub fn beat_at_frame(&self, frame: u64) -> Option<Time> {
        self.clock.beat_at(frame)
    }

    /// The frame a note placed on `beat` sounds on with the clock as it is now, swung as the tracks' notes
    /// are while the clock runs (straight while it is stopped): the arpeggiators' steps
    /// land on the same exact frames as a track's notes would. `None` before the clock's
    /// last re-anchoring or beyond 64 bits.
    pub fn note_frame(&self, beat: Time) -> Option<u64> {
        if self.clock.running {
            self.clock.frame_of(self.clock.swung(beat)?)
        } else {
            self.clock.frame_of(beat)
        }
    }

    /// Puts every playing track's cursor on its first event at or after `beat`.
    fn place_tracks(&mut self, beat: Time) {
        let running = self.clock.running;
        for track in &mut self.tracks {
            track.cursor = if running && track.playing {
                track.cursor_at(beat)
            } else {
                None
            };
        }
        self.refresh();
    }

    /// Works out every track's `due` frame again: after the clock changed.
    fn refresh(&mut self) {
        let clock = self.clock;
        for track in &mut self.tracks {
            track.due = Sequencer::event_frame(&clock, track).unwrap_or(u64::MAX);
        }
    }

    /// The frame a track's next event falls on (with swing).
    fn event_frame(clock: &Clock, track: &Track) -> Option<u64> {
        let beat = track.beat_of(track.cursor?)?;
        clock.frame_of(clock.swung(beat)?)
    }

    /// The earliest frame at which something happens: a tempo change landing, a track
    /// starting or stopping, an event; `u64::MAX` if nothing will.
    pub fn next_frame(&self) -> u64 {
        if !self.clock.running {
            return u64::MAX;
        }
        let mut next = self.clock.pending_tempo_frame().unwrap_or(u64::MAX);
        for track in &self.tracks {
            next = next.min(track.due);
            if let Some((beat, _)) = track.pending_run {
                if let Some(frame) = self.clock.frame_of(Time::whole(beat)) {
                    next = next.min(frame);
                }
            }
        }
        next
    }

    /// Plays everything due at or before frame `now`: tempo changes land, tracks start
    /// and stop, and each event due is handed to `play(instrument, note, velocity,
    /// length in frames)` (the engine starts a note that releases itself). Allocates
    /// nothing.
    pub fn run_due(&mut self, now: u64, mut play: impl FnMut(u16, f32, f32, u64)) {
        if !self.clock.running {
            return;
        }
        if let (Some(frame), Some((beat, millibpm))) =
            (self.clock.pending_tempo_frame(), self.clock.pending_tempo)
        {
            if frame <= now {
                self.clock.re_anchor(frame, beat, millibpm);
                self.refresh();
            }
        }
        let clock = self.clock;
        for track in &mut self.tracks {
            if let Some((beat, start)) = track.pending_run {
                if clock.frame_of(Time::whole(beat)).is_some_and(|f| f <= now) {
                    track.pending_run = None;
                    track.playing = start;
                    track.cursor = if start {
                        track.cursor_at(Time::whole(beat))
                    } else {
                        None
                    };
                    track.due = Sequencer::event_frame(&clock, track).unwrap_or(u64::MAX);
                }
            }
            if track.due > now {
                continue;
            }
            let mut played = 0;
            while let Some(cursor) = track.cursor {
                let Some(beat) = track.beat_of(cursor) else {
                    track.cursor = None;
                    break;
                };
                let Some(onset) = clock.swung(beat).and_then(|b| clock.frame_of(b)) else {
                    track.cursor = None;
                    break;
                };
                track.due = onset;
                if onset > now || played >= MAX_EVENTS_PER_FRAME {
                    break;
                }
                let event = track.events[cursor.index];
                let end = event
                    .duration
                    .checked_mul(Time::whole(track.beats_per_cycle))
                    .and_then(|d| beat.checked_add(d))
                    .and_then(|b| clock.swung(b))
                    .and_then(|b| clock.frame_of(b));
                let length = end.map_or(1, |end| end.saturating_sub(onset).max(1));
                play(
                    track.instrument,
                    event.note as f32,
                    event.velocity as f32,
                    length,
                );
                played += 1;
                track.cursor = track.after(cursor);
            }
            if track.cursor.is_none() {
                track.due = u64::MAX;
            }
        }
    }

    /// `/clock/bpm`: the new tempo lands on the next whole beat at or after `now` (at
    /// once when the clock is stopped).
    pub fn set_tempo(&mut self, now: u64, bpm: f64) {
        let target = millibpm(bpm);
        if !self.clock.running {
            self.clock.millibpm = target;
            self.clock.pending_tempo = None;
            return;
        }
        let Some(beat) = self.clock.beat_at_or_after(now) else {
            return;
        };
        self.clock.pending_tempo = Some((beat, target));
    }

    /// `/clock/swing`: from now on.
    pub fn set_swing(&mut self, swing: f64) {
        self.clock.swing = swing_permille(swing);
        self.refresh();
    }

    /// `/clock/start` (from beat 0 at `now`, when stopped; running on otherwise) or
    /// `/clock/stop`.
    pub fn run_clock(&mut self, now: u64, on: bool) {
        if on == self.clock.running {
            return;
        }
        let millibpm = self
            .clock
            .pending_tempo
            .map_or(self.clock.millibpm, |(_, m)| m);
        self.clock.running = on;
        self.clock.re_anchor(now, 0, millibpm);
        for track in &mut self.tracks {
            // A start or stop waiting for a bar line happens at once.
            if let Some((_, start)) = track.pending_run.take() {
                track.playing = start;
            }
        }
        self.place_tracks(Time::ZERO);
    }

    /// `/seq/<track>/start` or `…/stop`: on the next bar line (at once when the clock is
    /// stopped). An unknown track index is ignored (the address table has no such one).
    pub fn run_track(&mut self, now: u64, track: u16, on: bool) {
        let running = self.clock.running;
        let bar = self.clock.bar_at_or_after(now);
        let Some(t) = self.tracks.get_mut(usize::from(track)) else {
            return;
        };
        if !running {
            t.playing = on;
            t.pending_run = None;
            return;
        }
        t.pending_run = if t.playing == on {
            None
        } else {
            bar.map(|beat| (beat, on))
        };
    }

    /// After a patch switch at `now`: this sequencer (the new patch's) keeps `old`'s
    /// clock and the running state of the tracks of the same name, and falls into phase.
    /// Only a patch whose own `[clock]` differs from the previous patch's changes the
    /// tempo (on the next beat) and the swing: an edit that leaves `[clock]` alone keeps
    /// what was set live with `/clock/…`.
    pub fn take_over(&mut self, old: &Sequencer, now: u64) {
        let own_tempo = self.clock.millibpm;
        let own_swing = self.clock.swing;
        self.clock = old.clock;
        if self.declared.is_some() && self.declared != old.declared {
            self.clock.swing = own_swing;
            if own_tempo != self.clock.millibpm {
                self.set_tempo(now, f64::from(own_tempo) / 1000.0);
            }
        }
        for track in &mut self.tracks {
            if let Some(before) = old.tracks.iter().find(|t| t.name == track.name) {
                track.playing = before.playing;
                track.pending_run = before.pending_run;
            }
        }
        // Events exactly at `now` still play: the patch switches before they are due.
        let beat = if self.clock.running {
            self.clock.beat_at(now).unwrap_or(Time::ZERO)
        } else {
            Time::ZERO
        };
        self.place_tracks(beat);
    }

    /// Whether `other` plays the same tracks (names, patterns, instruments, lengths) and
    /// declares the same clock: a patch switch that carries exactly the tracks of an edit
    /// still waiting leaves that edit to land on its boundary. Allocates nothing.
    pub fn same_tracks(&self, other: &Sequencer) -> bool {
        self.declared == other.declared
            && self.tracks.len() == other.tracks.len()
            && self.tracks.iter().zip(&other.tracks).all(|(a, b)| {
                a.name == b.name
                    && a.pattern == b.pattern
                    && a.instrument == b.instrument
                    && a.beats_per_cycle == b.beats_per_cycle
            })
    }

    /// The patch's own `[clock]` as this sequencer keeps it: (tempo in thousandths of a
    /// beat per minute, swing in thousandths), if it has one.
    pub fn declared(&self) -> Option<(u32, u32)> {
        self.declared
    }

    /// Where each track comes from: (name, pattern, instrument node, bars). What a
    /// snapshot writes so that a restore rebuilds these very tracks, which may differ
    /// from the patch text's while an edit waits for its boundary.
    pub fn sources(&self) -> impl Iterator<Item = (&str, &str, u16, u64)> {
        self.tracks.iter().map(|t| {
            (
                t.name.as_str(),
                t.pattern.as_str(),
                t.instrument,
                t.beats_per_cycle / BEATS_PER_BAR,
            )
        })
    }

    /// Writes the clock and the tracks' running state (the tables come from the patch).
    pub fn save_state(&self, w: &mut StateWriter<'_>) {
        let c = &self.clock;
        w.put_bool(c.running);
        w.put_u32(c.millibpm);
        w.put_u32(c.swing);
        w.put_u64(c.anchor_frame);
        w.put_u64(c.anchor_beat);
        let (beat, millibpm) = c.pending_tempo.unwrap_or((u64::MAX, 0));
        w.put_u64(beat);
        w.put_u32(millibpm);
        for t in &self.tracks {
            w.put_bool(t.playing);
            let (beat, start) = t.pending_run.unwrap_or((u64::MAX, false));
            w.put_u64(beat);
            w.put_bool(start);
            let cursor = t.cursor.unwrap_or(Cursor {
                lap: u64::MAX,
                index: 0,
            });
            w.put_u64(cursor.lap);
            w.put_u64(cursor.index as u64);
        }
    }

    /// Reads what [`Sequencer::save_state`] wrote, for the same patch.
    ///
    /// # Errors
    /// [`StateError`] when the bytes run out or hold impossible values.
    pub fn load_state(&mut self, r: &mut StateReader<'_>) -> Result<(), StateError> {
        let running = r.get_bool()?;
        let millibpm = r.get_u32()?;
        let swing = r.get_u32()?;
        let anchor_frame = r.get_u64()?;
        let anchor_beat = r.get_u64()?;
        let pending_beat = r.get_u64()?;
        let pending_millibpm = r.get_u32()?;
        let tempo_ok = |m: u32| (millibpm_range()).contains(&m);
        if !tempo_ok(millibpm)
            || !(500..=750).contains(&swing)
            || (pending_beat != u64::MAX && !tempo_ok(pending_millibpm))
        {
            return Err(StateError::InvalidValue {
                what: "clock",
                offset: r.position(),
            });
        }
        self.clock = Clock {
            sample_rate: self.clock.sample_rate,
            running,
            millibpm,
            swing,
            anchor_frame,
            anchor_beat,
            pending_tempo: (pending_beat != u64::MAX).then_some((pending_beat, pending_millibpm)),
        };
        for t in &mut self.tracks {
            t.playing = r.get_bool()?;
            let beat = r.get_u64()?;
            let start = r.get_bool()?;
            t.pending_run = (beat != u64::MAX).then_some((beat, start));
            let lap = r.get_u64()?;
            let index = r.get_u64()?;
            t.cursor = if lap == u64::MAX {
                None
            } else {
                let bad = StateError::InvalidValue {
                    what: "track cursor",
                    offset: r.position(),
                };
                let index = usize::try_from(index).map_err(|_| bad.clone())?;
                if index >= t.events.len() {
                    return Err(bad);
                }
                Some(Cursor { lap, index })
            };
        }
        self.refresh();
        Ok(())
    }
}

fn millibpm_range() -> std::ops::RangeInclusive<u32> {
    millibpm(MIN_BPM)..=millibpm(MAX_BPM)
}

/// A pattern's error with the pattern on a line of its own and a caret under the
/// culprit; a long pattern shows only the 60 characters around it.
/// Whether `pattern` can be played by a track: it parses and one cycle of it is within
/// the limits; else the reason, pointing at the mistake (as a patch file's error does).
///
/// # Errors
/// The parser's error, with the part of the pattern around it and a caret.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    chronus_pattern::parse(pattern)
        .and_then(|p| p.events())
        .map(|_| ())
        .map_err(|e| pointed(&e, pattern))
}

fn pointed(e: &chronus_pattern::PatternError, pattern: &str) -> String {
    const AROUND: usize = 30;
    let chars: Vec<char> = pattern.chars().collect();
    let at = e.at.unwrap_or(0).min(chars.len());
    let from = at.saturating_sub(AROUND);
    let to = (at + AROUND).min(chars.len());
    let before = if from > 0 { "…" } else { "" };
    let after = if to < chars.len() { "…" } else { "" };
    let shown: String = chars[from..to].iter().collect();
    let caret =
        e.at.map(|_| format!("\n    {}^", " ".repeat(before.chars().count() + at - from)))
            .unwrap_or_default();
    format!("{e}\n    {before}{shown}{after}{caret}")
}

/// The tracks of `desc` as the address table lists them, after the patch's nodes:
/// (name, [`TRACK_SPEC`]).
pub fn track_nodes(
    desc: &PatchDesc,
) -> impl Iterator<Item = (String, &'static chronus_dsp::ModuleSpec)> + '_ {
    desc.tracks.iter().map(|t| (t.name.clone(), &TRACK_SPEC))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronus_dsp::{ClockDesc, TrackDesc};

    const RATE: u32 = 48_000;

    /// The default patch (it has the instrument `keys`) with `tracks` and a clock.
    fn desc(tracks: &[(&str, &str, u32)], clock: Option<ClockDesc>) -> PatchDesc {
        let mut desc = PatchDesc::default_patch();
        desc.clock = clock;
        desc.tracks = tracks
            .iter()
            .map(|&(name, pattern, bars)| TrackDesc {
                name: name.to_string(),
                instrument: None,
                pattern: pattern.to_string(),
                bars,
                playing: true,
            })
            .collect();
        desc
    }

    fn sequencer(desc: &PatchDesc) -> Sequencer {
        let patch = Patch::compile(desc, RATE as f32, 64, 0).unwrap();
        Sequencer::new(desc, &patch, RATE).unwrap()
    }

    /// A played note: (frame, note, velocity, length).
    type Played = (u64, f32, f32, u64);

    /// Something done to the sequencer on a frame (a command, as the engine applies it).
    type Action<'a> = (u64, &'a mut dyn FnMut(&mut Sequencer, u64));

    /// Runs `seq` as the engine does up to `until`, applying `actions` (frame, what) on
    /// their frames first: every note played.
    fn run(seq: &mut Sequencer, from: u64, until: u64, actions: &mut [Action<'_>]) -> Vec<Played> {
        let mut played = Vec::new();
        let mut now = from;
        let mut next_action = 0;
        loop {
            while next_action < actions.len() && actions[next_action].0 <= now {
                (actions[next_action].1)(seq, now);
                next_action += 1;
            }
            seq.run_due(now, |_, note, velocity, length| {
                played.push((now, note, velocity, length));
            });
            let mut next = seq.next_frame();
            if let Some(&(frame, _)) = actions.get(next_action) {
                next = next.min(frame);
            }
            assert!(next > now, "the sequencer must move on (at {now})");
            if next > until {
                return played;
            }
            now = next;
        }
    }

    fn frames(played: &[Played]) -> Vec<u64> {
        played.iter().map(|p| p.0).collect()
    }

    #[test]
    fn bar_lines_fall_on_exact_frames() {
        let mut seq = sequencer(&desc(&[("t", "c4 e4 g4 c5", 1)], None));
        let played = run(&mut seq, 0, 96_000 * 100, &mut []);
        assert_eq!(played.len(), 401);
        for (i, &(frame, _, velocity, length)) in played.iter().enumerate() {
            assert_eq!(frame, 24_000 * i as u64);
            assert_eq!((velocity, length), (100.0, 24_000));
        }
        assert_eq!(played[400].0, 9_600_000);
        let notes: Vec<f32> = played[..5].iter().map(|p| p.1).collect();
        assert_eq!(notes, [60.0, 64.0, 67.0, 72.0, 60.0]);
    }

    #[test]
    fn a_cycle_spread_over_bars_and_triplets_stay_exact() {
        let mut seq = sequencer(&desc(&[("t", "[a b c]", 2), ("u", "bd*7", 1)], None));
        let played = run(&mut seq, 0, 192_000 * 3 - 1, &mut []);
        let t: Vec<u64> = played.iter().filter(|p| p.1 != 36.0).map(|p| p.0).collect();
        assert_eq!(
            t,
            [0, 64_000, 128_000, 192_000, 256_000, 320_000, 384_000, 448_000, 512_000]
        );
        let u: Vec<u64> = played.iter().filter(|p| p.1 == 36.0).map(|p| p.0).collect();
        // Sevenths of a bar: floor(k * 96000 / 7), never drifting.
        assert_eq!(u.len(), 42);
        for (k, frame) in u.iter().enumerate() {
            assert_eq!(*frame, k as u64 * 96_000 / 7, "hit {k}");
        }
    }

    #[test]
    fn a_tempo_change_lands_on_the_next_beat() {
        let mut seq = sequencer(&desc(&[("t", "c4*4", 1)], None));
        let mut to_130 = |s: &mut Sequencer, now: u64| s.set_tempo(now, 130.0);
        let played = run(&mut seq, 0, 300_000, &mut [(100_000, &mut to_130)]);
        // Beats 0..=4 at 120 bpm (24,000 frames); frame 100,000 is inside beat 4, so 130
        // bpm starts on beat 5 (frame 120,000): beat 5 + k at 120,000 + ⌊k · 2,880,000 / 130⌋.
        let expected: Vec<u64> = (0..=4)
            .map(|b| 24_000 * b)
            .chain((0..9).map(|k| 120_000 + k * 2_880_000 / 130))
            .collect();
        assert_eq!(frames(&played), expected);
        assert!((seq.bpm() - 130.0).abs() < 1e-9);
        // The note started on beat 4 kept its length at the old tempo.
        assert_eq!(played[4].3, 24_000);
        assert_eq!(played[5].3, 2_880_000 / 130);
    }

    #[test]
    fn a_tempo_change_on_a_beat_takes_effect_on_that_beat() {
        let mut seq = sequencer(&desc(&[("t", "c4*4", 1)], None));
        let mut to_60 = |s: &mut Sequencer, now: u64| s.set_tempo(now, 60.0);
        let played = run(&mut seq, 0, 200_000, &mut [(48_000, &mut to_60)]);
        assert_eq!(
            frames(&played),
            [0, 24_000, 48_000, 96_000, 144_000, 192_000]
        );
    }

    #[test]
    fn swing_moves_the_off_beat_sixteenths() {
        let clock = ClockDesc {
            bpm: 120.0,
            swing: 0.66,
        };
        let mut seq = sequencer(&desc(&[("t", "hh*16", 1)], Some(clock)));
        let played = run(&mut seq, 0, 96_000 - 1, &mut []);
        // Pairs of sixteenths last 12,000 frames; the second of each falls at 0.66 of it.
        let expected: Vec<u64> = (0..8)
            .flat_map(|p| [12_000 * p, 12_000 * p + 7_920])
            .collect();
        assert_eq!(frames(&played), expected);
        // Eighths are on the pairs' starts: untouched.
        let mut seq = sequencer(&desc(&[("t", "hh*8", 1)], Some(clock)));
        let played = run(&mut seq, 0, 96_000 - 1, &mut []);
        assert_eq!(
            frames(&played),
            (0..8).map(|p| 12_000 * p).collect::<Vec<_>>()
        );
    }

    #[test]
    fn tracks_start_and_stop_on_bar_lines() {
        let mut seq = sequencer(&desc(&[("t", "c4*4", 1), ("u", "bd", 1)], None));
        let mut stop = |s: &mut Sequencer, now: u64| s.run_track(now, 0, false);
        let mut start = |s: &mut Sequencer, now: u64| s.run_track(now, 0, true);
        let played = run(
            &mut seq,
            0,
            5 * 96_000 - 1,
            &mut [(30_000, &mut stop), (200_000, &mut start)],
        );
        let t: Vec<u64> = played.iter().filter(|p| p.1 == 60.0).map(|p| p.0).collect();
        // Plays bar 1, stops at bar 2 (96,000), starts again at bar 4 (288,000), in phase.
        let mut expected: Vec<u64> = (0..4).map(|k| 24_000 * k).collect();
        expected.extend((12..20).map(|k| 24_000 * k));
        assert_eq!(t, expected);
        let u: Vec<u64> = played.iter().filter(|p| p.1 == 36.0).map(|p| p.0).collect();
        assert_eq!(u, [0, 96_000, 192_000, 288_000, 384_000]);
    }

    #[test]
    fn the_clock_stops_and_starts_from_bar_one() {
        let mut seq = sequencer(&desc(&[("t", "<c4 d4>", 1)], None));
        let mut stop = |s: &mut Sequencer, now: u64| s.run_clock(now, false);
        let mut start = |s: &mut Sequencer, now: u64| s.run_clock(now, true);
        let played = run(
            &mut seq,
            0,
            400_000,
            &mut [(100_000, &mut stop), (150_001, &mut start)],
        );
        // Bars at 0 and 96,000 (c4, d4); stopped; bar 1 again at 150,001 (c4), then d4.
        assert_eq!(frames(&played), [0, 96_000, 150_001, 246_001, 342_001]);
        let notes: Vec<f32> = played.iter().map(|p| p.1).collect();
        assert_eq!(notes, [60.0, 62.0, 60.0, 62.0, 60.0]);
    }

    #[test]
    fn a_restored_sequencer_plays_on_bit_for_bit() {
        let d = desc(&[("t", "c4 [e4 g4] <b3 d5>", 1), ("u", "bd(3,8)", 2)], None);
        let mut whole = sequencer(&d);
        let mut to_97 = |s: &mut Sequencer, now: u64| s.set_tempo(now, 97.5);
        let all = run(&mut whole, 0, 800_000, &mut [(150_000, &mut to_97)]);
        let mut first = sequencer(&d);
        let mut to_97 = |s: &mut Sequencer, now: u64| s.set_tempo(now, 97.5);
        let mut before = run(&mut first, 0, 300_000, &mut [(150_000, &mut to_97)]);
        let mut bytes = vec![0u8; 4096];
        let mut w = StateWriter::new(&mut bytes);
        first.save_state(&mut w);
        let len = w.finish().unwrap();
        let mut restored = sequencer(&d);
        restored
            .load_state(&mut StateReader::new(&bytes[..len]))
            .unwrap();
        before.extend(run(&mut restored, 300_001, 800_000, &mut []));
        assert_eq!(before, all);
    }

    #[test]
    fn a_patch_switch_keeps_the_clock_and_the_phase() {
        let old_desc = desc(&[("t", "c4*4", 1)], None);
        let mut old = sequencer(&old_desc);
        let _ = run(&mut old, 0, 130_000, &mut []);
        let new_desc = desc(
            &[("t", "d4*4", 1)],
            Some(ClockDesc {
                bpm: 60.0,
                swing: 0.5,
            }),
        );
        let mut new = sequencer(&new_desc);
        new.take_over(&old, 130_000);
        let played = run(&mut new, 130_000, 300_000, &mut []);
        // Beat 6 (144,000) is still at 120 bpm (the tempo changes on it), then 60 bpm.
        assert_eq!(frames(&played), [144_000, 192_000, 240_000, 288_000]);
        assert!(played.iter().all(|p| p.1 == 62.0));
    }

    #[test]
    fn an_edit_that_leaves_the_clock_alone_keeps_the_tempo_set_live() {
        let clock = Some(ClockDesc {
            bpm: 120.0,
            swing: 0.56,
        });
        let d = desc(&[("t", "c4*4", 1)], clock);
        let mut old = sequencer(&d);
        let mut faster = |s: &mut Sequencer, now: u64| {
            s.set_tempo(now, 150.0);
            s.set_swing(0.7);
        };
        let _ = run(&mut old, 0, 100_000, &mut [(10, &mut faster)]);
        // The same [clock] (an edit of other parts): 150 bpm and 0.7 go on.
        let mut edited = sequencer(&d);
        edited.take_over(&old, 100_000);
        assert!((edited.bpm() - 150.0).abs() < 1e-9);
        assert_eq!(edited.clock.swing, 700);
        // Another [clock] (another patch): its own tempo, on the next beat.
        let other = desc(
            &[("t", "c4*4", 1)],
            Some(ClockDesc {
                bpm: 90.0,
                swing: 0.5,
            }),
        );
        let mut switched = sequencer(&other);
        switched.take_over(&old, 100_000);
        assert_eq!(switched.clock.pending_tempo.map(|(_, m)| m), Some(90_000));
        assert_eq!(switched.clock.swing, 500);
    }

    #[test]
    fn the_notations_drum_names_play_their_drums() {
        // The pattern crate and the drum module know nothing of each other; here, where
        // both meet, their General MIDI numbers must agree.
        use chronus_dsp::modules::drum::kind_for_key;
        for (name, key) in chronus_pattern::sound::DRUMS {
            assert_eq!(kind_for_key(f32::from(key)).name(), name, "{name} = {key}");
        }
    }

    #[test]
    fn bad_tracks_are_refused_with_the_reason() {
        let patch = Patch::compile(&PatchDesc::default_patch(), RATE as f32, 64, 0).unwrap();
        for (tracks, says) in [
            (vec![("t", "c4 [e4", 1)], "'[' is never closed"),
            (vec![("t", "c4", 0)], "bars = 0"),
            (vec![("t", "c4", 65)], "bars = 65"),
            (vec![("t", "c4", 1), ("t", "d4", 1)], "a second track"),
            (vec![("t t", "c4", 1)], "a track name"),
        ] {
            let d = desc(&tracks, None);
            let err = Sequencer::new(&d, &patch, RATE).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
        let mut d = desc(&[("t", "c4", 1)], None);
        d.tracks[0].instrument = Some("nope".to_string());
        let err = Sequencer::new(&d, &patch, RATE).unwrap_err().to_string();
        assert!(
            err.contains("unknown instrument 'nope' (instruments: keys)"),
            "{err}"
        );
        let d = desc(
            &[],
            Some(ClockDesc {
                bpm: 1000.0,
                swing: 0.5,
            }),
        );
        let err = Sequencer::new(&d, &patch, RATE).unwrap_err().to_string();
        assert_eq!(err, "[clock]: bpm = 1000: the tempo is 20 to 400");
        let d = desc(
            &[],
            Some(ClockDesc {
                bpm: 120.0,
                swing: 0.9,
            }),
        );
        let err = Sequencer::new(&d, &patch, RATE).unwrap_err().to_string();
        assert_eq!(err, "[clock]: swing = 0.9: 0.5 (straight) to 0.75");
    }
}
