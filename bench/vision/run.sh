#!/usr/bin/env bash
# bench/vision/run.sh - vision benchmarks, all in-process or on loopback.
#  1. OCR latency (p50) per image size: ../shared/images/sign.png scaled to a
#     few sizes (copies made in a temp dir with leptonica), and intake
#     (probe + decode + validation) time as a fraction of OCR time.
#  2. /vision/ocr requests/s through the server with REQUEST_WORKERS=2
#     (wrk, 4 connections), for the sign at its own size (700x160) and the
#     invoice (900x220, two lines).
# usage: bench/vision/run.sh [RUNS] [DURATION_S]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SIMPLETON_BIN:-build/simpleton}
RUNS=${1:-9}
DUR=${2:-10}
IMG=../shared/images
command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install wrk)"; exit 1; }
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

make --no-print-directory build/libsimpleton.a simpleton >/dev/null
PKGS="lept tesseract libmicrohttpd jansson hiredis libcurl libcrypto sqlite3 libavformat libavcodec libswresample libavutil"
# shellcheck disable=SC2046
cc -O2 -std=gnu11 -Isrc $(pkg-config --cflags $PKGS) -o "$tmp/bench_vision" bench/vision/bench_vision.c \
    build/libsimpleton.a $(pkg-config --libs $PKGS) -lm -lpthread

echo "== 1. OCR latency per size, one thread ($RUNS runs each, p50; intake = probe + PNG decode + checks)"
"$tmp/bench_vision" "$IMG/sign.png" "$tmp" "$RUNS" 0.5 1 2 4 2>/dev/null
echo "invoice.png (900x220, two lines):"
"$tmp/bench_vision" "$IMG/invoice.png" "$tmp" "$RUNS" 1 2>/dev/null | tail -n 1

echo "== 2. /vision/ocr through the server, REQUEST_WORKERS=2, wrk -t2 -c4 -d${DUR}s"
PORT=0 HOST=127.0.0.1 API_KEYS=bench ACCESS_LOG=false CACHE_ENABLED=false REQUEST_WORKERS=2 \
    DATA_DIR="$tmp/data" MODELS_DIR="$tmp/models" ENV_FILE=/nonexistent "$BIN" serve 2>"$tmp/log" &
pid=$!
port=
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$tmp/log")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "server did not start"; cat "$tmp/log"; exit 1; }
wrkstat() {
    awk '/^ +50%/{p50=$2} /^ +99%/{p99=$2} /Requests\/sec/{rps=$2} /Non-2xx/{bad=$NF}
         function ms(x){ if (x ~ /us$/) return x/1000; if (x ~ /ms$/) return x+0; if (x ~ /s$/) return x*1000; return x }
         END{printf "%.1f %.1f %.2f %d\n", ms(p50), ms(p99), rps, bad}'
}
for f in sign.png invoice.png; do
    printf '{"image":"%s"}' "$(base64 -w0 "$IMG/$f")" >"$tmp/body.json"
    curl -sf -H 'X-API-Key: bench' -H 'Content-Type: application/json' --data-binary @"$tmp/body.json" \
        "http://127.0.0.1:$port/vision/ocr" >/dev/null # warm both handles
    read -r p50 p99 rps bad < <(BODY_FILE="$tmp/body.json" API_KEY=bench wrk -t2 -c4 -d"${DUR}s" --latency \
        -s bench/gateway/post.lua "http://127.0.0.1:$port/vision/ocr" | wrkstat)
    echo "$f: ${rps} req/s  p50 ${p50} ms  p99 ${p99} ms  (non-2xx: ${bad})"
done
