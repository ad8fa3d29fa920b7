//! Voices: how many notes of the default `keys` instrument one core renders, and what a
//! voice costs beside fundsp 0.23, in one run.
//!
//! Run: `cargo bench -p chronus-bench --features fundsp --bench voices` (the workspace's
//! `[profile.bench]`: fat LTO, one codegen unit, no target-cpu flag, for both libraries).
//!
//! Every note is held, started [`cb::SETTLE_S`] before the timing, so every voice is in
//! its sustain (envelopes neither idle nor moving) while it is timed; Chronus renders
//! through `Patch::process` on 64-frame blocks exactly as a worker does (the voice
//! allocator, per-voice graphs, smoothing, NaN guards, the sum). The fundsp side is its
//! cheapest equivalent of the same voice: a graph with fixed coefficients where Chronus's
//! parameters rest (`moog_hz` at the cutoff, `saw_hz`/`sine_hz` at the note's pitch, the
//! velocity a constant), built with `busi` and rendered through `AudioUnit::process`.
//!
//! Rows:
//! 1. the `keys` voice (note -> saw -> ladder -> adsr -> vca), 16 voices, nanoseconds per
//!    voice per sample;
//! 2. chain 2 (sine -> adsr -> biquad -> gain) as a 16-voice instrument beside fundsp's
//!    16 voices of it (chain 4 of `dsp_vs_fundsp`); the Chronus voice's `note` drives
//!    the sine's `fm` (its `freq` at 0);
//! 3. `keys` at 1,000 voices plus a shared stereo `reverb`: load (render time / real time);
//! 4. the largest number of `keys` voices (a multiple of 16) plus the reverb rendered
//!    under 70 % load, found by doubling and bisection on real renders.
//!
//! Rows 1 and 2 time the two sides in alternating rounds and report the medians, their
//! ratio, and the ratio of each side's fastest round ("fastest"); rows 3 and 4 report
//! the median load. Time is the rendering thread's
//! CPU time (`CLOCK_THREAD_CPUTIME_ID`), not the wall clock: on a shared machine the
//! time the thread waits for a core is not counted, so the load is what one core needs. Environment: `BENCH_ROUNDS`
//! (default 7) and `BENCH_ROUND_SECONDS` (default 0.2); `BENCH_STAT=min` reports the
//! fastest round instead of the median (to compare two builds on a busy machine);
//! arguments that are row numbers run only those rows.

mod common;

use std::time::Duration;

use chronus_bench::{self as cb, summary, time_cpu as time};
use chronus_dsp::modules::note::note_hz;
use chronus_dsp::patch::{InstrumentDesc, MAX_VOICES};
use common::{Chronus, Fundsp, Settings};
use fundsp::prelude32::*;

/// Parameter `param` of module `module` of the `keys` instrument, so the fundsp voice
/// reads the very values the Chronus voice plays.
fn keys_param(module: &str, param: &str) -> f32 {
    InstrumentDesc::keys()
        .modules
        .iter()
        .find(|m| m.id == module)
        .and_then(|m| m.params.get(param).copied())
        .unwrap_or_else(|| panic!("keys has no {module}.{param}"))
}

/// The `keys` voice in fundsp at `hz`: saw (at the saw's gain) through a Moog ladder at
/// the cutoff and resonance, times a held ADSR, times the velocity.
fn fundsp_keys_voice(hz: f32) -> An<impl AudioNode<Inputs = U0, Outputs = U1>> {
    let ms = |p: &str| keys_param("env", p) / 1000.0;
    let env = dc(1.0)
        >> adsr_live(
            ms("attack"),
            ms("decay"),
            keys_param("env", "sustain"),
            ms("release"),
        );
    ((saw_hz(hz) * keys_param("osc", "gain"))
        >> moog_hz(
            keys_param("filter", "cutoff"),
            keys_param("filter", "resonance"),
        ))
        * env
        * (cb::VELOCITY / 127.0)
}

/// Chain 2 in fundsp: sine times a held ADSR, through a 1 kHz lowpass, scaled.
fn fundsp_voice(hz: f32, gain: f32) -> An<impl AudioNode<Inputs = U0, Outputs = U1>> {
    let env = dc(1.0) >> adsr_live(cb::ATTACK_S, cb::DECAY_S, cb::SUSTAIN, cb::RELEASE_S);
    (sine_hz(hz) * env) >> (lowpass_hz(cb::CUTOFF_HZ, cb::BIQUAD_Q) * gain)
}

/// Times `chronus` and `fundsp` in alternating rounds after a warm-up; the medians in
/// nanoseconds per sample, and the ratio of the two sides' fastest rounds (the rounds
/// least disturbed by whatever else the machine runs).
fn side_by_side(
    chronus: &mut Chronus,
    fundsp: &mut Fundsp,
    rounds: usize,
    round: Duration,
) -> (f64, f64, f64) {
    time(chronus, round);
    time(fundsp, round);
    let (mut c, mut f) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        c.push(time(chronus, round));
        f.push(time(fundsp, round));
    }
    let fastest = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    let ratio = fastest(&c) / fastest(&f);
    (summary(&mut c), summary(&mut f), ratio)
}

/// The machine's load average over the last minute (`/proc/loadavg`), printed beside
/// the table: on a shared machine the numbers are only as quiet as the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "n/a".to_string())
}

