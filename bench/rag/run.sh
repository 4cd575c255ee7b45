#!/usr/bin/env bash
# bench/rag/run.sh - retrieval benchmarks.
#   1. build/bench_rag: search latency p50/p99 over N synthetic vectors
#      (default 100,000 x 384) against the time to read them once from memory,
#      plus the store's own add rate and reload time (no model involved).
#   2. ingestion through the server with the default model (stories260K when
#      nothing is configured): chunks/s for a fresh document (chunk, embed,
#      store) and for the same document again (embeddings from the cache), and
#      /rag/search latency over HTTP.
#   usage: bench/rag/run.sh [N] [DIM] [QUERIES] [DOC_KB]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SIMPLETON_BIN:-build/simpleton}
N=${1:-100000}
DIM=${2:-384}
QUERIES=${3:-200}
DOC_KB=${4:-100}
[ -x build/bench_rag ] || make --no-print-directory build/bench_rag
build/bench_rag "$N" "$DIM" "$QUERIES" 2>/dev/null

tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
PORT=0 HOST=127.0.0.1 API_KEYS=bench ACCESS_LOG=false DATA_DIR="$tmp/data" MODELS_DIR="$tmp/models" \
    ENV_FILE=/nonexistent "$BIN" serve 2>"$tmp/log" &
pid=$!
port=
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$tmp/log")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "server did not start"; cat "$tmp/log"; exit 1; }
url="http://127.0.0.1:$port"

# A deterministic English-like document of DOC_KB kilobytes: sentences of
# 6..14 words, paragraphs of 3..6 sentences.
awk -v kb="$DOC_KB" 'BEGIN {
    split("the a little girl boy dog cat tree park sun rain happy sad played ran saw found big small red blue " \
          "house garden river friend mother father toy ball book bird flower morning night", w, " ");
    srand(7); out = ""; s = 0;
    while (length(out) < kb * 1024) {
        n = 6 + int(rand() * 9); sent = "";
        for (i = 0; i < n; i++) sent = sent (i ? " " : "") w[1 + int(rand() * 36)];
        out = out toupper(substr(sent, 1, 1)) substr(sent, 2) ".";
        s++; out = out ((s % (3 + int(rand() * 4)) == 0) ? "\n\n" : " ");
    }
    gsub(/\\/, "", out); gsub(/"/, "", out); gsub(/\n/, "\\n", out);
    printf "{\"content\":\"%s\",\"collection\":\"bench\"}", out
}' >"$tmp/doc.json"

ingest() { # prints "chunks seconds"
    local t0 t1 body
    t0=$(date +%s.%N)
    body=$(curl -sf -H 'X-API-Key: bench' -H 'Content-Type: application/json' --data-binary @"$tmp/doc.json" "$url/rag/ingest")
    t1=$(date +%s.%N)
    echo "$(echo "$body" | sed -n 's/.*"chunks_created":\([0-9]*\).*/\1/p') $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
}
read -r chunks secs < <(ingest)
printf 'ingest via HTTP, %d KB document, CHUNK_SIZE 1000 / CHUNK_OVERLAP 200: %d chunks in %.2f s = %.1f chunks/s (embedding with the default model)\n' \
    "$DOC_KB" "$chunks" "$secs" "$(awk -v c="$chunks" -v s="$secs" 'BEGIN { print c / s }')"
read -r chunks secs < <(ingest)
printf 'ingest via HTTP, same document again (embeddings cached): %d chunks in %.3f s = %.0f chunks/s\n' \
    "$chunks" "$secs" "$(awk -v c="$chunks" -v s="$secs" 'BEGIN { print c / s }')"

# /rag/search over HTTP: the query embedding is computed once, then cached.
lat=()
for i in $(seq 50); do
    t=$(curl -s -o /dev/null -w '%{time_total}' -H 'X-API-Key: bench' -H 'Content-Type: application/json' \
        -d '{"query":"the little girl played in the garden","collection":"bench","top_k":5}' "$url/rag/search")
    lat+=("$t")
done
printf '%s\n' "${lat[@]:1}" | sort -n | awk -v stored=$((chunks * 2)) '{ v[NR] = $1 } END {
    printf "search via HTTP (%d stored chunks, cached query embedding): p50 %.2f ms  p99 %.2f ms\n",
           stored, v[int((NR + 1) / 2)] * 1000, v[NR] * 1000 }'
