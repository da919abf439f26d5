#!/usr/bin/env python3
"""The CPU runtimes people pick to index faster, on the same CLIP vision tower as imgvec: PyTorch
f32 (the reference), ONNX Runtime f32 and dynamic int8 (``quantize_dynamic``, QInt8: what immich
ships), OpenVINO f32 and bf16 (``INFERENCE_PRECISION_HINT``). Model forward only, as
benches/pytorch_encoder.py and imgvec's encoder bench measure it.

For each runtime: seconds per image at each batch size (batches timed until ``--min-seconds``), and
the cosine of its embedding of every image to PyTorch f32's (min and mean). The model is exported
once to ONNX (``torch.onnx.export`` of ``CLIPVisionModelWithProjection``: pixel values in, the
projected embedding out) into ``--work``; the int8 model is quantized from it and kept there too.

Output, one ``key=value`` line each::

    runtime name=ort-int8 batch=8 ms_per_img=286.0 threads=2
    runtime_cosine name=ort-int8 images=13 min=0.934 mean=0.951

usage: cpu_runtimes.py --model CKPT --images DIR [--batch-sizes 1,8] [--threads 2]
    [--min-seconds 20] [--work target/bench/onnx] [--only pytorch,ort-f32,ort-int8,ov-f32,ov-bf16]
needs: torch transformers pillow onnx onnxscript onnxruntime openvino
"""
import argparse
import os
import sys
import time

import numpy as np

RUNTIMES = ["pytorch", "ort-f32", "ort-int8", "ov-f32", "ov-bf16"]


def pixels_of(model_dir, images):
    import transformers
    from PIL import Image
    from transformers import CLIPProcessor

    major = int(transformers.__version__.split(".")[0])
    proc = CLIPProcessor.from_pretrained(
        model_dir, local_files_only=True, **({"backend": "pil"} if major >= 5 else {"use_fast": False}))
    exts = (".jpg", ".jpeg", ".png")
    paths = sorted(os.path.join(images, f) for f in os.listdir(images) if f.lower().endswith(exts))
    return np.concatenate([proc(images=Image.open(p), return_tensors="np")["pixel_values"] for p in paths])


def export(model_dir, work):
    """The vision tower and projection as ONNX (f32), and its dynamic int8 quantization."""
    import torch
    from transformers import CLIPVisionModelWithProjection

    f32, int8 = os.path.join(work, "vision-f32.onnx"), os.path.join(work, "vision-int8.onnx")
    if not os.path.exists(f32):
        os.makedirs(work, exist_ok=True)
        m = CLIPVisionModelWithProjection.from_pretrained(model_dir, local_files_only=True).eval()

        class Embed(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, pixel_values):
                return self.m(pixel_values=pixel_values).image_embeds

        x = torch.zeros(1, 3, m.config.image_size, m.config.image_size)
        torch.onnx.export(Embed(m), (x,), f32, input_names=["pixel_values"], output_names=["embeds"],
                          dynamic_axes={"pixel_values": {0: "b"}, "embeds": {0: "b"}}, opset_version=17,
                          dynamo=False)
    if not os.path.exists(int8):
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(f32, int8, weight_type=QuantType.QInt8)
    return f32, int8


def runner(name, model_dir, work, threads):
    """A function: pixel batch (numpy f32) -> embeddings (numpy f32)."""
    if name == "pytorch":
        import torch
        from transformers import CLIPVisionModelWithProjection

        torch.set_num_threads(threads)
        m = CLIPVisionModelWithProjection.from_pretrained(model_dir, local_files_only=True).eval()

        def run(x):
            with torch.inference_mode():
                return m(pixel_values=torch.from_numpy(x)).image_embeds.numpy()
        return run
    f32, int8 = export(model_dir, work)
    if name.startswith("ort-"):
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        s = ort.InferenceSession(int8 if name == "ort-int8" else f32, so, providers=["CPUExecutionProvider"])
        return lambda x: s.run(None, {"pixel_values": x})[0]
    import openvino as ov

    core = ov.Core()
    cfg = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "bf16" if name == "ov-bf16" else "f32"}
    c = core.compile_model(core.read_model(f32), "CPU", cfg)
    return lambda x: c(x)[0]


def unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="target/ckpt/vit-l-14-seed1")
    ap.add_argument("--images", default="tests/fixtures/images")
    ap.add_argument("--batch-sizes", default="1,8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=20.0)
    ap.add_argument("--work", default="target/bench/onnx")
    ap.add_argument("--only", default=",".join(RUNTIMES))
    a = ap.parse_args()
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[k] = str(a.threads)
    x = pixels_of(a.model, a.images)
    names = [n for n in a.only.split(",") if n]
    for n in names:
        if n not in RUNTIMES:
            sys.exit(f"cpu_runtimes.py: unknown runtime {n} (one of {', '.join(RUNTIMES)})")
    reference = None
    for name in ["pytorch"] + [n for n in names if n != "pytorch"]:
        run = runner(name, a.model, os.path.join(a.work, os.path.basename(os.path.abspath(a.model))), a.threads)
        emb = unit(np.concatenate([run(x[i:i + 8]) for i in range(0, len(x), 8)]))
        if reference is None:
            reference = emb
        cos = (emb * reference).sum(-1)
        print(f"runtime_cosine name={name} images={len(x)} min={cos.min():.6f} mean={cos.mean():.6f}", flush=True)
        if name not in names:
            continue
        for bs in [int(b) for b in a.batch_sizes.split(",") if b]:
            batch = np.stack([x[i % len(x)] for i in range(bs)])
            run(batch)
            n, t0 = 0, time.perf_counter()
            while n == 0 or time.perf_counter() - t0 < a.min_seconds:
                run(batch)
                n += bs
            s = time.perf_counter() - t0
            print(f"runtime name={name} batch={bs} ms_per_img={1000 * s / n:.1f} img_per_s={n / s:.3f} "
                  f"threads={a.threads}", flush=True)


if __name__ == "__main__":
    main()
