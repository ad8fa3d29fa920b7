#!/usr/bin/env bash
# How much CPU the server process itself uses while the default patch plays.
#
#   scripts/idle-cpu.sh [SECONDS] [CHRONUS_BINARY]     (defaults: 10, target/release/chronus)
#
# Starts `chronus serve --output null --osc 127.0.0.1:0` (default patch, gate closed), waits
# 3 s for it to settle, then reads utime+stime of the server's pid from /proc/PID/stat
# (fields 14 and 15: every thread of the server, and none of its worker processes, which
# are separate processes) at the start and the end of SECONDS, and prints the share of
# one core it used. The workers' own usage is printed beside it, the same way.
set -euo pipefail
seconds="${1:-10}"
binary="${2:-target/release/chronus}"
ticks=$(getconf CLK_TCK)

cpu_ticks() { # utime + stime of one pid, in clock ticks
    # The command name (field 2) may contain spaces: count fields after its ')'.
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

"$binary" serve --output null --osc 127.0.0.1:0 >/dev/null 2>&1 &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
sleep 3
workers=$(pgrep -P "$server" | tr '\n' ' ')
start_server=$(cpu_ticks "$server")
declare -A start_worker
for w in $workers; do start_worker[$w]=$(cpu_ticks "$w"); done
sleep "$seconds"
end_server=$(cpu_ticks "$server")
awk -v t=$((end_server - start_server)) -v hz="$ticks" -v s="$seconds" \
    'BEGIN { printf "server process: %.2f %% of one core over %d s\n", 100 * t / hz / s, s }'
for w in $workers; do
    end=$(cpu_ticks "$w")
    awk -v t=$((end - start_worker[$w])) -v hz="$ticks" -v s="$seconds" -v pid="$w" \
        'BEGIN { printf "worker %d: %.2f %% of one core\n", pid, 100 * t / hz / s }'
done
