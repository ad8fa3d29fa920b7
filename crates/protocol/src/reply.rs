//! Replies: encoders for what the server answers, and the client-side decoder that
//! `chronus send` and `chronus status` use to read them.
//!
//! Layouts follow scsynth so existing clients understand them: `/fail <address> <reason>`,
//! `/done <address>`, `/synced <id>`, `/status.reply ,iiiiiffdd`, `/version.reply`.
//! Chronus's own queries answer in the same style: `/get.reply <address> <value>`,
//! `/params.reply <id> [name unit min max default current]…`, `/patch/dump.reply <toml>`.
//! Pushes to `/notify` subscribers are `/chronus/<topic>` messages (`push_*` below).

use rosc::{OscMessage, OscPacket, OscType};

/// Address of the failure reply.
pub const FAIL: &str = "/fail";
/// Address of the completion reply.
pub const DONE: &str = "/done";
/// Address of the `/sync` barrier reply.
pub const SYNCED: &str = "/synced";
/// Address of the `/status` reply.
pub const STATUS_REPLY: &str = "/status.reply";
/// Address of the `/metrics` reply.
pub const METRICS_REPLY: &str = "/metrics.reply";
/// Address of the `/version` reply.
pub const VERSION_REPLY: &str = "/version.reply";

/// Address of the `/get` reply.
pub const GET_REPLY: &str = "/get.reply";
/// Address of the `/params` reply.
pub const PARAMS_REPLY: &str = "/params.reply";
/// Address of the `/patch/dump` reply.
pub const PATCH_DUMP_REPLY: &str = "/patch/dump.reply";
/// Address of the answer to `/table`.
pub const TABLE_REPLY: &str = "/table.reply";
/// Address of the answer to `/library/list`.
pub const LIBRARY_LIST_REPLY: &str = "/library/list.reply";

/// One parameter as `/params.reply` describes it, so a client can discover a module
/// (build a UI, check a range) without reading the docs.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    /// Parameter name, as in `/mod/<id>/<name>`.
    pub name: String,
    /// Unit symbol (`Hz`, `ms`, `s`, `dB`, `0..1`, `Q`, or empty for a plain number).
    pub unit: String,
    /// Smallest accepted value.
    pub min: f32,
    /// Largest accepted value.
    pub max: f32,
    /// Value a fresh module starts with.
    pub default: f32,
    /// Value the parameter has now (its smoothing target).
    pub current: f32,
}

impl ParamInfo {
    /// The description of `spec` with its current value, so the server answers with the
    /// names, units and ranges from the one place they are declared.
    pub fn from_spec(spec: &chronus_dsp::spec::ParamSpec, current: f32) -> ParamInfo {
        ParamInfo {
            name: spec.name.to_string(),
            unit: spec.unit.symbol().to_string(),
            min: spec.min,
            max: spec.max,
            default: spec.default,
            current,
        }
    }
}

/// The status report, in scsynth's `/status.reply` layout (`,iiiiiffdd`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatusReply {
    /// Module instances in the patch (scsynth: unit generators).
    pub modules: i32,
    /// Voices currently sounding (scsynth: synths).
    pub voices: i32,
    /// Groups (Chronus has one).
    pub groups: i32,
    /// Patches loaded (scsynth: synth definitions).
    pub patches: i32,
    /// Average worker load, percent of the block period.
    pub avg_load: f32,
    /// Peak worker load, percent of the block period.
    pub peak_load: f32,
    /// Sample rate the server was asked for.
    pub nominal_sample_rate: f64,
    /// Sample rate the output actually runs at, as measured.
    pub actual_sample_rate: f64,
}

/// The version report, in scsynth's `/version.reply` layout
/// (program, major, minor, patch string, branch, commit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionReply {
    /// Program name ("chronus").
    pub program: String,
    /// Major version.
    pub major: i32,
    /// Minor version.
    pub minor: i32,
    /// Patch version as scsynth writes it, e.g. ".0".
    pub patch: String,
    /// Source branch, or empty if unknown.
    pub branch: String,
    /// Commit hash, or empty if unknown.
    pub commit: String,
}

impl VersionReply {
    /// The version of this build, from Cargo's package version (branch and commit empty).
    pub fn this_build() -> VersionReply {
        let parse = |s: &str| s.parse().unwrap_or(0);
        VersionReply {
            program: "chronus".to_string(),
            major: parse(env!("CARGO_PKG_VERSION_MAJOR")),
            minor: parse(env!("CARGO_PKG_VERSION_MINOR")),
            patch: format!(".{}", env!("CARGO_PKG_VERSION_PATCH")),
            branch: String::new(),
            commit: String::new(),
        }
    }
}

