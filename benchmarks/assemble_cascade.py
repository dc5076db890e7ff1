"""Build a model directory from the stages of other model directories.

`openimagen export` builds a cascade one trained stage at a time and refuses a stage
trained on another text length. This puts together stages that already sit in model
directories, e.g. a newly trained base stage and an SR stage kept from an earlier cascade:

    python benchmarks/assemble_cascade.py OUT BASE_DIR:0 OLD_DIR:1 --model-id shapes-cascade \\
        --record 1=configs/bundled-sr-32-128.toml:3000 --fp16

Each STAGE is ``MODEL_DIR:INDEX``. The text encoder and its length are the first stage's.
Each stage keeps its weights, sampling defaults and training.json; ``--record I=CONFIG:STEP``
writes a training.json for stage I whose run directory is gone, reconstructed from its
config file and step (the card says so). The model card is written last.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    import shutil

    import torch

    import openimagen
    from openimagen.cascade import Cascade
    from openimagen.fileio import atomic_write_json
    from openimagen.modelcard import TRAINING_FILE, write_model_card
    from openimagen.train.config import load_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("stages", nargs="+", help="MODEL_DIR:INDEX, base first")
    parser.add_argument("--model-id", default=None)
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--record", action="append", default=[], metavar="I=CONFIG:STEP")
    args = parser.parse_args(argv)

    sources = []
    for item in args.stages:
        directory, _, index = item.rpartition(":")
        sources.append((Path(directory), int(index)))
    loaded = {d: openimagen.load(d, device="cpu") for d in dict.fromkeys(d for d, _ in sources)}
    first = loaded[sources[0][0]]
    stages = [loaded[d].stages[i] for d, i in sources]
    sampling = [loaded[d].sampling[i] for d, i in sources]
    cascade = Cascade(first.text_encoder, stages, sampling, model_id=args.model_id)
    dtype = torch.float16 if args.fp16 else torch.float32
    cascade.save(args.out, dtype=dtype, overwrite=True)
    from openimagen.cascade import read_cascade_config

    entries = read_cascade_config(args.out).stages
    for (directory, index), entry in zip(sources, entries, strict=True):
        old_entry = read_cascade_config(directory).stages[index]
        record = directory / old_entry.path / TRAINING_FILE
        if record.is_file():
            shutil.copyfile(record, args.out / entry.path / TRAINING_FILE)
    for item in args.record:
        index, _, rest = item.partition("=")
        config_path, _, step = rest.rpartition(":")
        config = load_config(config_path)
        atomic_write_json(args.out / entries[int(index)].path / TRAINING_FILE, {
            "checkpoint": f"(not kept) {config_path} at step {step}",
            "step": int(step),
            "images_seen": int(step) * config.train.batch_size,
            "config": config.to_dict(),
            "exported": "see docs/results.md",
            "note": f"reconstructed from {config_path} and the step: the run directory is "
                    "not kept",
        })  # fmt: skip
    print(write_model_card(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
