//! The command log (`--command-log`): every stamped command and every patch switch (with
//! the patch's text), one line each, in stamping order, so `chronus render --replay`
//! renders the same session.
//!
//! The output clock stamps commands and must not touch a file, so it hands each stamped
//! command to a preallocated lock-free queue ([`LOG_QUEUE_CAPACITY`] entries; one that
//! does not fit is counted in `command_log_dropped`, never waited for), and wakes the
//! writer once at the end of a period that stamped any (one non-blocking `write` to an
//! eventfd). A [`CommandLogWriter`] thread of normal priority drains it when woken and
//! hands the lines to the kernel with one `write` per batch (no `fsync`): a `kill -9` of
//! the server loses none of them. At rest it sleeps. How long a command waited between its
//! stamping and that `write` is the metric `command_log_lag_ms` (last batch) and
//! `command_log_lag_ms_max`; nothing waits on it, `/sync` included. A write error is
//! logged with the path and the OS's reason and counted in `command_log_write_errors`;
//! the log stops there (it keeps whole lines), and the sound plays on.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chronus_engine::{Command, StampedCommand};
use chronus_protocol::AddressTable;
use crossbeam_queue::ArrayQueue;

use crate::metrics::Metrics;
use crate::wake::Wake;

/// Entries the queue from the output clock holds: many seconds of the densest traffic
/// the clock stamps (512 commands a block) between two writes.
pub const LOG_QUEUE_CAPACITY: usize = 65_536;
/// Longest time the writer sleeps without a wake-up (it looks at its stop flag then).
pub const IDLE_WAIT: Duration = Duration::from_millis(250);

/// One stamped command on its way to the log.
#[derive(Debug, Clone, Copy)]
pub struct LoggedCommand {
    /// The command as stamped (a patch switch included).
    pub stamped: StampedCommand,
    /// When it was stamped, in ns since the output epoch (for `command_log_lag_ms`).
    pub stamped_ns: u64,
}

/// The queue from the output clock (the only producer) to the writer, and the writer's
/// wake-up.
pub struct LogQueue {
    entries: ArrayQueue<LoggedCommand>,
    wake: Wake,
}

impl LogQueue {
    /// An empty queue of [`LOG_QUEUE_CAPACITY`] entries, allocated once.
    pub fn new() -> LogQueue {
        LogQueue {
            entries: ArrayQueue::new(LOG_QUEUE_CAPACITY),
            wake: Wake::new(),
        }
    }

    /// Queues `command` (never waits, allocates nothing); gives it back when full.
    ///
    /// # Errors
    /// The command itself, when the queue is full.
    pub fn push(&self, command: LoggedCommand) -> Result<(), LoggedCommand> {
        self.entries.push(command)
    }

    /// Wakes the writer: the output does, once after a period that queued commands.
    pub fn wake_writer(&self) {
        self.wake.signal();
    }

    /// Commands waiting for the writer.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no command waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Default for LogQueue {
    fn default() -> Self {
        LogQueue::new()
    }
}

/// Cuts a last line the server's death left unfinished off the log (if any), reading
/// only its end.
fn cut_to_whole_lines(file: &File) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let piece = &mut chunk[..(end - start) as usize];
        file.read_exact_at(piece, start)?;
        if let Some(at) = piece.iter().rposition(|&b| b == b'\n') {
            let whole = start + at as u64 + 1;
            if whole < len {
                file.set_len(whole)?;
            }
            return Ok(());
        }
        end = start;
    }
    file.set_len(0)
}

/// A committed patch, which the log writes when its switch is stamped.
#[derive(Debug)]
pub struct CommittedPatch {
    /// Version stamped in the switch command.
    pub version: u32,
    /// The TOML text written in the log.
    pub text: String,
    /// Address table of the patch, for the commands after its switch.
    pub table: AddressTable,
}

/// Where the OSC thread sends each committed patch, before it queues the switch (so the
/// writer always has the text when it meets the switch).
pub type PatchSender = Sender<CommittedPatch>;

