//! Chronus protocol: the OSC face of the server.
//!
//! This crate is for turning bytes and text into validated requests and back:
//! - [`table`]: the one typed address table (built from the patch's module instances) that
//!   the server, `chronus send`, the command files and the README all use;
//! - [`decode`]: UDP datagram → validated [`Request`]s or [`Fail`]s, bundles all or nothing;
//! - [`args`]: per-argument checks and the client side's typing of command-line strings;
//! - [`reply`]: encoders for `/fail`, `/done`, `/synced`, `/status.reply`, … and the
//!   client-side reply decoder;
//! - [`text`]: command files and command logs.
//!
//! It is not for sockets, scheduling or DSP: it never sends anything and never acts on a
//! request. It follows STYLE.md's scsynth lesson: decode fully, validate every argument
//! against the declared signature, and only then act; bad input gets `/fail` and a reason.

pub mod args;
pub mod decode;
pub mod reply;
pub mod table;
pub mod text;

pub use args::{build_message, check_arg, Value};
pub use decode::{
    decode_packet, validate_message, DebugRequest, Decoded, Fail, PacketError, Request, When,
    MAX_BUNDLE_DEPTH,
};
pub use reply::{parse_reply, Reply, ReplyError, StatusReply, VersionReply};
pub use table::{Action, AddressTable, ArgKind, ArgSpec, Entry};
pub use text::{
    format_log_line, parse_command_file, parse_command_log, LoggedCommand, TextError, TimedCommand,
};
