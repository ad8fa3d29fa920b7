//! OSC transports: UDP datagrams and TCP streams, both feeding the one OSC handler, and
//! the way a reply finds its way back to whoever asked.
//!
//! One message's path: a reader thread (the UDP reader, or the reader of one TCP client)
//! reads a complete packet and hands it to the OSC thread through a bounded channel
//! ([`Incoming`]); the OSC thread handles it and calls [`Replier::send`], which never
//! waits: a UDP reply is sent without blocking (dropped and counted if the socket is full),
//! and a TCP reply is queued for that client's own writer thread. So nothing that answers
//! (the OSC thread, the real-time supervisor loop) ever waits on a socket, and one client
//! that never reads stalls no one but itself: when its queue is full it is disconnected.
//!
//! Before a packet reaches the handler, its reader applies the [`exposure`](crate::exposure)
//! policy: a packet from a client that is not allowed, over its client's rate, or larger
//! than the limit is dropped there and counted (`packets_*`), without an answer and
//! without the handler's time. Each check is a table lookup or a comparison, so no reader
//! waits on anyone for it.
//!
//! TCP carries OSC 1.0 framing by default, as scsynth and liblo do: each packet is
//! preceded by its size as a big-endian 32-bit integer; `--tcp-framing slip` takes OSC
//! 1.1's SLIP instead (see [`framing`](crate::framing)), and replies are framed the same
//! way. A TCP client may have only a few packets waiting
//! for the handler at a time, so however fast one client sends, the handler's queue keeps
//! room for everyone else. A connection with no bytes either way for the idle timeout is
//! closed, and when [`MAX_TCP_CLIENTS`] are connected the longest-idle one makes room for
//! a newcomer, so idle connections can never lock clients out.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::exposure::{Exposure, RateLimiter, TokenBucket};
use crate::framing::{Framing, SlipDecoder, SlipEvent};
use crate::log_limit;
use crate::metrics::Metrics;

/// A size prefix beyond this (1 MiB, the largest `--max-packet`) closes the connection:
/// the stream is surely not OSC 1.0 framing, and skipping that much would only waste time.
/// A packet within it but over `--max-packet` is skipped and counted.
const MAX_TCP_PACKET: usize = crate::exposure::MAX_MAX_PACKET;
/// Most TCP clients connected at once; a newcomer beyond this closes the longest-idle one.
pub const MAX_TCP_CLIENTS: usize = 64;
/// Replies waiting for one TCP client's writer; a client that lets this many pile up is
/// not reading, and is disconnected.
const REPLY_QUEUE: usize = 256;
/// Packets of one TCP client waiting for the handler at most: with [`MAX_TCP_CLIENTS`]
/// clients that is half of the handler's queue, so UDP always finds room.
const IN_FLIGHT_PER_CLIENT: usize = 32;
/// The smallest request that gets a deferred reply: `/sync <id>`, 16 bytes.
pub const SMALLEST_REQUEST: usize = 16;
/// Packets waiting for the OSC handler, from every transport.
pub const HANDLER_QUEUE: usize = 4096;
/// How long a TCP connection may pass without a byte either way before it is closed.
pub const DEFAULT_TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often blocked readers and the listener look at the stop flag, and the listener at
/// idle clients. Each look wakes a CPU, so it is rare: a stop waits for it at most.
pub const POLL: Duration = Duration::from_millis(250);

/// Where a reply goes: a UDP address, or a TCP connection by its id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyTo {
    /// The sender's UDP address.
    Udp(SocketAddr),
    /// A TCP connection, by the id the listener gave it.
    Tcp(u64),
}

impl std::fmt::Display for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyTo::Udp(addr) => write!(f, "udp {addr}"),
            ReplyTo::Tcp(id) => write!(f, "tcp client {id}"),
        }
    }
}

