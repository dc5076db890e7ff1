"""The image request parser (serve/requests.py), unit-tested without a server."""

from __future__ import annotations

import pytest

from openimagen.cascade import LIMITS, MAX_SEED, SamplingConfig
from openimagen.policy import PromptPolicy
from openimagen.serve.http import APIError
from openimagen.serve.requests import ServedModel, parse_image_request
from openimagen.serve.settings import ServeSettings

MODEL = ServedModel("tiny", 64, (SamplingConfig(steps=4), SamplingConfig(steps=3, eta=0.5)))
SETTINGS = ServeSettings(max_n=3, max_steps=8, max_prompt_chars=40)


def parse(body, **kwargs):
    return parse_image_request(body, MODEL, SETTINGS, random_seed=lambda: 1234, **kwargs)


def refused(body, **kwargs) -> APIError:
    with pytest.raises(APIError) as info:
        parse(body, **kwargs)
    return info.value


def test_a_plain_request_takes_the_models_defaults():
    request = parse({"prompt": "a red circle"})
    assert request.prompt == "a red circle" and request.seeds == (1234,)
    assert request.sampling == MODEL.sampling and request.response_format == "url"


def test_n_seeds_steps_and_guidance():
    request = parse({"prompt": "x", "n": 3, "seed": 7, "steps": 2, "guidance_weight": 1.5,
                     "response_format": "b64_json", "size": "64x64"})  # fmt: skip
    assert request.n == 3 and request.seeds == (7, 8, 9)
    assert [s.steps for s in request.sampling] == [2, 2]
    assert [s.guidance_weight for s in request.sampling] == [1.5, 1.5]
    assert request.sampling[1].eta == 0.5  # the rest of each stage's defaults is kept
    assert request.response_format == "b64_json"


def test_guidance_scale_is_the_older_name_of_guidance_weight():
    old = parse({"prompt": "x", "guidance_scale": 2})
    new = parse({"prompt": "x", "guidance_weight": 2})
    assert old == new and old.sampling[0].guidance_weight == 2.0
    error = refused({"prompt": "x", "guidance_scale": 2, "guidance_weight": 2})
    assert (error.status, error.code, error.param) == (400, "invalid_value", "guidance_scale")


@pytest.mark.parametrize("name", ["guidance_weight", "guidance_scale"])
def test_the_guidance_limit_is_samplingconfigs(name):
    limit = LIMITS["guidance_weight"]
    assert parse({"prompt": "x", name: limit.high}).sampling[0].guidance_weight == limit.high
    for bad in (limit.high + 0.5, -0.5, "3", True):
        error = refused({"prompt": "x", name: bad})
        assert (error.code, error.param) == ("invalid_value", name)
        assert f"a number from {limit.low:g} to {limit.high:g}" in error.message


def test_seed_limit_leaves_room_for_every_image_of_the_request():
    assert parse({"prompt": "x", "n": 3, "seed": MAX_SEED - 3}).seeds[-1] == MAX_SEED - 1
    error = refused({"prompt": "x", "n": 3, "seed": MAX_SEED - 2})
    assert error.param == "seed" and str(MAX_SEED - 3) in error.message


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [(["x"], 400, "invalid_json", None),
     ({"prompt": "x", "guidance": 3}, 400, "unknown_parameter", "guidance"),
     ({}, 400, "missing_prompt", "prompt"),
     ({"prompt": "  "}, 400, "invalid_value", "prompt"),
     ({"prompt": "x" * 41}, 400, "string_above_max_length", "prompt"),
     ({"prompt": "a\x1bb"}, 400, "invalid_value", "prompt"),
     ({"prompt": "x", "n": 4}, 400, "invalid_value", "n"),
     ({"prompt": "x", "n": True}, 400, "invalid_value", "n"),
     ({"prompt": "x", "size": "32x32"}, 400, "invalid_value", "size"),
     ({"prompt": "x", "response_format": "jpeg"}, 400, "invalid_value", "response_format"),
     ({"prompt": "x", "model": "dall-e-3"}, 404, "model_not_found", "model"),
     ({"prompt": "x", "model": 3}, 400, "model_not_found", "model"),
     ({"prompt": "x", "user": 5}, 400, "invalid_value", "user"),
     ({"prompt": "x", "output_format": "webp"}, 400, "invalid_value", "output_format"),
     ({"prompt": "x", "seed": -1}, 400, "invalid_value", "seed"),
     ({"prompt": "x", "steps": 9}, 400, "invalid_value", "steps"),
     ({"prompt": "x", "steps": 2.0}, 400, "invalid_value", "steps")],
)  # fmt: skip
def test_each_bad_field_is_named(body, status, code, param):
    error = refused(body)
    assert (error.status, error.code, error.param) == (status, code, param)


def test_the_first_problem_in_a_fixed_order_is_the_one_reported():
    body = {"prompt": "x", "n": 9, "steps": 99, "size": "1x1", "seed": -1}
    assert refused(body).param == "n"  # n before size, seed and steps
    assert refused({**body, "n": 1}).param == "size"
    assert refused({**body, "n": 1, "size": None}).param == "seed"
    assert refused({**body, "n": 1, "size": None, "seed": 0}).param == "steps"


def test_the_policy_is_checked_last_and_only_when_given():
    policy = PromptPolicy(["purple dragon"])
    error = refused({"prompt": "a Purple  Dragon"}, policy=policy)
    assert (error.code, error.param) == ("content_policy_violation", "prompt")
    assert refused({"prompt": "a purple dragon", "n": 9}, policy=policy).param == "n"
    assert parse({"prompt": "a purple dragon"}).prompt == "a purple dragon"  # no policy


def test_a_missing_seed_is_drawn_once_per_request():
    draws = iter([5, 6])
    request = parse_image_request({"prompt": "x", "n": 2}, MODEL, SETTINGS,
                                  random_seed=lambda: next(draws))  # fmt: skip
    assert request.seeds == (5, 6)
