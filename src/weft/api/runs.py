"""Runs over HTTP: ``/threads/{id}/runs/...`` and stateless ``/runs/...`` (create, stream,
wait, batch, list, get, join, join stream, cancel, bulk cancel, delete), and the thread's
stream ``GET /threads/{id}/stream``.

Streams are server-sent events (``id`` is the event's sequence number, what
``Last-Event-ID`` takes back). Waiting responses (wait, join) send the JSON result when the
run ends; while a run takes long they send a newline every :data:`HEARTBEAT_SECONDS` first,
which JSON parsers skip, so proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, Field
from starlette.responses import Response, StreamingResponse

from weft.api.route import Route
from weft.api.wire import (
    HEARTBEAT_SECONDS,
    JSON,
    Body,
    EventStream,
    Rt,
    RunId,
    ThreadId,
    dumps,
    frame,
    paged,
    run_headers,
    sse,
)
from weft.errors import UnprocessableEntityError, WeftError
from weft.runner import error_result
from weft.runs import CANCEL_ACTIONS
from weft.schema import MAX_AFTER_SECONDS, STREAM_MODE_NAMES, Run, RunEvent
from weft.thread_streams import THREAD_STREAM_MODES, ThreadEvent, thread_events
from weft.validation import choice

router = APIRouter(tags=["runs"], route_class=Route)

RUN_SELECT_FIELDS: tuple[str, ...] = (
    "run_id",
    "thread_id",
    "assistant_id",
    "created_at",
    "updated_at",
    "status",
    "metadata",
    "kwargs",
    "multitask_strategy",
    "attempt",
    "cancel_reason",
)
"""The fields of a run ``GET /threads/{id}/runs`` may ``select``."""

_THREAD_MODES_DOC = f"One or more of {', '.join(THREAD_STREAM_MODES)}."

_UNSUPPORTED: dict[str, str] = {
    "feedback_keys": "feedback keys belong to LangSmith, which weft does not use",
    "langsmith_tracer": "weft does not trace to LangSmith",
    "strict_resume": "weft does not check that a resume answers a waiting interrupt",
}
"""Fields the SDK may send that weft refuses when set (``strict_resume``: when true)."""


# --- bodies ---------------------------------------------------------------------------------


class RunCreate(Body):
    """A run's options, as the SDK's ``runs.stream/wait/create`` send them."""

    assistant_id: str = Field(description="An assistant ID or a graph id.")
    input: Any = None
    command: dict[str, Any] | None = Field(
        default=None, description="``{resume, goto, update}``; not with ``input``."
    )
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    checkpoint_during: bool | None = None
    interrupt_before: str | list[str] | None = Field(
        default=None, description='``"*"`` or node names.'
    )
    interrupt_after: str | list[str] | None = Field(
        default=None, description='``"*"`` or node names.'
    )
    stream_mode: str | list[str] | None = Field(
        default=None, description=f"One or more of {', '.join(STREAM_MODE_NAMES)}."
    )
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    on_disconnect: str | None = Field(default=None, description="``continue`` or ``cancel``.")
    on_completion: str | None = Field(
        default=None, description="Stateless runs: ``delete`` (default) or ``keep`` the thread."
    )
    webhook: str | None = None
    multitask_strategy: str | None = Field(
        default=None, description="``enqueue`` (default), ``reject``, ``interrupt``, ``rollback``."
    )
    if_not_exists: str | None = Field(default=None, description="``reject`` or ``create``.")
    after_seconds: float | None = Field(
        default=None,
        ge=0,
        le=MAX_AFTER_SECONDS,
        description="Start the run this many seconds later (at most a year).",
    )
    durability: str | None = Field(default=None, description="``sync``, ``async`` or ``exit``.")
    feedback_keys: list[str] | None = Field(default=None, description="Not supported.")
    strict_resume: bool | None = Field(default=None, description="Not supported when true.")
    langsmith_tracer: dict[str, Any] | None = Field(default=None, description="Not supported.")

    def options(self) -> dict[str, Any]:
        """The run options for :meth:`weft.runs.Runs.create` (unsupported ones refused)."""
        for name, why in _UNSUPPORTED.items():
            value = getattr(self, name)
            if value is not None and value is not False and value != []:
                raise UnprocessableEntityError(f"{name} is not supported: {why}; leave it out")
        skip = {"assistant_id", "thread_id", *_UNSUPPORTED}
        return {
            name: value
            for name in self.model_fields_set
            if name not in skip and (value := getattr(self, name)) is not None
        }


class BatchRun(RunCreate):
    """One run of ``POST /runs/batch``: stateless unless it names a thread."""

    thread_id: str | None = None


class RunsCancel(Body):
    """``POST /runs/cancel``: ``run_ids`` (of ``thread_id``), or every run in ``status``."""

    thread_id: str | None = None
    run_ids: list[str] | None = None
    status: str | None = Field(default=None, description="``pending``, ``running`` or ``all``.")


# --- documentation-only response shapes ----------------------------------------------------


class RunOut(BaseModel):
    run_id: str
    thread_id: str
    assistant_id: str
    status: str
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    multitask_strategy: str
    attempt: int
    created_at: datetime
    updated_at: datetime


_Doc = dict[int | str, dict[str, Any]]
_RUN: _Doc = {200: {"model": RunOut}}
_RUNS: _Doc = {200: {"model": list[RunOut]}}
_SSE: _Doc = {200: {"content": {"text/event-stream": {}}, "description": "Server-sent events."}}
_RESULT: _Doc = {200: {"description": "The run's final values (or ``{__error__}``), as JSON."}}


# --- creating -------------------------------------------------------------------------------


@router.post(
    "/threads/{thread_id}/runs/stream",
    summary="Create a run on a thread and stream its events",
    responses=_SSE,
    response_class=Response,
)
async def stream_run(thread_id: ThreadId, body: RunCreate, rt: Rt) -> Response:
    run, events = await rt.runs.stream(thread_id, body.assistant_id, **body.options())
    return sse(events, headers=run_headers(_thread(run), run.run_id, rejoin="stream"))


@router.post(
    "/runs/stream",
    summary="Create a stateless run and stream its events",
    responses=_SSE,
    response_class=Response,
)
async def stream_stateless_run(body: RunCreate, rt: Rt) -> Response:
    run, events = await rt.runs.stream(None, body.assistant_id, **body.options())
    return sse(events, headers=run_headers(_thread(run), run.run_id, rejoin="stream"))


@router.post(
    "/threads/{thread_id}/runs/wait",
    summary="Create a run on a thread and wait for its result",
    responses=_RESULT,
    response_class=Response,
)
async def wait_run(thread_id: ThreadId, body: RunCreate, rt: Rt) -> Response:
    return await _wait(rt, thread_id, body)


@router.post(
    "/runs/wait",
    summary="Create a stateless run and wait for its result",
    responses=_RESULT,
    response_class=Response,
)
async def wait_stateless_run(body: RunCreate, rt: Rt) -> Response:
    return await _wait(rt, None, body)


async def _wait(rt: Rt, thread_id: str | None, body: RunCreate) -> Response:
    run, result = await rt.runs.submit(thread_id, body.assistant_id, **body.options())
    tid = _thread(run)
    abandon = None
    if body.on_disconnect == "cancel":

        async def abandon() -> None:
            await rt.runs.cancel(tid, run.run_id)

    return await _long_poll(result, run_headers(tid, run.run_id, rejoin="join"), abandon)


@router.post(
    "/threads/{thread_id}/runs",
    summary="Create a run on a thread in the background",
    responses=_RUN,
)
async def create_run(thread_id: ThreadId, body: RunCreate, rt: Rt) -> JSON:
    run = await rt.runs.create(thread_id, body.assistant_id, **body.options())
    return JSON(run.to_api(), headers=run_headers(_thread(run), run.run_id))


@router.post("/runs", summary="Create a stateless run in the background", responses=_RUN)
async def create_stateless_run(body: RunCreate, rt: Rt) -> JSON:
    run = await rt.runs.create(None, body.assistant_id, **body.options())
    return JSON(run.to_api(), headers=run_headers(_thread(run), run.run_id))


@router.post(
    "/runs/batch",
    summary="Create several runs in the background (stateless unless they name a thread)",
    responses=_RUNS,
)
async def create_runs(body: list[BatchRun], rt: Rt) -> JSON:
    if not body:
        raise UnprocessableEntityError("the body must be a list of at least one run")
    runs = [
        await rt.runs.create(item.thread_id, item.assistant_id, **item.options()) for item in body
    ]
    return JSON([r.to_api() for r in runs])


# --- reading --------------------------------------------------------------------------------


@router.get("/threads/{thread_id}/runs", summary="A thread's runs, newest first", responses=_RUNS)
async def list_runs(
    thread_id: ThreadId,
    rt: Rt,
    limit: int = 10,
    offset: int = 0,
    status: str | None = None,
    select: Annotated[list[str] | None, Query()] = None,
) -> JSON:
    fields = _select(select)
    runs = await rt.runs.list(thread_id, status=status, limit=limit, offset=offset)
    rows = [_run_fields(r, fields) for r in runs] if fields else [r.to_api() for r in runs]
    return paged(rows, offset=offset, limit=limit)


@router.get("/threads/{thread_id}/runs/{run_id}", summary="One run", responses=_RUN)
async def get_run(thread_id: ThreadId, run_id: RunId, rt: Rt) -> JSON:
    run = await rt.runs.get(thread_id, run_id)
    return JSON(run.to_api(), headers=run_headers(_thread(run), run.run_id))


@router.delete(
    "/threads/{thread_id}/runs/{run_id}",
    summary="Delete a run that has ended",
    status_code=204,
    response_class=Response,
)
async def delete_run(thread_id: ThreadId, run_id: RunId, rt: Rt) -> Response:
    await rt.runs.delete(thread_id, run_id)
    return Response(status_code=204)


@router.get(
    "/threads/{thread_id}/runs/{run_id}/join",
    summary="Wait for a run's result",
    responses=_RESULT,
    response_class=Response,
)
async def join_run(
    thread_id: ThreadId, run_id: RunId, rt: Rt, cancel_on_disconnect: bool = False
) -> Response:
    headers = run_headers(thread_id, run_id, rejoin="join")
    if not cancel_on_disconnect:
        return await _long_poll(rt.runs.join(thread_id, run_id), headers)
    run = await rt.runs.get(thread_id, run_id)  # a 404 before the response starts

    async def abandon() -> None:
        await rt.runs.cancel(thread_id, run.run_id)

    return await _long_poll(rt.runs.join(thread_id, run_id), headers, abandon)


@router.get(
    "/threads/{thread_id}/runs/{run_id}/stream",
    summary="Join a run's event stream (Last-Event-ID resumes after that event)",
    responses=_SSE,
    response_class=Response,
)
async def join_run_stream(
    thread_id: ThreadId,
    run_id: RunId,
    rt: Rt,
    cancel_on_disconnect: bool = False,
    stream_mode: Annotated[list[str] | None, Query()] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    modes = _stream_modes(stream_mode)
    events = await rt.runs.join_stream(
        thread_id, run_id, last_event_id=last_event_id, cancel_on_disconnect=cancel_on_disconnect
    )
    if modes:
        events = _only(events, modes)
    return sse(events, headers=run_headers(thread_id, run_id, rejoin="stream"))


@router.get(
    "/threads/{thread_id}/stream",
    summary="Every run of a thread as it happens (Last-Event-ID resumes after that event)",
    tags=["threads"],
    responses=_SSE,
    response_class=Response,
)
async def join_thread_stream(
    thread_id: ThreadId,
    rt: Rt,
    stream_mode: Annotated[list[str] | None, Query(description=_THREAD_MODES_DOC)] = None,
    stream_modes: Annotated[list[str] | None, Query(description="Same as stream_mode.")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    modes = [
        part.strip()
        for value in [*(stream_mode or ()), *(stream_modes or ())]
        for part in _json_list(value)
        if part.strip()
    ]
    events = await thread_events(
        rt.runs, thread_id, last_event_id=last_event_id, modes=modes or ["run_modes"]
    )
    return EventStream(_thread_frames(events))


# --- cancelling -----------------------------------------------------------------------------


@router.post(
    "/threads/{thread_id}/runs/{run_id}/cancel",
    summary="Cancel a pending or running run",
    status_code=202,
    response_class=Response,
    responses={204: {"description": "Cancelled (with wait: the run has stopped)."}},
)
async def cancel_run(
    thread_id: ThreadId, run_id: RunId, rt: Rt, wait: bool = False, action: str = "interrupt"
) -> Response:
    await rt.runs.cancel(thread_id, run_id, action=action, wait=wait)
    return Response(status_code=204 if wait else 202)


@router.post(
    "/runs/cancel",
    summary="Cancel runs by id or by status",
    status_code=204,
    response_class=Response,
)
async def cancel_runs(body: RunsCancel, rt: Rt, action: str = "interrupt") -> Response:
    choice(action, CANCEL_ACTIONS, "action")
    if body.status is not None and (body.thread_id or body.run_ids):
        raise UnprocessableEntityError(
            "give either status (every run in it) or run_ids with their thread_id, not both"
        )
    if body.status is None and not body.run_ids:
        raise UnprocessableEntityError(
            "give run_ids (with their thread_id), or status: pending, running or all"
        )
    await rt.runs.cancel_many(
        thread_id=body.thread_id,
        run_ids=body.run_ids,
        status=body.status.lower() if body.status else None,
        action=action,
    )
    return Response(status_code=204)


# --- helpers --------------------------------------------------------------------------------


def _thread(run: Run) -> str:
    assert run.thread_id is not None  # every created run has a thread (stateless: its own)
    return run.thread_id


async def _long_poll(
    result: Awaitable[Any],
    headers: dict[str, str],
    abandon: Callable[[], Awaitable[None]] | None = None,
) -> Response:
    """The result as JSON. Without ``abandon`` the handler first waits up to one heartbeat
    (errors such as a 404 keep their status); after that, or at once with ``abandon`` (run
    when the client leaves early), the response starts and sends newlines until the
    result is there."""
    task = asyncio.ensure_future(result)
    if abandon is None:
        try:
            await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return JSON(task.result(), headers=headers)
    return StreamingResponse(
        _trickle(task, abandon), media_type="application/json", headers=headers
    )


_BACKGROUND: set[asyncio.Task[None]] = set()


async def _trickle(
    task: asyncio.Future[Any], abandon: Callable[[], Awaitable[None]] | None
) -> AsyncIterator[bytes]:
    finished = False
    try:
        while not task.done():
            done, _ = await asyncio.wait({task}, timeout=HEARTBEAT_SECONDS)
            if not done:
                yield b"\n"
        finished = True
        try:
            body = dumps(task.result())
        except WeftError as e:  # the response has started: report it in the body
            body = orjson.dumps(error_result(type(e).__name__, e.message))
        yield body
    finally:
        if not finished:
            task.cancel()
            if abandon is not None:  # the client left: clean up outside this cancelled scope
                cleanup = asyncio.get_running_loop().create_task(_quietly(abandon))
                _BACKGROUND.add(cleanup)
                cleanup.add_done_callback(_BACKGROUND.discard)


async def _quietly(action: Callable[[], Awaitable[None]]) -> None:
    with contextlib.suppress(WeftError):  # e.g. the run ended meanwhile
        await action()


def _json_list(value: str) -> list[str]:
    """A query value: one name, names separated by commas, or a JSON array of names."""
    if value.startswith("["):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            parsed = None
        if isinstance(parsed, list):
            return [str(v) for v in parsed]
    return value.split(",")


def _stream_modes(given: list[str] | None) -> set[str]:
    modes = {m.strip() for v in given or () for m in _json_list(v) if m.strip()}
    bad = sorted(modes - set(STREAM_MODE_NAMES))
    if bad:
        raise UnprocessableEntityError(
            f"stream_mode must be one of {', '.join(STREAM_MODE_NAMES)}, not "
            f"{', '.join(map(repr, bad))}"
        )
    return modes


def _wanted(item: RunEvent, modes: set[str]) -> bool:
    """Whether a joined stream asking for ``modes`` gets ``item``."""
    mode = item.event.split("|", 1)[0]
    if mode in ("metadata", "error", "end") or mode in modes:
        return True
    if mode.startswith("messages"):
        return "messages" in modes or "messages-tuple" in modes
    return isinstance(item.data, dict) and "__interrupt__" in item.data


async def _only(events: AsyncIterator[RunEvent], modes: set[str]) -> AsyncIterator[RunEvent]:
    async with contextlib.aclosing(events):  # type: ignore[type-var]
        async for item in events:
            if _wanted(item, modes):
                yield item


async def _thread_frames(events: AsyncGenerator[ThreadEvent]) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(events):
        async for item in events:
            yield frame(item.id, item.event, item.data)


def _select(select: list[str] | None) -> list[str] | None:
    if not select:
        return None
    fields = [f for value in select for f in value.split(",") if f]
    bad = [f for f in fields if f not in RUN_SELECT_FIELDS]
    if bad:
        raise UnprocessableEntityError(
            f"cannot select {', '.join(map(repr, bad))}; fields are {', '.join(RUN_SELECT_FIELDS)}"
        )
    return fields


def _run_fields(run: Run, fields: list[str]) -> dict[str, Any]:
    data = run.to_api()
    data["cancel_reason"] = run.error if run.status == "interrupted" else None
    return {f: data[f] for f in fields}


__all__ = ["RUN_SELECT_FIELDS", "BatchRun", "RunCreate", "RunsCancel", "router"]
