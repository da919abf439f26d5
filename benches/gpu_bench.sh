#!/usr/bin/env bash
# imgvec on a CUDA GPU against PyTorch + transformers on the same GPU, same checkpoint, same files,
# in one run; every figure in img/s:
#   1. model only (pixels preprocessed beforehand, batch BATCH): imgvec in f32, f16 and bf16;
#      PyTorch in fp32, fp16, bf16, and fp16 under torch.compile. With each, the cosine of its
#      embeddings of tests/fixtures/images to imgvec's f32 CPU embeddings (the reference: imgvec
#      matches transformers there to cosine 1.00000; see benches/parity_vitl14.sh). f16 and bf16
#      should stay at or above 0.999.
#   2. end to end from N_PHOTOS photo-sized JPEGs: `imgvec ingest` into an empty embedded store
#      (decode, preprocess, model, store; the whole command, model load included) against a Python
#      loop: a DataLoader with one worker per core (PIL decode + CLIPProcessor), the model, the
#      normalised vectors copied back, nothing stored (with and without its model load).
#
#   bash benches/gpu_bench.sh     (env: PY=python with torch (CUDA) + transformers + pillow + numpy,
#                                  CKPT=target/ckpt/vit-l-14-seed1, BATCH=128, MIN_SECONDS=10,
#                                  N_PHOTOS=1024, E2E=f16 (imgvec precisions for part 2),
#                                  CUDA_COMPUTE_CAP (default: the GPU's, from nvidia-smi))
#
# Builds imgvec with benches/cuda-build.sh (CUDA from PyPI wheels; driver R580+ needed), so it needs
# no CUDA toolkit. Fails at once, saying so, when there is no NVIDIA GPU. Prints key=value lines and
# a summary; asserts nothing. Output kept in target/bench/gpu/.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-python3}"
CKPT="${CKPT:-target/ckpt/vit-l-14-seed1}"
BATCH="${BATCH:-128}"
MIN_SECONDS="${MIN_SECONDS:-10}"
N_PHOTOS="${N_PHOTOS:-1024}"
E2E="${E2E:-f16}"
IMAGES="tests/fixtures/images"
out="target/bench/gpu"
die() { echo "gpu_bench: $*" >&2; exit 1; }

# No GPU, no benchmark: say so before building anything.
command -v nvidia-smi >/dev/null || die "no NVIDIA GPU here (nvidia-smi is missing): this benchmark needs a CUDA GPU and its driver"
gpus="$(nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>&1)" \
    || die "no usable NVIDIA GPU here (nvidia-smi failed: $gpus)"
[ -n "$gpus" ] || die "no NVIDIA GPU here (nvidia-smi lists none)"
echo "gpu: $(echo "$gpus" | head -n1)"
cap="$(echo "$gpus" | head -n1 | cut -d, -f2 | tr -d ' .')"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$cap}"
"$PY" -c 'import torch, transformers, PIL, numpy; assert torch.cuda.is_available(), "torch sees no GPU"' \
    || die "$PY needs torch with CUDA (and a GPU it sees), transformers, pillow, numpy (PY=...)"
echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"

if [ ! -f "$CKPT/model.safetensors" ]; then
    ref="${IMGVEC_CLIP_REFERENCE:-../shared/clip-reference}"
    [ -f "$ref/make_weights.py" ] || die "no checkpoint at $CKPT and no $ref/make_weights.py to make one (CKPT=a CLIP ViT-L/14 directory)"
    "$PY" "$ref/make_weights.py" --config vit-l-14 --seed 1 --out "$CKPT"
fi

bash benches/cuda-build.sh --bin imgvec --bench encoder
# shellcheck disable=SC1091
source target/cuda-env.sh
bin=target/release/imgvec
# The encoder bench as built just now (release profile, so nothing is built twice): its path.
enc="$(cargo build --release --locked --features cuda --bench encoder --message-format=json 2>/dev/null \
    | "$PY" -c 'import json, sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "encoder" and m.get("executable"):
        print(m["executable"])')"
