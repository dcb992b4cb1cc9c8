"""``/threads``: the Platform's thread routes (records, search, state, history, copy, prune)
and weft's own thread operations (branch, snapshots, rollback, lifecycle).

Responses carry the Platform's thread fields plus weft's (``lifecycle``, ``kind``,
``graph_id``, ``session_id``, ``name``, ``parent_thread_id``, ``source_checkpoint_id``,
``counts``). The thread's live stream (``GET /threads/{id}/stream``) is served with the runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, Field, create_model
from starlette.responses import Response

from weft.api.route import Route
from weft.api.wire import JSON, Body, CheckpointId, Rt, ThreadId, paged
from weft.errors import UnprocessableEntityError
from weft.schema import THREAD_FIELDS, Lifecycle, Thread, ThreadKind, ThreadState, ThreadStatus
from weft.storage.base import IfExists, PruneStrategy, SortOrder, ThreadSortBy

router = APIRouter(route_class=Route)
THREADS: list[str | Enum] = ["threads"]
WEFT: list[str | Enum] = ["weft"]

ThreadOut: type[BaseModel] = create_model(
    "Thread",
    **{  # type: ignore[call-overload]
        name: (field.annotation, field)
        for name, field in Thread.model_fields.items()
        if name in THREAD_FIELDS
    },
)
"""The thread as the API shows it (documentation only)."""

STATE_FIELDS: tuple[str, ...] = tuple(ThreadState.model_fields)


# --- bodies ----------------------------------------------------------------------------------


class CheckpointRef(Body):
    """A checkpoint as the Platform names it; weft reads root checkpoints only."""

    thread_id: str | None = None
    checkpoint_ns: str = ""
    checkpoint_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


class ThreadCreate(Body):
    thread_id: str | None = Field(default=None, description="A UUID; a random one when omitted.")
    metadata: dict[str, Any] | None = None
    if_exists: IfExists | None = None
    graph_id: str | None = Field(
        default=None,
        description="The graph the thread runs (the SDK sends it as metadata.graph_id).",
    )
    name: str | None = Field(default=None, description="weft: the thread's name.")
    session_id: str | None = Field(default=None, description="weft: the session owning the thread.")
    supersteps: list[Any] | None = Field(default=None, description="Not supported (422).")
    ttl: Any = Field(default=None, description="Not supported (422).")


class ThreadPatch(Body):
    metadata: dict[str, Any] | None = None
    lifecycle: Lifecycle | None = Field(
        None,
        description="weft: move the lifecycle (active → any; paused → active; "
        "completed → active; others are final).",
    )
    name: str | None = Field(default=None, description="weft: rename the thread.")
    ttl: Any = Field(default=None, description="Not supported (422).")


class ThreadFilters(Body):
    metadata: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    status: ThreadStatus | None = None
    lifecycle: Lifecycle | None = Field(default=None, description="weft filter.")
    kind: ThreadKind | None = Field(default=None, description="weft filter.")
    graph_id: str | None = Field(default=None, description="weft filter.")
    session_id: str | None = Field(default=None, description="weft filter.")
    parent_thread_id: str | None = Field(default=None, description="weft filter.")


class ThreadSearch(ThreadFilters):
    ids: list[str] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: ThreadSortBy | None = None
    sort_order: SortOrder | None = None
    select: list[str] | None = None
    extract: dict[str, str] | None = Field(default=None, description="Not supported (422).")


class ThreadCount(ThreadFilters):
    ids: list[str] | None = None


class ThreadPrune(Body):
    thread_ids: list[str]
    strategy: PruneStrategy = "delete"


class StateAtCheckpoint(Body):
    checkpoint: CheckpointRef
    subgraphs: bool = False
    select: list[str] | None = None


class StateUpdate(Body):
    values: Any = None
    as_node: str | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = Field(default=None, description="Deprecated: use checkpoint.")


class HistorySearch(Body):
    limit: int = Field(default=10, ge=1, le=1000)
    before: str | CheckpointRef | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: CheckpointRef | None = None
    select: list[str] | None = None


class BranchCreate(Body):
    checkpoint_id: str | None = Field(default=None, description="Default: the head.")
    name: str | None = None
    metadata: dict[str, Any] | None = None


class SnapshotCreate(Body):
    name: str
    checkpoint_id: str | None = Field(default=None, description="Default: the head.")
    metadata: dict[str, Any] | None = None


class Rollback(Body):
    checkpoint_id: str


class PruneResult(BaseModel):
    pruned_count: int


class StateUpdateResult(BaseModel):
    checkpoint: dict[str, Any]


# --- Platform routes -------------------------------------------------------------------------


@router.post(
    "/threads", tags=THREADS, summary="Create a thread", responses={200: {"model": ThreadOut}}
)
async def create_thread(rt: Rt, body: ThreadCreate | None = None) -> JSON:
    body = body or ThreadCreate()
    _unsupported(
        "supersteps",
        body.supersteps,
        "create the thread, then apply each update with POST /threads/{thread_id}/state",
    )
    _unsupported("ttl", body.ttl, "weft does not expire threads; prune them instead")
    graph_id = body.graph_id
    if graph_id is None and body.metadata and isinstance(body.metadata.get("graph_id"), str):
        graph_id = body.metadata["graph_id"]
    thread = await rt.threads.create(
        thread_id=body.thread_id,
        graph_id=graph_id,
        metadata=body.metadata,
        if_exists=body.if_exists or "raise",
        session_id=body.session_id,
        name=body.name,
    )
    return JSON(thread.to_api())


@router.post(
    "/threads/search",
    tags=THREADS,
    summary="Search threads",
    responses={200: {"model": list[ThreadOut]}},  # type: ignore[valid-type]
)
async def search_threads(rt: Rt, body: ThreadSearch | None = None) -> JSON:
    body = body or ThreadSearch()
    _unsupported("extract", body.extract, "use select, then read the fields you need")
    filters = _filters(body)
    found = await rt.threads.search(
        **filters,
        ids=body.ids,
        limit=body.limit,
        offset=body.offset,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
        select=list(body.select or THREAD_FIELDS),
    )
    total = await rt.threads.count(**filters, ids=body.ids)
    return paged(found, offset=body.offset, limit=body.limit, total=total)


@router.post(
    "/threads/count", tags=THREADS, summary="Count threads", responses={200: {"model": int}}
)
async def count_threads(rt: Rt, body: ThreadCount | None = None) -> JSON:
    body = body or ThreadCount()
    return JSON(await rt.threads.count(**_filters(body), ids=body.ids))


@router.post(
    "/threads/prune",
    tags=THREADS,
    summary="Delete threads, or keep only their latest checkpoint",
    responses={200: {"model": PruneResult}},
)
async def prune_threads(rt: Rt, body: ThreadPrune) -> JSON:
    pruned = await rt.threads.prune(body.thread_ids, strategy=body.strategy)
    return JSON({"pruned_count": pruned})


@router.get(
    "/threads/{thread_id}",
    tags=THREADS,
    summary="Get a thread",
    responses={200: {"model": ThreadOut}},
)
async def get_thread(rt: Rt, thread_id: ThreadId, include: str | None = None) -> JSON:
    if include:
        fields = [f.strip() for f in include.split(",") if f.strip()]
        raise UnprocessableEntityError(
            f"include={','.join(fields)} is not supported: weft threads have no TTL; omit include"
        )
    return JSON((await rt.threads.get(thread_id)).to_api())


@router.patch(
    "/threads/{thread_id}",
    tags=THREADS,
    summary="Update a thread: merge metadata; weft: lifecycle, name",
    responses={200: {"model": ThreadOut}, 204: {"description": "Prefer: return=minimal"}},
)
async def patch_thread(
    rt: Rt,
    thread_id: ThreadId,
    body: ThreadPatch,
    prefer: Annotated[str | None, Header()] = None,
) -> Response:
    _unsupported("ttl", body.ttl, "weft does not expire threads; prune them instead")
    thread = await rt.threads.update(
        thread_id, metadata=body.metadata, lifecycle=body.lifecycle, name=body.name
    )
    if prefer == "return=minimal":
        return Response(status_code=204)
    return JSON(thread.to_api())


@router.delete(
    "/threads/{thread_id}",
    tags=THREADS,
    summary="Delete a thread with its checkpoints, runs and crons",
    status_code=204,
    response_class=Response,
)
async def delete_thread(rt: Rt, thread_id: ThreadId) -> Response:
    await rt.threads.delete(thread_id)
    return Response(status_code=204)


@router.post(
    "/threads/{thread_id}/copy",
    tags=THREADS,
    summary="Copy a thread with its whole history (weft: kind 'fork')",
    responses={200: {"model": ThreadOut}},
)
async def copy_thread(rt: Rt, thread_id: ThreadId) -> JSON:
    return JSON((await rt.threads.copy(thread_id)).to_api())


@router.get(
    "/threads/{thread_id}/state",
    tags=THREADS,
    summary="The thread's state at its head",
    responses={200: {"model": ThreadState}},
)
async def get_state(
    rt: Rt,
    thread_id: ThreadId,
    subgraphs: bool = False,
    select: Annotated[list[str] | None, Query()] = None,
) -> JSON:
    state = await rt.threads.state(thread_id, subgraphs=subgraphs)
    return JSON(_state_out(state, select))


@router.post(
    "/threads/{thread_id}/state/checkpoint",
    tags=THREADS,
    summary="The thread's state at a checkpoint",
    responses={200: {"model": ThreadState}},
)
async def get_state_at_checkpoint_post(
    rt: Rt, thread_id: ThreadId, body: StateAtCheckpoint
) -> JSON:
    checkpoint_id = _checkpoint_id(body.checkpoint, thread_id, "checkpoint")
    state = await rt.threads.state(thread_id, checkpoint_id=checkpoint_id, subgraphs=body.subgraphs)
    return JSON(_state_out(state, body.select))


@router.get(
    "/threads/{thread_id}/state/{checkpoint_id}",
    tags=THREADS,
    summary="The thread's state at a checkpoint",
    responses={200: {"model": ThreadState}},
)
async def get_state_at_checkpoint(
    rt: Rt,
    thread_id: ThreadId,
    checkpoint_id: CheckpointId,
    subgraphs: bool = False,
    select: Annotated[list[str] | None, Query()] = None,
) -> JSON:
    state = await rt.threads.state(thread_id, checkpoint_id=checkpoint_id, subgraphs=subgraphs)
    return JSON(_state_out(state, select))


@router.post(
    "/threads/{thread_id}/state",
    tags=THREADS,
    summary="Write a new head state (409 while a run is in flight)",
    responses={200: {"model": StateUpdateResult}},
)
async def update_state(rt: Rt, thread_id: ThreadId, body: StateUpdate) -> JSON:
    checkpoint_id = body.checkpoint_id
    if body.checkpoint is not None:
        from_ref = _checkpoint_id(body.checkpoint, thread_id, "checkpoint")
        if checkpoint_id and from_ref and from_ref != checkpoint_id:
            raise UnprocessableEntityError(
                f"checkpoint_id {checkpoint_id!r} and checkpoint.checkpoint_id {from_ref!r} "
                "differ; send only checkpoint"
            )
        checkpoint_id = from_ref or checkpoint_id
    result = await rt.threads.update_state(
        thread_id, body.values, as_node=body.as_node, checkpoint_id=checkpoint_id
    )
    return JSON(result)


@router.get(
    "/threads/{thread_id}/history",
    tags=THREADS,
    summary="The thread's checkpoints, newest first",
    responses={200: {"model": list[ThreadState]}},
)
async def get_history(
    rt: Rt,
    thread_id: ThreadId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 10,
    before: str | None = None,
) -> JSON:
    states = await rt.threads.history(thread_id, limit=limit, before=before)
    return JSON([s.to_api() for s in states])


@router.post(
    "/threads/{thread_id}/history",
    tags=THREADS,
    summary="The thread's checkpoints, newest first, filtered",
    responses={200: {"model": list[ThreadState]}},
)
async def search_history(rt: Rt, thread_id: ThreadId, body: HistorySearch | None = None) -> JSON:
    body = body or HistorySearch()
    before = body.before
    if isinstance(before, CheckpointRef):
        before = _checkpoint_id(before, thread_id, "before")
    checkpoint_id = (
        _checkpoint_id(body.checkpoint, thread_id, "checkpoint") if body.checkpoint else None
    )
    states = await rt.threads.history(
        thread_id,
        limit=body.limit,
        before=before,
        metadata=body.metadata,
        checkpoint_id=checkpoint_id,
    )
    return JSON([_state_out(s, body.select) for s in states])


# --- weft's thread operations ----------------------------------------------------------------


@router.post(
    "/threads/{thread_id}/branch",
    tags=WEFT,
    summary="weft: a new thread of kind 'branch' from one checkpoint",
    responses={200: {"model": ThreadOut}},
)
async def branch_thread(rt: Rt, thread_id: ThreadId, body: BranchCreate | None = None) -> JSON:
    body = body or BranchCreate()
    thread = await rt.threads.branch(
        thread_id, checkpoint_id=body.checkpoint_id, name=body.name, metadata=body.metadata
    )
    return JSON(thread.to_api())


@router.post(
    "/threads/{thread_id}/snapshots",
    tags=WEFT,
    summary="weft: a named, read-only thread frozen at one checkpoint",
    responses={200: {"model": ThreadOut}},
)
async def create_snapshot(rt: Rt, thread_id: ThreadId, body: SnapshotCreate) -> JSON:
    thread = await rt.threads.snapshot(
        thread_id, body.name, checkpoint_id=body.checkpoint_id, metadata=body.metadata
    )
    return JSON(thread.to_api())


@router.get(
    "/threads/{thread_id}/snapshots",
    tags=WEFT,
    summary="weft: the snapshots taken of a thread, newest first",
    responses={200: {"model": list[ThreadOut]}},  # type: ignore[valid-type]
)
async def list_snapshots(
    rt: Rt,
    thread_id: ThreadId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JSON:
    found = await rt.threads.snapshots(thread_id, limit=limit, offset=offset)
    total = await rt.threads.count(parent_thread_id=thread_id, kind="snapshot")
    return paged((t.to_api() for t in found), offset=offset, limit=limit, total=total)


@router.post(
    "/threads/{thread_id}/rollback",
    tags=WEFT,
    summary="weft: make a past checkpoint the head again (deletes nothing)",
    responses={200: {"model": ThreadOut}},
)
async def rollback_thread(rt: Rt, thread_id: ThreadId, body: Rollback) -> JSON:
    return JSON((await rt.threads.rollback(thread_id, body.checkpoint_id)).to_api())


# --- helpers ---------------------------------------------------------------------------------


def _unsupported(field: str, value: Any, hint: str) -> None:
    if value is not None:
        raise UnprocessableEntityError(f"{field} is not supported by weft: {hint}")


def _filters(body: ThreadFilters) -> dict[str, Any]:
    return {
        "metadata": body.metadata,
        "values": body.values,
        "status": body.status,
        "lifecycle": body.lifecycle,
        "kind": body.kind,
        "graph_id": body.graph_id,
        "session_id": body.session_id,
        "parent_thread_id": body.parent_thread_id,
    }


def _checkpoint_id(ref: CheckpointRef, thread_id: str, what: str) -> str | None:
    """The checkpoint ID ``ref`` names in the root graph of ``thread_id``."""
    if ref.checkpoint_ns:
        raise UnprocessableEntityError(
            f"{what}.checkpoint_ns {ref.checkpoint_ns!r} is not supported: weft reads "
            "root checkpoints only; omit checkpoint_ns or send ''"
        )
    if ref.thread_id is not None and ref.thread_id != thread_id:
        raise UnprocessableEntityError(
            f"{what}.thread_id {ref.thread_id!r} is not the thread in the path "
            f"({thread_id!r}); omit it or send the same ID"
        )
    return ref.checkpoint_id or None


def _state_out(state: ThreadState, select: Sequence[str] | None) -> dict[str, Any]:
    """The state in the Platform's shape; ``select`` keeps only those fields, where
    ``values.<key>`` keeps one key of ``values``."""
    data = state.to_api()
    if not select:
        return data
    keys: list[str] = []
    value_keys: list[str] = []
    bad: list[str] = []
    for item in select:
        if item.startswith("values.") and len(item) > len("values."):
            value_keys.append(item.removeprefix("values."))
        elif item in STATE_FIELDS:
            keys.append(item)
        else:
            bad.append(item)
    if bad:
        raise UnprocessableEntityError(
            f"cannot select {', '.join(map(repr, bad))}; fields are "
            f"{', '.join(STATE_FIELDS)}, or values.<key>"
        )
    out = {k: data[k] for k in keys}
    if value_keys and "values" not in out:
        values = data["values"]
        out["values"] = (
            {k: values[k] for k in value_keys if k in values}
            if isinstance(values, dict)
            else values
        )
    return out


__all__ = ["router"]
