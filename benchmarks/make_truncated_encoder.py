"""Write the bundled MiniLM cut after its first N transformer layers (pretrained weights).

The binding probe (benchmarks/binding_probe.py) finds that MiniLM's *final* layer, trained
for mean-pooled sentence similarity, has mixed the two objects' colours into each shape
word, while its middle layers still tell them apart. A text encoder that stops at layer N
gives the U-Net that layer's states as its ``last_hidden_state``, with no code change:

    python benchmarks/make_truncated_encoder.py runs/minilm-l3 --layers 3
    # then [text] encoder = "runs/minilm-l3" in a training config

The output equals ``hidden_states[N]`` of the full model (checked here before saving).
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoModel, AutoTokenizer

    from openimagen.text.huggingface import resolve_text_encoder_source

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write (save_pretrained layout)")
    parser.add_argument("--layers", type=int, default=3, help="transformer layers to keep")
    args = parser.parse_args(argv)

    _, source = resolve_text_encoder_source("minilm")
    full = AutoModel.from_pretrained(source, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    if not 1 <= args.layers < full.config.num_hidden_layers:
        sys.exit(f"--layers {args.layers}: expected 1 to {full.config.num_hidden_layers - 1}")
    cut = AutoModel.from_pretrained(
        source, local_files_only=True, num_hidden_layers=args.layers
    ).eval()
    batch = tokenizer(["a red circle and a square that is blue", "two dots"], padding=True,
                      return_tensors="pt")  # fmt: skip
    with torch.inference_mode():
        want = full(**batch, output_hidden_states=True).hidden_states[args.layers]
        got = cut(**batch).last_hidden_state
    if not torch.allclose(want, got, atol=1e-5):
        sys.exit("the cut model does not reproduce the full model's layer; not saved")
    cut.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(f"{args.out}: {args.layers} of {full.config.num_hidden_layers} layers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
