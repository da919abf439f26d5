#!/usr/bin/env bash
# Full-size parity: imgvec vs Hugging Face transformers on the ViT-L/14 architecture (1.7 GB checkpoint
# of random weights, seed 1), against ../shared/clip-reference/expected/vit-l-14-seed1.json.
# Prints every cosine and the minimum of each kind; exits 1 if a target is missed.
#
#   bash benches/parity_vitl14.sh [CHECKPOINT_DIR]     (made with make_weights.py if missing; needs numpy+safetensors)
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${IMGVEC_CLIP_REFERENCE:-../shared/clip-reference}"
ckpt="${1:-target/ckpt/vit-l-14-seed1}"
if [ ! -f "$ckpt/model.safetensors" ]; then
    python3 -c "import numpy, safetensors" 2>/dev/null || python3 -m pip install -q numpy safetensors
    python3 "$ref/make_weights.py" --config vit-l-14 --seed 1 --out "$ckpt"
fi
cargo bench --bench parity -- --model "$ckpt" --reference "$ref" --expected "$ref/expected/vit-l-14-seed1.json"
