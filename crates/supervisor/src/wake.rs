//! Wake-ups for threads that sleep on events instead of a fixed tick: the supervisor loop
//! and the command log's writer.
//!
//! The loop waits on its workers' pidfds and on one file descriptor (an eventfd), which
//! the output clock signals when it leaves a notice or flags a slot, and the OSC thread
//! when it hands the loop a control request. The command log's writer waits on one of its
//! own, which the output clock signals after a period that stamped commands. A signal
//! never blocks and allocates nothing (one non-blocking `write`), so the audio path may
//! give it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{eventfd, poll, EventfdFlags, PollFd, PollFlags, Timespec};

/// An eventfd the loop waits on; any thread may signal it.
pub struct Wake {
    /// `None` only if the kernel refused an eventfd: the loop then wakes on its timeout.
    fd: Option<OwnedFd>,
}

impl Wake {
    /// A fresh, unsignalled wake-up.
    pub fn new() -> Wake {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).ok();
        if fd.is_none() {
            tracing::warn!("no eventfd: the supervisor loop will wake on its timeout only");
        }
        Wake { fd }
    }

    /// Wakes the loop (or its next wait). Never blocks, allocates nothing.
    pub fn signal(&self) {
        if let Some(fd) = &self.fd {
            let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
        }
    }

    /// Forgets the signals so far (call before looking at what they announced).
    pub fn clear(&self) {
        if let Some(fd) = &self.fd {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(fd, &mut count);
        }
    }

    /// Sleeps until a signal or `timeout`, and forgets the signals (for a thread that
    /// waits on nothing else).
    pub fn wait(&self, timeout: std::time::Duration) {
        let Some(fd) = &self.fd else {
            std::thread::sleep(timeout);
            return;
        };
        let mut fds = [PollFd::new(fd, PollFlags::IN)];
        let timeout = Timespec {
            tv_sec: i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        // An interrupted poll is an early return, which the caller's loop absorbs.
        let _ = poll(&mut fds, Some(&timeout));
        self.clear();
    }

    /// The fd to wait on for readability.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(AsFd::as_fd)
    }
}

impl Default for Wake {
    fn default() -> Self {
        Wake::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(wake: &Wake) -> bool {
        let mut fds = [PollFd::from_borrowed_fd(wake.fd().unwrap(), PollFlags::IN)];
        poll(
            &mut fds,
            Some(&Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            }),
        )
        .unwrap()
            == 1
    }

    #[test]
    fn a_signal_makes_the_fd_readable_until_cleared() {
        let wake = Wake::new();
        assert!(!readable(&wake));
        wake.signal();
        wake.signal();
        assert!(readable(&wake));
        wake.clear();
        assert!(!readable(&wake));
    }

    #[test]
    fn a_wait_returns_on_a_signal_and_clears_it() {
        let wake = Wake::new();
        wake.signal();
        let started = std::time::Instant::now();
        wake.wait(std::time::Duration::from_secs(30));
        assert!(started.elapsed() < std::time::Duration::from_secs(20));
        assert!(!readable(&wake));
    }
}
