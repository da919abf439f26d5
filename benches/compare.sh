#!/usr/bin/env bash
# An earlier commit next to this tree, on the same machine in one run: ViT-L/14 parity, the encoder
# (model forward only, batch 1 and 8) and a whole `imgvec ingest` of photo-sized JPEGs into the
# embedded store (wall time and peak RSS). For "did this change alter behaviour or speed?".
#
#   bash benches/compare.sh REV [CKPT]
#   env: ROUNDS=2 (alternations), MIN_SECONDS=10 (per encoder batch size), N_PHOTOS=40, THREADS=2,
#        BUILD_ONLY=1 (build both, measure nothing)
#
# REV is built in target/compare/<rev> (a git worktree with its own target dir; the first build takes
# as long as a release build). The runs alternate REV, this tree, REV, this tree, ... so a drift in
# the machine's speed hits both alike. Prints the CPU's SIMD flags first. Not a test: nothing here
# asserts, except that parity must pass on both.
set -euo pipefail
cd "$(dirname "$0")/.."
rev="${1:?usage: bash benches/compare.sh REV [CKPT]}"
ckpt="$(realpath -m "${2:-target/ckpt/vit-l-14-seed1}")"
ROUNDS="${ROUNDS:-2}"
MIN_SECONDS="${MIN_SECONDS:-10}"
N_PHOTOS="${N_PHOTOS:-40}"
THREADS="${THREADS:-2}"
export RAYON_NUM_THREADS="$THREADS" IMGVEC_DEVICE=cpu
ref="$(realpath "${IMGVEC_CLIP_REFERENCE:-../shared/clip-reference}")"
out="target/compare"; mkdir -p "$out"

echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); simd: $(grep -m1 -o -w -E 'avx512f|avx2' /proc/cpuinfo | sort -u | xargs)"
[ -f "$ckpt/model.safetensors" ] || bash benches/parity_vitl14.sh "$ckpt" >/dev/null

short="$(git rev-parse --short "$rev")"
old="$out/$short"
[ -d "$old" ] || git worktree add --detach "$old" "$rev" >/dev/null
# Builds both trees into this tree's target dir (the dependencies they share are built once) and
# records each tree's executables (imgvec, the encoder and parity benches) by the paths cargo gives:
# the runs call them directly, with no cargo running while measuring.
target="$(realpath target)"
declare -A exe
build() {
    local tree="$1" line kind path
    while read -r kind path; do exe["$tree/$kind"]="$path"; done < <(
        cd "$tree" && CARGO_TARGET_DIR="$target" cargo build --release --locked --bin imgvec \
            --bench encoder --bench parity --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["target"]["name"], m["executable"])')
    for kind in imgvec encoder parity; do
        [ -n "${exe[$tree/$kind]:-}" ] || { echo "compare.sh: $tree: no $kind executable (build failed?)" >&2; exit 1; }
    done
}
echo "building $short and this tree (release)..."
build "$old"
build .
[ -z "${BUILD_ONLY:-}" ] || { echo "built (BUILD_ONLY set: not measuring)"; exit 0; }

python3 benches/make_photos.py "$out/photos" --n "$N_PHOTOS" --images tests/fixtures/images >/dev/null

# One tree's figures: name, directory.
measure() {
    local name="$1" dir="$2"
    echo "== $name"
    (cd "$dir" && "${exe[$dir/parity]}" --model "$ckpt" --reference "$ref" \
        --expected "$ref/expected/vit-l-14-seed1.json" 2>/dev/null | grep -E '^SUMMARY' || echo 'parity FAILED')
    (cd "$dir" && "${exe[$dir/encoder]}" --model "$ckpt" \
        --images "$(realpath tests/fixtures/images)" --batch-sizes 1,8 --min-seconds "$MIN_SECONDS" 2>/dev/null |
        grep -E 'load_seconds|img_per_s' || true)
    local store; store="$(mktemp -d)"
    IMGVEC_MODEL_DIR="$ckpt" "${exe[$dir/imgvec]}" create-index --store "$store" >/dev/null
    /usr/bin/time -f "ingest_wall_s=%e peak_rss_kb=%M" -o "$out/time.txt" \
        env IMGVEC_MODEL_DIR="$ckpt" "${exe[$dir/imgvec]}" ingest "$out/photos" --label photo \
        --store "$store" --quiet >/dev/null 2>&1 || echo "ingest failed"
    echo "ingest of $N_PHOTOS photos: $(cat "$out/time.txt" | tail -1)"
    rm -rf "$store"
}

for round in $(seq 1 "$ROUNDS"); do
    echo "### round $round"
    measure "$short (before)" "$old"
    measure "this tree ($(git rev-parse --short HEAD)$(git diff --quiet || echo '+changes'))" .
done
