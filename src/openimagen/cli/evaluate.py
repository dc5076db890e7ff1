"""``openimagen eval shapebench`` and ``openimagen eval drawbench``.

ShapeBench scores exact text-image alignment on shapes-world prompts (docs/shapebench.md);
DrawBench draws every prompt's images with each model on the same seeds, resumably, for
the blind rating page of ``openimagen rate`` (docs/evaluation.md).
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


def register(subparsers: argparse._SubParsersAction) -> None:
    ev = add_command(subparsers, "eval", "evaluate a model")
    benchmarks = ev.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    _register_shapebench(benchmarks)
    _register_drawbench(benchmarks)


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
    db.add_argument("--batch-size", type=count(4096), default=8, help="images per forward pass")
    add_stages_option(db, "run only the first N stages of every model (default: all)")
    add_sampling_options(db)
    add_device_option(
        db, "'auto' (the process's GPU under torchrun, else the CPU), 'cpu', 'cuda' or 'cuda:N'"
    )
    add_quiet_option(db)
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
