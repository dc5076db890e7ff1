"""Sharded data parallelism (``train.fsdp``): torch's FSDP2 over the processes of a launch.

Under DDP every process holds the whole U-Net, its gradients, AdamW's two moments and the
EMA copy: 20 bytes per parameter. With ``train.fsdp = true`` each of P processes keeps 1/P
of every one of them (ZeRO-3; Rajbhandari et al. 2020): a unit's weights are all-gathered
just before its forward (and again in backward) and freed after it, and its gradients are
reduce-scattered, averaged over the processes as DDP averages them, so a step is the DDP
step and the loss does not depend on the number of processes.

Why torch's ``fully_shard`` rather than Accelerate's FSDP plugin: Accelerate 1.16 switches
to FSDP only for GPU-like distributed types and silently runs DDP on CPU processes
(``benchmarks/fsdp_cpu.py``). Applied here, sharding is one code path for CPU processes
(gloo) and GPUs (NCCL); Accelerate still starts the processes, places the device, runs the
autocast of ``train.mixed_precision`` and reduces the loss, but never wraps the model.

The FSDP units are the U-Net's ``block_types()``, every res block, attention and resampling
module (and the text refiner), then the U-Net itself (its stem, conditioning layers and
output convolution); an imported DeepFloyd IF stage (diffusers' U-Net) is cut the same way,
into diffusers' res blocks, attention modules and resamplers. A whole resolution level of
openimagen's U-Net cannot be one unit: the U-Net calls a level's down- or upsampler outside
the level's own forward, which FSDP2 refuses ("got mixed torch.Tensor and DTensor"). The
EMA copy is sharded the same way: its update is elementwise, so each process averages its
own shards, and sampling from it (``log.sample_every``) runs on every process.

Checkpoints hold full tensors, gathered to the main process (``full_state_dict=True,
cpu_offload=True``), in the layout a DDP run writes: export, ``--resume auto`` and the
checkpoint tests see no difference, and a run checkpointed under FSDP resumes without it,
or with another number of processes, and the other way round. Every process reads the
whole checkpoint back and keeps its shards. The price is the full state (16 bytes per
parameter) in host memory on the main process while it saves, and on every process while
it resumes. Sharded ``torch.distributed.checkpoint`` files would avoid that, but they are
pickled metadata, tied to the number of processes, and would need their own crash-safety
and checksum story; a U-Net of a few billion parameters fits a host's memory.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from openimagen.errors import ConfigError

FULL_CPU = {"full_state_dict": True, "cpu_offload": True}


def check_shardable(world: int) -> None:
    """Refuse ``train.fsdp = true`` where it cannot work, as one line naming the fix."""
    if world < 2:
        raise ConfigError(
            "train.fsdp = true shards the U-Net over the processes of a launch, but this run "
            "has 1 process; start it with torchrun --nproc_per_node N (N >= 2), or set "
            "train.fsdp = false"
        )


def shard_module(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Shard ``module`` (an EfficientUNet or a DiffusersUNet) over every process of the
    default process group, in place: each module of a type in the U-Net's
    ``block_types()``, innermost first (a unit may hold another), then the root. Its parameters become ``DTensor`` shards on
    ``device``."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    module.to(device)
    units = type(module).block_types()
    for sub in reversed(list(module.modules())):  # a child before the unit that holds it
        if sub is not module and isinstance(sub, units):
            fully_shard(sub, mesh=mesh)
    fully_shard(module, mesh=mesh)
    return module


def shard_parts(model: torch.nn.Module, ema: Any, device: torch.device) -> None:
    """Shard the trained U-Net and the EMA copy's (``AveragedModel.module``) the same way;
    the EMA's update count stays a plain tensor on ``device``."""
    ema.to(device)
    shard_module(model, device)
    shard_module(ema.module, device)


