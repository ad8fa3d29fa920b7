//! What both benchmarks render through: a Chronus patch and a fundsp graph, each behind
//! [`Render`], block by block as their engines render.

use std::hint::black_box;
use std::time::Duration;

use chronus_bench::{self as cb, env_or, Render};
use fundsp::prelude32::*;

/// Chronus: a compiled patch and its stereo output buffers.
pub struct Chronus {
    /// The patch, compiled and playing.
    pub patch: chronus_dsp::Patch,
    left: Vec<f32>,
    right: Vec<f32>,
}

impl Chronus {
    /// Wraps `patch` with two [`cb::BLOCK`]-frame output buffers.
    pub fn new(patch: chronus_dsp::Patch) -> Self {
        Chronus {
            patch,
            left: vec![0.0; cb::BLOCK],
            right: vec![0.0; cb::BLOCK],
        }
    }
}

impl Render for Chronus {
    fn block(&mut self) {
        self.patch.process(&mut self.left, &mut self.right);
        black_box(&mut self.left);
        black_box(&mut self.right);
    }
}

/// fundsp: a graph behind its block interface, with an output buffer per channel.
pub struct Fundsp {
    unit: Box<dyn AudioUnit>,
    input: BufferVec,
    output: BufferVec,
}

impl Fundsp {
    /// Prepares `unit` at the benchmark's sample rate, with its buffers.
    pub fn new(mut unit: Box<dyn AudioUnit>) -> Self {
        unit.set_sample_rate(f64::from(cb::SAMPLE_RATE));
        unit.allocate();
        let input = BufferVec::new(unit.inputs());
        let output = BufferVec::new(unit.outputs());
        Fundsp {
            unit,
            input,
            output,
        }
    }
}

impl Render for Fundsp {
    fn block(&mut self) {
        self.unit.process(
            cb::BLOCK,
            &self.input.buffer_ref(),
            &mut self.output.buffer_mut(),
        );
        black_box(&mut self.output);
    }
}

/// What a run was asked for: rounds per measurement (`BENCH_ROUNDS`, default 7, at least
/// 1), the length of a round (`BENCH_ROUND_SECONDS`, default 0.2 s), and the rows to run
/// (the command line's numbers; none: every row).
pub struct Settings {
    /// Timed rounds per measurement.
    pub rounds: usize,
    /// Length of one round.
    pub round: Duration,
    only: Vec<usize>,
}

impl Settings {
    /// Reads the environment and the command line.
    pub fn from_env() -> Settings {
        Settings {
            rounds: Ord::max(env_or("BENCH_ROUNDS", 7), 1),
            round: Duration::from_secs_f64(env_or("BENCH_ROUND_SECONDS", 0.2)),
            only: std::env::args()
                .skip(1)
                .filter_map(|a| a.parse().ok())
                .collect(),
        }
    }

    /// Whether row `row` (counted from 1) is to run.
    pub fn runs(&self, row: usize) -> bool {
        self.only.is_empty() || self.only.contains(&row)
    }
}
