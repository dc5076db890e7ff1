"""``openimagen rate``: the blind side-by-side rating page of a DrawBench run.

For each prompt a rater sees the two models' image sets side by side, set A on the left and
set B on the right in an order drawn at random per rater and prompt (and recorded with the
vote), and answers the paper's two questions. The page never learns which model drew which
set: image URLs are random tokens and the PNGs are served without their provenance text
chunks (which name the model); the pixels, watermark included, are unchanged.

Endpoints: ``GET /`` (the page), ``GET /api/info``, ``GET /api/next?rater=``,
``POST /api/vote``, ``POST /api/undo``, ``GET /images/<token>.png``, and the results:
``GET /results`` (tables and plot), ``/results.json``, ``/results.csv``, ``/votes.csv``.
The server is ``serve``'s: the same Host check (:class:`openimagen.serve.http.GuardMiddleware`),
JSON-only bodies under the same size and depth limits
(:func:`openimagen.serve.http.read_json_body`), the same page security headers, bound to
127.0.0.1 unless told otherwise. The votes, their statistics and the run it rates are
:mod:`openimagen.eval`'s (``votes``, ``preference``, ``drawbench``).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import struct
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from openimagen.errors import InvalidArgumentError
from openimagen.eval.drawbench import read_manifest
from openimagen.eval.preference import results_csv, results_html, summarize_votes, votes_csv
from openimagen.eval.votes import (
    MAX_RATER_CHARS,
    VoteConflictError,
    VoteStore,
    check_rater,
    rater_order,
)
from openimagen.serve.http import (
    PAGE_SECURITY_HEADERS,
    APIError,
    GuardMiddleware,
    error_response,
    read_json_body,
    static_page,
)
from openimagen.serve.server import settings_for_host
from openimagen.serve.settings import ServeSettings

logger = logging.getLogger(__name__)

DB_FILE = "ratings.sqlite"
VOTE_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
TOKEN = re.compile(r"^([A-Za-z0-9_-]{16,64})\.png$")
# PNG chunks that carry text: dropped, so an image does not say which model drew it
_TEXT_CHUNKS = {b"tEXt", b"zTXt", b"iTXt"}


def strip_png_text(data: bytes) -> bytes:
    """The PNG ``data`` without its text chunks (every other chunk byte for byte)."""
    signature = b"\x89PNG\r\n\x1a\n"
    if not data.startswith(signature):
        raise InvalidArgumentError("image", data[:8], "a PNG file")
    out, pos = [signature], len(signature)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        end = pos + 12 + length  # length, type, data, CRC
        if data[pos + 4 : pos + 8] not in _TEXT_CHUNKS:
            out.append(data[pos:end])
        pos = end
    return b"".join(out)


class RatingSession:
    """The prompts of a run that both models drew, their image sets and the image tokens."""

    def __init__(self, run_dir: str | os.PathLike, models: list[str] | None = None):
        self.run_dir = Path(run_dir)
        rows = read_manifest(self.run_dir)
        labels = list(dict.fromkeys(r["model"] for r in rows))
        if models is None:
            if len(labels) != 2:
                raise InvalidArgumentError(
                    "--models", None, f"two of this run's models: {', '.join(labels)}",
                    "The run has more than two models; pick two: --models A B.",
                )  # fmt: skip
            models = labels
        unknown = [m for m in models if m not in labels]
        if unknown or len(set(models)) != 2:
            raise InvalidArgumentError(
                "--models", models, f"two different models of this run: {', '.join(labels)}"
            )
        self.models = sorted(models)
        self.items: dict[int, dict[str, Any]] = {}
        self._paths: dict[str, Path] = {}
        for row in sorted(rows, key=lambda r: (r["prompt_index"], r["sample"])):
            if row["model"] not in self.models:
                continue
            item = self.items.setdefault(
                row["prompt_index"],
                {"prompt": row["prompt"], "category": row["category"],
                 "images": {m: [] for m in self.models}},
            )  # fmt: skip
            token = secrets.token_urlsafe(18)
            self._paths[token] = self.run_dir / row["path"]
            item["images"][row["model"]].append(f"/images/{token}.png")
        # a prompt is rated only when both models drew it
        self.items = {i: v for i, v in self.items.items() if all(v["images"].values())}
        if not self.items:
            raise InvalidArgumentError(
                "DIR", str(run_dir), f"a run where both {' and '.join(self.models)} drew images"
            )
        self.categories = list(dict.fromkeys(v["category"] for v in self.items.values()))

    def image(self, token: str) -> bytes | None:
        path = self._paths.get(token)
        return None if path is None else strip_png_text(path.read_bytes())


def create_rate_app(
    run_dir: str | os.PathLike,
    *,
    models: list[str] | None = None,
    db_path: str | os.PathLike | None = None,
    settings: ServeSettings | None = None,
) -> FastAPI:
    """The ASGI app of the rating page for ``run_dir`` (votes in ``db_path``)."""
    session = RatingSession(run_dir, models)
    store = VoteStore(db_path or Path(run_dir) / DB_FILE)
    settings = (settings or ServeSettings()).replace(api_key=None)  # rating has no key
    app = FastAPI(title="openimagen rate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.store, app.state.session = store, session
    app.add_exception_handler(APIError, lambda request, exc: error_response(exc))
    app.add_middleware(GuardMiddleware, settings=settings)
    _add_page_routes(app, session)
    _add_vote_routes(app, session, store, settings.max_body_bytes)
    _add_result_routes(app, session, store)
    return app


# -- request checks --------------------------------------------------------------------------
def _rater_of(value: Any) -> str:
    try:
        return check_rater(value)
    except InvalidArgumentError as exc:
        raise APIError(400, str(exc), param="rater", code="invalid_value") from None


def _vote_id_of(value: Any, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not VOTE_ID.match(value):
        raise APIError(400, f"vote_id={value!r} is not valid: expected 8 to 64 of "
                       "A-Z a-z 0-9 _ -", param="vote_id", code="invalid_value")  # fmt: skip
    return value


async def _body_of(request: Request, fields: set[str], limit: int) -> dict[str, Any]:
    body = await read_json_body(request, limit)
    if not isinstance(body, dict):
        raise APIError(400, "the request body must be a JSON object", code="invalid_json")
    unknown = sorted(set(body) - fields)
    if unknown:
        raise APIError(400, f"unknown field(s) {', '.join(unknown)}; allowed: "
                       f"{', '.join(sorted(fields))}", param=unknown[0],
                       code="unknown_parameter")  # fmt: skip
    return body


def _state(session: RatingSession, store: VoteStore, rater: str) -> dict[str, Any]:
    """Where ``rater`` stands: progress, the next prompt (sides fixed), the last vote."""
    pair = session.models
    mine = store.votes(pair, rater=rater)
    voted = {v["prompt_index"] for v in mine}
    remaining = [i for i in rater_order(rater, "|".join(pair), session.items) if i not in voted]
    out: dict[str, Any] = {"rater": rater, "done": len(voted), "total": len(session.items),
                           "item": None, "last_vote": None}  # fmt: skip
    if mine:
        out["last_vote"] = {"vote_id": mine[-1]["vote_id"]}
    if remaining:
        index = remaining[0]
        item = session.items[index]
        left, right = store.sides(rater, pair, index)
        out["item"] = {"prompt_index": index, "prompt": item["prompt"],
                       "a": item["images"][left], "b": item["images"][right]}  # fmt: skip
    return out


# -- routes ------------------------------------------------------------------------------------
def _add_page_routes(app: FastAPI, session: RatingSession) -> None:
    pair = session.models

    @app.get("/")
    async def page() -> Response:
        return static_page("rate.html")

    @app.get("/static/rate.js")
    async def script() -> Response:
        return static_page("rate.js")

    @app.get("/api/info")
    async def info() -> JSONResponse:
        return JSONResponse({"total": len(session.items), "max_rater_chars": MAX_RATER_CHARS,
                             "images_per_set": max(len(v["images"][pair[0]])
                                                   for v in session.items.values())})  # fmt: skip

    @app.get("/images/{name}")
    async def image(name: str) -> Response:
        match = TOKEN.match(name)
        data = session.image(match.group(1)) if match else None
        if data is None:
            raise APIError(404, f"no image {name!r}", type="not_found", code="not_found")
        return Response(data, media_type="image/png", headers={"Cache-Control": "private"})


def _add_vote_routes(app: FastAPI, session: RatingSession, store: VoteStore, limit: int) -> None:
    pair = session.models

    @app.get("/api/next")
    async def next_item(rater: str = "") -> JSONResponse:
        return JSONResponse(_state(session, store, _rater_of(rater)))

    @app.post("/api/vote")
    async def vote(request: Request) -> JSONResponse:
        fields = {"rater", "prompt_index", "quality", "alignment", "vote_id"}
        body = await _body_of(request, fields, limit)
        rater, vote_id = _rater_of(body.get("rater")), _vote_id_of(body.get("vote_id"))
        index = body.get("prompt_index")
        if isinstance(index, bool) or not isinstance(index, int) or index not in session.items:
            raise APIError(400, f"prompt_index={index!r} is not one of this session's prompts",
                           param="prompt_index", code="invalid_value")  # fmt: skip
        item = session.items[index]
        try:
            _, new = store.record(vote_id=vote_id, rater=rater, pair=pair, prompt_index=index,
                                  prompt=item["prompt"], category=item["category"],
                                  quality=body.get("quality"), alignment=body.get("alignment"))  # fmt: skip
        except VoteConflictError as exc:
            raise APIError(409, str(exc), code="conflict") from None
        except InvalidArgumentError as exc:
            raise APIError(400, str(exc), param=exc.name, code="invalid_value") from None
        return JSONResponse({**_state(session, store, rater), "recorded": new})

    @app.post("/api/undo")
    async def undo(request: Request) -> JSONResponse:
        body = await _body_of(request, {"rater", "vote_id"}, limit)
        rater = _rater_of(body.get("rater"))
        vote_id = _vote_id_of(body.get("vote_id"), required=False)
        try:
            row = store.undo_last(rater, pair, vote_id)
        except VoteConflictError as exc:
            raise APIError(409, str(exc), code="conflict") from None
        undone = None if row is None else {"prompt_index": row["prompt_index"]}
        return JSONResponse({**_state(session, store, rater), "undone": undone})


def _add_result_routes(app: FastAPI, session: RatingSession, store: VoteStore) -> None:
    pair = session.models

    def summary() -> dict[str, Any]:
        return summarize_votes(store.votes(pair), pair, session.categories)

    @app.get("/results")
    async def results() -> HTMLResponse:
        title = f"DrawBench: {pair[0]} vs {pair[1]}"
        return HTMLResponse(results_html(summary(), title), headers=PAGE_SECURITY_HEADERS)

    @app.get("/results.json")
    async def results_json() -> JSONResponse:
        return JSONResponse({**summary(), "run": str(session.run_dir)})

    @app.get("/results.csv")
    async def results_table() -> Response:
        return Response(results_csv(summary()), media_type="text/csv; charset=utf-8")

    @app.get("/votes.csv")
    async def all_votes() -> Response:
        return Response(votes_csv(store.votes(active=False)), media_type="text/csv; charset=utf-8")


def run_rating_server(
    run_dir: str | os.PathLike,
    *,
    models: list[str] | None = None,
    db_path: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 8001,
    log_level: str = "info",
) -> None:
    """Serve the rating page until interrupted (``openimagen rate``)."""
    import uvicorn

    if not 0 <= port <= 65535:
        raise InvalidArgumentError("--port", port, "an integer from 0 to 65535")
    settings = settings_for_host(ServeSettings(), host)
    if settings.allowed_hosts is None:  # bound to an address other machines can reach
        logger.warning(
            "rating page on %s is reachable from other machines: anyone who reaches it can "
            "vote (there is no key); put an authenticating proxy in front", host
        )  # fmt: skip
    app = create_rate_app(run_dir, models=models, db_path=db_path, settings=settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, server_header=False)


__all__ = ["RatingSession", "create_rate_app", "run_rating_server", "strip_png_text"]
