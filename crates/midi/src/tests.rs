//! The translation, to the byte: every message kind, running status, real-time bytes and
//! SysEx in the middle of things, MPE zones and RPNs, note ids, and a property test that
//! no byte soup panics or yields a message the server would not take.

use super::*;
use proptest::prelude::*;

/// A message as one line: `/note/on 60 100 1`, floats with 3 decimals.
fn line(event: &Event) -> String {
    match event {
        Event::Program(n) => format!("program {n}"),
        Event::Osc(m) => {
            let mut text = m.addr.clone();
            for arg in &m.args {
                text.push(' ');
                text.push_str(&match arg {
                    OscType::Int(i) => i.to_string(),
                    OscType::Float(f) => format!("{f:.3}"),
                    OscType::String(s) => s.clone(),
                    other => format!("{other:?}"),
                });
            }
            text
        }
    }
}

/// Feeds `bytes` to port 0 at time 7 and returns the lines.
fn feed(t: &mut Translator, bytes: &[u8]) -> Vec<String> {
    feed_port(t, 0, bytes)
}

fn feed_port(t: &mut Translator, port: usize, bytes: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    t.feed(port, bytes, 7, &mut out);
    assert!(
        out.iter().all(|e| e.time == 7),
        "every event keeps the input's time"
    );
    out.iter().map(|e| line(&e.event)).collect()
}

fn plain() -> Translator {
    Translator::new(Config::default())
}

fn mpe_lower() -> Translator {
    Translator::new(Config {
        zone: MpeZone::Lower(15),
        ..Config::default()
    })
}

#[test]
fn note_on_and_off_carry_the_same_id() {
    let mut t = plain();
    assert_eq!(feed(&mut t, &[0x90, 60, 100]), ["/note/on 60 100 1"]);
    assert_eq!(feed(&mut t, &[0x90, 64, 1]), ["/note/on 64 1 2"]);
    assert_eq!(feed(&mut t, &[0x80, 60, 50]), ["/note/off 60 1"]);
    // Note on with velocity 0 is a note off.
    assert_eq!(feed(&mut t, &[0x90, 64, 0]), ["/note/off 64 2"]);
    // An off for a note not held (pressed before we started): no id.
    assert_eq!(feed(&mut t, &[0x80, 62, 0]), ["/note/off 62"]);
}

#[test]
fn the_instrument_leads_every_note_message() {
    let mut t = Translator::new(Config {
        instrument: Some("keys".into()),
        ..Config::default()
    });
    assert_eq!(
        feed(
            &mut t,
            &[0x90, 60, 100, 0xB0, 64, 127, 0xE0, 0x7F, 0x7F, 0xD0, 127, 0x80, 60, 0]
        ),
        [
            "/note/on keys 60 100 1",
            "/sustain keys 1",
            "/note/bend keys 1 2.000",
            "/note/pressure keys 1 1.000",
            "/note/off keys 60 1"
        ]
    );
}

#[test]
fn two_instances_of_one_note_are_released_oldest_first() {
    let mut t = plain();
    feed(&mut t, &[0x90, 60, 100, 60, 90]);
    assert_eq!(feed(&mut t, &[0x80, 60, 0]), ["/note/off 60 1"]);
    assert_eq!(feed(&mut t, &[0x80, 60, 0]), ["/note/off 60 2"]);
}

#[test]
fn running_status_and_real_time_bytes_mid_message() {
    let mut t = plain();
    assert_eq!(
        feed(&mut t, &[0x90, 60, 0xF8, 100, 62, 0xFE, 90, 0xFA, 60, 0]),
        ["/note/on 60 100 1", "/note/on 62 90 2", "/note/off 60 1"]
    );
    // A message split across calls, real-time bytes in the split.
    assert_eq!(feed(&mut t, &[0x91, 70]), Vec::<String>::new());
    assert_eq!(feed(&mut t, &[0xF8]), Vec::<String>::new());
    assert_eq!(feed(&mut t, &[80]), ["/note/on 70 80 3"]);
}

