"""The assistant methods of Storage, on every backend (SQLite file, SQLite memory, Postgres)."""

from __future__ import annotations

import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from weft.errors import ConflictError, NotFoundError
from weft.schema import Assistant
from weft.storage import Storage
from weft.storage.base import AssistantPatch, AssistantQuery

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def make(
    *,
    graph_id: str = "agent",
    name: str = "helper",
    metadata: dict[str, Any] | None = None,
    owner: str | None = None,
    at: datetime = T0,
    assistant_id: str | None = None,
) -> Assistant:
    return Assistant(
        assistant_id=assistant_id or str(uuid.uuid4()),
        graph_id=graph_id,
        name=name,
        description="helps",
        config={"configurable": {"model": "fake"}, "tags": ["a"]},
        context={"model": "fake"},
        metadata=metadata if metadata is not None else {},
        version=1,
        owner=owner,
        created_at=at,
        updated_at=at,
    )


async def execute(storage: Storage, sql: str, params: tuple[Any, ...]) -> None:
    """Raw SQL for the test's own fixtures (rows of tables weft has no API for yet)."""
    if storage.dialect == "sqlite":

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(sql, params)

        await storage.engine.write(write)  # type: ignore[attr-defined]
    else:
        async with storage.pool.connection() as conn:  # type: ignore[attr-defined]
            await conn.execute(sql.replace("?", "%s"), params)


async def scalar(storage: Storage, sql: str, params: tuple[Any, ...]) -> Any:
    if storage.dialect == "sqlite":
        return await storage.engine.read(  # type: ignore[attr-defined]
            lambda conn: conn.execute(sql, params).fetchone()[0]
        )
    async with storage.pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(sql.replace("?", "%s"), params)
        row = await cur.fetchone()
        return next(iter(row.values()))


async def test_put_then_get_round_trips_every_field(storage: Storage) -> None:
    original = make(metadata={"team": "ünïcode", "n": 1, "nested": {"deep": [1, "x", None]}})
    assert await storage.put_assistant(original, if_exists="raise") == original
    got = await storage.get_assistant(original.assistant_id)
    assert got == original
    assert got.created_at == T0
    assert got.created_at.tzinfo is not None
    versions = await storage.list_assistant_versions(original.assistant_id)
    assert [(v.version, v.config, v.created_at) for v in versions] == [(1, original.config, T0)]


async def test_put_an_existing_id(storage: Storage) -> None:
    first = make(owner="alice")
    await storage.put_assistant(first, if_exists="raise")
    again = make(assistant_id=first.assistant_id, name="other", owner="alice")
    with pytest.raises(ConflictError, match=rf"^assistant {first.assistant_id} already exists$"):
        await storage.put_assistant(again, if_exists="raise")
    assert await storage.put_assistant(again, if_exists="do_nothing") == first
    stranger = make(assistant_id=first.assistant_id, owner="bob")
    with pytest.raises(ConflictError):
        await storage.put_assistant(stranger, if_exists="do_nothing")


async def test_a_missing_assistant(storage: Storage) -> None:
    missing = str(uuid.uuid4())
    message = rf"^assistant {missing} not found$"
    with pytest.raises(NotFoundError, match=message):
        await storage.get_assistant(missing)
    with pytest.raises(NotFoundError, match=message):
        await storage.update_assistant(missing, AssistantPatch(updated_at=T0, name="x"))
    with pytest.raises(NotFoundError, match=message):
        await storage.set_assistant_version(missing, 1)
    with pytest.raises(NotFoundError, match=message):
        await storage.list_assistant_versions(missing)
    with pytest.raises(NotFoundError, match=message):
        await storage.delete_assistant(missing)


async def test_owners_see_their_own_and_shared_assistants(storage: Storage) -> None:
    alice = make(owner="alice", name="alice's")
    shared = make(owner=None, name="shared")
    await storage.put_assistant(alice, if_exists="raise")
    await storage.put_assistant(shared, if_exists="raise")
    assert (await storage.get_assistant(alice.assistant_id, owner="alice")).name == "alice's"
    assert (await storage.get_assistant(shared.assistant_id, owner="bob")).name == "shared"
    with pytest.raises(NotFoundError):
        await storage.get_assistant(alice.assistant_id, owner="bob")
    with pytest.raises(NotFoundError):
        await storage.update_assistant(
            alice.assistant_id, AssistantPatch(updated_at=T0, name="x"), owner="bob"
        )
    with pytest.raises(NotFoundError):
        await storage.delete_assistant(alice.assistant_id, owner="bob")
    assert await storage.count_assistants(AssistantQuery(owner="bob")) == 1
    assert await storage.count_assistants(AssistantQuery(owner="alice")) == 2
    assert await storage.count_assistants(AssistantQuery()) == 2


