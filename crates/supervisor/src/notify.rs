//! `/notify`: pushes to subscribed clients (screens, agents), computed off the real-time
//! threads; and the one thread that owns the subscribers.
//!
//! One push from its source to the socket:
//! 1. A source hands a [`NotifyEvent`] to a [`NotifySender`], which `try_send`s it into a
//!    bounded channel (full: dropped and counted in `notify_dropped`; nothing waits). The
//!    sources: the OSC thread (subscriptions, parameter changes), the supervisor loop
//!    (failovers, patch switches, workers changing role). The sound comes another way:
//!    while a subscriber wants `levels`, `scope`, `spectrum` or `audio`, the output clock
//!    copies each played block, stamped with its first frame, into
//!    [`OutputShared::monitor`], a preallocated wait-free ring.
//! 2. The notify thread ([`Notifier::run`], normal priority) takes each event, and every
//!    [`TICK`] (while a periodic topic is wanted; [`IDLE_TICK`] otherwise) drains the monitor ring into its [`Analysis`] and sees which periodic topic
//!    is due; it encodes the push once (`chronus_protocol::reply::push_*`).
//! 3. [`Subscribers::to`] lists who has that topic, and [`Replier::send`] sends it to each
//!    without waiting (a UDP datagram, or a TCP client's queue).
//!
//! Rules, in [`Subscribers`] (a pure table, unit-tested with an injected clock): at most
//! [`MAX_SUBSCRIBERS`]; UDP only to loopback and `--allow`ed clients, others
//! are told to use TCP; a UDP subscription ends after [`UDP_LEASE`] unless renewed (sending
//! `/notify 1 …` again renews and replaces it); a TCP one ends with its connection.
//! `audio` (the samples themselves, about 400 KB/s at 48 kHz) goes over TCP only and to at
//! most [`MAX_AUDIO_SUBSCRIBERS`]. A TCP client that does not read is never waited for:
//! its pushes queue in the transport's bounded reply queue, and when that is full the
//! client is disconnected ([`Replier::send`]); the sound and the other subscribers go on.
//!
//! A panic in the thread is caught per event or tick, logged, counted in `notify_panics`;
//! the thread keeps its subscribers, starts its analysis afresh, and pushes on. Adding a
//! topic: a [`Topic`] variant and its producer here (an event, or a periodic push in
//! [`Notifier::tick`]).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chronus_ipc::WorkerCounts;
use chronus_protocol::table::NOTIFY;
use chronus_protocol::{reply, Subscription, Topic, Topics};
use rustfft::num_complex::Complex;

use crate::exposure::Exposure;
use crate::log_limit::{self, escaped};
use crate::metrics::Metrics;
use crate::output::OutputShared;
use crate::recorder::stamped_blocks;
use crate::report::Reporter;
use crate::transport::{Replier, ReplyTo};

/// Most subscribers at once; the next one gets `/fail`.
pub const MAX_SUBSCRIBERS: usize = 32;
/// Most subscribers to `audio` at once (each costs the server about 400 KB/s of copying
/// and sending at 48 kHz); the next one gets `/fail`.
pub const MAX_AUDIO_SUBSCRIBERS: usize = 4;
/// Most frames in one `audio` push (a tick's sound is usually fewer: one push a tick).
pub const AUDIO_PUSH_FRAMES: usize = 1024;
/// How long a UDP subscription lasts unless renewed by another `/notify 1`.
pub const UDP_LEASE: Duration = Duration::from_secs(60);
/// Events waiting for the notify thread; beyond this they are dropped and counted.
pub const EVENT_QUEUE: usize = 1024;
/// How often the thread looks at the monitor ring and the periodic topics while someone
/// subscribes to one (`metrics`, `levels`, `scope`, `spectrum`).
pub const TICK: Duration = Duration::from_millis(10);
/// How often it looks otherwise (only to expire subscriptions): each look wakes a CPU.
pub const IDLE_TICK: Duration = Duration::from_millis(250);
/// Frames of the output kept for `spectrum` (the FFT's length: 5.9 Hz a bin at 48 kHz, so
/// bands down to about 100 Hz are wider than a bin; the lowest few are not, and read the
/// bin nearest their centre).
pub const WINDOW_FRAMES: usize = 8192;
/// Frames of the output `scope` shows: the latest of the window.
pub const SCOPE_FRAMES: usize = 2048;
/// `scope` sends one frame in this many of [`SCOPE_FRAMES`].
pub const SCOPE_STEP: usize = 8;
/// Bands of `spectrum`.
pub const SPECTRUM_BANDS: usize = 32;
/// Lowest frequency of the `spectrum` bands, in Hz.
pub const SPECTRUM_LOW_HZ: f32 = 20.0;
/// Highest frequency of the `spectrum` bands, in Hz (or the Nyquist frequency if lower).
pub const SPECTRUM_HIGH_HZ: f32 = 20_000.0;
/// Level reported for a band with no energy, in dBFS.
pub const SPECTRUM_FLOOR_DB: f32 = -120.0;
/// Interval of `levels` and `scope` pushes (30 Hz).
const AUDIO_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / 30);
/// Interval of `spectrum` pushes (15 Hz).
const SPECTRUM_INTERVAL: Duration = Duration::from_nanos(1_000_000_000 / 15);

