"""The text-embedding cache at LAION-like scale: this version against earlier ones.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/text_cache.py \\
        --n 100000 1000000 3000000 --before-n 100000 1000000 --old-n 100000 \\
        --json docs/results/text_cache.json

Synthetic captions (``caption(i)``) and a deterministic fake encoder (4 to 8 tokens x 32,
computed from a CRC of the caption, ~1 us per caption) so the cache, not a network, is
what is timed. Each (implementation, N) runs in its own process, in a fresh directory
under ``--workdir``, and reports:

- fill: ``fill_cache`` of N distinct captions (what ``openimagen encode-text`` does;
  batch 256; the package versions store 4,096 per shard) -> captions per second;
- open: a new ``TextEmbeddingCache`` on the filled directory (a new training process);
- lookup: ``get`` of random stored captions in batches of 64 (a training step);
- resume: ``contains`` of all N (a rerun of encode-text finding everything done);
- misses: ``encode_with_cache`` of 200 batches of 16 new captions on top of the N
  (training without encode-text first) -> captions per second;
- memory, over the process's after imports: peak RSS (``ru_maxrss``: anonymous memory
  and mapped file pages together), peak anonymous memory (RssAnon of /proc/self/status,
  sampled every 5 ms by a thread), and RssAnon / RssFile after the open and after the
  lookups; files and bytes on disk.

Three implementations: ``new``, this checkout; ``before`` (``--before-ref``, default
c376991: the package with the index in memory), the same package at a git revision,
extracted with ``git archive`` and imported from there; ``old`` (``--old-ref``, default
baf89a1: the single-module cache before it), ``git show`` into a temporary module. The
old one needs the captions as a list (the package's ``fill_cache`` streams an iterator),
which its peak memory includes.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import torch

DIM, MAX_TOKENS, BATCH, LOOKUP_BATCH = 32, 8, 256, 64
REPO = Path(__file__).resolve().parents[1]


def caption(i: int) -> str:
    return f"a synthetic caption number {i} with {i % 7} red shapes above {i % 11} blue ones"


class FakeEncoder:
    """Deterministic tiny encoder: 4-8 tokens x 32 per caption, from its CRC."""

    name, dim, max_length, cache_id, device = "fake", DIM, MAX_TOKENS, "fake-32-L8", None

    def __init__(self) -> None:
        self.calls = 0
        self.base = np.arange(MAX_TOKENS * DIM, dtype=np.float32).reshape(MAX_TOKENS, DIM) / 256

    def encode(self, texts):
        self.calls += 1
        crc = np.array([zlib.crc32(t.encode()) for t in texts], dtype=np.uint32)
        lengths = 4 + crc % 5  # [B]
        embeddings = self.base[None] + (crc.astype(np.float32) / 2**32)[:, None, None]
        mask = np.arange(MAX_TOKENS)[None] < lengths[:, None]  # [B, L]
        return torch.from_numpy(embeddings), torch.from_numpy(mask)


def load_old(ref: str, where: Path):
    source = subprocess.run(["git", "show", f"{ref}:src/openimagen/text/cache.py"],
                            capture_output=True, text=True, check=True, cwd=REPO).stdout  # fmt: skip
    path = where / "old_text_cache.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_text_cache", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rss_mib() -> float:
    """Peak resident set size so far (``ru_maxrss``; Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_now_mib() -> dict[str, float]:
    """Current RSS split into anonymous memory and mapped file pages (/proc/self/status)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


class AnonPeak:
    """The highest RssAnon seen, sampled by a thread every 5 ms (MiB)."""

    def __init__(self) -> None:
        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, rss_now_mib().get("RssAnon", 0))

    def reset(self) -> float:
        peak, self.peak = self.peak, rss_now_mib().get("RssAnon", 0)
        return max(peak, self.peak)


def worker(impl: str, n: int, directory: Path, ref: str, max_open: int) -> dict:
    torch.set_num_threads(1)
    if impl == "old":
        api = load_old(ref, directory.parent)
    else:  # "before": this process was started on the revision's extracted tree
        import openimagen.text.cache as api
    encoder = FakeEncoder()
    encoder.encode([caption(0)])
    baseline = rss_mib()
    start = rss_now_mib()
    anon0, file0 = start.get("RssAnon", 0), start.get("RssFile", 0)
    sampler = AnonPeak()
    sampler.reset()
    label = {"old": f"old ({ref})", "before": f"before ({ref})", "new": "new"}[impl]
    result: dict = {"impl": label if max_open == 32 else f"{label}, {max_open} maps", "n": n}
    started = time.perf_counter()
    if impl == "old":
        texts = [caption(i) for i in range(n)]  # the old fill_cache takes a sequence
        api.fill_cache(encoder, texts, api.TextEmbeddingCache(directory), batch_size=BATCH,
                       progress=False)  # fmt: skip
        del texts
    else:
        api.fill_cache(encoder, (caption(i) for i in range(n)), api.TextEmbeddingCache(directory),
                       batch_size=BATCH, progress=False)  # fmt: skip
    result["fill_s"] = time.perf_counter() - started
    result["fill_peak_rss_over_baseline_mib"] = rss_mib() - baseline
    result["fill_per_s"] = n / result["fill_s"]
    result["fill_peak_anon_mib"] = sampler.reset() - anon0
    result["encoder_calls"] = encoder.calls

    started = time.perf_counter()
    options = {} if impl == "old" else {"max_open_shards": max_open}
    cache = api.TextEmbeddingCache(directory, **options)
    result["open_s"] = time.perf_counter() - started
    assert len(cache) == n, (len(cache), n)
    now = rss_now_mib()
    result["after_open_anon_mib"] = now.get("RssAnon", 0) - anon0
    result["after_open_file_mib"] = now.get("RssFile", 0) - file0
    if impl != "old":
        result["index_mib"] = cache.index_bytes / 2**20  # in this process's memory
        result["index_mapped_mib"] = getattr(cache, "index_mapped_bytes", 0) / 2**20

    rng = random.Random(0)
    lookups = 0
    started = time.perf_counter()
    while time.perf_counter() - started < 10 and lookups < 200_000:
        texts = [caption(rng.randrange(n)) for _ in range(LOOKUP_BATCH)]
        rows = cache.get(encoder.cache_id, texts)
        assert all(r is not None and r.shape[1] == DIM for r in rows)
        lookups += LOOKUP_BATCH
    result["lookup_per_s"] = lookups / (time.perf_counter() - started)
    now = rss_now_mib()  # after the lookups: mapped shard pages are RssFile
    result["after_lookup_anon_mib"] = now.get("RssAnon", 0) - anon0
    result["after_lookup_file_mib"] = now.get("RssFile", 0) - file0

    started = time.perf_counter()
    for first in range(0, n, 100_000):  # in chunks, as fill_cache asks
        texts = [caption(i) for i in range(first, min(n, first + 100_000))]
        assert all(cache.contains(encoder.cache_id, texts))
    result["resume_check_s"] = time.perf_counter() - started

    started, fresh = time.perf_counter(), 0
    for b in range(200):
        texts = [caption(n + 16 * b + k) for k in range(16)]
        api.encode_with_cache(encoder, texts, cache)
        fresh += 16
    result["miss_per_s"] = fresh / (time.perf_counter() - started)

    files = [p for p in directory.rglob("*") if p.is_file()]
    result["files"] = len(files)
    result["disk_mib"] = sum(p.stat().st_size for p in files) / 2**20
    result["baseline_rss_mib"] = baseline
    result["peak_rss_over_baseline_mib"] = rss_mib() - baseline
    result["peak_anon_mib"] = max(result["fill_peak_anon_mib"], sampler.reset() - anon0)
    return result


def extract(ref: str, where: Path) -> Path:
    """The ``src/`` of git revision ``ref``, written under ``where``: the tree to import."""
    archive = subprocess.run(
        ["git", "archive", ref, "src"], capture_output=True, check=True, cwd=REPO
    )
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where / "src"


def run_one(impl: str, n: int, workdir: Path, ref: str, max_open: int = 32) -> dict:
    directory = Path(tempfile.mkdtemp(prefix=f"{impl}-{n}-", dir=workdir)) / "cache"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if impl == "before":
        env["PYTHONPATH"] = str(extract(ref, directory.parent))
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--worker", impl, str(n), str(directory), "--old-ref", ref,
             "--max-open-shards", str(max_open)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"{impl} N={n} failed:\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(directory.parent, ignore_errors=True)


def table(results: list[dict]) -> str:
    rows = ["| version | N | fill (captions/s) | open (s) | lookup (captions/s) | resume check (s) "
            "| misses (captions/s) | files | disk (MiB) | peak RSS: fill / all (MiB) "
            "| peak anon: fill / all (MiB) | after open: anon / mapped (MiB) "
            "| after lookups: anon / mapped (MiB) | index: in memory / mapped (MiB) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in results:
        index = "-"
        if "index_mib" in r:
            index = f"{r['index_mib']:.1f} / {r.get('index_mapped_mib', 0):.1f}"
        anon = "-"
        if "peak_anon_mib" in r:
            anon = f"{r['fill_peak_anon_mib']:,.0f} / {r['peak_anon_mib']:,.0f}"
        opened = "-"
        if "after_open_anon_mib" in r:
            opened = f"{r['after_open_anon_mib']:,.0f} / {r['after_open_file_mib']:,.0f}"
        rows.append(
            f"| {r['impl']} | {r['n']:,} | {r['fill_per_s']:,.0f} | {r['open_s']:.2f} | "
            f"{r['lookup_per_s']:,.0f} | {r['resume_check_s']:.2f} | {r['miss_per_s']:,.0f} | "
            f"{r['files']:,} | {r['disk_mib']:,.0f} | {r['fill_peak_rss_over_baseline_mib']:,.0f} / "
            f"{r['peak_rss_over_baseline_mib']:,.0f} | {anon} | {opened} | "
            f"{r['after_lookup_anon_mib']:,.0f} / {r['after_lookup_file_mib']:,.0f} | {index} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--old-n", type=int, nargs="*", default=[100_000])
    parser.add_argument("--before-n", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument(
        "--old-ref",
        default="baf89a1",
        help="git revision holding the old src/openimagen/text/cache.py",
    )
    parser.add_argument(
        "--before-ref",
        default="c376991",
        help="git revision of the src/openimagen/text/cache/ package to compare with",
    )
    parser.add_argument("--workdir", default=tempfile.gettempdir())
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--max-open-shards",
        type=int,
        default=32,
        help="the new cache's maps in the worker (the default: 32)",
    )
    parser.add_argument("--more-maps", type=int, default=0, metavar="K",
                        help="also run the new cache at the largest N with K maps")  # fmt: skip
    parser.add_argument("--worker", nargs=3, metavar=("IMPL", "N", "DIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        impl, n, directory = args.worker
        print(json.dumps(worker(impl, int(n), Path(directory), args.old_ref, args.max_open_shards)))
        return
    results = []
    plan = (("old", args.old_n, args.old_ref), ("before", args.before_n, args.before_ref),
            ("new", args.n, args.old_ref))  # fmt: skip
    for n in sorted(set(args.n) | set(args.old_n) | set(args.before_n)):
        for impl, sizes, ref in plan:
            if n in sizes:
                results.append(run_one(impl, n, Path(args.workdir), ref))
                print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    if args.more_maps:
        results.append(
            run_one("new", max(args.n), Path(args.workdir), args.old_ref, args.more_maps)
        )
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
