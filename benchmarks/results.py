"""Reproduce docs/results.md: ShapeBench tables, the guidance and sampler sweeps, sample grids.

    python benchmarks/results.py                         # the bundled model, default sizes
    python benchmarks/results.py --model DIR --prompts 20 --per-prompt 2 --parts 1,5

Writes docs/results.md, docs/results/*.png (plots and sample grids) and
docs/results/PART.json (every number in the tables); the per-image HTML reports go to
outputs/results/ (not committed). Every run uses fixed seeds: prompt i, image k has seed
i * per_prompt + k, so two runs of the same model give the same tables (timings aside).

Parts (issue 6): 1 ShapeBench on the held-out splits, 2 guidance weight x thresholding,
4 sampling-time noise-augmentation level of the SR stage, 5 samplers and step counts.
Part 3 (frozen pretrained vs random encoder, ``--ablation``) and the train-time half of
part 4 (``--sr-noaug``) need models from extra training runs; docs/results.md names them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import openimagen
from openimagen.cascade import Cascade, SamplingConfig
from openimagen.data.shapes import ShapesWorld
from openimagen.errors import OpenImagenError
from openimagen.eval.frechet import ShapesFeatureExtractor, frechet_distance_images
from openimagen.eval.shapebench import builtin_prompts, run_shapebench
from openimagen.images import make_grid, save_png

ROOT = Path(__file__).resolve().parents[1]
NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"
# the README's demo (`make demo`): seeds 0-3, each image scored against this spec
DEMO_PROMPT = "two red circles above a blue square"
DEMO_SPEC = {"prompt": DEMO_PROMPT,
             "objects": [{"shape": "circle", "color": "red"}, {"shape": "circle", "color": "red"},
                         {"shape": "square", "color": "blue"}],
             "relations": [[0, "above", 2], [1, "above", 2]]}  # fmt: skip
GRID_PROMPTS = (
    DEMO_PROMPT,
    "a green triangle",
    "a yellow square to the left of a purple circle",
    "three orange circles",
    "a small blue triangle",
    "a large purple square",
)


def pct(rate: dict) -> str:
    if rate["accuracy"] is None:
        return "-"
    low, high = rate["ci95"]
    return f"{rate['accuracy']:.1%} [{low:.0%}, {high:.0%}]"


class Runner:
    def __init__(self, cascade: Cascade, args: argparse.Namespace) -> None:
        self.cascade = cascade
        self.args = args
        self.html_root = ROOT / "outputs" / "results"
        self.extractor = ShapesFeatureExtractor()
        self._real: dict[int, torch.Tensor] = {}

    def with_cascade(self, cascade: Cascade) -> Runner:
        """A runner for another model that shares this one's features and real scenes."""
        other = Runner.__new__(Runner)
        other.__dict__.update(self.__dict__, cascade=cascade)
        return other

    def shapebench(
        self, name: str, split: str, sampling: list[SamplingConfig], stages: int
    ) -> tuple[dict, float, torch.Tensor]:
        """Score one setting; returns (report summary, seconds per image, the images)."""
        specs = builtin_prompts(split, self.args.prompts, seed=0)
        kept: list[torch.Tensor] = []

        def generate(prompts: list[str], seeds: list[int]) -> torch.Tensor:
            images = self.cascade.generate(prompts, seeds, sampling=sampling, num_stages=stages)
            kept.append(images)
            return images

        started = time.perf_counter()
        report = run_shapebench(
            generate,
            specs,
            self.html_root / name,
            num_per_prompt=self.args.per_prompt,
            batch_size=self.args.batch_size,
            progress=False,
            settings={"split": split, "stages": stages,
                      "sampling": [s.to_dict() for s in sampling[:stages]]},
        )  # fmt: skip
        seconds = (time.perf_counter() - started) / (len(specs) * self.args.per_prompt)
        print(f"  {name}: all-correct {pct(report['summary']['all_correct'])}, "
              f"{seconds:.2f} s/image", file=sys.stderr)  # fmt: skip
        return report["summary"], seconds, torch.cat(kept)

    def frechet(self, images: torch.Tensor) -> float:
        """Frechet distance (shapes-v2 features) to as many rendered training scenes."""
        n, resolution = images.shape[0], images.shape[-1]
        if resolution not in self._real:
            world = ShapesWorld(resolution=resolution, seed=12345)
            self._real[resolution] = torch.stack([world[i]["image"] for i in range(n)])
        return frechet_distance_images(images, self._real[resolution][:n], self.extractor)


