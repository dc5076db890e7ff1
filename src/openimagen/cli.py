"""The ``openimagen`` command line: a thin layer over the public API.

Every subcommand prints user errors (:class:`OpenImagenError`) as one line on stderr and
exits with status 2; library code logs and never prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
from pathlib import Path

from openimagen import __version__
from openimagen.argtypes import ranged
from openimagen.errors import InvalidArgumentError, OpenImagenError

MAX_IMAGES = 64


# -- argument types: each names the option, the value and what is allowed ----------------------
def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)


# -- info ----------------------------------------------------------------------------------
def _cmd_info(args: argparse.Namespace) -> int:
    if args.preset:
        from openimagen.models.presets import describe_preset

        print(describe_preset(args.preset))
        return 0
    import torch

    import openimagen
    from openimagen.modelcard import read_model_card
    from openimagen.models.presets import list_presets

    if args.model:
        print(read_model_card(openimagen.resolve_model_dir(args.model)))
        return 0
    bundled = openimagen.BUNDLED_MODEL_DIR
    print(f"openimagen {__version__}")
    print(f"python     {platform.python_version()}")
    print(f"torch      {torch.__version__} (cuda available: {torch.cuda.is_available()})")
    print(f"bundled    {bundled if (bundled / 'cascade.json').is_file() else '(none yet)'}")
    print(f"presets    {', '.join(list_presets())}")
    if (bundled / "cascade.json").is_file():
        print("\n" + read_model_card(bundled))
    return 0


# -- generate ----------------------------------------------------------------------------------
def _sampling_overrides(args: argparse.Namespace) -> dict:
    names = {
        "steps": "steps",
        "guidance": "guidance_weight",
        "sampler": "sampler",
        "threshold": "threshold",
        "percentile": "dynamic_threshold_percentile",
        "noise_aug": "noise_aug_level",
        "eta": "eta",
        "precision": "precision",
    }
    return {
        field: getattr(args, arg) for arg, field in names.items() if getattr(args, arg) is not None
    }


def _print_path(path: Path) -> None:
    """Print a path; one whose name is not valid UTF-8 is printed as its raw bytes."""
    try:
        print(path)
    except UnicodeEncodeError:
        sys.stdout.flush()
        sys.stdout.buffer.write(os.fsencode(path) + b"\n")


def _cmd_generate(args: argparse.Namespace) -> int:
    from openimagen.text import check_prompt

    check_prompt(args.prompt, "PROMPT")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise InvalidArgumentError("--out", str(out), "a file name ending in .png")
    if out.exists() and out.is_dir():
        raise InvalidArgumentError("--out", str(out), "a file path, not a directory")

    import openimagen
    from openimagen.images import check_output_paths, output_paths, provenance, save_images
    from openimagen.policy import enforce_policy

    enforce_policy(args.prompt, args.policy)

    model_dir = openimagen.resolve_model_dir(args.model)
    overrides = _sampling_overrides(args)
    if args.dry_run:
        from openimagen.cascade import read_cascade_config

        config = read_cascade_config(model_dir)
        _check_stages(args.stages, len(config.stages))
        resolved = [e.sampling.replace(**overrides).to_dict() for e in config.stages]
        print(
            json.dumps(
                {
                    "model": str(model_dir),
                    "prompt": args.prompt,
                    "out": str(out),
                    "num_images": args.num_images,
                    "seed": args.seed,
                    "stages": resolved,
                },
                indent=2,
            )
        )
        return 0

    from tqdm import tqdm

    paths = output_paths(out, args.num_images)
    check_output_paths(
        paths,
        overwrite=args.overwrite,
        name="--out",
        value=str(out),
        overwrite_hint="pass --overwrite to replace it, or choose another --out",
    )
    cascade = openimagen.load(model_dir, device=args.device)
    _check_stages(args.stages, len(cascade.stages))
    sampling = [s.replace(**overrides) for s in cascade.sampling]
    seeds = [args.seed + i for i in range(args.num_images)]
    with tqdm(
        total=sum(s.steps for s in sampling[: args.stages or None]),
        desc="sampling",
        unit="step",
        disable=args.quiet,
        file=sys.stderr,
    ) as bar:

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        images = cascade.generate(
            [args.prompt] * len(seeds),
            seeds,
            sampling=sampling,
            num_stages=args.stages,
            progress=progress,
        )
    meta = [provenance(args.prompt, seed, cascade.model_id, sampling) for seed in seeds]
    try:
        written = save_images(images, out, meta, overwrite=args.overwrite)
    except FileExistsError as exc:  # created by someone else while we sampled
        raise InvalidArgumentError(
            "--out", str(out), "a path where no file exists yet",
            f"{exc.filename} appeared while sampling; nothing was written. Pass --overwrite "
            "to replace it, or choose another --out.",
        ) from None  # fmt: skip
    except OSError as exc:
        count = f"none of the {len(paths)} files was" if len(paths) > 1 else "it was not"
        raise OSError(exc.errno, f"{exc.strerror or exc}; {count} written", str(out)) from exc
    for path in written:
        _print_path(path)
    return 0


def _check_stages(stages: int | None, count: int) -> None:
    if stages is not None and stages > count:
        raise InvalidArgumentError(
            "--stages", stages, f"an integer from 1 to {count} (the stages of this model)"
        )


# -- encode-text -----------------------------------------------------------------------------
def _read_prompts(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidArgumentError("--prompts", str(path), "a readable text or JSONL file") from exc
    prompts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix == ".jsonl":
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgumentError(
                    f"{path} line {number}", line[:60], "valid JSON"
                ) from exc
            if not isinstance(record, dict) or not isinstance(record.get("prompt"), str):
                raise InvalidArgumentError(
                    f"{path} line {number}", line[:60], 'an object with a string "prompt" field'
                )
            prompts.append(record["prompt"])
        else:
            prompts.append(line.strip())
    return prompts


def _cmd_encode_text(args: argparse.Namespace) -> int:
    from openimagen.text import TextEmbeddingCache, fill_cache, load_text_encoder

    prompts = list(args.text)
    if args.prompts:
        prompts += _read_prompts(Path(args.prompts))
    if not prompts:
        raise InvalidArgumentError("TEXT/--prompts", "nothing", "at least one prompt")
    encoder = load_text_encoder(args.encoder, max_length=args.max_length, device=args.device)
    cache = TextEmbeddingCache(args.cache)
    added = fill_cache(encoder, prompts, cache, batch_size=args.batch_size, progress=not args.quiet)
    print(f"{added} new, {len(set(prompts)) - added} already cached -> {args.cache}")
    return 0


# -- train / export ----------------------------------------------------------------------------
def _cmd_train(args: argparse.Namespace) -> int:
    from openimagen.train import train

    result = train(args.config, output_dir=args.output, resume=args.resume, dry_run=args.dry_run)
    if args.dry_run:
        resolved = {
            "config": result.config.to_dict(),
            "stage_config": result.stage_config.to_dict(),
        }
        print(json.dumps(resolved, indent=2))
        return 0
    if result.checkpoint is None and result.resumed_from is not None:  # nothing left to do
        print(
            f"already at step {result.step} of {result.config.train.steps}, nothing to train; "
            f"checkpoint: {result.resumed_from}"
        )
        return 0
    print(f"trained to step {result.step}; checkpoint: {result.checkpoint}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    import torch

    from openimagen.train import export_stage

    out = export_stage(
        args.checkpoint,
        args.model,
        sampling_overrides=_sampling_overrides(args),
        dtype=torch.float16 if args.fp16 else torch.float32,
        overwrite=args.overwrite,
    )
    print(out)
    return 0


# -- eval ----------------------------------------------------------------------------------------
def _cmd_eval_shapebench(args: argparse.Namespace) -> int:
    import torch

    import openimagen
    from openimagen.eval.shapebench import builtin_prompts, load_prompt_file, run_shapebench

    if args.prompts:
        specs = load_prompt_file(args.prompts)
    else:
        specs = builtin_prompts(args.split, args.num_prompts, args.seed)
    cascade = openimagen.load(args.model, device=args.device)
    sampling = [s.replace(**_sampling_overrides(args)) for s in cascade.sampling]

    def generate(prompts: list[str], seeds: list[int]) -> torch.Tensor:
        return cascade.generate(prompts, seeds, sampling=sampling, num_stages=args.stages)

    stages = len(cascade.stages) if args.stages is None else min(args.stages, len(cascade.stages))
    settings = {
        "model": cascade.model_id,
        "prompts": str(args.prompts) if args.prompts else f"builtin:{args.split}",
        "stages": stages,
        "sampling": [s.to_dict() for s in sampling[:stages]],
        "software": f"openimagen {__version__}",
    }
    report = run_shapebench(
        generate,
        specs,
        args.out,
        num_per_prompt=args.num_per_prompt,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=not args.quiet,
        settings=settings,
    )
    summary = report["summary"]
    rows = [("all_correct", summary["all_correct"]), *summary["attributes"].items()]
    for name, rate in rows:
        if rate["accuracy"] is not None:
            low, high = rate["ci95"]
            print(
                f"{name:12s} {rate['accuracy']:6.1%}  95% CI [{low:.1%}, {high:.1%}]"
                f"  ({rate['correct']}/{rate['total']})"
            )
    print(f"report: {Path(args.out) / 'report.json'}  page: {Path(args.out) / 'index.html'}")
    if args.record:
        from openimagen.modelcard import record_evaluation

        key = Path(args.prompts).stem if args.prompts else args.split
        if stages < len(cascade.stages):
            key += f" (first {stages} of {len(cascade.stages)} stages)"
        card = record_evaluation(openimagen.resolve_model_dir(args.model), key, report)
        print(f"recorded as {key!r} in the model card: {card}")
    return 0


def _add_sampling_options(p: argparse.ArgumentParser, scope: str = "every stage") -> None:
    """The sampling overrides shared by generate, eval and export (see :func:`_sampling_overrides`)."""
    p.add_argument(
        "--steps",
        type=ranged(int, 1, 10000, "an integer in [1, 10000]"),
        default=None,
        help=f"sampling steps for {scope} (default: the model's)",
    )
    p.add_argument(
        "--guidance",
        type=ranged(float, 0.0, 100.0, "a number in [0, 100]"),
        default=None,
        help="classifier-free guidance weight w; 1 = no guidance",
    )
    p.add_argument(
        "--sampler",
        choices=["ddpm", "ddim", "dpmpp_2m"],
        default=None,
        help=f"sampler for {scope} (default: the model's)",
    )
    p.add_argument(
        "--threshold",
        choices=["none", "static", "dynamic"],
        default=None,
        help="x0 thresholding (default: the model's)",
    )
    p.add_argument(
        "--percentile",
        type=ranged(float, 1e-9, 100.0, "a number in (0, 100]"),
        default=None,
        help="dynamic thresholding percentile (default: the model's)",
    )
    p.add_argument(
        "--noise-aug",
        type=ranged(float, 0.0, 1.0, "a number in [0, 1]"),
        default=None,
        help="SR noise-augmentation level at sampling time",
    )
    p.add_argument(
        "--eta",
        type=ranged(float, 0.0, 1.0, "a number in [0, 1]"),
        default=None,
        help="DDIM stochasticity: 0 = deterministic DDIM, 1 = DDPM-like (ddim sampler only)",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        default=None,
        help="U-Net forward precision: bf16 autocast is faster on GPUs and bf16-capable CPUs",
    )


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openimagen",
        description="Imagen-style text-to-image diffusion: generate, train, evaluate, serve.",
        formatter_class=_formatter,
    )
    parser.add_argument("--version", action="version", version=f"openimagen {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from openimagen.serve.cli import register as register_serve

    info = sub.add_parser(
        "info", help="show versions, presets, or one preset's size", formatter_class=_formatter
    )
    info.add_argument(
        "--preset",
        metavar="NAME",
        default=None,
        help="describe a U-Net preset: sizes and parameter count",
    )
    info.add_argument(
        "--model", metavar="DIR", default=None, help="print this model directory's model card"
    )
    info.set_defaults(func=_cmd_info)

    gen = sub.add_parser("generate", help="draw images for a prompt", formatter_class=_formatter)
    gen.add_argument("prompt", metavar="PROMPT", help="the text prompt")
    gen.add_argument(
        "--model", metavar="DIR", default=None, help="model directory (default: the bundled model)"
    )
    gen.add_argument(
        "--out",
        metavar="FILE",
        default="openimagen.png",
        help="output PNG; several images become FILE-0.png, ... plus FILE-grid.png",
    )
    gen.add_argument(
        "--num-images",
        "-n",
        type=ranged(int, 1, MAX_IMAGES, f"an integer in [1, {MAX_IMAGES}]"),
        default=1,
        help="images to draw; image i uses seed SEED+i",
    )
    gen.add_argument(
        "--seed",
        type=ranged(int, 0, 2**63 - 1, "an integer >= 0"),
        default=0,
        help="random seed of the first image",
    )
    _add_sampling_options(gen)
    gen.add_argument(
        "--stages",
        type=ranged(int, 1, 16, "an integer >= 1"),
        default=None,
        help="run only the first N stages (default: all)",
    )
    gen.add_argument(
        "--policy", metavar="FILE", default=None, help="prompt block list (docs/serving.md)"
    )
    gen.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    gen.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files (default: refuse, before sampling)",
    )
    gen.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    gen.add_argument(
        "--dry-run",
        action="store_true",
        help="print the resolved settings and exit without sampling",
    )
    gen.set_defaults(func=_cmd_generate)

    enc = sub.add_parser(
        "encode-text", help="fill the text-embedding cache", formatter_class=_formatter
    )
    enc.add_argument("text", nargs="*", metavar="TEXT", help="prompts to encode")
    enc.add_argument(
        "--prompts",
        metavar="FILE",
        default=None,
        help="a .txt file (one prompt a line) or .jsonl file with a 'prompt' field",
    )
    enc.add_argument("--cache", metavar="DIR", required=True, help="cache directory")
    enc.add_argument(
        "--encoder",
        default="minilm",
        help="text encoder: 'minilm' (bundled), a local directory or a hub id",
    )
    enc.add_argument(
        "--max-length",
        type=ranged(int, 1, 4096, "an integer in [1, 4096]"),
        default=64,
        help="tokens kept per prompt; longer prompts are truncated",
    )
    enc.add_argument(
        "--batch-size",
        type=ranged(int, 1, 4096, "an integer in [1, 4096]"),
        default=64,
        help="prompts encoded per forward pass",
    )
    enc.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    enc.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    enc.set_defaults(func=_cmd_encode_text)

    register_serve(sub)  # serve, verify

    trn = sub.add_parser(
        "train", help="train one stage of a cascade from a TOML config", formatter_class=_formatter
    )
    trn.add_argument(
        "config", metavar="CONFIG", help="training config (TOML); see docs/training.md"
    )
    trn.add_argument(
        "--output", metavar="DIR", default=None, help="output directory (default: runs/<stem>)"
    )
    trn.add_argument(
        "--resume",
        metavar="auto|CHECKPOINT",
        default=None,
        help="continue from the newest intact checkpoint in --output, or from this one",
    )
    trn.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    trn.set_defaults(func=_cmd_train)

    exp = sub.add_parser(
        "export",
        help="put a trained stage (EMA weights) into a model directory",
        formatter_class=_formatter,
    )
    exp.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="a training output directory or checkpoint"
    )
    exp.add_argument(
        "model", metavar="MODEL_DIR", help="model directory to create or add the stage to"
    )
    exp.add_argument("--fp16", action="store_true", help="store the weights in float16")
    exp.add_argument(
        "--overwrite", action="store_true", help="replace a non-model directory at MODEL_DIR"
    )
    _add_sampling_options(exp, scope="this stage's default sampling")
    exp.set_defaults(func=_cmd_export)

    ev = sub.add_parser("eval", help="evaluate a model", formatter_class=_formatter)
    ev_sub = ev.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    sb = ev_sub.add_parser(
        "shapebench",
        help="exact text-image alignment on shapes-world prompts (docs/shapebench.md)",
        formatter_class=_formatter,
    )
    sb.add_argument(
        "--model", metavar="DIR", default=None, help="model directory (default: the bundled model)"
    )
    sb.add_argument(
        "--prompts",
        metavar="FILE.jsonl",
        default=None,
        help="spec file (default: built-in prompts)",
    )
    sb.add_argument(
        "--split",
        choices=["train", "heldout_compositions", "paraphrase"],
        default="heldout_compositions",
        help="split of the built-in prompts",
    )
    sb.add_argument(
        "--num-prompts",
        type=ranged(int, 1, 100000, "an integer >= 1"),
        default=50,
        help="built-in prompts to draw",
    )
    sb.add_argument(
        "--num-per-prompt",
        type=ranged(int, 1, 1000, "an integer in [1, 1000]"),
        default=4,
        help="images per prompt",
    )
    sb.add_argument(
        "--seed", type=ranged(int, 0, 2**62, "an integer >= 0"), default=0, help="first seed"
    )
    sb.add_argument(
        "--batch-size",
        type=ranged(int, 1, 4096, "an integer >= 1"),
        default=16,
        help="images per batch",
    )
    sb.add_argument(
        "--stages",
        type=ranged(int, 1, 16, "an integer >= 1"),
        default=None,
        help="run only the first N stages (default: all)",
    )
    sb.add_argument(
        "--out", metavar="DIR", default="shapebench", help="report directory (JSON + HTML)"
    )
    _add_sampling_options(sb)
    sb.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")
    sb.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    sb.add_argument(
        "--record",
        action="store_true",
        help="store the summary in the model directory's evaluation.json and model card",
    )
    sb.set_defaults(func=_cmd_eval_shapebench)

    from openimagen.eval.cli import register as register_eval  # eval drawbench, rate

    register_eval(
        sub,
        ev_sub,
        formatter=_formatter,
        add_sampling_options=_add_sampling_options,
        sampling_overrides=_sampling_overrides,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except OpenImagenError as exc:
        print(f"openimagen {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"openimagen {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if isinstance(exc, BrokenPipeError):
            # the reader went away (`openimagen ... | head`): stop quietly, as Unix tools do
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"openimagen {args.command}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
