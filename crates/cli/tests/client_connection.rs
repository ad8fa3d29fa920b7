//! End to end: `chronus-client`'s TCP connection against the real server (null sink, the
//! helpers' depth 24: 32 ms): asks and their answers, a refused command's `/fail`
//! collected by `sync`, `/notify` pushes, and the connection's end when the server stops.
//! It asserts what arrives, never how fast (waits of seconds).

mod common;

use std::time::Duration;

use chronus_client::{ClientError, Connection};
use chronus_protocol::Reply;
use common::Server;
use rosc::{OscMessage, OscType};

const PATIENCE: Duration = Duration::from_secs(10);

fn message(addr: &str, args: Vec<OscType>) -> OscMessage {
    OscMessage {
        addr: addr.into(),
        args,
    }
}

#[test]
fn a_connection_asks_syncs_hears_pushes_and_sees_the_server_go() {
    let server = Server::start(&[]);
    let connection = Connection::connect(server.addr, PATIENCE).unwrap();

    let table = connection.table(PATIENCE).unwrap();
    assert!(
        table.lookup("/mod/filter/cutoff").is_some(),
        "the default patch's table"
    );
    connection.subscribe(&["params"], PATIENCE).unwrap();

    connection
        .send(message("/mod/filter/cutoff", vec![OscType::Float(900.0)]))
        .unwrap();
    connection
        .send(message("/mod/filter/cutoff", vec![OscType::Float(-5.0)]))
        .unwrap();
    let fails = connection.sync(PATIENCE).unwrap();
    assert_eq!(fails.len(), 1, "{fails:?}");
    assert_eq!(fails[0].0, "/mod/filter/cutoff");

    let push = connection.pushes().recv_timeout(PATIENCE).unwrap();
    assert_eq!(push.addr, "/chronus/params");
    assert_eq!(push.args[0], OscType::String("/mod/filter/cutoff".into()));

    let metrics = connection.metrics(PATIENCE).unwrap();
    assert!(metrics.contains_key("underruns"), "{metrics:?}");
    match connection.ask(
        message("/get", vec![OscType::String("/mod/filter/cutoff".into())]),
        PATIENCE,
    ) {
        Ok(Reply::Get { value, .. }) => assert!(value > 0.0),
        other => panic!("/get answered {other:?}"),
    }
    let refused = connection.ask(
        message("/get", vec![OscType::String("/mod/nothing/here".into())]),
        PATIENCE,
    );
    assert!(
        matches!(refused, Err(ClientError::Failed { ref address, .. }) if address == "/get"),
        "{refused:?}"
    );

    server.quit();
    let deadline = std::time::Instant::now() + PATIENCE;
    while connection.is_open() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !connection.is_open(),
        "the server's end closes the connection"
    );
    assert_eq!(
        connection.send(message("/status", vec![])),
        Err(ClientError::Closed)
    );
}
