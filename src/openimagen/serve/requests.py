"""The image request of ``POST /v1/images/generations``, checked: a pure function of the body.

:func:`parse_image_request` takes the decoded JSON body and what the server knows (the model
it serves, its limits, the prompt policy) and returns an :class:`ImageRequest`, or raises the
:class:`~openimagen.serve.http.APIError` the client gets (400, or 404 for another model). It
touches no server state, so every rule is unit-tested without a server
(tests/serve/test_serve_requests.py). The sampling limits are those of
:class:`~openimagen.cascade.SamplingConfig` (:data:`openimagen.cascade.LIMITS`).

The fields are OpenAI's (``prompt``, ``n``, ``size``, ``response_format``, ``model``;
``quality``, ``style``, ``user`` accepted and ignored; ``output_format`` ``png`` only) plus
ours: ``seed``, ``steps`` and ``guidance_weight`` (the setting's name everywhere in
openimagen; ``guidance_scale``, its name in the first releases of this API, is still
accepted).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from typing import Any

from openimagen.cascade.sampling import LIMITS, MAX_SEED, SamplingConfig
from openimagen.errors import OpenImagenError
from openimagen.policy import PromptPolicy
from openimagen.serve.http import APIError, invalid_value, is_int, is_number
from openimagen.serve.settings import ServeSettings
from openimagen.text import check_prompt

OPENAI_FIELDS = frozenset(
    {"prompt", "n", "size", "response_format", "model", "quality", "style", "user",
     "output_format"}
)  # fmt: skip
# guidance_scale: the older name of guidance_weight, accepted for existing clients
EXTENSION_FIELDS = frozenset({"seed", "steps", "guidance_weight", "guidance_scale"})
RESPONSE_FORMATS = ("url", "b64_json")


@dataclasses.dataclass(frozen=True)
class ServedModel:
    """What the request checks need to know about the model being served."""

    model_id: str
    resolution: int
    sampling: tuple[SamplingConfig, ...]  # the model's defaults, one per stage

    @property
    def sizes(self) -> list[str]:
        return [f"{self.resolution}x{self.resolution}"]


@dataclasses.dataclass(frozen=True)
class ImageRequest:
    """A checked request: ``n`` images of ``prompt``, image i drawn with ``seeds[i]``."""

    prompt: str
    seeds: tuple[int, ...]
    sampling: tuple[SamplingConfig, ...]
    response_format: str

    @property
    def n(self) -> int:
        return len(self.seeds)


def parse_image_request(
    body: Any,
    model: ServedModel,
    settings: ServeSettings,
    *,
    policy: PromptPolicy | None = None,
    random_seed: Callable[[], int] = lambda: secrets.randbelow(2**31),
) -> ImageRequest:
    """The checked request of ``body``; ``random_seed()`` gives the seed of a request without one.

    The checks run in a fixed order (fields, prompt, n, size, format, model, the ignored
    fields, seed, steps, guidance, and the prompt policy last), so a request with several
    problems always gets the same error.
    """
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    _check_fields(body)
    prompt = _prompt(body.get("prompt"), settings)
    n = 1 if body.get("n") is None else body["n"]
    if not is_int(n) or not 1 <= n <= settings.max_n:
        raise invalid_value("n", n, f"an integer from 1 to {settings.max_n}")
    _check_openai_options(body, model)
    seed = body.get("seed")
    if seed is None:
        seed = random_seed()
    elif not is_int(seed) or not 0 <= seed <= MAX_SEED - n:
        raise invalid_value("seed", seed, f"an integer from 0 to {MAX_SEED - n}")
    sampling = _sampling(body, model, settings)
    if policy is not None:
        reason = policy.check(prompt)
        if reason is not None:
            raise APIError(400, reason[0].upper() + reason[1:], param="prompt",
                           code="content_policy_violation")  # fmt: skip
    return ImageRequest(
        prompt=prompt,
        seeds=tuple(seed + i for i in range(n)),
        sampling=sampling,
        response_format=body.get("response_format") or "url",
    )


def _check_fields(body: dict[str, Any]) -> None:
    unknown = sorted(set(body) - OPENAI_FIELDS - EXTENSION_FIELDS)
    if unknown:
        raise APIError(
            400,
            f"Unrecognized request argument supplied: {', '.join(unknown)}. Allowed: "
            f"{', '.join(sorted(OPENAI_FIELDS | EXTENSION_FIELDS))}.",
            param=unknown[0],
            code="unknown_parameter",
        )


def _prompt(prompt: Any, settings: ServeSettings) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        code = "missing_prompt" if prompt is None else "invalid_value"
        raise invalid_value("prompt", prompt, "a non-empty string", code=code)
    if len(prompt) > settings.max_prompt_chars:
        raise APIError(
            400,
            f"prompt is {len(prompt)} characters long; the limit is "
            f"{settings.max_prompt_chars}. Shorten the prompt.",
            param="prompt",
            code="string_above_max_length",
        )
    try:
        return check_prompt(prompt, "prompt")
    except OpenImagenError as exc:
        raise APIError(400, str(exc), param="prompt", code="invalid_value") from None


def _check_openai_options(body: dict[str, Any], model: ServedModel) -> None:
    """size, response_format, model, and the fields accepted and ignored."""
    size = body.get("size")
    if size not in (None, "auto", *model.sizes):
        raise invalid_value("size", size, f"one of {model.sizes} (this model's resolution)")
    response_format = body.get("response_format") or "url"
    if response_format not in RESPONSE_FORMATS:
        raise invalid_value("response_format", response_format, "'url' or 'b64_json'")
    name = body.get("model")
    if name is not None and name != model.model_id:
        raise APIError(
            404 if isinstance(name, str) else 400,
            f"model={name!r} is not served here; this server serves {model.model_id!r} "
            "(GET /v1/models). Omit model or pass that id.",
            param="model",
            code="model_not_found",
        )
    for field in ("quality", "style", "user"):
        if body.get(field) is not None and not isinstance(body[field], str):
            raise invalid_value(field, body[field], "a string")
    if body.get("output_format") not in (None, "png"):
        raise invalid_value(
            "output_format", body["output_format"], "'png' (the only format served)"
        )


def _sampling(
    body: dict[str, Any], model: ServedModel, settings: ServeSettings
) -> tuple[SamplingConfig, ...]:
    """The model's sampling with the request's steps and guidance weight (every stage)."""
    steps = body.get("steps")
    if steps is not None and (not is_int(steps) or not 1 <= steps <= settings.max_steps):
        raise invalid_value("steps", steps, f"an integer from 1 to {settings.max_steps}")
    given = [f for f in ("guidance_weight", "guidance_scale") if body.get(f) is not None]
    if len(given) == 2:
        raise APIError(
            400,
            "guidance_weight and guidance_scale are the same setting (guidance_scale is its "
            "older name); send one of them",
            param="guidance_scale",
            code="invalid_value",
        )
    guidance = body[given[0]] if given else None
    limit = LIMITS["guidance_weight"]
    if guidance is not None and not (is_number(guidance) and limit.allows(guidance)):
        raise invalid_value(given[0], guidance, f"a number from {limit.low:g} to {limit.high:g}")
    changes: dict[str, Any] = {}
    if steps is not None:
        changes["steps"] = steps
    if guidance is not None:
        changes["guidance_weight"] = float(guidance)
    if not changes:
        return model.sampling
    return tuple(s.replace(**changes) for s in model.sampling)


__all__ = [
    "EXTENSION_FIELDS",
    "OPENAI_FIELDS",
    "ImageRequest",
    "ServedModel",
    "parse_image_request",
]
