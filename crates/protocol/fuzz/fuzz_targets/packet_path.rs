//! Fuzz target: the server's whole packet path (decoding, validation, address patterns,
//! dispatch, `/notify`, patch edits, stamping) must never panic on any input, and must
//! account for every message: received = accepted + rejected after each packet.
//!
//! An input is up to 16 packets, each preceded by its length as a big-endian `u16` (a
//! last one shorter than its length takes what is left), handled in order; every other
//! packet is judged as from another machine (where `/quit` and fault injection are
//! refused). One [`PacketPath`] serves a run (a fresh one costs 4 ms, 50 times the
//! handling), but each input starts from the built-in patch with no draft
//! ([`PacketPath::reset_patch`]), so a crash replays from its input alone. Run with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run packet_path` from `crates/protocol` (scripts/fuzz.sh).
#![no_main]

use std::sync::{Mutex, OnceLock};

use chronus_supervisor::packet_path::PacketPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static PATH: OnceLock<Mutex<PacketPath>> = OnceLock::new();
    let path = PATH.get_or_init(|| Mutex::new(PacketPath::new().expect("a packet path")));
    let mut path = path.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    path.reset_patch();
    let mut rest = data;
    for i in 0..16 {
        let [high, low, tail @ ..] = rest else {
            break;
        };
        let len = usize::from(u16::from_be_bytes([*high, *low])).min(tail.len());
        let (packet, after) = tail.split_at(len);
        rest = after;
        let peer = if i % 2 == 0 { [127, 0, 0, 1] } else { [192, 0, 2, 7] };
        path.handle_from(packet, std::net::IpAddr::from(peer));
        let (received, accounted) = path.accounting();
        assert_eq!(received, accounted, "every message accepted or rejected, once");
    }
});
