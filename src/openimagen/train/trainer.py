"""One trainer for any stage of the cascade (Imagen trains every stage on its own, sec. 2.5).

Per optimizer step the run reads the next ``train.batch_size`` global sample positions; the
position is the only data state. Every random draw of sample ``i`` (its diffusion time, its
noise, caption dropout, noise-augmentation level and crop) comes from a generator seeded by
``(train.seed, i)``, so the loss of a step does not depend on how the batch is split across
processes or accumulation rounds, and a resumed run repeats the uninterrupted one exactly.

Accelerate handles devices, mixed precision and DDP; ``accelerate launch`` and ``torchrun``
both start multi-process runs (one Accelerator per process, gloo on CPU, NCCL on GPUs).
With ``train.fsdp`` the U-Net is sharded by torch's FSDP2 instead of wrapped in DDP
(:mod:`openimagen.train.sharding`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from openimagen.cascade import AnyStageConfig
from openimagen.data.sources import open_source
from openimagen.errors import ConfigError, OpenImagenError
from openimagen.fileio import atomic_write_json
from openimagen.train import sharding
from openimagen.train.config import TrainConfig, load_config
from openimagen.train.logging import MetricsLogger
from openimagen.train.parts import TrainParts, build_parts, build_stage_config
from openimagen.train.resume import resolve_resume, restore, save
from openimagen.train.step import (
    DataFailure,
    MicroBatches,
    SampleGrid,
    TextEmbedder,
    micro_batch_loss,
    sample_generators,
)

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"


class TrainingDivergedError(OpenImagenError):
    """The loss became NaN or infinite; training stopped before the weights were updated."""


@dataclasses.dataclass
class TrainResult:
    """What a finished (or dry) run reports."""

    output_dir: Path
    config: TrainConfig
    stage_config: AnyStageConfig
    step: int = 0
    losses: list[float] = dataclasses.field(default_factory=list)  # one per step of this run
    checkpoint: Path | None = None
    resumed_from: Path | None = None
    # this process is the launch's main one (Accelerate's is_main_process): the only one that
    # writes checkpoints, and so the only one that reports the run
    main_process: bool = True
    images_per_second: float = 0.0
    # this process's parameter count and bytes of weights, gradients, optimizer state and
    # EMA after the run (sharding.held_bytes): its shards under train.fsdp
    held_bytes: dict[str, int] = dataclasses.field(default_factory=dict)


# -- the run -------------------------------------------------------------------------------------
def run_training(
    config: str | Path | TrainConfig | dict,
    output_dir: str | Path,
    *,
    resume: str | Path | None = None,
    dry_run: bool = False,
    max_steps: int | None = None,
    step_callback: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train the stage described by ``config``; checkpoints and logs go to ``output_dir``.

    ``resume``: None (fresh run; refused if ``output_dir`` already holds checkpoints),
    ``"auto"`` (the newest intact checkpoint in ``output_dir``, or a fresh start if none) or
    a checkpoint directory. ``dry_run`` validates everything (config, preset, data, text
    encoder width) and returns without training. ``max_steps`` stops early (tests).
    """
    config = load_config(config)
    output_dir = Path(output_dir)
    stage_config = build_stage_config(config)
    source = open_source(config.data, config.stage.resolution, config.resolve_path)
    root = output_dir / CHECKPOINT_DIR
    resume_path = resolve_resume(resume, root)
    if config.train.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            'train.device="cuda": no CUDA device on this machine; use "auto" or "cpu"'
        )
    accelerator = _make_accelerator(config)
    micro = _micro_batch(config, accelerator.num_processes)
    fsdp = config.train.fsdp
    if fsdp:
        sharding.check_shardable(accelerator.num_processes)
    embed = TextEmbedder(config, accelerator.device)
    if stage_config.unet.text_embed_dim != embed.encoder.dim:
        raise ConfigError(
            f"stage.unet.text_embed_dim={stage_config.unet.text_embed_dim} but text.encoder="
            f"{config.text.encoder!r} gives embeddings of width {embed.encoder.dim}; set "
            f"stage.unet.text_embed_dim = {embed.encoder.dim}"
        )
    result = TrainResult(output_dir, config, stage_config, resumed_from=resume_path,
                         main_process=accelerator.is_main_process)  # fmt: skip
    if dry_run:
        return result
    parts = build_parts(config, stage_config, fresh=resume_path is None,
                        shard_on=accelerator.device if fsdp else None)  # fmt: skip
    if resume_path is not None:
        parts.step, parts.position = restore(resume_path, config, stage_config, parts)
    result.step = parts.step
    if not fsdp:  # a sharded model is already on its device, and must not be wrapped in DDP
        parts.model, parts.optimizer = accelerator.prepare(parts.model, parts.optimizer)
        parts.ema.to(accelerator.device)
    held = sharding.held_bytes(parts.model, parts.ema, parts.optimizer)
    logger.info("this process holds %d of the U-Net's parameters", held["parameters"])
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(output_dir / "config.json", config.to_dict())
    last = min(config.train.steps, max_steps if max_steps is not None else config.train.steps)
    _run_steps(accelerator, parts, source, embed, micro, last, result, step_callback)
    result.held_bytes = sharding.held_bytes(parts.model, parts.ema, parts.optimizer)
    accelerator.wait_for_everyone()
    return result


