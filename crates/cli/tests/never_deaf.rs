//! End to end: no packet and no client makes the server deaf. A bundle timed before 1970
//! or far ahead, a panic while handling a packet, a TCP client that never reads, idle TCP
//! connections by the dozen: each gets an answer or a clear refusal, and every other
//! client is still answered, the sound plays and a killed worker is replaced. Every
//! server here plays in real time at depth 24 (`Server::start`).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{encode, grew, signal, Server};
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

/// Seconds from 1900 (OSC timetags) to 1970.
const NTP_TO_UNIX_SECONDS: u64 = 2_208_988_800;

/// A bundle setting the sine's frequency, timed `timetag`.
fn bundle_at(timetag: OscTime) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Bundle(OscBundle {
        timetag,
        content: vec![OscPacket::Message(OscMessage {
            addr: "/mod/sine/freq".into(),
            args: vec![OscType::Float(330.0)],
        })],
    }))
    .unwrap()
}

/// `bytes` with the OSC 1.0 (TCP) size prefix.
fn framed(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out
}

/// Reads one size-prefixed reply from a TCP connection.
fn receive(stream: &mut TcpStream) -> std::io::Result<OscMessage> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size)?;
    let mut bytes = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut bytes)?;
    match rosc::decoder::decode_udp(&bytes).unwrap().1 {
        OscPacket::Message(m) => Ok(m),
        OscPacket::Bundle(_) => panic!("a bundle as a reply"),
    }
}

/// Whether the server closed `stream` (end of stream or reset), waiting up to `limit`.
fn closed_by_server(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
    }
}

/// Asks `/status` over UDP and expects the answer.
fn assert_udp_answers(server: &Server, when: &str) {
    server.send("/status", vec![]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match server.recv() {
            Some(m) if m.addr == "/status.reply" => return,
            _ => {}
        }
    }
    panic!("UDP /status got no answer {when}");
}

