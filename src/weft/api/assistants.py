"""``/assistants``: create, read, update, delete, search and count assistants, their saved
versions, and the graph behind one (drawing, JSON schemas, subgraphs), as the LangGraph
Platform serves them. ``assistant_id`` in a path may also be a graph id (its system
assistant)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.responses import Response

from weft.api.route import Route
from weft.api.wire import JSON, Body, Rt, paged
from weft.errors import UnprocessableEntityError
from weft.schema import ASSISTANT_FIELDS

router = APIRouter(tags=["assistants"], route_class=Route)


# --- bodies ---------------------------------------------------------------------------------


class AssistantCreate(Body):
    graph_id: str
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    assistant_id: str | None = None
    if_exists: Literal["raise", "do_nothing"] | None = None
    name: str | None = None
    description: str | None = None


class AssistantUpdate(Body):
    graph_id: str | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    name: str | None = None
    description: str | None = None


class AssistantCount(Body):
    metadata: dict[str, Any] | None = None
    graph_id: str | None = None
    name: str | None = None


class AssistantSearch(AssistantCount):
    limit: int = 10
    offset: int = 0
    sort_by: str | None = None
    sort_order: str | None = None
    select: list[str] | None = None


class VersionSearch(Body):
    metadata: dict[str, Any] | None = None
    limit: int = 10
    offset: int = 0


class VersionChange(Body):
    version: int


# --- responses (documentation only) ---------------------------------------------------------


class AssistantOut(BaseModel):
    assistant_id: str
    graph_id: str
    name: str
    description: str | None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_at: str
    updated_at: str


class AssistantVersionOut(BaseModel):
    assistant_id: str
    graph_id: str
    name: str
    description: str | None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    created_at: str


class GraphSchemaOut(BaseModel):
    graph_id: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    state_schema: dict[str, Any] | None
    config_schema: dict[str, Any] | None
    context_schema: dict[str, Any] | None


class SubgraphSchemaOut(BaseModel):
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    state_schema: dict[str, Any] | None
    config_schema: dict[str, Any] | None
    context_schema: dict[str, Any] | None


class DrawableGraphOut(BaseModel):
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]


ONE: dict[int | str, dict[str, Any]] = {200: {"model": AssistantOut}}
MANY: dict[int | str, dict[str, Any]] = {200: {"model": list[AssistantOut]}}


# --- routes ---------------------------------------------------------------------------------


@router.post("/assistants", summary="Create an assistant", responses=ONE)
async def create_assistant(body: AssistantCreate, rt: Rt) -> JSON:
    assistant = await rt.assistants.create(
        body.graph_id,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
        name=body.name,
        description=body.description,
        assistant_id=body.assistant_id,
        if_exists=body.if_exists or "raise",
    )
    return JSON(assistant.to_api())


@router.post("/assistants/search", summary="Search assistants", responses=MANY)
async def search_assistants(rt: Rt, body: AssistantSearch | None = None) -> JSON:
    body = body or AssistantSearch()
    rows = await rt.assistants.search(
        graph_id=body.graph_id,
        name=body.name,
        metadata=body.metadata,
        limit=body.limit,
        offset=body.offset,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
        select=body.select or ASSISTANT_FIELDS,
    )
    if len(rows) < body.limit and (rows or body.offset == 0):
        total = body.offset + len(rows)  # a short page: nothing follows it
    else:
        total = await rt.assistants.count(
            graph_id=body.graph_id, name=body.name, metadata=body.metadata
        )
    return paged(rows, offset=body.offset, limit=body.limit, total=total)


@router.post("/assistants/count", summary="Count assistants", responses={200: {"model": int}})
async def count_assistants(rt: Rt, body: AssistantCount | None = None) -> JSON:
    body = body or AssistantCount()
    return JSON(
        await rt.assistants.count(graph_id=body.graph_id, name=body.name, metadata=body.metadata)
    )


@router.get("/assistants/{assistant_id}", summary="Get an assistant", responses=ONE)
async def get_assistant(assistant_id: str, rt: Rt) -> JSON:
    return JSON((await rt.assistants.get(assistant_id)).to_api())


@router.patch(
    "/assistants/{assistant_id}",
    summary="Update an assistant (saves a new version)",
    responses=ONE,
)
async def update_assistant(assistant_id: str, body: AssistantUpdate, rt: Rt) -> JSON:
    assistant = await rt.assistants.update(
        assistant_id,
        graph_id=body.graph_id,
        config=body.config,
        context=body.context,
        metadata=body.metadata,
        name=body.name,
        description=body.description,
    )
    return JSON(assistant.to_api())


@router.delete(
    "/assistants/{assistant_id}",
    summary="Delete an assistant with its versions and crons",
    status_code=204,
    response_class=Response,
)
async def delete_assistant(
    assistant_id: str,
    rt: Rt,
    delete_threads: Annotated[
        bool, Query(description="Also delete the threads whose metadata.assistant_id is it")
    ] = False,
) -> Response:
    await rt.assistants.delete(assistant_id, delete_threads=delete_threads)
    return Response(status_code=204)


@router.get(
    "/assistants/{assistant_id}/graph",
    summary="The assistant's graph as nodes and edges",
    responses={200: {"model": DrawableGraphOut}},
)
async def get_assistant_graph(
    assistant_id: str,
    rt: Rt,
    xray: Annotated[
        str,
        Query(description="true, false, or how many levels of subgraphs to expand"),
    ] = "false",
) -> JSON:
    return JSON(await rt.assistants.graph(assistant_id, xray=_xray(xray)))


@router.get(
    "/assistants/{assistant_id}/schemas",
    summary="JSON schemas of the assistant's graph",
    responses={200: {"model": GraphSchemaOut}},
)
async def get_assistant_schemas(assistant_id: str, rt: Rt) -> JSON:
    return JSON(await rt.assistants.schemas(assistant_id))


@router.get(
    "/assistants/{assistant_id}/subgraphs",
    summary="JSON schemas of the graph's subgraphs, by namespace",
    responses={200: {"model": dict[str, SubgraphSchemaOut]}},
)
async def get_assistant_subgraphs(assistant_id: str, rt: Rt, recurse: bool = False) -> JSON:
    return JSON(await rt.assistants.subgraphs(assistant_id, recurse=recurse))


@router.get(
    "/assistants/{assistant_id}/subgraphs/{namespace}",
    summary="JSON schemas of the subgraphs under one namespace",
    responses={200: {"model": dict[str, SubgraphSchemaOut]}},
)
async def get_assistant_subgraphs_in(
    assistant_id: str, namespace: str, rt: Rt, recurse: bool = False
) -> JSON:
    return JSON(await rt.assistants.subgraphs(assistant_id, namespace=namespace, recurse=recurse))


@router.post(
    "/assistants/{assistant_id}/versions",
    summary="Saved versions of an assistant, newest first",
    responses={200: {"model": list[AssistantVersionOut]}},
)
async def get_assistant_versions(
    assistant_id: str, rt: Rt, body: VersionSearch | None = None
) -> JSON:
    body = body or VersionSearch()
    versions = await rt.assistants.versions(
        assistant_id, metadata=body.metadata, limit=body.limit, offset=body.offset
    )
    return JSON([v.to_api() for v in versions])


@router.post(
    "/assistants/{assistant_id}/latest",
    summary="Make the assistant show a saved version",
    responses=ONE,
)
async def set_latest_version(assistant_id: str, body: VersionChange, rt: Rt) -> JSON:
    return JSON((await rt.assistants.set_latest(assistant_id, body.version)).to_api())


def _xray(text: str) -> bool | int:
    """The ``xray`` query parameter: ``true``, ``false`` or a number of levels."""
    lowered = text.strip().lower()
    if lowered in ("", "false"):
        return False
    if lowered == "true":
        return True
    try:
        levels = int(lowered)
    except ValueError:
        levels = 0
    if levels < 1:
        raise UnprocessableEntityError(
            f"xray must be true, false or a positive number of levels, not {text!r}"
        )
    return levels


__all__ = ["router"]
