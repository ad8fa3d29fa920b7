//! Output selection: which sink `--output` plays to, opened and started.
//!
//! `--output auto` tries, in DESIGN.md's order, a running JACK server, then ALSA's default
//! device if the machine has a sound card, then the null sink. JACK imposes its sample
//! rate and period, so its client is opened before the workers start ([`prepare`]) and
//! the engine runs at JACK's rate.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::device::{self, DeviceSink};
use super::jack::{self as jack_sink, JackSink};
use super::{null, paced, Playing, Sink};
use crate::config::{OutputChoice, ServeConfig};
use crate::output::{OutputCore, OutputShared};

/// What is opened of the output before the workers start: JACK's client, whose server
/// decides the sample rate and period.
#[derive(Default)]
pub struct Prepared {
    /// The JACK client `chronus`, when the output will be JACK.
    jack: Option<::jack::Client>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("jack", &self.jack.is_some())
            .finish()
    }
}

/// Opens the JACK client early when the output will be JACK (`--output jack`, or `auto`
/// and `device` with a JACK server running), and makes `config` follow the server: its
/// sample rate (said in the log when it differs from the one asked for; a resumed state
/// keeps its own, with an error) and its period (`config.device_period_frames`).
///
/// # Errors
/// `--output jack` without a JACK server, or with `chronus` already taken on it.
pub fn prepare(config: &mut ServeConfig) -> anyhow::Result<Prepared> {
    let wants_jack = match config.output {
        OutputChoice::Jack => true,
        OutputChoice::Auto | OutputChoice::Device => jack_sink::server_running(),
        OutputChoice::Null | OutputChoice::Wav(_) => false,
    };
    if !wants_jack {
        return Ok(Prepared::default());
    }
    let (client, info) = match jack_sink::open() {
        Ok(opened) => opened,
        Err(e) if config.output != OutputChoice::Jack => {
            tracing::warn!(
                "output {:?}: JACK did not open ({e:#}); trying the next",
                config.output
            );
            return Ok(Prepared::default());
        }
        Err(e) => return Err(e),
    };
    config.device_period_frames = Some(info.period_frames);
    if info.sample_rate != config.sample_rate {
        if config.resume.is_some() {
            tracing::error!(
                "JACK runs at {} Hz, but the resumed state at {} Hz: playing at {} Hz, at the wrong speed (restart JACK at {} Hz)",
                info.sample_rate,
                config.sample_rate,
                config.sample_rate,
                config.sample_rate
            );
        } else {
            tracing::info!(
                "JACK runs at {} Hz, period {} frames: playing at {} Hz",
                info.sample_rate,
                info.period_frames,
                info.sample_rate
            );
            config.sample_rate = info.sample_rate;
        }
    } else {
        tracing::info!(
            "JACK runs at {} Hz, period {} frames",
            info.sample_rate,
            info.period_frames
        );
    }
    Ok(Prepared { jack: Some(client) })
}

/// What `--output auto` picks on this machine and why, in a sentence (for `chronus
/// devices`; the choice itself is made by [`start`]).
pub fn explain_auto() -> String {
    if jack_sink::server_running() {
        format!(
            "JACK: a JACK server ('{}') is running, and auto prefers JACK",
            jack_sink::server_name()
        )
    } else if device::alsa_has_card() {
        "ALSA's default device: no JACK server runs, and ALSA sees a sound card".to_string()
    } else {
        "the null sink: no JACK server runs and ALSA sees no sound card (its 'null' PCM is not a clocked device)".to_string()
    }
}

/// Opens the output `config.output` asks for and starts it playing from a new output
/// clock over `shared`. JACK plays through the client [`prepare`] opened; `--output auto`
/// then tries ALSA's default device if the machine has a sound card, then the null sink;
/// a device that fails to open hands over to the next (the clock has not started, so a
/// fresh one is equivalent).
///
/// # Errors
/// When the chosen output cannot be opened (auto always ends with the null sink).
pub fn start(
    config: &ServeConfig,
    prepared: Prepared,
    shared: &Arc<OutputShared>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Playing> {
    let core = || OutputCore::new(Arc::clone(shared));
    let device = || {
        Box::new(DeviceSink {
            sample_rate: config.sample_rate,
            buffer_frames: config.device_buffer,
        })
    };
    let null_period =
        || paced::period_blocks(config.device_buffer, config.block_frames, config.depth);
    let null = || {
        Box::new(null::NullSink {
            period_blocks: null_period(),
        })
    };
    let jack = |client| {
        Box::new(JackSink {
            client,
            engine_rate: config.sample_rate,
            fallback_period_blocks: paced::period_blocks(None, config.block_frames, config.depth),
        })
    };
    let realtime = config.realtime;
    let sink: Box<dyn Sink> = match (&config.output, prepared.jack) {
        // A WAV file is recorded (see `ServeConfig::recordings`) from the null sink's clock.
        (OutputChoice::Null | OutputChoice::Wav(_), _) => null(),
        (_, Some(client)) => jack(client),
        (OutputChoice::Jack, None) => {
            let (client, _) = jack_sink::open()?;
            jack(client)
        }
        (OutputChoice::Device, None) => device(),
        (OutputChoice::Auto, None) => {
            if device::alsa_has_card() {
                match device().start(core(), Arc::clone(stop), realtime) {
                    Ok(playing) => return Ok(playing),
                    Err(e) => {
                        tracing::warn!("output auto: ALSA did not open ({e:#}); trying the next")
                    }
                }
            }
            tracing::info!(
                "output auto: no usable JACK server or ALSA sound card; playing to the null sink"
            );
            null()
        }
    };
    sink.start(core(), Arc::clone(stop), realtime)
}
