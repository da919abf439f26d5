#!/usr/bin/env python3
"""Write N photo-sized JPEGs (default 24, 1600x1200, quality 90) for the end-to-end benchmark,
cut and scaled from the reference photos so each file's bytes differ.
usage: make_photos.py OUTDIR [--n 24] [--images tests/fixtures/images]     needs: pillow"""
import argparse, os

from PIL import Image

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--n", type=int, default=24)
ap.add_argument("--images", default="tests/fixtures/images")
a = ap.parse_args()
os.makedirs(a.out, exist_ok=True)
srcs = [os.path.join(a.images, f) for f in ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png")]
for i in range(a.n):
    im = Image.open(srcs[i % len(srcs)]).convert("RGB")
    w, h = im.size
    box = (i % 7, i % 5, w - (i % 3), h - (i % 4))          # a slightly different crop each time
    im = im.crop(box).resize((1600, 1200), Image.BICUBIC)
    im.save(os.path.join(a.out, f"photo{i:03d}.jpg"), quality=90)
print("wrote", a.n, "photos in", a.out)
