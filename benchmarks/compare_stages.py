"""Score several trained base stages side by side with ShapeBench (base stage only).

Used to choose the bundled base U-Net among candidates trained at an equal budget
(docs/results.md, "Choosing the base U-Net"), and for part 3's equal-step comparison:

    python benchmarks/compare_stages.py runs/cand-w32 runs/cand-w48 runs/cand-w32-xattn32 \\
        --steps 1250 --prompts 48 --per-prompt 2 --out outputs/candidates

Each RUN is a training output directory; ``--steps N`` takes its checkpoint at step N (so
every arm is compared at the same number of images), else its newest. Each is exported
(fp32, base stage only) and scored on the held-out compositions and the paraphrase split
with the same prompts and seeds; a Markdown table goes to stdout and JSON to --out.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import torch

    import openimagen
    from openimagen.eval.shapebench import builtin_prompts, run_shapebench
    from openimagen.models.presets import count_parameters
    from openimagen.train import export_stage

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training output directories")
    parser.add_argument("--steps", type=int, default=None, help="checkpoint step (default: newest)")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--per-prompt", type=int, default=2)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--sampling-steps", type=int, default=25)
    parser.add_argument("--splits", default="heldout_compositions,paraphrase")
    parser.add_argument("--out", type=Path, default=Path("outputs/compare"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    rows = []
    for run in args.runs:
        checkpoint = run / "checkpoints" / f"step_{args.steps:08d}" if args.steps else run
        model_dir = args.out / run.name / "model"
        export_stage(checkpoint, model_dir, overwrite=True,
                     sampling_overrides={"guidance_weight": args.guidance,
                                         "steps": args.sampling_steps})  # fmt: skip
        cascade = openimagen.load(model_dir, device="cpu")
        params = count_parameters(cascade.stages[0].config.unet)
        row = {"run": str(run), "checkpoint": str(checkpoint), "parameters": params}
        for split in args.splits.split(","):
            specs = builtin_prompts(split, args.prompts, seed=0)
            report = run_shapebench(
                lambda p, s, c=cascade: c.generate(p, s, num_stages=1),
                specs, args.out / run.name / split, num_per_prompt=args.per_prompt,
                progress=False, settings={"split": split, "checkpoint": str(checkpoint)},
            )  # fmt: skip
            row[split] = report["summary"]
        rows.append(row)
        print(f"scored {run}", file=sys.stderr)
    (args.out / "compare.json").write_text(json.dumps(rows, indent=1) + "\n")

    def pct(rate: dict) -> str:
        low, high = rate["ci95"]
        return f"{rate['accuracy']:.1%} [{low:.0%}, {high:.0%}]" if rate["total"] else "-"

    splits = args.splits.split(",")
    print("| run | parameters | " + " | ".join(f"{s} all-correct | {s} colour" for s in splits)
          + " | relation (held-out) |")  # fmt: skip
    print("|---|---|" + "---|---|" * len(splits) + "---|")
    for row in rows:
        cells = []
        for s in splits:
            cells += [pct(row[s]["all_correct"]), pct(row[s]["attributes"]["color"])]
        rel = row[splits[0]].get("categories", {}).get("relation", {}).get("all_correct")
        print(f"| {row['run']} | {row['parameters'] / 1e6:.2f}M | " + " | ".join(cells)
              + f" | {pct(rel) if rel else '-'} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
