"""weft's Postgres storage, against a real server named by WEFT_TEST_POSTGRES_URL.

Each test that needs a clean database gets its own ``weft_test_<random>`` database, created
through the server's ``postgres`` database and dropped afterwards.
"""

from __future__ import annotations

import asyncio
import operator
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypedDict
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from psycopg import sql

from weft.errors import SchemaVersionError, StorageError
from weft.storage import open_storage, parse_url
from weft.storage.migrations import LATEST_VERSION, MIGRATIONS
from weft.storage.postgres import PostgresCheckpointer, PostgresStorage

BASE_URL = os.environ.get("WEFT_TEST_POSTGRES_URL", "")

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not BASE_URL, reason="set WEFT_TEST_POSTGRES_URL to run Postgres tests"),
]

WEFT_TABLES = {
    "assistants",
    "threads",
    "runs",
    "run_events",
    "sessions",
    "interactions",
    "crons",
    "weft_schema",
}
CHECKPOINT_TABLES = {
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
    "checkpoint_migrations",
}
STORE_TABLES = {"store", "store_migrations"}


def with_database(url: str, database: str, *, password: str | None = None) -> str:
    """``url`` pointing at another database (and, if given, carrying ``password``)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if password is not None:
        host = netloc.rpartition("@")[2]
        netloc = f"{parts.username or 'postgres'}:{password}@{host}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


ADMIN_URL = with_database(BASE_URL, "postgres") if BASE_URL else ""


def backends(database: str) -> int:
    """Connections to ``database`` other than this test's admin connections."""
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def wait_for_no_backends(database: str, timeout: float = 5.0) -> int:
    deadline = time.monotonic() + timeout
    while (n := backends(database)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return n


@pytest.fixture
def db_url(postgres_database: str) -> str:
    return postgres_database


@pytest.fixture
def db_name(postgres_database: str) -> str:
    return urlsplit(postgres_database).path.lstrip("/")


# --- opening and migrating -------------------------------------------------------------------


async def test_open_fresh_database_creates_every_table(db_url: str, db_name: str) -> None:
    async with open_storage(db_url) as storage:
        assert isinstance(storage, PostgresStorage)
        assert storage.dialect == "postgres"
        assert isinstance(storage.checkpointer, PostgresCheckpointer)
        tables = set(await storage.table_names())
        assert tables >= WEFT_TABLES | CHECKPOINT_TABLES | STORE_TABLES
        assert await storage.schema_version() == LATEST_VERSION
        assert await storage.integrity_check() == []

    async with open_storage(db_url, postgres_pool_size=1) as storage:
        assert isinstance(storage, PostgresStorage)
        assert set(await storage.table_names()) == tables
        assert await storage.schema_version() == LATEST_VERSION
        async with storage.pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM weft_schema")
            row = await cur.fetchone()
        assert row is not None
        assert row["n"] == len(MIGRATIONS)

    assert wait_for_no_backends(db_name) == 0, "the pool was left open"


OPEN_IN_SUBPROCESS = """
import asyncio, sys
from weft.storage import open_storage

async def main() -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    async with open_storage(sys.argv[1], postgres_pool_size=2) as storage:
        print("version", await storage.schema_version(), flush=True)

asyncio.run(main())
"""


@pytest.mark.slow
def test_concurrent_processes_migrate_once(db_url: str) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN_IN_SUBPROCESS, db_url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        # Every process has imported weft and waits; then all open at once.
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        results = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, err
        assert f"version {LATEST_VERSION}" in out

    with psycopg.connect(db_url) as conn:
        rows = conn.execute("SELECT version FROM weft_schema ORDER BY version").fetchall()
        assert [r[0] for r in rows] == [m.version for m in MIGRATIONS]
        (applied,) = conn.execute("SELECT count(*) FROM checkpoint_migrations").fetchone() or (0,)
        assert applied == len(PostgresCheckpointer.MIGRATIONS)


async def test_database_from_a_newer_weft_is_refused(db_url: str, db_name: str) -> None:
    async with open_storage(db_url):
        pass
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO weft_schema (version, description) VALUES (%s, 'from the future')",
            (LATEST_VERSION + 1,),
        )
    with pytest.raises(SchemaVersionError, match="newer weft") as info:
        async with open_storage(db_url):
            pytest.fail("opened a database written by a newer weft")
    assert parse_url(db_url).masked in str(info.value)
    assert wait_for_no_backends(db_name) == 0, "the pool was left open after the error"


# --- connection failures ---------------------------------------------------------------------


def assert_one_clean_error(error: StorageError, url: str) -> None:
    message = str(error)
    assert parse_url(url).masked in message
    assert "secret" not in message
    assert "***" in message
    assert "\n" not in message
    assert "Traceback" not in message
    assert isinstance(error.__cause__, psycopg.Error)


async def test_connection_refused_names_the_masked_url() -> None:
    url = "postgresql://postgres:secret@127.0.0.1:1/test"
    started = time.monotonic()
    with pytest.raises(StorageError, match="cannot connect to Postgres") as info:
        async with open_storage(url):
            pytest.fail("connected to port 1")
    assert time.monotonic() - started < 10
    assert_one_clean_error(info.value, url)
    assert "refused" in str(info.value).lower()
    assert "is the server running" in str(info.value)