def is_sharded(module: torch.nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return any(isinstance(m, FSDPModule) for m in module.modules())


def reshard(module: torch.nn.Module) -> None:
    """Free the gathered weights of a sharded module after a forward without backward (FSDP2
    keeps the root's weights gathered after its forward, for the backward it expects)."""
    if is_sharded(module):
        module.reshard()


def local(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of ``tensor``: its local shard for a DTensor, else itself."""
    from torch.distributed.tensor import DTensor

    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def to_float(value: torch.Tensor) -> float:
    """A scalar (a replicated or partial DTensor, such as a sharded grad norm) as a float."""
    from torch.distributed.tensor import DTensor

    return float(value.full_tensor() if isinstance(value, DTensor) else value)


def autocast_forward(accelerator: Any, model: torch.nn.Module) -> Callable[..., Any]:
    """``model``'s forward under the accelerator's autocast, as ``accelerator.prepare`` would
    wrap it (a sharded model is not prepared, so it is not wrapped)."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        with accelerator.autocast():
            return model(*args, **kwargs)

    return forward


# -- full state dicts (every process must call these on a sharded model) -------------------------
def full_model_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` with full tensors; on a sharded model, gathered to the main
    process (the others get ``{}``)."""
    if not is_sharded(model):
        return model.state_dict()
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(**FULL_CPU))


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load full tensors into ``model``; a sharded one keeps this process's shards."""
    if not is_sharded(model):
        model.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    # torch scatters each tensor's shards from the main process in the dict's order, which
    # must be the same everywhere: a safetensors file's key order differs between processes
    state = dict(sorted(state.items()))
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def full_ema_state(ema: Any) -> dict[str, torch.Tensor]:
    """``ema.state_dict()`` (an ``AveragedModel``: ``n_averaged``, ``module.*``), full."""
    if not is_sharded(ema.module):
        return ema.state_dict()
    weights = full_model_state(ema.module)
    if not weights:  # not the main process
        return {}
    return {"n_averaged": ema.n_averaged.cpu(), **{f"module.{k}": v for k, v in weights.items()}}


def load_ema_state(ema: Any, state: dict[str, torch.Tensor]) -> None:
    if not is_sharded(ema.module):
        ema.load_state_dict(state)
        return
    if "n_averaged" not in state:
        raise KeyError("n_averaged")
    ema.n_averaged.copy_(state["n_averaged"])
    weights = {k.removeprefix("module."): v for k, v in state.items() if k.startswith("module.")}
    load_model_state(ema.module, weights)


def _parameter_names(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The name of each of ``optimizer``'s parameters, in its order (its state's int ids)."""
    names = {id(p): name for name, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` with full tensors, keyed by parameter index as torch keys
    it; on a sharded model gathered to the main process (the others get ``{}``)."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
    )

    by_name = get_optimizer_state_dict(model, optimizer, options=StateDictOptions(**FULL_CPU))
    if not by_name:
        return {}
    index = {name: i for i, name in enumerate(_parameter_names(model, optimizer))}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in by_name["param_groups"]]
    return {"state": {index[n]: s for n, s in by_name["state"].items()}, "param_groups": groups}


def load_optimizer_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict
) -> None:
    """Inverse of :func:`full_optimizer_state`; a sharded model's optimizer keeps its shards."""
    if not is_sharded(model):
        optimizer.load_state_dict(state)
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_optimizer_state_dict,
    )

    names = _parameter_names(model, optimizer)
    if len(state["param_groups"]) != len(optimizer.param_groups) or any(
        len(g["params"]) != len(h["params"])
        for g, h in zip(state["param_groups"], optimizer.param_groups, strict=True)
    ):
        raise ValueError("the checkpoint's optimizer has other parameter groups")
    by_name = {
        "state": {names[int(i)]: s for i, s in state["state"].items()},
        "param_groups": [
            {**g, "params": [names[int(i)] for i in g["params"]]} for g in state["param_groups"]
        ],
    }
    set_optimizer_state_dict(
        model, optimizer, by_name, options=StateDictOptions(full_state_dict=True)
    )


def held_bytes(model: torch.nn.Module, ema: Any, optimizer: torch.optim.Optimizer) -> dict:
    """Bytes this process holds between steps: weights, gradients, optimizer state, EMA
    (weights and buffers), each counted from its local tensors (shards under FSDP)."""

    def size(tensors: Any) -> int:
        return sum(local(t).numel() * local(t).element_size() for t in tensors if t is not None)

    params = list(model.parameters())
    moments = [v for s in optimizer.state.values() for v in s.values()
               if isinstance(v, torch.Tensor) and v.dim() > 0]  # fmt: skip
    return {
        "parameters": sum(local(p).numel() for p in params),
        "weights": size(params),
        "gradients": size(p.grad for p in params),
        "optimizer": size(moments),
        "ema": size([*ema.module.parameters(), *ema.module.buffers()]),
    }


__all__ = [
    "autocast_forward",
    "check_shardable",
    "full_ema_state",
    "full_model_state",
    "full_optimizer_state",
    "held_bytes",
    "is_sharded",
    "load_ema_state",
    "load_model_state",
    "load_optimizer_state",
    "local",
    "reshard",
    "shard_module",
    "shard_parts",
    "to_float",
]