/// The writer thread and its stop flag.
pub struct CommandLogWriter {
    finish: Arc<AtomicBool>,
    /// The queue it drains (its wake-up ends the last wait at the stop).
    queue: Arc<LogQueue>,
    /// Fault injection (`/debug/panic 3`): the thread panics at its next pass.
    injected_panic: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl CommandLogWriter {
    /// Creates (truncates) the log at `path`, or with `append` (a resumed server) goes on
    /// after its last whole line, and starts the thread that drains `queue`
    /// into it; lines are formatted with `table` until a patch switch; `epoch` is the
    /// output's (what `stamped_ns` counts from). Returns the writer and where committed
    /// patches go.
    ///
    /// # Errors
    /// When the file cannot be created or the thread cannot start.
    pub fn start(
        path: &Path,
        table: AddressTable,
        queue: Arc<LogQueue>,
        epoch: Instant,
        metrics: Arc<Metrics>,
        append: bool,
        session: u64,
    ) -> anyhow::Result<(CommandLogWriter, PatchSender)> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot create command log {}", path.display()))?;
        // Locked before it is emptied or cut: a server still running keeps its log.
        crate::record_lock::lock_record_file(&file, path)?;
        if append {
            cut_to_whole_lines(&file).with_context(|| {
                format!("cannot cut the unfinished last line of {}", path.display())
            })?;
            file.seek(std::io::SeekFrom::End(0))?;
        } else if file.metadata()?.is_file() {
            file.set_len(0)?;
        }
        // A new log names its session first, so a resume never takes another server's
        // log for its own (written with the first batch, at once).
        let mut lines = Vec::new();
        if !append {
            lines.extend_from_slice(crate::state_file::session_line(session).as_bytes());
            lines.push(b'\n');
        }
        let (patches_tx, patches) = mpsc::channel();
        let finish = Arc::new(AtomicBool::new(false));
        let mut writer = Writer {
            path: path.to_path_buf(),
            file: Some(file),
            table,
            patches,
            committed: BTreeMap::new(),
            lines,
        };
        let injected_panic = Arc::new(AtomicBool::new(false));
        let (stop, panic) = (Arc::clone(&finish), Arc::clone(&injected_panic));
        let thread_queue = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("chronus-command-log".into())
            .spawn(move || {
                writer.run(&thread_queue, epoch, &metrics, &stop, &panic);
            })
            .context("cannot start the command log writer")?;
        let writer = CommandLogWriter {
            finish,
            queue: Arc::clone(&queue),
            injected_panic,
            thread,
        };
        Ok((writer, patches_tx))
    }

    /// Whether the thread has ended (before [`finish`](Self::finish), only a panic ends it).
    pub fn ended(&self) -> bool {
        self.thread.is_finished()
    }

    /// Fault injection (`/debug/panic 3`): makes the thread panic at its next pass, as a
    /// bug would, to show that the supervisor notices.
    pub fn inject_panic(&self) {
        self.injected_panic.store(true, Ordering::Release);
        self.queue.wake_writer();
    }

    /// Writes what is still queued (call it once the output has stopped stamping) and ends
    /// the thread.
    ///
    /// # Errors
    /// When the thread panicked: the log ends where it stopped.
    pub fn finish(self) -> anyhow::Result<()> {
        self.finish.store(true, Ordering::Release);
        self.queue.wake_writer();
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the command log writer panicked"))
    }
}

/// The writer thread's state.
struct Writer {
    path: PathBuf,
    /// `None` once a write failed.
    file: Option<File>,
    /// Table of the stamped patch (follows patch switches).
    table: AddressTable,
    patches: Receiver<CommittedPatch>,
    /// Committed patches whose switch has not been written yet.
    committed: BTreeMap<u32, CommittedPatch>,
    /// The batch being formatted.
    lines: Vec<u8>,
}

impl Writer {
    fn run(
        &mut self,
        queue: &LogQueue,
        epoch: Instant,
        metrics: &Metrics,
        finish: &AtomicBool,
        injected_panic: &AtomicBool,
    ) {
        if !self.lines.is_empty() {
            self.write(metrics, 0);
        }
        loop {
            // Read the flag first: everything queued before it was set is written below.
            let finishing = finish.load(Ordering::Acquire);
            if injected_panic.load(Ordering::Acquire) {
                panic!("/debug/panic 3: the command log's writer dies, as a bug would make it");
            }
            let mut oldest_ns = None;
            let mut count = 0u64;
            while let Some(logged) = queue.entries.pop() {
                oldest_ns.get_or_insert(logged.stamped_ns);
                count += 1;
                self.format(&logged.stamped);
                // Big bursts go out in pieces, so the first line never waits for the last.
                if self.lines.len() >= 64 * 1024 {
                    break;
                }
            }
            if let Some(oldest_ns) = oldest_ns {
                self.write(metrics, count);
                let now_ns = epoch.elapsed().as_nanos() as u64;
                let lag = now_ns.saturating_sub(oldest_ns);
                metrics.command_log_lag_ns.store(lag, Ordering::Relaxed);
                metrics
                    .command_log_lag_max_ns
                    .fetch_max(lag, Ordering::Relaxed);
                continue;
            }
            if finishing {
                return;
            }
            queue.wake.wait(IDLE_WAIT);
        }
    }

