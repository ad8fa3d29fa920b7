//! End to end: OSC over TCP (OSC 1.0 size-prefixed packets, as scsynth and liblo speak
//! it) on the same port as UDP: commands, the `/sync` barrier, queries and bad input.

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
