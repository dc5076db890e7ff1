"""Training throughput on one 2-core machine: one process with 2 threads against 2 DDP
processes with 1 thread each (gloo), and 1 process with 1 thread, side by side.

Each arm trains the same config for ``--steps`` steps from scratch in a temporary
directory; the arms alternate for ``--rounds`` rounds so that load from anything else on
the machine falls on all of them alike. Throughput is read from the wall-clock stamps of
metrics.jsonl, leaving out the first logged interval (start-up, warm-up).

    python benchmarks/train_parallelism.py configs/bundled-base-32.toml --steps 150 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ARMS = {
    "1 process x 2 threads": (1, 2),
    "2 DDP processes x 1 thread": (2, 1),
    "1 process x 1 thread": (1, 1),
}


def run_arm(config: Path, procs: int, threads: int, steps: int, out: Path) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    bin_dir = Path(sys.executable).parent
    overrides = out / "config.toml"
    text = config.read_text().replace("every = 50", "every = 10")
    text = text.replace("[log]", "[log]\nprogress = false", 1)
    text = text.replace("steps = 200000", f"steps = {steps}")
    text = text.replace("checkpoint_every = 250", f"checkpoint_every = {steps}")
    overrides.write_text(text)
    train = ["-m", "openimagen.train", str(overrides), "--output", str(out / "run")]
    if procs == 1:
        cmd = [sys.executable, *train]
    else:
        cmd = [str(bin_dir / "torchrun"), "--nproc_per_node", str(procs), *train]
    subprocess.run(cmd, env=env, check=True, cwd=config.resolve().parents[1],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    rows = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    rows = rows[1:]  # the first interval holds start-up
    images = rows[-1]["samples_seen"] - rows[0]["samples_seen"]
    return images / (rows[-1]["time"] - rows[0]["time"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    speeds: dict[str, list[float]] = {name: [] for name in ARMS}
    for _ in range(args.rounds):
        for name, (procs, threads) in ARMS.items():
            with tempfile.TemporaryDirectory() as tmp:
                speeds[name].append(run_arm(args.config, procs, threads, args.steps, Path(tmp)))
            print(f"{name}: {speeds[name][-1]:.1f} img/s", file=sys.stderr)
    base = statistics.median(speeds["1 process x 1 thread"])
    print("| arm | images/s (median of rounds) | rounds | vs 1 process x 1 thread |")
    print("|---|---|---|---|")
    for name, values in speeds.items():
        med = statistics.median(values)
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(f"| {name} | {med:.1f} | {shown} | {med / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
