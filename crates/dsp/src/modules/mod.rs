//! The module types and their registry.
//!
//! Each type lives in its own file with its `SPEC`, its state struct and its tests.
//! Adding a type: write `modules/<name>.rs`, then add one line to the `module_types!`
//! list below; the patch compiler, `all_specs`, the protocol's address table and every
//! test that covers all types pick it up from there.

pub mod bandlimited;
pub mod common;
pub mod table_oscillator;

use crate::module::Module;
use crate::spec::ModuleSpec;

/// One registered module type: its spec and how to build an instance.
#[derive(Clone, Copy)]
pub struct Registration {
    /// The type's static description.
    pub spec: &'static ModuleSpec,
    /// Builds an instance: `(sample_rate, max_block, seed)`.
    pub create: fn(f32, usize, u64) -> Box<dyn Module>,
}

/// Declares every module type once, from one line each (`file: constructor`): the `mod`
/// line, its [`REGISTRY`] entry and its place in [`all_specs`] (which every "all types"
/// test walks) all come from that line.
macro_rules! module_types {
    ($($module:ident: $create:expr,)*) => {
        $(pub mod $module;)*

        /// Every module type, in the order they are listed to users.
        pub static REGISTRY: &[Registration] = &[
            $(Registration { spec: &$module::SPEC, create: $create },)*
        ];

        static ALL_SPECS: &[&ModuleSpec] = &[$(&$module::SPEC,)*];
    };
}

// Every module type: `file: |sample_rate, max_block, seed| instance`, in user order.
module_types! {
    sine: |sr, _, _| Box::new(sine::Sine::new(sr)),
    adsr: |sr, _, _| Box::new(adsr::Adsr::new(sr)),
    biquad: |sr, _, _| Box::new(biquad::Biquad::new(sr)),
    gain: |sr, _, _| Box::new(gain::Gain::new(sr)),
    output: |sr, _, _| Box::new(output::Output::new(sr)),
    mixer: |sr, _, _| Box::new(mixer::Mixer::new(sr)),
    ladder: |sr, _, _| Box::new(ladder::Ladder::new(sr)),
    saw: |sr, _, _| Box::new(saw::new(sr)),
    reverb: |sr, _, _| Box::new(reverb::Reverb::new(sr)),
    square: |sr, _, _| Box::new(square::Square::new(sr)),
    triangle: |sr, _, _| Box::new(triangle::new(sr)),
    wavetable: |sr, _, _| Box::new(wavetable::Wavetable::new(sr)),
    noise: |sr, _, seed| Box::new(noise::Noise::new(sr, seed)),
    lfo: |sr, _, seed| Box::new(lfo::Lfo::new(sr, seed)),
    sample_hold: |sr, _, _| Box::new(sample_hold::SampleHold::new(sr)),
    svf: |sr, _, _| Box::new(svf::Svf::new(sr)),
    onepole: |sr, _, _| Box::new(onepole::OnePole::new(sr)),
    delay: |sr, _, _| Box::new(delay::Delay::new(sr)),
    limiter: |sr, _, _| Box::new(limiter::Limiter::new(sr)),
    pan: |sr, _, _| Box::new(pan::Pan::new(sr)),
    vca: |sr, _, _| Box::new(vca::Vca::new(sr)),
    crossfade: |sr, _, _| Box::new(crossfade::Crossfade::new(sr)),
    constant: |sr, _, _| Box::new(constant::Constant::new(sr)),
    scale: |sr, _, _| Box::new(scale::Scale::new(sr)),
    ringmod: |sr, _, _| Box::new(ringmod::RingMod::new(sr)),
    ar: |sr, _, _| Box::new(ar::Ar::new(sr)),
    distortion: |sr, _, _| Box::new(distortion::Distortion::new(sr)),
    chorus: |sr, _, _| Box::new(chorus::Chorus::new(sr)),
    note: |sr, _, _| Box::new(note::Note::new(sr)),
    drum: |sr, _, seed| Box::new(drum::Drum::new(sr, seed)),
}

/// Every module type's spec, in registry order; what the protocol builds its address
/// table and `/modules` reply from.
pub fn all_specs() -> &'static [&'static ModuleSpec] {
    ALL_SPECS
}

/// The spec of the type called `type_name`, or `None` if there is no such type.
pub fn spec_for(type_name: &str) -> Option<&'static ModuleSpec> {
    REGISTRY
        .iter()
        .find(|r| r.spec.type_name == type_name)
        .map(|r| r.spec)
}

