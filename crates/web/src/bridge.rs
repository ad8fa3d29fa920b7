//! The OSC side: one thread that holds the connection to the server and turns it into the
//! JSON events the pages read, and the pages' messages into OSC.
//!
//! `chronus_client::Connection` is blocking, so it lives on its own thread (not on the
//! async runtime); the pages' WebSockets reach it through a channel, and it reaches them
//! through a broadcast channel of JSON texts. When the server goes, it says so (`gone`) at
//! once and tries again every second; when the server is back it reads the patch anew and
//! sends a fresh `state`, which the pages rebuild themselves from.
//!
//! Events to the page (JSON objects, field `t` names the kind):
//! - `state`: `server`, `fault_injection`, `modules` (`id`, `type`, `params`: `name`, `unit`,
//!   `min`, `max`, `default`, `current`, `address`), `instruments`, `tracks` (`name`,
//!   `pattern`), `patch` (the `/patch/dump` TOML);
//! - `gone`: `server`, `reason` (the connection dropped, or no server answers);
//! - `push`: `a` (the push's address without `/chronus/`), `v` (its arguments);
//! - `error`: `reason` (a message from the page the server or the table refused);
//! - `audio`: `available` (whether this process runs with `--audio`), sent first.
//!
//! With `--audio` the bridge also subscribes to the server's `audio` topic and hands each
//! `/chronus/audio` push to the pages as one binary WebSocket message
//! ([`audio_message`]: the first frame as u64 little-endian, then the interleaved stereo
//! f32 little-endian samples), only to pages that sent `{"t":"listen","on":true}`, through
//! a short broadcast channel: a page that falls behind loses the oldest, never slows the
//! bridge or another page.
//!
//! Messages from the page: `{"t":"osc","a":"/mod/filter/cutoff","v":["1234"]}`: an address
//! and its arguments as text, typed and checked against the server's own address table
//! (`chronus_protocol::build_message`), exactly as `chronus send` does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chronus_client::Connection;
use chronus_protocol::{AddressTable, ParamInfo, Reply};
use rosc::{OscMessage, OscType};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

/// The topics the page shows (`/notify`).
pub const TOPICS: &[&str] = &[
    "failover", "worker", "params", "patch", "levels", "scope", "spectrum", "seq", "metrics",
];

/// `audio` pushes held for the pages (about 10 ms each): a page further behind loses the
/// oldest.
pub const AUDIO_BACKLOG: usize = 32;

/// How long one question to the server may take.
const ASK: Duration = Duration::from_secs(3);

/// What the HTTP side and the bridge thread share.
pub struct Hub {
    /// Events to every open page.
    pub events: broadcast::Sender<Arc<str>>,
    /// The last `state` or `gone` event, for a page that opens now.
    pub latest: Mutex<Arc<str>>,
    /// The pages' messages to the server.
    pub to_server: mpsc::UnboundedSender<Value>,
    /// Whether this process streams the server's audio (`--audio`).
    pub audio_enabled: bool,
    /// `audio` pushes as binary page messages ([`audio_message`]), for the pages listening.
    pub audio: broadcast::Sender<Arc<[u8]>>,
}

impl Hub {
    /// A hub, and the receiving end of the pages' messages for [`run`].
    pub fn new(
        server: SocketAddr,
        audio_enabled: bool,
    ) -> (Arc<Hub>, mpsc::UnboundedReceiver<Value>) {
        let (events, _) = broadcast::channel(1024);
        let (audio, _) = broadcast::channel(AUDIO_BACKLOG);
        let (to_server, from_pages) = mpsc::unbounded_channel();
        let first = gone(server, "connecting").to_string();
        let hub = Hub {
            events,
            latest: Mutex::new(first.into()),
            to_server,
            audio_enabled,
            audio,
        };
        (Arc::new(hub), from_pages)
    }

    fn publish(&self, event: &Value, keep: bool) {
        let text: Arc<str> = event.to_string().into();
        if keep {
            *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = text.clone();
        }
        // No page open: nobody to tell.
        let _ = self.events.send(text);
    }
}

/// How long without a push (the levels come at 30 Hz) before the server is taken for
/// gone: the page must say so within 2 s.
const SILENCE_IS_GONE: Duration = Duration::from_millis(1500);

fn gone(server: SocketAddr, reason: &str) -> Value {
    json!({"t": "gone", "server": server.to_string(), "reason": reason})
}

