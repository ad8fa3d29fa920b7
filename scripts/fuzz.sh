#!/usr/bin/env bash
# Fuzzes the OSC decoder (target `decode`) and the server's whole packet path (target
# `packet_path`: decoding, validation, patterns, dispatch, patch edits, stamping) with
# cargo-fuzz: libFuzzer with AddressSanitizer, on the stable toolchain (RUSTC_BOOTSTRAP=1
# lets cargo-fuzz pass the nightly flags it needs). Starts from crates/protocol/fuzz/seeds.
#
# Usage: scripts/fuzz.sh [SECONDS per target, default 30]
# CI runs it bounded (scripts/test.sh); a long run: scripts/fuzz.sh 3600. A crash leaves
# its input in crates/protocol/fuzz/artifacts/<target>/ and exits non-zero; each run's
# log is crates/protocol/fuzz/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install --quiet cargo-fuzz --locked
fi
cd crates/protocol
for target in decode packet_path; do
    mkdir -p "fuzz/corpus/$target"
    echo "fuzz: $target for $seconds s" >&2
    log="fuzz/$target.log"
    if ! RUSTC_BOOTSTRAP=1 cargo fuzz run --release "$target" "fuzz/corpus/$target" fuzz/seeds -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        echo "fuzz: $target failed (its input is in crates/protocol/fuzz/artifacts/$target/)" >&2
        exit 1
    fi
    grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" >&2 || true
done
