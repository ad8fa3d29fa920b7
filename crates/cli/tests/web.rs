//! `chronus web` end to end, in a real headless browser: a recorded server, `chronus web`
//! in front of it, and Debian's chromium driven through WebDriver (chromedriver, plain
//! HTTP and JSON from a small blocking client below). The browser part is skipped, with a
//! printed line, only when chromedriver is absent and `CI` is unset; in CI it must run.
//!
//! Depth: the server's test settings (64-frame blocks, depth 24); every wait is a poll with
//! a generous deadline, and the one timed claim ("server gone" within 2 s of the server's
//! exit) is the page's own promise, measured from the moment the process has exited.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{assert_replay_equals_served, chronus, read_wav, Recorded};
use rosc::OscType;
use serde_json::{json, Value};

/// A child process killed when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `chronus web --osc <server> --http 127.0.0.1:0`: the process and the URL it printed.
fn start_web(server: SocketAddr) -> (Killed, String) {
    start_web_with(server, &[])
}

/// [`start_web`] with `extra` arguments (`--audio`).
fn start_web_with(server: SocketAddr, extra: &[&str]) -> (Killed, String) {
    let mut child = chronus()
        .args(["web", "--osc", &server.to_string(), "--http", "127.0.0.1:0"])
        .args(extra)
        .env("CHRONUS_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("chronus web starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("chronus web printed its URL").unwrap();
        if let Some(url) = line.strip_prefix("chronus web: open ") {
            break url.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Killed(child), url)
}

/// One HTTP/1.1 request (`Connection: close`) with the given extra headers; returns the
/// status code and the body.
fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request += &format!("Host: {addr}\r\n");
    }
    for (k, v) in headers {
        request += &format!("{k}: {v}\r\n");
    }
    let body = body.unwrap_or("");
    if method == "POST" {
        request += &format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
    }
    request += "\r\n";
    request += body;
    stream.write_all(request.as_bytes()).unwrap();
    // Read the head, then exactly the body it announces: chromedriver keeps the connection
    // open whatever `Connection: close` says, so reading to the end would wait for a timeout.
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head += &line;
    }
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let lower = head.to_ascii_lowercase();
    let length = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let body = if let Some(length) = length {
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        String::from_utf8_lossy(&body).into_owned()
    } else if lower.contains("transfer-encoding: chunked") {
        let mut body = String::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).unwrap();
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body += &String::from_utf8_lossy(&chunk[..size]);
        }
        body
    } else {
        let mut body = String::new();
        let _ = reader.read_to_string(&mut body);
        body
    };
    (status, body)
}

/// A WebDriver session on a chromedriver.
struct Browser {
    driver: String,
    session: String,
}

impl Browser {
    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let body = (method == "POST").then(|| body.to_string());
        let (status, text) = http(&self.driver, method, &path, &[], body.as_deref());
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{method} {path}: not JSON ({status}): {text}"));
        assert_eq!(status, 200, "{method} {path}: {value}");
        value["value"].clone()
    }

    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
    }

    fn element(&self, css: &str) -> String {
        let found = self.call(
            "POST",
            "/element",
            json!({"using": "css selector", "value": css}),
        );
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    fn keys(&self, actions: Vec<Value>) {
        self.call(
            "POST",
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]}),
        );
    }

    fn text(&self, css: &str) -> String {
        self.script(&format!(
            "const e = document.querySelector({}); return e ? e.textContent : '';",
            json!(css)
        ))
        .as_str()
        .unwrap_or("")
        .to_string()
    }

    /// Polls `script` until it returns true, for at most `within`.
    fn wait_for(&self, script: &str, within: Duration, what: &str) {
        let deadline = Instant::now() + within;
        while self.script(script) != json!(true) {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn screenshot(&self, path: &std::path::Path) {
        let data = self.call("GET", "/screenshot", json!({}));
        let png = base64_decode(data.as_str().unwrap());
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            &self.driver,
            "DELETE",
            &format!("/session/{}", self.session),
            &[],
            None,
        );
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &c)| {
            acc | (u32::from(value(c)) << (18 - 6 * i))
        });
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver on a free port and a headless chromium session through it.
fn start_browser() -> (Killed, Browser) {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Killed(driver);
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "chromedriver never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut options = json!({"args": [
        "--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
        "--window-size=1400,1500", "--disable-gpu",
        "--autoplay-policy=no-user-gesture-required",
    ]});
    if std::path::Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let body = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}});
    let (status, text) = http(&addr, "POST", "/session", &[], Some(&body.to_string()));
    assert_eq!(status, 200, "new session: {text}");
    let value: Value = serde_json::from_str(&text).unwrap();
    let session = value["value"]["sessionId"].as_str().unwrap().to_string();
    (
        driver,
        Browser {
            driver: addr,
            session,
        },
    )
}

