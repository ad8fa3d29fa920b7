//! Chronus protocol (being written).
