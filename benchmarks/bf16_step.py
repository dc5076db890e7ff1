"""Our base U-Net's training step in fp32 and under bf16 autocast, at three widths.

    OMP_NUM_THREADS=1 python benchmarks/bf16_step.py 1 32    # threads, batch size

Prints images per second of a full step (forward, backward, AdamW) on random inputs of the
bundled base stage's shape (32x32, MiniLM-width text of 20 tokens).
"""

import dataclasses
import sys
import time

import torch

from openimagen.models.presets import PRESETS
from openimagen.models.unet import EfficientUNet


def step(net, opt, inputs, precision: str) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
        out = net(*inputs)
    out.float().pow(2).mean().backward()
    opt.step()
    opt.zero_grad()


threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 32
torch.set_num_threads(threads)
base = PRESETS["shapes-base-32"]
for width in (32, 48, 64):
    cfg = dataclasses.replace(base, base_channels=width, channel_mults=(1, 2, 2),
                              num_res_blocks=(1, 2, 2))  # fmt: skip
    net = EfficientUNet(cfg)
    params = sum(p.numel() for p in net.parameters())
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    inputs = (torch.randn(batch, 3, 32, 32), torch.rand(batch), torch.randn(batch, 20, 384),
              torch.ones(batch, 20, dtype=torch.bool))  # fmt: skip
    for precision in ("fp32", "bf16"):
        for _ in range(3):
            step(net, opt, inputs, precision)
        started = time.perf_counter()
        for _ in range(8):
            step(net, opt, inputs, precision)
        speed = 8 * batch / (time.perf_counter() - started)
        print(f"width {width} ({params / 1e6:.2f}M) {precision}: {speed:.1f} img/s "
              f"({threads} thread(s), batch {batch})")  # fmt: skip