/// One complete OSC packet and where it came from.
#[derive(Debug)]
pub struct Incoming {
    /// The packet's bytes.
    pub bytes: Vec<u8>,
    /// Its sender.
    pub from: ReplyTo,
    /// The sender's IP address (for a TCP client, its peer's), for the decisions of the
    /// [`exposure`](crate::exposure) policy.
    pub peer: IpAddr,
    /// For a TCP packet, its place among its client's packets in flight, given back when
    /// the handler drops the packet.
    _in_flight: Option<InFlight>,
}

/// One packet a TCP client has waiting for the handler; dropping it lets the client's
/// reader read another.
#[derive(Debug)]
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// What a TCP client's threads and the replier share: when bytes last moved either way
/// (ms since the replier started), and whether the replier closed the connection (then
/// the reader stops at once, even with bytes still buffered: a Linux socket shut down for
/// reading still hands out what it holds).
#[derive(Debug, Default)]
struct Activity {
    last_ms: AtomicU64,
    closed: AtomicBool,
}

/// What the replier keeps of one TCP client.
struct Client {
    /// Replies waiting for the client's writer thread, each with its size prefix.
    outgoing: SyncSender<Vec<u8>>,
    /// A handle on the connection, only to shut it down (which wakes its reader and
    /// writer); never written through.
    stream: TcpStream,
    /// When bytes last moved.
    activity: Arc<Activity>,
}

/// Sends replies over whichever transport the request came in on, without ever waiting
/// on a socket (see the module comment); also keeps the TCP clients' table, whose lock is
/// never held across I/O.
pub struct Replier {
    udp: Arc<UdpSocket>,
    /// How TCP replies are framed (as the requests are).
    framing: Framing,
    /// Who is trusted with deferred UDP replies ([`send_deferred`](Self::send_deferred)).
    exposure: Arc<Exposure>,
    clients: Mutex<BTreeMap<u64, Client>>,
    /// Writer threads, joined at [`finish`](Self::finish) so the last replies go out.
    writers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    metrics: Arc<Metrics>,
    started: Instant,
}

impl Replier {
    /// A replier for `udp` with no TCP clients yet, framing TCP replies with `framing`,
    /// trusting UDP peers as `exposure` says, counting into `metrics`.
    pub fn new(
        udp: Arc<UdpSocket>,
        framing: Framing,
        exposure: Arc<Exposure>,
        metrics: Arc<Metrics>,
    ) -> Replier {
        Replier {
            udp,
            framing,
            exposure,
            clients: Mutex::new(BTreeMap::new()),
            writers: Mutex::new(Vec::new()),
            metrics,
            started: Instant::now(),
        }
    }

    /// Sends an encoded reply without waiting; a reply that cannot go is dropped, never
    /// fatal (the client may be gone). A TCP client whose reply queue is full is
    /// disconnected: it has not read its replies for a long time.
    pub fn send(&self, bytes: &[u8], to: ReplyTo) {
        match to {
            ReplyTo::Udp(addr) => {
                let sent =
                    rustix::net::sendto(&*self.udp, bytes, rustix::net::SendFlags::DONTWAIT, &addr);
                if let Err(e) = sent {
                    Metrics::bump(&self.metrics.udp_replies_dropped);
                    tracing::debug!("reply to {to} dropped: {e}");
                }
            }
            ReplyTo::Tcp(id) => {
                // One buffer, so the writer sends each reply in one write.
                let framed = self.framing.encode(bytes);
                let queued = self
                    .lock_clients()
                    .get(&id)
                    .map(|client| client.outgoing.try_send(framed));
                match queued {
                    None | Some(Ok(())) => {}
                    // Counted by the one thread whose call removes it: the OSC thread and
                    // the supervisor loop both answer, and may both find the queue full
                    // (a client dropped once was counted twice).
                    Some(Err(TrySendError::Full(_))) => {
                        if self.disconnect(id) {
                            Metrics::bump(&self.metrics.tcp_slow_clients_dropped);
                            if log_limit::TCP.allow() {
                                tracing::warn!(
                                    "OSC: {to} has {REPLY_QUEUE} replies unread; disconnecting it"
                                );
                            }
                        }
                    }
                    Some(Err(TrySendError::Disconnected(_))) => {
                        self.disconnect(id);
                    }
                }
            }
        }
    }

