//! A TCP connection to a Chronus server for the interactive clients: the shell, the
//! status screen and the web page.
//!
//! Those clients hold one conversation for minutes or hours, ask questions (`/table`,
//! `/get`, `/metrics`), send commands that are answered only when they fail, and listen
//! to `/notify` pushes, all at once. Over UDP that means guessing which datagram answers
//! what and renewing subscriptions; over one TCP connection (OSC 1.0 framing: each packet
//! preceded by its size) the server keeps the subscription as long as the connection and
//! a closed connection says at once that the server is gone.
//!
//! A reader thread takes every incoming packet and routes it: `/chronus/...` pushes to
//! [`Connection::pushes`], everything else to the inbox that [`Connection::ask`] and
//! [`Connection::sync`] read. Both queues are bounded and never block the reader: a
//! client that stops reading loses the newest pushes (counted), never the connection, so
//! the server never waits on it either.
//!
//! Blocking and std-only on purpose: each client runs it on a thread of its own (the web
//! process bridges it into its async runtime), and nothing here needs a runtime.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chronus_protocol::table::{METRICS, NOTIFY, SYNC, TABLE};
use chronus_protocol::{AddressTable, MetricValue, Reply};
use rosc::{OscMessage, OscPacket, OscType};

/// The prefix of every push the server sends to `/notify` subscribers.
pub const PUSH_PREFIX: &str = "/chronus/";

/// How many pushes wait for the client before new ones are dropped: at the fastest topics
/// (scope and levels at 30 Hz, metrics at up to 30 Hz) about ten seconds of them.
pub const PUSH_QUEUE: usize = 1024;

/// How many unread replies (mostly `/fail`s of commands nobody synced on) are kept.
const REPLY_QUEUE: usize = 1024;

/// A packet larger than this is not OSC 1.0 framing (the server's largest reply, a patch
/// dump, is far smaller): the stream is out of step and the connection is closed.
const MAX_PACKET_BYTES: usize = 16 << 20;

/// What [`Connection::send`] takes: a message or a bundle (rosc has no `From` between
/// them).
pub trait IntoPacket {
    /// The packet to encode.
    fn into_packet(self) -> OscPacket;
}

impl IntoPacket for OscPacket {
    fn into_packet(self) -> OscPacket {
        self
    }
}

impl IntoPacket for OscMessage {
    fn into_packet(self) -> OscPacket {
        OscPacket::Message(self)
    }
}

impl IntoPacket for rosc::OscBundle {
    fn into_packet(self) -> OscPacket {
        OscPacket::Bundle(self)
    }
}

/// Why a request could not be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The connection could not be made, or a write failed.
    #[error("{0}")]
    Io(String),
    /// No answer in time; names what was waited for.
    #[error("no answer in time to {0}")]
    Timeout(String),
    /// The server refused the message with `/fail`.
    #[error("{address}: {reason}")]
    Failed {
        /// The refused message's address.
        address: String,
        /// The server's reason.
        reason: String,
    },
    /// The server closed the connection (it stopped, or restarts).
    #[error("the server closed the connection")]
    Closed,
    /// An answer that does not fit what was asked.
    #[error("{0}")]
    Malformed(String),
}

/// What [`Connection::ask`] and [`Connection::sync`] read: the replies, and the `/fail`s
/// that arrived for messages nobody was waiting on, kept for the next `sync`.
struct Inbox {
    replies: Receiver<Reply>,
    unclaimed_fails: Vec<(String, String)>,
}

/// A TCP connection to a server, with its reader thread. `Send + Sync`: one thread may
/// ask while another reads pushes; asks (and syncs) are taken one at a time.
pub struct Connection {
    server: SocketAddr,
    writer: Mutex<TcpStream>,
    inbox: Mutex<Inbox>,
    pushes: Receiver<OscMessage>,
    open: Arc<AtomicBool>,
    pushes_dropped: Arc<AtomicU64>,
    next_sync_id: AtomicI32,
}

