"""The HTTP API: OpenAI-compatible image generation, health, models, and the web page.

Endpoints (see docs/serving.md):

- ``POST /v1/images/generations``: the OpenAI Images API request, checked by
  :func:`openimagen.serve.requests.parse_image_request` (``prompt``, ``n``, ``size``,
  ``response_format``, ``model``, and the extensions ``seed``, ``steps``, ``guidance_weight``).
- ``GET /v1/images/files/{id}.png``: images of ``url`` responses (bounded retention).
- ``GET /v1/progress/{request_id}``: progress of a request sent with ``X-Request-Id``.
- ``GET /v1/models``, ``GET /v1/models/{id}``, ``GET /healthz``, ``GET /`` (the page).

Every error is JSON in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``.
:func:`create_app` wires the parts; each group of routes is added by its own function.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from openimagen.errors import OpenImagenError
from openimagen.images import provenance
from openimagen.policy import PromptPolicy
from openimagen.serve.files import ImageStore, png_bytes
from openimagen.serve.http import (
    APIError,
    GuardMiddleware,
    error_response,
    invalid_value,
    read_json_body,
    static_page,
)
from openimagen.serve.requests import ServedModel, parse_image_request
from openimagen.serve.settings import ServeSettings
from openimagen.serve.worker import GenerationWorker, Job, QueueFullError
from openimagen.version import __version__
from openimagen.watermark import METHOD as WATERMARK_METHOD

if TYPE_CHECKING:
    from openimagen.cascade import Cascade
    from openimagen.provenance import ContentCredentials

logger = logging.getLogger(__name__)

# how often a waiting request checks whether its client is still there
DISCONNECT_POLL_S = 0.5
REQUEST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FILE_NAME = re.compile(r"^([A-Za-z0-9_-]{16,64})\.png$")


def create_app(
    cascade: Cascade,
    settings: ServeSettings | None = None,
    *,
    policy: PromptPolicy | None = None,
    credentials: ContentCredentials | None = None,
) -> FastAPI:
    """The ASGI app serving ``cascade``.

    The generation thread starts and stops with the app's lifespan (uvicorn runs it). Every
    PNG is signed with ``credentials`` (default: those of ``settings``' ``c2pa_*`` fields).
    """
    settings = settings or ServeSettings()
    model = ServedModel(
        model_id=cascade.model_id or "openimagen",
        resolution=int(cascade.resolution),
        sampling=tuple(cascade.sampling),
    )
    store = ImageStore(settings.max_stored_images, settings.image_ttl_s)
    if credentials is None:
        credentials = content_credentials(settings, model.model_id)

    def encode(image: Any, metadata: dict[str, Any]) -> bytes:
        return png_bytes(image, metadata, watermark=settings.watermark, credentials=credentials)

    worker = GenerationWorker(
        cascade, encode, max_queue=settings.max_queue, max_batch_images=settings.max_batch_images
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker.start()
        logger.info("serving model %r at %dx%d", model.model_id, model.resolution,
                    model.resolution)  # fmt: skip
        try:
            yield
        finally:
            worker.stop()

    app = FastAPI(title="openimagen", version=__version__, lifespan=lifespan,
                  docs_url=None, redoc_url=None, openapi_url=None)  # fmt: skip
    app.state.worker, app.state.store, app.state.settings = worker, store, settings
    _add_error_handlers(app)
    app.add_middleware(GuardMiddleware, settings=settings)
    _add_generation_routes(app, model, settings, worker, store, policy)
    _add_model_routes(app, model, settings, worker, credentials)
    _add_page_routes(app)
    return app


def content_credentials(
    settings: ServeSettings, model_name: str, model_version: str | None = None
) -> ContentCredentials:
    """The C2PA signer the server's ``settings`` ask for (see :class:`ServeSettings`)."""
    from openimagen.provenance import ContentCredentials

    return ContentCredentials.from_settings(
        model_name=model_name, model_version=model_version, cert=settings.c2pa_cert,
        key=settings.c2pa_key, tsa_url=settings.c2pa_tsa_url,
        include_prompt=settings.c2pa_include_prompt,
    )  # fmt: skip


# -- errors: always OpenAI-shaped JSON ------------------------------------------------------------
def _add_error_handlers(app: FastAPI) -> None:
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


# -- generation -------------------------------------------------------------------------------------
def _add_generation_routes(
    app: FastAPI,
    model: ServedModel,
    settings: ServeSettings,
    worker: GenerationWorker,
    store: ImageStore,
    policy: PromptPolicy | None,
) -> None:
    @app.post("/v1/images/generations")
    async def generations(request: Request) -> JSONResponse:
        body = await read_json_body(request, settings.max_body_bytes)
        params = parse_image_request(body, model, settings, policy=policy)
        request_id = request.headers.get("x-request-id")
        if request_id is not None and not REQUEST_ID.match(request_id):
            raise invalid_value("X-Request-Id", request_id, "1 to 64 characters of A-Z a-z 0-9 _ -")
        job = Job(
            prompts=[params.prompt] * params.n,
            seeds=list(params.seeds),
            sampling=params.sampling,
            metadata=[provenance(params.prompt, s, model.model_id, params.sampling)
                      for s in params.seeds],
            job_id=request_id,
        )  # fmt: skip
        try:
            worker.submit(job)
        except QueueFullError as exc:
            raise APIError(429, f"{exc}; retry in a few seconds", type="rate_limit_exceeded",
                           code="rate_limit_exceeded", headers={"Retry-After": "2"}) from exc  # fmt: skip
        pngs = await _wait_for_job(request, job, worker)
        data = []
        for seed, png in zip(params.seeds, pngs, strict=True):
            if params.response_format == "b64_json":
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
                f"image {name!r} does not exist or has expired (images are kept "
                f"{settings.image_ttl_s:g} s, at most {settings.max_stored_images})",
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


async def _wait_for_job(request: Request, job: Job, worker: GenerationWorker) -> list[bytes]:
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


# -- models and health --------------------------------------------------------------------------------
def _add_model_routes(
    app: FastAPI,
    model: ServedModel,
    settings: ServeSettings,
    worker: GenerationWorker,
    credentials: ContentCredentials,
) -> None:
    # who signs the images' Content Credentials (public: every image names its signer)
    signing = {"signer": credentials.credentials.subject,
               "development_certificate": credentials.credentials.development,
               "model_version": credentials.model_version,
               "include_prompt": credentials.include_prompt}  # fmt: skip

    created = int(time.time())
    card = {"id": model.model_id, "object": "model", "created": created, "owned_by": "openimagen"}

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        return JSONResponse({"object": "list", "data": [card]})

    @app.get("/v1/models/{name:path}")
    async def one_model(name: str) -> JSONResponse:
        if name != model.model_id:
            raise APIError(
                404,
                f"model {name!r} is not served here; this server serves {model.model_id!r}",
                type="not_found",
                param="model",
                code="model_not_found",
            )
        return JSONResponse(card)

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        defaults = model.sampling[0]
        return JSONResponse({
            "status": "ok",
            "model": model.model_id,
            "sizes": model.sizes,
            "queue": {"waiting": worker.queued, "capacity": settings.max_queue},
            "auth_required": settings.api_key is not None,
            # guidance_scale: the older name of guidance_weight, kept for existing clients
            "defaults": {"steps": defaults.steps, "guidance_weight": defaults.guidance_weight,
                         "guidance_scale": defaults.guidance_weight},
            "limits": {"max_n": settings.max_n, "max_steps": settings.max_steps,
                       "max_prompt_chars": settings.max_prompt_chars,
                       "max_body_bytes": settings.max_body_bytes},
            "watermark": WATERMARK_METHOD if settings.watermark else None,
            "content_credentials": signing,
        })  # fmt: skip


# -- the page -------------------------------------------------------------------------------------------
def _add_page_routes(app: FastAPI) -> None:
    @app.get("/")
    async def page() -> Response:
        return static_page("index.html")

    @app.get("/static/app.js")
    async def script() -> Response:
        return static_page("app.js")


__all__ = ["content_credentials", "create_app"]
