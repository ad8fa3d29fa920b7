//! `chronus midi`: plays the server from MIDI keyboards and controllers.
//!
//! A client of the server like `chronus send`: MIDI never touches the real-time path except
//! as stamped commands. It reads ALSA MIDI (through `midir`) and JACK MIDI (a JACK client
//! `chronus-midi` with a MIDI input port `in`), turns the bytes into the server's OSC
//! messages with [`chronus_midi::Translator`], and sends the messages of each MIDI event as
//! one OSC bundle whose timetag is the event's time on the system clock plus a fixed
//! latency L. The server stamps a timetag with the frame that plays at that time, so a
//! phrase keeps its timing to the frame however late the packets travel, as long as they
//! arrive within L; L is the server's control latency (what its depth makes, asked with
//! `/metrics` at start) plus a 2 ms margin, and never less.
//!
//! Threads: midir's ALSA thread and JACK's process callback only hand raw events over (the
//! JACK callback through a preallocated lock-free queue: it never blocks or allocates); one
//! sender thread (this one) translates, stamps and sends; one thread reads the server's
//! replies and reports refusals.

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use chronus_midi::{Config, Event, MpeZone, Timed, Translator};
use chronus_protocol::Reply;
use crossbeam_queue::ArrayQueue;
use rosc::{OscBundle, OscMessage, OscPacket, OscTime, OscType};

/// The ALSA sequencer's device: without it (containers, CI) there is no ALSA MIDI.
const ALSA_SEQ: &str = "/dev/snd/seq";

/// The JACK client's name, and the prefix of midir's ALSA client.
const CLIENT: &str = "chronus-midi";

/// JACK's port type for MIDI.
const JACK_MIDI_TYPE: &str = "8 bit raw midi";

/// Added to the server's control latency: the time a packet takes to travel and be
/// decoded before its timetag's frame is stamped, on a loaded machine.
const MARGIN_MS: f64 = 2.0;

/// JACK events the queue holds between two drains of the sender thread (which drains
/// every millisecond): a dense controller sweep is some hundreds a second.
const JACK_QUEUE: usize = 4096;

/// The longest JACK MIDI event copied (longer ones are SysEx, which is ignored anyway).
const JACK_EVENT_BYTES: usize = 8;

/// Arguments of `chronus midi`.
#[derive(clap::Args)]
#[command(after_help = "\
Each MIDI event becomes OSC sent as a bundle timetagged with the event's time plus the
latency: note on/off -> /note/on, /note/off (each note its own id); pitch bend, channel
pressure, polyphonic aftertouch, CC74 on an MPE member channel -> /note/bend,
/note/pressure, /note/timbre of the notes they reach; CC64 -> /sustain; CC120 -> /panic;
CC121 -> bends and pressures back to 0; CC123 -> note offs; other CCs -> /midi/cc <channel>
<controller> <value> (mapped by the server); program change n -> /library/load of the n-th
patch of /library/list. SysEx, clock and system common messages are ignored.")]
pub struct MidiArgs {
    /// Print the ALSA MIDI inputs and the JACK MIDI outputs that could be read, and exit.
    #[arg(long)]
    list: bool,
    /// Read only the ALSA inputs and JACK MIDI output ports whose name contains this text
    /// (default: every ALSA input, plus the JACK port `chronus-midi:in`, unconnected).
    #[arg(long, value_name = "NAME")]
    port: Option<String>,
    /// Server address.
    #[arg(long, default_value = crate::DEFAULT_OSC, value_parser = crate::parse_osc)]
    osc: SocketAddr,
    /// The instrument notes go to (default: the patch's first instrument).
    #[arg(long)]
    instrument: Option<String>,
    /// MPE zone: lower[:N] (master channel 1, members 2..N+1), upper[:N] (master 16), or
    /// off; a controller's MPE Configuration Message (RPN 6) sets it too.
    #[arg(long, default_value = "off", value_parser = MpeZone::parse, value_name = "ZONE")]
    mpe: MpeZone,
    /// Pitch bend range of MPE member channels, in semitones.
    #[arg(long, default_value_t = 48.0, value_name = "SEMITONES", value_parser = bend_range)]
    mpe_bend: f32,
    /// Pitch bend range of MPE master channels and ordinary channels, in semitones.
    #[arg(long, default_value_t = 2.0, value_name = "SEMITONES", value_parser = bend_range)]
    bend: f32,
    /// Latency added to each event's time, in ms, up to 10,000 (default and least: the
    /// server's control latency plus its period plus 2 ms; a smaller value is raised).
    #[arg(long, value_name = "MS", value_parser = latency_arg)]
    latency: Option<f64>,
    /// Seconds to wait for the server's answers at start.
    #[arg(long, default_value_t = 2.0)]
    timeout: f64,
}

