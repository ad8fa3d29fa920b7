//! The JACK sink: Chronus as the JACK client `chronus`, through the `jack` crate.
//!
//! JACK's process callback is the clock: each period it asks for `n` frames on two
//! ports (`out_1`, `out_2`), and we hand out blocks from [`OutputCore::render_next`],
//! de-interleaved, keeping the rest of a block for the next period when the period is not
//! a multiple of our block (exactly as the cpal device sink does). The callback allocates
//! nothing, locks nothing and never panics.
//!
//! JACK imposes its sample rate and period: [`open`] reads them before the workers start
//! (see [`select::prepare`](super::select::prepare)), so the engine runs at JACK's rate.
//!
//! A JACK server can go away (restarted, crashed). The clock must keep moving meanwhile,
//! or the workers stall behind the horizon, so the output clock ([`Feeder`]) is not owned
//! by the process callback but handed to it through a one-place lock-free queue
//! ([`Link::handoff`]): the callback pops it, plays, and pushes it back. When the server's
//! shutdown callback fires, a watcher thread (`chronus-jack`) closes the dead client, takes
//! the clock out of the queue (no callback can hold it any more) and plays it on the paced
//! loop of the null sink ([`paced::pace`]) on a fallback thread, while it polls for the
//! server every 200 ms; once the server is back it opens `chronus` again, takes the clock
//! back from the fallback at a period boundary, and activates the new client with it.
//!
//! libjack logs through a C callback; [`install_logger`] maps its known noise (the
//! `SetInitCallback` message every close prints, the socket errors of a dead server) to
//! `debug` and everything else to `warn`, so no shutdown prints an error.

use std::ffi::{c_char, CStr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use crossbeam_queue::ArrayQueue;

use super::{paced, Playing, Sink};
use crate::metrics::Metrics;
use crate::output::{OutputCore, OutputShared};
use crate::wake::Wake;

/// The name Chronus's JACK client asks for, exactly (a second server on the same JACK
/// server is refused rather than silently becoming `chronus-01`).
pub const CLIENT_NAME: &str = "chronus";
/// The JACK type name of audio ports (to find the physical playback ports).
const AUDIO_TYPE: &str = "32 bit float mono audio";
/// How often the watcher looks for a JACK server that went away.
const RECONNECT_POLL: Duration = Duration::from_millis(200);
/// How long a stop waits for the clock to fade out (a stalled JACK server must not hang
/// the shutdown).
const FADE_WAIT: Duration = Duration::from_secs(1);

/// The JACK server libjack will talk to: `$JACK_DEFAULT_SERVER`, else `default`.
pub fn server_name() -> String {
    std::env::var("JACK_DEFAULT_SERVER").unwrap_or_else(|_| "default".to_string())
}

/// Whether a JACK server is running for this user (its socket accepts a connection),
/// checked without a JACK client, so that probing never starts a server and prints
/// nothing. jackd2 puts its socket at `/dev/shm/jack_<server>_<uid>_0`; older builds used
/// a directory per user.
pub fn server_running() -> bool {
    let uid = rustix::process::getuid().as_raw();
    let server = server_name();
    // A socket file can outlive its server: only one that accepts a connection counts.
    let socket = format!("/dev/shm/jack_{server}_{uid}_0");
    if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
        return true;
    }
    [
        format!("/dev/shm/jack-{uid}/{server}"),
        format!("/tmp/jack-{uid}/{server}"),
    ]
    .iter()
    .any(|dir| {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("jack_"))
            })
            .unwrap_or(false)
    })
}

/// Installs the libjack logger (once per process, before any client opens): without it the
/// `jack` crate's default logger reports libjack's harmless `SetInitCallback` message at
/// every client close as an `ERROR`.
pub fn install_logger() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        jack::set_logger(jack::LoggerType::Custom {
            info: libjack_info,
            error: libjack_error,
        });
    });
}

/// libjack's info messages: always `debug`.
///
/// # Safety
/// libjack calls it with a NUL-terminated string (or null).
unsafe extern "C" fn libjack_info(message: *const c_char) {
    // SAFETY: libjack hands a valid NUL-terminated string for the duration of the call.
    let text = unsafe { message_text(message) };
    let _ = std::panic::catch_unwind(|| tracing::debug!(target: "libjack", "{text}"));
}

