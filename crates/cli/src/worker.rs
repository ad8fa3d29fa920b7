//! `chronus worker`: the hidden entry point of worker processes.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use chronus_engine::{EngineConfig, JoinPoint, StartMode, WorkerArgs};

/// Arguments the supervisor passes to a worker.
#[derive(clap::Args)]
pub struct WorkerCli {
    /// Inherited fd of the slot's shared memory.
    #[arg(long)]
    slot_fd: i32,
    /// Inherited fd of the snapshot area.
    #[arg(long)]
    snapshot_fd: i32,
    /// Generation of the slot binding.
    #[arg(long)]
    generation: u32,
    #[arg(long)]
    sample_rate: u32,
    #[arg(long)]
    block: usize,
    #[arg(long)]
    seed: u64,
    /// The supervisor's pid.
    #[arg(long)]
    parent_pid: u32,
    /// Start fresh at this block.
    #[arg(long, conflicts_with = "join")]
    start_block: Option<u64>,
    /// Join from the snapshot with this request id.
    #[arg(long)]
    join: Option<u64>,
    /// Patch file (default patch when absent).
    #[arg(long)]
    patch: Option<PathBuf>,
    /// Turn off the master DC blocker after the patch.
    #[arg(long)]
    no_dc_blocker: bool,
    /// Turn off the master safety limiter after the patch.
    #[arg(long)]
    no_limiter: bool,
    /// Ask for SCHED_FIFO and locked memory.
    #[arg(long)]
    realtime: bool,
    /// Fault injection: die at this point of joining (starting, snapshot, catching-up,
    /// ready).
    #[arg(long, value_parser = parse_join_point)]
    die_at: Option<JoinPoint>,
    /// Catch up at normal priority; ask for real time once joined (a spare).
    #[arg(long)]
    quiet_catch_up: bool,
}

fn parse_join_point(name: &str) -> Result<JoinPoint, String> {
    JoinPoint::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = JoinPoint::ALL.iter().map(|p| p.name()).collect();
        format!("expected one of {}", names.join(", "))
    })
}

/// Runs the worker; returns only on error.
pub fn run(args: WorkerCli) -> anyhow::Result<ExitCode> {
    // A panic (a bug in DSP code) ends the worker at once, by SIGABRT, rather than after
    // unwinding and a backtrace: the supervisor sees the death at once and fails over,
    // instead of waiting for a missed deadline.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("chronus worker {}: {info}", std::process::id());
        std::process::abort();
    }));
    // Die with the supervisor even if it died before the spawn's prctl took effect.
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .context("prctl(PR_SET_PDEATHSIG)")?;
    let parent = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get() as u32);
    if parent != args.parent_pid {
        bail!("supervisor {} is already gone", args.parent_pid);
    }
    if args.slot_fd < 3 || args.snapshot_fd < 3 || args.slot_fd == args.snapshot_fd {
        bail!("invalid fds {} and {}", args.slot_fd, args.snapshot_fd);
    }
    // SAFETY: the supervisor left exactly these two fds open (not close-on-exec) for us
    // and passes their numbers; nothing else in this process owns them.
    let slot_fd = unsafe { OwnedFd::from_raw_fd(args.slot_fd) };
    // SAFETY: as above.
    let snapshot_fd = unsafe { OwnedFd::from_raw_fd(args.snapshot_fd) };
    let start = match (args.start_block, args.join) {
        (_, Some(request)) => StartMode::Join { request },
        (block, None) => StartMode::Fresh {
            block: block.unwrap_or(0),
        },
    };
    let patch = crate::load_patch_file(args.patch.as_deref())?;
    let worker_args = WorkerArgs {
        slot_fd,
        snapshot_fd,
        generation: args.generation,
        patch,
        config: EngineConfig {
            master: chronus_engine::MasterConfig {
                dc_blocker: !args.no_dc_blocker,
                limiter: !args.no_limiter,
            },
            ..EngineConfig::new(args.sample_rate, args.block, args.seed)
        },
        start,
        parent_pid: args.parent_pid,
        realtime: args.realtime,
        die_at: args.die_at,
        quiet_catch_up: args.quiet_catch_up,
    };
    match chronus_engine::run_worker(worker_args) {
        Ok(never) => match never {},
        Err(chronus_engine::WorkerError::Orphaned(_)) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error.into()),
    }
}
