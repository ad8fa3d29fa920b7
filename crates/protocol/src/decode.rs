//! Decoding: one UDP datagram → validated requests, or `/fail` reasons.
//!
//! The rule (STYLE.md's scsynth lesson): decode fully, validate every argument against the
//! address's declared signature, and only then act. A datagram that is not OSC at all is a
//! [`PacketError`] (no address, so no reply is possible); a message that is OSC but wrong
//! is a [`Fail`] with a reason. A bundle is all or nothing: if any message in it fails,
//! every message in it fails, so a bundle is never half-applied.

use rosc::{OscBundle, OscMessage, OscPacket, OscTime};

use crate::signature::{check_arg, clip, Value};
use crate::table::{AddressTable, Call, Request};

/// When a request should take effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// As soon as possible (a bare message, or a bundle timetagged "immediately", `(0, 1)`).
    Now,
    /// At this OSC time (from the innermost enclosing bundle with a real timetag).
    At(OscTime),
}

/// A validated request, the address it came from, and when it should take effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// What to do.
    pub request: Request,
    /// The address it was sent to (for logs and replies).
    pub address: String,
    /// When it should take effect.
    pub time: When,
    /// The position in its packet of the message it came from, counting from 0 (the
    /// requests one address pattern makes share it).
    pub message: usize,
    /// The address pattern the message was sent to, when this request is one of its
    /// matches (a refusal of the whole packet names the pattern, once).
    pub pattern: Option<String>,
}

/// A refused message: the server answers `/fail <address> <reason>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Fail {
    /// The address the message was sent to (clipped if absurdly long).
    pub address: String,
    /// What went wrong, with which input, and what to do; starts with the address.
    pub reason: String,
}

impl Fail {
    /// The encoded `/fail <address> <reason>` reply for this failure.
    pub fn to_reply(&self) -> Vec<u8> {
        crate::reply::fail(&self.address, &self.reason)
    }
}

/// Why a datagram is not OSC at all. No address can be answered, so the server counts and
/// logs these instead of replying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The packet (a datagram, or a TCP frame) had no bytes.
    #[error("empty packet")]
    Empty,
    /// The bytes do not decode as an OSC message or bundle.
    #[error("not an OSC packet: {0}")]
    Malformed(String),
    /// An OSC packet decoded, but bytes were left after it (a truncated or padded bundle).
    #[error("{0} bytes left after the end of the OSC packet")]
    TrailingBytes(usize),
    /// Bundles nested deeper than [`MAX_BUNDLE_DEPTH`].
    #[error("bundles nested more than {MAX_BUNDLE_DEPTH} deep")]
    TooDeep,
}

/// Deepest bundle nesting accepted. The OSC decoder recurses once per level, so a crafted
/// datagram of thousands of nested bundles could otherwise exhaust the stack.
pub const MAX_BUNDLE_DEPTH: usize = 16;

/// The OSC timetag meaning "immediately".
const IMMEDIATELY: OscTime = OscTime {
    seconds: 0,
    fractional: 1,
};

/// Checks one message against the table: known address, right argument count, every
/// argument of the declared type and in range. Nothing is acted upon here.
///
/// Text arguments that name things of this table are checked too: `/ramp` and `/get` take
/// a `/mod/<id>/<param>` address of the table (and `/ramp`'s target must be in that
/// parameter's range), `/params` a module instance id.
///
/// # Errors
/// A [`Fail`] for an unknown address (with a "did you mean …?" suggestion when one is
/// close), a wrong argument count (naming the expected signature), the first argument
/// that does not pass [`check_arg`], an unknown parameter address or module id (with a
/// suggestion), or a `/ramp` target outside its parameter's range.
pub fn validate_message(table: &AddressTable, msg: &OscMessage) -> Result<Request, Fail> {
    let address = clip(&msg.addr);
    let fail = |reason: String| Fail {
        address: address.clone(),
        reason,
    };
    let Some(entry) = table.lookup(&msg.addr) else {
        if let Some(why) = table.fixed_param(&msg.addr) {
            return Err(fail(why));
        }
        let hint = match table.suggest(&msg.addr) {
            Some(known) => format!("did you mean {known}?"),
            None => "`chronus send --list` shows every address".to_string(),
        };
        return Err(fail(format!("unknown address {address} ({hint})")));
    };
    let first_is_text = matches!(msg.args.first(), Some(rosc::OscType::String(_)));
    let (declared, left_out) = entry.declared_for(first_is_text);
    // A leading optional text that is given counts as required: the rest follow it.
    let named = first_is_text && entry.declared_for(false).1;
    let required = declared.iter().filter(|a| !a.optional).count() + usize::from(named);
    let (max, got) = (declared.len(), msg.args.len());
    if got < required || got > max {
        let expected = match (required, max) {
            (0, 0) => "no arguments".to_string(),
            (1, 1) => format!("1 argument {}", entry.signature()),
            (r, m) if r == m => format!("{r} arguments {}", entry.signature()),
            (r, m) => format!("{r} to {m} arguments {}", entry.signature()),
        };
        return Err(fail(format!("{address}: expected {expected}, got {got}")));
    }
    let checked = declared
        .iter()
        .zip(&msg.args)
        .enumerate()
        .map(|(i, (spec, arg))| check_arg(&address, i + 1, spec, arg));
    let values = left_out
        .then_some(Ok(Value::Absent))
        .into_iter()
        .chain(checked)
        .collect::<Result<Vec<Value>, String>>()
        .map_err(fail)?;
    entry
        .request(&Call {
            table,
            address: &address,
            values: &values,
            args: &msg.args,
        })
        .map_err(fail)
}

/// Decodes one UDP datagram into one result per message.
///
/// Bundles are flattened in order; a message's time is that of its innermost bundle with
/// a real timetag (an inner "immediately" inherits the enclosing bundle's time), and an
/// inner bundle may not be timetagged earlier than its enclosing one. A bundle is
/// validated completely before anything in it may be acted upon: if any message in it
/// fails (or its timetags are inconsistent), every message in it is a [`Fail`] whose
/// reason says which one broke the bundle.
///
/// OSC symbols (type tag `S`, which SuperCollider clients send for names) are read as
/// strings: their encoding is the same, and the OSC decoder only knows `s`.
///
/// # Errors
/// [`PacketError`] when the datagram is not OSC at all: empty, undecodable, followed by
/// stray bytes, or nested more than [`MAX_BUNDLE_DEPTH`] bundles deep. Never panics.
pub fn decode_packet(
    table: &AddressTable,
    bytes: &[u8],
) -> Result<Vec<Result<Decoded, Fail>>, PacketError> {
    match parse_packet(bytes)? {
        OscPacket::Message(msg) => {
            let mut budget = crate::pattern::PACKET_MATCH_BUDGET;
            Ok(flat(vec![decode_one(
                table,
                msg,
                When::Now,
                0,
                &mut budget,
            )]))
        }
        OscPacket::Bundle(bundle) => Ok(decode_bundle(table, bundle)),
    }
}

/// The OSC packet in `bytes`, unvalidated: the one way the server reads a packet's
/// structure (also to log it), so nothing reaches rosc's recursive decoder before the depth
/// check. Messages without a type-tag string (OSC 1.0) have no arguments; OSC symbols read
/// as strings.
///
/// # Errors
/// As [`decode_packet`]: empty, nested too deep, undecodable, or followed by stray bytes.
pub fn parse_packet(bytes: &[u8]) -> Result<OscPacket, PacketError> {
    if bytes.is_empty() {
        return Err(PacketError::Empty);
    }
    check_depth(bytes, 0)?;
    let tagged = with_type_tags(bytes);
    let bytes = tagged.as_deref().unwrap_or(bytes);
    let retagged = symbols_as_strings(bytes);
    let bytes = retagged.as_deref().unwrap_or(bytes);
    let (rest, packet) =
        rosc::decoder::decode_udp(bytes).map_err(|e| PacketError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PacketError::TrailingBytes(rest.len()));
    }
    Ok(packet)
}

