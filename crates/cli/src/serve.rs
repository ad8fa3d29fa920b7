//! `chronus serve`: the synth server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chronus_supervisor::depth::DepthSetting;
use chronus_supervisor::{OutputChoice, ServeConfig, Supervisor};

/// Arguments of `chronus serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Address to serve OSC on, over UDP and TCP (same port). Loopback by default; any
    /// other address (0.0.0.0 for every interface) prints a warning unless --allow
    /// restricts the clients.
    #[arg(long, default_value = crate::DEFAULT_OSC, value_parser = crate::parse_osc)]
    osc: SocketAddr,
    /// Serve only clients in these networks (and loopback): CIDR like 192.168.1.0/24, or
    /// one address; repeatable, or comma-separated. Packets from others are ignored and
    /// counted (packets_refused_not_allowed), their TCP connections closed. Allow-listed
    /// clients may also get UDP replies larger than their requests (others are told to ask
    /// over TCP). Default: every client that reaches the address.
    #[arg(long, value_name = "CIDR", num_args = 1.., value_delimiter = ',')]
    allow: Vec<chronus_supervisor::exposure::Cidr>,
    /// Take /quit, /dumpOSC and the /debug/* fault injection from any allowed client, not
    /// only from loopback.
    #[arg(long)]
    allow_remote_quit: bool,
    /// Packets a second one client may send (a UDP source address, or a TCP connection),
    /// with a burst of as many; beyond, packets are dropped and counted
    /// (packets_rate_limited). 0: no limit.
    #[arg(long, value_name = "PACKETS", default_value_t = chronus_supervisor::exposure::DEFAULT_RATE_LIMIT)]
    rate_limit: u32,
    /// Largest OSC packet taken, in bytes (64 to 1048576); larger ones are dropped and
    /// counted (packets_too_large).
    #[arg(long, value_name = "BYTES", default_value_t = chronus_supervisor::exposure::DEFAULT_MAX_PACKET as u64,
          value_parser = clap::value_parser!(u64).range(chronus_supervisor::exposure::MIN_MAX_PACKET as u64..=chronus_supervisor::exposure::MAX_MAX_PACKET as u64))]
    max_packet: u64,
    /// How OSC packets are framed on TCP: size (OSC 1.0: a 32-bit big-endian size before
    /// each packet, as scsynth and liblo do) or slip (OSC 1.1: SLIP, double END). Replies
    /// are framed the same way.
    #[arg(long, value_name = "size|slip", default_value = "size")]
    tcp_framing: chronus_supervisor::framing::Framing,
    /// Where the sound goes: auto (JACK, then ALSA's default card, else null), jack, device
    /// (JACK or ALSA), null, or wav:PATH. JACK imposes its sample rate and period
    /// (--sample-rate is then only a wish); `chronus devices` shows what auto picks.
    #[arg(long, default_value = "auto")]
    output: OutputChoice,
    /// Also record what the output plays to a WAV file (wav:PATH), whatever the output;
    /// the file is valid at every instant (its header is rewritten every 250 ms). Repeatable.
    #[arg(long, value_name = "wav:PATH", value_parser = chronus_supervisor::config::parse_record)]
    record: Vec<PathBuf>,
    /// Frames per second.
    #[arg(long, default_value_t = 48_000, value_parser = clap::value_parser!(u32).range(8_000..=192_000))]
    sample_rate: u32,
    /// Frames per block.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(16..=4096))]
    block: u64,
    /// Control latency in blocks: how far ahead of what is heard the workers render.
    /// `auto` starts just above the output's period and adapts to the slack the workers
    /// leave (raised before a block would be missed, lowered slowly); a number (1 to 256)
    /// holds it (raised only to the output's period, with a log line).
    #[arg(long, default_value = "auto")]
    depth: DepthSetting,
    /// Seed for everything random in the patch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Patch to play: a file (TOML; with a / or ending in .toml) or a library name (a
    /// saved patch, else a preset such as `demo`); the built-in default patch when absent.
    #[arg(long, value_name = "FILE|NAME")]
    patch: Option<PathBuf>,
    /// Library directory: where /library/save writes and /library/load and --patch NAME
    /// look first (default $XDG_DATA_HOME/chronus/patches, else
    /// ~/.local/share/chronus/patches). Presets are built in.
    #[arg(long, value_name = "DIR")]
    library: Option<PathBuf>,
    /// Enable the /debug/* fault-injection addresses (for tests).
    #[arg(long)]
    allow_fault_injection: bool,
    /// Write every accepted command with the frame it was stamped for; each line reaches
    /// the file within a few ms of its stamping (a `kill -9` of the server loses none).
    #[arg(long)]
    command_log: Option<PathBuf>,
    /// Device buffer (period) in frames (default: the device's). For the null sink (and
    /// `--output wav:`), the frames played per wake-up: default 512 (with a fixed `--depth`, at most the depth and a divisor of it).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    device_buffer: Option<u32>,
    /// Seconds a spare may take to start and join before it is replaced.
    #[arg(long, default_value_t = 5.0)]
    join_timeout: f64,
    /// Turn off the master DC blocker after the patch.
    #[arg(long)]
    no_dc_blocker: bool,
    /// Turn off the master safety limiter after the patch.
    #[arg(long)]
    no_limiter: bool,
    /// Do not ask for real-time scheduling (SCHED_FIFO, locked memory) even where allowed.
    #[arg(long)]
    no_realtime: bool,
    /// Keep the restore point in FILE (written off the audio path at each refresh, every
    /// 2 s or 1000 commands, by temporary file, fsync and rename), so that a server
    /// started with --resume FILE after this one died goes on from it.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Start from the state FILE a server wrote with --state before it died: the music as
    /// it was, plus what its --command-log holds after it; appends to the --command-log
    /// and WAV files given. `--resume auto`: from the --state file if it exists, else
    /// from scratch (for a service manager that restarts the server).
    #[arg(long, value_name = "FILE|auto")]
    resume: Option<PathBuf>,
    /// Seconds a TCP connection may pass with no bytes either way before it is closed
    /// (hidden: for tests; the default suits everyone else).
    #[arg(long, default_value_t = 60.0, hide = true)]
    tcp_idle_timeout: f64,
}

