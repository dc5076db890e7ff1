"""Our U-Net's training step under memory-format, precision and compile variants, one thread.

    .venv/bin/python benchmarks/unet_variants.py                        # eager variants
    .venv/bin/python benchmarks/unet_variants.py --compile sr-64        # + torch.compile, SR
    .venv/bin/python benchmarks/unet_variants.py --help

Runs in the project's own environment (imagen-pytorch is not needed). The cases are our
matched configs from benchmarks/unet_vs_imagen_pytorch.py (docs/benchmarks.md, "Configs"),
with the same synthetic batch, loss and optimizer as there. Variants:

- ``fp32``: eager, the baseline every ratio is taken against;
- ``channels_last``: model and image inputs in channels_last memory format;
- ``bf16``: forward and loss under ``torch.autocast(device_type, dtype=torch.bfloat16)``
  (weights, gradients and AdamW state stay fp32; the trainer's
  ``train.mixed_precision = "bf16"``);
- ``channels_last+bf16``: both;
- with ``--compile CASES``: ``compile`` and ``compile+bf16``, the model wrapped in
  ``torch.compile`` (inductor) for those cases; the compilation happens in the first steps,
  whose time is reported apart from the timed rounds.

Every variant has its own model (same initialization) and AdamW. After the warm-up steps
the variants run round by round, in forward order in even rounds and reversed in odd ones,
so load from other processes falls on all of them; medians, and paired ratios (per round,
fp32 time / variant time, median over rounds). The first step's loss of each variant is
shown beside it: same weights and batch, so it must agree with fp32's to about bf16's
precision. Results go into docs/benchmarks.md between this script's markers.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the comparison benchmark's batch and report helpers

from unet_vs_imagen_pytorch import (  # noqa: E402
    Batch,
    Case,
    cpu_model_name,
    make_batch,
    paired_ratio,
    summarize,
    write_section,
)

DEFAULT_OUT = HERE.parent / "docs" / "benchmarks.md"
SECTION_BEGIN = "<!-- BEGIN unet_variants (written by benchmarks/unet_variants.py) -->"
SECTION_END = "<!-- END unet_variants -->"
EAGER_VARIANTS = ("fp32", "channels_last", "bf16", "channels_last+bf16")
COMPILE_VARIANTS = ("compile", "compile+bf16")

# Our matched configs, as benchmarks/unet_vs_imagen_pytorch.py found them (docs/benchmarks.md,
# "Configs"): base-64 against imagen-pytorch's BaseUnet64 style at dim 64, sr-64 against
# SRUnet256's style at dim 32 (64x64 crops).
_COMMON = {
    "channel_mults": [1, 2, 3, 4],
    "text_embed_dim": 768,
    "in_channels": 3,
    "out_channels": 3,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "prediction": "eps",
    "memory_efficient": True,
}
_BASE_64: dict[str, Any] = {
    **_COMMON,
    "image_size": 64,
    "base_channels": 64,
    "num_res_blocks": [2, 4, 4, 4],
    "cross_attention_levels": [False, True, True, True],
    "self_attention_levels": [False, True, True, True],
    "cond_dim": 256,
    "super_resolution": False,
    "downsample_first": False,
}
CONFIGS: dict[str, dict[str, Any]] = {
    "base-64": _BASE_64,
    "base-32": {**_BASE_64, "image_size": 32},
    "sr-64": {
        **_COMMON,
        "image_size": 64,
        "base_channels": 40,
        "channel_mults": [1, 2, 4, 8],
        "num_res_blocks": [2, 4, 8, 8],
        "cross_attention_levels": [False, False, False, True],
        "self_attention_levels": [False, False, False, False],
        "cond_dim": 160,
        "super_resolution": True,
        "downsample_first": True,
    },
}


class Variant:
    """One way of running our U-Net's training step: its own model, optimizer and step."""

    def __init__(self, name: str, config: dict[str, Any], batch: Batch, seed: int):
        import torch

        from openimagen.models.unet import EfficientUNet, UNetConfig

        self.name = name
        parts = set(name.split("+"))
        torch.manual_seed(seed)  # the same initial weights for every variant
        self.model = EfficientUNet(UNetConfig.from_dict(config))
        self.batch = batch
        if "channels_last" in parts:
            fmt = torch.channels_last
            self.model = self.model.to(memory_format=fmt)
            self.batch = Batch(
                **{
                    **vars(batch),
                    "x_t": batch.x_t.contiguous(memory_format=fmt),
                    "lowres": None
                    if batch.lowres is None
                    else batch.lowres.contiguous(memory_format=fmt),
                }
            )
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-4)
        self.forward: Callable[..., Any] = (
            torch.compile(self.model) if "compile" in parts else self.model
        )
        self.bf16 = "bf16" in parts

    def step(self) -> float:
        """One training step (forward + loss + backward + AdamW); returns the loss."""
        import torch
        import torch.nn.functional as F

        b = self.batch
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            out = self.forward(b.x_t, b.t, b.text, b.mask, lowres=b.lowres, aug_level=b.aug)
            loss = F.mse_loss(out, b.noise)  # autocast computes mse_loss in fp32
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())


