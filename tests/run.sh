#!/usr/bin/env bash
# The test command (README, CI): starts a local Elasticsearch-API test server, runs every test, stops it.
#
#   bash tests/run.sh [cargo test args...]
#
# Built with `--features heif` when pkg-config finds libheif >= 1.15.
#
# With IMGVEC_TEST_ES_URL already set (a real Elasticsearch 8.12+/9.x, say), no server is started and
# the same tests run against that one. The test server is noida-db 0.2.3 from PyPI, installed into
# target/es-test/venv on first use, listening on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."

state="${IMGVEC_TEST_STATE:-target/es-test}"
if [ -z "${IMGVEC_TEST_ES_URL:-}" ]; then
    eval "$(bash .ci/es-server.sh start "$state")"
    state_started=1
    echo "tests/run.sh: test server at $IMGVEC_TEST_ES_URL" >&2
fi
export IMGVEC_TEST_ES_URL
log="$(mktemp)"
trap 'rm -f "$log"; [ -z "${state_started:-}" ] || bash .ci/es-server.sh stop "$state" >/dev/null 2>&1 || true' EXIT
# HEIC/AVIF (`--features heif`) wherever libheif is installed: its tests are skipped, not passed,
# without it.
features=()
if command -v pkg-config >/dev/null && pkg-config --atleast-version=1.15 libheif 2>/dev/null; then
    features=(--features heif)
else
    echo "tests/run.sh: libheif >= 1.15 not found (apt install libheif-dev): the HEIC/AVIF tests are skipped" >&2
fi
set +e
# Every test binary runs even after one fails, so one run reports every failure.
cargo test --locked --no-fail-fast "${features[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One total over every test binary, as the last line. A binary killed by a signal prints no
# "test result" line: it is named and counted apart, never hidden in the totals.
awk '/^test result:/ { p += $4; f += $6; i += $8 }
     /process didn.t exit successfully: .*signal/ { c++; sub(/^.*successfully: /, ""); died = died "\n  " $0 }
     END {
         printf "tests: %d passed, %d failed, %d skipped", p, f, i
         if (c) printf "; %d test binaries died, their tests uncounted:%s", c, died
         printf "\n"
     }' "$log"
exit "$status"
