//! What the status screen knows, fed by `/notify` pushes: a pure state machine.
//!
//! [`Model::apply`] takes one `/chronus/...` push (or the `/metrics` answer at connect)
//! and the time it arrived; nothing here reads a clock, a socket or the terminal, so every
//! rule (the failover timeline, peak hold and its decay, commands per second) is tested
//! with made-up pushes and times. The drawing (`draw.rs`) only reads a model.

use std::collections::{BTreeMap, VecDeque};

use chronus_protocol::MetricValue;
use rosc::{OscMessage, OscType};

/// How many failovers the timeline keeps (the screen shows as many as fit, newest first).
pub const TIMELINE_LEN: usize = 64;
/// The floor of the level meters and the spectrum, in dBFS: quieter is shown as this.
pub const FLOOR_DB: f32 = -90.0;
/// How long a meter's peak hold stays where it is before it falls, in seconds.
pub const HOLD_SECONDS: f64 = 1.5;
/// How fast a peak hold falls once it is let go, in dB per second.
pub const HOLD_FALL_DB_PER_SECOND: f64 = 20.0;

/// When a push arrived: `mono` seconds on a monotonic clock (for rates and decays) and
/// `unix` seconds of the wall clock (for the timeline's times of day, in UTC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stamp {
    /// Seconds on a monotonic clock (any origin).
    pub mono: f64,
    /// Seconds since the Unix epoch.
    pub unix: f64,
}

/// Whether the screen is talking to its server.
#[derive(Debug, Clone, PartialEq)]
pub enum Link {
    /// No connection yet (the first try is under way).
    Connecting,
    /// Connected and subscribed.
    Connected,
    /// The server went away (or never answered); retried every second.
    Lost {
        /// Why, as the client said it.
        reason: String,
    },
}

/// One worker slot as the last `/chronus/worker` push or metrics said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Worker {
    /// `empty`, `starting`, `joining`, `standby`, `active` or `dead`.
    pub role: String,
    /// Its process id (0: none).
    pub pid: u32,
    /// Render time of its last block, in % of the block period (from metrics).
    pub load_percent: Option<f64>,
}

/// One `/chronus/failover` push: the output switched to `slot` because of `cause`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    /// When it arrived, seconds since the Unix epoch.
    pub unix: f64,
    /// The slot the output reads now.
    pub slot: i32,
    /// The first frame served from it.
    pub frame: i64,
    /// `worker died`, `missed deadline`, …
    pub cause: String,
}

/// A level meter of one channel: the latest peak and RMS, and the peak hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meter {
    /// Peak of the audio since the previous push, in dBFS.
    pub peak_db: f32,
    /// RMS of the same audio, in dBFS.
    pub rms_db: f32,
    /// The held peak, in dBFS, as it was set at `held_at`.
    hold_db: f32,
    /// When the hold was last set (monotonic seconds).
    held_at: f64,
}

impl Default for Meter {
    fn default() -> Meter {
        Meter {
            peak_db: FLOOR_DB,
            rms_db: FLOOR_DB,
            hold_db: FLOOR_DB,
            held_at: 0.0,
        }
    }
}

impl Meter {
    /// The peak hold at `now`: where it was set for [`HOLD_SECONDS`], then falling at
    /// [`HOLD_FALL_DB_PER_SECOND`], never under the floor.
    pub fn hold_db(&self, now: f64) -> f32 {
        let falling = (now - self.held_at - HOLD_SECONDS).max(0.0);
        (self.hold_db as f64 - falling * HOLD_FALL_DB_PER_SECOND).max(FLOOR_DB as f64) as f32
    }

    /// Takes a new peak and RMS (linear) at `now`: a peak at or over the hold (as it has
    /// fallen by now) sets it afresh.
    fn update(&mut self, peak: f32, rms: f32, now: f64) {
        self.peak_db = to_db(peak);
        self.rms_db = to_db(rms);
        if self.peak_db >= self.hold_db(now) {
            self.hold_db = self.peak_db;
            self.held_at = now;
        }
    }
}

/// Where the sequencer's clock is (`/chronus/seq`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Seq {
    /// Bar, from 1.
    pub bar: i32,
    /// Sixteenth of the bar, 0 to 15.
    pub sixteenth: i32,
    /// Tempo, beats per minute.
    pub bpm: f32,
    /// Whether the clock runs.
    pub running: bool,
}

/// The 32 bands of the latest `/chronus/spectrum`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spectrum {
    /// The lowest band's lower edge, Hz.
    pub low_hz: f32,
    /// The highest band's upper edge, Hz.
    pub high_hz: f32,
    /// Band levels, dBFS, low to high.
    pub bands_db: Vec<f32>,
}

