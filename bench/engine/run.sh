#!/usr/bin/env bash
# bench/engine/run.sh - engine speed: prompt processing (128 tokens) and decode
# (64 tokens), 2 threads, for the TinyLlama-1.1B shape in F16, Q8_0 and
# Q4_K_M (random weights, made by `simpleton mkmodel`) and for stories260K;
# ratios against ../shared/reference/perf.md; peak RSS against the file size.
#   usage: bench/engine/run.sh [RUNS]     (files are kept in $BENCH_DIR)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SIMPLETON_BIN:-build/simpleton}
RUNS=${1:-3}
DIR=${BENCH_DIR:-/tmp/simpleton-bench}
mkdir -p "$DIR"

# Reference figures (perf.md: llama.cpp, same machine kind, 2 threads).
declare -A REF_PP=([F16]=64.6 [Q8_0]=48.7 [Q4_K_M]=48.8)
declare -A REF_TG=([F16]=12.08 [Q8_0]=17.87 [Q4_K_M]=27.55)

# A prompt of exactly 128 tokens (BOS included) for a model's vocabulary.
make_prompt() {
    local model=$1 words="" n=0 i=0
    local pool=(the little dog ran across the green field to find a red ball that his friend had thrown over the old wooden fence near the river)
    while :; do
        local next="$words ${pool[$((i % ${#pool[@]}))]}"
        n=$("$BIN" tokenize "$model" "${next# }" | wc -w)
        [ "$n" -gt 128 ] && break
        words=$next
        i=$((i + 1))
        [ "$n" -eq 128 ] && break
    done
    echo "${words# }"
}

measure() { # model prompt -> "pp_tok_s tg_tok_s peak_rss_kb" (best of RUNS)
    local model=$1 prompt=$2 best_pp=0 best_tg=0 rss=0
    for _ in $(seq "$RUNS"); do
        out=$( { /usr/bin/time -f 'RSS %M' "$BIN" run "$model" "$prompt" -n 64 --temp 0 --threads 2 >/dev/null; } 2>&1 )
        pp=$(sed -n 's/^prompt: .*(\([0-9.]*\) tok\/s).*/\1/p' <<<"$out")
        tg=$(sed -n 's/^decode: .*(\([0-9.]*\) tok\/s).*/\1/p' <<<"$out")
        r=$(sed -n 's/^RSS \([0-9]*\)/\1/p' <<<"$out")
        best_pp=$(awk -v a="$pp" -v b="$best_pp" 'BEGIN{print (a>b)?a:b}')
        best_tg=$(awk -v a="$tg" -v b="$best_tg" 'BEGIN{print (a>b)?a:b}')
        rss=$(awk -v a="$r" -v b="$rss" 'BEGIN{print (a>b)?a:b}')
    done
    echo "$best_pp $best_tg $rss"
}

command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)"; exit 1; }
printf '%-14s %10s %12s %8s %10s %12s %8s %10s %10s\n' model "pp tok/s" "ref pp" ratio "tg tok/s" "ref tg" ratio "file MiB" "RSS MiB"
for type in F16 Q8_0 Q4_K_M; do
    f="$DIR/tinyllama-$type.gguf"
    [ -s "$f" ] || "$BIN" mkmodel --shape tinyllama-1.1b --type "$type" "$f" >/dev/null
    prompt=$(make_prompt "$f")
    read -r pp tg rss < <(measure "$f" "$prompt")
    size=$(( $(stat -c %s "$f") / 1048576 ))
    awk -v m="tinyllama-$type" -v pp="$pp" -v rpp="${REF_PP[$type]}" -v tg="$tg" -v rtg="${REF_TG[$type]}" \
        -v size="$size" -v rss="$rss" 'BEGIN{printf "%-14s %10.1f %12.1f %7.2fx %10.2f %12.2f %7.2fx %10d %10d\n",
        m, pp, rpp, pp/rpp, tg, rtg, tg/rtg, size, rss/1024}'
done
s=../shared/models/stories260K.gguf
read -r pp tg rss < <(measure "$s" "$(make_prompt "$s")")
awk -v pp="$pp" -v tg="$tg" -v rss="$rss" -v size="$(( $(stat -c %s "$s") / 1024 ))" \
    'BEGIN{printf "%-14s %10.0f %12s %8s %10.0f %12s %8s %9dK %10d\n", "stories260K", pp, "-", "-", tg, "-", "-", size, rss/1024}'
