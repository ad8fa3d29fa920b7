//! `chronus send` and `chronus status`: small OSC clients of a running server.
//!
//! `send` types its arguments from the same address table the server uses (so a bad
//! value fails locally with the server's own reason), sends the message followed by
//! `/sync`, prints every reply, and exits 0 once `/synced` arrives, 1 on `/fail` or silence.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use chronus_dsp::Patch;
use chronus_protocol::{AddressTable, Reply};
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
    /// Patch the server runs, to type `/mod/…` arguments (default: the built-in patch).
    #[arg(long)]
    patch: Option<PathBuf>,
    /// Print the address table (Markdown) and exit.
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
    osc: SocketAddr,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
}

/// The address table for `patch` (fault-injection addresses included, so `send` can type
/// them; the server refuses them unless started with them enabled).
pub fn client_table(patch: Option<&PathBuf>) -> anyhow::Result<AddressTable> {
    let desc = crate::load_patch(patch)?;
    let compiled = Patch::compile(&desc, 48_000.0, 64, 0).context("the patch does not compile")?;
    let modules: Vec<_> = (0..compiled.node_count() as u16)
        .filter_map(|n| Some((compiled.node_id(n)?.to_string(), compiled.node_spec(n)?)))
        .collect();
    Ok(AddressTable::new(&modules, true))
}

fn encode(message: OscMessage) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(message)).unwrap_or_default()
}

fn socket_for(server: SocketAddr, timeout: Duration) -> anyhow::Result<UdpSocket> {
    let local = if server.is_ipv6() {
        "[::1]:0"
    } else {
        "127.0.0.1:0"
    };
    let socket = UdpSocket::bind(local).context("cannot open a UDP socket")?;
    socket.set_read_timeout(Some(timeout.min(Duration::from_millis(100))))?;
    Ok(socket)
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
        let Ok((len, _)) = socket.recv_from(&mut buf) else {
            continue;
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

/// `address: reason`, or `reason` alone when it already starts with the address (the
/// protocol's reasons do), so an error names its address once.
fn naming_the_address_once(address: &str, reason: &str) -> String {
    if reason.starts_with(address) {
        reason.to_string()
    } else {
        format!("{address}: {reason}")
    }
}

/// `chronus send ADDRESS ARGS…`.
pub fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let table = client_table(args.patch.as_ref())?;
    if args.list {
        print!("{}", table.to_markdown());
        return Ok(ExitCode::SUCCESS);
    }
    let address = args.address.unwrap_or_default();
    let texts: Vec<&str> = args.args.iter().map(String::as_str).collect();
    let message = if table.lookup(&address).is_some() {
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
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    let socket = socket_for(args.osc, timeout)?;
    socket.send_to(&encode(message), args.osc)?;
    let quitting = address == "/quit";
    let sync_id = (std::process::id() & 0x7fff_ffff) as i32;
    if !quitting {
        let sync = OscMessage {
            addr: "/sync".into(),
            args: vec![OscType::Int(sync_id)],
        };
        socket.send_to(&encode(sync), args.osc)?;
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
        Reply::Other(message) => {
            println!("{} {:?}", message.addr, message.args);
            None
        }
    }))
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
    socket.send_to(
        &encode(OscMessage {
            addr: "/metrics".into(),
            args: vec![],
        }),
        args.osc,
    )?;
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
        println!("{}", serde_json::to_string_pretty(&object)?);
    }
    Ok(ExitCode::SUCCESS)
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
