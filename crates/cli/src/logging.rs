//! The log: to stderr, filtered by `CHRONUS_LOG`, through `tracing-appender`'s
//! non-blocking writer: a bounded queue drained by a thread of its own (`chronus-log`), so
//! a log call never waits on stderr (a full pipe nobody reads, a slow terminal) and the
//! real-time loops are never held up by it. When the queue is full the line is dropped and
//! counted; the count is written at the end. Colour codes only when stderr is a terminal.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// Log lines waiting for stderr at most; more are dropped (and counted).
const QUEUE_LINES: usize = 1024;

/// Keeps the log writer running; dropping it writes what is queued, stops the writer and
/// says how many lines were dropped, if any.
pub struct LogGuard {
    writer: Option<WorkerGuard>,
    dropped: ErrorCounter,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        // The queued lines first, then the count, after them.
        drop(self.writer.take());
        let lost = self.dropped.dropped_lines();
        if lost > 0 {
            eprintln!("chronus: {lost} log lines dropped: stderr did not keep up");
        }
    }
}

/// Sends logs to stderr, filtered by `CHRONUS_LOG` (default: `default_level`). Keep the
/// guard until the end of the program (it flushes the queue when dropped).
pub fn init_logging(default_level: &str) -> LogGuard {
    let (queue, writer) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("chronus-log")
        .finish(std::io::stderr());
    let dropped = queue.error_counter();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CHRONUS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(queue)
        .init();
    LogGuard {
        writer: Some(writer),
        dropped,
    }
}