/// Runs the server until /quit, SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _log = crate::init_logging("info");
    chronus_supervisor::log_limit::limit_panic_reports();
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install signal handlers")?;
    }
    let library = chronus_supervisor::library::Library::from_env(args.library.clone());
    let patch = crate::load_patch(args.patch.as_ref(), &library)?;
    // A library name is not a file: the server keeps its own copy for its workers.
    let patch_file = args.patch.as_ref().filter(|arg| {
        matches!(
            chronus_supervisor::library::PatchArg::of(arg.as_os_str()),
            chronus_supervisor::library::PatchArg::File(_)
        )
    });
    let mut config = ServeConfig {
        osc: args.osc,
        output: args.output,
        sample_rate: args.sample_rate,
        block_frames: args.block as usize,
        depth: args.depth,
        seed: args.seed,
        patch,
        patch_path: patch_file.cloned(),
        allow_fault_injection: args.allow_fault_injection,
        command_log: args.command_log,
        record: args.record,
        worker_exe: std::env::current_exe()
            .context("cannot find the chronus binary to start workers")?,
        device_buffer: args.device_buffer,
        device_period_frames: None,
        join_timeout: Duration::from_secs_f64(args.join_timeout.max(0.1)),
        realtime: !args.no_realtime,
        master: chronus_engine::MasterConfig {
            dc_blocker: !args.no_dc_blocker,
            limiter: !args.no_limiter,
        },
        tcp_idle_timeout: Duration::from_secs_f64(args.tcp_idle_timeout.clamp(0.1, 1e6)),
        exposure: chronus_supervisor::exposure::Exposure {
            allow: args.allow,
            allow_remote_quit: args.allow_remote_quit,
            rate_limit: args.rate_limit,
            max_packet: args.max_packet as usize,
        },
        tcp_framing: args.tcp_framing,
        state: args.state.clone(),
        resume: None,
        library,
    };
    if let Some(warning) = config.exposure.bind_warning(config.osc) {
        tracing::warn!("{warning}");
        eprintln!("chronus: warning: {warning}");
    }
    if let Some(path) = resume_from(args.resume.as_deref(), args.state.as_deref())? {
        resume(&mut config, &path)?;
    }
    let supervisor = Supervisor::start(config, stop)?;
    // As the output imposed it (JACK's sample rate).
    let config = supervisor.config().clone();
    let addr = supervisor.osc_addr();
    let depth = match config.depth {
        DepthSetting::Auto => format!(
            "depth auto (from {:.1} ms)",
            supervisor.shared().control_latency_ms()
        ),
        DepthSetting::Fixed(_) => format!(
            "control latency {:.1} ms",
            supervisor.shared().control_latency_ms()
        ),
    };
    println!(
        "chronus: serving OSC on udp {addr}; block {} frames at {} Hz, {depth}; {}",
        config.block_frames,
        config.sample_rate,
        match (&config.resume, &config.patch_path) {
            (Some(resume), _) => format!(
                "resumed at frame {} from the state of a server that died",
                resume.start_block * config.block_frames as u64
            ),
            (None, Some(p)) => format!("patch {}", p.display()),
            (None, None) if args.patch.is_some() => format!(
                "patch '{}' of the library",
                args.patch.as_deref().unwrap_or(Path::new("")).display()
            ),
            (None, None) => "default patch sine -> adsr -> filter -> gain, and instrument keys (16 voices of saw -> ladder -> adsr -> vca), mixed into out".to_string(),
        }
    );
    // The hint names a gate of the patch that is playing (the first one it declares).
    let gate = supervisor
        .table()
        .entries()
        .find(|entry| entry.address.starts_with("/gate/"))
        .map(|entry| entry.address.clone());
    match gate {
        Some(gate) => println!(
            "chronus: the gate is closed; make it sound with: chronus send --osc {addr} {gate} 1"
        ),
        None => println!(
            "chronus: this patch has no gate; change it live with chronus send --osc {addr} (chronus send --list shows the addresses)"
        ),
    }
    if let Some((instrument, _)) = supervisor.table().instruments().next() {
        println!(
            "chronus: play notes on instrument {instrument} with: chronus send --osc {addr} /note/on 60 100 (and /note/off 60)"
        );
    }
    supervisor.run()?;
    Ok(ExitCode::SUCCESS)
}

