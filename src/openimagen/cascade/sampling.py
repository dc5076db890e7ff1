"""How a stage is sampled: :class:`SamplingConfig`, the one source of its names and limits.

The sampler names and thresholding kinds are those the diffusion code is keyed by
(:mod:`openimagen.diffusion.names`, checked against :data:`openimagen.diffusion.SAMPLERS`),
so a sampler added there is known here. Every other user of a sampling setting (the command
line's choices and ranges, the server's request checks) derives them from
:data:`CHOICES` and :data:`LIMITS` below, and a :class:`SamplingConfig` checks every field
when it is made: a bad name or an out-of-range number fails at construction, naming the
field, the value and what is allowed, never later inside a sampler.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from openimagen.config import Config
from openimagen.diffusion.names import SAMPLER_NAMES, THRESHOLDS
from openimagen.errors import InvalidArgumentError

THRESHOLD_KINDS: tuple[str, ...] = THRESHOLDS  # ("none", "static", "dynamic")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")

# The Literal types read by Config.from_dict (cascade.json) are built from the same tuples.
SamplerName = Literal[SAMPLER_NAMES]  # type: ignore[valid-type]
ThresholdKind = Literal[THRESHOLD_KINDS]  # type: ignore[valid-type]
Precision = Literal[PRECISIONS]  # type: ignore[valid-type]


@dataclasses.dataclass(frozen=True)
class Limit:
    """The allowed range of a numeric sampling field: [low, high], or (low, high]."""

    low: float
    high: float
    integer: bool = False
    low_open: bool = False

    def allows(self, value: object) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and value <= self.high

    def describe(self) -> str:
        """What is allowed, e.g. "an integer in [1, 10000]", "a number in (0, 100]"."""
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"


#: The largest seed of an image: every command and the server take seeds in [0, MAX_SEED]
#: (torch's generators take 64-bit seeds; the offsets added per image keep it below 2**64).
MAX_SEED = 2**63 - 1

#: The choices of every named field.
CHOICES: dict[str, tuple[str, ...]] = {
    "sampler": SAMPLER_NAMES,
    "threshold": THRESHOLD_KINDS,
    "precision": PRECISIONS,
}

#: The range of every numeric field.
LIMITS: dict[str, Limit] = {
    "steps": Limit(1, 10000, integer=True),
    # Imagen uses guidance weights of 1 to ~10; beyond 100 the sample is only saturation
    "guidance_weight": Limit(0.0, 100.0),
    "dynamic_threshold_percentile": Limit(0.0, 100.0, low_open=True),
    "eta": Limit(0.0, 1.0),  # what the DDIM sampler accepts
    "noise_aug_level": Limit(0.0, 1.0),  # a diffusion time
}


def one_of(choices: tuple[str, ...]) -> str:
    """ "one of 'a', 'b', 'c'": how an error names the allowed choices."""
    return "one of " + ", ".join(repr(c) for c in choices)


@dataclasses.dataclass(frozen=True)
class SamplingConfig(Config):
    """How one stage is sampled; cascade.json stores a default per stage."""

    sampler: SamplerName = "dpmpp_2m"
    steps: int = 25
    # classifier-free guidance weight w (Imagen eq. in sec. 2.2); 1 = plain conditional
    guidance_weight: float = 5.0
    threshold: ThresholdKind = "dynamic"
    # Imagen sec. 2.3: s = max(1, this percentile of |x0_hat|)
    dynamic_threshold_percentile: float = 99.5
    # DDIM's eta (0 = deterministic); ignored by other samplers
    eta: float = 0.0
    # SR stages only: noise-augmentation level (diffusion time in [0, 1]) applied to the
    # upsampled low-res input at sampling time (Imagen sec. 2.5)
    noise_aug_level: float = 0.0
    # "bf16": the U-Net's forward under bfloat16 autocast (weights stay as loaded; the
    # sampler's arithmetic, guidance and thresholding stay float32). Faster on GPUs and on
    # CPUs with bf16 support (docs/benchmarks.md); "fp32": full precision.
    precision: Precision = "fp32"

    def validate(self) -> None:
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise InvalidArgumentError(name, getattr(self, name), one_of(choices))
        for name, limit in LIMITS.items():
            if not limit.allows(getattr(self, name)):
                raise InvalidArgumentError(name, getattr(self, name), limit.describe())


__all__ = [
    "CHOICES",
    "LIMITS",
    "MAX_SEED",
    "PRECISIONS",
    "SAMPLER_NAMES",
    "THRESHOLD_KINDS",
    "Limit",
    "SamplingConfig",
    "one_of",
]