/// What the notify thread is told.
#[derive(Debug)]
pub enum NotifyEvent {
    /// `/notify 1 …` from `from`: subscribe (or renew and replace), then answer.
    Subscribe {
        /// Who asked (and is pushed to).
        from: ReplyTo,
        /// What it asked for.
        subscription: Subscription,
    },
    /// `/notify 0` from `from`: end its subscription, then answer `/done /notify`.
    Unsubscribe {
        /// Who asked.
        from: ReplyTo,
    },
    /// The output switched to `slot` at `frame` (`failover` topic).
    Failover {
        /// The slot now active.
        slot: usize,
        /// First frame read from it.
        frame: u64,
        /// Why: `worker died` or `missed deadline`.
        cause: &'static str,
    },
    /// Slot `slot` changed role or worker (`worker` topic).
    Worker {
        /// Slot index.
        slot: usize,
        /// Its state's name (`starting`, `joining`, `standby`, `active`, `dead`, `empty`).
        role: &'static str,
        /// Its worker's pid (0: none).
        pid: u32,
    },
    /// A parameter change was accepted (`params` topic).
    Param {
        /// The parameter's address (`/mod/<id>/<param>`, `/engine/gain`).
        address: String,
        /// Its new value, or a glide's target.
        value: f32,
        /// A glide's length (`/ramp`), `None` for a plain set.
        seconds: Option<f32>,
    },
    /// Committed patch `version` was switched in at `frame` (`patch` topic).
    Patch {
        /// Its version.
        version: u32,
        /// The frame it plays from.
        frame: u64,
    },
    /// Fault injection (`/debug/panic 4`): answer `reply_to`, then panic.
    DebugPanic {
        /// Who asked.
        reply_to: ReplyTo,
    },
}

/// The sending end of the notify thread's queue: never waits, counts what it drops.
#[derive(Clone)]
pub struct NotifySender {
    events: SyncSender<NotifyEvent>,
    shared: Arc<OutputShared>,
}

impl NotifySender {
    /// Hands `event` to the notify thread without waiting; returns false (and counts it in
    /// `notify_dropped`) when the queue is full or the thread is gone.
    pub fn send(&self, event: NotifyEvent) -> bool {
        match self.events.try_send(event) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                Metrics::bump(&self.shared.metrics.notify_dropped);
                false
            }
        }
    }

    /// The topics some subscriber has now: a source skips building an event nobody wants.
    pub fn wanted(&self) -> Topics {
        Topics::from_bits(self.shared.notify_topics.load(Ordering::Relaxed))
    }
}

/// One subscriber.
#[derive(Debug, Clone, PartialEq)]
struct Subscriber {
    to: ReplyTo,
    subscription: Subscription,
    /// When a UDP subscription lapses unless renewed (`None`: TCP, ends with the connection).
    expires: Option<Instant>,
    /// When its next `metrics` push is due.
    next_metrics: Instant,
}

/// The subscribers: who gets which topic, and until when. A pure table: every method takes
/// the time, so tests drive its clock. (`Default`: pushes over UDP to loopback only.)
#[derive(Debug, Default)]
pub struct Subscribers {
    list: Vec<Subscriber>,
    /// Who may get pushes over UDP ([`Exposure::may_push_udp`]: loopback and `--allow`ed
    /// clients; a push is larger than the request that asked for it, so pushes to anyone
    /// would let a spoofed request aim them at a third party).
    exposure: Exposure,
}

impl Subscribers {
    /// A table whose UDP pushes go where `exposure` allows.
    pub fn new(exposure: Exposure) -> Subscribers {
        Subscribers {
            list: Vec::new(),
            exposure,
        }
    }

    /// Subscribes `to` (or renews and replaces its subscription) at `now`.
    ///
    /// # Errors
    /// The `/fail` reason: a UDP address the exposure policy refuses, or [`MAX_SUBSCRIBERS`]
    /// already subscribed.
    pub fn subscribe(
        &mut self,
        to: ReplyTo,
        subscription: Subscription,
        now: Instant,
    ) -> Result<(), String> {
        let expires = match to {
            ReplyTo::Udp(addr) if !self.exposure.may_push_udp(addr) => {
                return Err(format!(
                    "{NOTIFY}: pushes go over UDP only to loopback and --allow'ed clients; subscribe over TCP (same port)"
                ));
            }
            ReplyTo::Udp(_) if subscription.topics.contains(Topic::Audio) => {
                return Err(format!(
                    "{NOTIFY}: audio goes over TCP only (a stream of samples, not datagrams to lose); subscribe over TCP (same port)"
                ));
            }
            ReplyTo::Udp(_) => Some(now + UDP_LEASE),
            ReplyTo::Tcp(_) => None,
        };
        if subscription.topics.contains(Topic::Audio) {
            let others = self
                .list
                .iter()
                .filter(|s| s.to != to && s.subscription.topics.contains(Topic::Audio))
                .count();
            if others >= MAX_AUDIO_SUBSCRIBERS {
                return Err(format!(
                    "{NOTIFY}: {MAX_AUDIO_SUBSCRIBERS} audio subscribers already; try again when one leaves"
                ));
            }
        }
        let subscriber = Subscriber {
            to,
            subscription,
            expires,
            next_metrics: now,
        };
        if let Some(known) = self.list.iter_mut().find(|s| s.to == to) {
            *known = subscriber;
            return Ok(());
        }
        if self.list.len() >= MAX_SUBSCRIBERS {
            return Err(format!(
                "{NOTIFY}: {MAX_SUBSCRIBERS} subscribers already; try again when one leaves"
            ));
        }
        self.list.push(subscriber);
        Ok(())
    }