/// libjack's error messages: `debug` for its known noise ([`is_libjack_noise`]), else
/// `warn` (never `error`: what matters is said by Chronus's own log lines).
///
/// # Safety
/// libjack calls it with a NUL-terminated string (or null).
unsafe extern "C" fn libjack_error(message: *const c_char) {
    // SAFETY: libjack hands a valid NUL-terminated string for the duration of the call.
    let text = unsafe { message_text(message) };
    let _ = std::panic::catch_unwind(|| {
        if is_libjack_noise(text) {
            tracing::debug!(target: "libjack", "{text}");
        } else {
            tracing::warn!(target: "libjack", "{text}");
        }
    });
}

/// The text of a message from libjack ("" for null or non-UTF-8).
///
/// # Safety
/// `message` is null or points to a NUL-terminated string valid for `'a`.
unsafe fn message_text<'a>(message: *const c_char) -> &'a str {
    if message.is_null() {
        return "";
    }
    // SAFETY: not null, and NUL-terminated and alive for 'a by the caller's contract.
    unsafe { CStr::from_ptr(message) }.to_str().unwrap_or("")
}

/// Whether a libjack error message is known noise: printed at every client close
/// (`SetInitCallback`), when no server runs (a probe), or while a server dies and comes
/// back (socket errors); Chronus says what happened in its own words.
pub fn is_libjack_noise(message: &str) -> bool {
    const NOISE: &[&str] = &[
        "SetInitCallback",
        "Cannot connect to server",
        "Cannot connect to the server",
        "server is not running",
        "Server is not running",
        "JackShmReadWritePtr",
        "Cannot lock down",
        "real-time scheduling",
        "AcquireSelfRealTime",
        "Cannot read socket",
        "Cannot write socket",
        "CheckRes error",
        "Cannot callback the server",
        "Could not read result",
        "Could not write request",
        "Jack server was closed",
        "ServerNotify",
        "JackSocketClientChannel",
        "Cannot open",
        "Cannot deactivate",
        "Client name = ",
        "client cannot be closed",
    ];
    NOISE.iter().any(|noise| message.contains(noise))
}

/// The server's settings, as a client sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// The server's name (`$JACK_DEFAULT_SERVER` or `default`).
    pub server: String,
    /// Frames per second the server runs at.
    pub sample_rate: u32,
    /// Frames per period.
    pub period_frames: u32,
    /// Its physical playback ports (where `chronus:out_1`/`out_2` get connected).
    pub playback_ports: Vec<String>,
}

/// What a client reads of its server.
fn server_info(client: &jack::Client) -> ServerInfo {
    ServerInfo {
        server: server_name(),
        sample_rate: client.sample_rate(),
        period_frames: client.buffer_size(),
        playback_ports: playback_ports(client),
    }
}

/// The physical playback ports, in order.
fn playback_ports(client: &jack::Client) -> Vec<String> {
    client.ports(
        None,
        Some(AUDIO_TYPE),
        jack::PortFlags::IS_INPUT | jack::PortFlags::IS_PHYSICAL,
    )
}

/// Opens the JACK client `chronus` on the running server (never starting one) and says
/// what the server runs at.
///
/// # Errors
/// No JACK server running, libjack missing, or a client named `chronus` already there
/// (another Chronus server): each says so and what to do.
pub fn open() -> anyhow::Result<(jack::Client, ServerInfo)> {
    install_logger();
    let server = server_name();
    if !server_running() {
        anyhow::bail!(
            "no JACK server '{server}' is running (start one, e.g. `jackd -d dummy`, or use --output null)"
        );
    }
    let options = jack::ClientOptions::NO_START_SERVER | jack::ClientOptions::USE_EXACT_NAME;
    let client = match jack::Client::new(CLIENT_NAME, options) {
        Ok((client, _status)) => client,
        Err(jack::Error::ClientError(status))
            if status.contains(jack::ClientStatus::NAME_NOT_UNIQUE) || name_taken() =>
        {
            anyhow::bail!(
                "the JACK server '{server}' already has a client named '{CLIENT_NAME}' (another chronus serve?); stop it, or play this one elsewhere (--output null)"
            )
        }
        Err(jack::Error::LibraryError(message)) => {
            anyhow::bail!("libjack cannot be loaded ({message}); install libjack-jackd2-0")
        }
        Err(e) => {
            return Err(anyhow!(
                "cannot open a JACK client on server '{server}': {e}"
            ))
        }
    };
    let info = server_info(&client);
    Ok((client, info))
}

