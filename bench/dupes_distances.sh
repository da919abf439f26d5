#!/usr/bin/env bash
# Measure the L2 distance between the CLIP embedding of an image and the embeddings of its
# variants (re-encodes, resizes, crops, EXIF rotation, "another shot of the same scene"), and
# between different images, to choose a default `imgvec dupes --max-distance`.
# Embeddings are L2-normalized, so d = sqrt(2 - 2*cos), in [0, 2].
#
# usage: bench/dupes_distances.sh MODEL_DIR SCRATCH_DIR
# env:   IMGVEC=path/to/imgvec   (default: target/release/imgvec next to this script, else PATH)
#        N_BASES=8               how many base images to use (first N of the list below)
#        KINDS="q95 q85 ..."     restrict the variant kinds (default: all; see KIND list)
#        SRC_IMAGES=DIR          where chelsea.png etc. are (default: tests/fixtures/images)
# needs: ImageMagick 6/7 (`convert`), python3 (stdlib only). No exiftool: the EXIF
#        Orientation tag is written by a few lines of Python.
set -euo pipefail

MODEL_DIR=${1:?usage: $0 MODEL_DIR SCRATCH_DIR}
WORK=${2:?usage: $0 MODEL_DIR SCRATCH_DIR}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
if [[ -z "${IMGVEC:-}" ]]; then
  if [[ -x "$ROOT/target/release/imgvec" ]]; then IMGVEC="$ROOT/target/release/imgvec"; else IMGVEC=imgvec; fi
fi
SRC_IMAGES=${SRC_IMAGES:-$ROOT/tests/fixtures/images}
N_BASES=${N_BASES:-8}
ALL_KINDS="q95 q85 q75 q60 half quarter crop5 crop10 exif_rot90 rot90_notag shift15 bright15 hflip scene"
KINDS=${KINDS:-$ALL_KINDS}
CONVERT=convert; command -v convert >/dev/null || CONVERT="magick"

mkdir -p "$WORK/img"
cd "$WORK/img"

# ---------- base images: 5 real photos (scikit-image, public domain) + 3 synthetic ----------
bases=()
for f in chelsea.png coffee.png astronaut.png rocket.jpg camera.png; do
  [[ -f "$SRC_IMAGES/$f" ]] && { $CONVERT "$SRC_IMAGES/$f" "base_${f%.*}.png"; bases+=("${f%.*}"); }
done
$CONVERT -size 640x480 -seed 7 plasma:fractal -blur 0x1 base_plasma.png; bases+=(plasma)
$CONVERT -size 640x480 gradient:skyblue-darkgreen \
  -fill red -draw "circle 200,200 260,260" -fill yellow -draw "rectangle 380,120 560,300" \
  -fill navy -draw "polygon 100,420 250,300 400,440" -fill white -draw "ellipse 520,400 80,40 0,360" \
  base_shapes.png; bases+=(shapes)
$CONVERT -size 640x480 radial-gradient:orange-purple \
  -stroke black -strokewidth 6 -draw "line 0,0 640,480" -draw "line 0,480 640,0" \
  -stroke none -fill teal -draw "roundrectangle 60,60 260,200 20,20" \
  -fill gold -draw "circle 470,330 470,420" base_radial.png; bases+=(radial)
bases=("${bases[@]:0:$N_BASES}")

# write EXIF Orientation=6 ("rotate 90 CW to display") into a JPEG, right after SOI
set_orientation6() {
  python3 - "$1" <<'PY'
import struct, sys
p = sys.argv[1]; b = open(p, 'rb').read(); assert b[:2] == b'\xff\xd8'
tiff = b'MM\x00\x2a' + struct.pack('>I', 8) + struct.pack('>H', 1) \
     + struct.pack('>HHIHH', 0x0112, 3, 1, 6, 0) + struct.pack('>I', 0)
payload = b'Exif\x00\x00' + tiff
open(p, 'wb').write(b[:2] + b'\xff\xe1' + struct.pack('>H', len(payload) + 2) + payload + b[2:])
PY
}

