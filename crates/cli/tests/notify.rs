//! End to end: `/notify` pushes to subscribers over UDP (loopback) and TCP (OSC 1.0
//! size-prefixed packets), and `/dumpOSC`, against the real binary playing into the null
//! sink.
//!
//! Every test runs at the helpers' generous real-time depth (64-frame blocks, depth 24:
//! 32 ms) and waits for what it expects with timeouts of seconds: it asserts what arrives,
//! never how fast.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{encode, serve_command, temp_dir, Server};
use rosc::{OscMessage, OscPacket, OscType};

/// How long a test waits for a push it expects.
const PATIENCE: Duration = Duration::from_secs(20);

/// A UDP client of its own (not the server helper's socket), to subscribe with.
struct Subscriber {
    socket: UdpSocket,
    server: std::net::SocketAddr,
}

impl Subscriber {
    fn new(server: &Server) -> Subscriber {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Subscriber {
            socket,
            server: server.addr,
        }
    }

    fn send(&self, addr: &str, args: Vec<OscType>) {
        self.socket
            .send_to(&encode(addr, args), self.server)
            .unwrap();
    }

    /// Sends `/notify 1 <topics…>` and returns the answer (skipping pushes before it).
    fn subscribe(&self, topics: &[&str]) -> OscMessage {
        let mut args = vec![OscType::Int(1)];
        args.extend(topics.iter().map(|t| OscType::String(t.to_string())));
        self.send("/notify", args);
        self.wait_for(|m| m.addr == "/done" || m.addr == "/fail", PATIENCE)
            .expect("an answer to /notify")
    }

    /// The next message `wanted` accepts within `within`, skipping the others.
    fn wait_for(
        &self,
        wanted: impl Fn(&OscMessage) -> bool,
        within: Duration,
    ) -> Option<OscMessage> {
        let deadline = Instant::now() + within;
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            if let Ok((len, _)) = self.socket.recv_from(&mut buf) {
                if let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..len]) {
                    if wanted(&m) {
                        return Some(m);
                    }
                }
            }
        }
        None
    }
}

fn done_notify(m: &OscMessage) -> bool {
    m.addr == "/done" && m.args == vec![OscType::String("/notify".into())]
}

fn text(arg: &OscType) -> &str {
    match arg {
        OscType::String(s) => s,
        other => panic!("not a string: {other:?}"),
    }
}

fn float(arg: &OscType) -> f32 {
    match arg {
        OscType::Float(v) => *v,
        other => panic!("not a float: {other:?}"),
    }
}

fn tcp_send(stream: &mut TcpStream, addr: &str, args: Vec<OscType>) {
    let bytes = encode(addr, args);
    stream
        .write_all(&(bytes.len() as u32).to_be_bytes())
        .unwrap();
    stream.write_all(&bytes).unwrap();
}

fn tcp_receive(stream: &mut TcpStream) -> OscMessage {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut bytes = vec![0u8; u32::from_be_bytes(size) as usize];
    stream.read_exact(&mut bytes).unwrap();
    match rosc::decoder::decode_udp(&bytes).unwrap().1 {
        OscPacket::Message(m) => m,
        OscPacket::Bundle(_) => panic!("a bundle as a push"),
    }
}