/// Whether the running server has a client named [`CLIENT_NAME`] (jackd2 refuses an exact
/// name already taken with a bare server error, not `NAME_NOT_UNIQUE`), seen by its ports.
fn name_taken() -> bool {
    jack::Client::new("chronus_probe", jack::ClientOptions::NO_START_SERVER).is_ok_and(
        |(client, _)| {
            !client
                .ports(
                    Some(&format!("^{CLIENT_NAME}:")),
                    None,
                    jack::PortFlags::empty(),
                )
                .is_empty()
        },
    )
}

/// What `chronus devices` shows of JACK: the server's settings, read by a short-lived
/// client of another name (so it works while a Chronus server plays), or `None` when no
/// server runs.
///
/// # Errors
/// A server runs but refuses a client.
pub fn probe_server() -> anyhow::Result<Option<ServerInfo>> {
    install_logger();
    if !server_running() {
        return Ok(None);
    }
    let (client, _) = jack::Client::new("chronus_devices", jack::ClientOptions::NO_START_SERVER)
        .map_err(|e| anyhow!("the JACK server '{}' refused a client: {e}", server_name()))?;
    Ok(Some(server_info(&client)))
}

/// The JACK output: a client opened early (to learn the rate before the workers start).
pub struct JackSink {
    /// The client `chronus`, opened by [`open`].
    pub client: jack::Client,
    /// The engine's sample rate (JACK's, unless a resumed state imposed another).
    pub engine_rate: u32,
    /// Blocks per period of the paced fallback that plays while the server is away.
    pub fallback_period_blocks: usize,
}

impl Sink for JackSink {
    fn describe(&self) -> String {
        format!(
            "JACK client '{CLIENT_NAME}' on server '{}' at {} Hz, period {} frames",
            server_name(),
            self.client.sample_rate(),
            self.client.buffer_size()
        )
    }

    /// JACK's process callback is the clock; `stop` fades the fallback out should the
    /// server be away at the stop, and `realtime` is JACK's business.
    fn start(
        self: Box<Self>,
        core: OutputCore,
        stop: Arc<AtomicBool>,
        _realtime: bool,
    ) -> anyhow::Result<Playing> {
        let description = self.describe();
        let shared = Arc::clone(core.shared());
        let link = Arc::new(Link {
            handoff: ArrayQueue::new(1),
            dead: AtomicBool::new(false),
            finish: AtomicBool::new(false),
            wake: Wake::new(),
            metrics: Arc::clone(&shared.metrics),
        });
        let feeder = Feeder::new(core);
        let _ = link.handoff.push(feeder);
        let active = activate(self.client, &link)?;
        tracing::info!("output: {description}");
        let watcher = Watcher {
            link: Arc::clone(&link),
            stop,
            engine_rate: self.engine_rate,
            fallback_period_blocks: self.fallback_period_blocks,
        };
        let thread = std::thread::Builder::new()
            .name("chronus-jack".into())
            .spawn(move || watcher.run(active))
            .context("cannot start the JACK watcher thread")?;
        Ok(Playing::jack(JackPlaying {
            thread,
            link,
            shared,
        }))
    }
}

/// A playing JACK output, as [`Playing`] holds it.
pub struct JackPlaying {
    /// The watcher thread (it owns the client).
    thread: JoinHandle<anyhow::Result<()>>,
    link: Arc<Link>,
    shared: Arc<OutputShared>,
}

impl JackPlaying {
    /// Whether the watcher ended (it only does when stopped, or on a bug).
    pub fn ended(&self) -> bool {
        self.thread.is_finished()
    }

    /// Fades out (a second at most), then has the watcher deactivate and close the client
    /// (from a thread of ours, never a JACK one) and joins it.
    ///
    /// # Errors
    /// The watcher's error or panic.
    pub fn stop(self) -> anyhow::Result<()> {
        self.shared.request_fade_out();
        let deadline = Instant::now() + FADE_WAIT;
        while !self.shared.has_faded_out() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.link.finish.store(true, Ordering::Release);
        self.link.wake.signal();
        self.thread
            .join()
            .unwrap_or_else(|_| Err(anyhow!("the JACK watcher thread panicked")))
    }
}