def part1(run: Runner, base: list[SamplingConfig], card: Path | None = None) -> dict:
    """Both held-out splits, full cascade; with ``card``, recorded in that model's card."""
    from openimagen.modelcard import record_evaluation

    stages = len(run.cascade.stages)
    out = {}
    for split in run.args.splits.split(","):
        summary, seconds, _ = run.shapebench(f"p1-{split}", split, base, stages)
        out[split] = {"summary": summary, "seconds_per_image": seconds}
        if card is not None:
            settings = {"num_prompts": run.args.prompts, "num_per_prompt": run.args.per_prompt,
                        "seed": 0, "stages": stages}  # fmt: skip
            record_evaluation(card, split, {"settings": settings, "summary": summary})
    return out


def part2(run: Runner, base: list[SamplingConfig], weights: list[float]) -> dict:
    rows = []
    for threshold in ("static", "dynamic"):
        for w in weights:
            sampling = [s.replace(guidance_weight=w, threshold=threshold) for s in base]
            name = f"p2-{threshold}-w{w:g}"
            summary, _, images = run.shapebench(name, "heldout_compositions", sampling, 1)
            rows.append({"threshold": threshold, "w": w, "all_correct": summary["all_correct"],
                         "color": summary["attributes"]["color"],
                         "frechet": run.frechet(images)})  # fmt: skip
    return {"rows": rows}


def part3(args: argparse.Namespace, models: list[tuple[str, str]]) -> dict:
    """The same base U-Net trained on different frozen text encoders, base stage only."""
    rows = []
    for name, directory in models:
        cascade = openimagen.load(directory)
        run = Runner(cascade, args)
        for split in ("heldout_compositions", "paraphrase"):
            summary, _, _ = run.shapebench(f"p3-{name}-{split}", split, list(cascade.sampling), 1)
            rows.append({"encoder": name, "model": directory, "split": split,
                         "all_correct": summary["all_correct"], **summary["attributes"]})  # fmt: skip
    return {"rows": rows}


def part4(run: Runner, base: list[SamplingConfig], levels: list[float], noaug: str | None) -> dict:
    """Sampling-time aug level sweep, for the model and (``noaug``) for the same cascade
    whose SR stage was trained without noise conditioning augmentation."""
    arms = [("with", run)]
    if noaug is not None:
        cascade = openimagen.load(noaug)
        if len(cascade.stages) != len(run.cascade.stages):
            raise SystemExit(f"--sr-noaug {noaug}: expected {len(run.cascade.stages)} stages")
        arms.append(("without", run.with_cascade(cascade)))
    rows = []
    for trained, arm in arms:
        for level in levels:
            sampling = [base[0], *(s.replace(noise_aug_level=level) for s in base[1:])]
            name = f"p4-{trained}-aug{level:g}"
            stages = len(arm.cascade.stages)
            summary, _, images = arm.shapebench(name, "heldout_compositions", sampling, stages)
            rows.append({"sr_trained": f"{trained} aug", "aug_level": level,
                         "all_correct": summary["all_correct"],
                         "frechet": arm.frechet(images)})  # fmt: skip
    return {"rows": rows, "noaug_model": noaug}


def part5(run: Runner, base: list[SamplingConfig], settings: list[tuple[str, int]]) -> dict:
    rows = []
    for sampler, steps in settings:
        sampling = [s.replace(sampler=sampler, steps=steps) for s in base]
        name = f"p5-{sampler}-{steps}"
        summary, seconds, _ = run.shapebench(name, "heldout_compositions", sampling, 1)
        rows.append({"sampler": sampler, "steps": steps, "all_correct": summary["all_correct"],
                     "seconds_per_image": seconds})  # fmt: skip
    return {"rows": rows}


