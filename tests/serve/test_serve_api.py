"""The HTTP API driven by real clients: the official ``openai`` package and raw ``httpx``.

One uvicorn server (a thread, loopback, free port) serves a tiny random cascade for the
whole module.
"""

from __future__ import annotations

import base64
import io
import json

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from cascade_testutil import tiny_cascade
from openimagen.images import to_pil
from openimagen.policy import PromptPolicy
from openimagen.serve import ServerThread, ServeSettings, create_app
from openimagen.watermark import detect_watermark, embed_watermark

KEY = "test-key-7f3a"
RES = 64
SETTINGS = ServeSettings(
    api_key=KEY, max_body_bytes=4096, max_n=3, max_steps=8, max_prompt_chars=200
)


@pytest.fixture(scope="module")
def cascade(minilm):
    return tiny_cascade(minilm, base_res=16, sr_res=RES)


@pytest.fixture(scope="module")
def server(cascade):
    app = create_app(cascade, SETTINGS, policy=PromptPolicy(["forbidden thing"]))
    with ServerThread(app) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def http(server):
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as session:
        yield session


def decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_openai_client_gets_the_librarys_image_with_provenance(client, cascade):
    result = client.images.generate(
        prompt="a red circle", n=1, size=f"{RES}x{RES}", response_format="b64_json",
        extra_body={"seed": 42},
    )  # fmt: skip
    assert len(result.data) == 1
    image = decode(result.data[0].b64_json)
    assert image.format == "PNG" and image.size == (RES, RES)
    meta = image.text
    assert meta["ai_generated"] == "true"
    assert (meta["prompt"], meta["seed"], meta["model_id"]) == ("a red circle", "42", "tiny")
    stages = json.loads(meta["sampling"])
    assert [s["steps"] for s in stages] == [s.steps for s in cascade.sampling]
    assert [s["sampler"] for s in stages] == [s.sampler for s in cascade.sampling]
    # exactly the library's image for that prompt and seed, plus the invisible mark
    expected = embed_watermark(to_pil(cascade.generate(["a red circle"], [42])[0]))
    assert np.array_equal(pixels(image), pixels(expected))
    assert detect_watermark(image)[0]
    assert not detect_watermark(to_pil(cascade.generate(["a red circle"], [42])[0]))[0]