def _run_steps(
    accelerator: Any,
    parts: TrainParts,
    source: Any,
    embed: TextEmbedder,
    micro: int,
    last: int,
    result: TrainResult,
    step_callback: Callable[[int, float], None] | None,
) -> None:
    """Optimizer steps up to ``last``, with logs, checkpoints and sample grids on schedule."""
    config, stage_config, output_dir = result.config, result.stage_config, result.output_dir
    main = accelerator.is_main_process
    metrics = MetricsLogger(
        output_dir, resume_step=parts.step, tensorboard=config.log.tensorboard, enabled=main
    )
    # a sharded EMA samples on every process (each forward gathers its weights); main saves
    sampler = None
    if main or config.train.fsdp:
        sampler = SampleGrid(config, stage_config, source, embed, output_dir, save=main)
    from tqdm.auto import tqdm

    bar = tqdm(total=config.train.steps, initial=parts.step, desc="train", unit="step",
               disable=not (main and config.log.progress))  # fmt: skip
    batches = MicroBatches(config, stage_config, source, start=parts.position,
                           steps=max(0, last - parts.step), micro=micro,
                           rank=accelerator.process_index, world=accelerator.num_processes)  # fmt: skip
    # its own generator: making the iterator draws a seed (for worker seeding) that must
    # not come from the global RNG, or a resumed run's dropout would be one draw ahead
    loader = iter(torch.utils.data.DataLoader(
        batches, batch_size=None, shuffle=False, num_workers=config.data.num_workers,
        generator=torch.Generator().manual_seed(config.train.seed),
    ))  # fmt: skip
    started, images_done = time.perf_counter(), 0
    try:
        while parts.step < last:
            loss, grad_norm, lr = _optimizer_step(
                accelerator, parts, loader, embed, config, stage_config, micro
            )
            images_done += config.train.batch_size
            result.losses.append(loss)
            speed = images_done / max(time.perf_counter() - started, 1e-9)
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", img_s=f"{speed:.1f}")
            step = parts.step
            if step % config.log.every == 0 or step == last:
                record = {"loss": loss, "lr": lr, "images_per_s": speed,
                          "samples_seen": parts.position}  # fmt: skip
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                metrics.log(step, record)
            if step_callback is not None:
                step_callback(step, loss)
            if step % config.train.checkpoint_every == 0 or step == last:
                root = output_dir / CHECKPOINT_DIR
                result.checkpoint = save(accelerator, root, config, stage_config, parts)
            every = config.log.sample_every
            if sampler is not None and every and (step % every == 0 or step == last):
                sampler(step, parts.ema.module, metrics)
                sharding.reshard(parts.ema.module)
            accelerator.wait_for_everyone()
    finally:
        bar.close()
        metrics.close()
    result.step = parts.step
    result.images_per_second = images_done / max(time.perf_counter() - started, 1e-9)


