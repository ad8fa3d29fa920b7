//! The `chronus` binary: parses the command line and hands over to the crates.
//!
//! `serve` runs the server (supervisor, output, OSC); `send`, `status` and `midi` are OSC clients;
//! `render` runs the engine offline; `devices` lists the sound systems; `bench` measures failover; `worker` (hidden) is the
//! entry point of the re-executed worker processes.

mod bench;
mod client;
mod devices;
mod latency;
mod logging;
mod midi;
mod modules;
mod render;
mod serve;
mod shell;
mod soak;
mod watch;
mod web;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
pub use logging::init_logging;

/// Chronus: a fault-tolerant real-time modular synthesizer server, played over OSC.
#[derive(Parser)]
#[command(name = "chronus", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the synth server: two worker processes in lockstep, OSC on UDP, audio out.
    Serve(serve::ServeArgs),
    /// Send one OSC message (typed and checked against the server's own address table),
    /// wait for the server's answer.
    Send(client::SendArgs),
    /// Show how the server is doing: workers, failovers, latency, depth, load, voices
    /// (`--json`: every metric; `--watch`: a live screen fed by the server's pushes).
    Status(client::StatusArgs),
    /// Play the server from MIDI: ALSA and JACK MIDI inputs, MPE, each event sent as a
    /// timetagged OSC bundle (its time + the server's control latency + 2 ms).
    Midi(midi::MidiArgs),
    /// Render a patch offline, as fast as possible, with the same engine.
    Render(render::RenderArgs),
    /// Print every module type with its ports and parameters (Markdown).
    Modules,
    /// List the sound systems (JACK: server, rate, period, playback ports; ALSA: cards and
    /// devices) and say what `serve --output auto` would pick and why.
    Devices,
    /// Measure on this machine: failover times over many kills, or a long soak of fast
    /// control while workers are killed (`soak`).
    Bench(bench::BenchArgs),
    /// Jam with a running server from a terminal: notes, chords, patterns, tempo, ramps and
    /// plain phrases (`brighter`), with completion and history; from a pipe, one answer a line.
    Shell(shell::ShellArgs),
    /// Serve a page that plays the server in a browser: sliders, keyboard, meters, scope,
    /// spectrum, workers and failovers (loopback only; open the URL with the token it prints).
    Web(web::WebArgs),
    /// A worker process (started by `serve`; not for direct use).
    #[command(hide = true)]
    Worker(worker::WorkerCli),
}

/// The default OSC address of the server.
pub const DEFAULT_OSC: &str = "127.0.0.1:5005";

/// Parses `--osc` values.
pub fn parse_osc(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not an address like 127.0.0.1:5005"))
}

/// Loads `--patch FILE|NAME`: a file when it has a `/` or ends in `.toml`, else a patch
/// of `library` (saved, or a preset); the built-in default patch when absent.
///
/// # Errors
/// A file that cannot be read or parsed; an unknown name (the reason lists the names
/// there are).
pub fn load_patch(
    arg: Option<&PathBuf>,
    library: &chronus_supervisor::library::Library,
) -> anyhow::Result<chronus_dsp::PatchDesc> {
    use chronus_supervisor::library::PatchArg;
    let Some(arg) = arg else {
        return Ok(chronus_dsp::PatchDesc::default_patch());
    };
    match PatchArg::of(arg.as_os_str()) {
        PatchArg::File(path) => load_patch_file(Some(path)),
        PatchArg::Name(name) => {
            let (text, kind) = library.read(name).map_err(|reason| {
                anyhow::anyhow!(
                    "--patch {name}: {reason} (a patch file is named with a / or .toml)"
                )
            })?;
            chronus_dsp::PatchDesc::from_toml_str(&text)
                .map_err(|e| anyhow::anyhow!("{} patch '{name}': {e}", kind.name()))
        }
    }
}

/// Loads the patch file at `path`, or the built-in default patch.
///
/// # Errors
/// A file that cannot be read or parsed.
pub fn load_patch_file(path: Option<&std::path::Path>) -> anyhow::Result<chronus_dsp::PatchDesc> {
    use anyhow::Context;
    match path {
        None => Ok(chronus_dsp::PatchDesc::default_patch()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read patch file {}", path.display()))?;
            chronus_dsp::PatchDesc::from_toml_str(&text)
                .with_context(|| format!("patch file {}", path.display()))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Commands::Serve(args) => serve::run(args),
        Commands::Send(args) => client::send(args),
        Commands::Status(args) if args.watch => watch::run(args.osc),
        Commands::Status(args) => client::status(args),
        Commands::Midi(args) => midi::run(args),
        Commands::Render(args) => render::run(args),
        Commands::Bench(args) => bench::run(args),
        Commands::Web(args) => web::run(args),
        Commands::Modules => modules::run(),
        Commands::Devices => devices::run(),
        Commands::Worker(args) => worker::run(args),
        Commands::Shell(args) => shell::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("chronus: {error:#}");
            ExitCode::FAILURE
        }
    }
}
