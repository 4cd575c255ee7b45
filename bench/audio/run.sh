#!/usr/bin/env bash
# bench/audio/run.sh - Whisper speed, 2 threads: real-time factor (audio
# seconds per wall second) of a whole transcription (default settings:
# timestamps, temperature fallback, language "en") with the encoder and
# decoder times it reports, plus one window timed in pieces (encoder alone;
# per token over 200 greedy tokens: the decoder alone, and a whole step =
# decoder + token selection).
# Models: the random tiny64 F16 file from ../shared and a random model of
# the `base` shape (`simpleton mkwhisper --shape base --type f16`, kept in
# $BENCH_DIR). Clips: jfk.wav (11 s) and a ~60 s clip made with the ffmpeg
# CLI from the five LibriVox clips twice and jfk.wav.
#   usage: bench/audio/run.sh [RUNS]       (files are kept in $BENCH_DIR)
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${SIMPLETON_BIN:-build/simpleton}
RUNS=${1:-2}
THREADS=${THREADS:-2}
DIR=${BENCH_DIR:-/tmp/simpleton-bench}
mkdir -p "$DIR"

PKGS="libmicrohttpd jansson hiredis libcurl libcrypto sqlite3 lept tesseract libavformat libavcodec libswresample libavutil"
[ -f build/libsimpleton.a ] || make --no-print-directory build/libsimpleton.a
[ -x "$BIN" ] || make --no-print-directory simpleton
BENCH=build/bench_whisper
if [ ! -x "$BENCH" ] || [ bench/audio/bench_whisper.c -nt "$BENCH" ] || [ build/libsimpleton.a -nt "$BENCH" ]; then
    # shellcheck disable=SC2046
    cc -O2 -std=gnu11 -Isrc bench/audio/bench_whisper.c build/libsimpleton.a $(pkg-config --libs $PKGS) \
        -lm -lpthread -o "$BENCH"
fi

# Clips: 16 kHz mono PCM16 WAV.
A=../shared/audio
JFK=$A/jfk.wav
LONG=$DIR/librivox-jfk-60s.wav
if [ ! -s "$LONG" ]; then
    lib=("$A"/librivox/*.wav)
    inputs=() n=0
    for f in "${lib[@]}" "${lib[@]}" "$JFK"; do inputs+=(-i "$f"); n=$((n + 1)); done
    filter=""
    for i in $(seq 0 $((n - 1))); do filter+="[$i:a]"; done
    ffmpeg -loglevel error -y "${inputs[@]}" -filter_complex "${filter}concat=n=$n:v=0:a=1[a]" -map '[a]' \
        -ar 16000 -ac 1 -c:a pcm_s16le "$LONG"
fi

MODELS=(../shared/models/whisper/whisper-rand-tiny64-f16.bin)
BASE=$DIR/whisper-rand-base-f16.bin
if [ ! -s "$BASE" ]; then
    "$BIN" mkwhisper --shape base --type f16 "$BASE" >/dev/null 2>&1 || rm -f "$BASE"
fi
if [ -s "$BASE" ]; then MODELS+=("$BASE"); else echo "note: '$BIN mkwhisper --shape base' unavailable; base shape skipped"; fi

printf '%-24s %-17s %7s %8s %6s %6s %7s %7s %10s %10s %11s\n' model clip "audio s" "wall ms" RTF "mel ms" "enc ms" "dec ms" "win enc ms" "dec ms/tok" "step ms/tok"
for m in "${MODELS[@]}"; do
    for c in "$JFK" "$LONG"; do
        out=$("$BENCH" "$m" "$c" "$THREADS" "$RUNS")
        get() { sed -n "s/^$1 //p" <<<"$out"; }
        printf '%-24s %-17s %7.1f %8.0f %6.2f %6.0f %7.0f %7.0f %10.0f %10.2f %11.2f\n' "$(basename "$m" .bin)" \
            "$(basename "$c" .wav)" "$(get audio_s)" "$(get wall_ms)" "$(get rtf)" "$(get mel_ms)" "$(get encode_ms)" \
            "$(get decode_ms)" "$(get window_encode_ms)" "$(get decoder_ms_per_token)" "$(get step_ms_per_token)"
    done
done
