//! `chronus send` and `chronus status`: small OSC clients of a running server.
//!
//! `send` first asks the server for its address table (`/table`, over UDP, else TCP), types its
//! arguments from it and checks the message as the server would (so a bad value fails
//! locally with the server's own reason, against the patch the server plays); a server
//! that does not answer `/table` leaves only an offline check against `--patch` or the
//! built-in patch, and `send` says so. It then sends the message followed by `/sync`,
//! prints every reply, and exits 0 once `/synced` arrives, 1 on `/fail` or silence.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use chronus_dsp::Patch;
use chronus_protocol::{AddressTable, Reply};
use chronus_supervisor::library::Library;
use rosc::{OscMessage, OscPacket, OscType};

/// Arguments of `chronus send`.
#[derive(clap::Args)]
pub struct SendArgs {
    /// Server address.
    #[arg(long, default_value = crate::DEFAULT_OSC, value_parser = crate::parse_osc)]
    osc: SocketAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
    /// Patch to check against when the server does not answer `/table` (default: the
    /// built-in patch); with `--list`, the patch whose table is printed. A file (with a /
    /// or ending in .toml) or a library name.
    #[arg(long)]
    patch: Option<PathBuf>,
    /// Print the address table (Markdown) of `--patch` or the built-in patch, and exit.
    /// (Offline: the reference docs are generated from it.)
    #[arg(long)]
    list: bool,
    /// OSC address, e.g. /mod/sine/freq.
    #[arg(required_unless_present = "list")]
    address: Option<String>,
    /// Arguments, typed from the address table.
    #[arg(allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Arguments of `chronus status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// Server address.
    #[arg(long, default_value = crate::DEFAULT_OSC, value_parser = crate::parse_osc)]
    pub osc: SocketAddr,
    /// Print every metric as one JSON object instead of the summary.
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// A live screen (workers, failovers, metrics, levels, scope, spectrum, sequencer) fed
    /// by the server's /notify pushes over TCP, until q, Esc or Ctrl-C.
    #[arg(long)]
    pub watch: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
}

/// The address table for `patch` (a file or a library name; fault-injection addresses
/// included, so `send` can type them; the server refuses them unless started with them
/// enabled).
pub fn client_table(patch: Option<&PathBuf>) -> anyhow::Result<AddressTable> {
    table_of(&crate::load_patch(patch, &Library::from_env(None))?)
}

/// The address table of `desc`, as [`client_table`] builds it.
///
/// # Errors
/// A patch that does not compile.
pub fn table_of(desc: &chronus_dsp::PatchDesc) -> anyhow::Result<AddressTable> {
    let compiled = Patch::compile(desc, 48_000.0, 64, 0).context("the patch does not compile")?;
    let modules: Vec<_> = (0..compiled.node_count() as u16)
        .filter_map(|n| Some((compiled.node_id(n)?.to_string(), compiled.node_spec(n)?)))
        .chain(chronus_engine::sequencer::track_nodes(desc))
        .collect();
    Ok(AddressTable::new(&modules, true))
}

fn encode(message: OscMessage) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(message)).unwrap_or_default()
}

/// A UDP socket connected to `server`: replies from anyone else are not read, and a
/// server that is not running is known at once (the kernel reports the refusal).
fn socket_for(server: SocketAddr, timeout: Duration) -> anyhow::Result<UdpSocket> {
    let local = match (server.is_ipv6(), server.ip().is_loopback()) {
        (false, true) => "127.0.0.1:0",
        (false, false) => "0.0.0.0:0",
        (true, true) => "[::1]:0",
        (true, false) => "[::]:0",
    };
    let socket = UdpSocket::bind(local).context("cannot open a UDP socket")?;
    socket
        .connect(server)
        .with_context(|| format!("cannot reach {server}"))?;
    socket.set_read_timeout(Some(timeout.min(Duration::from_millis(100))))?;
    Ok(socket)
}

/// An I/O error as the user should read it: a time-out is "no answer in time".
fn said(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            "no answer in time".to_string()
        }
        std::io::ErrorKind::ConnectionRefused => "nothing listens there".to_string(),
        _ => error.to_string(),
    }
}

/// Receives replies until `done` says stop or `timeout` passes.
fn receive_until(
    socket: &UdpSocket,
    timeout: Duration,
    mut done: impl FnMut(Reply) -> Option<ExitCode>,
) -> ExitCode {
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                eprintln!("chronus: nothing listens there (is `chronus serve` running?)");
                return ExitCode::FAILURE;
            }
            Err(_) => continue,
        };
        match chronus_protocol::parse_reply(buf.get(..len).unwrap_or_default()) {
            Ok(reply) => {
                if let Some(code) = done(reply) {
                    return code;
                }
            }
            Err(e) => eprintln!("chronus: unreadable reply: {e}"),
        }
    }
    eprintln!(
        "chronus: no answer within {:.1} s (is `chronus serve` running?)",
        timeout.as_secs_f64()
    );
    ExitCode::FAILURE
}

/// `address: reason`, or `reason` alone when it already names the address (the
/// protocol's reasons do), so an error names its address once.
fn naming_the_address_once(address: &str, reason: &str) -> String {
    if reason.contains(address) {
        reason.to_string()
    } else {
        format!("{address}: {reason}")
    }
}

/// `chronus send ADDRESS ARGS…`.
pub fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        print!("{}", client_table(args.patch.as_ref())?.to_markdown());
        return Ok(ExitCode::SUCCESS);
    }
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    let address = args.address.unwrap_or_default();
    let texts: Vec<&str> = args.args.iter().map(String::as_str).collect();
    let socket = socket_for(args.osc, timeout)?;
    // The table query takes at most half the time allowed; the answer the rest.
    let (table, strict) = match ask_table(&socket, args.osc, timeout / 2) {
        Ok(table) => (table, true),
        Err(why) => {
            // Against a patch the user named, an unknown address is refused; against the
            // built-in patch it is sent unchecked (the server may play another).
            let checked = match &args.patch {
                Some(patch) => format!("checked offline against {}", patch.display()),
                None => "checked offline against the built-in patch (an address it lacks is sent unchecked)".to_string(),
            };
            eprintln!("chronus: the server did not give its address table ({why}); {checked}");
            (client_table(args.patch.as_ref())?, args.patch.is_some())
        }
    };
    let known = table.lookup(&address).is_some() || chronus_protocol::pattern::is_pattern(&address);
    let message = if known || strict {
        match chronus_protocol::build_message(&table, &address, &texts) {
            Ok(message) => message,
            Err(fail) => {
                eprintln!(
                    "chronus: {}",
                    naming_the_address_once(&fail.address, &fail.reason)
                );
                return Ok(ExitCode::FAILURE);
            }
        }
    } else {
        // Not in our copy of the table (the server may run another patch): send it with
        // guessed types and let the server judge.
        OscMessage {
            addr: address.clone(),
            args: texts.iter().map(|t| guess_type(t)).collect(),
        }
    };
    if let Err(e) = socket.send(&encode(message)) {
        eprintln!("chronus: cannot send to {}: {}", args.osc, said(&e));
        return Ok(ExitCode::FAILURE);
    }
    let quitting = address == "/quit";
    let sync_id = (std::process::id() & 0x7fff_ffff) as i32;
    if !quitting {
        let sync = OscMessage {
            addr: "/sync".into(),
            args: vec![OscType::Int(sync_id)],
        };
        if let Err(e) = socket.send(&encode(sync)) {
            eprintln!("chronus: cannot send to {}: {}", args.osc, said(&e));
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(receive_until(&socket, timeout, |reply| match reply {
        Reply::Synced(id) if id == sync_id => Some(ExitCode::SUCCESS),
        Reply::Synced(_) => None,
        Reply::Done(what) => {
            println!("/done {what}");
            quitting.then_some(ExitCode::SUCCESS)
        }
        Reply::Fail { address, reason } => {
            let reason = reason
                .strip_prefix(&format!("{address}: "))
                .unwrap_or(&reason);
            eprintln!("/fail {address} {reason}");
            Some(ExitCode::FAILURE)
        }
        Reply::Status(s) => {
            println!(
                "/status.reply modules {} voices {} groups {} patches {} load avg {:.1}% peak {:.1}% rate {} Hz (actual {})",
                s.modules, s.voices, s.groups, s.patches, s.avg_load, s.peak_load, s.nominal_sample_rate, s.actual_sample_rate
            );
            None
        }
        Reply::Metrics(pairs) => {
            for (name, value) in pairs {
                println!("{name} {value}");
            }
            None
        }
        Reply::Version(v) => {
            println!(
                "/version.reply {} {}.{}{} {} {}",
                v.program, v.major, v.minor, v.patch, v.branch, v.commit
            );
            None
        }
        Reply::Get { address, value } => {
            println!("{address} {value}");
            None
        }
        Reply::Params { id, params } => {
            println!("{id}:");
            for p in params {
                println!(
                    "  {:<10} {:>10} {:<4} range {}..{} default {}",
                    p.name, p.current, p.unit, p.min, p.max, p.default
                );
            }
            None
        }
        Reply::PatchDump(text) => {
            print!("{text}");
            None
        }
        Reply::Table { modules, .. } => {
            for (id, type_name) in modules {
                println!("{id} {type_name}");
            }
            None
        }
        Reply::LibraryList(patches) => {
            for (name, kind) in patches {
                println!("{name} ({kind})");
            }
            None
        }
        Reply::Other(message) => {
            println!("{} {:?}", message.addr, message.args);
            None
        }
    }))
}

/// The running server's address table, asked with `/table`: over UDP from `socket` first
/// (one datagram each way), then over TCP if that answer does not come or is refused (a
/// server exposed beyond loopback sends replies larger than their request over TCP only).
///
/// # Errors
/// Why not, in a few words, for both transports: no answer in time, no TCP connection,
/// or a module type this build does not know.
pub fn ask_table(
    socket: &UdpSocket,
    server: SocketAddr,
    timeout: Duration,
) -> Result<AddressTable, String> {
    let udp_wait = (timeout / 2).min(Duration::from_millis(500));
    let over_udp = match ask_table_over_udp(socket, udp_wait) {
        Ok(Reply::Table {
            fault_injection,
            modules,
        }) => return AddressTable::from_type_names(&modules, fault_injection),
        Ok(Reply::Fail { reason, .. }) => format!("over UDP: /fail {reason}"),
        Ok(_) => "over UDP: another answer".to_string(),
        Err(why) => format!("over UDP: {why}"),
    };
    ask_table_over_tcp(server, timeout.saturating_sub(udp_wait))
        .map_err(|over_tcp| format!("{over_udp}; over TCP: {over_tcp}"))
}

/// Sends `/table` from `socket` (connected to the server) and waits for `/table.reply` or
/// its `/fail`.
fn ask_table_over_udp(socket: &UdpSocket, timeout: Duration) -> Result<Reply, String> {
    let request = encode(OscMessage {
        addr: chronus_protocol::table::TABLE.into(),
        args: vec![],
    });
    socket.send(&request).map_err(|e| said(&e))?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        let len = match socket.recv(&mut buf) {
            Ok(len) => len,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Err(said(&e)),
            Err(_) => continue,
        };
        match chronus_protocol::parse_reply(buf.get(..len).unwrap_or_default()) {
            Ok(reply @ Reply::Table { .. }) => return Ok(reply),
            Ok(Reply::Fail { address, reason }) if address == chronus_protocol::table::TABLE => {
                return Ok(Reply::Fail { address, reason })
            }
            _ => {} // not the answer (a late reply to someone else's question)
        }
    }
    Err("no answer in time".to_string())
}

