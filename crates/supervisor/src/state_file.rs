//! The state file (`chronus serve --state FILE`): the restore point on disk, so that a
//! server started with `--resume FILE` after the supervisor's own death starts from it
//! instead of from scratch.
//!
//! It holds what a restart needs: the binary's version, the stream's settings, the
//! snapshot's bytes with the block it was taken at and the last command in it, and the
//! text of the patch the commands after it address. A [`StateWriter`] thread of normal
//! priority writes it at each refresh of the restore point (the supervisor loop only hands
//! it over; the latest one wins), by temporary file, `fsync` and `rename`, so the file is
//! a whole state at any instant, whenever the server dies. A checksum catches a file
//! damaged by anything else.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use chronus_engine::{Engine, EngineConfig, MasterConfig};

use crate::metrics::Metrics;
use crate::recovery::RestorePoint;

/// The first line of every state file.
const MAGIC: &str = "chronus-state 1";

/// Everything in a state file.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedState {
    /// `CARGO_PKG_VERSION` of the binary that wrote it: a snapshot is only read back by
    /// the same version.
    pub version: String,
    /// The stream's settings (a snapshot fits only these).
    pub config: EngineConfig,
    /// The session: the server that wrote it and those resumed from it, and their
    /// command log (its first line names it), so that a state is never resumed with
    /// another server's log.
    pub session: u64,
    /// The restore point.
    pub point: RestorePoint,
    /// The patch the commands after the restore point address (TOML).
    pub patch_text: String,
}

impl SavedState {
    /// The state to save for `point`, taken by a server with `config`.
    ///
    /// # Errors
    /// When the snapshot does not restore (then there is nothing worth saving).
    pub fn of(
        point: RestorePoint,
        config: EngineConfig,
        session: u64,
    ) -> anyhow::Result<SavedState> {
        let engine = Engine::from_snapshot(&point.snapshot, config)
            .context("the restore point does not restore")?;
        Ok(SavedState {
            version: env!("CARGO_PKG_VERSION").to_string(),
            config,
            session,
            patch_text: engine.latest_patch_text().to_string(),
            point,
        })
    }

    /// The file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let c = &self.config;
        let mut bytes = format!(
            "{MAGIC}\nversion {}\nsession {:016x}\nrate {} block {} seed {} dc_blocker {} limiter {}\npoint {} {}\npatch {}\n",
            self.version,
            self.session,
            c.sample_rate,
            c.block_frames,
            c.seed,
            u8::from(c.master.dc_blocker),
            u8::from(c.master.limiter),
            self.point.block,
            self.point.last_seq,
            self.patch_text.len(),
        )
        .into_bytes();
        bytes.extend_from_slice(self.patch_text.as_bytes());
        bytes.extend_from_slice(format!("\nsnapshot {}\n", self.point.snapshot.len()).as_bytes());
        bytes.extend_from_slice(&self.point.snapshot);
        bytes.extend_from_slice(format!("\nend {:016x}\n", checksum(&bytes)).as_bytes());
        bytes
    }

    /// Reads a state file's bytes.
    ///
    /// # Errors
    /// Bytes that are not a whole state file of this format (with what is wrong).
    pub fn decode(bytes: &[u8]) -> anyhow::Result<SavedState> {
        let mut r = Reader { bytes, at: 0 };
        if r.line()? != MAGIC {
            bail!("not a chronus state file");
        }
        let version = r.field("version")?.to_string();
        let session = u64::from_str_radix(r.field("session")?, 16).context("bad session")?;
        let settings = r.line()?;
        let words: Vec<&str> = settings.split(' ').collect();
        let value = |name: &str| -> anyhow::Result<u64> {
            let at = words
                .iter()
                .position(|w| *w == name)
                .with_context(|| format!("no {name} in the settings"))?;
            words
                .get(at + 1)
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("bad {name} in the settings"))
        };
        let config = EngineConfig {
            master: MasterConfig {
                dc_blocker: value("dc_blocker")? != 0,
                limiter: value("limiter")? != 0,
            },
            ..EngineConfig::new(
                u32::try_from(value("rate")?).context("bad rate")?,
                usize::try_from(value("block")?).context("bad block")?,
                value("seed")?,
            )
        };
        let point = r.field("point")?;
        let (block, last_seq) = point
            .split_once(' ')
            .and_then(|(b, s)| Some((b.parse().ok()?, s.parse().ok()?)))
            .context("bad restore point line")?;
        let patch_len = r.field("patch")?.parse().context("bad patch length")?;
        let patch_text = String::from_utf8(r.take(patch_len)?.to_vec())
            .context("the patch text is not UTF-8")?;
        r.expect_newline()?;
        let snapshot_len = r
            .field("snapshot")?
            .parse()
            .context("bad snapshot length")?;
        let snapshot = r.take(snapshot_len)?.to_vec();
        r.expect_newline()?;
        let sum_at = r.at;
        let sum = u64::from_str_radix(r.field("end")?, 16).context("bad checksum")?;
        if sum != checksum(&bytes[..sum_at - 1]) || r.at != bytes.len() {
            bail!("the state file is damaged (its checksum does not match)");
        }
        Ok(SavedState {
            version,
            config,
            session,
            point: RestorePoint {
                snapshot,
                block,
                last_seq,
            },
            patch_text,
        })
    }

    /// Reads the state file at `path` and checks it was written by this very version.
    ///
    /// # Errors
    /// A file that cannot be read, is not a state file, is damaged, or was written by
    /// another version of chronus.
    pub fn read(path: &Path) -> anyhow::Result<SavedState> {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read the state file {}", path.display()))?;
        let state = SavedState::decode(&bytes)
            .with_context(|| format!("{} is not a usable state file", path.display()))?;
        let ours = env!("CARGO_PKG_VERSION");
        if state.version != ours {
            bail!(
                "{} was written by chronus {}, this is chronus {ours}: a snapshot is only read back by the version that wrote it (start without --resume)",
                path.display(),
                state.version
            );
        }
        Ok(state)
    }

    /// Writes the state to `path` so that the file holds a whole state at any instant:
    /// a temporary file beside it, `fsync`, `rename` over it, `fsync` of the directory.
    ///
    /// # Errors
    /// Any I/O error, with the path.
    pub fn write_atomic(&self, path: &Path) -> anyhow::Result<()> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&temporary)?;
            file.write_all(&self.encode())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)?;
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
        };
        write().with_context(|| format!("cannot write the state file {}", path.display()))
    }
}