/// What the JACK callbacks, the watcher and the fallback share.
struct Link {
    /// The output clock, when no one plays it: the process callback pops it for the length
    /// of a period; the watcher takes it out once the client is dead. One place, lock-free.
    handoff: ArrayQueue<Feeder>,
    /// Set by JACK's shutdown callback: the server went away.
    dead: AtomicBool,
    /// Set by [`JackPlaying::stop`]: close the client and end.
    finish: AtomicBool,
    /// Wakes the watcher (from the shutdown, rate and period callbacks, and the stop).
    wake: Wake,
    /// Where xruns, the rate and the period go.
    metrics: Arc<Metrics>,
}

/// The output clock as a JACK callback plays it: whole blocks handed out in pieces of any
/// period.
struct Feeder {
    core: OutputCore,
    /// The block being handed out, interleaved stereo.
    block: Vec<f32>,
    /// Samples of `block` already handed out.
    used: usize,
    /// The output's frame of the next sample handed out (for the clock model).
    next_frame: u64,
}

impl Feeder {
    /// A feeder at the clock's next block (allocates its one block: not on the audio path).
    fn new(core: OutputCore) -> Feeder {
        let shared = Arc::clone(core.shared());
        let block_len = shared.block_frames * 2;
        Feeder {
            core,
            block: vec![0.0; block_len],
            used: block_len,
            next_frame: shared.played.load(Ordering::Acquire) * shared.block_frames as u64,
        }
    }

    /// Fills one period's ports from the clock, de-interleaving. Allocates, locks and
    /// panics never.
    fn fill(&mut self, left: &mut [f32], right: &mut [f32]) {
        let frames = left.len().min(right.len());
        let mut written = 0;
        while written < frames {
            if self.used >= self.block.len() {
                self.core.render_next(&mut self.block);
                self.used = 0;
            }
            let n = (frames - written).min((self.block.len() - self.used) / 2);
            if n == 0 {
                // A block of zero frames cannot happen; never loop forever on one.
                break;
            }
            if let (Some(l), Some(r), Some(src)) = (
                left.get_mut(written..written + n),
                right.get_mut(written..written + n),
                self.block.get(self.used..self.used + 2 * n),
            ) {
                for ((l, r), pair) in l.iter_mut().zip(r.iter_mut()).zip(src.chunks_exact(2)) {
                    *l = pair[0];
                    *r = pair[1];
                }
            }
            written += n;
            self.used += 2 * n;
        }
        left.get_mut(written..)
            .into_iter()
            .flatten()
            .for_each(|x| *x = 0.0);
        right
            .get_mut(written..)
            .into_iter()
            .flatten()
            .for_each(|x| *x = 0.0);
        self.next_frame += frames as u64;
    }

    /// Drops the rest of a block partly handed out (counted as played): the paced fallback
    /// plays whole blocks from the next one.
    fn skip_rest(&mut self) {
        let rest = self.block.len().saturating_sub(self.used);
        self.next_frame += (rest / 2) as u64;
        self.used = self.block.len();
    }
}

/// The first period a client played: its JACK frame and the output's frame, for the log
/// (tests align a JACK recording with the served audio by it).
#[derive(Default)]
struct FirstCycle {
    noted: AtomicBool,
    jack_frame: AtomicU32,
    output_frame: AtomicU64,
}

/// The process handler of one client: its ports, and the way to the clock.
struct Process {
    out: [jack::Port<jack::AudioOut>; 2],
    link: Arc<Link>,
    first: Arc<FirstCycle>,
    noted: bool,
}

