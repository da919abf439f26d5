#!/usr/bin/env bash
# imgvec's encoder against PyTorch + transformers, model forward only, side by side in one run:
# batch 1 and batch 8, alternated (imgvec, PyTorch, imgvec, PyTorch, ...) so both see the same
# machine. Prints the CPU's SIMD flags, each figure, and PyTorch/imgvec time ratios.
#
#   bash benches/encoder_vs_pytorch.sh [native|avx512|avx2]   (env: PY, CKPT, THREADS=2, MIN_SECONDS=20, ROUNDS=2)
#
# native: each at its best on this CPU (imgvec's linear layers on AMX where the CPU has it).
# avx512: imgvec's f32 AVX-512 kernels even where the CPU has AMX (IMGVEC_SIMD=avx512); PyTorch as
# native (its f32 GEMM does not use AMX).
# avx2: both on the AVX2+FMA path, also on an AVX-512 machine: imgvec built without the
# avx512-gemm feature and run with IMGVEC_SIMD=avx2; PyTorch with ATEN_CPU_CAPABILITY=avx2,
# DNNL_MAX_CPU_ISA=AVX2 and MKL_ENABLE_INSTRUCTIONS=AVX2.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-native}"
PY="${PY:-python3}"
CKPT="${CKPT:-target/ckpt/vit-l-14-seed1}"
THREADS="${THREADS:-2}"
MIN_SECONDS="${MIN_SECONDS:-20}"
ROUNDS="${ROUNDS:-2}"
IMAGES="tests/fixtures/images"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
[ -f "$CKPT/model.safetensors" ] || bash benches/parity_vitl14.sh "$CKPT" >/dev/null

features=()
case "$mode" in
    native) ;;
    avx512) export IMGVEC_SIMD=avx512 ;;
    avx2)
        features=(--no-default-features)
        export IMGVEC_SIMD=avx2 ATEN_CPU_CAPABILITY=avx2 DNNL_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
        ;;
    *) echo "usage: $0 [native|avx512|avx2]" >&2; exit 2 ;;
esac
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
echo "cpu simd flags: $(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512bw|avx512vl|avx512_bf16|amx_tile|amx_bf16)$' | xargs)"
echo "mode: $mode  threads: $THREADS"
# Built once; the runs call the executable directly (no cargo, no lock waits, while measuring).
encoder="$(cargo bench --locked "${features[@]}" --no-run --bench encoder --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "encoder" and m.get("executable"):
        print(m["executable"])')"
[ -x "$encoder" ] || { echo "encoder_vs_pytorch.sh: the encoder bench did not build" >&2; exit 1; }
out="target/bench/encoder-$mode"; mkdir -p "$out"; : > "$out/imgvec.txt"; : > "$out/pytorch.txt"
for round in $(seq "$ROUNDS"); do
    for bs in 1 8; do
        "$encoder" --model "$CKPT" --images "$IMAGES" \
            --batch-sizes "$bs" --min-seconds "$MIN_SECONDS" 2>/dev/null | grep 'batch=\|simd=' | tee -a "$out/imgvec.txt"
        "$PY" benches/pytorch_encoder.py --model "$CKPT" --images "$IMAGES" --batch-sizes "$bs" \
            --threads "$THREADS" --min-seconds "$MIN_SECONDS" --preprocess-seconds 0 2>/dev/null \
            | grep 'batch=\|cpu_capability' | tee -a "$out/pytorch.txt"
    done
done
python3 - "$out" <<'PY'
import re, sys, statistics
out = sys.argv[1]
def rates(path, who):
    r = {}
    for line in open(path):
        m = re.match(rf"{who} batch=(\d+) img_per_s=([\d.]+)", line)
        if m:
            r.setdefault(int(m[1]), []).append(float(m[2]))
    return r
i, p = rates(f"{out}/imgvec.txt", "imgvec"), rates(f"{out}/pytorch.txt", "pytorch")
for bs in sorted(i):
    a, b = statistics.mean(i[bs]), statistics.mean(p.get(bs, [float("nan")]))
    print(f"batch {bs}: imgvec {a:.3f} img/s, PyTorch {b:.3f} img/s, imgvec/PyTorch speed = {a / b:.2f}x "
          f"(rounds: imgvec {i[bs]}, PyTorch {p.get(bs)})")
PY