/// `keys` with `voices` held notes plus the reverb: median load over `rounds` rounds.
fn keys_load(voices: usize, rounds: usize, round: Duration) -> f64 {
    let patch = cb::hold_notes(&cb::keys(voices, true), "keys", voices, cb::note_of)
        .unwrap_or_else(|e| panic!("keys with {voices} voices: {e}"));
    let mut chronus = Chronus::new(patch);
    time(&mut chronus, round);
    let mut loads: Vec<f64> = (0..rounds)
        .map(|_| time(&mut chronus, round) / cb::frame_ns())
        .collect();
    assert_eq!(
        chronus.patch.voices_sounding(),
        voices,
        "every voice sounds to the end"
    );
    summary(&mut loads)
}

/// The largest multiple of 16 voices of `keys` plus the reverb under [`cb::MAX_LOAD`]
/// (doubling from the target, then bisection), with its load.
fn most_voices(rounds: usize, round: Duration) -> (usize, f64) {
    const STEP: usize = 16;
    let measure = |n: usize| {
        let load = keys_load(n, rounds, round);
        eprintln!("  {n:>5} voices: load {load:.3}");
        load
    };
    let (mut lo, mut lo_load) = (0usize, 0.0f64);
    let mut hi = MAX_VOICES + STEP;
    let mut n = cb::VOICES_TARGET / STEP * STEP;
    while hi > MAX_VOICES && lo < MAX_VOICES {
        let load = measure(n);
        if load < cb::MAX_LOAD {
            (lo, lo_load) = (n, load);
            n = Ord::min(n * 2, MAX_VOICES);
        } else {
            hi = n;
        }
        if lo == n && n == MAX_VOICES {
            break;
        }
    }
    while hi - lo > STEP {
        let mid = (lo + hi) / 2 / STEP * STEP;
        let load = measure(mid);
        if load < cb::MAX_LOAD {
            (lo, lo_load) = (mid, load);
        } else {
            hi = mid;
        }
    }
    (lo, lo_load)
}

fn main() {
    let settings = Settings::from_env();
    let (rounds, round) = (settings.rounds, settings.round);
    let run = |row: usize| settings.runs(row);

    println!(
        "Voices, Chronus vs fundsp 0.23: {} Hz, {}-frame blocks, one core, every note held in its sustain; thread CPU time, median of {rounds} rounds of {:.2} s",
        cb::SAMPLE_RATE,
        cb::BLOCK,
        round.as_secs_f64()
    );
    println!("fundsp: its cheapest equivalent voice (fixed coefficients where Chronus's parameters rest), summed by busi");
    println!(
        "{:<46} {:>12} {:>12} {:>15} {:>9}",
        "row", "Chronus", "fundsp", "Chronus/fundsp", "fastest"
    );
    if run(1) {
        let v = cb::VOICES;
        let patch = cb::hold_notes(&cb::keys(v, false), "keys", v, cb::note_of)
            .expect("keys with 16 voices");
        let mut chronus = Chronus::new(patch);
        let mut fundsp = Fundsp::new(Box::new(busi::<U16, _, _>(|i| {
            fundsp_keys_voice(note_hz(f64::from(cb::note_of(i as usize))))
        })));
        let (c, f, fastest) = side_by_side(&mut chronus, &mut fundsp, rounds, round);
        assert_eq!(
            chronus.patch.voices_sounding(),
            v,
            "every voice sounds to the end"
        );
        let (c, f) = (c / v as f64, f / v as f64);
        println!(
            "{:<46} {:>12.2} {:>12.2} {:>15.2} {:>9.2}",
            "1 keys voice, 16 voices: ns/voice/sample",
            c,
            f,
            c / f,
            fastest
        );
    }
    if run(2) {
        let v = cb::VOICES;
        let patch = cb::hold_notes(&cb::poly_instrument(), "poly", v, |i| 57.0 + i as f32)
            .expect("the 16-voice instrument");
        let mut chronus = Chronus::new(patch);
        let mut fundsp = Fundsp::new(Box::new(busi::<U16, _, _>(|i| {
            fundsp_voice(cb::voice_hz(i as usize), cb::GAIN / v as f32)
        })));
        let (c, f, fastest) = side_by_side(&mut chronus, &mut fundsp, rounds, round);
        assert_eq!(
            chronus.patch.voices_sounding(),
            v,
            "every voice sounds to the end"
        );
        println!(
            "{:<46} {:>12.2} {:>12.2} {:>15.2} {:>9.2}",
            "2 16 voices sine>adsr>biquad>gain: ns/smp",
            c,
            f,
            c / f,
            fastest
        );
    }
    if run(3) {
        let load = keys_load(cb::VOICES_TARGET, rounds, round);
        println!(
            "{:<46} {:>12.3}",
            format!("3 keys x {} + reverb: load", cb::VOICES_TARGET),
            load
        );
    }
    if run(4) {
        let (n, load) = most_voices(rounds, round);
        println!(
            "{:<46} {:>12}",
            format!("4 most keys voices + reverb, load < {}", cb::MAX_LOAD),
            format!("{n} ({load:.3})")
        );
    }
    println!(
        "machine load average (1 min) at the end: {} on {} cores",
        load_average(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
}
