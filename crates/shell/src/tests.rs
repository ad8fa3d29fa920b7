//! Table-driven tests of the language, to the byte, and proptests: no line panics, every
//! message produced is valid against the address table.

use super::*;
use proptest::prelude::*;

fn state() -> State {
    State::new(tests_support::table(), 120.0)
}

/// Current values the fake server reports.
fn values(address: &str) -> Option<f32> {
    Some(match address {
        "/mod/filter/cutoff" => 1200.0,
        "/mod/reverb/mix" => 0.3,
        "/mod/chorus/mix" => 0.5,
        "/mod/drive/drive" => 4.0,
        "/mod/amp/gain" => 0.8,
        _ => return None,
    })
}

fn run(state: &State, line: &str) -> Run {
    match interpret(state, line, &mut values) {
        Ok(Outcome::Run(run)) => run,
        other => panic!("{line}: {other:?}"),
    }
}

fn error(state: &State, line: &str) -> String {
    match interpret(state, line, &mut values) {
        Err(e) => e.to_string(),
        other => panic!("{line} should fail: {other:?}"),
    }
}

fn texts(run: &Run) -> Vec<String> {
    run.ran.iter().map(|s| s.text.clone()).collect()
}

#[test]
fn lines_become_exact_messages_and_answers() {
    let state = state();
    for (line, ran, said) in [
        ("play Cmaj7 for 2 beats", vec!["/note/play keys 60 100 1", "/note/play keys 64 100 1", "/note/play keys 67 100 1", "/note/play keys 71 100 1"], "playing Cmaj7 (C4 E4 G4 B4) for 2 beats on keys"),
        ("PLAY c4", vec!["/note/play keys 60 100 0.5"], "playing C4 for 1 beat on keys"),
        ("play 60.5 for 1 bar velocity 90", vec!["/note/play keys 60.5 90 2"], "playing 60.5 for 1 bar on keys"),
        ("play G7/B on keys", vec!["/note/play keys 59 100 0.5", "/note/play keys 67 100 0.5", "/note/play keys 71 100 0.5", "/note/play keys 74 100 0.5", "/note/play keys 77 100 0.5"], "playing G7/B (B3 G4 B4 D5 F5) for 1 beat on keys"),
        ("play C minor scale", vec!["/note/play keys 60 100 0.25", "/note/play keys 62 100 0.25", "/note/play keys 63 100 0.25", "/note/play keys 65 100 0.25", "/note/play keys 67 100 0.25", "/note/play keys 68 100 0.25", "/note/play keys 70 100 0.25", "/note/play keys 72 100 0.25"], "playing C minor scale (C4 D4 D#4 F4 G4 G#4 A#4 C5), each for 0.5 beats, on keys"),
        ("hold C4", vec!["/note/on keys 60 100"], "holding C4 on keys (`release C4` ends it)"),
        ("release c4", vec!["/note/off keys 60"], "sent note-off for C4 on keys (this shell was not holding it)"),
        ("panic", vec!["/panic"], "every voice silenced"),
        ("sustain on", vec!["/sustain keys 1"], "sustain pedal down on keys"),
        ("bpm 124", vec!["/clock/bpm 124"], "tempo 120 -> 124 bpm, from the next beat"),
        ("faster", vec!["/clock/bpm 124"], "faster -> bpm 124 (tempo 120 -> 124 bpm, from the next beat)"),
        ("half time", vec!["/clock/bpm 60"], "half time -> bpm 60 (tempo 120 -> 60 bpm, from the next beat)"),
        ("set filter.cutoff 800", vec!["/mod/filter/cutoff 800"], "filter.cutoff 1200 -> 800 Hz"),
        ("set filter.cutoff 800 over 4 beats", vec!["/ramp /mod/filter/cutoff 800 2"], "filter.cutoff 1200 -> 800 Hz over 4 beats"),
        ("set keys.lp.cutoff to 500 over 2 seconds", vec!["/ramp /mod/keys.lp/cutoff 500 2"], "keys.lp.cutoff 500 Hz over 2 seconds"),
        ("set lp.cutoff 500", vec!["/mod/keys.lp/cutoff 500"], "keys.lp.cutoff 500 Hz"),
        ("brighter", vec!["/ramp /mod/filter/cutoff 1800 0.5"], "brighter -> set filter.cutoff 1800 over 1 beat (filter.cutoff 1200 -> 1800 Hz over 1 beat)"),
        ("a bit darker", vec!["/ramp /mod/filter/cutoff 980 0.5"], "a bit darker -> set filter.cutoff 980 over 1 beat (filter.cutoff 1200 -> 980 Hz over 1 beat)"),
        ("more reverb", vec!["/ramp /mod/reverb/mix 0.4 0.5"], "more reverb -> set reverb.mix 0.4 over 1 beat (reverb.mix 0.3 -> 0.4 over 1 beat)"),
        ("less drive", vec!["/ramp /mod/drive/drive 3.2 0.5"], "less drive -> set drive.drive 3.2 over 1 beat (drive.drive 4 -> 3.2 over 1 beat)"),
        ("louder", vec!["/ramp /mod/amp/gain 1 0.5"], "louder -> set amp.gain 1 over 1 beat (amp.gain 0.8 -> 1 over 1 beat)"),
        ("thicker", vec!["/ramp /mod/chorus/mix 0.65 0.5"], "thicker -> set chorus.mix 0.65 over 1 beat (chorus.mix 0.5 -> 0.65 over 1 beat)"),
        ("d1 \"c3 e3 g3 ~\"", vec!["/seq/d1/pattern \"c3 e3 g3 ~\""], "d1 plays \"c3 e3 g3 ~\" from the next bar"),
        ("drums \"bd ~ sn ~, hh*8\"", vec!["/seq/drums/pattern \"bd ~ sn ~, hh*8\""], "drums plays \"bd ~ sn ~, hh*8\" from the next bar"),
        ("stop the drums", vec!["/seq/drums/stop"], "stop the drums -> stop drums (drums stops on the next bar line)"),
        ("mute drums", vec!["/seq/drums/stop"], "drums stops on the next bar line"),
        ("unmute drums", vec!["/seq/drums/start"], "drums starts on the next bar line"),
        ("start", vec!["/clock/start"], "the clock runs from bar 1"),
        ("load pad", vec!["/library/load pad"], "loaded pad"),
        ("save mine", vec!["/library/save mine"], "saved the running patch as mine"),
        ("list", vec!["/library/list"], "the library:"),
    ] {
        let got = run(&state, line);
        assert_eq!(texts(&got), ran, "{line}");
        assert_eq!(got.said, said, "{line}");
    }
}