/// A raw event as the JACK process callback copies it: fixed size, so the queue is
/// allocated once. With `len` 0 it is no MIDI but the start of a period, for the
/// [`FrameClock`].
#[derive(Clone, Copy)]
struct JackEvent {
    /// The JACK frame it happened at.
    frame: u32,
    /// JACK's own time of that frame (`frames_to_time`), in JACK's microseconds.
    jack_us: u64,
    len: u8,
    bytes: [u8; JACK_EVENT_BYTES],
}

/// How far back the [`FrameClock`] looks, in µs: long, so that the line's slope (the
/// card's rate) is known to a few ppm and the newest frames, at its end, to a few µs.
const FRAME_CLOCK_WINDOW_US: u64 = 10_000_000;
/// Most periods the [`FrameClock`] keeps (10 s of 64-frame periods at 48 kHz).
const FRAME_CLOCK_MOST_PERIODS: usize = 8_192;
/// A gap between two periods longer than this (µs) is a restart: the line starts again.
const FRAME_CLOCK_GAP_US: u64 = 1_000_000;

/// A fit that strays further than this from JACK's own time of a frame (µs) is not believed
/// (JACK restarted, or its clock jumped): the window starts again.
const FRAME_CLOCK_TRUST_US: f64 = 2_000.0;

/// JACK frames to JACK time, smoothed: a least-squares line through the (frame, time) of
/// the periods of the last 10 s.
///
/// JACK's `frames_to_time` of a single frame follows the wake-up time of its period, which
/// jitters by up to ~100 µs (5 frames) on a loaded machine without real-time scheduling, as
/// the dummy driver measured; the line through the periods of 10 s keeps the sound card's
/// true rate and averages the jitter out, so notes sent 12,000 frames apart are timetagged
/// 250 ms apart to the microsecond.
#[derive(Debug, Default)]
struct FrameClock {
    /// (frame, JACK µs) of recent periods, oldest first.
    samples: std::collections::VecDeque<(u32, u64)>,
}

impl FrameClock {
    /// Notes the start of a period.
    fn observe(&mut self, frame: u32, jack_us: u64) {
        if let Some(&(_, last)) = self.samples.back() {
            if jack_us < last || jack_us - last > FRAME_CLOCK_GAP_US {
                self.samples.clear();
            }
        }
        self.samples.push_back((frame, jack_us));
        while let Some(&(_, first)) = self.samples.front() {
            if jack_us - first <= FRAME_CLOCK_WINDOW_US
                && self.samples.len() <= FRAME_CLOCK_MOST_PERIODS
            {
                break;
            }
            self.samples.pop_front();
        }
    }

    /// The JACK time of `frame`, from the line; `jack_us` (JACK's own) with too few
    /// periods seen or a line that strays.
    fn time_of(&mut self, frame: u32, jack_us: u64) -> u64 {
        let Some(&(f_ref, t_ref)) = self.samples.back() else {
            return jack_us;
        };
        if self.samples.len() < 8 {
            return jack_us;
        }
        // Relative to the newest period: frames wrap (u32), small numbers keep precision.
        let xs = self
            .samples
            .iter()
            .map(|&(f, t)| (f.wrapping_sub(f_ref) as i32 as f64, t as f64 - t_ref as f64));
        let n = self.samples.len() as f64;
        let (sx, sy) = xs.clone().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let (mx, my) = (sx / n, sy / n);
        let (sxx, sxy) = xs.fold((0.0, 0.0), |(a, b), (x, y)| {
            (a + (x - mx) * (x - mx), b + (x - mx) * (y - my))
        });
        if sxx <= 0.0 {
            return jack_us;
        }
        let x = frame.wrapping_sub(f_ref) as i32 as f64;
        let fitted = t_ref as f64 + my + sxy / sxx * (x - mx);
        if !fitted.is_finite() || (fitted - jack_us as f64).abs() > FRAME_CLOCK_TRUST_US {
            self.samples.clear();
            return jack_us;
        }
        fitted.round() as u64
    }
}

/// Readings of JACK's clock against the system clock further apart than this (µs: the
/// thread was preempted between them) say little, and are not taken.
const CLOCK_PAIR_MAX_US: u64 = 20;

