"""Peak memory and time of one U-Net training step, with and without activation checkpointing.

    OMP_NUM_THREADS=1 python benchmarks/activation_memory.py            # the table
    OMP_NUM_THREADS=1 python benchmarks/activation_memory.py --precision bf16
    OMP_NUM_THREADS=1 python benchmarks/activation_memory.py --processes 2  # DDP vs FSDP

Each arm (a U-Net size, checkpointing off or on) runs in a fresh subprocess that holds what
the trainer holds: the fp32 U-Net, its EMA copy (``openimagen.train.ema.make_ema``), fused AdamW
with its two moments, and fp32 gradients, all allocated before the step is measured (the
gradients as zeros that backward accumulates into; the moments by one AdamW step on zero
gradients, which leaves the weights unchanged). Then, on random inputs of the stage's shape
(MiniLM-width text of 20 tokens):

- ``held``: bytes per parameter of the tensors the trainer keeps between steps (weights,
  gradients, AdamW moments, EMA weights and buffers), counted from the tensors themselves;
- ``static``: the process's resident set (VmRSS) just before the step (with torch itself);
- ``step peak``: the growth of the peak resident set (VmHWM, reset by writing 5 to
  /proc/self/clear_refs) over one forward + backward: the activations and temporaries;
- ``time``: the median wall time of 3 more whole steps (forward, backward, AdamW, EMA).

The last U-Net is an imported DeepFloyd IF stage I's network: diffusers'
``UNet2DConditionModel`` with IF-I-XL's config at base width 64 (benchmarks/if_memory.py),
reading 77 tokens of T5-XXL's width; ``--only NAME`` measures some of the U-Nets, ``--batch``
sets the global batch, ``--diffusers-own`` checkpoints it with diffusers' own
``enable_gradient_checkpointing`` instead of openimagen's per-block checkpointing.

``--processes P`` runs every arm twice in P gloo processes (torchrun), each on its share
(batch / P) of the batch: under DDP (``DistributedDataParallel``, every process holding
everything) and sharded as ``train.fsdp`` shards it (``openimagen.train.sharding``: the U-Net
and its EMA, so each process holds its shards of the weights, gradients, moments and EMA).
``held`` then counts a process's own tensors (its shards) per parameter of the whole U-Net;
the largest held, static and step peak over the processes are reported.

glibc's malloc is run with a fixed mmap threshold (``MALLOC_MMAP_THRESHOLD_=131072``): every
tensor larger than 128 KiB is its own mapping, returned to the system when freed, so the
resident set follows what torch holds rather than what the allocator caches. Linux only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from if_memory import stage_one_unet  # benchmarks/if_memory.py: IF's U-Net configs

from openimagen.models import (
    DiffusersUNet,
    DiffusersUNetConfig,
    EfficientUNet,
    get_preset,
    set_activation_checkpointing,
)
from openimagen.train.ema import make_ema
from openimagen.train.sharding import held_bytes, shard_parts

# (tokens, width) of the text the U-Net reads: MiniLM's for ours, T5-XXL's for IF's
TEXT = {EfficientUNet: (20, 384), DiffusersUNet: (77, 4096)}
IF_STAGE = "IF-I layout, width 64 (diffusers)"


def sizes() -> dict[str, tuple[object, int]]:
    """name -> (UNetConfig or DiffusersUNetConfig, batch)."""
    base = get_preset("shapes-base-32")
    bundled = dataclasses.replace(base, base_channels=32, channel_mults=(1, 2, 2),
                                  num_res_blocks=(1, 2, 2))  # fmt: skip
    return {
        "bundled-base-32 (width 32)": (bundled, 32),
        "shapes-base-32 (width 64)": (base, 32),
        "shapes-sr-32-128 (128x128)": (get_preset("shapes-sr-32-128"), 8),
        # an imported IF stage I's network (diffusers' UNet2DConditionModel, IF-I-XL's config
        # at base width 64 instead of 704; IF-I-M is width 192) at 64x64
        IF_STAGE: (DiffusersUNetConfig(diffusers_config=stage_one_unet(64)), 4),
    }


def kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def arm(name: str, checkpointing: int, precision: str, sharding: str = "none",
        batch: int = 0) -> dict:  # fmt: skip
    """One measurement, in this (fresh) process; ``sharding`` "ddp" or "fsdp": in one of the
    processes of a torchrun launch, on its share of the batch (``batch``, 0: the U-Net's)."""
    config, own_batch = sizes()[name]
    batch = batch or own_batch
    world = 1
    if sharding != "none":
        import torch.distributed as dist

        dist.init_process_group("gloo")
        world = dist.get_world_size()
        batch //= world
    torch.manual_seed(0)
    network = DiffusersUNet if isinstance(config, DiffusersUNetConfig) else EfficientUNet
    net = network(config).train()
    ema = make_ema(net, 0.9999, 10)
    if checkpointing == 2:  # diffusers' own, for comparison (--diffusers-own)
        net.unet.enable_gradient_checkpointing()
    elif checkpointing:
        set_activation_checkpointing(net, True)
    if sharding == "fsdp":
        shard_parts(net, ema, torch.device("cpu"))
    total = sum(p.numel() for p in net.parameters())  # a DTensor's numel is the whole
    params = list(net.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()  # allocates the moments; zero gradients leave the weights as they are
    model = net
    if sharding == "ddp":
        model = torch.nn.parallel.DistributedDataParallel(net)
    g = torch.Generator().manual_seed(1)
    r = config.image_size
    x, t = torch.randn(batch, 3, r, r, generator=g), torch.rand(batch, generator=g)
    if network is DiffusersUNet:
        t = (t * 1000).floor()  # IF's discrete timesteps
    tokens, width = TEXT[network]
    emb = torch.randn(batch, tokens, width, generator=g)  # [B, L, D]
    mask = torch.ones(batch, tokens, dtype=torch.bool)
    extra = {}
    if config.super_resolution:
        extra = {"lowres": torch.randn(batch, 3, r, r, generator=g), "aug_level": t / 2}

    def forward_backward() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = model(x, t, emb, mask, **extra)  # [B, 3, R, R]
        out.float().square().mean().backward()

    kept = held_bytes(net, ema, opt)  # this process's tensors (shards under FSDP)
    held = sum(v for k, v in kept.items() if k != "parameters") / total
    static = kib("VmRSS")
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # resets VmHWM to the current resident set
    started = time.perf_counter()
    forward_backward()
    first = time.perf_counter() - started
    peak = kib("VmHWM") - static
    times = []
    for _ in range(3):
        started = time.perf_counter()
        forward_backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
        ema.update_parameters(net)
        times.append(time.perf_counter() - started)
    result = {"params": total, "batch": batch, "held": held, "static_kib": static,
              "peak_kib": peak, "first_s": first, "step_s": statistics.median(times)}  # fmt: skip
    if sharding != "none":  # the largest over the processes
        everyone = [None] * world
        dist.all_gather_object(everyone, result)
        result = {k: max(r[k] for r in everyone) for k in result}
        dist.destroy_process_group()
    return result


def run_arm(args: argparse.Namespace, name: str, on: int, sharding: str) -> dict:
    """One arm in a fresh process (or ``--processes`` of them under torchrun)."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072", OMP_NUM_THREADS=str(args.threads))
    launch = [sys.executable]
    if sharding != "none":
        launch += ["-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(args.processes)]  # fmt: skip
    cmd = [*launch, __file__, "--arm", name, "--checkpointing", str(on), "--sharding", sharding,
           "--precision", args.precision, "--threads", str(args.threads),
           "--batch", str(args.batch)]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="fp32, or bf16 autocast (default: %(default)s)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    parser.add_argument("--processes", type=int, default=1,
                        help="gloo processes: > 1 compares DDP with FSDP (default: 1)")  # fmt: skip
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=list(sizes()),
                        help="measure only these U-Nets (default: all)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=0,
                        help="global batch instead of each U-Net's own (default: theirs)")  # fmt: skip
    parser.add_argument("--diffusers-own", action="store_true",
                        help="checkpoint diffusers' U-Nets with diffusers' own "
                        "enable_gradient_checkpointing instead of openimagen's")  # fmt: skip
    parser.add_argument("--arm", help=argparse.SUPPRESS)  # internal: run one arm and print it
    parser.add_argument("--checkpointing", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--sharding", default="none", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.batch and args.batch < args.processes:
        parser.error(f"--batch {args.batch}: needs at least one image per process "
                     f"(--processes {args.processes}), or 0 for each U-Net's own")  # fmt: skip
    torch.set_num_threads(args.threads)
    if args.arm:
        result = arm(args.arm, args.checkpointing, args.precision, args.sharding,
                     args.batch)  # fmt: skip
        if os.environ.get("RANK", "0") == "0":
            print(json.dumps(result))
        return
    modes = ["none"] if args.processes == 1 else ["ddp", "fsdp"]
    print(f"{args.precision}, {args.threads} thread(s), {args.processes} process(es), "
          f"torch {torch.__version__}")  # fmt: skip
    print("| U-Net | parameters | batch per process | sharding | held B/param | static RSS | "
          "step peak, off | step peak, on | saved | step time, off | step time, on |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    mib = 1024.0
    for name in args.only or sizes():
        for sharding in modes:
            own = (
                2 if args.diffusers_own and isinstance(sizes()[name][0], DiffusersUNetConfig) else 1
            )
            off, on_ = (run_arm(args, name, on, sharding) for on in (0, own))
            print(f"| {name} | {off['params'] / 1e6:.2f}M | {off['batch']} | {sharding} | "
                  f"{off['held']:.1f} | {off['static_kib'] / mib:.0f} MiB | "
                  f"{off['peak_kib'] / mib:.0f} MiB | {on_['peak_kib'] / mib:.0f} MiB | "
                  f"{1 - on_['peak_kib'] / off['peak_kib']:.0%} | {off['step_s']:.2f} s | "
                  f"{on_['step_s']:.2f} s |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
