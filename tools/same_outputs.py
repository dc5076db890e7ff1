"""Fingerprint what openimagen writes, to show a refactor changes none of it.

Run it with two source trees and compare the JSON it prints:

    PYTHONPATH=OLD/src python tools/same_outputs.py OUT_OLD > old.json
    PYTHONPATH=NEW/src python tools/same_outputs.py OUT_NEW > new.json
    diff old.json new.json     # no output: images, files and checkpoints are identical

It records the sha256 of: the bundled model's images (float tensors, for several sampler,
guidance, threshold, precision and stage settings), the PNG files ``openimagen generate``
writes (provenance chunks and watermark included), a model directory written by
``Cascade.save``, a short training run's checkpoint files, and the model directory
``openimagen export`` makes from it (base, then an SR stage into it). Fields that hold a
time, an absolute path or an unseeded RNG state are left out and named in the output.
Uses only the public API and the CLI (benchmarks and tools sit outside the layers).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

import openimagen
from openimagen.cascade import SamplingConfig

PROMPTS = ["two red circles above a blue square", "a green triangle", "a red circle"]
SEEDS = [0, 11, 12345]
TINY_UNET = {"image_size": 16, "base_channels": 8, "channel_mults": [1], "num_res_blocks": [1],
             "cross_attention_levels": [True], "self_attention_levels": [False],
             "attention_head_dim": 8, "cond_dim": 16}  # fmt: skip


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def safetensors_canonical(data: bytes) -> bytes:
    """The file with its header's JSON key-sorted: safetensors writes ``__metadata__`` from a
    Rust HashMap, so its key order differs from one process to the next (same tensors)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    return json.dumps(header, sort_keys=True).encode() + data[8 + size :]


# the model card's training line names the export time, the checkpoint path and wall time
CARD_VOLATILE = re.compile(r"[\d.]+ h of training wall time; exported .*? UTC from `[^`]*`")


def tree(directory: Path, skip_json_keys: dict[str, tuple[str, ...]] | None = None) -> dict:
    """sha256 of every file under ``directory``; JSON files named in ``skip_json_keys`` are
    hashed without the listed top-level keys, safetensors with a canonical header, model
    cards without the volatile part of their training lines."""
    out = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        name = str(path.relative_to(directory))
        data = path.read_bytes()
        skipped = (skip_json_keys or {}).get(path.name)
        if skipped:
            obj = json.loads(data)
            for key in skipped:
                obj.pop(key, None)
            data = json.dumps(obj, sort_keys=True).encode()
        elif path.suffix == ".safetensors":
            data = safetensors_canonical(data)
        elif path.name == "README.md":
            data = CARD_VOLATILE.sub("<volatile>", data.decode()).encode()
        out[name] = sha(data)
    return out


def images(cascade) -> dict:
    base = cascade.sampling
    variants = {
        "defaults": base,
        "ddim_eta": [s.replace(sampler="ddim", eta=0.5, steps=8) for s in base],
        "ddpm": [s.replace(sampler="ddpm", steps=6) for s in base],
        "static_w1": [s.replace(threshold="static", guidance_weight=1.0, steps=6) for s in base],
        "none_bf16": [s.replace(threshold="none", precision="bf16", steps=5) for s in base],
        "noise_aug": [s.replace(noise_aug_level=0.3, steps=5) for s in base],
    }
    out = {}
    for name, sampling in variants.items():
        x = cascade.generate(PROMPTS, SEEDS, sampling=sampling)
        out[name] = sha(x.contiguous().numpy().tobytes())
    x = cascade.generate(PROMPTS[:1], SEEDS[:1], num_stages=1)
    out["first_stage"] = sha(x.contiguous().numpy().tobytes())
    return out


def cli(*args: str, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import sys; from openimagen.cli import main; sys.exit(main(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, *args], check=True, cwd=cwd, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def training(out: Path) -> dict:
    from openimagen.train import run_training

    config = {
        "stage": {"preset": "tiny-base", "resolution": 16, "unet": TINY_UNET},
        "text": {"encoder": "minilm", "max_length": 32},
        "data": {"source": "shapes", "seed": 3},
        "optim": {"name": "adamw", "lr": 1e-3, "warmup_steps": 3},
        "train": {"steps": 4, "batch_size": 4, "device": "cpu", "seed": 7,
                  "checkpoint_every": 2, "keep_last": 3, "ema_decay": 0.9},
        "log": {"every": 1, "progress": False, "tensorboard": False},
    }  # fmt: skip
    sr = {**config, "stage": {"preset": "tiny-sr", "resolution": 32, "lowres_resolution": 16,
                              "unet": {**TINY_UNET, "image_size": 32}},
          "log": {**config["log"], "sample_aug_level": 0.2}}  # fmt: skip
    run_training(config, out / "base")
    run_training(sr, out / "sr")
    # state.json: the unseeded Python / NumPy RNG states differ run to run; the rest must not
    result = {
        "checkpoint_base": tree(out / "base" / "checkpoints", {"state.json": ("rng",)}),
        "checkpoint_sr": tree(out / "sr" / "checkpoints", {"state.json": ("rng",)}),
        "checkpoint_note": "state.json hashed without 'rng' (unseeded Python/NumPy states)",
    }
    cli("export", str(out / "base"), str(out / "model"), cwd=out)
    cli("export", str(out / "sr"), str(out / "model"), "--fp16", "--steps", "7", cwd=out)
    cli("export", str(out / "sr"), str(out / "bare-sr"), cwd=out)
    skip = {"training.json": ("exported", "checkpoint", "train_seconds")}
    result["export_cascade"] = tree(out / "model", skip)
    result["export_bare_sr"] = tree(out / "bare-sr", skip)
    result["export_note"] = (
        "training.json hashed without exported / checkpoint / train_seconds; README.md "
        "without the export time, checkpoint path and wall time of its training lines"
    )
    return result


def main() -> None:
    out = Path(sys.argv[1]).resolve()
    out.mkdir(parents=True, exist_ok=False)
    torch.set_num_threads(1)
    cascade = openimagen.load(device="cpu")
    result = {"images": images(cascade)}
    cascade.save(out / "saved", dtype=torch.float16)
    result["cascade_save"] = tree(out / "saved")
    sampling = [SamplingConfig(steps=4, guidance_weight=2.0)] * len(cascade.stages)
    cascade.sampling = sampling
    cascade.save(out / "saved-sampling")
    result["cascade_save_sampling"] = tree(out / "saved-sampling")
    cli("generate", "two red circles above a blue square", "-n", "2", "--seed", "5",
        "--steps", "4", "--out", str(out / "gen.png"), "--quiet", cwd=out)  # fmt: skip
    cli("generate", "a blue square", "--stages", "1", "--guidance", "2", "--sampler", "ddim",
        "--out", str(out / "one.png"), "--quiet", cwd=out)  # fmt: skip
    result["generate_png"] = {p.name: sha(p.read_bytes()) for p in sorted(out.glob("*.png"))}
    result.update(training(out / "train"))
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()


if __name__ == "__main__":
    main()
