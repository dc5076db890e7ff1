"""``openimagen eval shapebench``, ``openimagen eval drawbench`` and ``openimagen eval coco``.

ShapeBench scores exact text-image alignment on shapes-world prompts (docs/shapebench.md);
DrawBench draws every prompt's images with each model on the same seeds, resumably, for
the blind rating page of ``openimagen rate``; COCO draws captions of the validation set,
generates one image each (resumably, with the DrawBench runner) and reports FID through
torch-fidelity and CLIP score through open_clip (docs/evaluation.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from openimagen.cli.options import (
    add_command,
    add_device_option,
    add_memory_options,
    add_model_option,
    add_quiet_option,
    add_sampling_options,
    add_seed_option,
    add_stages_option,
    count,
    load_options,
    ranged,
    sampling_overrides,
)
from openimagen.version import __version__

# the runner's commands: under torchrun each process takes its own GPU
RUNNER_DEVICE_HELP = (
    "'auto' (the process's GPU under torchrun, else the CPU), 'cpu', 'cuda' or 'cuda:N'"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    ev = add_command(subparsers, "eval", "evaluate a model")
    benchmarks = ev.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _register_shapebench(benchmarks)
    _register_drawbench(benchmarks)
    _register_coco(benchmarks)


# -- shapebench ----------------------------------------------------------------------------------
def _register_shapebench(benchmarks: argparse._SubParsersAction) -> None:
    sb = add_command(
        benchmarks, "shapebench",
        "exact text-image alignment on shapes-world prompts (docs/shapebench.md)",
    )  # fmt: skip
    add_model_option(sb)
    sb.add_argument(
        "--prompts", metavar="FILE.jsonl", default=None,
        help="spec file (default: built-in prompts)",
    )  # fmt: skip
    sb.add_argument(
        "--split", choices=["train", "heldout_compositions", "paraphrase"],
        default="heldout_compositions", help="split of the built-in prompts",
    )  # fmt: skip
    sb.add_argument(
        "--num-prompts", type=ranged(int, 1, 100000, "an integer >= 1"), default=50,
        help="built-in prompts to draw",
    )  # fmt: skip
    sb.add_argument("--num-per-prompt", type=count(1000), default=4, help="images per prompt")
    add_seed_option(sb, "first seed")
    sb.add_argument(
        "--batch-size", type=ranged(int, 1, 4096, "an integer >= 1"), default=16,
        help="images per batch",
    )  # fmt: skip
    add_stages_option(sb)
    sb.add_argument(
        "--out", metavar="DIR", default="shapebench", help="report directory (JSON + HTML)"
    )
    add_sampling_options(sb)
    add_device_option(sb)
    add_memory_options(sb)
    add_quiet_option(sb)
    sb.add_argument(
        "--record", action="store_true",
        help="store the summary in the model directory's evaluation.json and model card",
    )  # fmt: skip
    sb.set_defaults(func=run_shapebench)


def run_shapebench(args: argparse.Namespace) -> int:
    import openimagen
    from openimagen.eval.shapebench import builtin_prompts, load_prompt_file
    from openimagen.eval.shapebench import run_shapebench as run

    if args.prompts:
        specs = load_prompt_file(args.prompts)
    else:
        specs = builtin_prompts(args.split, args.num_prompts, args.seed)
    cascade = openimagen.load(args.model, device=args.device, **load_options(args))
    sampling = [s.replace(**sampling_overrides(args)) for s in cascade.sampling]

    def generate(prompts: list[str], seeds: list[int]):
        return cascade.generate(prompts, seeds, sampling=sampling, num_stages=args.stages)

    stages = len(cascade.stages) if args.stages is None else min(args.stages, len(cascade.stages))
    settings = {
        "model": cascade.model_id,
        "prompts": str(args.prompts) if args.prompts else f"builtin:{args.split}",
        "stages": stages,
        "sampling": [s.to_dict() for s in sampling[:stages]],
        "software": f"openimagen {__version__}",
    }
    report = run(
        generate, specs, args.out, num_per_prompt=args.num_per_prompt, seed=args.seed,
        batch_size=args.batch_size, progress=not args.quiet, settings=settings,
    )  # fmt: skip
    _print_summary(report["summary"])
    print(f"report: {Path(args.out) / 'report.json'}  page: {Path(args.out) / 'index.html'}")
    if args.record:
        from openimagen.modelcard import record_evaluation

        key = Path(args.prompts).stem if args.prompts else args.split
        if stages < len(cascade.stages):
            key += f" (first {stages} of {len(cascade.stages)} stages)"
        card = record_evaluation(openimagen.resolve_model_dir(args.model), key, report)
        print(f"recorded as {key!r} in the model card: {card}")
    return 0


def _print_summary(summary: dict) -> None:
    rows = [("all_correct", summary["all_correct"]), *summary["attributes"].items()]
    for name, rate in rows:
        if rate["accuracy"] is not None:
            low, high = rate["ci95"]
            print(
                f"{name:12s} {rate['accuracy']:6.1%}  95% CI [{low:.1%}, {high:.1%}]"
                f"  ({rate['correct']}/{rate['total']})"
            )


def _add_runner_options(parser: argparse.ArgumentParser, stages_help: str | None = None) -> None:
    """The options of the commands that draw through the DrawBench runner (drawbench, coco)."""
    parser.add_argument("--batch-size", type=count(4096), default=8, help="images per forward pass")
    add_stages_option(parser, stages_help)
    add_sampling_options(parser)
    add_device_option(parser, RUNNER_DEVICE_HELP)
    add_quiet_option(parser)


# -- drawbench -----------------------------------------------------------------------------------
def _register_drawbench(benchmarks: argparse._SubParsersAction) -> None:
    db = add_command(
        benchmarks, "drawbench",
        "draw DrawBench images with one or more models, resumably (docs/evaluation.md)",
        description="Draw every prompt's images with each model, on the same seeds for every "
        "model. Run the same command again to continue an interrupted run; several "
        "processes (torchrun / accelerate launch) split the work.",
    )  # fmt: skip
    db.add_argument(
        "--model", metavar="[NAME=]DIR", action="append", required=True,
        help="a model directory, repeated for each model; NAME labels its images and votes "
        "(default: the directory's name)",
    )  # fmt: skip
    db.add_argument("--out", metavar="DIR", required=True, help="run directory (new or a run's)")
    db.add_argument(
        "--prompts", metavar="FILE", default="drawbench",
        help="'drawbench' (the 200 shipped prompts) or a .csv (Prompt,Category) / .jsonl file",
    )  # fmt: skip
    db.add_argument(
        "--num-prompts", type=ranged(int, 1, 10**6, "an integer >= 1"), default=None,
        help="only this many prompts, taken round-robin over categories (default: all)",
    )  # fmt: skip
    db.add_argument(
        "--num-per-prompt", type=count(1000), default=8,
        help="images per prompt and model (the paper's sets have 8)",
    )  # fmt: skip
    add_seed_option(db, "base seed; image k of prompt i uses SEED + 1000*i + k with every model")
    _add_runner_options(db, "run only the first N stages of every model (default: all)")
    db.set_defaults(func=run_drawbench)


def run_drawbench(args: argparse.Namespace) -> int:
    from openimagen.eval.drawbench import ModelSpec
    from openimagen.eval.drawbench import run_drawbench as run
    from openimagen.eval.prompts import load_prompt_suite

    result = run(
        [ModelSpec.parse(text) for text in args.model],
        load_prompt_suite(args.prompts),
        args.out,
        num_prompts=args.num_prompts,
        num_per_prompt=args.num_per_prompt,
        seed=args.seed,
        batch_size=args.batch_size,
        sampling_overrides=sampling_overrides(args),
        num_stages=args.stages,
        device=args.device,
        progress=not args.quiet,
    )
    if result["manifest"] is not None:  # the main process
        print(f"{result['images']} images, {result['written']} drawn by this process; "
              f"manifest: {result['manifest']}")  # fmt: skip
    return 0


# -- coco ----------------------------------------------------------------------------------------
def _register_coco(benchmarks: argparse._SubParsersAction) -> None:
    co = add_command(
        benchmarks, "coco",
        "COCO zero-shot FID-30K and CLIP score (needs the eval environment: make eval-env)",
        description="Draw --num captions of the COCO validation set at random, generate one "
        "image per caption (resumable: run the same command again to continue), crop generated "
        "and reference images to their centred square and resize them to 256x256, and report "
        "FID (torch-fidelity) and CLIP score (open_clip) from local weights files. "
        "docs/evaluation.md has the protocol.",
    )  # fmt: skip
    co.add_argument("--model", metavar="[NAME=]DIR", required=True, help="model directory")
    co.add_argument(
        "--captions", metavar="FILE", required=True,
        help="COCO captions file (annotations/captions_val2014.json)",
    )  # fmt: skip
    co.add_argument(
        "--images", metavar="DIR", required=True, help="folder of its images (val2014/)"
    )
    co.add_argument("--out", metavar="DIR", required=True, help="run directory (new or a run's)")
    co.add_argument(
        "--inception-weights", metavar="FILE", required=True,
        help="torch-fidelity's InceptionV3 weights (weights-inception-2015-12-05-6726825d.pth)",
    )  # fmt: skip
    co.add_argument(
        "--clip-checkpoint", metavar="FILE", required=True,
        help="open_clip checkpoint of --clip-model (e.g. open_clip_model.safetensors)",
    )  # fmt: skip
    co.add_argument(
        "--clip-model", metavar="NAME", default="ViT-L-14-quickgelu",
        help="open_clip architecture, or the path of a model config .json "
        "(ViT-L-14-quickgelu: OpenAI's ViT-L/14)",
    )  # fmt: skip
    co.add_argument(
        "--num", type=ranged(int, 2, 10**6, "an integer >= 2"), default=30000,
        help="captions drawn, one image each (the paper: 30000)",
    )  # fmt: skip
    co.add_argument(
        "--caption-seed", type=ranged(int, 0, 2**63 - 1, "an integer >= 0"), default=0,
        help="seed of the caption draw (the same captions for every model compared)",
    )  # fmt: skip
    add_seed_option(co, "base seed of the images; caption i uses SEED + 1000*i")
    co.add_argument(
        "--reference", choices=["all", "drawn"], default="all",
        help="reference images: all of the captions file (the paper's) or the drawn ones",
    )  # fmt: skip
    co.add_argument(
        "--metric-batch-size", type=count(4096), default=64,
        help="images per batch of the Inception and CLIP networks",
    )  # fmt: skip
    _add_runner_options(co)
    co.set_defaults(func=run_coco)


def run_coco(args: argparse.Namespace) -> int:
    from openimagen.eval.coco import PAPER_NUM
    from openimagen.eval.coco import run_coco as run
    from openimagen.eval.drawbench import ModelSpec

    results = run(
        ModelSpec.parse(args.model), args.captions, args.images, args.out,
        inception_weights=args.inception_weights, clip_checkpoint=args.clip_checkpoint,
        clip_model=args.clip_model, num=args.num, caption_seed=args.caption_seed,
        seed=args.seed, reference=args.reference, batch_size=args.batch_size,
        metric_batch_size=args.metric_batch_size, sampling_overrides=sampling_overrides(args),
        num_stages=args.stages, device=args.device, progress=not args.quiet,
    )  # fmt: skip
    if results is None:  # not the first process
        return 0
    name = "FID-30K" if results["num_generated"] == PAPER_NUM else "FID"
    size = results["protocol"]["image_size"]
    print(f"COCO {name}: {results['fid']:.3f}  ({results['num_generated']} generated vs "
          f"{results['num_reference']} reference images, {size}x{size}, torch-fidelity "
          f"{results['protocol']['fid']['feature_extractor']})")  # fmt: skip
    print(f"CLIP score: {results['clip_score']:.3f}  ({results['clip']['model']}, "
          f"100 x mean max(cos, 0) over {results['num_generated']} image-caption pairs)")  # fmt: skip
    print(f"results: {Path(args.out) / 'results.json'}")
    return 0