    /// Appends the line of `stamped` to the batch.
    fn format(&mut self, stamped: &StampedCommand) {
        let line = if let Command::SwitchPatch { version, at, .. } = stamped.command {
            let Some(patch) = self.committed_patch(version) else {
                tracing::error!(
                    "command log: patch {version} was stamped but its text is unknown; not logged"
                );
                return;
            };
            let line = chronus_protocol::format_patch_log_line(
                stamped.frame,
                stamped.seq,
                &patch.text,
                at,
            );
            self.table = patch.table;
            line
        } else {
            chronus_protocol::text::format_log_line(
                &self.table,
                stamped.frame,
                stamped.seq,
                &stamped.command,
            )
        };
        self.lines.extend_from_slice(line.as_bytes());
        self.lines.push(b'\n');
    }

    /// Patch `version`, committed before its switch was queued, so already sent.
    fn committed_patch(&mut self, version: u32) -> Option<CommittedPatch> {
        while let Ok(patch) = self.patches.try_recv() {
            self.committed.insert(patch.version, patch);
        }
        self.committed.remove(&version)
    }

    /// Hands the batch to the kernel in one `write` (whole lines), or counts it lost.
    fn write(&mut self, metrics: &Metrics, count: u64) {
        if let Some(file) = self.file.as_mut() {
            if let Err(error) = file.write_all(&self.lines) {
                Metrics::bump(&metrics.command_log_write_errors);
                tracing::error!(
                    "command log {}: writing failed: {error}; it stops here; the sound plays on",
                    self.path.display()
                );
                self.file = None;
            }
        }
        if self.file.is_none() {
            metrics
                .command_log_dropped
                .fetch_add(count, Ordering::Relaxed);
        }
        self.lines.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer of `path` over a fresh queue: (writer, patches, queue, metrics).
    fn start(path: &Path) -> (CommandLogWriter, PatchSender, Arc<LogQueue>, Arc<Metrics>) {
        let queue = Arc::new(LogQueue::new());
        let metrics = Arc::new(Metrics::default());
        let table = AddressTable::new(&[], false);
        let (writer, patches) = CommandLogWriter::start(
            path,
            table,
            Arc::clone(&queue),
            Instant::now(),
            Arc::clone(&metrics),
            false,
            0,
        )
        .unwrap();
        (writer, patches, queue, metrics)
    }

    #[test]
    fn stamped_commands_and_patch_switches_reach_the_file_without_a_flush() {
        let path = std::env::temp_dir().join(format!("chronus-log-test-{}", std::process::id()));
        let (writer, patches, queue, metrics) = start(&path);
        let table = AddressTable::new(&[], false);
        let text = "[[modules]]\nid = \"out\"\ntype = \"output\"\n";
        patches
            .send(CommittedPatch {
                version: 2,
                text: text.to_string(),
                table: table.clone(),
            })
            .unwrap();
        let switch = StampedCommand {
            seq: 7,
            frame: 128,
            command: Command::SwitchPatch {
                version: 2,
                len: text.len() as u32,
                at: chronus_engine::SwitchAt::Now,
            },
        };
        queue
            .push(LoggedCommand {
                stamped: switch,
                stamped_ns: 0,
            })
            .unwrap();
        let expected = format!(
            "{}\n{}\n",
            crate::state_file::session_line(0),
            chronus_protocol::format_patch_log_line(128, 7, text, chronus_engine::SwitchAt::Now)
        );
        // Written without any flush or stop: it is in the file within a few ms.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap_or_default() != expected {
            assert!(Instant::now() < deadline, "the line never reached the file");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(metrics.command_log_lag_max_ns.load(Ordering::Relaxed) > 0);
        writer.finish().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_full_disk_is_reported_counted_and_never_stops_the_queue() {
        let path = PathBuf::from("/dev/full");
        if !path.exists() {
            return;
        }
        let (writer, _patches, queue, metrics) = start(&path);
        let stamped = StampedCommand {
            seq: 1,
            frame: 0,
            command: Command::TestTone,
        };
        for _ in 0..3 {
            queue
                .push(LoggedCommand {
                    stamped,
                    stamped_ns: 0,
                })
                .unwrap();
            queue.wake_writer();
            std::thread::sleep(Duration::from_millis(10));
        }
        writer.finish().unwrap();
        assert!(queue.is_empty());
        assert_eq!(metrics.command_log_write_errors.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.command_log_dropped.load(Ordering::Relaxed), 3);
    }
}
