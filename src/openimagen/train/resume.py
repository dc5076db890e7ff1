"""A run's checkpoints: which one to resume, restoring a run from it, writing one.

The checkpoint files themselves are :mod:`openimagen.train.checkpoint`; this module knows
what a run keeps in them (model, EMA, optimizer, schedule, data position, every process's
RNG states).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from openimagen.cascade import AnyStageConfig, parse_stage_config
from openimagen.errors import ConfigError, ModelDirectoryError
from openimagen.train import checkpoint as ckpt
from openimagen.train import sharding
from openimagen.train.config import TrainConfig
from openimagen.train.parts import TrainParts

logger = logging.getLogger(__name__)


def resolve_resume(resume: str | Path | None, root: Path) -> Path | None:
    if resume is None:
        if ckpt.list_checkpoints(root):
            raise ModelDirectoryError(
                f"{root} already holds checkpoints; pass --resume auto to continue that run, "
                "or choose another --output (nothing was overwritten)"
            )
        return None
    if str(resume) == "auto":
        found = ckpt.find_resumable(root)
        if found is None and ckpt.list_checkpoints(root):
            raise ModelDirectoryError(
                f"{root}: every checkpoint is damaged; nothing to resume from (left untouched)"
            )
        return found
    path = Path(resume)
    ckpt.read_checkpoint(path)  # validates: foreign or damaged -> ModelDirectoryError
    return path


def restore(
    path: Path, config: TrainConfig, stage_config: AnyStageConfig, parts: TrainParts
) -> tuple[int, int]:
    """Load checkpoint ``path`` into ``parts`` (and this process's RNG states): (step, position).

    Refused when the checkpoint was written for another stage or does not fit the model.
    """
    model, ema, optimizer, scheduler = parts.model, parts.ema, parts.optimizer, parts.scheduler
    state, tensors = ckpt.read_checkpoint(path)
    # compare parsed configs, so a checkpoint written before a field with a default was
    # added (e.g. unet.downsample_first) still resumes
    try:
        saved_stage = parse_stage_config(state.get("stage_config"))
    except ConfigError:
        saved_stage = None
    if saved_stage != stage_config:
        raise ModelDirectoryError(
            f"{path} was written for a different stage (its stage config differs from "
            "this config's [stage]); resume it with its own config or start a new --output"
        )
    try:  # full tensors; a sharded (train.fsdp) model keeps this process's shards
        sharding.load_model_state(model, tensors["model"])
        sharding.load_ema_state(ema, tensors["ema"])
        sharding.load_optimizer_state(
            model,
            optimizer,
            ckpt.unflatten_optimizer_state(tensors["optimizer"], state["optimizer"]),
        )
    except (KeyError, RuntimeError, ValueError) as exc:
        raise ModelDirectoryError(f"{path} does not fit this model/optimizer: {exc}") from exc
    ckpt.load_scheduler_state(scheduler, state["scheduler"])
    rank_rng = state["rng"][0]  # restored per process below
    from accelerate import PartialState

    rank = PartialState().process_index
    if rank < len(state["rng"]):
        rank_rng = state["rng"][rank]
        ckpt.set_rng_state(
            {k.split("/", 1)[1]: v for k, v in tensors["rng"].items() if k.startswith(f"{rank}/")},
            rank_rng,
        )
    logger.info("resumed from %s at step %d", path, state["step"])
    return int(state["step"]), int(state["samples_seen"])


def save(
    accelerator: Any,
    root: Path,
    config: TrainConfig,
    stage_config: AnyStageConfig,
    parts: TrainParts,
) -> Path | None:
    """Checkpoint ``parts`` (every process's RNG states gathered, the main one writes).

    Under ``train.fsdp`` every process takes part in gathering the full tensors, which only
    the main process receives: the files are those of an unsharded run.
    """
    step, position = parts.step, parts.position
    model, ema, optimizer, scheduler = parts.model, parts.ema, parts.optimizer, parts.scheduler
    model = accelerator.unwrap_model(model)
    full = None
    if accelerator.is_main_process or sharding.is_sharded(model):
        full = (sharding.full_model_state(model), sharding.full_ema_state(ema),
                sharding.full_optimizer_state(model, optimizer))  # fmt: skip
    rng_tensors, rng_json = ckpt.rng_state()
    everything = [(rng_tensors, rng_json)]
    if accelerator.num_processes > 1:
        import torch.distributed as dist

        everything = [None] * accelerator.num_processes
        dist.all_gather_object(everything, (rng_tensors, rng_json))
    path = None
    if accelerator.is_main_process:
        model_state, ema_state, optimizer_state = full
        opt_tensors, opt_structure = ckpt.flatten_optimizer_state(optimizer_state)
        rng = {f"{r}/{k}": v for r, (t, _) in enumerate(everything) for k, v in t.items()}
        path = ckpt.save_checkpoint(
            root,
            step,
            {
                "model": model_state,
                "ema": ema_state,
                "optimizer": opt_tensors,
                "rng": rng,
            },
            {
                "samples_seen": position,
                "config": config.to_dict(),
                "stage_config": stage_config.to_dict(),
                "optimizer": opt_structure,
                "scheduler": ckpt.scheduler_state(scheduler),
                "rng": [j for _, j in everything],
                "world_size": accelerator.num_processes,
            },
            keep_last=config.train.keep_last,
        )
    accelerator.wait_for_everyone()
    return path


__all__ = ["resolve_resume", "restore", "save"]