    /// Ends the subscription of `to`; false if it had none.
    pub fn unsubscribe(&mut self, to: ReplyTo) -> bool {
        let before = self.list.len();
        self.list.retain(|s| s.to != to);
        self.list.len() < before
    }

    /// Drops the UDP subscriptions lapsed at `now` and the TCP ones whose connection is
    /// gone (`connected` says); returns how many went.
    pub fn expire(&mut self, now: Instant, connected: impl Fn(u64) -> bool) -> usize {
        let before = self.list.len();
        self.list.retain(|s| match (s.to, s.expires) {
            (ReplyTo::Tcp(id), _) => connected(id),
            (ReplyTo::Udp(_), Some(expires)) => now < expires,
            (ReplyTo::Udp(_), None) => true,
        });
        before - self.list.len()
    }

    /// Every topic some subscriber has.
    pub fn wanted(&self) -> Topics {
        self.list
            .iter()
            .fold(Topics::NONE, |all, s| all.union(s.subscription.topics))
    }

    /// The subscribers to `topic`.
    pub fn to(&self, topic: Topic) -> impl Iterator<Item = ReplyTo> + '_ {
        self.list
            .iter()
            .filter(move |s| s.subscription.topics.contains(topic))
            .map(|s| s.to)
    }

    /// The subscribers whose `metrics` push is due at `now`, each then scheduled for its
    /// next one at its own rate.
    fn metrics_due(&mut self, now: Instant) -> Vec<ReplyTo> {
        let mut due = Vec::new();
        for s in &mut self.list {
            if s.subscription.topics.contains(Topic::Metrics) && now >= s.next_metrics {
                let hz = f64::from(s.subscription.metrics_hz).max(0.01);
                s.next_metrics = now + Duration::from_secs_f64(1.0 / hz);
                due.push(s.to);
            }
        }
        due
    }

    /// Subscribers now.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether nobody subscribes.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
}

/// Peak and RMS of one channel since the last `levels` push.
#[derive(Debug, Clone, Copy, Default)]
struct LevelSums {
    peak: f32,
    sum_squares: f64,
}

/// The analysis of the sound played: levels since the last push, and the last
/// [`WINDOW_FRAMES`] frames for `scope` and `spectrum`.
pub struct Analysis {
    /// The latest frames, interleaved stereo, oldest first once full (a circular buffer
    /// at `next`).
    window: Vec<f32>,
    next: usize,
    filled: usize,
    levels: [LevelSums; 2],
    level_frames: u64,
    fft: Arc<dyn rustfft::Fft<f32>>,
    spectrum_buffer: Vec<Complex<f32>>,
    scratch: Vec<Complex<f32>>,
    hann: Vec<f32>,
}

impl Default for Analysis {
    fn default() -> Analysis {
        let fft = rustfft::FftPlanner::new().plan_fft_forward(WINDOW_FRAMES);
        let scratch = vec![Complex::default(); fft.get_inplace_scratch_len()];
        Analysis {
            window: vec![0.0; 2 * WINDOW_FRAMES],
            next: 0,
            filled: 0,
            levels: [LevelSums::default(); 2],
            level_frames: 0,
            fft,
            spectrum_buffer: vec![Complex::default(); WINDOW_FRAMES],
            scratch,
            hann: (0..WINDOW_FRAMES)
                .map(|i| {
                    let phase = std::f32::consts::TAU * i as f32 / WINDOW_FRAMES as f32;
                    0.5 - 0.5 * phase.cos()
                })
                .collect(),
        }
    }
}

impl Analysis {
    /// Takes in interleaved stereo samples just played.
    pub fn add(&mut self, interleaved: &[f32]) {
        for frame in interleaved.chunks_exact(2) {
            for (channel, &sample) in frame.iter().enumerate() {
                let sums = &mut self.levels[channel];
                sums.peak = sums.peak.max(sample.abs());
                sums.sum_squares += f64::from(sample) * f64::from(sample);
                self.window[2 * self.next + channel] = sample;
            }
            self.next = (self.next + 1) % WINDOW_FRAMES;
            self.filled = (self.filled + 1).min(WINDOW_FRAMES);
            self.level_frames += 1;
        }
    }

    /// Peak and RMS of each channel (linear) since the last call, or `None` if nothing
    /// was played since.
    pub fn take_levels(&mut self) -> Option<[(f32, f32); 2]> {
        if self.level_frames == 0 {
            return None;
        }
        let frames = self.level_frames as f64;
        let levels = self
            .levels
            .map(|sums| (sums.peak, (sums.sum_squares / frames).sqrt() as f32));
        self.levels = [LevelSums::default(); 2];
        self.level_frames = 0;
        Some(levels)
    }

