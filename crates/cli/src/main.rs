//! The chronus binary (being written).
fn main() {}