def sample_grids(cascade: Cascade, out: Path) -> list[dict]:
    """One grid per prompt (4 seeds, the model's default settings), real outputs; the demo
    prompt's four images are also scored by ShapeBench, as `make demo` draws them."""
    from openimagen.data.shapes import ShapeSpec
    from openimagen.eval.shapebench import score_image

    shown = []
    for i, prompt in enumerate(GRID_PROMPTS):
        seeds = [0, 1, 2, 3]
        images = cascade.generate([prompt] * len(seeds), seeds)
        path = out / f"grid_{i}.png"
        save_png(make_grid(images, columns=4), path, {"prompt": prompt, "seeds": "0,1,2,3"})
        entry = {"prompt": prompt, "seeds": seeds, "file": path.name}
        if prompt == DEMO_PROMPT:
            spec = ShapeSpec.from_dict(DEMO_SPEC)
            verdicts = [score_image(image, spec) for image in images]
            entry["demo_right"] = [v.all_correct for v in verdicts]
            entry["demo_reasons"] = [v.reason for v in verdicts]
        shown.append(entry)
    return shown


def plots(results: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "part2" in results:
        fig, ax = plt.subplots(figsize=(5, 4))
        for threshold, marker in (("static", "s"), ("dynamic", "o")):
            rows = [r for r in results["part2"]["rows"] if r["threshold"] == threshold]
            x = [r["frechet"] for r in rows]
            y = [r["all_correct"]["accuracy"] for r in rows]
            ax.plot(x, y, marker=marker, label=f"{threshold} thresholding")
            for r, xi, yi in zip(rows, x, y, strict=True):
                ax.annotate(f"w={r['w']:g}", (xi, yi), fontsize=7)
        ax.set_xlabel("Frechet distance (shapes-v2), lower is better")
        ax.set_ylabel("ShapeBench all-correct")
        ax.legend()
        ax.set_title("Guidance sweep: base stage, held-out compositions", fontsize=10)
        fig.tight_layout()
        fig.savefig(out / "guidance_sweep.png", dpi=120)
        plt.close(fig)
    if "part5" in results:
        fig, ax = plt.subplots(figsize=(5, 4))
        for sampler in dict.fromkeys(r["sampler"] for r in results["part5"]["rows"]):
            rows = [r for r in results["part5"]["rows"] if r["sampler"] == sampler]
            ax.plot([r["seconds_per_image"] for r in rows],
                    [r["all_correct"]["accuracy"] for r in rows], marker="o", label=sampler)  # fmt: skip
            for r in rows:
                ax.annotate(str(r["steps"]), (r["seconds_per_image"], r["all_correct"]["accuracy"]),
                            fontsize=7)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("seconds per image (base stage, CPU)")
        ax.set_ylabel("ShapeBench all-correct")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "samplers.png", dpi=120)
        plt.close(fig)


def _setting(meta: dict) -> str:
    n = meta["prompts"] * meta["per_prompt"]
    return (
        f"{meta['prompts']} built-in prompts x {meta['per_prompt']} images = {n} images per "
        f"setting, image k of prompt i with seed i*{meta['per_prompt']}+k; model "
        f"`{meta['model']}` on {meta['device']}, {meta['date']}. Command: `{meta['command']}`."
    )


