//! Chronus engine (being written).
pub mod command;