async def test_updates_add_versions_and_set_version_shows_an_old_one(storage: Storage) -> None:
    a = make(metadata={"keep": 1, "change": "old"})
    await storage.put_assistant(a, if_exists="raise")
    t1, t2 = T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)
    v2 = await storage.update_assistant(
        a.assistant_id, AssistantPatch(updated_at=t1, name="renamed", metadata={"change": "new"})
    )
    assert (v2.version, v2.name, v2.metadata) == (2, "renamed", {"keep": 1, "change": "new"})
    assert (v2.config, v2.context, v2.description) == (a.config, a.context, "helps")
    assert (v2.created_at, v2.updated_at) == (T0, t1)
    v3 = await storage.update_assistant(
        a.assistant_id,
        AssistantPatch(updated_at=t2, context={"model": "other"}, graph_id="other"),
    )
    assert v3.version == 3
    assert v3.config == {"configurable": {"model": "other"}, "tags": ["a"]}
    assert (v3.context, v3.graph_id) == ({"model": "other"}, "other")
    assert await storage.get_assistant(a.assistant_id) == v3

    shown = await storage.set_assistant_version(a.assistant_id, 1)
    assert (shown.version, shown.name, shown.graph_id) == (1, "helper", "agent")
    assert (shown.metadata, shown.context) == ({"keep": 1, "change": "old"}, {"model": "fake"})
    assert await storage.get_assistant(a.assistant_id) == shown

    v4 = await storage.update_assistant(
        a.assistant_id, AssistantPatch(updated_at=t2, description="newest")
    )
    assert (v4.version, v4.name, v4.description) == (4, "helper", "newest")

    versions = await storage.list_assistant_versions(a.assistant_id)
    assert [v.version for v in versions] == [4, 3, 2, 1]
    assert [v.name for v in versions] == ["helper", "renamed", "renamed", "helper"]
    page = await storage.list_assistant_versions(a.assistant_id, limit=2, offset=1)
    assert [v.version for v in page] == [3, 2]
    changed = await storage.list_assistant_versions(a.assistant_id, metadata={"change": "new"})
    assert [v.version for v in changed] == [3, 2]

    with pytest.raises(NotFoundError, match=rf"^version 9 of assistant {a.assistant_id} not found"):
        await storage.set_assistant_version(a.assistant_id, 9)


async def test_delete_removes_versions_and_crons(storage: Storage) -> None:
    a = make()
    await storage.put_assistant(a, if_exists="raise")
    await storage.update_assistant(a.assistant_id, AssistantPatch(updated_at=T0, name="v2"))
    await execute(
        storage,
        "INSERT INTO crons (cron_id, assistant_id, schedule, payload, metadata) "
        "VALUES (?, ?, ?, ?, ?)",
        ("cron-1", a.assistant_id, "* * * * *", "{}", "{}"),
    )
    await storage.delete_assistant(a.assistant_id)
    with pytest.raises(NotFoundError):
        await storage.get_assistant(a.assistant_id)
    count_sql = "SELECT count(*) FROM {} WHERE assistant_id = ?"
    assert await scalar(storage, count_sql.format("assistant_versions"), (a.assistant_id,)) == 0
    assert await scalar(storage, count_sql.format("crons"), (a.assistant_id,)) == 0


async def test_search_filters_sorts_and_pages(storage: Storage) -> None:
    rows = [
        make(name="Alpha", graph_id="agent", metadata={"team": "a", "n": 1}, at=T0),
        make(
            name="beta",
            graph_id="agent",
            metadata={"team": "b", "n": 1.5, "flag": True, "deep": {"x": 1, "y": 2}},
            at=T0 + timedelta(seconds=1),
        ),
        make(
            name="Gamma alpha",
            graph_id="other",
            metadata={"team": "a", "tags": ["x", "y"], "none": None, "flag": 1},
            at=T0 + timedelta(seconds=2),
        ),
    ]
    for row in rows:
        await storage.put_assistant(row, if_exists="raise")

    async def names(**kwargs: Any) -> list[str]:
        query = AssistantQuery(
            **{k: kwargs.pop(k) for k in ("graph_id", "name", "metadata") if k in kwargs}
        )
        return [a.name for a in await storage.search_assistants(query, **kwargs)]

    assert await names() == ["Gamma alpha", "beta", "Alpha"]
    assert await names(sort_by="name", sort_order="asc") == ["Alpha", "beta", "Gamma alpha"]
    assert await names(sort_by="created_at", sort_order="asc", limit=2, offset=1) == [
        "beta",
        "Gamma alpha",
    ]
    assert await names(graph_id="agent") == ["beta", "Alpha"]
    assert await names(name="ALPHA") == ["Gamma alpha", "Alpha"]
    assert await names(metadata={"team": "a"}) == ["Gamma alpha", "Alpha"]
    assert await names(metadata={"n": 1}) == ["Alpha"]
    assert await names(metadata={"n": 1.5}) == ["beta"]
    assert await names(metadata={"flag": True}) == ["beta"]
    assert await names(metadata={"flag": 1}) == ["Gamma alpha"]
    assert await names(metadata={"deep": {"x": 1}}) == ["beta"]
    assert await names(metadata={"deep": {"x": 2}}) == []
    assert await names(metadata={"tags": ["x", "y"]}) == ["Gamma alpha"]
    assert await names(metadata={"none": None}) == ["Gamma alpha"]
    assert await names(metadata={"missing": None}) == []
    assert await names(metadata={"team": "a", "n": 1}) == ["Alpha"]

    assert await storage.count_assistants(AssistantQuery()) == 3
    assert await storage.count_assistants(AssistantQuery(graph_id="agent", name="a")) == 2
    assert await storage.count_assistants(AssistantQuery(metadata={"team": "a"})) == 2
