//! `chronus render`: the engine offline, as fast as it goes, into a WAV file.
//!
//! Same patch compiler, same engine, same command stamping as a served stream, so a
//! command log from `serve --command-log` renders to the very samples that were served.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chronus_engine::{Engine, EngineConfig, StampedCommand};

/// Arguments of `chronus render`.
#[derive(clap::Args)]
pub struct RenderArgs {
    /// Length of the render in seconds.
    #[arg(long)]
    seconds: f64,
    /// Commands file: lines `<seconds> <address> <args…>`.
    #[arg(long, conflicts_with = "replay")]
    commands: Option<PathBuf>,
    /// Command log written by `serve --command-log`: replays the exact stamped frames.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Patch to render: a file (with a / or ending in .toml) or a library name (a saved
    /// patch, else a preset such as `demo`); the built-in default patch when absent.
    #[arg(long, value_name = "FILE|NAME")]
    patch: Option<PathBuf>,
    /// Library directory the patch name is looked up in (default
    /// $XDG_DATA_HOME/chronus/patches, else ~/.local/share/chronus/patches).
    #[arg(long, value_name = "DIR")]
    library: Option<PathBuf>,
    /// Frames per block.
    #[arg(long, default_value_t = 64)]
    block: usize,
    /// Frames per second (the range `serve` accepts).
    #[arg(long, default_value_t = 48_000, value_parser = clap::value_parser!(u32).range(8_000..=192_000))]
    sample_rate: u32,
    /// Seed for everything random in the patch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Turn off the master DC blocker after the patch.
    #[arg(long)]
    no_dc_blocker: bool,
    /// Turn off the master safety limiter after the patch.
    #[arg(long)]
    no_limiter: bool,
    /// Output WAV file (32-bit float, stereo).
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
}

/// Renders and writes the WAV.
pub fn run(args: RenderArgs) -> anyhow::Result<ExitCode> {
    if !(args.seconds.is_finite() && args.seconds > 0.0 && args.seconds <= 24.0 * 3600.0) {
        bail!(
            "--seconds must be a positive number of seconds (at most a day), got {}",
            args.seconds
        );
    }
    if !(16..=4096).contains(&args.block) {
        bail!(
            "--block must be between 16 and 4096 frames, got {}",
            args.block
        );
    }
    let library = chronus_supervisor::library::Library::from_env(args.library.clone());
    let patch = crate::load_patch(args.patch.as_ref(), &library)?;
    let table = crate::client::table_of(&patch)?;
    let mut config = EngineConfig::new(args.sample_rate, args.block, args.seed);
    config.master = chronus_engine::MasterConfig {
        dc_blocker: !args.no_dc_blocker,
        limiter: !args.no_limiter,
    };
    let mut engine = Engine::new(&patch, config, 0).context("the patch does not compile")?;
    let mut commands: Vec<StampedCommand> = Vec::new();
    // Patch switches from a command log: (frame, seq, TOML text).
    let mut patches: Vec<(u64, u64, String, chronus_engine::SwitchAt)> = Vec::new();
    if let Some(path) = &args.commands {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut timed = chronus_protocol::parse_command_file(&table, &text)
            .with_context(|| format!("commands file {}", path.display()))?;
        // A score is played in time order (equal times in file order): sequence numbers
        // follow it, as the server's stamping would.
        timed.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        for (i, c) in timed.into_iter().enumerate() {
            commands.push(StampedCommand {
                seq: i as u64 + 1,
                frame: (c.seconds * f64::from(args.sample_rate)).round() as u64,
                command: c.command,
            });
        }
    }
    if let Some(path) = &args.replay {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let logged = chronus_protocol::parse_command_log(&table, &text)
            .with_context(|| format!("command log {}", path.display()))?;
        for entry in logged {
            match entry {
                chronus_protocol::LogEntry::Command(c) => commands.push(StampedCommand {
                    seq: c.seq,
                    frame: c.frame,
                    command: c.command,
                }),
                chronus_protocol::LogEntry::Patch {
                    frame,
                    seq,
                    toml,
                    at,
                } => patches.push((frame, seq, toml, at)),
            }
        }
    }
    // A patch switch travels as its text then a stamped switch command, exactly as the
    // server sends it to its workers.
    let mut texts = std::collections::BTreeMap::new();
    for (i, (frame, seq, toml, at)) in patches.into_iter().enumerate() {
        let version = i as u32 + 2;
        commands.push(StampedCommand {
            seq,
            frame,
            command: chronus_engine::Command::SwitchPatch {
                version,
                len: toml.len() as u32,
                at,
            },
        });
        texts.insert(version, toml);
    }
    let mut feed = Feed::new(commands);

    let total_frames = (args.seconds * f64::from(args.sample_rate)).round() as u64;
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: args.sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(&args.output, spec)
        .with_context(|| format!("cannot create {}", args.output.display()))?;
    let mut block = vec![0.0f32; args.block * 2];
    let mut written = 0u64;
    let started = std::time::Instant::now();
    while written < total_frames {
        let block_end = (engine.next_block() + 1) * args.block as u64;
        for c in feed.due_before(block_end) {
            if let chronus_engine::Command::SwitchPatch { version, .. } = c.command {
                if let Some(text) = texts.remove(&version) {
                    for chunk in chronus_engine::PatchChunk::split(version, text.as_bytes()) {
                        engine.receive_chunk(&chunk);
                    }
                }
            }
            engine
                .receive(c)
                .map_err(|e| anyhow::anyhow!("command at frame {}: {e}", c.frame))?;
        }
        engine.render_block(&mut block);
        while engine.take_retired().is_some() {}
        let frames = (total_frames - written).min(args.block as u64) as usize;
        for &sample in block.iter().take(frames * 2) {
            writer.write_sample(sample)?;
        }
        written += frames as u64;
    }
    writer.finalize()?;
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "chronus: rendered {:.2} s to {} in {:.3} s ({:.0}x real time)",
        args.seconds,
        args.output.display(),
        elapsed,
        args.seconds / elapsed.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

/// Hands stamped commands to an engine as a worker receives them: in stamping (seq) order,
/// each before the block holding its frame is rendered. So a command timed after a patch
/// switch stamped later is waiting when the switch applies, and is dropped as stale
/// exactly as in the server; and the engine holds no more waiting than a worker would.
struct Feed {
    /// The commands in seq order.
    by_seq: Vec<StampedCommand>,
    /// Indices into `by_seq`, by frame.
    by_frame: Vec<usize>,
    /// Next index of `by_seq` to hand over.
    next: usize,
    /// Next index of `by_frame` not yet known to be handed over.
    due: usize,
}

impl Feed {
    fn new(mut commands: Vec<StampedCommand>) -> Feed {
        commands.sort_by_key(|c| c.seq);
        let mut by_frame: Vec<usize> = (0..commands.len()).collect();
        by_frame.sort_by_key(|&i| (commands[i].frame, commands[i].seq));
        Feed {
            by_seq: commands,
            by_frame,
            next: 0,
            due: 0,
        }
    }

    /// The commands to hand over before rendering up to `end` (a frame): every command up
    /// to the last (in seq order) of those due before `end`.
    fn due_before(&mut self, end: u64) -> Vec<StampedCommand> {
        let mut through = self.next;
        while let Some(&i) = self.by_frame.get(self.due) {
            if self.by_seq[i].frame >= end {
                break;
            }
            through = through.max(i + 1);
            self.due += 1;
        }
        let start = self.next;
        self.next = through.max(start);
        self.by_seq[start..self.next].to_vec()
    }
}
