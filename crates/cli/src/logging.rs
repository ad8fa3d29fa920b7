//! The log: to stderr, filtered by `CHRONUS_LOG`, through a bounded queue drained by a
//! thread of its own, so a log call never waits on stderr (a full pipe nobody reads, a
//! slow terminal) and the real-time loops are never held up by it. When the queue is full
//! the line is dropped and counted, and the count is written once stderr keeps up again.
//! Colour codes only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;

/// Log lines waiting for stderr at most; more are dropped (and counted).
const QUEUE_LINES: usize = 1024;

/// Keeps the log writer running; dropping it writes what is queued and stops the writer.
pub struct LogGuard {
    sender: Option<SyncSender<Vec<u8>>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // The subscriber keeps a sender for the life of the process: an empty line, which
        // no log call queues, tells the writer to stop once it wrote everything before.
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Vec::new());
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// Sends logs to stderr, filtered by `CHRONUS_LOG` (default: `default_level`). Keep the
/// guard until the end of the program (it flushes the queue when dropped).
pub fn init_logging(default_level: &str) -> LogGuard {
    let (sender, lines) = sync_channel(QUEUE_LINES);
    let dropped = Arc::new(AtomicU64::new(0));
    let queue = LineQueue {
        sender: sender.clone(),
        dropped: Arc::clone(&dropped),
    };
    let writer = std::thread::Builder::new()
        .name("chronus-log".into())
        .spawn(move || write_lines(&lines, &dropped))
        .ok();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHRONUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(queue)
        .init();
    LogGuard {
        sender: Some(sender),
        writer,
    }
}

/// Writes queued lines to stderr until the empty line the guard sends at the end.
fn write_lines(lines: &Receiver<Vec<u8>>, dropped: &AtomicU64) {
    let mut stderr = std::io::stderr().lock();
    for line in lines {
        if line.is_empty() {
            return;
        }
        let _ = stderr.write_all(&line);
        let lost = dropped.swap(0, Ordering::Relaxed);
        if lost > 0 {
            let _ = writeln!(
                stderr,
                "chronus: {lost} log lines dropped: stderr did not keep up"
            );
        }
    }
}

/// Hands each formatted log line to the writer thread without waiting.
struct LineQueue {
    sender: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineQueue {
    type Writer = QueuedLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        QueuedLine {
            queue: self,
            line: Vec::new(),
        }
    }
}

/// One log line being formatted; queued (or dropped, if the queue is full) when done.
struct QueuedLine<'a> {
    queue: &'a LineQueue,
    line: Vec<u8>,
}

impl Write for QueuedLine<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for QueuedLine<'_> {
    fn drop(&mut self) {
        if !self.line.is_empty()
            && self
                .queue
                .sender
                .try_send(std::mem::take(&mut self.line))
                .is_err()
        {
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