#[test]
fn sysex_split_across_calls_is_skipped() {
    let mut t = plain();
    assert_eq!(feed(&mut t, &[0xF0, 0x43, 0x10]), Vec::<String>::new());
    assert_eq!(feed(&mut t, &[0x4C, 60, 100, 0x00]), Vec::<String>::new());
    assert_eq!(
        feed(&mut t, &[0x7F, 0xF7, 0x90, 60, 100]),
        ["/note/on 60 100 1"]
    );
}

#[test]
fn pitch_bend_on_an_ordinary_channel_bends_its_notes_and_later_ones() {
    let mut t = plain();
    feed(&mut t, &[0x90, 60, 100, 64, 100]);
    // Full up: +2 semitones (the default range, less a step); centre: 0; full down: -2.
    assert_eq!(
        feed(&mut t, &[0xE0, 0x7F, 0x7F]),
        ["/note/bend 1 2.000", "/note/bend 2 2.000"]
    );
    // Another channel is not bent.
    assert_eq!(feed(&mut t, &[0x91, 67, 100]), ["/note/on 67 100 3"]);
    // A note started on the bent channel starts bent.
    assert_eq!(
        feed(&mut t, &[0x90, 72, 100]),
        ["/note/on 72 100 4", "/note/bend 4 2.000"]
    );
    assert_eq!(
        feed(&mut t, &[0xE0, 0, 0x40]),
        [
            "/note/bend 1 0.000",
            "/note/bend 2 0.000",
            "/note/bend 4 0.000"
        ]
    );
    assert_eq!(feed(&mut t, &[0xE1, 0, 0]), ["/note/bend 3 -2.000"]);
}

#[test]
fn pressure_aftertouch_and_timbre() {
    let mut t = plain();
    feed(&mut t, &[0x90, 60, 100, 64, 100]);
    assert_eq!(
        feed(&mut t, &[0xD0, 127]),
        ["/note/pressure 1 1.000", "/note/pressure 2 1.000"]
    );
    // Polyphonic aftertouch: the one note.
    assert_eq!(feed(&mut t, &[0xA0, 64, 0]), ["/note/pressure 2 0.000"]);
    // CC74 outside MPE is an ordinary controller.
    assert_eq!(feed(&mut t, &[0xB0, 74, 10]), ["/midi/cc 1 74 10"]);
    // A note started under pressure gets it.
    assert_eq!(
        feed(&mut t, &[0x90, 67, 100]),
        ["/note/on 67 100 3", "/note/pressure 3 1.000"]
    );
}

#[test]
fn controllers() {
    let mut t = plain();
    // Sustain: sent when it changes (>= 64 is down).
    assert_eq!(feed(&mut t, &[0xB0, 64, 100]), ["/sustain 1"]);
    assert_eq!(feed(&mut t, &[0xB0, 64, 64]), Vec::<String>::new());
    assert_eq!(feed(&mut t, &[0xB0, 64, 63]), ["/sustain 0"]);
    // Others go to the server's mappings, channel 1..16.
    assert_eq!(feed(&mut t, &[0xBF, 1, 127]), ["/midi/cc 16 1 127"]);
    assert_eq!(feed(&mut t, &[0xB3, 7, 0]), ["/midi/cc 4 7 0"]);
    // All sound off.
    feed(&mut t, &[0x90, 60, 100]);
    assert_eq!(feed(&mut t, &[0xB5, 120, 0]), ["/panic"]);
    // The panic released everything: no off to send.
    assert_eq!(feed(&mut t, &[0xB0, 123, 0]), Vec::<String>::new());
}

#[test]
fn all_notes_off_releases_that_channels_held_notes() {
    let mut t = plain();
    feed(&mut t, &[0x90, 60, 100, 64, 100, 0x91, 67, 100]);
    assert_eq!(
        feed(&mut t, &[0xB0, 123, 0]),
        ["/note/off 60 1", "/note/off 64 2"]
    );
    assert_eq!(feed(&mut t, &[0x81, 67, 0]), ["/note/off 67 3"]);
}

#[test]
fn reset_all_controllers_zeroes_bend_and_pressure() {
    let mut t = plain();
    feed(&mut t, &[0x90, 60, 100, 0xE0, 0x7F, 0x7F, 0xD0, 90]);
    assert_eq!(
        feed(&mut t, &[0xB0, 121, 0]),
        ["/note/bend 1 0.000", "/note/pressure 1 0.000"]
    );
    assert_eq!(feed(&mut t, &[0x90, 62, 100]), ["/note/on 62 100 2"]);
}