async def test_missing_database_names_the_masked_url() -> None:
    missing = f"weft_test_missing_{uuid.uuid4().hex[:8]}"
    url = with_database(BASE_URL, missing, password="secret")
    with pytest.raises(StorageError, match="cannot connect to Postgres") as info:
        async with open_storage(url):
            pytest.fail("opened a database that does not exist")
    assert_one_clean_error(info.value, url)
    assert f'database "{missing}" does not exist' in str(info.value)


async def test_pool_size_must_be_positive(db_url: str) -> None:
    with pytest.raises(StorageError, match="at least 1"):
        async with open_storage(db_url, postgres_pool_size=0):
            pass


# --- the checkpointer ------------------------------------------------------------------------


async def test_conformance_every_capability(db_url: str) -> None:
    @checkpointer_test(name="weft-postgres")
    async def saver() -> AsyncIterator[BaseCheckpointSaver[str]]:
        async with open_storage(db_url) as storage:
            yield storage.checkpointer

    report = await validate(saver)
    failures = {k: r.failures for k, r in report.results.items() if r.passed is not True}
    if failures:
        report.print_report()
        print(failures)
    for capability in ALL_CAPABILITIES:
        result = report.results[capability.value]
        assert result.detected, f"{capability.value} not detected"
        assert result.passed, f"{capability.value}: {result.failures}"
        assert result.tests_passed > 0
        assert result.tests_failed == 0


class State(TypedDict):
    items: Annotated[list[str], operator.add]


def three_nodes() -> StateGraph[State]:
    async def a(state: State) -> dict[str, Any]:
        return {"items": ["a"]}

    async def b(state: State) -> dict[str, Any]:
        return {"items": ["b"]}

    async def c(state: State, runtime: Runtime[None]) -> dict[str, Any]:
        assert runtime.store is not None
        seen = await runtime.store.aget(("graph",), "runs")
        count = seen.value["count"] if seen else 0
        await runtime.store.aput(("graph",), "runs", {"count": count + 1})
        return {"items": ["c"]}

    builder: StateGraph[State] = StateGraph(State)
    builder.add_node("a", a)
    builder.add_node("b", b)
    builder.add_node("c", c)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder


def run_config(thread_id: str, run_id: str | None = None) -> RunnableConfig:
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    if run_id is not None:
        config["metadata"] = {"run_id": run_id}
    return config