impl jack::ProcessHandler for Process {
    fn process(&mut self, client: &jack::Client, scope: &jack::ProcessScope) -> jack::Control {
        chronus_realtime::mark_realtime_thread();
        let [left, right] = &mut self.out;
        let (left, right) = (left.as_mut_slice(scope), right.as_mut_slice(scope));
        let Some(mut feeder) = self.link.handoff.pop() else {
            // The watcher has taken the clock (the client is being closed): silence.
            left.fill(0.0);
            right.fill(0.0);
            return jack::Control::Continue;
        };
        if !self.noted {
            self.noted = true;
            self.first
                .jack_frame
                .store(scope.last_frame_time(), Ordering::Relaxed);
            self.first
                .output_frame
                .store(feeder.next_frame, Ordering::Relaxed);
            self.first.noted.store(true, Ordering::Release);
        }
        // The clock model: this period's first frame is handed over at the period's start,
        // where JACK's own loop filter puts it (its cycle times, in JACK's microseconds,
        // whose base is JACK's to choose: moved onto the output's by JACK's clock now); the
        // callback's entry time before JACK has cycle times.
        let now_ns = feeder.core.shared().now_ns();
        let at_ns = match scope.cycle_times() {
            Ok(times) => {
                let since_start_us = client.time().saturating_sub(times.current_usecs);
                now_ns.saturating_sub(since_start_us.saturating_mul(1_000))
            }
            Err(_) => now_ns,
        };
        feeder.core.handed_over(feeder.next_frame, at_ns);
        feeder.fill(left, right);
        if let Err(feeder) = self.link.handoff.push(feeder) {
            // Cannot happen (one place, and we took what was in it); never free on this
            // thread.
            std::mem::forget(feeder);
        }
        jack::Control::Continue
    }

    fn buffer_size(&mut self, _: &jack::Client, size: jack::Frames) -> jack::Control {
        self.link
            .metrics
            .device_period_frames
            .store(u64::from(size), Ordering::Relaxed);
        self.link.wake.signal();
        jack::Control::Continue
    }
}

/// The notification handler of one client: xruns, rate changes, the server's shutdown.
struct Notifications {
    link: Arc<Link>,
}

impl jack::NotificationHandler for Notifications {
    unsafe fn shutdown(&mut self, _status: jack::ClientStatus, _reason: &str) {
        // Only flags and a wake-up: the watcher does the rest, off JACK's threads.
        self.link.dead.store(true, Ordering::Release);
        self.link.wake.signal();
    }

    fn sample_rate(&mut self, _: &jack::Client, rate: jack::Frames) -> jack::Control {
        self.link
            .metrics
            .device_sample_rate
            .store(u64::from(rate), Ordering::Relaxed);
        self.link.wake.signal();
        jack::Control::Continue
    }

    fn xrun(&mut self, _: &jack::Client) -> jack::Control {
        Metrics::bump(&self.link.metrics.jack_xruns);
        jack::Control::Continue
    }
}

/// A client that plays.
struct Active {
    client: jack::AsyncClient<Notifications, Process>,
    first: Arc<FirstCycle>,
}

/// Registers `out_1`/`out_2` on `client`, activates it on `link`'s clock and connects the
/// ports to the physical playback ports.
///
/// # Errors
/// A port that cannot be registered, or a client that cannot be activated.
fn activate(client: jack::Client, link: &Arc<Link>) -> anyhow::Result<Active> {
    let out = [
        client
            .register_port("out_1", jack::AudioOut::default())
            .context("cannot register the JACK port out_1")?,
        client
            .register_port("out_2", jack::AudioOut::default())
            .context("cannot register the JACK port out_2")?,
    ];
    let names: Vec<String> = out.iter().filter_map(|p| p.name().ok()).collect();
    let rate = client.sample_rate();
    let period = client.buffer_size();
    link.metrics
        .device_sample_rate
        .store(u64::from(rate), Ordering::Relaxed);
    link.metrics
        .device_period_frames
        .store(u64::from(period), Ordering::Relaxed);
    let first = Arc::new(FirstCycle::default());
    let process = Process {
        out,
        link: Arc::clone(link),
        first: Arc::clone(&first),
        noted: false,
    };
    let notifications = Notifications {
        link: Arc::clone(link),
    };
    let active = client
        .activate_async(notifications, process)
        .context("cannot activate the JACK client")?;
    let playback = playback_ports(active.as_client());
    if playback.is_empty() {
        tracing::info!(
            "JACK: no physical playback ports; connect {} yourself",
            names.join(" and ")
        );
    }
    for (source, destination) in names.iter().zip(&playback) {
        match active
            .as_client()
            .connect_ports_by_name(source, destination)
        {
            Ok(()) | Err(jack::Error::PortAlreadyConnected(..)) => {
                tracing::info!("JACK: {source} -> {destination}")
            }
            Err(e) => tracing::warn!("JACK: cannot connect {source} to {destination}: {e}"),
        }
    }
    link.metrics.jack_connected.store(1, Ordering::Relaxed);
    Ok(Active {
        client: active,
        first,
    })
}

