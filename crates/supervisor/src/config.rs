//! Settings of a `chronus serve` run.

use std::net::SocketAddr;
use std::path::PathBuf;

use chronus_dsp::PatchDesc;

use crate::depth::DepthSetting;

/// Where played audio goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputChoice {
    /// A running JACK server, else ALSA's default device if there is a sound card, else null.
    Auto,
    /// The default sound device (JACK if running, else ALSA); an error if there is none.
    Device,
    /// A running JACK server (as the client `chronus`); an error if there is none.
    Jack,
    /// Nowhere, paced in real time.
    Null,
    /// A 32-bit float stereo WAV file, paced in real time: the null sink plus a recording.
    Wav(PathBuf),
}

impl std::str::FromStr for OutputChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(OutputChoice::Auto),
            "device" => Ok(OutputChoice::Device),
            "jack" => Ok(OutputChoice::Jack),
            "null" => Ok(OutputChoice::Null),
            _ => match s.strip_prefix("wav:") {
                Some(path) if !path.is_empty() => Ok(OutputChoice::Wav(PathBuf::from(path))),
                _ => Err(format!(
                    "unknown output '{s}': use auto, jack, device, null or wav:PATH"
                )),
            },
        }
    }
}

/// Parses `--record`'s value: `wav:PATH` (the one format recordings have).
///
/// # Errors
/// Anything else, with what to write instead.
pub fn parse_record(s: &str) -> Result<PathBuf, String> {
    match s.strip_prefix("wav:") {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Err(format!("unknown recording '{s}': use wav:PATH")),
    }
}

/// Everything `chronus serve` needs to run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// UDP address to serve OSC on.
    pub osc: SocketAddr,
    /// Where the audio goes.
    pub output: OutputChoice,
    /// Frames per second.
    pub sample_rate: u32,
    /// Frames per block.
    pub block_frames: usize,
    /// Control latency in blocks, how far ahead of the played block workers may render:
    /// adapted (`auto`) or held (see [`crate::depth`]).
    pub depth: DepthSetting,
    /// Seed for everything random in the patch.
    pub seed: u64,
    /// The patch both workers run.
    pub patch: PatchDesc,
    /// The patch file, handed to workers (`None` = the built-in default patch).
    pub patch_path: Option<PathBuf>,
    /// Whether `/debug/*` fault-injection addresses exist.
    pub allow_fault_injection: bool,
    /// Where to log every stamped command (`@frame seq address args`).
    pub command_log: Option<PathBuf>,
    /// WAV files recording what the output plays (`--record wav:PATH`), whatever it is.
    pub record: Vec<PathBuf>,
    /// The binary to re-execute as `worker` (normally the running `chronus`).
    pub worker_exe: PathBuf,
    /// The period the sound device imposes, in frames, once known (JACK's buffer size,
    /// read before the workers start; `None` for ALSA, the null sink and WAV files): the
    /// depth must cover it, since a period's blocks are all read in one callback.
    pub device_period_frames: Option<u32>,
    /// Device buffer size in frames (`None` = the device's default); for the null sink,
    /// the frames it plays per wake-up (`None` = [`DEFAULT_PERIOD_FRAMES`](crate::sinks::paced::DEFAULT_PERIOD_FRAMES)).
    pub device_buffer: Option<u32>,
    /// How long a spare may take to start and join before it is replaced.
    pub join_timeout: std::time::Duration,
    /// Ask for SCHED_FIFO and locked memory for the output thread and the workers.
    pub realtime: bool,
    /// Master DC blocker and limiter after the patch.
    pub master: chronus_engine::MasterConfig,
    /// A TCP connection with no bytes either way for this long is closed.
    pub tcp_idle_timeout: std::time::Duration,
    /// Who may talk to the server, how much, and what it may send back (`--allow`,
    /// `--allow-remote-quit`, `--rate-limit`, `--max-packet`).
    pub exposure: crate::exposure::Exposure,
    /// How OSC packets are framed on TCP (`--tcp-framing`), replies included.
    pub tcp_framing: crate::framing::Framing,
    /// Where to keep the restore point on disk (`--state`), for `--resume`.
    pub state: Option<PathBuf>,
    /// Start from a dead server's state (`--resume`) instead of from scratch.
    pub resume: Option<crate::resume::Resume>,
    /// Where `/library/save` writes and `/library/load` reads (`--library`), with the
    /// presets.
    pub library: crate::library::Library,
}

impl ServeConfig {
    /// The blocks the output's sink is expected to take at a time: the paced sink's
    /// period, JACK's period, or the device buffer asked for (one block when unknown: the
    /// output measures the real period and raises the depth to it).
    pub fn period_blocks(&self) -> u64 {
        let paced = || {
            crate::sinks::paced::period_blocks(self.device_buffer, self.block_frames, self.depth)
                as u64
        };
        // `auto` without JACK (its period is known by now) and without a sound card plays
        // to the null sink.
        let auto_to_null = self.output == OutputChoice::Auto
            && self.device_period_frames.is_none()
            && !crate::sinks::device::alsa_has_card();
        if auto_to_null {
            return paced();
        }
        match self.output {
            OutputChoice::Null | OutputChoice::Wav(_) => paced(),
            OutputChoice::Device | OutputChoice::Auto | OutputChoice::Jack => self
                .device_period_frames
                .or(self.device_buffer)
                .map_or(1, |frames| {
                    u64::from(frames).div_ceil(self.block_frames.max(1) as u64)
                }),
        }
    }

    /// Every WAV file to record: `--output wav:PATH` and each `--record wav:PATH`.
    pub fn recordings(&self) -> Vec<PathBuf> {
        let output = match &self.output {
            OutputChoice::Wav(path) => Some(path.clone()),
            _ => None,
        };
        output
            .into_iter()
            .chain(self.record.iter().cloned())
            .collect()
    }

    /// Refuses two records (recordings, the command log, the state file) in one regular
    /// file, whatever the names (links included): each would overwrite the other. (A
    /// device such as `/dev/null` may take several.)
    ///
    /// # Errors
    /// The first file named twice.
    pub fn check_record_files(&self) -> anyhow::Result<()> {
        let mut seen = Vec::new();
        for path in self
            .recordings()
            .iter()
            .chain(&self.command_log)
            .chain(&self.state)
        {
            if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
                continue;
            }
            let same = std::fs::canonicalize(path)
                .or_else(|_| std::path::absolute(path))
                .unwrap_or_else(|_| path.clone());
            if seen.contains(&same) {
                anyhow::bail!(
                    "{} is named twice among --output wav:, --record, --command-log and --state; give each record a file of its own",
                    path.display()
                );
            }
            seen.push(same);
        }
        Ok(())
    }
}
