//! A small address table for the examples and tests: an instrument `keys` (with a
//! `filter` member), a `filter`-less effects chain of `drive` (distortion), `reverb`,
//! `chorus` and `amp` (gain), a top-level `filter` (biquad), and tracks `d1` and `drums`.

use chronus_protocol::AddressTable;

/// The table described in this module's comment.
///
/// # Panics
/// Never: every type is built in.
pub fn table() -> AddressTable {
    let modules: Vec<(String, String)> = [
        ("filter", "biquad"),
        ("reverb", "reverb"),
        ("chorus", "chorus"),
        ("drive", "distortion"),
        ("amp", "gain"),
        ("out", "output"),
        ("keys", "instrument"),
        ("keys.note", "note"),
        ("keys.osc", "sine"),
        ("keys.lp", "ladder"),
        ("d1", "track"),
        ("drums", "track"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    AddressTable::from_type_names(&modules, false).expect("built-in types")
}