impl Connection {
    /// Connects to the server's TCP port (the same address as its UDP one).
    ///
    /// # Errors
    /// [`ClientError::Io`] naming the server if nothing accepts the connection in time.
    pub fn connect(server: SocketAddr, timeout: Duration) -> Result<Connection, ClientError> {
        let stream = TcpStream::connect_timeout(&server, timeout)
            .map_err(|e| ClientError::Io(format!("no connection to {server}: {e}")))?;
        let _ = stream.set_nodelay(true);
        // A server that stops reading must not hang a client's writes for long.
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let reading = stream
            .try_clone()
            .map_err(|e| ClientError::Io(format!("cannot read from {server}: {e}")))?;
        let (reply_tx, replies) = std::sync::mpsc::sync_channel(REPLY_QUEUE);
        let (push_tx, pushes) = std::sync::mpsc::sync_channel(PUSH_QUEUE);
        let open = Arc::new(AtomicBool::new(true));
        let pushes_dropped = Arc::new(AtomicU64::new(0));
        let reader = Reader {
            stream: reading,
            replies: reply_tx,
            pushes: push_tx,
            open: Arc::clone(&open),
            pushes_dropped: Arc::clone(&pushes_dropped),
        };
        std::thread::Builder::new()
            .name("chronus-client-reader".into())
            .spawn(move || reader.run())
            .map_err(|e| ClientError::Io(format!("cannot start the reader thread: {e}")))?;
        Ok(Connection {
            server,
            writer: Mutex::new(stream),
            inbox: Mutex::new(Inbox {
                replies,
                unclaimed_fails: Vec::new(),
            }),
            pushes,
            open,
            pushes_dropped,
            next_sync_id: AtomicI32::new(1),
        })
    }

    /// The server's address, for messages and reconnecting.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// Sends one packet (a message or a bundle); waits for nothing. Commands that answer
    /// only when they fail (`/mod/...`, `/note/on`, ...) are sent this way, then a
    /// [`Connection::sync`] collects their `/fail`s.
    ///
    /// # Errors
    /// [`ClientError::Closed`] once the server has gone; [`ClientError::Io`] if the write
    /// fails.
    pub fn send(&self, packet: impl IntoPacket) -> Result<(), ClientError> {
        if !self.is_open() {
            return Err(ClientError::Closed);
        }
        let bytes = rosc::encoder::encode(&packet.into_packet())
            .map_err(|e| ClientError::Malformed(format!("cannot encode the packet: {e}")))?;
        let size = u32::try_from(bytes.len())
            .map_err(|_| ClientError::Malformed("a packet over 4 GiB".into()))?;
        let mut framed = Vec::with_capacity(bytes.len() + 4);
        framed.extend_from_slice(&size.to_be_bytes());
        framed.extend_from_slice(&bytes);
        lock(&self.writer)
            .write_all(&framed)
            .map_err(|e| ClientError::Io(format!("cannot send to {}: {e}", self.server)))
    }

    /// Sends `message` and waits for its answer: `/status` is answered by
    /// [`Reply::Status`], `/metrics` by [`Reply::Metrics`], `/get` by [`Reply::Get`] (of
    /// that address), `/params` by [`Reply::Params`] (of that module), `/table` by
    /// [`Reply::Table`], `/patch/dump` by [`Reply::PatchDump`], `/library/list` by
    /// [`Reply::LibraryList`], `/version` by [`Reply::Version`], anything else by
    /// `/done <address>`. Only for messages the server answers (see `docs/osc.md`); the
    /// others are sent with [`Connection::send`].
    ///
    /// # Errors
    /// [`ClientError::Failed`] with the server's reason on a `/fail` for the address;
    /// [`ClientError::Timeout`], [`ClientError::Closed`], [`ClientError::Io`].
    pub fn ask(&self, message: OscMessage, timeout: Duration) -> Result<Reply, ClientError> {
        let mut inbox = lock(&self.inbox);
        inbox.set_aside_unread();
        let question = message.clone();
        self.send(message)?;
        inbox.wait_for(timeout, &question.addr, |reply| {
            if let Reply::Fail { address, reason } = reply {
                if *address == question.addr {
                    return Some(Err(ClientError::Failed {
                        address: address.clone(),
                        reason: reason.clone(),
                    }));
                }
            }
            answers(&question, reply).then(|| Ok(reply.clone()))
        })?
    }

