#!/usr/bin/env bash
# imgvec's CPU precisions (f32, bf16, int8) side by side with the runtimes people compare against
# (PyTorch f32, ONNX Runtime f32 and dynamic int8, OpenVINO f32 and bf16), in one run on this
# machine: fidelity first, then speed.
#
#   bash benches/precision.sh            (env: PY (with torch, transformers, pillow, onnx, onnxscript,
#                                          onnxruntime, openvino), THREADS=2, MIN_SECONDS=20,
#                                          PHOTOS=200, SKIP_RUNTIMES=1 for imgvec alone,
#                                          SKIP_FIDELITY=1 for the speed part alone)
#
# Fidelity, on ViT-L/14 with random weights, seed 7: each precision's embedding against imgvec f32's
# (= transformers' to 1e-6), min and mean cosine over the 13 reference images and over PHOTOS
# varied photos (benches/make_photos.py --varied), and image→image top-10 agreement among those
# photos (each photo the query, exact search). The runtimes' cosines are to PyTorch f32 on the 13.
# Speed, on seed 1: model forward only, seconds per image at batch 1 and 8, imgvec's three
# precisions and the runtimes one after another; CPU flags printed first. Figures belong to the
# machine they ran on: compare them within one run only.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
THREADS="${THREADS:-2}"
MIN_SECONDS="${MIN_SECONDS:-20}"
PHOTOS="${PHOTOS:-200}"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
out=target/bench/precision
mkdir -p "$out" target/ckpt
for seed in 1 7; do
    ckpt="target/ckpt/vit-l-14-seed$seed"
    [ -f "$ckpt/model.safetensors" ] ||
        "$PY" ../shared/clip-reference/make_weights.py --config vit-l-14 --seed "$seed" --out "$ckpt" >/dev/null
done
photos="target/bench/photos$PHOTOS"
[ -d "$photos" ] || "$PY" benches/make_photos.py "$photos" --n "$PHOTOS" --varied >/dev/null
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
echo "cpu flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' |
    grep -E '^(avx2|fma|avx_vnni|avx512f|avx512bw|avx512_vnni|avx512_bf16|amx_tile|amx_bf16|amx_int8)$' | xargs)"
echo "threads: $THREADS"
encoder="$(cargo bench --locked --no-run --bench encoder --message-format=json 2>/dev/null |
    "$PY" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "encoder" and m.get("executable"):
        print(m["executable"])')"
[ -x "$encoder" ] || { echo "precision.sh: the encoder bench did not build" >&2; exit 1; }
precisions="f32 $("$encoder" --model target/ckpt/vit-l-14-seed1 --images tests/fixtures/images \
    --batch-sizes "" --precision bf16 >/dev/null 2>&1 && echo bf16) $("$encoder" --model \
    target/ckpt/vit-l-14-seed1 --images tests/fixtures/images --batch-sizes "" --precision int8 \
    >/dev/null 2>&1 && echo int8)"
echo "imgvec precisions on this CPU: $precisions"

[ -n "${SKIP_FIDELITY:-}" ] || {
echo "== fidelity (seed 7)"
for set in tests/fixtures/images "$photos"; do
    tag="$(basename "$set")"
    "$encoder" --model target/ckpt/vit-l-14-seed7 --images "$set" --batch-sizes "" \
        --embeddings-out "$out/f32-$tag.jsonl" >/dev/null
    for p in $precisions; do
        [ "$p" = f32 ] && continue
        "$encoder" --model target/ckpt/vit-l-14-seed7 --images "$set" --batch-sizes "" --precision "$p" \
            --reference "$out/f32-$tag.jsonl" | grep cosine_to_reference | sed "s|^|[$tag] |"
    done
done
if [ -z "${SKIP_RUNTIMES:-}" ]; then
    "$PY" benches/cpu_runtimes.py --model target/ckpt/vit-l-14-seed7 --batch-sizes "" \
        --threads "$THREADS" 2>/dev/null | grep runtime_cosine
fi
}

echo "== speed (seed 1), model forward only"
for bs in 1 8; do
    for p in $precisions; do
        "$encoder" --model target/ckpt/vit-l-14-seed1 --images tests/fixtures/images --batch-sizes "$bs" \
            --min-seconds "$MIN_SECONDS" --precision "$p" 2>/dev/null | grep 'batch='
    done
done
if [ -z "${SKIP_RUNTIMES:-}" ]; then
    "$PY" benches/cpu_runtimes.py --model target/ckpt/vit-l-14-seed1 --batch-sizes 1,8 \
        --threads "$THREADS" --min-seconds "$MIN_SECONDS" 2>/dev/null | grep 'runtime '
fi
