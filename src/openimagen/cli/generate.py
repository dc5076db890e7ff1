"""``openimagen generate``: draw images for a prompt into PNG files with provenance.

Before any sampling it checks the prompt, the prompt policy, ``--stages`` against the model
and that the output files do not exist (``--overwrite`` to replace them) and can be written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from openimagen.cli.options import (
    MAX_IMAGES,
    add_c2pa_options,
    add_command,
    add_device_option,
    add_memory_options,
    add_model_option,
    add_quiet_option,
    add_sampling_options,
    add_seed_option,
    add_stages_option,
    check_stages,
    count,
    load_options,
    sampling_overrides,
)
from openimagen.errors import InvalidArgumentError


def register(subparsers: argparse._SubParsersAction) -> None:
    gen = add_command(subparsers, "generate", "draw images for a prompt")
    gen.add_argument("prompt", metavar="PROMPT", help="the text prompt")
    add_model_option(gen)
    gen.add_argument(
        "--out", metavar="FILE", default="openimagen.png",
        help="output PNG; several images become FILE-0.png, ... plus FILE-grid.png",
    )  # fmt: skip
    gen.add_argument(
        "--num-images", "-n", type=count(MAX_IMAGES), default=1,
        help="images to draw; image i uses seed SEED+i",
    )  # fmt: skip
    add_seed_option(gen, "random seed of the first image")
    add_sampling_options(gen)
    add_stages_option(gen)
    gen.add_argument(
        "--policy", metavar="FILE", default=None, help="prompt block list (docs/serving.md)"
    )
    add_device_option(gen)
    add_c2pa_options(gen)
    add_memory_options(gen)
    gen.add_argument(
        "--overwrite", action="store_true",
        help="replace existing output files (default: refuse, before sampling)",
    )  # fmt: skip
    add_quiet_option(gen)
    gen.add_argument(
        "--dry-run", action="store_true",
        help="print the resolved settings and exit without sampling",
    )  # fmt: skip
    gen.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from openimagen.text import check_prompt

    check_prompt(args.prompt, "PROMPT")
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise InvalidArgumentError("--out", str(out), "a file name ending in .png")
    if out.exists() and out.is_dir():
        raise InvalidArgumentError("--out", str(out), "a file path, not a directory")

    import openimagen
    from openimagen.policy import enforce_policy

    enforce_policy(args.prompt, args.policy)
    model_dir = openimagen.resolve_model_dir(args.model)
    if args.dry_run:
        return _dry_run(args, model_dir, out)
    from openimagen.images import check_output_paths, output_paths

    paths = output_paths(out, args.num_images)
    check_output_paths(
        paths, overwrite=args.overwrite, name="--out", value=str(out),
        overwrite_hint="pass --overwrite to replace it, or choose another --out",
    )  # fmt: skip
    credentials = _content_credentials(args, model_dir)  # a bad cert fails before loading
    cascade = openimagen.load(model_dir, device=args.device, **load_options(args))
    check_stages(args.stages, len(cascade.stages))
    overrides = sampling_overrides(args)
    sampling = [s.replace(**overrides) for s in cascade.sampling]
    seeds = [args.seed + i for i in range(args.num_images)]
    images = _sample(cascade, args, sampling, seeds)
    saved = _save(images, out, args, cascade.model_id, sampling, seeds, len(paths), credentials)
    for path in saved:
        _print_path(path)
    return 0


def _content_credentials(args: argparse.Namespace, model_dir: Path):
    """The C2PA signer of this run's PNGs, named after the model directory and its files."""
    from openimagen.cascade import read_cascade_config
    from openimagen.provenance import ContentCredentials, model_version

    return ContentCredentials.from_settings(
        model_name=read_cascade_config(model_dir).model_id or model_dir.name,
        model_version=model_version(model_dir),
        cert=args.c2pa_cert, key=args.c2pa_key, tsa_url=args.c2pa_tsa_url,
        include_prompt=args.c2pa_include_prompt,
    )  # fmt: skip


def _dry_run(args: argparse.Namespace, model_dir: Path, out: Path) -> int:
    """Print the settings a run would use (from cascade.json alone; nothing is loaded)."""
    from openimagen.cascade import read_cascade_config

    config = read_cascade_config(model_dir)
    check_stages(args.stages, len(config.stages))
    overrides = sampling_overrides(args)
    resolved = [e.sampling.replace(**overrides).to_dict() for e in config.stages]
    c2pa = {"cert": args.c2pa_cert, "key": args.c2pa_key, "tsa_url": args.c2pa_tsa_url,
            "include_prompt": args.c2pa_include_prompt}  # fmt: skip
    print(json.dumps({"model": str(model_dir), "prompt": args.prompt, "out": str(out),
                      "num_images": args.num_images, "seed": args.seed, "stages": resolved,
                      "c2pa": c2pa}, indent=2))  # fmt: skip
    return 0


def _sample(cascade, args: argparse.Namespace, sampling: list, seeds: list[int]):
    from tqdm import tqdm

    total = sum(s.steps for s in sampling[: args.stages or None])
    with tqdm(total=total, desc="sampling", unit="step", disable=args.quiet,
              file=sys.stderr) as bar:  # fmt: skip

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        return cascade.generate(
            [args.prompt] * len(seeds), seeds, sampling=sampling, num_stages=args.stages,
            progress=progress,
        )  # fmt: skip


def _save(images, out: Path, args, model_id: str, sampling: list, seeds: list[int],
          files: int, credentials) -> list[Path]:  # fmt: skip
    """Write every file or none; errors name --out and say what to do."""
    from openimagen.images import provenance, save_images

    meta = [provenance(args.prompt, seed, model_id, sampling) for seed in seeds]
    try:
        return save_images(images, out, meta, overwrite=args.overwrite, credentials=credentials)
    except FileExistsError as exc:  # created by someone else while we sampled
        raise InvalidArgumentError(
            "--out", str(out), "a path where no file exists yet",
            f"{exc.filename} appeared while sampling; nothing was written. Pass --overwrite "
            "to replace it, or choose another --out.",
        ) from None  # fmt: skip
    except OSError as exc:
        written = f"none of the {files} files was" if files > 1 else "it was not"
        raise OSError(exc.errno, f"{exc.strerror or exc}; {written} written", str(out)) from exc


def _print_path(path: Path) -> None:
    """Print a path; one whose name is not valid UTF-8 is printed as its raw bytes."""
    try:
        print(path)
    except UnicodeEncodeError:
        sys.stdout.flush()
        sys.stdout.buffer.write(os.fsencode(path) + b"\n")
