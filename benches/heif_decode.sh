#!/usr/bin/env bash
# Decode ms per HEIC/AVIF file: imgvec (release, --features heif) against pillow-heif (Pillow for
# AVIF) on the same files, in one run on this machine.
#   bash benches/heif_decode.sh PYTHON FILE...   (PYTHON: a python with pillow and pillow-heif)
# Each side decodes every file RUNS times (default 5) and reports the minimum and the median.
set -euo pipefail
cd "$(dirname "$0")/.."
py="$1"; shift
runs="${RUNS:-5}"
cargo build --release --features heif --example decode_timing >&2
for f in "$@"; do
    ./target/release/examples/decode_timing --runs "$runs" "$f"
    "$py" - "$f" "$runs" <<'PY'
import sys, time
import pillow_heif
from PIL import Image
pillow_heif.register_heif_opener()
path, runs = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(runs):
    t = time.perf_counter()
    with Image.open(path) as im:
        im.load()
        rgb = im.convert("RGB")
    times.append((time.perf_counter() - t) * 1e3)
times.sort()
print(f"pillow  {path}: {rgb.size[0]}x{rgb.size[1]}  min {times[0]:.1f} ms  median {times[len(times)//2]:.1f} ms  "
      f"({runs} runs; Pillow {Image.__version__ if hasattr(Image, '__version__') else ''} pillow-heif {pillow_heif.__version__}, libheif {pillow_heif.libheif_info()['libheif']})")
PY
done
