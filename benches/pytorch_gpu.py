#!/usr/bin/env python3
"""PyTorch + transformers CLIP image encoder on a CUDA GPU, the baseline of benches/gpu_bench.sh.

Two measurements, one machine-readable line each:

* ``--mode model``: ``CLIPModel.get_image_features`` only, on pixels preprocessed once up front
  (already on the GPU), for each of ``--dtypes`` (fp32, fp16, bf16, and fp16-compile: fp16 under
  ``torch.compile``), batches of ``--batch-size`` timed for at least ``--min-seconds`` after
  ``--warmup`` batches, with ``torch.cuda.synchronize()`` around the timing::

      pytorch_gpu model dtype=fp16 batch=128 img_per_s=1234.5 batches=40 seconds=4.1

  With ``--reference FILE`` (imgvec's f32 CPU embeddings of the same images, one JSON array per line,
  written by ``cargo bench --bench encoder -- --embeddings-out``) it also prints the cosine of each
  dtype's embeddings to it.

* ``--mode e2e``: JPEG files to embeddings: a ``DataLoader`` with ``--workers`` processes (default:
  all cores) that open, decode and preprocess each file with ``CLIPProcessor``, pinned memory, and
  the model in ``--dtypes`` (the first one) on the GPU. The embeddings are L2-normalised and copied
  back to the host, as imgvec does; nothing is stored::

      pytorch_gpu e2e dtype=fp16 batch=128 workers=16 images=1024 img_per_s=810.2 seconds=1.26 \
          load_seconds=3.2 img_per_s_with_load=230.1

Needs torch with CUDA, transformers, pillow, numpy. Exits 1 with a clear message without a GPU.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_encoder import features, list_images, load  # noqa: E402

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp16-compile": "float16"}


def cosine_report(name, got, reference):
    import numpy as np

    ref = np.array(reference, dtype=np.float64)
    g = got.astype(np.float64)
    cos = (g * ref).sum(1) / (np.linalg.norm(g, axis=1) * np.linalg.norm(ref, axis=1))
    print(f"pytorch_gpu cosine_to_reference dtype={name} images={len(cos)} min={cos.min():.6f} "
          f"mean={cos.mean():.6f}", flush=True)


def model_mode(a, torch, model, processor):
    from PIL import Image

    paths = list_images(a.images)
    pixels = torch.cat([processor(images=Image.open(p), return_tensors="pt")["pixel_values"]
                        for p in paths]).cuda()
    reference = None
    if a.reference:
        with open(a.reference) as f:
            reference = [json.loads(line) for line in f if line.strip()]
        if len(reference) != len(paths):
            sys.exit(f"{a.reference}: {len(reference)} embeddings, {a.images} has {len(paths)} images")
    del model
    for name in a.dtypes.split(","):
        dtype = getattr(torch, DTYPES[name])
        # Each dtype rounded from the checkpoint's f32 weights, not from the previous dtype.
        m = load(a.model)[0].to("cuda", dtype)
        fwd = m.get_image_features
        if name.endswith("-compile"):
            fwd = torch.compile(m.get_image_features)
        n = pixels.shape[0]
        idx = [(i % n) for i in range(a.batch_size)]
        batch = pixels[idx].to(dtype).contiguous()
        with torch.inference_mode():
            for _ in range(a.warmup):
                features(fwd(pixel_values=batch))
            torch.cuda.synchronize()
            t0, batches = time.perf_counter(), 0
            while True:
                features(fwd(pixel_values=batch))
                batches += 1
                if batches % 4 == 0:
                    torch.cuda.synchronize()
                    if time.perf_counter() - t0 >= a.min_seconds:
                        break
            torch.cuda.synchronize()
            s = time.perf_counter() - t0
            print(f"pytorch_gpu model dtype={name} batch={a.batch_size} "
                  f"img_per_s={batches * a.batch_size / s:.1f} batches={batches} seconds={s:.2f}",
                  flush=True)
            if reference is not None:
                out = features(fwd(pixel_values=pixels.to(dtype))).float()
                out = torch.nn.functional.normalize(out, dim=-1).cpu().numpy()
                cosine_report(name, out, reference)
        del m, fwd
        torch.cuda.empty_cache()


class Files:
    """JPEG files → pixel tensors, in DataLoader workers."""

    def __init__(self, paths, processor):
        self.paths, self.processor = paths, processor

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.paths[i]) as img:
            return self.processor(images=img.convert("RGB"), return_tensors="pt")["pixel_values"][0]


def e2e_mode(a, torch, model, processor, load_s):
    paths = list_images(a.images)
    name = a.dtypes.split(",")[0]
    dtype = getattr(torch, DTYPES[name])
    model = model.to(dtype)
    fwd = torch.compile(model.get_image_features) if name.endswith("-compile") else model.get_image_features
    loader = torch.utils.data.DataLoader(Files(paths, processor), batch_size=a.batch_size,
                                         num_workers=a.workers, pin_memory=True,
                                         persistent_workers=False, prefetch_factor=4)
    t0 = time.perf_counter()
    n = 0
    with torch.inference_mode():
        for batch in loader:
            out = features(fwd(pixel_values=batch.cuda(non_blocking=True).to(dtype))).float()
            out = torch.nn.functional.normalize(out, dim=-1).cpu()
            n += out.shape[0]
    s = time.perf_counter() - t0
    print(f"pytorch_gpu e2e dtype={name} batch={a.batch_size} workers={a.workers} images={n} "
          f"img_per_s={n / s:.1f} seconds={s:.2f} load_seconds={load_s:.2f} "
          f"img_per_s_with_load={n / (s + load_s):.1f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["model", "e2e"], required=True)
    ap.add_argument("--model", required=True, help="CLIP checkpoint directory")
    ap.add_argument("--images", required=True, help="folder of images")
    ap.add_argument("--dtypes", default="fp32,fp16,bf16,fp16-compile",
                    help="comma-separated, of " + ", ".join(DTYPES) + " (e2e: the first)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--reference", help="imgvec's f32 CPU embeddings of --images (model mode)")
    a = ap.parse_args()
    for d in a.dtypes.split(","):
        if d not in DTYPES:
            sys.exit(f"--dtypes: unknown {d!r}")

    import torch
    import transformers

    if not torch.cuda.is_available():
        sys.exit("pytorch_gpu: torch sees no CUDA GPU (torch.cuda.is_available() is False; "
                 f"torch {torch.__version__}, built for CUDA {torch.version.cuda})")
    t0 = time.perf_counter()
    model, processor = load(a.model)
    model = model.cuda()
    torch.cuda.synchronize()
    load_s = time.perf_counter() - t0
    print(f"pytorch_gpu load seconds={load_s:.2f} torch={torch.__version__} cuda={torch.version.cuda} "
          f"transformers={transformers.__version__} gpu={torch.cuda.get_device_name(0).replace(' ', '_')}",
          flush=True)
    if a.mode == "model":
        model_mode(a, torch, model, processor)
    else:
        e2e_mode(a, torch, model, processor, load_s)


if __name__ == "__main__":
    main()
