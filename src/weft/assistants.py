"""Assistants: saved, versioned configurations of the project's graphs.

Every graph has a *system assistant* whose ID is derived from the graph id exactly as
LangGraph Platform derives it, so clients that hard-code an assistant ID (or pass a graph
id where an assistant ID is expected) keep working. Other assistants are created, updated
(each update saves a new version), searched and deleted through :class:`Assistants`.

Every method that reads or changes an assistant takes an optional ``owner``: it then sees
only that owner's assistants and those without an owner (the system assistants).
"""

from __future__ import annotations

import functools
import json
import uuid
import warnings
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any, get_args, overload

from langgraph.pregel import Pregel
from pydantic import create_model

from weft.errors import BadRequestError, NotFoundError, UnprocessableEntityError
from weft.graphs import CompiledGraph, GraphRegistry
from weft.schema import ASSISTANT_FIELDS, Assistant, AssistantVersion
from weft.storage import Storage
from weft.storage.base import (
    AssistantPatch,
    AssistantQuery,
    AssistantSortBy,
    IfExists,
    SortOrder,
    ThreadQuery,
)
from weft.validation import choice, json_object, page, uuid_arg

SYSTEM_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
"""The namespace LangGraph Platform derives system assistant IDs in (uuid5 of the graph id)."""

IF_EXISTS_VALUES: tuple[str, ...] = get_args(IfExists)
SORT_BY_VALUES: tuple[str, ...] = get_args(AssistantSortBy)
SORT_ORDER_VALUES: tuple[str, ...] = get_args(SortOrder)
DEFAULT_NAME = "Untitled"
THREAD_BATCH = 100
"""How many threads ``delete(delete_threads=True)`` reads per round."""

# Run-time keys that a configurable schema never offers to clients.
_INTERNAL_CONFIG_KEYS = ("__pregel_checkpointer", "__pregel_store", "thread_id", "checkpoint_id")


@functools.lru_cache(maxsize=4096)
def system_assistant_id(graph_id: str) -> str:
    """The ID of ``graph_id``'s system assistant (the same as LangGraph Platform's);
    remembered, since every run by graph id asks for it."""
    return str(uuid.uuid5(SYSTEM_NAMESPACE, graph_id))


