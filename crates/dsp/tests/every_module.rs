//! Every registered module type, driven through a compiled patch as the engine drives
//! it: random parameter values (in range, and a few out of range, which the DSP clamps),
//! random gates and random block splits must never put NaN or infinity on the output,
//! never allocate while rendering, and a snapshot taken midway must continue
//! bit-identically in a fresh patch. Types added later are covered automatically.

use chronus_dsp::{
    all_specs, Connection, ModuleDesc, ModuleSpec, Patch, PatchDesc, Rate, StateReader, StateWriter,
};
use proptest::prelude::*;

#[global_allocator]
static GLOBAL: chronus_alloc_counter::CountingAllocator = chronus_alloc_counter::CountingAllocator;

/// `noise -> <type> -> out` (or `<type> -> out` for a source), with every input of the
/// type fed (audio inputs alternately the noise and the LFO, control inputs the LFO), so
/// every code path that reads inputs runs.
fn patch_for(spec: &ModuleSpec) -> PatchDesc {
    let mut modules = vec![
        ModuleDesc::new("src", "noise"),
        ModuleDesc::new("lfo", "lfo"),
        ModuleDesc::new("m", spec.type_name),
        ModuleDesc::new("out", "output"),
    ];
    modules[0].params.insert("gain".into(), 0.5);
    let mut connections = Vec::new();
    for (i, port) in spec.inputs.iter().enumerate() {
        // A control input (a drum's key) cannot take the audio noise: it gets the LFO.
        let source = if i % 2 == 0 && port.rate == Rate::Audio {
            "src:out"
        } else {
            "lfo:out"
        };
        connections.push(Connection::new(source, &format!("m:{}", port.name)));
    }
    if let Some(first) = spec.outputs.first() {
        connections.push(Connection::new(&format!("m:{}", first.name), "out:left"));
    }
    if let Some(second) = spec.outputs.get(1) {
        connections.push(Connection::new(&format!("m:{}", second.name), "out:right"));
    }
    if spec.type_name == "output" {
        // The module under test is itself an output: test it alone.
        return PatchDesc {
            modules: vec![
                ModuleDesc::new("src", "noise"),
                ModuleDesc::new("out", "output"),
            ],
            connections: vec![Connection::new("src:out", "out:left")],
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        };
    }
    PatchDesc {
        modules,
        connections,
        instruments: Vec::new(),
        clock: None,
        tracks: Vec::new(),
        midi: Default::default(),
    }
}

#[derive(Debug, Clone)]
enum Step {
    Render(usize),
    Param(usize, f32),
    Gate(bool),
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => (1usize..=64).prop_map(Step::Render),
            2 => (0usize..16, -0.2f32..1.2).prop_map(|(p, t)| Step::Param(p, t)),
            1 => any::<bool>().prop_map(Step::Gate),
        ],
        1..40,
    )
}

/// Runs `steps` on module node 2 ("m"); returns the rendered samples.
fn run(patch: &mut Patch, spec: &ModuleSpec, steps: &[Step]) -> Vec<f32> {
    let mut out = Vec::new();
    let (mut left, mut right) = ([0.0f32; 64], [0.0f32; 64]);
    let node = patch.node_index("m").unwrap_or(0);
    for step in steps {
        match *step {
            Step::Render(n) => {
                chronus_alloc_counter::counting(true);
                patch.process(&mut left[..n], &mut right[..n]);
                chronus_alloc_counter::counting(false);
                for (l, r) in left[..n].iter().zip(&right[..n]) {
                    out.push(*l);
                    out.push(*r);
                }
            }
            Step::Param(index, t) => {
                if let Some(p) = spec.params.get(index % spec.params.len().max(1)) {
                    // Mostly inside the range, sometimes a little outside it (clamped).
                    let value = p.min + (p.max - p.min) * t;
                    let param = spec
                        .params
                        .iter()
                        .position(|q| q.name == p.name)
                        .unwrap_or(0) as u16;
                    chronus_alloc_counter::counting(true);
                    patch.set_param(node, param, value);
                    chronus_alloc_counter::counting(false);
                }
            }
            Step::Gate(on) => {
                chronus_alloc_counter::counting(true);
                patch.set_gate(node, on);
                chronus_alloc_counter::counting(false);
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_module_stays_finite_allocation_free_and_snapshot_exact(first in steps(), second in steps()) {
        for spec in all_specs() {
            let desc = patch_for(spec);
            let mut patch = Patch::compile(&desc, 48_000.0, 64, 7)
                .unwrap_or_else(|e| panic!("{}: test patch does not compile: {e}", spec.type_name));
            chronus_alloc_counter::reset();
            let a = run(&mut patch, spec, &first);
            prop_assert!(a.iter().all(|x| x.is_finite()), "{}: non-finite output", spec.type_name);

            let mut snapshot = vec![0u8; patch.state_len()];
            let mut w = StateWriter::new(&mut snapshot);
            patch.save_state(&mut w);
            prop_assert!(!w.overflowed());
            let expected = run(&mut patch, spec, &second);
            prop_assert!(expected.iter().all(|x| x.is_finite()), "{}: non-finite output", spec.type_name);
            prop_assert_eq!(chronus_alloc_counter::allocations(), 0, "{}: allocated while rendering", spec.type_name);

            let mut fresh = Patch::compile(&desc, 48_000.0, 64, 7).unwrap();
            fresh.load_state(&mut StateReader::new(&snapshot)).unwrap();
            let again = run(&mut fresh, spec, &second);
            prop_assert!(
                again.iter().zip(&expected).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{}: snapshot/restore diverged", spec.type_name
            );
        }
    }
}