/// Asks `/table` over TCP (OSC 1.0 framing: each packet preceded by its size).
fn ask_table_over_tcp(server: SocketAddr, timeout: Duration) -> Result<AddressTable, String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&server, timeout)
        .map_err(|e| format!("no connection to {server}: {}", said(&e)))?;
    let deadline = Instant::now() + timeout;
    let _ = stream.set_nodelay(true);
    let request = encode(OscMessage {
        addr: chronus_protocol::table::TABLE.into(),
        args: vec![],
    });
    let mut framed = (request.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&request);
    stream
        .set_write_timeout(Some(timeout))
        .and_then(|()| stream.write_all(&framed))
        .map_err(|e| format!("cannot ask: {}", said(&e)))?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no answer in time".to_string());
        }
        let read_exact = |stream: &mut std::net::TcpStream, buf: &mut [u8]| {
            stream.set_read_timeout(Some(left))?;
            stream.read_exact(buf)
        };
        let mut size = [0u8; 4];
        read_exact(&mut stream, &mut size).map_err(|e| said(&e))?;
        let size = u32::from_be_bytes(size) as usize;
        if size > 16 << 20 {
            return Err(format!("a reply of {size} bytes is not OSC framing"));
        }
        let mut packet = vec![0u8; size];
        read_exact(&mut stream, &mut packet).map_err(|e| said(&e))?;
        match chronus_protocol::parse_reply(&packet) {
            Ok(Reply::Table {
                fault_injection,
                modules,
            }) => return AddressTable::from_type_names(&modules, fault_injection),
            Ok(Reply::Fail { reason, .. }) => return Err(format!("/fail: {reason}")),
            // Anything else (a push to this connection) is not the answer: read on.
            Ok(_) | Err(_) => {}
        }
    }
}