    /// Sends a reply made after its packet was handled (`/synced` once stamped, a
    /// `/fail` at stamping or after a restart, `/done /quit`), where the request's size is
    /// no longer known: to a UDP client that is not an allowed peer
    /// ([`Exposure::is_allowed_peer`]) only if it is no larger than
    /// [`SMALLEST_REQUEST`] bytes (`/synced` answers `/sync` at the same size), else it is
    /// dropped and counted in `replies_refused_amplification`; everywhere else as
    /// [`send`](Self::send).
    pub fn send_deferred(&self, bytes: &[u8], to: ReplyTo) {
        if let ReplyTo::Udp(addr) = to {
            if bytes.len() > SMALLEST_REQUEST && !self.exposure.is_allowed_peer(addr.ip()) {
                Metrics::bump(&self.metrics.replies_refused_amplification);
                return;
            }
        }
        self.send(bytes, to);
    }

    /// The exposure policy replies follow (also who may get `/notify` pushes over UDP).
    pub fn exposure(&self) -> &Exposure {
        &self.exposure
    }

    /// Whether TCP client `id` is still connected (a `/notify` subscription over TCP ends
    /// with its connection).
    pub fn is_connected(&self, id: u64) -> bool {
        self.lock_clients().contains_key(&id)
    }

    /// Whether TCP client `id` is still connected; if it is, this counts as activity, so
    /// the idle timeout spares a connection that holds a `/notify` subscription (its
    /// topics may be quiet for longer than the timeout).
    pub fn hold_open(&self, id: u64) -> bool {
        match self.lock_clients().get(&id) {
            Some(client) => {
                self.touch(&client.activity);
                true
            }
            None => false,
        }
    }