    /// Sends `/sync <n>` and waits for `/synced <n>`: once it is back, everything sent
    /// before it has been taken in by the server. Returns the `/fail`s (address, reason)
    /// that arrived since the last `sync`, in order, so a client learns which of its
    /// unanswered commands were refused.
    ///
    /// # Errors
    /// [`ClientError::Timeout`], [`ClientError::Closed`], [`ClientError::Io`].
    pub fn sync(&self, timeout: Duration) -> Result<Vec<(String, String)>, ClientError> {
        let mut inbox = lock(&self.inbox);
        let id = self.next_sync_id.fetch_add(1, Ordering::Relaxed);
        self.send(OscMessage {
            addr: SYNC.into(),
            args: vec![OscType::Int(id)],
        })?;
        inbox.wait_for(timeout, SYNC, |reply| {
            matches!(reply, Reply::Synced(n) if *n == id).then_some(())
        })?;
        Ok(std::mem::take(&mut inbox.unclaimed_fails))
    }

    /// The server's address table (`/table`): what the running patch answers to, for
    /// typing, checking and completing messages as the server would.
    ///
    /// # Errors
    /// Those of [`Connection::ask`]; [`ClientError::Malformed`] if the server has a module
    /// type this build does not know (another version).
    pub fn table(&self, timeout: Duration) -> Result<AddressTable, ClientError> {
        match self.ask(message(TABLE, vec![]), timeout)? {
            Reply::Table {
                fault_injection,
                modules,
            } => AddressTable::from_type_names(&modules, fault_injection)
                .map_err(ClientError::Malformed),
            other => Err(unexpected(TABLE, &other)),
        }
    }

    /// Every numeric metric by name (`/metrics`; `docs/metrics.md`). The few text metrics
    /// (worker roles) are left out: `ask` `/metrics` for those.
    ///
    /// # Errors
    /// Those of [`Connection::ask`].
    pub fn metrics(&self, timeout: Duration) -> Result<BTreeMap<String, f64>, ClientError> {
        match self.ask(message(METRICS, vec![]), timeout)? {
            Reply::Metrics(pairs) => Ok(pairs
                .into_iter()
                .filter_map(|(name, value)| match value {
                    MetricValue::Number(v) => Some((name, v)),
                    MetricValue::Text(_) => None,
                })
                .collect()),
            other => Err(unexpected(METRICS, &other)),
        }
    }

    /// Subscribes this connection to `topics` (`/notify 1 <topic>...`, see `docs/osc.md`;
    /// none: the events). The pushes then arrive on [`Connection::pushes`] until the
    /// connection closes; subscribing again replaces the topics.
    ///
    /// # Errors
    /// Those of [`Connection::ask`]; a `/fail` names a bad topic.
    pub fn subscribe(&self, topics: &[&str], timeout: Duration) -> Result<(), ClientError> {
        let mut args = vec![OscType::Int(1)];
        args.extend(topics.iter().map(|t| OscType::String((*t).to_string())));
        self.ask(message(NOTIFY, args), timeout).map(|_| ())
    }

    /// Every `/chronus/...` push, in arrival order. Read it often: when
    /// [`PUSH_QUEUE`] are waiting, new ones are dropped (see
    /// [`Connection::pushes_dropped`]).
    pub fn pushes(&self) -> &Receiver<OscMessage> {
        &self.pushes
    }

    /// How many pushes were dropped because the client did not read them in time.
    pub fn pushes_dropped(&self) -> u64 {
        self.pushes_dropped.load(Ordering::Relaxed)
    }

    /// False once the server closed the connection or it broke: the server is gone (or
    /// restarting), and a client shows it and connects again.
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Ends the reader thread's read at once (it exits on the error).
        let _ = lock(&self.writer).shutdown(Shutdown::Both);
    }
}

impl Inbox {
    /// Before a question: replies already waiting answer nothing asked now (a late answer
    /// to an ask that timed out); their `/fail`s are kept for the next sync.
    fn set_aside_unread(&mut self) {
        while let Ok(reply) = self.replies.try_recv() {
            self.keep_if_fail(reply);
        }
    }

    fn keep_if_fail(&mut self, reply: Reply) {
        if let Reply::Fail { address, reason } = reply {
            self.unclaimed_fails.push((address, reason));
        }
    }

