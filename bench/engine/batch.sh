#!/usr/bin/env bash
# bench/engine/batch.sh - aggregate decode tok/s of B = 1, 2, 4, 8, 16
# sequences decoding together (build/bench_batch, see bench_batch.c) on the
# TinyLlama-1.1B shape in Q4_K_M (random weights, made by `simpleton mkmodel`
# into $BENCH_DIR and kept there), 2 threads.
#   usage: bench/engine/batch.sh [STEPS] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SIMPLETON_BIN:-build/simpleton}
DIR=${BENCH_DIR:-/tmp/simpleton-bench}
mkdir -p "$DIR"
f="$DIR/tinyllama-Q4_K_M.gguf"
[ -s "$f" ] || "$BIN" mkmodel --shape tinyllama-1.1b --type Q4_K_M "$f" >/dev/null
[ -x build/bench_batch ] || make --no-print-directory build/bench_batch
build/bench_batch "$f" 2 "${1:-32}" "${2:-5}"
