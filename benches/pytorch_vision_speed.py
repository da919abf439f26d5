#!/usr/bin/env python3
"""The vision tower's img/s in PyTorch + transformers, float32 on the CPU, beside imgvec's figures
in the parity benchmarks (benches/parity_chinese_clip.sh, benches/parity_siglip.sh).

    python3 benches/pytorch_vision_speed.py CLASS CHECKPOINT_DIR

CLASS is the transformers model class (ChineseCLIPModel, SiglipModel, ...); `get_image_features`
on constant pixels at batch 1 and 8, each timed for 3 s after one untimed call.
"""
import sys
import time

import torch
import transformers

cls = getattr(transformers, sys.argv[1])
m = cls.from_pretrained(sys.argv[2]).eval()
size = m.config.vision_config.image_size
for batch in (1, 8):
    px = torch.full((batch, 3, size, size), 0.1)
    with torch.inference_mode():
        m.get_image_features(pixel_values=px)
        t, n = time.perf_counter(), 0
        while time.perf_counter() - t < 3.0:
            m.get_image_features(pixel_values=px)
            n += batch
    print(f"SPEED PyTorch {torch.__version__} vision tower batch {batch}: "
          f"{n / (time.perf_counter() - t):.2f} img/s ({torch.get_num_threads()} threads)")