    /// Stops taking replies, lets every TCP writer send what it has queued (up to
    /// `within`), then closes every connection. For the end of a shutdown, after the last
    /// replies (`/done /quit`) were sent.
    pub fn finish(&self, within: Duration) {
        let clients = std::mem::take(&mut *self.lock_clients());
        // Dropping a client's sender ends its writer once the queue is written.
        let streams: Vec<TcpStream> = clients.into_values().map(|c| c.stream).collect();
        let writers =
            std::mem::take(&mut *self.writers.lock().unwrap_or_else(PoisonError::into_inner));
        let deadline = Instant::now() + within;
        while Instant::now() < deadline && writers.iter().any(|w| !w.is_finished()) {
            std::thread::sleep(Duration::from_millis(5));
        }
        for stream in streams {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn lock_clients(&self) -> MutexGuard<'_, BTreeMap<u64, Client>> {
        // The table stays consistent whatever panicked while holding it (every change is
        // one insert or remove).
        self.clients.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Milliseconds since the replier started: the clock of [`Activity`].
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn touch(&self, activity: &Activity) {
        activity.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Forgets client `id` and shuts its connection down (outside the lock), which ends
    /// its reader and writer. Whether it was still connected: of two threads closing one
    /// client, only the first counts it.
    fn disconnect(&self, id: u64) -> bool {
        let removed = self.lock_clients().remove(&id);
        if let Some(client) = &removed {
            client.activity.closed.store(true, Ordering::Release);
            let _ = client.stream.shutdown(Shutdown::Both);
        }
        removed.is_some()
    }

    /// Closes every client idle for `timeout` or longer.
    fn close_idle(&self, timeout: Duration) {
        let now = self.now_ms();
        let idle: Vec<u64> = self
            .lock_clients()
            .iter()
            .filter(|(_, c)| {
                now.saturating_sub(c.activity.last_ms.load(Ordering::Relaxed))
                    >= timeout.as_millis() as u64
            })
            .map(|(&id, _)| id)
            .collect();
        for id in idle {
            if self.disconnect(id) {
                Metrics::bump(&self.metrics.tcp_idle_clients_closed);
                if log_limit::TCP.allow() {
                    tracing::info!("OSC: tcp client {id} idle for {timeout:?}; closing it");
                }
            }
        }
    }

    /// At the client limit, closes the longest-idle client to make room for a new one.
    fn make_room(&self) {
        let longest_idle = {
            let clients = self.lock_clients();
            if clients.len() < MAX_TCP_CLIENTS {
                return;
            }
            clients
                .iter()
                .min_by_key(|(_, c)| c.activity.last_ms.load(Ordering::Relaxed))
                .map(|(&id, _)| id)
        };
        if let Some(id) = longest_idle {
            if self.disconnect(id) {
                Metrics::bump(&self.metrics.tcp_idle_clients_closed);
                if log_limit::TCP.allow() {
                    tracing::info!(
                        "OSC: {MAX_TCP_CLIENTS} tcp clients connected; closing the longest idle, client {id}, to make room"
                    );
                }
            }
        }
    }
}

/// What every reader needs besides its socket: where packets go, when to stop, the
/// exposure policy, and the counters.
#[derive(Clone)]
pub struct Readers {
    /// The OSC handler's queue.
    pub packets: SyncSender<Incoming>,
    /// Set when the server is stopping.
    pub stop: Arc<AtomicBool>,
    /// Who may talk, how much.
    pub exposure: Arc<Exposure>,
    /// Counters of refusals and drops.
    pub metrics: Arc<Metrics>,
}

/// How many ports [`bind_osc`] tries when the system chooses one.
const PORT_TRIES: usize = 64;

/// Binds OSC's UDP socket at `addr` and a TCP listener on the same port number, as OSC
/// clients expect. When `addr` names port 0 (the system chooses), a port whose number is
/// free for both is found: the system's choice for UDP may be a TCP port in use (any TCP
/// connection's local end takes one from the same range), which left a test's server on
/// UDP only and its TCP clients refused. A named port whose TCP side is taken gives UDP
/// only, with a warning.
///
/// # Errors
/// When UDP cannot bind at `addr`.
pub fn bind_osc(addr: SocketAddr) -> anyhow::Result<(UdpSocket, Option<TcpListener>)> {
    use anyhow::Context;
    let bind_udp = || {
        UdpSocket::bind(addr).with_context(|| {
            format!("cannot listen for OSC on udp {addr} (in use? try --osc 127.0.0.1:0)")
        })
    };
    let mut tries = if addr.port() == 0 { PORT_TRIES } else { 1 };
    loop {
        let udp = bind_udp()?;
        let udp_addr = udp.local_addr().unwrap_or(addr);
        match TcpListener::bind(udp_addr) {
            Ok(listener) => return Ok((udp, Some(listener))),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries > 1 => tries -= 1,
            Err(e) => {
                tracing::warn!("OSC over TCP unavailable on {udp_addr}: {e}; UDP only");
                return Ok((udp, None));
            }
        }
    }
}

/// Starts every transport: the UDP reader on `socket`, and the TCP `listener` if there is
/// one (framed as `framing` says) closing connections idle for `tcp_idle_timeout`.
///
/// # Errors
/// When a thread cannot be started.
pub fn spawn_all(
    socket: &Arc<UdpSocket>,
    listener: Option<TcpListener>,
    replier: &Arc<Replier>,
    readers: &Readers,
    framing: Framing,
    tcp_idle_timeout: Duration,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    use anyhow::Context;
    let mut threads = vec![spawn_udp_reader(Arc::clone(socket), readers.clone())
        .context("cannot start the UDP reader")?];
    if let Some(listener) = listener {
        threads.push(
            spawn_tcp_listener(
                listener,
                Arc::clone(replier),
                readers.clone(),
                framing,
                tcp_idle_timeout,
            )
            .context("cannot start the TCP listener")?,
        );
    }
    Ok(threads)
}

/// Room the kernel keeps for datagrams the reader has not read yet, asked for past the
/// system's `rmem_max` where allowed (CAP_NET_ADMIN), else as far as it goes. A burst of
/// MIDI (24,000 small bundles a second, dense MPE pressure) arriving while the reader was
/// descheduled on a loaded machine overflowed the default (208 KB, about 10 ms of such
/// traffic): the kernel dropped 14 % of it unseen.
const UDP_RECEIVE_BUFFER: usize = 4 << 20;

/// Reads UDP datagrams into the handler's queue until `stop`. A datagram from a sender
/// the policy does not admit, over its sender's rate (one client per source address), or
/// larger than `--max-packet` is dropped and counted; one the handler has no room for is
/// dropped and counted in `udp_datagrams_dropped`.
pub fn spawn_udp_reader(
    socket: Arc<UdpSocket>,
    readers: Readers,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    socket.set_read_timeout(Some(POLL))?;
    if rustix::net::sockopt::set_socket_recv_buffer_size_force(&*socket, UDP_RECEIVE_BUFFER)
        .is_err()
    {
        let _ = rustix::net::sockopt::set_socket_recv_buffer_size(&*socket, UDP_RECEIVE_BUFFER);
    }
    if let Ok(size) = rustix::net::sockopt::socket_recv_buffer_size(&*socket) {
        tracing::debug!("OSC over UDP: a receive buffer of {size} bytes");
    }
    std::thread::Builder::new()
        .name("chronus-osc-udp".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let Readers {
                packets,
                stop,
                exposure,
                metrics,
            } = readers;
            let started = Instant::now();
            let mut limiter = RateLimiter::new(exposure.rate_limit, 0);
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Acquire) {
                match socket.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        let now_ns = started.elapsed().as_nanos() as u64;
                        let refused = if !exposure.admits(from.ip()) {
                            Some((&metrics.packets_refused_not_allowed, "its sender is not allowed (--allow)"))
                        } else if !limiter.allow(from.ip(), now_ns) {
                            Some((&metrics.packets_rate_limited, "its sender is over --rate-limit"))
                        } else if len > exposure.max_packet {
                            Some((&metrics.packets_too_large, "it is larger than --max-packet"))
                        } else {
                            None
                        };
                        if let Some((counter, why)) = refused {
                            Metrics::bump(counter);
                            if log_limit::DROPPED.allow() {
                                tracing::warn!("OSC: ignored a {len}-byte datagram from {from}: {why}");
                            }
                            continue;
                        }
                        let packet = Incoming {
                            bytes: buf.get(..len).unwrap_or_default().to_vec(),
                            from: ReplyTo::Udp(from),
                            peer: from.ip(),
                            _in_flight: None,
                        };
                        if let Err(TrySendError::Full(_)) = packets.try_send(packet) {
                            Metrics::bump(&metrics.udp_datagrams_dropped);
                            if log_limit::DROPPED.allow() {
                                tracing::warn!("OSC: dropped a datagram from {from}: the handler is {HANDLER_QUEUE} packets behind");
                            }
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => {
                        if log_limit::DROPPED.allow() {
                            tracing::warn!("OSC receive failed: {e}");
                        }
                    }
                }
            }
        })
}

/// Accepts TCP clients on `listener` until `stop`, each with a reader and a writer
/// thread; closes at once a connection from a peer the policy does not admit, closes
/// clients idle for `idle_timeout`, and the longest-idle one when a newcomer finds
/// [`MAX_TCP_CLIENTS`] connected.
pub fn spawn_tcp_listener(
    listener: TcpListener,
    replier: Arc<Replier>,
    readers: Readers,
    framing: Framing,
    idle_timeout: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    // A blocking accept that gives up after POLL: no wake-ups while nobody connects.
    listener.set_nonblocking(false)?;
    rustix::net::sockopt::set_socket_timeout(
        &listener,
        rustix::net::sockopt::Timeout::Recv,
        Some(POLL),
    )?;
    std::thread::Builder::new()
        .name("chronus-osc-tcp".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut next_id = 1;
            while !readers.stop.load(Ordering::Acquire) {
                replier.close_idle(idle_timeout);
                match listener.accept() {
                    Ok((stream, peer)) if !readers.exposure.admits(peer.ip()) => {
                        Metrics::bump(&readers.metrics.tcp_clients_refused_not_allowed);
                        if log_limit::TCP.allow() {
                            tracing::warn!(
                                "OSC: closed a tcp connection from {peer}: not allowed (--allow)"
                            );
                        }
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                    Ok((stream, peer)) => {
                        replier.make_room();
                        let id = next_id;
                        next_id += 1;
                        match start_client(&replier, stream, id, peer.ip(), &readers, framing) {
                            Ok(()) => {
                                if log_limit::TCP.allow() {
                                    tracing::info!("OSC: tcp client {id} connected from {peer}");
                                }
                            }
                            Err(e) => {
                                if log_limit::TCP.allow() {
                                    tracing::warn!("OSC: refused tcp client from {peer}: {e}");
                                }
                            }
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => {
                        tracing::warn!("OSC: tcp accept failed: {e}");
                        std::thread::sleep(POLL);
                    }
                }
            }
        })
}

/// Registers client `id` (connected from `peer`) and starts its reader and writer threads.
fn start_client(
    replier: &Arc<Replier>,
    stream: TcpStream,
    id: u64,
    peer: IpAddr,
    readers: &Readers,
    framing: Framing,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(POLL))?;
    // Replies are small and answer requests: send each at once.
    stream.set_nodelay(true)?;
    let (outgoing, replies) = mpsc::sync_channel(REPLY_QUEUE);
    let activity = Arc::new(Activity::default());
    replier.touch(&activity);
    let (reader_stream, writer_stream) = (stream.try_clone()?, stream.try_clone()?);
    let writer = {
        let (replier, activity) = (Arc::clone(replier), Arc::clone(&activity));
        std::thread::Builder::new()
            .name(format!("chronus-osc-tcp-{id}-out"))
            .stack_size(256 * 1024)
            .spawn(move || write_replies(writer_stream, &replies, &replier, &activity, id))?
    };
    let client = Client {
        outgoing,
        stream,
        activity: Arc::clone(&activity),
    };
    replier.lock_clients().insert(id, client);
    let reader = {
        let (replier, readers) = (Arc::clone(replier), readers.clone());
        std::thread::Builder::new()
            .name(format!("chronus-osc-tcp-{id}"))
            .stack_size(256 * 1024)
            .spawn(move || {
                // However the reader ends, a panic included, the writer is told.
                let _end = EndOfRequests {
                    replier: &replier,
                    id,
                    stop: &readers.stop,
                };
                let in_flight = Arc::new(AtomicUsize::new(0));
                let mut client = TcpReader {
                    stream: std::io::BufReader::new(reader_stream),
                    id,
                    peer,
                    readers: &readers,
                    replier: &replier,
                    activity: &activity,
                    in_flight: &in_flight,
                    started: Instant::now(),
                    bucket: TokenBucket::full(readers.exposure.rate_limit, 0),
                };
                match framing {
                    Framing::SizePrefix => client.read_size_prefixed(),
                    Framing::Slip => client.read_slip(),
                }
                // Every reply to this client's packets is queued once they are handled.
                while in_flight.load(Ordering::Acquire) > 0 && !readers.stop.load(Ordering::Acquire)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
                if log_limit::TCP.allow() {
                    tracing::info!("OSC: tcp client {id} disconnected");
                }
            })
    };
    if let Err(e) = reader {
        replier.disconnect(id);
        return Err(e);
    }
    let mut writers = replier
        .writers
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    writers.retain(|w| !w.is_finished());
    writers.push(writer);
    Ok(())
}

/// Tells a client's writer, when its reader ends, that no more requests will come: an
/// empty reply marks the end of its queue. The client stays in the replier's table until
/// its writer has written the rest, so the idle timeout and the client limit still hold
/// for a client that stops sending and never reads. When the server is stopping,
/// [`Replier::finish`] does this for every client instead, after the last replies.
struct EndOfRequests<'a> {
    replier: &'a Replier,
    id: u64,
    stop: &'a AtomicBool,
}

impl Drop for EndOfRequests<'_> {
    fn drop(&mut self) {
        if self.stop.load(Ordering::Acquire) {
            return;
        }
        let queued = self
            .replier
            .lock_clients()
            .get(&self.id)
            .map(|client| client.outgoing.try_send(Vec::new()));
        if let Some(Err(_)) = queued {
            // Its queue is full: it does not read what it asked for.
            self.replier.disconnect(self.id);
        }
    }
}

