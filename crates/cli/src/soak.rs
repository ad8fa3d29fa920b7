//! `chronus bench soak`: a long run of everything at once, to show that nothing leaks,
//! nothing is lost unaccounted, and only double faults are heard.
//!
//! It starts a real server (`chronus serve --output null`, its own process), then for
//! `--seconds` (600 by default): three clients send about 1,000 parameter changes a second
//! between them (over UDP and over TCP reading every reply), plus a third client over TCP
//! that asks for `/metrics` and never reads a reply (the server disconnects it when its
//! replies pile up; it connects again), while the
//! active worker is killed every 500 ms (once a spare is ready) and both workers every
//! 30 s. At the end it prints, from the server's own metrics and the kernel's counters:
//! the two accounting identities, what the clients sent against what the server received
//! beside the UDP receive-buffer drops the kernel counted, the underruns outside the double
//! faults, the lockstep mismatches, and the server's file descriptors, threads and memory
//! before and after. It exits non-zero if an identity fails, a block differed, a single
//! kill was heard, or something grew.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rosc::{OscMessage, OscPacket, OscType};

/// Changes per second from each of the two clients that send them (the third asks for
/// status replies it never reads).
const RATE_PER_CLIENT: u64 = 500;
/// `/metrics` requests a second from the client that never reads the replies (about a
/// kilobyte each: its socket's buffers fill within seconds).
const UNREAD_PER_SECOND: u64 = 100;
/// How often the active worker is killed.
const SINGLE_KILL_EVERY: Duration = Duration::from_millis(500);
/// How often both workers are killed at once.
const DOUBLE_KILL_EVERY: Duration = Duration::from_secs(30);

