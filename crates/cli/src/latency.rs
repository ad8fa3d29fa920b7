//! `chronus bench latency`: how long a command takes from the OSC socket to the first
//! frame handed to the sound system that reflects it, on a real JACK server.
//!
//! For each JACK period (64 and 128 frames), each depth (`auto` and fixed ones) and each
//! load (a quiet machine, then `stress-ng --cpu 2` beside it), it starts a private dummy
//! JACK server (`jackd -r -n NAME -d dummy -p PERIOD`), a real `chronus serve --output
//! jack` on it, lets `auto` settle, sends commands over UDP at random moments (so they
//! fall anywhere in a period), and reads the server's own figures: the command latency
//! histogram (receive → the time the clock model gives the stamped frame's hand-over),
//! underruns, JACK's xruns and the depth it ended at. JACK runs real-time (`-R -P 89`)
//! where this process may, else not (`-r`).

use std::net::UdpSocket;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rosc::{OscMessage, OscPacket, OscType};

use crate::soak::{Metrics, SoakServer};

/// Commands sent per row.
const COMMANDS: u32 = 400;

/// How long `--depth auto` plays before the commands: past one calm stretch (10 s), so
/// it has had the chance to lower the depth it started at.
const AUTO_SETTLE: Duration = Duration::from_secs(12);

/// How long a fixed depth plays before the commands.
const FIXED_SETTLE: Duration = Duration::from_secs(2);

/// One row of the table.
struct Row {
    period: u32,
    depth: &'static str,
    loaded: bool,
    figures: std::collections::BTreeMap<String, f64>,
}

/// Runs every configuration and prints the table.
pub fn run() -> anyhow::Result<ExitCode> {
    for tool in ["jackd", "jack_wait"] {
        if Command::new("which").arg(tool).output()?.stdout.is_empty() {
            bail!("{tool} is not installed (scripts/setup.sh installs jackd2)");
        }
    }
    let stress_available = !Command::new("which")
        .arg("stress-ng")
        .output()?
        .stdout
        .is_empty();
    let mut rows = Vec::new();
    for loaded in [false, true] {
        if loaded && !stress_available {
            println!("stress-ng is not installed: no rows under load");
            continue;
        }
        let mut stress = loaded.then(start_stress).transpose()?;
        for period in [64, 128] {
            for depth in ["auto", "1", "2", "4"] {
                let figures = measure(period, depth)?;
                rows.push(Row {
                    period,
                    depth,
                    loaded,
                    figures,
                });
                print_row(rows.last().expect("just pushed"));
            }
        }
        if let Some(stress) = stress.as_mut() {
            let _ = stress.kill();
            let _ = stress.wait();
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn start_stress() -> anyhow::Result<Child> {
    Command::new("stress-ng")
        .args(["--cpu", "2", "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start stress-ng")
}

fn print_row(row: &Row) {
    if row.period == 64 && row.depth == "auto" {
        println!(
            "\n{}: JACK dummy driver, 48 kHz, block 64, {COMMANDS} commands per row",
            if row.loaded {
                "under stress-ng --cpu 2"
            } else {
                "quiet machine"
            }
        );
        println!("| period | --depth | depth at end | p50 ms | p99 ms | underruns | JACK xruns |");
        println!("|-------:|--------:|-------------:|-------:|-------:|----------:|-----------:|");
    }
    let get = |name: &str| row.figures.get(name).copied().unwrap_or(f64::NAN);
    println!(
        "| {:>6} | {:>7} | {:>12} | {:>6.2} | {:>6.2} | {:>9} | {:>10} |",
        row.period,
        row.depth,
        get("depth_blocks"),
        get("command_latency_ms_p50"),
        get("command_latency_ms_p99"),
        get("underruns"),
        get("jack_xruns"),
    );
}

/// One configuration: a private JACK server at `period`, a server at `depth`, the
/// commands, and the server's figures.
fn measure(period: u32, depth: &str) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let name = format!("chronus-bench-{}-{period}-{depth}", std::process::id());
    let _jack = JackServer::start(&name, period)?;
    let server = SoakServer::spawn(
        &["--output", "jack", "--depth", depth],
        &[("JACK_DEFAULT_SERVER", name.as_str())],
    )?;
    let metrics = Metrics::new(server.addr)?;
    std::thread::sleep(if depth == "auto" {
        AUTO_SETTLE
    } else {
        FIXED_SETTLE
    });
    let socket = UdpSocket::bind("127.0.0.1:0")?;
    // A fixed sequence of pauses from 2 to 10 ms, so commands land anywhere in a period.
    let mut random = 0x2545_f491_4f6c_dd1d_u64;
    for i in 0..COMMANDS {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        let packet = OscPacket::Message(OscMessage {
            addr: "/mod/sine/freq".into(),
            args: vec![OscType::Float(200.0 + (i % 100) as f32)],
        });
        socket.send_to(&rosc::encoder::encode(&packet)?, server.addr)?;
        std::thread::sleep(Duration::from_micros(2_000 + random % 8_000));
    }
    metrics.sync()?;
    let figures = metrics.read()?;
    server.quit(&metrics)?;
    Ok(figures)
}

/// A private dummy JACK server, stopped when dropped.
struct JackServer {
    child: Child,
}

impl JackServer {
    fn start(name: &str, period: u32) -> anyhow::Result<JackServer> {
        // Real-time where allowed, above the workers (as a JACK setup should be): a JACK
        // thread descheduled for a period is an xrun.
        let may_use_realtime = Command::new("chrt")
            .args(["-f", "1", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let scheduling: &[&str] = if may_use_realtime {
            &["-R", "-P", "89"]
        } else {
            &["-r"]
        };
        let child = Command::new("jackd")
            .args(scheduling)
            .args(["-n", name, "-d", "dummy", "-r", "48000", "-p"])
            .arg(period.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start jackd")?;
        let server = JackServer { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = Command::new("jack_wait")
                .args(["-c", "-s", name])
                .env("JACK_NO_START_SERVER", "1")
                .output()?;
            if String::from_utf8_lossy(&ready.stdout).trim() == "running" {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("the dummy JACK server {name} did not start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for JackServer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}