    /// Reads replies until `answer` returns something, keeping every other `/fail`.
    fn wait_for<T>(
        &mut self,
        timeout: Duration,
        what: &str,
        mut answer: impl FnMut(&Reply) -> Option<T>,
    ) -> Result<T, ClientError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.replies.recv_timeout(left) {
                Ok(reply) => match answer(&reply) {
                    Some(found) => return Ok(found),
                    None => self.keep_if_fail(reply),
                },
                Err(RecvTimeoutError::Timeout) => {
                    return Err(ClientError::Timeout(what.to_string()))
                }
                Err(RecvTimeoutError::Disconnected) => return Err(ClientError::Closed),
            }
        }
    }
}

/// Whether `reply` is the answer to `question` (see [`Connection::ask`]).
fn answers(question: &OscMessage, reply: &Reply) -> bool {
    use chronus_protocol::table as t;
    let first_text = || match question.args.first() {
        Some(OscType::String(s)) => s.as_str(),
        _ => "",
    };
    match reply {
        Reply::Status(_) => question.addr == t::STATUS,
        Reply::Metrics(_) => question.addr == t::METRICS,
        Reply::Version(_) => question.addr == t::VERSION,
        Reply::Get { address, .. } => question.addr == t::GET && address == first_text(),
        Reply::Params { id, .. } => question.addr == t::PARAMS && id == first_text(),
        Reply::PatchDump(_) => question.addr == t::PATCH_DUMP,
        Reply::Table { .. } => question.addr == t::TABLE,
        Reply::LibraryList(_) => question.addr == "/library/list",
        Reply::Done(address) => *address == question.addr,
        Reply::Synced(_) | Reply::Fail { .. } | Reply::Other(_) => false,
    }
}

fn message(addr: &str, args: Vec<OscType>) -> OscMessage {
    OscMessage {
        addr: addr.into(),
        args,
    }
}

fn unexpected(asked: &str, reply: &Reply) -> ClientError {
    ClientError::Malformed(format!("{asked} was answered by {reply:?}"))
}

/// Locks a mutex, taking over one poisoned by a panicking thread: the stream and the inbox
/// stay usable (a half-written packet only breaks the connection, which then says so).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The reader thread: cuts packets out of the stream and routes each message.
struct Reader {
    stream: TcpStream,
    replies: SyncSender<Reply>,
    pushes: SyncSender<OscMessage>,
    open: Arc<AtomicBool>,
    pushes_dropped: Arc<AtomicU64>,
}

impl Reader {
    fn run(mut self) {
        let mut packet = Vec::new();
        while self.read_packet(&mut packet).is_ok() {
            let Ok((_, decoded)) = rosc::decoder::decode_udp(&packet) else {
                continue; // not OSC: skipped, the framing still holds
            };
            self.route(decoded);
        }
        // Closing the senders (by dropping self) wakes a waiting ask with `Closed`.
        self.open.store(false, Ordering::Release);
    }

