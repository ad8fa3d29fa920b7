//! Property tests of the lockstep contract: rendering is a pure function of the patch and
//! the calls, and a snapshot taken at any block boundary lets a fresh patch continue
//! bit-identically, however the blocks are split.

use chronus_dsp::{
    all_specs, Connection, Expression, ModuleDesc, Patch, PatchDesc, StateReader, StateWriter,
};
use proptest::prelude::*;

const SR: f32 = 48_000.0;
const MAX_BLOCK: usize = 64;

/// One call made on a patch.
#[derive(Debug, Clone)]
enum Op {
    /// Render `frames` frames; in the split run, as two pieces cut at `cut`.
    Render { frames: usize, cut: usize },
    /// Set a parameter to `frac` of its range (outside 0..1 tests clamping); node and param
    /// may be out of range on purpose.
    SetParam { node: u16, param: u16, frac: f32 },
    /// Open or close a gate (possibly of a module without one, or no module).
    Gate { node: u16, on: bool },
    /// A note on the patch's instrument `keys`, if it has one (`length` 0: held).
    NoteOn {
        note: u8,
        velocity: u8,
        id: u32,
        length: u64,
    },
    /// A note-off (by number, or by id when `id` is not 0).
    NoteOff { note: u8, id: u32 },
    /// A per-note expression.
    Expression { target: u8, kind: u8, value: f32 },
    /// The sustain pedal.
    Sustain(bool),
    /// Every voice fades out.
    Panic,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1..=MAX_BLOCK, 0..=MAX_BLOCK).prop_map(|(frames, cut)| Op::Render { frames, cut: cut.min(frames) }),
        2 => (0u16..9, 0u16..5, -0.2f32..1.2).prop_map(|(node, param, frac)| Op::SetParam { node, param, frac }),
        1 => (0u16..9, any::<bool>()).prop_map(|(node, on)| Op::Gate { node, on }),
        3 => (58u8..66, 0u8..128, 0u32..4, prop_oneof![Just(0u64), 1u64..400]).prop_map(
            |(note, velocity, id, length)| Op::NoteOn { note, velocity, id, length }
        ),
        2 => (58u8..66, 0u32..4).prop_map(|(note, id)| Op::NoteOff { note, id }),
        1 => (0u8..66, 0u8..3, -1.0f32..1.0).prop_map(|(target, kind, value)| Op::Expression { target, kind, value }),
        1 => any::<bool>().prop_map(Op::Sustain),
        1 => Just(Op::Panic),
    ]
}

/// A small random valid chain: sine -> (adsr | biquad | gain)* -> out, optionally with a
/// second source on the right channel (another sine, or the first adsr's envelope), and
/// random initial parameters.
fn chain() -> impl Strategy<Value = PatchDesc> {
    let stage = (0usize..3, prop::collection::vec(0.0f32..=1.0, 4));
    (
        prop::collection::vec(stage, 0..5),
        prop::collection::vec(0.0f32..=1.0, 2),
        0u8..3,
    )
        .prop_map(|(stages, sine_params, right)| {
            let types = ["adsr", "biquad", "gain"];
            let with_params = |mut m: ModuleDesc, fracs: &[f32]| {
                let spec = all_specs()
                    .iter()
                    .find(|s| s.type_name == m.type_name)
                    .unwrap();
                for (p, f) in spec.params.iter().zip(fracs) {
                    m.params
                        .insert(p.name.to_string(), p.min + (p.max - p.min) * f);
                }
                m
            };
            let mut modules = vec![with_params(ModuleDesc::new("src", "sine"), &sine_params)];
            let mut connections = Vec::new();
            let mut prev = "src".to_string();
            let mut first_adsr = None;
            for (i, (t, fracs)) in stages.iter().enumerate() {
                let id = format!("m{i}");
                if *t == 0 && first_adsr.is_none() {
                    first_adsr = Some(id.clone());
                }
                modules.push(with_params(ModuleDesc::new(&id, types[*t]), fracs));
                connections.push(Connection::new(&prev, &id));
                prev = id;
            }
            modules.push(ModuleDesc::new("out", "output"));
            connections.push(Connection::new(&prev, "out:left"));
            match (right, first_adsr) {
                (1, _) => {
                    modules.push(ModuleDesc::new("src2", "sine").with_param("freq", 123.0));
                    connections.push(Connection::new("src2", "out:right"));
                }
                (2, Some(adsr)) => {
                    connections.push(Connection::new(&format!("{adsr}:env"), "out:right"))
                }
                _ => {}
            }
            PatchDesc {
                modules,
                connections,
                instruments: Vec::new(),
                clock: None,
                tracks: Vec::new(),
                midi: Default::default(),
            }
        })
}

/// The default patch with 2 voices in `keys`, so that notes steal voices.
fn few_voices() -> PatchDesc {
    let mut d = PatchDesc::default_patch();
    d.instruments[0].voices = 2;
    d
}

fn desc() -> impl Strategy<Value = PatchDesc> {
    prop_oneof![
        Just(PatchDesc::default_patch()),
        Just(few_voices()),
        chain()
    ]
}

