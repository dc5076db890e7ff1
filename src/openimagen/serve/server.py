"""Running the app: ``run_server`` for ``openimagen serve``, ``ServerThread`` for tests/benchmarks."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
from typing import Any

from openimagen.errors import InvalidArgumentError
from openimagen.policy import PromptPolicy
from openimagen.serve.settings import LOOPBACK_NAMES, ServeSettings

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
API_KEY_ENV = "OPENIMAGEN_API_KEY"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def settings_from_env(settings: ServeSettings | None, api_key_env: str | None) -> ServeSettings:
    """``settings`` with ``api_key`` read from the environment variable ``api_key_env``.

    Unset or empty: no key. Only whitespace is refused: it looks like a key but is none, and
    taking it as "no key" would silently serve without authentication.
    """
    settings = settings or ServeSettings()
    key = os.environ.get(api_key_env) if api_key_env else None
    if key and not key.strip():
        raise InvalidArgumentError(
            f"the environment variable {api_key_env}",
            key,
            "an API key (not only whitespace)",
            f"Set {api_key_env} to the key clients must send, or unset it (or set it empty) "
            "to serve without a key.",
        )
    if key:
        settings = settings.replace(api_key=key.strip())
    return settings


def settings_for_host(settings: ServeSettings, host: str) -> ServeSettings:
    """The Host-header allow list for a server bound to ``host``.

    Bound to a loopback address, the loopback names plus that address (127.0.0.2 is as much
    this machine as 127.0.0.1); bound elsewhere, any name (we cannot know them all).
    """
    if settings.allowed_hosts != LOOPBACK_NAMES:
        return settings  # chosen by the caller
    if not _is_loopback(host):
        return settings.replace(allowed_hosts=None)
    name = host.strip("[]").lower()
    with contextlib.suppress(ValueError):
        name = str(ipaddress.ip_address(name))  # as serve.http compares Host headers
    if name in LOOPBACK_NAMES:
        return settings
    return settings.replace(allowed_hosts=(*LOOPBACK_NAMES, name))


def run_server(
    model_dir: str | os.PathLike | None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    api_key_env: str | None = API_KEY_ENV,
    policy_file: str | os.PathLike | None = None,
    device: str | None = None,
    settings: ServeSettings | None = None,
    log_level: str = "info",
    load_options: dict[str, Any] | None = None,
) -> None:
    """Load the model and serve it until interrupted (``openimagen serve``).

    ``model_dir`` None means the bundled model. The API key, when the environment variable
    ``api_key_env`` is set and non-empty, is required on every /v1 request.
    """
    import uvicorn

    import openimagen
    from openimagen.cascade import read_cascade_config
    from openimagen.provenance import model_version
    from openimagen.serve.app import content_credentials, create_app

    if not 0 <= port <= 65535:
        raise InvalidArgumentError("port", port, "an integer from 0 to 65535")
    settings = settings_from_env(settings, api_key_env)
    policy = PromptPolicy.from_file(policy_file) if policy_file is not None else None
    settings = settings_for_host(settings, host)
    if not _is_loopback(host) and settings.api_key is None:
        logger.warning(
            "serving on %s (reachable from other machines) without an API key; set %s",
            host,
            api_key_env,
        )
    model_dir = openimagen.resolve_model_dir(model_dir)
    name = read_cascade_config(model_dir).model_id or model_dir.name
    # before loading the model, so a bad certificate fails at once
    credentials = content_credentials(settings, name, model_version(model_dir))
    # dtype / text_device / offload, as for generate (a large model, docs/deepfloyd-if.md)
    cascade = openimagen.load(model_dir, device=device, **(load_options or {}))
    app = create_app(cascade, settings, policy=policy, credentials=credentials)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)


class ServerThread:
    """Serve an ASGI app with uvicorn on a background thread (tests, benchmarks).

    ``port=0`` picks a free port; ``url`` is the base URL once started. Use as a context
    manager, or call ``start()`` / ``stop()``.
    """

    def __init__(
        self, app: Any, host: str = DEFAULT_HOST, port: int = 0, *, log_level: str = "warning"
    ):
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(app, log_level=log_level, lifespan="on", server_header=False)
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server on {self.url} did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "API_KEY_ENV",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ServerThread",
    "run_server",
    "settings_for_host",
    "settings_from_env",
]
