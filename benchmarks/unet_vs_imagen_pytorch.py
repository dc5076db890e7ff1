"""Our U-Nets beside lucidrains' imagen-pytorch ``Unet``, measured side by side in one run.

    bash benchmarks/run_unet_benchmark.sh              # sets up benchmarks/.venv-ref, then runs
    benchmarks/.venv-ref/bin/python benchmarks/unet_vs_imagen_pytorch.py --help

Cases (``--cases``): the base (text-conditional) U-Net at 64x64 and at 32x32, and a
super-resolution U-Net at 64x64 (a crop of an SR stage's output, conditioned on the
upsampled low-res image and its noise-augmentation level). For each kind the reference is
built from its own preset's style (``BaseUnet64`` / ``SRUnet256``) scaled to ``--dim`` /
``--sr-dim``, and our config's width (``base_channels``) is then chosen so that its
parameter count comes within ``--param-tolerance`` of it. Both get the same batch (images,
timesteps in [0, 1], random "text embeddings" [B, L, D] with a mask; for SR also the low-res
image and an augmentation level), the same epsilon-prediction MSE loss and AdamW.

Measured, per case:
- training step (forward + loss + backward + AdamW step) and forward-only (inference mode)
  wall time, in one process, interleaved A/B then B/A round after round after warm-up, so
  load from other processes hits both models alike; median, IQR, and the median of the
  per-round paired ratios;
- peak memory of a training step and of a forward, each model in a fresh subprocess: on CPU
  the peak resident set (VmHWM from /proc/self/status, reset through /proc/self/clear_refs
  after imports) minus the resident set before the model was built; on CUDA
  torch.cuda.max_memory_allocated minus the memory allocated before the model was built;
- FLOPs of one training step of each model (torch.utils.flop_counter.FlopCounterMode, with
  scaled_dot_product_attention on its math backend so attention is counted as the matmuls
  it is), hence achieved FLOP/s, against this machine's measured single-thread (``--threads``)
  matmul and 3x3 convolution throughput in the run's precision.

``--precision bf16`` runs both models' forward and loss under
``torch.autocast(device_type, dtype=torch.bfloat16)`` (mixed precision: weights, gradients
and AdamW state stay fp32), in the timing and in the memory subprocesses, and measures the
bf16 matmul and convolution throughput as the peak. Each precision has its own marked
section in docs/benchmarks.md.

The reference environment never loads T5 and never reaches a model hub: ``import
imagen_pytorch`` reads google/t5-v1_1-base's config at import time (to default
``text_embed_dim``), so a T5Config with that model's published hyperparameters is written
into a temporary Hugging Face cache and HF_HUB_OFFLINE=1 is set before the import.
Results go into docs/benchmarks.md, between this benchmark's markers, atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import importlib.machinery
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"
PRECISIONS = ("fp32", "bf16")
# One marked section of docs/benchmarks.md per precision, so a run of one precision leaves
# the other's table in place. The fp32 markers are the original ones (no precision in them).
SECTION_MARKERS = {
    "fp32": (
        "<!-- BEGIN unet_vs_imagen_pytorch (written by benchmarks/unet_vs_imagen_pytorch.py) -->",
        "<!-- END unet_vs_imagen_pytorch -->",
    ),
    "bf16": (
        "<!-- BEGIN unet_vs_imagen_pytorch bf16 (written by benchmarks/unet_vs_imagen_pytorch.py"
        " --precision bf16) -->",
        "<!-- END unet_vs_imagen_pytorch bf16 -->",
    ),
}
OURS, THEIRS = "openimagen", "imagen-pytorch"
SPEEDUP_TARGET = 1.5
PEAK_TARGET = 0.40  # share of the measured convolution peak (issue 8)

# google/t5-v1_1-base's published hyperparameters (its config.json). Only d_model matters
# here: imagen-pytorch reads it as the default text_embed_dim at import time.
T5_V1_1_BASE_NAME = "google/t5-v1_1-base"
T5_V1_1_BASE = {
    "vocab_size": 32128,
    "d_model": 768,
    "d_kv": 64,
    "d_ff": 2048,
    "num_layers": 12,
    "num_decoder_layers": 12,
    "num_heads": 12,
    "relative_attention_num_buckets": 32,
    "dropout_rate": 0.1,
    "layer_norm_epsilon": 1e-6,
    "feed_forward_proj": "gated-gelu",
    "tie_word_embeddings": False,
}


# --------------------------------------------------------------------------------------
# 1. Making imagen-pytorch importable offline
# --------------------------------------------------------------------------------------


def seed_t5_config_cache(hf_home: Path) -> None:
    """Write google/t5-v1_1-base's config into the Hugging Face cache layout under ``hf_home``.

    The layout is ``hub/models--ORG--NAME/{refs/main, snapshots/REV/config.json}``; with
    HF_HUB_OFFLINE=1, ``T5Config.from_pretrained(NAME)`` resolves ``refs/main`` to the
    snapshot and reads the file there without any network access. No weights are written.
    """
    from transformers import T5Config

    revision = "0" * 40  # any 40-hex name; refs/main points at it
    repo_dir = hf_home / "hub" / ("models--" + T5_V1_1_BASE_NAME.replace("/", "--"))
    snapshot = repo_dir / "snapshots" / revision
    snapshot.mkdir(parents=True, exist_ok=True)
    T5Config(**T5_V1_1_BASE).save_pretrained(snapshot)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)


def import_imagen_pytorch() -> types.ModuleType:
    """Import imagen_pytorch with the hub offline (HF_HOME seeded) and torchvision stubbed.

    torchvision is not installed in the reference env (benchmarks/requirements-ref.txt says
    why); imagen-pytorch imports ``torchvision.transforms`` only to turn sampled images into
    PIL images, which this benchmark never asks for. transformers and datasets probe for
    torchvision themselves, so they are imported before the stub goes in and see none.
    """
    if os.environ.get("HF_HUB_OFFLINE") != "1":
        raise RuntimeError("HF_HUB_OFFLINE=1 must be set before importing imagen_pytorch")
    import datasets  # noqa: F401  (probes for torchvision at import)
    from transformers import T5Config, T5EncoderModel, T5Tokenizer  # noqa: F401

    if "torchvision" not in sys.modules:
        stub = types.ModuleType("torchvision")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchvision", None)
        transforms = types.ModuleType("torchvision.transforms")
        transforms.__spec__ = importlib.machinery.ModuleSpec("torchvision.transforms", None)
        stub.transforms = transforms
        sys.modules["torchvision"] = stub
        sys.modules["torchvision.transforms"] = transforms
    import imagen_pytorch

    return imagen_pytorch


@contextlib.contextmanager
def offline_hf_home() -> Iterator[Path]:
    """A temporary HF_HOME holding only the seeded T5 config, with the hub switched off."""
    saved = {k: os.environ.get(k) for k in ("HF_HOME", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    with tempfile.TemporaryDirectory(prefix="openimagen-bench-hf-") as tmp:
        os.environ.update(HF_HOME=tmp, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        try:
            seed_t5_config_cache(Path(tmp))
            yield Path(tmp)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


# --------------------------------------------------------------------------------------
# 2. The cases and the two models
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One comparison: a kind of U-Net ("base" or "sr") at one resolution and batch size."""

    key: str  # e.g. "base-64"
    kind: str  # "base" | "sr"
    image_size: int
    batch: int

    @property
    def title(self) -> str:
        what = "base U-Net" if self.kind == "base" else "SR U-Net (crop)"
        return f"{what}, {self.image_size}x{self.image_size}, batch {self.batch}"