/// A fresh instance of `type_name` (parameters at their defaults), or `None` for an unknown
/// type. `seed` feeds modules with random state so lockstepped workers agree; `max_block`
/// lets modules preallocate. Allocates: call it when compiling, not while rendering.
pub fn create(
    type_name: &str,
    sample_rate: f32,
    max_block: usize,
    seed: u64,
) -> Option<Box<dyn Module>> {
    REGISTRY
        .iter()
        .find(|r| r.spec.type_name == type_name)
        .map(|r| (r.create)(sample_rate, max_block, seed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module::MAX_PORTS;
    use crate::state::{StateReader, StateWriter};

    #[test]
    fn registry_and_all_specs_agree() {
        assert_eq!(REGISTRY.len(), all_specs().len());
        for (r, s) in REGISTRY.iter().zip(all_specs()) {
            assert_eq!(r.spec, *s);
        }
        let mut names: Vec<_> = all_specs().iter().map(|s| s.type_name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all_specs().len(), "type names are unique");
    }

    #[test]
    fn every_type_is_consistent() {
        for spec in all_specs() {
            let m = create(spec.type_name, 48_000.0, 64, 1).unwrap();
            assert_eq!(m.spec(), *spec);
            assert!(spec.inputs.len() <= MAX_PORTS && spec.outputs.len() <= MAX_PORTS);
            assert!(spec.params.len() <= crate::params::MAX_PARAMS);
            for (i, p) in spec.params.iter().enumerate() {
                assert!(p.min <= p.default && p.default <= p.max, "{}", p.name);
                assert!(!p.doc.is_empty(), "{}.{} has a doc", spec.type_name, p.name);
                assert_eq!(m.param(i), p.default, "{}.{}", spec.type_name, p.name);
                assert_eq!(spec.param_index(p.name), Some(i));
            }
            // save_state writes exactly state_len bytes.
            let mut buf = vec![0u8; m.state_len()];
            let mut w = StateWriter::new(&mut buf);
            m.save_state(&mut w);
            assert_eq!(w.finish(), Ok(m.state_len()), "{}", spec.type_name);
            let mut fresh = create(spec.type_name, 48_000.0, 64, 1).unwrap();
            let mut r = StateReader::new(&buf);
            fresh.load_state(&mut r).unwrap();
            assert_eq!(r.remaining(), 0);
        }
        assert!(spec_for("sine").is_some());
        assert!(spec_for("nope").is_none());
        assert!(create("nope", 48_000.0, 64, 1).is_none());
    }

    /// The patch asks only gated types whether they sound on their own
    /// ([`Module::is_sounding`]): no other type ever says so, whatever it plays.
    #[test]
    fn only_gated_types_sound_on_their_own() {
        let input: Vec<f32> = (0..64).map(|i| (i as f32 * 0.3).sin()).collect();
        for spec in all_specs().iter().filter(|s| !s.has_gate) {
            let mut m = create(spec.type_name, 48_000.0, 64, 3).unwrap();
            let ins: Vec<&[f32]> = vec![&input; spec.inputs.len()];
            let mut bufs = vec![[0.0f32; 64]; spec.outputs.len()];
            for _ in 0..10 {
                let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
                m.process(&ins, &mut outs);
                assert!(!m.is_sounding(), "{} sounds without a gate", spec.type_name);
            }
        }
    }

    /// A type that says [`Module::always_finite`] skips the NaN guard, so the claim is
    /// held to here: every parameter at its extremes and between, the gate both ways,
    /// every input fed the worst finite values (and NaN and infinity, which no module
    /// ever receives, but a claim "whatever the inputs" must survive them too).
    #[test]
    fn every_always_finite_claim_holds_at_the_extremes() {
        let worst = [
            f32::MAX,
            -f32::MAX,
            1e30,
            -1e30,
            f32::NAN,
            f32::INFINITY,
            0.0,
            1e-38,
        ];
        let input: Vec<f32> = (0..256).map(|i| worst[i % worst.len()]).collect();
        let mut claimants = 0;
        for spec in all_specs() {
            if !create(spec.type_name, 48_000.0, 64, 1)
                .unwrap()
                .always_finite()
            {
                continue;
            }
            claimants += 1;
            for setting in [0.0f32, 1.0, 0.5, 0.001, 0.999] {
                let mut m = create(spec.type_name, 48_000.0, 64, 7).unwrap();
                for (i, p) in spec.params.iter().enumerate() {
                    m.set_param(i, p.min + (p.max - p.min) * setting);
                }
                m.set_gate(setting > 0.4);
                let ins: Vec<&[f32]> = vec![&input[..64]; spec.inputs.len()];
                let mut bufs = vec![[0.0f32; 64]; spec.outputs.len()];
                for block in 0..200 {
                    let ins: Vec<&[f32]> = ins
                        .iter()
                        .map(|_| &input[(block * 5) % 192..][..64])
                        .collect();
                    let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
                    m.process(&ins, &mut outs);
                    assert!(
                        bufs.iter().flatten().all(|x| x.is_finite()),
                        "{} at setting {setting}, block {block}",
                        spec.type_name
                    );
                    if block == 100 {
                        m.set_gate(setting <= 0.4);
                    }
                }
            }
        }
        assert!(
            claimants >= 4,
            "note, sine and the table oscillators claim it"
        );
    }

    #[test]
    fn out_of_range_params_and_odd_port_counts_do_not_panic() {
        for spec in all_specs() {
            let mut m = create(spec.type_name, 48_000.0, 64, 1).unwrap();
            m.set_param(usize::MAX, 1.0);
            let _ = m.param(usize::MAX);
            for (i, p) in spec.params.iter().enumerate() {
                m.set_param(i, p.max * 10.0 + 1.0);
                assert_eq!(m.param(i), p.max);
                m.set_param(i, -1e30);
                assert_eq!(m.param(i), p.min);
            }
            m.set_gate(true);
            let mut out = [0.0f32; 8];
            m.process(&[], &mut []);
            m.process(&[], &mut [&mut out]);
            let input = [0.5f32; 8];
            let ins: Vec<&[f32]> = vec![&input; spec.inputs.len()];
            let mut bufs = vec![[0.0f32; 8]; spec.outputs.len()];
            let mut outs: Vec<&mut [f32]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
            m.process(&ins, &mut outs);
            assert!(bufs.iter().flatten().all(|x| x.is_finite()));
        }
    }
}
