"""Crons over HTTP: ``/runs/crons`` (stateless: each run on a fresh thread) and
``/threads/{id}/runs/crons``; update, delete, get, search and count."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import Field
from starlette.responses import Response

from weft.api.route import Route
from weft.api.wire import JSON, Body, CronId, Rt, ThreadId, paged
from weft.errors import BadRequestError
from weft.schema import CRON_FIELDS, Cron

router = APIRouter(tags=["crons"], route_class=Route)


class _RunOptions(Body):
    """The options of each run a cron creates."""

    input: Any = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    webhook: str | None = None
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    stream_mode: str | list[str] | None = None
    stream_subgraphs: bool | None = None
    stream_resumable: bool | None = None
    durability: str | None = None
    checkpoint_during: bool | None = None


class CronCreate(_RunOptions):
    """``POST /runs/crons`` and ``POST /threads/{id}/runs/crons``."""

    assistant_id: str = Field(description="An assistant ID or a graph id.")
    schedule: str = Field(description="A cron expression, e.g. ``0 9 * * 1-5``.")
    timezone: str | None = Field(default=None, description="An IANA zone; none means UTC.")
    end_time: str | None = Field(default=None, description="ISO 8601; no run after it.")
    enabled: bool | None = None
    on_run_completed: str | None = Field(
        default=None, description="Crons without a thread: ``delete`` (default) or ``keep``."
    )
    multitask_strategy: str | None = None

    def options(self) -> dict[str, Any]:
        return {
            name: value
            for name in self.model_fields_set
            if name not in ("assistant_id", "schedule")
            and (value := getattr(self, name)) is not None
        }


class CronPatch(_RunOptions):
    """``PATCH /runs/crons/{id}``: the fields to change (``end_time: null`` clears it)."""

    schedule: str | None = None
    timezone: str | None = None
    end_time: str | None = None
    enabled: bool | None = None
    on_run_completed: str | None = None
    multitask_strategy: str | None = None


class CronSearch(Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None
    limit: int = 10
    offset: int = 0
    sort_by: str | None = Field(default=None, description="e.g. ``created_at``, ``next_run_date``.")
    sort_order: str | None = Field(default=None, description="``asc`` or ``desc``.")
    select: list[str] | None = Field(
        default=None, description=f"Only these fields: {', '.join(CRON_FIELDS)}."
    )


class CronCount(Body):
    assistant_id: str | None = None
    thread_id: str | None = None
    metadata: dict[str, Any] | None = None


_CRON: dict[int | str, dict[str, Any]] = {200: {"model": Cron}}


@router.post(
    "/runs/crons", summary="Create a cron whose runs each get a new thread", responses=_CRON
)
async def create_cron(body: CronCreate, rt: Rt) -> JSON:
    cron = await rt.crons.create(body.assistant_id, body.schedule, **body.options())
    return JSON(cron.to_api())


@router.post(
    "/threads/{thread_id}/runs/crons", summary="Create a cron running on a thread", responses=_CRON
)
async def create_thread_cron(thread_id: ThreadId, body: CronCreate, rt: Rt) -> JSON:
    cron = await rt.crons.create(
        body.assistant_id, body.schedule, thread_id=thread_id, **body.options()
    )
    return JSON(cron.to_api())


@router.get("/runs/crons/{cron_id}", summary="One cron", responses=_CRON)
async def get_cron(cron_id: CronId, rt: Rt) -> JSON:
    return JSON((await rt.crons.get(cron_id)).to_api())


@router.patch("/runs/crons/{cron_id}", summary="Change a cron", responses=_CRON)
async def update_cron(cron_id: CronId, body: CronPatch, rt: Rt) -> JSON:
    given = body.model_fields_set
    if not given:
        raise BadRequestError(
            "the body names nothing to change; give schedule, end_time, timezone, enabled, "
            "on_run_completed or run options"
        )
    changes = {name: getattr(body, name) for name in given}
    cron = await rt.crons.update(cron_id, **changes)
    return JSON(cron.to_api())


@router.delete(
    "/runs/crons/{cron_id}", summary="Delete a cron", status_code=204, response_class=Response
)
async def delete_cron(cron_id: CronId, rt: Rt) -> Response:
    await rt.crons.delete(cron_id)
    return Response(status_code=204)


@router.post(
    "/runs/crons/search", summary="Crons matching filters", responses={200: {"model": list[Cron]}}
)
async def search_crons(body: CronSearch, rt: Rt) -> JSON:
    filters: dict[str, Any] = {
        "assistant_id": body.assistant_id,
        "thread_id": body.thread_id,
        "enabled": body.enabled,
        "metadata": body.metadata,
        "limit": body.limit,
        "offset": body.offset,
        "sort_by": body.sort_by,
        "sort_order": body.sort_order,
    }
    rows: list[dict[str, Any]]
    if body.select:
        rows = await rt.crons.search(**filters, select=body.select)
    else:
        rows = [c.to_api() for c in await rt.crons.search(**filters)]
    return paged(rows, offset=body.offset, limit=body.limit)


@router.post(
    "/runs/crons/count", summary="How many crons match filters", responses={200: {"model": int}}
)
async def count_crons(body: CronCount, rt: Rt) -> JSON:
    count = await rt.crons.count(
        assistant_id=body.assistant_id, thread_id=body.thread_id, metadata=body.metadata
    )
    return JSON(count)


__all__ = ["CronCount", "CronCreate", "CronPatch", "CronSearch", "router"]
