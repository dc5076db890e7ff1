"""A tiny T5 saved with save_pretrained and loaded back through load_text_encoder.

This is the code path a user's T5-XXL takes; the model is built from a T5Config with its
own Unigram tokenizer, so nothing is downloaded. Reference embeddings come from the
in-memory T5 encoder run on ids written out by hand from the vocabulary.
"""

from __future__ import annotations

import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    GPT2Config,
    T5Config,
    T5EncoderModel,
    T5ForConditionalGeneration,
    T5Tokenizer,
    UMT5Config,
    UMT5EncoderModel,
)

from openimagen.errors import InvalidTypeError, ModelDirectoryError
from openimagen.text import HFTextEncoder, TextEncoder, load_text_encoder

WORDS = [
    *("a", "red", "blue", "green", "circle", "square", "triangle"),
    *("on", "the", "left", "right", "of", "above", "below"),
]
PAD, EOS, UNK = 0, 1, 2
# T5's layout: <pad>=0, </s>=1, <unk>=2, then the pieces ("▁" marks a word start).
VOCAB = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + w, -1.0) for w in WORDS]
ID = {w: 3 + i for i, w in enumerate(WORDS)}
D_MODEL = 32
MAX_LENGTH = 8


def ids_by_hand(prompt: str) -> list[int]:
    return [ID[w] for w in prompt.split()] + [EOS]


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    """A full T5 (encoder and decoder) checkpoint, as t5-v1_1 checkpoints ship."""
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(VOCAB),
        d_model=D_MODEL,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=1,
        num_heads=4,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )
    model = T5ForConditionalGeneration(config).eval()
    directory = tmp_path_factory.mktemp("t5") / "tiny-t5"
    model.save_pretrained(directory)
    T5Tokenizer(vocab=VOCAB, extra_ids=0).save_pretrained(directory)
    return directory, model


@pytest.fixture(scope="module")
def encoder(t5_dir):
    return load_text_encoder(str(t5_dir[0]), max_length=MAX_LENGTH, device="cpu")


def reference(model, prompts: list[str]) -> list[torch.Tensor]:
    """Each prompt alone through the original model's encoder: [L_i, D]."""
    outs = []
    with torch.no_grad():
        for prompt in prompts:
            ids = torch.tensor([ids_by_hand(prompt)])
            outs.append(model.encoder(input_ids=ids).last_hidden_state[0])
    return outs


def test_loads_encoder_only_with_the_right_width(encoder):
    assert isinstance(encoder, TextEncoder)
    assert isinstance(encoder.model, T5EncoderModel)
    names = [n for n, _ in encoder.model.named_parameters()]
    assert names and not any("decoder" in n for n in names)
    assert encoder.dim == D_MODEL
    assert encoder.max_length == MAX_LENGTH


def test_embeddings_equal_the_original_encoder_and_mask_is_right(encoder, t5_dir):
    prompts = ["a red circle", "blue square on the left", "green"]
    embeddings, mask = encoder.encode(prompts)
    lengths = [len(ids_by_hand(p)) for p in prompts]  # 4, 6, 2
    assert embeddings.shape == (3, max(lengths), D_MODEL)
    assert embeddings.dtype == torch.float32 and mask.dtype == torch.bool
    expected_mask = torch.tensor([[j < n for j in range(max(lengths))] for n in lengths])
    assert torch.equal(mask, expected_mask)
    for i, ref in enumerate(reference(t5_dir[1], prompts)):
        torch.testing.assert_close(embeddings[i, : lengths[i]], ref, atol=1e-5, rtol=1e-5)
        assert torch.all(embeddings[i, lengths[i] :] == 0)


def test_padding_does_not_change_a_prompt(encoder):
    alone, _ = encoder.encode(["red"])
    batched, mask = encoder.encode(["red", "a blue square on the left of"])
    assert mask[0].sum() == 2
    torch.testing.assert_close(batched[0, :2], alone[0], atol=1e-5, rtol=1e-5)


