//! `chronus serve --resume FILE`: starting again from the state file a server wrote
//! (`--state`) before it died, instead of from scratch.
//!
//! The new server restores the state file's restore point in both workers, and replays
//! what that server's command log holds after it (the commands it stamped between its
//! last refresh and its death), so the music comes back as it was. Its clock starts where
//! the dead server's records end, so that the WAV files and the command log it was given
//! go on in one timeline: it appends to them, and a recording pads the time it could not
//! play with silence. `render --replay` of the whole log then renders what was served,
//! but for that silence.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chronus_dsp::PatchDesc;
use chronus_engine::{Command, Engine, StampedCommand};
use chronus_protocol::{parse_command_log, table_for_patch, LogEntry};

use crate::recovery::Replayed;
use crate::state_file::SavedState;

/// How far past the restore point the dead server's command log is followed to find
/// where its clock was: twice the refresh interval covers every command stamped before
/// its death, and keeps a far-future bundle from moving the clock.
const LOG_HORIZON_SECONDS: u64 = 5;

/// Everything a resumed server starts from.
#[derive(Debug, Clone)]
pub struct Resume {
    /// The state file's contents.
    pub saved: SavedState,
    /// The patch the next commands address (the last one switched to).
    pub patch: PatchDesc,
    /// The command log's commands after the restore point, in seq order.
    pub replay: Vec<Replayed>,
    /// The block the clock starts at: at or after the restore point, the end of every
    /// recording and the frames of the logged commands.
    pub start_block: u64,
    /// The highest seq of the dead server (the new one stamps above it).
    pub last_seq: u64,
    /// The highest patch version in the restore point or the replay (new patches are
    /// numbered above it).
    pub last_patch_version: u32,
}

impl Resume {
    /// Prepares a resume from `saved`, the dead server's `command_log` (if it had one)
    /// and `recordings`.
    ///
    /// # Errors
    /// A command log that cannot be read or does not fit the state, a recording that is
    /// not a WAV file of the state's sample rate.
    pub fn prepare(
        saved: SavedState,
        command_log: Option<&Path>,
        recordings: &[PathBuf],
    ) -> anyhow::Result<Resume> {
        let config = saved.config;
        let frames = config.block_frames as u64;
        let point = &saved.point;
        let engine = Engine::from_snapshot(&point.snapshot, config)
            .context("the state file's snapshot does not restore")?;
        let mut last_patch_version = engine.highest_patch_version();
        let (tail, last_logged_seq) = match command_log {
            Some(path) if path.exists() => log_tail(path, point.last_seq, saved.session)?,
            _ => (String::new(), 0),
        };
        let desc = PatchDesc::from_toml_str(&saved.patch_text)
            .context("the state file's patch does not parse")?;
        let table = table_for_patch(&desc, false).map_err(anyhow::Error::msg)?;
        let entries = parse_command_log(&table, &tail)
            .with_context(|| format!("the command log after command {}", point.last_seq))?;
        let mut patch_text = saved.patch_text.clone();
        let mut replay = Vec::with_capacity(entries.len());
        let mut last_frame = point.block * frames;
        let horizon = point.block * frames + LOG_HORIZON_SECONDS * u64::from(config.sample_rate);
        for entry in entries {
            let (stamped, replayed) = match entry {
                LogEntry::Command(c) => {
                    let stamped = StampedCommand {
                        seq: c.seq,
                        frame: c.frame,
                        command: c.command,
                    };
                    (stamped, Replayed::Command(stamped))
                }
                LogEntry::Patch {
                    frame,
                    seq,
                    toml,
                    at,
                } => {
                    last_patch_version += 1;
                    let switch = StampedCommand {
                        seq,
                        frame,
                        command: Command::SwitchPatch {
                            version: last_patch_version,
                            len: toml.len() as u32,
                            at,
                        },
                    };
                    patch_text.clone_from(&toml);
                    (switch, Replayed::Patch { switch, text: toml })
                }
            };
            if stamped.frame <= horizon {
                last_frame = last_frame.max(stamped.frame);
            }
            replay.push(replayed);
        }
        let mut start_block = point.block.max(last_frame.div_ceil(frames));
        for path in recordings.iter().filter(|p| p.exists()) {
            let reader = hound::WavReader::open(path).with_context(|| {
                format!("cannot read the recording {} to resume it", path.display())
            })?;
            let spec = reader.spec();
            if spec.sample_rate != config.sample_rate || spec.channels != 2 {
                anyhow::bail!(
                    "{} is not a {} Hz stereo recording: it cannot be resumed",
                    path.display(),
                    config.sample_rate
                );
            }
            start_block = start_block.max(u64::from(reader.duration()).div_ceil(frames));
        }
        let patch = PatchDesc::from_toml_str(&patch_text)
            .context("the last patch of the command log does not parse")?;
        Ok(Resume {
            last_seq: point.last_seq.max(last_logged_seq),
            saved,
            patch,
            replay,
            start_block,
            last_patch_version,
        })
    }
}

/// The lines of the command log at `path` stamped after `last_seq` (in file order), and
/// the highest seq it holds, read line by line (a long log is never held whole). A last
/// line cut short by the server's death is left out.
fn log_tail(path: &Path, last_seq: u64, session: u64) -> anyhow::Result<(String, u64)> {
    use std::io::BufRead;
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the command log {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut tail = String::new();
    let mut highest = 0;
    let mut line = String::new();
    let read = reader
        .read_line(&mut line)
        .with_context(|| format!("cannot read the command log {}", path.display()))?;
    if read == 0 {
        return Ok((String::new(), 0));
    }
    let expected = crate::state_file::session_line(session);
    if line.trim_end() != expected {
        anyhow::bail!(
            "the command log {} is not the one of the server that wrote the state (its first line is {:?}, not {expected:?})",
            path.display(),
            line.trim_end()
        );
    }
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .with_context(|| format!("cannot read the command log {}", path.display()))?;
        if read == 0 || !line.ends_with('\n') {
            break;
        }
        let line = line.trim_end_matches('\n');
        let mut words = line.split_whitespace();
        let seq = match (words.next(), words.next()) {
            (Some(frame), Some(seq)) if frame.starts_with('@') => seq.parse::<u64>().ok(),
            _ => None,
        };
        let Some(seq) = seq else {
            continue;
        };
        highest = highest.max(seq);
        if seq > last_seq {
            tail.push_str(line);
            tail.push('\n');
        }
    }
    Ok((tail, highest))
}