#[test]
fn program_change_is_an_event_for_the_client() {
    let mut t = plain();
    assert_eq!(feed(&mut t, &[0xC3, 5, 6]), ["program 5", "program 6"]);
}

#[test]
fn mpe_two_notes_of_one_number_on_two_members_bend_apart() {
    let mut t = mpe_lower();
    assert_eq!(
        feed(&mut t, &[0x91, 60, 100, 0x92, 60, 90]),
        ["/note/on 60 100 1", "/note/on 60 90 2"]
    );
    // Member channel 2 bends up a quarter of 48 semitones: only its note.
    assert_eq!(feed(&mut t, &[0xE1, 0, 0x50]), ["/note/bend 1 12.000"]);
    // Member channel 3 bends down: only its note.
    assert_eq!(feed(&mut t, &[0xE2, 0, 0x20]), ["/note/bend 2 -24.000"]);
    // Pressure and timbre (CC74) per note too.
    assert_eq!(feed(&mut t, &[0xD2, 127]), ["/note/pressure 2 1.000"]);
    assert_eq!(feed(&mut t, &[0xB1, 74, 127]), ["/note/timbre 1 1.000"]);
    // The master channel's bend (range 2) adds to each member note's own.
    assert_eq!(
        feed(&mut t, &[0xE0, 0x7F, 0x7F]),
        ["/note/bend 1 14.000", "/note/bend 2 -22.000"]
    );
    // The offs name each instance's id.
    assert_eq!(
        feed(&mut t, &[0x82, 60, 0, 0x81, 60, 0]),
        ["/note/off 60 2", "/note/off 60 1"]
    );
}

#[test]
fn mpe_a_note_starts_with_its_channels_bend_pressure_and_timbre() {
    let mut t = mpe_lower();
    assert_eq!(
        feed(
            &mut t,
            &[0xE3, 0x7F, 0x7F, 0xD3, 127, 0xB3, 74, 0, 0x93, 60, 100]
        ),
        [
            "/note/on 60 100 1",
            "/note/bend 1 47.994",
            "/note/pressure 1 1.000"
        ]
    );
}

#[test]
fn mpe_upper_zone_and_channels_outside_it() {
    let mut t = Translator::new(Config {
        zone: MpeZone::Upper(3),
        ..Config::default()
    });
    assert_eq!(t.zones(0), (0, 3));
    assert_eq!(t.bend_range(0, 15), 2.0);
    assert_eq!(t.bend_range(0, 12), 48.0);
    assert_eq!(t.bend_range(0, 11), 2.0);
    feed(&mut t, &[0x9C, 60, 100, 0x9B, 60, 100]);
    // Channel 12 (index 11) is outside the zone: ordinary, range 2, CC74 forwarded.
    assert_eq!(feed(&mut t, &[0xEB, 0x7F, 0x7F]), ["/note/bend 2 2.000"]);
    assert_eq!(feed(&mut t, &[0xBB, 74, 5]), ["/midi/cc 12 74 5"]);
    assert_eq!(feed(&mut t, &[0xBC, 74, 127]), ["/note/timbre 1 1.000"]);
    // Master 16 bends the zone's notes, not channel 12's.
    assert_eq!(feed(&mut t, &[0xEF, 0, 0]), ["/note/bend 1 -2.000"]);
}

#[test]
fn rpn_0_sets_the_bend_range() {
    let mut t = plain();
    // RPN 0 on channel 1: 12 semitones 50 cents; RPN/data CCs are not forwarded.
    assert_eq!(
        feed(&mut t, &[0xB0, 101, 0, 100, 0, 6, 12, 38, 50]),
        Vec::<String>::new()
    );
    assert_eq!(t.bend_range(0, 0), 12.5);
    assert_eq!(t.bend_range(0, 1), 2.0);
    // After the null RPN, data entry changes nothing.
    feed(&mut t, &[0xB0, 101, 127, 100, 127, 6, 3]);
    assert_eq!(t.bend_range(0, 0), 12.5);
    // Nor after an NRPN is selected.
    feed(&mut t, &[0xB0, 101, 0, 100, 0, 99, 1, 6, 3]);
    assert_eq!(t.bend_range(0, 0), 12.5);
    feed(&mut t, &[0x90, 60, 100]);
    assert_eq!(feed(&mut t, &[0xE0, 0x7F, 0x7F]), ["/note/bend 1 12.498"]);
}

