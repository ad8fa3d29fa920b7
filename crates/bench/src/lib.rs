//! Chronus benchmarks: the DSP engine measured against fundsp 0.23.
//!
//! The comparison itself is `benches/dsp_vs_fundsp.rs` (run it with
//! `cargo bench -p chronus-bench --features fundsp`). This library holds the parts that
//! need no fundsp: the Chronus patches of each benchmark chain, built as [`PatchDesc`]s in
//! code and compiled exactly as the engine compiles them, so they are also checked by
//! `cargo test --workspace` without pulling fundsp into every build.
//!
//! The benchmark's contract with fundsp is that both sides compute the same chain with the
//! same parameters; the constants below are shared by both sides for that reason.

use std::time::{Duration, Instant};

use chronus_dsp::patch::InstrumentDesc;
use chronus_dsp::{spec_for, Connection, ModuleDesc, Patch, PatchDesc, PatchError};

/// Sample rate of every benchmark, in Hz.
pub const SAMPLE_RATE: f32 = 48_000.0;
/// Frames per block, as the engine renders them.
pub const BLOCK: usize = 64;
/// Voices in the polyphonic chain.
pub const VOICES: usize = 16;

/// Frequency of the sine in chains 1, 2 and 5, in Hz.
pub const SINE_HZ: f32 = 440.0;
/// Frequency of the saw in chain 3, in Hz.
pub const SAW_HZ: f32 = 220.0;
/// ADSR attack, in seconds.
pub const ATTACK_S: f32 = 0.01;
/// ADSR decay, in seconds.
pub const DECAY_S: f32 = 0.1;
/// ADSR sustain level.
pub const SUSTAIN: f32 = 0.7;
/// ADSR release, in seconds.
pub const RELEASE_S: f32 = 0.3;
/// Filter cutoff of chains 2 to 5, in Hz.
pub const CUTOFF_HZ: f32 = 1_000.0;
/// Biquad quality factor.
pub const BIQUAD_Q: f32 = 0.7;
/// Ladder resonance (0..1 in both Chronus and fundsp).
pub const LADDER_RES: f32 = 0.3;
/// Final gain of every chain.
pub const GAIN: f32 = 0.5;
/// Reverb room size in meters (fundsp's parameter; Chronus uses its defaults).
pub const REVERB_ROOM_M: f32 = 10.0;
/// Reverb time to -60 dB, in seconds.
pub const REVERB_TIME_S: f32 = 2.0;
/// Reverb high-frequency damping, 0..1.
pub const REVERB_DAMPING: f32 = 0.5;

/// Frequency of voice `i` of the polyphonic chain: a chromatic cluster from 220 Hz.
pub fn voice_hz(i: usize) -> f32 {
    220.0 * 2f32.powf(i as f32 / 12.0)
}

/// One benchmark chain: its name in the table and its Chronus patch, if every module type
/// it needs exists in this build.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Short name printed in the table.
    pub name: &'static str,
    /// The patch, or `None` when a module type it needs is not registered yet.
    pub desc: Option<PatchDesc>,
}

/// True if every type in `types` is registered, so a chain using them can be built.
fn available(types: &[&str]) -> bool {
    types.iter().all(|t| spec_for(t).is_some())
}

/// Appends sine → adsr → biquad → gain with ids `<prefix>sine` … and returns the gain's id.
fn voice(
    modules: &mut Vec<ModuleDesc>,
    connections: &mut Vec<Connection>,
    prefix: &str,
    hz: f32,
    gain: f32,
) -> String {
    let id = |s: &str| format!("{prefix}{s}");
    modules.push(
        ModuleDesc::new(&id("sine"), "sine")
            .with_param("freq", hz)
            .with_param("gain", 1.0),
    );
    modules.push(
        ModuleDesc::new(&id("adsr"), "adsr")
            .with_param("attack", ATTACK_S * 1000.0)
            .with_param("decay", DECAY_S * 1000.0)
            .with_param("sustain", SUSTAIN)
            .with_param("release", RELEASE_S * 1000.0),
    );
    modules.push(
        ModuleDesc::new(&id("filter"), "biquad")
            .with_param("cutoff", CUTOFF_HZ)
            .with_param("q", BIQUAD_Q),
    );
    modules.push(ModuleDesc::new(&id("gain"), "gain").with_param("gain", gain));
    connections.push(Connection::new(&id("sine"), &id("adsr")));
    connections.push(Connection::new(
        &format!("{}:out", id("adsr")),
        &id("filter"),
    ));
    connections.push(Connection::new(&id("filter"), &id("gain")));
    id("gain")
}

