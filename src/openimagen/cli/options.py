"""What every command shares: value types, the help style, and the options several declare.

Every value type names the option, the value and what is allowed; the sampling options take
their choices and ranges from :mod:`openimagen.cascade.sampling` (the one source), so the
command line accepts exactly what a :class:`~openimagen.cascade.SamplingConfig` does. This
module imports only light modules: torch loads when a command runs.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from openimagen.cascade.sampling import CHOICES, LIMITS, MAX_SEED, Limit
from openimagen.errors import InvalidArgumentError
from openimagen.provenance.credentials import CERT_ENV, KEY_ENV, TSA_URL_ENV

#: Images one run draws at most (`generate -n`, the server's `--max-n`).
MAX_IMAGES = 64
DEFAULT_HOST = "127.0.0.1"
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


# -- value types -------------------------------------------------------------------------------
def ranged(kind: type, low: float | None, high: float | None, what: str) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind(text)`` within [low, high]; errors say ``what`` is allowed."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is out of range: expected {what}")
        return value

    return parse


def limited(limit: Limit) -> Callable[[str], Any]:
    """An argparse ``type`` accepting what ``limit`` (a sampling field's range) allows."""
    kind = int if limit.integer else float
    what = limit.describe()

    def parse(text: str):
        value = ranged(kind, None, None, what)(text)
        if not limit.allows(value):
            raise argparse.ArgumentTypeError(f"{text} is out of range: expected {what}")
        return value

    return parse


def count(high: int) -> Callable[[str], int]:
    """An argparse ``type`` for a count: an integer in [1, high]."""
    return ranged(int, 1, high, f"an integer in [1, {high}]")


# -- the help style ------------------------------------------------------------------------------
class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: help that already says it ("(default: the
    model's)") is left as written, as is a required option's (it has none); any other gets
    argparse's "(default: X)"."""

    def __init__(self, prog: str):
        super().__init__(prog, max_help_position=32)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "(default:" in text or "%(default)" in text or action.required:
            return text
        return super()._get_help_string(action)


def add_command(
    subparsers: argparse._SubParsersAction, name: str, help: str, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand with the shared help style."""
    return subparsers.add_parser(name, help=help, formatter_class=HelpFormatter, **kwargs)


# -- options several commands declare -----------------------------------------------------------
def add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", metavar="DIR", default=None, help="model directory (default: the bundled model)"
    )


def add_device_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument(
        "--device", default="auto", help=help or "'auto', 'cpu', 'cuda' or 'cuda:N'"
    )


#: --dtype choices: what the U-Nets and the text encoder hold their weights in
LOAD_DTYPES = ("fp32", "bf16", "fp16")


def add_memory_options(parser: argparse.ArgumentParser) -> None:
    """--dtype, --text-device, --offload: the memory a large model (DeepFloyd IF) needs."""
    parser.add_argument(
        "--dtype", choices=LOAD_DTYPES, default="fp32",
        help="dtype the U-Nets and the text encoder hold their weights and compute in "
        "(bf16 / fp16 halve their memory)",
    )  # fmt: skip
    parser.add_argument(
        "--text-device", metavar="DEVICE", default=None,
        help="where the text encoder runs (default: --device; cpu with --offload)",
    )  # fmt: skip
    parser.add_argument(
        "--offload", action="store_true",
        help="keep the U-Nets in CPU memory and move each to --device only while it samples",
    )  # fmt: skip


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of ``openimagen.load`` that :func:`add_memory_options` set."""
    import torch

    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    return {"dtype": dtypes[args.dtype], "text_device": args.text_device,
            "offload": args.offload}  # fmt: skip


def add_seed_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument(
        "--seed", type=ranged(int, 0, MAX_SEED, f"an integer in [0, {MAX_SEED}]"), default=0,
        help=help,
    )  # fmt: skip


def add_stages_option(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    parser.add_argument(
        "--stages",
        type=ranged(int, 1, 16, "an integer >= 1"),
        default=None,
        help=help or "run only the first N stages (default: all)",
    )


def add_quiet_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def add_server_options(parser: argparse.ArgumentParser, port: int) -> None:
    """--host, --port and --log-level of a command that serves HTTP."""
    parser.add_argument(
        "--host", default=DEFAULT_HOST,
        help="address to bind; the default is reachable from this machine only",
    )  # fmt: skip
    parser.add_argument(
        "--port", metavar="N", type=ranged(int, 0, 65535, "an integer in [0, 65535]"),
        default=port, help="TCP port; 0 = any free one",
    )  # fmt: skip
    parser.add_argument("--log-level", choices=LOG_LEVELS, default="info", help="server log level")


def add_c2pa_options(parser: argparse.ArgumentParser) -> None:
    """Content Credentials: the signing files, a timestamp authority, the prompt opt-in."""
    group = parser.add_argument_group(
        "Content Credentials (C2PA)", "every PNG carries a signed C2PA manifest (docs/serving.md)"
    )
    group.add_argument(
        "--c2pa-cert", metavar="FILE", default=None,
        help=f"PEM certificate chain, signing certificate first (default: ${CERT_ENV}; "
        "neither this nor the key: a local development certificate that nobody trusts)",
    )  # fmt: skip
    group.add_argument(
        "--c2pa-key", metavar="FILE", default=None,
        help=f"PEM private key of --c2pa-cert (default: ${KEY_ENV})",
    )  # fmt: skip
    group.add_argument(
        "--c2pa-tsa-url", metavar="URL", default=None,
        help=f"RFC 3161 timestamp authority to countersign with (default: ${TSA_URL_ENV}, "
        "else none: signing needs no network)",
    )  # fmt: skip
    group.add_argument(
        "--c2pa-include-prompt", action="store_true",
        help="write the prompt into the signed manifest (default: not; the PNG text chunk "
        "holds it either way)",
    )  # fmt: skip


def check_stages(stages: int | None, count: int) -> None:
    """Refuse ``--stages`` beyond the ``count`` stages of the model, before any sampling."""
    if stages is not None and stages > count:
        raise InvalidArgumentError(
            "--stages", stages, f"an integer from 1 to {count} (the stages of this model)"
        )


# -- the sampling overrides of generate, eval and export -----------------------------------------
# option -> SamplingConfig field; "--guidance" is the old spelling of --guidance-weight, kept
SAMPLING_OPTIONS: dict[str, str] = {
    "steps": "steps",
    "guidance_weight": "guidance_weight",
    "sampler": "sampler",
    "threshold": "threshold",
    "percentile": "dynamic_threshold_percentile",
    "noise_aug": "noise_aug_level",
    "eta": "eta",
    "precision": "precision",
}


def add_sampling_options(parser: argparse.ArgumentParser, scope: str = "every stage") -> None:
    """The sampling overrides (see :func:`sampling_overrides`); each default is the model's."""
    helps = {
        "steps": f"sampling steps for {scope}",
        "guidance_weight": "classifier-free guidance weight w; 1 = no guidance",
        "sampler": f"sampler for {scope}",
        "threshold": "x0 thresholding",
        "percentile": "dynamic thresholding percentile",
        "noise_aug": "SR noise-augmentation level at sampling time",
        "eta": "DDIM stochasticity: 0 = deterministic DDIM, 1 = DDPM-like (ddim sampler only)",
        "precision": "U-Net forward precision: bf16 autocast is faster on GPUs and "
        "bf16-capable CPUs",
    }
    metavars = {"steps": "N", "guidance_weight": "W", "percentile": "P", "noise_aug": "LEVEL"}
    for dest, field in SAMPLING_OPTIONS.items():
        names = ["--" + dest.replace("_", "-")]
        if dest == "guidance_weight":
            names.append("--guidance")  # the spelling before 0.2: still accepted
        kind: dict[str, Any] = (
            {"choices": CHOICES[field]}
            if field in CHOICES
            else {"type": limited(LIMITS[field]), "metavar": metavars.get(dest, dest.upper())}
        )
        parser.add_argument(
            *names, dest=dest, default=None, help=f"{helps[dest]} (default: the model's)", **kind
        )


def sampling_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The SamplingConfig fields given on the command line (field -> value)."""
    return {
        field: getattr(args, dest)
        for dest, field in SAMPLING_OPTIONS.items()
        if getattr(args, dest) is not None
    }


__all__ = [
    "DEFAULT_HOST",
    "LOAD_DTYPES",
    "MAX_IMAGES",
    "HelpFormatter",
    "add_command",
    "add_device_option",
    "add_memory_options",
    "add_model_option",
    "add_quiet_option",
    "add_sampling_options",
    "add_seed_option",
    "add_server_options",
    "add_stages_option",
    "check_stages",
    "count",
    "limited",
    "load_options",
    "ranged",
    "sampling_overrides",
]
