#!/usr/bin/env bash
# Measures that a change costs no speed: runs the DSP benchmark against fundsp
# (`cargo bench -p chronus-bench --features fundsp`) and `chronus bench failover` of <rev>
# and of this checkout alternately, in one run on this machine, and prints each side's
# medians and their ratio. Uses the tree of <rev> that scripts/same-output.sh builds
# (run that first); builds this checkout's release binaries itself.
#
# Usage: scripts/compare-speed.sh <rev> [rounds] [dsp|failover|both]   (default: 3 both)
set -euo pipefail
rev=${1:?usage: scripts/compare-speed.sh <rev> [rounds]}
rounds=${2:-3}
what=${3:-both}
root=$(git rev-parse --show-toplevel)
common=$(cd "$(git -C "$root" rev-parse --path-format=absolute --git-common-dir)/.." && pwd)
cache=${SAME_OUTPUT_DIR:-$common/target/same-output}
old_sha=$(git -C "$root" rev-parse --verify "$rev^{commit}")
old="$cache/tree-old-$old_sha"
[ -x "$old/target/release/chronus" ] || { echo "run scripts/same-output.sh $rev first" >&2; exit 1; }

bench_binary() { # the dsp_vs_fundsp executable of the tree $1, built if needed
    (cd "$1" && cargo bench -p chronus-bench --features fundsp --no-run 2>&1 |
        sed -n 's/.*Executable.*(\(.*dsp_vs_fundsp[^)]*\)).*/\1/p' | tail -1) | sed "s|^|$1/|"
}
(cd "$root" && cargo build --quiet --release -p chronus)
old_bench=$(bench_binary "$old")
new_bench=$(bench_binary "$root")
for b in "$old_bench" "$new_bench"; do
    [ -x "$b" ] || { echo "compare-speed: no benchmark executable ($b)" >&2; exit 1; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for round in $(seq "$rounds"); do
    for side in old new; do
        if [ $side = old ]; then bench=$old_bench chronus=$old/target/release/chronus; else
            bench=$new_bench chronus=$root/target/release/chronus; fi
        echo "round $round: $side" >&2
        touch "$out/dsp-$side" "$out/failover-$side"
        [ "$what" = failover ] || "$bench" --bench >>"$out/dsp-$side" 2>/dev/null
        [ "$what" = dsp ] || "$chronus" bench failover --kills 30 --depth 8 2>/dev/null >>"$out/failover-$side"
    done
done
python3 - "$out" <<'PY'
import re, statistics, sys, pathlib
out = pathlib.Path(sys.argv[1])
def dsp(side):
    rows = {}
    for line in (out / f"dsp-{side}").read_text().splitlines():
        m = re.match(r"^(\d .*?)\s{2,}([\d.]+)\s+([\d.]+)\s+([\d.]+)$", line)
        if m:
            # The ratio of this round, from the ns/sample columns (finer than the printed ratio).
            rows.setdefault(m.group(1), []).append(float(m.group(2)) / float(m.group(3)))
    return rows
def latency(side):
    return [float(m.group(1)) for m in re.finditer(
        r"command latency \(UDP -> frame\)\s*\|\s*\d+\s*\|\s*([\d.]+)", (out / f"failover-{side}").read_text())]
old, new = dsp("old"), dsp("new")
print(f"{'chain':28} {'old Chronus/fundsp':>20} {'new Chronus/fundsp':>20} {'new/old':>8}")
for chain in old:
    o, n = statistics.median(old[chain]), statistics.median(new[chain])
    print(f"{chain:28} {o:20.3f} {n:20.3f} {n / o:8.3f}")
if latency("old") and latency("new"):
    o, n = statistics.median(latency("old")), statistics.median(latency("new"))
    print(f"{'command latency p50 (ms)':28} {o:20.3f} {n:20.3f} {n / o:8.3f}")
PY
