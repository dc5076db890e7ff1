"""Plot training loss curves from runs' metrics.jsonl files (docs/results/training_curve.png).

    python benchmarks/training_curve.py runs/bundled-base-32 runs/bundled-sr-32-128 \
        --out docs/results/training_curve.png

Each run is drawn as its logged loss (thin) and a moving average over 10 log points (thick).
The metrics files are copied next to the plot (NAME.metrics.jsonl) so the curve can be redrawn.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from openimagen.train.logging import read_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training output directories")
    parser.add_argument("--out", type=Path, default=Path("docs/results/training_curve.png"))
    parser.add_argument("--window", type=int, default=10, help="moving-average length")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for run in args.runs:
        metrics = run / "metrics.jsonl" if run.is_dir() else run
        rows = read_metrics(metrics)
        if not rows:
            print(f"{metrics}: no metrics", file=sys.stderr)
            return 2
        name = run.name.removesuffix(".metrics.jsonl")
        if run.is_dir():
            shutil.copyfile(metrics, args.out.parent / f"{name}.metrics.jsonl")
        steps = [r["step"] for r in rows]
        loss = [r["loss"] for r in rows]
        k = args.window
        smooth = [sum(loss[max(0, i - k + 1) : i + 1]) / len(loss[max(0, i - k + 1) : i + 1])
                  for i in range(len(loss))]  # fmt: skip
        (line,) = ax.plot(steps, loss, linewidth=0.5, alpha=0.4)
        ax.plot(steps, smooth, color=line.get_color(), linewidth=2, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (v-prediction, min-SNR-5 weighted)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