/// A value in `/metrics.reply`: a number (sent as an OSC double) or a text (sent as an
/// OSC string, e.g. a worker's role).
#[derive(Debug, Clone, PartialEq)]
pub enum MetricValue {
    /// Counters, times, flags (as 0/1).
    Number(f64),
    /// Names such as a worker's role.
    Text(String),
}

impl MetricValue {
    /// The number, if this is one (clients that only chart numbers skip texts).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            MetricValue::Number(v) => Some(*v),
            MetricValue::Text(_) => None,
        }
    }

    fn to_osc(&self) -> OscType {
        match self {
            MetricValue::Number(v) => OscType::Double(*v),
            MetricValue::Text(t) => OscType::String(t.clone()),
        }
    }
}

impl From<f64> for MetricValue {
    fn from(value: f64) -> MetricValue {
        MetricValue::Number(value)
    }
}

impl From<&str> for MetricValue {
    fn from(value: &str) -> MetricValue {
        MetricValue::Text(value.to_string())
    }
}

impl From<String> for MetricValue {
    fn from(value: String) -> MetricValue {
        MetricValue::Text(value)
    }
}

impl std::fmt::Display for MetricValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricValue::Number(v) => write!(f, "{v}"),
            MetricValue::Text(t) => f.write_str(t),
        }
    }
}

/// A reply as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `/synced <id>`.
    Synced(i32),
    /// `/fail <address> <reason>`.
    Fail {
        /// Address of the refused message.
        address: String,
        /// Why it was refused.
        reason: String,
    },
    /// `/done <address>`.
    Done(String),
    /// `/status.reply`.
    Status(StatusReply),
    /// `/metrics.reply` name/value pairs, in the order sent.
    Metrics(Vec<(String, MetricValue)>),
    /// `/version.reply`.
    Version(VersionReply),
    /// `/get.reply <address> <value>`.
    Get {
        /// The parameter's `/mod/<id>/<param>` address.
        address: String,
        /// Its current value.
        value: f32,
    },
    /// `/params.reply <id>` with each parameter's six values.
    Params {
        /// The module instance id.
        id: String,
        /// Its parameters, in spec order.
        params: Vec<ParamInfo>,
    },
    /// `/patch/dump.reply <toml>`: the draft patch as TOML text.
    PatchDump(String),
    /// `/table.reply <fault_injection> [<id> <type>]…`: the running patch's modules.
    Table {
        /// Whether the server has the fault-injection addresses.
        fault_injection: bool,
        /// (instance id, type name) of each module, in patch order.
        modules: Vec<(String, String)>,
    },
    /// `/library/list.reply [<name> <kind>]…`: the library's patches, each `saved` or
    /// `preset`.
    LibraryList(Vec<(String, String)>),
    /// Any other message (shown raw by `chronus send`).
    Other(OscMessage),
}

/// Why a reply datagram could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// The bytes are not an OSC message.
    #[error("reply is not an OSC message: {0}")]
    NotOsc(String),
    /// A known reply address with arguments that do not fit its layout.
    #[error("malformed {address} reply: {reason}")]
    Malformed {
        /// The reply's address.
        address: String,
        /// What did not fit.
        reason: String,
    },
}

fn encode(addr: &str, args: Vec<OscType>) -> Vec<u8> {
    let packet = OscPacket::Message(OscMessage {
        addr: addr.to_string(),
        args,
    });
    let mut bytes = Vec::new();
    // Writing into a Vec cannot fail (its error type is Infallible).
    match rosc::encoder::encode_into(&packet, &mut bytes) {
        Ok(_) => bytes,
        Err(never) => match never {},
    }
}

/// `/fail <address> <reason>` (`,ss`): the answer to every refused message.
pub fn fail(address: &str, reason: &str) -> Vec<u8> {
    encode(FAIL, vec![address.into(), reason.into()])
}

/// `/done <address>` (`,s`): the answer to a completed command such as `/quit`.
pub fn done(address: &str) -> Vec<u8> {
    encode(DONE, vec![address.into()])
}

/// `/done /midi/learn <address> <channel> <controller>` (`,ssii`): a learned mapping,
/// sent to the learner when the controller moves.
pub fn learned(address: &str, channel: u8, controller: u8) -> Vec<u8> {
    encode(
        DONE,
        vec![
            crate::table::midi::MIDI_LEARN.into(),
            address.into(),
            OscType::Int(i32::from(channel)),
            OscType::Int(i32::from(controller)),
        ],
    )
}

