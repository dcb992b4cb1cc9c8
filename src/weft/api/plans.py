"""A session's plan over HTTP: set it, read it (with its levels, critical path and Mermaid
drawing), run it, cancel it, report on it and follow its events (OpenAPI tag ``weft``).

Each route parses, calls one :attr:`weft.runtime.Runtime.plans` method and formats. An
invalid plan is a 422 whose detail lists every problem, one per line after ``invalid plan:``.
``POST /sessions`` with a ``plan`` (in :mod:`weft.api.sessions`) goes through
:func:`create_with_plan`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi import Body as BodyParam
from pydantic import BaseModel
from starlette.responses import Response

from weft.api.route import Route
from weft.api.wire import JSON, Body, Detail, Rt, SessionId, sse
from weft.errors import UnprocessableEntityError
from weft.plan_view import PlanReport, critical_path, levels, mermaid
from weft.plans import PlanSpec
from weft.runtime import Runtime
from weft.schema import Interaction, Plan, PlanStatus, RunEvent
from weft.validation import storable

router = APIRouter(prefix="/sessions", tags=["weft"], route_class=Route)

# --- documented responses ----------------------------------------------------------------


class PlanView(BaseModel):
    """How a plan's threads depend on each other."""

    levels: list[list[str]]
    """Threads by level of the topological order (a level: the longest path from a root)."""
    critical_path: list[str]
    """The longest chain of dependent threads."""
    mermaid: str
    """A Mermaid ``flowchart TD`` of the threads and their edges."""


class PlanOut(BaseModel):
    """A session's plan: its normalised spec, its status and a view of its dependencies."""

    session_id: str
    status: PlanStatus
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    view: PlanView


_ERRORS: dict[int, str] = {
    404: "The session does not exist, or has no plan",
    409: "The plan's status does not allow it (the detail names the status)",
    422: "Invalid input; for a plan, the detail lists every problem with its location",
}


def _responses(
    model: Any, *codes: int, status: int = 200, description: str = "Success"
) -> dict[int | str, dict[str, Any]]:
    out: dict[int | str, dict[str, Any]] = {status: {"model": model, "description": description}}
    for code in codes:
        out[code] = {"model": Detail, "description": _ERRORS[code]}
    return out


_PLAN_EXAMPLE = {
    "name": "research report",
    "policy": "best_effort",
    "max_parallel": 4,
    "retries": {"max": 1, "backoff": 1.0},
    "threads": {
        "collect": {"graph_id": "collector", "input": {"topic": "solar"}},
        "analyze": {
            "graph_id": "analyst",
            "inputs_from": {"collect": {"findings": "findings"}},
            "when": "length(collect.findings) > `0`",
        },
    },
}


class NoOptions(Body):
    """No fields: an empty body or ``{}``."""


# --- formatting --------------------------------------------------------------------------


def plan_json(plan: Plan) -> dict[str, Any]:
    """A plan record as the API shows it: without its lease, with its view."""
    spec = PlanSpec.model_validate(plan.spec)
    path, _ = critical_path(spec)
    view = PlanView(levels=levels(spec), critical_path=path, mermaid=mermaid(spec))
    return PlanOut(
        session_id=plan.session_id,
        status=plan.status,
        spec=plan.spec,
        created_at=plan.created_at,
        updated_at=plan.updated_at,
        started_at=plan.started_at,
        ended_at=plan.ended_at,
        view=view,
    ).model_dump(mode="json")


async def create_with_plan(fields: Mapping[str, Any], rt: Runtime) -> JSON:
    """``POST /sessions`` with ``plan``: a new session from the plan's settings, holding it.
    ``fields`` are the body's fields; only ``plan`` may be set."""
    others = sorted(k for k, v in fields.items() if k != "plan" and v is not None)
    if others:
        raise UnprocessableEntityError(
            f"{', '.join(others)} cannot be given with plan: "
            "give name, user_id and metadata inside the plan"
        )
    session, plan = await rt.plans.create(fields["plan"])
    return JSON({**session.to_api(), "plan": plan_json(plan)})


def _event(entry: Interaction) -> RunEvent:
    content = entry.content if isinstance(entry.content, dict) else {"content": entry.content}
    name = str(content.get("event", entry.kind))
    data = {
        "seq": entry.seq,
        "event": name,
        **content,
        "thread_id": entry.thread_id,
        "run_id": entry.run_id,
        "created_at": entry.created_at.isoformat(),
    }
    return RunEvent(seq=entry.seq, event=name, data=data)


