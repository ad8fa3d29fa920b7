//! Chronus supervisor (being written).
