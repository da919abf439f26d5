#!/usr/bin/env bash
# Two encoder builds side by side at the same moment: A on one core and B on the other, one
# thread each, then the cores swapped, ROUNDS times at batch 1 and 8; prints B/A per run and the
# median. Both see the same machine at the same time, so the drift of a shared machine (±10%
# between minutes) cancels out: differences of 1–2% show, where alternating whole runs cannot
# tell 5% from noise.
#
#   bash benches/pair.sh EXE_A EXE_B      (encoder bench executables, e.g. copies of
#                                          target/release/deps/encoder-* built at two commits)
# Env: CKPT (default target/ckpt/vit-l-14-seed1), ROUNDS (2), MIN_SECONDS (10).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] && [ -x "$1" ] && [ -x "$2" ] || { echo "usage: $0 EXE_A EXE_B" >&2; exit 2; }
[ "$(nproc)" -ge 2 ] || { echo "pair.sh: needs two cores" >&2; exit 1; }
A="$1" B="$2"
CKPT="${CKPT:-target/ckpt/vit-l-14-seed1}"
ROUNDS="${ROUNDS:-2}"
MIN_SECONDS="${MIN_SECONDS:-10}"
[ -f "$CKPT/model.safetensors" ] || bash benches/parity_vitl14.sh "$CKPT" >/dev/null
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
run() { # EXE CORE BATCH
    RAYON_NUM_THREADS=1 taskset -c "$2" "$1" --model "$CKPT" --images tests/fixtures/images \
        --batch-sizes "$3" --min-seconds "$MIN_SECONDS" 2>/dev/null | grep -oP 'img_per_s=\K[\d.]+'
}
for _ in $(seq "$ROUNDS"); do
    for bs in 1 8; do
        for cores in "0 1" "1 0"; do
            set -- $cores
            run "$A" "$1" "$bs" > "$tmp/a" & run "$B" "$2" "$bs" > "$tmp/b"; wait
            echo "$bs $(cat "$tmp/a") $(cat "$tmp/b")" >> "$tmp/runs"
        done
    done
done
python3 - "$tmp/runs" <<'PY'
import sys, statistics, collections
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    bs, a, b = line.split()
    runs[int(bs)].append((float(a), float(b)))
for bs, r in sorted(runs.items()):
    ratios = [b / a for a, b in r]
    print(f"batch {bs}: B/A median {statistics.median(ratios):.3f} (runs {[round(x, 3) for x in ratios]}); "
          f"A {statistics.median(a for a, _ in r):.3f}, B {statistics.median(b for _, b in r):.3f} img/s a core")
PY
