//! End to end: safe when exposed (issue 10). Each rule is tried by a client that is not
//! loopback: it is bound to this machine's own non-loopback address (the source address
//! `ip route get 1` reports), and the server listens on every interface. On a machine with
//! no such address each test says so and passes without trying.
//!
//! The rules: binding beyond loopback without `--allow` warns; `--allow` ignores (and
//! counts) everyone else; the rate and size limits drop (and count); a UDP reply larger
//! than its request goes only to loopback or allow-listed clients (others get one short
//! `/fail` saying to use TCP); `/quit` and `/debug/*` only from loopback unless
//! `--allow-remote-quit`. Servers play in real time at depth 24 (`serve_command`'s
//! settings).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{chronus, encode, get, grew, text_arg as s, Server};
use rosc::{OscMessage, OscPacket, OscType};

/// This machine's non-loopback address, or `None` and a line saying the test is skipped.
fn machine_address(test: &str) -> Option<IpAddr> {
    let found = common::machine_address(test);
    if found.is_none() {
        eprintln!("SKIPPED {test}");
    }
    found
}

/// `chronus serve` on every interface (`--osc 0.0.0.0:0`), otherwise as `serve_command`
/// starts it, with `extra` flags.
fn exposed_command(extra: &[&str]) -> Command {
    let mut command = chronus();
    command
        .args(["serve", "--osc", "0.0.0.0:0", "--join-timeout", "20"])
        .args(["--block", "64", "--depth", "24", "--output", "null"])
        .args(extra)
        .env("CHRONUS_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// A server on every interface; its helper socket (metrics, quit) speaks from loopback.
fn exposed(extra: &[&str]) -> Server {
    Server::start_command(exposed_command(extra))
}

/// The server's address as the remote client reaches it: `ip`, the server's port.
fn at(ip: IpAddr, server: &Server) -> SocketAddr {
    SocketAddr::new(ip, server.addr.port())
}

/// A UDP client bound to `ip` (so its packets come from `ip`, not loopback).
fn remote_udp(ip: IpAddr) -> UdpSocket {
    let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    socket
}

/// A TCP client connected from `ip` to the server (a connection to one of this machine's
/// own addresses has that address as its source).
fn remote_tcp(ip: IpAddr, server: &Server) -> TcpStream {
    let stream = TcpStream::connect(at(ip, server)).unwrap();
    assert_eq!(
        stream.local_addr().unwrap().ip(),
        ip,
        "the client is not loopback"
    );
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Every OSC message arriving on `socket` within `within`, with its size in bytes.
fn udp_replies(socket: &UdpSocket, within: Duration) -> Vec<(OscMessage, usize)> {
    let deadline = Instant::now() + within;
    let mut buf = vec![0u8; 65_536];
    let mut replies = Vec::new();
    while Instant::now() < deadline {
        if let Ok(len) = socket.recv(&mut buf) {
            if let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..len]) {
                replies.push((m, len));
            }
        }
    }
    replies
}

/// Sends one size-prefixed packet.
fn tcp_send(stream: &mut TcpStream, bytes: &[u8]) {
    let mut framed = (bytes.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).unwrap();
}

/// Reads one size-prefixed reply; `None` when the server closed the connection.
fn tcp_receive(stream: &mut TcpStream) -> Option<OscMessage> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut bytes = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut bytes).ok()?;
    match rosc::decoder::decode_udp(&bytes).ok()?.1 {
        OscPacket::Message(m) => Some(m),
        OscPacket::Bundle(_) => panic!("a bundle as a reply"),
    }
}

