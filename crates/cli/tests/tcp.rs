//! End to end: OSC over TCP (OSC 1.0 size-prefixed packets, as scsynth and liblo speak
//! it; or OSC 1.1's SLIP with `--tcp-framing slip`) on the same port as UDP: commands, the
//! `/sync` barrier, queries and bad input.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{encode, Server};
use rosc::{OscPacket, OscType};

fn send(stream: &mut TcpStream, bytes: &[u8]) {
    stream
        .write_all(&(bytes.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(bytes).unwrap();
}

fn receive(stream: &mut TcpStream) -> rosc::OscMessage {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut bytes = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut bytes).unwrap();
    match rosc::decoder::decode_udp(&bytes).unwrap().1 {
        OscPacket::Message(m) => m,
        OscPacket::Bundle(_) => panic!("a bundle as a reply"),
    }
}

#[test]
fn osc_over_tcp_plays_syncs_and_refuses() {
    let server = Server::start(&["--output", "null"]);
    let mut stream = TcpStream::connect(server.addr).expect("TCP on the OSC port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();

    send(
        &mut stream,
        &encode("/mod/sine/freq", vec![OscType::Int(330)]),
    );
    send(
        &mut stream,
        &encode("/gate/adsr", vec![OscType::Bool(true)]),
    );
    send(&mut stream, &encode("/sync", vec![OscType::Int(5)]));
    let synced = receive(&mut stream);
    assert_eq!(
        (synced.addr.as_str(), synced.args.clone()),
        ("/synced", vec![OscType::Int(5)])
    );

    send(
        &mut stream,
        &encode("/get", vec![OscType::String("/mod/sine/freq".into())]),
    );
    let get = receive(&mut stream);
    assert_eq!(get.args[1], OscType::Float(330.0));

    send(
        &mut stream,
        &encode("/mod/sine/freq", vec![OscType::String("loud".into())]),
    );
    let fail = receive(&mut stream);
    assert_eq!(fail.addr, "/fail");

    send(&mut stream, b"not osc at all");
    send(&mut stream, &encode("/status", vec![]));
    let status = receive(&mut stream);
    assert_eq!(status.addr, "/status.reply");
    assert_eq!(status.args[2], OscType::Int(1), "one voice sounding");

    let metrics = server.metrics();
    assert_eq!(metrics["commands_rejected.invalid"], 1.0);
    assert_eq!(metrics["commands_rejected.undecodable"], 1.0);
    assert_eq!(metrics["commands_rejected"], 2.0);
    assert_eq!(metrics["underruns"], 0.0);
    drop(stream);
    server.quit();
}

/// SLIP's bytes (RFC 1055).
const END: u8 = 0xC0;
const ESC: u8 = 0xDB;

/// `bytes` SLIP-encoded, with an END before (`double`, as OSC 1.1 sends) or not.
fn slip(bytes: &[u8], double: bool) -> Vec<u8> {
    let mut out = if double { vec![END] } else { vec![] };
    for &b in bytes {
        match b {
            END => out.extend_from_slice(&[ESC, 0xDC]),
            ESC => out.extend_from_slice(&[ESC, 0xDD]),
            b => out.push(b),
        }
    }
    out.push(END);
    out
}

/// Reads one SLIP-framed reply (skipping empty frames) and decodes it.
fn receive_slip(stream: &mut TcpStream) -> rosc::OscMessage {
    let mut packet = Vec::new();
    let mut escaped = false;
    loop {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).unwrap();
        match (escaped, byte[0]) {
            (false, END) if packet.is_empty() => {}
            (false, END) => break,
            (false, ESC) => escaped = true,
            (true, 0xDC) => (packet.push(END), escaped = false).1,
            (true, 0xDD) => (packet.push(ESC), escaped = false).1,
            (true, other) => panic!("bad escape {other:#x} in a reply"),
            (false, b) => packet.push(b),
        }
    }
    match rosc::decoder::decode_udp(&packet).unwrap().1 {
        OscPacket::Message(m) => m,
        OscPacket::Bundle(_) => panic!("a bundle as a reply"),
    }
}

#[test]
fn slip_framing_on_tcp_escapes_both_ways_and_skips_what_is_too_large() {
    let server = Server::start(&[
        "--output",
        "null",
        "--tcp-framing",
        "slip",
        "--max-packet",
        "512",
    ]);
    let mut stream = TcpStream::connect(server.addr).expect("TCP on the OSC port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // An id whose bytes hold END and ESC: escaped on the way in and on the way out.
    let id = i32::from_be_bytes([END, ESC, END, 1]);
    stream
        .write_all(&slip(&encode("/sync", vec![OscType::Int(id)]), true))
        .unwrap();
    let synced = receive_slip(&mut stream);
    assert_eq!(
        (synced.addr.as_str(), synced.args.clone()),
        ("/synced", vec![OscType::Int(id)])
    );
    // Single-END framing (RFC 1055) is taken too; so are several packets in one write.
    let mut two = slip(
        &encode("/mod/sine/freq", vec![OscType::Float(330.0)]),
        false,
    );
    two.extend(slip(
        &encode("/get", vec![OscType::String("/mod/sine/freq".into())]),
        false,
    ));
    stream.write_all(&two).unwrap();
    assert_eq!(receive_slip(&mut stream).args[1], OscType::Float(330.0));
    // A packet over --max-packet is skipped to its END and counted; the next is served.
    let large = encode(
        "/sync",
        vec![OscType::Int(1), OscType::String("x".repeat(600))],
    );
    stream.write_all(&slip(&large, true)).unwrap();
    stream
        .write_all(&slip(&encode("/status", vec![]), true))
        .unwrap();
    assert_eq!(receive_slip(&mut stream).addr, "/status.reply");
    let metrics = server.metrics();
    assert_eq!(metrics["packets_too_large"], 1.0);
    assert_eq!(metrics["commands_rejected"], 0.0);
    drop(stream);
    server.quit();
}
