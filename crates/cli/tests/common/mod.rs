//! Helpers for the end-to-end tests: start the real `chronus` binary, talk OSC to it over
//! real UDP, and analyse the WAV files it writes.
#![allow(dead_code)]

pub mod jackd;
pub mod tmux;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rosc::{OscMessage, OscPacket, OscTime, OscType};

/// The binary under test.
pub fn chronus() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chronus"))
}

/// A fresh temporary directory for one test.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chronus-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `chronus serve --osc 127.0.0.1:0 <extra>`, logging at `info` to the test's stderr.
/// Generous real-time settings: 64-frame blocks, depth 24 (32 ms), so a loaded 2-core
/// machine never makes a healthy worker miss a deadline (unless `extra` sets `--block` or
/// `--depth`). `extra` may name the address (`--osc`: a second server in a first one's
/// place).
pub fn serve_command(extra: &[&str]) -> Command {
    let mut command = chronus();
    command.args(["serve", "--join-timeout", "20"]);
    if !extra.contains(&"--osc") {
        command.args(["--osc", "127.0.0.1:0"]);
    }
    if !extra.contains(&"--block") {
        command.args(["--block", "64"]);
    }
    if !extra.contains(&"--depth") {
        command.args(["--depth", "24"]);
    }
    command
        .args(extra)
        .env("CHRONUS_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    command
}

/// A running `chronus serve`.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub socket: UdpSocket,
}