#[test]
fn binding_beyond_loopback_warns_unless_allow_restricts_clients() {
    // Needs no remote client, but is one of the rules.
    let stderr_of = |extra: &[&str]| -> String {
        let mut child = exposed_command(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("CHRONUS_LOG", "warn")
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        for line in stdout.lines() {
            if line.unwrap().contains("serving OSC on udp") {
                break;
            }
        }
        let _ = child.kill();
        let mut text = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let _ = child.wait();
        text
    };
    let open = stderr_of(&[]);
    assert!(
        open.contains("warning")
            && open.contains("open to every client")
            && open.contains("--allow"),
        "no warning for OSC on 0.0.0.0 without --allow: {open}"
    );
    let restricted = stderr_of(&["--allow", "192.0.2.0/24,10.0.0.0/8"]);
    assert!(
        !restricted.contains("open to every client"),
        "a warning though --allow restricts the clients: {restricted}"
    );
    // A mistyped network is refused with a reason before anything starts.
    let bad = chronus()
        .args(["serve", "--allow", "192.168.1.7/24"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let text = String::from_utf8_lossy(&bad.stderr);
    assert!(text.contains("did you mean 192.168.1.0/24"), "{text}");
}

#[test]
fn clients_outside_the_allow_list_are_ignored_and_counted() {
    let Some(ip) = machine_address("clients_outside_the_allow_list_are_ignored_and_counted") else {
        return;
    };
    // 198.51.100.0/24 (TEST-NET-2) holds no address of this machine.
    let server = exposed(&["--allow", "198.51.100.0/24"]);
    let before = server.metrics();
    let udp = remote_udp(ip);
    for id in 0..5 {
        udp.send_to(&encode("/sync", vec![OscType::Int(id)]), at(ip, &server))
            .unwrap();
    }
    let replies = udp_replies(&udp, Duration::from_secs(1));
    assert!(
        replies.is_empty(),
        "a client not allowed was answered: {replies:?}"
    );
    let mut tcp = remote_tcp(ip, &server);
    tcp_send(&mut tcp, &encode("/status", vec![]));
    assert!(
        tcp_receive(&mut tcp).is_none(),
        "a tcp client not allowed was answered"
    );
    let after = server.metrics();
    assert_eq!(grew(&before, &after, "packets_refused_not_allowed"), 5.0);
    assert_eq!(
        grew(&before, &after, "tcp_clients_refused_not_allowed"),
        1.0
    );
    // Nothing of theirs reached the handler: only the helper's /metrics (from loopback,
    // which is always served).
    assert_eq!(grew(&before, &after, "commands_received"), 1.0);
    server.quit();

    // Allow-listed, the same client is served.
    let server = exposed(&["--allow", &format!("{ip}/32")]);
    udp.send_to(&encode("/sync", vec![OscType::Int(7)]), at(ip, &server))
        .unwrap();
    let replies = udp_replies(&udp, Duration::from_secs(1));
    assert!(
        replies
            .iter()
            .any(|(m, _)| m.addr == "/synced" && m.args == vec![OscType::Int(7)]),
        "an allow-listed client was not answered: {replies:?}"
    );
    let mut tcp = remote_tcp(ip, &server);
    tcp_send(&mut tcp, &encode("/status", vec![]));
    assert_eq!(
        tcp_receive(&mut tcp).expect("an answer").addr,
        "/status.reply"
    );
    let after = server.metrics();
    assert_eq!(after["packets_refused_not_allowed"], 0.0);
    server.quit();
}

#[test]
fn the_rate_and_size_limits_drop_and_count() {
    let Some(ip) = machine_address("the_rate_and_size_limits_drop_and_count") else {
        return;
    };
    let server = exposed(&["--rate-limit", "50", "--max-packet", "256"]);
    let before = server.metrics();

    // UDP: 200 /sync at once from one client; its bucket holds 50 (and refills 50 a
    // second). /synced is no larger than /sync, so every one let through is answered.
    let udp = remote_udp(ip);
    let sent = 200;
    for id in 0..sent {
        udp.send_to(&encode("/sync", vec![OscType::Int(id)]), at(ip, &server))
            .unwrap();
    }
    let answered = udp_replies(&udp, Duration::from_secs(2))
        .iter()
        .filter(|(m, _)| m.addr == "/synced")
        .count() as f64;
    let after = server.metrics();
    let limited = grew(&before, &after, "packets_rate_limited");
    assert_eq!(
        answered + limited,
        f64::from(sent),
        "answered {answered}, limited {limited}"
    );
    assert!(
        limited >= 100.0,
        "only {limited} of {sent} rate-limited at 50 a second"
    );

    // Over the size limit: a 300-byte datagram, and a 300-byte TCP packet, which is
    // skipped so the next packet on the connection is still served.
    std::thread::sleep(Duration::from_millis(1100)); // the bucket refills
    let large = encode("/sync", vec![OscType::Int(1), s(&"x".repeat(270))]);
    assert!(large.len() > 256);
    udp.send_to(&large, at(ip, &server)).unwrap();
    assert!(udp_replies(&udp, Duration::from_millis(500)).is_empty());
    let mut tcp = remote_tcp(ip, &server);
    tcp_send(&mut tcp, &large);
    tcp_send(&mut tcp, &encode("/sync", vec![OscType::Int(9)]));
    let reply = tcp_receive(&mut tcp).expect("an answer after the large packet");
    assert_eq!(
        (reply.addr.as_str(), reply.args),
        ("/synced", vec![OscType::Int(9)])
    );

    // TCP: one connection is one client; packets over its rate are dropped.
    let burst = 150;
    for id in 0..burst {
        tcp_send(&mut tcp, &encode("/sync", vec![OscType::Int(1000 + id)]));
    }
    std::thread::sleep(Duration::from_millis(1500)); // the bucket refills
    tcp_send(&mut tcp, &encode("/sync", vec![OscType::Int(-1)]));
    let mut synced = 0;
    loop {
        let m = tcp_receive(&mut tcp).expect("/synced -1");
        if m.args == vec![OscType::Int(-1)] {
            break;
        }
        synced += 1;
    }
    let end = server.metrics();
    assert_eq!(grew(&before, &end, "packets_too_large"), 2.0);
    let tcp_limited = grew(&after, &end, "packets_rate_limited");
    assert_eq!(
        f64::from(synced) + tcp_limited,
        f64::from(burst),
        "{synced} answered"
    );
    assert!(tcp_limited >= 50.0, "{tcp_limited}");
    server.quit();
}

#[test]
fn udp_replies_larger_than_the_request_go_only_to_allowed_clients() {
    let Some(ip) =
        machine_address("udp_replies_larger_than_the_request_go_only_to_allowed_clients")
    else {
        return;
    };
    let server = exposed(&[]);
    let before = server.metrics();
    let udp = remote_udp(ip);
    let request = encode("/metrics", vec![]);
    udp.send_to(&request, at(ip, &server)).unwrap();
    // An unknown address: its usual /fail is longer than the request too.
    udp.send_to(&encode("/x", vec![]), at(ip, &server)).unwrap();
    let replies = udp_replies(&udp, Duration::from_secs(1));
    assert_eq!(replies.len(), 2, "{replies:?}");
    for ((reply, _), asked) in replies.iter().zip(["/metrics", "/x"]) {
        assert_eq!(reply.addr, "/fail");
        assert_eq!(reply.args[0], s(asked));
        let OscType::String(reason) = &reply.args[1] else {
            panic!("{reply:?}")
        };
        assert!(reason.contains("TCP"), "{reason}");
    }
    // The same question over TCP is answered in full.
    let mut tcp = remote_tcp(ip, &server);
    tcp_send(&mut tcp, &request);
    assert_eq!(
        tcp_receive(&mut tcp).expect("an answer").addr,
        "/metrics.reply"
    );
    // As are replies no larger than the request, over UDP.
    udp.send_to(&encode("/sync", vec![OscType::Int(3)]), at(ip, &server))
        .unwrap();
    let replies = udp_replies(&udp, Duration::from_secs(1));
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0.addr, "/synced");
    // A bundle of /notify subscriptions is answered like any other packet: one short
    // /fail, not one answer per subscription (the notify thread's answers are not held to
    // the request's size, so such a client never reaches it).
    let notify = encode("/notify", vec![OscType::Int(1)]);
    let mut bundle = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
    for _ in 0..100 {
        bundle.extend_from_slice(&(notify.len() as u32).to_be_bytes());
        bundle.extend_from_slice(&notify);
    }
    udp.send_to(&bundle, at(ip, &server)).unwrap();
    let replies = udp_replies(&udp, Duration::from_secs(1));
    let answered: usize = replies.iter().map(|(_, len)| len).sum();
    let short_fail = replies.last().map_or(0, |(_, len)| *len);
    assert!(
        answered <= bundle.len() + short_fail && replies.len() < 100,
        "{} replies, {answered} bytes for {}",
        replies.len(),
        bundle.len()
    );
    let after = server.metrics();
    assert_eq!(get(&after, "notify_subscribers"), 0.0);
    assert!(grew(&before, &after, "replies_refused_amplification") > 2.0);
    server.quit();

    // Allow-listed, the client gets the full reply over UDP.
    let server = exposed(&["--allow", &format!("{ip}/32")]);
    udp.send_to(&request, at(ip, &server)).unwrap();
    let replies = udp_replies(&udp, Duration::from_secs(1));
    assert!(
        replies
            .iter()
            .any(|(m, len)| m.addr == "/metrics.reply" && *len > request.len()),
        "{replies:?}"
    );
    server.quit();
}

#[test]
fn quit_and_fault_injection_only_from_loopback_unless_allow_remote_quit() {
    let Some(ip) =
        machine_address("quit_and_fault_injection_only_from_loopback_unless_allow_remote_quit")
    else {
        return;
    };
    let server = exposed(&["--allow-fault-injection"]);
    let before = server.metrics();
    let mut tcp = remote_tcp(ip, &server);
    for (address, args) in [
        ("/quit", vec![]),
        ("/debug/crash", vec![]),
        ("/debug/panic", vec![OscType::Int(2)]),
    ] {
        tcp_send(&mut tcp, &encode(address, args));
        let reply = tcp_receive(&mut tcp).expect("an answer");
        assert_eq!(reply.addr, "/fail", "{reply:?}");
        assert_eq!(reply.args[0], s(address));
        let OscType::String(reason) = &reply.args[1] else {
            panic!("{reply:?}")
        };
        assert!(reason.contains("--allow-remote-quit"), "{reason}");
    }
    // Over UDP too (the /fail is then the short one: it is larger than the request).
    let udp = remote_udp(ip);
    udp.send_to(&encode("/quit", vec![]), at(ip, &server))
        .unwrap();
    let replies = udp_replies(&udp, Duration::from_secs(1));
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0.addr, "/fail");
    let after = server.metrics();
    assert_eq!(
        grew(&before, &after, "commands_rejected.not_permitted"),
        4.0
    );
    assert_eq!(after["crash_count"], 0.0);
    assert_eq!(after["spare_ready"], 1.0, "the server serves on");
    // From loopback, /quit is taken.
    server.quit();

    // With --allow-remote-quit, the remote client may stop the server.
    let mut server = exposed(&["--allow-remote-quit"]);
    let mut tcp = remote_tcp(ip, &server);
    tcp_send(&mut tcp, &encode("/quit", vec![]));
    let reply = tcp_receive(&mut tcp).expect("/done /quit");
    assert_eq!(
        (reply.addr.as_str(), reply.args),
        ("/done", vec![s("/quit")])
    );
    let status = server.wait_for_exit(Duration::from_secs(20), "serve exits after a remote /quit");
    assert!(status.success(), "{status}");
}
