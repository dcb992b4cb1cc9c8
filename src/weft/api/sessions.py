"""``/sessions``: weft's own resource, outside the Platform's paths (OpenAPI tag ``weft``).

A session is a user's work across threads (design §1): its record, its threads (a query on
their ``session_id``; a thread created here is an ordinary Platform thread), its append-only
interaction log and its shared state (compare-and-set on ``state_version``). Each route
parses, calls one :attr:`weft.runtime.Runtime.sessions` method and formats.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi import Body as BodyParam
from pydantic import BaseModel, Field
from starlette.responses import Response

from weft.api.plans import PlanOut, create_with_plan
from weft.api.route import Route
from weft.api.threads import ThreadOut
from weft.api.wire import JSON, Body, Detail, Rt, SessionId, paged
from weft.schema import Interaction, SessionStatus
from weft.schema import Session as SessionRecord
from weft.validation import storable

router = APIRouter(prefix="/sessions", tags=["weft"], route_class=Route)

# --- documented responses ----------------------------------------------------------------


class Session(BaseModel):
    """A user's work across threads."""

    session_id: str
    user_id: str | None = None
    name: str | None = None
    status: SessionStatus = "active"
    metadata: dict[str, Any] = Field(default_factory=dict)
    state: dict[str, Any] = Field(default_factory=dict)
    """Shared by the session's threads (graphs read ``configurable.session_state``)."""
    state_version: int = 0
    """Bumped by every state change: the ``expected_version`` of ``PUT .../state``."""
    created_at: datetime
    updated_at: datetime


class SessionCreated(Session):
    """A new session; created from a plan, with the plan."""

    plan: PlanOut | None = None


class SessionState(BaseModel):
    """A session's shared state and the version a compare-and-set expects."""

    session_id: str
    state: dict[str, Any]
    state_version: int
    updated_at: datetime