    /// The window's frames, oldest first, interleaved stereo (zeros before anything played).
    fn frames(&self) -> impl Iterator<Item = (f32, f32)> + '_ {
        (0..WINDOW_FRAMES).map(move |i| {
            let at = (self.next + i) % WINDOW_FRAMES;
            (self.window[2 * at], self.window[2 * at + 1])
        })
    }

    /// `scope`: one frame in [`SCOPE_STEP`] of the latest [`SCOPE_FRAMES`], interleaved
    /// stereo.
    pub fn scope(&self) -> Vec<f32> {
        self.frames()
            .skip(WINDOW_FRAMES - SCOPE_FRAMES)
            .step_by(SCOPE_STEP)
            .flat_map(|(l, r)| [l, r])
            .collect()
    }

    /// `spectrum`: the level of the window's mono mix in each of [`SPECTRUM_BANDS`] bands
    /// from [`SPECTRUM_LOW_HZ`] to `high` (see [`spectrum_high_hz`]), in dBFS: the loudest
    /// FFT bin in the band (Hann window), scaled so a full-scale sine reads 0 dB; a band
    /// narrower than a bin reads the bin nearest its centre.
    pub fn spectrum(&mut self, sample_rate: u32) -> Vec<f32> {
        let mono: Vec<f32> = self.frames().map(|(l, r)| 0.5 * (l + r)).collect();
        for ((bin, sample), window) in self.spectrum_buffer.iter_mut().zip(mono).zip(&self.hann) {
            *bin = Complex::new(sample * window, 0.0);
        }
        self.fft
            .process_with_scratch(&mut self.spectrum_buffer, &mut self.scratch);
        // Hann's coherent gain is 1/2; a real sine's amplitude splits over ± frequencies.
        let scale = 4.0 / WINDOW_FRAMES as f32;
        let amplitudes: Vec<f32> = self
            .spectrum_buffer
            .iter()
            .take(WINDOW_FRAMES / 2 + 1)
            .map(|c| c.norm() * scale)
            .collect();
        band_levels(&amplitudes, sample_rate)
    }
}

/// The top of the spectrum bands at `sample_rate`: [`SPECTRUM_HIGH_HZ`] or just below the
/// Nyquist frequency.
pub fn spectrum_high_hz(sample_rate: u32) -> f32 {
    SPECTRUM_HIGH_HZ.min(sample_rate as f32 * 0.5 * 0.95)
}

/// Edges of band `band` in Hz: equal ratios from [`SPECTRUM_LOW_HZ`] to `high`.
pub fn band_edges(band: usize, high: f32) -> (f32, f32) {
    let ratio = high / SPECTRUM_LOW_HZ;
    let edge = |i: usize| SPECTRUM_LOW_HZ * ratio.powf(i as f32 / SPECTRUM_BANDS as f32);
    (edge(band), edge(band + 1))
}

/// The level in dBFS of each band, from bin amplitudes (`amplitudes[k]` at `k * rate / N`).
fn band_levels(amplitudes: &[f32], sample_rate: u32) -> Vec<f32> {
    let bin_hz = sample_rate as f32 / WINDOW_FRAMES as f32;
    let high = spectrum_high_hz(sample_rate);
    (0..SPECTRUM_BANDS)
        .map(|band| {
            let (low, top) = band_edges(band, high);
            let first = (low / bin_hz).ceil() as usize;
            let last = (top / bin_hz).ceil() as usize; // exclusive
            let loudest = if first < last {
                amplitudes
                    .get(first..last.min(amplitudes.len()))
                    .map_or(0.0, |bins| bins.iter().copied().fold(0.0, f32::max))
            } else {
                let centre = ((low * top).sqrt() / bin_hz).round() as usize;
                amplitudes.get(centre).copied().unwrap_or(0.0)
            };
            if loudest > 0.0 {
                (20.0 * loudest.log10()).max(SPECTRUM_FLOOR_DB)
            } else {
                SPECTRUM_FLOOR_DB
            }
        })
        .collect()
}

/// The notify thread's state: the subscribers, the analysis, and when each periodic topic
/// is due next.
pub struct Notifier {
    shared: Arc<OutputShared>,
    replier: Arc<Replier>,
    reporter: Arc<Mutex<Reporter>>,
    events: Receiver<NotifyEvent>,
    stop: Arc<AtomicBool>,
    subscribers: Subscribers,
    analysis: Analysis,
    /// Words taken from the monitor ring (stamped blocks; reused).
    taken: Vec<u32>,
    /// The taken blocks' samples, for the analysis (reused).
    samples: Vec<f32>,
    /// `audio` samples not pushed yet (at most [`AUDIO_PUSH_FRAMES`], contiguous; reused).
    audio_pending: Vec<f32>,
    /// The frame of `audio_pending`'s first sample.
    audio_frame: u64,
    next_levels: Instant,
    next_spectrum: Instant,
    /// Whether the audio topics were wanted at the last tick (to start afresh when they
    /// are wanted again, not from sound minutes old).
    audio_was_wanted: bool,
    /// The clock's (bar, sixteenth) last pushed to `seq` (`None`: stopped).
    last_step: Option<Option<(u64, u64)>>,
}

