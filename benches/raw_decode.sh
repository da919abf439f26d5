#!/usr/bin/env bash
# Decode ms per camera RAW preview: imgvec (its preview extraction and JPEG decoder, optimized build)
# against rawpy's `imread(...).extract_thumb()` followed by Pillow's decode to RGB, on the same files,
# in one run on this machine. Both sides read from memory (the file is read once before timing), and
# neither turns the picture (rawpy's thumbnail is not turned; imgvec runs with --no-orientation).
#   bash benches/raw_decode.sh PYTHON FILE...   (PYTHON: a python with rawpy and Pillow)
# Files with ~12-MP previews: `PYTHON tests/fixtures/raw/make_raw.py --bench DIR`.
# Each side decodes every file RUNS times (default 7) and reports the minimum and the median.
# CARGO_TARGET_DIR picks the build directory (default target/), PROFILE the cargo profile (bench);
# DECODE_TIMING=PATH uses a decode_timing binary built before instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
py="$1"; shift
runs="${RUNS:-7}"
profile="${PROFILE:-bench}"
target="${CARGO_TARGET_DIR:-target}"
# Cargo puts the bench profile's output (it inherits release) in release/.
case "$profile" in bench|release) dir=release ;; *) dir="$profile" ;; esac
timing="${DECODE_TIMING:-$target/$dir/examples/decode_timing}"
[ -n "${DECODE_TIMING:-}" ] || cargo build --profile "$profile" --example decode_timing >&2
for f in "$@"; do
    "$timing" --runs "$runs" --no-orientation "$f"
    "$py" - "$f" "$runs" <<'PY'
import io, sys, time
import PIL, rawpy
from PIL import Image
path, runs = sys.argv[1], int(sys.argv[2])
data = open(path, "rb").read()
times = []
for _ in range(runs):
    t = time.perf_counter()
    with rawpy.imread(io.BytesIO(data)) as raw:
        thumb = raw.extract_thumb()
    with Image.open(io.BytesIO(thumb.data)) as im:
        rgb = im.convert("RGB")
    times.append((time.perf_counter() - t) * 1e3)
times.sort()
print(f"rawpy   {path}: {rgb.size[0]}x{rgb.size[1]}  min {times[0]:.1f} ms  median {times[len(times)//2]:.1f} ms  "
      f"({runs} runs; rawpy {rawpy.__version__}, LibRaw {'.'.join(map(str, rawpy.libraw_version))}, Pillow {PIL.__version__})")
PY
done
