//! Clients we did not write: python-osc (in the project's `.venv`, made by
//! scripts/setup.sh) and liblo's `oscsend` and `oscdump` drive Chronus over UDP and TCP
//! (size-prefixed, and SLIP with `--tcp-framing slip`): parameters, address patterns,
//! `/status.reply`, `/metrics.reply`, `/fail`, and a `/chronus/failover` push received after
//! a kill.
//!
//! Real time: each server plays a few seconds at the common settings (block 64, depth 24:
//! 32 ms); only answers and values are asserted.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rosc::OscType;

/// liblo's `oscsend` (scripts/setup.sh installs liblo-tools).
fn oscsend(target: &[&str], address: &str, types: &str, args: &[&str]) {
    let status = Command::new("oscsend")
        .args(target)
        .args([address, types])
        .args(args)
        .status()
        .expect("oscsend runs (scripts/setup.sh installs liblo-tools)");
    assert!(status.success(), "oscsend {target:?} {address} failed");
}

fn get_value(server: &Server, address: &str) -> f32 {
    server.send("/get", vec![OscType::String(address.into())]);
    let replies = server.sync(11);
    match replies.as_slice() {
        [reply] if reply.addr == "/get.reply" => match reply.args[1] {
            OscType::Float(value) => value,
            ref other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
}

#[test]
fn python_osc_over_udp_and_tcp() {
    let server = Server::start(&["--output", "null"]);
    let port = server.addr.port().to_string();
    for transport in ["udp", "tcp1.0"] {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/interop.py");
        let output = python()
            .arg(script)
            .args(["127.0.0.1", &port, transport])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!("python-osc over {transport}:\n{stdout}");
        assert!(
            output.status.success(),
            "python-osc over {transport}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metrics = server.metrics();
    assert_eq!(get(&metrics, "underruns"), 0.0);
    server.quit();
}

#[test]
fn liblo_oscsend_over_udp_and_tcp() {
    let server = Server::start(&["--output", "null"]);
    let port = server.addr.port().to_string();
    oscsend(&["127.0.0.1", &port], "/mod/sine/freq", "f", &["550"]);
    assert_eq!(get_value(&server, "/mod/sine/freq"), 550.0);
    let tcp = format!("osc.tcp://127.0.0.1:{port}");
    oscsend(&[&tcp], "/mod/sine/freq", "f", &["660"]);
    // liblo's TCP send returns once written; the server's reader may still hold it.
    server.wait_until(std::time::Duration::from_secs(10), |_| {
        get_value(&server, "/mod/sine/freq") == 660.0
    });
    oscsend(&["127.0.0.1", &port], "/mod/*/gain", "f", &["0.125"]);
    for address in ["/mod/filter/gain", "/mod/gain/gain", "/mod/sine/gain"] {
        assert_eq!(get_value(&server, address), 0.125, "{address}");
    }
    oscsend(&["127.0.0.1", &port], "/gate/adsr", "T", &[]);
    let metrics = server.metrics();
    assert_eq!(get(&metrics, "commands_rejected"), 0.0);
    server.quit();
}

#[test]
fn python_osc_over_slip_framed_tcp() {
    let server = Server::start(&["--output", "null", "--tcp-framing", "slip"]);
    let port = server.addr.port().to_string();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/interop.py");
    let output = python()
        .arg(script)
        .args(["127.0.0.1", &port, "tcp1.1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("python-osc over SLIP:\n{stdout}");
    assert!(
        output.status.success(),
        "python-osc over SLIP: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    server.quit();
}

/// A python-osc client subscribed over TCP, and liblo's `oscdump` listening on the UDP
/// port a subscription came from, both receive `/chronus/failover` when the active worker
/// is killed.
#[test]
fn a_failover_push_reaches_python_osc_over_tcp_and_oscdump_over_udp() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let server = Server::start(&["--output", "null"]);
    let port = server.addr.port().to_string();

    // oscdump cannot send: subscribe from a UDP port, give the port to oscdump.
    let subscriber = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    subscriber
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let udp_port = subscriber.local_addr().unwrap().port();
    subscriber
        .send_to(
            &encode(
                "/notify",
                vec![OscType::Int(1), OscType::String("failover".into())],
            ),
            server.addr,
        )
        .unwrap();
    let mut buf = [0u8; 1024];
    let len = subscriber.recv(&mut buf).expect("/done /notify");
    let (_, done) = rosc::decoder::decode_udp(&buf[..len]).unwrap();
    assert!(format!("{done:?}").contains("/notify"), "{done:?}");
    drop(subscriber);
    let mut oscdump = Command::new("oscdump")
        .args(["-L", &udp_port.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("oscdump runs (scripts/setup.sh installs liblo-tools)");
    // Wait until oscdump holds the port (it appears in /proc/net/udp).
    let hex_port = format!(":{udp_port:04X} ");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string("/proc/net/udp")
        .unwrap()
        .contains(&hex_port)
    {
        assert!(Instant::now() < deadline, "oscdump did not bind {udp_port}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/interop.py");
    let mut python = python()
        .arg(script)
        .args(["127.0.0.1", &port, "tcp1.0", "push"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut python_lines = BufReader::new(python.stdout.take().unwrap()).lines();
    let first = python_lines.next().unwrap().unwrap();
    assert_eq!(first, "subscribed");

    signal(server.active_pid(), "KILL");

    let status = python.wait().unwrap();
    let rest: Vec<String> = python_lines.map_while(Result::ok).collect();
    assert!(status.success(), "python-osc: {rest:?}");
    assert!(
        rest.iter()
            .any(|l| l.starts_with("ok push /chronus/failover")),
        "{rest:?}"
    );

    let mut dump_lines = BufReader::new(oscdump.stdout.take().unwrap()).lines();
    let pushed = dump_lines
        .next()
        .expect("oscdump printed the push")
        .unwrap();
    let _ = oscdump.kill();
    let _ = oscdump.wait();
    println!("oscdump: {pushed}");
    // oscdump prints the bundle time, the address, the type tags and the arguments.
    assert!(
        pushed.contains(" /chronus/failover ihs ") && pushed.ends_with("\"worker died\""),
        "{pushed}"
    );
    server.quit();
}