#[test]
fn rpn_0_on_a_member_channel_is_the_whole_zones() {
    let mut t = mpe_lower();
    feed(&mut t, &[0xB4, 101, 0, 100, 0, 6, 24]);
    assert!((1..16).all(|c| t.bend_range(0, c) == 24.0));
    assert_eq!(t.bend_range(0, 0), 2.0);
}

#[test]
fn the_mpe_configuration_message_sets_the_zones() {
    let mut t = plain();
    assert_eq!(t.zones(0), (0, 0));
    // Lower zone with 7 members, from channel 1.
    feed(&mut t, &[0xB0, 101, 0, 100, 6, 6, 7]);
    assert_eq!(t.zones(0), (7, 0));
    assert_eq!(t.bend_range(0, 7), 48.0);
    assert_eq!(t.bend_range(0, 8), 2.0);
    // Upper zone with 10 members: they would overlap, the lower one shrinks.
    feed(&mut t, &[0xBF, 101, 0, 100, 6, 6, 10]);
    assert_eq!(t.zones(0), (4, 10));
    // Other ports are their own.
    assert_eq!(t.zones(1), (0, 0));
    feed_port(&mut t, 1, &[0x90, 60, 100]);
    assert_eq!(t.zones(1), (0, 0));
    // Zone off.
    feed(&mut t, &[0xB0, 6, 0]);
    assert_eq!(t.zones(0), (0, 10));
    // RPN 6 on another channel means nothing.
    feed(&mut t, &[0xB3, 101, 0, 100, 6, 6, 5]);
    assert_eq!(t.zones(0), (0, 10));
}

#[test]
fn ids_are_unique_across_ports_wrap_and_skip_held_ones() {
    let mut t = plain();
    assert_eq!(
        feed_port(&mut t, 0, &[0x90, 60, 100]),
        ["/note/on 60 100 1"]
    );
    assert_eq!(
        feed_port(&mut t, 3, &[0x90, 60, 100]),
        ["/note/on 60 100 2"]
    );
    // Each port has its own channels: port 3's off releases its own note.
    assert_eq!(feed_port(&mut t, 3, &[0x80, 60, 0]), ["/note/off 60 2"]);
    t.next_id = MAX_ID;
    assert_eq!(feed(&mut t, &[0x91, 61, 100]), ["/note/on 61 100 16777215"]);
    // Wraps past 0 (the server's "no id") to 1, which is held: skipped; 2 is free again.
    assert_eq!(feed(&mut t, &[0x91, 62, 100]), ["/note/on 62 100 2"]);
}

#[test]
fn a_channel_holds_at_most_128_notes() {
    let mut t = plain();
    let mut out = Vec::new();
    for _ in 0..MAX_HELD {
        t.feed(0, &[0x90, 60, 100], 0, &mut out);
    }
    assert_eq!(
        feed(&mut t, &[0x90, 60, 100]),
        ["/note/off 60 1", "/note/on 60 100 129"]
    );
}

#[test]
fn mpe_zone_parses() {
    assert_eq!(MpeZone::parse("off"), Ok(MpeZone::Off));
    assert_eq!(MpeZone::parse("lower"), Ok(MpeZone::Lower(15)));
    assert_eq!(MpeZone::parse("upper:5"), Ok(MpeZone::Upper(5)));
    assert!(MpeZone::parse("lower:0").is_err());
    assert!(MpeZone::parse("lower:16").is_err());
    assert!(MpeZone::parse("middle").is_err());
    assert!(MpeZone::parse("off:3").is_err());
}

