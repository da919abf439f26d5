#!/usr/bin/env bash
# Full-size SigLIP parity and speed: imgvec vs Hugging Face transformers on the architecture of
# google/siglip-base-patch16-224 (ViT-B/16 vision with the attention-pooling head, 12-layer 768-d
# text; `so400m` as the first argument: google/siglip-so400m-patch14-384, 1152-d, 27 layers, 16
# heads of 72, MLP 4304, 384 px in 14-px patches). Random weights, seed 1, written and computed by
# transformers with tests/fixtures/make_siglip_tiny.py --config base|so400m (or so400m-shape: a
# small model with so400m's awkward shapes, 384 px in 14-px patches, heads of 72, an MLP width
# that is not a multiple of 32, checked in a minute) (the text tower's
# vocabulary is the fixture's small Gemma-style one, 1024 ids, not the real 32,000 or 256,000: the
# embedding table's size does not change the arithmetic). Prints every 1 − cos, pixel equality,
# the worst of each kind, then the vision tower's img/s at batch 1 and 8 for imgvec and PyTorch.
#
#   PY=/path/to/python-with-torch-transformers bash benches/parity_siglip.sh [base|so400m|so400m-shape] [CHECKPOINT_DIR]
# (pip install torch transformers tokenizers safetensors pillow numpy)
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PY:-python3}"
config="${1:-base}"
ckpt="${2:-target/ckpt/siglip-$config-seed1}"
expected="$ckpt.expected.json"
if [ ! -f "$expected" ]; then
    "$py" tests/fixtures/make_siglip_tiny.py --config "$config" --seed 1 \
        --out "$ckpt" --expected "$expected"
fi
cargo bench --bench parity -- --model "$ckpt" --reference tests/fixtures --expected "$expected"
"$py" benches/support/pytorch_vision_speed.py "$ckpt"