fn chromedriver_present() -> bool {
    Command::new("chromedriver")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The `/mod/<id>/<param>` addresses of the server's address table, rebuilt from its
/// `/table` answer (over UDP) as `chronus send` does.
fn table_parameters(server: &common::Server) -> BTreeSet<String> {
    server.send("/table", vec![]);
    let table = loop {
        let m = server.recv().expect("/table.reply");
        if m.addr == "/table.reply" {
            break m;
        }
    };
    let modules: Vec<(String, String)> = table.args[1..]
        .chunks(2)
        .map(|pair| match pair {
            [OscType::String(id), OscType::String(kind)] => (id.clone(), kind.clone()),
            other => panic!("module {other:?}"),
        })
        .collect();
    let table = chronus_protocol::AddressTable::from_type_names(&modules, false).unwrap();
    table
        .entries()
        .map(|entry| entry.address.to_string())
        .filter(|address| address.starts_with("/mod/"))
        .collect()
}

/// The guard without a browser: every request needs the token, the bound Host and, when
/// it has one, our own Origin; the WebSocket too. Depth: none (no audio asserted).
#[test]
fn web_refuses_foreign_origin_foreign_host_and_no_token() {
    let recorded = Recorded::start("web-guard", &[]);
    let (_web, url) = start_web(recorded.server.addr);
    let rest = url.strip_prefix("http://").unwrap();
    let (addr, query) = rest.split_once('/').unwrap();
    let tokened = format!("/{query}");
    let token = query.trim_start_matches("?token=");
    let port = addr.rsplit(':').next().unwrap();
    let localhost = format!("localhost:{port}");
    let own_origin = format!("http://{addr}");

    let (status, body) = http(addr, "GET", &tokened, &[], None);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<title>Chronus</title>"));
    let (status, _) = http(addr, "GET", &tokened, &[("Host", &localhost)], None);
    assert_eq!(status, 200);
    let (status, _) = http(addr, "GET", &tokened, &[("Origin", &own_origin)], None);
    assert_eq!(status, 200);
    let cookie = format!("chronus_web_{port}={token}");
    let (status, _) = http(addr, "GET", "/app.js", &[("Cookie", &cookie)], None);
    assert_eq!(status, 200);

    for (path, headers, why) in [
        ("/", vec![], "token"),
        ("/app.js", vec![], "token"),
        ("/?token=0123", vec![], "token"),
        (
            tokened.as_str(),
            vec![("Origin", "http://evil.example")],
            "Origin",
        ),
        (tokened.as_str(), vec![("Host", "evil.example")], "Host"),
        (tokened.as_str(), vec![("Host", "evil.example:80")], "Host"),
        (
            "/ws",
            vec![("Upgrade", "websocket"), ("Connection", "Upgrade")],
            "token",
        ),
        (
            "/ws",
            vec![
                ("Cookie", cookie.as_str()),
                ("Origin", "http://evil.example"),
            ],
            "Origin",
        ),
    ] {
        let (status, body) = http(addr, "GET", path, &headers, None);
        assert_eq!(status, 403, "{path} {headers:?}: {body}");
        assert!(body.contains(why), "{path} {headers:?}: {body}");
    }

    // A non-loopback address is refused at start, with the reason.
    let out = chronus()
        .args(["web", "--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback only"), "{stderr}");
    let _ = std::fs::remove_dir_all(&recorded.dir);
}

/// The page in headless chromium: no errors; a slider per parameter of the address table,
/// moved by a change made elsewhere; arrow keys on the cutoff slider reach the command log; computer keys play notes that
/// sound in the recording; "kill active worker" marks the failover timeline while the
/// served recording equals its replay; "server gone" within 2 s of the server's exit; the
/// page follows a server back at the same address.
/// Depth: the server's test settings (64-frame blocks, depth 24).
#[test]
fn web_page_in_a_headless_browser() {
    if !chromedriver_present() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver is missing in CI: scripts/setup.sh installs chromium and chromium-driver"
        );
        println!("skipping web_page_in_a_headless_browser: no chromedriver (scripts/setup.sh installs chromium and chromium-driver)");
        return;
    }
    let recorded = Recorded::start("web-page", &["--allow-fault-injection"]);
    let Recorded {
        mut server,
        dir,
        wav,
        log,
    } = recorded;
    let expected = table_parameters(&server);
    let (_web, url) = start_web(server.addr);
    let (_driver, browser) = start_browser();
    browser.call("POST", "/url", json!({"url": url}));
    browser.wait_for(
        "return document.getElementById('status').textContent.startsWith('connected')",
        Duration::from_secs(20),
        "the page never said it is connected",
    );
    browser.wait_for(
        "return document.querySelectorAll('[role=slider]').length > 0",
        Duration::from_secs(10),
        "no sliders",
    );

    // Every slider is a parameter of the table, and every parameter has its slider.
    let labels = browser.script(
        "return [...document.querySelectorAll('[role=slider]')].map(e => e.getAttribute('aria-label'))",
    );
    let labels: BTreeSet<String> = labels
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert_eq!(labels, expected);
    let slider = browser.script(
        "const s = document.querySelector('[aria-label=\"/mod/filter/cutoff\"]'); \
         return [s.getAttribute('role'), s.getAttribute('aria-valuemin'), s.getAttribute('aria-valuemax'), s.tabIndex]",
    );
    assert_eq!(slider, json!(["slider", "10", "20000", 0]));

    // A change made elsewhere (here: over UDP) moves the slider.
    server.send("/mod/filter/q", vec![OscType::Float(2.5)]);
    browser.wait_for(
        "return document.querySelector('[aria-label=\"/mod/filter/q\"]').getAttribute('aria-valuenow') === '2.5'",
        Duration::from_secs(10),
        "the q slider did not follow a change made elsewhere",
    );

    // Arrow keys on the cutoff slider: its new value lands in the server's command log.
    let before = browser.script(
        "const s = document.querySelector('[aria-label=\"/mod/filter/cutoff\"]'); s.focus(); \
         return Number(s.getAttribute('aria-valuenow'))",
    );
    let before = before.as_f64().unwrap();
    let mut presses = Vec::new();
    for _ in 0..3 {
        presses.push(json!({"type": "keyDown", "value": "\u{E014}"}));
        presses.push(json!({"type": "keyUp", "value": "\u{E014}"}));
    }
    presses.push(json!({"type": "keyDown", "value": "\u{E008}"}));
    presses.push(json!({"type": "keyDown", "value": "\u{E014}"}));
    presses.push(json!({"type": "keyUp", "value": "\u{E014}"}));
    presses.push(json!({"type": "keyUp", "value": "\u{E008}"}));
    browser.keys(presses);
    let now: f64 = browser
        .script("return Number(document.querySelector('[aria-label=\"/mod/filter/cutoff\"]').getAttribute('aria-valuenow'))")
        .as_f64()
        .unwrap();
    assert!(
        now > before,
        "the cutoff slider did not move up: {before} -> {now}"
    );
    let in_log = |what: &dyn Fn(&str) -> bool| wait_in_log(&log, what);
    in_log(&|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.get(2) == Some(&"/mod/filter/cutoff")
            && words
                .get(3)
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| (v - now).abs() <= now * 1e-4)
    });

    // The computer's keys play notes: a (C4) and d (E4), held for a while.
    browser.keys(vec![
        json!({"type": "keyDown", "value": "a"}),
        json!({"type": "keyDown", "value": "d"}),
        json!({"type": "pause", "duration": 600}),
        json!({"type": "keyUp", "value": "a"}),
        json!({"type": "keyUp", "value": "d"}),
    ]);
    in_log(&|line| line.contains("/note/on") && line.contains(" 60 "));
    in_log(&|line| line.contains("/note/off") && line.contains(" 64"));

    // Kill the active worker from the page: the timeline marks the failover.
    assert_eq!(
        browser.script("return document.getElementById('faults').hidden"),
        json!(false)
    );
    browser.keys(vec![json!({"type": "keyDown", "value": "h"})]);
    let kill = browser.element("#kill");
    browser.call("POST", &format!("/element/{kill}/click"), json!({}));
    browser.wait_for(
        "return [...document.querySelectorAll('#failovers li')].some(li => li.textContent.includes('failover to slot'))",
        Duration::from_secs(20),
        "no failover in the page's timeline",
    );
    server.wait_until(Duration::from_secs(30), |m| {
        m.get("failover_count").copied().unwrap_or(0.0) >= 1.0 && m.get("spare_ready") == Some(&1.0)
    });
    // The screenshot for the README (docs/web.png), taken with a note held.
    if let Some(path) = std::env::var_os("CHRONUS_WEB_SCREENSHOT") {
        std::thread::sleep(Duration::from_millis(600));
        browser.screenshot(std::path::Path::new(&path));
    }
    browser.keys(vec![json!({"type": "keyUp", "value": "h"})]);
    let errors = browser.script("return window.__chronusErrors");
    assert_eq!(errors, json!([]), "errors on the page");

    // Stop the server: the page says so within 2 s of its exit.
    server.send("/quit", vec![]);
    server.wait_for_exit(Duration::from_secs(20), "serve did not exit after /quit");
    let exited = Instant::now();
    browser.wait_for(
        "return document.getElementById('status').textContent.startsWith('server gone')",
        Duration::from_secs(10),
        "the page never said the server is gone",
    );
    let shown = exited.elapsed();
    assert!(
        shown <= Duration::from_secs(2),
        "'server gone' took {shown:?}"
    );
    assert!(browser.text("#status").contains("server gone"));
    // A server again at the same address (without fault injection): the page follows it,
    // rebuilt from its table, and shows no fault buttons.
    let addr = server.addr.to_string();
    let mut again = chronus();
    again
        .args([
            "serve",
            "--osc",
            &addr,
            "--join-timeout",
            "20",
            "--block",
            "64",
        ])
        .args(["--depth", "24", "--output", "null"])
        .env("CHRONUS_LOG", "warn")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    let again = common::Server::start_command(again);
    browser.wait_for(
        "return document.getElementById('status').textContent.startsWith('connected') \
         && document.querySelectorAll('[role=slider]').length > 0",
        Duration::from_secs(20),
        "the page did not follow the server back",
    );
    assert_eq!(
        browser.script("return document.getElementById('faults').hidden"),
        json!(true)
    );
    let errors = browser.script("return window.__chronusErrors");
    assert_eq!(errors, json!([]), "errors on the page");
    drop(again);

    // The notes sound in the recording, and the recording is the replay of the log.
    let (left, _) = read_wav(&wav);
    let peak = left.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!(
        peak > 0.01,
        "the notes are not in the recording (peak {peak})"
    );
    assert_replay_equals_served(&log, &wav);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits up to 10 s for a line of the command log at `log` that `what` accepts.
