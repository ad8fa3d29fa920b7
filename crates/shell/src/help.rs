//! The shell's help texts: `help` (every command, one line each) and `help <topic>`.

/// The help topics (`help <topic>`).
pub const TOPICS: &[&str] = &[
    "play", "notes", "chords", "scales", "patterns", "tempo", "set", "phrases", "library", "undo",
    "keys",
];

/// The help text for `topic` (`None`: the overview), or `None` for a topic there is no
/// help on (the caller says which topics there are).
pub fn text(topic: Option<&str>) -> Option<String> {
    let body = match topic {
        None => "\
commands (words are case-insensitive; `help <topic>` for more: play chords scales patterns tempo set phrases library undo keys):
  play <note|chord|scale> [for N beats] [on <instrument>] [velocity V]   play Cmaj7 for 2 beats
  hold <note|chord> / release <note|chord>      panic      sustain on|off
  <track> \"<pattern>\"                            drums \"bd ~ sn ~, hh*8\"
  stop the <track> / mute <track> / start <track> / unmute <track>; start / stop (the clock)
  bpm <N>    faster    slower    half time    double time
  set <module>.<param> <value> [over N beats|bars|seconds]     get <module>.<param>
  brighter  darker  more reverb  less reverb  more drive  less drive  louder  quieter
  thicker  thinner   (a bit ..., much ...)
  load <name>   save <name>   list   status   undo   wait <N beats>   help [topic]   quit".to_string(),
        Some("play" | "notes" | "note") => "\
play <what> [for N beats|bars|seconds] [on <instrument>] [velocity 0..127]
  <what>: notes C4 (= MIDI 60), F#3, Bb2, c#-1 .. G9, or numbers (60, 60.5); several at once
  (play C4 E4 G4); a chord (help chords); a scale (help scales). Default: 1 beat, velocity
  100, the patch's first pitched instrument. Sends /note/play <instrument> <note> <velocity>
  <seconds> (seconds = beats x 60 / bpm). hold C4 sends /note/on, release C4 /note/off.".to_string(),
        Some("chords" | "chord") => format!("\
a chord is a root (C, F#, Bb), an optional octave (default 4), an optional ' and a quality:
  Cmaj7  Am  G7/B  Dm7b5  Fsus4  Caug  Bdim7  C6  C9  Cadd9  C3maj7  C3'7
  C7, C9, C6, C11, C13 are chords (for the note C7 say 96); a bare letter is its major chord.
  a /bass sounds below, the nearest note of its name under the root.
  qualities: {}", crate::music::quality_names().filter(|q| !q.is_empty()).collect::<Vec<_>>().join(" ")),
        Some("scales" | "scale") => format!("\
play <root> <name> scale: the scale up one octave, one note after another (each 1/2 beat
  unless `for N beats`): play C minor scale, play Eb3 blues scale, play D dorian
  scales: {}", crate::music::SCALES.iter().map(|(n, _)| n[0]).collect::<Vec<_>>().join(", ")),
        Some("patterns" | "pattern" | "tracks") => "\
<track> \"<pattern>\" [bar|beat]: sends /seq/<track>/pattern; lands on the next bar line.
  drums \"bd ~ sn ~, hh*8\"    bass \"c2 ~ c3 ~\"    (notation: docs/patterns.md)
  stop the drums / mute drums: /seq/drums/stop; start drums / unmute drums: /seq/drums/start
  start / stop: the clock. undo restores the pattern this shell set before.".to_string(),
        Some("tempo" | "bpm") => "\
bpm 124: /clock/bpm 124, from the next beat. faster / slower: +-4 bpm (a bit: 2, much: 8);
  half time: bpm / 2; double time: bpm x 2.".to_string(),
        Some("set" | "get" | "ramp") => "\
set <module>.<param> <value>: /mod/<module>/<param> <value>
set <module>.<param> <value> over 4 beats: /ramp /mod/<module>/<param> <value> <seconds>
  (the engine's own ramp). Instrument members: keys.filter.cutoff. A name that one
  instrument's member ends with works alone (filter.cutoff). get <module>.<param>: /get.".to_string(),
        Some("phrases" | "phrase") => format!(
            "plain phrases, each one change ramped over 1 beat (see the target rule in docs/shell.md):\n{}",
            crate::phrases::table_markdown()
        ),
        Some("library" | "load" | "save" | "list") => "\
load <name>: /library/load (a saved patch, else a preset; crossfaded). save <name>:
  /library/save. list: /library/list.".to_string(),
        Some("undo") => "\
undo: reverts this shell's latest set, phrase, tempo, pattern or mute (a set ramps back to
  the value it had, asked with /get, over 1 beat). Again: the one before.".to_string(),
        Some("keys" | "editing") => "\
Tab completes commands, instruments, module.param names, tracks, chords and notes.
  Up/Down: history (kept in $XDG_STATE_HOME/chronus/shell_history, else
  ~/.local/state/chronus/shell_history). Ctrl-D or quit: leave.".to_string(),
        Some(_) => return None,
    };
    Some(body)
}