/// SIGKILLs the standby worker and waits until a new one is joined in its place.
fn kill_standby_and_see_it_replaced(server: &Server) {
    let (numbers, roles) = server.metrics_full();
    let slot = (0..2)
        .find(|slot| roles.get(&format!("slot.{slot}.role")).map(String::as_str) == Some("standby"))
        .expect("a standby");
    let pid = numbers[&format!("slot.{slot}.pid")] as u32;
    let replacements = numbers["replacements"];
    signal(pid, "KILL");
    let key = format!("slot.{slot}.pid");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (numbers, roles) = server.metrics_full();
        let role = roles.get(&format!("slot.{slot}.role")).map(String::as_str);
        if numbers["replacements"] > replacements
            && numbers[&key] as u32 != pid
            && role == Some("standby")
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the killed standby {pid} was not replaced: {numbers:?} {roles:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn finding_1_a_bundle_timed_before_1970_is_late_not_fatal() {
    // Timetags before the NTP-to-Unix offset: zero-ish, and Unix seconds written into the
    // NTP field (a common client bug). One such bundle used to panic the OSC thread, and
    // the server played on but answered nothing, not even /quit.
    let server = Server::start(&["--output", "null"]);
    server.sync(1);
    let before = server.metrics();
    for seconds in [0u32, 1_700_000_000] {
        server.send_raw(&bundle_at(OscTime {
            seconds,
            fractional: 2,
        }));
    }
    // The OSC thread is alive: it answers, and took both commands (as late ones).
    server.sync(2);
    let after = server.metrics();
    assert_eq!(
        grew(&before, &after, "commands_accepted"),
        2.0 + 2.0,
        "both commands, the /sync and this /metrics: {after:?}"
    );
    server.quit();
}

#[test]
fn a_bundle_timed_more_than_60_s_ahead_is_refused_and_any_timetag_is_answered() {
    let server = Server::start(&["--output", "null"]);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + NTP_TO_UNIX_SECONDS;
    let far = OscTime {
        seconds: (now + 3600) as u32,
        fractional: 0,
    };
    server.send_raw(&bundle_at(far));
    let replies = server.sync(1);
    let fail = replies
        .iter()
        .find(|m| m.addr == "/fail")
        .unwrap_or_else(|| panic!("no /fail for a bundle an hour ahead: {replies:?}"));
    let reason = match &fail.args[..] {
        [OscType::String(address), OscType::String(reason)] => {
            assert_eq!(address, "/mod/sine/freq");
            reason.clone()
        }
        other => panic!("malformed /fail {other:?}"),
    };
    assert!(
        reason.contains("ahead") && reason.contains("60 s"),
        "{reason}"
    );

    // The last timetag of all, and a few seconds ahead: no panic, the server answers; the
    // near one is taken and plays when due.
    let before = server.metrics();
    server.send_raw(&bundle_at(OscTime {
        seconds: u32::MAX,
        fractional: u32::MAX,
    }));
    server.send_raw(&bundle_at(OscTime {
        seconds: (now + 2) as u32,
        fractional: 0,
    }));
    let replies = server.sync(2);
    assert_eq!(
        replies.iter().filter(|m| m.addr == "/fail").count(),
        1,
        "{replies:?}"
    );
    let after = server.metrics();
    assert_eq!(
        grew(&before, &after, "commands_accepted"),
        1.0 + 2.0,
        "the near one, the /sync and this /metrics: {after:?}"
    );
    assert_eq!(grew(&before, &after, "commands_rejected"), 1.0);
    server.quit();
}

#[test]
fn a_panic_while_handling_a_packet_is_answered_counted_and_survived() {
    let server = Server::start(&["--output", "null", "--allow-fault-injection"]);
    server.send("/gate/adsr", vec![OscType::Int(1)]);
    for round in 1..=3 {
        server.send("/debug/panic", vec![]);
        let replies = server.sync(round);
        let fail = replies
            .iter()
            .find(|m| m.addr == "/fail")
            .unwrap_or_else(|| panic!("no /fail for /debug/panic: {replies:?}"));
        assert_eq!(fail.args[0], OscType::String("/debug/panic".into()));
    }
    let metrics = server.metrics();
    assert_eq!(metrics["handler_panics"], 3.0, "{metrics:?}");
    assert_eq!(metrics["underruns"], 0.0, "{metrics:?}");
    kill_standby_and_see_it_replaced(&server);
    server.quit();
}

#[test]
fn a_thread_that_dies_anyway_stops_the_server_with_a_clear_error() {
    let mut server = Server::start(&["--output", "null", "--allow-fault-injection"]);
    // The OSC thread dies outside its per-packet guard: a server that can no longer
    // answer must not play on; it exits non-zero so a service manager restarts it.
    server.send("/debug/panic", vec![OscType::Int(1)]);
    let status = server.wait_for_exit(
        Duration::from_secs(20),
        "the server played on without its OSC thread",
    );
    assert!(!status.success(), "{status}");
}

#[test]
fn finding_2_a_tcp_client_that_never_reads_stalls_no_one() {
    let server = Server::start(&["--output", "null"]);
    let mut flooder = TcpStream::connect(server.addr).expect("TCP on the OSC port");
    flooder
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // `/status` (answered by the OSC thread) and `/sync` (answered by the supervisor
    // loop), as fast as the server takes them, and never a reply read.
    let mut batch = Vec::new();
    for i in 0..1000 {
        if i % 100 == 0 {
            batch.extend(framed(&encode("/sync", vec![OscType::Int(i)])));
        } else {
            batch.extend(framed(&encode("/status", vec![])));
        }
    }
    let flood = std::thread::spawn(move || {
        let mut sent = 0u64;
        while sent < 5_000_000 {
            if let Err(e) = flooder.write_all(&batch) {
                return (sent, Some(e));
            }
            sent += 1000;
        }
        (sent, None)
    });
    // Meanwhile, UDP is answered.
    let started = Instant::now();
    while !flood.is_finished() && started.elapsed() < Duration::from_secs(60) {
        assert_udp_answers(&server, "while a TCP client does not read its replies");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (sent, error) = flood.join().unwrap();
    let error = error.unwrap_or_else(|| {
        panic!("the client that never reads was never disconnected ({sent} packets sent)")
    });
    assert!(
        !matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "the server stopped reading the flooding client without disconnecting it ({sent} packets sent): {error}"
    );
    assert_udp_answers(&server, "after the flood");
    kill_standby_and_see_it_replaced(&server);
    let metrics = server.metrics();
    assert_eq!(metrics["tcp_slow_clients_dropped"], 1.0, "{metrics:?}");
    assert_eq!(metrics["underruns"], 0.0, "{metrics:?}");
    server.quit();
}

#[test]
fn finding_3_at_the_client_limit_the_longest_idle_tcp_connection_makes_room() {
    let server = Server::start(&["--output", "null"]);
    let mut idle: Vec<TcpStream> = (0..64)
        .map(|_| TcpStream::connect(server.addr).expect("TCP on the OSC port"))
        .collect();
    // Make sure all 64 are registered before the 65th comes (one reply each).
    for stream in &mut idle {
        stream
            .write_all(&framed(&encode("/version", vec![])))
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        assert_eq!(receive(stream).unwrap().addr, "/version.reply");
    }
    std::thread::sleep(Duration::from_millis(200));
    // The first connection has been idle longest: it makes room for the 65th.
    let mut newcomer = TcpStream::connect(server.addr).unwrap();
    newcomer
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    newcomer
        .write_all(&framed(&encode("/status", vec![])))
        .unwrap();
    let reply = receive(&mut newcomer);
    assert!(
        matches!(&reply, Ok(m) if m.addr == "/status.reply"),
        "the 65th TCP client was not served: {reply:?}"
    );
    assert!(
        closed_by_server(&mut idle[0], Duration::from_secs(10)),
        "the longest-idle connection is still open"
    );
    assert!(
        !closed_by_server(&mut idle[63], Duration::from_millis(200)),
        "the most recent idle connection was closed instead"
    );
    let metrics = server.metrics();
    assert_eq!(metrics["tcp_idle_clients_closed"], 1.0, "{metrics:?}");
    server.quit();
}

#[test]
fn idle_tcp_connections_are_closed_after_the_timeout_and_busy_ones_are_not() {
    let server = Server::start(&["--output", "null", "--tcp-idle-timeout", "3"]);
    let mut silent = TcpStream::connect(server.addr).unwrap();
    // Half a size prefix, then nothing: a stalled (or slowloris) client.
    let mut stalled = TcpStream::connect(server.addr).unwrap();
    stalled.write_all(&[0, 0]).unwrap();
    // A client that announces a 1 MiB packet and sends 10 bytes of it.
    let mut teasing = TcpStream::connect(server.addr).unwrap();
    teasing.write_all(&(1u32 << 20).to_be_bytes()).unwrap();
    teasing.write_all(&[0; 10]).unwrap();
    // A busy client asks every 0.3 s for 10 s (over three timeouts).
    let mut busy = TcpStream::connect(server.addr).unwrap();
    busy.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        busy.write_all(&framed(&encode("/version", vec![])))
            .unwrap();
        assert_eq!(
            receive(&mut busy).expect("the busy client is served").addr,
            "/version.reply"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Gone now: not counted as idle.
    drop(busy);
    for (name, stream) in [
        ("silent", &mut silent),
        ("stalled", &mut stalled),
        ("teasing", &mut teasing),
    ] {
        assert!(
            closed_by_server(stream, Duration::from_secs(20)),
            "the {name} connection was not closed"
        );
    }
    let metrics = server.metrics();
    assert_eq!(metrics["tcp_idle_clients_closed"], 3.0, "{metrics:?}");
    server.quit();
}
