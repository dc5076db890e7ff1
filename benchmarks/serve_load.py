"""A bounded load test of ``openimagen serve`` over loopback.

    python benchmarks/serve_load.py --requests 1000 --concurrency 8 --duration 600 \
        --out /tmp/serve_load.json

Starts the server as a subprocess on 127.0.0.1 (a free port), on ``--model DIR`` or, by
default, on a tiny random two-stage cascade (16 -> 64 px, built from the bundled text
encoder and saved to a temporary directory). After ``--warmup`` requests it sends exactly
``--requests`` generation requests from ``--concurrency`` client threads (each ``n=1``,
``seed=i``, ``response_format=b64_json``) in ``--segments`` equal parts, and stops early if
``--duration`` seconds pass (then ``served`` < ``requests`` and the exit status is 1).
It reports requests served, errors (any non-200 or unreadable image), p50/p90/p99 latency,
throughput, and the server's resident memory (VmRSS) after warm-up and after each segment,
so a leak shows as steady growth. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from openimagen.fileio import atomic_write_json


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("VmRSS not found")


def build_tiny_model(directory: Path) -> Path:
    """A random tiny cascade (16 -> 64 px) saved as a model directory."""
    import torch

    from openimagen.cascade import Cascade, SamplingConfig, Stage, StageConfig
    from openimagen.models.presets import get_preset
    from openimagen.text import load_text_encoder

    torch.manual_seed(0)
    encoder = load_text_encoder("minilm", max_length=32)
    base = StageConfig(
        unet=get_preset("tiny-base", image_size=16, text_embed_dim=encoder.dim), resolution=16
    )
    sr = StageConfig(
        unet=get_preset("tiny-sr", image_size=64, text_embed_dim=encoder.dim),
        resolution=64,
        lowres_resolution=16,
    )
    fast = SamplingConfig(sampler="ddim", steps=4, guidance_weight=3.0)
    cascade = Cascade(
        encoder,
        [Stage(base), Stage(sr)],
        [fast, fast.replace(noise_aug_level=0.2)],
        model_id="tiny",
    )
    return cascade.save(directory / "tiny")


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            return httpx.get(url + "/healthz", timeout=2).json()
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError("the server did not become healthy")


def run_load(url: str, indices: range, concurrency: int, deadline: float, size: str) -> dict:
    """Send one request per index from ``concurrency`` threads until done or ``deadline``."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    next_index = iter(indices)

    def client() -> None:
        with httpx.Client(base_url=url, timeout=max(deadline - time.monotonic(), 60)) as http:
            while time.monotonic() < deadline:
                with lock:
                    i = next(next_index, None)
                if i is None:
                    return
                body = {"prompt": f"{i % 4 + 1} red circles", "seed": i, "size": size,
                        "response_format": "b64_json"}  # fmt: skip
                start = time.perf_counter()
                try:
                    response = http.post("/v1/images/generations", json=body)
                    ok = response.status_code == 200
                    if ok:  # the image must decode, not just the status be 200
                        png = base64.b64decode(response.json()["data"][0]["b64_json"])
                        Image.open(io.BytesIO(png)).load()
                    problem = None if ok else f"{response.status_code} {response.text[:200]}"
                except (httpx.HTTPError, OSError, KeyError, ValueError) as exc:
                    problem = repr(exc)
                elapsed = time.perf_counter() - start
                with lock:
                    if problem is None:
                        latencies.append(elapsed)
                    else:
                        errors.append(problem)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"latencies": latencies, "errors": errors, "wall_s": wall}


def summarize(runs: list[dict]) -> dict:
    """Requests served, errors and latency percentiles (nearest rank) over ``runs``."""
    lat = sorted(x for run in runs for x in run["latencies"])
    errors = [e for run in runs for e in run["errors"]]
    wall = sum(run["wall_s"] for run in runs)

    def pct(p: float) -> float:
        return round(lat[max(0, math.ceil(p / 100 * len(lat)) - 1)], 3) if lat else 0.0

    return {
        "served": len(lat),
        "errors": len(errors),
        "error_examples": errors[:3],
        "wall_s": round(wall, 2),
        "throughput_rps": round(len(lat) / wall, 2) if wall else 0.0,
        "latency_s": {
            "p50": pct(50),
            "p90": pct(90),
            "p99": pct(99),
            "max": round(lat[-1], 3) if lat else 0.0,
            "mean": round(statistics.fmean(lat), 3) if lat else 0.0,
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="model directory (default: a tiny random one)"
    )
    parser.add_argument("--requests", type=int, default=1000, help="requests measured")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads")
    parser.add_argument("--duration", type=float, default=600.0, help="stop after this many s")
    parser.add_argument("--warmup", type=int, default=32, help="requests before measuring")
    parser.add_argument("--segments", type=int, default=4, help="parts, each followed by VmRSS")
    parser.add_argument("--device", default="cpu", help="device of the server")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else build_tiny_model(Path(tmp))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, OPENIMAGEN_API_KEY="")
        command = [sys.executable, "-m", "openimagen.serve", "--model", str(model),
                   "--host", "127.0.0.1", "--port", str(port), "--device", args.device,
                   "--log-level", "warning"]  # fmt: skip
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
        try:
            health = wait_healthy(url, server)
            size = health["sizes"][0]
            # warm-up seeds follow the measured ones, so no image is drawn twice
            warmup = range(args.requests, args.requests + args.warmup)
            warm = run_load(url, warmup, args.concurrency, time.monotonic() + 600, size)
            rss = [rss_mib(server.pid)]
            deadline = time.monotonic() + args.duration
            bounds = [args.requests * k // args.segments for k in range(args.segments + 1)]
            segments = []
            for low, high in zip(bounds, bounds[1:], strict=False):
                segments.append(run_load(url, range(low, high), args.concurrency, deadline, size))
                rss.append(rss_mib(server.pid))
            still_ok = httpx.get(url + "/healthz", timeout=5).status_code == 200
        finally:
            server.terminate()
            server.wait(30)

    result = {
        "model": health["model"],
        "size": size,
        "device": args.device,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "duration_limit_s": args.duration,
        "warmup_requests": args.warmup,
        "warmup_errors": len(warm["errors"]),
        **summarize(segments),
        "segment_p50_s": [summarize([seg])["latency_s"]["p50"] for seg in segments],
        # resident memory of the server after warm-up, then after each segment
        "rss_mib": [round(x, 1) for x in rss],
        "healthy_after": still_ok,
    }
    print(json.dumps(result, indent=2))
    if args.out:
        atomic_write_json(args.out, result)
    return 0 if result["errors"] == 0 and result["served"] == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