_ERRORS: dict[int, str] = {
    404: "The session (or the thread, graph it names) does not exist",
    409: "Conflicts with the stored records",
    422: "Invalid input; the detail names the field",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented errors of a route."""
    return {code: {"model": Detail, "description": _ERRORS[code]} for code in codes}


def _ok(model: Any, *codes: int, description: str = "Success") -> dict[int | str, dict[str, Any]]:
    """``responses=`` of a route: its success model and the errors it may answer."""
    return {200: {"model": model, "description": description}, **_errors(*codes)}


# --- request bodies ----------------------------------------------------------------------

UserKind = Literal["request", "response", "feedback", "note"]


class SessionCreate(Body):
    session_id: str | None = Field(None, description="A UUID; a new one when omitted")
    user_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] | None = None
    state: dict[str, Any] | None = Field(None, description="The initial shared state")
    plan: dict[str, Any] | None = Field(
        None,
        description="A session plan (see PUT /sessions/{session_id}/plan): the session is "
        "created from it (name, user_id and metadata inside the plan; no other field)",
    )


class SessionUpdate(Body):
    user_id: str | None = None
    name: str | None = None
    status: SessionStatus | None = None
    metadata: dict[str, Any] | None = Field(None, description="Merged key by key")


class SessionFilters(Body):
    user_id: str | None = None
    status: SessionStatus | None = None
    metadata: dict[str, Any] | None = Field(None, description="Matches by containment")
    created_after: datetime | None = Field(None, description="Inclusive, with a timezone")
    created_before: datetime | None = Field(None, description="Inclusive, with a timezone")
    updated_after: datetime | None = Field(None, description="Inclusive, with a timezone")
    updated_before: datetime | None = Field(None, description="Inclusive, with a timezone")


class SessionSearch(SessionFilters):
    limit: int = 10
    offset: int = 0


class SessionThreadCreate(Body):
    name: str = Field(description="Unique inside the session")
    graph_id: str | None = Field(None, description="The workflow the thread runs")
    metadata: dict[str, Any] | None = None
    thread_id: str | None = Field(None, description="A UUID; a new one when omitted")


class InteractionCreate(Body):
    kind: UserKind
    content: Any = Field(description="Any JSON value")
    metadata: dict[str, Any] | None = None
    thread_id: str | None = None
    run_id: str | None = None


class StateReplace(Body):
    state: dict[str, Any]
    expected_version: int = Field(
        description="The state_version last read; 409 when the state changed since"
    )


class StateMerge(Body):
    state: dict[str, Any] = Field(description="Top-level keys replace the current ones")


_BATCH_EXAMPLE = [
    {"op": "create", "user_id": "u1", "name": "trip", "metadata": {}, "state": {}},
    {"op": "update", "session_id": "<uuid>", "status": "completed"},
    {"op": "delete", "session_id": "<uuid>", "cascade": False},
]


# --- records -----------------------------------------------------------------------------


@router.post(
    "", summary="Create a session (from a plan, with plan)", responses=_ok(SessionCreated, 409, 422)
)
async def create_session(body: SessionCreate, rt: Rt) -> JSON:
    if body.plan is not None:
        return await create_with_plan(body.model_dump(exclude_unset=True), rt)
    session = await rt.sessions.create(**body.model_dump(exclude_unset=True, exclude={"plan"}))
    return JSON(session.to_api())


@router.get("/{session_id}", summary="Get a session", responses=_ok(Session, 404, 422))
async def get_session(session_id: SessionId, rt: Rt) -> JSON:
    return JSON((await rt.sessions.get(session_id)).to_api())


@router.patch(
    "/{session_id}",
    summary="Change a session's user, name, status or metadata (merged)",
    responses=_ok(Session, 404, 422),
)
async def update_session(session_id: SessionId, body: SessionUpdate, rt: Rt) -> JSON:
    session = await rt.sessions.update(session_id, **body.model_dump(exclude_unset=True))
    return JSON(session.to_api())


@router.delete(
    "/{session_id}",
    summary="Delete a session and its log (with cascade=true, its threads too)",
    status_code=204,
    response_class=Response,
    responses=_errors(404, 409, 422),
)
async def delete_session(
    session_id: SessionId,
    rt: Rt,
    cascade: Annotated[
        bool, Query(description="Delete the session's threads too; else refused while it has any")
    ] = False,
) -> Response:
    await rt.sessions.delete(session_id, cascade=cascade)
    return Response(status_code=204)


@router.post(
    "/search",
    summary="Sessions matching every filter, newest first",
    responses=_ok(
        list[Session], 422, description="X-Pagination-Total and X-Pagination-Next headers"
    ),
)
async def search_sessions(body: SessionSearch, rt: Rt) -> JSON:
    filters = body.model_dump(exclude={"limit", "offset"})
    found = await rt.sessions.search(**filters, limit=body.limit, offset=body.offset)
    total = await rt.sessions.count(**filters)
    return paged((s.to_api() for s in found), offset=body.offset, limit=body.limit, total=total)


@router.post("/count", summary="How many sessions match every filter", responses=_ok(int, 422))
async def count_sessions(body: SessionFilters, rt: Rt) -> JSON:
    return JSON(await rt.sessions.count(**body.model_dump()))


@router.post(
    "/batch",
    summary="Create, update and delete sessions in one transaction: all or nothing",
    responses=_ok(
        list[Session | None],
        404,
        409,
        422,
        description="Per operation: the session, or null for a delete",
    ),
)
async def batch_sessions(
    rt: Rt,
    operations: Annotated[
        list[Any],
        BodyParam(
            description="Operations in order, each {op: create|update|delete, ...}. The first "
            "invalid one is named `batch item N` and nothing is written.",
            examples=[_BATCH_EXAMPLE],
        ),
    ],
) -> JSON:
    storable(operations, "body")
    done = await rt.sessions.batch(operations)
    return JSON([None if s is None else s.to_api() for s in done])


# --- threads -----------------------------------------------------------------------------


@router.get(
    "/{session_id}/threads",
    summary="The session's threads, oldest first",
    responses=_ok(
        list[ThreadOut],  # type: ignore[valid-type]
        404,
        422,
        description="X-Pagination-Total and X-Pagination-Next headers",
    ),
)
async def session_threads(
    session_id: SessionId,
    rt: Rt,
    limit: Annotated[int, Query(description="At most this many")] = 100,
    offset: Annotated[int, Query(description="Skip this many")] = 0,
) -> JSON:
    found = await rt.sessions.threads_of(session_id, limit=limit, offset=offset)
    total = await rt.threads.count(session_id=session_id)
    return paged((t.to_api() for t in found), offset=offset, limit=limit, total=total)


@router.post(
    "/{session_id}/threads",
    summary="Create a thread inside the session (one transaction)",
    responses=_ok(ThreadOut, 404, 409, 422),
)
async def create_session_thread(session_id: SessionId, body: SessionThreadCreate, rt: Rt) -> JSON:
    thread = await rt.sessions.add_thread(
        session_id,
        body.name,
        body.graph_id,
        metadata=body.metadata,
        thread_id=body.thread_id,
    )
    return JSON(thread.to_api())


# --- interactions ------------------------------------------------------------------------


@router.get(
    "/{session_id}/interactions",
    summary="The interaction log in order; page on with after=<last seq>",
    responses=_ok(
        list[Interaction], 404, 422, description="X-Pagination-Next: the `after` of the next page"
    ),
)
async def list_interactions(
    session_id: SessionId,
    rt: Rt,
    after: Annotated[int, Query(description="Entries with a greater seq")] = 0,
    limit: Annotated[int, Query(description="At most this many")] = 100,
    kinds: Annotated[list[str] | None, Query(description="Only these kinds")] = None,
) -> JSON:
    found = await rt.sessions.interactions(session_id, after=after, limit=limit, kinds=kinds)
    headers = {"X-Pagination-Next": str(found[-1].seq)} if found and len(found) == limit else {}
    return JSON([i.to_api() for i in found], headers=headers)


@router.post(
    "/{session_id}/interactions",
    summary="Append to the interaction log (request, response, feedback, note)",
    responses=_ok(Interaction, 404, 422),
)
async def record_interaction(session_id: SessionId, body: InteractionCreate, rt: Rt) -> JSON:
    entry = await rt.sessions.record(
        session_id,
        body.kind,
        body.content,
        metadata=body.metadata,
        thread_id=body.thread_id,
        run_id=body.run_id,
    )
    return JSON(entry.to_api())


# --- shared state ------------------------------------------------------------------------


def _state(session: SessionRecord) -> dict[str, Any]:
    return SessionState.model_validate(session, from_attributes=True).model_dump(mode="json")


@router.get(
    "/{session_id}/state",
    summary="The session's shared state",
    responses=_ok(SessionState, 404, 422),
)
async def get_state(session_id: SessionId, rt: Rt) -> JSON:
    return JSON(_state(await rt.sessions.get(session_id)))


@router.put(
    "/{session_id}/state",
    summary="Replace the shared state if its version is still expected_version (else 409)",
    responses=_ok(SessionState, 404, 409, 422),
)
async def replace_state(session_id: SessionId, body: StateReplace, rt: Rt) -> JSON:
    session = await rt.sessions.set_state(
        session_id, body.state, expected_version=body.expected_version
    )
    return JSON(_state(session))


@router.patch(
    "/{session_id}/state",
    summary="Merge keys into the shared state (retried on a concurrent write, never lost)",
    responses=_ok(SessionState, 404, 409, 422),
)
async def merge_state(session_id: SessionId, body: StateMerge, rt: Rt) -> JSON:
    return JSON(_state(await rt.sessions.update_state(session_id, body.state)))


__all__ = ["Session", "SessionCreated", "SessionState", "router"]