impl Notifier {
    /// Starts the notify thread; returns the sender every source uses and the thread.
    /// `reporter` is shared with the OSC thread (a report takes the workers' render times
    /// since the last one, so there is one reporter).
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(
        shared: &Arc<OutputShared>,
        replier: &Arc<Replier>,
        reporter: Arc<Mutex<Reporter>>,
        stop: &Arc<AtomicBool>,
    ) -> std::io::Result<(NotifySender, std::thread::JoinHandle<()>)> {
        let (events_tx, events) = mpsc::sync_channel(EVENT_QUEUE);
        let now = Instant::now();
        let notifier = Notifier {
            shared: Arc::clone(shared),
            replier: Arc::clone(replier),
            reporter,
            events,
            stop: Arc::clone(stop),
            subscribers: Subscribers::new(replier.exposure().clone()),
            analysis: Analysis::default(),
            taken: Vec::with_capacity(shared.monitor.capacity()),
            samples: Vec::with_capacity(shared.monitor.capacity()),
            audio_pending: Vec::with_capacity(2 * AUDIO_PUSH_FRAMES),
            audio_frame: 0,
            next_levels: now,
            next_spectrum: now,
            audio_was_wanted: false,
            last_step: None,
        };
        let thread = std::thread::Builder::new()
            .name("chronus-notify".into())
            .stack_size(chronus_realtime::THREAD_STACK)
            .spawn(move || notifier.run())?;
        let sender = NotifySender {
            events: events_tx,
            shared: Arc::clone(shared),
        };
        Ok((sender, thread))
    }

    /// Handles events as they come and ticks every [`TICK`], until the stop (or every
    /// sender is gone). A panic is caught per event or tick (see the module comment).
    pub fn run(mut self) {
        let mut next_tick = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            // A subscription to a periodic topic brings the next tick forward at once.
            next_tick = next_tick.min(Instant::now() + self.tick_interval());
            let wait = next_tick.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(wait) {
                Ok(event) => self.guarded(|this| this.handle(event)),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let now = Instant::now();
            if now >= next_tick {
                self.guarded(|this| this.tick(now));
                next_tick = (next_tick + self.tick_interval()).max(now);
            }
        }
    }

    /// [`TICK`] while a periodic topic is wanted, else [`IDLE_TICK`].
    fn tick_interval(&self) -> Duration {
        if self.subscribers.wanted().iter().any(Topic::is_periodic) {
            TICK
        } else {
            IDLE_TICK
        }
    }

