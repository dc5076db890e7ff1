"""The T5 of DeepFloyd IF checkpoints: checking that two stages share it, and copying it.

IF's stages are all conditioned on one frozen T5-v1.1-XXL encoder (77 tokens). Stage I's
checkpoint carries it in ``text_encoder/`` with its tokenizer in ``tokenizer/``; a stage II
checkpoint may carry a copy. An imported cascade holds one text encoder, so a stage II whose
copy differs is refused (:func:`check_same_text_encoder`), and stage I's is written into the
model directory as one directory that :class:`~openimagen.text.HFTextEncoder` loads
(:func:`write_text_encoder`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from openimagen.errors import ModelDirectoryError
from openimagen.interop.if_checkpoint import (
    TOKENIZER_FILES,
    IFCheckpoint,
    read_checkpoint_json,
    refuse,
)


def text_config(ckpt: IFCheckpoint) -> dict[str, Any]:
    """The T5 config of ``ckpt`` without the keys that name versions or dtypes."""
    data = read_checkpoint_json(ckpt.path / "text_encoder" / "config.json", ckpt.path)
    return {k: v for k, v in data.items()
            if not k.startswith("_") and k not in ("transformers_version", "torch_dtype", "dtype",
                                                   "architectures")}  # fmt: skip


def check_same_text_encoder(first: IFCheckpoint, second: IFCheckpoint) -> None:
    """Both stages must be conditioned on the same T5: same config, tensors, sampled values."""
    from safetensors import safe_open

    def fail(what: str) -> ModelDirectoryError:
        return ModelDirectoryError(
            f"{second.path}: its text encoder differs from stage I's ({first.path}): {what}; "
            "the stages of a cascade must share one text encoder: pass matching IF checkpoints"
        )

    a, b = text_config(first), text_config(second)
    if a != b:
        keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise fail(f"text_encoder/config.json differs in {keys[:4]}")

    def open_all(ckpt: IFCheckpoint) -> dict[str, Any]:
        handles = {}
        for path in ckpt.text_encoder_files or ():
            if path.suffix == ".safetensors":
                handle = safe_open(path, framework="pt")
                handles.update({k: handle for k in handle.keys()})  # noqa: SIM118
        return handles

    ta, tb = open_all(first), open_all(second)
    if set(ta) != set(tb):
        raise fail(f"different tensors ({len(set(ta) ^ set(tb))} names differ)")
    names = sorted(ta)
    for name in dict.fromkeys([names[0], names[len(names) // 2], names[-1]]):
        x = ta[name].get_slice(name)
        y = tb[name].get_slice(name)
        if x.get_shape() != y.get_shape():
            raise fail(f"tensor {name} has shape {x.get_shape()} vs {y.get_shape()}")
        rows = x.get_shape()[0] if x.get_shape() else 0
        xs = (x[: min(rows, 8)] if rows else ta[name].get_tensor(name)).float()
        ys = (y[: min(rows, 8)] if rows else tb[name].get_tensor(name)).float()
        # an fp16 variant of the same weights differs by rounding only (relative 2**-11)
        if not torch.allclose(xs, ys, rtol=1e-2, atol=1e-4):
            raise fail(f"tensor {name} holds other values")
    if first.tokenizer_files and second.tokenizer_files:
        def digest(files: tuple[Path, ...]) -> dict[str, str]:
            return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in files
                    if p.name in TOKENIZER_FILES}  # fmt: skip

        da, db = digest(first.tokenizer_files), digest(second.tokenizer_files)
        if any(da[k] != db[k] for k in set(da) & set(db)):
            raise fail("the tokenizers' vocabularies differ")


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (no second copy of a 10 GB T5), else copy it."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_text_encoder(ckpt: IFCheckpoint, target: Path) -> None:
    """The T5 and its tokenizer in one directory, as ``HFTextEncoder`` loads it.

    A variant's files get the plain names transformers looks for: a single
    ``model.<variant>.safetensors`` becomes ``model.safetensors``, a shard index
    ``model.safetensors.index.<variant>.json`` becomes ``model.safetensors.index.json`` and
    the shards keep their names (the index names them). The tokenizer is loaded once (a
    sentencepiece-only one needs the ``sentencepiece`` package here) and saved as
    ``tokenizer.json`` too, so loading the model directory later needs no sentencepiece.
    """
    target.mkdir()
    for path in ckpt.text_encoder_files or ():
        name = path.name
        if name.startswith("model.safetensors.index."):
            name = "model.safetensors.index.json"
        elif re.fullmatch(r"model\.[^.-]+\.safetensors", name):  # model.<variant>.safetensors
            name = "model.safetensors"
        _link_or_copy(path, target / name)
    for path in ckpt.tokenizer_files or ():
        _link_or_copy(path, target / path.name)
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(target), local_files_only=True)
    except Exception as exc:  # transformers raises many kinds here; one line says which
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise refuse(
            ckpt.path, f"its tokenizer cannot be loaded ({reason})",
            "install sentencepiece (pip install 'openimagen[if]') for a tokenizer that has "
            "only spiece.model",
        ) from exc  # fmt: skip
    if not (target / "tokenizer.json").is_file():
        tokenizer.save_pretrained(str(target))



__all__ = ["check_same_text_encoder", "text_config", "write_text_encoder"]
