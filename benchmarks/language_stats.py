"""The size of the shapes world's caption language per split, and examples (docs/shapebench.md).

    python benchmarks/language_stats.py               # Markdown tables on stdout
    python benchmarks/language_stats.py --num 20000   # more captions per split
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter

GROUPS = {
    "colours": ("red", "green", "blue", "yellow", "purple", "orange"),
    "shapes": ("circle", "square", "triangle"),
    "sizes": ("small", "large"),
    "relations": ("left_of", "right_of", "above", "below"),
    "counts": ("2", "3", "4"),
    "backgrounds": ("black", "white", "gray"),
}
CONSTRUCTIONS = ("object_phrases", "sized_object_phrases", "relation_clauses",
                 "scene_templates", "background_templates", "list_joiners", "sentence_clauses",
                 "existential_clauses", "sentence_templates",
                 "sentence_background_templates")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    from openimagen.data.shapes import SPLITS, ShapesConfig, ShapesWorld

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=10000, help="captions drawn per split")
    parser.add_argument("--examples", type=int, default=6, help="examples shown per split")
    args = parser.parse_args(argv)
    config = ShapesConfig()
    languages = {"train / heldout_compositions": config.train_language,
                 "paraphrase": config.paraphrase_language}  # fmt: skip

    print("| | " + " | ".join(languages) + " |")
    print("|---|" + "---|" * len(languages))
    for group, keys in GROUPS.items():
        cells = []
        for language in languages.values():
            n = [len(language.words[k]) for k in keys]
            cells.append(f"{sum(n)} ({min(n)}-{max(n)} per {group[:-1]})")
        print(f"| {group} phrases | " + " | ".join(cells) + " |")
    for name in CONSTRUCTIONS:
        cells = [str(len(set(getattr(lang, name)))) for lang in languages.values()]
        print(f"| {name.replace('_', ' ')} | " + " | ".join(cells) + " |")

    print()
    print(f"Over {args.num:,} captions per split:")
    print()
    print("| split | distinct captions | distinct words | words per caption (mean / max) |")
    print("|---|---|---|---|")
    examples = {}
    for split in SPLITS:
        world = ShapesWorld(config, 32, split, seed=0)
        texts = [world.sample(i)[0].prompt for i in range(args.num)]
        words = Counter(w for t in texts for w in re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", t.lower()))
        lengths = [len(t.split()) for t in texts]
        print(f"| {split} | {len(set(texts)):,} | {len(words)} | "
              f"{sum(lengths) / len(lengths):.1f} / {max(lengths)} |")  # fmt: skip
        examples[split] = texts[: args.examples]
    for split, texts in examples.items():
        print(f"\nExamples, {split} (items 0-{args.examples - 1} of seed 0):\n")
        for t in texts:
            print(f"- {t}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
