//! Cross-process futex wait/wake on an `AtomicU32` that lives in shared memory.
//!
//! Why: a worker that is ahead of the output clock sleeps until the output
//! thread publishes a new horizon, without spinning and without a syscall on
//! the output side when nobody sleeps. The futex word lives in a memfd mapped
//! by several processes, so the `FUTEX_PRIVATE_FLAG` must NOT be used (private
//! futexes are keyed by the address space and would never see the other
//! process's wake-up).

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::io::Errno;
use rustix::thread::futex;

/// Why [`wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitResult {
    /// Another thread or process called [`wake`] on the word.
    Woken,
    /// The word no longer held `expected` when the kernel looked (`EAGAIN`):
    /// a wake-up happened before we could sleep. Re-check the condition.
    ValueChanged,
    /// The timeout elapsed.
    TimedOut,
    /// A signal interrupted the wait (`EINTR`). Re-check the condition.
    Interrupted,
    /// The kernel refused the wait with this errno (should not happen).
    Failed(i32),
}

/// Sleeps while `*word == expected`, at most `timeout` (`None`: no limit).
///
/// Why: the blocking half of a no-lost-wake-up protocol: read the word, check
/// your condition, then wait on the value you read; a concurrent change of the
/// word (followed by [`wake`]) makes this return immediately. Spurious returns
/// are possible, so callers loop and re-check their condition.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> WaitResult {
    let ts = timeout.map(|t| futex::Timespec {
        tv_sec: i64::try_from(t.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(t.subsec_nanos()),
    });
    match futex::wait(word, futex::Flags::empty(), expected, ts.as_ref()) {
        Ok(()) => WaitResult::Woken,
        Err(Errno::AGAIN) => WaitResult::ValueChanged,
        Err(Errno::TIMEDOUT) => WaitResult::TimedOut,
        Err(Errno::INTR) => WaitResult::Interrupted,
        Err(e) => WaitResult::Failed(e.raw_os_error()),
    }
}

/// Wakes up to `count` waiters sleeping on `word` (in any process mapping the
/// same memory) and returns how many were woken.
///
/// Why: the waking half of the protocol; change the word first, then wake.
/// Errors (which the kernel only reports for invalid addresses) count as zero
/// woken: the caller cannot do anything better on a real-time path.
pub fn wake(word: &AtomicU32, count: u32) -> usize {
    futex::wake(word, futex::Flags::empty(), count).unwrap_or(0)
}

/// Wakes every waiter sleeping on `word`.
///
/// Why: the output thread wakes whoever waits for the horizon, however many.
pub fn wake_all(word: &AtomicU32) -> usize {
    wake(word, i32::MAX as u32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::Instant;

    #[test]
    fn wait_times_out() {
        let word = AtomicU32::new(5);
        let start = Instant::now();
        let r = wait(&word, 5, Some(Duration::from_millis(50)));
        let took = start.elapsed();
        assert_eq!(r, WaitResult::TimedOut);
        assert!(took >= Duration::from_millis(45), "{took:?}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }

    #[test]
    fn wait_returns_at_once_on_mismatch() {
        let word = AtomicU32::new(5);
        assert_eq!(
            wait(&word, 4, Some(Duration::from_secs(5))),
            WaitResult::ValueChanged
        );
    }

    #[test]
    fn wake_releases_a_waiter() {
        let word = Arc::new(AtomicU32::new(0));
        let w2 = Arc::clone(&word);
        let t = std::thread::spawn(move || {
            let start = Instant::now();
            while w2.load(Ordering::Acquire) == 0 {
                wait(&w2, 0, Some(Duration::from_secs(10)));
            }
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(30));
        word.store(1, Ordering::Release);
        wake_all(&word);
        let took = t.join().unwrap();
        assert!(took < Duration::from_secs(5), "{took:?}");
    }
}
