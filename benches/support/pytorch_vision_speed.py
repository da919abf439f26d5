"""The vision tower's speed in PyTorch + transformers for any family imgvec reads, beside imgvec's
own `SPEED` lines of `cargo bench --bench parity` (the parity_*.sh benchmarks print both).

    python benches/support/pytorch_vision_speed.py MODEL_DIR [SECONDS]

The model class comes from config.json's model_type (`CLIPModel`, `ChineseCLIPModel`,
`SiglipModel`...); `get_image_features` on constant pixels at batch 1 and 8, float32, the
default thread count, after one untimed call, for at least SECONDS (3) each.
"""
import json
import os
import sys
import time

import torch
import transformers

CLASSES = {"clip": "CLIPModel", "chinese_clip": "ChineseCLIPModel", "siglip": "SiglipModel",
           "siglip2": "Siglip2Model"}


def main():
    model_dir = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    cls = getattr(transformers, CLASSES[config["model_type"]])
    model = cls.from_pretrained(model_dir).eval()
    size = model.config.vision_config.image_size
    for batch in (1, 8):
        px = torch.full((batch, 3, size, size), 0.1)
        with torch.inference_mode():
            model.get_image_features(pixel_values=px)
            t, n = time.perf_counter(), 0
            while time.perf_counter() - t < seconds:
                model.get_image_features(pixel_values=px)
                n += batch
        print(f"SPEED PyTorch {torch.__version__} vision tower batch {batch}: "
              f"{n / (time.perf_counter() - t):.2f} img/s ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
