#!/bin/sh
# run.sh - the hostile load beside normal clients (bench/hardening/load.mjs).
# Usage: bench/hardening/run.sh [PHASE_S]   (default 30 s per phase)
set -eu
cd "$(dirname "$0")/../.."
SIMPLETON_BIN="${SIMPLETON_BIN:-$PWD/build/simpleton}" PHASE_S="${1:-30}" node bench/hardening/load.mjs
