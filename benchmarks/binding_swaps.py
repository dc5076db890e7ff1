"""Are two objects' colours bound to the right shapes, or swapped? Counted from ShapeBench reports.

    python benchmarks/binding_swaps.py outputs/evals/NAME-heldout_compositions/report.json [...]
    python benchmarks/binding_swaps.py --write-prompts binding.jsonl --n 64   # a prompt set

The prompt set: the first ``n`` two-object and relation prompts (half each) of the built-in
held-out compositions, every one with a colour-shape pair never seen in training; score
it with ``openimagen eval shapebench --prompts binding.jsonl --stages 1``.

Of the images of two-object and relation prompts (two objects of different shapes and
colours) in which the detector finds exactly the two named shapes, one of each, counts
those whose colours are *right* (each shape in its own colour), *swapped* (each in the
other object's colour) and *other* (anything else: one colour on both, a third colour).
A U-Net that reads the caption as a bag of words draws right and swapped about equally
often, or prefers whichever reading pairs colours and shapes it saw in training
(docs/results.md, "Failure analysis").
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

CATEGORIES = ("two_objects", "relation")


def classify(result: dict) -> str | None:
    """'right', 'swapped' or 'other' for a scorable image, None when it does not count."""
    if result["category"] not in CATEGORIES:
        return None
    asked = result["spec"]["objects"]
    if len(asked) != 2 or len({o["shape"] for o in asked}) != 2:
        return None
    if len({o["color"] for o in asked}) != 2:
        return None
    drawn = result["detection"]["objects"]
    if sorted(o["shape"] for o in drawn) != sorted(o["shape"] for o in asked):
        return None
    colour_of = {o["shape"]: o["color"] for o in drawn}
    a, b = asked
    if colour_of[a["shape"]] == a["color"] and colour_of[b["shape"]] == b["color"]:
        return "right"
    if colour_of[a["shape"]] == b["color"] and colour_of[b["shape"]] == a["color"]:
        return "swapped"
    return "other"


def count(report: Path) -> Counter:
    results = json.loads(report.read_text())["results"]
    return Counter(c for c in map(classify, results) if c is not None)


def write_prompts(path: Path, n: int) -> None:
    from openimagen.eval.shapebench import builtin_prompts

    per = {c: [] for c in CATEGORIES}
    for spec in builtin_prompts("heldout_compositions", n=12 * n):
        if spec.category in per and len(per[spec.category]) < n // 2:
            per[spec.category].append(spec)
    specs = [s for pair in zip(*per.values(), strict=True) for s in pair]
    path.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in specs))
    print(f"wrote {len(specs)} prompts to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="*", type=Path, help="report.json of eval shapebench")
    parser.add_argument("--write-prompts", type=Path, help="write the prompt set here instead")
    parser.add_argument("--n", type=int, default=64, help="prompts in the set (default: 64)")
    args = parser.parse_args()
    if args.write_prompts:
        write_prompts(args.write_prompts, args.n)
        return
    print(f"{'report':60s} right swapped other")
    for report in args.reports:
        c = count(report)
        print(f"{str(report):60s} {c['right']:5d} {c['swapped']:7d} {c['other']:5d}")


if __name__ == "__main__":
    main()