/// Chain 1: a 440 Hz sine straight into the output.
pub fn sine() -> Chain {
    let desc = PatchDesc {
        modules: vec![
            ModuleDesc::new("sine", "sine")
                .with_param("freq", SINE_HZ)
                .with_param("gain", 1.0),
            ModuleDesc::new("out", "output"),
        ],
        connections: vec![Connection::new("sine", "out:left")],
        instruments: Vec::new(),
        clock: None,
        tracks: Vec::new(),
        midi: Default::default(),
    };
    Chain {
        name: "1 sine 440 Hz",
        desc: Some(desc),
    }
}

/// Chain 2: sine → ADSR (gate on) → biquad lowpass (1 kHz, Q 0.7) → gain.
pub fn voice_chain() -> Chain {
    let mut modules = Vec::new();
    let mut connections = Vec::new();
    let last = voice(&mut modules, &mut connections, "", SINE_HZ, GAIN);
    modules.push(ModuleDesc::new("out", "output"));
    connections.push(Connection::new(&last, "out:left"));
    Chain {
        name: "2 sine>adsr>biquad>gain",
        desc: Some(PatchDesc {
            modules,
            connections,
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        }),
    }
}

/// Chain 3: band-limited saw → 4-pole ladder (1 kHz) → gain; `None` until the `saw` and
/// `ladder` types exist.
pub fn saw_ladder() -> Chain {
    let desc = available(&["saw", "ladder"]).then(|| PatchDesc {
        modules: vec![
            ModuleDesc::new("saw", "saw")
                .with_param("freq", SAW_HZ)
                .with_param("gain", 1.0),
            ModuleDesc::new("ladder", "ladder")
                .with_param("cutoff", CUTOFF_HZ)
                .with_param("resonance", LADDER_RES),
            ModuleDesc::new("gain", "gain").with_param("gain", GAIN),
            ModuleDesc::new("out", "output"),
        ],
        connections: vec![
            Connection::new("saw", "ladder"),
            Connection::new("ladder", "gain"),
            Connection::new("gain", "out:left"),
        ],
        instruments: Vec::new(),
        clock: None,
        tracks: Vec::new(),
        midi: Default::default(),
    });
    Chain {
        name: "3 saw>ladder>gain",
        desc,
    }
}

/// Chain 4: [`VOICES`] voices of chain 2 at different pitches, summed by a tree of
/// mixers (eight inputs each) into the output.
pub fn poly() -> Chain {
    let mut modules = Vec::new();
    let mut connections = Vec::new();
    let groups = VOICES.div_ceil(8);
    for g in 0..groups {
        modules.push(ModuleDesc::new(&format!("mix{g}"), "mixer"));
    }
    for v in 0..VOICES {
        let last = voice(
            &mut modules,
            &mut connections,
            &format!("v{v}_"),
            voice_hz(v),
            GAIN / VOICES as f32,
        );
        connections.push(Connection::new(
            &last,
            &format!("mix{}:in{}", v / 8, v % 8 + 1),
        ));
    }
    modules.push(ModuleDesc::new("mix", "mixer"));
    for g in 0..groups {
        connections.push(Connection::new(
            &format!("mix{g}"),
            &format!("mix:in{}", g + 1),
        ));
    }
    modules.push(ModuleDesc::new("out", "output"));
    connections.push(Connection::new("mix", "out:left"));
    Chain {
        name: "4 16 voices of 2, summed",
        desc: Some(PatchDesc {
            modules,
            connections,
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        }),
    }
}

/// Chain 5: chain 2 → stereo reverb (its mono input, stereo out; default mix); `None`
/// until the `reverb` type exists.
pub fn reverb() -> Chain {
    let desc = available(&["reverb"]).then(|| {
        let mut modules = Vec::new();
        let mut connections = Vec::new();
        let last = voice(&mut modules, &mut connections, "", SINE_HZ, GAIN);
        modules.push(ModuleDesc::new("reverb", "reverb"));
        modules.push(ModuleDesc::new("out", "output"));
        connections.push(Connection::new(&last, "reverb:in"));
        connections.push(Connection::new("reverb:left", "out:left"));
        connections.push(Connection::new("reverb:right", "out:right"));
        PatchDesc {
            modules,
            connections,
            instruments: Vec::new(),
            clock: None,
            tracks: Vec::new(),
            midi: Default::default(),
        }
    });
    Chain {
        name: "5 chain 2>stereo reverb",
        desc,
    }
}

/// Voices the `voices` benchmark aims to hold under 70 % load (DESIGN.md's budget).
pub const VOICES_TARGET: usize = 1_000;
/// Load the `voices` benchmark counts voices under: render time / real time.
pub const MAX_LOAD: f64 = 0.7;
/// Velocity (MIDI, 0..=127) of every note the `voices` benchmark holds.
pub const VELOCITY: f32 = 100.0;
/// Seconds rendered after the notes start before the `voices` benchmark times anything:
/// past the `keys` envelope's attack and decay (5 + 300 ms), so every voice sustains.
pub const SETTLE_S: f32 = 0.4;

