"""Threads and sessions on Postgres: concurrency, the blob copy of a branch, the metadata
index, and branches/rollbacks resumed by a real LangGraph graph.

Each test gets its own ``weft_test_<random>`` database (see ``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import operator
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, TypedDict

import psycopg
import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command, interrupt
from psycopg.types.json import Jsonb

from weft.errors import ConflictError
from weft.schema import Session, Thread
from weft.storage import open_storage
from weft.storage.base import ThreadPatch, ThreadQuery
from weft.storage.postgres import PostgresStorage
from weft.storage.postgres_threads import _where

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("WEFT_TEST_POSTGRES_URL"),
        reason="set WEFT_TEST_POSTGRES_URL to run Postgres tests",
    ),
]


@pytest.fixture
async def pg(postgres_database: str) -> AsyncIterator[PostgresStorage]:
    async with open_storage(postgres_database) as storage:
        assert isinstance(storage, PostgresStorage)
        yield storage


def now() -> datetime:
    return datetime.now(UTC)


def new_thread(**fields: Any) -> Thread:
    t = now()
    return Thread(thread_id=str(uuid.uuid4()), created_at=t, updated_at=t, **fields)


def new_session(**fields: Any) -> Session:
    t = now()
    return Session(session_id=str(uuid.uuid4()), created_at=t, updated_at=t, **fields)


def config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


class State(TypedDict):
    items: Annotated[list[str], operator.add]


def asking_graph() -> StateGraph[State]:
    """a -> b (asks a question with ``interrupt``) -> c."""

    def a(state: State) -> dict[str, Any]:
        return {"items": ["a"]}

    def b(state: State) -> dict[str, Any]:
        answer = interrupt("continue?")
        return {"items": [f"b:{answer}"]}

    def c(state: State) -> dict[str, Any]:
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


async def rows(storage: PostgresStorage, sql: str, *params: Any) -> list[dict[str, Any]]:
    async with storage.pool.connection() as conn:
        cur = await conn.execute(sql, params)
        return [dict(r) for r in await cur.fetchall()]


async def blob_keys(storage: PostgresStorage, thread_id: str) -> set[tuple[str, str, str]]:
    found = await rows(
        storage,
        "SELECT checkpoint_ns, channel, version FROM checkpoint_blobs WHERE thread_id = %s",
        thread_id,
    )
    return {(r["checkpoint_ns"], r["channel"], r["version"]) for r in found}


# --- sessions under concurrency ---------------------------------------------------------------


async def test_concurrent_appends_from_several_connections_never_collide(
    postgres_database: str,
) -> None:
    async with (
        open_storage(postgres_database, postgres_pool_size=8) as one,
        open_storage(postgres_database, postgres_pool_size=8) as two,
    ):
        session = await one.put_session(new_session())
        sid = session.session_id

        async def append(storage: Any, i: int) -> int:
            entry = await storage.append_interaction(
                sid,
                kind="note",
                content={"i": i},
                metadata={},
                created_at=now(),
            )
            return int(entry.seq)

        seqs = await asyncio.gather(*(append(one if i % 2 else two, i) for i in range(40)))
        assert sorted(seqs) == list(range(1, 41))
        log = await two.list_interactions(sid, limit=100)
        assert [e.seq for e in log] == list(range(1, 41))
        assert sorted(e.content["i"] for e in log) == list(range(40))


async def test_concurrent_state_writers_exactly_one_wins(postgres_database: str) -> None:
    async with (
        open_storage(postgres_database) as one,
        open_storage(postgres_database) as two,
    ):
        sid = (await one.put_session(new_session())).session_id
        # Hold the row so that both writers read the same version and queue behind it.
        with psycopg.connect(postgres_database) as blocker:
            blocker.execute("SELECT 1 FROM sessions WHERE session_id = %s FOR UPDATE", (sid,))
            writers = [
                asyncio.ensure_future(
                    s.set_session_state(sid, {"by": name}, expected_version=0, updated_at=now())
                )
                for s, name in ((one, "one"), (two, "two"))
            ]
            await asyncio.sleep(0.3)
            assert not any(w.done() for w in writers), "the writers did not wait for the lock"
            blocker.commit()
        results = await asyncio.gather(*writers, return_exceptions=True)
        won = [r for r in results if isinstance(r, Session)]
        lost = [r for r in results if isinstance(r, ConflictError)]
        assert len(won) == 1, results
        assert len(lost) == 1, results
        assert str(lost[0]) == f"session {sid} state changed (version 0 -> 1)"
        stored = await two.get_session(sid)
        assert stored.state_version == 1
        assert stored.state == won[0].state


async def test_concurrent_threads_with_one_name_in_a_session(postgres_database: str) -> None:
    async with (
        open_storage(postgres_database) as one,
        open_storage(postgres_database) as two,
    ):
        sid = (await one.put_session(new_session())).session_id
        # Both pass the session check together once the blocker lets go of the row.
        with psycopg.connect(postgres_database) as blocker:
            blocker.execute("SELECT 1 FROM sessions WHERE session_id = %s FOR UPDATE", (sid,))
            writers = [
                asyncio.ensure_future(s.put_thread(new_thread(session_id=sid, name="plan")))
                for s in (one, two)
            ]
            await asyncio.sleep(0.2)
            blocker.commit()
        results = await asyncio.gather(*writers, return_exceptions=True)
        assert sum(isinstance(r, Thread) for r in results) == 1, results
        (lost,) = [r for r in results if isinstance(r, ConflictError)]
        assert str(lost) == f"a thread named 'plan' already exists in session {sid}"
        assert await one.count_threads(ThreadQuery(session_id=sid)) == 1


async def test_compare_and_set_loses_no_update(pg: PostgresStorage) -> None:
    sid = (await pg.put_session(new_session(state={"n": 0}))).session_id

    async def increment() -> None:
        while True:
            current = await pg.get_session(sid)
            try:
                await pg.set_session_state(
                    sid,
                    {"n": current.state["n"] + 1},
                    expected_version=current.state_version,
                    updated_at=now(),
                )
                return
            except ConflictError:
                await asyncio.sleep(0)

    await asyncio.gather(*(increment() for _ in range(25)))
    final = await pg.get_session(sid)
    assert final.state == {"n": 25}
    assert final.state_version == 25


# --- branch: one checkpoint, the blobs of its channel versions, its pending writes -------------


async def test_branch_copies_only_the_blobs_of_the_chosen_checkpoint(pg: PostgresStorage) -> None:
    graph = asking_graph().compile(checkpointer=pg.checkpointer)
    source = await pg.put_thread(new_thread())
    cfg = config(source.thread_id)
    for answer in ("one", "two", "three"):
        await graph.ainvoke({"items": []}, cfg)
        await graph.ainvoke(Command(resume=answer), cfg)
    history = [s async for s in graph.aget_state_history(cfg)]
    assert (await pg.get_thread(source.thread_id)).counts.checkpoints == len(history)

    # A checkpoint in the middle of the history, waiting at b's question.
    middle = next(s for s in history[len(history) // 2 :] if s.next == ("b",))
    checkpoint_id = middle.config["configurable"]["checkpoint_id"]
    (row,) = await rows(
        pg,
        "SELECT checkpoint -> 'channel_versions' AS versions FROM checkpoints "
        "WHERE thread_id = %s AND checkpoint_ns = '' AND checkpoint_id = %s",
        source.thread_id,
        checkpoint_id,
    )
    source_blobs = await blob_keys(pg, source.thread_id)
    wanted = {("", ch, str(v)) for ch, v in row["versions"].items()} & source_blobs
    assert wanted
    assert len(source_blobs) > len(wanted)
    (writes,) = await rows(
        pg,
        "SELECT count(*) AS n, count(*) FILTER (WHERE channel = '__interrupt__') AS asked "
        "FROM checkpoint_writes WHERE thread_id = %s AND checkpoint_id = %s",
        source.thread_id,
        checkpoint_id,
    )
    assert writes["n"] > writes["asked"] > 0  # b's interrupt, then what the source did next

    branch = await pg.branch_thread(
        new_thread(kind="branch", parent_thread_id=source.thread_id),
        checkpoint_id=checkpoint_id,
    )

    assert await blob_keys(pg, branch.thread_id) == wanted
    copied = await rows(
        pg,
        "SELECT checkpoint_id, parent_checkpoint_id FROM checkpoints WHERE thread_id = %s",
        branch.thread_id,
    )
    assert copied == [{"checkpoint_id": checkpoint_id, "parent_checkpoint_id": None}]
    (branch_writes,) = await rows(
        pg,
        "SELECT count(*) AS n FROM checkpoint_writes WHERE thread_id = %s",
        branch.thread_id,
    )
    assert branch_writes["n"] == writes["asked"]  # an older checkpoint: only its interrupts
    assert branch.counts.checkpoints == 1
    assert (await pg.get_thread(source.thread_id)).counts.branches == 1
    # The source lost nothing.
    assert await blob_keys(pg, source.thread_id) == source_blobs


async def test_branch_resumed_by_a_real_graph_continues_from_the_copied_state(
    pg: PostgresStorage,
) -> None:
    graph = asking_graph().compile(checkpointer=pg.checkpointer)
    source = await pg.put_thread(new_thread())
    cfg = config(source.thread_id)
    await graph.ainvoke({"items": []}, cfg)  # a ran; b asks
    asking = await graph.aget_state(cfg)
    assert asking.next == ("b",)
    checkpoint_id = asking.config["configurable"]["checkpoint_id"]

    branch = await pg.branch_thread(
        new_thread(kind="branch", parent_thread_id=source.thread_id, values=asking.values),
        checkpoint_id=checkpoint_id,
    )
    bcfg = config(branch.thread_id)
    copied = await graph.aget_state(bcfg)
    assert copied.values == {"items": ["a"]}
    assert copied.next == ("b",)
    assert [i.value for i in copied.interrupts] == ["continue?"]  # a copied pending write

    # The branch answers the question its own way; the source is still asking.
    result = await graph.ainvoke(Command(resume="branch"), bcfg)
    assert result == {"items": ["a", "b:branch", "c"]}
    assert (await graph.aget_state(cfg)).next == ("b",)
    result = await graph.ainvoke(Command(resume="source"), cfg)
    assert result == {"items": ["a", "b:source", "c"]}
    history = [s async for s in graph.aget_state_history(bcfg)]
    assert history[-1].config["configurable"]["checkpoint_id"] == checkpoint_id
    assert (await pg.get_thread(branch.thread_id)).counts.checkpoints == len(history)

    # Branched again after the source answered: only the interrupt comes along (not the
    # source's answer), so the branch asks again and can take another path.
    late = await pg.branch_thread(
        new_thread(kind="branch", parent_thread_id=source.thread_id),
        checkpoint_id=checkpoint_id,
    )
    lcfg = config(late.thread_id)
    assert (await graph.aget_state(lcfg)).next == ("b",)
    assert await graph.ainvoke(Command(resume="late"), lcfg) == {"items": ["a", "b:late", "c"]}
    assert (await pg.get_thread(source.thread_id)).counts.branches == 2


async def test_rollback_resumed_by_a_real_graph(pg: PostgresStorage) -> None:
    graph = asking_graph().compile(checkpointer=pg.checkpointer)
    thread = await pg.put_thread(new_thread())
    cfg = config(thread.thread_id)
    await graph.ainvoke({"items": []}, cfg)
    asking = await graph.aget_state(cfg)
    await graph.ainvoke(Command(resume="first"), cfg)
    old_head = (await graph.aget_state(cfg)).config["configurable"]["checkpoint_id"]
    before = (await pg.get_thread(thread.thread_id)).counts.checkpoints

    target = asking.config["configurable"]["checkpoint_id"]
    new_id = str(uuid.uuid4())  # any ID that sorts after the head
    new_id = "f" + new_id[1:]
    rolled = await pg.rollback_thread(
        thread.thread_id,
        checkpoint_id=target,
        new_checkpoint_id=new_id,
        patch=ThreadPatch(updated_at=now(), values={"items": ["a"]}),
    )
    assert rolled.counts.checkpoints == before + 1
    assert [(r.from_, r.to, r.at) for r in rolled.rollbacks] == [(old_head, target, new_id)]
    assert rolled.values == {"items": ["a"]}

    head = await graph.aget_state(cfg)
    assert head.config["configurable"]["checkpoint_id"] == new_id
    assert head.parent_config is not None
    assert head.parent_config["configurable"]["checkpoint_id"] == target
    assert head.values == {"items": ["a"]}
    assert head.next == ("b",)
    assert head.metadata is not None
    assert head.metadata["source"] == "rollback"
    assert head.metadata["rollback"] == {"from": old_head, "to": target}

    result = await graph.ainvoke(Command(resume="second"), cfg)
    assert result == {"items": ["a", "b:second", "c"]}


async def test_copy_thread_copies_every_checkpoint_for_a_real_graph(pg: PostgresStorage) -> None:
    graph = asking_graph().compile(checkpointer=pg.checkpointer)
    source = await pg.put_thread(new_thread())
    cfg = config(source.thread_id)
    await graph.ainvoke({"items": []}, cfg)
    await graph.ainvoke(Command(resume="x"), cfg)
    fork = await pg.copy_thread(
        new_thread(kind="fork", parent_thread_id=source.thread_id),
        source_thread_id=source.thread_id,
    )
    src = [s async for s in graph.aget_state_history(cfg)]
    dst = [s async for s in graph.aget_state_history(config(fork.thread_id))]
    assert [s.values for s in dst] == [s.values for s in src]
    assert fork.counts.checkpoints == len(src)
    assert await blob_keys(pg, fork.thread_id) == await blob_keys(pg, source.thread_id)


async def test_keep_latest_leaves_the_head_and_only_its_blobs(pg: PostgresStorage) -> None:
    graph = asking_graph().compile(checkpointer=pg.checkpointer)
    thread = await pg.put_thread(new_thread())
    cfg = config(thread.thread_id)
    for answer in ("one", "two"):
        await graph.ainvoke({"items": []}, cfg)
        await graph.ainvoke(Command(resume=answer), cfg)
    await graph.ainvoke({"items": []}, cfg)  # waiting at b: the head has pending writes
    head = await graph.aget_state(cfg)

    assert await pg.prune_threads([thread.thread_id], strategy="keep_latest") == 1

    (row,) = await rows(
        pg,
        "SELECT checkpoint -> 'channel_versions' AS versions FROM checkpoints WHERE thread_id = %s",
        thread.thread_id,
    )
    assert await blob_keys(pg, thread.thread_id) <= {
        ("", ch, str(v)) for ch, v in row["versions"].items()
    }
    assert (await pg.get_thread(thread.thread_id)).counts.checkpoints == 1
    after = await graph.aget_state(cfg)
    assert after.values == head.values
    assert after.next == ("b",)
    result = await graph.ainvoke(Command(resume="three"), cfg)
    assert result["items"][-2:] == ["b:three", "c"]


# --- the metadata index -----------------------------------------------------------------------


async def test_metadata_search_uses_the_gin_index(pg: PostgresStorage) -> None:
    async with pg.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO threads (thread_id, metadata, config, status, interrupts, lifecycle, "
            "kind) SELECT 't' || i, jsonb_build_object('user', 'u' || (i % 500), 'n', i), "
            "'{}', 'idle', '{}', 'active', 'main' FROM generate_series(1, 5000) AS i"
        )
        await conn.execute("ANALYZE threads")
    query = ThreadQuery(metadata={"user": "u7"})
    found = await pg.search_threads(query, limit=100)
    assert len(found) == 10
    assert all(t.metadata["user"] == "u7" for t in found)
    assert await pg.count_threads(query) == 10

    where, params = _where(query)
    async with pg.pool.connection() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        cur = await conn.execute(f"EXPLAIN SELECT thread_id FROM threads WHERE {where}", params)
        plan = "\n".join(str(r["QUERY PLAN"]) for r in await cur.fetchall())
    assert "threads_metadata" in plan, plan


# --- doctor -----------------------------------------------------------------------------------


async def test_doctor_finds_and_repairs(pg: PostgresStorage) -> None:
    graph = asking_graph().compile(checkpointer=pg.checkpointer)
    orphan = str(uuid.uuid4())
    await graph.ainvoke(
        {"items": []},
        {"configurable": {"thread_id": orphan}, "metadata": {"graph_id": "asker"}},
    )
    kept = await pg.put_thread(new_thread())
    child = await pg.put_thread(new_thread(kind="fork", parent_thread_id=str(uuid.uuid4())))
    async with pg.pool.connection() as conn:
        await conn.execute(
            "UPDATE threads SET count_checkpoints = 3, count_runs = 2 WHERE thread_id = %s",
            (kept.thread_id,),
        )
        await conn.execute(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status, metadata, kwargs, "
            "multitask_strategy) VALUES (%s, %s, 'a', 'success', %s, %s, 'reject')",
            (str(uuid.uuid4()), kept.thread_id, Jsonb({}), Jsonb({})),
        )

    found = await pg.doctor()
    assert {(f.problem, f.thread_id, f.repaired) for f in found} == {
        ("orphan_checkpoints", orphan, False),
        ("missing_parent", child.thread_id, False),
        ("wrong_counts", kept.thread_id, False),
    }
    wrong = next(f for f in found if f.problem == "wrong_counts")
    assert wrong.detail == "count_checkpoints is 3, rows say 0; count_runs is 3, rows say 1"

    repaired = await pg.doctor(repair=True)
    assert {(f.problem, f.repaired) for f in repaired} == {
        ("orphan_checkpoints", True),
        ("missing_parent", True),
        ("wrong_counts", True),
    }
    assert await pg.doctor() == []
    adopted = await pg.get_thread(orphan)
    assert adopted.kind == "main"
    assert adopted.graph_id == "asker"
    assert adopted.metadata == {"graph_id": "asker"}
    history = [s async for s in graph.aget_state_history(config(orphan))]
    assert adopted.counts.checkpoints == len(history)
    assert (await pg.get_thread(child.thread_id)).parent_thread_id is None
    fixed = await pg.get_thread(kept.thread_id)
    assert (fixed.counts.checkpoints, fixed.counts.runs) == (0, 1)
