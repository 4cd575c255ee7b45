#!/usr/bin/env bash
# bench/serving/run.sh - many users on one model (issue 15), side by side with
# llama.cpp's server on the same file, same threads, in the same run.
#
# For N in NS (default 1 2 4 8 16): a fresh server with N slots (Simpleton:
# PARALLEL=N; llama-server: -np N, N x 2048 context so each slot has 2048),
# THREADS=2, then bench/serving/load.mjs: N concurrent streaming completions of
# TOKENS (64) tokens, ROUNDS (3) rounds, and a two-turn conversation with a
# ~600-token system text. The two servers alternate which goes first for
# each N. Model: the TinyLlama-1.1B shape in Q4_K_M (random weights, made by
# `simpleton mkmodel`, kept in $BENCH_DIR).
#
#   usage: bench/serving/run.sh [ROUNDS] [NS...]
#   LLAMA_SERVER: llama.cpp's llama-server (default ~/ref/llama.cpp/build/bin/llama-server,
#   built by ../shared/tools/build-reference.sh); without it only Simpleton runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SIMPLETON_BIN:-build/simpleton}
ROUNDS=${1:-3}
shift || true
NS=${*:-1 2 4 8 16}
TOKENS=${TOKENS:-64}
BENCH_DIR=${BENCH_DIR:-/tmp/simpleton-bench}
LLAMA_SERVER=${LLAMA_SERVER:-$HOME/ref/llama.cpp/build/bin/llama-server}
M="$BENCH_DIR/tinyllama-Q4_K_M.gguf"
mkdir -p "$BENCH_DIR"
[ -s "$M" ] || "$BIN" mkmodel --shape tinyllama-1.1b --type Q4_K_M "$M" >/dev/null 2>&1
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

wait_port() { # log-file pattern -> port
    for _ in $(seq 600); do
        p=$(sed -n "$2" "$1" | head -1)
        [ -n "$p" ] && { echo "$p"; return; }
        sleep 0.1
    done
    echo "server did not start: $(tail -5 "$1")" >&2
    exit 1
}

simpleton() { # N -> JSON line
    : > "$tmp/log"
    HOST=127.0.0.1 PORT=0 API_KEYS=bench ACCESS_LOG=false DATA_DIR="$tmp/data" ENV_FILE=/nonexistent \
        MODELS_DIR="$BENCH_DIR" DEFAULT_INFERENCE_MODEL=tinyllama-Q4_K_M THREADS=2 PARALLEL="$1" CONTEXT_SIZE=2048 \
        CACHE_ENABLED=false MONITORING_ENABLED=false "$BIN" serve 2>"$tmp/log" &
    pid=$!
    port=$(wait_port "$tmp/log" 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p')
    # Load the model before measuring (both servers start with it loaded).
    curl -s -o /dev/null -H 'X-API-Key: bench' "http://127.0.0.1:$port/v1/completions" \
        -d '{"model":"tinyllama-Q4_K_M","prompt":"hi","max_tokens":1}'
    node bench/serving/load.mjs "http://127.0.0.1:$port" bench "$1" "$TOKENS" "$ROUNDS"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

llama() { # N -> JSON line
    : > "$tmp/llog"
    port=$((20000 + RANDOM % 20000))
    "$LLAMA_SERVER" -m "$M" -t 2 -tb 2 -np "$1" -c $((2048 * $1)) --host 127.0.0.1 --port "$port" \
        >"$tmp/llog" 2>&1 &
    pid=$!
    wait_port "$tmp/llog" "s/.*listening on http:\/\/127.0.0.1:\($port\).*/\1/p" >/dev/null
    node bench/serving/load.mjs "http://127.0.0.1:$port" none "$1" "$TOKENS" "$ROUNDS"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
}

printf '%3s | %10s %10s %6s | %9s %9s | %9s %9s | %14s %14s\n' N "S tok/s" "L tok/s" ratio "S p50 ms" "L p50 ms" \
    "S p99 ms" "L p99 ms" "S turn2/turn1" "L turn2/turn1"
i=0
for n in $NS; do
    i=$((i + 1))
    if [ -x "$LLAMA_SERVER" ]; then
        if [ $((i % 2)) -eq 1 ]; then s=$(simpleton "$n"); l=$(llama "$n"); else l=$(llama "$n"); s=$(simpleton "$n"); fi
    else
        s=$(simpleton "$n"); l='{}'
    fi
    echo "$s" >>"${RAW_OUT:-/dev/null}"; echo "$l" >>"${RAW_OUT:-/dev/null}"
    node -e '
      const [s, l] = process.argv.slice(1).map((x) => JSON.parse(x));
      const r = (a, b) => (a && b ? (a / b).toFixed(2) + "x" : "-");
      const t = (o) => (o.turn1_ttft_ms ? `${o.turn2_ttft_ms}/${o.turn1_ttft_ms}` : "-");
      console.log(`${String(s.n).padStart(3)} | ${String(s.tok_s).padStart(10)} ${String(l.tok_s ?? "-").padStart(10)} ` +
        `${r(s.tok_s, l.tok_s).padStart(6)} | ${String(s.ttft_p50_ms).padStart(9)} ${String(l.ttft_p50_ms ?? "-").padStart(9)} | ` +
        `${String(s.ttft_p99_ms).padStart(9)} ${String(l.ttft_p99_ms ?? "-").padStart(9)} | ${t(s).padStart(14)} ${t(l).padStart(14)}`);
    ' "$s" "$l"
done
