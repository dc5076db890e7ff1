"""The HTTP API: OpenAI-compatible image generation, health, models, and the web page.

Endpoints (see docs/serving.md):

- ``POST /v1/images/generations``: the OpenAI Images API request (``prompt``, ``n``,
  ``size``, ``response_format``, ``model``; ``quality``/``style``/``user`` accepted and
  ignored) plus the extensions ``seed``, ``steps`` and ``guidance_scale``.
- ``GET /v1/images/files/{id}.png``: images of ``url`` responses (bounded retention).
- ``GET /v1/progress/{request_id}``: progress of a request sent with ``X-Request-Id``.
- ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /healthz``, ``GET /`` (the page).

Every error is JSON in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.resources
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

import openimagen
from openimagen.errors import OpenImagenError
from openimagen.images import provenance
from openimagen.policy import PromptPolicy
from openimagen.serve.files import ImageStore, png_bytes
from openimagen.serve.http import (
    APIError,
    GuardMiddleware,
    error_response,
    invalid_value,
    is_int,
    is_number,
    read_json_body,
)
from openimagen.serve.settings import ServeSettings
from openimagen.serve.worker import GenerationWorker, Job, QueueFullError
from openimagen.text import check_prompt
from openimagen.watermark import METHOD as WATERMARK_METHOD

logger = logging.getLogger(__name__)

# Request fields: OpenAI's (some accepted and ignored) and ours.
OPENAI_FIELDS = {
    "prompt",
    "n",
    "size",
    "response_format",
    "model",
    "quality",
    "style",
    "user",
    "output_format",
}
EXTENSION_FIELDS = {"seed", "steps", "guidance_scale"}
MAX_SEED = 2**63 - 1
MAX_GUIDANCE = 100.0
# how often a waiting request checks whether its client is still there
DISCONNECT_POLL_S = 0.5
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FILE_NAME = re.compile(r"^([A-Za-z0-9_-]{16,64})\.png$")
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# -- the app ---------------------------------------------------------------------------------
def create_app(
    cascade: Any,
    settings: ServeSettings | None = None,
    *,
    policy: PromptPolicy | None = None,
) -> FastAPI:
    """The ASGI app serving ``cascade`` (an :class:`openimagen.cascade.Cascade`).

    The generation thread starts and stops with the app's lifespan (uvicorn runs it).
    """
    settings = settings or ServeSettings()
    store = ImageStore(settings.max_stored_images, settings.image_ttl_s)
    resolution = int(cascade.resolution)
    model_id = cascade.model_id or "openimagen"
    allowed_sizes = [f"{resolution}x{resolution}"]
    default_sampling = tuple(cascade.sampling)
    created = int(time.time())

    def encode(image: Any, metadata: dict[str, Any]) -> bytes:
        return png_bytes(image, metadata, watermark=settings.watermark)

    worker = GenerationWorker(
        cascade,
        encode,
        max_queue=settings.max_queue,
        max_batch_images=settings.max_batch_images,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        logger.info("serving model %r at %dx%d", model_id, resolution, resolution)
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(
        title="openimagen",
        version=openimagen.__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.worker = worker
    app.state.store = store
    app.state.settings = settings

    # -- errors: always OpenAI-shaped JSON ----------------------------------------------------
    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found" if exc.status_code == 404 else "invalid_request_error"
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return error_response(APIError(exc.status_code, message, type=kind, headers=exc.headers))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(APIError(400, f"invalid request: {exc.errors()}"))

    @app.exception_handler(Exception)
    async def _server_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(
            APIError(500, "internal server error; see the server log", type="server_error")
        )

    app.add_middleware(GuardMiddleware, settings=settings)

    # -- generation -----------------------------------------------------------------------------
    def parse_request(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object", code="invalid_json")
        unknown = sorted(set(body) - OPENAI_FIELDS - EXTENSION_FIELDS)
        if unknown:
            raise APIError(
                400,
                f"Unrecognized request argument supplied: {', '.join(unknown)}. Allowed: "
                f"{', '.join(sorted(OPENAI_FIELDS | EXTENSION_FIELDS))}.",
                param=unknown[0],
                code="unknown_parameter",
            )
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise invalid_value(
                "prompt",
                prompt,
                "a non-empty string",
                code="missing_prompt" if prompt is None else "invalid_value",
            )
        if len(prompt) > settings.max_prompt_chars:
            raise APIError(
                400,
                f"prompt is {len(prompt)} characters long; the limit is "
                f"{settings.max_prompt_chars}. Shorten the prompt.",
                param="prompt",
                code="string_above_max_length",
            )
        try:
            check_prompt(prompt, "prompt")
        except OpenImagenError as exc:
            raise APIError(400, str(exc), param="prompt", code="invalid_value") from None
        n = 1 if body.get("n") is None else body["n"]
        if not is_int(n) or not 1 <= n <= settings.max_n:
            raise invalid_value("n", n, f"an integer from 1 to {settings.max_n}")
        size = body.get("size")
        if size not in (None, "auto", *allowed_sizes):
            raise invalid_value("size", size, f"one of {allowed_sizes} (this model's resolution)")
        response_format = body.get("response_format") or "url"
        if response_format not in ("url", "b64_json"):
            raise invalid_value("response_format", response_format, "'url' or 'b64_json'")
        model = body.get("model")
        if model is not None and model != model_id:
            raise APIError(
                404 if isinstance(model, str) else 400,
                f"model={model!r} is not served here; this server serves {model_id!r} "
                "(GET /v1/models). Omit model or pass that id.",
                param="model",
                code="model_not_found",
            )
        for name in ("quality", "style", "user"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise invalid_value(name, body[name], "a string")
        if body.get("output_format") not in (None, "png"):
            raise invalid_value(
                "output_format", body["output_format"], "'png' (the only format served)"
            )
        seed = body.get("seed")
        if seed is None:
            seed = secrets.randbelow(2**31)
        elif not is_int(seed) or not 0 <= seed <= MAX_SEED - n:
            raise invalid_value("seed", seed, f"an integer from 0 to {MAX_SEED - n}")
        steps = body.get("steps")
        if steps is not None and (not is_int(steps) or not 1 <= steps <= settings.max_steps):
            raise invalid_value("steps", steps, f"an integer from 1 to {settings.max_steps}")
        guidance = body.get("guidance_scale")
        if guidance is not None and (not is_number(guidance) or not 0 <= guidance <= MAX_GUIDANCE):
            raise invalid_value("guidance_scale", guidance, f"a number from 0 to {MAX_GUIDANCE:g}")
        changes: dict[str, Any] = {}
        if steps is not None:
            changes["steps"] = steps
        if guidance is not None:
            changes["guidance_weight"] = float(guidance)
        sampling = (
            tuple(s.replace(**changes) for s in default_sampling) if changes else default_sampling
        )
        if policy is not None:
            reason = policy.check(prompt)
            if reason is not None:
                raise APIError(
                    400,
                    reason[0].upper() + reason[1:],
                    param="prompt",
                    code="content_policy_violation",
                )
        return {
            "prompt": prompt,
            "n": n,
            "seeds": [seed + i for i in range(n)],
            "sampling": sampling,
            "response_format": response_format,
        }

    async def wait_for_job(request: Request, job: Job) -> list[bytes]:
        """The job's PNGs; a job whose client disconnects while it waits is dropped."""
        result = asyncio.wrap_future(job.future)
        try:
            while True:
                done, _ = await asyncio.wait({result}, timeout=DISCONNECT_POLL_S)
                if done:
                    return _job_result(result)
                if await request.is_disconnected() and worker.cancel(job):
                    logger.info("client went away; dropped its queued request")
                    raise APIError(400, "client disconnected", code="client_disconnected")
        except asyncio.CancelledError:
            worker.cancel(job)
            raise

    def _job_result(result: asyncio.Future) -> list[bytes]:
        try:
            return result.result()
        except OpenImagenError as exc:
            if isinstance(exc, (ValueError, TypeError)):  # the model refused this input
                name = getattr(exc, "name", "")
                param = "prompt" if name.startswith("prompt") else None
                raise APIError(400, str(exc), param=param, code="invalid_value") from None
            raise APIError(  # e.g. non-finite output: the model's fault, not the request's
                500,
                "generation failed for this request (the model's output was unusable); see "
                "the server log",
                type="server_error",
                code="generation_failed",
            ) from None

    @app.post("/v1/images/generations")
    async def generations(request: Request) -> JSONResponse:
        params = parse_request(await read_json_body(request, settings.max_body_bytes))
        request_id = request.headers.get("x-request-id")
        if request_id is not None and not REQUEST_ID.match(request_id):
            raise invalid_value("X-Request-Id", request_id, "1 to 64 characters of A-Z a-z 0-9 _ -")
        metadata = [
            provenance(params["prompt"], seed, model_id, params["sampling"])
            for seed in params["seeds"]
        ]
        job = Job(
            prompts=[params["prompt"]] * params["n"],
            seeds=params["seeds"],
            sampling=params["sampling"],
            metadata=metadata,
            job_id=request_id,
        )
        try:
            worker.submit(job)
        except QueueFullError as exc:
            raise APIError(
                429,
                f"{exc}; retry in a few seconds",
                type="rate_limit_exceeded",
                code="rate_limit_exceeded",
                headers={"Retry-After": "2"},
            ) from exc
        pngs = await wait_for_job(request, job)
        data = []
        for seed, png in zip(params["seeds"], pngs, strict=True):
            if params["response_format"] == "b64_json":
                item: dict[str, Any] = {"b64_json": base64.b64encode(png).decode("ascii")}
            else:
                base = settings.public_url or str(request.base_url)
                item = {"url": f"{base.rstrip('/')}/v1/images/files/{store.put(png)}.png"}
            item["seed"] = seed
            data.append(item)
        return JSONResponse({"created": int(time.time()), "data": data})

    @app.get("/v1/images/files/{name}")
    async def image_file(name: str) -> Response:
        match = FILE_NAME.match(name)
        png = store.get(match.group(1)) if match else None
        if png is None:
            raise APIError(
                404,
                f"image {name!r} does not exist or has expired "
                f"(images are kept {settings.image_ttl_s:g} s, at most "
                f"{settings.max_stored_images})",
                type="not_found",
                code="not_found",
            )
        return Response(
            png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"}
        )

    @app.get("/v1/progress/{request_id}")
    async def progress(request_id: str) -> JSONResponse:
        state = worker.progress(request_id)
        if state is None:  # not submitted yet (pages poll before the POST lands) or forgotten
            state = {"id": request_id, "state": "unknown", "done": 0, "total": 0,
                     "queue_position": None}  # fmt: skip
        return JSONResponse(state)

    # -- models and health -------------------------------------------------------------------
    def model_card() -> dict[str, Any]:
        return {"id": model_id, "object": "model", "created": created, "owned_by": "openimagen"}

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [model_card()]})

    @app.get("/v1/models/{name:path}")
    async def model(name: str) -> JSONResponse:
        if name != model_id:
            raise APIError(
                404,
                f"model {name!r} is not served here; this server serves {model_id!r}",
                type="not_found",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(model_card())

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "model": model_id,
                "sizes": allowed_sizes,
                "queue": {"waiting": worker.queued, "capacity": settings.max_queue},
                "auth_required": settings.api_key is not None,
                "defaults": {
                    "steps": default_sampling[0].steps,
                    "guidance_scale": default_sampling[0].guidance_weight,
                },
                "limits": {
                    "max_n": settings.max_n,
                    "max_steps": settings.max_steps,
                    "max_prompt_chars": settings.max_prompt_chars,
                    "max_body_bytes": settings.max_body_bytes,
                },
                "watermark": WATERMARK_METHOD if settings.watermark else None,
            }
        )

    # -- the page ---------------------------------------------------------------------------
    static = importlib.resources.files("openimagen.serve") / "static"

    @app.get("/")
    async def page() -> Response:
        return Response(
            (static / "index.html").read_bytes(),
            media_type="text/html; charset=utf-8",
            headers=PAGE_SECURITY_HEADERS,
        )

    @app.get("/static/app.js")
    async def script() -> Response:
        return Response(
            (static / "app.js").read_bytes(),
            media_type="text/javascript; charset=utf-8",
            headers=PAGE_SECURITY_HEADERS,
        )

    return app


__all__ = ["PAGE_SECURITY_HEADERS", "create_app"]
