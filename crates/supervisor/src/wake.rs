//! Wake-ups for the supervisor loop, so it sleeps on events instead of a fixed tick.
//!
//! The loop waits on its workers' pidfds and on this one file descriptor (an eventfd),
//! which the output clock signals when it leaves a notice or flags a slot, and the OSC
//! thread when it hands the loop a control request. A signal never blocks and allocates
//! nothing (one non-blocking `write`), so the audio path may give it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::event::{eventfd, EventfdFlags};

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
    use rustix::event::{poll, PollFd, PollFlags, Timespec};

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
}
