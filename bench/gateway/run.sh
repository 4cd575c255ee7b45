#!/usr/bin/env bash
# bench/gateway/run.sh - what the gateway costs, all on loopback:
#  1. a cached /embeddings/ hit vs GET / (latency p50/p99, requests/s; same run)
#  2. gateway overhead: /api/generate through Simpleton -> Simpleton (Ollama
#     backend) vs straight to the second one (sequential requests, p50/p99;
#     ROUNDS alternations, then the median of each figure)
#  3. local generate tokens/s through the API vs the CLI, and embeddings texts/s
# usage: bench/gateway/run.sh [DURATION_S] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SIMPLETON_BIN:-build/simpleton}
DUR=${1:-5}
ROUNDS=${2:-5}
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"' EXIT

start() { # name, then env assignments
    local name=$1; shift
    env "$@" HOST=127.0.0.1 PORT=0 API_KEYS=bench ACCESS_LOG=false DATA_DIR="$tmp/$name" ENV_FILE=/nonexistent \
        "$BIN" serve 2>"$tmp/$name.log" &
    pids+=($!)
    for _ in $(seq 200); do
        port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$tmp/$name.log")
        [ -n "$port" ] && { eval "${name}_port=$port"; return; }
        sleep 0.05
    done
    echo "$name did not start"; cat "$tmp/$name.log"; exit 1
}
# wrk summary: "p50 p99 req/s" (latencies in microseconds)
wrkstat() {
    awk '/^ +50%/{p50=$2} /^ +99%/{p99=$2} /Requests\/sec/{rps=$2}
         function us(x){ if (x ~ /us$/) return x+0; if (x ~ /ms$/) return x*1000; if (x ~ /s$/) return x*1e6; return x }
         END{printf "%.0f %.0f %.0f\n", us(p50), us(p99), rps}'
}

echo "== 1. cached embeddings hit vs GET / (wrk -t1 -c16, ${DUR}s each)"
start a
printf '{"input": "The quick brown fox jumps over the lazy dog", "model": "stories260K"}' > "$tmp/emb.json"
curl -s -o /dev/null -H 'X-API-Key: bench' -H 'Content-Type: application/json' --data @"$tmp/emb.json" "http://127.0.0.1:$a_port/embeddings/"
hit=$(curl -s -D - -o /dev/null -H 'X-API-Key: bench' -H 'Content-Type: application/json' --data @"$tmp/emb.json" "http://127.0.0.1:$a_port/embeddings/" | tr -d '\r' | sed -n 's/^[Xx]-[Cc]ache: //p')
[ "$hit" = HIT ] || { echo "the embeddings request is not a cache hit ($hit)"; exit 1; }
wrk -t1 -c16 -d1s "http://127.0.0.1:$a_port/" >/dev/null
read -r r_p50 r_p99 r_rps < <(wrk -t1 -c16 -d"${DUR}s" --latency "http://127.0.0.1:$a_port/" | wrkstat)
read -r e_p50 e_p99 e_rps < <(BODY_FILE="$tmp/emb.json" API_KEY=bench wrk -t1 -c16 -d"${DUR}s" --latency \
    -s bench/gateway/post.lua "http://127.0.0.1:$a_port/embeddings/" | wrkstat)
echo "GET /                : p50 ${r_p50} us  p99 ${r_p99} us  ${r_rps} req/s"
echo "cached /embeddings/  : p50 ${e_p50} us  p99 ${e_p99} us  ${e_rps} req/s"
awk -v a="$e_rps" -v b="$r_rps" 'BEGIN{printf "embeddings hit rate / GET / rate: %.2f\n", a/b}'
read -r e1_p50 e1_p99 _ < <(BODY_FILE="$tmp/emb.json" API_KEY=bench wrk -t1 -c1 -d"${DUR}s" --latency \
    -s bench/gateway/post.lua "http://127.0.0.1:$a_port/embeddings/" | wrkstat)
echo "cached /embeddings/, one connection: p50 ${e1_p50} us  p99 ${e1_p99} us"