/// `/synced <id>` (`,i`): the answer to `/sync <id>`.
pub fn synced(id: i32) -> Vec<u8> {
    encode(SYNCED, vec![OscType::Int(id)])
}

/// `/status.reply` with exactly the types `,iiiiiffdd`, as scsynth sends it: unused (1),
/// modules, voices, groups, patches, average load %, peak load %, nominal and actual rate.
pub fn status_reply(status: &StatusReply) -> Vec<u8> {
    encode(
        STATUS_REPLY,
        vec![
            OscType::Int(1),
            OscType::Int(status.modules),
            OscType::Int(status.voices),
            OscType::Int(status.groups),
            OscType::Int(status.patches),
            OscType::Float(status.avg_load),
            OscType::Float(status.peak_load),
            OscType::Double(status.nominal_sample_rate),
            OscType::Double(status.actual_sample_rate),
        ],
    )
}

/// `/metrics.reply` with alternating string name / value arguments: numbers as doubles,
/// texts as strings. Takes `(String, f64)` or `(String, MetricValue)` pairs.
pub fn metrics_reply<V>(metrics: &[(String, V)]) -> Vec<u8>
where
    V: Clone + Into<MetricValue>,
{
    encode(METRICS_REPLY, metrics_args(metrics))
}

/// Name/value pairs as `/metrics.reply` and `/chronus/metrics` carry them.
fn metrics_args<V>(metrics: &[(String, V)]) -> Vec<OscType>
where
    V: Clone + Into<MetricValue>,
{
    metrics
        .iter()
        .flat_map(|(name, value)| [OscType::String(name.clone()), value.clone().into().to_osc()])
        .collect()
}

/// `/version.reply` (`,siisss`): program, major, minor, patch, branch, commit.
pub fn version_reply(version: &VersionReply) -> Vec<u8> {
    encode(
        VERSION_REPLY,
        vec![
            version.program.as_str().into(),
            OscType::Int(version.major),
            OscType::Int(version.minor),
            version.patch.as_str().into(),
            version.branch.as_str().into(),
            version.commit.as_str().into(),
        ],
    )
}

/// `/table.reply <fault_injection> [<id> <type>]…` (`,i` then `ss` per module): the
/// answer to `/table`, the running patch's module instances in patch order.
pub fn table_reply(table: &crate::AddressTable) -> Vec<u8> {
    let mut args = vec![OscType::Int(i32::from(table.fault_injection()))];
    for (id, type_name) in table.module_types() {
        args.extend([OscType::String(id.to_string()), type_name.into()]);
    }
    encode(TABLE_REPLY, args)
}

/// `/get.reply <address> <value>` (`,sf`): the answer to `/get <address>`.
pub fn get_reply(address: &str, value: f32) -> Vec<u8> {
    encode(GET_REPLY, vec![address.into(), OscType::Float(value)])
}

/// `/params.reply <id>` followed by six values per parameter (`,s` then `ssffff` per
/// parameter): name, unit, min, max, default, current. The answer to `/params <id>`.
pub fn params_reply(id: &str, params: &[ParamInfo]) -> Vec<u8> {
    let mut args = Vec::with_capacity(1 + 6 * params.len());
    args.push(OscType::String(id.to_string()));
    for p in params {
        args.extend([
            OscType::String(p.name.clone()),
            OscType::String(p.unit.clone()),
            OscType::Float(p.min),
            OscType::Float(p.max),
            OscType::Float(p.default),
            OscType::Float(p.current),
        ]);
    }
    encode(PARAMS_REPLY, args)
}

/// `/patch/dump.reply <toml>` (`,s`): the answer to `/patch/dump`.
pub fn patch_dump_reply(toml: &str) -> Vec<u8> {
    encode(PATCH_DUMP_REPLY, vec![toml.into()])
}

/// `/library/list.reply [<name> <kind>]…` (`ss` per patch): the answer to
/// `/library/list`, each patch's name and whether it is `saved` or a `preset`.
pub fn library_list_reply(patches: &[(String, &str)]) -> Vec<u8> {
    let args = patches
        .iter()
        .flat_map(|(name, kind)| [OscType::String(name.clone()), (*kind).into()])
        .collect();
    encode(LIBRARY_LIST_REPLY, args)
}