fn guess_type(text: &str) -> OscType {
    if let Ok(i) = text.parse::<i32>() {
        OscType::Int(i)
    } else if let Ok(f) = text.parse::<f32>() {
        OscType::Float(f)
    } else {
        OscType::String(text.to_string())
    }
}

/// `chronus status [--json]`.
pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    let socket = socket_for(args.osc, timeout)?;
    socket.send(&encode(OscMessage {
        addr: "/metrics".into(),
        args: vec![],
    }))?;
    let mut metrics = None;
    let code = receive_until(&socket, timeout, |reply| match reply {
        Reply::Metrics(pairs) => {
            metrics = Some(pairs);
            Some(ExitCode::SUCCESS)
        }
        Reply::Fail { address, reason } => {
            eprintln!("/fail {address} {reason}");
            Some(ExitCode::FAILURE)
        }
        _ => None,
    });
    let Some(pairs) = metrics else {
        return Ok(code);
    };
    let object = metrics_to_json(&pairs);
    if args.json {
        println!("{}", serde_json::to_string(&object)?);
    } else {
        print!("{}", summary(&object));
    }
    Ok(ExitCode::SUCCESS)
}

/// The short human summary `chronus status` prints: one line each for the sound, the
/// workers, failovers, latency and depth, load, voices and commands (`--json` has every
/// metric).
pub fn summary(metrics: &serde_json::Value) -> String {
    let number = |name: &str| metrics.get(name).and_then(serde_json::Value::as_f64);
    let count = |name: &str| number(name).map_or("?".to_string(), |n| format!("{n:.0}"));
    let ms = |name: &str| number(name).map_or("-".to_string(), |n| format!("{n:.2} ms"));
    let percent = |name: &str| number(name).map_or("?".to_string(), |n| format!("{n:.1} %"));
    let workers: Vec<String> = metrics
        .get("workers")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .map(|w| {
            let field = |name: &str| w.get(name).cloned().unwrap_or(serde_json::Value::Null);
            let text = |name: &str| match field(name) {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => "?".to_string(),
                other => other.to_string(),
            };
            let load = field("load_percent")
                .as_f64()
                .map_or("?".to_string(), |n| format!("{n:.1} %"));
            let pid = field("pid").as_u64().unwrap_or(0);
            if pid == 0 {
                // No process in the slot (dead, or not spawned yet): nothing to show of one.
                format!("slot {} {}", text("slot"), text("role"))
            } else {
                format!(
                    "slot {} {} (pid {pid}, load {load})",
                    text("slot"),
                    text("role")
                )
            }
        })
        .collect();
    let spare = match metrics
        .get("spare_ready")
        .and_then(serde_json::Value::as_bool)
    {
        Some(true) => "spare ready",
        Some(false) => "NO SPARE READY",
        None => "spare unknown",
    };
    let mut lines = vec![
        format!(
            "sound      {} blocks played, {} underruns, {} deadline misses",
            count("blocks_played"),
            count("underruns"),
            count("deadline_misses")
        ),
        format!("workers    {}; {spare}", workers.join(", ")),
        format!(
            "failovers  {} (last {}, p99 {}); crashes {}, cold restarts {}",
            count("failover_count"),
            ms("failover_ms_last"),
            ms("failover_ms_p99"),
            count("crash_count"),
            count("cold_restarts")
        ),
        format!(
            "latency    commands p50 {}, p99 {}; depth {} blocks ({} ahead, floor {})",
            ms("command_latency_ms_p50"),
            ms("command_latency_ms_p99"),
            count("depth_blocks"),
            ms("control_latency_ms"),
            count("depth_floor_blocks")
        ),
        format!(
            "load       {} on average, {} at peak",
            percent("worker_load_percent"),
            percent("worker_load_peak_percent")
        ),
        format!("voices     {}", count("voices_sounding")),
        clock_line(metrics),
        format!(
            "commands   {} received, {} accepted, {} rejected, {} dropped",
            count("commands_received"),
            count("commands_accepted"),
            count("commands_rejected"),
            count("commands_dropped")
        ),
    ];
    lines.push(String::new());
    lines.join("\n")
}