    /// Runs `step`; a panic inside is logged, counted in `notify_panics`, and the analysis
    /// starts afresh (the subscribers, one `retain` or `push` from consistent, stay).
    fn guarded(&mut self, step: impl FnOnce(&mut Notifier)) {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| step(self)));
        let Err(panic) = result else {
            return;
        };
        Metrics::bump(&self.shared.metrics.notify_panics);
        let what = log_limit::panic_message(&*panic);
        if log_limit::PANICS.allow() {
            tracing::error!(
                "notify thread panicked ({}); counted in notify_panics, pushing on",
                escaped(what)
            );
        }
        self.analysis = Analysis::default();
    }

    /// Handles one event: a subscription change (answered), or a push of an event topic.
    fn handle(&mut self, event: NotifyEvent) {
        match event {
            NotifyEvent::Subscribe { from, subscription } => {
                // Slots of closed connections and lapsed leases are free before a newcomer
                // is counted against the limit.
                let replier = &self.replier;
                self.subscribers
                    .expire(Instant::now(), |id| replier.is_connected(id));
                let answer = match self
                    .subscribers
                    .subscribe(from, subscription, Instant::now())
                {
                    Ok(()) => {
                        if log_limit::SUBSCRIPTIONS.allow() {
                            let topics: Vec<&str> =
                                subscription.topics.iter().map(Topic::name).collect();
                            tracing::info!("{from} subscribed to {}", topics.join(", "));
                        }
                        reply::done(NOTIFY)
                    }
                    Err(reason) => {
                        if log_limit::SUBSCRIPTIONS.allow() {
                            tracing::info!("refused /notify from {from}: {reason}");
                        }
                        reply::fail(NOTIFY, &reason)
                    }
                };
                self.publish_wanted();
                // After the table changed: pushes come after the `/done`.
                self.replier.send(&answer, from);
            }
            NotifyEvent::Unsubscribe { from } => {
                if self.subscribers.unsubscribe(from) && log_limit::SUBSCRIPTIONS.allow() {
                    tracing::info!("{from} unsubscribed");
                }
                self.publish_wanted();
                self.replier.send(&reply::done(NOTIFY), from);
            }
            NotifyEvent::Failover { slot, frame, cause } => {
                let push = reply::push_failover(slot as i32, frame, cause);
                self.push(Topic::Failover, &push);
            }
            NotifyEvent::Worker { slot, role, pid } => {
                self.push(Topic::Worker, &reply::push_worker(slot as i32, role, pid));
            }
            NotifyEvent::Param {
                address,
                value,
                seconds,
            } => self.push(Topic::Params, &reply::push_params(&address, value, seconds)),
            NotifyEvent::Patch { version, frame } => {
                self.push(Topic::Patch, &reply::push_patch(version, frame));
            }
            NotifyEvent::DebugPanic { reply_to } => {
                self.replier
                    .send(&reply::done(chronus_protocol::table::DEBUG_PANIC), reply_to);
                panic!("/debug/panic 4: a panic injected in the notify thread");
            }
        }
    }

    /// Sends `bytes` to every subscriber of `topic`.
    fn push(&self, topic: Topic, bytes: &[u8]) {
        for to in self.subscribers.to(topic) {
            self.replier.send(bytes, to);
            Metrics::bump(&self.shared.metrics.notify_pushes);
        }
    }

    /// Says which topics are wanted (for the output and the OSC thread) and how many
    /// subscribe (for `/metrics`).
    fn publish_wanted(&self) {
        let wanted = self.subscribers.wanted();
        self.shared
            .notify_topics
            .store(wanted.bits(), Ordering::Relaxed);
        self.shared
            .metrics
            .notify_subscribers
            .store(self.subscribers.len() as u64, Ordering::Relaxed);
    }

    /// Expires subscriptions, takes in the sound played, and pushes the periodic topics
    /// that are due.
    fn tick(&mut self, now: Instant) {
        let replier = &self.replier;
        let gone = self.subscribers.expire(now, |id| replier.hold_open(id));
        if gone > 0 {
            if log_limit::SUBSCRIPTIONS.allow() {
                tracing::info!("{gone} /notify subscription(s) lapsed or lost their connection");
            }
            self.publish_wanted();
        }
        let wanted = self.subscribers.wanted();

        // Always drained, so a subscriber arriving later starts from fresh sound.
        self.shared.monitor.take_words_into(&mut self.taken);
        let audio = [Topic::Levels, Topic::Scope, Topic::Spectrum]
            .into_iter()
            .any(|t| wanted.contains(t));
        if audio && !self.audio_was_wanted {
            self.analysis = Analysis::default();
            self.next_levels = now;
            self.next_spectrum = now;
        }
        self.audio_was_wanted = audio;
        if audio {
            self.samples.clear();
            for (_, block) in stamped_blocks(&self.taken) {
                self.samples
                    .extend(block.iter().map(|&w| f32::from_bits(w)));
            }
            self.analysis.add(&self.samples);
        }
        if wanted.contains(Topic::Audio) {
            self.push_audio();
        } else {
            self.audio_pending.clear();
        }

        if audio && now >= self.next_levels {
            self.next_levels = (self.next_levels + AUDIO_INTERVAL).max(now);
            if wanted.contains(Topic::Levels) {
                if let Some(levels) = self.analysis.take_levels() {
                    self.push(Topic::Levels, &reply::push_levels(&levels));
                }
            }
            if wanted.contains(Topic::Scope) {
                let scope = reply::push_scope(SCOPE_STEP as i32, &self.analysis.scope());
                self.push(Topic::Scope, &scope);
            }
        }
        if wanted.contains(Topic::Spectrum) && now >= self.next_spectrum {
            self.next_spectrum = (self.next_spectrum + SPECTRUM_INTERVAL).max(now);
            let rate = self.shared.sample_rate;
            let bands = self.analysis.spectrum(rate);
            let push = reply::push_spectrum(SPECTRUM_LOW_HZ, spectrum_high_hz(rate), &bands);
            self.push(Topic::Spectrum, &push);
        }
        if wanted.contains(Topic::Seq) {
            self.push_step();
        } else {
            self.last_step = None;
        }
        let due = self.subscribers.metrics_due(now);
        if !due.is_empty() {
            let report = self
                .reporter
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .build();
            let push = reply::push_metrics(&report.to_pairs());
            for to in due {
                self.replier.send(&push, to);
                Metrics::bump(&self.shared.metrics.notify_pushes);
            }
        }
    }
}

impl Notifier {
    /// Pushes the blocks just taken to the `audio` subscribers: runs of contiguous frames,
    /// up to [`AUDIO_PUSH_FRAMES`] a push, the last partial one at the end of the tick (so
    /// the stream lags the output by at most a tick, not a push's length). A block not
    /// following the one before (lost to a full ring) starts a new push at its own frame.
    fn push_audio(&mut self) {
        let taken = std::mem::take(&mut self.taken);
        for (frame, block) in stamped_blocks(&taken) {
            let pending_frames = (self.audio_pending.len() / 2) as u64;
            if !self.audio_pending.is_empty() && self.audio_frame + pending_frames != frame {
                self.flush_audio();
            }
            if self.audio_pending.is_empty() {
                self.audio_frame = frame;
            }
            for pair in block.chunks_exact(2) {
                self.audio_pending
                    .extend(pair.iter().map(|&w| f32::from_bits(w)));
                if self.audio_pending.len() >= 2 * AUDIO_PUSH_FRAMES {
                    // Moves `audio_frame` on past what it sent.
                    self.flush_audio();
                }
            }
        }
        self.taken = taken;
        self.flush_audio();
    }

    /// Sends `audio_pending` (if any) as one `audio` push and empties it.
    fn flush_audio(&mut self) {
        if self.audio_pending.is_empty() {
            return;
        }
        let push = reply::push_audio(self.audio_frame, &self.audio_pending);
        self.audio_frame += (self.audio_pending.len() / 2) as u64;
        self.audio_pending.clear();
        self.push(Topic::Audio, &push);
    }

