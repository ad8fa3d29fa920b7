//! Output selection: which sink `--output` plays to, opened and started.
//!
//! `--output auto` tries, in DESIGN.md's order, a running JACK server, then ALSA's default
//! device if the machine has a sound card, then the null sink.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::device::{self, DeviceHost, DeviceSink};
use super::{null, paced, Playing, Sink};
use crate::config::{OutputChoice, ServeConfig};
use crate::output::{OutputCore, OutputShared};

/// Opens the output `config.output` asks for and starts it playing from a new output
/// clock over `shared`. `--output auto` tries, in DESIGN.md's order, a running JACK
/// server, then ALSA's default device if the machine has a sound card, then the null sink;
/// a device that fails to open hands over to the next (the clock has not started, so a
/// fresh one is equivalent).
///
/// # Errors
/// When the chosen output cannot be opened (auto always ends with the null sink).
pub fn start(
    config: &ServeConfig,
    shared: &Arc<OutputShared>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Playing> {
    let core = || OutputCore::new(Arc::clone(shared));
    let device = |host| {
        Box::new(DeviceSink {
            host,
            sample_rate: config.sample_rate,
            buffer_frames: config.device_buffer,
        })
    };
    let null = || {
        Box::new(null::NullSink {
            period_blocks: paced::period_blocks(
                config.device_buffer,
                config.block_frames,
                config.depth,
            ),
        })
    };
    let realtime = config.realtime;
    let sink: Box<dyn Sink> = match &config.output {
        // A WAV file is recorded (see `ServeConfig::recordings`) from the null sink's clock.
        OutputChoice::Null | OutputChoice::Wav(_) => null(),
        OutputChoice::Device => {
            if device::jack_server_running() {
                device(DeviceHost::Jack)
            } else {
                device(DeviceHost::Alsa)
            }
        }
        OutputChoice::Auto => {
            let mut candidates = Vec::new();
            if device::jack_server_running() {
                candidates.push(DeviceHost::Jack);
            }
            if device::alsa_has_card() {
                candidates.push(DeviceHost::Alsa);
            }
            for host in candidates {
                match device(host).start(core(), Arc::clone(stop), realtime) {
                    Ok(playing) => return Ok(playing),
                    Err(e) => tracing::warn!(
                        "output auto: {host:?} did not open ({e:#}); trying the next"
                    ),
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