/// Deactivates and closes a client from a thread of ours. After its server died the
/// deactivation fails (and libjack logs socket errors, which the logger keeps at debug);
/// the client is closed all the same.
fn close(active: Active) {
    match active.client.deactivate() {
        Ok((client, _, _)) => drop(client),
        Err(e) => tracing::debug!("JACK: deactivating the client: {e}"),
    }
}

/// The thread that owns the client: logs what JACK changes, and on the server's shutdown
/// keeps the clock going on a fallback until it can reconnect.
struct Watcher {
    link: Arc<Link>,
    stop: Arc<AtomicBool>,
    engine_rate: u32,
    fallback_period_blocks: usize,
}

/// The paced loop playing the clock while JACK is away.
struct Fallback {
    thread: JoinHandle<Feeder>,
    hand_back: Arc<AtomicBool>,
}

impl Watcher {
    fn run(self, first: Active) -> anyhow::Result<()> {
        let mut active = Some(first);
        let mut fallback: Option<Fallback> = None;
        let mut logged = (0u32, 0u32);
        let mut first_cycle_logged = false;
        let mut xruns_logged = 0;
        let mut next_try = Instant::now();
        loop {
            self.link.wake.wait(RECONNECT_POLL);
            if self.link.finish.load(Ordering::Acquire) {
                if let Some(active) = active.take() {
                    close(active);
                }
                if let Some(fallback) = fallback.take() {
                    self.take_back(fallback)?;
                }
                return Ok(());
            }
            if let Some(playing) = &active {
                if !first_cycle_logged && playing.first.noted.load(Ordering::Acquire) {
                    first_cycle_logged = true;
                    tracing::info!(
                        "JACK: output frame {} is handed over at JACK frame {}",
                        playing.first.output_frame.load(Ordering::Relaxed),
                        playing.first.jack_frame.load(Ordering::Relaxed)
                    );
                }
                self.log_changes(playing.client.as_client(), &mut logged);
                let xruns = self.link.metrics.jack_xruns.load(Ordering::Relaxed);
                if xruns != xruns_logged {
                    tracing::warn!(
                        "JACK xrun: a period of the JACK server was late ({xruns} since start, server-wide)"
                    );
                    xruns_logged = xruns;
                }
                if !self.link.dead.load(Ordering::Acquire) {
                    continue;
                }
            }
            if let Some(dead) = active.take() {
                tracing::warn!(
                    "JACK server '{}' went away: playing on (unheard, in real time) until it is back",
                    server_name()
                );
                self.link.metrics.jack_connected.store(0, Ordering::Relaxed);
                // The old client is closed before any new one opens (libjack frees the
                // clients of a dead server at the next open).
                close(dead);
                let feeder = self.take_clock()?;
                fallback = Some(self.start_fallback(feeder)?);
            }
            if self.stop.load(Ordering::Acquire) || Instant::now() < next_try {
                continue;
            }
            next_try = Instant::now() + RECONNECT_POLL;
            if !server_running() {
                continue;
            }
            let Ok((client, info)) = open() else {
                continue;
            };
            if let Some(fallback) = fallback.take() {
                let feeder = self.take_back(fallback)?;
                let _ = self.link.handoff.push(feeder);
            }
            self.link.dead.store(false, Ordering::Release);
            match activate(client, &self.link) {
                Ok(playing) => {
                    tracing::info!(
                        "JACK server back: {} Hz, period {}",
                        info.sample_rate,
                        info.period_frames
                    );
                    Metrics::bump(&self.link.metrics.jack_reconnects);
                    logged = (info.sample_rate, info.period_frames);
                    if info.sample_rate != self.engine_rate {
                        tracing::error!(
                            "JACK server back at {} Hz, but the engine runs at {} Hz: it plays at the wrong speed until `chronus serve` is restarted",
                            info.sample_rate,
                            self.engine_rate
                        );
                    }
                    first_cycle_logged = false;
                    active = Some(playing);
                }
                Err(e) => {
                    tracing::warn!("JACK server back, but the client failed: {e:#}; retrying");
                    let feeder = self.take_clock()?;
                    fallback = Some(self.start_fallback(feeder)?);
                }
            }
        }
    }

