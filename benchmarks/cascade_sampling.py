"""Wall time per image of the full shapes cascade (32 px base -> 128 px SR), ours against
lucidrains' imagen-pytorch, at equal ShapeBench alignment.

    bash benchmarks/run_cascade_benchmark.sh            # sets up benchmarks/.venv-ref, then runs
    bash benchmarks/run_cascade_benchmark.sh --quick    # smoke run of the harness (~1 min)
    benchmarks/.venv-ref/bin/python benchmarks/cascade_sampling.py --help

Settings, all in one process, with ``--threads`` torch threads, on ``--device``:

- ours, fast: the bundled cascade (``openimagen.load()``) with ``dpmpp_2m`` and with ``ddim``,
  each at the smallest step count whose base-stage ShapeBench all-correct accuracy in
  docs/results/part5.json is within ``--tolerance`` (2 points) of, or above, DDPM with 1000
  steps; the SR stage at the same step count unless ``--sr-steps`` is given. Guidance,
  thresholding and the SR noise-augmentation level are the model's shipped defaults.
- ours, DDPM 1000: the same cascade with ancestral DDPM, 1000 steps per stage: the
  algorithm imagen-pytorch samples with by default. It separates "each step is cheaper"
  from "fewer steps".
- imagen-pytorch: an ``Imagen`` cascade of two ``Unet`` stages at (32, 128) px, built in the
  style of its ``BaseUnet64`` / ``SRUnet256`` presets scaled down so that each stage's
  parameter count is within ``--param-tolerance`` of ours, random weights (sampling time
  does not depend on the weights' values), and every ``Imagen`` / ``sample`` argument at its
  default (1000 DDPM steps, cosine schedule, dynamic thresholding, low-res noise level 0.2)
  except the text embeddings (ours, precomputed, since weights cannot be shared across
  the two codebases anyway) and ``cond_scale``: 1.0 (its default: one U-Net call per
  step) and our shipped guidance weight (two U-Net calls per step).

Images are drawn ``--batch-size`` at a time on both sides, round by round (every setting's
image i before any setting's image i + 1) so that load from other processes hits all
settings alike; each side gets an untimed warm-up sample of 2 steps per stage first.
U-Net evaluations are counted (batch rows through each U-Net's forward, per image), not
inferred. Results go into docs/benchmarks.md between this benchmark's markers, atomically.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # the U-Net benchmark's offline-import helpers

from unet_vs_imagen_pytorch import (  # noqa: E402
    import_imagen_pytorch,
    machine_info,
    offline_hf_home,
    write_section,
)

DEFAULT_OUT = REPO_ROOT / "docs" / "benchmarks.md"
DEFAULT_PART5 = REPO_ROOT / "docs" / "results" / "part5.json"
PART5_COMMAND = "python benchmarks/results.py --parts 5 --prompts 20 --per-prompt 2"
SECTION_BEGIN = "<!-- BEGIN cascade_sampling (written by benchmarks/cascade_sampling.py) -->"
SECTION_END = "<!-- END cascade_sampling -->"
SPEEDUP_TARGET = 20.0
REF_IMAGE_SIZES = (32, 128)
WARMUP_STEPS = 2


# --------------------------------------------------------------------------------------
# 1. Equal alignment: the step count, read from part 5 of docs/results.md
# --------------------------------------------------------------------------------------


def read_part5(path: Path) -> list[dict[str, Any]]:
    """The rows of part5.json: sampler, steps, all_correct.accuracy, seconds_per_image."""
    if not path.is_file():
        raise SystemExit(
            f"{path} not found: it holds the ShapeBench sampler sweep this benchmark picks its "
            f"step count from; make it with `{PART5_COMMAND}`"
        )
    return json.loads(path.read_text())["data"]["rows"]


def choose_steps(rows: list[dict[str, Any]], sampler: str, tolerance: float) -> dict[str, Any]:
    """The smallest step count of ``sampler`` within ``tolerance`` of DDPM-1000 (or above)."""
    reference = [r for r in rows if r["sampler"] == "ddpm" and r["steps"] == 1000]
    if not reference:
        raise SystemExit(f"part5.json has no ddpm/1000 row; remake it with `{PART5_COMMAND}`")
    ddpm_acc = reference[0]["all_correct"]["accuracy"]
    candidates = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["steps"])
    table = {r["steps"]: r["all_correct"]["accuracy"] for r in candidates}
    for row in candidates:
        if row["all_correct"]["accuracy"] >= ddpm_acc - tolerance:
            return {
                "sampler": sampler,
                "steps": row["steps"],
                "accuracy": row["all_correct"]["accuracy"],
                "ddpm1000_accuracy": ddpm_acc,
                "swept": table,
            }
    raise SystemExit(
        f"part5.json: no {sampler} step count is within {tolerance:.0%} of DDPM-1000's "
        f"all-correct {ddpm_acc:.1%} (swept: {table}); extend the sweep with `{PART5_COMMAND} "
        f"--samplers ...` or drop {sampler} from --fast-samplers"
    )


# --------------------------------------------------------------------------------------
# 2. Counting U-Net evaluations, the same way on both sides
# --------------------------------------------------------------------------------------


class ForwardCounter:
    """Counts batch rows through each wrapped module's ``forward``.

    imagen-pytorch calls ``self.forward`` directly (not through ``__call__``), so hooks
    would miss its calls; an instance attribute shadowing ``forward`` sees both ways.
    """

    def __init__(self) -> None:
        self.rows = 0

    @contextmanager
    def watch(self, modules: Sequence[Any]) -> Iterator[ForwardCounter]:
        for module in modules:
            original = module.forward

            def counted(x: Any, *args: Any, _original: Callable = original, **kw: Any) -> Any:
                self.rows += x.shape[0]  # x: [B, C, H, W]
                return _original(x, *args, **kw)

            module.forward = counted
        try:
            yield self
        finally:
            for module in modules:
                del module.forward  # the class's forward shows through again


# --------------------------------------------------------------------------------------
# 3. The two cascades
# --------------------------------------------------------------------------------------


def count_parameters(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())


def reference_unet_kwargs(stage: Any, args: argparse.Namespace, text_len: int) -> dict[str, Any]:
    """imagen-pytorch ``Unet`` kwargs for one of our stages, in its presets' style, scaled down.

    Width and levels follow our stage (``dim`` = our base_channels, ``dim_mults`` = our
    channel_mults), so both run convolutions of the same widths at the same resolutions.
    Base: attention and cross-attention at every level but the first, not memory-efficient
    (``BaseUnet64``); SR: both at the lowest level only, memory-efficient (``SRUnet256``).
    Heads as the presets (8), head size as ours; residual blocks from ``--ref-*-blocks``,
    chosen so that the parameter counts match.
    """
    unet = stage.config.unet
    levels = len(unet.channel_mults)
    sr = unet.super_resolution
    attn = tuple(level == levels - 1 if sr else level > 0 for level in range(levels))
    blocks = args.ref_sr_blocks if sr else args.ref_base_blocks
    return {
        "dim": unet.base_channels,
        "dim_mults": tuple(unet.channel_mults),
        "num_resnet_blocks": blocks if len(blocks) > 1 else blocks[0],
        "layer_attns": attn,
        "layer_cross_attns": attn,
        "attn_heads": 8,
        "attn_dim_head": unet.attention_head_dim,
        "ff_mult": 2.0,
        "memory_efficient": sr,
        "lowres_cond": sr,
        "text_embed_dim": unet.text_embed_dim,
        "max_text_len": text_len,
    }


def build_reference(cascade: Any, args: argparse.Namespace, device: Any) -> tuple[Any, list[dict]]:
    """An ``Imagen`` of two ``Unet`` stages matched to ours; exits if a count is off."""
    import torch

    imagen_pytorch = import_imagen_pytorch()
    torch.manual_seed(args.seed)
    specs = [
        reference_unet_kwargs(s, args, cascade.text_encoder.max_length) for s in cascade.stages
    ]
    unets = [imagen_pytorch.Unet(**spec) for spec in specs]
    imagen = imagen_pytorch.Imagen(
        unets=unets, image_sizes=REF_IMAGE_SIZES, text_embed_dim=cascade.text_encoder.dim
    )
    imagen.to(device).eval()
    for i, (ours, theirs) in enumerate(zip(cascade.stages, imagen.unets, strict=True)):
        n_ours, n_theirs = count_parameters(ours.unet), count_parameters(theirs)
        if abs(n_theirs - n_ours) > args.param_tolerance * n_ours:
            raise SystemExit(
                f"stage {i}: imagen-pytorch Unet has {n_theirs:,} parameters, ours {n_ours:,} "
                f"(more than {args.param_tolerance:.0%} apart); change --ref-base-blocks / "
                "--ref-sr-blocks"
            )
    return imagen, specs


# --------------------------------------------------------------------------------------
# 4. The settings: each draws a batch of images and returns [B, 3, 128, 128]
# --------------------------------------------------------------------------------------


class Setting:
    """One row of the table: a name, how to draw images, and what was measured."""

    def __init__(self, name: str, steps: str, draw: Callable[[list[int]], Any], images: int):
        self.name, self.steps, self.draw, self.images = name, steps, draw, images
        self.seconds: list[float] = []  # per batch
        self.rows = 0  # U-Net batch rows, all stages, all timed images
        self.shape: list[int] | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "steps": self.steps,
            "images": self.images,
            "batch_seconds": self.seconds,
            "seconds_per_image": sum(self.seconds) / self.images,
            "unet_rows_per_image": self.rows / self.images,
            "output_shape": self.shape,
        }


def ours_setting(
    name: str,
    cascade: Any,
    prompts: list[str],
    sampler: str,
    steps: tuple[int, int],
    images: int,
    precision: str = "fp32",
) -> Setting:
    sampling = [
        s.replace(sampler=sampler, steps=k, precision=precision)
        for s, k in zip(cascade.sampling, steps, strict=True)
    ]

    def draw(seeds: list[int]) -> Any:
        return cascade.generate([prompts[s] for s in seeds], seeds, sampling=sampling)

    return Setting(name, f"{sampler} {steps[0]} / {steps[1]}", draw, images)


def reference_setting(
    name: str, imagen: Any, embeds: Any, mask: Any, cond_scale: float, images: int, skip: int
) -> Setting:
    import torch

    def draw(seeds: list[int]) -> Any:
        torch.manual_seed(seeds[0])  # imagen-pytorch draws from the global generator
        return imagen.sample(
            text_embeds=embeds[seeds],
            text_masks=mask[seeds],
            cond_scale=cond_scale,
            skip_steps=skip or None,  # --quick only: run the last few of the 1000 steps
            use_tqdm=False,
        )

    steps = 1000 - skip
    return Setting(name, f"ddpm {steps} / {steps}", draw, images)


def make_settings(
    args: argparse.Namespace,
    choices: list[dict[str, Any]],
    cascade: Any,
    prompts: list[str],
    imagen: Any,
    embeds: Any,
    mask: Any,
) -> list[Setting]:
    """Ours at each fast sampler's chosen steps, ours at DDPM-1000, the reference at two scales."""
    counts = (args.images, args.ddpm_images, args.ref_images)
    images, ddpm_images, ref_images = (1, 1, 1) if args.quick else counts
    ddpm_steps = 4 if args.quick else 1000
    settings = []
    fast = [(c, "fp32") for c in choices]
    if not args.no_bf16:  # the first fast setting again, U-Nets under bf16 autocast
        fast.append((choices[0], "bf16"))
    for c, precision in fast:
        base = 2 if args.quick else c["steps"]
        steps = (base, args.sr_steps or base)
        name = f"ours {c['sampler']}" + (" bf16" if precision == "bf16" else "")
        setting = ours_setting(name, cascade, prompts, c["sampler"], steps, images, precision)
        settings.append(setting)
    if not args.skip_ours_ddpm:
        steps = (ddpm_steps, ddpm_steps)
        settings.append(ours_setting("ours ddpm", cascade, prompts, "ddpm", steps, ddpm_images))
    guidance = cascade.sampling[0].guidance_weight
    for scale in (1.0, guidance):  # its default, then our shipped guidance weight
        name = f"imagen-pytorch cond_scale={scale:g}"
        skip = 1000 - ddpm_steps
        settings.append(reference_setting(name, imagen, embeds, mask, scale, ref_images, skip))
    return settings