    /// Pushes `seq` when the clock reached another sixteenth since the last push (or
    /// stopped, or started). Only a joined, live worker is listened to (a pair restored
    /// after a double fault says where it is catching up, behind the music, until it
    /// joins), so each step is pushed once.
    fn push_step(&mut self) {
        let Some(counts) = self.shared.joined_engine_counts() else {
            return;
        };
        if counts.clock_millibpm == 0 {
            return;
        }
        let running = counts.clock_millibeats != WorkerCounts::CLOCK_STOPPED;
        let beats = if running {
            counts.clock_millibeats as f64 / 1000.0
        } else {
            0.0
        };
        // Sixteenths since bar 1, from the exact thousandths of a beat.
        let sixteenths = running.then(|| counts.clock_millibeats * 4 / 1000);
        let step = sixteenths.map(|s| (s / 16 + 1, s % 16));
        if self.last_step == Some(step) {
            return;
        }
        self.last_step = Some(step);
        let (bar, sixteenth) = step.unwrap_or((1, 0));
        let bpm = counts.clock_millibpm as f64 / 1000.0;
        self.push(
            Topic::Seq,
            &reply::push_seq(bar, sixteenth, beats, bpm, running),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    fn udp(port: u16) -> ReplyTo {
        ReplyTo::Udp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
    }

    fn events() -> Subscription {
        chronus_protocol::table::parse_topics(&[]).unwrap()
    }

    /// No real-time thread involved: the table alone, with its clock injected.
    #[test]
    fn the_table_holds_32_subscribers_and_refuses_the_33rd() {
        let mut table = Subscribers::default();
        let now = Instant::now();
        for port in 0..MAX_SUBSCRIBERS as u16 {
            table.subscribe(udp(1000 + port), events(), now).unwrap();
        }
        let refused = table.subscribe(ReplyTo::Tcp(7), events(), now).unwrap_err();
        assert!(refused.contains("32 subscribers"), "{refused}");
        // Renewing one already there is not a 33rd.
        table.subscribe(udp(1000), events(), now).unwrap();
        assert_eq!(table.len(), MAX_SUBSCRIBERS);
        assert!(table.unsubscribe(udp(1001)));
        assert!(!table.unsubscribe(udp(1001)));
        table.subscribe(ReplyTo::Tcp(7), events(), now).unwrap();
        assert_eq!(table.len(), MAX_SUBSCRIBERS);
    }

    /// No real-time thread involved: UDP leases with an injected clock.
    #[test]
    fn a_udp_subscription_lapses_after_60_s_unless_renewed_and_tcp_ends_with_its_connection() {
        let mut table = Subscribers::default();
        let t0 = Instant::now();
        table.subscribe(udp(1), events(), t0).unwrap();
        table.subscribe(udp(2), events(), t0).unwrap();
        table.subscribe(ReplyTo::Tcp(3), events(), t0).unwrap();
        // Renewed at 50 s (with other topics: replaced).
        let levels = chronus_protocol::table::parse_topics(&["levels".to_string()]).unwrap();
        table
            .subscribe(udp(2), levels, t0 + Duration::from_secs(50))
            .unwrap();
        assert_eq!(table.expire(t0 + Duration::from_secs(59), |_| true), 0);
        assert_eq!(table.expire(t0 + Duration::from_secs(61), |_| true), 1);
        assert_eq!(table.to(Topic::Levels).collect::<Vec<_>>(), vec![udp(2)]);
        assert_eq!(
            table.to(Topic::Failover).collect::<Vec<_>>(),
            vec![ReplyTo::Tcp(3)]
        );
        // TCP never lapses, but goes with its connection.
        assert_eq!(table.expire(t0 + Duration::from_secs(3600), |_| true), 1);
        assert_eq!(table.to(Topic::Failover).count(), 1);
        assert_eq!(table.expire(t0 + Duration::from_secs(3600), |_| false), 1);
        assert!(table.is_empty());
        assert_eq!(table.wanted(), Topics::NONE);
    }

    /// No real-time thread involved.
    #[test]
    fn audio_goes_over_tcp_only_and_to_four_subscribers_at_most() {
        let mut table = Subscribers::default();
        let now = Instant::now();
        let audio = chronus_protocol::table::parse_topics(&["audio".to_string()]).unwrap();
        let reason = table.subscribe(udp(1), audio, now).unwrap_err();
        assert!(reason.contains("TCP only"), "{reason}");
        for id in 0..MAX_AUDIO_SUBSCRIBERS as u64 {
            table.subscribe(ReplyTo::Tcp(id), audio, now).unwrap();
        }
        let reason = table.subscribe(ReplyTo::Tcp(99), audio, now).unwrap_err();
        assert!(reason.contains("4 audio subscribers"), "{reason}");
        // Renewing one of the four is not a fifth; other topics are still open to all.
        table.subscribe(ReplyTo::Tcp(0), audio, now).unwrap();
        table.subscribe(ReplyTo::Tcp(99), events(), now).unwrap();
        table.subscribe(udp(1), events(), now).unwrap();
        assert_eq!(table.to(Topic::Audio).count(), MAX_AUDIO_SUBSCRIBERS);
    }

    /// No real-time thread involved.
    #[test]
    fn udp_pushes_go_to_loopback_only() {
        let mut table = Subscribers::default();
        let remote = ReplyTo::Udp("192.0.2.7:9000".parse().unwrap());
        let reason = table
            .subscribe(remote, events(), Instant::now())
            .unwrap_err();
        assert!(reason.contains("TCP"), "{reason}");
        let allowed = Exposure {
            allow: vec!["192.0.2.0/24".parse().unwrap()],
            ..Exposure::default()
        };
        let mut table = Subscribers::new(allowed);
        table.subscribe(remote, events(), Instant::now()).unwrap();
    }

    /// No real-time thread involved.
    #[test]
    fn metrics_come_at_each_subscribers_own_rate() {
        let mut table = Subscribers::default();
        let t0 = Instant::now();
        let fast = chronus_protocol::table::parse_topics(&["metrics=10".to_string()]).unwrap();
        let slow = chronus_protocol::table::parse_topics(&["metrics".to_string()]).unwrap();
        table.subscribe(udp(1), fast, t0).unwrap();
        table.subscribe(udp(2), slow, t0).unwrap();
        let mut counts = [0, 0];
        for ms in (0..1000).step_by(10) {
            for to in table.metrics_due(t0 + Duration::from_millis(ms)) {
                counts[usize::from(to != udp(1))] += 1;
            }
        }
        assert_eq!(counts, [10, 2]);
    }

    /// No real-time thread involved: the levels of a known signal.
    #[test]
    fn levels_are_the_peak_and_rms_of_each_channel() {
        let mut analysis = Analysis::default();
        assert_eq!(analysis.take_levels(), None);
        // Left: a square wave of ±0.5 (RMS 0.5); right: a full-period sine of peak 0.8.
        let frames = 4800;
        let signal: Vec<f32> = (0..frames)
            .flat_map(|i| {
                let left = if i % 2 == 0 { 0.5 } else { -0.5 };
                let right = 0.8 * (std::f32::consts::TAU * i as f32 / 480.0).sin();
                [left, right]
            })
            .collect();
        analysis.add(&signal);
        let [(peak_l, rms_l), (peak_r, rms_r)] = analysis.take_levels().unwrap();
        assert_eq!(peak_l, 0.5);
        assert!((rms_l - 0.5).abs() < 1e-6, "{rms_l}");
        assert!((peak_r - 0.8).abs() < 1e-3, "{peak_r}");
        assert!((rms_r - 0.8 / 2f32.sqrt()).abs() < 1e-3, "{rms_r}");
        // Taken: the next levels start afresh.
        assert_eq!(analysis.take_levels(), None);
    }

    /// No real-time thread involved.
    #[test]
    fn scope_sends_every_eighth_frame_of_the_latest_2048() {
        let mut analysis = Analysis::default();
        // More than the window: frame i is (i, -i); the scope shows the latest 2,048.
        let total = WINDOW_FRAMES + 100;
        let signal: Vec<f32> = (0..total).flat_map(|i| [i as f32, -(i as f32)]).collect();
        analysis.add(&signal);
        let scope = analysis.scope();
        assert_eq!(scope.len(), 2 * SCOPE_FRAMES / SCOPE_STEP);
        let first = (total - SCOPE_FRAMES) as f32;
        assert_eq!(&scope[..4], &[first, -first, first + 8.0, -(first + 8.0)]);
        let last = first + (SCOPE_FRAMES - SCOPE_STEP) as f32;
        assert_eq!(&scope[scope.len() - 2..], &[last, -last]);
    }

    /// No real-time thread involved: a sine's loudest band is the band holding its
    /// frequency, at about 0 dBFS for full scale (frequencies more than a bin from a band
    /// edge: closer, the loudest bin may be the neighbour band's).
    #[test]
    fn a_sine_lands_in_the_band_holding_its_frequency() {
        let rate = 48_000;
        for freq in [110.0f32, 440.0, 1000.0, 5000.0, 15_000.0] {
            let mut analysis = Analysis::default();
            let signal: Vec<f32> = (0..WINDOW_FRAMES)
                .flat_map(|i| {
                    let v = (std::f32::consts::TAU * freq * i as f32 / rate as f32).sin();
                    [v, v]
                })
                .collect();
            analysis.add(&signal);
            let bands = analysis.spectrum(rate);
            assert_eq!(bands.len(), SPECTRUM_BANDS);
            let loudest = (0..SPECTRUM_BANDS)
                .max_by(|&a, &b| bands[a].total_cmp(&bands[b]))
                .unwrap();
            let (low, high) = band_edges(loudest, spectrum_high_hz(rate));
            assert!(
                (low..high).contains(&freq),
                "{freq} Hz: loudest band {loudest} is {low}..{high} Hz ({bands:?})"
            );
            // Between bins, Hann's scalloping loses up to 1.4 dB.
            assert!(bands[loudest] > -2.0 && bands[loudest] < 0.5, "{bands:?}");
        }
        let silent = Analysis::default().spectrum(rate);
        assert!(silent.iter().all(|&db| db == SPECTRUM_FLOOR_DB));
    }
}