/// The state file to resume from: `--resume FILE`, or with `--resume auto` the `--state`
/// file if it exists.
fn resume_from(resume: Option<&Path>, state: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    match resume {
        None => Ok(None),
        Some(auto) if auto == Path::new("auto") => match state {
            Some(state) if state.exists() => Ok(Some(state.to_path_buf())),
            Some(state) => {
                eprintln!(
                    "chronus: no state at {} yet: starting from scratch",
                    state.display()
                );
                Ok(None)
            }
            None => anyhow::bail!("--resume auto resumes from the --state file: give --state FILE"),
        },
        Some(path) => Ok(Some(path.to_path_buf())),
    }
}

/// Makes `config` start from the state file at `path` (and what the command log holds
/// after it): its patch and stream settings win over the command line's, with a warning
/// where they differ.
fn resume(config: &mut ServeConfig, path: &Path) -> anyhow::Result<()> {
    let saved = chronus_supervisor::state_file::SavedState::read(path)?;
    let engine = saved.config;
    let given = (
        config.sample_rate,
        config.block_frames,
        config.seed,
        config.master,
    );
    let stored = (
        engine.sample_rate,
        engine.block_frames,
        engine.seed,
        engine.master,
    );
    if given != stored {
        eprintln!(
            "chronus: resuming with the state's settings ({} Hz, {}-frame blocks, seed {}), not the command line's",
            engine.sample_rate, engine.block_frames, engine.seed
        );
    }
    if config.patch_path.is_some() {
        eprintln!("chronus: resuming with the state's patch; --patch is not read");
    }
    if config.command_log.is_none() {
        eprintln!(
            "chronus: resuming without --command-log: what was sent after the state was written is lost"
        );
    }
    config.patch_path = None;
    config.sample_rate = engine.sample_rate;
    config.block_frames = engine.block_frames;
    config.seed = engine.seed;
    config.master = engine.master;
    let resume = chronus_supervisor::resume::Resume::prepare(
        saved,
        config.command_log.as_deref(),
        &config.recordings(),
    )?;
    config.patch = resume.patch.clone();
    config.resume = Some(resume);
    Ok(())
}