fn compile(d: &PatchDesc) -> Patch {
    Patch::compile(d, SR, MAX_BLOCK, 42).expect("generated patches are valid")
}

/// Applies `op`, appending any rendered frames (left then right, as bits) to `out`.
fn apply(p: &mut Patch, op: &Op, split: bool, out: &mut Vec<u32>) {
    match *op {
        Op::Render { frames, cut } => {
            let mut l = [0.0f32; MAX_BLOCK];
            let mut r = [0.0f32; MAX_BLOCK];
            let (l, r) = (&mut l[..frames], &mut r[..frames]);
            if split && cut > 0 && cut < frames {
                let (l1, l2) = l.split_at_mut(cut);
                let (r1, r2) = r.split_at_mut(cut);
                p.process(l1, r1);
                p.process(l2, r2);
            } else {
                p.process(l, r);
            }
            for (a, b) in l.iter().zip(r.iter()) {
                assert!(a.is_finite() && b.is_finite());
                out.push(a.to_bits());
                out.push(b.to_bits());
            }
        }
        Op::SetParam { node, param, frac } => {
            let value = match p
                .node_spec(node)
                .and_then(|s| s.params.get(usize::from(param)))
            {
                Some(ps) => ps.min + (ps.max - ps.min) * frac,
                None => frac,
            };
            p.set_param(node, param, value);
        }
        Op::Gate { node, on } => p.set_gate(node, on),
        Op::NoteOn {
            note,
            velocity,
            id,
            length,
        } => p.note_on(keys(p), note.into(), velocity.into(), id, length),
        Op::NoteOff { note, id } => p.note_off(keys(p), note.into(), id),
        Op::Expression {
            target,
            kind,
            value,
        } => {
            let kind =
                [Expression::Bend, Expression::Pressure, Expression::Timbre][usize::from(kind)];
            p.note_expression(keys(p), target.into(), kind, value);
        }
        Op::Sustain(on) => p.sustain(keys(p), on),
        Op::Panic => p.panic_notes(),
    }
}

/// The instrument's node, or one that is not an instrument (the note is then ignored).
fn keys(p: &Patch) -> u16 {
    p.node_index("keys").unwrap_or(0)
}

fn snapshot(p: &Patch) -> Vec<u8> {
    let mut buf = vec![0u8; p.state_len()];
    let mut w = StateWriter::new(&mut buf);
    p.save_state(&mut w);
    assert_eq!(w.finish(), Ok(p.state_len()));
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Render K ops, snapshot, load into a fresh patch, render the rest: bit-identical to
    /// rendering everything straight (and with every render split in two sub-blocks).
    #[test]
    fn snapshot_then_continue_is_bit_identical(
        d in desc(),
        ops in prop::collection::vec(op(), 1..40),
        at in 0usize..40,
        gate_first in any::<bool>(),
    ) {
        let at = at.min(ops.len());
        let mut straight = compile(&d);
        let mut expect = Vec::new();
        let adsr = straight.node_index("adsr").or_else(|| straight.node_index("m0"));
        if gate_first {
            if let Some(n) = adsr {
                straight.set_gate(n, true);
            }
        }
        for o in &ops {
            apply(&mut straight, o, false, &mut expect);
        }

        let mut first = compile(&d);
        if gate_first {
            if let Some(n) = adsr {
                first.set_gate(n, true);
            }
        }
        let mut got = Vec::new();
        for o in &ops[..at] {
            apply(&mut first, o, true, &mut got);
        }
        let bytes = snapshot(&first);
        let mut second = compile(&d);
        second.load_state(&mut StateReader::new(&bytes)).unwrap();
        prop_assert_eq!(second.state_len(), bytes.len());
        prop_assert_eq!(snapshot(&second), bytes, "load then save gives the same bytes");
        for o in &ops[at..] {
            apply(&mut second, o, true, &mut got);
        }
        prop_assert!(got == expect, "outputs differ after the snapshot/split run");
        prop_assert_eq!(second.voices_sounding(), straight.voices_sounding());
        prop_assert_eq!(second.voice_steals(), straight.voice_steals());
        prop_assert_eq!(second.nonfinite_resets(), straight.nonfinite_resets());
        for node in 0..straight.node_count() as u16 {
            for param in 0..5 {
                prop_assert_eq!(
                    second.param(node, param).map(f32::to_bits),
                    straight.param(node, param).map(f32::to_bits)
                );
            }
        }
    }

    /// Two patches compiled from the same description and driven by the same calls
    /// render the same bits (the lockstep assumption).
    #[test]
    fn same_calls_same_bits(d in desc(), ops in prop::collection::vec(op(), 1..30)) {
        let (mut a, mut b) = (compile(&d), compile(&d));
        let (mut oa, mut ob) = (Vec::new(), Vec::new());
        for o in &ops {
            apply(&mut a, o, false, &mut oa);
            apply(&mut b, o, false, &mut ob);
        }
        prop_assert!(oa == ob);
    }

    /// Generated descriptions survive a TOML round trip unchanged.
    #[test]
    fn toml_round_trip(d in desc()) {
        let text = d.to_toml_string();
        prop_assert_eq!(PatchDesc::from_toml_str(&text).unwrap(), d);
    }
}
