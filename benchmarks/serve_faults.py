"""A bounded fault-injection load test of ``openimagen serve`` over loopback.

    python benchmarks/serve_faults.py --rounds 20 --valid 8 --concurrency 8 --out /tmp/faults.json

Starts ``python -m openimagen.serve`` as a subprocess on 127.0.0.1 (a free port, an API key
required) with a tiny random cascade (16 -> 64 px, as benchmarks/serve_load.py), then sends
``--rounds`` rounds, shuffled (fixed seed) and spread over ``--concurrency`` client threads:
in each round ``--valid`` valid requests and one request of every kind in ``HOSTILE`` (text
the tokenizer or a PNG chunk cannot take, deeply nested JSON, oversized bodies, wrong keys
and hosts, clients that disconnect mid-body or while queued, ...). Meanwhile a probe thread
asks ``/healthz`` every 0.25 s.

It checks that every valid request gets 200 with decodable PNGs, every hostile one exactly
its 4xx status and error code, every probe 200, no request left queued or running, and no
traceback in the server's log; it reports the counts, probe latencies and the server's
resident memory (VmRSS) after warm-up and after each quarter of the rounds. Exit status 1 if
any check fails. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from PIL import Image
from serve_load import build_tiny_model, free_port, rss_mib, wait_healthy

from openimagen.fileio import atomic_write_json

KEY = "fault-injection-key"
BODY_LIMIT = 16384  # ServeSettings().max_body_bytes, the server's default
JSON = {"Content-Type": "application/json"}


def _body(text: str) -> bytes:
    return text.encode("utf-8")


# name -> (body bytes, extra headers, expected status, expected error code). Bodies are raw
# JSON text, so escapes such as \udcff reach the server exactly as a hostile client sends them.
HOSTILE: dict[str, tuple[bytes, dict[str, str], int, str]] = {
    "lone surrogate": (_body(r'{"prompt": "a \udcff circle"}'), {}, 400, "invalid_value"),
    "NUL in prompt": (_body(r'{"prompt": "a red\u0000circle"}'), {}, 400, "invalid_value"),
    "terminal escape in prompt": (
        _body(r'{"prompt": "\u001b]0;owned\u0007 a circle"}'), {}, 400, "invalid_value",
    ),
    "lone surrogate as field name": (
        _body(r'{"prompt": "x", "\udcff": 1}'), {}, 400, "unknown_parameter",
    ),
    "nested 16000 deep": (b"[" * 16000, {}, 400, "invalid_json"),
    "nested 16000 deep in a field": (b'{"prompt": ' + b"[" * 16000, {}, 400, "invalid_json"),
    "integer of 5000 digits": (
        b'{"prompt": "x", "seed": ' + b"9" * 5000 + b"}", {}, 400, "invalid_json",
    ),
    "malformed JSON": (b'{"prompt": "a red circle",', {}, 400, "invalid_json"),
    "wrong type": (b'{"prompt": "a red circle", "n": "2"}', {}, 400, "invalid_value"),
    "unknown field": (b'{"prompt": "x", "guidance": 3}', {}, 400, "unknown_parameter"),
    "oversized body": (
        b'{"prompt": "' + b"a" * (BODY_LIMIT + 4096) + b'"}', {}, 413, "request_too_large",
    ),
    "oversized chunked body": (b"", {}, 413, "request_too_large"),  # sent by _chunked()
    "form post": (b'{"prompt": "x"}', {"Content-Type": "text/plain"}, 415,
                  "unsupported_media_type"),
    "wrong key": (b'{"prompt": "x"}', {"Authorization": "Bearer wrong"}, 401, "invalid_api_key"),
    "rebound Host": (b'{"prompt": "x"}', {"Host": "evil.example"}, 400, "invalid_host"),
    "bad request id": (b'{"prompt": "x"}', {"X-Request-Id": "../../etc"}, 400, "invalid_value"),
}  # fmt: skip
# clients that leave without reading an answer: there is no status to check, only that the
# server drops the work (or finishes it) and keeps serving
DISCONNECTS = ("disconnect mid-body", "disconnect while queued")


def _chunked():
    yield b'{"prompt": "'
    for _ in range(BODY_LIMIT // 1024 + 4):
        yield b"a" * 1024
    yield b'"}'


def _raw_then_close(port: int, data: bytes) -> None:
    """Send ``data`` on a fresh connection and close it without reading the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        time.sleep(0.05)


def _disconnect(kind: str, port: int, request_id: str) -> None:
    body = json.dumps({"prompt": "a red circle", "seed": 1, "response_format": "b64_json"})
    head = (f"POST /v1/images/generations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
            f"X-Request-Id: {request_id}\r\n")  # fmt: skip
    if kind == "disconnect mid-body":  # promises 500 bytes, sends 20, leaves
        _raw_then_close(
            port, (head + "Content-Length: 500\r\n\r\n").encode() + b'{"prompt": "a red '
        )
    else:  # a whole request, then gone before the answer
        _raw_then_close(port, (head + f"Content-Length: {len(body)}\r\n\r\n{body}").encode())


def _valid_ok(response: httpx.Response, n: int) -> bool:
    if response.status_code != 200:
        return False
    data = response.json()["data"]
    for item in data:
        Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).load()
    return len(data) == n


def run_plan(url: str, port: int, plan: list[tuple[str, int]], concurrency: int) -> dict:
    """Send every (kind, index) of ``plan``; counts of what was expected and what came back."""
    results: Counter = Counter()
    problems: list[str] = []
    lock = threading.Lock()
    items = iter(plan)
    auth = {"Authorization": f"Bearer {KEY}"}

    def one(http: httpx.Client, kind: str, i: int) -> str | None:
        if kind == "valid":
            n = 1 + i % 2
            body = {"prompt": f"{i % 4 + 1} red circles", "seed": i, "n": n,
                    "response_format": "b64_json"}  # fmt: skip
            response = http.post("/v1/images/generations", json=body, headers=auth)
            return None if _valid_ok(response, n) else f"{response.status_code} {response.text}"
        if kind in DISCONNECTS:
            _disconnect(kind, port, f"gone-{i}")
            return None
        body, headers, status, code = HOSTILE[kind]
        content = _chunked() if kind == "oversized chunked body" else body
        response = http.post("/v1/images/generations", content=content,
                             headers={**auth, **JSON, **headers})  # fmt: skip
        got = (response.status_code, response.json().get("error", {}).get("code"))
        return None if got == (status, code) else f"{got} != {(status, code)}"

    def client() -> None:
        with httpx.Client(base_url=url, timeout=300) as http:
            while True:
                with lock:
                    item = next(items, None)
                if item is None:
                    return
                kind, i = item
                try:
                    problem = one(http, kind, i)
                except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
                    problem = repr(exc)
                with lock:
                    results[(kind, problem is None)] += 1
                    if problem is not None:
                        problems.append(f"{kind} #{i}: {problem[:300]}")

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"results": results, "problems": problems}


class HealthProbe(threading.Thread):
    """GET /healthz every ``interval`` s until stopped: latencies and failures."""

    def __init__(self, url: str, interval: float = 0.25):
        super().__init__(daemon=True)
        self.url, self.interval = url, interval
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._done = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._done.wait(self.interval):
                start = time.perf_counter()
                try:
                    status = http.get(self.url + "/healthz").status_code
                except httpx.HTTPError as exc:
                    status = repr(exc)
                self.latencies.append(time.perf_counter() - start)
                if status != 200:
                    self.failures.append(str(status))

    def stop(self) -> None:
        self._done.set()
        self.join()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="rounds of requests")
    parser.add_argument("--valid", type=int, default=8, help="valid requests per round")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--warmup", type=int, default=16, help="valid requests before measuring")
    parser.add_argument("--seed", type=int, default=0, help="seed of the shuffled order")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()

    kinds = ["valid"] * args.valid + list(HOSTILE) + list(DISCONNECTS)
    rounds = []
    for r in range(args.rounds):
        plan = [(kind, r * len(kinds) + j) for j, kind in enumerate(kinds)]
        random.Random(args.seed + r).shuffle(plan)
        rounds.append(plan)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = Path(tmp) / "server.log"
        command = [sys.executable, "-m", "openimagen.serve", "--model", str(model),
                   "--port", str(port), "--device", "cpu", "--log-level", "warning"]  # fmt: skip
        with open(log_path, "wb") as log:
            server = subprocess.Popen(command, env=dict(os.environ, OPENIMAGEN_API_KEY=KEY),
                                      stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        probe = HealthProbe(url)
        try:
            wait_healthy(url, server)
            # warm-up seeds follow the measured ones, so no image is drawn twice
            warm = [("valid", args.rounds * len(kinds) + i) for i in range(args.warmup)]
            warm_result = run_plan(url, port, warm, args.concurrency)
            rss = [rss_mib(server.pid)]
            probe.start()
            start = time.perf_counter()
            runs = []
            quarters = {args.rounds * k // 4 for k in range(1, 5)}
            for r, plan in enumerate(rounds, 1):
                runs.append(run_plan(url, port, plan, args.concurrency))
                if r in quarters:
                    rss.append(rss_mib(server.pid))
            wall = time.perf_counter() - start
            time.sleep(1.5)  # past the disconnect poll, so a dropped request shows as such
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as http:
                states = Counter(
                    http.get(f"/v1/progress/gone-{i}").json()["state"]
                    for plan in rounds
                    for kind, i in plan
                    if kind == "disconnect while queued"
                )
                healthy_after = http.get("/healthz").status_code == 200
        finally:
            probe.stop()
            server.terminate()
            server.wait(30)
        log_text = log_path.read_text(errors="replace")

    counts: Counter = Counter()
    problems: list[str] = warm_result["problems"]
    for run in runs:
        counts.update(run["results"])
        problems += run["problems"]
    by_kind = {
        kind: {
            "sent": counts[(kind, True)] + counts[(kind, False)],
            "as_expected": counts[(kind, True)],
        }
        for kind in ["valid", *HOSTILE, *DISCONNECTS]
    }
    latencies = sorted(probe.latencies)
    result = {
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "requests": sum(k["sent"] for k in by_kind.values()),
        "wall_s": round(wall, 1),
        "by_kind": by_kind,
        "expected": {kind: f"{status} {code}" for kind, (_, _, status, code) in HOSTILE.items()},
        "disconnected_while_queued_final_state": dict(states),
        "problems": problems[:10],
        "health_probes": len(latencies),
        "health_probe_failures": len(probe.failures),
        "health_latency_s": {
            "p50": round(latencies[len(latencies) // 2], 3) if latencies else None,
            "max": round(latencies[-1], 3) if latencies else None,
        },
        "healthy_after": healthy_after,
        "server_tracebacks": log_text.count("Traceback"),
        # the end of the first one: the exception and the lines that raised it
        "server_log_first_traceback": log_text.split("Traceback")[1][-1500:]
        if "Traceback" in log_text
        else None,
        # resident memory of the server after warm-up, then after each quarter of the rounds
        "rss_mib": [round(x, 1) for x in rss],
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)
    stuck = set(states) & {"queued", "running"}  # "unknown": never submitted
    passed = (
        not problems
        and all(k["sent"] == k["as_expected"] for k in by_kind.values())
        and not probe.failures
        and healthy_after
        and not stuck
        and result["server_tracebacks"] == 0
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
