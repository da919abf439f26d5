#!/usr/bin/env bash
# Full-size CLIP-variant parity and speed: imgvec vs Hugging Face transformers on the shapes of
# published CLIPModel checkpoints (tests/fixtures/make_clip_variants.py's FULL: openai ViT-L/14 at
# 336 px with quick GELU; LAION ViT-H/14, width 1280 with heads of 80, 32 layers, exact GELU,
# projection 1024), random weights, written and computed by transformers. Prints every 1 − cos,
# pixel equality, the worst of each kind, then the vision tower's img/s at batch 1 and 8 for imgvec
# and for PyTorch, one variant after the other.
#
#   PY=/path/to/python-with-torch-transformers bash benches/parity_clip_variants.sh [VARIANT...]
# (pip install torch transformers tokenizers safetensors pillow numpy). Checkpoints go to
# target/ckpt/VARIANT-seed1 (ViT-H: 3.9 GB) and are made once.
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PY:-python3}"
variants=("$@")
[ ${#variants[@]} -gt 0 ] || variants=(openai-vit-l-14-336 laion-vit-h-14)
cargo bench --bench parity --no-run
for v in "${variants[@]}"; do
    ckpt="target/ckpt/$v-seed1"
    expected="$ckpt.expected.json"
    if [ ! -f "$expected" ]; then
        "$py" tests/fixtures/make_clip_variants.py --full "$v" --seed 1 --out "$ckpt" --expected "$expected"
    fi
    echo "== $v"
    cargo bench --bench parity -- --model "$ckpt" --reference tests/fixtures --expected "$expected" || status=$?
    "$py" benches/support/pytorch_vision_speed.py "$ckpt"
done
exit "${status:-0}"
