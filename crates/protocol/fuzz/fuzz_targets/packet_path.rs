//! Fuzz target: the server's whole packet path (decoding, validation, address patterns,
//! dispatch, patch edits, stamping) must never panic on any input, and must account for
//! every message: received = accepted + rejected after each packet.
//!
//! An input is up to 16 packets separated by the byte `ff`, handled in order. One
//! [`PacketPath`] serves every input of a run, as one server meets the packets of many
//! clients over its life (a fresh one per input costs 4 ms, 50 times the handling): a
//! patch edited by one input is committed by another. Run with
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run packet_path` from `crates/protocol` (scripts/fuzz.sh).
#![no_main]

use std::sync::{Mutex, OnceLock};

use chronus_supervisor::packet_path::PacketPath;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static PATH: OnceLock<Mutex<PacketPath>> = OnceLock::new();
    let path = PATH.get_or_init(|| Mutex::new(PacketPath::new().expect("a packet path")));
    let mut path = path.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (i, packet) in data.split(|&b| b == 0xff).take(16).enumerate() {
        // Every other packet as from another machine (where /quit and faults are refused).
        let peer = if i % 2 == 0 { [127, 0, 0, 1] } else { [192, 0, 2, 7] };
        path.handle_from(packet, std::net::IpAddr::from(peer));
        let (received, accounted) = path.accounting();
        assert_eq!(received, accounted, "every message accepted or rejected, once");
    }
});