[ -x "$enc" ] || die "the encoder bench was not built"
mkdir -p "$out"
encoder() { "$enc" --model "$CKPT" --images "$IMAGES" "$@"; }

echo "== 1. model only, batch $BATCH"
encoder --device cpu --precision f32 --batch-sizes "" --embeddings-out "$out/reference-f32-cpu.jsonl" >/dev/null
: > "$out/imgvec_model.txt"
for p in f32 f16 bf16; do
    encoder --device cuda --precision "$p" --batch-sizes "$BATCH" --min-seconds "$MIN_SECONDS" --warmup 3 \
        --reference "$out/reference-f32-cpu.jsonl" | grep 'batch=\|cosine' | tee -a "$out/imgvec_model.txt"
done
"$PY" benches/pytorch_gpu.py --mode model --model "$CKPT" --images "$IMAGES" --batch-size "$BATCH" \
    --min-seconds "$MIN_SECONDS" --reference "$out/reference-f32-cpu.jsonl" | tee "$out/pytorch_model.txt"

echo "== 2. end to end, $N_PHOTOS JPEGs (1600x1200)"
[ "$(ls "$out/photos" 2>/dev/null | wc -l)" -eq "$N_PHOTOS" ] \
    || { rm -rf "$out/photos"; "$PY" benches/make_photos.py "$out/photos" --n "$N_PHOTOS" --images "$IMAGES" >/dev/null; }
: > "$out/imgvec_e2e.txt"
for p in $E2E; do
    store="$(mktemp -d)"
    "$bin" ingest "$out/photos" --label bench --store "$store" --model-dir "$CKPT" --device cuda \
        --precision "$p" --batch-size "$BATCH" --quiet --json > "$out/imgvec_ingest_$p.json"
    rm -rf "$store"
    "$PY" - "$out/imgvec_ingest_$p.json" "$p" <<'PY' | tee -a "$out/imgvec_e2e.txt"
import json, sys
s = json.load(open(sys.argv[1]))
print(f"imgvec e2e precision={sys.argv[2]} images={s['indexed']} failed={s['failed']} "
      f"img_per_s_with_load={s['images_per_second']:.1f} seconds={s['seconds']:.2f}")
PY
done
pt_dtype="$(echo "$E2E" | awk '{print $1}' | sed 's/^f/fp/')"
"$PY" benches/pytorch_gpu.py --mode e2e --model "$CKPT" --images "$out/photos" --batch-size "$BATCH" \
    --dtypes "$pt_dtype" | tee "$out/pytorch_e2e.txt"

"$PY" - "$out" <<'PY'
import re, sys
out = sys.argv[1]
def rows(path, key):
    r = {}
    for line in open(path):
        d = dict(p.split("=", 1) for p in line.split() if "=" in p)
        if key in d and "img_per_s" in d:
            r[d[key]] = d
        elif key in d and "min" in d:
            r.setdefault(d[key] + " cosine", d)
    return r
print("== summary (img/s)")
i, p = rows(f"{out}/imgvec_model.txt", "precision"), rows(f"{out}/pytorch_model.txt", "dtype")
for k, d in i.items():
    if k.endswith("cosine"):
        continue
    cos = i.get(k + " cosine", {})
    print(f"model imgvec {k}: {float(d['img_per_s']):.1f}  cosine to f32 CPU min {cos.get('min', '?')}")
for k, d in p.items():
    if k.endswith("cosine"):
        continue
    cos = p.get(k + " cosine", {})
    print(f"model pytorch {k}: {float(d['img_per_s']):.1f}  cosine to imgvec f32 CPU min {cos.get('min', '?')}")
for line in open(f"{out}/imgvec_e2e.txt"):
    print("end to end " + line.strip())
for line in open(f"{out}/pytorch_e2e.txt"):
    if " e2e " in line:
        print("end to end " + line.strip())
PY