    /// Logs a new sample rate or period JACK imposed (JACK's callbacks only set atomics).
    fn log_changes(&self, client: &jack::Client, logged: &mut (u32, u32)) {
        let now = (client.sample_rate(), client.buffer_size());
        if *logged == (0, 0) {
            *logged = now;
            return;
        }
        if now.1 != logged.1 {
            tracing::info!("JACK period now {} frames (was {})", now.1, logged.1);
        }
        if now.0 != logged.0 && now.0 != self.engine_rate {
            tracing::error!(
                "JACK now runs at {} Hz, but the engine runs at {} Hz: it plays at the wrong speed until `chronus serve` is restarted",
                now.0,
                self.engine_rate
            );
        }
        *logged = now;
    }

    /// Takes the clock out of the handoff once the client is closed (a callback still
    /// running puts it back within a period).
    ///
    /// # Errors
    /// When it does not come back within a second (a hung JACK thread kept it).
    fn take_clock(&self) -> anyhow::Result<Feeder> {
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            if let Some(feeder) = self.link.handoff.pop() {
                return Ok(feeder);
            }
            if Instant::now() > deadline {
                anyhow::bail!("the JACK process thread kept the output clock: the output stops");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Plays `feeder` on the paced loop on a thread of its own, from its next whole block.
    fn start_fallback(&self, mut feeder: Feeder) -> anyhow::Result<Fallback> {
        let hand_back = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&self.stop);
        let period_blocks = self.fallback_period_blocks;
        let flag = Arc::clone(&hand_back);
        let thread = std::thread::Builder::new()
            .name("chronus-jack-fallback".into())
            .stack_size(chronus_realtime::THREAD_STACK)
            .spawn(move || {
                chronus_realtime::mark_realtime_thread();
                feeder.skip_rest();
                let mut frames = 0u64;
                paced::pace(&mut feeder.core, period_blocks, &stop, &flag, |samples| {
                    frames += (samples.len() / 2) as u64;
                });
                feeder.next_frame += frames;
                feeder
            })
            .context("cannot start the JACK fallback thread")?;
        Ok(Fallback { thread, hand_back })
    }

    /// Stops the fallback at its next period and takes the clock back.
    ///
    /// # Errors
    /// The fallback's panic (the clock is lost with it).
    fn take_back(&self, fallback: Fallback) -> anyhow::Result<Feeder> {
        fallback.hand_back.store(true, Ordering::Release);
        fallback
            .thread
            .join()
            .map_err(|_| anyhow!("the JACK fallback thread panicked: the output stops"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::paced::tests::idle_shared;

    #[test]
    fn a_period_shorter_than_a_block_keeps_the_rest_for_the_next_period() {
        let shared = idle_shared();
        let mut feeder = Feeder::new(OutputCore::new(Arc::clone(&shared)));
        let (mut l, mut r) = (vec![1.0f32; 48], vec![1.0f32; 48]);
        feeder.fill(&mut l, &mut r);
        assert_eq!(shared.played.load(Ordering::Acquire), 1);
        assert_eq!(feeder.used, 96);
        assert_eq!(feeder.next_frame, 48);
        feeder.fill(&mut l, &mut r);
        // 16 frames left of block 0, then 32 of block 1.
        assert_eq!(shared.played.load(Ordering::Acquire), 2);
        assert_eq!(feeder.used, 64);
        assert_eq!(feeder.next_frame, 96);
        feeder.skip_rest();
        assert_eq!(feeder.next_frame, 128);
        assert_eq!(feeder.used, 128);
    }

    #[test]
    fn a_period_of_several_blocks_plays_them_all() {
        let shared = idle_shared();
        let mut feeder = Feeder::new(OutputCore::new(Arc::clone(&shared)));
        let (mut l, mut r) = (vec![1.0f32; 256], vec![1.0f32; 256]);
        feeder.fill(&mut l, &mut r);
        assert_eq!(shared.played.load(Ordering::Acquire), 4);
        assert_eq!(feeder.next_frame, 256);
        // An idle clock plays silence, into every frame.
        assert!(l.iter().chain(&r).all(|x| x.to_bits() == 0));
    }

    #[test]
    fn libjack_noise_is_told_from_real_messages() {
        assert!(is_libjack_noise(
            "JackMessageBuffer::SetInitCallback : callback could not be executed"
        ));
        assert!(is_libjack_noise(
            "Cannot connect to server socket err = No such file or directory"
        ));
        assert!(!is_libjack_noise("Cannot allocate memory for port"));
    }
}