# ---------- variants; pairs.tsv: kind <TAB> fileA <TAB> fileB ----------
: > pairs.tsv
has() { [[ " $KINDS " == *" $1 "* ]]; }
files=()
for b in "${bases[@]}"; do
  o=base_$b.png; files+=("$o")
  pair() { echo -e "$1\t$2\t$3" >> pairs.tsv; files+=("$3"); }
  for q in 95 85 75 60; do
    has q$q && { $CONVERT $o -quality $q ${b}_q$q.jpg; pair q$q $o ${b}_q$q.jpg; }
  done
  has half    && { $CONVERT $o -resize 50% ${b}_half.png; pair half $o ${b}_half.png; }
  has quarter && { $CONVERT $o -resize 25% ${b}_quarter.png; pair quarter $o ${b}_quarter.png; }
  has crop5   && { $CONVERT $o -gravity center -crop 90%x90%+0+0 +repage ${b}_crop5.png; pair crop5 $o ${b}_crop5.png; }
  has crop10  && { $CONVERT $o -gravity center -crop 80%x80%+0+0 +repage ${b}_crop10.png; pair crop10 $o ${b}_crop10.png; }
  # stored pixels turned 90 CCW + Orientation=6: a viewer (and imgvec) shows the original
  if has exif_rot90; then
    $CONVERT $o -rotate -90 -strip -quality 95 ${b}_exif_rot90.jpg; set_orientation6 ${b}_exif_rot90.jpg
    pair exif_rot90 $o ${b}_exif_rot90.jpg
  fi
  # control: the same turned pixels without the tag (what ignoring EXIF would give)
  has rot90_notag && { $CONVERT $o -rotate -90 -strip -quality 95 ${b}_rot90_notag.jpg; pair rot90_notag $o ${b}_rot90_notag.jpg; }
  has bright15 && { $CONVERT $o -modulate 115 ${b}_bright15.png; pair bright15 $o ${b}_bright15.png; }
  has hflip    && { $CONVERT $o -flop ${b}_hflip.png; pair hflip $o ${b}_hflip.png; }
  # "another shot": two 85%-wide windows 15% apart (left vs right); both files are embedded
  if has shift15 || has scene; then
    $CONVERT $o -gravity west -crop 85%x100%+0+0 +repage ${b}_left85.png; files+=(${b}_left85.png)
  fi
  has shift15 && { $CONVERT $o -gravity east -crop 85%x100%+0+0 +repage ${b}_right85.png; pair shift15 ${b}_left85.png ${b}_right85.png; }
  # ... and the right window also 10% brighter, JPEG q85 (a second phone shot, roughly)
  has scene && { $CONVERT $o -gravity east -crop 85%x100%+0+0 +repage -modulate 110 -quality 85 ${b}_scene.jpg; pair scene ${b}_left85.png ${b}_scene.jpg; }
  unset -f pair
done
# different images: every pair of distinct base images
for ((i = 0; i < ${#bases[@]}; i++)); do for ((j = i + 1; j < ${#bases[@]}; j++)); do
  echo -e "DIFFERENT\tbase_${bases[i]}.png\tbase_${bases[j]}.png" >> pairs.tsv
done; done

mapfile -t files < <(printf '%s\n' "${files[@]}" | awk '!seen[$0]++')
echo "model: $MODEL_DIR  ($(cat "$MODEL_DIR/weights.sha256" 2>/dev/null | cut -c1-16)…)" >&2
echo "imgvec: $IMGVEC; ${#bases[@]} base images: ${bases[*]}; ${#files[@]} files to embed" >&2
t0=$(date +%s.%N)
"$IMGVEC" embed --model-dir "$MODEL_DIR" --json "${files[@]}" > embeddings.jsonl
t1=$(date +%s.%N)
python3 -c "print('embed: %.1f s for %d files' % ($t1 - $t0, ${#files[@]}))" >&2

# ---------- table ----------
python3 - embeddings.jsonl pairs.tsv "$ALL_KINDS" <<'PY'
import json, math, os, statistics, sys
emb = {}
for line in open(sys.argv[1]):
    o = json.loads(line)
    if 'embedding' in o: emb[os.path.basename(o['path'])] = o['embedding']
def dist(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(emb[a], emb[b])))
by = {}
for line in open(sys.argv[2]):
    k, a, b = line.rstrip('\n').split('\t')
    if a in emb and b in emb: by.setdefault(k, []).append((dist(a, b), a, b))
    else: print(f'missing embedding for {a if a not in emb else b}', file=sys.stderr)
order = sys.argv[3].split() + ['DIFFERENT']
print(f"{'kind':<12} {'n':>3} {'min':>7} {'median':>7} {'max':>7}   max at")
for k in order:
    if k not in by: continue
    ds = sorted(by[k])
    v = [d for d, _, _ in ds]
    worst = ds[-1][2] if k != 'DIFFERENT' else ds[0][1] + '~' + ds[0][2] + ' (min)'
    print(f"{k:<12} {len(v):>3} {v[0]:7.4f} {statistics.median(v):7.4f} {v[-1]:7.4f}   {worst}")
PY
