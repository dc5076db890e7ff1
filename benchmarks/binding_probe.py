"""Linear probe: does a frozen text encoder's state of a *shape word* say which colour it
was given, in a caption that names two coloured objects?

The bundled base U-Net draws single objects in the right colour and draws the right two
colours and shapes for "a green triangle and a yellow circle", but binds them at random or
by its priors (docs/results.md, "Continuing the base stage"). A U-Net conditioned by
cross-attention can bind colour to shape most easily if the encoder's state at the shape
word already carries that object's colour. This probe measures whether it does:

* captions: two objects of distinct colours and shapes, in the training language's words
  and attribute orders ("a red circle and a blue square", "a circle that is red and a
  square that is blue", "a circle, coloured red, and a square, coloured blue"), objects in
  both orders;
* features: the encoder's state of each shape word (the mean over its tokens), per layer;
* label: the colour of that object (6-way linear classifier);
* split: colour-pair x shape-pair combinations, 70% to fit the probe, the rest to test, so
  test captions pair colours and shapes in combinations the probe never saw;
* score: on test shape words, how often the probe names the object's own colour and how
  often the *other* object's colour. An encoder whose shape states hold only the bag of
  words of the caption gives own = other (at best 50% each); one that binds gives
  own near 100%.

Arms: the pretrained bundled MiniLM and randomly initialised MiniLMs of the same shape.

    python benchmarks/binding_probe.py --seeds 0 1 2 --out docs/results/binding_probe.json

Nothing is downloaded.
"""

from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import torch
from colour_probe import (  # benchmarks/ is the script directory, so on sys.path
    encoder_arms,
    fit_probe,
    probe_args,
)

ORDERS = (
    "{det1} {c1} {s1} and {det2} {c2} {s2}",
    "{det1} {s1} that is {c1} and {det2} {s2} that is {c2}",
    "{det1} {s1}, coloured {c1}, and {det2} {s2}, coloured {c2}",
    "{det1} {c1} {s1} and {det2} {s2} that is {c2}",
)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def captions(words: dict[str, tuple[str, ...]], colours: list[str], shapes: list[str], rng):
    """(text, [(char span of shape word, colour index, other colour index)] x 2, combo key)."""
    out = []
    for (c1, c2), (s1, s2) in itertools.product(
        itertools.permutations(colours, 2), itertools.permutations(shapes, 2)
    ):
        for template in ORDERS:
            w = {"c1": rng.choice(words[c1]), "c2": rng.choice(words[c2]),
                 "s1": rng.choice(words[s1]), "s2": rng.choice(words[s2])}  # fmt: skip
            first = template.split("{")[1].split("}")[0]
            w["det1"] = _article(w["c1"] if first == "c1" else w["s1"])
            second = template.split("{det2} ")[1].split("}")[0].strip("{")
            w["det2"] = _article(w[second])
            text = template.format(**w)
            i1 = text.index(w["s1"], text.index(w["det1"]) + len(w["det1"]))
            i2 = text.index(w["s2"], text.index(" and ") + 5)
            spans = [((i1, i1 + len(w["s1"])), colours.index(c1), colours.index(c2)),
                     ((i2, i2 + len(w["s2"])), colours.index(c2), colours.index(c1))]  # fmt: skip
            out.append((text, spans, (c1, c2, s1, s2)))
    return out


def shape_word_features(model, tokenizer, items) -> tuple[torch.Tensor, list]:
    """[layers + 1, 2 * len(items), D] states of the shape words, and their labels."""
    rows, labels = [], []
    for text, spans, key in items:
        enc = tokenizer(text, return_tensors="pt", return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")[0].tolist()
        with torch.inference_mode():
            hidden = model(**enc, output_hidden_states=True).hidden_states
        for (lo, hi), own, other in spans:
            tokens = [i for i, (a, b) in enumerate(offsets) if b > a and a >= lo and b <= hi]
            rows.append(torch.stack([h[0, tokens].mean(0) for h in hidden]))
            labels.append((own, other, key))
    return torch.stack(rows, dim=1), labels


def probe_binding(model, tokenizer, items, test_keys) -> list[dict[str, float]]:
    """Per layer: share of test shape words given their own colour / the other one."""
    x, labels = shape_word_features(model, tokenizer, items)
    test = torch.tensor([key in test_keys for _, _, key in labels])
    own = torch.tensor([o for o, _, _ in labels])
    other = torch.tensor([t for _, t, _ in labels])
    out = []
    for layer in range(x.shape[0]):
        xt = x[layer][~test]
        mean, std = xt.mean(0), xt.std(0) + 1e-6
        probe = fit_probe((xt - mean) / std, own[~test])
        with torch.no_grad():
            pred = probe((x[layer][test] - mean) / std).argmax(1)
        out.append({"own": float((pred == own[test]).float().mean()),
                    "other": float((pred == other[test]).float().mean())})  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    from openimagen.data.shapes import OBJECT_COLORS, SHAPES, TRAIN_LANGUAGE

    args = probe_args(argv, __doc__.splitlines()[0])
    colours, shapes = list(OBJECT_COLORS), list(SHAPES)
    rng = np.random.default_rng(0)
    items = captions(TRAIN_LANGUAGE.words, colours, shapes, rng)
    keys = sorted({key for _, _, key in items})
    test_keys = {keys[i] for i in rng.permutation(len(keys))[: int(0.3 * len(keys))]}
    tokenizer, arms = encoder_arms(args.seeds)
    results = {name: probe_binding(model, tokenizer, items, test_keys) for name, model in arms}
    n_test = 2 * sum(key in test_keys for _, _, key in items)
    print(f"{len(items)} captions, {n_test} test shape words (combinations unseen by the probe); "
          "own = the object's colour, other = the other object's colour")  # fmt: skip
    print("layer  " + "  ".join(f"{k + ' own/other':>24}" for k in results))
    for layer in range(len(results["pretrained"])):
        cells = [f"{v[layer]['own']:.1%} / {v[layer]['other']:.1%}" for v in results.values()]
        print(f"{layer:5d}  " + "  ".join(f"{c:>24}" for c in cells))
    if args.out:
        payload = {"orders": ORDERS, "num_captions": len(items), "num_test_items": n_test,
                   "accuracy_per_layer": results}  # fmt: skip
        args.out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