def run_case(key: str, variants: list[str], args: argparse.Namespace, log: Any) -> dict:
    """Warm up each variant (compiling where asked), then time interleaved rounds."""
    case = Case(key, key.split("-")[0], int(key.split("-")[1]), args.batch)
    batch_args = argparse.Namespace(seed=args.seed, text_len=args.text_len, text_dim=768)
    batch = make_batch(case, batch_args, device=_cpu())
    runners, warmup = {}, {}
    for name in variants:
        runner = Variant(name, CONFIGS[key], batch, args.seed)
        start = time.perf_counter()
        first_loss = runner.step()
        first = time.perf_counter() - start
        for _ in range(args.warmup - 1):
            runner.step()
        warmup[name] = {"first_step_s": first, "first_loss": first_loss}
        runners[name] = runner
        log(f"{key}: {name:20s} first step {first:8.1f} s, loss {first_loss:.5f}")
    raw: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(args.repeats):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for name in order:
            start = time.perf_counter()
            runners[name].step()
            raw[name].append(time.perf_counter() - start)
        log(
            f"{key}: round {round_index} "
            + ", ".join(f"{n} {raw[n][-1] * 1000:.0f} ms" for n in variants)
        )
    times = {name: summarize(raw[name]) for name in variants}
    base = variants[0]
    ratios = {
        name: {
            "speedup": times[base]["median"] / times[name]["median"],
            "speedup_paired": paired_ratio(raw[base], raw[name]),
        }
        for name in variants
    }
    return {
        "key": key,
        "title": case.title,
        "variants": variants,
        "warmup": warmup,
        "raw_times": raw,
        "times": times,
        "ratios": ratios,
    }


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def machine_line(threads: int) -> str:
    import torch

    cpu = cpu_model_name()
    flags = ""
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        flags = ", ".join(f for f in ("avx512_bf16", "amx_bf16") if f in text)
    return (
        f"{cpu} ({flags or 'no bf16 instructions'}), {os.cpu_count()} logical CPUs, torch"
        f" threads {threads}; Python {platform.python_version()}, torch {torch.__version__}"
    )


def render(result: dict[str, Any]) -> str:
    a = result["args"]
    lines = [
        SECTION_BEGIN,
        "### Our U-Net under variants: channels_last, bf16 autocast, torch.compile",
        "",
        "Our training step alone (no reference model), per variant, against eager fp32 in the",
        "same process: `fp32` (eager), `channels_last` (model and image inputs), `bf16`",
        '(forward and loss under `torch.autocast("cpu", dtype=torch.bfloat16)`; weights,',
        'gradients and AdamW state fp32, as the trainer\'s `train.mixed_precision = "bf16"`),',
        "`compile` (`torch.compile`, inductor) and their combinations. Each variant has its own",
        "model (same initial weights) and AdamW on the comparison's synthetic batch.",
        f"{a['warmup']} warm-up step(s) per variant (the first one compiles, for compile"
        f" variants), then {a['repeats']} rounds with the variants in alternating order.",
        "Times in ms, median (IQR); speedup = fp32 median / variant median; *paired* = median",
        "over rounds of the per-round ratio. *First step* includes compilation (cold: a fresh",
        "inductor cache directory). *Loss* is the first step's loss, a check that each variant",
        "computes the same thing (same weights and batch).",
        "",
        f"Results ({result['date']}): {result['machine']}; load average"
        f" {result['load_before']} before, {result['load_after']} after.",
        "",
        "| case | variant | train ms | **speedup vs fp32** (paired) | first step s | loss |",
        "|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        for name in c["variants"]:
            t, r, w = c["times"][name], c["ratios"][name], c["warmup"][name]
            ms = f"{t['median'] * 1000:,.0f} ({t['q1'] * 1000:,.0f}-{t['q3'] * 1000:,.0f})"
            lines.append(
                f"| {c['title']} | {name} | {ms} | **{r['speedup']:.2f}x**"
                f" ({r['speedup_paired']:.2f}x) | {w['first_step_s']:,.1f} |"
                f" {w['first_loss']:.5f} |"
            )
    lines += ["", "Reproduce:", "", "```", result["command"], "```", SECTION_END]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    split = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument(
        "--cases", type=split, default=["sr-64", "base-64"], help=f"of {', '.join(CONFIGS)}"
    )
    p.add_argument(
        "--compile",
        type=split,
        default=[],
        help="cases that also get the compile variants (minutes of compilation each on CPU)",
    )
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--text-len", type=int, default=64, help="text tokens L (D is 768)")
    p.add_argument("--warmup", type=int, default=2, help="warm-up steps per variant (>= 1)")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="markdown file to update")
    p.add_argument("--json-out", type=Path, default=None, help="also write raw results here")
    args = p.parse_args(argv)
    for key in [*args.cases, *args.compile]:
        if key not in CONFIGS:
            p.error(f"unknown case {key!r}; choose from {', '.join(CONFIGS)}")
    if args.warmup < 1:
        p.error(f"--warmup must be >= 1 (got {args.warmup}): the first step is not timed")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cold_cache = None
    if args.compile and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # a fresh inductor cache, so the first step's time is a cold compilation
        cold_cache = tempfile.TemporaryDirectory(prefix="openimagen-inductor-")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cold_cache.name
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {msg}", flush=True)

    load_before = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    cases = []
    for key in args.cases:
        variants = list(EAGER_VARIANTS) + (list(COMPILE_VARIANTS) if key in args.compile else [])
        cases.append(run_case(key, variants, args, log))
    shown = list(argv if argv is not None else sys.argv[1:])
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": machine_line(args.threads),
        "load_before": load_before,
        "load_after": "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()),
        "cases": cases,
        "command": ".venv/bin/python benchmarks/unet_variants.py " + " ".join(shown),
    }
    write_section(args.out, render(result), SECTION_BEGIN, SECTION_END)
    log(f"wrote {args.out}")
    if cold_cache is not None:
        cold_cache.cleanup()
    if args.json_out is not None:
        from openimagen.fileio import atomic_write_json

        atomic_write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
