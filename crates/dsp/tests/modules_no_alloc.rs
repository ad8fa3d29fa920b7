//! Every registered module type must not allocate on the render
//! thread: `process`, `set_param`, `set_gate`, `reset`, `save_state` and `load_state` are
//! called there. A counting global allocator checks each type directly (outside a patch,
//! so every port and parameter is exercised), after the one allocating call, `create`.

use chronus_dsp::{all_specs, create, StateReader, StateWriter, MAX_PORTS};

#[global_allocator]
static GLOBAL: chronus_alloc_counter::CountingAllocator = chronus_alloc_counter::CountingAllocator;

#[test]
fn render_thread_calls_do_not_allocate() {
    chronus_alloc_counter::counting(true);
    for type_name in all_specs().iter().map(|s| s.type_name) {
        let mut m = create(type_name, 48_000.0, 64, 1).expect("registered");
        let spec = m.spec();
        let input: Vec<f32> = (0..64)
            .map(|i| ((i * 37) % 64) as f32 / 32.0 - 1.0)
            .collect();
        let ins: Vec<&[f32]> = vec![&input[..]; spec.inputs.len()];
        let mut bufs = vec![[0.0f32; 64]; spec.outputs.len()];
        let mut snap = vec![0u8; m.state_len()];

        let before = chronus_alloc_counter::allocations();
        for i in 0..100usize {
            for (p, ps) in spec.params.iter().enumerate() {
                let t = ((i + p) % 7) as f32 / 6.0;
                m.set_param(p, ps.min + (ps.max - ps.min) * t);
            }
            m.set_gate(i % 10 < 5);
            let n = 1 + i % 64;
            let mut outs: [&mut [f32]; MAX_PORTS] = Default::default();
            for (slot, b) in outs.iter_mut().zip(bufs.iter_mut()) {
                *slot = &mut b[..n];
            }
            let ins_n: [&[f32]; MAX_PORTS] =
                std::array::from_fn(|k| ins.get(k).map_or(&[][..], |s| &s[..n]));
            m.process(&ins_n[..spec.inputs.len()], &mut outs[..spec.outputs.len()]);
            if i % 25 == 0 {
                let mut w = StateWriter::new(&mut snap);
                m.save_state(&mut w);
                assert!(!w.overflowed());
                m.load_state(&mut StateReader::new(&snap)).unwrap();
            }
            if i == 60 {
                m.reset();
            }
        }
        let after = chronus_alloc_counter::allocations();
        assert_eq!(
            after - before,
            0,
            "{type_name} allocated on the render thread"
        );
    }
}
