"""What every route shares: the runtime dependency, strict bodies, JSON and SSE responses,
pagination headers and the translation of errors to ``{"detail": ...}``.

Routes parse, call one runtime method and format with these helpers; nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from weft.errors import WeftError
from weft.jsonable import to_jsonable
from weft.runtime import Runtime
from weft.schema import RunEvent
from weft.validation import storable

log = logging.getLogger("weft.api")

HEARTBEAT_SECONDS = 10.0
"""How often an idle SSE stream sends a comment so proxies keep it open."""


async def runtime_of(request: Request) -> Runtime:
    """Async, so that FastAPI calls it on the event loop (a plain function would cost every
    request a hop to its thread pool)."""
    rt: Runtime = request.app.state.rt
    return rt


Rt = Annotated[Runtime, Depends(runtime_of)]
"""The runtime of the app serving the request; declare a route parameter ``rt: Rt``."""


def _uuid_path(what: str) -> Any:
    return Path(description=f"The {what}'s UUID.", json_schema_extra={"format": "uuid"})


ThreadId = Annotated[str, _uuid_path("thread")]
RunId = Annotated[str, _uuid_path("run")]
CronId = Annotated[str, _uuid_path("cron")]
CheckpointId = Annotated[str, _uuid_path("checkpoint")]
SessionId = Annotated[str, _uuid_path("session")]
"""Path parameters documented as UUIDs; the runtime checks them (a 422 naming the
parameter)."""


class Detail(BaseModel):
    """Every error: what went wrong and what to do."""

    detail: str


ERRORS: dict[int | str, dict[str, Any]] = {
    "4XX": {
        "model": Detail,
        "description": "The request cannot be served (400 unreadable body, 404 not found, "
        "405 method, 409 conflict, 413 too large, 422 invalid input); detail says why",
    }
}
"""The errors every route documents (``responses=`` of the app)."""


class Body(BaseModel):
    """Base of request bodies: a field the server does not know is a 422 naming it, and so
    is a value no backend can store (:func:`weft.validation.storable`: integers beyond 64
    bits, NaN, NUL characters, lone surrogates, deep nesting) anywhere in the body."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        storable(data)
        return data


class JSON(JSONResponse):
    """A JSON response from plain data, pydantic records (``mode="json"``) or LangChain
    messages; ``orjson`` for speed."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return dumps(content)


def dumps(content: Any) -> bytes:
    """``content`` as JSON: ``orjson`` for speed; values it refuses (integers beyond 64 bits
    or strings with lone surrogates in a graph's state) through the standard library, which
    writes the integer exactly and escapes the surrogate."""
    if isinstance(content, BaseModel):
        content = content.model_dump(mode="json")
    try:
        return orjson.dumps(content, default=_default)
    except TypeError:
        plain = to_jsonable(content)
    try:
        return orjson.dumps(plain)
    except TypeError:
        return json.dumps(plain, allow_nan=False, separators=(",", ":")).encode()


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError


def paged(
    items: Iterable[Any],
    *,
    offset: int,
    limit: int,
    total: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSON:
    """A list response with ``X-Pagination-Total`` and, when more may follow,
    ``X-Pagination-Next`` (the offset of the next page)."""
    rows = list(items)
    out = dict(headers or {})
    if total is not None:
        out["X-Pagination-Total"] = str(total)
        more = offset + len(rows) < total
    else:
        more = limit > 0 and len(rows) == limit
    if more:
        out["X-Pagination-Next"] = str(offset + len(rows))
    return JSON(rows, headers=out)


def sse(
    events: AsyncIterator[RunEvent], *, headers: Mapping[str, str] | None = None
) -> EventStream:
    """Server-sent events from a run's event iterator: ``id`` is the event's sequence number
    (what ``Last-Event-ID`` takes back), ``event`` its name, ``data`` JSON."""

    async def frames() -> AsyncIterator[bytes]:
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for item in events:
                yield frame(item.seq, item.event, item.data)

    return EventStream(frames(), headers=headers)


def frame(event_id: int | str, event: str, data: Any) -> bytes:
    """One server-sent event; ``data`` as JSON (one line: JSON text holds no raw newline)."""
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        str(event_id).encode(),
        event.encode(),
        dumps(data),
    )


class EventStream(Response):
    """A ``text/event-stream`` response of ``frames`` (encoded events, see :func:`frame`), sent
    as they come. While nothing else is sent, a comment goes out every
    :data:`HEARTBEAT_SECONDS` so that proxies keep the connection open. When the client goes
    away, the frames' iterator is closed at once (its ``finally`` runs: a run streamed with
    ``on_disconnect=cancel`` is cancelled).

    Written for the one job, rather than taken from ``sse-starlette``: one watcher task per
    stream (disconnects and heartbeats) instead of a task group of four, which cost the server
    more per streamed run than the run's own bookkeeping.
    """

    media_type = "text/event-stream"

    def __init__(
        self, frames: AsyncIterator[bytes], *, headers: Mapping[str, str] | None = None
    ) -> None:
        self.frames = frames
        self.status_code = 200
        self.background = None
        self.init_headers(
            {"Cache-Control": "no-store", "X-Accel-Buffering": "no", **(headers or {})}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        pump = asyncio.current_task()
        assert pump is not None
        last_sent = loop.time()
        pumping = True
        gone = False

        async def watch() -> None:
            nonlocal gone
            while True:
                try:
                    message = await asyncio.wait_for(receive(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    if loop.time() - last_sent >= HEARTBEAT_SECONDS / 2:
                        await send(
                            {"type": "http.response.body", "body": b": ping\n\n", "more_body": True}
                        )
                    continue
                if message["type"] == "http.disconnect":
                    if pumping:
                        gone = True
                        pump.cancel()
                    return

        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        watcher = loop.create_task(watch())
        try:
            async with contextlib.aclosing(self.frames):  # type: ignore[type-var]
                async for chunk in self.frames:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    last_sent = loop.time()
            pumping = False
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            pump.uncancel()  # the client left: the stream ends here, quietly
        finally:
            pumping = False
            watcher.cancel()


def run_headers(thread_id: str, run_id: str, *, rejoin: str | None = None) -> dict[str, str]:
    """``Content-Location`` of a run and, for streaming (``rejoin="stream"``) and waiting
    (``rejoin="join"``) responses, ``Location``: the URL a client reconnects to."""
    where = f"/threads/{thread_id}/runs/{run_id}"
    out = {"Content-Location": where}
    if rejoin is not None:
        out["Location"] = f"{where}/{rejoin}"
    return out


# --- errors -------------------------------------------------------------------------------


def validation_detail(errors: Iterable[Mapping[str, Any]]) -> str:
    """FastAPI's validation errors as one sentence naming each field, unsupported ones first."""
    unknown: list[str] = []
    problems: list[str] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "body"
        kind = str(err.get("type", ""))
        if kind == "extra_forbidden":
            unknown.append(where)
        elif kind == "json_invalid":
            ctx = err.get("ctx") or {}
            problems.append(f"malformed JSON body: {ctx.get('error', err.get('msg', ''))}")
        elif kind == "missing":
            problems.append(f"{where} is required")
        else:
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
    parts = []
    if unknown:
        parts.append("unsupported field" + ("s " if len(unknown) > 1 else " ") + ", ".join(unknown))
    parts.extend(problems)
    return "; ".join(parts) or "invalid request"