/// Runs the soak for `seconds` and prints its table.
pub fn run(seconds: u64) -> anyhow::Result<ExitCode> {
    let server = SoakServer::start()?;
    let metrics = Metrics::new(server.addr)?;
    // Playing, with its spare ready: every thread it will have is running.
    metrics.wait_for_new_pair(&[None, None], Duration::from_secs(30))?;
    let before_proc = ProcessFigures::of(server.pid())?;
    let before = metrics.read()?;
    let rcvbuf_before = udp_rcvbuf_errors();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = [
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    ];
    let clients = vec![
        spawn_client("udp", Arc::clone(&stop), Arc::clone(&sent[0]), {
            let addr = server.addr;
            move |stop, sent| udp_client(addr, stop, sent)
        }),
        spawn_client("tcp", Arc::clone(&stop), Arc::clone(&sent[1]), {
            let addr = server.addr;
            move |stop, sent| tcp_client(addr, stop, sent, true)
        }),
        spawn_client(
            "tcp, never reads",
            Arc::clone(&stop),
            Arc::clone(&sent[2]),
            {
                let addr = server.addr;
                move |stop, sent| tcp_client(addr, stop, sent, false)
            },
        ),
    ];
    println!("soak: {seconds} s; killing the active worker every {SINGLE_KILL_EVERY:?} and both every {DOUBLE_KILL_EVERY:?}");
    let started = Instant::now();
    let (mut single_kills, mut double_kills) = (0u64, 0u64);
    let mut double_fault_underruns = 0.0;
    let mut last_single = Instant::now();
    let mut last_double = Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_millis(20));
        if last_double.elapsed() >= DOUBLE_KILL_EVERY {
            let m = metrics.read()?;
            let pids = [pid_of(&m, 0), pid_of(&m, 1)];
            for pid in pids.into_iter().flatten() {
                kill(pid);
            }
            double_kills += 1;
            let after = metrics.wait_for_new_pair(&pids, Duration::from_secs(30))?;
            double_fault_underruns += after["underruns"] - m["underruns"];
            last_double = Instant::now();
            last_single = Instant::now();
            continue;
        }
        if last_single.elapsed() >= SINGLE_KILL_EVERY {
            let m = metrics.read()?;
            if m["spare_ready"] == 1.0 && m["live_children"] == 2.0 {
                if let Some(pid) = active_pid(&m) {
                    kill(pid);
                    single_kills += 1;
                }
                last_single = Instant::now();
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    let sent: Vec<u64> = sent.iter().map(|s| s.load(Ordering::Relaxed)).collect();
    // Everything sent has arrived or been dropped by now; wait for the pair and the engines.
    metrics.sync()?;
    // The server closes what the clients left within its poll interval.
    let mut after_proc = ProcessFigures::of(server.pid())?;
    for _ in 0..20 {
        if after_proc.fds <= before_proc.fds && after_proc.threads <= before_proc.threads {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        after_proc = ProcessFigures::of(server.pid())?;
    }
    let after = metrics.read()?;
    let rcvbuf_after = udp_rcvbuf_errors();
    server.quit(&metrics)?;

    let grew = |name: &str| after[name] - before[name];
    let received = grew("commands_received");
    let accepted = grew("commands_accepted");
    let rejected = grew("commands_rejected");
    let applied = grew("commands_applied");
    let dropped = grew("commands_dropped");
    let pending = after["commands_pending"];
    // The metrics' own queries are commands too: count what the clients sent.
    let client_sent: u64 = sent.iter().sum();
    let underruns_outside = grew("underruns") - double_fault_underruns;
    println!();
    println!("| what | value |");
    println!("| --- | --- |");
    println!(
        "| commands sent by the clients (udp, tcp, tcp never reading) | {} ({}, {}, {}) |",
        client_sent, sent[0], sent[1], sent[2]
    );
    println!("| commands_received | {received} |");
    println!("| received = accepted + rejected | {received} = {accepted} + {rejected} |");
    println!("| accepted = applied + pending + dropped | {accepted} = {applied} + {pending} + {dropped} |");
    println!(
        "| the clients' shortfall (sent, not received) beside the kernel's UDP RcvbufErrors | {} beside {} |",
        (client_sent as f64 + metrics.queries() as f64 - received).max(0.0),
        match (rcvbuf_before, rcvbuf_after) {
            (Some(a), Some(b)) => (b - a).to_string(),
            _ => "unknown".to_string(),
        }
    );
    println!(
        "| TCP clients dropped for not reading | {} |",
        grew("tcp_slow_clients_dropped")
    );
    println!("| single kills, double kills | {single_kills}, {double_kills} |");
    println!("| cold restarts | {} |", grew("cold_restarts"));
    println!("| underruns in double faults, outside them | {double_fault_underruns}, {underruns_outside} |");
    println!(
        "| lockstep mismatches (of blocks compared) | {} (of {}) |",
        grew("lockstep_mismatches"),
        grew("lockstep_blocks_compared")
    );
    println!(
        "| fds before, after | {}, {} |",
        before_proc.fds, after_proc.fds
    );
    println!(
        "| threads before, after | {} ({}), {} ({}) |",
        before_proc.threads,
        before_proc.names.join(", "),
        after_proc.threads,
        after_proc.names.join(", ")
    );
    println!(
        "| RSS before, after (MiB) | {:.1}, {:.1} |",
        before_proc.rss_kib as f64 / 1024.0,
        after_proc.rss_kib as f64 / 1024.0
    );

    let mut failures = Vec::new();
    if received != accepted + rejected {
        failures.push("received != accepted + rejected");
    }
    if accepted != applied + pending + dropped {
        failures.push("accepted != applied + pending + dropped");
    }
    if grew("lockstep_mismatches") != 0.0 {
        failures.push("a block differed between the workers");
    }
    if underruns_outside != 0.0 {
        failures.push("a single fault was heard (underruns outside the double faults)");
    }
    if after_proc.fds > before_proc.fds || after_proc.threads > before_proc.threads {
        failures.push("file descriptors or threads grew");
    }
    if failures.is_empty() {
        println!("\nsoak: every figure holds");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nsoak: FAILED: {}", failures.join("; "));
        Ok(ExitCode::FAILURE)
    }
}

/// The server under soak, a child process.
pub(crate) struct SoakServer {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl SoakServer {
    fn start() -> anyhow::Result<SoakServer> {
        SoakServer::spawn(&["--output", "null", "--depth", "24"], &[])
    }

    /// `chronus serve --osc 127.0.0.1:0 --block 64 <args>` with `env`, logging errors
    /// only (unless `CHRONUS_LOG` says otherwise); waits until it serves.
    pub(crate) fn spawn(args: &[&str], env: &[(&str, &str)]) -> anyhow::Result<SoakServer> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--osc", "127.0.0.1:0", "--block", "64"])
            .args(args)
            .envs(env.iter().copied())
            .env(
                "CHRONUS_LOG",
                std::env::var("CHRONUS_LOG").unwrap_or_else(|_| "error".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .context("cannot start chronus serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().context("serve ended before it served")??;
            if let Some(rest) = line.split("serving OSC on udp ").nth(1) {
                break rest.split(';').next().unwrap_or("").trim().parse()?;
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Ok(SoakServer { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn quit(mut self, metrics: &Metrics) -> anyhow::Result<()> {
        metrics.ask("/quit", vec![]);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("the server exited with {status}");
                }
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        bail!("the server did not stop after /quit")
    }
}

impl Drop for SoakServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the server's metrics over UDP (asking again if a datagram is lost).
pub(crate) struct Metrics {
    socket: UdpSocket,
    server: SocketAddr,
    queries: AtomicU64,
}

impl Metrics {
    pub(crate) fn new(server: SocketAddr) -> anyhow::Result<Metrics> {
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.set_read_timeout(Some(Duration::from_millis(200)))?;
        Ok(Metrics {
            socket,
            server,
            queries: AtomicU64::new(0),
        })
    }

    /// Messages this reader sent (each is a command the server counts).
    fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    pub(crate) fn ask(&self, address: &str, args: Vec<OscType>) {
        let packet = OscPacket::Message(OscMessage {
            addr: address.to_string(),
            args,
        });
        if let Ok(bytes) = rosc::encoder::encode(&packet) {
            if self.socket.send_to(&bytes, self.server).is_ok() {
                self.queries.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn reply(&self, address: &str, within: Duration) -> Option<OscMessage> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            if let Ok((len, _)) = self.socket.recv_from(&mut buf) {
                if let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..len]) {
                    if m.addr == address {
                        return Some(m);
                    }
                }
            }
        }
        None
    }

    pub(crate) fn read(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        for _ in 0..20 {
            self.ask("/metrics", vec![]);
            if let Some(m) = self.reply("/metrics.reply", Duration::from_secs(1)) {
                let mut values = BTreeMap::new();
                for pair in m.args.chunks(2) {
                    let (Some(OscType::String(name)), Some(value)) = (pair.first(), pair.get(1))
                    else {
                        continue;
                    };
                    let number = match value {
                        OscType::Float(v) => f64::from(*v),
                        OscType::Double(v) => *v,
                        OscType::Int(v) => f64::from(*v),
                        OscType::Long(v) => *v as f64,
                        OscType::String(role) => role_number(role),
                        _ => continue,
                    };
                    values.insert(name.clone(), number);
                }
                return Ok(values);
            }
        }
        bail!("the server does not answer /metrics")
    }

    pub(crate) fn sync(&self) -> anyhow::Result<()> {
        for id in 0..20 {
            self.ask("/sync", vec![OscType::Int(id)]);
            if self.reply("/synced", Duration::from_secs(1)).is_some() {
                return Ok(());
            }
        }
        bail!("the server does not answer /sync")
    }

    fn wait_for_new_pair(
        &self,
        old: &[Option<u32>; 2],
        within: Duration,
    ) -> anyhow::Result<BTreeMap<String, f64>> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let m = self.read()?;
            let replaced =
                (0..2).all(|slot| pid_of(&m, slot).is_some_and(|pid| !old.contains(&Some(pid))));
            if replaced && m["spare_ready"] == 1.0 && m["live_children"] == 2.0 {
                return Ok(m);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the pair did not come back within {within:?} after a double kill")
    }
}

/// `slot.N.role` as a number: 4 for active (the others do not matter here).
fn role_number(role: &str) -> f64 {
    if role == "active" {
        4.0
    } else {
        0.0
    }
}

fn pid_of(m: &BTreeMap<String, f64>, slot: usize) -> Option<u32> {
    m.get(&format!("slot.{slot}.pid"))
        .map(|&pid| pid as u32)
        .filter(|&pid| pid != 0)
}

fn active_pid(m: &BTreeMap<String, f64>) -> Option<u32> {
    (0..2)
        .find(|slot| m.get(&format!("slot.{slot}.role")) == Some(&4.0))
        .and_then(|slot| pid_of(m, slot))
}

fn kill(pid: u32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

fn spawn_client(
    name: &str,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    body: impl FnOnce(&AtomicBool, &AtomicU64) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("soak {name}"))
        .spawn(move || body(&stop, &sent))
        .expect("a client thread")
}

/// The `n`-th parameter change: the filter's cutoff, a slow sweep.
fn change(n: u64) -> Vec<u8> {
    let packet = OscPacket::Message(OscMessage {
        addr: "/mod/filter/cutoff".into(),
        args: vec![OscType::Float(500.0 + (n % 4000) as f32)],
    });
    rosc::encoder::encode(&packet).unwrap_or_default()
}

/// Paces a client at `rate` a second: how many are due by now.
fn due(started: Instant, rate: u64) -> u64 {
    (started.elapsed().as_secs_f64() * rate as f64) as u64
}

fn udp_client(server: SocketAddr, stop: &AtomicBool, sent: &AtomicU64) {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return;
    };
    let started = Instant::now();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        while n < due(started, RATE_PER_CLIENT) {
            if socket.send_to(&change(n), server).is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            n += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Sends changes (`reads`: and reads every reply) or, when it never reads, `/metrics`
/// requests whose replies pile up until the server drops it; then it connects again.
fn tcp_client(server: SocketAddr, stop: &AtomicBool, sent: &AtomicU64, reads: bool) {
    let started = Instant::now();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(server) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = stream.set_nodelay(true);
        if reads {
            if let Ok(reader) = stream.try_clone() {
                std::thread::spawn(move || {
                    let mut reader = reader;
                    let mut sink = [0u8; 4096];
                    while std::io::Read::read(&mut reader, &mut sink).is_ok_and(|n| n > 0) {}
                });
            }
        }
        'connected: while !stop.load(Ordering::Relaxed) {
            while n < due(
                started,
                if reads {
                    RATE_PER_CLIENT
                } else {
                    UNREAD_PER_SECOND
                },
            ) {
                let body = if reads {
                    change(n)
                } else {
                    let metrics = OscPacket::Message(OscMessage {
                        addr: "/metrics".into(),
                        args: vec![],
                    });
                    rosc::encoder::encode(&metrics).unwrap_or_default()
                };
                let mut framed = (body.len() as u32).to_be_bytes().to_vec();
                framed.extend_from_slice(&body);
                if stream.write_all(&framed).is_err() {
                    break 'connected;
                }
                sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // Ends the reading thread's clone too: the server sees the client leave.
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer (all sockets).
fn udp_rcvbuf_errors() -> Option<f64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let at = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(at)?.parse().ok()
}

/// A process's open files, threads (and their names) and resident memory.
struct ProcessFigures {
    fds: usize,
    threads: u64,
    names: Vec<String>,
    rss_kib: u64,
}

impl ProcessFigures {
    fn of(pid: u32) -> anyhow::Result<ProcessFigures> {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))?
            .filter_map(|task| {
                let comm = task.ok()?.path().join("comm");
                Some(std::fs::read_to_string(comm).ok()?.trim().to_string())
            })
            .collect();
        names.sort();
        Ok(ProcessFigures {
            fds,
            threads: field("Threads:"),
            names,
            rss_kib: field("VmRSS:"),
        })
    }
}
