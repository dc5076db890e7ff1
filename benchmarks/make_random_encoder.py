"""Write a randomly initialised copy of the bundled MiniLM (same config and tokenizer).

The ablation of docs/results.md part 3 (Imagen sec. 4.4: the frozen *pretrained* text
encoder is what gives language understanding) trains the same U-Net on this encoder:

    python benchmarks/make_random_encoder.py runs/minilm-random --seed 0
    # then [text] encoder = "runs/minilm-random" in a training config

Nothing is downloaded: the architecture and tokenizer come from the bundled package.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from openimagen.text.huggingface import resolve_text_encoder_source

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory to write (save_pretrained layout)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    _, source = resolve_text_encoder_source("minilm")
    config = AutoConfig.from_pretrained(source, local_files_only=True)
    torch.manual_seed(args.seed)
    model = AutoModel.from_config(config)  # the architecture's own random initialisation
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    model.save_pretrained(args.out)
    tokenizer.save_pretrained(args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
