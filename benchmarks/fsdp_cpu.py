"""Does FSDP shard an EfficientUNet on CPU processes (gloo)? The probe behind ``train.fsdp``.

    OMP_NUM_THREADS=1 python benchmarks/fsdp_cpu.py                           # 1 process
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 benchmarks/fsdp_cpu.py      # FSDP2
    OMP_NUM_THREADS=1 torchrun --nproc_per_node 2 benchmarks/fsdp_cpu.py --accelerate
    ... --checkpointing                                       # with activation checkpointing

One process: 3 AdamW steps on a batch of 4 (tiny-base at 16x16), printing the losses. Two
processes: the same steps with each process on half the batch, the U-Net sharded by torch's
FSDP2 (``fully_shard`` on every res block, attention and resampling module, then the root),
printing each process's share of the parameters and the global losses, which should equal
the one-process run. ``--accelerate`` instead asks Accelerate for FSDP
(``FullyShardedDataParallelPlugin``) and prints which distributed type it chose (on CPUs:
MULTI_CPU, i.e. DDP, which is why the trainer applies ``fully_shard`` itself,
``openimagen.train.sharding``; its memory per process: ``activation_memory.py --processes 2``).
"""

from __future__ import annotations

import argparse
import os

import torch

from openimagen.models import EfficientUNet, get_preset, set_activation_checkpointing
from openimagen.models.layers import CrossAttention, Downsample, ResBlock, SelfAttention, Upsample

UNITS = (ResBlock, SelfAttention, CrossAttention, Downsample, Upsample)


def make(checkpointing: bool) -> EfficientUNet:
    torch.manual_seed(0)
    net = EfficientUNet(get_preset("tiny-base", text_embed_dim=24, image_size=16))
    if checkpointing:
        set_activation_checkpointing(net, True)
    return net


def steps(net: torch.nn.Module, rows: slice) -> list[float]:
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(4, 3, 16, 16, generator=g), torch.rand(4, generator=g)
    emb, mask = torch.randn(4, 5, 24, generator=g), torch.ones(4, 5, dtype=torch.bool)
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    losses = []
    for _ in range(3):
        loss = net(x[rows], t[rows], emb[rows], mask[rows]).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    return losses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--accelerate", action="store_true", help="ask Accelerate for FSDP")
    parser.add_argument("--checkpointing", action="store_true", help="activation checkpointing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    net = make(args.checkpointing)
    total = sum(p.numel() for p in net.parameters())
    if "RANK" not in os.environ:
        print(f"1 process: {total} parameters, losses {steps(net, slice(0, 4))}")
        return
    import torch.distributed as dist

    if args.accelerate:
        from accelerate import Accelerator, FullyShardedDataParallelPlugin

        plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
        accelerator = Accelerator(cpu=True, fsdp_plugin=plugin)  # as train.device = "cpu"
        net = accelerator.prepare(net)
        local = sum(p.numel() for p in net.parameters())
        if accelerator.is_main_process:
            print(f"accelerate chose {accelerator.distributed_type}; {local} of {total} "
                  "parameters in this process")  # fmt: skip
        return
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    for module in net.modules():
        if isinstance(module, UNITS):
            fully_shard(module)
    fully_shard(net)
    local = sum(p.to_local().numel() for p in net.parameters())  # DTensor shards
    losses = torch.tensor(steps(net, slice(2 * rank, 2 * rank + 2)))
    dist.all_reduce(losses)  # the global loss: the mean of the halves
    if rank == 0:
        print(f"FSDP2, 2 processes: {local} of {total} parameters in this process, "
              f"losses {(losses / 2).tolist()}")  # fmt: skip
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