/// One message's requests: one, or one per match of an address pattern (see
/// [`pattern`](crate::pattern)), all or nothing: if any match fails, the message is one
/// [`Fail`] saying which and why. `message` is its position in the packet; its patterns'
/// matching steps are charged to the packet's `budget`.
pub(crate) fn decode_one(
    table: &AddressTable,
    msg: OscMessage,
    time: When,
    message: usize,
    budget: &mut u64,
) -> Result<Vec<Decoded>, Fail> {
    let expanded = crate::pattern::expand(table, &msg, budget).map_err(|reason| {
        let address = clip(&msg.addr);
        Fail {
            reason: format!("{address}: {reason}"),
            address,
        }
    })?;
    let Some(matches) = expanded else {
        let request = validate_message(table, &msg)?;
        return Ok(vec![Decoded {
            request,
            address: msg.addr,
            time,
            message,
            pattern: None,
        }]);
    };
    let count = matches.len();
    let pattern = crate::pattern::is_pattern(&msg.addr).then(|| msg.addr.clone());
    let mut decoded = Vec::with_capacity(count);
    for one in matches {
        match validate_message(table, &one) {
            Ok(request) => decoded.push(Decoded {
                request,
                address: one.addr,
                time,
                message,
                pattern: pattern.clone(),
            }),
            Err(fail) => {
                let sent = clip(&msg.addr);
                // The match's reason starts with its address; a pattern in the argument
                // (`/get`, `/ramp`) has the address as sent: say it once.
                let detail = match fail.reason.strip_prefix(&format!("{sent}: ")) {
                    Some(rest) if fail.address == sent => rest.to_string(),
                    _ => fail.reason,
                };
                return Err(Fail {
                    reason: format!(
                        "{sent}: nothing applied (the pattern matches {count} address{}): {detail}",
                        if count == 1 { "" } else { "es" },
                    ),
                    address: sent,
                });
            }
        }
    }
    Ok(decoded)
}

/// A packet's results in the flat form the server acts on: each message's requests in
/// order, or its [`Fail`].
fn flat(per_message: Vec<Result<Vec<Decoded>, Fail>>) -> Vec<Result<Decoded, Fail>> {
    let mut results = Vec::with_capacity(per_message.len());
    for message in per_message {
        match message {
            Ok(decoded) => results.extend(decoded.into_iter().map(Ok)),
            Err(fail) => results.push(Err(fail)),
        }
    }
    results
}

fn decode_bundle(table: &AddressTable, bundle: OscBundle) -> Vec<Result<Decoded, Fail>> {
    let mut messages = Vec::new();
    let mut time_error = None;
    flatten(bundle, When::Now, &mut messages, &mut time_error);
    let mut budget = crate::pattern::PACKET_MATCH_BUDGET;
    let per_message: Vec<(String, Result<Vec<Decoded>, Fail>)> = messages
        .into_iter()
        .enumerate()
        .map(|(i, (msg, time))| {
            let sent = clip(&msg.addr);
            (sent, decode_one(table, msg, time, i, &mut budget))
        })
        .collect();
    let culprit = time_error.or_else(|| {
        per_message.iter().enumerate().find_map(|(i, (_, result))| {
            result.as_ref().err().map(|fail| {
                format!(
                    "message {} ({}) failed: {}",
                    i + 1,
                    fail.address,
                    fail.reason
                )
            })
        })
    });
    let Some(culprit) = culprit else {
        return flat(per_message.into_iter().map(|(_, result)| result).collect());
    };
    // One refusal per message as sent (a pattern's matches are one message).
    per_message
        .into_iter()
        .map(|(sent, result)| match result {
            Ok(_) => Err(Fail {
                reason: format!("{sent}: not applied: the bundle was refused because {culprit}"),
                address: sent,
            }),
            Err(fail) => Err(Fail {
                reason: format!("{}; the whole bundle was refused", fail.reason),
                address: fail.address,
            }),
        })
        .collect()
}

/// Flattens `bundle` (enclosed in a bundle whose effective time is `outer`) into
/// `(message, time)` pairs, recording the first timetag inconsistency in `time_error`.
fn flatten(
    bundle: OscBundle,
    outer: When,
    out: &mut Vec<(OscMessage, When)>,
    time_error: &mut Option<String>,
) {
    let time = match (bundle.timetag, outer) {
        (IMMEDIATELY, outer) => outer,
        (inner, When::At(outer_time)) if inner < outer_time => {
            time_error.get_or_insert_with(|| {
                format!(
                    "a nested bundle's timetag {} is earlier than its enclosing bundle's {}",
                    show_time(inner),
                    show_time(outer_time)
                )
            });
            When::At(outer_time)
        }
        (inner, _) => When::At(inner),
    };
    for packet in bundle.content {
        match packet {
            OscPacket::Message(msg) => out.push((msg, time)),
            OscPacket::Bundle(inner) => flatten(inner, time, out, time_error),
        }
    }
}

/// An OSC time as seconds since 1900 (never panics, unlike converting to `SystemTime`).
fn show_time(time: OscTime) -> String {
    let seconds = f64::from(time.seconds) + f64::from(time.fractional) / 4_294_967_296.0;
    format!("{seconds:.6}")
}

/// Walks the bundle structure (without decoding) to refuse nesting deeper than
/// [`MAX_BUNDLE_DEPTH`] before the recursive decoder sees it.
fn check_depth(bytes: &[u8], depth: usize) -> Result<(), PacketError> {
    if !bytes.starts_with(b"#bundle\0") {
        return Ok(());
    }
    if depth >= MAX_BUNDLE_DEPTH {
        return Err(PacketError::TooDeep);
    }
    let mut rest = bytes.get(16..).unwrap_or_default();
    while let Some((size, tail)) = rest.split_first_chunk::<4>() {
        let size = u32::from_be_bytes(*size) as usize;
        let Some(element) = tail.get(..size) else {
            break;
        };
        check_depth(element, depth + 1)?;
        rest = &tail[size..];
    }
    Ok(())
}

/// A copy of `bytes` in which every message that is only an address (OSC 1.0 let a
/// message leave out its type-tag string; old clients send `/status` so) has an empty
/// type-tag string, or `None` when no message lacks one. Bundles are rebuilt with their
/// elements' new sizes; anything malformed is left as it was, for the decoder to refuse.
/// Called after [`check_depth`], so the recursion is bounded.
fn with_type_tags(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.starts_with(b"#bundle\0") {
        let mut rebuilt = bytes.get(..16)?.to_vec();
        let mut changed = false;
        let mut rest = bytes.get(16..)?;
        while let Some((size, tail)) = rest.split_first_chunk::<4>() {
            let size = u32::from_be_bytes(*size) as usize;
            let element = tail.get(..size)?;
            let fixed = with_type_tags(element);
            changed |= fixed.is_some();
            let element = fixed.as_deref().unwrap_or(element);
            rebuilt.extend_from_slice(&u32::try_from(element.len()).ok()?.to_be_bytes());
            rebuilt.extend_from_slice(element);
            rest = &tail[size..];
        }
        return (changed && rest.is_empty()).then_some(rebuilt);
    }
    if !bytes.starts_with(b"/") {
        return None;
    }
    // The address, its terminating NUL and padding to 4 bytes, and nothing after.
    let end = bytes.iter().position(|&b| b == 0)?;
    let padded = (end + 4) & !3;
    (bytes.len() == padded).then(|| [bytes, b",\0\0\0"].concat())
}

