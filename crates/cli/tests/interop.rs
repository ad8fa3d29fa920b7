//! Clients we did not write: python-osc (in the project's `.venv`, made by
//! scripts/setup.sh) and liblo's `oscsend` drive Chronus over UDP and TCP: parameters,
//! address patterns, `/status.reply`, `/metrics.reply`, `/fail`.
//!
//! Real time: each server plays a few seconds at the common settings (block 64, depth 24:
//! 32 ms); only answers and values are asserted.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use rosc::OscType;

/// The project's python (scripts/setup.sh makes it, with python-osc).
fn python() -> Command {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup.sh (it installs python-osc there)",
        venv.display()
    );
    Command::new(venv)
}

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