/// Depth 24 blocks of 64 (32 ms). A UDP subscriber to the event topics gets
/// `/chronus/failover` when the active worker is crashed, then `/chronus/worker` pushes for
/// the spare that replaces it, up to `standby`; a panic injected in the notify thread is
/// caught and counted, and the pushes go on.
#[test]
fn a_udp_subscriber_hears_of_a_failover_and_the_new_spare() {
    let server = Server::start(&["--output", "null", "--allow-fault-injection"]);
    let subscriber = Subscriber::new(&server);
    assert!(
        done_notify(&subscriber.subscribe(&[])),
        "no topic: the events"
    );
    let crashed_pid = server.active_pid();
    let crashed_slot = {
        let m = server.metrics_full().1;
        (0..2)
            .find(|i| m.get(&format!("slot.{i}.role")).map(String::as_str) == Some("active"))
            .unwrap()
    };

    server.send("/debug/crash", vec![]);
    let failover = subscriber
        .wait_for(|m| m.addr == "/chronus/failover", PATIENCE)
        .expect("a /chronus/failover push");
    assert_eq!(failover.args.len(), 3, "{failover:?}");
    assert_eq!(failover.args[0], OscType::Int(1 - crashed_slot));
    assert!(matches!(failover.args[1], OscType::Long(frame) if frame > 0));
    assert_eq!(text(&failover.args[2]), "worker died");

    // The crashed slot's new worker, as it starts, joins and stands by.
    let spare = subscriber
        .wait_for(
            |m| {
                m.addr == "/chronus/worker"
                    && m.args.first() == Some(&OscType::Int(crashed_slot))
                    && m.args.get(1) == Some(&OscType::String("standby".into()))
            },
            PATIENCE,
        )
        .expect("a /chronus/worker push for the new spare standing by");
    let OscType::Int(pid) = spare.args[2] else {
        panic!("{spare:?}");
    };
    assert!(pid > 0 && pid as u32 != crashed_pid, "{spare:?}");

    // A panic in the notify thread is caught; the subscriber still hears of failovers.
    server.send("/debug/panic", vec![OscType::Int(4)]);
    let answer = server.recv().expect("an answer to /debug/panic 4");
    assert_eq!(answer.args, vec![OscType::String("/debug/panic".into())]);
    server.wait_until(PATIENCE, |m| m.get("notify_panics") == Some(&1.0));
    server.send("/debug/crash", vec![]);
    subscriber
        .wait_for(|m| m.addr == "/chronus/failover", PATIENCE)
        .expect("a /chronus/failover push after the panic");
    let metrics = server.metrics();
    assert_eq!(metrics["notify_subscribers"], 1.0);
    assert!(metrics["notify_pushes"] >= 4.0, "{metrics:?}");
    assert_eq!(metrics["notify_dropped"], 0.0);
    server.quit();
}

/// Depth 24 blocks of 64 (32 ms). A TCP subscriber to `params` gets every parameter change
/// another client makes (a set and a `/ramp`); `/notify 0` stops a UDP subscriber's pushes;
/// closing the TCP connection ends its subscription.
#[test]
fn params_pushes_reach_tcp_subscribers_and_stop_with_notify_0() {
    let server = Server::start(&["--output", "null"]);
    let mut tcp = TcpStream::connect(server.addr).expect("TCP on the OSC port");
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp_send(
        &mut tcp,
        "/notify",
        vec![OscType::Int(1), OscType::String("params".into())],
    );
    assert!(done_notify(&tcp_receive(&mut tcp)));
    let udp = Subscriber::new(&server);
    assert!(done_notify(&udp.subscribe(&["params"])));

    server.send("/mod/sine/freq", vec![OscType::Int(330)]);
    server.send(
        "/ramp",
        vec![
            OscType::String("/mod/sine/gain".into()),
            OscType::Float(0.25),
            OscType::Float(1.0),
        ],
    );
    server.sync(1);
    let set = tcp_receive(&mut tcp);
    assert_eq!(set.addr, "/chronus/params");
    assert_eq!(
        set.args,
        vec![
            OscType::String("/mod/sine/freq".into()),
            OscType::Float(330.0)
        ]
    );
    let ramp = tcp_receive(&mut tcp);
    assert_eq!(
        ramp.args,
        vec![
            OscType::String("/mod/sine/gain".into()),
            OscType::Float(0.25),
            OscType::Float(1.0)
        ]
    );
    let heard = udp
        .wait_for(|m| m.addr == "/chronus/params", PATIENCE)
        .expect("the UDP subscriber's push");
    assert_eq!(float(&heard.args[1]), 330.0);

    // `/notify 0`: answered, and no more pushes for this subscriber.
    udp.send("/notify", vec![OscType::Int(0)]);
    udp.wait_for(done_notify, PATIENCE)
        .expect("/done /notify for /notify 0");
    server.send("/mod/sine/freq", vec![OscType::Int(550)]);
    server.sync(2);
    let after = tcp_receive(&mut tcp);
    assert_eq!(
        float(&after.args[1]),
        550.0,
        "the TCP subscriber still hears"
    );
    // Both pushes of one change go out together: the UDP one would be here by now.
    assert!(
        udp.wait_for(|m| m.addr == "/chronus/params", Duration::from_secs(1))
            .is_none(),
        "a push after /notify 0"
    );
    assert_eq!(server.metrics()["notify_subscribers"], 1.0);

    // A closed connection ends the TCP subscription.
    drop(tcp);
    server.wait_until(PATIENCE, |m| m.get("notify_subscribers") == Some(&0.0));
    server.quit();
}

