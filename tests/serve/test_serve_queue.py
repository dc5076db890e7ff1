"""One generation thread, batching of compatible requests, 429 on a full queue, progress."""

from __future__ import annotations

import base64
import io
import json
import threading
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from cascade_testutil import tiny_cascade
from openimagen.images import to_pil
from openimagen.serve import ServerThread, ServeSettings, create_app

RES = 32


class GatedCascade:
    """The real cascade, but each generate() call waits for ``gate`` and is recorded."""

    def __init__(self, inner):
        self.inner = inner
        self.gate = threading.Event()
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, prompts, seeds, **kwargs):
        self.batches.append(list(seeds))
        self.threads.add(threading.current_thread().name)
        assert self.gate.wait(60), "test gate never opened"
        return self.inner.generate(prompts, seeds, **kwargs)


@pytest.fixture(scope="module")
def cascade(minilm):
    return tiny_cascade(minilm, base_res=16, sr_res=RES)


def wait_for(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def post_in_thread(url, body, results, key, request_id=None):
    headers = {"X-Request-Id": request_id} if request_id else {}

    # json.dumps escapes non-ASCII, so hostile text such as a lone surrogate can be sent
    headers["Content-Type"] = "application/json"

    def run():
        results[key] = httpx.post(url + "/v1/images/generations", content=json.dumps(body),
                                  headers=headers, timeout=120)  # fmt: skip

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def first_image(response) -> np.ndarray:
    b64 = response.json()["data"][0]["b64_json"]
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"), np.int16)


def test_full_queue_gives_429_and_progress_is_reported(cascade):
    gated = GatedCascade(cascade)
    settings = ServeSettings(max_queue=1, max_n=2, max_batch_images=2, watermark=False)
    with ServerThread(create_app(gated, settings)) as server:
        results: dict = {}
        body = {"prompt": "a red circle", "seed": 1, "response_format": "b64_json"}
        a = post_in_thread(server.url, body, results, "a", request_id="job-a")
        wait_for(lambda: len(gated.batches) == 1)  # A runs (blocked in the gate)
        b = post_in_thread(server.url, dict(body, seed=2), results, "b", request_id="job-b")
        wait_for(lambda: httpx.get(server.url + "/healthz").json()["queue"]["waiting"] == 1)

        progress_a = httpx.get(server.url + "/v1/progress/job-a").json()
        progress_b = httpx.get(server.url + "/v1/progress/job-b").json()
        assert progress_a["state"] == "running"
        assert (progress_b["state"], progress_b["queue_position"]) == ("queued", 0)

        full = httpx.post(server.url + "/v1/images/generations", json=dict(body, seed=3))
        assert full.status_code == 429
        assert full.json()["error"]["code"] == "rate_limit_exceeded"
        assert int(full.headers["retry-after"]) > 0

        gated.gate.set()
        a.join(60)
        b.join(60)
        assert results["a"].status_code == 200 and results["b"].status_code == 200
        done = httpx.get(server.url + "/v1/progress/job-a").json()
        assert done["state"] == "done" and done["done"] == done["total"] > 0
        # and the queue has room again
        again = httpx.post(server.url + "/v1/images/generations", json=dict(body, seed=3))
        assert again.status_code == 200
    assert gated.threads == {"openimagen-generate"}


def test_compatible_requests_are_batched_without_changing_images(cascade):
    gated = GatedCascade(cascade)
    settings = ServeSettings(max_queue=8, max_n=2, max_batch_images=3, watermark=False)
    with ServerThread(create_app(gated, settings)) as server:
        results: dict = {}
        base = {"prompt": "a blue square", "response_format": "b64_json"}
        threads = [post_in_thread(server.url, dict(base, seed=0), results, "first")]
        wait_for(lambda: len(gated.batches) == 1)
        # while the first runs: compatible requests (4 images in all) and one with other steps
        threads.append(post_in_thread(server.url, dict(base, seed=10, n=2), results, "x"))
        wait_for(lambda: server_waiting(server) == 1)
        threads.append(post_in_thread(server.url, dict(base, seed=20, steps=2), results, "other"))
        wait_for(lambda: server_waiting(server) == 2)
        threads.append(post_in_thread(server.url, dict(base, seed=30), results, "y"))
        wait_for(lambda: server_waiting(server) == 3)
        threads.append(post_in_thread(server.url, dict(base, seed=40), results, "z"))
        wait_for(lambda: server_waiting(server) == 4)
        gated.gate.set()
        for thread in threads:
            thread.join(120)
    assert all(r.status_code == 200 for r in results.values())
    # oldest first; compatible ones join it up to 3 images; "other" (other steps) waits
    assert gated.batches == [[0], [10, 11, 30], [20], [40]]
    # an image made in a batch is the image made alone
    alone = np.asarray(to_pil(cascade.generate(["a blue square"], [30])[0]), np.int16)
    assert np.abs(first_image(results["y"]) - alone).max() <= 1


def server_waiting(server) -> int:
    return httpx.get(server.url + "/healthz").json()["queue"]["waiting"]


def test_a_queued_request_whose_client_leaves_is_dropped(cascade):
    gated = GatedCascade(cascade)
    settings = ServeSettings(max_queue=4, watermark=False)
    with ServerThread(create_app(gated, settings)) as server:
        results: dict = {}
        body = {"prompt": "a red circle", "seed": 1, "response_format": "b64_json"}
        a = post_in_thread(server.url, body, results, "a")
        wait_for(lambda: len(gated.batches) == 1)
        with pytest.raises(httpx.ReadTimeout):  # the client gives up while queued
            httpx.post(server.url + "/v1/images/generations", json=dict(body, seed=2),
                       headers={"X-Request-Id": "leaver"}, timeout=0.3)  # fmt: skip
        try:
            wait_for(lambda: server_waiting(server) == 0, timeout=10)
            assert httpx.get(server.url + "/v1/progress/leaver").json()["state"] == "cancelled"
        finally:
            gated.gate.set()
            a.join(60)
    assert results["a"].status_code == 200
    assert gated.batches == [[1]]  # seed 2 was never sampled


class FaultyCascade(GatedCascade):
    """Fails any batch holding a prompt with 'poison' (bad input) or 'crash' (our bug)."""

    def generate(self, prompts, seeds, **kwargs):
        from openimagen.errors import InvalidArgumentError

        self.batches.append(list(seeds))
        assert self.gate.wait(60), "test gate never opened"
        if any("poison" in p for p in prompts):
            raise InvalidArgumentError("prompts[0]", "poison", "a prompt this model can draw")
        if any("crash" in p for p in prompts):
            raise RuntimeError("a bug in the model code")
        return self.inner.generate(prompts, seeds, **kwargs)


def _fill_one_batch(server, cascade, bodies):
    """Send bodies[0] (it runs, held at the gate), queue the others behind it, open the gate."""
    results: dict = {}
    threads = [post_in_thread(server.url, bodies[0], results, 0)]
    wait_for(lambda: len(cascade.batches) == 1)
    queued = 0
    for i, body in enumerate(bodies[1:], 1):
        threads.append(post_in_thread(server.url, body, results, i))
        # queued behind the first, or answered at once (refused before it was queued)
        wait_for(lambda i=i, q=queued: server_waiting(server) == q + 1 or i in results)
        queued += i not in results
    cascade.gate.set()
    for thread in threads:
        thread.join(120)
    return results


def test_a_prompt_the_tokenizer_cannot_take_fails_alone(cascade):
    gated = GatedCascade(cascade)
    settings = ServeSettings(max_queue=8, max_batch_images=8, watermark=False)
    base = {"prompt": "a blue square", "response_format": "b64_json"}
    with ServerThread(create_app(gated, settings)) as server:
        results = _fill_one_batch(server, gated, [
            dict(base, seed=0), dict(base, seed=10), dict(base, prompt="a \udcff", seed=20),
            dict(base, seed=30),
        ])  # fmt: skip
    assert [results[i].status_code for i in range(4)] == [200, 200, 400, 200]
    assert results[2].json()["error"]["param"] == "prompt"
    assert gated.batches == [[0], [10, 30]]  # the bad request never reached the model


def test_a_request_that_fails_in_the_model_fails_alone_and_its_batch_mates_succeed(cascade):
    faulty = FaultyCascade(cascade)
    settings = ServeSettings(max_queue=8, max_batch_images=8, watermark=False)
    base = {"prompt": "a blue square", "response_format": "b64_json"}
    with ServerThread(create_app(faulty, settings)) as server:
        results = _fill_one_batch(server, faulty, [
            dict(base, seed=0), dict(base, seed=10), dict(base, prompt="poison", seed=20),
            dict(base, prompt="crash", seed=30), dict(base, seed=40, n=2),
        ])  # fmt: skip
        assert httpx.get(server.url + "/healthz").status_code == 200
    codes = [results[i].status_code for i in range(5)]
    assert codes == [200, 200, 400, 500, 200]
    bad, bug = results[2].json()["error"], results[3].json()["error"]
    assert (bad["code"], bad["param"]) == ("invalid_value", "prompt") and "poison" in bad["message"]
    assert bug["type"] == "server_error" and "a bug" not in bug["message"]  # no internals sent
    # the batch failed, then every request ran alone: only the failing ones failed
    assert faulty.batches == [[0], [10, 20, 30, 40, 41], [10], [20], [30], [40, 41]]
    alone = np.asarray(to_pil(cascade.generate(["a blue square"], [41])[0]), np.int16)
    got = results[4].json()["data"][1]["b64_json"]
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(got))).convert("RGB"), np.int16)
    assert np.abs(got - alone).max() <= 1