/// Address of the `failover` push: `/chronus/failover <slot:i> <frame:h> <cause:s>`.
pub const PUSH_FAILOVER: &str = "/chronus/failover";
/// Address of the `worker` push: `/chronus/worker <slot:i> <role:s> <pid:i>`.
pub const PUSH_WORKER: &str = "/chronus/worker";
/// Address of the `metrics` push (laid out as `/metrics.reply`).
pub const PUSH_METRICS: &str = "/chronus/metrics";
/// Address of the `levels` push: `/chronus/levels <peak L> <rms L> <peak R> <rms R>`.
pub const PUSH_LEVELS: &str = "/chronus/levels";
/// Address of the `scope` push: `/chronus/scope <step:i>` then interleaved frames.
pub const PUSH_SCOPE: &str = "/chronus/scope";
/// Address of the `spectrum` push: `/chronus/spectrum <low Hz> <high Hz>` then band levels.
pub const PUSH_SPECTRUM: &str = "/chronus/spectrum";
/// Address of the `params` push: `/chronus/params <address:s> <value:f> [seconds:f]`.
pub const PUSH_PARAMS: &str = "/chronus/params";
/// Address of the `patch` push: `/chronus/patch <version:i> <frame:h>`.
pub const PUSH_PATCH: &str = "/chronus/patch";
/// Address of the `seq` push:
/// `/chronus/seq <bar:i> <sixteenth:i> <beats:f> <bpm:f> <running:i>`.
pub const PUSH_SEQ: &str = "/chronus/seq";
/// Address of the `audio` topic's pushes.
pub const PUSH_AUDIO: &str = "/chronus/audio";

/// `/chronus/failover <slot> <frame> <cause>` (`,ihs`): the output now reads `slot`, from
/// the block starting at `frame`, because of `cause` (`worker died`, `missed deadline`).
pub fn push_failover(slot: i32, frame: u64, cause: &str) -> Vec<u8> {
    encode(
        PUSH_FAILOVER,
        vec![
            OscType::Int(slot),
            OscType::Long(frame as i64),
            cause.into(),
        ],
    )
}

/// `/chronus/worker <slot> <role> <pid>` (`,isi`): the slot's state changed (`starting`,
/// `joining`, `standby`, `active`, `dead`, `empty`), with its worker's pid (0: none).
pub fn push_worker(slot: i32, role: &str, pid: u32) -> Vec<u8> {
    encode(
        PUSH_WORKER,
        vec![OscType::Int(slot), role.into(), OscType::Int(pid as i32)],
    )
}

/// `/chronus/metrics` name/value pairs, laid out as [`metrics_reply`].
pub fn push_metrics(metrics: &[(String, MetricValue)]) -> Vec<u8> {
    encode(PUSH_METRICS, metrics_args(metrics))
}

/// `/chronus/levels` (`,ffff` for stereo): peak then RMS of each channel, linear (1.0 is
/// full scale), over the audio played since the last push.
pub fn push_levels(peak_rms: &[(f32, f32)]) -> Vec<u8> {
    let args = peak_rms
        .iter()
        .flat_map(|&(peak, rms)| [OscType::Float(peak), OscType::Float(rms)])
        .collect();
    encode(PUSH_LEVELS, args)
}

/// `/chronus/scope <step>` then interleaved samples (`,i` then `f` each): every `step`-th
/// frame of the latest window of the output.
pub fn push_scope(step: i32, interleaved: &[f32]) -> Vec<u8> {
    let mut args = Vec::with_capacity(1 + interleaved.len());
    args.push(OscType::Int(step));
    args.extend(interleaved.iter().map(|&v| OscType::Float(v)));
    encode(PUSH_SCOPE, args)
}

/// `/chronus/spectrum <low Hz> <high Hz>` then one level per band in dBFS (`,ff` then `f`
/// each): the bands split `low..high` into equal ratios.
pub fn push_spectrum(low_hz: f32, high_hz: f32, bands_db: &[f32]) -> Vec<u8> {
    let mut args = Vec::with_capacity(2 + bands_db.len());
    args.extend([OscType::Float(low_hz), OscType::Float(high_hz)]);
    args.extend(bands_db.iter().map(|&v| OscType::Float(v)));
    encode(PUSH_SPECTRUM, args)
}

/// `/chronus/audio <first frame> <samples>` (`,hb`): the output's samples from frame
/// `first_frame` on the server's timeline, interleaved stereo, as f32 little-endian bytes.
pub fn push_audio(first_frame: u64, interleaved: &[f32]) -> Vec<u8> {
    let bytes = interleaved.iter().flat_map(|v| v.to_le_bytes()).collect();
    encode(
        PUSH_AUDIO,
        vec![OscType::Long(first_frame as i64), OscType::Blob(bytes)],
    )
}

