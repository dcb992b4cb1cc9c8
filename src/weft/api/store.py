"""``/store``: the LangGraph store graphs share across threads (``rt.storage.store``), as
the LangGraph Platform serves it: put, get and delete items, search them under a namespace
prefix, list namespaces.

Namespaces are lists of labels; a label is a non-empty string without ``.`` (``GET`` takes
the namespace as one query parameter joined with dots, as the SDK sends it). Options the
store cannot honour are refused by name rather than ignored: ``ttl`` needs a store that
expires items, ``index`` (a list of fields) and ``query`` need a store with a semantic index.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from langgraph.store.base import BaseStore, InvalidNamespaceError, Item
from pydantic import BaseModel, Field
from starlette.responses import Response

from weft.api.route import Route
from weft.api.wire import JSON, Body, Rt
from weft.errors import UnprocessableEntityError

router = APIRouter(tags=["store"], route_class=Route)


# --- bodies ---------------------------------------------------------------------------------


class StorePut(Body):
    namespace: list[str]
    key: str
    value: dict[str, Any]
    index: Literal[False] | list[str] | None = None
    ttl: float | None = None


class StoreDelete(Body):
    namespace: list[str] = Field(default_factory=list)
    key: str


class StoreSearch(Body):
    namespace_prefix: list[str] | None = None
    filter: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=0)
    offset: int = Field(default=0, ge=0)
    query: str | None = None
    refresh_ttl: bool | None = None


class NamespaceList(Body):
    prefix: list[str] | None = None
    suffix: list[str] | None = None
    max_depth: int | None = Field(
        default=None,
        ge=1,
        le=2**31 - 1,
        description="Cut namespaces to this many labels (a 32-bit number, as the store holds).",
    )
    limit: int = Field(default=100, ge=0)
    offset: int = Field(default=0, ge=0)


# --- responses (documentation only) ---------------------------------------------------------


class ItemOut(BaseModel):
    namespace: list[str]
    key: str
    value: dict[str, Any]
    created_at: str
    updated_at: str


class SearchItemOut(ItemOut):
    score: float | None = None


class SearchItemsOut(BaseModel):
    items: list[SearchItemOut]


class NamespacesOut(BaseModel):
    namespaces: list[list[str]]


# --- routes ---------------------------------------------------------------------------------


@router.put(
    "/store/items",
    summary="Store or replace an item",
    status_code=204,
    response_class=Response,
)
async def put_item(body: StorePut, rt: Rt) -> Response:
    store = rt.storage.store
    namespace = _namespace(body.namespace, "namespace")
    if body.ttl is not None and not _expires_items(store):
        raise UnprocessableEntityError(
            "ttl is not supported: this server's store does not expire items; "
            "leave ttl out (or null) and delete items when they are no longer needed"
        )
    if isinstance(body.index, list) and not _has_index(store):
        raise UnprocessableEntityError(
            "index is not supported: this server's store has no semantic search index "
            "(no embeddings are configured); leave index out or set it to false"
        )
    with _namespace_errors():
        await store.aput(namespace, body.key, body.value, index=body.index, ttl=body.ttl)
    return Response(status_code=204)


@router.get(
    "/store/items",
    summary="One item (null when there is none)",
    responses={200: {"model": ItemOut | None}},
)
async def get_item(
    rt: Rt,
    key: str,
    namespace: Annotated[
        list[str] | None,
        Query(description="The namespace's labels joined with '.' (or one parameter each)"),
    ] = None,
    refresh_ttl: bool | None = None,
) -> JSON:
    given = namespace or []
    labels = given[0].split(".") if len(given) == 1 else given
    with _namespace_errors():
        found = await rt.storage.store.aget(
            _namespace(labels, "namespace"), key, refresh_ttl=refresh_ttl
        )
    return JSON(_item(found) if found is not None else None)


@router.delete(
    "/store/items",
    summary="Delete an item (nothing happens when there is none)",
    status_code=204,
    response_class=Response,
)
async def delete_item(body: StoreDelete, rt: Rt) -> Response:
    namespace = _namespace(body.namespace, "namespace")
    with _namespace_errors():
        await rt.storage.store.adelete(namespace, body.key)
    return Response(status_code=204)


@router.post(
    "/store/items/search",
    summary="Items under a namespace prefix, filtered by their values",
    responses={200: {"model": SearchItemsOut}},
)
async def search_items(rt: Rt, body: StoreSearch | None = None) -> JSON:
    body = body or StoreSearch()
    store = rt.storage.store
    prefix = _namespace(body.namespace_prefix or [], "namespace_prefix", empty_ok=True)
    if body.query and not _has_index(store):
        raise UnprocessableEntityError(
            "query is not supported: this server's store has no semantic search index "
            "(no embeddings are configured); search with namespace_prefix and filter instead"
        )
    try:
        found = await store.asearch(
            prefix,
            query=body.query or None,
            filter=body.filter,
            limit=body.limit,
            offset=body.offset,
            refresh_ttl=body.refresh_ttl,
        )
    except InvalidNamespaceError as e:
        raise UnprocessableEntityError(f"namespace_prefix: {e}") from e
    except ValueError as e:  # an operator the store does not know, e.g. {"$foo": 1}
        raise UnprocessableEntityError(f"filter: {e}") from e
    return JSON({"items": [_item(item) for item in found]})


@router.post(
    "/store/namespaces",
    summary="Namespaces, optionally under a prefix, over a suffix, cut at a depth",
    responses={200: {"model": NamespacesOut}},
)
async def list_namespaces(rt: Rt, body: NamespaceList | None = None) -> JSON:
    body = body or NamespaceList()
    prefix = _namespace(body.prefix, "prefix", empty_ok=True) if body.prefix else None
    suffix = _namespace(body.suffix, "suffix", empty_ok=True) if body.suffix else None
    with _namespace_errors("prefix/suffix"):
        found = await rt.storage.store.alist_namespaces(
            prefix=prefix,
            suffix=suffix,
            max_depth=body.max_depth,
            limit=body.limit,
            offset=body.offset,
        )
    return JSON({"namespaces": [list(ns) for ns in found]})


# --- helpers --------------------------------------------------------------------------------


def _namespace(labels: Sequence[str], what: str, *, empty_ok: bool = False) -> tuple[str, ...]:
    """``labels`` as a namespace: each a non-empty string without ``.``."""
    if not labels and not empty_ok:
        raise UnprocessableEntityError(f'{what} must have at least one label, e.g. ["users", "u1"]')
    for label in labels:
        if not label or "." in label:
            raise UnprocessableEntityError(
                f"{what} label {label!r} must be a non-empty string without periods ('.')"
            )
    return tuple(labels)


@contextmanager
def _namespace_errors(what: str = "namespace") -> Iterator[None]:
    """The store's own namespace checks (e.g. the reserved root label ``langgraph``) as 422."""
    try:
        yield
    except InvalidNamespaceError as e:
        raise UnprocessableEntityError(f"{what}: {e}") from e


def _item(item: Item) -> dict[str, Any]:
    """The Platform's JSON shape of an item; timestamps in UTC with their offset (SQLite
    stores them without one)."""
    data = item.dict()
    for field in ("created_at", "updated_at"):
        when: datetime = getattr(item, field)
        data[field] = (when if when.tzinfo else when.replace(tzinfo=UTC)).isoformat()
    return data


def _expires_items(store: BaseStore) -> bool:
    """Whether items put with a ``ttl`` really expire: the store supports TTLs and has a TTL
    configuration (without one LangGraph's stores record the TTL but never act on it)."""
    return bool(store.supports_ttl and store.ttl_config)


def _has_index(store: BaseStore) -> bool:
    """Whether the store embeds items for ``query`` search (an ``index`` configuration)."""
    return bool(getattr(store, "index_config", None))


__all__ = ["router"]