/// A new session's id: the time and the process, mixed (unique enough to tell two
/// servers' files apart).
pub fn new_session() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    checksum(
        &[
            nanos.to_le_bytes(),
            u64::from(std::process::id()).to_le_bytes(),
        ]
        .concat(),
    )
}

/// The first line of a command log of session `session`.
pub fn session_line(session: u64) -> String {
    format!("# chronus session {session:016x}")
}

/// FNV-1a, 64 bits: enough to tell a damaged file.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Reads a state file front to back.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn line(&mut self) -> anyhow::Result<&'a str> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .context("the file ends early")?;
        self.at += end + 1;
        std::str::from_utf8(&rest[..end]).context("a header line is not text")
    }

    fn field(&mut self, name: &str) -> anyhow::Result<&'a str> {
        let line = self.line()?;
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .with_context(|| format!("expected the {name} line"))
    }

    fn take(&mut self, len: usize) -> anyhow::Result<&'a [u8]> {
        let bytes = self
            .bytes
            .get(self.at..self.at.checked_add(len).context("bad length")?)
            .context("the file ends early")?;
        self.at += len;
        Ok(bytes)
    }

    fn expect_newline(&mut self) -> anyhow::Result<()> {
        if self.take(1)? != b"\n" {
            bail!("the file is malformed");
        }
        Ok(())
    }
}

/// The latest state waiting to be written, and whether to stop.
type Pending = (Mutex<(Option<RestorePoint>, bool)>, Condvar);

/// Writes the state file from its own thread: the supervisor loop hands over each new
/// restore point with [`save`](Self::save) (never waits on the disk), the thread writes
/// the latest one.
pub struct StateWriter {
    pending: Arc<Pending>,
    thread: Option<std::thread::JoinHandle<()>>,
    ended: Arc<AtomicBool>,
    /// `<path>.lock`, locked while the server runs: one server per state file.
    _lock: File,
}