class BodyLimit:
    """413 for a body larger than ``limit`` bytes (``http.max_body_bytes``), by its
    Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await self._refuse(send, int(value))
                return
        seen = 0
        started = False

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(seen, self.limit)
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting, tracking)
        except _TooLarge as e:
            if not started:
                await self._refuse(send, e.size)

    async def _refuse(self, send: Send, size: int) -> None:
        body = orjson.dumps({"detail": _TooLarge(size, self.limit).detail})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(StarletteHTTPException):
    """An HTTPException so that FastAPI's body reader lets it through (it turns any other
    error into a 400) and the error handler answers 413 with this detail."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            413,
            detail=f"request body is {size} bytes or more; the limit is {limit} bytes "
            "(http.max_body_bytes in the config)",
        )
        self.size = size


def _allowed_methods(request: Request, routes: Sequence[BaseRoute]) -> list[str]:
    """The methods of the routes matching the request's path most closely, by the fewest
    path parameters (``/sessions/search`` is the search, not a session named "search").
    FastAPI has one route per method, and Starlette's 405 names only the first one's."""
    by_params: dict[int, set[str]] = {}
    for route in routes:
        match, child = route.matches({**request.scope, "method": "?", "path_params": {}})
        if match is Match.PARTIAL:
            params = len(child.get("path_params", ()))
            by_params.setdefault(params, set()).update(getattr(route, "methods", None) or ())
    return sorted(by_params[min(by_params)]) if by_params else []


def install_error_handlers(app: FastAPI, routes: Sequence[BaseRoute] = ()) -> None:
    """Every error becomes ``{"detail": "..."}`` with the status the SDK maps to its typed
    errors; an unexpected one is a 500 naming its type, never a traceback. A 405 lists the
    methods of ``routes`` (the routers' routes) on the path in its ``Allow`` header."""

    async def weft_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, WeftError)
        if exc.status_code >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSON({"detail": exc.message}, status_code=exc.status_code)

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return JSON({"detail": validation_detail(exc.errors())}, status_code=422)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail: Any = exc.detail
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path}; see /docs for the API"
        elif exc.status_code == 405:
            allowed = _allowed_methods(request, routes)
            headers["Allow"] = ", ".join(allowed)
            detail = (
                f"method {request.method} is not allowed on {request.url.path}; "
                f"use {', '.join(allowed)}"
            )
        elif exc.status_code == 400 and detail == "There was an error parsing the body":
            cause = str(exc.__cause__ or "")
            why = f" ({cause[:200]})" if cause else ""
            detail = f"the request body cannot be read as JSON{why}; send UTF-8 encoded JSON"
        return JSON({"detail": detail}, status_code=exc.status_code, headers=headers)

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSON(
            {"detail": f"internal error ({type(exc).__name__}); the server log has the details"},
            status_code=500,
        )

    app.add_exception_handler(WeftError, weft_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)


__all__ = [
    "ERRORS",
    "HEARTBEAT_SECONDS",
    "JSON",
    "Body",
    "BodyLimit",
    "CheckpointId",
    "CronId",
    "Detail",
    "EventStream",
    "Rt",
    "RunId",
    "SessionId",
    "ThreadId",
    "dumps",
    "frame",
    "install_error_handlers",
    "paged",
    "run_headers",
    "runtime_of",
    "sse",
    "validation_detail",
]