/// The writer of one TCP client: writes its queued replies, blocking on this client's
/// socket only, until the end of the queue (an empty reply, or the queue dropped) or a
/// failed write; then forgets the client.
fn write_replies(
    mut stream: TcpStream,
    replies: &Receiver<Vec<u8>>,
    replier: &Replier,
    activity: &Activity,
    id: u64,
) {
    for reply in replies {
        if reply.is_empty() {
            break;
        }
        if stream.write_all(&reply).is_err() {
            // Also stops the reader.
            replier.disconnect(id);
            return;
        }
        replier.touch(activity);
    }
    let _ = replier.lock_clients().remove(&id);
}

/// The reader of one TCP client: cuts packets out of its stream, applies the rate and size
/// limits (this connection is one client), and hands the rest to the handler.
struct TcpReader<'a> {
    stream: std::io::BufReader<TcpStream>,
    id: u64,
    peer: IpAddr,
    readers: &'a Readers,
    replier: &'a Replier,
    activity: &'a Activity,
    in_flight: &'a Arc<AtomicUsize>,
    /// The clock of `bucket`.
    started: Instant,
    bucket: TokenBucket,
}

impl TcpReader<'_> {
    /// Whether to stop reading: the server stops or the replier closed the connection.
    fn stopped(&self) -> bool {
        self.readers.stop.load(Ordering::Acquire) || self.activity.closed.load(Ordering::Acquire)
    }

    /// Reads into `bytes` until it holds `len` bytes, waiting across read timeouts (each
    /// a look at the stop flag); false at the end of the stream, an error or stop. Bytes
    /// read before a timeout are kept.
    fn read_some(&mut self, bytes: &mut Vec<u8>, len: usize) -> bool {
        loop {
            if self.stopped() {
                return false;
            }
            let wanted = len.saturating_sub(bytes.len()) as u64;
            match (&mut self.stream).take(wanted).read_to_end(bytes) {
                Ok(0) if wanted > 0 => return false,
                Ok(_) => {
                    self.replier.touch(self.activity);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {} // `read_to_end` keeps what it read before the timeout
                Err(_) => return false,
            }
        }
    }

    /// Replaces `chunk` with the bytes the stream has now (at least one, as soon as one
    /// arrives); false at the end of the stream, an error or stop.
    fn read_chunk(&mut self, chunk: &mut Vec<u8>) -> bool {
        use std::io::BufRead;
        loop {
            if self.stopped() {
                return false;
            }
            match self.stream.fill_buf() {
                Ok([]) => return false,
                Ok(available) => {
                    chunk.clear();
                    chunk.extend_from_slice(available);
                    let taken = available.len();
                    self.stream.consume(taken);
                    self.replier.touch(self.activity);
                    return true;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
    }

    /// Fills `bytes` up to `len` bytes; false at the end of the stream, an error or stop.
    /// The buffer grows as bytes arrive, so a client announcing a large packet and
    /// sending nothing holds no memory for it.
    fn read_to(&mut self, bytes: &mut Vec<u8>, len: usize) -> bool {
        while bytes.len() < len {
            if !self.read_some(bytes, len) {
                return false;
            }
        }
        true
    }

    /// Reads size-prefixed packets (OSC 1.0) until the client closes, errs, or sends a
    /// packet size beyond [`MAX_TCP_PACKET`] (a broken stream cannot be resynchronised).
    /// A packet over `--max-packet` is skipped and counted.
    fn read_size_prefixed(&mut self) {
        loop {
            let mut size = Vec::with_capacity(4);
            if !self.read_to(&mut size, 4) {
                return;
            }
            let len = <[u8; 4]>::try_from(size.as_slice()).map_or(0, u32::from_be_bytes) as usize;
            if len > self.readers.exposure.max_packet {
                Metrics::bump(&self.readers.metrics.packets_too_large);
                let max = self.readers.exposure.max_packet;
                if len > MAX_TCP_PACKET {
                    if log_limit::TCP.allow() {
                        tracing::warn!(
                            "OSC: tcp client {} sent a {len}-byte packet size (at most {max}); closing the connection",
                            self.id
                        );
                    }
                    return;
                }
                if log_limit::DROPPED.allow() {
                    tracing::warn!(
                        "OSC: skipped a {len}-byte packet of tcp client {}: larger than --max-packet {max}",
                        self.id
                    );
                }
                let mut left = len;
                while left > 0 {
                    let mut chunk = Vec::new();
                    if !self.read_some(&mut chunk, left.min(64 * 1024)) {
                        return;
                    }
                    left -= chunk.len();
                }
                continue;
            }
            let mut bytes = Vec::new();
            if !self.read_to(&mut bytes, len) {
                return;
            }
            if !self.deliver(bytes) {
                return;
            }
        }
    }

    /// Reads SLIP-framed packets (OSC 1.1) until the client closes or errs; a packet over
    /// `--max-packet` is skipped to its END and counted.
    fn read_slip(&mut self) {
        let mut decoder = SlipDecoder::new(self.readers.exposure.max_packet);
        let mut chunk = Vec::with_capacity(8192);
        loop {
            if !self.read_chunk(&mut chunk) {
                return;
            }
            for &byte in &chunk {
                match decoder.push(byte) {
                    None => {}
                    Some(SlipEvent::TooLarge) => {
                        Metrics::bump(&self.readers.metrics.packets_too_large);
                        if log_limit::DROPPED.allow() {
                            tracing::warn!(
                                "OSC: skipped a packet of tcp client {}: larger than --max-packet {}",
                                self.id,
                                self.readers.exposure.max_packet
                            );
                        }
                    }
                    Some(SlipEvent::Packet(bytes)) => {
                        let handed = self.deliver(bytes);
                        if !handed {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Hands one packet to the handler unless it is over the client's rate (dropped and
    /// counted); first waits for the handler to take this client's earlier packets, so one
    /// client cannot fill the queue everyone shares. False when the server stops.
    fn deliver(&mut self, bytes: Vec<u8>) -> bool {
        let rate = self.readers.exposure.rate_limit;
        let now_ns = self.started.elapsed().as_nanos() as u64;
        if rate > 0 && !self.bucket.take(rate, rate, now_ns) {
            Metrics::bump(&self.readers.metrics.packets_rate_limited);
            if log_limit::DROPPED.allow() {
                tracing::warn!(
                    "OSC: dropped a packet of tcp client {}: over --rate-limit {rate} a second",
                    self.id
                );
            }
            return true;
        }
        while self.in_flight.load(Ordering::Acquire) >= IN_FLIGHT_PER_CLIENT {
            if self.readers.stop.load(Ordering::Acquire) {
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let packet = Incoming {
            bytes,
            from: ReplyTo::Tcp(self.id),
            peer: self.peer,
            _in_flight: Some(InFlight(Arc::clone(self.in_flight))),
        };
        self.readers.packets.send(packet).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chosen_port_is_free_for_both_udp_and_tcp() {
        // Held together, so each bind finds the others' ports taken.
        let bound: Vec<(UdpSocket, Option<TcpListener>)> = (0..32)
            .map(|_| bind_osc("127.0.0.1:0".parse().unwrap()).unwrap())
            .collect();
        for (udp, tcp) in &bound {
            let tcp = tcp.as_ref().expect("TCP beside UDP");
            assert_eq!(
                udp.local_addr().unwrap().port(),
                tcp.local_addr().unwrap().port()
            );
        }
    }

    #[test]
    fn a_named_port_whose_tcp_side_is_taken_serves_udp_only() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        // The UDP port of that number is almost surely free; skip if not.
        if let Ok((udp, tcp)) = bind_osc(addr) {
            assert_eq!(udp.local_addr().unwrap(), addr);
            assert!(tcp.is_none());
        }
    }
}
