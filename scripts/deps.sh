#!/bin/sh
# deps.sh - install the Debian packages Simpleton needs, only those missing.
# Usage: scripts/deps.sh build|test
# Idempotent: checks dpkg first and calls apt-get only when something is absent.
set -eu

build_pkgs="build-essential pkg-config libmicrohttpd-dev libjansson-dev libhiredis-dev
libcurl4-openssl-dev libssl-dev libsqlite3-dev poppler-utils
libleptonica-dev libtesseract-dev tesseract-ocr-eng
libavformat-dev libavcodec-dev libswresample-dev libavutil-dev"
test_pkgs="redis-server prometheus wrk clang curl time python3 ffmpeg"

want="$build_pkgs"
[ "${1:-build}" = test ] && want="$want $test_pkgs"

missing=""
for p in $want; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
# Node.js (for the integration and e2e tests) may come from Debian or be preinstalled.
if [ "${1:-build}" = test ] && ! command -v node >/dev/null 2>&1; then
    missing="$missing nodejs npm"
fi

[ -z "$missing" ] && exit 0
echo "deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing
