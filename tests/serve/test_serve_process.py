"""``python -m openimagen.serve`` as a real process: model directory, env key, policy file."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from cascade_testutil import tiny_cascade

KEY = "process-key-9"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(minilm, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    model_dir = tiny_cascade(minilm, base_res=16, sr_res=32).save(tmp / "tiny")
    policy = tmp / "blocked.txt"
    policy.write_text("# operator's list\nblue square\n", encoding="utf-8")
    port = free_port()
    env = dict(os.environ, OPENIMAGEN_API_KEY=KEY, HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "openimagen.serve", "--model", str(model_dir),
               "--port", str(port), "--policy", str(policy), "--device", "cpu"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/healthz", timeout=1)
            break
        except httpx.HTTPError:
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
    yield process, url
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_process_serves_with_key_and_policy(server):
    process, url = server
    body = {"prompt": "a red circle", "response_format": "b64_json", "seed": 3}
    assert httpx.post(url + "/v1/images/generations", json=body).status_code == 401
    auth = {"Authorization": f"Bearer {KEY}"}
    ok = httpx.post(url + "/v1/images/generations", json=body, headers=auth, timeout=60)
    assert ok.status_code == 200 and ok.json()["data"][0]["seed"] == 3
    refused = httpx.post(url + "/v1/images/generations", headers=auth, timeout=60,
                         json=dict(body, prompt="A blue  Square on the left"))  # fmt: skip
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "content_policy_violation"
    assert httpx.get(url + "/healthz").json()["model"] == "tiny"


def test_process_stops_cleanly_on_ctrl_c(server):
    process, url = server
    process.send_signal(signal.SIGINT)
    assert process.wait(30) == 0
    output = process.stdout.read().decode()
    assert "Traceback" not in output
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/healthz", timeout=2)


def test_process_bound_to_another_loopback_address_answers(minilm, tmp_path):
    model_dir = tiny_cascade(minilm, base_res=16, sr_res=32).save(tmp_path / "tiny")
    port = free_port()
    env = dict(os.environ, OPENIMAGEN_API_KEY="", HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "openimagen.serve", "--model", str(model_dir),
               "--host", "127.0.0.2", "--port", str(port), "--device", "cpu"]  # fmt: skip
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.2:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(url + "/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert process.poll() is None, process.stdout.read().decode()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health.status_code == 200, health.text
        body = {"prompt": "a red circle", "response_format": "b64_json", "seed": 1}
        ok = httpx.post(url + "/v1/images/generations", json=body, timeout=60)
        assert ok.status_code == 200 and ok.json()["data"][0]["seed"] == 1
        # the DNS-rebinding guard still holds: other names are refused
        rebound = httpx.get(url + "/healthz", headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "invalid_host"
    finally:
        process.kill()
        process.wait(10)
