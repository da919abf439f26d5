#!/usr/bin/env python3
"""Write N photo-sized JPEGs (default 24, 1600x1200, quality 90) for the end-to-end benchmark,
cut and scaled from the reference photos so each file's bytes differ.
With --varied: each photo a random crop (a third to all of the side, anywhere), maybe mirrored, of
any reference image, at 640x480 — a set whose nearest neighbours are not all near-copies (the
precision benchmark's image→image agreement).
usage: make_photos.py OUTDIR [--n 24] [--images tests/fixtures/images] [--varied]   needs: pillow"""
import argparse, os

from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--n", type=int, default=24)
ap.add_argument("--images", default="tests/fixtures/images")
ap.add_argument("--varied", action="store_true")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
if a.varied:
    import random
    rng = random.Random(7)
    names = sorted(f for f in os.listdir(a.images) if f.lower().endswith((".png", ".jpg")))
    for i in range(a.n):
        im = Image.open(os.path.join(a.images, rng.choice(names))).convert("RGB")
        w, h = im.size
        f = rng.uniform(0.33, 1.0)
        cw, ch = max(8, int(w * f)), max(8, int(h * f))
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        im = im.crop((x, y, x + cw, y + ch)).resize((640, 480), Image.BICUBIC)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        im.save(os.path.join(a.out, f"photo{i:03d}.jpg"), quality=90)
    print("wrote", a.n, "varied photos in", a.out)
    raise SystemExit(0)
srcs = [os.path.join(a.images, f) for f in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png")]
for i in range(a.n):
    im = Image.open(srcs[i % len(srcs)]).convert("RGB")
    w, h = im.size
    box = (i % 7, i % 5, w - (i % 3), h - (i % 4))          # a slightly different crop each time
    im = im.crop(box).resize((1600, 1200), Image.BICUBIC)
    im.save(os.path.join(a.out, f"photo{i:03d}.jpg"), quality=90)
print("wrote", a.n, "photos in", a.out)