/// JACK's clock onto the system clock: the offset between the two, from readings of the
/// system clock just before and just after JACK's (their midpoint; a pair too far apart is
/// not taken), smoothed over about 30 readings. One reading alone jitters by tens of µs
/// when the thread is preempted between the two (a frame is 21 µs): notes 12,000 frames
/// apart came out 12,002 apart now and then. The two clocks run at one rate (JACK keeps
/// CLOCK_MONOTONIC's), so the offset hardly moves and the smoothing costs nothing.
#[derive(Debug, Default)]
struct ClockOffset {
    /// System µs minus JACK µs.
    offset_us: Option<f64>,
}

impl ClockOffset {
    /// Takes a reading: system time `before`, JACK's time `jack`, system time `after`.
    fn observe(&mut self, before: u64, jack: u64, after: u64) {
        let Some(spread) = after.checked_sub(before) else {
            return;
        };
        if spread > CLOCK_PAIR_MAX_US {
            return;
        }
        let offset = (before as f64 + spread as f64 / 2.0) - jack as f64;
        self.offset_us = Some(match self.offset_us {
            Some(old) if (offset - old).abs() < 1_000.0 => old + (offset - old) / 32.0,
            // The first, or a jump (a clock was set, JACK restarted): taken at once.
            _ => offset,
        });
    }

    /// The system time (µs) of JACK time `jack_us`, or `None` before any reading.
    fn system_us(&self, jack_us: u64) -> Option<u64> {
        let offset = self.offset_us?;
        Some((jack_us as f64 + offset).round().max(0.0) as u64)
    }
}

/// An event from midir's ALSA thread.
struct AlsaEvent {
    /// Our port number (1.. ; 0 is JACK's).
    port: usize,
    /// When it happened, µs since the Unix epoch.
    time_us: u64,
    bytes: Vec<u8>,
}

/// The JACK process handler: copies the MIDI events of each period into the queue.
struct MidiIn {
    port: jack::Port<jack::MidiIn>,
    queue: Arc<ArrayQueue<JackEvent>>,
    /// Events the full queue (or their size) made us drop.
    dropped: Arc<AtomicU64>,
}

