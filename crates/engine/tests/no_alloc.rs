//! The worker's render loop allocates nothing: draining the command ring, applying
//! stamped commands on their frames, rendering, and writing the block into the slot's
//! audio ring, measured with a counting global allocator.

use chronus_dsp::{ArpMode, PatchDesc, TrackDesc};
use chronus_engine::arpeggiator::ArpSetting;
use chronus_engine::{Command, Engine, EngineConfig, Instruction, StampedCommand};
use chronus_ipc::{Slot, SlotLayout, WriteOutcome};

#[global_allocator]
static GLOBAL: chronus_alloc_counter::CountingAllocator = chronus_alloc_counter::CountingAllocator;

#[test]
fn render_loop_allocates_nothing() {
    let config = EngineConfig::new(48_000, 64, 1);
    // The default patch with two sequencer tracks playing on `keys` at 300 bpm.
    let mut desc = PatchDesc::default_patch();
    desc.clock = Some(chronus_dsp::ClockDesc {
        bpm: 300.0,
        swing: 0.6,
    });
    for (name, pattern) in [
        ("arp", "c4 [e4 g4] <b4 d5>*2"),
        ("chords", "c3'maj7 ~ a2'min7:80"),
    ] {
        desc.tracks.push(TrackDesc {
            name: name.to_string(),
            instrument: None,
            pattern: pattern.to_string(),
            bars: 1,
            playing: true,
        });
    }
    let mut engine = Engine::new(&desc, config, 0).unwrap();
    let slot = Slot::create(
        "chronus-test-noalloc",
        SlotLayout::new(64, 2, 64, 4096).unwrap(),
    )
    .unwrap();
    slot.rebind(1);
    let mut block = vec![0.0f32; 128];
    let mut heard = vec![0.0f32; 128];
    let mut snapshot = vec![0u8; engine.snapshot_len()];

    let keys = engine.patch().node_index("keys").unwrap();
    let keys_cutoff = engine.patch().node_index("keys.filter").unwrap();

    chronus_alloc_counter::counting(true);
    for n in 0..2_000u64 {
        // The output side: stamp a few commands into the ring, open the horizon. Notes
        // too (more than the 16 voices: steals), expression, the pedal and /panic.
        let note = 36.0 + (n * 7 % 48) as f32;
        let command = match n % 12 {
            4 => Command::NoteOn {
                instrument: keys,
                note,
                velocity: 100.0,
                id: n as u32,
            },
            5 => Command::NoteOff {
                instrument: keys,
                note: note - 7.0,
                id: 0,
            },
            6 => Command::NotePlay {
                instrument: keys,
                note,
                velocity: 60.0,
                seconds: 0.01,
            },
            7 => Command::NoteExpression {
                instrument: keys,
                target: (n - 3) as f32,
                kind: chronus_dsp::Expression::Bend,
                value: 1.5,
            },
            8 => Command::Sustain {
                instrument: keys,
                on: n % 24 == 8,
            },
            9 if n % 600 == 9 => Command::Panic,
            // The voice limit: lowered (shedding the voices over it), then lifted.
            9 if n % 600 == 309 => Command::VoiceLimit { voices: 2 },
            9 if n % 600 == 429 => Command::VoiceLimit { voices: 0 },
            // The clock and the tracks: tempo and swing changes, stops and starts.
            10 if n % 48 == 10 => Command::ClockTempo {
                bpm: 200.0 + (n % 97) as f32,
            },
            10 if n % 48 == 22 => Command::ClockSwing {
                swing: 0.5 + (n % 25) as f32 / 100.0,
            },
            11 if n % 96 == 11 => Command::TrackRun {
                track: (n % 2) as u16,
                on: n % 192 == 11,
            },
            11 if n % 480 == 35 => Command::ClockRun { on: n % 960 == 35 },
            // The arpeggiator: on and off, its settings (the notes above feed it).
            10 if n % 48 == 34 => Command::Arp {
                instrument: keys,
                setting: match n % 240 {
                    34 => ArpSetting::On(true),
                    82 => ArpSetting::Mode(ArpMode::ALL[(n / 240 % 4) as usize]),
                    130 => ArpSetting::Octaves((n / 240 % 4) as u8 + 1),
                    178 => ArpSetting::Rate(3 + (n / 240 % 8) as u32 * 12),
                    _ => ArpSetting::On(false),
                },
            },
            10 if n % 48 == 46 => Command::Arp {
                instrument: keys,
                setting: ArpSetting::Gate(0.05 + (n % 19) as f32 * 0.05),
            },
            9 => Command::SetParam {
                node: keys_cutoff,
                param: 0,
                value: 300.0 + n as f32,
            },
            _ => match n % 4 {
                0 => Command::SetParam {
                    node: 0,
                    param: 0,
                    value: 200.0 + n as f32,
                },
                1 => Command::Gate {
                    node: 1,
                    on: n % 8 == 1,
                },
                2 => Command::EngineGain(0.5 + (n % 5) as f32 * 0.1),
                _ => Command::SetParam {
                    node: 2,
                    param: 0,
                    value: 500.0 + n as f32,
                },
            },
        };
        let stamped = StampedCommand {
            seq: n + 1,
            frame: n * 64 + (n % 64),
            command,
        };
        assert!(slot.push_command(&stamped.to_record(1)));
        slot.publish_horizon(n + 1);
        // The worker side.
        while let Some(record) = slot.pop_command() {
            if let Ok(Instruction::Stamped(c)) = Instruction::from_record(&record) {
                engine.receive(c).unwrap();
            }
        }
        engine.render_block(&mut block);
        assert_eq!(slot.write_block(n, &block), WriteOutcome::Written);
        if n % 500 == 0 {
            engine.save_snapshot(&mut snapshot);
        }
        // The output reads it back.
        assert!(slot.read_block(n, &mut heard));
        slot.release_through(n + 1);
    }
    chronus_alloc_counter::counting(false);
    assert_eq!(
        chronus_alloc_counter::allocations(),
        0,
        "allocations in the render loop"
    );
    assert!(heard.iter().any(|&s| s != 0.0), "it did render sound");
    assert!(engine.patch().voice_steals() > 0, "notes stole voices");
    assert!(engine.counters().applied > 1_900);
}