def _make_accelerator(config: TrainConfig) -> Any:
    from accelerate import Accelerator, DistributedDataParallelKwargs

    _forget_accelerator_state()
    return Accelerator(
        mixed_precision=config.train.mixed_precision,
        cpu=config.train.device == "cpu",
        # a base stage never uses its noise-aug embedding, and dropped captions skip
        # cross-attention paths; DDP must not wait for those gradients
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def _forget_accelerator_state() -> None:
    """Start the next Accelerator from a clean process-wide state.

    Accelerate keeps one state per process; a second run in the same process (a notebook,
    the tests) may use another precision, which a kept state refuses. Accelerate has no
    public way to drop it: ``AcceleratorState._reset_state`` is documented as internal, and
    ``transformers``' own ``TrainingArguments`` calls it the same way. This is the one place
    openimagen calls it. The process group, held by ``PartialState``, is kept.
    """
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()


def _micro_batch(config: TrainConfig, world: int) -> int:
    """Samples per process and accumulation round."""
    per_round = config.train.batch_size // config.train.grad_accum
    if per_round % world:
        raise ConfigError(
            f"train.batch_size={config.train.batch_size}: with grad_accum="
            f"{config.train.grad_accum} and {world} processes it must be a multiple of "
            f"{config.train.grad_accum * world}"
        )
    return per_round // world


def _optimizer_step(
    accelerator: Any,
    parts: TrainParts,
    loader: Any,
    embed: TextEmbedder,
    config: TrainConfig,
    stage_config: AnyStageConfig,
    micro: int,
) -> tuple[float, float | None, float]:
    """One optimizer step over ``grad_accum`` micro-batches: (mean loss, grad norm, lr)."""
    model, optimizer, scheduler = parts.model, parts.optimizer, parts.scheduler
    model.train()
    fsdp = config.train.fsdp
    # prepare() wraps a DDP model's forward in autocast; a sharded one is not prepared
    forward = sharding.autocast_forward(accelerator, model) if fsdp else model
    total = torch.zeros((), device=accelerator.device)
    for r in range(config.train.grad_accum):
        images, captions, first = _next_batch(loader)
        gens = sample_generators(config.train.seed, int(first), micro)
        emb, mask = embed(list(captions))
        # DeepFloyd IF drops a caption by giving the empty prompt's encoding instead
        null = embed([""]) if config.text.conditioning == "deepfloyd-if" else None
        # FSDP reduce-scatters every round: skipping it would keep whole gradients
        sync = fsdp or r == config.train.grad_accum - 1
        ctx = accelerator.no_sync(model) if not sync else contextlib.nullcontext()
        with ctx:
            losses = micro_batch_loss(forward, stage_config, config, images.to(accelerator.device),
                                      emb, mask, gens, null_text=null)  # [micro]  # fmt: skip
            # DDP (and FSDP) averages the processes' gradients, so each process divides by its own
            # share (micro * grad_accum): the result is the gradient of the mean loss over
            # the global batch, whatever the number of processes
            accelerator.backward(losses.sum() / (micro * config.train.grad_accum))
        total = total + losses.detach().sum()
    loss = float(accelerator.reduce(total, reduction="sum")) / config.train.batch_size
    if not math.isfinite(loss):
        optimizer.zero_grad(set_to_none=True)
        raise TrainingDivergedError(
            f"loss is {loss} at step {parts.step + 1} (lr={scheduler.get_last_lr()[0]:.3g}); "
            "training stopped before this update. Lower optim.lr, raise "
            "optim.warmup_steps, keep optim.grad_clip on, or use train.mixed_precision="
            "'bf16' instead of 'fp16'; resume with --resume auto from the last checkpoint"
        )
    grad_norm = None
    if config.optim.grad_clip > 0:
        # Accelerate's clip skips models it did not prepare (under its FSDP type): torch's
        # own clip takes sharded gradients, and its norm is a DTensor
        clip = torch.nn.utils.clip_grad_norm_ if fsdp else accelerator.clip_grad_norm_
        grad_norm = sharding.to_float(clip(model.parameters(), config.optim.grad_clip))
    lr = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    parts.ema.update_parameters(accelerator.unwrap_model(model))
    parts.step += 1
    parts.position += config.train.batch_size
    return loss, grad_norm, lr


def _next_batch(loader: Any) -> Any:
    """``next(loader)``; bad data found in a DataLoader worker (a :class:`DataFailure` it
    returned instead of a batch) is raised here as one line."""
    batch = next(loader)
    if isinstance(batch, DataFailure):
        raise OpenImagenError(f"data (in a DataLoader worker): {batch.message}")
    return batch


def train(
    config: str | Path | TrainConfig | dict,
    *,
    output_dir: str | Path | None = None,
    dry_run: bool = False,
    resume: str | Path | None = None,
) -> TrainResult:
    """Train one stage; ``output_dir`` defaults to ``runs/<config file stem>``."""
    if output_dir is None:
        name = Path(config).stem if isinstance(config, (str, Path)) else "train"
        output_dir = Path("runs") / name
    return run_training(config, output_dir, resume=resume, dry_run=dry_run)


__all__ = ["TrainResult", "TrainingDivergedError", "run_training", "train"]
