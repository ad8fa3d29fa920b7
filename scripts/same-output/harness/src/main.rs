//! The same-output harness: renders one corpus case through the engine exactly as
//! `chronus render` does, but moves the whole engine into a fresh one through a snapshot
//! in the middle of the render (as a joining spare worker does), and writes the raw
//! samples so that two builds can be compared bit for bit.
//!
//! It uses only the crates' long-standing public API (see the brief in
//! `scripts/same-output.sh`), so the same source compiles against an old revision and HEAD.
//!
//! Usage: `same-output-harness PATCH|default COMMANDS SECONDS SNAPSHOT_SECONDS OUT.f32`.
//! Prints the RMS of the render; exits non-zero on any error.

use std::io::Write;
use std::process::ExitCode;

use chronus_dsp::{Patch, PatchDesc};
use chronus_engine::{Engine, EngineConfig, StampedCommand};
use chronus_protocol::{parse_command_file, AddressTable};

const SAMPLE_RATE: u32 = 48_000;
const BLOCK: usize = 64;
const SEED: u64 = 7;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("same-output-harness: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [patch, commands, seconds, snapshot_at, out] = args.as_slice() else {
        return Err("usage: PATCH|default COMMANDS SECONDS SNAPSHOT_SECONDS OUT.f32".into());
    };
    let desc = if patch == "default" {
        PatchDesc::default_patch()
    } else {
        let text = std::fs::read_to_string(patch).map_err(|e| format!("{patch}: {e}"))?;
        PatchDesc::from_toml_str(&text).map_err(|e| format!("{patch}: {e}"))?
    };
    let compiled = Patch::compile(&desc, SAMPLE_RATE as f32, BLOCK, SEED)
        .map_err(|e| format!("{patch}: {e}"))?;
    let modules: Vec<_> = (0..compiled.node_count() as u16)
        .filter_map(|n| Some((compiled.node_id(n)?.to_string(), compiled.node_spec(n)?)))
        .collect();
    let table = AddressTable::new(&modules, false);
    let text = std::fs::read_to_string(commands).map_err(|e| format!("{commands}: {e}"))?;
    let timed = parse_command_file(&table, &text).map_err(|e| format!("{commands}: {e}"))?;
    let stamped: Vec<StampedCommand> = timed
        .into_iter()
        .enumerate()
        .map(|(i, c)| StampedCommand {
            seq: i as u64 + 1,
            frame: (c.seconds * f64::from(SAMPLE_RATE)).round() as u64,
            command: c.command,
        })
        .collect();
    let seconds: f64 = seconds.parse().map_err(|e| format!("seconds: {e}"))?;
    let snapshot_at: f64 = snapshot_at.parse().map_err(|e| format!("snapshot: {e}"))?;
    let total_blocks = (seconds * f64::from(SAMPLE_RATE) / BLOCK as f64).ceil() as u64;
    let snapshot_block = (snapshot_at * f64::from(SAMPLE_RATE) / BLOCK as f64).round() as u64;

    let config = EngineConfig::new(SAMPLE_RATE, BLOCK, SEED);
    let mut engine = Engine::new(&desc, config, 0).map_err(|e| e.to_string())?;
    let mut next = stamped.into_iter().peekable();
    let mut block = vec![0.0f32; BLOCK * 2];
    let mut samples: Vec<u8> = Vec::with_capacity(total_blocks as usize * BLOCK * 8);
    let (mut sum_squares, mut count) = (0.0f64, 0u64);
    let mut restored = false;
    while engine.next_block() < total_blocks {
        if engine.next_block() == snapshot_block {
            // A spare joining the lockstep: everything moves through the snapshot bytes.
            let mut bytes = vec![0u8; engine.snapshot_len()];
            let written = engine.save_snapshot(&mut bytes);
            if written == 0 {
                return Err("the snapshot did not fit".into());
            }
            let mut spare = Engine::new(&PatchDesc::default_patch(), config, 0)
                .map_err(|e| e.to_string())?;
            spare
                .load_snapshot(&bytes[..written])
                .map_err(|e| format!("restore: {e}"))?;
            engine = spare;
            restored = true;
        }
        let block_end = (engine.next_block() + 1) * BLOCK as u64;
        while let Some(c) = next.next_if(|c| c.frame < block_end) {
            engine
                .receive(c)
                .map_err(|e| format!("command at frame {}: {e}", c.frame))?;
        }
        engine.render_block(&mut block);
        while engine.take_retired().is_some() {}
        for &s in &block {
            sum_squares += f64::from(s) * f64::from(s);
            count += 1;
            samples.extend_from_slice(&s.to_le_bytes());
        }
    }
    if !restored {
        return Err("the snapshot moment is past the end of the render".into());
    }
    let mut file = std::fs::File::create(out).map_err(|e| format!("{out}: {e}"))?;
    file.write_all(&samples).map_err(|e| format!("{out}: {e}"))?;
    println!("{:.6}", (sum_squares / count.max(1) as f64).sqrt());
    Ok(())
}
