//! Worker processes: spawning the re-executed binary with its slot, and watching it.
//!
//! Workers are never forked from this (threaded) process: they are `chronus worker …`
//! started fresh, with exactly two fds left open for them (their slot and the snapshot
//! area; everything else we open is close-on-exec). They get `SIGKILL` when the thread
//! that spawned them dies (`PR_SET_PDEATHSIG` follows the spawning *thread*), which is why
//! only the supervisor's one long-lived loop thread spawns them. A `pidfd` per worker
//! lets that loop learn of a death within one `poll`. Each worker runs in a process group
//! of its own, so signals meant for the server's job (Ctrl-C) never reach it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::Instant;

use anyhow::Context;
use chronus_engine::{EngineConfig, JoinPoint, StartMode};
use rustix::process::{Pid, PidfdFlags, Signal};

/// A running worker process.
pub struct Worker {
    child: Child,
    pidfd: OwnedFd,
    /// Its process id.
    pub pid: u32,
    /// When it was spawned.
    pub spawned_at: Instant,
}

/// What a worker is told on its command line.
pub struct WorkerSpec<'a> {
    /// The `chronus` binary.
    pub exe: &'a Path,
    /// Its slot.
    pub slot_fd: BorrowedFd<'a>,
    /// The snapshot area.
    pub snapshot_fd: BorrowedFd<'a>,
    /// Generation of the slot binding.
    pub generation: u32,
    /// Fresh or joining.
    pub start: StartMode,
    /// Stream settings.
    pub config: EngineConfig,
    /// Patch file (`None` = built-in default).
    pub patch_path: Option<&'a Path>,
    /// Ask for real-time scheduling.
    pub realtime: bool,
    /// Fault injection: the point of its join at which this spare dies.
    pub die_at: Option<JoinPoint>,
    /// A spare joining a heard worker: it catches up at normal priority.
    pub spare: bool,
}

impl Worker {
    /// Starts `chronus worker` for one slot.
    ///
    /// # Errors
    /// When the process cannot be started or its pidfd opened.
    pub fn spawn(spec: &WorkerSpec<'_>) -> anyhow::Result<Worker> {
        let slot_fd = spec.slot_fd.as_raw_fd();
        let snapshot_fd = spec.snapshot_fd.as_raw_fd();
        let mut command = std::process::Command::new(spec.exe);
        command
            .arg("worker")
            .arg("--slot-fd")
            .arg(slot_fd.to_string())
            .arg("--snapshot-fd")
            .arg(snapshot_fd.to_string())
            .arg("--generation")
            .arg(spec.generation.to_string())
            .arg("--sample-rate")
            .arg(spec.config.sample_rate.to_string())
            .arg("--block")
            .arg(spec.config.block_frames.to_string())
            .arg("--seed")
            .arg(spec.config.seed.to_string())
            .arg("--parent-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            // A process group of its own: Ctrl-C in a terminal signals the foreground
            // group, which must stop the server cleanly, not kill its workers under it.
            .process_group(0);
        match spec.start {
            StartMode::Fresh { block } => command.arg("--start-block").arg(block.to_string()),
            StartMode::Join { request } => command.arg("--join").arg(request.to_string()),
        };
        if !spec.config.master.dc_blocker {
            command.arg("--no-dc-blocker");
        }
        if !spec.config.master.limiter {
            command.arg("--no-limiter");
        }
        if spec.realtime {
            command.arg("--realtime");
        }
        if let Some(path) = spec.patch_path {
            command.arg("--patch").arg(path);
        }
        if spec.spare {
            command.arg("--quiet-catch-up");
        }
        if let Some(point) = spec.die_at {
            command.arg("--die-at").arg(point.name());
        }
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed. It makes three raw syscalls through rustix
        // (two fcntl, one prctl), allocates nothing and takes no lock. The two fds are
        // open in the parent for the whole of `spawn`, so they are valid in the child.
        unsafe {
            command.pre_exec(move || {
                for fd in [slot_fd, snapshot_fd] {
                    // SAFETY: `fd` is open (see above) and only borrowed for this call.
                    let fd = BorrowedFd::borrow_raw(fd);
                    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                }
                rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("cannot start worker {}", spec.exe.display()))?;
        let pid = child.id();
        let pidfd = Pid::from_raw(pid as i32)
            .context("worker pid is not a valid pid")
            .and_then(|p| {
                rustix::process::pidfd_open(p, PidfdFlags::empty()).context("pidfd_open failed")
            })?;
        Ok(Worker {
            child,
            pidfd,
            pid,
            spawned_at: Instant::now(),
        })
    }

    /// The pidfd, readable once the process has exited.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// Kills the process (SIGKILL also ends a stopped one) and reaps it.
    /// Returns how it ended, for the log.
    pub fn kill_and_reap(mut self) -> String {
        let _ = rustix::process::pidfd_send_signal(&self.pidfd, Signal::KILL);
        self.reap()
    }

    /// Reaps an exited process (blocks only until it is gone).
    pub fn reap(&mut self) -> String {
        match self.child.wait() {
            Ok(status) => describe_exit(status),
            Err(e) => format!("unknown exit ({e})"),
        }
    }
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(signal) = status.signal() {
        let name = match signal {
            6 => "SIGABRT",
            9 => "SIGKILL",
            11 => "SIGSEGV",
            15 => "SIGTERM",
            _ => "",
        };
        format!("killed by signal {signal} {name}")
            .trim_end()
            .to_string()
    } else {
        format!("exited with {}", status.code().unwrap_or(-1))
    }
}