async def _events(entries: AsyncIterator[Interaction]) -> AsyncIterator[RunEvent]:
    try:
        async for entry in entries:
            yield _event(entry)
    finally:
        close = getattr(entries, "aclose", None)
        if close is not None:
            await close()


def _after(last_event_id: str | None, after: int) -> int:
    if last_event_id is None or not last_event_id.strip():
        return after
    try:
        value = int(last_event_id.strip())
    except ValueError:
        raise UnprocessableEntityError(
            f"Last-Event-ID must be an event's seq (an integer), not {last_event_id!r}"
        ) from None
    if value < 0:
        raise UnprocessableEntityError(f"Last-Event-ID must be 0 or more, not {value}")
    return value


# --- routes ------------------------------------------------------------------------------


@router.put(
    "/{session_id}/plan",
    summary="Set or replace the session's plan (refused while it runs)",
    responses=_responses(PlanOut, 404, 409, 422),
)
async def put_plan(
    session_id: SessionId,
    rt: Rt,
    plan: Annotated[
        dict[str, Any],
        BodyParam(
            description="The plan: session settings and named threads with their edges "
            "(after, inputs_from, when). Every problem is reported at once (422).",
            examples=[_PLAN_EXAMPLE],
        ),
    ],
) -> JSON:
    storable(plan, "body")
    return JSON(plan_json(await rt.plans.put(session_id, plan)))


@router.get(
    "/{session_id}/plan",
    summary="The session's plan, with its levels, critical path and Mermaid drawing",
    responses=_responses(PlanOut, 404, 422),
)
async def get_plan(session_id: SessionId, rt: Rt) -> JSON:
    return JSON(plan_json(await rt.plans.get(session_id)))


@router.get(
    "/{session_id}/plan/status",
    summary="Each plan thread's outcome, attempts, duration, output summary and error",
    responses=_responses(PlanReport, 404, 422),
)
async def plan_status(session_id: SessionId, rt: Rt) -> JSON:
    return JSON((await rt.plans.status(session_id)).to_api())


@router.post(
    "/{session_id}/run",
    summary="Start the session's plan; returns at once with its report",
    status_code=202,
    responses=_responses(PlanReport, 404, 409, 422, status=202, description="Started"),
)
async def run_plan(
    session_id: SessionId,
    rt: Rt,
    body: Annotated[NoOptions | None, BodyParam(description="Empty, or {}")] = None,
) -> JSON:
    plan = await rt.plans.run(session_id)
    return JSON((await rt.plans.status(plan.session_id)).to_api(), status_code=202)


@router.post(
    "/{session_id}/cancel",
    summary="Cancel the session's plan: its running threads' runs stop, the rest is cancelled",
    responses=_responses(PlanReport, 404, 409, 422),
)
async def cancel_plan(
    session_id: SessionId,
    rt: Rt,
    body: Annotated[NoOptions | None, BodyParam(description="Empty, or {}")] = None,
) -> JSON:
    return JSON((await rt.plans.cancel(session_id)).to_api())


@router.get(
    "/{session_id}/stream",
    summary="The plan's events as server-sent events (Last-Event-ID resumes after that seq)",
    response_class=Response,
    responses={
        200: {
            "description": "Events `thread_started`, `thread_succeeded`, `thread_failed`, "
            "`thread_timed_out`, `thread_retrying`, `thread_skipped`, `thread_cancelled`, "
            "`thread_interrupted`, `plan_started`, `plan_completed`, "
            "`plan_failed`, `plan_cancelled`; `id` is the log entry's seq. The stream ends "
            "after the plan's final event.",
            "content": {"text/event-stream": {}},
        },
        **{code: {"model": Detail, "description": _ERRORS[code]} for code in (404, 422)},
    },
)
async def stream_plan(
    session_id: SessionId,
    rt: Rt,
    after: Annotated[
        int, Query(ge=0, description="Events with a greater seq (Last-Event-ID wins)")
    ] = 0,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Response:
    start = _after(last_event_id, after)
    plan = await rt.plans.get(session_id)  # a 404 before the stream starts
    return sse(_events(rt.plans.events(plan.session_id, after=start)))


__all__ = ["PlanOut", "PlanView", "create_with_plan", "plan_json", "router"]