impl jack::ProcessHandler for MidiIn {
    fn process(&mut self, client: &jack::Client, scope: &jack::ProcessScope) -> jack::Control {
        let start = scope.last_frame_time();
        let period = JackEvent {
            frame: start,
            jack_us: client.frames_to_time(start),
            len: 0,
            bytes: [0; JACK_EVENT_BYTES],
        };
        // A lost period sample costs nothing but a little smoothing.
        let _ = self.queue.push(period);
        for event in self.port.iter(scope) {
            let len = event.bytes.len();
            if len > JACK_EVENT_BYTES {
                // SysEx: ignored, but never half of one.
                continue;
            }
            let mut bytes = [0u8; JACK_EVENT_BYTES];
            bytes[..len].copy_from_slice(event.bytes);
            let frame = start.wrapping_add(event.time);
            let raw = JackEvent {
                frame,
                jack_us: client.frames_to_time(frame),
                len: len as u8,
                bytes,
            };
            if self.queue.push(raw).is_err() {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        jack::Control::Continue
    }
}

/// The JACK notification handler: notes that the JACK server went away.
struct JackGone(Arc<AtomicBool>);

impl jack::NotificationHandler for JackGone {
    unsafe fn shutdown(&mut self, _status: jack::ClientStatus, _reason: &str) {
        self.0.store(true, Ordering::Release);
    }
}

/// Whether `name` is one of ours (our own ports are never inputs of ours).
fn is_ours(name: &str) -> bool {
    name.starts_with(CLIENT)
}

/// The ALSA MIDI inputs, by name (none without a sequencer).
fn alsa_inputs() -> anyhow::Result<Vec<String>> {
    let input = midir::MidiInput::new(&format!("{CLIENT}-list"))
        .map_err(|e| anyhow::anyhow!("cannot open the ALSA sequencer: {e}"))?;
    Ok(input
        .ports()
        .iter()
        .filter_map(|p| input.port_name(p).ok())
        .filter(|name| !is_ours(name))
        .collect())
}

/// The JACK MIDI output ports (what `chronus-midi:in` can read), if a JACK server runs.
fn jack_outputs(client: &jack::Client) -> Vec<String> {
    client
        .ports(None, Some(JACK_MIDI_TYPE), jack::PortFlags::IS_OUTPUT)
        .into_iter()
        .filter(|name| !is_ours(name))
        .collect()
}

/// Opens a JACK client named `name` if a JACK server runs (never starts one).
fn jack_client(name: &str) -> Option<jack::Client> {
    chronus_supervisor::sinks::jack::install_logger();
    jack::Client::new(name, jack::ClientOptions::NO_START_SERVER)
        .ok()
        .map(|(client, _)| client)
}

fn has_alsa_sequencer() -> bool {
    std::path::Path::new(ALSA_SEQ).exists()
}

/// `chronus midi --list`.
fn list() -> anyhow::Result<ExitCode> {
    if has_alsa_sequencer() {
        match alsa_inputs() {
            Ok(names) if names.is_empty() => println!("ALSA MIDI inputs: none"),
            Ok(names) => {
                println!("ALSA MIDI inputs:");
                for name in names {
                    println!("  {name}");
                }
            }
            Err(e) => println!("ALSA MIDI inputs: {e}"),
        }
    } else {
        println!("ALSA MIDI inputs: no ALSA sequencer here ({ALSA_SEQ})");
    }
    match jack_client(&format!("{CLIENT}-list")) {
        Some(client) => {
            let names = jack_outputs(&client);
            if names.is_empty() {
                println!("JACK MIDI outputs: none");
            } else {
                println!("JACK MIDI outputs:");
                for name in names {
                    println!("  {name}");
                }
            }
        }
        None => println!("JACK MIDI outputs: no JACK server running"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the server `address` and returns the first reply `pick` takes, or why not.
fn ask<T>(
    socket: &UdpSocket,
    address: &str,
    timeout: Duration,
    mut pick: impl FnMut(Reply) -> Option<T>,
) -> anyhow::Result<T> {
    let packet = OscPacket::Message(OscMessage {
        addr: address.into(),
        args: vec![],
    });
    socket.send(&rosc::encoder::encode(&packet)?)?;
    let deadline = Instant::now() + timeout;
    let mut buf = vec![0u8; 65_536];
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(len) => {
                if let Ok(reply) = chronus_protocol::parse_reply(&buf[..len]) {
                    if let Some(value) = pick(reply) {
                        return Ok(value);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                anyhow::bail!("nothing listens there (is `chronus serve` running?)")
            }
            Err(_) => {}
        }
    }
    anyhow::bail!(
        "no answer to {address} within {:.1} s",
        timeout.as_secs_f64()
    )
}

/// What of the server's timing decides the least latency.
#[derive(Debug, Clone, Copy, PartialEq)]
struct ServerLatency {
    /// `control_latency_ms`: how far ahead of the output the server stamps (its depth).
    control_ms: f64,
    /// The sink's period in ms (`depth_floor_blocks` of the depth): a command waits for the
    /// output's next period to be stamped, so a timetag nearer than a period past the depth
    /// may already have passed the horizon then.
    period_ms: f64,
}

impl ServerLatency {
    /// From `/metrics.reply` pairs (`None` without `control_latency_ms`).
    fn of(pairs: &[(String, chronus_protocol::MetricValue)]) -> Option<ServerLatency> {
        let number = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, v)| v.as_f64())
        };
        let control_ms = number("control_latency_ms")?;
        let period_ms = match (number("depth_blocks"), number("depth_floor_blocks")) {
            (Some(depth), Some(floor)) if depth > 0.0 => control_ms / depth * floor,
            _ => 0.0,
        };
        Some(ServerLatency {
            control_ms,
            period_ms,
        })
    }

    /// The least latency that is never late: control latency + period + margin, in ms.
    fn least_ms(self) -> f64 {
        self.control_ms + self.period_ms + MARGIN_MS
    }
}

/// The latency to add: `asked` (ms) raised to the least the server allows.
fn latency_ms(server: ServerLatency, asked: Option<f64>) -> (f64, Option<String>) {
    let least = server.least_ms();
    match asked {
        Some(ms) if ms >= least => (ms, None),
        Some(ms) => (
            least,
            Some(format!(
                "--latency {ms} ms is raised to {least:.1} ms: the server's control latency is \
                 {:.1} ms (its depth) and its period {:.1} ms, and a command timetagged sooner \
                 would be late",
                server.control_ms, server.period_ms
            )),
        ),
        None => (least, None),
    }
}

/// A bend range: 0 to 96 semitones (MPE's largest), a finite number.
fn bend_range(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(v) if v.is_finite() && (0.0..=96.0).contains(&v) => Ok(v),
        _ => Err(format!("'{text}' is not a bend range: 0 to 96 semitones")),
    }
}

/// A latency: 0 to 10,000 ms (a timetag the server takes), a finite number.
fn latency_arg(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=10_000.0).contains(&v) => Ok(v),
        _ => Err(format!("'{text}' is not a latency: 0 to 10000 ms")),
    }
}

