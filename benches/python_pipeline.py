#!/usr/bin/env python3
"""The original Python image-indexing pipeline, kept as the end-to-end baseline.

What it measures
----------------
Wall-clock time to index a folder of images into Elasticsearch the way the
original script did it, one image at a time:

    PIL Image.open -> CLIPProcessor (slow PIL path) -> CLIPModel.get_image_features
    (float32, CPU, torch.set_num_threads(--threads)) -> L2 normalize ->
    helpers.bulk with ONE document -> ... -> indices.refresh

The index is created first with fields ``name`` (keyword, the ``--label``),
``path`` (keyword) and ``IFV`` (dense_vector, dims = the model's
projection_dim, similarity l2_norm, index_options int8_hnsw).

Printed, machine-readable::

    python_pipeline_load seconds=4.2 dims=768 threads=2
    python_pipeline images=13 seconds=S img_per_s=X total_seconds=T

``seconds`` runs from the start of the folder walk to the end of the refresh
(every image opened, embedded and indexed); ``total_seconds`` also counts
imports, model load and index creation, i.e. the whole process as a user
would time it.

How to run
----------
Needs torch, transformers, pillow, numpy and ``elasticsearch>=8,<9`` and a
running Elasticsearch 8.x (plain http in benches)::

    python benches/python_pipeline.py --model /path/to/clip-checkpoint-dir \\
        --images /path/to/images --label bench --es-url http://127.0.0.1:9200 \\
        --index imgvec-python-bench --threads 2 --recreate

Without ``--recreate`` an existing index of that name is an error; with it
the index is deleted and created anew. Nothing is downloaded
(``local_files_only=True``).
"""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402

DEFAULT_MODEL = os.environ.get("IMGVEC_BENCH_MODEL", "target/ckpt/vit-l-14-seed1")
DEFAULT_IMAGES = os.environ.get("IMGVEC_BENCH_IMAGES", "tests/fixtures/images")
IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="CLIP checkpoint directory (default %(default)s)")
    ap.add_argument("--images", default=DEFAULT_IMAGES, help="folder of images, walked recursively (default %(default)s)")
    ap.add_argument("--label", required=True, help="value of the `name` field of every document")
    ap.add_argument("--es-url", default="http://127.0.0.1:9200", help="Elasticsearch URL (default %(default)s)")
    ap.add_argument("--index", default="imgvec-python-bench", help="index name (default %(default)s)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default %(default)s)")
    ap.add_argument("--recreate", action="store_true", help="delete the index first if it exists")
    a = ap.parse_args()

    import torch
    import transformers
    from elasticsearch import Elasticsearch, helpers
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    major = int(transformers.__version__.split(".")[0])
    dtype_kw = {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}
    model = CLIPModel.from_pretrained(a.model, local_files_only=True, **dtype_kw).eval()
    processor = CLIPProcessor.from_pretrained(
        a.model, local_files_only=True,
        # the slow PIL image processor; 5.x spells use_fast=False as backend="pil"
        **({"backend": "pil"} if major >= 5 else {"use_fast": False}))
    dims = model.config.projection_dim
    print(f"python_pipeline_load seconds={time.perf_counter() - t0:.2f} dims={dims} threads={a.threads} "
          f"torch={torch.__version__} transformers={transformers.__version__}", flush=True)

    es = Elasticsearch(a.es_url, request_timeout=120)
    if es.indices.exists(index=a.index):
        if not a.recreate:
            sys.exit(f"index {a.index} already exists (pass --recreate to delete it first)")
        es.indices.delete(index=a.index)
    es.indices.create(
        index=a.index,
        mappings={"properties": {
            "name": {"type": "keyword"},
            "path": {"type": "keyword"},
            "IFV": {"type": "dense_vector", "dims": dims, "index": True, "similarity": "l2_norm",
                    "index_options": {"type": "int8_hnsw"}},
        }},
    )

    n = 0
    t_walk = time.perf_counter()
    with torch.inference_mode():
        for root, dirs, files in os.walk(a.images):
            dirs.sort()
            for f in sorted(files):
                if os.path.splitext(f)[1].lower() not in IMAGE_EXTS:
                    continue
                path = os.path.abspath(os.path.join(root, f))
                img = Image.open(path)
                inputs = processor(images=img, return_tensors="pt")
                out = model.get_image_features(pixel_values=inputs["pixel_values"])
                emb = out if torch.is_tensor(out) else out.pooler_output  # 4.x tensor / 5.x output
                emb = emb / emb.norm(p=2, dim=-1, keepdim=True)
                doc = {"name": a.label, "path": path, "IFV": emb[0].tolist()}
                helpers.bulk(es, [{"_index": a.index, "_source": doc}])
                n += 1
    es.indices.refresh(index=a.index)
    t_end = time.perf_counter()
    seconds = t_end - t_walk
    count = es.count(index=a.index)["count"]
    if count != n:
        sys.exit(f"indexed {n} images but the index holds {count} documents")
    print(f"python_pipeline images={n} seconds={seconds:.2f} img_per_s={n / seconds:.3f} "
          f"total_seconds={t_end - T_START:.2f} threads={a.threads} index={a.index}", flush=True)


if __name__ == "__main__":
    main()