#[test]
fn phrases_echo_the_exact_command() {
    let state = state();
    assert_eq!(
        run(&state, "brighter").command.as_deref(),
        Some("set filter.cutoff 1800 over 1 beat")
    );
    assert_eq!(run(&state, "faster").command.as_deref(), Some("bpm 124"));
    // Another word for a row does what the row does, and says the row's word.
    let aliased = run(&state, "a bit more chorus");
    assert_eq!(aliased.command, run(&state, "a bit thicker").command);
    assert!(
        aliased.said.starts_with("a bit thicker -> "),
        "{}",
        aliased.said
    );
    // Tempo phrases stay within the clock's range.
    let fast = State::new(tests_support::table(), 399.0);
    assert_eq!(
        run(&fast, "much faster").command.as_deref(),
        Some("bpm 400")
    );
    assert_eq!(
        run(&fast, "double time").command.as_deref(),
        Some("bpm 400")
    );
    assert!(
        run(&fast, "double time")
            .said
            .ends_with("; held to the clock's 20..400 bpm)"),
        "{}",
        run(&fast, "double time").said
    );
    // At an end of the range: said, nothing sent.
    for (bpm, line, said) in [
        (
            400.0,
            "faster",
            "faster: the tempo is already 400 bpm, its top",
        ),
        (
            20.0,
            "half time",
            "half time: the tempo is already 20 bpm, its bottom",
        ),
    ] {
        let at_end = run(&State::new(tests_support::table(), bpm), line);
        assert_eq!((at_end.said.as_str(), at_end.ran.len()), (said, 0));
    }
    // The echoed command runs the same messages.
    assert_eq!(
        texts(&run(&state, "set filter.cutoff 1800 over 1 beat")),
        texts(&run(&state, "brighter"))
    );
}

