#!/usr/bin/env bash
# All benchmark figures in one run, on the full-size ViT-L/14 architecture (random weights, seed 1):
#   1. encoder: imgvec vs PyTorch + transformers, model forward only, batch 1/4/8, same images, same threads
#   2. end to end: `imgvec ingest` of photo-sized JPEGs into an empty index vs the original Python pipeline
#      (transformers + elasticsearch-py, one image per bulk request), same checkpoint, same server
#   3. model load time, peak RSS of the ingest, text query latency (load + embed + search)
#
#   bash benches/run.sh            (env: THREADS=2, PY=python with torch+transformers+elasticsearch,
#                                 CKPT=target/ckpt/vit-l-14-seed1, MIN_SECONDS=20, N_PHOTOS=24)
# Prints key=value lines and a summary with the ratios. Not a test: nothing here asserts.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
PY="${PY:-python3}"
CKPT="${CKPT:-target/ckpt/vit-l-14-seed1}"
MIN_SECONDS="${MIN_SECONDS:-20}"
N_PHOTOS="${N_PHOTOS:-24}"
IMAGES="tests/fixtures/images"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
out="target/bench"; mkdir -p "$out"

[ -f "$CKPT/model.safetensors" ] || bash benches/parity_vitl14.sh "$CKPT" >/dev/null
cargo build --release --locked --bin imgvec
cargo bench --locked --no-run --bench encoder 2>/dev/null
bin=target/release/imgvec

echo "== 1. encoder ($THREADS threads)"
cargo bench --locked --bench encoder -- --model "$CKPT" --images "$IMAGES" --batch-sizes 1,4,8 \
    --min-seconds "$MIN_SECONDS" | tee "$out/imgvec_encoder.txt"
"$PY" benches/pytorch_encoder.py --model "$CKPT" --images "$IMAGES" --batch-sizes 1,4,8 \
    --threads "$THREADS" --min-seconds "$MIN_SECONDS" | tee "$out/pytorch_encoder.txt"

echo "== 2. end to end ($N_PHOTOS photos)"
"$PY" benches/make_photos.py "$out/photos" --n "$N_PHOTOS" --images "$IMAGES" >/dev/null
eval "$(bash .ci/es-server.sh start target/es-bench)"
trap 'bash .ci/es-server.sh stop target/es-bench >/dev/null 2>&1 || true' EXIT
url="$IMGVEC_TEST_ES_URL"
export IMGVEC_MODEL_DIR="$CKPT" IMGVEC_ES_URL="$url" IMGVEC_DEVICE=cpu
"$bin" create-index --index bench-imgvec --recreate --yes >/dev/null
/usr/bin/time -f "imgvec_ingest_peak_rss_kb=%M wall_s=%e" -o "$out/imgvec_time.txt" \
    "$bin" ingest "$out/photos" --label bench --index bench-imgvec --json | tee "$out/imgvec_ingest.json"
cat "$out/imgvec_time.txt"
/usr/bin/time -f "python_pipeline_peak_rss_kb=%M wall_s=%e" -o "$out/python_time.txt" \
    "$PY" benches/python_pipeline.py --model "$CKPT" --images "$out/photos" --label bench --es-url "$url" \
    --index bench-python --threads "$THREADS" --recreate | tee "$out/python_pipeline.txt"
cat "$out/python_time.txt"

echo "== 3. text query latency"
t0=$(date +%s.%N)
"$bin" search --text "a photo of a cat" -k 10 --index bench-imgvec >/dev/null
t1=$(date +%s.%N)
echo "imgvec text_query_seconds=$(python3 -c "print(round($t1-$t0,3))") (load text tower + tokenizer, embed, kNN search)"

python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
def kv(path, prefix):
    rows = {}
    for line in open(path):
        if line.startswith(prefix):
            d = dict(p.split("=", 1) for p in line.split() if "=" in p)
            if "batch" in d: rows[int(d["batch"])] = float(d["img_per_s"])
    return rows
ours, theirs = kv(f"{out}/imgvec_encoder.txt", "imgvec batch"), kv(f"{out}/pytorch_encoder.txt", "pytorch batch")
print("== summary")
for b in sorted(ours):
    if b in theirs:
        print(f"encoder batch={b}: imgvec {ours[b]:.3f} img/s, pytorch {theirs[b]:.3f} img/s, ratio {ours[b]/theirs[b]:.2f}x")
ing = json.load(open(f"{out}/imgvec_ingest.json"))
wall = lambda f: float(re.search(r"wall_s=([0-9.]+)", open(f"{out}/{f}").read()).group(1))
wi, wp = wall("imgvec_time.txt"), wall("python_time.txt")
print(f"end to end (whole process, wall): imgvec {wi:.1f} s for {ing['indexed']} images, "
      f"python pipeline {wp:.1f} s, ratio {wp/wi:.2f}x")
print(open(f"{out}/imgvec_time.txt").read().strip())
print(open(f"{out}/python_time.txt").read().strip())
PY
