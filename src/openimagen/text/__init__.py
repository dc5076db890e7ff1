"""Frozen text encoders (prompt -> token embeddings + mask) and the on-disk embedding cache.

``load_text_encoder("minilm")`` gives the bundled pretrained all-MiniLM-L6-v2 (offline);
``load_text_encoder(path_or_hub_id)`` any T5 (encoder only) or encoder-only Hugging Face
model. ``check_prompt`` is the one check an image prompt passes (CLI, server, cascade). ``TextEmbeddingCache`` + ``encode_with_cache`` / ``fill_cache`` precompute and reuse
the embeddings of training prompts, as Imagen does with T5-XXL.
"""

from openimagen.text.cache import (
    TextEmbeddingCache,
    cache_key,
    encode_with_cache,
    fill_cache,
)
from openimagen.text.encoder import (
    DEFAULT_MAX_LENGTH,
    DEFAULT_TEXT_ENCODER,
    TEXT_CONDITIONINGS,
    TextEncoder,
    check_prompt,
    check_texts,
)
from openimagen.text.huggingface import TEXT_ENCODER_ALIASES, HFTextEncoder, load_text_encoder

__all__ = [
    "DEFAULT_MAX_LENGTH",
    "DEFAULT_TEXT_ENCODER",
    "TEXT_CONDITIONINGS",
    "TEXT_ENCODER_ALIASES",
    "HFTextEncoder",
    "TextEmbeddingCache",
    "TextEncoder",
    "cache_key",
    "check_prompt",
    "check_texts",
    "encode_with_cache",
    "fill_cache",
    "load_text_encoder",
]
