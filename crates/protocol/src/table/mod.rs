//! The vocabulary and the address table: every request a client can make, declared once,
//! and every OSC address Chronus answers, with its typed arguments.
//!
//! A fixed address is one `Fixed` entry of `FIXED`: address, arguments, reply, docs,
//! and the function that turns a checked message into its [`Request`] (an engine
//! [`Command`] for the lockstep stream, or a question the server answers). Adding a query
//! is a `Request` variant and an entry here, plus its handler in the server; adding an
//! engine command is its `Command` variant (with its record encoding), an entry here, and
//! its `apply` in the engine. Fault injection entries are ordinary entries, present only
//! in a table built with `fault_injection`.
//!
//! One table, built from the patch's module instances, is the single source of truth for
//! the server (what it accepts), `chronus send` (how it types command-line arguments), the
//! command files and logs (how commands are written as text) and the README (what is
//! documented). Ranges come straight from each [`ParamSpec`], so the documented range and
//! the enforced range cannot drift apart.
//!
//! Besides the per-module addresses and the fixed server addresses, the table holds the
//! patch-editing addresses (`/ramp`, `/get`, `/params`, `/patch/…`) whose text arguments
//! name module instances and parameter addresses of this same table.

mod arp;
pub mod library;
pub mod midi;
mod notes;
mod sequencer;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chronus_dsp::spec::{ModuleSpec, ParamSpec, Unit};
use chronus_dsp::PatchDesc;
use chronus_engine::command::{Command, Fault, NodeIndex, SwitchAt};
use chronus_engine::sequencer::TRACK_SPEC;
use chronus_engine::JoinPoint;
use rosc::OscType;

use crate::signature::{check_arg, clip, ArgKind, ArgSpec, Value};

/// Address of the master gain.
pub const ENGINE_GAIN: &str = "/engine/gain";
/// Address of the built-in test tone.
pub const TEST: &str = "/test";
/// Address of the status query (scsynth's `/status`).
pub const STATUS: &str = "/status";
/// Address of the metrics query.
pub const METRICS: &str = "/metrics";
/// Address of the barrier (scsynth's `/sync`).
pub const SYNC: &str = "/sync";
/// Address of the version query (scsynth's `/version`).
pub const VERSION: &str = "/version";
/// Address of the address-table query (the running patch's module instances).
pub const TABLE: &str = "/table";
/// Address that stops the server (scsynth's `/quit`).
pub const QUIT: &str = "/quit";
/// Address of the push subscription (scsynth's `/notify`): `/notify 1 [topics…]`.
pub const NOTIFY: &str = "/notify";
/// Address that logs every incoming message (scsynth's `/dumpOSC`): `/dumpOSC 1|0`.
pub const DUMP_OSC: &str = "/dumpOSC";
/// Fault injection: crash a worker.
pub const DEBUG_CRASH: &str = "/debug/crash";
/// Fault injection: a lockstep command that kills every worker applying it.
pub const DEBUG_POISON: &str = "/debug/poison";
/// Fault injection: hang a worker.
pub const DEBUG_HANG: &str = "/debug/hang";
/// Fault injection: slow a worker down.
pub const DEBUG_SLOW: &str = "/debug/slow";
/// Fault injection: panic in the server's OSC thread.
pub const DEBUG_PANIC: &str = "/debug/panic";
/// Fault injection: make a worker leave the lockstep.
pub const DEBUG_DIVERGE: &str = "/debug/diverge";
/// Fault injection: raise SIGSEGV in a worker.
pub const DEBUG_SEGV: &str = "/debug/segv";
/// Fault injection: panic inside a module's `process` in a worker.
pub const DEBUG_DSP_PANIC: &str = "/debug/dsp_panic";
/// Fault injection: make the next spare die at a point of its join.
pub const DEBUG_SPARE_DIES: &str = "/debug/spare_dies";

/// Address of the in-engine parameter glide: `/ramp <address> <target> <seconds>`.
pub const RAMP: &str = "/ramp";
/// Address of the parameter query: `/get <address>`.
pub const GET: &str = "/get";
/// Address of the module parameter listing: `/params <id>`.
pub const PARAMS: &str = "/params";
/// Draft patch edit: add a module instance.
pub const PATCH_ADD: &str = "/patch/add";
/// Draft patch edit: remove a module instance.
pub const PATCH_REMOVE: &str = "/patch/remove";
/// Draft patch edit: connect an output to an input.
pub const PATCH_CONNECT: &str = "/patch/connect";
/// Draft patch edit: remove a connection.
pub const PATCH_DISCONNECT: &str = "/patch/disconnect";
/// Draft patch edit: set a parameter's initial value.
pub const PATCH_SET: &str = "/patch/set";
/// Swap the draft patch in (crossfaded, in lockstep).
pub const PATCH_COMMIT: &str = "/patch/commit";
/// Drop the draft patch, going back to the running one.
pub const PATCH_REVERT: &str = "/patch/revert";
/// Reply with the draft patch as TOML text.
pub const PATCH_DUMP: &str = "/patch/dump";
/// Command-log only (not an OSC address): a patch switch, with the whole patch TOML, so a
/// log replays exactly across patch changes. See `text::format_patch_log_line`.
pub const PATCH_LOAD: &str = "/patch/load";

/// Longest module id, type name, port or parameter address accepted as a text argument,
/// in bytes: far beyond any real name, small enough to keep replies and logs tidy.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest patch text accepted as a text argument, in bytes (one OSC datagram's worth).
pub const MAX_PATCH_TEXT_BYTES: usize = 4096;

/// Prefix of parameter addresses: `/mod/<module id>/<param>`.
pub const MOD_PREFIX: &str = "/mod/";
/// Prefix of gate addresses: `/gate/<module id>`.
pub const GATE_PREFIX: &str = "/gate/";

/// A number argument that takes any finite `f32` (its real range is checked elsewhere:
/// against the named parameter for `/ramp`, by the patch compiler for `/patch/set`).
const ANY_NUMBER: ArgKind = ArgKind::Number {
    unit: Unit::Number,
    min: f32::MIN,
    max: f32::MAX,
    default: 0.0,
};

/// A required text argument of at most [`MAX_NAME_BYTES`].
const fn name_arg(name: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind: ArgKind::Text {
            max_len: MAX_NAME_BYTES,
        },
        optional: false,
    }
}

/// What a validated message asks the server to do: the one vocabulary of requests, from
/// the table entry that declares an address to the code that acts on it.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// An engine command: stamped by the output clock and applied by every worker
    /// (`/mod/…`, `/gate/…`, `/engine/gain`, `/test`, `/ramp`, `/debug/poison`).
    Engine(Command),
    /// `/get <address>`: answer `/get.reply <address> <value>` with the parameter's
    /// current value.
    Get {
        /// The `/mod/<id>/<param>` address asked about (echoed in the reply).
        address: String,
        /// Module instance.
        node: NodeIndex,
        /// Parameter index in the module's spec.
        param: u16,
    },
    /// `/params <id>`: answer `/params.reply` with every parameter of module `node`.
    Params {
        /// The module instance id asked about (echoed in the reply).
        id: String,
        /// Module instance.
        node: NodeIndex,
    },
    /// A `/patch/…` edit of the draft patch; the server checks ids and types against it.
    Patch(PatchEdit),
    /// A `/library/…` request: load, save or list patches of the library (the name is
    /// checked already).
    Library(library::LibraryRequest),
    /// `/midi/cc` or `/midi/learn`: a controller moved, or map the next one (applied by
    /// the server through the running patch's `[midi]` mappings).
    Midi(midi::MidiRequest),
    /// `/sync <id>`: answer `/synced <id>` once everything before it has been stamped.
    Sync(i32),
    /// `/status`: answer `/status.reply`.
    Status,
    /// `/metrics`: answer `/metrics.reply`.
    Metrics,
    /// `/version`: answer `/version.reply`.
    Version,
    /// `/table`: answer `/table.reply` with the running patch's module instances, from
    /// which a client rebuilds the server's address table exactly.
    Table,
    /// `/quit`: answer `/done /quit` and stop.
    Quit,
    /// `/notify 1 [topics…]` (`Some`: subscribe the sender, or renew and replace its
    /// subscription) or `/notify 0` (`None`: end it). Answered by the server's notify
    /// thread, `/done /notify` or `/fail /notify <reason>`.
    Notify(Option<Subscription>),
    /// `/dumpOSC 1|0`: log every incoming message (escaped, rate-limited) at info level,
    /// or stop doing so.
    DumpOsc(bool),
    /// Fault injection: a panic in one of the server's threads, to show that each is
    /// watched: no packet makes the server deaf, and no record ends unnoticed (only in a
    /// table built with `fault_injection`).
    DebugPanic {
        /// Where the panic happens.
        thread: PanicThread,
    },
    /// Fault injection for one worker (only in a table built with `fault_injection`).
    Fault {
        /// What to inject.
        fault: Fault,
        /// The worker's slot; `None` = the active one.
        slot: Option<u8>,
    },
    /// Fault injection: the next spare dies at `point` of its join (only in a table built
    /// with `fault_injection`).
    SpareDies {
        /// Where.
        point: JoinPoint,
    },
}

/// Where `/debug/panic <thread>` panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PanicThread {
    /// 0: in the OSC thread while handling the message (caught per packet, answered `/fail`).
    Handler,
    /// 1: in the OSC thread outside the per-packet guard: the thread dies, the server exits.
    Osc,
    /// 2: in the recorder's thread: the recordings end, the server plays on and reports it.
    Recorder,
    /// 3: in the command log's writer: the log ends, the server plays on and reports it.
    CommandLog,
    /// 4: in the notify thread (pushes to `/notify` subscribers): caught there, counted in
    /// `notify_panics`, and the pushes go on.
    Notify,
}

