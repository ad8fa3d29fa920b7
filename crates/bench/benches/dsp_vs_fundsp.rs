//! Chronus against fundsp 0.23 on the same five chains, same compiler settings, one run.
//!
//! Run: `cargo bench -p chronus-bench --features fundsp` (the workspace's `[profile.bench]`:
//! fat LTO, one codegen unit, no target-cpu flag, for both libraries alike).
//!
//! Chronus renders through its compiled patch graph exactly as the engine does
//! (`Patch::compile`, then `Patch::process` on 64-frame stereo blocks: smoothing, NaN guard
//! and all). fundsp renders the equivalent graph through its block interface
//! (`AudioUnit::process` on 64-frame buffers), its fast path.
//!
//! The machine is shared and noisy, so after a warm-up each chain is timed in alternating
//! rounds (Chronus, fundsp, Chronus, fundsp, …) and the table reports the median of each
//! side and the ratio of the medians. Environment: `BENCH_ROUNDS` (default 7) and
//! `BENCH_ROUND_SECONDS` (default 0.2) change the schedule; arguments that are chain
//! numbers (`1 4`) run only those chains.

mod common;

use chronus_bench::{self as cb, median, time};
use common::{Chronus, Fundsp, Settings};
use fundsp::prelude32::*;

/// Chain 2 in fundsp: sine times a held ADSR, through a 1 kHz lowpass, scaled.
fn fundsp_voice(hz: f32, gain: f32) -> An<impl AudioNode<Inputs = U0, Outputs = U1>> {
    let env = dc(1.0) >> adsr_live(cb::ATTACK_S, cb::DECAY_S, cb::SUSTAIN, cb::RELEASE_S);
    (sine_hz(hz) * env) >> (lowpass_hz(cb::CUTOFF_HZ, cb::BIQUAD_Q) * gain)
}

/// The fundsp graph of chain `n` (1-based).
fn fundsp_chain(n: usize) -> Box<dyn AudioUnit> {
    match n {
        1 => Box::new(sine_hz(cb::SINE_HZ)),
        2 => Box::new(fundsp_voice(cb::SINE_HZ, cb::GAIN)),
        3 => Box::new(saw_hz(cb::SAW_HZ) >> (moog_hz(cb::CUTOFF_HZ, cb::LADDER_RES) * cb::GAIN)),
        4 => Box::new(busi::<U16, _, _>(|i| {
            fundsp_voice(cb::voice_hz(i as usize), cb::GAIN / cb::VOICES as f32)
        })),
        _ => Box::new(
            fundsp_voice(cb::SINE_HZ, cb::GAIN)
                >> split::<U2>()
                >> reverb_stereo(cb::REVERB_ROOM_M, cb::REVERB_TIME_S, cb::REVERB_DAMPING),
        ),
    }
}

fn main() {
    let settings = Settings::from_env();
    let (rounds, round) = (settings.rounds, settings.round);

    println!(
        "Chronus vs fundsp 0.23: {} Hz, {}-frame blocks, median of {rounds} alternating rounds of {:.2} s",
        cb::SAMPLE_RATE,
        cb::BLOCK,
        round.as_secs_f64()
    );
    println!(
        "{:<28} {:>14} {:>14} {:>16}",
        "chain", "Chronus ns/smp", "fundsp ns/smp", "Chronus/fundsp"
    );
    for (i, chain) in cb::chains().into_iter().enumerate() {
        let n = i + 1;
        if !settings.runs(n) {
            continue;
        }
        let Some(desc) = chain.desc else {
            println!("{:<28} n/a (module type not available yet)", chain.name);
            continue;
        };
        let patch = match cb::compile(&desc) {
            Ok(p) => p,
            Err(e) => {
                println!("{:<28} n/a (patch does not compile: {e})", chain.name);
                continue;
            }
        };
        let mut chronus = Chronus::new(patch);
        let mut fundsp = Fundsp::new(fundsp_chain(n));
        // Warm-up: caches, branch predictors, envelopes past their attack and decay.
        time(&mut chronus, round);
        time(&mut fundsp, round);
        let (mut c, mut f) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            c.push(time(&mut chronus, round));
            f.push(time(&mut fundsp, round));
        }
        let (c, f) = (median(&mut c), median(&mut f));
        println!("{:<28} {:>14.2} {:>14.2} {:>16.2}", chain.name, c, f, c / f);
    }
}
