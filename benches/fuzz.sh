#!/usr/bin/env bash
# Fuzz the whole decode path for MINUTES (default 30) with the stable mutation fuzzer
# (examples/fuzz_decode.rs). Findings (panics, slow or memory-hungry decodes, hangs) land in
# target/fuzz/findings/; once fixed, copy each into tests/fixtures/fuzz/ so the tests replay it.
# Usage: bash benches/fuzz.sh [MINUTES] [SEED] [fuzz_decode options: --seeds DIR, ...]
# HEIC/AVIF through libheif: IMGVEC_FUZZ_FEATURES=heif bash benches/fuzz.sh 5 1 --seeds tests/fixtures/heif/files
# Built in the dev profile on purpose: overflow checks and debug assertions catch more bugs.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
seed="${2:-$(date +%s)}"
shift 2 2>/dev/null || shift $#
features="${IMGVEC_FUZZ_FEATURES:-}"
cargo build --example fuzz_decode ${features:+--features "$features"}
exec ./target/debug/examples/fuzz_decode --minutes "$minutes" --seed "$seed" --max-seconds 3 --max-mib 1400 "$@"