/// Everything the status screen shows, as the pushes have told it.
#[derive(Debug, Clone)]
pub struct Model {
    /// The server's address, as given on the command line.
    pub server: String,
    /// Whether we are connected.
    pub link: Link,
    /// Whether a connection was ever made (before it, a failure is "no server yet").
    pub ever_connected: bool,
    /// The worker slots, by slot number.
    pub workers: BTreeMap<i32, Worker>,
    /// Failovers, newest first (at most [`TIMELINE_LEN`]).
    pub failovers: VecDeque<Failover>,
    /// The latest value of every numeric metric.
    pub metrics: BTreeMap<String, f64>,
    /// Commands received per second, between the last two metrics pushes.
    pub commands_per_second: Option<f64>,
    /// The last (monotonic time, `commands_received`) seen, for the rate.
    commands_seen: Option<(f64, f64)>,
    /// Level meters, left then right.
    pub meters: [Meter; 2],
    /// The latest scope window: (left, right) per frame, oldest first.
    pub scope: Vec<(f32, f32)>,
    /// The latest spectrum.
    pub spectrum: Spectrum,
    /// The sequencer's clock, once a push told it.
    pub seq: Option<Seq>,
    /// Pushes that did not fit their layout (counted, shown, otherwise ignored).
    pub malformed: u64,
    /// The monotonic time of the latest push or tick (what decays are drawn at).
    pub now: f64,
}

/// Linear amplitude to dBFS, floored at [`FLOOR_DB`].
pub fn to_db(linear: f32) -> f32 {
    if linear > 0.0 && linear.is_finite() {
        (20.0 * linear.log10()).max(FLOOR_DB)
    } else {
        FLOOR_DB
    }
}

/// Any OSC number as f64 (servers send counters as doubles, clients may send ints).
fn number(arg: &OscType) -> Option<f64> {
    match arg {
        OscType::Int(v) => Some(f64::from(*v)),
        OscType::Long(v) => Some(*v as f64),
        OscType::Float(v) => Some(f64::from(*v)),
        OscType::Double(v) => Some(*v),
        _ => None,
    }
}

fn text(arg: &OscType) -> Option<&str> {
    match arg {
        OscType::String(s) => Some(s),
        _ => None,
    }
}

impl Model {
    /// A model with nothing heard yet, for the server at `server`.
    pub fn new(server: impl Into<String>) -> Model {
        Model {
            server: server.into(),
            link: Link::Connecting,
            ever_connected: false,
            workers: BTreeMap::new(),
            failovers: VecDeque::new(),
            metrics: BTreeMap::new(),
            commands_per_second: None,
            commands_seen: None,
            meters: [Meter::default(); 2],
            scope: Vec::new(),
            spectrum: Spectrum::default(),
            seq: None,
            malformed: 0,
            now: 0.0,
        }
    }

    /// Moves the model's clock to `mono` (the peak holds fall with it) without a push.
    pub fn tick(&mut self, mono: f64) {
        self.now = self.now.max(mono);
    }

    /// The server answered: connected (and subscribed).
    pub fn connected(&mut self) {
        self.link = Link::Connected;
        // A new connection may be another server: none of the old one's figures
        // (latency, workers, sequencer) stay; the `/metrics` answer fills them in again.
        if self.ever_connected {
            self.metrics.clear();
            self.workers.clear();
            self.seq = None;
        }
        self.ever_connected = true;
    }

    /// The connection broke or could not be made. The rate's baseline goes (a restarted
    /// server counts from zero) and the live views go quiet; the timeline stays, since it
    /// is history.
    pub fn lost(&mut self, reason: impl Into<String>) {
        self.link = Link::Lost {
            reason: reason.into(),
        };
        self.commands_seen = None;
        self.commands_per_second = None;
        self.meters = [Meter::default(); 2];
        self.scope.clear();
        self.spectrum.bands_db.clear();
    }

    /// Takes the `/metrics` answer (name/value pairs, roles as text), as at connect.
    pub fn apply_metrics(&mut self, pairs: &[(String, MetricValue)], at: Stamp) {
        self.tick(at.mono);
        for (name, value) in pairs {
            match value {
                MetricValue::Number(v) => self.set_metric(name, *v),
                MetricValue::Text(t) => self.set_text_metric(name, t),
            }
        }
        self.count_commands(at.mono);
    }

