//! Chronus DSP (being written).
#![deny(unsafe_code)]
pub mod spec;
