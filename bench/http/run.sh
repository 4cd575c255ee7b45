#!/usr/bin/env bash
# bench/http/run.sh - requests/s of GET / with monitoring on and off (wrk on
# loopback). Runs the two configurations alternately ROUNDS times and reports
# the median of each, and the cost of monitoring as a fraction of throughput.
#   usage: bench/http/run.sh [DURATION_S] [ROUNDS] [CONNECTIONS]
# Access logging is off in both runs: it measures logging, not monitoring.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SIMPLETON_BIN:-build/simpleton}
DUR=${1:-5}
ROUNDS=${2:-3}
CONNS=${3:-50}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$tmp"' EXIT

start() { # $1 = MONITORING_ENABLED
    PORT=0 HOST=127.0.0.1 API_KEYS=bench ACCESS_LOG=false LOG_LEVEL=INFO DATA_DIR="$tmp/data" \
        ENV_FILE=/nonexistent MONITORING_ENABLED="$1" "$BIN" serve 2>"$tmp/log" &
    pid=$!
    for _ in $(seq 100); do
        port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$tmp/log")
        [ -n "$port" ] && return
        sleep 0.05
    done
    echo "server did not start"; cat "$tmp/log"; exit 1
}
run() { wrk -t1 -c"$CONNS" -d"${DUR}s" --latency "http://127.0.0.1:$port/" | tee -a "$tmp/wrk.txt" |
        awk '/Requests\/sec/{print $2}'; }

declare -a on off
for r in $(seq "$ROUNDS"); do
    for mode in true false; do
        start "$mode"
        run >/dev/null  # warm-up, not counted
        rps=$(run)
        kill "$pid"; wait "$pid" 2>/dev/null || true
        if [ "$mode" = true ]; then on+=("$rps"); else off+=("$rps"); fi
        echo "round $r monitoring=$mode: $rps req/s"
    done
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
mon=$(median "${on[@]}"); nomon=$(median "${off[@]}")
echo "median monitoring on:  $mon req/s"
echo "median monitoring off: $nomon req/s"
awk -v a="$mon" -v b="$nomon" 'BEGIN{printf "monitoring cost: %.1f%% of throughput (on/off ratio %.3f)\n", (1-a/b)*100, a/b}'
