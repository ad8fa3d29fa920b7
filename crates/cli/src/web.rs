//! `chronus web`: the browser UI, a separate process that plays the server over OSC
//! (see the `chronus-web` crate).

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::Args;

/// `chronus web` arguments.
#[derive(Args)]
pub struct WebArgs {
    /// The server's OSC address (spoken over TCP, on the same port as UDP).
    #[arg(long, default_value = crate::DEFAULT_OSC, value_parser = crate::parse_osc)]
    osc: SocketAddr,
    /// Where to serve the page: a loopback address only (127.0.0.1, [::1]); port 0 picks
    /// a free port. The URL to open, with its per-launch token, is printed on stdout.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = crate::parse_osc)]
    http: SocketAddr,
    /// Also stream the server's output to the page (its "listen" button): the `/notify
    /// audio` topic, played by the browser from a small jitter buffer. Off by default: it
    /// costs the server about 400 KB/s of copying and sending at 48 kHz.
    #[arg(long)]
    audio: bool,
}

/// Serves the page until stopped.
///
/// # Errors
/// A non-loopback `--http`, an address in use, no `/dev/urandom`.
pub fn run(args: WebArgs) -> anyhow::Result<ExitCode> {
    let _log = crate::init_logging("info");
    chronus_web::run(chronus_web::WebConfig {
        osc: args.osc,
        http: args.http,
        audio: args.audio,
    })?;
    Ok(ExitCode::SUCCESS)
}
