#!/usr/bin/env bash
# bench/grammar/run.sh - what structured output costs (issue 14):
#  1. decode tok/s on the TinyLlama-1.1B shape (Q4_K_M, random weights, 32k
#     vocabulary, made by `simpleton mkmodel` and kept in $BENCH_DIR) through
#     /api/generate, for the same prompt, seed and num_predict, temperature
#     0.8, in three configurations alternated in ROUNDS rounds:
#       none        no constraint
#       free text   format = {answer: string}: the answer runs on inside one
#                   JSON string (no maxLength), so the grammar mostly says yes
#       structured  format = an array of objects with integer, enum and
#                   boolean fields: almost every token is structure
#     tok/s = eval_count / eval_duration (the server's own decode time, prompt
#     excluded; over the tokens actually produced, which the table shows);
#     median per configuration; cost = 1 - constrained / unconstrained.
#  2. build/bench_schema: compile time of a 50-property schema (uncached and
#     cached) and the grammar's per-token CPU work on this model's vocabulary,
#     set against the unconstrained decode step of part 1.
# usage: bench/grammar/run.sh [ROUNDS] [TOKENS]   (SERVER_LOG=file keeps the server's log)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SIMPLETON_BIN:-build/simpleton}
ROUNDS=${1:-6}
TOKENS=${2:-64}
BENCH_DIR=${BENCH_DIR:-/tmp/simpleton-bench}
M="$BENCH_DIR/tinyllama-Q4_K_M.gguf"
mkdir -p "$BENCH_DIR"
[ -s "$M" ] || "$BIN" mkmodel --shape tinyllama-1.1b --type Q4_K_M "$M" >/dev/null 2>&1
[ -x build/bench_schema ] || make --no-print-directory build/bench_schema >/dev/null
tmp=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT

HOST=127.0.0.1 PORT=0 API_KEYS=bench ACCESS_LOG=false DATA_DIR="$tmp/data" ENV_FILE=/nonexistent \
    MODELS_DIR="$BENCH_DIR" THREADS=2 CACHE_ENABLED=false "$BIN" serve 2> >(tee "$tmp/log" >>"${SERVER_LOG:-/dev/null}") &
pid=$!
port=
for _ in $(seq 200); do
    port=$(sed -n 's/.*listening on http:\/\/[^:]*:\([0-9]*\).*/\1/p' "$tmp/log")
    [ -n "$port" ] && break
    sleep 0.05
done
[ -n "$port" ] || { echo "the server did not start"; cat "$tmp/log"; exit 1; }

echo "== 1. decode tok/s, $TOKENS tokens, temperature 0.8, seed 42, $ROUNDS alternated rounds"
python3 - "$port" "$ROUNDS" "$TOKENS" "$tmp/base" <<'PY'
import json, statistics, sys, urllib.request
port, rounds, tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
FREE = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
STRUCT = {"type": "array", "minItems": 8, "maxItems": 1000, "items": {"type": "object", "properties": {
    "id": {"type": "integer"}, "kind": {"enum": ["cat", "dog", "bird"]}, "ok": {"type": "boolean"}},
    "required": ["id", "kind", "ok"]}}
CONFIGS = [("none", None), ("free text", FREE), ("structured", STRUCT)]
PROMPT = "List the animals that live on the farm by the river, with their ids, as JSON:"

def generate(fmt):
    body = {"model": "tinyllama-Q4_K_M", "prompt": PROMPT, "stream": False,
            "options": {"seed": 42, "temperature": 0.8, "num_predict": tokens}}
    if fmt is not None:
        body["format"] = fmt
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/generate", json.dumps(body).encode(),
                                 {"X-API-Key": "bench", "Content-Type": "application/json"})
    d = json.load(urllib.request.urlopen(req, timeout=600))
    if fmt is not None:
        json.loads(d["response"]) if d.get("done_reason") == "stop" else None  # a finished answer must parse
    return d

for name, fmt in CONFIGS:  # warm-up: model load, token table for masking, schema compile
    d = generate(fmt)
    print(f"warm-up {name:10s}: {d['eval_count']} tokens, done_reason {d.get('done_reason')}, "
          f"starts {d['response'][:60]!r}")
res = {name: [] for name, _ in CONFIGS}
for r in range(rounds):  # the order turns each round, so a drift of the host's speed is shared
    line = []
    for name, fmt in CONFIGS[r % 3:] + CONFIGS[:r % 3]:
        d = generate(fmt)
        tps = d["eval_count"] / (d["eval_duration"] / 1e9)
        res[name].append((tps, d["eval_count"]))
        line.append(f"{name} {tps:6.2f} tok/s ({d['eval_count']} tok)")
    print(f"round {r + 1}: " + " | ".join(line))
base = statistics.median(t for t, _ in res["none"])
# cost: from the medians, and the median of the per-round costs (each against
# the unconstrained run of its own round, which is less exposed to drift)
print(f"\n{'configuration':12s} {'median tok/s':>12s} {'range':>16s} {'tokens':>7s} {'cost':>7s} {'per round':>10s}")
for name, _ in CONFIGS:
    v = [t for t, _ in res[name]]
    med = statistics.median(v)
    toks = statistics.median(n for _, n in res[name])
    cost = per = ""
    if name != "none":
        cost = f"{(1 - med / base) * 100:6.1f}%"
        per = f"{statistics.median(1 - a[0] / b[0] for a, b in zip(res[name], res['none'])) * 100:6.1f}%"
    print(f"{name:12s} {med:12.2f} {min(v):7.2f} - {max(v):6.2f} {toks:7.0f} {cost:>7s} {per:>10s}")
print("target: cost <= 10% of decode time")
open(sys.argv[4], "w").write(f"{base}\n")
PY

echo
echo "== 2. schema compile time and per-token grammar work (build/bench_schema)"
build/bench_schema "$M" 200 | tee "$tmp/schema"
# The A/B above moves by more than the grammar costs on a shared host; the
# direct figure: the grammar's CPU per token (worst case, every draw checked
# and most masked) against the unconstrained decode time per token.
awk -v base="$(cat "$tmp/base")" '/us per token/ { us = $(NF - 3); label = $1 " " $2
    if ($1 == "structured") label = $1
    printf "grammar work, %-10s: %5.0f us per token = %.2f%% of a %.1f ms decode step\n", label, us, us / (1e4 / base), 1e3 / base }' "$tmp/schema"