echo "== 2. gateway overhead: /api/generate direct vs through a second Simpleton (sequential, ${DUR}s each)"
start up CACHE_ENABLED=false
start gw CACHE_ENABLED=false OLLAMA_BASE_URL="http://127.0.0.1:$up_port" OLLAMA_API_KEY=bench MODEL_BACKENDS=stories260K=ollama
printf '{"model": "stories260K", "prompt": "Once", "stream": false, "options": {"temperature": 0, "num_predict": 1}}' > "$tmp/gen.json"
served=$(curl -s -D - -o /dev/null -H 'X-API-Key: bench' --data @"$tmp/gen.json" "http://127.0.0.1:$gw_port/api/generate" | tr -d '\r' | sed -n 's/^[Xx]-[Ss]erved-[Bb]y: //p')
[ "$served" = ollama ] || { echo "the gateway did not forward (X-Served-By: $served)"; exit 1; }
: > "$tmp/rounds"
for round in $(seq "$ROUNDS"); do
    read -r d_p50 d_p99 _ < <(BODY_FILE="$tmp/gen.json" API_KEY=bench wrk -t1 -c1 -d"${DUR}s" --latency \
        -s bench/gateway/post.lua "http://127.0.0.1:$up_port/api/generate" | wrkstat)
    read -r g_p50 g_p99 _ < <(BODY_FILE="$tmp/gen.json" API_KEY=bench wrk -t1 -c1 -d"${DUR}s" --latency \
        -s bench/gateway/post.lua "http://127.0.0.1:$gw_port/api/generate" | wrkstat)
    echo "round $round direct: p50 ${d_p50} us p99 ${d_p99} us | via gateway: p50 ${g_p50} us p99 ${g_p99} us | added p50 $((g_p50 - d_p50)) us p99 $((g_p99 - d_p99)) us"
    echo "$d_p50 $d_p99 $g_p50 $g_p99 $((g_p50 - d_p50)) $((g_p99 - d_p99))" >> "$tmp/rounds"
done
med() { cut -d' ' -f"$1" "$tmp/rounds" | sort -n | awk '{v[NR]=$1} END{print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
echo "median of $ROUNDS rounds: direct p50 $(med 1) p99 $(med 2) | via gateway p50 $(med 3) p99 $(med 4) | added p50 $(med 5) us p99 $(med 6) us"

echo "== 3. local generation: API vs CLI, decode tok/s, runs alternated, best of 3 each"
# A model big enough that per-token overheads are measured against real work:
# the TinyLlama-shape Q4_K_M file from bench/engine (made if missing).
BENCH_DIR=${BENCH_DIR:-/tmp/simpleton-bench}
M="$BENCH_DIR/tinyllama-Q4_K_M.gguf"
mkdir -p "$BENCH_DIR"
[ -s "$M" ] || "$BIN" mkmodel --shape tinyllama-1.1b --type Q4_K_M "$M" >/dev/null 2>&1
start big MODELS_DIR="$BENCH_DIR" CACHE_ENABLED=false THREADS=2
cli_best=0; api_best=0
for i in 1 2 3; do
    c=$("$BIN" run "$M" "Once upon a time there was a little dog" -n 64 --temp 0 --threads 2 2>&1 >/dev/null |
        sed -n 's/.*decode:.*(\([0-9.]*\) tok\/s).*/\1/p')
    a=$(curl -s -H 'X-API-Key: bench' -d '{"model":"tinyllama-Q4_K_M","prompt":"Once upon a time there was a little dog","temperature":0,"max_tokens":64}' \
        "http://127.0.0.1:$big_port/inference/generate" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["eval_count"]/(d["eval_duration"]/1e9))')
    cli_best=$(awk -v a="$c" -v b="$cli_best" 'BEGIN{print (a>b)?a:b}')
    api_best=$(awk -v a="$a" -v b="$api_best" 'BEGIN{print (a>b)?a:b}')
done
awk -v c="$cli_best" -v a="$api_best" 'BEGIN{printf "TinyLlama Q4_K_M decode tok/s: CLI %.2f  API %.2f  (API/CLI %.3f)\n", c, a, a/c}'
python3 - "$a_port" <<'PY'
import json, sys, time, urllib.request
port = sys.argv[1]
texts = [f"text number {i} about a little dog in the park" for i in range(64)]
def call():
    req = urllib.request.Request(f"http://127.0.0.1:{port}/embeddings/", json.dumps({"input": texts}).encode(),
        {"X-API-Key": "bench", "Content-Type": "application/json", "Cache-Control": "no-cache"})
    return json.load(urllib.request.urlopen(req))
call()
t = time.time(); n = 0
while time.time() - t < 3: call(); n += len(texts)
print(f"local embeddings (uncached, batches of 64): {n / (time.time() - t):.0f} texts/s")
PY
