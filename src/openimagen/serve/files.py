"""The bounded in-memory store behind ``url`` responses.

PNG encoding with provenance is :func:`openimagen.images.png_bytes` (shared with the CLI),
re-exported here for the server's callers.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict

from openimagen.images import png_bytes


class ImageStore:
    """In-memory PNGs under unguessable ids, kept at most ``max_items`` and ``ttl_s`` seconds.

    Memory is bounded by ``max_items`` (oldest dropped first). The ids are 128-bit random
    tokens, so a URL is a capability: whoever has it can fetch the image.
    """

    def __init__(self, max_items: int = 256, ttl_s: float = 3600.0):
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, data: bytes) -> str:
        token = secrets.token_urlsafe(16)
        now = time.monotonic()
        with self._lock:
            self._items[token] = (now, data)
            self._expire(now)
        return token

    def get(self, token: str) -> bytes | None:
        with self._lock:
            self._expire(time.monotonic())
            item = self._items.get(token)
        return None if item is None else item[1]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def _expire(self, now: float) -> None:
        while self._items:
            token, (created, _) = next(iter(self._items.items()))
            if len(self._items) <= self.max_items and now - created <= self.ttl_s:
                break
            del self._items[token]


__all__ = ["ImageStore", "png_bytes"]
