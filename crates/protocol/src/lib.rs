//! Chronus protocol: the OSC face of the server.
//!
//! This crate is for turning bytes and text into validated requests and back:
//! - [`signature`]: one argument: its declared type and range, its check, its value;
//! - [`table`]: the vocabulary: every [`Request`] a client can make, declared once with
//!   its address, arguments, reply and docs, and the typed address table (built from the
//!   patch's module instances) that the server, `chronus send`, the command files and the
//!   README all use;
//! - [`decode`]: UDP datagram → validated [`Request`]s or [`Fail`]s, bundles all or nothing;
//! - [`pattern`]: OSC address patterns (`/mod/*/gain`), one request per match;
//! - [`args`]: the client side's typing of command-line strings;
//! - [`reply`]: encoders for `/fail`, `/done`, `/synced`, `/status.reply`, `/get.reply`,
//!   `/params.reply`, `/patch/dump.reply`, … and the client-side reply decoder;
//! - [`text`]: command files and command logs (including patch switches, so a log
//!   replays exactly across `/patch/commit`).
//!
//! It is not for sockets, scheduling or DSP: it never sends anything and never acts on a
//! request. It follows STYLE.md's scsynth lesson: decode fully, validate every argument
//! against the declared signature, and only then act; bad input gets `/fail` and a reason.
//!
//! ```
//! use chronus_dsp::spec::{ModuleSpec, ParamSpec, Unit};
//! use chronus_engine::command::Command;
//! use chronus_protocol::{build_message, decode_packet, AddressTable, Request};
//!
//! static SINE: ModuleSpec = ModuleSpec {
//!     type_name: "sine",
//!     doc: "sine oscillator",
//!     inputs: &[],
//!     outputs: &[],
//!     params: &[ParamSpec {
//!         name: "freq",
//!         unit: Unit::Hertz,
//!         min: 0.01,
//!         max: 20000.0,
//!         default: 440.0,
//!         doc: "frequency",
//!         live: true,
//!     }],
//!     has_gate: false,
//! };
//! let table = AddressTable::new(&[("sine".to_string(), &SINE)], false);
//!
//! // Client side: type command-line strings, validated as the server would.
//! let message = build_message(&table, "/mod/sine/freq", &["440"]).unwrap();
//! let bytes = rosc::encoder::encode(&rosc::OscPacket::Message(message)).unwrap();
//!
//! // Server side: decode fully, validate, then act.
//! let decoded = decode_packet(&table, &bytes).unwrap().remove(0).unwrap();
//! assert_eq!(
//!     decoded.request,
//!     Request::Engine(Command::SetParam { node: 0, param: 0, value: 440.0 })
//! );
//!
//! let refused = build_message(&table, "/mod/sine/freq", &["30000"]).unwrap_err();
//! assert_eq!(refused.reason, "/mod/sine/freq: 30000 Hz is out of range 0.01..20000 Hz");
//! ```

pub mod args;
pub mod decode;
pub mod pattern;
pub mod reply;
pub mod signature;
pub mod table;
pub mod text;

pub use args::build_message;
pub use decode::{
    decode_packet, parse_packet, validate_message, Decoded, Fail, PacketError, When,
    MAX_BUNDLE_DEPTH,
};
pub use reply::{
    parse_reply, MetricValue, ParamInfo, Reply, ReplyError, StatusReply, VersionReply,
};
pub use signature::{check_arg, ArgKind, ArgSpec, Value};
pub use table::library::{check_library_name, LibraryRequest};
pub use table::midi::MidiRequest;
pub use table::{
    table_for_patch, AddressTable, Entry, PatchEdit, Request, Subscription, Topic, Topics,
    TrackChange,
};
pub use text::{
    format_log_line, format_patch_log_line, parse_command_file, parse_command_log, LogEntry,
    LoggedCommand, TextError, TimedCommand,
};