impl Server {
    /// Starts `chronus serve --osc 127.0.0.1:0 <extra>` ([`serve_command`]) and waits until
    /// it listens.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_command(serve_command(extra))
    }

    /// Spawns `command` (a [`serve_command`], changed as a test needs: another stderr, a
    /// process group of its own), reads the address it serves on from its stdout, and waits
    /// until it plays with the spare ready.
    pub fn start_command(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .spawn()
            .expect("chronus serve starts");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines.next().expect("serve printed its address").unwrap();
            if let Some(rest) = line.split("serving OSC on udp ").nth(1) {
                break rest.split(';').next().unwrap().trim().parse().unwrap();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let server = Server {
            child,
            addr,
            socket,
        };
        server.wait_until(Duration::from_secs(20), |m| {
            m.get("spare_ready") == Some(&1.0)
                && m.get("blocks_played").copied().unwrap_or(0.0) > 0.0
        });
        server
    }

    /// Sends one message.
    pub fn send(&self, addr: &str, args: Vec<OscType>) {
        self.send_raw(&encode(addr, args));
    }

    /// Sends raw bytes.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.socket.send_to(bytes, self.addr).unwrap();
    }

    /// Receives the next reply, if one comes within a few seconds.
    pub fn recv(&self) -> Option<OscMessage> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut buf = vec![0u8; 65_536];
        while Instant::now() < deadline {
            if let Ok((len, _)) = self.socket.recv_from(&mut buf) {
                if let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..len]) {
                    return Some(m);
                }
            }
        }
        None
    }

    /// Sends `/sync id` and waits for `/synced id`, returning every other reply on the way.
    pub fn sync(&self, id: i32) -> Vec<OscMessage> {
        self.send("/sync", vec![OscType::Int(id)]);
        let mut others = Vec::new();
        loop {
            let m = self.recv().expect("an answer to /sync");
            if m.addr == "/synced" && m.args == vec![OscType::Int(id)] {
                return others;
            }
            others.push(m);
        }
    }

    /// Opens the default patch's gate and sets its oscillator to `hz`, then waits for
    /// `/synced`: a note that sounds until changed.
    pub fn play_note(&self, hz: f32) {
        self.send("/gate/adsr", vec![OscType::Int(1)]);
        self.send("/mod/sine/freq", vec![OscType::Float(hz)]);
        self.sync(1);
    }

    /// Numeric metrics and roles (`slot.N.role` as strings) from `/metrics`. UDP may lose
    /// the request or the reply (a test flooding the server with its own traffic): it is
    /// asked again every second, for up to 20 s.
    pub fn metrics_full(&self) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut asked = Instant::now() - Duration::from_secs(1);
        let mut buf = vec![0u8; 65_536];
        loop {
            assert!(Instant::now() < deadline, "no /metrics.reply within 20 s");
            if asked.elapsed() >= Duration::from_secs(1) {
                self.send("/metrics", vec![]);
                asked = Instant::now();
            }
            let Ok((len, _)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let Ok((_, OscPacket::Message(m))) = rosc::decoder::decode_udp(&buf[..len]) else {
                continue;
            };
            if m.addr != "/metrics.reply" {
                continue;
            }
            let mut numbers = BTreeMap::new();
            let mut texts = BTreeMap::new();
            for pair in m.args.chunks(2) {
                let OscType::String(name) = &pair[0] else {
                    panic!("metric name")
                };
                match &pair[1] {
                    OscType::Double(v) => {
                        numbers.insert(name.clone(), *v);
                    }
                    OscType::Float(v) => {
                        numbers.insert(name.clone(), f64::from(*v));
                    }
                    OscType::Int(v) => {
                        numbers.insert(name.clone(), f64::from(*v));
                    }
                    OscType::String(s) => {
                        texts.insert(name.clone(), s.clone());
                    }
                    other => panic!("unexpected metric value {other:?}"),
                }
            }
            return (numbers, texts);
        }
    }

    /// Numeric metrics.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        self.metrics_full().0
    }

    /// Polls metrics until `ready` holds.
    pub fn wait_until(
        &self,
        limit: Duration,
        ready: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> BTreeMap<String, f64> {
        let deadline = Instant::now() + limit;
        loop {
            let m = self.metrics();
            if ready(&m) {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "condition not reached within {limit:?}; metrics: {m:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What `chronus status --osc <this server> --json` prints, parsed; the command must
    /// succeed.
    pub fn status_json(&self) -> serde_json::Value {
        let status = chronus()
            .args(["status", "--osc", &self.addr.to_string(), "--json"])
            .output()
            .unwrap();
        assert!(status.status.success(), "{status:?}");
        serde_json::from_slice(&status.stdout).unwrap()
    }

    /// Pid of the worker in the active slot.
    pub fn active_pid(&self) -> u32 {
        let (numbers, texts) = self.metrics_full();
        for slot in 0..2 {
            if texts.get(&format!("slot.{slot}.role")).map(String::as_str) == Some("active") {
                return numbers[&format!("slot.{slot}.pid")] as u32;
            }
        }
        panic!("no active slot: {texts:?}");
    }

    /// Kills the active worker `times` times with SIGKILL, each after a random pause of
    /// `least_ms` plus up to `spread_ms`, and waits after each until a spare is ready
    /// (workers a loaded machine made miss a deadline are replaced too: at least
    /// `times` replacements).
    pub fn kill_active_worker(&self, times: u32, least_ms: u64, spread_ms: u64) {
        for (kill, pause) in (1..=times).zip(random_pauses(least_ms, spread_ms)) {
            std::thread::sleep(pause);
            signal(self.active_pid(), "KILL");
            self.wait_until(Duration::from_secs(30), |m| {
                m["replacements"] >= f64::from(kill) && m["spare_ready"] == 1.0
            });
        }
    }

    /// Sends `signal` to both workers with one `kill`, so they are hit microseconds apart,
    /// not a process spawn apart; returns their pids.
    pub fn signal_both_workers(&self, signal: &str) -> Vec<u32> {
        let (numbers, _) = self.metrics_full();
        let pids: Vec<u32> = (0..2)
            .map(|slot| numbers[&format!("slot.{slot}.pid")] as u32)
            .collect();
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .args(pids.iter().map(u32::to_string))
            .status()
            .unwrap();
        assert!(status.success());
        pids
    }

    /// Waits until both workers in `pids` are replaced and the new pair is ready, then
    /// until no underrun is added for half a second; returns the metrics then.
    pub fn wait_for_new_pair(&self, pids: &[u32]) -> BTreeMap<String, f64> {
        let replaced = |m: &BTreeMap<String, f64>| {
            (0..2).all(|slot| {
                let pid = m.get(&format!("slot.{slot}.pid")).copied().unwrap_or(0.0);
                pid != 0.0 && !pids.contains(&(pid as u32))
            })
        };
        self.wait_until(Duration::from_secs(30), |m| {
            replaced(m) && m["spare_ready"] == 1.0 && m["live_children"] == 2.0
        });
        let mut last = self.metrics();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = self.metrics();
            if now["underruns"] == last["underruns"] {
                return now;
            }
            last = now;
        }
    }

    /// Waits up to `within` for the server to exit by itself, and returns how it exited.
    pub fn wait_for_exit(&mut self, within: Duration, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `/quit`, expects `/done /quit`, and waits for the process to exit 0.
    pub fn quit(mut self) {
        self.send("/quit", vec![]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut done = false;
        while Instant::now() < deadline {
            if !done {
                if let Some(m) = self.recv() {
                    done = m.addr == "/done" && m.args == vec![OscType::String("/quit".into())];
                }
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "serve exited with {status}");
                assert!(done, "no /done /quit before exit");
                return;
            }
            if done {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = self.child.kill();
        panic!("serve did not exit after /quit");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server that plays into `served.wav` and logs every command in `commands.log`, both
/// in a fresh temporary directory: the set-up of the tests whose proof is that the
/// served audio equals the replay of the log.
pub struct Recorded {
    /// The server.
    pub server: Server,
    /// The temporary directory (remove it at the end).
    pub dir: PathBuf,
    /// The served WAV file.
    pub wav: PathBuf,
    /// The command log.
    pub log: PathBuf,
}

impl Recorded {
    /// Starts `chronus serve --output wav:… --command-log … <extra>` in directory `name`.
    pub fn start(name: &str, extra: &[&str]) -> Recorded {
        let dir = temp_dir(name);
        let wav = dir.join("served.wav");
        let log = dir.join("commands.log");
        let output = format!("wav:{}", wav.display());
        let mut args = vec!["--output", &output, "--command-log", log.to_str().unwrap()];
        args.extend_from_slice(extra);
        let server = Server::start(&args);
        Recorded {
            server,
            dir,
            wav,
            log,
        }
    }
}

/// Pauses of `least_ms` to `least_ms + spread_ms` (exclusive), in a deterministic random
/// sequence (xorshift) seeded by the process id: the moments a test strikes at (kills),
/// different from run to run, and never in step with the blocks.
pub fn random_pauses(least_ms: u64, spread_ms: u64) -> impl Iterator<Item = Duration> {
    let mut rng = 0x2545_f491_4f6c_dd1du64 ^ u64::from(std::process::id());
    std::iter::repeat_with(move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        Duration::from_millis(least_ms + rng % spread_ms.max(1))
    })
}

/// The value of metric `name`, which must be reported.
pub fn get(metrics: &BTreeMap<String, f64>, name: &str) -> f64 {
    *metrics
        .get(name)
        .unwrap_or_else(|| panic!("no metric {name} in /metrics.reply: {metrics:?}"))
}

/// Asserts several metrics at once, each by name, so that a failure prints the names
/// beside their values in its last lines (a CI log keeps only those: a whole metrics map
/// in the message would push them out).
pub fn assert_metrics(metrics: &BTreeMap<String, f64>, expected: &[(&str, f64)]) {
    let got: Vec<(&str, f64)> = expected
        .iter()
        .map(|&(name, _)| (name, get(metrics, name)))
        .collect();
    assert_eq!(got, expected, "the metrics: {metrics:?}");
}

/// How much metric `name` grew from `before` to `after`.
pub fn grew(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, name: &str) -> f64 {
    get(after, name) - get(before, name)
}

/// An OSC string argument.
pub fn text_arg(text: &str) -> OscType {
    OscType::String(text.to_string())
}

/// Waits for `/sync` and asserts that `/done <address>` came back before it.
pub fn expect_done(server: &Server, address: &str) {
    let replies = server.sync(42);
    assert!(
        replies
            .iter()
            .any(|m| m.addr == "/done" && m.args == vec![text_arg(address)]),
        "no /done {address}: {replies:?}"
    );
}

/// Encodes one OSC message.
pub fn encode(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    rosc::encoder::encode(&OscPacket::Message(OscMessage {
        addr: addr.into(),
        args,
    }))
    .unwrap()
}

/// Sends a signal to a process (directly, so two calls land microseconds apart).
pub fn signal(pid: u32, signal: &str) {
    use rustix::process::{kill_process, Pid, Signal};
    let signal = match signal {
        "KILL" => Signal::KILL,
        "STOP" => Signal::STOP,
        "TERM" => Signal::TERM,
        other => panic!("unsupported signal {other}"),
    };
    kill_process(Pid::from_raw(pid as i32).expect("a pid"), signal)
        .expect("the signal is delivered");
}

/// Reads a float WAV: (left channel, interleaved samples).
pub fn read_wav(path: &Path) -> (Vec<f32>, Vec<f32>) {
    let mut reader = hound::WavReader::open(path).expect("a readable WAV");
    assert_eq!(reader.spec().channels, 2);
    assert_eq!(reader.spec().sample_format, hound::SampleFormat::Float);
    let all: Vec<f32> = reader.samples::<f32>().map(Result::unwrap).collect();
    let left = all.chunks(2).map(|f| f[0]).collect();
    (left, all)
}

/// Power of `signal` at `freq` (Goertzel), normalised by length.
pub fn goertzel(signal: &[f32], freq: f64, rate: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in signal {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (signal.len() as f64).powi(2)
}

/// The frequency (1 Hz steps, 50..4000 Hz) with the most energy in `window`.
pub fn dominant_frequency(window: &[f32], rate: f64) -> f64 {
    // Coarse scan by zero crossings, then refine with Goertzel around it.
    let crossings = window
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    let rough = crossings as f64 / 2.0 / (window.len() as f64 / rate);
    let lo = (rough - 40.0).max(50.0) as i64;
    let hi = (rough + 40.0).min(4000.0) as i64;
    (lo..=hi)
        .map(|f| (f as f64, goertzel(window, f as f64, rate)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(f, _)| f)
        .unwrap()
}

/// Checks the sounding part of `left` for gaps and jumps; returns where sound starts.
pub fn assert_continuous(left: &[f32], max_step: f32) -> usize {
    let start = left
        .iter()
        .position(|x| x.abs() > 0.05)
        .expect("some sound");
    let body = &left[start..];
    // No gap: a 440 Hz tone never stays at exactly zero for 32 samples.
    let mut zeros = 0;
    for (i, &x) in body.iter().enumerate() {
        zeros = if x == 0.0 { zeros + 1 } else { 0 };
        assert!(zeros < 32, "gap of silence at sample {}", start + i);
    }
    // No discontinuity: no step larger than the waveform itself makes.
    for (i, w) in body.windows(2).enumerate() {
        let step = (w[1] - w[0]).abs();
        assert!(
            step <= max_step,
            "jump of {step} at sample {}",
            start + i + 1
        );
    }
    start
}

/// Renders the command log `log` offline (`chronus render --replay`, 64-frame blocks,
/// starting from `patch` or the default patch) as long as the recording at `served`, into
/// a WAV next to it. Returns both, interleaved: (served, replayed).
pub fn render_replay(log: &Path, served: &Path, patch: Option<&Path>) -> (Vec<f32>, Vec<f32>) {
    render_replay_in_blocks(log, served, patch, 64)
}

/// [`render_replay`] in blocks of `block` frames (as the server played them).
pub fn render_replay_in_blocks(
    log: &Path,
    served: &Path,
    patch: Option<&Path>,
    block: u32,
) -> (Vec<f32>, Vec<f32>) {
    let (_, interleaved) = read_wav(served);
    let replay = served.with_extension("replay.wav");
    let seconds = interleaved.len() as f64 / 2.0 / 48_000.0;
    let status = chronus()
        .args([
            "render",
            "--block",
            &block.to_string(),
            "--seconds",
            &format!("{seconds}"),
            "--replay",
        ])
        .arg(log)
        .args(
            patch
                .map(|p| ["--patch".as_ref(), p.as_os_str()])
                .into_iter()
                .flatten(),
        )
        .arg("-o")
        .arg(&replay)
        .status()
        .unwrap();
    assert!(status.success(), "render --replay failed");
    let (_, replayed) = read_wav(&replay);
    (interleaved, replayed)
}

/// Renders the command log offline ([`render_replay`]) and checks that it equals the
/// served WAV sample for sample: the end-to-end proof of lockstep.
pub fn assert_replay_equals_served(log: &Path, served: &Path) {
    assert_replay_of_patch_equals_served(log, served, None);
}

/// The same, for a server started with `--patch` (`patch`).
pub fn assert_replay_of_patch_equals_served(log: &Path, served: &Path, patch: Option<&Path>) {
    let (interleaved, replayed) = render_replay(log, served, patch);
    assert_eq!(replayed.len(), interleaved.len());
    // The served file ends with the shutdown's fade-out, which no command in the log
    // makes: compare everything before it, and check that it ends in exactly 0.0.
    let before_fade = interleaved.len().saturating_sub(SHUTDOWN_FADE_SAMPLES);
    let first_difference = interleaved[..before_fade]
        .iter()
        .zip(&replayed)
        .position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(first_difference, None, "served and replayed audio differ");
    assert_eq!(
        interleaved.last().map(|x| x.to_bits()),
        Some(0),
        "the served sound ends in exactly 0.0"
    );
}

/// The same comparison for a test whose claim is not "no gap" (that is for the tests that
/// assert `underruns` is 0): the blocks a loaded machine made the output miss (`underruns`,
/// read from `metrics`) may differ, each faded out and back in, and nothing else may. A
/// run without underruns must match sample for sample.
pub fn assert_replay_of_patch_equals_served_but_for_underruns(
    log: &Path,
    served: &Path,
    patch: Option<&Path>,
    metrics: &BTreeMap<String, f64>,
) {
    let underruns = get(metrics, "underruns");
    if underruns == 0.0 {
        assert_replay_of_patch_equals_served(log, served, patch);
    } else {
        eprintln!("{underruns} underruns: the served blocks they faded may differ");
        assert_replay_of_patch_equals_served_but_for_restarts(
            log,
            served,
            patch,
            underruns as usize,
            metrics,
        );
    }
}

/// Renders the command log offline ([`render_replay`]) and checks that the served WAV
/// equals it sample for sample everywhere but in the gaps of underruns and cold restarts:
/// each block that differs is, by its shape, a gap (a fade from the last sample played to
/// silence) or the fade-in of the replay's block just after one; the gaps are no more
/// than the `underruns` in `metrics` (in its first `blocks_played` blocks, where it says),
/// and the stretches that differ no more than `restarts`. So the state
/// each restart restored is exactly the state of applying every command once, and no
/// block but a gap's lost anything. Returns how many blocks differ.
pub fn assert_replay_equals_served_but_for_restarts(
    log: &Path,
    served: &Path,
    restarts: usize,
    metrics: &BTreeMap<String, f64>,
) -> usize {
    assert_replay_of_patch_equals_served_but_for_restarts(log, served, None, restarts, metrics)
}

/// [`assert_replay_equals_served_but_for_restarts`] for a server started with `--patch
/// patch` (the replay renders the same patch).
pub fn assert_replay_of_patch_equals_served_but_for_restarts(
    log: &Path,
    served: &Path,
    patch: Option<&Path>,
    restarts: usize,
    metrics: &BTreeMap<String, f64>,
) -> usize {
    let underruns = get(metrics, "underruns");
    // A report counts every underrun of its first `blocks_played` blocks; the gaps played
    // after it (while the test quit) are not in it.
    let counted_blocks = metrics
        .get("blocks_played")
        .map_or(usize::MAX, |&blocks| blocks as usize);
    let (interleaved, replayed) = render_replay(log, served, patch);
    assert_eq!(replayed.len(), interleaved.len());
    let before_fade = interleaved.len().saturating_sub(SHUTDOWN_FADE_SAMPLES);
    let served_blocks = interleaved[..before_fade].chunks(BLOCK_SAMPLES);
    let gaps = explain_differences(served_blocks, replayed.chunks(BLOCK_SAMPLES));
    let differing: Vec<usize> = gaps.iter().map(|&(block, _)| block).collect();
    // (first block, length) of each run of differing blocks.
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &block in &differing {
        match runs.last_mut() {
            Some((first, len)) if *first + *len == block => *len += 1,
            _ => runs.push((block, 1)),
        }
    }
    assert!(
        runs.len() <= restarts,
        "served and replayed audio differ in {} places, more than the {restarts} restarts: (first block, blocks) {runs:?}",
        runs.len()
    );
    let silenced = gaps
        .iter()
        .filter(|&&(block, kind)| kind == Difference::Gap && block < counted_blocks)
        .count();
    assert!(
        silenced as f64 <= underruns,
        "{silenced} of the first {counted_blocks} blocks were faded to silence, more than the {underruns} underruns counted in them: (first block, blocks) {runs:?} of {} blocks before the shutdown fade",
        before_fade / BLOCK_SAMPLES
    );
    differing.len()
}

/// Interleaved samples in one of the tests' 64-frame blocks.
const BLOCK_SAMPLES: usize = 64 * 2;

/// Why a served block may differ from the replay's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Difference {
    /// Nothing to play (an underrun, or the silence of a restart or of a recording
    /// padded where no server played): a fade from the last sample played to 0.0, or
    /// exact silence.
    Gap,
    /// The first block played after a gap: the replay's block, faded in.
    FadeIn,
}

/// Walks the served blocks beside the replayed ones and names, for each block that
/// differs, the [`Difference`] it is, by its shape, computed as the output computes it.
/// Panics at the first block that is neither: such a block is not a gap, and so the
/// served and replayed streams disagree about the sound. Returns (block, difference).
fn explain_differences<'a>(
    served: impl Iterator<Item = &'a [f32]>,
    replayed: impl Iterator<Item = &'a [f32]>,
) -> Vec<(usize, Difference)> {
    let mut explained = Vec::new();
    let mut last_frame = [0.0f32; 2];
    let mut after_gap = false;
    for (index, (served, replayed)) in served.zip(replayed).enumerate() {
        let same = served
            .iter()
            .zip(replayed)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        if same {
            after_gap = false;
        } else if is_fade_to_silence(served, last_frame) {
            explained.push((index, Difference::Gap));
            after_gap = true;
        } else if after_gap && is_faded_in(served, replayed) {
            explained.push((index, Difference::FadeIn));
            after_gap = false;
        } else {
            let first = served
                .iter()
                .zip(replayed)
                .position(|(a, b)| a.to_bits() != b.to_bits())
                .unwrap_or(0);
            panic!(
                "served block {index} differs from the replay (sample {first}: served {}, replayed {}) and is not a gap{}",
                served[first],
                replayed[first],
                if after_gap { " nor the fade-in after one" } else { "" }
            );
        }
        if let [.., l, r] = served {
            last_frame = [*l, *r];
        }
    }
    explained
}

/// Whether `block` is what the output plays with nothing to play: a ramp from
/// `last_frame` down to 0.0 over the block (exact silence when that frame was 0.0), or
/// exact silence (a recording padded where no server played).
fn is_fade_to_silence(block: &[f32], last_frame: [f32; 2]) -> bool {
    let frames = (block.len() / 2) as f32;
    let ramp = block.chunks_exact(2).enumerate().all(|(i, frame)| {
        let gain = 1.0 - (i + 1) as f32 / frames;
        frame[0].to_bits() == (last_frame[0] * gain).to_bits()
            && frame[1].to_bits() == (last_frame[1] * gain).to_bits()
    });
    ramp || block.iter().all(|&x| x == 0.0)
}

/// Whether `served` is `replayed` (bounded as the output bounds every block) faded in
/// over the block: the first block the output plays after a gap.
fn is_faded_in(served: &[f32], replayed: &[f32]) -> bool {
    let frames = (served.len() / 2) as f32;
    served
        .chunks_exact(2)
        .zip(replayed.chunks_exact(2))
        .enumerate()
        .all(|(i, (s, r))| {
            let gain = i as f32 / frames;
            let bounded = |x: f32| {
                if x.is_finite() {
                    x.clamp(-1.0, 1.0)
                } else {
                    0.0
                }
            };
            s[0].to_bits() == (bounded(r[0]) * gain).to_bits()
                && s[1].to_bits() == (bounded(r[1]) * gain).to_bits()
        })
}

/// Checks that the last 0.2 s of the recording at `wav` (left channel) sound at `hz`
/// (within 2 Hz); `what` says what that proves.
pub fn assert_ends_at(wav: &Path, hz: f64, what: &str) {
    let (left, _) = read_wav(wav);
    let tail = &left[left.len() - 9_600..];
    let f = dominant_frequency(tail, 48_000.0);
    assert!((f - hz).abs() <= 2.0, "{what}: {f} Hz, not {hz} Hz");
}

/// Samples (interleaved stereo) of the fade-out every stop plays at the end: 10 ms in
/// whole blocks, 8 blocks of the tests' 64 frames at 48 kHz.
pub const SHUTDOWN_FADE_SAMPLES: usize = 8 * 64 * 2;

/// Seconds from 1900 (OSC timetags) to 1970.
const NTP_TO_UNIX_SECONDS: u64 = 2_208_988_800;

/// The OSC timetag `ahead` from now.
pub fn timetag_in(ahead: Duration) -> OscTime {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + ahead;
    OscTime {
        seconds: (since_epoch.as_secs() + NTP_TO_UNIX_SECONDS) as u32,
        fractional: ((u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000) as u32,
    }
}

/// This machine's non-loopback address, as `ip route get 1` reports it (`src …`): a client
/// bound to it is not loopback, though it runs here. `None` (with a line naming `test`
/// and saying why) where there is none.
pub fn machine_address(test: &str) -> Option<std::net::IpAddr> {
    let found = Command::new("ip")
        .args(["route", "get", "1"])
        .output()
        .ok()
        .and_then(|out| {
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut words = text.split_whitespace();
            words.find(|&w| w == "src")?;
            words.next()?.parse::<std::net::IpAddr>().ok()
        })
        .filter(|ip| !ip.is_loopback());
    if found.is_none() {
        eprintln!(
            "{test}: this machine has no non-loopback address (`ip route get 1` reports no src), so no client can be other than loopback here"
        );
    }
    found
}

/// The project's python (scripts/setup.sh makes it, with python-osc), for the tests that
/// drive the server with a client we did not write.
pub fn python() -> Command {
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python");
    assert!(
        venv.exists(),
        "{} is missing: run scripts/setup.sh (it installs python-osc there)",
        venv.display()
    );
    Command::new(venv)
}