/// A copy of `bytes` with every message's `S` (symbol) type tags turned into `s`
/// (string), or `None` when there are none. Walks bundles like [`check_depth`] (so only
/// after it has bounded the nesting); malformed pieces are left for the decoder to refuse.
fn symbols_as_strings(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut tag_positions = Vec::new();
    symbol_tags(bytes, 0, &mut tag_positions);
    if tag_positions.is_empty() {
        return None;
    }
    let mut copy = bytes.to_vec();
    for position in tag_positions {
        copy[position] = b's';
    }
    Some(copy)
}

/// Collects the positions (offset by `base`) of `S` type tags in the message or bundle
/// `bytes`.
fn symbol_tags(bytes: &[u8], base: usize, out: &mut Vec<usize>) {
    if bytes.starts_with(b"#bundle\0") {
        let mut offset = 16;
        while let Some(size) = bytes.get(offset..offset + 4) {
            let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
            let start = offset + 4;
            let Some(element) = start
                .checked_add(size)
                .and_then(|end| bytes.get(start..end))
            else {
                return;
            };
            symbol_tags(element, base + start, out);
            offset = start + size;
        }
        return;
    }
    // Address: NUL-terminated, padded to a multiple of 4; then `,` and the tags.
    let Some(end) = bytes.iter().position(|&b| b == 0) else {
        return;
    };
    let tags_start = (end / 4 + 1) * 4;
    let Some(tags) = bytes.get(tags_start..) else {
        return;
    };
    if tags.first() != Some(&b',') {
        return;
    }
    for (i, &tag) in tags.iter().enumerate().skip(1) {
        match tag {
            0 => break,
            b'S' => out.push(base + tags_start + i),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::{ArgKind, ArgSpec};
    use crate::table::tests::table;
    use crate::table::PatchEdit;
    use chronus_engine::command::{Command, Fault};
    use proptest::prelude::*;
    use rosc::OscType;

    fn message(addr: &str, args: Vec<OscType>) -> OscMessage {
        OscMessage {
            addr: addr.to_string(),
            args,
        }
    }

    fn encode(packet: OscPacket) -> Vec<u8> {
        rosc::encoder::encode(&packet).unwrap()
    }

    fn msg_bytes(addr: &str, args: Vec<OscType>) -> Vec<u8> {
        encode(OscPacket::Message(message(addr, args)))
    }

    fn bundle(seconds: u32, content: Vec<OscPacket>) -> OscBundle {
        OscBundle {
            timetag: OscTime {
                seconds,
                fractional: if seconds == 0 { 1 } else { 0 },
            },
            content,
        }
    }

    fn at(seconds: u32) -> When {
        When::At(OscTime {
            seconds,
            fractional: 0,
        })
    }

    fn freq(value: f32) -> OscPacket {
        OscPacket::Message(message("/mod/sine/freq", vec![OscType::Float(value)]))
    }

    fn one(bytes: &[u8]) -> Result<Decoded, Fail> {
        let mut results = decode_packet(&table(), bytes).unwrap();
        assert_eq!(results.len(), 1);
        results.pop().unwrap()
    }

    #[test]
    fn a_plain_message_decodes_to_a_request_now() {
        let decoded = one(&msg_bytes("/mod/sine/freq", vec![OscType::Int(440)])).unwrap();
        assert_eq!(
            decoded,
            Decoded {
                request: Request::Engine(Command::SetParam {
                    node: 0,
                    param: 0,
                    value: 440.0
                }),
                address: "/mod/sine/freq".to_string(),
                time: When::Now,
                message: 0,
                pattern: None,
            }
        );
    }

    fn all(bytes: &[u8]) -> Vec<Result<Decoded, Fail>> {
        decode_packet(&table(), bytes).unwrap()
    }

    #[test]
    fn a_pattern_is_one_command_per_match_all_or_nothing() {
        let results = all(&msg_bytes("/mod/s*/[af]*", vec![OscType::Float(0.5)]));
        let addresses: Vec<&str> = results
            .iter()
            .map(|r| r.as_ref().unwrap().address.as_str())
            .collect();
        assert_eq!(addresses, ["/mod/sine/amp", "/mod/sine/freq"]);
        assert!(matches!(
            results[1].as_ref().unwrap().request,
            Request::Engine(Command::SetParam { node: 0, param: 0, value }) if value == 0.5
        ));
        let gates = all(&msg_bytes("/gate/{env,sine}", vec![OscType::Int(1)]));
        assert_eq!(gates.len(), 1, "only env has a gate");

        // One match out of range: the whole message is refused, once.
        let refused = all(&msg_bytes("/mod/*/{freq,level}", vec![OscType::Float(5.0)]));
        assert_eq!(refused.len(), 1);
        let fail = refused[0].as_ref().unwrap_err();
        assert_eq!(fail.address, "/mod/*/{freq,level}");
        assert!(
            fail.reason.starts_with("/mod/*/{freq,level}: nothing applied (the pattern matches 2 addresses): /mod/env/level:"),
            "{}",
            fail.reason
        );

        for (pattern, why) in [
            ("/mod/nothing*/freq", "matches no address"),
            ("/stat*", "matches no address"), // questions take no patterns
            (
                "/mod/[sine/freq",
                "not a valid address pattern: '[' is not closed",
            ),
        ] {
            let fail = one(&msg_bytes(pattern, vec![OscType::Float(1.0)])).unwrap_err();
            assert!(fail.reason.contains(why), "{pattern}: {}", fail.reason);
        }
    }

    #[test]
    fn get_and_ramp_take_a_pattern_of_parameters() {
        let gets = all(&msg_bytes(
            "/get",
            vec![OscType::String("/mod/sine/*".into())],
        ));
        let asked: Vec<String> = gets
            .into_iter()
            .map(|r| match r.unwrap().request {
                Request::Get { address, .. } => address,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(asked, ["/mod/sine/amp", "/mod/sine/freq"]);
        let ramps = all(&msg_bytes(
            "/ramp",
            vec![
                OscType::String("/mod/*/level".into()),
                OscType::Float(-6.0),
                OscType::Float(1.0),
            ],
        ));
        assert_eq!(ramps.len(), 1);
        assert!(ramps[0].is_ok());
        let fail = one(&msg_bytes("/get", vec![OscType::String("/gate/*".into())])).unwrap_err();
        assert!(
            fail.reason.contains("matches no parameter address"),
            "{}",
            fail.reason
        );
    }

    #[test]
    fn a_failing_pattern_refuses_its_whole_bundle() {
        let packet = OscPacket::Bundle(bundle(
            0,
            vec![
                freq(220.0),
                OscPacket::Message(message("/mod/*/freq", vec![OscType::Float(1e6)])),
            ],
        ));
        let results = all(&encode(packet));
        assert_eq!(results.len(), 2);
        assert!(results.iter().all(Result::is_err));
    }

    #[test]
    fn a_refused_bundle_names_each_message_once_as_sent() {
        // A pattern of three matches, then a bad message: two refusals, the pattern's
        // naming the pattern, and the culprit numbered as sent.
        let packet = OscPacket::Bundle(bundle(
            0,
            vec![
                OscPacket::Message(message("/mod/s*/*", vec![OscType::Float(0.5)])),
                freq(1e9),
            ],
        ));
        let results = all(&encode(packet));
        let fails: Vec<Fail> = results.into_iter().map(Result::unwrap_err).collect();
        assert_eq!(fails.len(), 2, "{fails:?}");
        assert_eq!(fails[0].address, "/mod/s*/*");
        assert!(
            fails[0]
                .reason
                .contains("because message 2 (/mod/sine/freq) failed"),
            "{}",
            fails[0].reason
        );
        // Matches of a pattern in a bundle that stands share their message's position.
        let packet = OscPacket::Bundle(bundle(
            0,
            vec![
                freq(220.0),
                OscPacket::Message(message("/mod/s*/*", vec![OscType::Float(0.5)])),
            ],
        ));
        let positions: Vec<(usize, Option<String>)> = all(&encode(packet))
            .into_iter()
            .map(|r| {
                let d = r.unwrap();
                (d.message, d.pattern)
            })
            .collect();
        let pattern = Some("/mod/s*/*".to_string());
        assert_eq!(positions, [(0, None), (1, pattern.clone()), (1, pattern)]);
    }

    #[test]
    fn a_packet_of_costly_patterns_is_refused_not_matched_for_long() {
        // Ids of 200 characters (as /patch/add takes), a pattern of 120 wildcards against
        // each: each costs 121 x 201 steps, and a bundle of many goes over the budget.
        let ids: Vec<String> = (0..40)
            .map(|i| format!("{i:03}{}b", "a".repeat(196)))
            .collect();
        let modules: Vec<(String, &'static chronus_dsp::ModuleSpec)> = ids
            .iter()
            .map(|id| (id.clone(), chronus_dsp::spec_for("adsr").unwrap()))
            .collect();
        let table = AddressTable::new(&modules, false);
        let pattern = format!("/mod/{}b/*", "*a".repeat(60));
        let one_message = OscPacket::Message(message(&pattern, vec![OscType::Float(0.5)]));
        let started = std::time::Instant::now();
        let results = decode_packet(
            &table,
            &encode(OscPacket::Bundle(bundle(0, vec![one_message; 100]))),
        )
        .unwrap();
        let elapsed = started.elapsed();
        let fail = results[0].as_ref().unwrap_err();
        assert!(fail.reason.contains("matching steps"), "{}", fail.reason);
        // Deterministic step counting bounds the time; this bound is only a sanity check.
        println!("{} refusals in {elapsed:?}", results.len());
        assert!(elapsed < std::time::Duration::from_secs(2), "{elapsed:?}");
    }

    #[test]
    fn every_fixed_address_decodes() {
        let t = table();
        let cases = [
            (message("/status", vec![]), Request::Status),
            (message("/metrics", vec![]), Request::Metrics),
            (message("/version", vec![]), Request::Version),
            (message("/quit", vec![]), Request::Quit),
            (message("/test", vec![]), Request::Engine(Command::TestTone)),
            (
                message("/engine/gain", vec![OscType::Double(0.5)]),
                Request::Engine(Command::EngineGain(0.5)),
            ),
            (message("/sync", vec![OscType::Int(-7)]), Request::Sync(-7)),
            (
                message("/gate/env", vec![OscType::Bool(true)]),
                Request::Engine(Command::Gate { node: 1, on: true }),
            ),
            (
                message("/gate/env", vec![OscType::Bool(false)]),
                Request::Engine(Command::Gate { node: 1, on: false }),
            ),
            (
                message("/debug/crash", vec![]),
                Request::Fault {
                    fault: Fault::Crash,
                    slot: None,
                },
            ),
            (
                message("/debug/hang", vec![OscType::Int(1)]),
                Request::Fault {
                    fault: Fault::Hang,
                    slot: Some(1),
                },
            ),
            (
                message("/debug/slow", vec![OscType::Int(2000)]),
                Request::Fault {
                    fault: Fault::Slow { micros: 2000 },
                    slot: None,
                },
            ),
            (
                message(
                    "/debug/slow",
                    vec![OscType::Long(1_000_000), OscType::Float(0.0)],
                ),
                Request::Fault {
                    fault: Fault::Slow { micros: 1_000_000 },
                    slot: Some(0),
                },
            ),
        ];
        for (msg, expected) in cases {
            assert_eq!(validate_message(&t, &msg), Ok(expected), "{msg:?}");
        }
    }

    fn text(s: &str) -> OscType {
        OscType::String(s.to_string())
    }

    fn reason(msg: OscMessage) -> String {
        validate_message(&table(), &msg).unwrap_err().reason
    }

    #[test]
    fn notify_decodes_topics_and_refuses_unknown_ones() {
        use crate::table::{Subscription, Topic, Topics};
        let request = |args: Vec<OscType>| {
            one(&msg_bytes("/notify", args))
                .map(|decoded| decoded.request)
                .map_err(|fail| fail.reason)
        };
        assert_eq!(request(vec![OscType::Int(0)]), Ok(Request::Notify(None)));
        // No topic: the events.
        let Ok(Request::Notify(Some(events))) = request(vec![OscType::Int(1)]) else {
            panic!("not a subscription");
        };
        assert_eq!(events.topics, Topics::of(&Topic::EVENTS));
        assert_eq!(
            request(vec![OscType::Int(1), text("levels"), text("metrics=10")]),
            Ok(Request::Notify(Some(Subscription {
                topics: Topics::of(&[Topic::Levels, Topic::Metrics]),
                metrics_hz: 10.0,
            })))
        );
        let unknown = request(vec![OscType::Int(1), text("levles")]).unwrap_err();
        assert!(
            unknown.starts_with("/notify: unknown topic 'levles' (topics: failover, worker, metrics, levels, scope, spectrum, params, patch"),
            "{unknown}"
        );
        // Every topic at once fits the arguments `/notify` takes.
        let mut all = vec![OscType::Int(1)];
        all.extend(Topic::ALL.iter().map(|t| text(t.name())));
        let Ok(Request::Notify(Some(every))) = request(all) else {
            panic!("/notify with every topic refused");
        };
        assert_eq!(every.topics, Topics::of(&Topic::ALL));
        let too_fast = request(vec![OscType::Int(1), text("metrics=1000")]).unwrap_err();
        assert!(too_fast.contains("bad metrics rate"), "{too_fast}");
        assert!(request(vec![OscType::Int(2)]).is_err());
        assert_eq!(
            one(&msg_bytes("/dumpOSC", vec![OscType::Int(1)])).map(|d| d.request),
            Ok(Request::DumpOsc(true))
        );
    }

    #[test]
    fn ramp_decodes_to_an_engine_command() {
        let t = table();
        let cases = [
            (
                vec![
                    text("/mod/sine/freq"),
                    OscType::Int(880),
                    OscType::Float(1.5),
                ],
                Command::Ramp {
                    node: 0,
                    param: 0,
                    target: 880.0,
                    seconds: 1.5,
                },
            ),
            (
                vec![
                    text("/mod/env/level"),
                    OscType::Double(-60.0),
                    OscType::Long(3600),
                ],
                Command::Ramp {
                    node: 1,
                    param: 1,
                    target: -60.0,
                    seconds: 3600.0,
                },
            ),
            (
                vec![text("/mod/sine/amp"), OscType::Float(0.0), OscType::Int(0)],
                Command::Ramp {
                    node: 0,
                    param: 1,
                    target: 0.0,
                    seconds: 0.0,
                },
            ),
        ];
        for (args, command) in cases {
            assert_eq!(
                validate_message(&t, &message("/ramp", args)),
                Ok(Request::Engine(command))
            );
        }
    }

    #[test]
    fn ramp_refuses_bad_input_with_reasons() {
        let ramp = |args| reason(message("/ramp", args));
        assert_eq!(
            ramp(vec![
                text("/mod/sine/freq"),
                OscType::Int(30000),
                OscType::Int(1)
            ]),
            "/ramp: 30000 Hz is out of range 0.01..20000 Hz for /mod/sine/freq"
        );
        assert_eq!(
            ramp(vec![
                text("/mod/env/level"),
                OscType::Float(1.5),
                OscType::Int(1)
            ]),
            "/ramp: 1.5 dB is out of range -60..0 dB for /mod/env/level"
        );
        assert_eq!(
            ramp(vec![
                text("/mod/sine/frq"),
                OscType::Int(1),
                OscType::Int(1)
            ]),
            "/ramp: /mod/sine/frq is not a parameter address (did you mean /mod/sine/freq?)"
        );
        assert_eq!(
            ramp(vec![text("/gate/env"), OscType::Int(1), OscType::Int(1)]),
            "/ramp: /gate/env is not a parameter address (parameters are /mod/<id>/<param>; `chronus send --list` shows them)"
        );
        // Only parameter addresses are suggested, even when another address is closer.
        assert_eq!(
            ramp(vec![text("/mod/env"), OscType::Int(1), OscType::Int(1)]),
            "/ramp: /mod/env is not a parameter address (parameters are /mod/<id>/<param>; `chronus send --list` shows them)"
        );
        assert_eq!(
            ramp(vec![
                text("/mod/sine/amp/"),
                OscType::Int(1),
                OscType::Int(1)
            ]),
            "/ramp: /mod/sine/amp/ is not a parameter address (did you mean /mod/sine/amp?)"
        );
        assert_eq!(
            ramp(vec![
                text("/mod/sine/freq"),
                OscType::Int(440),
                OscType::Int(3601)
            ]),
            "/ramp: 3601 s is out of range 0..3600 s"
        );
        assert_eq!(
            ramp(vec![
                text("/mod/sine/freq"),
                OscType::Int(440),
                OscType::Float(-0.5)
            ]),
            "/ramp: -0.5 s is out of range 0..3600 s"
        );
        assert_eq!(
            ramp(vec![OscType::Int(3), OscType::Int(440), OscType::Int(1)]),
            "/ramp: argument 1 (address) must be a text (OSC string), got int 3"
        );
        assert_eq!(
            ramp(vec![text("/mod/sine/freq"), text("440"), OscType::Int(1)]),
            "/ramp: argument 2 (target) must be a number, got string \"440\""
        );
        assert!(ramp(vec![
            text("/mod/sine/freq"),
            OscType::Float(f32::NAN),
            OscType::Int(1)
        ])
        .contains("got float NaN"));
        assert!(ramp(vec![
            text("/mod/sine/freq"),
            OscType::Int(440),
            OscType::Double(f64::INFINITY)
        ])
        .contains("got double inf"));
        assert_eq!(
            ramp(vec![text("/mod/sine/freq"), OscType::Int(440)]),
            "/ramp: expected 3 arguments <address> <target> <seconds>, got 2"
        );
        assert!(
            ramp(vec![text(""), OscType::Int(440), OscType::Int(1)]).contains("must not be empty")
        );
    }

    #[test]
    fn get_and_params_resolve_their_names() {
        let t = table();
        assert_eq!(
            validate_message(&t, &message("/get", vec![text("/mod/env/attack")])),
            Ok(Request::Get {
                address: "/mod/env/attack".to_string(),
                node: 1,
                param: 0
            })
        );
        assert_eq!(
            reason(message("/get", vec![text("/mod/env/atack")])),
            "/get: /mod/env/atack is not a parameter address (did you mean /mod/env/attack?)"
        );
        assert_eq!(
            reason(message("/get", vec![OscType::Float(1.0)])),
            "/get: argument 1 (address) must be a text (OSC string), got float 1"
        );
        assert_eq!(
            validate_message(&t, &message("/params", vec![text("env")])),
            Ok(Request::Params {
                id: "env".to_string(),
                node: 1
            })
        );
        assert_eq!(
            reason(message("/params", vec![text("sinee")])),
            "/params: unknown module 'sinee' (did you mean 'sine'?)"
        );
        assert_eq!(
            reason(message("/params", vec![text("qqqqqqqqqqqq")])),
            "/params: unknown module 'qqqqqqqqqqqq'"
        );
        assert_eq!(
            reason(message("/params", vec![])),
            "/params: expected 1 argument <id>, got 0"
        );
        let long = "x".repeat(300);
        assert_eq!(
            reason(message("/params", vec![text(&long)])),
            "/params: argument 1 (id) is 300 bytes long, more than the limit of 256"
        );
    }

    #[test]
    fn patch_edits_decode_without_checking_names() {
        let t = table();
        let edit = |addr: &str, args| validate_message(&t, &message(addr, args));
        let s = |v: &str| v.to_string();
        let cases = [
            (
                "/patch/add",
                vec![text("lfo"), text("no-such-type")],
                PatchEdit::Add {
                    id: s("lfo"),
                    type_name: s("no-such-type"),
                },
            ),
            (
                "/patch/remove",
                vec![text("ghost")],
                PatchEdit::Remove { id: s("ghost") },
            ),
            (
                "/patch/connect",
                vec![text("lfo:out"), text("sine:fm")],
                PatchEdit::Connect {
                    from: s("lfo:out"),
                    to: s("sine:fm"),
                },
            ),
            (
                "/patch/disconnect",
                vec![text("lfo"), text("sine")],
                PatchEdit::Disconnect {
                    from: s("lfo"),
                    to: s("sine"),
                },
            ),
            (
                "/patch/set",
                vec![text("sine"), text("freq"), OscType::Int(-99999)],
                PatchEdit::Set {
                    id: s("sine"),
                    param: s("freq"),
                    value: -99999.0,
                },
            ),
            ("/patch/commit", vec![], PatchEdit::Commit),
            ("/patch/revert", vec![], PatchEdit::Revert),
            ("/patch/dump", vec![], PatchEdit::Dump),
        ];
        for (addr, args, expected) in cases {
            assert_eq!(edit(addr, args), Ok(Request::Patch(expected)), "{addr}");
        }
        assert_eq!(
            reason(message("/patch/add", vec![text("lfo")])),
            "/patch/add: expected 2 arguments <id> <type>, got 1"
        );
        assert_eq!(
            reason(message("/patch/add", vec![text("lfo"), OscType::Int(1)])),
            "/patch/add: argument 2 (type) must be a text (OSC string), got int 1"
        );
        assert_eq!(
            reason(message(
                "/patch/set",
                vec![text("a"), text("b"), OscType::Float(f32::INFINITY)]
            )),
            "/patch/set: argument 3 (value) must be a number, got float inf"
        );
        assert!(reason(message(
            "/patch/set",
            vec![text("a"), text("b"), OscType::Double(1e300)]
        ))
        .contains("out of range"));
        assert_eq!(
            reason(message("/patch/commit", vec![OscType::Int(1)])),
            "/patch/commit: expected no arguments, got 1"
        );
    }

    #[test]
    fn midi_requests_decode_and_out_of_range_ones_are_refused() {
        use crate::MidiRequest;
        let table = table();
        let request = |m: OscMessage| {
            decode_packet(&table, &msg_bytes(&m.addr, m.args))
                .unwrap()
                .remove(0)
                .map(|d| d.request)
        };
        assert_eq!(
            request(message(
                "/midi/cc",
                vec![OscType::Int(2), OscType::Int(74), OscType::Int(100)]
            )),
            Ok(Request::Midi(MidiRequest::Cc {
                channel: 2,
                controller: 74,
                value: 100.0
            }))
        );
        assert_eq!(
            request(message("/midi/learn", vec![text("/mod/sine/freq")])),
            Ok(Request::Midi(MidiRequest::Learn {
                address: "/mod/sine/freq".into()
            }))
        );
        for (args, says) in [
            (
                vec![OscType::Int(0), OscType::Int(74), OscType::Int(1)],
                "channel",
            ),
            (
                vec![OscType::Int(17), OscType::Int(74), OscType::Int(1)],
                "channel",
            ),
            (
                vec![OscType::Int(1), OscType::Int(128), OscType::Int(1)],
                "controller",
            ),
            (
                vec![OscType::Int(1), OscType::Int(7), OscType::Float(127.5)],
                "127.5 is out of range 0..127",
            ),
        ] {
            let fail = request(message("/midi/cc", args)).unwrap_err();
            assert!(fail.reason.contains(says), "{}", fail.reason);
        }
        let fail = request(message("/midi/learn", vec![text("/mod/sine/frq")])).unwrap_err();
        assert!(
            fail.reason.contains("did you mean /mod/sine/freq"),
            "{}",
            fail.reason
        );
    }

    #[test]
    fn library_requests_decode_and_bad_names_are_refused_with_the_reason() {
        use crate::LibraryRequest;
        let request = |m: OscMessage| {
            let table = table();
            decode_packet(&table, &msg_bytes(&m.addr, m.args))
                .unwrap()
                .remove(0)
                .map(|d| d.request)
        };
        assert_eq!(
            request(message("/library/load", vec![text("demo")])),
            Ok(Request::Library(LibraryRequest::Load("demo".into())))
        );
        assert_eq!(
            request(message("/library/save", vec![text("my-patch_2")])),
            Ok(Request::Library(LibraryRequest::Save("my-patch_2".into())))
        );
        assert_eq!(
            request(message("/library/list", vec![])),
            Ok(Request::Library(LibraryRequest::List))
        );
        for (address, name) in [
            ("/library/load", "../../etc/passwd"),
            ("/library/save", "a/b"),
            ("/library/save", ""),
        ] {
            let fail = request(message(address, vec![text(name)])).unwrap_err();
            assert_eq!(fail.address, address);
            assert!(
                fail.reason.contains("not allowed") || fail.reason.contains("empty"),
                "{}",
                fail.reason
            );
        }
        assert!(reason(message("/library/load", vec![OscType::Int(3)])).contains("string"));
    }

    #[test]
    fn osc_symbols_are_read_as_strings() {
        // `/params ,S "env"`: rosc cannot encode a symbol, so patch the tag by hand.
        let mut bytes = msg_bytes("/params", vec![text("env")]);
        let tag = bytes.iter().position(|&b| b == b',').unwrap() + 1;
        assert_eq!(bytes[tag], b's');
        bytes[tag] = b'S';
        assert_eq!(
            one(&bytes).unwrap().request,
            Request::Params {
                id: "env".to_string(),
                node: 1
            }
        );
        // Inside a bundle too, next to a plain message.
        let mut inner = msg_bytes("/patch/add", vec![text("lfo"), text("sine")]);
        let tags = inner.iter().position(|&b| b == b',').unwrap();
        inner[tags + 1] = b'S';
        inner[tags + 2] = b'S';
        let mut bundle_bytes = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        let status = msg_bytes("/status", vec![]);
        for element in [&status, &inner] {
            bundle_bytes.extend_from_slice(&(element.len() as u32).to_be_bytes());
            bundle_bytes.extend_from_slice(element);
        }
        let results = decode_packet(&table(), &bundle_bytes).unwrap();
        assert_eq!(results[0].as_ref().unwrap().request, Request::Status);
        assert_eq!(
            results[1].as_ref().unwrap().request,
            Request::Patch(PatchEdit::Add {
                id: "lfo".to_string(),
                type_name: "sine".to_string()
            })
        );
        // No symbol, no copy.
        assert!(symbols_as_strings(&status).is_none());
    }

    #[test]
    fn unknown_addresses_get_a_suggestion() {
        let fail = one(&msg_bytes("/mod/sine/frq", vec![OscType::Int(1)])).unwrap_err();
        assert_eq!(fail.address, "/mod/sine/frq");
        assert_eq!(
            fail.reason,
            "unknown address /mod/sine/frq (did you mean /mod/sine/freq?)"
        );
        let fail = one(&msg_bytes("/nothing/like/it/at/all", vec![])).unwrap_err();
        assert!(
            fail.reason.contains("chronus send --list"),
            "{}",
            fail.reason
        );
    }

    #[test]
    fn a_fixed_parameter_is_no_address_and_says_how_to_change_it() {
        let modules = [("echo".to_string(), chronus_dsp::spec_for("delay").unwrap())];
        let t = AddressTable::new(&modules, false);
        let how = "max_time of delay `echo` is fixed when the patch compiles (it sizes memory, which the audio path never allocates): change it with /patch/set echo max_time <value> and /patch/commit";
        let fail = validate_message(
            &t,
            &message("/mod/echo/max_time", vec![OscType::Float(100.0)]),
        )
        .unwrap_err();
        assert_eq!(fail.reason, how);
        for (addr, args) in [
            ("/get", vec![OscType::String("/mod/echo/max_time".into())]),
            (
                "/ramp",
                vec![
                    OscType::String("/mod/echo/max_time".into()),
                    OscType::Float(100.0),
                    OscType::Float(1.0),
                ],
            ),
        ] {
            let fail = validate_message(&t, &message(addr, args)).unwrap_err();
            assert_eq!(fail.reason, format!("{addr}: {how}"));
        }
        assert!(
            validate_message(&t, &message("/mod/echo/time", vec![OscType::Float(100.0)])).is_ok()
        );
    }

    #[test]
    fn debug_addresses_are_unknown_without_fault_injection() {
        let t = AddressTable::new(&[], false);
        let fail = validate_message(&t, &message("/debug/crash", vec![])).unwrap_err();
        assert!(
            fail.reason.starts_with("unknown address"),
            "{}",
            fail.reason
        );
    }

    #[test]
    fn wrong_argument_counts_name_the_signature() {
        let t = table();
        let reason = |msg| validate_message(&t, &msg).unwrap_err().reason;
        assert_eq!(
            reason(message("/mod/sine/freq", vec![])),
            "/mod/sine/freq: expected 1 argument <freq>, got 0"
        );
        assert_eq!(
            reason(message(
                "/mod/sine/freq",
                vec![OscType::Int(1), OscType::Int(2)]
            )),
            "/mod/sine/freq: expected 1 argument <freq>, got 2"
        );
        assert_eq!(
            reason(message("/status", vec![OscType::Int(1)])),
            "/status: expected no arguments, got 1"
        );
        assert_eq!(
            reason(message("/debug/slow", vec![])),
            "/debug/slow: expected 1 to 2 arguments <micros> [slot], got 0"
        );
    }

    #[test]
    fn malformed_arguments_fail_with_a_reason() {
        let t = table();
        let reason = |args| {
            validate_message(&t, &message("/mod/sine/freq", args))
                .unwrap_err()
                .reason
        };
        assert_eq!(
            reason(vec![OscType::String("abc".into())]),
            "/mod/sine/freq: argument 1 (freq) must be a number in Hz, got string \"abc\""
        );
        assert!(reason(vec![OscType::Float(f32::NAN)]).contains("NaN"));
        assert!(reason(vec![OscType::Float(f32::INFINITY)]).contains("inf"));
        assert!(reason(vec![OscType::Double(f64::NEG_INFINITY)]).contains("-inf"));
        assert!(reason(vec![OscType::Blob(vec![0; 8])]).contains("blob"));
        assert_eq!(
            reason(vec![OscType::Int(30000)]),
            "/mod/sine/freq: 30000 Hz is out of range 0.01..20000 Hz"
        );
        assert_eq!(
            reason(vec![OscType::Float(0.001)]),
            "/mod/sine/freq: 0.001 Hz is out of range 0.01..20000 Hz"
        );
        let gate = validate_message(&t, &message("/gate/env", vec![OscType::Int(2)]));
        assert!(gate.unwrap_err().reason.contains("must be 0 or 1"));
        let slot = validate_message(&t, &message("/debug/crash", vec![OscType::Int(2)]));
        assert!(slot.unwrap_err().reason.contains("out of range 0..1"));
        let sync = validate_message(&t, &message("/sync", vec![OscType::Long(1 << 40)]));
        assert!(sync.unwrap_err().reason.contains("out of range"));
    }

    #[test]
    fn every_number_type_is_accepted() {
        for arg in [
            OscType::Int(440),
            OscType::Long(440),
            OscType::Float(440.0),
            OscType::Double(440.0),
        ] {
            let decoded = one(&msg_bytes("/mod/sine/freq", vec![arg])).unwrap();
            assert_eq!(
                decoded.request,
                Request::Engine(Command::SetParam {
                    node: 0,
                    param: 0,
                    value: 440.0
                })
            );
        }
    }

    #[test]
    fn bundles_carry_their_timetag() {
        let bytes = encode(OscPacket::Bundle(bundle(
            3_900_000_000,
            vec![freq(100.0), freq(200.0)],
        )));
        let results = decode_packet(&table(), &bytes).unwrap();
        assert_eq!(results.len(), 2);
        for result in results {
            assert_eq!(result.unwrap().time, at(3_900_000_000));
        }
        let immediate = encode(OscPacket::Bundle(bundle(0, vec![freq(100.0)])));
        let results = decode_packet(&table(), &immediate).unwrap();
        assert_eq!(results[0].as_ref().unwrap().time, When::Now);
    }

    #[test]
    fn nested_bundles_use_the_innermost_time() {
        let bytes = encode(OscPacket::Bundle(bundle(
            100,
            vec![
                freq(1.0),
                OscPacket::Bundle(bundle(200, vec![freq(2.0)])),
                OscPacket::Bundle(bundle(0, vec![freq(3.0)])),
            ],
        )));
        let times: Vec<When> = decode_packet(&table(), &bytes)
            .unwrap()
            .into_iter()
            .map(|r| r.unwrap().time)
            .collect();
        assert_eq!(times, vec![at(100), at(200), at(100)]);
    }

    #[test]
    fn nested_bundle_earlier_than_outer_fails_whole_bundle() {
        let bytes = encode(OscPacket::Bundle(bundle(
            200,
            vec![freq(1.0), OscPacket::Bundle(bundle(100, vec![freq(2.0)]))],
        )));
        let results = decode_packet(&table(), &bytes).unwrap();
        assert_eq!(results.len(), 2);
        for result in results {
            let fail = result.unwrap_err();
            assert!(fail.reason.contains("earlier than"), "{}", fail.reason);
        }
    }

    #[test]
    fn a_bundle_with_one_bad_message_is_refused_entirely() {
        let bytes = encode(OscPacket::Bundle(bundle(
            0,
            vec![
                freq(100.0),
                OscPacket::Message(message("/mod/sine/amp", vec![OscType::Float(2.0)])),
                OscPacket::Message(message("/test", vec![])),
            ],
        )));
        let results = decode_packet(&table(), &bytes).unwrap();
        assert_eq!(results.len(), 3);
        let fails: Vec<Fail> = results.into_iter().map(Result::unwrap_err).collect();
        assert_eq!(fails[0].address, "/mod/sine/freq");
        assert!(fails[0]
            .reason
            .contains("the bundle was refused because message 2 (/mod/sine/amp) failed"));
        assert!(fails[1]
            .reason
            .starts_with("/mod/sine/amp: 2 is out of range 0..1"));
        assert!(fails[1].reason.ends_with("the whole bundle was refused"));
        assert_eq!(fails[2].address, "/test");
    }

    #[test]
    fn empty_bundle_decodes_to_nothing() {
        let bytes = encode(OscPacket::Bundle(bundle(0, vec![])));
        assert_eq!(decode_packet(&table(), &bytes), Ok(vec![]));
    }

    #[test]
    fn garbage_is_a_packet_error() {
        let t = table();
        assert_eq!(decode_packet(&t, b""), Err(PacketError::Empty));
        assert!(matches!(
            decode_packet(&t, b"\x00\x00\x00\x00"),
            Err(PacketError::Malformed(_))
        ));
        assert!(matches!(
            decode_packet(&t, b"hello world"),
            Err(PacketError::Malformed(_))
        ));
        assert!(matches!(
            decode_packet(&t, &[0xff; 64]),
            Err(PacketError::Malformed(_))
        ));
        // scsynth reads a leading zero byte as a numbered command; we refuse it.
        let mut numbered = msg_bytes("/quit", vec![]);
        numbered[0] = 0;
        assert!(decode_packet(&t, &numbered).is_err());
    }

    #[test]
    fn truncated_packets_are_refused() {
        let t = table();
        let full = msg_bytes("/mod/sine/freq", vec![OscType::Float(440.0)]);
        for len in 1..full.len() {
            // Cut right after the address, it is an OSC 1.0 message without type tags,
            // refused for its missing argument; anything else is not OSC.
            let refused = match decode_packet(&t, &full[..len]) {
                Err(_) => true,
                Ok(results) => results.iter().all(Result::is_err),
            };
            assert!(refused, "prefix of {len} bytes decoded");
        }
        let bundle_bytes = encode(OscPacket::Bundle(bundle(0, vec![freq(1.0), freq(2.0)])));
        // Cutting exactly after the first element leaves a complete, shorter bundle.
        let boundary = 16 + 4 + full.len();
        for len in (17..bundle_bytes.len()).filter(|&len| len != boundary) {
            assert!(
                decode_packet(&t, &bundle_bytes[..len]).is_err(),
                "bundle prefix of {len} bytes decoded"
            );
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = msg_bytes("/status", vec![]);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            decode_packet(&table(), &bytes),
            Err(PacketError::TrailingBytes(4))
        );
    }

    #[test]
    fn a_message_without_a_type_tag_string_has_no_arguments() {
        // OSC 1.0 clients may send just the address, padded: `/status` with no `,`.
        let bare = b"/status\0".to_vec();
        let decoded = decode_packet(&table(), &bare).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].as_ref().unwrap().address, "/status");
        // The same inside a bundle (whose element size the rebuild corrects).
        let mut in_bundle = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
        in_bundle.extend_from_slice(&(bare.len() as u32).to_be_bytes());
        in_bundle.extend_from_slice(&bare);
        in_bundle.extend_from_slice(&(12u32).to_be_bytes());
        in_bundle.extend_from_slice(b"/version\0\0\0\0");
        let decoded = decode_packet(&table(), &in_bundle).unwrap();
        let addresses: Vec<_> = decoded
            .iter()
            .map(|d| d.as_ref().unwrap().address.clone())
            .collect();
        assert_eq!(addresses, ["/status", "/version"]);
        // An address that needs arguments is refused for their lack, not as garbage.
        let freq = decode_packet(&table(), b"/mod/sine/freq\0\0").unwrap();
        assert!(freq[0].is_err());
        // An unterminated address stays undecodable.
        assert!(decode_packet(&table(), b"/status").is_err());
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing() {
        // Build thousands of nested bundles by hand: far deeper than the limit.
        let mut bytes = msg_bytes("/status", vec![]);
        for _ in 0..3000 {
            let mut outer = b"#bundle\0\0\0\0\0\0\0\0\x01".to_vec();
            outer.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
            outer.extend_from_slice(&bytes);
            bytes = outer;
        }
        assert_eq!(decode_packet(&table(), &bytes), Err(PacketError::TooDeep));
        let ok = encode(OscPacket::Bundle(bundle(
            0,
            vec![OscPacket::Bundle(bundle(0, vec![freq(5.0)]))],
        )));
        assert_eq!(decode_packet(&table(), &ok).unwrap().len(), 1);
    }

    fn valid_packets() -> Vec<Vec<u8>> {
        vec![
            msg_bytes("/mod/sine/freq", vec![OscType::Float(440.0)]),
            msg_bytes("/debug/slow", vec![OscType::Int(10), OscType::Int(1)]),
            msg_bytes("/gate/env", vec![OscType::Bool(true)]),
            msg_bytes(
                "/ramp",
                vec![
                    OscType::String("/mod/sine/freq".into()),
                    OscType::Int(880),
                    OscType::Float(1.5),
                ],
            ),
            encode(OscPacket::Bundle(bundle(
                5,
                vec![
                    freq(3.0),
                    OscPacket::Bundle(bundle(6, vec![freq(4.0)])),
                    OscPacket::Message(message(
                        "/x",
                        vec![
                            OscType::String("s".into()),
                            OscType::Blob(vec![1, 2, 3]),
                            OscType::Array(rosc::OscArray {
                                content: vec![OscType::Int(1)],
                            }),
                        ],
                    )),
                ],
            ))),
        ]
    }

    /// A valid OSC argument for `spec` of `address`, drawn from `seed` (texts are names
    /// this table has, as the address wants them).
    fn valid_arg(address: &str, spec: &ArgSpec, seed: u64) -> OscType {
        let unit = (seed % 10_001) as f64 / 10_000.0;
        match spec.kind {
            // `/ramp`'s target is in its parameter's range (its address: /mod/sine/freq).
            ArgKind::Number { .. } if (address, spec.name) == ("/ramp", "target") => {
                OscType::Float((0.01 + 19_999.99 * unit) as f32)
            }
            // An arpeggiator's rate is a whole number of 96ths of a beat (3..=384).
            ArgKind::Number { .. } if address.starts_with("/arp/") && spec.name == "beats" => {
                OscType::Float((3 + seed % 382) as f32 / 96.0)
            }
            ArgKind::Number { min, max, .. } => {
                let value = f64::from(min) + (f64::from(max) - f64::from(min)) * unit;
                OscType::Float((value as f32).clamp(min, max))
            }
            ArgKind::Gate => {
                // T/F, or 0/1 as an int.
                match seed % 4 {
                    0 => OscType::Bool(true),
                    1 => OscType::Bool(false),
                    on => OscType::Int((on == 3) as i32),
                }
            }
            ArgKind::Int { min, max } => {
                let span = (max - min) as u64 + 1;
                OscType::Int((min + (seed % span) as i64) as i32)
            }
            ArgKind::Text { .. } => OscType::String(
                match (address, spec.name) {
                    ("/ramp", "address") => "/mod/sine/freq",
                    (_, "address") => ["/mod/sine/freq", "/mod/env/level"][(seed % 2) as usize],
                    ("/patch/add", "id") => "lfo",
                    (_, "id") => "sine",
                    (_, "type") => "sine",
                    (_, "from") => "sine",
                    (_, "to") => "env",
                    (_, "param") => "freq",
                    (_, "point") => "ready",
                    (_, "instrument") => "keys",
                    (_, "mode") => ["up", "down", "updown", "random"][(seed % 4) as usize],
                    (_, "name") => ["demo", "my-patch_2"][(seed % 2) as usize],
                    (_, "topic") => ["failover", "levels", "metrics=5"][(seed % 3) as usize],
                    (_, other) => panic!("no valid text for {address} {other}: add one here"),
                }
                .to_string(),
            ),
        }
    }

    proptest! {
        #[test]
        fn every_address_decodes_its_valid_arguments_and_engine_commands_round_trip(
            seeds in proptest::collection::vec(any::<u64>(), 4),
            leave_out_optional in any::<bool>(),
        ) {
            let table = table();
            for entry in table.entries() {
                // Leaving out the optional arguments leaves out a leading instrument too.
                let (declared, _) = entry.declared_for(!leave_out_optional);
                let required = declared.iter().filter(|a| !a.optional).count();
                let count = if leave_out_optional { required } else { declared.len() };
                let args: Vec<OscType> = declared[..count]
                    .iter()
                    .zip(&seeds)
                    .map(|(spec, &seed)| valid_arg(&entry.address, spec, seed))
                    .collect();
                let decoded = one(&msg_bytes(&entry.address, args.clone()))
                    .unwrap_or_else(|fail| panic!("{} {args:?}: {}", entry.address, fail.reason));
                prop_assert_eq!(&decoded.address, &entry.address);
                let Request::Engine(command) = &decoded.request else {
                    continue;
                };
                // The inverse of decoding (what the command log writes) gives the address
                // back, and its values decode to the same command again.
                if let Some((address, values)) = table.describe(command) {
                    let again: Vec<OscType> = values
                        .iter()
                        .filter_map(|value| match value {
                            Value::Number(v) => Some(OscType::Float(*v)),
                            Value::Gate(on) => Some(OscType::Bool(*on)),
                            Value::Int(v) => Some(OscType::Long(*v)),
                            Value::Text(t) => Some(OscType::String(t.clone())),
                            Value::Absent => None,
                        })
                        .collect();
                    let redecoded = one(&msg_bytes(&address, again)).unwrap();
                    prop_assert_eq!(redecoded.request, decoded.request.clone());
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_packet(&table(), &bytes);
        }

        #[test]
        fn random_bundle_like_bytes_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..256)
        ) {
            let mut bytes = b"#bundle\0".to_vec();
            bytes.extend_from_slice(&tail);
            let _ = decode_packet(&table(), &bytes);
        }

        #[test]
        fn mutated_valid_packets_never_panic(
            which in 0usize..5,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..8),
        ) {
            let mut bytes = valid_packets()[which].clone();
            for (position, byte, op) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let i = position % bytes.len();
                match op {
                    0 => bytes[i] = byte,
                    1 => bytes.truncate(i),
                    2 => bytes.insert(i, byte),
                    _ => { bytes.remove(i); }
                }
            }
            let _ = decode_packet(&table(), &bytes);
        }

        #[test]
        fn arbitrary_messages_validate_without_panicking(
            addr in prop_oneof![
                Just("/mod/sine/freq".to_string()),
                Just("/gate/env".to_string()),
                Just("/debug/slow".to_string()),
                Just("/sync".to_string()),
                Just("/ramp".to_string()),
                Just("/get".to_string()),
                Just("/params".to_string()),
                Just("/patch/set".to_string()),
                "/[a-z/]{0,20}",
            ],
            texts in proptest::collection::vec(prop_oneof![
                Just("/mod/sine/freq".to_string()),
                Just("env".to_string()),
                ".{0,300}",
            ], 0..2),
            ints in proptest::collection::vec(any::<i64>(), 0..3),
            float in any::<f64>(),
        ) {
            let mut args: Vec<OscType> = texts.into_iter().map(OscType::String).collect();
            args.extend(ints.into_iter().map(OscType::Long));
            args.push(OscType::Double(float));
            let _ = validate_message(&table(), &message(&addr, args.clone()));
            args.pop();
            let _ = validate_message(&table(), &message(&addr, args));
        }
    }
}