/// Depth 24 blocks of 64 (32 ms). While a 1 kHz note plays, `levels` reads it, the loudest
/// band of `spectrum` holds 1 kHz, and `scope` sends 256 stereo frames; 32 subscribers are
/// taken and the 33rd is refused with `/fail`.
#[test]
fn levels_spectrum_and_scope_follow_the_note_and_the_33rd_subscriber_is_refused() {
    let server = Server::start(&["--output", "null"]);
    let subscriber = Subscriber::new(&server);
    assert!(done_notify(
        &subscriber.subscribe(&["levels", "spectrum", "scope"])
    ));
    server.play_note(1000.0);

    let loud = subscriber
        .wait_for(
            |m| m.addr == "/chronus/levels" && m.args.len() == 4 && float(&m.args[0]) > 0.05,
            PATIENCE,
        )
        .expect("a /chronus/levels push with the note");
    let (peak, rms) = (float(&loud.args[0]), float(&loud.args[1]));
    assert!(peak <= 1.0 && rms > 0.0 && rms <= peak, "{loud:?}");

    let holds_the_note = |m: &OscMessage| {
        if m.addr != "/chronus/spectrum" || m.args.len() != 2 + 32 {
            return false;
        }
        let (low, high) = (float(&m.args[0]), float(&m.args[1]));
        let bands: Vec<f32> = m.args[2..].iter().map(float).collect();
        let loudest = (0..bands.len())
            .max_by(|&a, &b| bands[a].total_cmp(&bands[b]))
            .unwrap();
        let edge = |i: usize| low * (high / low).powf(i as f32 / bands.len() as f32);
        (edge(loudest)..edge(loudest + 1)).contains(&1000.0)
    };
    subscriber
        .wait_for(holds_the_note, PATIENCE)
        .expect("a /chronus/spectrum push whose loudest band holds 1 kHz");

    let scope = subscriber
        .wait_for(|m| m.addr == "/chronus/scope", PATIENCE)
        .expect("a /chronus/scope push");
    assert_eq!(scope.args[0], OscType::Int(8));
    assert_eq!(scope.args.len(), 1 + 2 * 256);

    // 31 more subscribers are taken; the 33rd is refused.
    let others: Vec<Subscriber> = (0..31).map(|_| Subscriber::new(&server)).collect();
    for other in &others {
        assert!(done_notify(&other.subscribe(&["patch"])));
    }
    let refused = Subscriber::new(&server).subscribe(&["patch"]);
    assert_eq!(refused.addr, "/fail", "{refused:?}");
    assert!(
        text(&refused.args[1]).contains("32 subscribers"),
        "{refused:?}"
    );
    let metrics = server.metrics();
    assert_eq!(metrics["notify_subscribers"], 32.0);
    assert_eq!(metrics["underruns"], 0.0);
    server.quit();
}

