//! Rate-limited, summarised logging for lines an outsider or a fault can repeat at will
//! (undecodable packets, refused messages, underruns), and escaping of what clients send.
//!
//! A [`LogLimit`] lets the first [`LINES_PER_SECOND`] lines of its kind through in each
//! second and counts the rest; a summary says how many were left out
//! (`… and 9,312 more undecodable packets in the last second`), written by the next line
//! of its kind or by [`summarise_past_seconds`], which the OSC thread calls a few times a
//! second, whichever comes first. Asking takes no lock and allocates nothing, so any
//! thread may ask. Every limit is one of the statics below, so the summary knows them
//! all. Client-supplied text goes into a line through [`escaped`], so a newline in an
//! OSC address cannot start a forged log line.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Lines of one kind written per second before the rest are only counted.
pub const LINES_PER_SECOND: u64 = 10;

/// Undecodable packets (anyone can send them at line rate).
pub static UNDECODABLE: LogLimit = LogLimit::new("undecodable packets");
/// Refused messages.
pub static REFUSED: LogLimit = LogLimit::new("refused messages");
/// Datagrams dropped or not received (a flood repeats them at will).
pub static DROPPED: LogLimit = LogLimit::new("dropped datagrams");
/// TCP clients connecting, leaving or being refused.
pub static TCP: LogLimit = LogLimit::new("tcp connection messages");
/// Underruns (one per block while neither worker delivers).
pub static UNDERRUNS: LogLimit = LogLimit::new("underruns");
/// Panics caught while handling packets (a bug a client may be able to trip at will): the
/// panic hook's report and the handler's line.
pub static PANICS: LogLimit = LogLimit::new("panic reports");

/// Incoming messages logged by `/dumpOSC 1` (a client decides how many arrive).
pub static DUMP_OSC: LogLimit = LogLimit::new("dumpOSC lines");
/// `/notify` subscriptions made, renewed, ended or refused (a client may send many).
pub static SUBSCRIPTIONS: LogLimit = LogLimit::new("/notify subscription messages");

/// Every limit, for [`summarise_past_seconds`].
static ALL: [&LogLimit; 8] = [
    &UNDECODABLE,
    &REFUSED,
    &DROPPED,
    &TCP,
    &UNDERRUNS,
    &PANICS,
    &DUMP_OSC,
    &SUBSCRIPTIONS,
];

/// Puts the panic hook (the report Rust writes to stderr for every panic, with a backtrace
/// when `RUST_BACKTRACE` is set) under the [`PANICS`] limit, so a panic a client can repeat
/// cannot flood the log; the reports let through are unchanged. Call once, at start-up.
pub fn limit_panic_reports() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if PANICS.allow() {
            report(info);
        }
    }));
}

/// Writes the summary of every limit whose last second is over and left lines out, so
/// a burst that stops is still reported within a second of its end. Call it from a
/// thread that wakes a few times a second (not a real-time one: it logs).
pub fn summarise_past_seconds() {
    let now = monotonic_second();
    for limit in ALL {
        limit.roll_over(now);
    }
}

/// The limit for one kind of log line.
pub struct LogLimit {
    /// What the summary calls the left-out lines ("undecodable packets").
    what: &'static str,
    /// The second (of the monotonic clock) the counts are for.
    second: AtomicU64,
    /// Lines asked for in that second.
    asked: AtomicU64,
}

impl LogLimit {
    /// A limit for lines about `what` (plural, as the summary reads).
    pub const fn new(what: &'static str) -> LogLimit {
        LogLimit {
            what,
            second: AtomicU64::new(0),
            asked: AtomicU64::new(0),
        }
    }

    /// Whether to write this line. When a new second starts after lines were left out,
    /// writes the summary of the last one first.
    pub fn allow(&self) -> bool {
        self.allow_at(monotonic_second())
    }

    fn allow_at(&self, now: u64) -> bool {
        self.roll_over(now);
        self.asked.fetch_add(1, Relaxed) < LINES_PER_SECOND
    }

    /// When second `now` is not the one counted, starts counting it, and writes the
    /// summary of the one before if it left lines out (one thread wins the race to do so).
    fn roll_over(&self, now: u64) {
        let second = self.second.load(Relaxed);
        if now != second
            && self
                .second
                .compare_exchange(second, now, Relaxed, Relaxed)
                .is_ok()
        {
            let asked = self.asked.swap(0, Relaxed);
            let left_out = asked.saturating_sub(LINES_PER_SECOND);
            if left_out > 0 {
                tracing::warn!(
                    "… and {} more {} in the last second",
                    thousands(left_out),
                    self.what
                );
            }
        }
    }
}

/// Whole seconds of the monotonic clock (no allocation, no lock).
fn monotonic_second() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64
}

/// `9312` as `9,312`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Client-supplied text as it may appear in a log line: control characters (newlines,
/// escape sequences) and backslashes escaped, so it stays on its line and cannot colour
/// or rewrite the terminal.
pub fn escaped(text: &str) -> impl std::fmt::Display + '_ {
    text.escape_debug()
}

/// The message a caught panic carries (`panic!` with a literal or a formatted string),
/// for the log line that says a thread caught one and went on.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_lines_of_a_second_pass_and_the_rest_are_counted() {
        let limit = LogLimit::new("tests");
        let passed = (0..1000).filter(|_| limit.allow_at(7)).count();
        assert_eq!(passed as u64, LINES_PER_SECOND);
        assert_eq!(limit.asked.load(Relaxed), 1000);
        // A new second: the count starts again (after the summary of the last one).
        assert!(limit.allow_at(8));
        assert_eq!(limit.asked.load(Relaxed), 1);
    }

    #[test]
    fn a_second_that_is_over_is_summarised_without_waiting_for_the_next_line() {
        let limit = LogLimit::new("tests");
        for _ in 0..25 {
            limit.allow_at(3);
        }
        limit.roll_over(4);
        assert_eq!(limit.asked.load(Relaxed), 0, "the summary took the count");
        assert_eq!(limit.second.load(Relaxed), 4);
        // The same second again: nothing more to summarise, nothing counted.
        limit.roll_over(4);
        assert!(limit.allow_at(4));
        assert_eq!(limit.asked.load(Relaxed), 1);
    }

    #[test]
    fn numbers_are_grouped_and_text_is_escaped() {
        assert_eq!(thousands(9_312), "9,312");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000_000), "1,000,000");
        let forged = "/a\n2026-01-01T00:00:00Z  INFO forged\u{1b}[31m";
        let line = escaped(forged).to_string();
        assert!(!line.contains('\n') && !line.contains('\u{1b}'), "{line}");
    }
}