def headline(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    """Setting ``name`` against the faster reference row, and that ratio's two factors."""
    by_name = {r["name"]: r for r in rows}
    fastest_ref = min(r["seconds_per_image"] for r in rows if r["side"] == "imagen-pytorch")
    ours = by_name[name]["seconds_per_image"]
    head = {"setting": name, "speedup": fastest_ref / ours}
    if "ours ddpm" in by_name:
        ddpm = by_name["ours ddpm"]["seconds_per_image"]
        head["fewer_steps"] = ddpm / ours
        head["per_step_speedup"] = fastest_ref / ddpm
        guided = [r for r in rows if r["side"] == "imagen-pytorch"][-1]  # our guidance weight
        head["per_step_guided"] = guided["seconds_per_image"] / ddpm
    return head


def run_rounds(
    settings: list[Setting],
    counter: ForwardCounter,
    unets: list[Any],
    batch_size: int,
    device: Any,
    log: Callable[[str], None],
) -> None:
    """Time every setting's batches, interleaved: batch j of each setting, then batch j + 1."""
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rounds = max(-(-s.images // batch_size) for s in settings)
    for j in range(rounds):
        for setting in settings:
            seeds = list(range(j * batch_size, min((j + 1) * batch_size, setting.images)))
            if not seeds:
                continue
            counter.rows = 0
            with counter.watch(unets):
                sync()
                start = time.perf_counter()
                out = setting.draw(seeds)
                sync()
                elapsed = time.perf_counter() - start
            setting.seconds.append(elapsed)
            setting.rows += counter.rows
            setting.shape = list(out.shape)
            expected = [len(seeds), 3, REF_IMAGE_SIZES[-1], REF_IMAGE_SIZES[-1]]
            if setting.shape != expected:
                raise SystemExit(
                    f"{setting.name}: output shape {setting.shape}, expected {expected}"
                )
            log(f"{setting.name}: images {seeds} in {elapsed:.2f} s ({counter.rows} U-Net rows)")


# --------------------------------------------------------------------------------------
# 5. The markdown section
# --------------------------------------------------------------------------------------


def render(result: dict[str, Any]) -> str:
    m, a = result["machine"], result["args"]
    rows = result["settings"]
    refs = [r for r in rows if r["side"] == "imagen-pytorch"]
    fastest_ref = min(refs, key=lambda r: r["seconds_per_image"])
    head = result["headline"]
    choice = result["choices"]
    lines = [
        SECTION_BEGIN,
        "## Cascade sampling: wall time per image at equal ShapeBench alignment",
        "",
        "The full shapes cascade (text -> 32x32 base -> 128x128 super-resolution), wall time per"
        " image, our bundled model against an imagen-pytorch `Imagen` cascade of the same size,"
        " in one process, side by side.",
        "",
        "**Why this is equal alignment.** imagen-pytorch samples by default with ancestral DDPM,"
        " 1000 steps per stage, on a cosine schedule: the same algorithm as our `ddpm` sampler at"
        " 1000 steps. Weights cannot be shared across the two codebases, so alignment is measured"
        " on our weights: part 5 of [results.md](results.md) (ShapeBench all-correct, base stage,"
        f" held-out compositions) has DDPM-1000 at {choice[0]['ddpm1000_accuracy']:.1%}, and the"
        " fast samplers at the smallest swept step count within"
        f" {a['tolerance'] * 100:g} points of it (or above):",
        "",
    ]
    for c in choice:
        swept = ", ".join(f"{k} steps {v:.1%}" for k, v in c["swept"].items())
        lines.append(
            f"- `{c['sampler']}`: **{c['steps']} steps** ({c['accuracy']:.1%}); swept: {swept}."
        )
    lines += [
        "",
        "The SR stage runs at the same step count"
        + (f" (here `--sr-steps {a['sr_steps']}`)." if a["sr_steps"] else ".")
        + " Step counts below the smallest swept one were not measured, so the chosen count is"
        " an upper bound on the smallest that keeps alignment. Guidance weight, thresholding and"
        " the SR noise-augmentation level are the model's shipped defaults (cascade.json:"
        f" guidance {result['ours_config']['guidance']}).",
        "",
        "The reference runs every `Imagen` / `sample` argument at its default (1000 DDPM steps per"
        " stage, cosine schedule, dynamic thresholding, low-res noise level 0.2) with our"
        " MiniLM text embeddings passed in precomputed (`text_embeds`, `text_masks`; our side"
        " encodes its prompts inside the timed call), random weights (sampling time does not"
        " depend on the weights' values), and two guidance settings: `cond_scale=1.0` (its"
        " default, one U-Net call per step) and our shipped weight (two calls per step). The"
        " headline ratio is taken against the faster of the two.",
        *(
            [
                "",
                "A row ending in `bf16` is our first fast setting again with `--precision bf16`"
                " (the U-Nets under bfloat16 autocast, the sampler in float32; its ShapeBench"
                ' alignment against float32 is measured under "Sampling in bf16" below). The'
                " headline stays float32.",
            ]
            if any(r["name"].endswith(" bf16") for r in result["settings"])
            else []
        ),
        "",
        f"### Results ({result['date']})",
        "",
        *(
            [
                "**--quick smoke run: step counts cut to a few; these numbers are no measurement.**",
                "",
            ]
            if a["quick"]
            else []
        ),
        f"Machine: {m['cpu']}; device {m['device']}; load average {result['load_before']} before,"
        f" {result['load_after']} after.",
        f"Versions: Python {m['python']}, torch {m['torch']}, imagen-pytorch"
        f" {m['imagen-pytorch']}, openimagen {m['openimagen']}.",
        f"Prompts: ShapeBench `heldout_compositions`, seeds 0..N-1, batch size {a['batch_size']}"
        " on both sides; U-Net evaluations are counted batch rows per image (a guided step is"
        " two: conditional and unconditional; ours runs them as one batched call, imagen-pytorch"
        " as two calls). SR noise augmentation at sampling: ours"
        f" {result['ours_config']['sampling'][-1]['noise_aug_level']:g} (shipped), imagen-pytorch"
        " 0.2 (its default).",
        "",
        "| setting | sampler, steps base / SR | U-Net evaluations per image | images |"
        " seconds per image | " + " | ".join(f"speedup vs {r['name']}" for r in refs) + " |",
        "|---|---|---|---|---|" + "---|" * len(refs),
    ]
    for r in rows:
        speedups = " | ".join(
            f"{ref['seconds_per_image'] / r['seconds_per_image']:.1f}x" for ref in refs
        )
        name = f"**{r['name']}**" if r["name"] == head["setting"] else r["name"]
        lines.append(
            f"| {name} | {r['steps']} | {r['unet_rows_per_image']:,.0f} | {r['images']} |"
            f" {r['seconds_per_image']:.2f} | {speedups} |"
        )
    met = head["speedup"] >= SPEEDUP_TARGET
    lines += [
        "",
        f"**Target (issue 8): >= {SPEEDUP_TARGET:g}x faster at equal alignment: "
        f"{'met' if met else 'NOT met'}** ({head['setting']} against {fastest_ref['name']}, the"
        f" faster reference setting: {head['speedup']:.1f}x).",
    ]
    if "per_step_speedup" in head:
        lines.append(
            f"That ratio is the product of fewer steps, {head['fewer_steps']:.1f}x (our DDPM-1000"
            f" against our fast sampler), and the cost of a step, {head['per_step_speedup']:.2f}x"
            f" ({fastest_ref['name']} against our DDPM-1000: the same algorithm and step count,"
            " though ours is guided and so runs twice the U-Net evaluations; at equal guidance,"
            f" against {refs[-1]['name']}, our step is {head['per_step_guided']:.2f}x faster)."
        )
    lines += [
        "",
        "Configs (openimagen `UNetConfig` per stage; imagen-pytorch `Unet` kwargs):",
        "",
        "```",
    ]
    for i, (ours, theirs) in enumerate(
        zip(result["ours_config"]["stages"], result["ref_config"]["unets"], strict=True)
    ):
        lines += [
            f"stage {i} openimagen     ({ours['parameters']:,} parameters): "
            + json.dumps(ours["unet"]),
            f"stage {i} imagen-pytorch ({theirs['parameters']:,} parameters): "
            + json.dumps(theirs["kwargs"]),
        ]
    lines += [
        "imagen-pytorch Imagen: " + json.dumps(result["ref_config"]["imagen"]),
        "```",
        "",
        "Reproduce (the defaults draw 4 images per fast setting of ours and 1 for each slow one:"
        " our DDPM-1000 and both reference settings, whose per-image time varies little over"
        f" 2,000 to 4,000 U-Net calls; this run took {result['run_minutes']:.1f} minutes):",
        "",
        "```",
        result["command"],
        "```",
        SECTION_END,
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------
# 6. Main
# --------------------------------------------------------------------------------------


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--images", type=int, default=4, help="images per fast setting of ours")
    p.add_argument("--ddpm-images", type=int, default=1, help="images for our DDPM-1000 setting")
    p.add_argument("--ref-images", type=int, default=1, help="images per imagen-pytorch setting")
    p.add_argument("--skip-ours-ddpm", action="store_true", help="leave out our DDPM-1000 row")
    p.add_argument(
        "--no-bf16",
        action="store_true",
        help="leave out the row of our first fast setting with --precision bf16",
    )
    p.add_argument("--batch-size", type=int, default=1, help="images per sampling call, all sides")
    p.add_argument(
        "--fast-samplers",
        type=lambda s: tuple(s.split(",")),
        default=("dpmpp_2m", "ddim"),
        help="our fast samplers (the first is the headline)",
    )
    p.add_argument(
        "--tolerance", type=float, default=0.02, help="allowed all-correct drop below DDPM-1000"
    )
    p.add_argument("--sr-steps", type=int, default=None, help="SR steps (default: the base's)")
    p.add_argument("--part5", type=Path, default=DEFAULT_PART5, help="the sampler sweep's JSON")
    p.add_argument(
        "--ref-base-blocks",
        type=_ints,
        default=(1,),
        help="imagen-pytorch base num_resnet_blocks (one, or one per level)",
    )
    p.add_argument(
        "--ref-sr-blocks", type=_ints, default=(1, 1, 1, 1), help="the same for the SR Unet"
    )
    p.add_argument(
        "--param-tolerance", type=float, default=0.10, help="largest parameter-count gap per stage"
    )
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    p.add_argument("--device", default="auto", help="'auto' (CUDA if present), 'cpu', 'cuda'")
    p.add_argument("--seed", type=int, default=0, help="seed of the reference's random weights")
    p.add_argument("--out", type=Path, default=None, help=f"markdown to update ({DEFAULT_OUT})")
    p.add_argument("--json-out", type=Path, default=None, help="also write raw results here")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 image, 2 fast steps, 4 DDPM steps each side; writes no docs "
        "unless --out is given (a harness check, not a measurement)",
    )
    args = p.parse_args(argv)
    for name in ("images", "ddpm_images", "ref_images", "batch_size", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.out is None and not args.quick:
        args.out = DEFAULT_OUT
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f} s] {msg}", flush=True)

    if importlib.util.find_spec("imagen_pytorch") is None:
        raise SystemExit(
            f"imagen-pytorch is not installed in {sys.executable}'s environment; run "
            "`bash benchmarks/run_cascade_benchmark.sh` (it creates the reference env "
            "benchmarks/.venv-ref with `bash benchmarks/setup_reference_env.sh`, then runs this "
            "script in it)"
        )
    choices = [choose_steps(read_part5(args.part5), s, args.tolerance) for s in args.fast_samplers]
    for c in choices:
        log(
            f"{c['sampler']}: {c['steps']} steps ({c['accuracy']:.1%} all-correct; DDPM-1000 "
            f"{c['ddpm1000_accuracy']:.1%}; swept {c['swept']})"
        )
    with offline_hf_home():
        import torch

        import openimagen
        from openimagen.device import resolve_device
        from openimagen.eval.shapebench import builtin_prompts

        torch.set_num_threads(args.threads)
        device = resolve_device(args.device)
        load_before = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
        cascade = openimagen.load(device=device)
        if len(cascade.stages) != 2 or cascade.resolution != REF_IMAGE_SIZES[-1]:
            raise SystemExit(f"expected the bundled 32 -> 128 cascade, got {cascade.model_id}")
        n_max = max(args.images, args.ddpm_images, args.ref_images)
        specs = builtin_prompts("heldout_compositions", n_max, seed=0)
        prompts = [s.prompt for s in specs]
        embeds, mask = cascade.encode(prompts)  # [N, L, D], [N, L]
        imagen, ref_specs = build_reference(cascade, args, device)
        log(
            "parameters per stage: ours "
            + ", ".join(f"{count_parameters(s.unet):,}" for s in cascade.stages)
            + "; imagen-pytorch "
            + ", ".join(f"{count_parameters(u):,}" for u in imagen.unets)
        )

        settings = make_settings(args, choices, cascade, prompts, imagen, embeds, mask)
        guidance = cascade.sampling[0].guidance_weight
        log("warm-up (2 steps per stage, not timed)")
        ours_setting("warm-up", cascade, prompts, "ddpm", (WARMUP_STEPS,) * 2, 1).draw([0])
        reference_setting("warm-up", imagen, embeds, mask, guidance, 1, 1000 - WARMUP_STEPS).draw(
            [0]
        )
        unets = [s.unet for s in cascade.stages] + list(imagen.unets)
        run_rounds(settings, ForwardCounter(), unets, args.batch_size, device, log)
        load_after = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())

        rows = [s.summary() | {"side": "imagen-pytorch" if "imagen" in s.name else "openimagen"}
                for s in settings]  # fmt: skip
        head = headline(rows, f"ours {choices[0]['sampler']}")
        refs = [r for r in rows if r["side"] == "imagen-pytorch"]
        for r in rows:
            log(
                f"{r['name']:32s} {r['steps']:18s} {r['seconds_per_image']:8.2f} s/image "
                f"{r['unet_rows_per_image']:6.0f} U-Net rows/image  "
                + "  ".join(
                    f"{ref['seconds_per_image'] / r['seconds_per_image']:.1f}x vs {ref['name']}"
                    for ref in refs
                )
            )
        log(f"headline: {head['setting']} {head['speedup']:.1f}x against the faster reference")
        shown = list(argv if argv is not None else sys.argv[1:])
        minutes = (time.perf_counter() - started) / 60
        result = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": machine_info(device, args.threads),
            "load_before": load_before,
            "load_after": load_after,
            "run_minutes": minutes,
            "choices": choices,
            "settings": rows,
            "headline": head,
            "ours_config": {
                "model": cascade.model_id,
                "guidance": guidance,
                "sampling": [s.to_dict() for s in cascade.sampling],
                "stages": [
                    {"parameters": count_parameters(s.unet), "unet": s.config.unet.to_dict()}
                    for s in cascade.stages
                ],
            },
            "ref_config": {
                "imagen": {
                    "image_sizes": list(REF_IMAGE_SIZES),
                    "text_embed_dim": cascade.text_encoder.dim,
                },
                "unets": [
                    {"parameters": count_parameters(u), "kwargs": spec}
                    for u, spec in zip(imagen.unets, ref_specs, strict=True)
                ],
            },
            "command": "bash benchmarks/run_cascade_benchmark.sh " + " ".join(shown),
        }
    if args.out is not None:
        write_section(args.out, render(result), SECTION_BEGIN, SECTION_END)
        log(f"wrote {args.out}")
    if args.json_out is not None:
        from openimagen.fileio import atomic_write_json

        atomic_write_json(args.json_out, result)
        log(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