/// Depth 24 blocks of 64 (32 ms). `/dumpOSC 1` makes the log show each incoming message,
/// with its arguments; an unknown topic is refused with the list of topics; `metrics`
/// pushes the metrics at the rate asked, `patch` a committed patch's switch.
#[test]
fn dump_osc_logs_incoming_messages_and_metrics_and_patch_are_pushed() {
    let dir = temp_dir("notify-dump-osc");
    let log = dir.join("serve.stderr");
    let mut command = serve_command(&["--output", "null"]);
    command.stderr(std::fs::File::create(&log).unwrap());
    let server = Server::start_command(command);

    server.send("/dumpOSC", vec![OscType::Int(1)]);
    let answer = server.recv().expect("an answer to /dumpOSC");
    assert_eq!(answer.args, vec![OscType::String("/dumpOSC".into())]);
    server.send("/mod/sine/freq", vec![OscType::Float(523.25)]);
    server.sync(1);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("dumpOSC") && text.contains("/mod/sine/freq 523.25") {
            break;
        }
        assert!(Instant::now() < deadline, "no dumpOSC line in:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }

    server.send(
        "/notify",
        vec![OscType::Int(1), OscType::String("levles".into())],
    );
    let fail = server
        .recv()
        .expect("an answer to /notify with a bad topic");
    assert_eq!(fail.addr, "/fail");
    let reason = text(&fail.args[1]);
    assert!(
        reason.contains("unknown topic 'levles'") && reason.contains("levels"),
        "{reason}"
    );

    let subscriber = Subscriber::new(&server);
    assert!(done_notify(&subscriber.subscribe(&["metrics=10", "patch"])));
    let metrics = subscriber
        .wait_for(|m| m.addr == "/chronus/metrics", PATIENCE)
        .expect("a /chronus/metrics push");
    let names: Vec<&str> = metrics.args.iter().step_by(2).map(text).collect();
    assert!(names.contains(&"blocks_played"), "{names:?}");
    assert!(names.contains(&"notify_subscribers"), "{names:?}");
    // Ten a second: a few more within a few seconds (however loaded the machine).
    for _ in 0..3 {
        subscriber
            .wait_for(|m| m.addr == "/chronus/metrics", PATIENCE)
            .expect("more /chronus/metrics pushes");
    }

    server.send(
        "/patch/set",
        vec![
            OscType::String("sine".into()),
            OscType::String("freq".into()),
            OscType::Float(220.0),
        ],
    );
    server.send("/patch/commit", vec![]);
    let switched = subscriber
        .wait_for(|m| m.addr == "/chronus/patch", PATIENCE)
        .expect("a /chronus/patch push");
    assert!(
        matches!(switched.args[0], OscType::Int(version) if version >= 1),
        "{switched:?}"
    );
    assert!(
        matches!(switched.args[1], OscType::Long(frame) if frame > 0),
        "{switched:?}"
    );
    server.quit();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Depth 24 blocks of 64 (32 ms). A TCP subscriber to a quiet topic outlives the idle
/// timeout (1 s here): its subscription counts as activity, so a failover long after still
/// reaches it.
#[test]
fn a_tcp_subscription_holds_its_connection_open_past_the_idle_timeout() {
    let server = Server::start(&[
        "--output",
        "null",
        "--allow-fault-injection",
        "--tcp-idle-timeout",
        "1",
    ]);
    let mut tcp = TcpStream::connect(server.addr).expect("TCP on the OSC port");
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp_send(
        &mut tcp,
        "/notify",
        vec![OscType::Int(1), OscType::String("failover".into())],
    );
    assert!(done_notify(&tcp_receive(&mut tcp)));
    // Three idle timeouts with nothing either way.
    std::thread::sleep(Duration::from_secs(3));
    server.send("/debug/crash", vec![]);
    let push = tcp_receive(&mut tcp);
    assert_eq!(push.addr, "/chronus/failover", "{push:?}");
    server.quit();
}

/// Real time, paced null output at the default depth. A `seq` subscriber follows the
/// groove's clock a sixteenth at a time (bars counted from 1, sixteenths 0 to 15, at the
/// patch's 120 bpm), hears it stop, and follows the new tempo.
#[test]
fn a_seq_subscriber_follows_the_clock_step_by_step() {
    let patch = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../patches/groove.toml");
    let server = Server::start(&["--output", "null", "--patch", patch.to_str().unwrap()]);
    let subscriber = Subscriber::new(&server);
    assert!(done_notify(&subscriber.subscribe(&["seq"])));
    let step = |m: &OscMessage| -> (i32, i32, f32, i32) {
        match m.args[..] {
            [OscType::Int(bar), OscType::Int(sixteenth), OscType::Float(_), OscType::Float(bpm), OscType::Int(running)] => {
                (bar, sixteenth, bpm, running)
            }
            _ => panic!("{m:?}"),
        }
    };
    let mut steps = Vec::new();
    while steps.len() < 12 {
        let m = subscriber
            .wait_for(|m| m.addr == "/chronus/seq", PATIENCE)
            .expect("a /chronus/seq push");
        steps.push(step(&m));
    }
    for pair in steps.windows(2) {
        let ((bar_a, six_a, bpm, running), (bar_b, six_b, _, _)) = (pair[0], pair[1]);
        assert_eq!((bpm, running), (120.0, 1), "{steps:?}");
        assert!(bar_a >= 1 && (0..16).contains(&six_a), "{steps:?}");
        assert!(
            (bar_b, six_b) > (bar_a, six_a),
            "each push a later step: {steps:?}"
        );
    }
    server.send("/clock/stop", vec![]);
    let stopped = subscriber
        .wait_for(|m| m.addr == "/chronus/seq" && step(m).3 == 0, PATIENCE)
        .expect("a push saying the clock stopped");
    assert_eq!(step(&stopped).0, 1, "{stopped:?}");
    server.send("/clock/bpm", vec![OscType::Float(90.0)]);
    server.send("/clock/start", vec![]);
    subscriber
        .wait_for(
            |m| m.addr == "/chronus/seq" && step(m).3 == 1 && step(m).2 == 90.0,
            PATIENCE,
        )
        .expect("the clock runs again at 90 bpm");
    let metrics = server.metrics();
    assert_eq!(metrics["clock_running"], 1.0, "{metrics:?}");
    assert_eq!(metrics["clock_bpm"], 90.0, "{metrics:?}");
    server.quit();
}
