"""Linear probe: can a frozen text encoder's embedding of a colour word it was never
trained on be mapped to the right colour?

This is the ceiling a text-conditional U-Net faces on the paraphrase split: it learns a
map from the encoder's embeddings of the *training* colour words to the six rendered
colours, and is then asked for words it never saw ("crimson", "cobalt", "lilac"). The
probe learns the same kind of map with a linear classifier:

* features: the encoder's embedding of the colour word (the mean over its tokens) in a few
  short contexts ("a {w} circle", ...), at every layer;
* train: the training language's colour words (``TRAIN_LANGUAGE``, 5 per colour);
* test: the paraphrase language's colour words (never in training), same contexts;
* arms: the pretrained bundled MiniLM, and a randomly initialised MiniLM of the same
  shape (what part 3 of docs/results.md trains against).

    python benchmarks/colour_probe.py                 # prints a table, writes JSON with --out
    python benchmarks/colour_probe.py --seeds 0 1 2   # random-encoder arm over several inits

Chance is 1/6. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

CONTEXTS = ("a {w} circle", "a {w} square", "the {w} triangle", "a small {w} shape", "{w}")


def word_features(model, tokenizer, words: list[str]) -> torch.Tensor:
    """[layers + 1, len(words) * len(CONTEXTS), D]: mean embedding of each word's tokens."""
    rows = []
    for word in words:
        for context in CONTEXTS:
            prefix, _, _ = context.partition("{w}")
            text = context.format(w=word)
            ids = tokenizer(text, return_tensors="pt")
            # the word's tokens: those after the prefix's tokens ([CLS] + prefix)
            start = len(tokenizer(prefix.strip(), add_special_tokens=False)["input_ids"]) + 1
            n = len(tokenizer(word, add_special_tokens=False)["input_ids"])
            with torch.inference_mode():
                hidden = model(**ids, output_hidden_states=True).hidden_states  # per layer
            rows.append(torch.stack([h[0, start : start + n].mean(0) for h in hidden]))
    return torch.stack(rows, dim=1)  # [layers + 1, N, D]


def fit_probe(x: torch.Tensor, y: torch.Tensor, *, weight_decay: float = 1e-2) -> torch.nn.Linear:
    """Multinomial logistic regression on standardised features (full-batch L-BFGS)."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(x.shape[1], int(y.max()) + 1)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(probe(x), y)
        loss = loss + weight_decay * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return probe


def probe_accuracy(model, tokenizer, train_words, test_words) -> list[float]:
    """Held-out-word accuracy per layer (0 = token embeddings, last = final layer)."""
    names = sorted(train_words)
    xs_train = word_features(model, tokenizer, [w for c in names for w in train_words[c]])
    xs_test = word_features(model, tokenizer, [w for c in names for w in test_words[c]])
    y_train = torch.tensor(
        [i for i, c in enumerate(names) for _ in train_words[c] for _ in CONTEXTS]
    )
    y_test = torch.tensor([i for i, c in enumerate(names) for _ in test_words[c] for _ in CONTEXTS])
    out = []
    for layer in range(xs_train.shape[0]):
        mean, std = xs_train[layer].mean(0), xs_train[layer].std(0) + 1e-6
        probe = fit_probe((xs_train[layer] - mean) / std, y_train)
        with torch.no_grad():
            pred = probe((xs_test[layer] - mean) / std).argmax(1)
        out.append(float((pred == y_test).float().mean()))
    return out


def probe_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The options every probe here takes (``--seeds``, ``--out``); one torch thread."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="random-init seeds")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    return args


def encoder_arms(seeds: list[int]):
    """The bundled MiniLM's tokenizer and its arms: ``"pretrained"``, then one randomly
    initialised model of the same config per seed (``"random-seed{N}"``), one at a time."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from openimagen.text.huggingface import resolve_text_encoder_source

    _, source = resolve_text_encoder_source("minilm")
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)

    def arms():
        yield "pretrained", AutoModel.from_pretrained(source, local_files_only=True).eval()
        config = AutoConfig.from_pretrained(source, local_files_only=True)
        for seed in seeds:
            torch.manual_seed(seed)
            yield f"random-seed{seed}", AutoModel.from_config(config).eval()

    return tokenizer, arms()


def main(argv: list[str] | None = None) -> int:
    from openimagen.data.shapes import OBJECT_COLORS, PARAPHRASE_LANGUAGE, TRAIN_LANGUAGE

    args = probe_args(argv, __doc__.splitlines()[0])
    train_words = {c: list(TRAIN_LANGUAGE.words[c]) for c in OBJECT_COLORS}
    test_words = {c: list(PARAPHRASE_LANGUAGE.words[c]) for c in OBJECT_COLORS}
    tokenizer, arms = encoder_arms(args.seeds)
    results = {
        name: probe_accuracy(model, tokenizer, train_words, test_words) for name, model in arms
    }
    n_test = sum(len(v) for v in test_words.values()) * len(CONTEXTS)
    print(
        f"unseen colour words: {sum(len(v) for v in test_words.values())} x {len(CONTEXTS)} "
        f"contexts = {n_test} test items; chance 1/6 = 16.7%"
    )
    print("layer  " + "  ".join(f"{k:>15}" for k in results))
    for layer in range(len(results["pretrained"])):
        print(f"{layer:5d}  " + "  ".join(f"{v[layer]:15.1%}" for v in results.values()))
    if args.out:
        payload = {
            "contexts": CONTEXTS,
            "train_words": train_words,
            "test_words": test_words,
            "accuracy_per_layer": results,
            "num_test_items": n_test,
        }
        args.out.write_text(json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