/// Whether the server would take `message`: a known address with the right argument count
/// and types, every value in range.
fn valid(message: &OscMessage, instrument: bool) -> bool {
    let args = &message.args;
    let (lead, rest) =
        if instrument && (message.addr.starts_with("/note/") || message.addr == "/sustain") {
            match args.split_first() {
                Some((OscType::String(_), rest)) => (true, rest),
                _ => return false,
            }
        } else {
            (true, &args[..])
        };
    let int = |a: &OscType, max: i32| matches!(a, OscType::Int(i) if (0..=max).contains(i));
    let float = |a: &OscType, lo: f32, hi: f32| matches!(a, OscType::Float(f) if f.is_finite() && *f >= lo && *f <= hi);
    let id = MAX_ID as i32;
    lead && match (message.addr.as_str(), rest) {
        ("/note/on", [n, v, i]) => int(n, 127) && int(v, 127) && int(i, id),
        ("/note/off", [n, i]) => int(n, 127) && int(i, id),
        ("/note/off", [n]) => int(n, 127),
        ("/note/bend", [i, s]) => int(i, id) && float(s, -96.0, 96.0),
        ("/note/pressure" | "/note/timbre", [i, p]) => int(i, id) && float(p, 0.0, 1.0),
        ("/sustain", [on]) => int(on, 1),
        ("/panic", []) => true,
        ("/midi/cc", [c, n, v]) => matches!(c, OscType::Int(1..=16)) && int(n, 127) && int(v, 127),
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Byte soup, cut anywhere into calls over three ports, with a zone or none: nothing
    /// panics, and every message is one the server takes.
    #[test]
    fn byte_soup_never_panics_and_every_message_is_valid(
        chunks in proptest::collection::vec(
            (0usize..3, proptest::collection::vec(any::<u8>(), 0..64)), 0..40),
        zone in 0u8..3,
        instrument in any::<bool>(),
        first_id in prop_oneof![Just(0u32), Just(MAX_ID - 3)],
    ) {
        let zone = [MpeZone::Off, MpeZone::Lower(15), MpeZone::Upper(4)][usize::from(zone)];
        let mut t = Translator::new(Config {
            zone,
            instrument: instrument.then(|| "keys".to_string()),
            ..Config::default()
        });
        t.next_id = first_id;
        let mut out = Vec::new();
        for (time, (port, bytes)) in chunks.iter().enumerate() {
            out.clear();
            t.feed(*port, bytes, time as u64, &mut out);
            for timed in &out {
                prop_assert_eq!(timed.time, time as u64);
                if let Event::Osc(m) = &timed.event {
                    prop_assert!(valid(m, instrument), "invalid message {:?}", m);
                }
            }
        }
    }

    /// MIDI-shaped soup (status bytes followed by data bytes, RPNs among them) reaches the
    /// deeper states that random bytes rarely do; still nothing invalid.
    #[test]
    fn message_soup_never_panics_and_every_message_is_valid(
        messages in proptest::collection::vec(
            (0x80u8..0xF0, 0u8..128, 0u8..128), 0..200),
    ) {
        let mut t = mpe_lower();
        let mut out = Vec::new();
        for (status, d0, d1) in messages {
            // Bias controllers towards the ones with meaning here.
            let d0 = if status & 0xF0 == 0xB0 {
                [6, 38, 64, 74, 100, 101, 120, 121, 123, d0][usize::from(d1 % 10)]
            } else {
                d0
            };
            t.feed(0, &[status, d0, d1], 0, &mut out);
        }
        for timed in &out {
            if let Event::Osc(m) = &timed.event {
                prop_assert!(valid(m, false), "invalid message {:?}", m);
            }
        }
    }
}

#[test]
fn release_all_lets_go_of_every_held_note_and_the_pedal() {
    // What the client sends as it stops: without it, notes held at Ctrl-C (or when the
    // JACK server goes) would sound on in the server for good.
    let mut t = mpe_lower();
    feed(&mut t, &[0x91, 60, 100]);
    feed(&mut t, &[0x92, 64, 100]);
    feed_port(&mut t, 2, &[0x90, 67, 100]);
    feed(&mut t, &[0xB0, 64, 127]);
    let mut out = Vec::new();
    t.release_all(9, &mut out);
    let lines: Vec<String> = out.iter().map(|e| line(&e.event)).collect();
    assert_eq!(
        lines,
        [
            "/note/off 60 1",
            "/note/off 64 2",
            "/note/off 67 3",
            "/sustain 0"
        ]
    );
    assert!(out.iter().all(|e| e.time == 9));
    out.clear();
    t.release_all(10, &mut out);
    assert!(out.is_empty(), "nothing is held any more");
}