/// What a `/notify` subscriber can ask to be pushed. Adding a topic is one variant here
/// (with its name in [`Topic::ALL`] order) and its producer in the server's notify thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Topic {
    /// `/chronus/failover <slot> <frame> <cause>`: the output switched slots.
    Failover,
    /// `/chronus/worker <slot> <role> <pid>`: a slot's worker changed role (spawned,
    /// joining, standby, active, dead).
    Worker,
    /// `/chronus/metrics name value …` (as `/metrics.reply`), at the rate asked
    /// (`metrics=<Hz>`, default 2 Hz).
    Metrics,
    /// `/chronus/levels` peak and RMS per channel of the output, 30 times a second.
    Levels,
    /// `/chronus/scope`: a decimated window of the output, 30 times a second.
    Scope,
    /// `/chronus/spectrum`: the output's magnitudes in fixed log-spaced bands, 15 times a
    /// second.
    Spectrum,
    /// `/chronus/params <address> <value> [seconds]`: every parameter change accepted,
    /// whoever sent it.
    Params,
    /// `/chronus/patch <version> <frame>`: a committed patch was switched in.
    Patch,
    /// `/chronus/seq <bar> <sixteenth> <beats> <bpm> <running>`: where the sequencer's
    /// clock is, each time it reaches the next sixteenth (and when it stops or starts),
    /// for screens that show the step.
    Seq,
    /// `/chronus/audio <first frame> <samples>`: the output's samples themselves
    /// (interleaved stereo f32 little-endian in a blob), as played, for a client that
    /// plays them (`chronus web --audio`). TCP only, at most a few subscribers.
    Audio,
}

impl Topic {
    /// Every topic, in the order they are documented.
    pub const ALL: [Topic; 10] = [
        Topic::Failover,
        Topic::Worker,
        Topic::Metrics,
        Topic::Levels,
        Topic::Scope,
        Topic::Spectrum,
        Topic::Params,
        Topic::Patch,
        Topic::Seq,
        Topic::Audio,
    ];

    /// The topics a `/notify 1` without topics subscribes to: the events, none of the
    /// periodic streams.
    pub const EVENTS: [Topic; 4] = [Topic::Failover, Topic::Worker, Topic::Params, Topic::Patch];

    /// Its name in `/notify` arguments.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Failover => "failover",
            Topic::Worker => "worker",
            Topic::Metrics => "metrics",
            Topic::Levels => "levels",
            Topic::Scope => "scope",
            Topic::Spectrum => "spectrum",
            Topic::Params => "params",
            Topic::Patch => "patch",
            Topic::Seq => "seq",
            Topic::Audio => "audio",
        }
    }

    /// The topic named `name`, if any.
    pub fn from_name(name: &str) -> Option<Topic> {
        Topic::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Whether its producer needs the output's blocks (which the output then copies for
    /// the notify thread): the analyses, and `audio` itself.
    pub fn is_audio(self) -> bool {
        matches!(
            self,
            Topic::Levels | Topic::Scope | Topic::Spectrum | Topic::Audio
        )
    }

    /// Whether it is pushed at a rate (the notify thread then looks often), rather than
    /// when something happens.
    pub fn is_periodic(self) -> bool {
        matches!(self, Topic::Metrics | Topic::Seq) || self.is_audio()
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// A set of [`Topic`]s (a bit each): copied freely, compared cheaply, shared as one atomic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Topics(u16);

impl Topics {
    /// No topic.
    pub const NONE: Topics = Topics(0);

    /// The set of `topics`.
    pub fn of(topics: &[Topic]) -> Topics {
        Topics(topics.iter().fold(0, |bits, t| bits | t.bit()))
    }

    /// Whether `topic` is in the set.
    pub fn contains(self, topic: Topic) -> bool {
        self.0 & topic.bit() != 0
    }

    /// The set with `topic` added.
    pub fn with(self, topic: Topic) -> Topics {
        Topics(self.0 | topic.bit())
    }

    /// Both sets together.
    pub fn union(self, other: Topics) -> Topics {
        Topics(self.0 | other.0)
    }

    /// The topics [`Topic::is_audio`] says analyse the output.
    const AUDIO: Topics = Topics(
        (1 << Topic::Levels as u16)
            | (1 << Topic::Scope as u16)
            | (1 << Topic::Spectrum as u16)
            | (1 << Topic::Audio as u16),
    );

    /// Whether any topic of the set analyses the output ([`Topic::is_audio`]). One mask
    /// test: the output clock asks every block.
    pub fn any_audio(self) -> bool {
        self.0 & Topics::AUDIO.0 != 0
    }

    /// The topics of the set, in [`Topic::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Topic> {
        Topic::ALL.into_iter().filter(move |t| self.contains(*t))
    }

    /// The set as bits (for an atomic).
    pub fn bits(self) -> u16 {
        self.0
    }

    /// The set from [`bits`](Self::bits).
    pub fn from_bits(bits: u16) -> Topics {
        Topics(bits)
    }
}

/// What `/notify 1 [topics…]` asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Subscription {
    /// The topics to push.
    pub topics: Topics,
    /// Pushes of `metrics` per second ([`METRICS_HZ_DEFAULT`] unless `metrics=<Hz>`).
    pub metrics_hz: f32,
}

/// Rate of the `metrics` topic when `/notify` names it without a rate.
pub const METRICS_HZ_DEFAULT: f32 = 2.0;
/// Lowest rate `metrics=<Hz>` takes.
pub const METRICS_HZ_MIN: f32 = 0.1;
/// Highest rate `metrics=<Hz>` takes (a report reads `/proc`: not for every block).
pub const METRICS_HZ_MAX: f32 = 30.0;

/// Reads the topic arguments of `/notify 1`: names of [`Topic::ALL`], the metrics topic
/// optionally as `metrics=<Hz>`; none at all means [`Topic::EVENTS`].
///
/// # Errors
/// The `/fail` reason for an unknown topic or a bad rate, listing what is accepted.
pub fn parse_topics(names: &[String]) -> Result<Subscription, String> {
    let mut subscription = Subscription {
        topics: if names.is_empty() {
            Topics::of(&Topic::EVENTS)
        } else {
            Topics::NONE
        },
        metrics_hz: METRICS_HZ_DEFAULT,
    };
    let known = || {
        Topic::ALL
            .iter()
            .map(|t| t.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    for name in names {
        if let Some(rate) = name.strip_prefix("metrics=") {
            let hz: f32 = rate
                .parse()
                .ok()
                .filter(|hz: &f32| (METRICS_HZ_MIN..=METRICS_HZ_MAX).contains(hz))
                .ok_or_else(|| {
                    format!(
                        "{NOTIFY}: bad metrics rate '{}' (metrics=<Hz>, {METRICS_HZ_MIN} to {METRICS_HZ_MAX})",
                        clip(rate)
                    )
                })?;
            subscription.metrics_hz = hz;
            subscription.topics = subscription.topics.with(Topic::Metrics);
            continue;
        }
        let topic = Topic::from_name(name).ok_or_else(|| {
            format!(
                "{NOTIFY}: unknown topic '{}' (topics: {}; metrics=<Hz> sets the metrics rate)",
                clip(name),
                known()
            )
        })?;
        subscription.topics = subscription.topics.with(topic);
    }
    Ok(subscription)
}

/// One optional topic argument of `/notify`.
const TOPIC_ARG: ArgSpec = ArgSpec {
    name: "topic",
    kind: ArgKind::Text { max_len: 32 },
    optional: true,
};

/// An edit of the server's draft patch (`/patch/…`). The protocol only checks argument
/// types and counts; the server validates ids, types and ports against the draft, and
/// the patch compiler checks the whole graph on commit.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchEdit {
    /// `/patch/add <id> <type>`: add a module instance.
    Add {
        /// New instance id.
        id: String,
        /// Module type name (`sine`, `adsr`, …).
        type_name: String,
    },
    /// `/patch/remove <id>`: remove a module instance and its connections.
    Remove {
        /// Instance id.
        id: String,
    },
    /// `/patch/connect <from> <to>`: connect an output (`<id>[:port]`) to an input.
    Connect {
        /// Source output, `<id>[:port]`.
        from: String,
        /// Destination input, `<id>[:port]`.
        to: String,
    },
    /// `/patch/disconnect <from> <to>`: remove a connection.
    Disconnect {
        /// Source output, `<id>[:port]`.
        from: String,
        /// Destination input, `<id>[:port]`.
        to: String,
    },
    /// `/patch/set <id> <param> <value>`: set a parameter in the draft (any finite
    /// number; the patch compiler range-checks it).
    Set {
        /// Instance id.
        id: String,
        /// Parameter name.
        param: String,
        /// New value.
        value: f32,
    },
    /// `/patch/commit`: swap the draft in.
    Commit,
    /// `/patch/revert`: drop the draft, back to the running patch.
    Revert,
    /// `/patch/dump`: reply with the draft as TOML.
    Dump,
    /// `/seq/<track>/pattern`, `…/instrument`, `…/length`: a live edit of a track of the
    /// running patch, which takes effect on the next bar line (or beat) while the sound
    /// plays on.
    Track {
        /// The track's name.
        track: String,
        /// What changes.
        change: TrackChange,
        /// The next bar line ([`SwitchAt::TracksAtBar`]) or beat.
        at: SwitchAt,
    },
}

/// What a live edit of a track changes.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackChange {
    /// A new pattern, in mini-notation (docs/patterns.md).
    Pattern(String),
    /// The instrument it plays, by name.
    Instrument(String),
    /// How many bars one cycle of its pattern lasts.
    Bars(u32),
}