/// The sequencer's clock: its tempo, and where it is as bar.beat (both from 1).
fn clock_line(metrics: &serde_json::Value) -> String {
    let number = |name: &str| metrics.get(name).and_then(serde_json::Value::as_f64);
    let running = number("clock_running").map(|on| on != 0.0);
    match (running, number("clock_bpm"), number("clock_beats")) {
        (Some(true), Some(bpm), Some(beats)) => {
            let whole = beats.floor() as u64;
            format!(
                "clock      {bpm} bpm, bar {}.{}",
                whole / 4 + 1,
                whole % 4 + 1
            )
        }
        (Some(false), Some(bpm), _) => format!("clock      {bpm} bpm, stopped"),
        _ => "clock      ?".to_string(),
    }
}

/// Whether a metric is a time, load or rate (shown with decimals) rather than a count.
fn is_fractional(name: &str) -> bool {
    name.contains("_ms") || name.contains("percent")
}

/// Turns `/metrics.reply` pairs into the JSON object `chronus status --json` prints:
/// every metric by name, `null` for times not measured yet, and `workers` as a list.
pub fn metrics_to_json(pairs: &[(String, chronus_protocol::MetricValue)]) -> serde_json::Value {
    use chronus_protocol::MetricValue;
    let mut object = serde_json::Map::new();
    let mut workers: BTreeMap<u64, serde_json::Map<String, serde_json::Value>> = BTreeMap::new();
    for (name, value) in pairs {
        let json = match value {
            MetricValue::Number(n) => serde_json::json!(n),
            MetricValue::Text(t) => serde_json::json!(t),
        };
        if let Some(rest) = name.strip_prefix("slot.") {
            if let Some((index, field)) = rest.split_once('.') {
                if let Ok(index) = index.parse::<u64>() {
                    let entry = workers.entry(index).or_default();
                    entry.insert("slot".into(), serde_json::json!(index));
                    entry.insert(field.to_string(), json);
                    continue;
                }
            }
        }
        object.insert(name.clone(), json);
    }
    for flag in ["spare_ready"] {
        if let Some(v) = object.get(flag).and_then(serde_json::Value::as_f64) {
            object.insert(flag.into(), serde_json::json!(v != 0.0));
        }
    }
    // Counters print as integers; times, loads and rates keep their fractions.
    for value in object
        .iter_mut()
        .filter_map(|(name, v)| (!is_fractional(name)).then_some(v))
    {
        if let Some(n) = value.as_f64().filter(|n| n.fract() == 0.0 && *n >= 0.0) {
            *value = serde_json::json!(n as u64);
        }
    }
    for optional in ["failover_ms_last", "rebuild_ms_last"] {
        object.entry(optional).or_insert(serde_json::Value::Null);
    }
    let workers: Vec<serde_json::Value> = workers
        .into_values()
        .map(|mut w| {
            if let Some(pid) = w.get("pid").and_then(serde_json::Value::as_f64) {
                w.insert("pid".into(), serde_json::json!(pid as u64));
            }
            serde_json::Value::Object(w)
        })
        .collect();
    object.insert("workers".into(), serde_json::Value::Array(workers));
    serde_json::Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chronus_protocol::MetricValue;

    #[test]
    fn the_status_summary_names_workers_failovers_latency_and_depth() {
        let pairs: Vec<(String, MetricValue)> = [
            ("blocks_played", 1120.0),
            ("underruns", 0.0),
            ("failover_count", 3.0),
            ("failover_ms_last", 0.12),
            ("command_latency_ms_p50", 3.5),
            ("command_latency_ms_p99", 4.25),
            ("depth_blocks", 4.0),
            ("spare_ready", 1.0),
            ("slot.0.pid", 4121.0),
            ("slot.1.pid", 4122.0),
            ("worker_load_percent", 12.34),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), MetricValue::Number(value)))
        .chain([
            (
                "slot.0.role".to_string(),
                MetricValue::Text("active".into()),
            ),
            (
                "slot.1.role".to_string(),
                MetricValue::Text("standby".into()),
            ),
        ])
        .collect();
        let text = summary(&metrics_to_json(&pairs));
        for expected in [
            "1120 blocks played, 0 underruns",
            "slot 0 active (pid 4121",
            "slot 1 standby (pid 4122",
            "spare ready",
            "failovers  3 (last 0.12 ms, p99 -)",
            "commands p50 3.50 ms, p99 4.25 ms; depth 4 blocks",
            "12.3 % on average",
        ] {
            assert!(text.contains(expected), "{expected:?} not in\n{text}");
        }
        assert!(!text.contains('{'), "no JSON in the summary:\n{text}");
    }
}