/// `/chronus/params <address> <value>` (`,sf`), or with `seconds` (`,sff`) for a glide
/// towards `value`: a parameter change the server accepted.
pub fn push_params(address: &str, value: f32, seconds: Option<f32>) -> Vec<u8> {
    let mut args = vec![address.into(), OscType::Float(value)];
    args.extend(seconds.map(OscType::Float));
    encode(PUSH_PARAMS, args)
}

/// `/chronus/patch <version> <frame>` (`,ih`): committed patch `version` plays from
/// `frame`.
pub fn push_patch(version: u32, frame: u64) -> Vec<u8> {
    encode(
        PUSH_PATCH,
        vec![OscType::Int(version as i32), OscType::Long(frame as i64)],
    )
}

/// `/chronus/seq <bar> <sixteenth> <beats> <bpm> <running>`: the sequencer's clock is in
/// bar `bar` (from 1), on sixteenth `sixteenth` of it (0 to 15), `beats` beats since bar
/// 1, at `bpm`; `running` 0 once it stopped.
pub fn push_seq(bar: u64, sixteenth: u64, beats: f64, bpm: f64, running: bool) -> Vec<u8> {
    encode(
        PUSH_SEQ,
        vec![
            OscType::Int(i32::try_from(bar).unwrap_or(i32::MAX)),
            OscType::Int(sixteenth as i32),
            OscType::Float(beats as f32),
            OscType::Float(bpm as f32),
            OscType::Int(i32::from(running)),
        ],
    )
}

