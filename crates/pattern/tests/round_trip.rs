//! Property tests of the notation: printing a tree and parsing it back gives the same
//! tree; any text either parses (and then reprints to a fixed point) or fails with a
//! position inside it, never panics; and every table keeps its events inside the loop.

use chronus_pattern::ast::{Atom, Modifier, Pattern, Sequence, Step, Term};
use chronus_pattern::sound::{Chord, Sound, CHORDS, DRUMS};
use chronus_pattern::{parse, Time, MAX_EVENTS};
use proptest::prelude::*;

fn decimal() -> impl Strategy<Value = Time> {
    (
        1u64..=400,
        prop::sample::select(vec![1u64, 2, 4, 5, 10, 100]),
    )
        .prop_map(|(n, d)| Time::new(n, d).expect("nonzero denominator"))
}

fn sound() -> impl Strategy<Value = Sound> {
    prop_oneof![
        (0u8..7, -2i8..=2, prop::option::of(0u8..=8)).prop_map(|(letter, accidental, octave)| {
            Sound::Note {
                letter,
                accidental,
                octave,
            }
        }),
        (0.0f64..=127.0).prop_map(Sound::Number),
        (0..120u8).prop_map(|i| Sound::Number(f64::from(i))),
        (0..DRUMS.len() as u8).prop_map(Sound::Drum),
    ]
}

fn atom() -> impl Strategy<Value = Atom> {
    (
        sound(),
        prop::option::of(0..CHORDS.len()),
        prop::option::of(prop_oneof![
            (0.0f64..=127.0),
            (0..=127u8).prop_map(f64::from)
        ]),
    )
        .prop_map(|(sound, chord, velocity)| Atom {
            sound,
            chord: chord
                .filter(|_| !matches!(sound, Sound::Drum(_)))
                .map(|i| Chord::named(CHORDS[i].0).expect("a chord of the table")),
            velocity,
        })
}

fn modifier() -> impl Strategy<Value = Modifier> {
    prop_oneof![
        decimal().prop_map(Modifier::Fast),
        decimal().prop_map(Modifier::Slow),
        (1u32..=16)
            .prop_flat_map(|steps| (0..=steps, Just(steps), 0..steps))
            .prop_map(|(pulses, steps, rotation)| Modifier::Euclid {
                pulses,
                steps,
                rotation
            }),
    ]
}

fn step(term: impl Strategy<Value = Term>) -> impl Strategy<Value = Step> {
    (
        term,
        prop::collection::vec(modifier(), 0..3),
        prop_oneof![3 => Just(Time::ONE), 1 => decimal()],
    )
        .prop_map(|(term, modifiers, weight)| Step {
            term,
            modifiers,
            weight,
        })
}

fn pattern_of(term: impl Strategy<Value = Term> + Clone) -> impl Strategy<Value = Pattern> {
    prop::collection::vec(
        prop::collection::vec(step(term), 1..5).prop_map(|steps| Sequence { steps }),
        1..3,
    )
    .prop_map(|layers| Pattern { layers })
}

fn pattern() -> impl Strategy<Value = Pattern> {
    let leaf = prop_oneof![1 => Just(Term::Rest), 4 => atom().prop_map(Term::Atom)];
    let term = leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            pattern_of(inner.clone()).prop_map(Term::Group),
            pattern_of(inner).prop_map(Term::Alternation),
        ]
    });
    pattern_of(term)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn print_then_parse_gives_the_same_tree(p in pattern()) {
        let text = p.to_string();
        let back = parse(&text).map_err(|e| TestCaseError::fail(e.pointing_into(&text)))?;
        prop_assert_eq!(back, p, "{}", text);
    }

    #[test]
    fn every_table_stays_inside_its_loop(p in pattern()) {
        // Chords on high notes or huge loops may be refused; what is accepted is sound.
        if let Ok(events) = p.events() {
            prop_assert!(events.cycles >= 1);
            prop_assert!(events.events.len() <= MAX_EVENTS);
            let end = Time::whole(events.cycles);
            for e in &events.events {
                prop_assert!(e.onset < end, "{} starts after the loop", e.onset);
                prop_assert!(!e.duration.is_zero());
                prop_assert!((0.0..=127.0).contains(&e.note));
                prop_assert!((0.0..=127.0).contains(&e.velocity));
            }
            prop_assert!(events.events.windows(2).all(|w| w[0].onset <= w[1].onset));
        }
    }

    #[test]
    fn any_text_parses_or_points_inside_it(
        text in "[a-gs#bf0-9 ~\\[\\]<>,.*/@!_():'hdnpx?{}-]{0,40}"
    ) {
        match parse(&text) {
            Ok(p) => {
                let printed = p.to_string();
                let again = parse(&printed).map_err(|e| TestCaseError::fail(e.pointing_into(&printed)))?;
                prop_assert_eq!(&again, &p);
                prop_assert_eq!(again.to_string(), printed);
                let _ = p.events();
            }
            Err(e) => {
                if let Some(at) = e.at {
                    prop_assert!(at <= text.chars().count(), "{}", e.pointing_into(&text));
                }
            }
        }
    }
}
