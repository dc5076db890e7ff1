"""The bounded image store behind ``url`` responses, server settings."""

from __future__ import annotations

import time

import pytest

from openimagen.errors import ConfigError
from openimagen.serve import ImageStore, ServeSettings


def test_store_keeps_at_most_max_items_oldest_dropped_first():
    store = ImageStore(max_items=3, ttl_s=60)
    tokens = [store.put(bytes([i])) for i in range(5)]
    assert len(store) == 3 and len(set(tokens)) == 5
    assert store.get(tokens[0]) is None and store.get(tokens[1]) is None
    assert [store.get(t) for t in tokens[2:]] == [b"\x02", b"\x03", b"\x04"]
    assert store.get("not-a-token") is None


def test_store_expires_old_images():
    store = ImageStore(max_items=10, ttl_s=0.05)
    token = store.put(b"png")
    assert store.get(token) == b"png"
    time.sleep(0.1)
    assert store.get(token) is None and len(store) == 0


def test_settings_validation_and_key_is_not_shown():
    with pytest.raises(ConfigError, match="max_batch_images"):
        ServeSettings(max_n=8, max_batch_images=4)
    with pytest.raises(ConfigError, match="max_queue"):
        ServeSettings(max_queue=0)
    with pytest.raises(ConfigError, match="api_key"):
        ServeSettings(api_key="  ")
    assert "s3cret" not in repr(ServeSettings(api_key="s3cret"))
