#!/usr/bin/env bash
# Sets up the machine, builds Chronus in release mode and runs the server with its
# built-in default patch. Extra arguments go to `chronus serve` (e.g. --output wav:out.wav).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release --quiet
exec ./target/release/chronus serve "$@"