/// One fixed address (the same in every patch): its signature, reply and docs, and how a
/// checked message to it becomes a [`Request`]. Adding an address is adding one of these
/// to [`FIXED`] (and, for a new request, its variant and its handler).
pub(crate) struct Fixed {
    /// The exact OSC address.
    pub(crate) address: &'static str,
    /// Declared arguments, in order; optional ones come last.
    pub(crate) args: &'static [ArgSpec],
    /// What the server answers on success.
    pub(crate) reply: &'static str,
    /// One line for users: what the address does.
    pub(crate) doc: &'static str,
    /// Its request is an engine command, allowed in command files and logs.
    pub(crate) engine: bool,
    /// Present only in a table built with `fault_injection` (`--allow-fault-injection`).
    pub(crate) fault_injection: bool,
    /// The request a checked message stands for, or the `/fail` reason.
    pub(crate) build: fn(&Call<'_>) -> Result<Request, String>,
}

impl PartialEq for Fixed {
    fn eq(&self, other: &Fixed) -> bool {
        self.address == other.address
    }
}

impl std::fmt::Debug for Fixed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.address)
    }
}

/// The gain argument of `/engine/gain`.
const GAIN_ARG: ArgSpec = ArgSpec {
    name: "gain",
    kind: ArgKind::Number {
        unit: Unit::Linear,
        min: 0.0,
        max: 1.0,
        default: 1.0,
    },
    optional: false,
};

/// A required number argument of any finite value.
const fn any_number(name: &'static str) -> ArgSpec {
    ArgSpec {
        name,
        kind: ANY_NUMBER,
        optional: false,
    }
}