def test_frozen_and_outputs_usable_in_training(encoder):
    assert not encoder.model.training
    assert all(not p.requires_grad for p in encoder.model.parameters())
    embeddings, mask = encoder.encode(["a red circle"])
    assert not embeddings.requires_grad
    assert not embeddings.is_inference() and not mask.is_inference()
    # A trainable layer on top must be able to backpropagate through its use of them.
    layer = torch.nn.Linear(D_MODEL, 4)
    layer(embeddings).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_long_prompt_is_truncated_with_a_warning(encoder, caplog):
    prompt = " ".join(WORDS[:12])  # 12 words + </s> = 13 tokens, max_length 8 -> 5 dropped
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        embeddings, mask = encoder.encode([prompt, "red"])
    assert embeddings.shape[1] == MAX_LENGTH
    assert mask[0].sum() == MAX_LENGTH
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("dropping 5 tokens" in m and "max_length=8" in m for m in messages), messages


def test_short_prompts_log_no_truncation_warning(encoder, caplog):
    with caplog.at_level(logging.WARNING, logger="openimagen.text"):
        encoder.encode(["a red circle on the left"])  # 7 tokens < 8
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]


def test_empty_prompt_keeps_only_the_eos_token(encoder):
    embeddings, mask = encoder.encode(["", "a red circle"])
    assert mask[0].tolist() == [True, False, False, False]
    assert torch.isfinite(embeddings).all()


def test_cache_id_follows_content_not_location(t5_dir, encoder, tmp_path):
    directory, _ = t5_dir
    copy = tmp_path / "moved"
    shutil.copytree(directory, copy)
    assert load_text_encoder(str(copy), max_length=MAX_LENGTH).cache_id == encoder.cache_id
    assert load_text_encoder(str(copy), max_length=MAX_LENGTH + 1).cache_id != encoder.cache_id
    weights = load_file(copy / "model.safetensors")
    name = next(n for n in weights if "encoder.block.1" in n)
    weights[name] = weights[name] + 0.01
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    changed = load_text_encoder(str(copy), max_length=MAX_LENGTH)
    assert changed.cache_id != encoder.cache_id


def test_bfloat16_compute_gives_float32_outputs_and_its_own_cache_id(t5_dir, encoder):
    half = HFTextEncoder(t5_dir[0], max_length=MAX_LENGTH, device="cpu", dtype="bfloat16")
    assert next(half.model.parameters()).dtype == torch.bfloat16
    assert half.cache_id != encoder.cache_id
    low, _ = half.encode(["a red circle"])
    high, _ = encoder.encode(["a red circle"])
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, high, atol=0.1, rtol=0.05)


def test_a_bare_string_is_refused(encoder):
    with pytest.raises(InvalidTypeError, match="wrap a single prompt in a list"):
        encoder.encode("a red circle")


def test_umt5_loads_as_its_own_encoder_class(tmp_path):
    torch.manual_seed(1)
    config = UMT5Config(
        vocab_size=len(VOCAB),
        d_model=16,
        d_kv=4,
        d_ff=32,
        num_layers=2,
        num_heads=4,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
    )
    model = UMT5EncoderModel(config).eval()
    model.save_pretrained(tmp_path)
    T5Tokenizer(vocab=VOCAB, extra_ids=0).save_pretrained(tmp_path)
    loaded = load_text_encoder(str(tmp_path), max_length=16)
    assert isinstance(loaded.model, UMT5EncoderModel) and loaded.dim == 16
    embeddings, _ = loaded.encode(["a red circle"])
    with torch.no_grad():
        ref = model(input_ids=torch.tensor([ids_by_hand("a red circle")])).last_hidden_state
    torch.testing.assert_close(embeddings, ref, atol=1e-5, rtol=1e-5)


def test_decoder_only_model_is_refused(tmp_path):
    GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=20).save_pretrained(tmp_path)
    with pytest.raises(ModelDirectoryError, match="decoder-only") as info:
        load_text_encoder(str(tmp_path))
    assert str(tmp_path) in str(info.value)


def test_directory_without_config_is_refused(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelDirectoryError, match="no config.json") as info:
        load_text_encoder(str(tmp_path))
    assert str(tmp_path) in str(info.value) and "save_pretrained" in str(info.value)


@pytest.mark.parametrize("name", ["not-a-model", "/no/such/encoder", "../relative/missing"])
def test_unknown_encoder_is_refused_with_the_fix(name):
    with pytest.raises(ModelDirectoryError) as info:
        load_text_encoder(name)
    message = str(info.value)
    assert repr(name) in message and "'minilm'" in message
    assert "\n" not in message