#[test]
fn mistakes_say_what_and_suggest() {
    let state = state();
    for (line, said) in [
        ("plya C4", "`plya` is not a command (`help` lists them) (did you mean `play`?)"),
        ("brigter", "`brigter` is not a command (`help` lists them) (did you mean `brighter`?)"),
        ("set fliter.cutoff 800", "this patch has no module `fliter` (did you mean `filter.cutoff`?)"),
        ("set filter.cutof 800", "module `filter` has no parameter `cutof`; it has filter.cutoff, filter.gain, filter.mode, filter.q (did you mean `filter.cutoff`?)"),
        ("set filter.cutoff 30000", "/mod/filter/cutoff: 30000 Hz is out of range 10..20000 Hz"),
        ("play H4", "`H4` is not a note (C4, F#3, Bb2, 60), a chord (Cmaj7, Am, G7/B, Dm7b5) or a scale (C minor scale)"),
        ("play C4 on kyes", "this patch has no instrument `kyes` (it has keys) (did you mean `keys`?)"),
        ("drum \"bd\"", "this patch has no track `drum` (it has d1, drums) (did you mean `drums`?)"),
        ("drums bd", "a pattern for track `drums` goes in double quotes: drums \"bd ~ sn ~\"".replace("bd ~ sn ~", "c3 e3 g3 ~").as_str()),
        ("undo", "nothing to undo (undo reverts the sets, phrases, tempos, patterns and mutes of this shell)"),
        ("d1 \"c3 e3", "a quote is not closed: a pattern goes in double quotes, e.g. d1 \"c3 e3 g3 ~\""),
    ] {
        assert_eq!(error(&state, line), said, "{line}");
    }
    let bad_pattern = error(&state, "d1 \"c3 [e3\"");
    assert!(bad_pattern.starts_with("/seq/d1/pattern"), "{bad_pattern}");
}

#[test]
fn a_patch_without_the_module_a_phrase_needs_says_so() {
    let modules = vec![("out".to_string(), "output".to_string())];
    let state = State::new(
        AddressTable::from_type_names(&modules, false).unwrap(),
        120.0,
    );
    assert_eq!(
        error(&state, "more reverb"),
        "`more reverb` needs a reverb module, and this patch has none (`set <module>.<param> <value>` changes any parameter)"
    );
    assert_eq!(
        error(&state, "play C4"),
        "this patch has no instrument to play notes on (`load keys` loads one)"
    );
}

#[test]
fn a_misspelt_member_is_suggested_by_the_short_name_the_shell_accepts() {
    // `keys.lp.cutoff` answers to `lp.cutoff` too: a typo of that is suggested it.
    let state = state();
    assert_eq!(
        error(&state, "set lp.cutof 800"),
        "this patch has no module `lp` (did you mean `lp.cutoff`?)"
    );
    assert_eq!(
        error(&state, "set lpcutoff 800"),
        "`lpcutoff` is not a parameter: name one as module.param, e.g. filter.cutoff (did you mean `lp.cutoff`?)"
    );
}