async def test_real_graph_state_history_and_store(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        graph = three_nodes().compile(checkpointer=storage.checkpointer, store=storage.store)
        config = run_config(str(uuid.uuid4()))

        first = await graph.ainvoke({"items": []}, config)
        assert first["items"] == ["a", "b", "c"]
        per_run = len([s async for s in graph.aget_state_history(config)])
        assert per_run >= 4  # the input, then a step per node at least
        second = await graph.ainvoke({"items": []}, config)
        assert second["items"] == ["a", "b", "c", "a", "b", "c"]

        state = await graph.aget_state(config)
        assert state.values == {"items": ["a", "b", "c", "a", "b", "c"]}
        assert state.next == ()
        history = [s async for s in graph.aget_state_history(config)]
        assert history[0].values == state.values
        assert history[0].config == state.config
        assert {"items": ["a", "b", "c"]} in [s.values for s in history]
        ids = [s.config["configurable"]["checkpoint_id"] for s in history]
        assert ids == sorted(ids, reverse=True)
        assert len(set(ids)) == len(ids)
        assert len(history) == 2 * per_run

        item = await storage.store.aget(("graph",), "runs")
        assert item is not None
        assert item.value == {"count": 2}

        # The store on its own: put, get, search with a filter, delete.
        await storage.store.aput(("users", "u1"), "prefs", {"theme": "dark", "lang": "en"})
        await storage.store.aput(("users", "u2"), "prefs", {"theme": "light", "lang": "en"})
        got = await storage.store.aget(("users", "u1"), "prefs")
        assert got is not None
        assert got.value == {"theme": "dark", "lang": "en"}
        found = await storage.store.asearch(("users",), filter={"theme": "dark"})
        assert [(i.namespace, i.key) for i in found] == [(("users", "u1"), "prefs")]
        assert len(await storage.store.asearch(("users",))) == 2
        await storage.store.adelete(("users", "u1"), "prefs")
        assert await storage.store.aget(("users", "u1"), "prefs") is None

    # A new process-lifetime: everything is still there.
    async with open_storage(db_url) as storage:
        graph = three_nodes().compile(checkpointer=storage.checkpointer, store=storage.store)
        again = await graph.aget_state(config)
        assert again.values == state.values
        assert len([s async for s in graph.aget_state_history(config)]) == len(history)
        assert await storage.store.aget(("users", "u2"), "prefs") is not None


async def orphans(storage: PostgresStorage, thread_id: str) -> tuple[int, int]:
    """Blobs no checkpoint of their thread/namespace uses, and writes without a checkpoint."""
    async with storage.pool.connection() as conn:
        cur = await conn.execute(
            """
            SELECT count(*) AS n FROM checkpoint_blobs b
            WHERE b.thread_id = %s AND NOT EXISTS (
                SELECT 1 FROM checkpoints c
                WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns
                AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version
            )""",
            (thread_id,),
        )
        blobs = await cur.fetchone()
        cur = await conn.execute(
            """
            SELECT count(*) AS n FROM checkpoint_writes w
            WHERE w.thread_id = %s AND NOT EXISTS (
                SELECT 1 FROM checkpoints c
                WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns
                AND c.checkpoint_id = w.checkpoint_id
            )""",
            (thread_id,),
        )
        writes = await cur.fetchone()
    assert blobs is not None
    assert writes is not None
    return int(blobs["n"]), int(writes["n"])


async def test_copy_thread_on_a_real_graph(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        assert isinstance(storage, PostgresStorage)
        graph = three_nodes().compile(checkpointer=storage.checkpointer, store=storage.store)
        source, target = str(uuid.uuid4()), str(uuid.uuid4())
        await graph.ainvoke({"items": []}, run_config(source, str(uuid.uuid4())))
        await graph.ainvoke({"items": []}, run_config(source, str(uuid.uuid4())))

        await storage.checkpointer.acopy_thread(source, target)

        src = await graph.aget_state(run_config(source))
        dst = await graph.aget_state(run_config(target))
        assert dst.values == src.values == {"items": ["a", "b", "c"] * 2}
        assert dst.next == src.next
        assert dst.metadata == src.metadata
        assert dst.config["configurable"]["thread_id"] == target
        src_history = [s async for s in graph.aget_state_history(run_config(source))]
        dst_history = [s async for s in graph.aget_state_history(run_config(target))]
        assert [s.values for s in dst_history] == [s.values for s in src_history]
        assert [s.config["configurable"]["checkpoint_id"] for s in dst_history] == [
            s.config["configurable"]["checkpoint_id"] for s in src_history
        ]

        # The copy is a thread of its own: running on it leaves the source alone.
        await graph.ainvoke({"items": []}, run_config(target))
        assert (await graph.aget_state(run_config(target))).values["items"] == ["a", "b", "c"] * 3
        assert (await graph.aget_state(run_config(source))).values == src.values

        # The sync bridge, from another thread; refused on the saver's own loop.
        other = str(uuid.uuid4())
        await asyncio.to_thread(storage.checkpointer.copy_thread, source, other)
        assert (await graph.aget_state(run_config(other))).values == src.values
        with pytest.raises(asyncio.InvalidStateError, match="acopy_thread"):
            storage.checkpointer.copy_thread(source, str(uuid.uuid4()))


async def test_delete_for_runs_on_a_real_graph(db_url: str) -> None:
    async with open_storage(db_url) as storage:
        assert isinstance(storage, PostgresStorage)
        graph = three_nodes().compile(checkpointer=storage.checkpointer, store=storage.store)
        thread = str(uuid.uuid4())
        run1, run2 = str(uuid.uuid4()), str(uuid.uuid4())
        await graph.ainvoke({"items": []}, run_config(thread, run1))
        await graph.ainvoke({"items": []}, run_config(thread, run2))
        before = [s async for s in graph.aget_state_history(run_config(thread))]
        by_run = {
            r: [s for s in before if (s.metadata or {}).get("run_id") == r] for r in (run1, run2)
        }
        assert by_run[run1]
        assert by_run[run2]
        assert len(by_run[run1]) + len(by_run[run2]) == len(before)

        await storage.checkpointer.adelete_for_runs([run1])

        after = [s async for s in graph.aget_state_history(run_config(thread))]
        assert {(s.metadata or {}).get("run_id") for s in after} == {run2}
        assert [s.config for s in after] == [s.config for s in by_run[run2]]
        assert [s.values for s in after] == [s.values for s in by_run[run2]]
        latest = await graph.aget_state(run_config(thread))
        assert latest.values == {"items": ["a", "b", "c"] * 2}
        assert await orphans(storage, thread) == (0, 0)

        # No-ops: nothing, an unknown run, an empty list.
        await storage.checkpointer.adelete_for_runs([])
        await storage.checkpointer.adelete_for_runs([str(uuid.uuid4())])
        assert len([s async for s in graph.aget_state_history(run_config(thread))]) == len(after)
        with pytest.raises(TypeError):
            await storage.checkpointer.adelete_for_runs(run2)

        # The sync bridge removes the other run, and with it every row of the thread.
        await asyncio.to_thread(storage.checkpointer.delete_for_runs, [run2])
        assert [s async for s in graph.aget_state_history(run_config(thread))] == []
        async with storage.pool.connection() as conn:
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
                cur = await conn.execute(
                    sql.SQL("SELECT count(*) AS n FROM {} WHERE thread_id = %s").format(
                        sql.Identifier(table)
                    ),
                    (thread,),
                )
                row = await cur.fetchone()
                assert row is not None
                assert row["n"] == 0, table
        with pytest.raises(asyncio.InvalidStateError, match="adelete_for_runs"):
            storage.checkpointer.delete_for_runs([run2])