/// Reads one reply datagram (client side: `chronus send`, `chronus status`).
///
/// Numbers are read leniently (any OSC number type), so replies from scsynth-compatible
/// servers that send other number types still parse.
///
/// # Errors
/// [`ReplyError::NotOsc`] if the bytes are not a single OSC message;
/// [`ReplyError::Malformed`] if a known reply address carries arguments that do not fit.
pub fn parse_reply(bytes: &[u8]) -> Result<Reply, ReplyError> {
    let (rest, packet) =
        rosc::decoder::decode_udp(bytes).map_err(|e| ReplyError::NotOsc(e.to_string()))?;
    if !rest.is_empty() {
        return Err(ReplyError::NotOsc(format!(
            "{} bytes left after the message",
            rest.len()
        )));
    }
    let OscPacket::Message(msg) = packet else {
        return Err(ReplyError::NotOsc(
            "got a bundle, expected a message".into(),
        ));
    };
    let malformed = |reason: &str| ReplyError::Malformed {
        address: msg.addr.clone(),
        reason: reason.to_string(),
    };
    let args = &msg.args;
    let string = |i: usize| match args.get(i) {
        Some(OscType::String(s)) => Ok(s.clone()),
        _ => Err(malformed(&format!("argument {} must be a string", i + 1))),
    };
    let number = |i: usize| match args.get(i) {
        Some(OscType::Int(v)) => Ok(f64::from(*v)),
        Some(OscType::Long(v)) => Ok(*v as f64),
        Some(OscType::Float(v)) => Ok(f64::from(*v)),
        Some(OscType::Double(v)) => Ok(*v),
        _ => Err(malformed(&format!("argument {} must be a number", i + 1))),
    };
    let int = |i: usize| match args.get(i) {
        Some(OscType::Int(v)) => Ok(*v),
        _ => Err(malformed(&format!("argument {} must be an int", i + 1))),
    };
    let reply = match msg.addr.as_str() {
        SYNCED => Reply::Synced(int(0)?),
        FAIL => Reply::Fail {
            address: string(0)?,
            // scsynth sometimes sends /fail with only the command name.
            reason: string(1).unwrap_or_default(),
        },
        DONE => Reply::Done(string(0)?),
        STATUS_REPLY => {
            if args.len() < 9 {
                return Err(malformed("expected 9 arguments (,iiiiiffdd)"));
            }
            Reply::Status(StatusReply {
                modules: number(1)? as i32,
                voices: number(2)? as i32,
                groups: number(3)? as i32,
                patches: number(4)? as i32,
                avg_load: number(5)? as f32,
                peak_load: number(6)? as f32,
                nominal_sample_rate: number(7)?,
                actual_sample_rate: number(8)?,
            })
        }
        METRICS_REPLY => {
            if args.len() % 2 != 0 {
                return Err(malformed("expected name/value pairs"));
            }
            let mut metrics = Vec::with_capacity(args.len() / 2);
            for i in (0..args.len()).step_by(2) {
                let value = match args.get(i + 1) {
                    Some(OscType::String(t)) => MetricValue::Text(t.clone()),
                    _ => MetricValue::Number(number(i + 1)?),
                };
                metrics.push((string(i)?, value));
            }
            Reply::Metrics(metrics)
        }
        VERSION_REPLY => Reply::Version(VersionReply {
            program: string(0)?,
            major: number(1)? as i32,
            minor: number(2)? as i32,
            patch: string(3)?,
            branch: string(4).unwrap_or_default(),
            commit: string(5).unwrap_or_default(),
        }),
        GET_REPLY => Reply::Get {
            address: string(0)?,
            value: number(1)? as f32,
        },
        PARAMS_REPLY => {
            let id = string(0)?;
            let rest = args.len().saturating_sub(1);
            if args.is_empty() || rest % 6 != 0 {
                return Err(malformed(
                    "expected an id then 6 values per parameter (name, unit, min, max, default, current)",
                ));
            }
            let mut params = Vec::with_capacity(rest / 6);
            for first in (1..args.len()).step_by(6) {
                params.push(ParamInfo {
                    name: string(first)?,
                    unit: string(first + 1)?,
                    min: number(first + 2)? as f32,
                    max: number(first + 3)? as f32,
                    default: number(first + 4)? as f32,
                    current: number(first + 5)? as f32,
                });
            }
            Reply::Params { id, params }
        }
        PATCH_DUMP_REPLY => Reply::PatchDump(string(0)?),
        TABLE_REPLY => {
            if args.len() % 2 != 1 {
                return Err(malformed(
                    "expected a flag then an id and a type per module",
                ));
            }
            let modules = (1..args.len())
                .step_by(2)
                .map(|i| Ok((string(i)?, string(i + 1)?)))
                .collect::<Result<Vec<_>, ReplyError>>()?;
            Reply::Table {
                fault_injection: int(0)? != 0,
                modules,
            }
        }
        LIBRARY_LIST_REPLY => {
            if args.len() % 2 != 0 {
                return Err(malformed("expected a name and a kind per patch"));
            }
            let patches = (0..args.len())
                .step_by(2)
                .map(|i| Ok((string(i)?, string(i + 1)?)))
                .collect::<Result<Vec<_>, ReplyError>>()?;
            Reply::LibraryList(patches)
        }
        _ => Reply::Other(msg),
    };
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OSC type tag string of an encoded message.
    fn type_tags(bytes: &[u8]) -> String {
        let (_, packet) = rosc::decoder::decode_udp(bytes).unwrap();
        let OscPacket::Message(msg) = packet else {
            panic!("not a message")
        };
        // Re-derive the tag string from the raw bytes: after the padded address.
        let addr_len = (msg.addr.len() / 4 + 1) * 4;
        let tags = &bytes[addr_len..];
        let end = tags.iter().position(|&b| b == 0).unwrap();
        String::from_utf8(tags[..end].to_vec()).unwrap()
    }

    fn status() -> StatusReply {
        StatusReply {
            modules: 12,
            voices: 3,
            groups: 1,
            patches: 1,
            avg_load: 12.5,
            peak_load: 40.25,
            nominal_sample_rate: 48000.0,
            actual_sample_rate: 47999.5,
        }
    }

    #[test]
    fn a_library_list_round_trips() {
        let patches = [
            ("mine".to_string(), "saved"),
            ("demo".to_string(), "preset"),
        ];
        let bytes = library_list_reply(&patches);
        assert_eq!(type_tags(&bytes), ",ssss");
        assert_eq!(
            parse_reply(&bytes),
            Ok(Reply::LibraryList(vec![
                ("mine".into(), "saved".into()),
                ("demo".into(), "preset".into())
            ]))
        );
        assert_eq!(
            parse_reply(&library_list_reply(&[])),
            Ok(Reply::LibraryList(vec![]))
        );
    }

    #[test]
    fn pushes_have_the_documented_types() {
        assert_eq!(type_tags(&push_failover(1, 48_000, "worker died")), ",ihs");
        assert_eq!(type_tags(&push_worker(0, "standby", 4242)), ",isi");
        assert_eq!(
            type_tags(&push_params("/mod/sine/freq", 440.0, None)),
            ",sf"
        );
        assert_eq!(
            type_tags(&push_params("/mod/sine/gain", 0.2, Some(1.5))),
            ",sff"
        );
        assert_eq!(type_tags(&push_patch(2, 96_000)), ",ih");
        assert_eq!(type_tags(&push_levels(&[(0.5, 0.3), (0.4, 0.2)])), ",ffff");
        assert_eq!(type_tags(&push_scope(8, &[0.1, -0.1])), ",iff");
        assert_eq!(type_tags(&push_spectrum(20.0, 20_000.0, &[-3.0])), ",fff");
        let metrics = push_metrics(&[("blocks_played".to_string(), MetricValue::Number(7.0))]);
        assert_eq!(type_tags(&metrics), ",sd");
        let Ok(Reply::Other(msg)) = parse_reply(&metrics) else {
            panic!("a push reads as another message");
        };
        assert_eq!(msg.addr, PUSH_METRICS);
    }

    #[test]
    fn status_reply_has_scsynth_types() {
        let bytes = status_reply(&status());
        assert_eq!(type_tags(&bytes), ",iiiiiffdd");
        assert_eq!(parse_reply(&bytes), Ok(Reply::Status(status())));
    }

    #[test]
    fn fail_done_synced_round_trip() {
        let bytes = fail("/mod/x", "bad value");
        assert_eq!(type_tags(&bytes), ",ss");
        assert_eq!(
            parse_reply(&bytes),
            Ok(Reply::Fail {
                address: "/mod/x".into(),
                reason: "bad value".into()
            })
        );
        let bytes = done("/quit");
        assert_eq!(type_tags(&bytes), ",s");
        assert_eq!(parse_reply(&bytes), Ok(Reply::Done("/quit".into())));
        let bytes = synced(-5);
        assert_eq!(type_tags(&bytes), ",i");
        assert_eq!(parse_reply(&bytes), Ok(Reply::Synced(-5)));
    }

    #[test]
    fn metrics_reply_alternates_names_and_doubles() {
        let metrics = vec![
            ("crash_count".to_string(), 2.0),
            ("failover_p99_ms".to_string(), 0.125),
        ];
        let bytes = metrics_reply(&metrics);
        assert_eq!(type_tags(&bytes), ",sdsd");
        assert_eq!(
            parse_reply(&bytes),
            Ok(Reply::Metrics(vec![
                ("crash_count".to_string(), MetricValue::Number(2.0)),
                ("failover_p99_ms".to_string(), MetricValue::Number(0.125)),
            ]))
        );
        let empty: &[(String, f64)] = &[];
        assert_eq!(
            parse_reply(&metrics_reply(empty)),
            Ok(Reply::Metrics(vec![]))
        );
    }

    #[test]
    fn metrics_reply_carries_texts_as_strings() {
        let metrics = vec![
            ("slot.0.role".to_string(), MetricValue::from("active")),
            ("slot.0.pid".to_string(), MetricValue::from(4121.0)),
        ];
        let bytes = metrics_reply(&metrics);
        assert_eq!(type_tags(&bytes), ",sssd");
        assert_eq!(parse_reply(&bytes), Ok(Reply::Metrics(metrics.clone())));
        assert_eq!(metrics[0].1.to_string(), "active");
        assert_eq!(metrics[1].1.to_string(), "4121");
        assert_eq!(metrics[1].1.as_f64(), Some(4121.0));
        assert_eq!(metrics[0].1.as_f64(), None);
        let odd = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: METRICS_REPLY.into(),
            args: vec![OscType::String("x".into())],
        }))
        .unwrap();
        assert!(parse_reply(&odd).is_err());
    }

    #[test]
    fn version_reply_round_trips() {
        let version = VersionReply::this_build();
        assert_eq!(version.program, "chronus");
        assert!(version.patch.starts_with('.'));
        let bytes = version_reply(&version);
        assert_eq!(type_tags(&bytes), ",siisss");
        assert_eq!(parse_reply(&bytes), Ok(Reply::Version(version)));
    }

    #[test]
    fn get_reply_round_trips() {
        let bytes = get_reply("/mod/sine/freq", 440.5);
        assert_eq!(type_tags(&bytes), ",sf");
        assert_eq!(
            parse_reply(&bytes),
            Ok(Reply::Get {
                address: "/mod/sine/freq".into(),
                value: 440.5
            })
        );
        let bad = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: GET_REPLY.into(),
            args: vec![OscType::String("/mod/sine/freq".into())],
        }))
        .unwrap();
        assert!(matches!(
            parse_reply(&bad),
            Err(ReplyError::Malformed { .. })
        ));
    }

    fn params() -> Vec<ParamInfo> {
        vec![
            ParamInfo {
                name: "freq".into(),
                unit: "Hz".into(),
                min: 0.01,
                max: 20000.0,
                default: 440.0,
                current: 880.0,
            },
            ParamInfo {
                name: "amp".into(),
                unit: "0..1".into(),
                min: 0.0,
                max: 1.0,
                default: 0.5,
                current: 0.25,
            },
            ParamInfo {
                name: "n".into(),
                unit: String::new(),
                min: -1.0,
                max: 1.0,
                default: 0.0,
                current: 0.0,
            },
        ]
    }

    #[test]
    fn params_reply_round_trips() {
        let bytes = params_reply("sine", &params());
        assert_eq!(type_tags(&bytes), ",sssffffssffffssffff");
        assert_eq!(
            parse_reply(&bytes),
            Ok(Reply::Params {
                id: "sine".into(),
                params: params()
            })
        );
        let bytes = params_reply("empty", &[]);
        assert_eq!(type_tags(&bytes), ",s");
        assert_eq!(
            parse_reply(&bytes),
            Ok(Reply::Params {
                id: "empty".into(),
                params: vec![]
            })
        );
        // Doubles from other servers are read too.
        let doubles = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: PARAMS_REPLY.into(),
            args: vec![
                "sine".into(),
                "freq".into(),
                "Hz".into(),
                OscType::Double(0.01),
                OscType::Int(20000),
                OscType::Double(440.0),
                OscType::Double(880.0),
            ],
        }))
        .unwrap();
        assert_eq!(
            parse_reply(&doubles),
            Ok(Reply::Params {
                id: "sine".into(),
                params: vec![params()[0].clone()]
            })
        );
    }

    #[test]
    fn malformed_params_replies_are_refused() {
        let encode_args = |args: Vec<OscType>| {
            rosc::encoder::encode(&OscPacket::Message(OscMessage {
                addr: PARAMS_REPLY.into(),
                args,
            }))
            .unwrap()
        };
        for args in [
            vec![],
            vec![OscType::Int(1)],
            vec!["sine".into(), "freq".into()],
            vec![
                "sine".into(),
                "freq".into(),
                OscType::Float(1.0),
                OscType::Float(0.0),
                OscType::Float(1.0),
                OscType::Float(0.0),
                OscType::Float(0.0),
            ],
        ] {
            assert!(
                matches!(
                    parse_reply(&encode_args(args.clone())),
                    Err(ReplyError::Malformed { .. })
                ),
                "{args:?}"
            );
        }
    }

    #[test]
    fn param_info_comes_from_the_spec() {
        let spec = chronus_dsp::spec::ParamSpec {
            name: "freq",
            unit: chronus_dsp::spec::Unit::Hertz,
            min: 0.01,
            max: 20000.0,
            default: 440.0,
            doc: "frequency",
            live: true,
        };
        let mut expected = params()[0].clone();
        expected.current = 880.0;
        assert_eq!(ParamInfo::from_spec(&spec, 880.0), expected);
    }

    #[test]
    fn patch_dump_reply_round_trips() {
        let toml = "[[modules]]\nid = \"sine\"\ntype = \"sine\" # é ♪\n";
        let bytes = patch_dump_reply(toml);
        assert_eq!(type_tags(&bytes), ",s");
        assert_eq!(parse_reply(&bytes), Ok(Reply::PatchDump(toml.to_string())));
    }

    #[test]
    fn other_and_malformed_replies() {
        let other = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: "/n_go".into(),
            args: vec![OscType::Int(1)],
        }))
        .unwrap();
        assert!(matches!(parse_reply(&other), Ok(Reply::Other(_))));
        let bad = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: "/synced".into(),
            args: vec![OscType::String("x".into())],
        }))
        .unwrap();
        assert!(matches!(
            parse_reply(&bad),
            Err(ReplyError::Malformed { .. })
        ));
        let short_status = rosc::encoder::encode(&OscPacket::Message(OscMessage {
            addr: "/status.reply".into(),
            args: vec![OscType::Int(1)],
        }))
        .unwrap();
        assert!(parse_reply(&short_status).is_err());
        assert!(matches!(parse_reply(b""), Err(ReplyError::NotOsc(_))));
        assert!(matches!(parse_reply(b"junk"), Err(ReplyError::NotOsc(_))));
    }
}