def test_every_png_carries_a_signed_c2pa_manifest_without_the_prompt(client, http):
    from openimagen.provenance import TRAINED_ALGORITHMIC_MEDIA, content_credentials

    result = client.images.generate(prompt="a red circle", n=2, response_format="b64_json",
                                    extra_body={"seed": 5, "steps": 2})  # fmt: skip
    url = client.images.generate(prompt="a red circle", extra_body={"seed": 5, "steps": 2})
    served = [base64.b64decode(d.b64_json) for d in result.data]
    served.append(httpx.get(url.data[0].url, timeout=30).content)
    for data in served:
        report = content_credentials(data)
        assert report["state"] == "valid", report["failures"]
        [action] = report["actions"]
        assert action["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
        assert action["softwareAgent"]["name"] == "tiny"
        assert "description" not in action  # ServeSettings.c2pa_include_prompt is off
        assert Image.open(io.BytesIO(data)).text["prompt"] == "a red circle"


def test_url_response_serves_the_png(client, http):
    result = client.images.generate(prompt="a blue square", extra_body={"seed": 1, "steps": 2})
    url = result.data[0].url
    assert url.startswith(str(http.base_url).rstrip("/") + "/v1/images/files/")
    # image URLs are capabilities: fetched without the API key, like an <img> tag would
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).text["prompt"] == "a blue square"
    missing = httpx.get(url.replace("/files/", "/files/x"), timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_extensions_seed_steps_guidance(http):
    body = {"prompt": "two green triangles", "n": 2, "seed": 10, "steps": 2,
            "guidance_scale": 1.5, "response_format": "b64_json"}  # fmt: skip
    response = http.post("/v1/images/generations", json=body)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [d["seed"] for d in data] == [10, 11]
    images = [decode(d["b64_json"]) for d in data]
    assert [im.text["seed"] for im in images] == ["10", "11"]
    stages = json.loads(images[0].text["sampling"])
    assert all(s["steps"] == 2 and s["guidance_weight"] == 1.5 for s in stages)
    assert not np.array_equal(pixels(images[0]), pixels(images[1]))
    again = http.post("/v1/images/generations", json=dict(body, n=1, seed=11)).json()["data"][0]
    # the same seed alone gives the same image; a batch of 2 vs 1 may round a value differently
    # on CPU, so allow one 8-bit level
    assert np.abs(pixels(decode(again["b64_json"])) - pixels(images[1])).max() <= 1


def test_models_and_health(client, server):
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    health = httpx.get(server.url + "/healthz", timeout=30).json()  # no key needed
    assert health["status"] == "ok" and health["sizes"] == [f"{RES}x{RES}"]
    assert health["auth_required"] is True and health["limits"]["max_n"] == 3
    signing = health["content_credentials"]
    assert signing["signer"].startswith("CN=openimagen local development signer, O=")
    assert signing["development_certificate"] is True and signing["include_prompt"] is False


def test_openai_client_sees_typed_errors(client, server):
    with pytest.raises(openai.BadRequestError) as bad:
        client.images.generate(prompt="a red circle", size="1024x1024")
    assert bad.value.code == "invalid_value" and f"{RES}x{RES}" in bad.value.message
    with pytest.raises(openai.AuthenticationError):
        wrong = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
        wrong.images.generate(prompt="a red circle")


ERRORS = [
    # (name, body bytes, extra headers, status, error code, param)
    ("malformed json", b'{"prompt": "a red circle",', {}, 400, "invalid_json", None),
    ("not an object", b'["a red circle"]', {}, 400, "invalid_json", None),
    ("oversize body", b'{"prompt": "' + b"a" * 5000 + b'"}', {}, 413, "request_too_large", None),
    ("n too large", b'{"prompt": "a red circle", "n": 4}', {}, 400, "invalid_value", "n"),
    ("n not an int", b'{"prompt": "a red circle", "n": "2"}', {}, 400, "invalid_value", "n"),
    ("wrong size", b'{"prompt": "x", "size": "256x256"}', {}, 400, "invalid_value", "size"),
    ("steps too many", b'{"prompt": "x", "steps": 9}', {}, 400, "invalid_value", "steps"),
    ("seed negative", b'{"prompt": "x", "seed": -1}', {}, 400, "invalid_value", "seed"),
    ("guidance nan", b'{"prompt": "x", "guidance_scale": NaN}', {}, 400, "invalid_value",
     "guidance_scale"),
    ("prompt too long", json.dumps({"prompt": "a" * 201}).encode(), {}, 400,
     "string_above_max_length", "prompt"),
    ("no prompt", b'{"n": 1}', {}, 400, "missing_prompt", "prompt"),
    ("unknown field", b'{"prompt": "x", "guidance": 3}', {}, 400, "unknown_parameter", "guidance"),
    ("bad format", b'{"prompt": "x", "response_format": "jpeg"}', {}, 400, "invalid_value",
     "response_format"),
    ("other model", b'{"prompt": "x", "model": "dall-e-3"}', {}, 404, "model_not_found", "model"),
    ("wrong key", b'{"prompt": "x"}', {"Authorization": "Bearer nope"}, 401, "invalid_api_key",
     None),
    ("no key", b'{"prompt": "x"}', {"Authorization": ""}, 401, "invalid_api_key", None),
    ("form post", b'{"prompt": "x"}', {"Content-Type": "text/plain"}, 415,
     "unsupported_media_type", None),
    ("rebound host", b'{"prompt": "x"}', {"Host": "evil.example:8000"}, 400, "invalid_host",
     "Host"),
    ("policy", b'{"prompt": "a FORBIDDEN   thing, please"}', {}, 400, "content_policy_violation",
     "prompt"),
    # text the tokenizer or a PNG chunk cannot take: refused before it reaches a batch
    ("lone surrogate", b'{"prompt": "a \\udcff circle"}', {}, 400, "invalid_value", "prompt"),
    ("NUL in prompt", b'{"prompt": "a red\\u0000circle"}', {}, 400, "invalid_value", "prompt"),
    ("escape in prompt", b'{"prompt": "a \\u001b[2J circle"}', {}, 400, "invalid_value",
     "prompt"),
    ("surrogate field name", b'{"prompt": "x", "\\udcff": 1}', {}, 400, "unknown_parameter",
     "\\udcff"),
    # nesting deep enough to exhaust the parser's recursion, or merely deeper than any request
    ("deep nesting", b"[" * 4000, {}, 400, "invalid_json", None),
    ("deep nesting in a field", b'{"prompt": ' + b"[" * 4000, {}, 400, "invalid_json", None),
    ("nested value", b'{"prompt": ' + b"[" * 40 + b"]" * 40 + b"}", {}, 400, "invalid_json",
     None),
]  # fmt: skip


@pytest.mark.parametrize("name,body,headers,status,code,param", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(
    http, name, body, headers, status, code, param
):
    headers = {"Content-Type": "application/json", **headers}
    response = http.post("/v1/images/generations", content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["code"], error["param"]) == (code, param)
    assert isinstance(error["message"], str) and len(error["message"]) > 10
    if name == "policy":
        assert "'forbidden thing'" in error["message"]
    assert http.get("/healthz").status_code == 200


def test_oversize_chunked_body_is_cut_off(http):
    def chunks():
        yield b'{"prompt": "'
        for _ in range(10):
            yield b"a" * 1000
        yield b'"}'

    headers = {"Content-Type": "application/json"}
    response = http.post("/v1/images/generations", content=chunks(), headers=headers)
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"


def test_unknown_routes_and_methods_are_json(http):
    assert http.get("/v1/nothing").json()["error"]["type"] == "not_found"
    response = http.get("/v1/images/generations")
    assert response.status_code == 405 and "error" in response.json()


def test_still_generates_after_all_the_errors(client):
    result = client.images.generate(prompt="a yellow circle", response_format="b64_json")
    assert decode(result.data[0].b64_json).size == (RES, RES)
