"""The HTTP edge of the API: OpenAI-shaped errors, the Host / API-key guard, JSON bodies,
the pages' security headers.

Everything here runs before a request is looked at as an image request: an error is an
:class:`APIError` answered as ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import json
import math
import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from openimagen.serve.settings import ServeSettings

# a request is one flat object; anything nested deeper is refused before it is looked at
MAX_JSON_DEPTH = 4
# the headers of every page and script served (the API's page and the rating page)
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def static_page(name: str) -> Response:
    """A page (``.html``) or script (``.js``) of ``serve/static/``, with the security headers."""
    media_type = "text/html" if name.endswith(".html") else "text/javascript"
    data = (importlib.resources.files("openimagen.serve") / "static" / name).read_bytes()
    return Response(data, media_type=f"{media_type}; charset=utf-8", headers=PAGE_SECURITY_HEADERS)


class APIError(Exception):
    """An error answered as ``{"error": {...}}`` with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.param, self.code, self.headers = param, code, headers


def error_response(exc: APIError) -> JSONResponse:
    body = {
        "error": {
            "message": _utf8(exc.message),
            "type": exc.type,
            "param": None if exc.param is None else _utf8(exc.param),
            "code": exc.code,
        }
    }
    return JSONResponse(body, status_code=exc.status, headers=exc.headers)


def _utf8(text: str) -> str:
    """``text`` with lone surrogates (from hostile JSON such as "\\udcff") written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether JSON ``value`` nests lists/objects more than ``limit`` deep (no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def invalid_value(param: str, value: Any, allowed: str, code: str = "invalid_value") -> APIError:
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return APIError(
        400, f"{param}={shown} is not valid: expected {allowed}.", param=param, code=code
    )


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _hostname(host_header: str) -> str:
    """The host name of a Host header: 'example.com:8000' -> 'example.com', '[::1]:80' -> '::1'.

    IP addresses come back in their canonical form ('[0:0::1]' -> '::1').
    """
    host = host_header.strip().lower()
    if host.startswith("["):
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


class GuardMiddleware:
    """Host check (DNS rebinding) and the optional Bearer key, before any route runs.

    A plain ASGI middleware (not Starlette's BaseHTTPMiddleware), so handlers still see the
    client's disconnect.
    """

    def __init__(self, app: Any, settings: ServeSettings):
        self.app = app
        self.settings = settings

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            error = self.check(scope["path"], headers)
            if error is not None:
                await error_response(error)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def check(self, path: str, headers: dict[str, str]) -> APIError | None:
        settings = self.settings
        # DNS rebinding: a web page on evil.example whose name resolves to 127.0.0.1 would be
        # "same origin" with this server; only accept the host names we are meant to serve.
        if settings.allowed_hosts is not None:
            hostname = _hostname(headers.get("host", ""))
            if hostname not in settings.allowed_hosts:
                return APIError(
                    400,
                    f"Host {hostname!r} is not served here (allowed: "
                    f"{', '.join(settings.allowed_hosts)})",
                    param="Host",
                    code="invalid_host",
                )
        # image files are capability URLs (unguessable ids), fetched by <img> tags and clients
        # that do not send headers; the page, health and static files are public.
        needs_key = path.startswith("/v1/") and not path.startswith("/v1/images/files/")
        if settings.api_key is None or not needs_key:
            return None
        header = headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer" and secrets.compare_digest(
            token.strip().encode(), settings.api_key.encode()
        ):
            return None
        what = "No API key provided" if not header else "Incorrect API key provided"
        return APIError(
            401,
            f"{what}. Send the header 'Authorization: Bearer <key>' with the key the server "
            "was started with.",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def read_json_body(request: Request, limit: int) -> Any:
    """The JSON body of ``request``: ``application/json``, at most ``limit`` bytes (also when
    chunked), valid, and nested at most :data:`MAX_JSON_DEPTH` deep; else an :class:`APIError`."""
    # JSON only: a cross-site form or text/plain POST from a web page cannot trigger work
    # (a JSON content type makes browsers ask first, with a CORS preflight we never allow).
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise APIError(
            415,
            f"Content-Type {media_type or '(none)'!r} is not supported; send the body as "
            "JSON with 'Content-Type: application/json'",
            code="unsupported_media_type",
        )
    too_large = APIError(
        413,
        f"request body is larger than the server's limit of {limit} bytes",
        code="request_too_large",
    )
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise too_large
    body = bytearray()
    try:
        async for chunk in request.stream():  # chunked uploads are counted as they arrive
            body.extend(chunk)
            if len(body) > limit:
                raise too_large
    except ClientDisconnect:  # gone before the body was complete: nothing to answer
        raise APIError(400, "client disconnected", code="client_disconnected") from None
    try:
        value = json.loads(body)
    except RecursionError:
        value = None
    except ValueError as exc:  # bad JSON or UTF-8; an integer beyond Python's 4300 digits
        raise APIError(
            400,
            f"the request body is not valid JSON ({exc}); send a JSON object such as "
            '{"prompt": "a red circle"}',
            code="invalid_json",
        ) from None
    else:
        if not _nested_deeper_than(value, MAX_JSON_DEPTH):
            return value
    raise APIError(
        400,
        f"the request body nests arrays or objects more than {MAX_JSON_DEPTH} deep; send "
        'a flat JSON object such as {"prompt": "a red circle"}',
        code="invalid_json",
    )


__all__ = [
    "MAX_JSON_DEPTH",
    "PAGE_SECURITY_HEADERS",
    "APIError",
    "GuardMiddleware",
    "error_response",
    "invalid_value",
    "is_int",
    "is_number",
    "read_json_body",
    "static_page",
]
