#!/usr/bin/env bash
# Builds imgvec with CUDA (`cargo build --release --features cuda`) on a machine with no CUDA
# toolkit and no GPU: nvcc, the headers and the libraries come from NVIDIA's PyPI wheels, installed
# into a venv under target/. Works from a clean checkout; a second run reuses the venv and cargo's
# cache. With a CUDA toolkit installed, none of this is needed: `cargo build --release --features cuda`.
#
#   bash benches/cuda-build.sh [cargo build args...]       e.g. --bin imgvec, or --benches
#
# env: CUDA_COMPUTE_CAP (default 90: H100/H200; 80 A100, 86 RTX 30xx/A10, 89 L4/RTX 40xx, 120
#      RTX 50xx), PYTHON (default python3), CUDA_VENV (default target/cuda-venv).
#
# What it does:
#   1. a venv with the CUDA 13.0 wheels: nvcc (+ crt, nvvm), runtime, CCCL (thrust/cub), cuBLAS,
#      cuRAND, NVRTC. CUDA 13 because only its wheels ship the nvcc driver (the CUDA 12 ones have
#      ptxas alone); 13.0 because cudarc 0.19 knows 13.0-13.4 and the oldest PTX runs on the most
#      drivers. They all unpack into one tree, site-packages/nvidia/cu13 (bin, include, lib, nvvm).
#   2. in that tree, the unversioned names the linker looks for (libcublas.so → libcublas.so.13 ...),
#      which the wheels leave out, and lib/stubs/libcuda.so: a stub of the driver library (which
#      comes with the NVIDIA driver, never from PyPI), SONAME libcuda.so.1, defining every driver
#      function cudarc declares, built here with cc. candle links cudarc with `dynamic-linking`, so
#      the binary names libcuda.so.1 and the others as needed libraries; at run time the real
#      libcuda.so.1 of the driver is loaded, never the stub (only the link step sees lib/stubs).
#   3. target/cuda-env.sh: sourcing it sets LD_LIBRARY_PATH to the wheels' libraries, which the
#      built binary needs at run time (with a CUDA toolkit's libraries on the library path instead,
#      it is not needed), and the build variables above, for `cargo bench/test --features cuda`.
#      The GPU's driver must support CUDA 13.0 (R580 or newer). Like any candle CUDA build, the
#      binary does not start at all where there is no NVIDIA driver (no libcuda.so.1), even for
#      --device cpu: build the CPU binary for such machines.
#   4. PATH, CUDA_ROOT (cudarc's link search: lib, lib/stubs), CUDA_COMPUTE_CAP (candle-kernels
#      compiles its PTX and static kernels for that one architecture; nvidia-smi is not asked), then
#      cargo build --release --locked --features cuda.
#
# Needs: python3 with venv, a C/C++ compiler (nvcc uses g++ as its host compiler), cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${CUDA_VENV:-target/cuda-venv}"
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
# Pinned: CUDA 13.0 (tools 13.0.88) and library versions of the 13.0 release.
WHEELS=(
    "nvidia-cuda-nvcc==13.0.88" "nvidia-cuda-crt==13.0.88" "nvidia-nvvm==13.0.88"
    "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cccl==13.0.85" "nvidia-cuda-nvrtc==13.0.88"
    "nvidia-cublas==13.0.2.14" "nvidia-curand==10.4.0.35"
)
say() { echo "cuda-build: $*" >&2; }
start=$(date +%s)

for tool in cargo cc c++; do
    command -v "$tool" >/dev/null || { say "$tool is missing"; exit 1; }
done

# 1. The wheels.
if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
say "installing the CUDA wheels into $VENV (about 1.2 GB on disk)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "${WHEELS[@]}"
site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
CUDA_ROOT="$(cd "$site/nvidia/cu13" && pwd)"
[ -x "$CUDA_ROOT/bin/nvcc" ] || { say "no nvcc in $CUDA_ROOT/bin: the wheels' layout changed"; exit 1; }

# 2. Unversioned library names, and the driver stub.
lib="$CUDA_ROOT/lib"
for name in cudart cublas cublasLt curand nvrtc; do
    versioned="$(cd "$lib" && ls "lib$name.so."* 2>/dev/null | grep -E "^lib$name\.so\.[0-9]+$" | head -n1 || true)"
    [ -n "$versioned" ] || { say "lib$name.so.N missing in $lib"; exit 1; }
    ln -sfn "$versioned" "$lib/lib$name.so"
done
cargo fetch --locked >/dev/null
cudarc="$(cargo metadata --locked --features cuda --format-version 1 2>/dev/null | "$VENV/bin/python" -c '
import json, os, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
print(os.path.dirname(pkgs[0]["manifest_path"]) if pkgs else "")')"
[ -n "$cudarc" ] && [ -f "$cudarc/src/driver/sys/mod.rs" ] || { say "cudarc's sources not found (cargo fetch?)"; exit 1; }
mkdir -p "$lib/stubs"
stub_c="$lib/stubs/libcuda-stub.c"
{
    echo "/* Link-time stub of libcuda.so.1 (the NVIDIA driver's), written by benches/cuda-build.sh from"
    echo "   the functions $cudarc declares. Never loaded: the driver's own libcuda.so.1 is."
    echo "   Were it loaded, every call would fail with CUDA_ERROR_UNKNOWN (999). */"
    grep -ohE '^pub unsafe fn cu[A-Za-z0-9_]+' "$cudarc/src/driver/sys/mod.rs" \
        | sed 's/^pub unsafe fn //' | sort -u | sed 's/.*/int &(void) { return 999; }/'
} > "$stub_c"
cc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 -o "$lib/stubs/libcuda.so" "$stub_c"
say "stub libcuda.so: $(grep -c '^int ' "$stub_c") functions, SONAME libcuda.so.1"

# 3. The environment file (written before the build, so that it is there to debug a failed one).
cat > target/cuda-env.sh <<EOF
# Written by benches/cuda-build.sh. Run time: the CUDA libraries from the wheels, for a binary built
# by it. Build time (cargo build/bench/test --features cuda): nvcc, CUDA_ROOT, the architecture.
export LD_LIBRARY_PATH="$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$CUDA_ROOT/bin:\$PATH" CUDA_ROOT="$CUDA_ROOT" CUDA_COMPUTE_CAP="$CUDA_COMPUTE_CAP"
EOF
# 4. The build.
export PATH="$CUDA_ROOT/bin:$PATH" CUDA_ROOT
say "nvcc: $(nvcc --version | grep -o 'release [0-9.]*'), CUDA_ROOT=$CUDA_ROOT, CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
build_start=$(date +%s)
cargo build --release --locked --features cuda "$@"
end=$(date +%s)

say "built in $((end - build_start)) s (cargo), $((end - start)) s in all; binary: target/release/imgvec"
say "to run it: source target/cuda-env.sh && target/release/imgvec embed --device cuda PHOTO.jpg"