fn wait_in_log(log: &std::path::Path, what: &dyn Fn(&str) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(what) {
            return;
        }
        assert!(Instant::now() < deadline, "not in the command log:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sequencer's tracks on the page: their patterns as text with the current step lit
/// as the clock runs, and an edited pattern (typed, then Enter) reaching the server.
/// Depth: the server's test settings (64-frame blocks, depth 24).
#[test]
fn web_sequencer_patterns_are_editable_and_lit() {
    if !chromedriver_present() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver is missing in CI: scripts/setup.sh installs chromium and chromium-driver"
        );
        println!("skipping web_sequencer_patterns_are_editable_and_lit: no chromedriver (scripts/setup.sh installs chromium and chromium-driver)");
        return;
    }
    let groove = concat!(env!("CARGO_MANIFEST_DIR"), "/../../patches/groove.toml");
    let Recorded {
        server, dir, log, ..
    } = Recorded::start("web-seq", &["--patch", groove]);
    let (_web, url) = start_web(server.addr);
    let (_driver, browser) = start_browser();
    browser.call("POST", "/url", json!({"url": url}));
    browser.wait_for(
        "return document.querySelectorAll('.track input').length === 3",
        Duration::from_secs(20),
        "the page never showed the groove's three tracks",
    );
    // Without --audio, no listen panel.
    assert_eq!(
        browser.script("return document.getElementById('listen-section').hidden"),
        json!(true)
    );
    server.send("/clock/start", vec![]);
    browser.wait_for(
        "return document.querySelectorAll('.steps span.lit').length > 0",
        Duration::from_secs(20),
        "no step lit while the clock runs",
    );
    let bass = browser.element("input[aria-label=\"/seq/bass/pattern\"]");
    browser.call("POST", &format!("/element/{bass}/clear"), json!({}));
    browser.call(
        "POST",
        &format!("/element/{bass}/value"),
        json!({"text": "c2 ~ eb2 ~\u{E007}"}),
    );
    // A track edit is logged as the patch it switches to (a /patch/load of its TOML).
    wait_in_log(&log, &|line| {
        line.contains("/patch/load") && line.contains(r#"pattern = \"c2 ~ eb2 ~\""#)
    });
    // The server's patch push rebuilds the page: the edited pattern is the track's text.
    browser.wait_for(
        "return document.querySelector('input[aria-label=\"/seq/bass/pattern\"]').value === 'c2 ~ eb2 ~'",
        Duration::from_secs(10),
        "the page did not show the edited pattern",
    );
    let errors = browser.script("return window.__chronusErrors");
    assert_eq!(errors, json!([]), "errors on the page");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `chronus web --audio`: "listen" plays the server's output in the page, whose counters
/// show audio frames arriving (and growing) and a latency figure; no error on the page.
/// Depth: the server's test settings (64-frame blocks, depth 24); the page's jitter
/// buffer is 80 ms. Only counts and the presence of a figure are asserted, never a timing.
#[test]
fn web_audio_listen_plays_the_servers_output() {
    if !chromedriver_present() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromedriver is missing in CI: scripts/setup.sh installs chromium and chromium-driver"
        );
        println!("skipping web_audio_listen_plays_the_servers_output: no chromedriver (scripts/setup.sh installs chromium and chromium-driver)");
        return;
    }
    let Recorded { server, dir, .. } = Recorded::start("web-audio", &[]);
    let (_web, url) = start_web_with(server.addr, &["--audio"]);
    let (_driver, browser) = start_browser();
    browser.call("POST", "/url", json!({"url": url}));
    browser.wait_for(
        "return document.getElementById('listen-section').hidden === false",
        Duration::from_secs(20),
        "no listen panel with --audio",
    );
    server.play_note(440.0);
    let listen = browser.element("#listen");
    browser.call("POST", &format!("/element/{listen}/click"), json!({}));
    let frames = "Number(document.getElementById('listen-stats').dataset.frames || 0)";
    let deadline = Instant::now() + Duration::from_secs(30);
    while browser.script(&format!("return {frames} > 48000")) != json!(true) {
        assert!(
            Instant::now() < deadline,
            "no second of audio reached the page after \"listen\": {} {}",
            browser.text("#listen-stats"),
            browser.script("return window.__chronusErrors")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    browser.wait_for(
        &format!("return {frames} > 48000"),
        Duration::from_secs(30),
        "no second of audio reached the page after \"listen\"",
    );
    browser.wait_for(
        "return document.getElementById('listen-stats').dataset.latencyMs !== undefined",
        Duration::from_secs(20),
        "no latency figure",
    );
    let before = browser
        .script(&format!("return {frames}"))
        .as_f64()
        .unwrap();
    browser.wait_for(
        &format!("return {frames} > {before} + 24000"),
        Duration::from_secs(30),
        "the frames received stopped growing",
    );
    let stats = browser.text("#listen-stats");
    assert!(stats.contains("latency"), "{stats}");
    let latency =
        browser.script("return Number(document.getElementById('listen-stats').dataset.latencyMs)");
    let latency = latency.as_f64().unwrap();
    assert!(latency.is_finite() && latency >= 0.0, "{stats}");
    eprintln!("the page says: {stats}");
    let errors = browser.script("return window.__chronusErrors");
    assert_eq!(errors, json!([]), "errors on the page");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
