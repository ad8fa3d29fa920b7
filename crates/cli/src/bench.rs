//! `chronus bench`: measures what DESIGN.md budgets, on this machine, now.
//!
//! `chronus bench failover` runs a real server in-process (real worker processes, real
//! shared memory, the null sink paced in real time), then:
//! 1. sends commands over real UDP and reads the command latency (receive → first frame
//!    that reflects it) from the server's own histogram;
//! 2. SIGKILLs the active worker many times, each at a random moment, and measures
//!    detection (kill → pidfd wake-up), failover (detection → first block served from the
//!    other slot) and rebuild (spare spawned → joined the lockstep).
//!
//! It prints medians and tails; the machine is shared and noisy, so read the p50 first.

use std::net::UdpSocket;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chronus_supervisor::{OutputChoice, ServeConfig, SlotState, Supervisor};
use rosc::{OscMessage, OscPacket, OscType};

/// Arguments of `chronus bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum, default_value = "failover")]
    what: BenchKind,
    /// How many times to kill the active worker.
    #[arg(long, default_value_t = 50)]
    kills: usize,
    /// How many commands to send for the latency measurement.
    #[arg(long, default_value_t = 500)]
    commands: usize,
    /// Frames per block.
    #[arg(long, default_value_t = 64)]
    block: usize,
    /// Control latency in blocks.
    #[arg(long, default_value_t = 2)]
    depth: u64,
    /// How long the soak runs, in seconds.
    #[arg(long, default_value_t = 600)]
    seconds: u64,
}

/// Benchmarks available.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchKind {
    /// Detection, failover, rebuild and command latency of a running server.
    Failover,
    /// A long run of fast control from three clients while workers are killed (singly
    /// every 500 ms, both every 30 s): accounting, leaks and what was heard.
    Soak,
    /// Command latency (OSC receive to the frame handed to JACK) on private dummy JACK
    /// servers at periods 64 and 128, depth auto and fixed, quiet and under stress-ng.
    Latency,
}

/// Runs the benchmark and prints its table.
pub fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        BenchKind::Failover => failover(&args),
        BenchKind::Soak => {
            let _log = crate::init_logging("error");
            crate::soak::run(args.seconds)
        }
        BenchKind::Latency => {
            let _log = crate::init_logging("error");
            crate::latency::run()
        }
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn row(name: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    println!(
        "| {name:<34} | {:>5} | {:>9.3} | {:>9.3} | {:>9.3} | {:>9.3} |",
        values.len(),
        percentile(&values, 0.5),
        percentile(&values, 0.95),
        percentile(&values, 0.99),
        values.last().copied().unwrap_or(f64::NAN)
    );
}