#[test]
fn louder_and_quieter_move_an_instruments_vca_in_a_patch_without_a_gain() {
    // As every preset is built: no `gain` module, the voices' level is their `vca`.
    let modules: Vec<(String, String)> = [
        ("keys", "instrument"),
        ("keys.note", "note"),
        ("keys.osc", "saw"),
        ("keys.vca", "vca"),
        ("out", "output"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    let state = State::new(
        AddressTable::from_type_names(&modules, false).unwrap(),
        120.0,
    );
    for (line, command) in [
        ("louder", "set keys.vca.gain 1.25 over 1 beat"),
        ("quieter", "set keys.vca.gain 0.8 over 1 beat"),
    ] {
        let mut level = |address: &str| (address == "/mod/keys.vca/gain").then_some(1.0);
        match interpret(&state, line, &mut level) {
            Ok(Outcome::Run(run)) => assert_eq!(run.command.as_deref(), Some(command)),
            other => panic!("{line}: {other:?}"),
        }
    }
}

#[test]
fn undo_reverts_the_latest_change() {
    let mut state = state();
    let set = run(&state, "set filter.cutoff 800 over 4 beats");
    state.applied(&set);
    let tempo = run(&state, "bpm 130");
    state.applied(&tempo);
    assert_eq!(state.bpm, 130.0);
    let undo = run(&state, "undo");
    assert_eq!(texts(&undo), ["/clock/bpm 120"]);
    assert_eq!(undo.said, "undone: tempo back to 120 bpm");
    state.applied(&undo);
    let undo = run(&state, "undo");
    assert_eq!(texts(&undo), ["/ramp /mod/filter/cutoff 1200 0.5"]);
    assert_eq!(undo.said, "undone: filter.cutoff back to 1200 Hz");
    state.applied(&undo);
    assert_eq!(state.undo_depth(), 0);
    // A pattern's undo restores the one this shell set before.
    let first = run(&state, "d1 \"c3\"");
    state.applied(&first);
    let second = run(&state, "d1 \"e3\"");
    state.applied(&second);
    assert_eq!(texts(&run(&state, "undo")), ["/seq/d1/pattern c3"]);
}

#[test]
fn get_status_help_quit_and_blank_lines() {
    let state = state();
    let Ok(Outcome::Get { step, name, unit }) = interpret(&state, "get filter.cutoff", &mut values)
    else {
        panic!()
    };
    assert_eq!(
        (step.text.as_str(), name.as_str(), unit.as_str()),
        ("/get /mod/filter/cutoff", "filter.cutoff", "Hz")
    );
    assert_eq!(
        interpret(&state, "status", &mut values),
        Ok(Outcome::Status)
    );
    assert_eq!(interpret(&state, "quit", &mut values), Ok(Outcome::Quit));
    assert_eq!(interpret(&state, "EXIT", &mut values), Ok(Outcome::Quit));
    assert_eq!(interpret(&state, "   ", &mut values), Ok(Outcome::Nothing));
    assert_eq!(
        interpret(&state, "# a comment", &mut values),
        Ok(Outcome::Nothing)
    );
    assert!(
        matches!(interpret(&state, "help chords", &mut values), Ok(Outcome::Help(t)) if t.contains("Dm7b5"))
    );
}

#[test]
fn completion_offers_parameters_instruments_and_commands() {
    let state = state();
    assert_eq!(
        completions(&state, "set fil"),
        ["filter.cutoff", "filter.gain", "filter.mode", "filter.q"]
    );
    // An instrument member by the short name the shell takes (`keys.lp.cutoff`).
    assert!(completions(&state, "set lp.c").contains(&"lp.cutoff".to_string()));
    assert_eq!(completions(&state, "play C4 on k"), ["keys"]);
    assert_eq!(completions(&state, "pl"), ["play"]);
    assert!(completions(&state, "play Cma").contains(&"Cmaj7".to_string()));
    assert_eq!(completions(&state, "mute d"), ["d1", "drums"]);
}

proptest! {
    #[test]
    fn arbitrary_lines_never_panic_and_every_message_is_valid(line in "\\PC{0,60}") {
        let state = state();
        if let Ok(Outcome::Run(run)) = interpret(&state, &line, &mut values) {
            for step in &run.ran {
                prop_assert!(chronus_protocol::validate_message(&state.table, &step.message).is_ok(), "{line}: {}", step.text);
            }
        }
    }

    #[test]
    fn musical_lines_never_panic_and_every_message_is_valid(
        verb in prop::sample::select(vec!["play", "hold", "release", "set", "get", "bpm", "brighter", "much darker", "a bit louder", "d1", "stop", "mute", "undo", "faster", "half time", "sustain"]),
        what in prop::sample::select(vec!["C4", "F#3", "Bb2", "c#-1", "G9", "Cmaj7", "G7/B", "Dm7b5", "C minor scale", "filter.cutoff", "keys.lp.q", "drums", "\"bd ~\"", "\"[\"", "60.5", "-3", "1e9", "on", "nan"]),
        tail in prop::sample::select(vec!["", "for 2 beats", "on keys", "velocity 200", "over 4 beats", "800", "800 over 1 bar", "for -1 beats", "on", "0"]),
    ) {
        let state = state();
        let line = format!("{verb} {what} {tail}");
        if let Ok(Outcome::Run(run)) = interpret(&state, &line, &mut values) {
            for step in &run.ran {
                prop_assert!(chronus_protocol::validate_message(&state.table, &step.message).is_ok(), "{line}: {}", step.text);
            }
        }
    }
}

/// docs/shell.md holds the phrase table as `phrases::table_markdown` writes it
/// (`CHRONUS_BLESS=1 cargo test -p chronus-shell docs` writes it there).
#[test]
fn docs_hold_the_phrase_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/shell.md");
    let text = std::fs::read_to_string(&path).expect("docs/shell.md");
    let start_marker = "a test checks it) -->\n";
    let end_marker = "<!-- end of phrase table -->";
    let start = text.find(start_marker).expect("the start marker") + start_marker.len();
    let end = text.find(end_marker).expect("the end marker");
    let table = phrases::table_markdown();
    if std::env::var_os("CHRONUS_BLESS").is_some() {
        let written = format!("{}{table}{}", &text[..start], &text[end..]);
        std::fs::write(&path, written).unwrap();
        return;
    }
    assert_eq!(
        &text[start..end],
        table,
        "docs/shell.md's phrase table is stale: run with CHRONUS_BLESS=1"
    );
}

#[test]
fn notes_without_an_instrument_go_to_the_first_without_drums() {
    let table = |modules: &[(&str, &str)]| {
        let modules: Vec<(String, String)> = modules
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        State::new(
            AddressTable::from_type_names(&modules, false).unwrap(),
            120.0,
        )
    };
    // The demo's order: a drum kit first, then pitched instruments.
    let demo = table(&[
        ("kit", "instrument"),
        ("kit.kick", "drum"),
        ("bass", "instrument"),
        ("bass.osc", "saw"),
        ("out", "output"),
    ]);
    assert_eq!(run(&demo, "play C4").said, "playing C4 for 1 beat on bass");
    assert_eq!(
        texts(&run(&demo, "play C4 on kit")),
        ["/note/play kit 60 100 0.5"]
    );
    // Only drums: they play.
    let kit = table(&[
        ("kit", "instrument"),
        ("kit.kick", "drum"),
        ("out", "output"),
    ]);
    assert_eq!(run(&kit, "play C4").said, "playing C4 for 1 beat on kit");
}

/// Review 16, finding 4: `undo` of a tempo leaves the shell at the restored tempo, so a
/// later `faster` starts from it; a pattern's undo never brings back an undone pattern.
#[test]
fn undo_restores_the_tempo_and_pops_exactly_one_pattern() {
    let mut state = state();
    let bpm = |state: &mut State, line: &str| {
        let r = run(state, line);
        state.applied(&r);
        r
    };
    bpm(&mut state, "bpm 90");
    assert_eq!(state.bpm, 90.0);
    let undo = bpm(&mut state, "undo");
    assert_eq!(undo.said, "undone: tempo back to 120 bpm");
    assert_eq!(state.bpm, 120.0);
    assert_eq!(texts(&run(&state, "faster")), ["/clock/bpm 124"]);
    // drums "bd*4", drums "sn*4", undo, drums "hh*8", undo: back to "bd*4", not "sn*4".
    let mut state = self::state();
    for line in ["drums \"bd*4\"", "drums \"sn*4\"", "undo", "drums \"hh*8\""] {
        bpm(&mut state, line);
    }
    let undo = bpm(&mut state, "undo");
    assert_eq!(texts(&undo), ["/seq/drums/pattern bd*4"]);
    assert_eq!(state.undo_depth(), 0);
}

/// Review 16, findings 8 and 12: the note cap, velocity 0, repeated clauses, `help` of an
/// unknown topic, a length that rounds to nothing, and `release` of a note not held.
#[test]
fn play_refuses_what_it_cannot_do_truthfully() {
    let state = state();
    let many = format!("play {}", "C4 ".repeat(MAX_NOTES + 1));
    assert_eq!(
        error(&state, &many),
        "129 notes in one line: at most 128 (play the rest in another line)"
    );
    assert_eq!(
        run(&state, &format!("play {}", "C4 ".repeat(MAX_NOTES)))
            .ran
            .len(),
        MAX_NOTES
    );
    assert!(error(&state, "play C4 velocity 0").contains("from 1 to 127"));
    assert!(error(&state, "play C4 velocity 0").contains("release"));
    assert!(error(&state, "hold C4 velocity 0").contains("from 1 to 127"));
    assert_eq!(
        texts(&run(&state, "play C4 velocity 1")),
        ["/note/play keys 60 1 0.5"]
    );
    for line in [
        "play C4 on keys on keys",
        "play C4 for 1 beat for 2 beats",
        "play C4 velocity 90 vel 80",
    ] {
        assert!(error(&state, line).contains("is said twice"), "{line}");
    }
    assert!(error(&state, "play C4 for 0.0000001 seconds").contains("longer than nothing"));
    let help = error(&state, "help nonsense");
    assert!(
        help.starts_with("no help on `nonsense`; the topics are play, notes"),
        "{help}"
    );
    assert!(matches!(
        interpret(&state, "help keys", &mut values),
        Ok(Outcome::Help(t)) if t.contains("XDG_STATE_HOME")
    ));
    // release: truthful about what this shell held.
    let mut state = self::state();
    assert_eq!(
        run(&state, "release C4").said,
        "sent note-off for C4 on keys (this shell was not holding it)"
    );
    let hold = run(&state, "hold C4");
    state.applied(&hold);
    let release = run(&state, "release C4");
    assert_eq!(release.said, "released C4 on keys");
    state.applied(&release);
    assert_eq!(
        run(&state, "release C4").said,
        "sent note-off for C4 on keys (this shell was not holding it)"
    );
    state.applied(&run(&state, "hold C4"));
    state.applied(&run(&state, "panic"));
    assert!(run(&state, "release C4").said.starts_with("sent note-off"));
}

/// Review 16, finding 7: while a ramp runs, phrases and `undo` start from its target.
#[test]
fn heading_remembers_ramp_targets_until_they_end() {
    use std::time::{Duration, Instant};
    let state = state();
    let mut heading = Heading::default();
    let t0 = Instant::now();
    // `brighter` from 1200 ramps to 1800 over 1 beat (0.5 s at 120 bpm).
    let brighter = run(&state, "brighter");
    assert_eq!(texts(&brighter), ["/ramp /mod/filter/cutoff 1800 0.5"]);
    heading.note(&brighter, t0);
    assert_eq!(heading.target("/mod/filter/cutoff", t0), Some(1800.0));
    assert_eq!(heading.target("/mod/reverb/mix", t0), None);
    // A second `brighter` mid-ramp starts from 1800, not from /get's 1200.
    let mut current = |address: &str| heading.target(address, t0).or_else(|| values(address));
    let Ok(Outcome::Run(again)) = interpret(&state, "brighter", &mut current) else {
        panic!()
    };
    assert_eq!(texts(&again), ["/ramp /mod/filter/cutoff 2700 0.5"]);
    let UndoChange::Push(undo) = &again.undo else {
        panic!()
    };
    assert_eq!(undo.what, "filter.cutoff back to 1800 Hz");
    // Once the ramp has ended, /get's value is the truth again.
    assert_eq!(
        heading.target("/mod/filter/cutoff", t0 + Duration::from_millis(600)),
        None
    );
    // A plain set forgets the ramp.
    heading.note(&run(&state, "set filter.cutoff 500"), t0);
    assert_eq!(heading.target("/mod/filter/cutoff", t0), None);
}