    fn read_packet(&mut self, packet: &mut Vec<u8>) -> std::io::Result<()> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size)?;
        let size = u32::from_be_bytes(size) as usize;
        if size > MAX_PACKET_BYTES {
            return Err(std::io::Error::other("not OSC 1.0 framing"));
        }
        packet.resize(size, 0);
        self.stream.read_exact(packet)
    }

    fn route(&self, packet: OscPacket) {
        match packet {
            OscPacket::Bundle(bundle) => bundle.content.into_iter().for_each(|p| self.route(p)),
            OscPacket::Message(message) if message.addr.starts_with(PUSH_PREFIX) => {
                if let Err(TrySendError::Full(_)) = self.pushes.try_send(message) {
                    self.pushes_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
            OscPacket::Message(message) => {
                let bytes = match rosc::encoder::encode(&OscPacket::Message(message)) {
                    Ok(bytes) => bytes,
                    Err(_) => return,
                };
                if let Ok(reply) = chronus_protocol::parse_reply(&bytes) {
                    // Full: nobody has asked for a long while; the oldest are the ones
                    // read first, the newest are dropped.
                    let _ = self.replies.try_send(reply);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A fake server: accepts one connection and answers each packet with `respond`.
    fn fake_server(respond: impl Fn(OscMessage) -> Vec<OscMessage> + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            loop {
                let mut size = [0u8; 4];
                if stream.read_exact(&mut size).is_err() {
                    return;
                }
                let mut packet = vec![0u8; u32::from_be_bytes(size) as usize];
                stream.read_exact(&mut packet).unwrap();
                let (_, OscPacket::Message(asked)) = rosc::decoder::decode_udp(&packet).unwrap()
                else {
                    continue;
                };
                if asked.addr == "/bye" {
                    return; // closes the connection
                }
                for answer in respond(asked) {
                    let bytes = rosc::encoder::encode(&OscPacket::Message(answer)).unwrap();
                    stream
                        .write_all(&(bytes.len() as u32).to_be_bytes())
                        .unwrap();
                    stream.write_all(&bytes).unwrap();
                }
            }
        });
        address
    }

    fn text(s: &str) -> OscType {
        OscType::String(s.into())
    }

    const WAIT: Duration = Duration::from_secs(5);

    #[test]
    fn an_ask_gets_its_own_answer_past_pushes_and_other_replies() {
        let server = fake_server(|asked| match asked.addr.as_str() {
            "/get" => vec![
                message("/chronus/levels", vec![OscType::Float(0.5)]),
                message(
                    "/get.reply",
                    vec![text("/mod/other/x"), OscType::Float(1.0)],
                ),
                message("/fail", vec![text("/mod/a/b"), text("out of range")]),
                message(
                    "/get.reply",
                    vec![asked.args[0].clone(), OscType::Float(2.0)],
                ),
            ],
            "/sync" => vec![message("/synced", asked.args)],
            _ => vec![],
        });
        let connection = Connection::connect(server, WAIT).unwrap();
        let reply = connection
            .ask(message("/get", vec![text("/mod/sine/freq")]), WAIT)
            .unwrap();
        assert_eq!(
            reply,
            Reply::Get {
                address: "/mod/sine/freq".into(),
                value: 2.0
            }
        );
        let push = connection.pushes().recv_timeout(WAIT).unwrap();
        assert_eq!(push.addr, "/chronus/levels");
        // The /fail that arrived meanwhile is the next sync's.
        assert_eq!(
            connection.sync(WAIT).unwrap(),
            vec![("/mod/a/b".to_string(), "out of range".to_string())]
        );
        assert_eq!(connection.sync(WAIT).unwrap(), vec![]);
    }

    #[test]
    fn a_fail_for_the_asked_address_is_an_error_with_the_reason() {
        let server = fake_server(|asked| {
            vec![message(
                "/fail",
                vec![text(&asked.addr), text("unknown topic 'x'")],
            )]
        });
        let connection = Connection::connect(server, WAIT).unwrap();
        assert_eq!(
            connection.subscribe(&["x"], WAIT),
            Err(ClientError::Failed {
                address: "/notify".into(),
                reason: "unknown topic 'x'".into()
            })
        );
    }

    #[test]
    fn silence_is_a_timeout_and_a_closed_connection_says_so() {
        let server = fake_server(|_| vec![]);
        let connection = Connection::connect(server, WAIT).unwrap();
        assert_eq!(
            connection.ask(message("/status", vec![]), Duration::from_millis(100)),
            Err(ClientError::Timeout("/status".into()))
        );
        assert!(connection.is_open());
        connection.send(message("/bye", vec![])).unwrap();
        assert_eq!(
            connection.ask(message("/status", vec![]), WAIT),
            Err(ClientError::Closed)
        );
        assert!(!connection.is_open());
        assert_eq!(
            connection.send(message("/status", vec![])),
            Err(ClientError::Closed)
        );
    }

    #[test]
    fn a_client_that_does_not_read_pushes_loses_the_newest_not_the_connection() {
        let server = fake_server(|asked| {
            let mut out: Vec<OscMessage> = (0..PUSH_QUEUE + 10)
                .map(|i| message("/chronus/seq", vec![OscType::Int(i as i32)]))
                .collect();
            out.push(message("/synced", asked.args));
            out
        });
        let connection = Connection::connect(server, WAIT).unwrap();
        connection.sync(WAIT).unwrap();
        assert_eq!(connection.pushes_dropped(), 10);
        let first = connection.pushes().try_recv().unwrap();
        assert_eq!(first.args, vec![OscType::Int(0)]);
    }

    #[test]
    fn nothing_listening_is_a_clear_error() {
        let unused = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = unused.local_addr().unwrap();
        drop(unused);
        let Err(ClientError::Io(why)) = Connection::connect(address, WAIT) else {
            panic!("connected to nothing");
        };
        assert!(why.contains(&address.to_string()), "{why}");
    }
}