def markdown(results: dict) -> str:
    lines = [
        "# Results",
        "",
        "Every table and plot below is written by `python benchmarks/results.py` (options "
        "under each heading); each part's raw numbers are in `docs/results/partN.json`. "
        "Brackets are 95% Wilson confidence intervals. Timings were taken on a shared 2-core "
        "CPU machine and are only comparable within one table.",
        "",
    ]
    if "grids" in results:
        lines += ["## Samples", "",
                  "Real outputs of the bundled cascade at its default settings (seeds 0-3), "
                  "`--parts grids`:", ""]  # fmt: skip
        for g in results["grids"]["data"]:
            lines.append(f"**{g['prompt']}**  \n![{g['prompt']}](results/{g['file']})")
            if "demo_right" in g:
                right = sum(g["demo_right"])
                lines.append("")
                lines.append(f"The README demo (`make demo`, seeds 0-3): **{right} of 4** images "
                             "right by the ShapeBench scorer. "
                             + "; ".join(f"seed {s}: " + ("right" if ok else r)
                                         for s, ok, r in zip(g["seeds"], g["demo_right"],
                                                             g["demo_reasons"], strict=True)))  # fmt: skip
            lines.append("")
    if "part1" in results:
        meta = results["part1"]["meta"]
        lines += ["## 1. ShapeBench, full cascade", "", _setting(meta), ""]
        for split, block in results["part1"]["data"].items():
            s = block["summary"]
            lines += [f"### {split} ({block['seconds_per_image']:.2f} s per image)", "",
                      "| category | images | all-correct | count | colour | shape | size | relation |",
                      "|---|---|---|---|---|---|---|---|"]  # fmt: skip
            cats = {"overall": s, **s.get("categories", {})}
            for name, c in cats.items():
                a = c["attributes"]
                lines.append(f"| {name} | {c['num_images']} | {pct(c['all_correct'])} | "
                             f"{pct(a['count'])} | {pct(a['color'])} | {pct(a['shape'])} | "
                             f"{pct(a['size'])} | {pct(a['relation'])} |")  # fmt: skip
            lines.append("")
    if "part2" in results:
        lines += ["## 2. Guidance weight and thresholding (base stage, 32x32)", "",
                  _setting(results["part2"]["meta"]) + " Held-out compositions; Frechet "
                  "distance in the shapes-v2 feature space against as many rendered training "
                  "scenes (lower is closer to the data).", "",
                  "| thresholding | w | all-correct | colour | Frechet |", "|---|---|---|---|---|"]  # fmt: skip
        for r in results["part2"]["data"]["rows"]:
            lines.append(f"| {r['threshold']} | {r['w']:g} | {pct(r['all_correct'])} | "
                         f"{pct(r['color'])} | {r['frechet']:.1f} |")  # fmt: skip
        lines += ["", "![guidance sweep](results/guidance_sweep.png)", ""]
    if "part3" in results:
        lines += ["## 3. Pretrained vs randomly initialised frozen text encoder (base stage)", "",
                  _setting(results["part3"]["meta"]) + " The same U-Net config, data, seed "
                  "and budget; only the frozen encoder's weights differ.", "",
                  "| encoder | split | all-correct | colour | shape | count | size | relation |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in results["part3"]["data"]["rows"]:
            cells = [pct(r[a]) if a in r else "-"
                     for a in ("color", "shape", "count", "size", "relation")]  # fmt: skip
            lines.append(f"| {r['encoder']} | {r['split']} | {pct(r['all_correct'])} | "
                         + " | ".join(cells) + " |")  # fmt: skip
        lines.append("")
    if "part4" in results:
        lines += ["## 4. Noise conditioning augmentation of the SR stage (full cascade)", "",
                  _setting(results["part4"]["meta"]) + " The same base stage and seeds; the "
                  "SR stage trained with augmentation (the bundled one, level ~ U[0, 0.5]) or "
                  "without (`--sr-noaug`), each sampled at several aug levels.", "",
                  "| SR trained | aug level at sampling | all-correct | Frechet (128x128) |",
                  "|---|---|---|---|"]  # fmt: skip
        for r in results["part4"]["data"]["rows"]:
            lines.append(f"| {r['sr_trained']} | {r['aug_level']:g} | "
                         f"{pct(r['all_correct'])} | {r['frechet']:.1f} |")  # fmt: skip
        lines.append("")
    if "part5" in results:
        lines += ["## 5. Samplers and step counts (base stage, 32x32)", "",
                  _setting(results["part5"]["meta"]), "",
                  "| sampler | steps | all-correct | s per image |", "|---|---|---|---|"]  # fmt: skip
        for r in results["part5"]["data"]["rows"]:
            lines.append(f"| {r['sampler']} | {r['steps']} | {pct(r['all_correct'])} | "
                         f"{r['seconds_per_image']:.3f} |")  # fmt: skip
        lines += ["", "![samplers](results/samplers.png)", ""]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: bundled)")
    parser.add_argument("--out", default=str(ROOT / "docs"), help="docs directory")
    parser.add_argument("--prompts", type=int, default=50, help="prompts per setting")
    parser.add_argument("--per-prompt", type=int, default=4, help="images per prompt")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument(
        "--parts", default="grids,1,2,4,5", help="parts to run (others are read from their files)"
    )
    parser.add_argument("--weights", default="1,3,5,8,12,20", help="guidance weights (part 2)")
    parser.add_argument(
        "--ablation",
        action="append",
        default=[],
        metavar="NAME=MODEL_DIR",
        help="part 3: a model trained with encoder NAME (repeat for each arm)",
    )
    parser.add_argument("--aug-levels", default="0,0.1,0.2,0.4", help="SR aug levels (part 4)")
    parser.add_argument(
        "--sr-noaug",
        default=None,
        metavar="MODEL_DIR",
        help="part 4: the same cascade with an SR stage trained without noise augmentation",
    )
    parser.add_argument(
        "--samplers",
        default="ddpm:1000,ddpm:250,ddim:10,ddim:20,ddim:50,dpmpp_2m:10,dpmpp_2m:20,dpmpp_2m:50",
        help="sampler:steps list (part 5)",
    )
    parser.add_argument(
        "--splits",
        default="heldout_compositions,paraphrase",
        help="part 1's splits (run one per process to use several cores, then --merge-part1)",
    )
    parser.add_argument(
        "--record-card",
        action="store_true",
        help="part 1: record its results in the model directory's evaluation.json and card",
    )
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    # part 3 loads its own arms; the model itself is loaded only when a part needs it
    needs_model = bool(parts & {"grids", "1", "2", "4", "5"})
    cascade = openimagen.load(args.model) if needs_model else None
    base = list(cascade.sampling) if cascade is not None else []
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    run = Runner(cascade, args) if cascade is not None else None
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "device": str(cascade.device) if cascade is not None else "cpu",
        "model": cascade.model_id if cascade is not None else "",
        "default_sampling": [s.to_dict() for s in base],
        "prompts": args.prompts,
        "per_prompt": args.per_prompt,
        "command": " ".join(["python benchmarks/results.py", *(argv or sys.argv[1:])]),
    }
    jobs = {
        "grids": lambda: sample_grids(cascade, out / "results"),
        "part1": lambda: part1(
            run, base, openimagen.resolve_model_dir(args.model) if args.record_card else None
        ),
        "part2": lambda: part2(run, base, [float(w) for w in args.weights.split(",")]),
        "part3": lambda: part3(args, [tuple(m.split("=", 1)) for m in args.ablation]),
        "part4": lambda: part4(
            run, base, [float(a) for a in args.aug_levels.split(",")], args.sr_noaug
        ),
        "part5": lambda: part5(
            run, base, [(p.split(":")[0], int(p.split(":")[1])) for p in args.samplers.split(",")]
        ),
    }
    for name, job in jobs.items():
        if name.removeprefix("part") not in parts:
            continue
        if name == "part4" and len(cascade.stages) < 2:
            continue
        if name == "part3" and not args.ablation:
            parser.error("part 3 needs --ablation NAME=MODEL_DIR (at least two)")
        # each part is its own file, so parts can run in separate processes side by side
        part_meta = meta
        if name == "part3":  # its models are the arms, not --model
            part_meta = dict(meta, model=", ".join(m.split("=", 1)[0] for m in args.ablation))
        data = {"meta": part_meta, "data": job()}
        (out / "results" / f"{name}.json").write_text(json.dumps(data, indent=1) + "\n")
    results = {}
    for name in jobs:
        path = out / "results" / f"{name}.json"
        if path.is_file():
            results[name] = json.loads(path.read_text())
    plots({k: v["data"] for k, v in results.items()}, out / "results")
    page = markdown(results)
    target = out / "results.md"
    old = target.read_text() if target.is_file() else ""
    if NOTES_START in old and NOTES_END in old:  # keep the hand-written discussion
        notes = old[old.index(NOTES_START) : old.index(NOTES_END) + len(NOTES_END)]
        page = page.replace("\n", "\n\n" + notes + "\n", 1)
    target.write_text(page)
    print(out / "results.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OpenImagenError as exc:  # a bad model directory, prompt file, ...: one line
        sys.exit(f"results.py: {exc}")
