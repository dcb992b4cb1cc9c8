"""One storage suite, run against every backend (SQLite file, SQLite memory, Postgres)."""

from __future__ import annotations

import asyncio
import operator
from typing import Annotated, TypedDict

import pytest
from langgraph.graph import END, START, StateGraph

from weft.errors import SchemaVersionError
from weft.storage import Storage, open_storage
from weft.storage.migrations import LATEST_VERSION

WEFT_TABLES = {
    "weft_schema",
    "assistants",
    "assistant_versions",
    "sessions",
    "threads",
    "runs",
    "run_events",
    "interactions",
    "crons",
}


class State(TypedDict):
    items: Annotated[list[str], operator.add]


def graph_builder() -> StateGraph[State]:
    builder: StateGraph[State] = StateGraph(State)

    async def first(_: State) -> dict[str, list[str]]:
        return {"items": ["first"]}

    async def second(_: State) -> dict[str, list[str]]:
        return {"items": ["second"]}

    builder.add_node("first", first)
    builder.add_node("second", second)
    builder.add_edge(START, "first")
    builder.add_edge("first", "second")
    builder.add_edge("second", END)
    return builder


async def test_open_creates_every_table_at_the_latest_version(storage: Storage) -> None:
    tables = set(await storage.table_names())
    assert tables >= WEFT_TABLES
    assert {"checkpoints", "checkpoint_writes", "store"} <= tables
    assert await storage.schema_version() == LATEST_VERSION
    assert await storage.integrity_check() == []


async def test_reopening_is_idempotent(database_url: str) -> None:
    if database_url.endswith(":memory:"):
        pytest.skip("an in-memory database does not outlive its storage")
    for _ in range(3):
        async with open_storage(database_url) as storage:
            assert await storage.schema_version() == LATEST_VERSION


async def test_a_graph_persists_state_and_history(database_url: str) -> None:
    config = {"configurable": {"thread_id": "thread-1"}}
    async with open_storage(database_url) as storage:
        graph = graph_builder().compile(checkpointer=storage.checkpointer, store=storage.store)
        await graph.ainvoke({"items": []}, config)
        result = await graph.ainvoke({"items": ["again"]}, config)
        assert result["items"] == ["first", "second", "again", "first", "second"]
        history = [s async for s in graph.aget_state_history(config)]
        assert len(history) == 8
        assert history[0].values == result
        if database_url.endswith(":memory:"):
            return
    async with open_storage(database_url) as storage:
        graph = graph_builder().compile(checkpointer=storage.checkpointer)
        assert (await graph.aget_state(config)).values == result


async def test_store_round_trip(storage: Storage) -> None:
    await storage.store.aput(("users", "u1"), "prefs", {"theme": "dark", "size": 3})
    await storage.store.aput(("users", "u2"), "prefs", {"theme": "light", "size": 5})
    item = await storage.store.aget(("users", "u1"), "prefs")
    assert item is not None
    assert item.value == {"theme": "dark", "size": 3}
    found = await storage.store.asearch(("users",), filter={"theme": "light"})
    assert [i.namespace for i in found] == [("users", "u2")]
    assert set(await storage.store.alist_namespaces(prefix=("users",))) == {
        ("users", "u1"),
        ("users", "u2"),
    }
    await storage.store.adelete(("users", "u1"), "prefs")
    assert await storage.store.aget(("users", "u1"), "prefs") is None


async def test_checkpoint_maintenance_on_a_real_graph(storage: Storage) -> None:
    graph = graph_builder().compile(checkpointer=storage.checkpointer)
    saver = storage.checkpointer
    a = {"configurable": {"thread_id": "a"}}
    await graph.ainvoke({"items": []}, {**a, "metadata": {"run_id": "run-1"}})
    await graph.ainvoke({"items": []}, {**a, "metadata": {"run_id": "run-2"}})

    await saver.acopy_thread("a", "b")
    b = {"configurable": {"thread_id": "b"}}
    assert (await graph.aget_state(b)).values == (await graph.aget_state(a)).values

    await saver.adelete_for_runs(["run-2"])
    assert {c.metadata.get("run_id") async for c in saver.alist(a)} == {"run-1"}
    # A copy keeps each checkpoint's run id, so the run's copies go too; run-1's stay.
    assert {c.metadata.get("run_id") async for c in saver.alist(b)} == {"run-1"}
    assert len([c async for c in saver.alist(b)]) == 4

    await saver.aprune(["b"], strategy="keep_latest")
    assert len([c async for c in saver.alist(b)]) == 1
    await saver.adelete_thread("b")
    assert [c async for c in saver.alist(b)] == []


async def test_a_database_from_a_newer_weft_is_refused(database_url: str) -> None:
    if database_url.endswith(":memory:"):
        pytest.skip("an in-memory database cannot be reopened")
    async with open_storage(database_url):
        pass
    newer = LATEST_VERSION + 1
    if database_url.startswith("sqlite"):
        import sqlite3

        conn = sqlite3.connect(database_url.removeprefix("sqlite:///"))
        conn.execute(
            "INSERT INTO weft_schema (version, description) VALUES (?, 'future')", (newer,)
        )
        conn.commit()
        conn.close()
    else:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO weft_schema (version, description) VALUES (%s, 'future')", (newer,)
            )
    with pytest.raises(SchemaVersionError) as raised:
        async with open_storage(database_url):
            pass
    message = str(raised.value)
    assert f"schema version {newer}" in message
    assert "written by a newer weft" in message


async def test_store_put_of_an_existing_key_keeps_its_created_at(storage: Storage) -> None:
    await storage.store.aput(("prefs",), "u1", {"theme": "dark"})
    first = await storage.store.aget(("prefs",), "u1")
    await asyncio.sleep(1.1)  # SQLite's timestamps have whole seconds
    await storage.store.aput(("prefs",), "u1", {"theme": "blue"})
    second = await storage.store.aget(("prefs",), "u1")
    assert first is not None
    assert second is not None
    assert second.value == {"theme": "blue"}
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert len(await storage.store.asearch(("prefs",))) == 1