/// Runs the bridge for ever: connects, reads the patch, forwards pushes and the pages'
/// messages, and when the server goes, says so and reconnects every second.
pub fn run(server: SocketAddr, hub: Arc<Hub>, mut from_pages: mpsc::UnboundedReceiver<Value>) {
    let mut said_gone = false;
    loop {
        let attempt = Instant::now();
        match Connection::connect(server, Duration::from_secs(1)) {
            Ok(connection) => {
                let reason = serve(&connection, &hub, &mut from_pages);
                tracing::warn!("server {server} gone: {reason}");
                hub.publish(&gone(server, &reason), true);
                said_gone = true;
            }
            Err(error) => {
                if !said_gone {
                    hub.publish(&gone(server, &format!("cannot connect: {error}")), true);
                    said_gone = true;
                }
            }
        }
        // Messages sent while there is no server are dropped, not replayed later.
        while from_pages.try_recv().is_ok() {}
        std::thread::sleep(Duration::from_secs(1).saturating_sub(attempt.elapsed()));
    }
}

/// Serves one connection until it breaks; returns why it ended.
fn serve(
    connection: &Connection,
    hub: &Hub,
    from_pages: &mut mpsc::UnboundedReceiver<Value>,
) -> String {
    let mut table = match load(connection, hub) {
        Ok(table) => table,
        Err(reason) => return reason,
    };
    let mut topics = TOPICS.to_vec();
    if hub.audio_enabled {
        topics.push("audio");
    }
    if let Err(error) = connection.subscribe(&topics, ASK) {
        return format!("/notify refused: {error}");
    }
    tracing::info!("connected to the server at {}", connection.server());
    let mut last_push = Instant::now();
    loop {
        if !connection.is_open() {
            return "the server closed the connection".into();
        }
        // The levels alone come 30 times a second while the server plays: silence this
        // long is a server that hangs (stopped, or its OSC side stuck), not a quiet one.
        if last_push.elapsed() > SILENCE_IS_GONE {
            return format!(
                "no word from the server for {:.1} s: it does not answer",
                SILENCE_IS_GONE.as_secs_f64()
            );
        }
        match connection.pushes().recv_timeout(Duration::from_millis(10)) {
            Ok(push) => {
                last_push = Instant::now();
                if push.addr == chronus_protocol::reply::PUSH_AUDIO {
                    match audio_message(&push) {
                        // No page listening: nobody to tell.
                        Some(bytes) => drop(hub.audio.send(bytes)),
                        None => tracing::warn!("a malformed {} push", push.addr),
                    }
                } else if push.addr == "/chronus/patch" {
                    match load(connection, hub) {
                        Ok(new) => table = new,
                        Err(reason) => return reason,
                    }
                    last_push = Instant::now();
                } else {
                    hub.publish(&push_event(&push), false);
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                return "the connection's reader stopped".into();
            }
        }
        while let Ok(message) = from_pages.try_recv() {
            match page_message(&table, &message) {
                Ok(osc) => {
                    if let Err(error) = connection.send(rosc::OscPacket::Message(osc)) {
                        return format!("cannot send: {error}");
                    }
                }
                Err(reason) => hub.publish(&json!({"t": "error", "reason": reason}), false),
            }
        }
    }
}

/// Reads the running patch (`/table`, `/params` of each module, `/patch/dump`) and
/// publishes it as `state`; returns the address table for typing the pages' messages.
fn load(connection: &Connection, hub: &Hub) -> Result<AddressTable, String> {
    let ask = |addr: &str, args: Vec<OscType>| {
        connection
            .ask(
                OscMessage {
                    addr: addr.into(),
                    args,
                },
                ASK,
            )
            .map_err(|e| format!("{addr}: {e}"))
    };
    let (fault_injection, modules) = match ask("/table", vec![])? {
        Reply::Table {
            fault_injection,
            modules,
        } => (fault_injection, modules),
        other => return Err(format!("/table: unexpected answer {other:?}")),
    };
    let mut described = Vec::new();
    for (id, kind) in &modules {
        let params = match ask("/params", vec![OscType::String(id.clone())])? {
            Reply::Params { params, .. } => params,
            other => return Err(format!("/params {id}: unexpected answer {other:?}")),
        };
        described.push((id.clone(), kind.clone(), params));
    }
    let patch = match ask("/patch/dump", vec![])? {
        Reply::PatchDump(text) => text,
        other => return Err(format!("/patch/dump: unexpected answer {other:?}")),
    };
    let table = connection.table(ASK).map_err(|e| format!("/table: {e}"))?;
    // A slider only for what the server takes: `/params` also lists what a voice's
    // `note` module is given by its notes (pitch, velocity, expression), which has no
    // address.
    for (id, _, params) in &mut described {
        params.retain(|p| table.lookup(&format!("/mod/{id}/{}", p.name)).is_some());
    }
    hub.publish(
        &state_event(connection.server(), fault_injection, &described, &patch),
        true,
    );
    Ok(table)
}

/// The `state` event of a patch: its modules with their parameters, its instruments and
/// tracks (read from the patch's TOML), and the TOML itself for the graph.
pub fn state_event(
    server: SocketAddr,
    fault_injection: bool,
    modules: &[(String, String, Vec<ParamInfo>)],
    patch: &str,
) -> Value {
    let (instruments, tracks) = instruments_and_tracks(modules, patch);
    let modules: Vec<Value> = modules
        .iter()
        .map(|(id, kind, params)| {
            let params: Vec<Value> = params
                .iter()
                .map(|p| {
                    json!({
                        "name": p.name, "unit": p.unit, "min": shortest(p.min),
                        "max": shortest(p.max), "default": shortest(p.default),
                        "current": shortest(p.current),
                        "address": format!("/mod/{id}/{}", p.name),
                    })
                })
                .collect();
            json!({"id": id, "type": kind, "params": params})
        })
        .collect();
    json!({
        "t": "state", "server": server.to_string(), "fault_injection": fault_injection,
        "modules": modules, "instruments": instruments, "tracks": tracks, "patch": patch,
    })
}

/// `value` as the shortest decimal that reads back as it (`1.2`, not the f64 widening's
/// `1.2000000476837158`), for the page's labels and `aria-value*`.
fn shortest(value: f32) -> Value {
    value
        .to_string()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map_or(Value::Null, |v| json!(v))
}

/// The patch's instruments (from `/table`: the modules of type `instrument`) and tracks
/// with their patterns (from the patch's TOML); a patch that does not parse has no tracks.
pub fn instruments_and_tracks(
    modules: &[(String, String, Vec<ParamInfo>)],
    patch: &str,
) -> (Vec<String>, Vec<Value>) {
    let instruments = modules
        .iter()
        .filter(|(_, kind, _)| kind == "instrument")
        .map(|(id, _, _)| id.clone())
        .collect();
    let tracks = chronus_dsp::PatchDesc::from_toml_str(patch)
        .map(|desc| {
            desc.tracks
                .iter()
                .map(|t| json!({"name": t.name, "pattern": t.pattern}))
                .collect()
        })
        .unwrap_or_default();
    (instruments, tracks)
}

/// An `audio` push (`/chronus/audio <first frame:h> <samples:b>`) as the page's binary
/// message: the first frame (u64 little-endian), then the blob as it came (interleaved
/// stereo f32 little-endian). `None` for a push of another shape.
pub fn audio_message(push: &OscMessage) -> Option<Arc<[u8]>> {
    let [OscType::Long(frame), OscType::Blob(samples)] = push.args.as_slice() else {
        return None;
    };
    if samples.len() % 8 != 0 {
        return None;
    }
    let mut bytes = Vec::with_capacity(8 + samples.len());
    bytes.extend_from_slice(&(*frame as u64).to_le_bytes());
    bytes.extend_from_slice(samples);
    Some(bytes.into())
}

/// A push as a page event: `{"t":"push","a":"levels","v":[…]}`.
pub fn push_event(push: &OscMessage) -> Value {
    let address = push.addr.strip_prefix("/chronus/").unwrap_or(&push.addr);
    let values: Vec<Value> = push.args.iter().map(arg_json).collect();
    json!({"t": "push", "a": address, "v": values})
}

fn arg_json(arg: &OscType) -> Value {
    match arg {
        OscType::Int(v) => json!(v),
        OscType::Long(v) => json!(v),
        OscType::Float(v) if v.is_finite() => json!(v),
        OscType::Double(v) if v.is_finite() => json!(v),
        OscType::String(s) => json!(s),
        OscType::Bool(b) => json!(b),
        _ => Value::Null,
    }
}

/// A page's message as OSC, typed and checked against the server's address table.
///
/// # Errors
/// Not an `osc` message, or one the table refuses (the reason says which argument).
pub fn page_message(table: &AddressTable, message: &Value) -> Result<OscMessage, String> {
    if message.get("t").and_then(Value::as_str) != Some("osc") {
        return Err(format!("unknown message from the page: {message}"));
    }
    let address = message
        .get("a")
        .and_then(Value::as_str)
        .ok_or("a message without an address")?;
    let args: Vec<String> = match message.get("v") {
        None => vec![],
        Some(Value::Array(values)) => values
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        Some(other) => return Err(format!("{address}: arguments must be a list, not {other}")),
    };
    if !page_may_send(address) {
        return Err(format!(
            "{address}: the page sends only what it plays (parameters, notes, patterns and, when the server allows them, the fault buttons)"
        ));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    chronus_protocol::build_message(table, address, &args).map_err(|fail| fail.reason)
}

/// Whether a page may send `address`: what its controls play, nothing more. The server
/// takes this process for a local client, so the rest (`/quit`, `/notify`, which would
/// change the one subscription every page shares, `/dumpOSC`, patch edits, library
/// writes) must not be reachable through the page or a tunnel to it.
pub fn page_may_send(address: &str) -> bool {
    const PLAYING: [&str; 4] = ["/mod/", "/note/", "/gate/", "/seq/"];
    const FAULTS: [&str; 3] = ["/debug/crash", "/debug/hang", "/debug/slow"];
    PLAYING.iter().any(|prefix| address.starts_with(prefix))
        || FAULTS.contains(&address)
        || matches!(address, "/sustain" | "/panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushes_become_events() {
        let push = OscMessage {
            addr: "/chronus/levels".into(),
            args: vec![
                OscType::Float(0.5),
                OscType::Float(0.25),
                OscType::Float(f32::NAN),
                OscType::Int(3),
            ],
        };
        assert_eq!(
            push_event(&push),
            json!({"t": "push", "a": "levels", "v": [0.5, 0.25, null, 3]})
        );
    }

    #[test]
    fn audio_pushes_become_binary_messages() {
        let push = OscMessage {
            addr: "/chronus/audio".into(),
            args: vec![
                OscType::Long(96_000),
                OscType::Blob(
                    [0.5f32, -0.25]
                        .iter()
                        .flat_map(|v| v.to_le_bytes())
                        .collect(),
                ),
            ],
        };
        let bytes = audio_message(&push).unwrap();
        assert_eq!(bytes[..8], 96_000u64.to_le_bytes());
        assert_eq!(bytes[8..12], 0.5f32.to_le_bytes());
        assert_eq!(bytes[12..], (-0.25f32).to_le_bytes());
        let odd = OscMessage {
            addr: "/chronus/audio".into(),
            args: vec![OscType::Long(0), OscType::Blob(vec![0; 5])],
        };
        assert!(audio_message(&odd).is_none());
    }

    #[test]
    fn page_messages_are_typed_by_the_table() {
        let table =
            chronus_protocol::table_for_patch(&chronus_dsp::PatchDesc::default_patch(), true)
                .unwrap();
        let ok = page_message(
            &table,
            &json!({"t": "osc", "a": "/mod/filter/cutoff", "v": ["1234.5"]}),
        )
        .unwrap();
        assert_eq!(ok.addr, "/mod/filter/cutoff");
        assert_eq!(ok.args, vec![OscType::Float(1234.5)]);
        // Numbers as JSON numbers work too.
        let ok = page_message(
            &table,
            &json!({"t": "osc", "a": "/debug/slow", "v": [20000]}),
        )
        .unwrap();
        assert_eq!(ok.args, vec![OscType::Int(20000)]);
        let refused = page_message(
            &table,
            &json!({"t": "osc", "a": "/mod/filter/cutoff", "v": ["99999"]}),
        )
        .unwrap_err();
        assert!(refused.contains("out of range"), "{refused}");
        assert!(page_message(&table, &json!({"t": "nope"})).is_err());
        // In the table, but not the page's to send.
        for address in [
            "/quit",
            "/notify",
            "/dumpOSC",
            "/patch/commit",
            "/library/save",
        ] {
            let refused =
                page_message(&table, &json!({"t": "osc", "a": address, "v": ["1"]})).unwrap_err();
            assert!(
                refused.contains("the page sends only"),
                "{address}: {refused}"
            );
        }
        assert!(page_message(&table, &json!({"t": "osc"})).is_err());
    }

    #[test]
    fn instruments_and_tracks_from_the_patch() {
        let patch = r#"
[[modules]]
id = "out"
type = "output"

[[instruments]]
name = "keys"
voices = 2

[[instruments.modules]]
id = "osc"
type = "saw"

[[tracks]]
name = "bass"
instrument = "keys"
pattern = "c2 . e2 ."
"#;
        let modules = vec![
            ("out".to_string(), "output".to_string(), vec![]),
            ("keys".to_string(), "instrument".to_string(), vec![]),
        ];
        let (instruments, tracks) = instruments_and_tracks(&modules, patch);
        assert_eq!(instruments, vec!["keys"]);
        assert_eq!(
            tracks,
            vec![json!({"name": "bass", "pattern": "c2 . e2 ."})]
        );
        assert!(instruments_and_tracks(&modules, "not toml [").1.is_empty());
    }
}
