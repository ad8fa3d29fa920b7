//! Fuzz target: `decode_packet` must return (never panic, never overflow the stack) on
//! any datagram. Run with `cargo fuzz run decode` from `crates/protocol`.
#![no_main]

use std::sync::OnceLock;

use chronus_dsp::spec::{ModuleSpec, ParamSpec, Unit};
use chronus_protocol::{decode_packet, AddressTable};
use libfuzzer_sys::fuzz_target;

static SINE: ModuleSpec = ModuleSpec {
    type_name: "sine",
    doc: "sine oscillator",
    inputs: &[],
    outputs: &[],
    params: &[ParamSpec {
        name: "freq",
        unit: Unit::Hertz,
        min: 0.01,
        max: 20000.0,
        default: 440.0,
        doc: "frequency",
        live: true,
    }],
    has_gate: true,
};

fn table() -> &'static AddressTable {
    static TABLE: OnceLock<AddressTable> = OnceLock::new();
    TABLE.get_or_init(|| AddressTable::new(&[("sine".to_string(), &SINE)], true))
}

fuzz_target!(|data: &[u8]| {
    let _ = decode_packet(table(), data);
});
