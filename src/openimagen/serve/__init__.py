"""Serving: an OpenAI-compatible image API and a web page (FastAPI + uvicorn).

``create_app(cascade, settings)`` builds the ASGI app; ``run_server(model_dir, host, port)``
loads a model and serves it (``openimagen serve``). See docs/serving.md.

The names below are imported on first use, so ``openimagen.serve.cli`` (which the main CLI
imports to register its subcommands) loads neither FastAPI nor torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "create_app": "openimagen.serve.app",
    "ImageStore": "openimagen.serve.files",
    "png_bytes": "openimagen.serve.files",
    "ServerThread": "openimagen.serve.server",
    "run_server": "openimagen.serve.server",
    "ServeSettings": "openimagen.serve.settings",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'openimagen.serve' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = ["ImageStore", "ServeSettings", "ServerThread", "create_app", "png_bytes", "run_server"]