impl StateWriter {
    /// Starts the writer for `path`, for a server with `config`, after writing `first`
    /// there at once: a state file that cannot be written is an error at start-up, not a
    /// surprise after the server's death.
    ///
    /// # Errors
    /// When another server holds the file, it cannot be written, or the thread cannot
    /// start.
    pub fn start(
        path: PathBuf,
        config: EngineConfig,
        metrics: Arc<Metrics>,
        first: &RestorePoint,
        session: u64,
    ) -> anyhow::Result<StateWriter> {
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .with_context(|| {
                format!(
                    "cannot create the state file's lock {}",
                    lock_path.display()
                )
            })?;
        crate::record_lock::lock_record_file(&lock, &path)?;
        SavedState::of(first.clone(), config, session)?.write_atomic(&path)?;
        Metrics::bump(&metrics.state_saves);
        let pending: Arc<Pending> = Arc::new((Mutex::new((None, false)), Condvar::new()));
        let ended = Arc::new(AtomicBool::new(false));
        let (shared, done) = (Arc::clone(&pending), Arc::clone(&ended));
        let thread = std::thread::Builder::new()
            .name("chronus-state".into())
            .spawn(move || {
                write_loop(&path, config, session, &shared, &metrics);
                done.store(true, Ordering::Release);
            })
            .context("cannot start the state file's writer")?;
        Ok(StateWriter {
            pending,
            thread: Some(thread),
            ended,
            _lock: lock,
        })
    }

    /// Hands over a new restore point to write (replacing one not written yet).
    pub fn save(&self, point: &RestorePoint) {
        let (lock, wake) = &*self.pending;
        if let Ok(mut pending) = lock.lock() {
            pending.0 = Some(point.clone());
            wake.notify_one();
        }
    }

    /// Whether the thread has ended (before [`finish`](Self::finish): a bug).
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Writes what is pending and stops the thread.
    pub fn finish(mut self) {
        let (lock, wake) = &*self.pending;
        if let Ok(mut pending) = lock.lock() {
            pending.1 = true;
            wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_loop(
    path: &Path,
    config: EngineConfig,
    session: u64,
    pending: &Pending,
    metrics: &Metrics,
) {
    let (lock, wake) = pending;
    loop {
        let (point, stop) = {
            let Ok(mut guard) = lock.lock() else {
                return;
            };
            while guard.0.is_none() && !guard.1 {
                guard = match wake.wait_timeout(guard, Duration::from_secs(1)) {
                    Ok((guard, _)) => guard,
                    Err(_) => return,
                };
            }
            (guard.0.take(), guard.1)
        };
        if let Some(point) = point {
            let written = SavedState::of(point, config, session).and_then(|s| s.write_atomic(path));
            match written {
                Ok(()) => Metrics::bump(&metrics.state_saves),
                Err(e) => {
                    Metrics::bump(&metrics.state_save_errors);
                    tracing::error!("{e:#}");
                }
            }
        }
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronus_dsp::PatchDesc;

    fn state() -> SavedState {
        let config = EngineConfig::new(48_000, 64, 7);
        let point = RestorePoint::of_patch(&PatchDesc::default_patch(), config).unwrap();
        SavedState::of(point, config, 0x1234).unwrap()
    }

    #[test]
    fn a_state_file_reads_back_what_was_written() {
        let state = state();
        let dir = std::env::temp_dir().join(format!("chronus-state-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("state");
        state.write_atomic(&path).unwrap();
        assert_eq!(SavedState::read(&path).unwrap(), state);
        assert!(!dir.join("state.tmp").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_truncated_or_foreign_file_is_refused_with_a_reason() {
        let bytes = state().encode();
        let mut flipped = bytes.clone();
        let middle = flipped.len() / 2;
        flipped[middle] ^= 1;
        let cases: [(&[u8], &str); 4] = [
            (&flipped, "damaged"),
            (&bytes[..bytes.len() - 5], ""),
            (&bytes[..bytes.len() / 3], "ends early"),
            (b"hello\n", "not a chronus state file"),
        ];
        for (case, why) in cases {
            let error = format!("{:#}", SavedState::decode(case).unwrap_err());
            assert!(error.contains(why), "{error}");
        }
    }

    #[test]
    fn another_version_is_a_clear_error() {
        let mut state = state();
        state.version = "0.0.1".to_string();
        let path = std::env::temp_dir().join(format!("chronus-state-old-{}", std::process::id()));
        state.write_atomic(&path).unwrap();
        let error = format!("{:#}", SavedState::read(&path).unwrap_err());
        assert!(error.contains("written by chronus 0.0.1"), "{error}");
        let _ = std::fs::remove_file(&path);
    }
}