/// Microseconds since the Unix epoch, now.
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The OSC timetag of `us` microseconds since the Unix epoch.
fn timetag(us: u64) -> OscTime {
    OscTime::try_from(UNIX_EPOCH + Duration::from_micros(us)).unwrap_or(OscTime {
        seconds: 0,
        fractional: 1,
    })
}

/// `chronus midi`.
pub fn run(args: MidiArgs) -> anyhow::Result<ExitCode> {
    if args.list {
        return list();
    }
    let timeout = Duration::from_secs_f64(args.timeout.max(0.1));
    let local = if args.osc.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let socket = UdpSocket::bind(local).context("cannot open a UDP socket")?;
    socket
        .connect(args.osc)
        .with_context(|| format!("cannot reach {}", args.osc))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;

    // What the server says: its control latency and period, and its library (for program
    // changes).
    let server = ask(&socket, "/metrics", timeout, |reply| match reply {
        Reply::Metrics(pairs) => ServerLatency::of(&pairs),
        _ => None,
    })
    .with_context(|| {
        format!(
            "the server at {} did not give its control latency",
            args.osc
        )
    })?;
    let (latency, raised) = latency_ms(server, args.latency);
    if let Some(why) = raised {
        eprintln!("chronus midi: {why}");
    }
    eprintln!(
        "chronus midi: latency {latency:.1} ms (each event's time + this: the server's control \
         latency {:.1} ms + its period {:.1} ms + {MARGIN_MS} ms)",
        server.control_ms, server.period_ms
    );
    let library = match ask(&socket, "/library/list", timeout, |reply| match reply {
        Reply::LibraryList(entries) => Some(entries),
        _ => None,
    }) {
        Ok(entries) => entries.into_iter().map(|(name, _)| name).collect(),
        Err(e) => {
            eprintln!("chronus midi: no library list ({e:#}): program changes are ignored");
            Vec::new()
        }
    };

    // An instrument the server's patch does not have would refuse every note.
    if let Some(name) = &args.instrument {
        match crate::client::ask_table(&socket, args.osc, timeout) {
            Ok(table) if table.instrument(name).is_none() => {
                let known: Vec<&str> = table.instruments().map(|(n, _)| n).collect();
                anyhow::bail!(
                    "--instrument {name}: the server's patch has no such instrument (it has: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            }
            Ok(_) => {}
            Err(e) => eprintln!("chronus midi: cannot check --instrument {name}: {e}"),
        }
    }

    // The inputs.
    let (alsa_tx, alsa_rx) = mpsc::channel::<AlsaEvent>();
    let mut alsa_connections = Vec::new();
    if has_alsa_sequencer() {
        alsa_connections = open_alsa(args.port.as_deref(), &alsa_tx)?;
    } else {
        eprintln!("chronus midi: no ALSA sequencer here ({ALSA_SEQ}): JACK MIDI only");
    }
    drop(alsa_tx);
    let queue = Arc::new(ArrayQueue::new(JACK_QUEUE));
    let dropped = Arc::new(AtomicU64::new(0));
    let jack = open_jack(args.port.as_deref(), &queue, &dropped)?;
    match (&jack, alsa_connections.is_empty()) {
        (None, true) => anyhow::bail!(
            "no MIDI to read: no ALSA MIDI input{} and no JACK server running",
            match &args.port {
                Some(text) => format!(" matching '{text}'"),
                None => String::new(),
            }
        ),
        (None, false) => eprintln!("chronus midi: no JACK server running: ALSA MIDI only"),
        _ => {}
    }
    if let (Some(text), Some((_, connected, _))) = (&args.port, &jack) {
        if *connected == 0 && alsa_connections.is_empty() {
            anyhow::bail!(
                "--port {text}: no ALSA input and no JACK MIDI output port has that in its \
                 name (`chronus midi --list` shows them)"
            );
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the signal handler")?;
    }
    let replies = socket.try_clone()?;
    let reading = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("midi-replies".into())
        .spawn(move || report_replies(&replies, &reading))?;

    let mut sender = Sender {
        socket,
        translator: Translator::new(Config {
            instrument: args.instrument,
            zone: args.mpe,
            member_bend_range: args.mpe_bend,
            bend_range: args.bend,
        }),
        latency_us: (latency * 1000.0).round() as u64,
        library,
        timed: Vec::new(),
        dropped_reported: 0,
    };
    let mut jack_client = jack
        .as_ref()
        .map(|(client, _, gone)| (client.as_client(), gone));
    let mut frame_clock = FrameClock::default();
    let mut clock_offset = ClockOffset::default();
    while !stop.load(Ordering::Relaxed) {
        match alsa_rx.recv_timeout(Duration::from_millis(1)) {
            Ok(event) => sender.play(event.port, &event.bytes, event.time_us),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            // No ALSA input (or all gone): JACK's queue is polled by sleeping.
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        if let Some((_, gone)) = jack_client {
            if gone.load(Ordering::Acquire) {
                jack_client = None;
                if alsa_connections.is_empty() {
                    sender.release_all();
                    anyhow::bail!("the JACK server stopped, and there is no ALSA input to read");
                }
                eprintln!("chronus midi: the JACK server stopped: ALSA MIDI only from now on");
            }
        }
        if let Some((client, _)) = jack_client {
            if !queue.is_empty() {
                // JACK's clock onto the system clock, read side by side now.
                let before = now_us();
                let jack_now = client.time();
                clock_offset.observe(before, jack_now, now_us());
                while let Some(event) = queue.pop() {
                    if event.len == 0 {
                        frame_clock.observe(event.frame, event.jack_us);
                        continue;
                    }
                    let jack_us = frame_clock.time_of(event.frame, event.jack_us);
                    let time = clock_offset.system_us(jack_us).unwrap_or(before);
                    let len = usize::from(event.len).min(JACK_EVENT_BYTES);
                    sender.play(0, &event.bytes[..len], time);
                }
            }
        }
        let lost = dropped.load(Ordering::Relaxed);
        if lost > sender.dropped_reported && !stop.load(Ordering::Relaxed) {
            eprintln!(
                "chronus midi: {} JACK MIDI events dropped (the queue was full or they were \
                 SysEx)",
                lost - sender.dropped_reported
            );
            sender.dropped_reported = lost;
        }
    }
    if let Some((client, _, _)) = jack {
        // After the JACK server died this fails, and the client is closed all the same.
        let _ = client.deactivate();
    }
    drop(alsa_connections);
    sender.release_all();
    eprintln!("chronus midi: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Connects every ALSA input (whose name contains `port`, if given), each sending its
/// events to `tx` with system times.
fn open_alsa(
    port: Option<&str>,
    tx: &mpsc::Sender<AlsaEvent>,
) -> anyhow::Result<Vec<midir::MidiInputConnection<()>>> {
    let probe = match midir::MidiInput::new(CLIENT) {
        Ok(input) => input,
        Err(e) => {
            eprintln!("chronus midi: cannot open the ALSA sequencer ({e}): JACK MIDI only");
            return Ok(Vec::new());
        }
    };
    let ports: Vec<(midir::MidiInputPort, String)> = probe
        .ports()
        .into_iter()
        .filter_map(|p| {
            let name = probe.port_name(&p).ok()?;
            Some((p, name))
        })
        .filter(|(_, name)| !is_ours(name) && port.is_none_or(|text| name.contains(text)))
        .collect();
    drop(probe);
    let mut connections = Vec::new();
    for (index, (p, name)) in ports.into_iter().enumerate() {
        let mut input = midir::MidiInput::new(CLIENT)
            .map_err(|e| anyhow::anyhow!("cannot open the ALSA sequencer: {e}"))?;
        // SysEx, clock and active sensing mean nothing to us: midir drops them first.
        input.ignore(midir::Ignore::All);
        let tx = tx.clone();
        let number = index + 1;
        // midir's stamps count µs from the connection; the system time then is their base.
        let opened = now_us();
        match input.connect(
            &p,
            "in",
            move |stamp, bytes, _| {
                let _ = tx.send(AlsaEvent {
                    port: number,
                    time_us: alsa_time(opened, stamp, now_us()),
                    bytes: bytes.to_vec(),
                });
            },
            (),
        ) {
            Ok(connection) => {
                eprintln!("chronus midi: reading ALSA MIDI from {name}");
                connections.push(connection);
            }
            Err(e) => eprintln!("chronus midi: cannot read ALSA MIDI from {name}: {e}"),
        }
    }
    Ok(connections)
}

/// The system time (µs since the epoch) of an ALSA event midir stamped `stamp` µs after
/// its port was opened at `opened`, read at `now`: a stamp that strays more than a second
/// from now (a queue that did not start with the connection) is not believed.
fn alsa_time(opened: u64, stamp: u64, now: u64) -> u64 {
    let time = opened.saturating_add(stamp);
    if time.abs_diff(now) > 1_000_000 {
        now
    } else {
        time
    }
}

/// The active JACK client, how many ports `--port` connected it to, and whether the JACK
/// server has gone.
type Jack = (jack::AsyncClient<JackGone, MidiIn>, usize, Arc<AtomicBool>);

/// Opens the JACK client with its MIDI input `in` (if a JACK server runs) and connects the
/// JACK MIDI outputs whose name contains `port`.
fn open_jack(
    port: Option<&str>,
    queue: &Arc<ArrayQueue<JackEvent>>,
    dropped: &Arc<AtomicU64>,
) -> anyhow::Result<Option<Jack>> {
    let Some(client) = jack_client(CLIENT) else {
        return Ok(None);
    };
    let input = client
        .register_port("in", jack::MidiIn::default())
        .context("cannot register the JACK MIDI port")?;
    let ours = input.name().unwrap_or_else(|_| format!("{CLIENT}:in"));
    let sources = jack_outputs(&client);
    let gone = Arc::new(AtomicBool::new(false));
    let active = client
        .activate_async(
            JackGone(Arc::clone(&gone)),
            MidiIn {
                port: input,
                queue: Arc::clone(queue),
                dropped: Arc::clone(dropped),
            },
        )
        .context("cannot activate the JACK client")?;
    let mut connected = 0;
    if let Some(text) = port {
        for source in sources.iter().filter(|name| name.contains(text)) {
            match active.as_client().connect_ports_by_name(source, &ours) {
                Ok(()) => {
                    eprintln!("chronus midi: reading JACK MIDI from {source}");
                    connected += 1;
                }
                Err(e) => eprintln!("chronus midi: cannot connect {source} to {ours}: {e}"),
            }
        }
    } else {
        eprintln!("chronus midi: JACK MIDI port {ours} is open (connect a MIDI output to it)");
    }
    Ok(Some((active, connected, gone)))
}

/// The sender: translates, stamps with the latency, sends.
struct Sender {
    socket: UdpSocket,
    translator: Translator,
    latency_us: u64,
    /// The server's library, for program changes.
    library: Vec<String>,
    /// Reused buffer of translated events.
    timed: Vec<Timed>,
    /// JACK events dropped so far and already reported.
    dropped_reported: u64,
}

impl Sender {
    /// Plays the bytes of one MIDI event of `port` that happened at `time_us` (system
    /// clock): its messages go out as one bundle timetagged `time_us` + the latency.
    fn play(&mut self, port: usize, bytes: &[u8], time_us: u64) {
        self.timed.clear();
        self.translator.feed(port, bytes, time_us, &mut self.timed);
        self.send_timed(time_us);
    }

    /// Lets go of every note still held and of the sustain pedal, as the client stops: a
    /// server left with held notes would sound them on for good.
    fn release_all(&mut self) {
        self.timed.clear();
        let now = now_us();
        self.translator.release_all(now, &mut self.timed);
        if !self.timed.is_empty() {
            eprintln!(
                "chronus midi: letting go of what is held ({} note offs, pedal up)",
                self.timed.len()
            );
        }
        self.send_timed(now);
    }

    /// Sends what was translated (`self.timed`) as one bundle timetagged `time_us` + the
    /// latency.
    fn send_timed(&mut self, time_us: u64) {
        let mut content = Vec::new();
        for Timed { event, .. } in self.timed.drain(..) {
            match event {
                Event::Osc(message) => content.push(OscPacket::Message(message)),
                Event::Program(n) => match self.library.get(usize::from(n)) {
                    Some(name) => content.push(OscPacket::Message(OscMessage {
                        addr: "/library/load".into(),
                        args: vec![OscType::String(name.clone())],
                    })),
                    None => eprintln!(
                        "chronus midi: program {n} ignored: the server's library has {} patches",
                        self.library.len()
                    ),
                },
            }
        }
        if content.is_empty() {
            return;
        }
        let bundle = OscPacket::Bundle(OscBundle {
            timetag: timetag(time_us.saturating_add(self.latency_us)),
            content,
        });
        match rosc::encoder::encode(&bundle) {
            Ok(bytes) => {
                if let Err(e) = self.socket.send(&bytes) {
                    eprintln!("chronus midi: cannot send to the server: {e}");
                }
            }
            Err(e) => eprintln!("chronus midi: cannot encode a bundle: {e}"),
        }
    }
}

/// Reads the server's replies until `stop`, reporting refusals (`/fail`).
fn report_replies(socket: &UdpSocket, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65_536];
    let mut refused_before = false;
    while !stop.load(Ordering::Relaxed) {
        match socket.recv(&mut buf) {
            Ok(len) => {
                if let Ok(Reply::Fail { address, reason }) =
                    chronus_protocol::parse_reply(&buf[..len])
                {
                    eprintln!("chronus midi: the server refused {address}: {reason}");
                }
                refused_before = false;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                if !refused_before {
                    eprintln!("chronus midi: the server does not listen at the moment");
                }
                refused_before = true;
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_clock_offset_ignores_preempted_readings_and_follows_a_jump() {
        let mut offset = super::ClockOffset::default();
        assert_eq!(offset.system_us(5), None);
        offset.observe(1_000_000, 400, 1_000_010);
        assert_eq!(offset.system_us(1_400), Some(1_001_005));
        // Preempted between the readings: 300 µs apart, not taken (nor as a first one).
        let mut first = super::ClockOffset::default();
        first.observe(1_000_000, 400, 1_000_300);
        assert_eq!(first.system_us(400), None);
        offset.observe(2_000_000, 1_000_400, 2_000_300);
        assert_eq!(offset.system_us(1_400), Some(1_001_005));
        // A close pair 8 µs off moves it by a 32nd.
        offset.observe(3_000_008, 2_000_400, 3_000_018);
        assert_eq!(offset.system_us(1_400), Some(1_001_005));
        // A clock set forward by a second: taken at once.
        offset.observe(5_000_000, 3_000_400, 5_000_010);
        assert_eq!(offset.system_us(3_000_400), Some(5_000_005));
    }

    use super::*;

    #[test]
    fn the_latency_is_never_below_control_latency_period_and_margin() {
        let number =
            |name: &str, v: f64| (name.to_string(), chronus_protocol::MetricValue::Number(v));
        let server = ServerLatency::of(&[
            number("depth_blocks", 24.0),
            number("control_latency_ms", 32.0),
            number("depth_floor_blocks", 6.0),
        ])
        .unwrap();
        assert_eq!(server.period_ms, 8.0);
        assert_eq!(latency_ms(server, None), (42.0, None));
        assert_eq!(latency_ms(server, Some(50.0)), (50.0, None));
        let (raised, why) = latency_ms(server, Some(10.0));
        assert_eq!(raised, 42.0);
        assert!(why.unwrap().contains("raised to 42.0 ms"));
        // An older server without the depth metrics: control latency and margin.
        let old = ServerLatency::of(&[number("control_latency_ms", 32.0)]).unwrap();
        assert_eq!(old.least_ms(), 34.0);
        assert_eq!(ServerLatency::of(&[]), None);
    }

    #[test]
    fn the_frame_clock_smooths_jacks_jitter_and_follows_its_rate() {
        // 48,000 frames a second, 0.1 % fast, periods of 1024 frames whose JACK times
        // jitter by up to ±100 µs; the frames wrap past u32::MAX on the way.
        let rate = 48_048.0;
        let mut clock = FrameClock::default();
        let first = u32::MAX - 20 * 1024;
        let true_us = |k: u64| 1_000_000_000 + (k as f64 * 1e6 / rate).round() as u64;
        let mut jitter = 0x2545_f491u64;
        for period in 0..200u64 {
            jitter ^= jitter << 13;
            jitter ^= jitter >> 7;
            jitter ^= jitter << 17;
            let noise = jitter % 201;
            let k = period * 1024;
            clock.observe(first.wrapping_add(k as u32), true_us(k) + noise - 100);
        }
        // An event in the last period, whose own JACK time is 100 µs off.
        let k = 199 * 1024 + 500;
        let fitted = clock.time_of(first.wrapping_add(k as u32), true_us(k) + 100);
        assert!(
            fitted.abs_diff(true_us(k)) <= 20,
            "{fitted} vs {}",
            true_us(k)
        );
        // A frame far from the line's (a JACK restart): JACK's own time, window anew.
        assert_eq!(clock.time_of(7, 5), 5);
        assert!(clock.samples.is_empty());
    }

    #[test]
    fn alsa_stamps_count_from_the_ports_opening() {
        assert_eq!(alsa_time(5_000_000, 250_000, 5_251_000), 5_250_000);
        assert_eq!(alsa_time(5_000_000, 9_000_000, 5_251_000), 5_251_000);
    }

    #[test]
    fn timetags_count_from_1900() {
        let tag = timetag(1_500_000);
        assert_eq!(tag.seconds, 2_208_988_800 + 1);
        assert_eq!(tag.fractional, 1 << 31);
    }
}