fn failover(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    // Quiet by default (the table is the output); CHRONUS_LOG=warn shows each underrun.
    let _log = crate::init_logging("error");
    let stop = Arc::new(AtomicBool::new(false));
    let config = ServeConfig {
        osc: "127.0.0.1:0".parse()?,
        output: OutputChoice::Null,
        sample_rate: 48_000,
        block_frames: args.block,
        depth: chronus_supervisor::depth::DepthSetting::Fixed(args.depth),
        seed: 0,
        patch: chronus_dsp::PatchDesc::default_patch(),
        patch_path: None,
        allow_fault_injection: false,
        command_log: None,
        record: Vec::new(),
        worker_exe: std::env::current_exe()?,
        // One block per period: the latency measured is the depth's, not a period's wait.
        device_buffer: Some(args.block as u32),
        device_period_frames: None,
        join_timeout: Duration::from_secs(5),
        realtime: true,
        master: chronus_engine::MasterConfig::default(),
        tcp_idle_timeout: chronus_supervisor::transport::DEFAULT_TCP_IDLE_TIMEOUT,
        exposure: chronus_supervisor::exposure::Exposure::default(),
        tcp_framing: chronus_supervisor::framing::Framing::default(),
        state: None,
        resume: None,
        library: chronus_supervisor::library::Library::new(None),
    };
    let mut server = Supervisor::start(config, Arc::clone(&stop))?;
    // This thread plays the supervisor loop: schedule it as `serve` would.
    let _ = chronus_realtime::make_current_thread_realtime(chronus_realtime::SUPERVISOR_PRIORITY);
    let addr = server.osc_addr();
    let ready = |s: &Supervisor| {
        matches!(
            (s.slot_state(0), s.slot_state(1)),
            (SlotState::Active, SlotState::Standby) | (SlotState::Standby, SlotState::Active)
        )
    };
    step_until(&mut server, Duration::from_secs(10), |s| ready(s))
        .context("server did not start")?;
    let at_start = server.build_report();

    // 1. Command latency over real UDP.
    let sender = std::thread::spawn({
        let count = args.commands;
        move || -> anyhow::Result<()> {
            let socket = UdpSocket::bind("127.0.0.1:0")?;
            for i in 0..count {
                let message = OscPacket::Message(OscMessage {
                    addr: "/mod/sine/freq".into(),
                    args: vec![OscType::Float(200.0 + (i % 400) as f32)],
                });
                socket.send_to(&rosc::encoder::encode(&message)?, addr)?;
                std::thread::sleep(Duration::from_micros(2_000 + (i as u64 * 7919) % 1_000));
            }
            Ok(())
        }
    });
    while !sender.is_finished() {
        server.step()?;
    }
    sender
        .join()
        .map_err(|_| anyhow::anyhow!("sender panicked"))??;
    step_until(&mut server, Duration::from_secs(2), |s| {
        s.shared().engine_counts().applied >= args.commands as u64
    })?;
    let metrics = Arc::clone(&server.shared().metrics);
    let latency =
        [0.5, 0.95, 0.99].map(|q| metrics.command_latency.quantile_ms(q).unwrap_or(f64::NAN));

    // 2. Kills at random moments.
    let mut detection = Vec::new();
    let mut failover = Vec::new();
    let mut rebuild = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..args.kills {
        step_until(&mut server, Duration::from_secs(10), |s| ready(s))
            .context("spare did not become ready")?;
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let settle = Instant::now() + Duration::from_micros(20_000 + rng % 30_000);
        while Instant::now() < settle {
            server.step()?;
        }
        let shared = Arc::clone(server.shared());
        let active = shared.active.load(Ordering::Acquire);
        let Some(pid) = server.worker_pid(active) else {
            bail!("no active worker");
        };
        let failovers = metrics.failover_count.load(Ordering::Acquire);
        let replacements = metrics.replacements.load(Ordering::Acquire);
        let killed_at = shared.now_ns();
        rustix::process::kill_process(
            rustix::process::Pid::from_raw(pid as i32).context("bad pid")?,
            rustix::process::Signal::KILL,
        )?;
        step_until(&mut server, Duration::from_secs(5), |s| {
            s.shared().slots[active]
                .dead_since_ns
                .load(Ordering::Acquire)
                != 0
                || s.slot_state(active) != SlotState::Active
        })?;
        let detected = shared.slots[active].dead_since_ns.load(Ordering::Acquire);
        if detected != 0 {
            detection.push(detected.saturating_sub(killed_at) as f64 / 1e6);
        }
        step_until(&mut server, Duration::from_secs(5), |_| {
            metrics.failover_count.load(Ordering::Acquire) > failovers
        })?;
        failover.push(metrics.failover.last_ms().unwrap_or(f64::NAN));
        step_until(&mut server, Duration::from_secs(10), |_| {
            metrics.replacements.load(Ordering::Acquire) > replacements
        })?;
        rebuild.push(metrics.rebuild.last_ms().unwrap_or(f64::NAN));
    }
    let report = server.build_report();
    stop.store(true, Ordering::Release);
    server.run()?;

    println!(
        "chronus bench failover: block {} frames, depth {} ({:.2} ms control latency), 48 kHz, null sink, {} kills",
        args.block,
        args.depth,
        args.depth as f64 * args.block as f64 / 48.0,
        args.kills
    );
    println!(
        "| {:<34} | {:>5} | {:>9} | {:>9} | {:>9} | {:>9} |",
        "what (ms)", "n", "p50", "p95", "p99", "max"
    );
    println!("|{}|", "-".repeat(92));
    row("worker death detection", detection);
    row("failover (detection -> served)", failover);
    row("spare rebuilt and joined", rebuild);
    println!(
        "| {:<34} | {:>5} | {:>9.3} | {:>9.3} | {:>9.3} | {:>9} |",
        "command latency (UDP -> frame)", args.commands, latency[0], latency[1], latency[2], "-"
    );
    println!(
        "resources before -> after the kills: open fds {} -> {}, mapped segments {} -> {}, shm leaks {} -> {}, live children {} -> {}",
        at_start.open_fds,
        report.open_fds,
        at_start.mapped_segments,
        report.mapped_segments,
        at_start.shm_leaks,
        report.shm_leaks,
        at_start.live_children,
        report.live_children
    );
    println!(
        "underruns {}, lockstep mismatches {} of {} blocks compared, crash_count {}, replacements {}",
        report.underruns,
        report.lockstep_mismatches,
        report.lockstep_blocks_compared,
        report.crash_count,
        report.replacements
    );
    Ok(ExitCode::SUCCESS)
}

fn step_until(
    server: &mut Supervisor,
    limit: Duration,
    mut done: impl FnMut(&Supervisor) -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while !done(server) {
        if Instant::now() > deadline {
            bail!("timed out after {limit:?}");
        }
        server.step()?;
    }
    Ok(())
}
