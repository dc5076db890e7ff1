"""On-disk cache of text embeddings, keyed by text encoder and prompt.

Imagen keeps its text encoder frozen, so the embeddings of the training captions can be
computed once and read back from disk (Saharia et al., 2022, who precompute the T5-XXL
embeddings). ``openimagen encode-text`` fills this cache (:func:`fill_cache`); training and
sampling read it through :func:`encode_with_cache`, which encodes only the prompts it does
not find.

Built to hold a LAION-size caption set (docs/benchmarks.md, "Text-embedding cache"):

- ``layout.py``: the directory (``format.json``, ``index/``, ``data/``) and version 1;
- ``shards.py``: one safetensors shard per batch of prompts, written atomically, read
  memory-mapped and checked on open;
- ``journal.py``: one append-only, checksummed journal per writer, one record per shard
  (the commit), read incrementally; a torn or damaged tail is ignored; the source of
  truth for everything below;
- ``runs.py``, ``manifest.py``, ``compact.py``: the index on disk, sorted runs of (64-bit
  key hash, location) memory-mapped for lookups, merged log-structured in chunks under a
  lock, named by an atomically replaced manifest that says how much of each journal they
  cover; rebuilt from the journals when missing or damaged;
- ``index.py``: the index's tail in memory (the journal records not yet in the runs),
  16 bytes per entry in numpy arrays, and the search both use;
- ``store.py``: :class:`TextEmbeddingCache`, several processes writing side by side;
  its memory does not grow with the number of entries;
- ``fill.py``: :func:`encode_with_cache`, :func:`fill_cache` (streaming, resumable);
- ``migrate.py``: :func:`migrate_v1`, the version-1 directory converted in place;
- ``identity.py``: an encoder's ``cache_id``, which keys the cache;
- ``rows.py``: keys (``sha256(cache_id + "\\0" + prompt)``), ``pad``, ``unpad``.

Embeddings are stored as float16 (half the disk of float32, relative rounding error at
most 2**-11, far below what a frozen encoder's output is trusted to); a batch with values
beyond float16's range is stored as float32.
"""

from openimagen.text.cache.fill import encode_rows, encode_with_cache, fill_cache
from openimagen.text.cache.identity import encoder_cache_id, fingerprint_directory
from openimagen.text.cache.migrate import migrate_v1
from openimagen.text.cache.rows import cache_key, pad, unpad
from openimagen.text.cache.shards import FORMAT_NAME, FORMAT_VERSION
from openimagen.text.cache.store import TextEmbeddingCache

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "TextEmbeddingCache",
    "cache_key",
    "encode_rows",
    "encode_with_cache",
    "encoder_cache_id",
    "fill_cache",
    "fingerprint_directory",
    "migrate_v1",
    "pad",
    "unpad",
]
