#!/usr/bin/env bash
# Peak memory of `imgvec search` and `imgvec serve` on a store (e.g. the 1M store
# `local_store_recall` keeps with IMGVEC_BENCH_KEEP=1). First one `search` each by text, by text
# within the first label and by image (each process's peak RSS, from wait4). Then `serve`: 30 text
# searches, filtered ones (the first of each label timed by the server: a large label builds its
# 2-bit codes then), a "more like this", an image search; VmHWM from /proc after each step.
#
#   bash benches/serve_rss.sh STORE_DIR MODEL_DIR [INDEX=bench] [LABELS="half tenth hundredth thousandth"]
#
# IMGVEC_BIN=path runs that build instead of building this checkout (to compare two builds).
set -euo pipefail
cd "$(dirname "$0")/.."
store="$1" model="$2" index="${3:-bench}" labels="${4:-half tenth hundredth thousandth}"
port=18099
bin="${IMGVEC_BIN:-}"
if [ -z "$bin" ]; then
    cargo build --release --locked -q
    bin=target/release/imgvec
fi
# One query each, the process's peak resident set (KiB).
search_peak() {
    python3 - "$bin" "$store" "$index" "$model" "$@" <<'PY'
import os, subprocess, sys
bin, store, index, model, *query = sys.argv[1:]
env = dict(os.environ, IMGVEC_STORE=store)
child = subprocess.Popen([bin, "search", "--index", index, "--model-dir", model, "-k", "10", *query],
                         env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
err = child.stderr.read().decode()
_, status, usage = os.wait4(child.pid, 0)
if status != 0:
    sys.exit(f"search {' '.join(query)} failed: {err}")
print(f"search {' '.join(query)}: peak RSS {usage.ru_maxrss} kB")
PY
}
first_label="${labels%% *}"
search_peak --text "a photo of a cat"
search_peak --text "a photo of a cat" --label "$first_label"
search_peak tests/fixtures/images/chelsea.png

IMGVEC_STORE="$store" "$bin" serve --index "$index" --model-dir "$model" \
    --addr 127.0.0.1:$port -q >/dev/null 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do curl -s -o /dev/null "http://127.0.0.1:$port/api/info" && break; sleep 1; done
# VmHWM: the peak so far; VmRSS: what it holds now (the difference: what a step held a moment).
peak() { echo "$1: $(grep -E 'VmHWM|VmRSS' /proc/$pid/status | xargs)"; }
peak "started"
q() { curl -s -X POST -H 'content-type: application/json' -d "$1" "http://127.0.0.1:$port/api/search"; }
for i in $(seq 1 30); do q "{\"text\": \"a photo number $i of something\", \"k\": 10}" >/tmp/serve_rss.json; done
peak "after 30 text searches"
for l in $labels $labels; do
    echo "label $l: took_ms $(q "{\"text\": \"a photo of $l\", \"k\": 10, \"label\": \"$l\"}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("took_ms"))')"
done
peak "after the filtered searches"
id=$(python3 -c 'import json; print(json.load(open("/tmp/serve_rss.json"))["hits"][0]["id"])')
curl -s -o /dev/null "http://127.0.0.1:$port/api/similar/$id"
peak "after a more-like-this"
# An image search: the first loads the vision tower.
curl -s -o /dev/null -F "image=@tests/fixtures/images/chelsea.png" -F k=10 "http://127.0.0.1:$port/api/search"
peak "after an image search"
