"""Serving: an OpenAI-compatible image API and a web page (FastAPI + uvicorn).

``create_app(cascade, settings)`` builds the ASGI app; ``run_server(model_dir, host, port)``
loads a model and serves it (``openimagen serve``). See docs/serving.md.

The names below are imported on first use (:mod:`openimagen.lazy`), so the command line
(which reads :mod:`.settings` to show the server's defaults) loads neither FastAPI nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openimagen.lazy import lazy_exports

if TYPE_CHECKING:
    from openimagen.serve.app import create_app
    from openimagen.serve.files import ImageStore, png_bytes
    from openimagen.serve.server import ServerThread, run_server
    from openimagen.serve.settings import ServeSettings

__all__ = ["ImageStore", "ServeSettings", "ServerThread", "create_app", "png_bytes", "run_server"]

__getattr__ = lazy_exports(__name__, ["settings", "files", "server", "app"])