/// An answer that takes no arguments and is the same request every time.
const fn query(
    address: &'static str,
    reply: &'static str,
    doc: &'static str,
    build: fn(&Call<'_>) -> Result<Request, String>,
) -> Fixed {
    Fixed {
        address,
        args: &[],
        reply,
        doc,
        engine: false,
        fault_injection: false,
        build,
    }
}

/// Every fixed address. Engine commands are listed in this order in the reason a command
/// file gives for a line that is not one.
static FIXED: &[Fixed] = &[
    Fixed {
        address: ENGINE_GAIN,
        args: &[GAIN_ARG],
        reply: "none",
        doc: "Sets the master gain after the patch (smoothed).",
        engine: true,
        fault_injection: false,
        build: |call| Ok(Request::Engine(Command::EngineGain(call.number(0)?))),
    },
    Fixed {
        address: TEST,
        args: &[],
        reply: "none",
        doc: "Plays a short built-in test tone, mixed after the patch.",
        engine: true,
        fault_injection: false,
        build: |_| Ok(Request::Engine(Command::TestTone)),
    },
    query(
        STATUS,
        "/status.reply ,iiiiiffdd: 1, modules, voices sounding, groups (1), patches loaded, avg load %, peak load %, nominal rate, actual rate",
        "Reports the server's state in scsynth's /status.reply layout.",
        |_| Ok(Request::Status),
    ),
    query(
        METRICS,
        "/metrics.reply name value name value …",
        "Reports every metric as name (string) / value (double) pairs.",
        |_| Ok(Request::Metrics),
    ),
    Fixed {
        address: SYNC,
        args: &[ArgSpec {
            name: "id",
            kind: ArgKind::Int {
                min: i32::MIN as i64,
                max: i32::MAX as i64,
            },
            optional: false,
        }],
        reply: "/synced <id>",
        doc: "Answers once everything sent before it has been stamped (a barrier, as in scsynth).",
        engine: false,
        fault_injection: false,
        build: |call| {
            let id = i32::try_from(call.int(0)?).map_err(|_| call.internal())?;
            Ok(Request::Sync(id))
        },
    },
    query(
        VERSION,
        "/version.reply program major minor patch branch commit",
        "Reports the program name and version, in scsynth's /version.reply layout.",
        |_| Ok(Request::Version),
    ),
    query(
        TABLE,
        "/table.reply fault_injection [id type]…",
        "Reports the running patch's module instances in patch order (id and type of each) and whether fault injection is on (1/0). The address table is a function of these: `/mod/<id>/<param>` for each parameter (`/params <id>` gives units and ranges), `/gate/<id>` for modules with a gate, and the fixed addresses; `chronus send` asks it (over UDP, else TCP: the reply grows with the patch) to check a message against the server's own patch.",
        |_| Ok(Request::Table),
    ),
    query(
        QUIT,
        "/done /quit",
        "Stops the server: fades out, stops the workers, exits.",
        |_| Ok(Request::Quit),
    ),
    Fixed {
        address: NOTIFY,
        args: &[
            ArgSpec {
                name: "on",
                kind: ArgKind::Int { min: 0, max: 1 },
                optional: false,
            },
            // One a topic (`Topic::ALL`).
            TOPIC_ARG,
            TOPIC_ARG,
            TOPIC_ARG,
            TOPIC_ARG,
            TOPIC_ARG,
            TOPIC_ARG,
            TOPIC_ARG,
            TOPIC_ARG,
            TOPIC_ARG,
            TOPIC_ARG,
        ],
        reply: "/done /notify, then pushes; or /fail /notify <reason>",
        doc: "1 subscribes the sender to pushes (again: renews and replaces its subscription), 0 ends it. Topics: failover (`/chronus/failover <slot:i> <frame:h> <cause:s>`), worker (`/chronus/worker <slot:i> <role:s> <pid:i>`), params (`/chronus/params <address:s> <value:f> [seconds:f]`, every parameter change accepted, whoever sent it; a /ramp gives its target and seconds), patch (`/chronus/patch <version:i> <frame:h>`), metrics (`/chronus/metrics` name value …, 2 Hz, or `metrics=<Hz>` from 0.1 to 30), levels (`/chronus/levels <peak L> <rms L> <peak R> <rms R>`, linear, 30 Hz), scope (`/chronus/scope <step:i>` then 256 frames L R …, one frame in `step` of the last 2,048, 30 Hz), spectrum (`/chronus/spectrum <low Hz> <high Hz>` then 32 band levels in dBFS, log-spaced, 15 Hz), seq (`/chronus/seq <bar:i> <sixteenth:i> <beats:f> <bpm:f> <running:i>`: where the sequencer's clock is, bar 1 first, each time it reaches the next sixteenth of a bar, and when it stops or starts), audio (`/chronus/audio <first frame:h> <samples:b>`: the output's samples as played, after the fades, the recording's samples; the blob is interleaved stereo f32 little-endian, up to 1,024 frames a push, sent every 10 ms tick; `first frame` is the frame of its first sample on the server's timeline, so a gap (the monitor ring full, a slow client) shows as a jump; TCP only, at most 4 subscribers). No topic: failover, worker, params and patch. Over TCP, or UDP to loopback and `--allow`ed clients only; at most 32 subscribers; a UDP subscription ends after 60 s unless renewed, a TCP one with its connection.",
        engine: false,
        fault_injection: false,
        build: |call| {
            if call.int(0)? == 0 {
                return Ok(Request::Notify(None));
            }
            let names = (1..call.values.len())
                .map(|i| call.text(i))
                .collect::<Result<Vec<_>, _>>()?;
            parse_topics(&names).map(|s| Request::Notify(Some(s)))
        },
    },
    Fixed {
        address: DUMP_OSC,
        args: &[ArgSpec {
            name: "on",
            kind: ArgKind::Int { min: 0, max: 1 },
            optional: false,
        }],
        reply: "/done /dumpOSC",
        doc: "1: logs every incoming message (address and arguments, escaped, at most 10 lines a second) at info level; 0: stops. Taken only from loopback, as /quit (unless --allow-remote-quit).",
        engine: false,
        fault_injection: false,
        build: |call| Ok(Request::DumpOsc(call.int(0)? == 1)),
    },
    Fixed {
        address: RAMP,
        args: &[
            name_arg("address"),
            any_number("target"),
            ArgSpec {
                name: "seconds",
                kind: ArgKind::Number {
                    unit: Unit::Seconds,
                    min: 0.0,
                    max: 3600.0,
                    default: 0.0,
                },
                optional: false,
            },
        ],
        reply: "none",
        doc: "Glides the parameter at `address` (a `/mod/<id>/<param>` of this table) from its current value to `target` (in that parameter's unit and range) over `seconds`, inside the engine: deterministic and in lockstep, so a failover mid-ramp changes nothing.",
        engine: true,
        fault_injection: false,
        build: ramp,
    },
    Fixed {
        address: GET,
        args: &[name_arg("address")],
        reply: "/get.reply <address> <value:f>",
        doc: "Reports the current value of the parameter at `address` (a `/mod/<id>/<param>` of this table).",
        engine: false,
        fault_injection: false,
        build: |call| {
            let (address, node, param) = call.param(0)?;
            Ok(Request::Get {
                address,
                node,
                param,
            })
        },
    },
    Fixed {
        address: PARAMS,
        args: &[name_arg("id")],
        reply: "/params.reply <id> then per parameter: name, unit, min:f, max:f, default:f, current:f",
        doc: "Lists every parameter of module instance `id`: name, unit, range, default and current value.",
        engine: false,
        fault_injection: false,
        build: |call| {
            let (id, node) = call.module(0)?;
            Ok(Request::Params { id, node })
        },
    },
    Fixed {
        address: PATCH_ADD,
        args: &[name_arg("id"), name_arg("type")],
        reply: "/done /patch/add",
        doc: "Draft patch: adds a module instance `id` of module type `type` (applied by /patch/commit).",
        engine: false,
        fault_injection: false,
        build: |call| {
            Ok(Request::Patch(PatchEdit::Add {
                id: call.text(0)?,
                type_name: call.text(1)?,
            }))
        },
    },
    Fixed {
        address: PATCH_REMOVE,
        args: &[name_arg("id")],
        reply: "/done /patch/remove",
        doc: "Draft patch: removes module instance `id` and its connections.",
        engine: false,
        fault_injection: false,
        build: |call| Ok(Request::Patch(PatchEdit::Remove { id: call.text(0)? })),
    },
    Fixed {
        address: PATCH_CONNECT,
        args: &[name_arg("from"), name_arg("to")],
        reply: "/done /patch/connect",
        doc: "Draft patch: connects output `from` (`<id>[:port]`) to input `to` (`<id>[:port]`).",
        engine: false,
        fault_injection: false,
        build: |call| {
            Ok(Request::Patch(PatchEdit::Connect {
                from: call.text(0)?,
                to: call.text(1)?,
            }))
        },
    },
    Fixed {
        address: PATCH_DISCONNECT,
        args: &[name_arg("from"), name_arg("to")],
        reply: "/done /patch/disconnect",
        doc: "Draft patch: removes the connection from `from` to `to`.",
        engine: false,
        fault_injection: false,
        build: |call| {
            Ok(Request::Patch(PatchEdit::Disconnect {
                from: call.text(0)?,
                to: call.text(1)?,
            }))
        },
    },
    Fixed {
        address: PATCH_SET,
        args: &[name_arg("id"), name_arg("param"), any_number("value")],
        reply: "/done /patch/set",
        doc: "Draft patch: sets parameter `param` of module instance `id` (`<instrument>.<id>`: a module of every voice of an instrument; range-checked when the draft is committed). The way to change a fixed parameter, such as a delay's `max_time`.",
        engine: false,
        fault_injection: false,
        build: |call| {
            Ok(Request::Patch(PatchEdit::Set {
                id: call.text(0)?,
                param: call.text(1)?,
                value: call.number(2)?,
            }))
        },
    },
    query(
        PATCH_COMMIT,
        "/done /patch/commit",
        "Swaps the draft patch in atomically, with a short crossfade, in lockstep on both workers; a bad draft is refused and the running patch keeps playing.",
        |_| Ok(Request::Patch(PatchEdit::Commit)),
    ),
    query(
        PATCH_REVERT,
        "/done /patch/revert",
        "Drops the draft patch: the next edit starts again from the running patch.",
        |_| Ok(Request::Patch(PatchEdit::Revert)),
    ),
    query(
        PATCH_DUMP,
        "/patch/dump.reply <toml>",
        "Replies with the draft patch (the running one if there are no edits) as TOML text.",
        |_| Ok(Request::Patch(PatchEdit::Dump)),
    ),
    Fixed {
        address: DEBUG_POISON,
        args: &[],
        reply: "none",
        doc: "Fault injection: a lockstep command that aborts both workers when applied (the server restarts them from a snapshot without it and answers /fail).",
        engine: true,
        fault_injection: true,
        build: |_| Ok(Request::Engine(Command::DebugPoison)),
    },
    Fixed {
        address: DEBUG_CRASH,
        args: &[SLOT_ARG],
        reply: "none",
        doc: "Fault injection: makes the worker in `slot` (default: the active one) abort.",
        engine: false,
        fault_injection: true,
        build: |call| {
            Ok(Request::Fault {
                fault: Fault::Crash,
                slot: call.slot(0)?,
            })
        },
    },
    Fixed {
        address: DEBUG_HANG,
        args: &[SLOT_ARG],
        reply: "none",
        doc: "Fault injection: makes the worker in `slot` (default: the active one) stop making progress.",
        engine: false,
        fault_injection: true,
        build: |call| {
            Ok(Request::Fault {
                fault: Fault::Hang,
                slot: call.slot(0)?,
            })
        },
    },
    Fixed {
        address: DEBUG_DIVERGE,
        args: &[SLOT_ARG],
        reply: "none",
        doc: "Fault injection: makes the worker in `slot` (default: the active one) render every block slightly differently from now on; the output sees the standby's blocks differ from the active one's and retires it (`lockstep_standbys_retired`).",
        engine: false,
        fault_injection: true,
        build: |call| {
            Ok(Request::Fault {
                fault: Fault::Diverge,
                slot: call.slot(0)?,
            })
        },
    },
    Fixed {
        address: DEBUG_SEGV,
        args: &[SLOT_ARG],
        reply: "none",
        doc: "Fault injection: raises SIGSEGV in the worker in `slot` (default: the active one), as a memory error would.",
        engine: false,
        fault_injection: true,
        build: |call| {
            Ok(Request::Fault {
                fault: Fault::Segv,
                slot: call.slot(0)?,
            })
        },
    },
    Fixed {
        address: DEBUG_DSP_PANIC,
        args: &[SLOT_ARG],
        reply: "none",
        doc: "Fault injection: makes a module's `process` panic in the worker in `slot` (default: the active one), as a bug in DSP code would.",
        engine: false,
        fault_injection: true,
        build: |call| {
            Ok(Request::Fault {
                fault: Fault::DspPanic,
                slot: call.slot(0)?,
            })
        },
    },
    Fixed {
        address: DEBUG_SPARE_DIES,
        args: &[ArgSpec {
            name: "point",
            kind: ArgKind::Text { max_len: 16 },
            optional: false,
        }],
        reply: "/done /debug/spare_dies, or /fail /debug/spare_dies <reason>",
        doc: "Fault injection: the next spare (the worker joining after a loss) dies at `point` of its join: `starting` (attached, no snapshot yet), `snapshot` (read, not loaded), `catching-up` (restored, rendering the blocks behind the output) or `ready` (half a second after it caught up). The server builds another.",
        engine: false,
        fault_injection: true,
        build: |call| {
            let name = call.text(0)?;
            match JoinPoint::from_name(&name) {
                Some(point) => Ok(Request::SpareDies { point }),
                None => Err(format!(
                    "unknown join point '{name}': starting, snapshot, catching-up or ready"
                )),
            }
        },
    },
    Fixed {
        address: DEBUG_SLOW,
        args: &[
            ArgSpec {
                name: "micros",
                kind: ArgKind::Int {
                    min: 0,
                    max: 1_000_000,
                },
                optional: false,
            },
            SLOT_ARG,
        ],
        reply: "none",
        doc: "Fault injection: adds `micros` of busy delay to every block of the worker in `slot` (default: the active one).",
        engine: false,
        fault_injection: true,
        build: |call| {
            let micros = u32::try_from(call.int(0)?).map_err(|_| call.internal())?;
            Ok(Request::Fault {
                fault: Fault::Slow { micros },
                slot: call.slot(1)?,
            })
        },
    },
    Fixed {
        address: DEBUG_PANIC,
        args: &[ArgSpec {
            name: "thread",
            kind: ArgKind::Int { min: 0, max: 4 },
            optional: true,
        }],
        reply: "/fail /debug/panic <reason>, or /done /debug/panic (2, 3, 4)",
        doc: "Fault injection: panics in one of the server's threads. 0 (the default): in the OSC thread while handling this message; the panic is caught, answered with /fail and counted in `handler_panics`, and the server goes on. 1: the OSC thread dies instead, and the server exits with an error rather than play on deaf. 2: the recorder's thread (with --record or --output wav:), 3: the command log's writer (with --command-log): that record ends, the server says so and counts it in `record_threads_lost`, plays on, and exits with an error at its stop. 4: the notify thread: caught there, counted in `notify_panics`, and the pushes go on.",
        engine: false,
        fault_injection: true,
        build: |call| {
            let thread = if call.values.is_empty() {
                0
            } else {
                call.int(0)?
            };
            Ok(Request::DebugPanic {
                thread: match thread {
                    0 => PanicThread::Handler,
                    1 => PanicThread::Osc,
                    2 => PanicThread::Recorder,
                    3 => PanicThread::CommandLog,
                    4 => PanicThread::Notify,
                    _ => return Err(call.internal()),
                },
            })
        },
    },
];

/// `/ramp <address> <target> <seconds>`: the target is checked against the named
/// parameter's declared range, with the same reason a direct set would get, plus the
/// parameter's address.
fn ramp(call: &Call<'_>) -> Result<Request, String> {
    let (address, node, param) = call.param(0)?;
    let declared = call
        .table
        .lookup(&address)
        .and_then(|entry| entry.args.first())
        .ok_or_else(|| call.internal())?;
    let spec = ArgSpec {
        name: "target",
        ..*declared
    };
    let arg = call.args.get(1).ok_or_else(|| call.internal())?;
    let target = match check_arg(RAMP, 2, &spec, arg) {
        Ok(Value::Number(target)) => target,
        Ok(_) => return Err(call.internal()),
        Err(reason) => return Err(format!("{reason} for {address}")),
    };
    Ok(Request::Engine(Command::Ramp {
        node,
        param,
        target,
        seconds: call.number(2)?,
    }))
}

/// The arguments as the docs list them, a run of the same argument once with its count
/// (`/notify`'s nine optional topics: "topic: …, optional, up to 9 times").
fn describe_args(args: &[ArgSpec]) -> String {
    let mut parts: Vec<(String, usize)> = Vec::new();
    for arg in args {
        let text = arg.describe();
        match parts.last_mut() {
            Some((last, count)) if *last == text => *count += 1,
            _ => parts.push((text, 1)),
        }
    }
    parts
        .into_iter()
        .map(|(text, count)| match count {
            1 => text,
            n => format!("{text}, up to {n} times"),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A message whose every argument passed [`check_arg`], as a [`Fixed`] address reads it.
pub(crate) struct Call<'a> {
    /// The table the message was checked against (for arguments that name its entries).
    pub(crate) table: &'a AddressTable,
    /// The address, clipped for quoting in reasons.
    pub(crate) address: &'a str,
    /// The checked arguments, as declared.
    pub(crate) values: &'a [Value],
    /// The arguments as they were sent.
    pub(crate) args: &'a [OscType],
}

impl Call<'_> {
    /// The reason given when the declared arguments and the request disagree (a bug of
    /// the table, reported rather than panicked on).
    pub(crate) fn internal(&self) -> String {
        format!(
            "{}: internal error: table and action disagree",
            self.address
        )
    }

    pub(crate) fn number(&self, i: usize) -> Result<f32, String> {
        match self.values.get(i) {
            Some(Value::Number(v)) => Ok(*v),
            _ => Err(self.internal()),
        }
    }

    pub(crate) fn gate(&self, i: usize) -> Result<bool, String> {
        match self.values.get(i) {
            Some(Value::Gate(on)) => Ok(*on),
            _ => Err(self.internal()),
        }
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, String> {
        match self.values.get(i) {
            Some(Value::Int(v)) => Ok(*v),
            _ => Err(self.internal()),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, String> {
        match self.values.get(i) {
            Some(Value::Text(v)) => Ok(v.clone()),
            _ => Err(self.internal()),
        }
    }

    /// An optional worker slot: `None` when left out (the active worker).
    fn slot(&self, i: usize) -> Result<Option<u8>, String> {
        match self.values.get(i) {
            None => Ok(None),
            Some(Value::Int(v)) => u8::try_from(*v).map(Some).map_err(|_| self.internal()),
            Some(_) => Err(self.internal()),
        }
    }

    /// A text argument naming a `/mod/<id>/<param>` address of the table: the address,
    /// its node and its parameter index, or the reason (with a suggestion).
    fn param(&self, i: usize) -> Result<(String, NodeIndex, u16), String> {
        let text = self.text(i)?;
        match self.table.param_at(&text) {
            Some((node, param)) => Ok((text, node, param)),
            None => {
                if let Some(why) = self.table.fixed_param(&text) {
                    return Err(format!("{}: {why}", self.address));
                }
                let hint = match self.table.suggest_param(&text) {
                    Some(known) => format!("did you mean {known}?"),
                    None => "parameters are /mod/<id>/<param>; `chronus send --list` shows them"
                        .to_string(),
                };
                Err(format!(
                    "{}: {} is not a parameter address ({hint})",
                    self.address,
                    clip(&text)
                ))
            }
        }
    }

    /// A text argument naming a module instance of the table: its id and node, or the
    /// reason (with a suggestion).
    fn module(&self, i: usize) -> Result<(String, NodeIndex), String> {
        let id = self.text(i)?;
        match self.table.node_of(&id) {
            Some(node) => Ok((id, node)),
            None => {
                let hint = match self.table.suggest_module(&id) {
                    Some(known) => format!(" (did you mean '{known}'?)"),
                    None => String::new(),
                };
                Err(format!(
                    "{}: unknown module '{}'{hint}",
                    self.address,
                    clip(&id)
                ))
            }
        }
    }
}

/// What a message to an address acts on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// `/mod/<id>/<param>`: parameter `param` of module instance `node`.
    Param {
        /// Module instance (position in the patch).
        node: NodeIndex,
        /// Parameter index in the module's spec.
        param: u16,
    },
    /// `/gate/<id>`: the gate of module instance `node`.
    Gate {
        /// Module instance (position in the patch).
        node: NodeIndex,
    },
    /// A fixed address of [`FIXED`].
    Fixed(&'static Fixed),
    /// `/seq/<track>/start` (`on`) or `…/stop` of the `track`-th track.
    Track {
        /// The track's place among the patch's tracks.
        track: u16,
        /// Start or stop.
        on: bool,
    },
    /// `/seq/<track>/pattern`, `…/instrument` or `…/length` of the `track`-th track.
    TrackEdit {
        /// The track's place among the patch's tracks.
        track: u16,
        /// What the message changes.
        field: sequencer::TrackField,
    },
    /// `/arp/<instrument>/<knob>`: a setting of an instrument's arpeggiator.
    Arp {
        /// The instrument's node.
        instrument: NodeIndex,
        /// Which setting.
        knob: arp::Knob,
    },
}

/// One address with its signature, its reply and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The exact OSC address (no pattern matching: scsynth does none either).
    pub address: String,
    /// Declared arguments, in order; optional ones come last.
    pub args: Vec<ArgSpec>,
    /// What the server answers on success (errors are always `/fail <address> <reason>`).
    pub reply: &'static str,
    /// One line for users: what the address does.
    pub doc: String,
    /// What a validated message acts on.
    pub(crate) target: Target,
}

impl Entry {
    /// Number of arguments that must be present.
    pub fn required_args(&self) -> usize {
        self.args.iter().filter(|a| !a.optional).count()
    }

    /// The arguments a message declares, given whether its first argument is a text;
    /// and whether a leading optional text was left out. Only a *leading* optional text
    /// (the instrument of `/note/…`) can be left out before other arguments: it is
    /// present exactly when the first argument sent is a text, since the arguments
    /// after it are numbers.
    pub fn declared_for(&self, first_is_text: bool) -> (&[ArgSpec], bool) {
        match self.args.split_first() {
            Some((first, rest))
                if first.optional
                    && matches!(first.kind, ArgKind::Text { .. })
                    && !rest.is_empty()
                    && !first_is_text =>
            {
                (rest, true)
            }
            _ => (&self.args, false),
        }
    }

    /// The argument list as users write it: `<freq>`, `<micros> [slot]`, or empty.
    pub fn signature(&self) -> String {
        self.args
            .iter()
            .map(|a| {
                if a.optional {
                    format!("[{}]", a.name)
                } else {
                    format!("<{}>", a.name)
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether a message to this address is an engine command (allowed in command files
    /// and logs).
    pub fn is_engine_command(&self) -> bool {
        match self.target {
            Target::Param { .. }
            | Target::Gate { .. }
            | Target::Track { .. }
            | Target::Arp { .. } => true,
            Target::Fixed(fixed) => fixed.engine,
            Target::TrackEdit { .. } => false,
        }
    }

    /// The request a message to this address stands for, once every argument passed
    /// [`check_arg`]; or the `/fail` reason (a name argument that names nothing).
    pub(crate) fn request(&self, call: &Call<'_>) -> Result<Request, String> {
        match self.target {
            Target::Param { node, param } => Ok(Request::Engine(Command::SetParam {
                node,
                param,
                value: call.number(0)?,
            })),
            Target::Gate { node } => Ok(Request::Engine(Command::Gate {
                node,
                on: call.gate(0)?,
            })),
            Target::Fixed(fixed) => (fixed.build)(call),
            Target::Track { track, on } => Ok(Request::Engine(Command::TrackRun { track, on })),
            Target::TrackEdit { track, field } => sequencer::track_edit(call, track, field),
            Target::Arp { instrument, knob } => {
                Ok(Request::Engine(knob.request(instrument, call)?))
            }
        }
    }
}

/// The addresses that may appear in command files and logs, as the reason for a line that
/// is not an engine command lists them: "/mod/…, /gate/…, /engine/gain, /test and /ramp".
pub fn engine_command_addresses() -> String {
    let mut names = vec![
        format!("{MOD_PREFIX}…"),
        format!("{GATE_PREFIX}…"),
        format!("{}<track>/start|stop", sequencer::SEQ_PREFIX),
        format!("{}…", arp::ARP_PREFIX),
    ];
    names.extend(
        FIXED
            .iter()
            .chain(notes::FIXED)
            .chain(sequencer::FIXED)
            .filter(|fixed| fixed.engine && !fixed.fault_injection)
            .map(|fixed| fixed.address.to_string()),
    );
    match names.split_last() {
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Every address the server answers, in deterministic (sorted) order.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressTable {
    entries: BTreeMap<String, Entry>,
    /// `param_addresses[node][param]`: inverse map used by [`AddressTable::describe`];
    /// `None` for a parameter that has no address (a voice's note, set by `/note/…`).
    param_addresses: Vec<Vec<Option<String>>>,
    /// `gate_addresses[node]`: gate address of each module, if it has a gate.
    gate_addresses: Vec<Option<String>>,
    /// `modules[node]`: instance id and spec, for `/params` and module-id lookups.
    modules: Vec<(String, &'static ModuleSpec)>,
    /// Whether the fault-injection addresses are in.
    fault_injection: bool,
    /// The patch's sequencer tracks, in order (listed after its nodes, as type `track`).
    tracks: Vec<String>,
}

/// The slot argument of the debug addresses: which worker to hit (default: the active one).
const SLOT_ARG: ArgSpec = ArgSpec {
    name: "slot",
    kind: ArgKind::Int { min: 0, max: 1 },
    optional: true,
};

impl AddressTable {
    /// Builds the table for a patch.
    ///
    /// `modules` are the patch's module instances in node-index order: (instance id, spec).
    /// Every parameter of every module gets `/mod/<id>/<param>` with one number argument
    /// taken from its [`ParamSpec`]; modules with a gate get `/gate/<id>`. The fixed
    /// addresses (`/engine/gain`, `/test`, `/status`, `/metrics`, `/sync`, `/version`,
    /// `/quit`, `/ramp`, `/get`, `/params` and the `/patch/…` editing addresses) are always
    /// present; `/debug/crash`, `/debug/hang`, `/debug/slow` and `/debug/panic` only
    /// when `fault_injection` is set (the server's explicit flag).
    ///
    /// Node indices are `u16`: instances beyond index 65535 (no real patch has them) get
    /// no addresses.
    pub fn new(modules: &[(String, &'static ModuleSpec)], fault_injection: bool) -> AddressTable {
        let mut table = AddressTable {
            entries: BTreeMap::new(),
            param_addresses: Vec::with_capacity(modules.len()),
            gate_addresses: Vec::with_capacity(modules.len()),
            modules: Vec::with_capacity(modules.len()),
            fault_injection,
            tracks: Vec::new(),
        };
        for (index, (id, spec)) in modules.iter().enumerate() {
            let Ok(node) = NodeIndex::try_from(index) else {
                break;
            };
            table.modules.push((id.clone(), *spec));
            if spec.type_name == TRACK_SPEC.type_name {
                table.insert_track(id);
                continue;
            }
            if std::ptr::eq(*spec, &chronus_dsp::INSTRUMENT_SPEC) {
                table.insert_arp(id, node);
            }
            let mut params = Vec::with_capacity(spec.params.len());
            // A voice's note (its pitch, velocity and expression) belongs to the
            // allocator, each voice its own: `/note/…` sets it, not `/mod/…`.
            let per_note = |index: usize| {
                id.contains('.')
                    && spec.type_name == chronus_dsp::modules::note::SPEC.type_name
                    && chronus_dsp::modules::note::PER_NOTE.contains(&index)
            };
            for (param_index, param) in spec.params.iter().enumerate() {
                // A fixed parameter changes with the patch only (see `fixed_param`).
                if per_note(param_index) || !param.live {
                    params.push(None);
                    continue;
                }
                let Ok(param_index) = u16::try_from(param_index) else {
                    break;
                };
                let address = format!("{MOD_PREFIX}{id}/{}", param.name);
                table.insert(param_entry(
                    address.clone(),
                    id,
                    spec,
                    param,
                    node,
                    param_index,
                ));
                params.push(Some(address));
            }
            table.param_addresses.push(params);
            // An instrument member's gate belongs to its notes (`/note/on`), not to a client.
            if spec.has_gate && !id.contains('.') {
                let address = format!("{GATE_PREFIX}{id}");
                table.insert(Entry {
                    address: address.clone(),
                    args: vec![ArgSpec {
                        name: "on",
                        kind: ArgKind::Gate,
                        optional: false,
                    }],
                    reply: "none",
                    doc: format!(
                        "Opens (1) or closes (0) the gate of {} `{id}` (note on / note off).",
                        spec.type_name
                    ),
                    target: Target::Gate { node },
                });
                table.gate_addresses.push(Some(address));
            } else {
                table.gate_addresses.push(None);
            }
        }
        table.insert_fixed(fault_injection);
        table
    }

    fn insert(&mut self, entry: Entry) {
        self.entries.insert(entry.address.clone(), entry);
    }

    /// The next track's `/seq/<name>/start` and `…/stop` (a track has no parameter or
    /// gate address; its place in the node-indexed lists stays empty).
    fn insert_track(&mut self, name: &str) {
        let Ok(track) = u16::try_from(self.tracks.len()) else {
            return;
        };
        self.tracks.push(name.to_string());
        self.param_addresses.push(Vec::new());
        self.gate_addresses.push(None);
        for on in [true, false] {
            self.insert(Entry {
                address: sequencer::track_address(name, on),
                args: Vec::new(),
                reply: "none",
                doc: sequencer::track_doc(name, on),
                target: Target::Track { track, on },
            });
        }
        for field in sequencer::TrackField::ALL {
            self.insert(Entry {
                address: field.address(name),
                args: field.args().to_vec(),
                reply: "/done",
                doc: field.doc(name),
                target: Target::TrackEdit { track, field },
            });
        }
    }

    /// The `/arp/<instrument>/…` addresses of the instrument `name` at `node`.
    fn insert_arp(&mut self, name: &str, instrument: NodeIndex) {
        for knob in arp::Knob::ALL {
            self.insert(Entry {
                address: knob.address(name),
                args: vec![knob.arg()],
                reply: "none",
                doc: knob.doc(name),
                target: Target::Arp { instrument, knob },
            });
        }
    }

    /// The name of the `track`-th track.
    pub fn track_name(&self, track: u16) -> Option<&str> {
        self.tracks.get(usize::from(track)).map(String::as_str)
    }

    fn insert_fixed(&mut self, fault_injection: bool) {
        let every = FIXED
            .iter()
            .chain(notes::FIXED)
            .chain(sequencer::FIXED)
            .chain(library::FIXED)
            .chain(midi::FIXED);
        for fixed in every {
            if fixed.fault_injection && !fault_injection {
                continue;
            }
            self.insert(Entry {
                address: fixed.address.to_string(),
                args: fixed.args.to_vec(),
                reply: fixed.reply,
                doc: fixed.doc.to_string(),
                target: Target::Fixed(fixed),
            });
        }
    }

    /// The entry for an exact address, if the server answers it.
    pub fn lookup(&self, address: &str) -> Option<&Entry> {
        self.entries.get(address)
    }

    /// Every entry, sorted by address.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// Number of addresses in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty (never true: the fixed addresses are always there).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The closest known address to a mistyped one, for "did you mean …?" hints.
    ///
    /// Uses edit distance and only suggests when the distance is small compared with the
    /// address (at most a third of its length, at least 2); very long inputs get no hint.
    pub fn suggest(&self, address: &str) -> Option<&str> {
        suggest_among(address, self.entries.keys().map(String::as_str))
    }

    /// Why `address` is no address when it names a fixed parameter (`/mod/<id>/<param>`
    /// of one that sizes memory when the patch compiles): how to change it instead.
    pub fn fixed_param(&self, address: &str) -> Option<String> {
        let (id, param) = address.strip_prefix(MOD_PREFIX)?.rsplit_once('/')?;
        let (_, spec) = self.modules.iter().find(|(known, _)| known == id)?;
        let fixed = spec.params.iter().find(|p| p.name == param && !p.live)?;
        Some(format!(
            "{} of {} `{id}` is fixed when the patch compiles (it sizes memory, which the audio path never allocates): change it with /patch/set {id} {} <value> and /patch/commit",
            fixed.name, spec.type_name, fixed.name
        ))
    }

    /// The closest parameter address (`/mod/<id>/<param>`) to a mistyped one, for the
    /// hints of `/ramp` and `/get`, which only take parameter addresses.
    pub fn suggest_param(&self, address: &str) -> Option<&str> {
        suggest_among(
            address,
            self.param_addresses
                .iter()
                .flatten()
                .flatten()
                .map(String::as_str),
        )
    }

    /// The closest module instance id to a mistyped one, for the hint of `/params`.
    pub fn suggest_module(&self, id: &str) -> Option<&str> {
        suggest_among(id, self.modules.iter().map(|(id, _)| id.as_str()))
    }

    /// The node index and parameter index of a `/mod/<id>/<param>` address, if this table
    /// has it (used by `/ramp` and `/get`, whose argument is such an address).
    pub fn param_at(&self, address: &str) -> Option<(NodeIndex, u16)> {
        match self.lookup(address)?.target {
            Target::Param { node, param } => Some((node, param)),
            _ => None,
        }
    }

    /// The table of module instances named by type (as `/table.reply` lists them), for a
    /// client rebuilding a server's table.
    ///
    /// # Errors
    /// A type this build does not know (the server is another version), naming it.
    pub fn from_type_names(
        modules: &[(String, String)],
        fault_injection: bool,
    ) -> Result<AddressTable, String> {
        let modules = modules
            .iter()
            .map(|(id, type_name)| {
                chronus_dsp::spec_for(type_name)
                    .or_else(|| {
                        (type_name == chronus_dsp::INSTRUMENT_SPEC.type_name)
                            .then_some(&chronus_dsp::INSTRUMENT_SPEC)
                    })
                    .or_else(|| (type_name == TRACK_SPEC.type_name).then_some(&TRACK_SPEC))
                    .map(|spec| (id.clone(), spec))
                    .ok_or_else(|| format!("module '{id}' is of type '{type_name}', which this chronus does not know (is the server another version?)"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(AddressTable::new(&modules, fault_injection))
    }

    /// The module instances in patch order: (instance id, type name), as `/table.reply`
    /// lists them.
    pub fn module_types(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.modules
            .iter()
            .map(|(id, spec)| (id.as_str(), spec.type_name))
    }

    /// The instruments (name, node), in the patch's order: the first plays the notes that
    /// name none.
    pub fn instruments(&self) -> impl Iterator<Item = (&str, NodeIndex)> {
        self.modules
            .iter()
            .enumerate()
            .filter(|(_, (_, spec))| std::ptr::eq(*spec, &chronus_dsp::INSTRUMENT_SPEC))
            .filter_map(|(i, (id, _))| Some((id.as_str(), NodeIndex::try_from(i).ok()?)))
    }

    /// The node of the instrument called `name`.
    pub fn instrument(&self, name: &str) -> Option<NodeIndex> {
        self.instruments()
            .find(|(known, _)| *known == name)
            .map(|(_, node)| node)
    }

    /// The name of the instrument at `node`.
    pub fn instrument_name(&self, node: NodeIndex) -> Option<&str> {
        self.instruments()
            .find(|(_, known)| *known == node)
            .map(|(name, _)| name)
    }

    /// Whether the fault-injection addresses are in this table.
    pub fn fault_injection(&self) -> bool {
        self.fault_injection
    }

    /// The node index of module instance `id`, if the patch has it.
    pub fn node_of(&self, id: &str) -> Option<NodeIndex> {
        let index = self.modules.iter().position(|(known, _)| known == id)?;
        NodeIndex::try_from(index).ok()
    }

    /// Instance id and spec of module `node` (so the server can answer `/params` with
    /// names, units, ranges and defaults from the one source they are documented from).
    pub fn module(&self, node: NodeIndex) -> Option<(&str, &'static ModuleSpec)> {
        self.modules
            .get(usize::from(node))
            .map(|(id, spec)| (id.as_str(), *spec))
    }

    /// The `/mod/<id>/<param>` address of parameter `param` of module `node`.
    pub fn param_address(&self, node: NodeIndex, param: u16) -> Option<&str> {
        self.param_addresses
            .get(usize::from(node))?
            .get(usize::from(param))?
            .as_deref()
    }

    /// Markdown table (address | arguments | reply | what it does) for the README and
    /// `chronus send --list`. Errors are always answered with `/fail <address> <reason>`.
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| address | arguments (unit, range, default) | reply | what it does |\n| --- | --- | --- | --- |\n",
        );
        for entry in self.entries() {
            let args = if entry.args.is_empty() {
                "none".to_string()
            } else {
                describe_args(&entry.args)
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                entry.address,
                escape_cell(&args),
                escape_cell(entry.reply),
                escape_cell(&entry.doc)
            );
        }
        out
    }

    /// Address and arguments that express `command` (the inverse of decoding), used to
    /// write command logs and to show commands to users. `None` if the command names a
    /// node or parameter this table does not have, and for [`Command::SwitchPatch`], which
    /// is internal (never decoded from a message; logged with
    /// `text::format_patch_log_line` instead).
    pub fn describe(&self, command: &Command) -> Option<(String, Vec<Value>)> {
        match *command {
            Command::SetParam { node, param, value } => Some((
                self.param_address(node, param)?.to_string(),
                vec![Value::Number(value)],
            )),
            Command::Gate { node, on } => {
                let address = self.gate_addresses.get(usize::from(node))?.as_ref()?;
                Some((address.clone(), vec![Value::Gate(on)]))
            }
            Command::EngineGain(gain) => Some((ENGINE_GAIN.to_string(), vec![Value::Number(gain)])),
            Command::TestTone => Some((TEST.to_string(), vec![])),
            // Never logged as a command: a replay must not die of it.
            Command::DebugPoison => None,
            Command::Ramp {
                node,
                param,
                target,
                seconds,
            } => Some((
                RAMP.to_string(),
                vec![
                    Value::Text(self.param_address(node, param)?.to_string()),
                    Value::Number(target),
                    Value::Number(seconds),
                ],
            )),
            Command::SwitchPatch { .. } => None,
            Command::NoteOn { .. }
            | Command::NoteOff { .. }
            | Command::NotePlay { .. }
            | Command::NoteExpression { .. }
            | Command::Sustain { .. }
            | Command::Panic
            | Command::VoiceLimit { .. } => notes::describe(self, command),
            Command::ClockTempo { .. }
            | Command::ClockSwing { .. }
            | Command::ClockRun { .. }
            | Command::TrackRun { .. } => sequencer::describe(self, command),
            Command::Arp {
                instrument,
                setting,
            } => Some(arp::describe(self.instrument_name(instrument)?, setting)),
        }
    }
}

/// Builds the address table of a patch description: each module's spec is looked up by
/// its type name, node indices are positions in `desc.modules`. The server, the CLI and
/// the command-log parser (after a `/patch/load` line) all build their tables here.
///
/// # Errors
/// A message naming the module instance and its unknown type (with a "did you mean …?"
/// hint among the known types) when a type is not in the module registry.
pub fn table_for_patch(desc: &PatchDesc, fault_injection: bool) -> Result<AddressTable, String> {
    // In the patch's node order: the modules, the instruments, then every instrument's
    // members as `<instrument>.<id>`.
    let instruments = desc
        .instruments
        .iter()
        .map(|i| Ok((i.name.clone(), &chronus_dsp::INSTRUMENT_SPEC)));
    let members = desc.instruments.iter().flat_map(|i| {
        i.modules.iter().map(move |m| {
            let id = format!("{}.{}", i.name, m.id);
            (id, m.type_name.as_str())
        })
    });
    let modules = desc
        .modules
        .iter()
        .map(|m| (m.id.clone(), m.type_name.as_str()))
        .chain(members)
        .map(|(id, type_name)| match chronus_dsp::spec_for(type_name) {
            Some(spec) => Ok((id, spec)),
            None => {
                let known = chronus_dsp::all_specs().iter().map(|spec| spec.type_name);
                let hint = match suggest_among(type_name, known) {
                    Some(close) => format!(" (did you mean '{close}'?)"),
                    None => String::new(),
                };
                Err(format!(
                    "unknown module type '{type_name}' for module '{id}'{hint}"
                ))
            }
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut nodes = modules;
    let members = nodes.split_off(desc.modules.len());
    nodes.extend(instruments.collect::<Result<Vec<_>, String>>()?);
    nodes.extend(members);
    nodes.extend(chronus_engine::sequencer::track_nodes(desc));
    Ok(AddressTable::new(&nodes, fault_injection))
}

/// The closest of `candidates` to `input` by edit distance, if close enough (at most a
/// third of the input's length, at least 2); very long inputs get no hint.
fn suggest_among<'a>(input: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let candidates: Vec<&str> = candidates.collect();
    let longest = candidates.iter().map(|c| c.len()).max().unwrap_or(0);
    if input.len() > 2 * longest + 8 {
        return None;
    }
    let limit = (input.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|known| (edit_distance(input, known), known))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, known)| known)
}

fn param_entry(
    address: String,
    id: &str,
    spec: &ModuleSpec,
    param: &ParamSpec,
    node: NodeIndex,
    param_index: u16,
) -> Entry {
    Entry {
        address,
        args: vec![ArgSpec {
            name: param.name,
            kind: ArgKind::Number {
                unit: param.unit,
                min: param.min,
                max: param.max,
                default: param.default,
            },
            optional: false,
        }],
        reply: "none",
        doc: format!("{} `{id}`: {}", spec.type_name, param.doc),
        target: Target::Param {
            node,
            param: param_index,
        },
    }
}

fn escape_cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Levenshtein distance over chars (small inputs only: callers bound the length).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chronus_dsp::spec::{PortSpec, Rate};

    const OUT: &[PortSpec] = &[PortSpec {
        name: "out",
        rate: Rate::Audio,
    }];

    /// A sine-like module for tests (the real module specs are another crate's business).
    pub(crate) static SINE: ModuleSpec = ModuleSpec {
        type_name: "sine",
        doc: "sine oscillator",
        inputs: &[],
        outputs: OUT,
        params: &[
            ParamSpec {
                name: "freq",
                unit: Unit::Hertz,
                min: 0.01,
                max: 20000.0,
                default: 440.0,
                doc: "frequency",
                live: true,
            },
            ParamSpec {
                name: "amp",
                unit: Unit::Linear,
                min: 0.0,
                max: 1.0,
                default: 0.5,
                doc: "output level",
                live: true,
            },
        ],
        has_gate: false,
    };

    /// An envelope-like module with a gate.
    pub(crate) static ENV: ModuleSpec = ModuleSpec {
        type_name: "adsr",
        doc: "envelope",
        inputs: &[],
        outputs: OUT,
        params: &[
            ParamSpec {
                name: "attack",
                unit: Unit::Milliseconds,
                min: 0.0,
                max: 10000.0,
                default: 10.0,
                doc: "attack time",
                live: true,
            },
            ParamSpec {
                name: "level",
                unit: Unit::Decibels,
                min: -60.0,
                max: 0.0,
                default: -6.0,
                doc: "sustain level | in dB",
                live: true,
            },
        ],
        has_gate: true,
    };

    /// The table used by most tests: `sine` (node 0) and `env` (node 1), fault injection on.
    pub(crate) fn table() -> AddressTable {
        AddressTable::new(
            &[
                ("sine".to_string(), &SINE),
                ("env".to_string(), &ENV),
                ("keys".to_string(), &chronus_dsp::INSTRUMENT_SPEC),
            ],
            true,
        )
    }

    #[test]
    fn builds_param_gate_and_fixed_addresses() {
        let t = table();
        let freq = t.lookup("/mod/sine/freq").unwrap();
        assert_eq!(freq.target, Target::Param { node: 0, param: 0 });
        assert_eq!(freq.signature(), "<freq>");
        assert_eq!(
            t.lookup("/mod/env/level").unwrap().target,
            Target::Param { node: 1, param: 1 }
        );
        assert_eq!(
            t.lookup("/gate/env").unwrap().target,
            Target::Gate { node: 1 }
        );
        assert!(t.lookup("/gate/sine").is_none());
        for address in [
            ENGINE_GAIN,
            TEST,
            STATUS,
            METRICS,
            SYNC,
            VERSION,
            QUIT,
            DEBUG_CRASH,
            DEBUG_HANG,
            DEBUG_SLOW,
            DEBUG_PANIC,
            DEBUG_DIVERGE,
            DEBUG_SEGV,
            DEBUG_DSP_PANIC,
            DEBUG_SPARE_DIES,
        ] {
            assert!(t.lookup(address).is_some(), "{address}");
        }
        assert_eq!(t.lookup(DEBUG_SLOW).unwrap().signature(), "<micros> [slot]");
        assert_eq!(t.lookup(DEBUG_SLOW).unwrap().required_args(), 1);
    }

    #[test]
    fn debug_addresses_need_fault_injection() {
        let t = AddressTable::new(&[("sine".to_string(), &SINE)], false);
        assert!(t.lookup(DEBUG_CRASH).is_none());
        assert!(t.lookup(DEBUG_HANG).is_none());
        assert!(t.lookup(DEBUG_SLOW).is_none());
        assert!(t.lookup(DEBUG_PANIC).is_none());
        assert!(t.lookup(STATUS).is_some());
    }

    #[test]
    fn entries_are_sorted() {
        let t = table();
        let addresses: Vec<_> = t.entries().map(|e| e.address.clone()).collect();
        let mut sorted = addresses.clone();
        sorted.sort();
        assert_eq!(addresses, sorted);
        assert_eq!(addresses.len(), t.len());
        assert!(!t.is_empty());
    }

    #[test]
    fn markdown_lists_every_address() {
        let t = table();
        let md = t.to_markdown();
        for entry in t.entries() {
            assert!(
                md.contains(&format!("`{}`", entry.address)),
                "{}",
                entry.address
            );
        }
        assert!(md.contains("freq: Hz 0.01..20000, default 440"));
        assert!(md.contains("slot: int 0..1, optional"));
        assert!(md.contains("sustain level \\| in dB"));
        // One header, one separator, one row per entry.
        assert_eq!(md.lines().count(), t.len() + 2);
    }

    #[test]
    fn describe_inverts_the_table() {
        let t = table();
        assert_eq!(
            t.describe(&Command::SetParam {
                node: 0,
                param: 0,
                value: 440.0
            }),
            Some(("/mod/sine/freq".to_string(), vec![Value::Number(440.0)]))
        );
        assert_eq!(
            t.describe(&Command::Gate { node: 1, on: true }),
            Some(("/gate/env".to_string(), vec![Value::Gate(true)]))
        );
        assert_eq!(
            t.describe(&Command::EngineGain(0.5)),
            Some(("/engine/gain".to_string(), vec![Value::Number(0.5)]))
        );
        assert_eq!(
            t.describe(&Command::TestTone),
            Some(("/test".to_string(), vec![]))
        );
        assert_eq!(t.describe(&Command::Gate { node: 0, on: true }), None);
        assert_eq!(
            t.describe(&Command::SetParam {
                node: 9,
                param: 0,
                value: 1.0
            }),
            None
        );
        assert_eq!(
            t.describe(&Command::Ramp {
                node: 1,
                param: 1,
                target: -12.0,
                seconds: 1.5
            }),
            Some((
                "/ramp".to_string(),
                vec![
                    Value::Text("/mod/env/level".to_string()),
                    Value::Number(-12.0),
                    Value::Number(1.5)
                ]
            ))
        );
        assert_eq!(
            t.describe(&Command::Ramp {
                node: 0,
                param: 7,
                target: 1.0,
                seconds: 1.0
            }),
            None
        );
        // Internal: never decoded, logged with `format_patch_log_line`.
        assert_eq!(
            t.describe(&Command::SwitchPatch {
                version: 2,
                len: 10,
                at: chronus_engine::SwitchAt::Now,
            }),
            None
        );
    }

    #[test]
    fn patch_editing_addresses_are_always_there() {
        let t = AddressTable::new(&[], false);
        let expected = [
            (RAMP, "<address> <target> <seconds>"),
            (GET, "<address>"),
            (PARAMS, "<id>"),
            (PATCH_ADD, "<id> <type>"),
            (PATCH_REMOVE, "<id>"),
            (PATCH_CONNECT, "<from> <to>"),
            (PATCH_DISCONNECT, "<from> <to>"),
            (PATCH_SET, "<id> <param> <value>"),
            (PATCH_COMMIT, ""),
            (PATCH_REVERT, ""),
            (PATCH_DUMP, ""),
        ];
        for (address, signature) in expected {
            let entry = t.lookup(address).unwrap();
            assert_eq!(entry.signature(), signature, "{address}");
            assert!(
                matches!(entry.target, Target::Fixed(fixed) if fixed.address == address),
                "{address}"
            );
            assert_eq!(entry.is_engine_command(), address == RAMP, "{address}");
        }
        assert!(
            t.lookup(PATCH_LOAD).is_none(),
            "/patch/load is for logs only"
        );
        assert_eq!(
            t.lookup(GET).unwrap().reply,
            "/get.reply <address> <value:f>"
        );
        assert_eq!(
            t.lookup(PATCH_DUMP).unwrap().reply,
            "/patch/dump.reply <toml>"
        );
        assert_eq!(t.lookup(PATCH_SET).unwrap().reply, "/done /patch/set");
    }

    #[test]
    fn markdown_documents_the_new_addresses() {
        let md = table().to_markdown();
        assert!(md.contains(
            "| `/ramp` | address: text, up to 256 bytes; target: number; seconds: s 0..3600, default 0 | none |"
        ), "{md}");
        assert!(md.contains(
            "| `/params` | id: text, up to 256 bytes | /params.reply <id> then per parameter"
        ));
        assert!(md.contains("| `/patch/set` | id: text, up to 256 bytes; param: text, up to 256 bytes; value: number | /done /patch/set |"));
        assert!(md.contains("| `/patch/commit` | none | /done /patch/commit |"));
        assert!(md.contains("| `/patch/dump` | none | /patch/dump.reply <toml> |"));
        let text = ArgSpec {
            name: "toml",
            kind: ArgKind::Text {
                max_len: MAX_PATCH_TEXT_BYTES,
            },
            optional: true,
        };
        assert_eq!(text.describe(), "toml: text, up to 4096 bytes, optional");
        assert_eq!(text.expectation(), "a text (OSC string)");
    }

    #[test]
    fn module_and_parameter_lookups() {
        let t = table();
        assert_eq!(t.param_at("/mod/env/level"), Some((1, 1)));
        assert_eq!(t.param_at("/gate/env"), None);
        assert_eq!(t.param_at("/status"), None);
        assert_eq!(t.param_at("/mod/env/nope"), None);
        assert_eq!(t.node_of("env"), Some(1));
        assert_eq!(t.node_of("sine"), Some(0));
        assert_eq!(t.node_of("nope"), None);
        let (id, spec) = t.module(1).unwrap();
        assert_eq!((id, spec.type_name), ("env", "adsr"));
        assert_eq!(t.module(2).map(|(id, _)| id), Some("keys"));
        assert!(t.module(3).is_none());
        assert_eq!(t.instruments().collect::<Vec<_>>(), [("keys", 2)]);
        assert_eq!(t.instrument("keys"), Some(2));
        assert_eq!(t.instrument("env"), None);
        assert_eq!(t.instrument_name(2), Some("keys"));
        assert_eq!(t.param_address(0, 1), Some("/mod/sine/amp"));
        assert_eq!(t.param_address(0, 2), None);
        assert_eq!(t.suggest_param("/mod/sine/frq"), Some("/mod/sine/freq"));
        // Only parameter addresses are suggested, never /status and friends.
        assert_eq!(t.suggest_param("/stauts"), None);
        assert_eq!(t.suggest_module("sinee"), Some("sine"));
        assert_eq!(t.suggest_module("zzzzzzzzzz"), None);
    }

    #[test]
    fn tables_for_patch_descriptions() {
        let desc = PatchDesc::default_patch();
        let t = table_for_patch(&desc, false).unwrap();
        for (index, module) in desc.modules.iter().enumerate() {
            assert_eq!(
                t.node_of(&module.id),
                Some(index as NodeIndex),
                "{}",
                module.id
            );
            let (_, spec) = t.module(index as NodeIndex).unwrap();
            assert_eq!(spec.type_name, module.type_name);
        }
        assert!(t.lookup(DEBUG_CRASH).is_none());
        assert!(table_for_patch(&desc, true)
            .unwrap()
            .lookup(DEBUG_CRASH)
            .is_some());

        let mut bad = desc.clone();
        bad.modules[0].type_name = "sinee".to_string();
        let id = bad.modules[0].id.clone();
        assert_eq!(
            table_for_patch(&bad, false).unwrap_err(),
            format!("unknown module type 'sinee' for module '{id}' (did you mean 'sine'?)")
        );
        bad.modules[0].type_name = "qqqqqqqqqqqqqqqqqq".to_string();
        assert_eq!(
            table_for_patch(&bad, false).unwrap_err(),
            format!("unknown module type 'qqqqqqqqqqqqqqqqqq' for module '{id}'")
        );
    }

    #[test]
    fn engine_command_addresses_are_the_tables_engine_commands() {
        assert_eq!(
            engine_command_addresses(),
            "/mod/…, /gate/…, /seq/<track>/start|stop, /arp/…, /engine/gain, /test, /ramp, /note/on, /note/off, /note/play, /note/bend, /note/pressure, /note/timbre, /sustain, /panic, /voices/limit, /clock/bpm, /clock/swing, /clock/start and /clock/stop"
        );
        let t = AddressTable::new(&[], false);
        for address in [ENGINE_GAIN, TEST, RAMP] {
            assert!(t.lookup(address).unwrap().is_engine_command(), "{address}");
        }
        let engine: Vec<&str> = t
            .entries()
            .filter(|entry| entry.is_engine_command())
            .map(|entry| entry.address.as_str())
            .collect();
        assert_eq!(
            engine,
            [
                "/clock/bpm",
                "/clock/start",
                "/clock/stop",
                "/clock/swing",
                ENGINE_GAIN,
                "/note/bend",
                "/note/off",
                "/note/on",
                "/note/play",
                "/note/pressure",
                "/note/timbre",
                "/panic",
                RAMP,
                "/sustain",
                TEST,
                "/voices/limit"
            ]
        );
    }

    #[test]
    fn suggestions_use_edit_distance() {
        let t = table();
        assert_eq!(t.suggest("/mod/sine/freqq"), Some("/mod/sine/freq"));
        assert_eq!(t.suggest("/mod/sinee/freq"), Some("/mod/sine/freq"));
        assert_eq!(t.suggest("/stauts"), Some("/status"));
        assert_eq!(t.suggest("/completely/unrelated/thing"), None);
        assert_eq!(t.suggest(&"x".repeat(10_000)), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn topic_sets_know_which_topics_analyse_the_sound() {
        for topic in Topic::ALL {
            assert_eq!(
                Topics::of(&[topic]).any_audio(),
                topic.is_audio(),
                "{topic:?}"
            );
            assert_eq!(Topic::from_name(topic.name()), Some(topic));
        }
        assert!(!Topics::of(&Topic::EVENTS).any_audio());
        let all = Topics::of(&Topic::ALL);
        assert_eq!(all.iter().collect::<Vec<_>>(), Topic::ALL.to_vec());
        assert_eq!(Topics::from_bits(all.bits()), all);
    }
}
