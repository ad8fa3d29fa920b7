//! OSC transports: UDP datagrams and TCP streams, both feeding the one OSC handler, and
//! the way a reply finds its way back to whoever asked.
//!
//! TCP carries OSC 1.0 framing, as scsynth and liblo do: each packet is preceded by its
//! size as a big-endian 32-bit integer. Readers run on their own threads and hand complete
//! packets to the handler through a bounded channel, so one slow or broken client can
//! never hold up another, and the handler (which owns the address table and the patch
//! draft) stays single-threaded.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest OSC packet accepted over TCP (UDP is bounded by the datagram size anyway).
const MAX_TCP_PACKET: usize = 1 << 20;
/// Most TCP clients connected at once; more are refused (closed) with a log line.
const MAX_TCP_CLIENTS: usize = 64;
/// How often blocked readers look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

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
}

/// Sends replies over whichever transport the request came in on.
pub struct Replier {
    udp: Arc<UdpSocket>,
    tcp: Mutex<BTreeMap<u64, TcpStream>>,
}

impl Replier {
    /// A replier for `udp` with no TCP clients yet.
    pub fn new(udp: Arc<UdpSocket>) -> Replier {
        Replier {
            udp,
            tcp: Mutex::new(BTreeMap::new()),
        }
    }

    /// Sends an encoded reply; a failure is logged, never fatal (the client may be gone).
    pub fn send(&self, bytes: &[u8], to: ReplyTo) {
        match to {
            ReplyTo::Udp(addr) => {
                if let Err(e) = self.udp.send_to(bytes, addr) {
                    tracing::debug!("reply to {to} failed: {e}");
                }
            }
            ReplyTo::Tcp(id) => {
                let Ok(mut clients) = self.tcp.lock() else {
                    return;
                };
                let Some(stream) = clients.get_mut(&id) else {
                    return;
                };
                let size = (bytes.len() as u32).to_be_bytes();
                if let Err(e) = stream
                    .write_all(&size)
                    .and_then(|()| stream.write_all(bytes))
                {
                    tracing::debug!("reply to {to} failed: {e}; dropping the connection");
                    clients.remove(&id);
                }
            }
        }
    }

    fn add_tcp(&self, id: u64, stream: TcpStream) -> bool {
        match self.tcp.lock() {
            Ok(mut clients) if clients.len() < MAX_TCP_CLIENTS => {
                clients.insert(id, stream);
                true
            }
            _ => false,
        }
    }

    fn remove_tcp(&self, id: u64) {
        if let Ok(mut clients) = self.tcp.lock() {
            clients.remove(&id);
        }
    }
}

/// Starts every transport: the UDP reader on `socket`, and a TCP listener on the same
/// address `udp_addr` (OSC 1.0 size-prefixed packets), or UDP only if TCP cannot bind.
///
/// # Errors
/// When a thread cannot be started.
pub fn spawn_all(
    socket: &Arc<UdpSocket>,
    udp_addr: SocketAddr,
    replier: &Arc<Replier>,
    packets: SyncSender<Incoming>,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    use anyhow::Context;
    let mut threads = vec![
        spawn_udp_reader(Arc::clone(socket), packets.clone(), Arc::clone(stop))
            .context("cannot start the UDP reader")?,
    ];
    match TcpListener::bind(udp_addr) {
        Ok(listener) => threads.push(
            spawn_tcp_listener(listener, Arc::clone(replier), packets, Arc::clone(stop))
                .context("cannot start the TCP listener")?,
        ),
        Err(e) => tracing::warn!("OSC over TCP unavailable on {udp_addr}: {e}; UDP only"),
    }
    Ok(threads)
}

/// Reads UDP datagrams into `packets` until `stop`.
pub fn spawn_udp_reader(
    socket: Arc<UdpSocket>,
    packets: SyncSender<Incoming>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    socket.set_read_timeout(Some(POLL))?;
    std::thread::Builder::new()
        .name("chronus-osc-udp".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while !stop.load(Ordering::Acquire) {
                match socket.recv_from(&mut buf) {
                    Ok((len, from)) => {
                        let packet = Incoming {
                            bytes: buf.get(..len).unwrap_or_default().to_vec(),
                            from: ReplyTo::Udp(from),
                        };
                        if let Err(TrySendError::Full(_)) = packets.try_send(packet) {
                            tracing::warn!("OSC: dropped a datagram from {from}: the handler is {} packets behind", 4096);
                        }
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(e) => tracing::warn!("OSC receive failed: {e}"),
                }
            }
        })
}

/// Accepts TCP clients on `listener` until `stop`; each gets a reader thread.
pub fn spawn_tcp_listener(
    listener: TcpListener,
    replier: Arc<Replier>,
    packets: SyncSender<Incoming>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    listener.set_nonblocking(true)?;
    std::thread::Builder::new()
        .name("chronus-osc-tcp".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let next_id = AtomicU64::new(1);
            while !stop.load(Ordering::Acquire) {
                match listener.accept() {
                    Ok((stream, peer)) => {
                        let id = next_id.fetch_add(1, Ordering::Relaxed);
                        let reader = stream.try_clone();
                        match reader {
                            Ok(reader) if replier.add_tcp(id, stream) => {
                                tracing::info!("OSC: tcp client {id} connected from {peer}");
                                let (client_replier, client_packets, client_stop) =
                                    (Arc::clone(&replier), packets.clone(), Arc::clone(&stop));
                                let spawned = std::thread::Builder::new()
                                    .name(format!("chronus-osc-tcp-{id}"))
                                    .stack_size(256 * 1024)
                                    .spawn(move || {
                                        read_tcp(reader, id, &client_packets, &client_stop);
                                        client_replier.remove_tcp(id);
                                        tracing::info!("OSC: tcp client {id} disconnected");
                                    });
                                if spawned.is_err() {
                                    replier.remove_tcp(id);
                                }
                            }
                            _ => tracing::warn!(
                                "OSC: refused tcp client from {peer} (too many clients)"
                            ),
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL / 2),
                    Err(e) => {
                        tracing::warn!("OSC: tcp accept failed: {e}");
                        std::thread::sleep(POLL);
                    }
                }
            }
        })
}

/// Reads size-prefixed packets from one client until it closes, errs, or sends a packet
/// size beyond [`MAX_TCP_PACKET`] (a broken stream cannot be resynchronised).
fn read_tcp(mut stream: TcpStream, id: u64, packets: &SyncSender<Incoming>, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(POLL));
    let mut read_exact = |buf: &mut [u8]| -> bool {
        let mut filled = 0;
        while filled < buf.len() {
            if stop.load(Ordering::Acquire) {
                return false;
            }
            match stream.read(&mut buf[filled..]) {
                Ok(0) => return false,
                Ok(n) => filled += n,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return false,
            }
        }
        true
    };
    loop {
        let mut size = [0u8; 4];
        if !read_exact(&mut size) {
            return;
        }
        let len = u32::from_be_bytes(size) as usize;
        if len > MAX_TCP_PACKET {
            tracing::warn!(
                "OSC: tcp client {id} sent a {len}-byte packet size; closing the connection"
            );
            return;
        }
        let mut bytes = vec![0u8; len];
        if !read_exact(&mut bytes) {
            return;
        }
        if packets
            .send(Incoming {
                bytes,
                from: ReplyTo::Tcp(id),
            })
            .is_err()
        {
            return;
        }
    }
}