/// MIDI note of voice `i` of a `voices` benchmark: a chromatic run from C2 over four
/// octaves, then again a hundredth of a semitone higher, so no two voices share a pitch.
pub fn note_of(i: usize) -> f32 {
    36.0 + (i % 48) as f32 + 0.01 * (i / 48) as f32
}

/// The `keys` instrument ([`InstrumentDesc::keys`]) with `voices` voices, straight into
/// the output (`reverb`: through a shared stereo `reverb` at its defaults first): the
/// patch of the `voices` benchmark's count of voices.
pub fn keys(voices: usize, reverb: bool) -> PatchDesc {
    let instrument = InstrumentDesc {
        voices,
        ..InstrumentDesc::keys()
    };
    let mut modules = vec![ModuleDesc::new("out", "output")];
    let connections = if reverb {
        modules.push(ModuleDesc::new("reverb", "reverb"));
        vec![
            Connection::new("keys:out", "reverb:in"),
            Connection::new("reverb:left", "out:left"),
            Connection::new("reverb:right", "out:right"),
        ]
    } else {
        vec![Connection::new("keys:out", "out:left")]
    };
    PatchDesc {
        modules,
        connections,
        instruments: vec![instrument],
        clock: None,
        tracks: Vec::new(),
        midi: Default::default(),
    }
}

/// Chain 2 as a 16-voice instrument `poly`: note -> sine (freq 0, the note's pitch at
/// `fm`) -> adsr -> biquad -> gain, every parameter as in chain 2. The honest polyphonic
/// form of chain 4.
pub fn poly_instrument() -> PatchDesc {
    let instrument = InstrumentDesc {
        name: "poly".to_string(),
        voices: VOICES,
        modules: vec![
            ModuleDesc::new("note", "note"),
            ModuleDesc::new("osc", "sine")
                .with_param("freq", 0.0)
                .with_param("gain", 1.0),
            ModuleDesc::new("adsr", "adsr")
                .with_param("attack", ATTACK_S * 1000.0)
                .with_param("decay", DECAY_S * 1000.0)
                .with_param("sustain", SUSTAIN)
                .with_param("release", RELEASE_S * 1000.0),
            ModuleDesc::new("filter", "biquad")
                .with_param("cutoff", CUTOFF_HZ)
                .with_param("q", BIQUAD_Q),
            ModuleDesc::new("gain", "gain").with_param("gain", GAIN / VOICES as f32),
        ],
        connections: vec![
            Connection::new("note:freq", "osc:fm"),
            Connection::new("osc", "adsr"),
            Connection::new("adsr:out", "filter"),
            Connection::new("filter", "gain"),
            Connection::new("gain", "out"),
        ],
        arp: None,
    };
    PatchDesc {
        modules: vec![ModuleDesc::new("out", "output")],
        connections: vec![Connection::new("poly:out", "out:left")],
        instruments: vec![instrument],
        clock: None,
        tracks: Vec::new(),
        midi: Default::default(),
    }
}

/// Compiles `desc` (48 kHz, 64-frame blocks), holds `notes` notes on its instrument
/// `name` (pitches `pitch(i)`, velocity [`VELOCITY`]) and renders [`SETTLE_S`] seconds,
/// so every note sustains when the timing starts.
///
/// # Errors
/// Any [`PatchError`] from [`Patch::compile`]; [`PatchError::Instrument`] if `name` is
/// not an instrument of the patch or fewer than `notes` voices sound after the settling.
pub fn hold_notes(
    desc: &PatchDesc,
    name: &str,
    notes: usize,
    pitch: impl Fn(usize) -> f32,
) -> Result<Patch, PatchError> {
    let mut patch = Patch::compile(desc, SAMPLE_RATE, BLOCK, 1)?;
    let failed = |reason: String| PatchError::Instrument {
        name: name.to_string(),
        reason,
    };
    let node = patch
        .instruments()
        .find(|&(n, _)| n == name)
        .map(|(_, node)| node)
        .ok_or_else(|| failed("no such instrument".to_string()))?;
    for i in 0..notes {
        patch.note_on(node, pitch(i), VELOCITY, 0, 0);
    }
    let (mut l, mut r) = (vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]);
    for _ in 0..(SETTLE_S * SAMPLE_RATE) as usize / BLOCK {
        patch.process(&mut l, &mut r);
    }
    if patch.voices_sounding() != notes {
        return Err(failed(format!(
            "{} voices sound of {notes} notes held",
            patch.voices_sounding()
        )));
    }
    Ok(patch)
}

