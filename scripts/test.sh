#!/usr/bin/env bash
# Sets up the machine and runs every check CI runs: formatting, clippy with warnings as
# errors, and the whole test suite (unit, property, and end-to-end tests that start the
# real server and real worker processes).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The ci profile (Cargo.toml): optimised, since the end-to-end tests play real-time audio on
# a possibly loaded machine, without LTO so a fresh clone builds quickly. Every test binary
# runs even after one fails, so a run reports all its failures.
cargo test --workspace --profile ci --no-fail-fast
# A bounded fuzz run of the OSC decoder and the server's whole packet path (20 s each,
# after their build); scripts/fuzz.sh 3600 is the long run.
./scripts/fuzz.sh 20