    /// Takes one push. Unknown addresses are ignored (a newer server may push more);
    /// a known address with arguments that do not fit is counted in `malformed`.
    pub fn apply(&mut self, push: &OscMessage, at: Stamp) {
        self.tick(at.mono);
        let ok = match push.addr.as_str() {
            chronus_protocol::reply::PUSH_FAILOVER => self.on_failover(&push.args, at),
            chronus_protocol::reply::PUSH_WORKER => self.on_worker(&push.args),
            chronus_protocol::reply::PUSH_METRICS => self.on_metrics(&push.args, at),
            chronus_protocol::reply::PUSH_LEVELS => self.on_levels(&push.args, at),
            chronus_protocol::reply::PUSH_SCOPE => self.on_scope(&push.args),
            chronus_protocol::reply::PUSH_SPECTRUM => self.on_spectrum(&push.args),
            chronus_protocol::reply::PUSH_SEQ => self.on_seq(&push.args),
            _ => true,
        };
        if !ok {
            self.malformed += 1;
        }
    }

    fn on_failover(&mut self, args: &[OscType], at: Stamp) -> bool {
        let (Some(slot), Some(frame), Some(cause)) = (
            args.first().and_then(number),
            args.get(1).and_then(number),
            args.get(2).and_then(text),
        ) else {
            return false;
        };
        self.failovers.push_front(Failover {
            unix: at.unix,
            slot: slot as i32,
            frame: frame as i64,
            cause: cause.to_string(),
        });
        self.failovers.truncate(TIMELINE_LEN);
        true
    }

    fn on_worker(&mut self, args: &[OscType]) -> bool {
        let (Some(slot), Some(role), Some(pid)) = (
            args.first().and_then(number),
            args.get(1).and_then(text),
            args.get(2).and_then(number),
        ) else {
            return false;
        };
        let worker = self.workers.entry(slot as i32).or_default();
        worker.role = role.to_string();
        worker.pid = pid.max(0.0) as u32;
        true
    }

    fn on_metrics(&mut self, args: &[OscType], at: Stamp) -> bool {
        let mut ok = args.len().is_multiple_of(2);
        for pair in args.chunks(2) {
            let [name, value] = pair else { break };
            let Some(name) = text(name) else {
                ok = false;
                continue;
            };
            match (number(value), text(value)) {
                (Some(v), _) => self.set_metric(name, v),
                (None, Some(t)) => self.set_text_metric(name, t),
                _ => ok = false,
            }
        }
        self.count_commands(at.mono);
        ok
    }

    fn set_metric(&mut self, name: &str, value: f64) {
        if let Some((slot, field)) = slot_field(name) {
            let worker = self.workers.entry(slot).or_default();
            match field {
                "pid" => worker.pid = value.max(0.0) as u32,
                "load_percent" => worker.load_percent = Some(value),
                _ => {}
            }
        }
        self.metrics.insert(name.to_string(), value);
    }

    fn set_text_metric(&mut self, name: &str, value: &str) {
        if let Some((slot, "role")) = slot_field(name) {
            self.workers.entry(slot).or_default().role = value.to_string();
        }
    }

    /// Commands per second from `commands_received` between this metrics push and the
    /// last; a counter that went down (a new server) starts the rate afresh.
    fn count_commands(&mut self, mono: f64) {
        let Some(&count) = self.metrics.get("commands_received") else {
            return;
        };
        match self.commands_seen {
            Some((then, before)) if count >= before && mono > then => {
                self.commands_per_second = Some((count - before) / (mono - then));
            }
            Some((_, before)) if count < before => self.commands_per_second = None,
            Some((then, _)) if mono <= then => return,
            _ => {}
        }
        self.commands_seen = Some((mono, count));
    }

    fn on_levels(&mut self, args: &[OscType], at: Stamp) -> bool {
        let values: Vec<f32> = args.iter().filter_map(number).map(|v| v as f32).collect();
        if values.len() != args.len() || values.len() < 2 || !values.len().is_multiple_of(2) {
            return false;
        }
        // Mono output: one pair, shown on both meters.
        let right = if values.len() >= 4 { 2 } else { 0 };
        self.meters[0].update(values[0], values[1], at.mono);
        self.meters[1].update(values[right], values[right + 1], at.mono);
        true
    }

    fn on_scope(&mut self, args: &[OscType]) -> bool {
        let Some(_step) = args.first().and_then(number) else {
            return false;
        };
        let samples: Vec<f32> = args[1..]
            .iter()
            .filter_map(number)
            .map(|v| v as f32)
            .collect();
        if samples.len() + 1 != args.len() || !samples.len().is_multiple_of(2) {
            return false;
        }
        self.scope = samples.chunks(2).map(|f| (f[0], f[1])).collect();
        true
    }