CASE_KEYS = ("base-64", "base-32", "sr-64")


def make_cases(args: argparse.Namespace) -> list[Case]:
    cases = []
    for key in args.cases:
        if key not in CASE_KEYS:
            raise SystemExit(f"--cases: unknown case {key!r}; choose from {', '.join(CASE_KEYS)}")
        kind, size = key.split("-")
        cases.append(Case(key, kind, int(size), args.batch))
    return cases


def reference_kwargs(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """imagen-pytorch Unet kwargs: BaseUnet64 (base) or SRUnet256 (sr) scaled to args' sizes."""
    common = {
        "attn_heads": 8,
        "ff_mult": 2.0,
        "text_embed_dim": args.text_dim,
        "max_text_len": args.text_len,
    }
    if kind == "sr":
        levels = len(args.sr_dim_mults)
        last = tuple(level == levels - 1 for level in range(levels))  # SRUnet256: lowest only
        return {
            "dim": args.sr_dim,
            "dim_mults": tuple(args.sr_dim_mults),
            "num_resnet_blocks": tuple(args.sr_resnet_blocks),
            "layer_attns": last,
            "layer_cross_attns": last,
            "memory_efficient": True,
            "lowres_cond": True,
            **common,
        }
    levels = len(args.dim_mults)
    attn = tuple(level > 0 for level in range(levels))  # BaseUnet64: all but the first level
    return {
        "dim": args.dim,
        "dim_mults": tuple(args.dim_mults),
        "num_resnet_blocks": args.resnet_blocks,
        "layer_attns": attn,
        "layer_cross_attns": attn,
        "memory_efficient": False,
        **common,
    }


def our_template(kind: str, image_size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Our UNetConfig fields at the reference's levels; base_channels is set by matching.

    Base: self- and cross-attention at every level but the first (as the reference and the
    paper's base model), residual blocks per level from ``--our-res-blocks`` (Efficient
    U-Net: more at lower resolutions). SR: cross-attention at the lowest level only and no
    self-attention (the paper's SR models), blocks from ``--our-sr-res-blocks``.
    """
    mults = args.sr_dim_mults if kind == "sr" else args.dim_mults
    blocks = tuple(args.our_sr_res_blocks if kind == "sr" else args.our_res_blocks)
    levels = len(mults)
    if len(blocks) != levels:
        raise SystemExit(f"our res blocks {blocks} for {kind}: give one entry per level ({levels})")
    if kind == "sr":
        cross = tuple(level == levels - 1 for level in range(levels))
        self_attn = (False,) * levels
    else:
        cross = self_attn = tuple(level > 0 for level in range(levels))
    head_dim = {} if args.our_head_dim is None else {"attention_head_dim": args.our_head_dim}
    return {
        **head_dim,
        "image_size": image_size,
        "channel_mults": tuple(mults),
        "num_res_blocks": blocks,
        "cross_attention_levels": cross,
        "self_attention_levels": self_attn,
        "text_embed_dim": args.text_dim,
        "super_resolution": kind == "sr",
        "prediction": "eps",
    }


def build_model(name: str, spec: dict[str, Any]) -> Any:
    """Build ``name`` (OURS or THEIRS) from its JSON-able spec, on the default device."""
    if name == THEIRS:
        imagen_pytorch = import_imagen_pytorch()
        kwargs = dict(spec)
        for key in ("dim_mults", "layer_attns", "layer_cross_attns", "num_resnet_blocks"):
            if isinstance(kwargs[key], list):
                kwargs[key] = tuple(kwargs[key])
        return imagen_pytorch.Unet(**kwargs)
    from openimagen.models.unet import EfficientUNet, UNetConfig

    return EfficientUNet(UNetConfig.from_dict(spec))


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def our_config(template: dict[str, Any], width: int, kind: str, args: argparse.Namespace) -> Any:
    """Our UNetConfig: the kind's preset's fields, then the template, then the width."""
    from openimagen.models.presets import get_preset
    from openimagen.models.unet import UNetConfig

    preset = args.our_sr_preset if kind == "sr" else args.our_preset
    base = get_preset(preset).to_dict()
    fields = {**base, **template, "base_channels": width, "cond_dim": args.cond_mult * width}
    return UNetConfig.from_dict(fields)


def match_our_config(
    target: int, kind: str, image_size: int, args: argparse.Namespace
) -> tuple[dict[str, Any], int]:
    """Our config (as a dict) whose parameter count is nearest ``target``, by base_channels.

    Counted on the meta device (no memory, no init cost). Widths step by ``--width-step``;
    widths our UNetConfig rejects (e.g. one the attention head size does not divide) are
    skipped. Exits with a message if the nearest is further than ``--param-tolerance``.
    """
    import torch

    from openimagen.errors import OpenImagenError
    from openimagen.models.unet import EfficientUNet

    template = our_template(kind, image_size, args)
    best: tuple[float, dict[str, Any], int] | None = None
    rejected: str | None = None
    for width in range(args.width_step, 4096 + 1, args.width_step):
        try:
            config = our_config(template, width, kind, args)
        except (OpenImagenError, ValueError, TypeError) as exc:  # invalid width: skip it
            rejected = str(exc)
            continue
        with torch.device("meta"):
            count = count_parameters(EfficientUNet(config))  # no memory used on meta
        gap = abs(count - target) / target
        if best is None or gap < best[0]:
            best = (gap, config.to_dict(), count)
        if count > target * (1 + args.param_tolerance):
            break
    if best is None or best[0] > args.param_tolerance:
        found = "none" if best is None else f"{best[2]:,} ({best[0]:.1%} off)"
        raise SystemExit(
            f"no openimagen {kind} config within {args.param_tolerance:.0%} of {target:,} "
            f"parameters (nearest: {found}; last rejection: {rejected}); change --width-step, "
            "the res blocks or --param-tolerance"
        )
    return best[1], best[2]


# --------------------------------------------------------------------------------------
# 3. The workload: one batch, one loss, one optimizer, the same for both
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Batch:
    x_t: Any  # [B, 3, H, W] noised images
    noise: Any  # [B, 3, H, W] epsilon target
    t: Any  # [B] continuous time in [0, 1]
    text: Any  # [B, L, D] stand-in for frozen text-encoder output
    mask: Any  # [B, L] bool, True where a token is real
    lowres: Any = None  # [B, 3, H, W] upsampled low-res image (SR only)
    aug: Any = None  # [B] noise-augmentation level in [0, 1] (SR only)


def make_batch(case: Case, args: argparse.Namespace, device: Any) -> Batch:
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(args.seed)
    b, s = case.batch, case.image_size
    x0 = torch.rand(b, 3, s, s, generator=gen) * 2 - 1  # [B, 3, H, W] in [-1, 1]
    noise = torch.randn(b, 3, s, s, generator=gen)  # [B, 3, H, W]
    t = torch.rand(b, generator=gen)  # [B]
    # Variance-preserving cosine schedule (Nichol & Dhariwal 2021): alpha = cos(pi t / 2).
    alpha, sigma = torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)
    x_t = alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * noise
    text = torch.randn(b, args.text_len, args.text_dim, generator=gen)  # [B, L, D]
    lengths = torch.randint(args.text_len // 4, args.text_len + 1, (b,), generator=gen)
    mask = torch.arange(args.text_len)[None, :] < lengths[:, None]  # [B, L]
    lowres = aug = None
    if case.kind == "sr":
        small = F.avg_pool2d(x0, 2)  # [B, 3, H/2, W/2]: the previous stage's output
        lowres = F.interpolate(small, scale_factor=2.0, mode="bilinear", align_corners=False)
        aug = torch.rand(b, generator=gen)  # [B]
    values = (x_t, noise, t, text, mask, lowres, aug)
    return Batch(*(None if v is None else v.to(device) for v in values))


def model_call(name: str, model: Any) -> Callable[[Batch], Any]:
    """The forward of either model on a Batch; both return [B, 3, H, W] epsilon."""
    if name == THEIRS:
        return lambda b: model(
            b.x_t,
            b.t,
            text_embeds=b.text,
            text_mask=b.mask,
            lowres_cond_img=b.lowres,
            lowres_noise_times=b.aug,
        )
    return lambda b: model(b.x_t, b.t, b.text, b.mask, lowres=b.lowres, aug_level=b.aug)


class Runner:
    """A model with its optimizer and the two timed operations.

    ``precision="bf16"``: the forward and the loss run under bf16 autocast; the parameters,
    their gradients and the AdamW state stay fp32 (standard mixed precision, as the
    trainer's ``train.mixed_precision = "bf16"`` through Accelerate).
    """

    def __init__(
        self,
        name: str,
        spec: dict[str, Any],
        device: Any,
        precision: str = "fp32",
        lr: float = 1e-4,
    ):
        import torch

        self.name = name
        self.model = build_model(name, spec).to(device)
        self.call = model_call(name, self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr)
        self.device = device
        self.precision = precision

    def autocast(self) -> contextlib.AbstractContextManager:
        import torch

        enabled = self.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def train_step(self, batch: Batch) -> float:
        import torch.nn.functional as F

        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            # autocast runs mse_loss in fp32 whatever the output's dtype
            loss = F.mse_loss(self.call(batch), batch.noise)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())  # also a host sync, so the step is finished when timed

    def forward(self, batch: Batch) -> None:
        import torch

        self.model.eval()
        with torch.inference_mode(), self.autocast():
            out = self.call(batch)
        if out.shape != batch.x_t.shape:
            raise RuntimeError(f"{self.name} returned {tuple(out.shape)}")
        _sync(self.device)


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------------------
# 4. Peak memory: one fresh subprocess per case, model and mode
# --------------------------------------------------------------------------------------


def _proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_worker(job: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: build one model, run ``steps`` of one mode, report the peak."""
    import torch

    from openimagen.device import resolve_device

    args = argparse.Namespace(**job["args"])
    case = Case(**job["case"])
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if job["name"] == THEIRS:
        import_imagen_pytorch()  # imports before the baseline, as for ours below
    else:
        import openimagen.models.unet  # noqa: F401
    batch = make_batch(case, args, device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
        baseline = _proc_status_kib("VmRSS") * 1024
    runner = Runner(job["name"], job["spec"], device, args.precision)
    for _ in range(job["steps"]):
        runner.train_step(batch) if job["mode"] == "train" else runner.forward(batch)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        method = "torch.cuda.max_memory_allocated minus the memory allocated before the build"
    else:
        peak = _proc_status_kib("VmHWM") * 1024
        method = (
            "peak resident set (VmHWM, reset through /proc/self/clear_refs after the imports) "
            "minus the resident set before the model was built"
        )
    return {"peak_bytes": peak - baseline, "method": method}


def plain_args(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments as JSON-able values (paths as strings), without the worker's own."""
    return {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k != "memory_worker"
    }


def measure_memory(case: Case, name: str, spec: dict, mode: str, args: argparse.Namespace) -> dict:
    job = {
        "case": dataclasses.asdict(case),
        "name": name,
        "spec": spec,
        "mode": mode,
        "steps": 2,  # the second training step holds the AdamW state as well
        "args": plain_args(args),
    }
    out = subprocess.run(
        [sys.executable, __file__, "--memory-worker", json.dumps(job)],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"memory worker {case.key}/{name}/{mode} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------------------
# 5. Interleaved timing
# --------------------------------------------------------------------------------------


def time_interleaved(
    runners: list[Runner], batch: Batch, args: argparse.Namespace, log: Callable[[str], None]
) -> dict[str, dict[str, list[float]]]:
    """Alternate the models (A B, then B A, ...) for each op; warm-up rounds are dropped."""
    times: dict[str, dict[str, list[float]]] = {
        r.name: {"train": [], "forward": []} for r in runners
    }
    for round_index in range(args.warmup + args.repeats):
        order = runners if round_index % 2 == 0 else runners[::-1]
        for op in ("train", "forward"):
            for runner in order:
                start = time.perf_counter()
                runner.train_step(batch) if op == "train" else runner.forward(batch)
                elapsed = time.perf_counter() - start
                if round_index >= args.warmup:
                    times[runner.name][op].append(elapsed)
                log(
                    f"round {round_index} {'(warm-up) ' if round_index < args.warmup else ''}"
                    f"{op:7s} {runner.name:15s} {elapsed:7.3f} s"
                )
    return times


def summarize(samples: list[float]) -> dict[str, float]:
    q1, _, q3 = (
        statistics.quantiles(samples, n=4, method="inclusive")
        if len(samples) > 1
        else (samples[0], 0, samples[0])
    )
    return {"median": statistics.median(samples), "q1": q1, "q3": q3, "n": len(samples)}


def paired_ratio(theirs: list[float], ours: list[float]) -> float:
    """Median over rounds of theirs/ours: each round's pair ran back to back."""
    return statistics.median(t / o for t, o in zip(theirs, ours, strict=True))


# --------------------------------------------------------------------------------------
# 6. FLOPs: counted per training step, and the machine's measured throughput
# --------------------------------------------------------------------------------------


def count_train_flops(runner: Runner, batch: Batch) -> int:
    """FLOPs of one training step (forward + backward; the AdamW update is not counted).

    scaled_dot_product_attention runs on its math backend here, so its matmuls are counted
    (torch's counter has no formula for the CPU flash kernel); the count does not depend on
    which kernel computes the same product.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        runner.train_step(batch)
    return int(counter.get_total_flops())


def peak_prefix(precision: str) -> str:
    """The key prefix of a precision's ops in measure_peaks ("" for fp32, the original keys)."""
    return "" if precision == "fp32" else f"{precision} "


def measure_peaks(args: argparse.Namespace, device: Any) -> dict[str, dict[str, float]]:
    """Best and median FLOP/s of a square matmul and of 3x3 convolutions shaped like ours.

    Convolutions: [8, 64, 64, 64] and [8, 128, 32, 32] inputs, same channels out, padding 1,
    contiguous (NCHW) and channels_last; the "conv" peak is the best of them. Always in
    fp32; with ``--precision bf16`` also with bf16 tensors (what autocast hands the matmul
    and convolution kernels), under keys starting with "bf16 ".
    """
    import torch
    import torch.nn.functional as F

    n = args.peak_matmul_n
    gen = torch.Generator().manual_seed(0)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    ops: dict[str, tuple[Callable[[], Any], float]] = {}
    for precision in ("fp32",) if args.precision == "fp32" else ("fp32", args.precision):
        dtype, prefix = dtypes[precision], peak_prefix(precision)
        a = torch.randn(n, n, generator=gen).to(device, dtype)
        b = torch.randn(n, n, generator=gen).to(device, dtype)
        ops[f"{prefix}matmul {n}x{n}"] = (lambda a=a, b=b: torch.mm(a, b), 2.0 * n**3)
        for c, s in ((64, 64), (128, 32)):
            x = torch.randn(8, c, s, s, generator=gen).to(device, dtype)
            w = torch.randn(c, c, 3, 3, generator=gen).to(device, dtype)
            flops = 2.0 * 8 * c * s * s * c * 9
            xl = x.to(memory_format=torch.channels_last)
            wl = w.to(memory_format=torch.channels_last)
            key = f"{prefix}conv3x3 [8,{c},{s},{s}]"
            ops[key] = (lambda x=x, w=w: F.conv2d(x, w, padding=1), flops)
            ops[f"{key} channels_last"] = (lambda x=xl, w=wl: F.conv2d(x, w, padding=1), flops)
    samples: dict[str, list[float]] = {k: [] for k in ops}
    with torch.no_grad():
        for _ in range(args.peak_rounds):  # rounds over all ops, so load hits them alike
            for key, (fn, flops) in ops.items():
                fn()
                _sync(device)
                start = time.perf_counter()
                for _ in range(3):
                    fn()
                _sync(device)
                samples[key].append(3 * flops / (time.perf_counter() - start))
    return {k: {"best": max(v), "median": statistics.median(v)} for k, v in samples.items()}


def merge_peaks(*runs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Best over runs of the best, median over runs of the medians (runs at start and end)."""
    return {
        k: {
            "best": max(r[k]["best"] for r in runs),
            "median": statistics.median(r[k]["median"] for r in runs),
        }
        for k in runs[0]
    }


def peak_of(peaks: dict[str, dict[str, float]], prefix: str) -> tuple[str, float]:
    """The best op whose key starts with ``prefix`` ("conv", "bf16 matmul", ...)."""
    key = max((k for k in peaks if k.startswith(prefix)), key=lambda k: peaks[k]["best"])
    return key, peaks[key]["best"]


# --------------------------------------------------------------------------------------
# 7. Profile (with --profile)
# --------------------------------------------------------------------------------------


def profile_train_step(runner: Runner, batch: Batch, rows: int = 15) -> str:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    sort = "self_cpu_time_total"
    if runner.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        sort = "self_cuda_time_total"
    with profile(activities=activities) as prof:
        runner.train_step(batch)
    return prof.key_averages().table(sort_by=sort, row_limit=rows, max_name_column_width=48)


# --------------------------------------------------------------------------------------
# 8. Report
# --------------------------------------------------------------------------------------


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo ("unknown" where there is none)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


def machine_info(device: Any, threads: int) -> dict[str, str]:
    from importlib.metadata import version

    import torch

    cpu = cpu_model_name()
    info = {
        "cpu": f"{cpu}, {os.cpu_count()} logical CPUs, torch threads {threads}",
        "device": str(device),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "imagen-pytorch": version("imagen-pytorch"),
        "openimagen": version("openimagen"),
    }
    if device.type == "cuda":
        info["device"] = f"{device} ({torch.cuda.get_device_name(device)})"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        commit = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        info["openimagen"] += f" (git {commit}{', src/ modified' if dirty else ''})"
    return info


def _ms(s: dict[str, float]) -> str:
    return f"{s['median'] * 1000:,.0f} ({s['q1'] * 1000:,.0f}-{s['q3'] * 1000:,.0f})"


def _gflops(x: float) -> str:
    return f"{x / 1e9:,.1f}"


def render_intro(precision: str) -> list[str]:
    """The section's heading and introduction: in full for fp32, short for other precisions."""
    if precision != "fp32":
        return [
            f"### {precision} mixed precision: openimagen vs imagen-pytorch",
            "",
            "The benchmark above with `--precision bf16`: both models' forward and loss under",
            "`torch.autocast(device_type, dtype=torch.bfloat16)`, everything else as in fp32.",
            "",
        ]
    return [
        "## U-Nets: openimagen vs imagen-pytorch",
        "",
        "Training-step and forward time, peak memory and FLOP/s of our U-Nets beside",
        "lucidrains' imagen-pytorch `Unet` (installed from PyPI into the benchmark's own",
        "environment, `benchmarks/.venv-ref`, never vendored) at matched parameter count,",
        "measured side by side in one run. Target (issues 3 and 8): our training step at least "
        f"{SPEEDUP_TARGET}x imagen-pytorch's images/s with no more peak memory; our training",
        f"step at >= {PEAK_TARGET:.0%} of the machine's measured convolution peak FLOP/s.",
        "",
        "### How to run",
        "",
        "```",
        "bash benchmarks/run_unet_benchmark.sh            # creates benchmarks/.venv-ref if needed",
        "bash benchmarks/run_unet_benchmark.sh --quick    # small smoke run of the harness",
        "bash benchmarks/run_unet_benchmark.sh --precision bf16  # both under bf16 autocast",
        "benchmarks/.venv-ref/bin/python benchmarks/unet_vs_imagen_pytorch.py --help",
        "```",
        "",
        "`benchmarks/setup_reference_env.sh` installs torch==2.13.0 first, then openimagen",
        "(editable, this checkout) and imagen-pytorch 2.1.0, all under",
        "`benchmarks/constraints-ref.txt` (torch==2.13.0) so imagen-pytorch cannot replace",
        "torch; imagen-pytorch goes in with `--no-deps` after its declared requirements",
        "(`benchmarks/requirements-ref.txt`, pinned) less torchvision, whose PyPI Linux wheels",
        "are CUDA builds that cannot load against the CPU torch and which the U-Net never",
        "uses (an inert stub stands in at import). `import imagen_pytorch` reads",
        "google/t5-v1_1-base's config from a model hub at import time; the benchmark writes a",
        "`T5Config` with that model's published hyperparameters into a temporary Hugging Face",
        "cache, sets `HF_HUB_OFFLINE=1`, and passes random text embeddings to both U-Nets; no",
        "T5 weights are ever loaded.",
        "",
    ]


def render_precision(precision: str) -> str:
    """The Method bullet's words for the run's precision."""
    if precision == "fp32":
        return "fp32"
    return (
        f"{precision} mixed precision: both models' forward and loss run inside"
        f" `torch.autocast(device_type, dtype=torch.bfloat16)` (matmuls and convolutions in"
        " bf16, reductions and normalizations as autocast's op lists decide; backward in the"
        " dtypes autocast chose); parameters, gradients and the AdamW state stay fp32, as with"
        ' the trainer\'s `train.mixed_precision = "bf16"`'
    )


def render(result: dict[str, Any]) -> str:
    """The markdown section: how to run, what is measured, and this run's numbers."""
    a, m = result["args"], result["machine"]
    precision = a["precision"]
    begin, end = SECTION_MARKERS[precision]
    h = "###" if precision == "fp32" else "####"  # bf16 sits under the fp32 section's heading
    prefix = peak_prefix(precision)
    mib = 1024 * 1024
    cases = result["cases"]
    lines = [
        begin,
        *render_intro(precision),
        f"{h} Method{'' if precision == 'fp32' else f' ({precision})'}",
        "",
        f"- {render_precision(precision)}; {a['threads']} torch thread(s) for every"
        f" measurement; text embeddings [B, {a['text_len']}, {a['text_dim']}] with a mask"
        " (random lengths), timesteps in [0, 1]; SR cases add the upsampled low-res image and"
        " a noise-augmentation level."
        " Epsilon-prediction MSE loss, AdamW (lr 1e-4), the same batch for both models.",
        "- Training step = forward + loss + backward + AdamW step; forward = inference mode.",
        f"- Timing in one process: {a['warmup']} warm-up round(s), then {a['repeats']} rounds,"
        " the two models alternating (A B, then B A) within each round, so load from other"
        " processes falls on both. Median (interquartile range) in ms; *paired* = median over"
        " rounds of the per-round ratio.",
        "- Peak memory: each model in a fresh subprocess per case and mode, 2 steps (the"
        f" second holds the AdamW state); {result['memory_method']}.",
        "- FLOPs: `torch.utils.flop_counter.FlopCounterMode` over one training step (forward +"
        " backward; the AdamW update's elementwise work is not counted), with"
        " scaled_dot_product_attention on its math backend while counting so that attention"
        " is counted as its matmuls (the count does not depend on the precision). Achieved"
        " FLOP/s = FLOPs / median training-step time. Machine peak = best of repeated"
        f" single-thread {precision} `torch.mm` and 3x3 `conv2d` runs"
        f"{'' if precision == 'fp32' else f' on {precision} tensors'} (shapes below),"
        " measured at the start and at the end of this run.",
        "- Speedup = imagen-pytorch time / openimagen time (> 1: ours faster). Memory ratio ="
        " openimagen / imagen-pytorch (< 1: ours smaller).",
        "",
        f"{h} Results ({'' if precision == 'fp32' else f'{precision}, '}{result['date']})",
        "",
        f"Machine: {m['cpu']}; device {m['device']}; load average "
        f"{result['load_before']} before, {result['load_after']} after.",
        f"Versions: Python {m['python']}, torch {m['torch']}, imagen-pytorch "
        f"{m['imagen-pytorch']}, openimagen {m['openimagen']}.",
        "",
        "Speed (times in ms, median and IQR):",
        "",
        "| case | parameters ours / ref | train ms ours | train ms ref | train img/s ours / ref"
        " | **train speedup** (paired) | forward ms ours | forward ms ref | forward speedup"
        " (paired) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        t, r, p, bs = c["times"], c["ratios"], c["params"], c["case"]["batch"]
        lines.append(
            f"| {c['title']} | {p[OURS] / 1e6:.2f}M / {p[THEIRS] / 1e6:.2f}M "
            f"({p[OURS] / p[THEIRS]:.3f}) | {_ms(t[OURS]['train'])} | {_ms(t[THEIRS]['train'])} | "
            f"{bs / t[OURS]['train']['median']:.2f} / {bs / t[THEIRS]['train']['median']:.2f} | "
            f"**{r['train_speedup']:.2f}x** ({r['train_speedup_paired']:.2f}x) | "
            f"{_ms(t[OURS]['forward'])} | {_ms(t[THEIRS]['forward'])} | "
            f"{r['forward_speedup']:.2f}x ({r['forward_speedup_paired']:.2f}x) |"
        )
    lines += [
        "",
        "Peak memory (MiB):",
        "",
        "| case | train ours | train ref | **train ratio** | forward ours | forward ref |"
        " forward ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        mem, r = c["memory"], c["ratios"]
        lines.append(
            f"| {c['title']} | {mem[OURS]['train']['peak_bytes'] / mib:,.0f} | "
            f"{mem[THEIRS]['train']['peak_bytes'] / mib:,.0f} | **{r['train_memory']:.2f}** | "
            f"{mem[OURS]['forward']['peak_bytes'] / mib:,.0f} | "
            f"{mem[THEIRS]['forward']['peak_bytes'] / mib:,.0f} | {r['forward_memory']:.2f} |"
        )
    lines += ["", "Targets per case:", ""]
    for c in cases:
        r = c["ratios"]
        speed_ok = r["train_speedup"] >= SPEEDUP_TARGET
        mem_ok = r["train_memory"] <= 1.0
        lines.append(
            f"- {c['title']}: training speed {r['train_speedup']:.2f}x "
            f"(target {SPEEDUP_TARGET}x: **{'met' if speed_ok else 'NOT met'}**), training"
            f" memory ratio {r['train_memory']:.2f} (target <= 1: "
            f"**{'met' if mem_ok else 'NOT met'}**)."
        )
    peaks = result["peaks"]
    conv_key, conv_peak = peak_of(peaks, prefix + "conv")
    mm_key, mm_peak = peak_of(peaks, prefix + "matmul")
    lines += [
        "",
        f"FLOP/s ({a['threads']} thread(s); GFLOP per training step, achieved GFLOP/s, share of"
        f" the measured {precision} peaks):",
        "",
        f"| case | model | GFLOP / step | achieved GFLOP/s | % of {precision} conv peak"
        f" | % of {precision} matmul peak |",
        "|---|---|---|---|---|---|",
    ]
    for c in cases:
        for name in (OURS, THEIRS):
            flops = c["flops"][name]
            rate = flops / c["times"][name]["train"]["median"]
            lines.append(
                f"| {c['title']} | {name} | {_gflops(flops)} | {_gflops(rate)} | "
                f"{rate / conv_peak:.0%} | {rate / mm_peak:.0%} |"
            )
    lines += [
        "",
        "Machine throughput, GFLOP/s (best / median of the repeats; the peaks above are the"
        f" {precision} rows{'' if precision == 'fp32' else ', fp32 shown for comparison'}):",
        "",
        "| op | best | median |",
        "|---|---|---|",
    ]
    for key, v in peaks.items():
        lines.append(f"| {key} | {_gflops(v['best'])} | {_gflops(v['median'])} |")
    ours_base = next((c for c in cases if c["case"]["key"] == "base-64"), cases[0])
    ours_rate = ours_base["flops"][OURS] / ours_base["times"][OURS]["train"]["median"]
    lines += [
        "",
        f"{precision} convolution peak = {conv_key} ({_gflops(conv_peak)} GFLOP/s); {precision}"
        f" matmul peak = {mm_key}"
        f" ({_gflops(mm_peak)} GFLOP/s). Our {ours_base['title']} training step reaches"
        f" {ours_rate / conv_peak:.0%} of the {precision} convolution peak"
        f" (target >= {PEAK_TARGET:.0%}: "
        f"**{'met' if ours_rate / conv_peak >= PEAK_TARGET else 'NOT met'}**).",
        "",
        "Configs (imagen-pytorch `Unet` kwargs; openimagen `UNetConfig`):",
        "",
        "```",
    ]
    for c in cases:
        lines += [
            f"{c['case']['key']} imagen-pytorch: {json.dumps(c['specs'][THEIRS])}",
            f"{c['case']['key']} openimagen:     {json.dumps(c['specs'][OURS])}",
        ]
    lines += ["```", "", "Reproduce:", "", "```", result["command"], "```"]
    for c in cases:
        for name in (OURS, THEIRS):
            if name in c.get("profiles", {}):
                lines += [
                    "",
                    f"Profile of one {name} training step, {c['title']} (top ops by self time):",
                    "",
                    "```",
                    c["profiles"][name].rstrip(),
                    "```",
                ]
    lines.append(end)
    return "\n".join(lines) + "\n"


def write_section(
    path: Path, section: str, begin: str, end: str, after_marker: str | None = None
) -> None:
    """Replace the section between ``begin`` and ``end`` in ``path``, atomically.

    A file without the section gets it right after ``after_marker`` (when that is in the
    file; e.g. the bf16 section after the fp32 section's end), else at its end; a missing
    file is created.
    """
    from openimagen.fileio import atomic_write

    header = (
        "# Benchmarks\n\nSpeed and memory of openimagen, measured on this project's machines.\n"
    )
    text = path.read_text() if path.exists() else header
    if begin in text and end in text:
        before = text[: text.index(begin)]
        after = text[text.index(end) + len(end) :].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    elif after_marker is not None and after_marker in text:
        cut = text.index(after_marker) + len(after_marker)
        text = text[:cut].rstrip("\n") + "\n\n" + section + "\n" + text[cut:].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with atomic_write(path, "w") as handle:
        handle.write(text)


# --------------------------------------------------------------------------------------
# 9. Main
# --------------------------------------------------------------------------------------


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--cases",
        type=lambda s: tuple(s.split(",")),
        default=CASE_KEYS,
        help="comma-separated cases: " + ", ".join(CASE_KEYS),
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--dim", type=int, default=64, help="imagen-pytorch base Unet width")
    p.add_argument("--dim-mults", type=_ints, default=(1, 2, 3, 4), help="base multipliers")
    p.add_argument("--resnet-blocks", type=int, default=3, help="base reference blocks per level")
    p.add_argument("--sr-dim", type=int, default=32, help="imagen-pytorch SR Unet width")
    p.add_argument("--sr-dim-mults", type=_ints, default=(1, 2, 4, 8), help="SR multipliers")
    p.add_argument(
        "--sr-resnet-blocks", type=_ints, default=(2, 4, 8, 8), help="SR reference blocks"
    )
    p.add_argument("--text-len", type=int, default=64, help="text tokens L")
    p.add_argument("--text-dim", type=int, default=768, help="text embedding width D (T5-base)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up rounds (not counted)")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds")
    p.add_argument("--threads", type=int, default=1, help="torch threads, for every measurement")
    p.add_argument("--device", default="cpu", help="'cpu', 'cuda', or 'auto'")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="bf16: both models' forward and loss under bf16 autocast (weights and AdamW fp32);"
        " each precision writes its own section of --out",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--param-tolerance",
        type=float,
        default=0.05,
        help="largest allowed relative gap between the parameter counts",
    )
    p.add_argument("--width-step", type=int, default=8, help="step of our base_channels search")
    p.add_argument(
        "--our-preset",
        default="imagen-base-64",
        help="our base preset whose remaining fields (head size, ...) the matched config keeps",
    )
    p.add_argument("--our-sr-preset", default="imagen-sr-64-256", help="the same for SR")
    p.add_argument(
        "--our-res-blocks",
        type=_ints,
        default=(2, 4, 4, 4),
        help="our base residual blocks per level (Efficient U-Net: more at low resolution)",
    )
    p.add_argument(
        "--our-sr-res-blocks", type=_ints, default=(2, 4, 8, 8), help="our SR blocks per level"
    )
    p.add_argument(
        "--our-head-dim", type=int, default=None, help="our attention_head_dim (preset's if unset)"
    )
    p.add_argument("--cond-mult", type=int, default=4, help="our cond_dim = this * width")
    p.add_argument("--peak-matmul-n", type=int, default=1024, help="matmul size for the peak")
    p.add_argument("--peak-rounds", type=int, default=5, help="rounds of the peak measurement")
    p.add_argument(
        "--profile",
        choices=["always", "never"],
        default="never",
        help="add a torch.profiler table per model and case",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to update")
    p.add_argument("--json-out", type=Path, default=None, help="also write raw results here")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: small models (--dim 32 --resnet-blocks 1 --sr-dim 16 ...), batch 2, "
        "--repeats 2 --param-tolerance 0.25 (a harness check, not a measurement)",
    )
    p.add_argument("--memory-worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.dim, args.resnet_blocks, args.our_res_blocks = 32, 1, (1, 2, 2, 2)
        args.sr_dim, args.sr_resnet_blocks, args.our_sr_res_blocks = 16, (1, 1, 2, 2), (1, 1, 2, 2)
        args.our_head_dim, args.param_tolerance, args.batch = 32, 0.25, 2
        args.warmup, args.repeats, args.peak_rounds, args.peak_matmul_n = 1, 2, 2, 256
    return args


def run_case(
    case: Case, args: argparse.Namespace, device: Any, log: Callable[[str], None]
) -> dict[str, Any]:
    """Match, then measure memory, time, and FLOPs of both models for one case."""
    import torch

    specs: dict[str, dict[str, Any]] = {THEIRS: reference_kwargs(case.kind, args)}
    with torch.device("meta"):
        theirs_params = count_parameters(build_model(THEIRS, specs[THEIRS]))
    specs[OURS], ours_params = match_our_config(theirs_params, case.kind, case.image_size, args)
    params = {OURS: ours_params, THEIRS: theirs_params}
    log(f"{case.key}: parameters {OURS} {ours_params:,}  {THEIRS} {theirs_params:,}")

    memory: dict[str, dict[str, Any]] = {OURS: {}, THEIRS: {}}
    for mode in ("train", "forward"):
        for name in (OURS, THEIRS) if mode == "train" else (THEIRS, OURS):
            memory[name][mode] = measure_memory(case, name, specs[name], mode, args)
            log(
                f"{case.key}: peak memory {mode:7s} {name:15s} "
                f"{memory[name][mode]['peak_bytes'] / 2**20:,.0f} MiB"
            )

    batch = make_batch(case, args, device)
    runners = [Runner(name, specs[name], device, args.precision) for name in (OURS, THEIRS)]
    raw = time_interleaved(runners, batch, args, lambda msg: log(f"{case.key}: {msg}"))
    times = {n: {op: summarize(v) for op, v in ops.items()} for n, ops in raw.items()}
    ratios = {
        "train_speedup": times[THEIRS]["train"]["median"] / times[OURS]["train"]["median"],
        "train_speedup_paired": paired_ratio(raw[THEIRS]["train"], raw[OURS]["train"]),
        "forward_speedup": times[THEIRS]["forward"]["median"] / times[OURS]["forward"]["median"],
        "forward_speedup_paired": paired_ratio(raw[THEIRS]["forward"], raw[OURS]["forward"]),
        "train_memory": memory[OURS]["train"]["peak_bytes"] / memory[THEIRS]["train"]["peak_bytes"],
        "forward_memory": memory[OURS]["forward"]["peak_bytes"]
        / memory[THEIRS]["forward"]["peak_bytes"],
    }
    log(f"{case.key}: ratios " + ", ".join(f"{k} {v:.3f}" for k, v in ratios.items()))
    flops = {r.name: count_train_flops(r, batch) for r in runners}
    log(
        f"{case.key}: GFLOP per training step "
        + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in flops.items())
    )
    profiles = {}
    if args.profile == "always":
        for runner in runners:
            profiles[runner.name] = profile_train_step(runner, batch)
    return {
        "case": dataclasses.asdict(case),
        "title": case.title,
        "specs": specs,
        "params": params,
        "memory": memory,
        "raw_times": raw,
        "times": times,
        "ratios": ratios,
        "flops": flops,
        "profiles": profiles,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_worker is not None:  # inside a subprocess started by measure_memory
        print(json.dumps(memory_worker(json.loads(args.memory_worker))))
        return 0
    cases = make_cases(args)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {msg}", flush=True)

    with offline_hf_home():
        import torch

        from openimagen.device import resolve_device

        torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        load_before = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
        peaks_start = measure_peaks(args, device)
        log(
            "peaks (start) "
            + ", ".join(f"{k} {v['best'] / 1e9:.1f}" for k, v in peaks_start.items())
        )
        results = [run_case(case, args, device, log) for case in cases]
        peaks_end = measure_peaks(args, device)
        log("peaks (end) " + ", ".join(f"{k} {v['best'] / 1e9:.1f}" for k, v in peaks_end.items()))
        shown_args = list(argv if argv is not None else sys.argv[1:])
        result = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "args": plain_args(args),
            "machine": machine_info(device, args.threads),
            "load_before": load_before,
            "load_after": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
            "memory_method": results[0]["memory"][OURS]["train"]["method"],
            "cases": results,
            "peaks": merge_peaks(peaks_start, peaks_end),
            "peaks_runs": [peaks_start, peaks_end],
            "command": "bash benchmarks/run_unet_benchmark.sh " + " ".join(shown_args),
        }
    begin, end = SECTION_MARKERS[args.precision]
    fp32_end = SECTION_MARKERS["fp32"][1]
    write_section(args.out, render(result), begin, end, None if end == fp32_end else fp32_end)
    log(f"wrote {args.out}")
    if args.json_out is not None:
        from openimagen.fileio import atomic_write_json

        atomic_write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
