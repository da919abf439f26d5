#!/usr/bin/env python3
"""PyTorch + Hugging Face transformers CLIP image-encoder baseline.

What it measures
----------------
The encoder exactly as the original Python pipeline ran it: ``CLIPProcessor``
(the slow PIL image-processor path, ``use_fast=False``) and
``CLIPModel.get_image_features`` in float32 on the CPU, under
``torch.inference_mode()``, with ``torch.set_num_threads(--threads)``.

* model load: seconds for ``CLIPModel.from_pretrained`` + the processor
  (``local_files_only=True``: nothing is ever downloaded);
* preprocessing: PIL open/decode + ``CLIPProcessor`` per image, timed on its
  own, one image at a time, over every image in ``--images``;
* model forward: ``get_image_features`` only, on ``pixel_values`` that were
  computed once up front. For each batch size B the batches are filled by
  cycling through the images; ``--warmup`` untimed batches run first, then
  batches are timed until at least ``--min-seconds`` have elapsed (and at
  least ``--min-batches`` batches ran).

Output: one machine-readable ``key=value`` line per measurement, e.g.::

    pytorch_load seconds=4.21 torch=2.15.0 transformers=5.23.0 threads=2
    pytorch_preprocess images=13 ms_per_img=21.3 img_per_s=46.9 threads=2
    pytorch batch=4 img_per_s=0.91 ms_per_img=1098.9 threads=2 batches=6 seconds=26.4

``--json PATH`` additionally writes all results as one JSON object.

How to run
----------
Needs torch, transformers, pillow, numpy (e.g. a venv)::

    python benches/pytorch_encoder.py --model /path/to/clip-checkpoint-dir \\
        --images /path/to/images --batch-sizes 1,4,8 --threads 2 \\
        --warmup 1 --min-seconds 20

``--model`` is a Hugging Face CLIP checkpoint directory (config.json,
model.safetensors, preprocessor_config.json, tokenizer files), e.g. one
written by ``make_weights.py --config vit-l-14``.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

DEFAULT_MODEL = os.environ.get("IMGVEC_BENCH_MODEL", "target/ckpt/vit-l-14-seed1")
DEFAULT_IMAGES = os.environ.get("IMGVEC_BENCH_IMAGES", "tests/fixtures/images")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def list_images(folder):
    out = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            if os.path.splitext(f)[1].lower() in IMAGE_EXTS:
                out.append(os.path.join(root, f))
    return out


def features(out):
    """get_image_features returns a tensor in transformers 4.x and a model
    output whose pooler_output is the projection in 5.x."""
    import torch

    return out if torch.is_tensor(out) else out.pooler_output


def load(model_dir):
    import torch
    import transformers
    from transformers import CLIPModel, CLIPProcessor

    major = int(transformers.__version__.split(".")[0])
    dtype_kw = {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}
    model = CLIPModel.from_pretrained(model_dir, local_files_only=True, **dtype_kw).eval()
    processor = CLIPProcessor.from_pretrained(
        model_dir, local_files_only=True,
        # the slow PIL image processor; 5.x spells use_fast=False as backend="pil"
        **({"backend": "pil"} if major >= 5 else {"use_fast": False}))
    return model, processor


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="CLIP checkpoint directory (default %(default)s)")
    ap.add_argument("--images", default=DEFAULT_IMAGES, help="folder of images (default %(default)s)")
    ap.add_argument("--batch-sizes", default="1,4,8", help="comma-separated (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default %(default)s)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed batches per batch size (default %(default)s)")
    ap.add_argument("--min-seconds", type=float, default=20.0,
                    help="time each batch size at least this long (default %(default)s)")
    ap.add_argument("--min-batches", type=int, default=1, help="at least this many timed batches (default %(default)s)")
    ap.add_argument("--preprocess-seconds", type=float, default=2.0,
                    help="time preprocessing at least this long, whole passes over the images (default %(default)s)")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--matmul-precision", default="highest", choices=["highest", "high", "medium"],
                    help="torch.set_float32_matmul_precision: 'medium' lets float32 matmuls run in "
                         "bfloat16 (on CPUs with AMX or AVX-512 BF16) (default %(default)s)")
    a = ap.parse_args()
    batch_sizes = [int(b) for b in a.batch_sizes.split(",") if b.strip()]

    import torch
    import transformers
    from PIL import Image

    torch.set_num_threads(a.threads)
    torch.set_float32_matmul_precision(a.matmul_precision)
    paths = list_images(a.images)
    if not paths:
        sys.exit(f"no images under {a.images}")
    results = {"torch": torch.__version__, "transformers": transformers.__version__,
               "threads": a.threads, "torch_threads": torch.get_num_threads(),
               "python": platform.python_version(), "model": os.path.abspath(a.model),
               "images": len(paths), "batches": []}

    t0 = time.perf_counter()
    model, processor = load(a.model)
    load_s = time.perf_counter() - t0
    results["load_seconds"] = load_s
    print(f"pytorch_load seconds={load_s:.2f} torch={torch.__version__} "
          f"transformers={transformers.__version__} threads={a.threads} "
          f"cpu_capability={torch.backends.cpu.get_cpu_capability()} "
          f"matmul_precision={a.matmul_precision} "
          f"image_processor={type(processor.image_processor).__name__}", flush=True)

    # Preprocessing alone: PIL open + decode + CLIPProcessor, one image at a time.
    def preprocess(p):
        img = Image.open(p)
        return processor(images=img, return_tensors="pt")["pixel_values"]

    pixels = torch.cat([preprocess(p) for p in paths])  # also the untimed warm-up pass
    n_pre, t0 = 0, time.perf_counter()
    while True:
        for p in paths:
            preprocess(p)
        n_pre += len(paths)
        pre_s = time.perf_counter() - t0
        if pre_s >= a.preprocess_seconds:
            break
    results["preprocess"] = {"images": n_pre, "seconds": pre_s, "ms_per_img": 1000 * pre_s / n_pre,
                             "img_per_s": n_pre / pre_s}
    print(f"pytorch_preprocess images={n_pre} ms_per_img={1000 * pre_s / n_pre:.1f} "
          f"img_per_s={n_pre / pre_s:.1f} threads={a.threads}", flush=True)

    n_img = pixels.shape[0]
    dims = None
    with torch.inference_mode():
        for bs in batch_sizes:
            cursor = 0

            def next_batch():
                nonlocal cursor
                idx = [(cursor + j) % n_img for j in range(bs)]
                cursor = (cursor + bs) % n_img
                return pixels[idx].contiguous()

            for _ in range(a.warmup):
                out = features(model.get_image_features(pixel_values=next_batch()))
            per_batch = []
            start = time.perf_counter()
            while True:
                batch = next_batch()
                tb = time.perf_counter()
                out = features(model.get_image_features(pixel_values=batch))
                per_batch.append(time.perf_counter() - tb)
                elapsed = time.perf_counter() - start
                if elapsed >= a.min_seconds and len(per_batch) >= a.min_batches:
                    break
            dims = out.shape[-1]
            fwd_s = sum(per_batch)
            imgs = bs * len(per_batch)
            row = {"batch": bs, "batches": len(per_batch), "images": imgs, "seconds": fwd_s,
                   "img_per_s": imgs / fwd_s, "ms_per_img": 1000 * fwd_s / imgs,
                   "median_batch_ms": 1000 * statistics.median(per_batch),
                   "min_batch_ms": 1000 * min(per_batch)}
            results["batches"].append(row)
            print(f"pytorch batch={bs} img_per_s={row['img_per_s']:.3f} ms_per_img={row['ms_per_img']:.1f} "
                  f"threads={a.threads} batches={len(per_batch)} seconds={fwd_s:.1f} "
                  f"median_batch_ms={row['median_batch_ms']:.1f}", flush=True)
    results["dims"] = dims
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
