//! `chronus devices`: the sound systems this machine offers, and what `--output auto`
//! would pick and why (the same checks `serve` makes).

use std::process::ExitCode;

use chronus_supervisor::sinks::{device, jack, select};

/// Prints JACK's server (running or not: name, rate, period, playback ports), ALSA's
/// cards and output devices, and auto's choice.
pub fn run() -> anyhow::Result<ExitCode> {
    println!("JACK:");
    match jack::probe_server() {
        Ok(Some(info)) => {
            println!(
                "  server '{}' running at {} Hz, period {} frames",
                info.server, info.sample_rate, info.period_frames
            );
            if info.playback_ports.is_empty() {
                println!("  no physical playback ports");
            }
            for port in &info.playback_ports {
                println!("  playback port {port}");
            }
        }
        Ok(None) => println!(
            "  no server '{}' running (JACK_DEFAULT_SERVER selects another)",
            jack::server_name()
        ),
        Err(e) => println!("  {e:#}"),
    }
    println!("ALSA:");
    let cards = device::alsa_cards();
    if cards.is_empty() {
        // Listing ALSA's devices without a card only fills stderr with ALSA's complaints
        // and names PCMs (`null`, `default`) that no card paces.
        println!("  no sound card (/proc/asound/cards is empty)");
    } else {
        for card in &cards {
            println!("  card {card}");
        }
        for name in device::alsa_output_devices() {
            println!("  output device {name}");
        }
    }
    println!("--output auto would play to {}", select::explain_auto());
    Ok(ExitCode::SUCCESS)
}