/// Something the benchmarks render block by block.
pub trait Render {
    /// Renders one [`BLOCK`]-frame block.
    fn block(&mut self);
}

/// Renders blocks of `r` for at least `duration` and returns nanoseconds per frame.
pub fn time(r: &mut dyn Render, duration: Duration) -> f64 {
    const BATCH: usize = 64;
    let start = Instant::now();
    let mut blocks = 0usize;
    loop {
        for _ in 0..BATCH {
            r.block();
        }
        blocks += BATCH;
        let elapsed = start.elapsed();
        if elapsed >= duration {
            return elapsed.as_nanos() as f64 / (blocks * BLOCK) as f64;
        }
    }
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), in nanoseconds.
fn thread_cpu_ns() -> u128 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as u128 * 1_000_000_000 + t.tv_nsec as u128
}

/// [`time`] by this thread's CPU time instead of the wall clock: renders blocks of `r`
/// for at least `duration` of CPU time and returns CPU nanoseconds per frame. On a
/// shared machine the time the thread waits for a core is not counted, so the
/// measure is what one core needs, however busy the others keep it.
pub fn time_cpu(r: &mut dyn Render, duration: Duration) -> f64 {
    const BATCH: usize = 64;
    let start = thread_cpu_ns();
    let mut blocks = 0usize;
    loop {
        for _ in 0..BATCH {
            r.block();
        }
        blocks += BATCH;
        let elapsed = thread_cpu_ns() - start;
        if elapsed >= duration.as_nanos() {
            return elapsed as f64 / (blocks * BLOCK) as f64;
        }
    }
}

/// The median of `v` (sorted in place); the benchmarks report medians because the
/// machine is shared and a round can be slowed by anything.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What the benchmarks report of a side's rounds: the median, or with `BENCH_STAT=min`
/// the fastest round, which on a machine shared with a build is the round least
/// disturbed (for comparing two builds of Chronus, not for the published table).
pub fn summary(v: &mut [f64]) -> f64 {
    if std::env::var("BENCH_STAT").is_ok_and(|s| s == "min") {
        v.iter().copied().fold(f64::INFINITY, f64::min)
    } else {
        median(v)
    }
}

/// Environment variable `name` parsed, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds of real time per frame at [`SAMPLE_RATE`]: what load is measured against.
pub fn frame_ns() -> f64 {
    1e9 / f64::from(SAMPLE_RATE)
}

/// All five chains, in table order.
pub fn chains() -> Vec<Chain> {
    vec![sine(), voice_chain(), saw_ladder(), poly(), reverb()]
}

/// Compiles `desc` as the engine does (48 kHz, 64-frame blocks) and opens every gate, so
/// envelopes play as a held note.
///
/// # Errors
/// Any [`PatchError`] from [`Patch::compile`] (a chain that names a port the module
/// type does not have, for instance).
pub fn compile(desc: &PatchDesc) -> Result<Patch, PatchError> {
    let mut patch = Patch::compile(desc, SAMPLE_RATE, BLOCK, 1)?;
    for i in 0..patch.node_count() {
        let node = u16::try_from(i).unwrap_or(u16::MAX);
        if patch.node_spec(node).is_some_and(|s| s.has_gate) {
            patch.set_gate(node, true);
        }
    }
    Ok(patch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_chain_compiles_and_sounds() {
        for chain in chains() {
            let Some(desc) = chain.desc else { continue };
            let mut patch = compile(&desc).unwrap_or_else(|e| panic!("{}: {e}", chain.name));
            let (mut l, mut r) = (vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]);
            let mut energy = 0.0f64;
            for _ in 0..200 {
                patch.process(&mut l, &mut r);
                energy += l.iter().chain(&r).map(|&x| f64::from(x * x)).sum::<f64>();
                assert!(l.iter().chain(&r).all(|x| x.is_finite()));
            }
            assert!(energy > 1.0, "{} is silent", chain.name);
        }
    }

    #[test]
    fn voices_benchmark_patches_hold_every_note() {
        for (desc, name, notes) in [
            (keys(40, true), "keys", 40),
            (keys(3, false), "keys", 3),
            (poly_instrument(), "poly", VOICES),
        ] {
            let mut p = hold_notes(&desc, name, notes, note_of).unwrap();
            let (mut l, mut r) = (vec![0.0f32; BLOCK], vec![0.0f32; BLOCK]);
            p.process(&mut l, &mut r);
            assert!(l.iter().any(|&x| x != 0.0), "{name} is silent");
            assert_eq!(p.voices_sounding(), notes);
        }
        assert!(hold_notes(&keys(2, false), "keys", 3, note_of).is_err());
    }
}