class Assistants:
    """Assistants over a :class:`Storage`, for the graphs of a :class:`GraphRegistry`."""

    def __init__(self, storage: Storage, registry: GraphRegistry) -> None:
        self.storage = storage
        self.registry = registry

    # --- identity -------------------------------------------------------------------------

    def resolve_id(self, assistant_id: str) -> str:
        """A graph id becomes its system assistant's ID; anything else must be a UUID."""
        text = str(assistant_id)
        if text in self.registry:
            return system_assistant_id(text)
        return uuid_arg(text, "assistant_id", hint=" (or a graph id)")

    # --- system assistants ----------------------------------------------------------------

    async def ensure_system_assistants(self) -> list[Assistant]:
        """Create each graph's system assistant if missing; sync its name and description.

        Idempotent: run at every start-up. An assistant whose description changed in the
        config gets a new version.
        """
        out: list[Assistant] = []
        for graph_id in self.registry.ids():
            entry = self.registry.entry(graph_id)
            now = datetime.now(UTC)
            assistant = await self.storage.put_assistant(
                Assistant(
                    assistant_id=system_assistant_id(graph_id),
                    graph_id=graph_id,
                    name=graph_id,
                    description=entry.description,
                    config={},
                    context={},
                    metadata={"created_by": "system"},
                    version=1,
                    created_at=now,
                    updated_at=now,
                ),
                if_exists="do_nothing",
            )
            if assistant.description != entry.description or assistant.name != graph_id:
                assistant = await self.storage.update_assistant(
                    assistant.assistant_id,
                    AssistantPatch(
                        updated_at=datetime.now(UTC),
                        name=graph_id,
                        description=entry.description,
                    ),
                )
            out.append(assistant)
        return out

    # --- records --------------------------------------------------------------------------

    async def create(
        self,
        graph_id: str,
        *,
        config: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
        assistant_id: str | None = None,
        if_exists: str = "raise",
        owner: str | None = None,
    ) -> Assistant:
        """Create an assistant (version 1) for ``graph_id``.

        ``if_exists="do_nothing"`` returns the existing assistant with that ID instead of
        raising :class:`weft.errors.ConflictError`.
        """
        choice(if_exists, IF_EXISTS_VALUES, "if_exists")
        self._known_graph(graph_id)
        new_id = (
            uuid_arg(assistant_id, "assistant_id", hint=" (or a graph id)")
            if assistant_id
            else str(uuid.uuid4())
        )
        config_, context_ = _config_and_context(config, context)
        now = datetime.now(UTC)
        assistant = Assistant(
            assistant_id=new_id,
            graph_id=graph_id,
            name=name or DEFAULT_NAME,
            description=description,
            config=config_ or {},
            context=context_ or {},
            metadata=json_object(metadata, "metadata") or {},
            version=1,
            owner=owner,
            created_at=now,
            updated_at=now,
        )
        return await self.storage.put_assistant(
            assistant,
            if_exists="do_nothing" if if_exists == "do_nothing" else "raise",
        )

    async def get(self, assistant_id: str, *, owner: str | None = None) -> Assistant:
        """An assistant by ID, or a graph's system assistant by graph id."""
        return await self.storage.get_assistant(self.resolve_id(assistant_id), owner=owner)

    async def update(
        self,
        assistant_id: str,
        *,
        graph_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
        owner: str | None = None,
    ) -> Assistant:
        """Save a new version (highest + 1) and make the assistant show it.

        Omitted fields keep their values; ``metadata`` is merged into the current one.
        """
        resolved = self.resolve_id(assistant_id)
        if graph_id is not None:
            self._known_graph(graph_id)
        config_, context_ = _config_and_context(config, context, fill_config=False)
        patch = AssistantPatch(
            updated_at=datetime.now(UTC),
            graph_id=graph_id,
            config=config_ or None,
            context=context_,
            metadata=json_object(metadata, "metadata"),
            name=name,
            description=description,
        )
        return await self.storage.update_assistant(resolved, patch, owner=owner)

    async def versions(
        self,
        assistant_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[AssistantVersion]:
        """Saved versions, newest first."""
        page(limit, offset)
        return await self.storage.list_assistant_versions(
            self.resolve_id(assistant_id),
            metadata=json_object(metadata, "metadata"),
            limit=limit,
            offset=offset,
            owner=owner,
        )

    async def set_latest(
        self, assistant_id: str, version: int, *, owner: str | None = None
    ) -> Assistant:
        """Make the assistant show a saved version."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise UnprocessableEntityError(f"version must be a positive integer, not {version!r}")
        return await self.storage.set_assistant_version(
            self.resolve_id(assistant_id), version, owner=owner
        )

    async def delete(
        self, assistant_id: str, *, delete_threads: bool = False, owner: str | None = None
    ) -> None:
        """Delete an assistant, its versions and its crons.

        With ``delete_threads`` the threads it ran on (``metadata.assistant_id`` equal to its
        ID, as every run stamps it) go first, each with its checkpoints, runs and crons."""
        resolved = self.resolve_id(assistant_id)
        if delete_threads:
            await self.storage.get_assistant(resolved, owner=owner)  # 404 before any delete
            query = ThreadQuery(metadata={"assistant_id": resolved}, owner=owner)
            while batch := await self.storage.search_threads(query, limit=THREAD_BATCH):
                for thread in batch:
                    with suppress(NotFoundError):  # deleted meanwhile: gone as wanted
                        await self.storage.delete_thread(thread.thread_id, owner=owner)
        await self.storage.delete_assistant(resolved, owner=owner)

    @overload
    async def search(
        self,
        *,
        graph_id: str | None = ...,
        name: str | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        limit: int = ...,
        offset: int = ...,
        sort_by: str | None = ...,
        sort_order: str | None = ...,
        select: None = ...,
        owner: str | None = ...,
    ) -> list[Assistant]: ...

    @overload
    async def search(
        self,
        *,
        graph_id: str | None = ...,
        name: str | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        limit: int = ...,
        offset: int = ...,
        sort_by: str | None = ...,
        sort_order: str | None = ...,
        select: Sequence[str],
        owner: str | None = ...,
    ) -> list[dict[str, Any]]: ...

    async def search(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str | None = None,
        sort_order: str | None = None,
        select: Sequence[str] | None = None,
        owner: str | None = None,
    ) -> list[Assistant] | list[dict[str, Any]]:
        """Assistants matching every given filter, newest first unless ``sort_by`` says.

        ``name`` matches a case-insensitive substring, ``metadata`` by containment. With
        ``select`` the result is the Platform's JSON shape holding only those fields.
        """
        page(limit, offset)
        by = choice(sort_by.lower() if sort_by else "created_at", SORT_BY_VALUES, "sort_by")
        order = choice(
            sort_order.lower() if sort_order else "desc", SORT_ORDER_VALUES, "sort_order"
        )
        fields: list[str] | None = None
        if select is not None:
            if isinstance(select, str):
                select = [select]
            bad = [f for f in select if f not in ASSISTANT_FIELDS]
            if bad:
                raise UnprocessableEntityError(
                    f"cannot select {', '.join(map(repr, bad))}; "
                    f"fields are {', '.join(ASSISTANT_FIELDS)}"
                )
            fields = list(select)
        found = await self.storage.search_assistants(
            self._query(graph_id, name, metadata, owner),
            limit=limit,
            offset=offset,
            sort_by=by,  # type: ignore[arg-type]
            sort_order=order,  # type: ignore[arg-type]
        )
        if fields is None:
            return found
        return [a.to_api(fields) for a in found]

    async def count(
        self,
        *,
        graph_id: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        owner: str | None = None,
    ) -> int:
        """How many assistants :meth:`search` would find without paging."""
        return await self.storage.count_assistants(self._query(graph_id, name, metadata, owner))

    # --- the graph behind an assistant ----------------------------------------------------

    async def schemas(self, assistant_id: str, *, owner: str | None = None) -> dict[str, Any]:
        """``{graph_id, input_schema, output_schema, state_schema, config_schema,
        context_schema}``: JSON schemas of the assistant's graph (None where one cannot be
        derived)."""
        assistant, graph = await self._graph_of(assistant_id, owner)
        return {"graph_id": assistant.graph_id, **graph_schemas(graph)}

    async def graph(
        self, assistant_id: str, *, xray: bool | int = False, owner: str | None = None
    ) -> dict[str, Any]:
        """The drawable graph as ``{"nodes": [...], "edges": [...]}`` (the Platform's shape).

        ``xray`` expands subgraphs: True for all levels, a positive number for that many.
        """
        if not isinstance(xray, bool) and (not isinstance(xray, int) or xray < 0):
            raise UnprocessableEntityError(
                f"xray must be true, false or a positive number of levels, not {xray!r}"
            )
        _, graph = await self._graph_of(assistant_id, owner)
        drawable = await graph.aget_graph(xray=xray)
        data = drawable.to_json()
        for node in data.get("nodes", []):
            node_data = node.get("data")
            if isinstance(node_data, dict):
                node_data.pop("id", None)  # the Python class path of the node
        return dict(data)

    async def subgraphs(
        self,
        assistant_id: str,
        *,
        namespace: str | None = None,
        recurse: bool = False,
        owner: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """``{namespace: schemas}`` for the graph's subgraphs (``parent|child`` when nested)."""
        _, graph = await self._graph_of(assistant_id, owner)
        return {
            ns: graph_schemas(sub)
            async for ns, sub in graph.aget_subgraphs(namespace=namespace, recurse=recurse)
            if isinstance(sub, Pregel)
        }

    # --- helpers --------------------------------------------------------------------------

    async def _graph_of(
        self, assistant_id: str, owner: str | None
    ) -> tuple[Assistant, CompiledGraph]:
        assistant = await self.get(assistant_id, owner=owner)
        config: dict[str, Any] = json.loads(json.dumps(assistant.config))
        config.setdefault("configurable", {})
        graph = await self.registry.graph(
            assistant.graph_id,
            config,  # type: ignore[arg-type]
            checkpointer=self.storage.checkpointer,
            store=self.storage.store,
        )
        return assistant, graph

    def _known_graph(self, graph_id: str) -> None:
        if graph_id not in self.registry:
            known = ", ".join(repr(g) for g in self.registry.ids()) or "none are configured"
            raise NotFoundError(f"graph {graph_id!r} not found; known graphs: {known}")

    def _query(
        self,
        graph_id: str | None,
        name: str | None,
        metadata: Mapping[str, Any] | None,
        owner: str | None,
    ) -> AssistantQuery:
        if graph_id is not None:
            self._known_graph(graph_id)
        return AssistantQuery(
            graph_id=graph_id,
            name=name or None,
            metadata=json_object(metadata, "metadata"),
            owner=owner,
        )


def graph_schemas(graph: CompiledGraph) -> dict[str, Any]:
    """The JSON schemas LangGraph Platform reports for a graph; None where one fails."""
    context = _try(graph.get_context_jsonschema)
    config: dict[str, Any] | None = {}
    if context:
        config = json.loads(json.dumps(context))
        for key in _INTERNAL_CONFIG_KEYS:
            config.get("properties", {}).pop(key, None)
    return {
        "input_schema": _try(graph.get_input_jsonschema),
        "output_schema": _try(graph.get_output_jsonschema),
        "state_schema": _try(lambda: _state_schema(graph)),
        "config_schema": config,
        "context_schema": context,
    }


def _state_schema(graph: CompiledGraph) -> dict[str, Any]:
    """An object schema with one property per channel the graph streams."""
    fields: dict[str, Any] = {}
    for key in graph.stream_channels_list:
        channel = graph.channels[key]
        annotation: Any = getattr(channel, "UpdateType", Any)
        try:
            create_model("Field", value=(annotation, None)).model_json_schema()
        except Exception:  # noqa: BLE001 - a type pydantic cannot describe
            annotation = Any
        fields[key] = (annotation, None)
    model = create_model(graph.get_name("State"), **fields)
    schema: dict[str, Any] = model.model_json_schema()
    return schema


def _try(fn: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return fn()
        except Exception:  # noqa: BLE001 - the Platform reports an unusable schema as null
            return None


def _config_and_context(
    config: Mapping[str, Any] | None,
    context: Mapping[str, Any] | None,
    *,
    fill_config: bool = True,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Validate both and keep ``config["configurable"]`` and ``context`` equal, as the
    Platform does (context is the newer name for the same values).

    Without ``fill_config`` a context given alone leaves ``config`` None (an update then
    sets only the configurable part of the current config)."""
    config_ = json_object(config, "config")
    context_ = json_object(context, "context")
    configurable = (config_ or {}).get("configurable")
    if configurable is not None and not isinstance(configurable, dict):
        raise UnprocessableEntityError("config.configurable must be an object")
    if configurable and context_:
        raise BadRequestError(
            "set either config.configurable or context, not both; prefer context "
            "(it replaces configurable since LangGraph 0.6)"
        )
    if configurable:
        context_ = dict(configurable)
    elif context_ and (config_ is not None or fill_config):
        config_ = {**(config_ or {}), "configurable": dict(context_)}
    return config_, context_


__all__ = [
    "DEFAULT_NAME",
    "IF_EXISTS_VALUES",
    "SORT_BY_VALUES",
    "SORT_ORDER_VALUES",
    "SYSTEM_NAMESPACE",
    "Assistants",
    "graph_schemas",
    "system_assistant_id",
]
