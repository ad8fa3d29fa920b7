//! The device sink: a real-time callback from ALSA, through `cpal` (JACK has a sink of its
//! own, [`super::jack`], through the `jack` crate).
//!
//! The callback is the clock: it asks for frames, we hand out blocks from
//! [`OutputCore::render_next`], keeping the rest of a block for the next callback when
//! the device's buffer is not a multiple of our block (the one block the output clock
//! fills, not an extra buffer). The callback allocates nothing, locks nothing and never
//! panics.
//!
//! `--output auto` picks, in order: a running JACK server, ALSA's default device when the
//! machine has a sound card, else the paced null sink. It never takes ALSA's `null` PCM
//! for a device: it opens, but nothing paces it, so it would call back as fast as it can.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};

use super::{Playing, Sink};
use crate::output::OutputCore;

/// ALSA's default output device.
#[derive(Debug, Clone, Copy)]
pub struct DeviceSink {
    /// Frames per second asked of the device.
    pub sample_rate: u32,
    /// The device buffer in frames (`--device-buffer`), or the host's default.
    pub buffer_frames: Option<u32>,
}

impl Sink for DeviceSink {
    fn describe(&self) -> String {
        format!("ALSA device at {} Hz", self.sample_rate)
    }

    /// The device's callback is the clock: `stop` and `realtime` are the sound system's
    /// business (dropping the returned [`Playing`] stops the stream).
    fn start(
        self: Box<Self>,
        core: OutputCore,
        _stop: Arc<AtomicBool>,
        _realtime: bool,
    ) -> anyhow::Result<Playing> {
        play(core, self.sample_rate, self.buffer_frames)
    }
}

/// ALSA's sound cards, one line of `/proc/asound/cards` each (for `chronus devices`).
pub fn alsa_cards() -> Vec<String> {
    std::fs::read_to_string(Path::new("/proc/asound/cards"))
        .map(|cards| {
            cards
                .lines()
                .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
                .map(|l| l.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The names of the output devices cpal's ALSA host lists, the default first (for
/// `chronus devices`; the unpaced `null` PCM is among them on a machine without a card).
pub fn alsa_output_devices() -> Vec<String> {
    let Ok(host) = cpal::host_from_id(cpal::HostId::Alsa) else {
        return Vec::new();
    };
    let default = host
        .default_output_device()
        .and_then(|d| d.name().ok())
        .map(|name| format!("{name} (default)"));
    let others = host
        .output_devices()
        .map(|devices| devices.filter_map(|d| d.name().ok()).collect::<Vec<_>>())
        .unwrap_or_default();
    default.into_iter().chain(others).collect()
}

/// Whether ALSA sees at least one sound card (so its default device is a real, clocked
/// one rather than the unpaced `null` PCM of a machine without sound hardware).
pub fn alsa_has_card() -> bool {
    std::fs::read_to_string(Path::new("/proc/asound/cards"))
        .map(|cards| {
            cards
                .lines()
                .any(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        })
        .unwrap_or(false)
}

/// Opens ALSA's default output device at `sample_rate`, stereo f32, starts playing from
/// `core`, and logs which device it opened.
///
/// # Errors
/// When ALSA sees no sound card, has no default output device, refuses the format, or
/// the stream cannot be built or started. The message says which and what to try.
fn play(core: OutputCore, sample_rate: u32, buffer_frames: Option<u32>) -> anyhow::Result<Playing> {
    if !alsa_has_card() {
        bail!(
            "ALSA sees no sound card (/proc/asound/cards is empty); use --output null or wav:PATH"
        );
    }
    let cpal_host =
        cpal::host_from_id(cpal::HostId::Alsa).context("the ALSA host is unavailable")?;
    let device = cpal_host
        .default_output_device()
        .ok_or_else(|| anyhow!("ALSA has no default output device"))?;
    let name = device
        .name()
        .unwrap_or_else(|_| "unnamed device".to_string());
    if name == "null" {
        bail!("the default ALSA device is the unpaced 'null' PCM; use --output null instead");
    }
    let config = cpal::StreamConfig {
        channels: 2,
        sample_rate: cpal::SampleRate(sample_rate),
        buffer_size: buffer_frames.map_or(cpal::BufferSize::Default, cpal::BufferSize::Fixed),
    };
    let shared = Arc::clone(core.shared());
    let block_len = shared.block_frames * 2;
    let mut feeder = CallbackFeeder {
        core,
        block: vec![0.0; block_len],
        used: block_len,
    };
    let stream = device
        .build_output_stream(
            &config,
            move |data: &mut [f32], _info: &cpal::OutputCallbackInfo| feeder.fill(data),
            |error| tracing::error!("output device: {error}"),
            None,
        )
        .with_context(|| {
            format!("cannot open {name} (ALSA) for 2 channels of f32 at {sample_rate} Hz")
        })?;
    stream
        .play()
        .with_context(|| format!("cannot start {name}"))?;
    tracing::info!("output: ALSA device '{name}' at {sample_rate} Hz");
    Ok(Playing::device(stream, shared))
}

/// Adapts the device's buffer sizes to whole blocks.
struct CallbackFeeder {
    core: OutputCore,
    block: Vec<f32>,
    /// Samples of `block` already handed out.
    used: usize,
}

impl CallbackFeeder {
    fn fill(&mut self, data: &mut [f32]) {
        chronus_realtime::mark_realtime_thread();
        // The first frame of `data`: the rest of the block begun last time, or the next.
        let pending = ((self.block.len() - self.used.min(self.block.len())) / 2) as u64;
        let first = self.core.next_frame().saturating_sub(pending);
        let now = self.core.shared().now_ns();
        self.core.handed_over(first, now);
        let mut written = 0;
        while written < data.len() {
            if self.used >= self.block.len() {
                self.core.render_next(&mut self.block);
                self.used = 0;
            }
            let n = (data.len() - written).min(self.block.len() - self.used);
            if let (Some(dst), Some(src)) = (
                data.get_mut(written..written + n),
                self.block.get(self.used..self.used + n),
            ) {
                dst.copy_from_slice(src);
            }
            written += n;
            self.used += n;
        }
    }
}