    fn on_spectrum(&mut self, args: &[OscType]) -> bool {
        let values: Vec<f32> = args.iter().filter_map(number).map(|v| v as f32).collect();
        if values.len() != args.len() || values.len() < 2 {
            return false;
        }
        self.spectrum = Spectrum {
            low_hz: values[0],
            high_hz: values[1],
            bands_db: values[2..].iter().map(|v| v.max(FLOOR_DB)).collect(),
        };
        true
    }

    fn on_seq(&mut self, args: &[OscType]) -> bool {
        let values: Vec<f64> = args.iter().filter_map(number).collect();
        if values.len() != args.len() || values.len() < 5 {
            return false;
        }
        self.seq = Some(Seq {
            bar: values[0] as i32,
            sixteenth: values[1] as i32,
            bpm: values[3] as f32,
            running: values[4] != 0.0,
        });
        true
    }

    /// A metric's latest value.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics.get(name).copied()
    }
}

/// `slot.N.field` as (N, field).
fn slot_field(name: &str) -> Option<(i32, &str)> {
    let rest = name.strip_prefix("slot.")?;
    let (index, field) = rest.split_once('.')?;
    Some((index.parse().ok()?, field))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(mono: f64) -> Stamp {
        Stamp {
            mono,
            unix: 1_700_000_000.0 + mono,
        }
    }

    fn push(addr: &str, args: Vec<OscType>) -> OscMessage {
        OscMessage {
            addr: addr.into(),
            args,
        }
    }

    fn failover(slot: i32, frame: i64, cause: &str) -> OscMessage {
        push(
            "/chronus/failover",
            vec![
                OscType::Int(slot),
                OscType::Long(frame),
                OscType::String(cause.into()),
            ],
        )
    }

    fn metrics(pairs: &[(&str, f64)]) -> OscMessage {
        push(
            "/chronus/metrics",
            pairs
                .iter()
                .flat_map(|(n, v)| [OscType::String((*n).into()), OscType::Double(*v)])
                .collect(),
        )
    }

    fn levels(peak: f32) -> OscMessage {
        push(
            "/chronus/levels",
            vec![
                OscType::Float(peak),
                OscType::Float(peak / 2.0),
                OscType::Float(peak),
                OscType::Float(peak / 2.0),
            ],
        )
    }

    #[test]
    fn the_timeline_keeps_failovers_newest_first_with_their_causes_and_times() {
        let mut model = Model::new("127.0.0.1:5005");
        model.apply(&failover(1, 48_000, "worker died"), at(1.0));
        model.apply(&failover(0, 96_000, "missed deadline"), at(2.0));
        let seen: Vec<(i32, &str, f64)> = model
            .failovers
            .iter()
            .map(|f| (f.slot, f.cause.as_str(), f.unix))
            .collect();
        assert_eq!(
            seen,
            vec![
                (0, "missed deadline", 1_700_000_002.0),
                (1, "worker died", 1_700_000_001.0)
            ]
        );
        for n in 0..100 {
            model.apply(
                &failover(n % 2, n.into(), "worker died"),
                at(3.0 + f64::from(n)),
            );
        }
        assert_eq!(model.failovers.len(), TIMELINE_LEN);
        assert_eq!(model.failovers[0].frame, 99, "newest first");
        // A lost connection keeps the history.
        model.lost("server gone");
        assert_eq!(model.failovers.len(), TIMELINE_LEN);
    }

    #[test]
    fn a_malformed_push_is_counted_and_changes_nothing() {
        let mut model = Model::new("s");
        model.apply(
            &push("/chronus/failover", vec![OscType::String("x".into())]),
            at(1.0),
        );
        model.apply(&push("/chronus/levels", vec![OscType::Float(1.0)]), at(1.0));
        model.apply(&push("/chronus/unknown", vec![]), at(1.0));
        assert_eq!(model.malformed, 2);
        assert!(model.failovers.is_empty());
        assert_eq!(model.meters[0].peak_db, FLOOR_DB);
    }

    #[test]
    fn workers_come_from_worker_pushes_and_metrics() {
        let mut model = Model::new("s");
        model.apply_metrics(
            &[
                ("slot.0.role".into(), MetricValue::Text("active".into())),
                ("slot.0.pid".into(), MetricValue::Number(4121.0)),
                ("slot.1.role".into(), MetricValue::Text("standby".into())),
                ("slot.1.pid".into(), MetricValue::Number(4122.0)),
            ],
            at(0.0),
        );
        model.apply(
            &push(
                "/chronus/worker",
                vec![
                    OscType::Int(1),
                    OscType::String("starting".into()),
                    OscType::Int(4200),
                ],
            ),
            at(1.0),
        );
        model.apply(&metrics(&[("slot.0.load_percent", 12.5)]), at(1.5));
        assert_eq!(
            model.workers[&0],
            Worker {
                role: "active".into(),
                pid: 4121,
                load_percent: Some(12.5)
            }
        );
        assert_eq!(model.workers[&1].role, "starting");
        assert_eq!(model.workers[&1].pid, 4200);
    }

    #[test]
    fn commands_per_second_is_the_counter_between_two_pushes() {
        let mut model = Model::new("s");
        model.apply(&metrics(&[("commands_received", 100.0)]), at(10.0));
        assert_eq!(model.commands_per_second, None, "one sample is no rate");
        model.apply(&metrics(&[("commands_received", 150.0)]), at(10.5));
        assert_eq!(model.commands_per_second, Some(100.0));
        model.apply(&metrics(&[("commands_received", 150.0)]), at(11.0));
        assert_eq!(model.commands_per_second, Some(0.0));
        // A restarted server counts from zero: no negative rate, then a fresh one.
        model.apply(&metrics(&[("commands_received", 3.0)]), at(11.5));
        assert_eq!(model.commands_per_second, None);
        model.apply(&metrics(&[("commands_received", 5.0)]), at(12.5));
        assert_eq!(model.commands_per_second, Some(2.0));
        // Losing the connection forgets the baseline.
        model.lost("server gone");
        model.apply(&metrics(&[("commands_received", 500.0)]), at(13.0));
        assert_eq!(model.commands_per_second, None);
    }

    #[test]
    fn the_peak_hold_stays_then_falls_and_a_louder_peak_resets_it() {
        let mut model = Model::new("s");
        model.apply(&levels(1.0), at(0.0)); // 0 dBFS
        model.apply(&levels(0.1), at(0.5)); // -20 dBFS
        let meter = model.meters[0];
        assert!((meter.peak_db + 20.0).abs() < 1e-4, "{meter:?}");
        assert!((meter.rms_db + 26.0206).abs() < 1e-3, "{meter:?}");
        assert_eq!(meter.hold_db(0.5), 0.0);
        assert_eq!(meter.hold_db(HOLD_SECONDS), 0.0, "held");
        assert!(
            (meter.hold_db(HOLD_SECONDS + 0.5) + 10.0).abs() < 1e-4,
            "falls 20 dB/s"
        );
        assert_eq!(meter.hold_db(100.0), FLOOR_DB, "never under the floor");
        // Once it has fallen under the new peak, the peak sets it again.
        model.apply(&levels(0.1), at(HOLD_SECONDS + 1.5));
        assert!((model.meters[0].hold_db(HOLD_SECONDS + 1.5) + 20.0).abs() < 1e-4);
        model.apply(&levels(0.5), at(4.0));
        assert!((model.meters[1].hold_db(4.0) + 6.0206).abs() < 1e-3);
        // Silence is the floor, not minus infinity.
        model.apply(&levels(0.0), at(10.0));
        assert_eq!(model.meters[0].peak_db, FLOOR_DB);
    }

    #[test]
    fn scope_spectrum_and_sequencer_take_their_layouts() {
        let mut model = Model::new("s");
        let mut scope = vec![OscType::Int(8)];
        scope.extend((0..8).map(|i| OscType::Float(i as f32 / 10.0)));
        model.apply(&push("/chronus/scope", scope), at(0.0));
        assert_eq!(model.scope.len(), 4);
        assert_eq!(model.scope[1], (0.2, 0.3));
        let mut spectrum = vec![OscType::Float(20.0), OscType::Float(20_000.0)];
        spectrum.extend((0..32).map(|i| OscType::Float(-100.0 + i as f32)));
        model.apply(&push("/chronus/spectrum", spectrum), at(0.0));
        assert_eq!(model.spectrum.bands_db.len(), 32);
        assert_eq!(model.spectrum.bands_db[0], FLOOR_DB, "floored");
        assert_eq!(model.spectrum.bands_db[31], -69.0);
        model.apply(
            &push(
                "/chronus/seq",
                vec![
                    OscType::Int(3),
                    OscType::Int(5),
                    OscType::Float(9.25),
                    OscType::Float(124.0),
                    OscType::Int(1),
                ],
            ),
            at(0.0),
        );
        assert_eq!(
            model.seq,
            Some(Seq {
                bar: 3,
                sixteenth: 5,
                bpm: 124.0,
                running: true
            })
        );
        assert_eq!(model.malformed, 0);
    }
}
