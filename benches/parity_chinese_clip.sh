#!/usr/bin/env bash
# Full-size Chinese-CLIP parity and speed: imgvec vs Hugging Face transformers on the architecture of
# OFA-Sys/chinese-clip-vit-base-patch16 (ViT-B/16 vision, 12-layer 768-d RoBERTa text, projection
# 512; random weights, seed 1), written and computed by transformers with
# tests/fixtures/make_chinese_clip_tiny.py --config base. Prints every 1 − cos, pixel equality, the
# worst of each kind, then the vision tower's img/s at batch 1 and 8 for imgvec and for PyTorch.
#
#   PY=/path/to/python-with-torch-transformers CN_CLIP_WHEEL=cn_clip-1.6.0-py3-none-any.whl \
#       bash benches/parity_chinese_clip.sh [CHECKPOINT_DIR]
# (pip install torch transformers tokenizers safetensors pillow numpy; pip download cn_clip --no-deps)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PY:-python3}"
ckpt="${1:-target/ckpt/chinese-clip-base-seed1}"
expected="$ckpt.expected.json"
if [ ! -f "$expected" ]; then
    "$py" tests/fixtures/make_chinese_clip_tiny.py --config base --seed 1 \
        --cn-clip-wheel "${CN_CLIP_WHEEL:?the cn_clip wheel (pip download cn_clip --no-deps)}" \
        --out "$ckpt" --expected "$expected"
fi
cargo bench --bench parity -- --model "$ckpt" --reference tests/fixtures --expected "$expected"
"$py" benches/pytorch_vision_speed.py ChineseCLIPModel "$ckpt"
