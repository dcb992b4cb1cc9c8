"""The thread and doctor methods of Storage, on every backend (SQLite file and memory, Postgres).

Checkpoints are written the way LangGraph writes them: by a compiled graph whose
checkpointer is ``storage.checkpointer``, or by ``checkpointer.aput``/``aput_writes``.
Inconsistencies for the doctor are made with raw SQL through the backend's own connection.
"""

from __future__ import annotations

import operator
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypedDict

import pytest
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.base.id import uuid6
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from weft.errors import ConflictError, NotFoundError, UnprocessableEntityError
from weft.schema import Run, Session, Thread, ThreadCounts
from weft.storage import Storage
from weft.storage.base import DoctorFinding, ThreadPatch, ThreadQuery

T0 = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


# --- helpers (the session suite imports them too) ----------------------------------------------


def make_thread(*, thread_id: str | None = None, at: datetime = T0, **fields: Any) -> Thread:
    return Thread(thread_id=thread_id or str(uuid.uuid4()), created_at=at, updated_at=at, **fields)


def make_session(*, session_id: str | None = None, at: datetime = T0, **fields: Any) -> Session:
    return Session(
        session_id=session_id or str(uuid.uuid4()), created_at=at, updated_at=at, **fields
    )


def _pg(sql: str) -> str:
    return sql.replace("?", "%s")


async def execute(
    storage: Storage, sql: str, params: tuple[Any, ...] = (), *, foreign_keys: bool = True
) -> None:
    """Raw SQL through the backend's own connection (``?`` placeholders on both)."""
    if storage.dialect == "sqlite":
        if foreign_keys:

            def write(conn: sqlite3.Connection) -> None:
                conn.execute(sql, params)

            await storage.engine.write(write)  # type: ignore[attr-defined]
            return

        def alone(conn: sqlite3.Connection) -> None:  # PRAGMA foreign_keys needs autocommit
            conn.execute("PRAGMA foreign_keys=OFF")
            try:
                conn.execute(sql, params)
            finally:
                conn.execute("PRAGMA foreign_keys=ON")

        await storage.engine.write_alone(alone)  # type: ignore[attr-defined]
        return
    async with storage.pool.connection() as conn, conn.transaction():  # type: ignore[attr-defined]
        if not foreign_keys:
            await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(_pg(sql), params)


async def scalar(storage: Storage, sql: str, params: tuple[Any, ...] = ()) -> Any:
    if storage.dialect == "sqlite":
        return await storage.engine.read(  # type: ignore[attr-defined]
            lambda conn: conn.execute(sql, params).fetchone()[0]
        )
    async with storage.pool.connection() as conn:  # type: ignore[attr-defined]
        cur = await conn.execute(_pg(sql), params)
        row = await cur.fetchone()
        return next(iter(row.values()))


async def insert_run(storage: Storage, thread_id: str) -> str:
    """A run of the thread, admitted and ended as the run engine records one."""
    now = datetime.now(UTC)
    run_id = str(uuid.uuid4())
    await storage.admit(
        Run(run_id=run_id, thread_id=thread_id, assistant_id="agent", created_at=now,
            updated_at=now),
        claim=True,
    )  # fmt: skip
    await storage.finish(run_id, status="success", error=None, ended_at=now)
    return run_id


class State(TypedDict):
    n: int
    log: Annotated[list[str], operator.add]


def graph(storage: Storage) -> CompiledStateGraph[Any, Any, Any, Any]:
    builder = StateGraph(State)
    builder.add_node("step", lambda s: {"n": s["n"] + 1, "log": [f"step{s['n']}"]})
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    return builder.compile(checkpointer=storage.checkpointer)


def config(thread_id: str, checkpoint_id: str | None = None) -> RunnableConfig:
    conf: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if checkpoint_id is not None:
        conf["checkpoint_id"] = checkpoint_id
    return {"configurable": conf}


async def run(storage: Storage, thread_id: str, n: int = 0) -> dict[str, Any]:
    """One invocation: three root checkpoints (input, loop, loop)."""
    result: dict[str, Any] = await graph(storage).ainvoke(
        {"n": n, "log": []}, {"configurable": {"thread_id": thread_id}}
    )
    return result


async def root_checkpoints(storage: Storage, thread_id: str) -> list[str]:
    """The thread's root checkpoint IDs, newest first."""
    return [
        t.config["configurable"]["checkpoint_id"]
        async for t in storage.checkpointer.alist(config(thread_id))
    ]


async def put_checkpoint(
    storage: Storage, thread_id: str, *, ns: str = "", metadata: dict[str, Any] | None = None
) -> str:
    checkpoint = empty_checkpoint()
    checkpoint["id"] = str(uuid6())
    await storage.checkpointer.aput(
        {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns}},
        checkpoint,
        metadata or {},  # type: ignore[arg-type]
        {},
    )
    return checkpoint["id"]


# --- create, read, update, delete ---------------------------------------------------------------


async def test_put_then_get_round_trips_every_field(storage: Storage) -> None:
    original = make_thread(
        state_updated_at=T0 + timedelta(seconds=1),
        metadata={"user": "ünï", "n": 1, "nested": {"deep": [1, "x", None]}},
        config={"configurable": {"model": "fake"}},
        status="interrupted",
        values={"messages": [{"type": "human", "content": "hi"}]},
        interrupts={"task": [{"value": "ask", "id": "i1"}]},
        lifecycle="paused",
        graph_id="agent",
        name="first",
        source_checkpoint_id="cp",
        owner="alice",
        counts=ThreadCounts(messages=9, checkpoints=9, branches=9, runs=9),
    )
    stored = await storage.put_thread(original)
    expected = original.model_copy(update={"counts": ThreadCounts()})
    assert stored == expected
    got = await storage.get_thread(original.thread_id)
    assert got == expected
    assert got.created_at == T0
    assert got.rollbacks == ()
    assert await storage.get_thread(original.thread_id, owner="alice") == expected


async def test_defaults_round_trip(storage: Storage) -> None:
    t = make_thread()
    await storage.put_thread(t)
    got = await storage.get_thread(t.thread_id)
    assert got == t
    assert got.values is None
    assert got.state_updated_at is None


async def test_put_an_existing_id(storage: Storage) -> None:
    first = make_thread(owner="alice", metadata={"v": 1})
    await storage.put_thread(first)
    with pytest.raises(ConflictError) as e:
        await storage.put_thread(first.model_copy(update={"metadata": {"v": 2}}))
    assert str(e.value) == f"thread {first.thread_id} already exists"
    again = await storage.put_thread(
        first.model_copy(update={"metadata": {"v": 2}}), if_exists="do_nothing"
    )
    assert again == first
    with pytest.raises(ConflictError):
        await storage.put_thread(first.model_copy(update={"owner": "bob"}), if_exists="do_nothing")


async def test_missing_and_unseen_threads_are_not_found(storage: Storage) -> None:
    t = make_thread(owner="alice")
    await storage.put_thread(t)
    shared = make_thread()
    await storage.put_thread(shared)
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as e:
        await storage.get_thread(missing)
    assert str(e.value) == f"thread {missing} not found"
    with pytest.raises(NotFoundError) as e:
        await storage.get_thread(t.thread_id, owner="bob")
    assert str(e.value) == f"thread {t.thread_id} not found"
    assert (await storage.get_thread(shared.thread_id, owner="bob")) == shared
    with pytest.raises(NotFoundError):
        await storage.update_thread(t.thread_id, ThreadPatch(updated_at=T0), owner="bob")
    with pytest.raises(NotFoundError):
        await storage.delete_thread(t.thread_id, owner="bob")
    with pytest.raises(NotFoundError):
        await storage.delete_thread(missing)
    assert await storage.get_thread(t.thread_id) == t


async def test_session_membership(storage: Storage) -> None:
    s = await storage.put_session(make_session(owner="alice"))
    missing = str(uuid.uuid4())
    orphan = make_thread(session_id=missing, name="x")
    with pytest.raises(NotFoundError) as e:
        await storage.put_thread(orphan)
    assert str(e.value) == f"session {missing} not found"
    with pytest.raises(NotFoundError):
        await storage.get_thread(orphan.thread_id)

    unseen = make_thread(session_id=s.session_id, owner="bob")
    with pytest.raises(NotFoundError) as e:
        await storage.put_thread(unseen)
    assert str(e.value) == f"session {s.session_id} not found"

    first = await storage.put_thread(make_thread(session_id=s.session_id, name="plan"))
    assert first.session_id == s.session_id
    duplicate = make_thread(session_id=s.session_id, name="plan")
    with pytest.raises(ConflictError) as e:
        await storage.put_thread(duplicate)
    assert str(e.value) == f"a thread named 'plan' already exists in session {s.session_id}"
    with pytest.raises(NotFoundError):
        await storage.get_thread(duplicate.thread_id)
    assert await storage.count_threads(ThreadQuery(session_id=s.session_id)) == 1

    # Unnamed threads, the same name in another session or outside any: all fine.
    await storage.put_thread(make_thread(session_id=s.session_id))
    await storage.put_thread(make_thread(session_id=s.session_id))
    other = await storage.put_session(make_session())
    await storage.put_thread(make_thread(session_id=other.session_id, name="plan"))
    await storage.put_thread(make_thread(name="plan"))
    await storage.put_thread(make_thread(name="plan"))
    assert await storage.count_threads(ThreadQuery(session_id=s.session_id)) == 3
    assert await storage.count_threads(ThreadQuery()) == 6

    # Renaming into a taken name is refused too.
    second = await storage.put_thread(make_thread(session_id=s.session_id, name="review"))
    with pytest.raises(ConflictError) as e:
        await storage.update_thread(second.thread_id, ThreadPatch(updated_at=T0, name="plan"))
    assert str(e.value) == f"a thread named 'plan' already exists in session {s.session_id}"
    renamed = await storage.update_thread(
        second.thread_id, ThreadPatch(updated_at=T0, name="review2")
    )
    assert renamed.name == "review2"


async def test_update_sets_given_fields_and_merges_metadata(storage: Storage) -> None:
    t = make_thread(metadata={"a": 1, "b": {"x": 1}}, graph_id="agent", name="n")
    await storage.put_thread(t)
    later = T0 + timedelta(minutes=5)
    updated = await storage.update_thread(
        t.thread_id, ThreadPatch(updated_at=later, metadata={"b": {"y": 2}, "c": "new"})
    )
    assert updated.metadata == {"a": 1, "b": {"y": 2}, "c": "new"}
    assert updated.updated_at == later
    assert updated.graph_id == "agent"
    assert updated.name == "n"
    assert updated.status == "idle"
    assert updated.values is None

    state_at = T0 + timedelta(minutes=6)
    updated = await storage.update_thread(
        t.thread_id,
        ThreadPatch(
            updated_at=state_at,
            name="renamed",
            graph_id="other",
            status="busy",
            values={"messages": [1, 2, 3]},
            interrupts={"t": [{"value": 1}]},
            messages=3,
            state_updated_at=state_at,
        ),
    )
    assert updated.name == "renamed"
    assert updated.graph_id == "other"
    assert updated.status == "busy"
    assert updated.values == {"messages": [1, 2, 3]}
    assert updated.interrupts == {"t": [{"value": 1}]}
    assert updated.counts.messages == 3
    assert updated.state_updated_at == state_at
    assert updated.metadata == {"a": 1, "b": {"y": 2}, "c": "new"}
    assert await storage.get_thread(t.thread_id) == updated


@pytest.mark.parametrize(
    ("path", "refused", "allowed_text"),
    [
        (["paused", "active", "completed", "active", "archived"], "active", "none: it is final"),
        (["paused"], "completed", "active"),
        (["completed"], "paused", "active"),
        (["failed"], "active", "none: it is final"),
        (["branched"], "paused", "none: it is final"),
    ],
)
async def test_lifecycle_moves(
    storage: Storage, path: list[str], refused: str, allowed_text: str
) -> None:
    t = make_thread()
    await storage.put_thread(t)
    for target in path:
        moved = await storage.update_thread(
            t.thread_id,
            ThreadPatch(updated_at=T0, lifecycle=target),  # type: ignore[arg-type]
        )
        assert moved.lifecycle == target
    # Moving to the current lifecycle is allowed and changes nothing.
    same = await storage.update_thread(
        t.thread_id,
        ThreadPatch(updated_at=T0, lifecycle=path[-1]),  # type: ignore[arg-type]
    )
    assert same.lifecycle == path[-1]
    with pytest.raises(ConflictError) as e:
        await storage.update_thread(
            t.thread_id,
            ThreadPatch(updated_at=T0 + timedelta(days=1), lifecycle=refused, metadata={"x": 1}),  # type: ignore[arg-type]
        )
    assert str(e.value) == (
        f"thread {t.thread_id} cannot move from lifecycle {path[-1]!r} to {refused!r}; "
        f"allowed from {path[-1]!r}: {allowed_text}"
    )
    after = await storage.get_thread(t.thread_id)
    assert after.lifecycle == path[-1]
    assert after.metadata == {}
    assert after.updated_at == T0


async def test_unknown_lifecycle_is_unprocessable(storage: Storage) -> None:
    t = make_thread()
    await storage.put_thread(t)
    with pytest.raises(UnprocessableEntityError):
        await storage.update_thread(
            t.thread_id,
            ThreadPatch(updated_at=T0, lifecycle="gone"),  # type: ignore[arg-type]
        )


async def test_delete_removes_checkpoints_writes_runs_and_crons(storage: Storage) -> None:
    t = make_thread()
    await storage.put_thread(t)
    await run(storage, t.thread_id)
    await put_checkpoint(storage, t.thread_id, ns="child:1")
    await insert_run(storage, t.thread_id)
    await execute(
        storage,
        "INSERT INTO crons (cron_id, assistant_id, thread_id, schedule, payload, metadata) "
        "VALUES (?, 'agent', ?, '* * * * *', '{}', '{}')",
        (str(uuid.uuid4()), t.thread_id),
    )
    child = await storage.put_thread(make_thread(kind="fork", parent_thread_id=t.thread_id))
    other = make_thread()
    await storage.put_thread(other)
    await run(storage, other.thread_id)
    assert (
        await scalar(
            storage, "SELECT count(*) FROM checkpoint_writes WHERE thread_id = ?", (t.thread_id,)
        )
        > 0
    )

    await storage.delete_thread(t.thread_id)

    with pytest.raises(NotFoundError):
        await storage.get_thread(t.thread_id)
    for table in ("checkpoints", "checkpoint_writes", "runs", "crons"):
        assert (
            await scalar(
                storage, f"SELECT count(*) FROM {table} WHERE thread_id = ?", (t.thread_id,)
            )
            == 0
        ), table
    assert (await storage.get_thread(child.thread_id)).parent_thread_id is None
    assert len(await root_checkpoints(storage, other.thread_id)) == 3
    assert (await storage.get_thread(other.thread_id)).counts.checkpoints == 3


# --- search and count -------------------------------------------------------------------------


async def _ids(storage: Storage, query: ThreadQuery, **kwargs: Any) -> list[str]:
    found = await storage.search_threads(query, limit=100, **kwargs)
    assert await storage.count_threads(query) == len(found)
    return [t.thread_id for t in found]


async def test_search_and_count_by_every_filter(storage: Storage) -> None:
    s = await storage.put_session(make_session())
    a = make_thread(
        thread_id="a", status="busy", graph_id="agent", session_id=s.session_id, owner="alice"
    )
    b = make_thread(thread_id="b", lifecycle="paused", kind="fork", parent_thread_id="a")
    c = make_thread(thread_id="c", kind="snapshot", parent_thread_id="a", graph_id="agent")
    d = make_thread(thread_id="d", status="error", owner="bob", graph_id="other")
    for t in (a, b, c, d):
        await storage.put_thread(t)

    assert sorted(await _ids(storage, ThreadQuery())) == ["a", "b", "c", "d"]
    assert sorted(await _ids(storage, ThreadQuery(ids=("a", "c", "zz")))) == ["a", "c"]
    assert await _ids(storage, ThreadQuery(ids=())) == []
    assert await _ids(storage, ThreadQuery(status="busy")) == ["a"]
    assert await _ids(storage, ThreadQuery(status="interrupted")) == []
    assert await _ids(storage, ThreadQuery(lifecycle="paused")) == ["b"]
    assert sorted(await _ids(storage, ThreadQuery(lifecycle="active"))) == ["a", "c", "d"]
    assert await _ids(storage, ThreadQuery(kind="snapshot")) == ["c"]
    assert sorted(await _ids(storage, ThreadQuery(kind="main"))) == ["a", "d"]
    assert sorted(await _ids(storage, ThreadQuery(graph_id="agent"))) == ["a", "c"]
    assert await _ids(storage, ThreadQuery(session_id=s.session_id)) == ["a"]
    assert sorted(await _ids(storage, ThreadQuery(parent_thread_id="a"))) == ["b", "c"]
    assert sorted(await _ids(storage, ThreadQuery(owner="alice"))) == ["a", "b", "c"]
    assert sorted(await _ids(storage, ThreadQuery(owner="bob"))) == ["b", "c", "d"]
    assert await _ids(storage, ThreadQuery(owner="bob", graph_id="agent")) == ["c"]
    assert await _ids(storage, ThreadQuery(graph_id="agent", kind="main", status="busy")) == ["a"]
    assert await _ids(storage, ThreadQuery(ids=("a", "b"), kind="snapshot")) == []


async def test_search_by_metadata_containment(storage: Storage) -> None:
    rows = {
        "m1": {"user": "u1", "n": 1, "flag": True, "none": None, "nested": {"x": 1, "y": "z"}},
        "m2": {"user": "u2", "n": 1.5, "flag": False, "tags": ["a", "b"]},
        "m3": {"user": "1", "n": 2, "nested": {"x": 2}},
        "m4": {"user": "u1", "n": "1"},
        "m5": {},
    }
    for thread_id, metadata in rows.items():
        await storage.put_thread(make_thread(thread_id=thread_id, metadata=metadata))

    async def meta(wanted: dict[str, Any]) -> list[str]:
        return sorted(await _ids(storage, ThreadQuery(metadata=wanted)))

    assert await meta({}) == ["m1", "m2", "m3", "m4", "m5"]
    assert await meta({"user": "u1"}) == ["m1", "m4"]
    assert await meta({"user": "1"}) == ["m3"]
    assert await meta({"user": 1}) == []
    assert await meta({"n": 1}) == ["m1"]
    assert await meta({"n": 1.0}) == ["m1"]
    assert await meta({"n": 1.5}) == ["m2"]
    assert await meta({"n": "1"}) == ["m4"]
    assert await meta({"flag": True}) == ["m1"]
    assert await meta({"flag": False}) == ["m2"]
    assert await meta({"n": True}) == []
    assert await meta({"none": None}) == ["m1"]
    assert await meta({"user": None}) == []
    assert await meta({"nested": {"x": 1}}) == ["m1"]
    assert await meta({"nested": {}}) == ["m1", "m3"]
    assert await meta({"tags": ["a", "b"]}) == ["m2"]
    assert await meta({"user": "u1", "n": 1}) == ["m1"]
    assert await meta({"user": "u1", "missing": 1}) == []

    # The index follows updates (metadata merged) and deletes.
    await storage.update_thread("m4", ThreadPatch(updated_at=T0, metadata={"user": "u9"}))
    assert await meta({"user": "u1"}) == ["m1"]
    assert await meta({"user": "u9", "n": "1"}) == ["m4"]
    await storage.delete_thread("m1")
    assert await meta({"user": "u1"}) == []


async def test_search_by_values_containment(storage: Storage) -> None:
    await storage.put_thread(make_thread(thread_id="v1", values={"topic": "x", "n": 1}))
    await storage.put_thread(
        make_thread(thread_id="v2", values={"topic": "y", "deep": {"k": True}})
    )
    await storage.put_thread(make_thread(thread_id="v3"))
    assert await _ids(storage, ThreadQuery(values={"topic": "x"})) == ["v1"]
    assert await _ids(storage, ThreadQuery(values={"deep": {"k": True}})) == ["v2"]
    assert await _ids(storage, ThreadQuery(values={"topic": "x", "n": 2})) == []
    await storage.update_thread("v3", ThreadPatch(updated_at=T0, values={"topic": "x"}))
    assert sorted(await _ids(storage, ThreadQuery(values={"topic": "x"}))) == ["v1", "v3"]


@pytest.mark.parametrize("sort_order", ["asc", "desc"])
@pytest.mark.parametrize(
    "sort_by", ["thread_id", "status", "created_at", "updated_at", "state_updated_at"]
)
async def test_sort(storage: Storage, sort_by: str, sort_order: str) -> None:
    # (thread_id, status, created_at offset, updated_at offset, state_updated_at offset)
    specs = [
        ("t1", "idle", 2, 1, 3),
        ("t2", "busy", 1, 3, 3),
        ("t3", "idle", 2, 2, 1),
        ("t4", "error", 3, 2, 2),
    ]
    for thread_id, status, created, updated, state in specs:
        await storage.put_thread(
            make_thread(
                thread_id=thread_id,
                status=status,
                at=T0 + timedelta(seconds=created),
                state_updated_at=T0 + timedelta(seconds=state),
            ).model_copy(update={"updated_at": T0 + timedelta(seconds=updated)})
        )
    column = {"thread_id": 0, "status": 1, "created_at": 2, "updated_at": 3, "state_updated_at": 4}
    expected = [
        s[0]
        for s in sorted(
            specs, key=lambda s: (s[column[sort_by]], s[0]), reverse=sort_order == "desc"
        )
    ]
    found = await storage.search_threads(
        ThreadQuery(),
        sort_by=sort_by,
        sort_order=sort_order,  # type: ignore[arg-type]
    )
    assert [t.thread_id for t in found] == expected


async def test_default_sort_is_newest_first_and_pages(storage: Storage) -> None:
    ids = [f"p{i:02}" for i in range(12)]
    for i, thread_id in enumerate(ids):
        await storage.put_thread(make_thread(thread_id=thread_id, at=T0 + timedelta(seconds=i)))
    newest_first = list(reversed(ids))
    assert [t.thread_id for t in await storage.search_threads(ThreadQuery())] == newest_first[:10]
    page = await storage.search_threads(ThreadQuery(), limit=5, offset=5)
    assert [t.thread_id for t in page] == newest_first[5:10]
    last = await storage.search_threads(ThreadQuery(), limit=5, offset=10)
    assert [t.thread_id for t in last] == newest_first[10:]
    assert await storage.search_threads(ThreadQuery(), offset=50) == []
    assert await storage.count_threads(ThreadQuery()) == 12


# --- counts -----------------------------------------------------------------------------------


async def test_counts_are_exact(storage: Storage) -> None:
    t = make_thread()
    await storage.put_thread(t)
    assert (await storage.get_thread(t.thread_id)).counts == ThreadCounts()
    await run(storage, t.thread_id)
    await run(storage, t.thread_id, 5)
    await put_checkpoint(storage, t.thread_id, ns="sub:1")  # subgraph checkpoints don't count
    assert (await storage.get_thread(t.thread_id)).counts.checkpoints == 6
    assert len(await root_checkpoints(storage, t.thread_id)) == 6

    # A thread row created for checkpoints already stored counts them.
    early = str(uuid.uuid4())
    await run(storage, early)
    created = await storage.put_thread(make_thread(thread_id=early))
    assert created.counts.checkpoints == 3

    # runs count from their admission (one refused counts nothing) to their deletion
    await insert_run(storage, t.thread_id)
    run_id = await insert_run(storage, t.thread_id)
    now = datetime.now(UTC)
    with pytest.raises(NotFoundError):  # an unknown assistant: refused, nothing counted
        await storage.admit(
            Run(run_id=str(uuid.uuid4()), thread_id=t.thread_id, assistant_id="nobody",
                created_at=now, updated_at=now),
            stamp=True,
        )  # fmt: skip
    assert (await storage.get_thread(t.thread_id)).counts.runs == 2
    await storage.delete_runs([run_id])
    assert (await storage.get_thread(t.thread_id)).counts.runs == 1

    await storage.checkpointer.adelete_thread(t.thread_id)
    assert (await storage.get_thread(t.thread_id)).counts.checkpoints == 0


# --- branch, rollback, copy, prune ------------------------------------------------------------


async def _source(storage: Storage, **fields: Any) -> tuple[Thread, list[str]]:
    """A thread with two invocations (six root checkpoints, newest first)."""
    t = make_thread(graph_id="g", **fields)
    await storage.put_thread(t)
    await run(storage, t.thread_id)
    await run(storage, t.thread_id, 5)
    return t, await root_checkpoints(storage, t.thread_id)


async def test_branch_copies_one_checkpoint_and_its_writes(storage: Storage) -> None:
    source, ids = await _source(storage)
    at = ids[4]  # the first invocation's "loop" checkpoint before its node ran: it has writes
    original = await storage.checkpointer.aget_tuple(config(source.thread_id, at))
    assert original is not None
    assert original.pending_writes

    branch = make_thread(
        kind="branch",
        parent_thread_id=source.thread_id,
        source_checkpoint_id=at,
        values={"n": 0},
        interrupts={"x": [{"value": 1}]},
        counts=ThreadCounts(messages=4),
        state_updated_at=T0,
        graph_id="g",
    )
    stored = await storage.branch_thread(branch, checkpoint_id=at)
    assert stored.kind == "branch"
    assert stored.parent_thread_id == source.thread_id
    assert stored.source_checkpoint_id == at
    assert stored.values == {"n": 0}
    assert stored.interrupts == {"x": [{"value": 1}]}
    assert stored.state_updated_at == T0
    assert stored.counts == ThreadCounts(messages=4, checkpoints=1)
    assert (await storage.get_thread(source.thread_id)).counts.branches == 1
    assert (await storage.get_thread(source.thread_id)).counts.checkpoints == 6

    copied = await storage.checkpointer.aget_tuple(config(branch.thread_id))
    assert copied is not None
    assert copied.config["configurable"]["checkpoint_id"] == at
    assert copied.parent_config is None
    assert copied.checkpoint["channel_values"] == original.checkpoint["channel_values"]
    # An older checkpoint's writes are what the source did next: not copied (only interrupts
    # would be), so the branch runs that step again instead of replaying it.
    assert copied.pending_writes == []
    assert await root_checkpoints(storage, branch.thread_id) == [at]

    # The branch runs on from there; the source is untouched.
    app = graph(storage)
    state = await app.aget_state({"configurable": {"thread_id": branch.thread_id}})
    assert [task.result for task in state.tasks] == [None]
    await app.ainvoke(None, {"configurable": {"thread_id": branch.thread_id}})
    state = await app.aget_state({"configurable": {"thread_id": branch.thread_id}})
    assert state.values == {"n": 1, "log": ["step0"]}
    assert len(await root_checkpoints(storage, branch.thread_id)) == 2
    assert (await storage.get_thread(branch.thread_id)).counts.checkpoints == 2
    assert await root_checkpoints(storage, source.thread_id) == ids

    # A snapshot does not count as a branch; deleting a branch uncounts it.
    snap = make_thread(kind="snapshot", parent_thread_id=source.thread_id, name="snap")
    await storage.branch_thread(snap, checkpoint_id=ids[0])
    assert (await storage.get_thread(source.thread_id)).counts.branches == 1
    await storage.delete_thread(branch.thread_id)
    assert (await storage.get_thread(source.thread_id)).counts.branches == 0


async def test_branch_refusals(storage: Storage) -> None:
    source, ids = await _source(storage, owner="alice")
    other, other_ids = await _source(storage)

    unknown = str(uuid6())
    with pytest.raises(NotFoundError) as e:
        await storage.branch_thread(
            make_thread(kind="branch", parent_thread_id=source.thread_id), checkpoint_id=unknown
        )
    assert str(e.value) == f"checkpoint {unknown} not found in thread {source.thread_id}"
    with pytest.raises(NotFoundError) as e:
        await storage.branch_thread(
            make_thread(kind="branch", parent_thread_id=source.thread_id),
            checkpoint_id=other_ids[0],
        )
    assert str(e.value) == f"checkpoint {other_ids[0]} not found in thread {source.thread_id}"

    with pytest.raises(NotFoundError) as e:
        await storage.branch_thread(
            make_thread(kind="branch", parent_thread_id=source.thread_id),
            checkpoint_id=ids[0],
            owner="bob",
        )
    assert str(e.value) == f"thread {source.thread_id} not found"

    taken = make_thread(kind="branch", parent_thread_id=source.thread_id, thread_id=other.thread_id)
    with pytest.raises(ConflictError):
        await storage.branch_thread(taken, checkpoint_id=ids[0])

    await storage.update_thread(source.thread_id, ThreadPatch(updated_at=T0, lifecycle="archived"))
    refused = make_thread(kind="branch", parent_thread_id=source.thread_id)
    with pytest.raises(ConflictError) as e:
        await storage.branch_thread(refused, checkpoint_id=ids[0])
    assert str(e.value) == (
        f"thread {source.thread_id} has lifecycle 'archived': branching refused; "
        "branch needs lifecycle 'active' or 'paused'"
    )
    with pytest.raises(NotFoundError):
        await storage.get_thread(refused.thread_id)
    assert await root_checkpoints(storage, refused.thread_id) == []
    assert (await storage.get_thread(source.thread_id)).counts.branches == 0

    # A snapshot of an archived thread is fine; so is branching a snapshot.
    snap = make_thread(kind="snapshot", parent_thread_id=source.thread_id)
    await storage.branch_thread(snap, checkpoint_id=ids[2])
    from_snap = make_thread(kind="branch", parent_thread_id=snap.thread_id)
    stored = await storage.branch_thread(from_snap, checkpoint_id=ids[2])
    assert stored.counts.checkpoints == 1
    assert (await storage.get_thread(snap.thread_id)).counts.branches == 1


async def test_branch_into_a_session(storage: Storage) -> None:
    source, ids = await _source(storage)
    s = await storage.put_session(make_session())
    await storage.put_thread(make_thread(session_id=s.session_id, name="taken"))
    dup = make_thread(
        kind="branch", parent_thread_id=source.thread_id, session_id=s.session_id, name="taken"
    )
    with pytest.raises(ConflictError):
        await storage.branch_thread(dup, checkpoint_id=ids[0])
    assert await root_checkpoints(storage, dup.thread_id) == []
    assert (await storage.get_thread(source.thread_id)).counts.branches == 0
    ok = dup.model_copy(update={"name": "free"})
    assert (await storage.branch_thread(ok, checkpoint_id=ids[0])).session_id == s.session_id


async def test_rollback_makes_a_past_checkpoint_the_head(storage: Storage) -> None:
    source, ids = await _source(storage)
    head, target = ids[0], ids[3]  # the first invocation's final checkpoint
    new_id = str(uuid6())
    later = T0 + timedelta(hours=1)
    rolled = await storage.rollback_thread(
        source.thread_id,
        checkpoint_id=target,
        new_checkpoint_id=new_id,
        patch=ThreadPatch(
            updated_at=later,
            values={"n": 1},
            messages=1,
            state_updated_at=later,
            metadata={"rolled": True},
        ),
    )
    assert rolled.values == {"n": 1}
    assert rolled.counts.messages == 1
    assert rolled.counts.checkpoints == 7
    assert rolled.state_updated_at == later
    assert rolled.updated_at == later
    assert rolled.metadata == {"rolled": True}
    assert [(r.from_, r.to, r.at) for r in rolled.rollbacks] == [(head, target, new_id)]
    assert rolled.rollbacks[0].abandons(ids[1])
    assert not rolled.rollbacks[0].abandons(target)
    assert await storage.get_thread(source.thread_id) == rolled

    assert await root_checkpoints(storage, source.thread_id) == [new_id, *ids]
    new = await storage.checkpointer.aget_tuple(config(source.thread_id))
    old = await storage.checkpointer.aget_tuple(config(source.thread_id, target))
    assert new is not None
    assert old is not None
    assert new.checkpoint["id"] == new_id
    assert new.checkpoint["ts"] != old.checkpoint["ts"]
    assert new.checkpoint["channel_values"] == old.checkpoint["channel_values"]
    assert new.checkpoint["channel_versions"] == old.checkpoint["channel_versions"]
    assert new.parent_config is not None
    assert new.parent_config["configurable"]["checkpoint_id"] == target
    assert new.metadata["source"] == "rollback"  # type: ignore[comparison-overlap]
    assert new.metadata["rollback"] == {"from": head, "to": target}  # type: ignore[typeddict-item]
    assert new.metadata["step"] == old.metadata["step"]
    assert not new.pending_writes

    app = graph(storage)
    state = await app.aget_state({"configurable": {"thread_id": source.thread_id}})
    assert state.values == {"n": 1, "log": ["step0"]}
    await run(storage, source.thread_id, 10)
    state = await app.aget_state({"configurable": {"thread_id": source.thread_id}})
    assert state.values == {"n": 11, "log": ["step0", "step10"]}

    second = str(uuid6())
    again = await storage.rollback_thread(
        source.thread_id,
        checkpoint_id=ids[0],
        new_checkpoint_id=second,
        patch=ThreadPatch(updated_at=later),
    )
    newest = (await root_checkpoints(storage, source.thread_id))[1]
    assert [(r.from_, r.to, r.at) for r in again.rollbacks] == [
        (head, target, new_id),
        (newest, ids[0], second),
    ]


async def test_rollback_refusals(storage: Storage) -> None:
    source, ids = await _source(storage)
    _, other_ids = await _source(storage)
    with pytest.raises(NotFoundError) as e:
        await storage.rollback_thread(
            source.thread_id,
            checkpoint_id=other_ids[2],
            new_checkpoint_id=str(uuid6()),
            patch=ThreadPatch(updated_at=T0),
        )
    assert str(e.value) == f"checkpoint {other_ids[2]} not found in thread {source.thread_id}"

    snap = make_thread(kind="snapshot", parent_thread_id=source.thread_id)
    await storage.branch_thread(snap, checkpoint_id=ids[0])
    with pytest.raises(ConflictError) as e:
        await storage.rollback_thread(
            snap.thread_id,
            checkpoint_id=ids[0],
            new_checkpoint_id=str(uuid6()),
            patch=ThreadPatch(updated_at=T0),
        )
    assert str(e.value) == (
        f"thread {snap.thread_id} is a snapshot and is read-only: rollback refused; "
        "branch it to continue from its state"
    )
    assert await root_checkpoints(storage, snap.thread_id) == [ids[0]]

    await storage.update_thread(source.thread_id, ThreadPatch(updated_at=T0, lifecycle="completed"))
    with pytest.raises(ConflictError) as e:
        await storage.rollback_thread(
            source.thread_id,
            checkpoint_id=ids[3],
            new_checkpoint_id=str(uuid6()),
            patch=ThreadPatch(updated_at=T0),
        )
    assert str(e.value) == (
        f"thread {source.thread_id} has lifecycle 'completed': rollback refused; "
        "rollback needs lifecycle 'active' or 'paused'"
    )
    assert await root_checkpoints(storage, source.thread_id) == ids
    assert (await storage.get_thread(source.thread_id)).rollbacks == ()


async def test_copy_takes_every_checkpoint_and_write(storage: Storage) -> None:
    source, ids = await _source(storage, owner="alice")
    await put_checkpoint(storage, source.thread_id, ns="sub:1")
    fork = make_thread(
        kind="fork",
        parent_thread_id=source.thread_id,
        values={"n": 6},
        counts=ThreadCounts(messages=2),
    )
    with pytest.raises(NotFoundError):
        await storage.copy_thread(fork, source_thread_id=source.thread_id, owner="bob")
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as e:
        await storage.copy_thread(fork, source_thread_id=missing)
    assert str(e.value) == f"thread {missing} not found"

    copied = await storage.copy_thread(fork, source_thread_id=source.thread_id, owner="alice")
    assert copied.kind == "fork"
    assert copied.values == {"n": 6}
    assert copied.counts == ThreadCounts(messages=2, checkpoints=6)
    assert await root_checkpoints(storage, fork.thread_id) == ids
    for table in ("checkpoints", "checkpoint_writes"):
        sql = f"SELECT count(*) FROM {table} WHERE thread_id = ?"
        assert await scalar(storage, sql, (fork.thread_id,)) == await scalar(
            storage, sql, (source.thread_id,)
        )
    state = await graph(storage).aget_state({"configurable": {"thread_id": fork.thread_id}})
    assert state.values == {"n": 6, "log": ["step0", "step5"]}
    assert (await storage.get_thread(source.thread_id)).counts.branches == 0


async def test_prune(storage: Storage) -> None:
    a, a_ids = await _source(storage)
    b, _ = await _source(storage, owner="alice")
    await put_checkpoint(storage, b.thread_id, ns="sub:1")
    await put_checkpoint(storage, b.thread_id, ns="sub:1")
    snap = make_thread(kind="snapshot", parent_thread_id=a.thread_id)
    await storage.branch_thread(snap, checkpoint_id=a_ids[0])

    # Unseen (bob cannot see b), missing and snapshot IDs are skipped.
    pruned = await storage.prune_threads(
        [a.thread_id, b.thread_id, snap.thread_id, str(uuid.uuid4())],
        strategy="keep_latest",
        owner="bob",
    )
    assert pruned == 1
    assert await root_checkpoints(storage, a.thread_id) == [a_ids[0]]
    assert (await storage.get_thread(a.thread_id)).counts.checkpoints == 1
    assert (await storage.get_thread(b.thread_id)).counts.checkpoints == 6

    assert await storage.prune_threads([b.thread_id], strategy="keep_latest") == 1
    assert (await storage.get_thread(b.thread_id)).counts.checkpoints == 1
    sub = "SELECT count(*) FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = 'sub:1'"
    assert await scalar(storage, sub, (b.thread_id,)) == 1
    state = await graph(storage).aget_state({"configurable": {"thread_id": b.thread_id}})
    assert state.values == {"n": 6, "log": ["step0", "step5"]}

    assert await storage.prune_threads([a.thread_id, snap.thread_id], strategy="delete") == 1
    with pytest.raises(NotFoundError):
        await storage.get_thread(a.thread_id)
    assert await root_checkpoints(storage, a.thread_id) == []
    assert (await storage.get_thread(snap.thread_id)).counts.checkpoints == 1
    assert (await storage.get_thread(snap.thread_id)).parent_thread_id is None
    assert await storage.prune_threads([], strategy="delete") == 0


# --- doctor -----------------------------------------------------------------------------------


async def _healthy(storage: Storage) -> None:
    assert await storage.doctor() == []
    assert await storage.doctor(repair=True) == []


async def test_doctor_on_a_healthy_database(storage: Storage) -> None:
    await _healthy(storage)
    source, ids = await _source(storage)
    await storage.branch_thread(
        make_thread(kind="branch", parent_thread_id=source.thread_id), checkpoint_id=ids[0]
    )
    await insert_run(storage, source.thread_id)
    await _healthy(storage)


async def test_doctor_adopts_orphan_checkpoints(storage: Storage) -> None:
    lost = str(uuid.uuid4())
    await put_checkpoint(storage, lost, metadata={"graph_id": "old"})
    await put_checkpoint(storage, lost, metadata={"graph_id": "agent"})
    sub_only = str(uuid.uuid4())
    await put_checkpoint(storage, sub_only, ns="sub:1")  # not a root checkpoint: ignored
    bare = str(uuid.uuid4())
    await put_checkpoint(storage, bare)

    # The detail's wording is the backend's; it gives the number of checkpoints.
    found = await storage.doctor()
    assert sorted((f.problem, f.thread_id, f.repaired) for f in found) == sorted(
        [("orphan_checkpoints", lost, False), ("orphan_checkpoints", bare, False)]
    )
    details = {f.thread_id: f.detail for f in found}
    assert "2" in details[lost]
    assert "1" in details[bare]
    with pytest.raises(NotFoundError):
        await storage.get_thread(lost)

    repaired = await storage.doctor(repair=True)
    assert sorted((f.problem, f.thread_id, f.repaired) for f in repaired) == sorted(
        [("orphan_checkpoints", lost, True), ("orphan_checkpoints", bare, True)]
    )
    adopted = await storage.get_thread(lost)
    assert (adopted.kind, adopted.lifecycle, adopted.status) == ("main", "active", "idle")
    assert adopted.graph_id == "agent"
    assert adopted.metadata == {"graph_id": "agent"}
    assert adopted.counts.checkpoints == 2
    plain = await storage.get_thread(bare)
    assert plain.graph_id is None
    assert plain.metadata == {}
    assert plain.counts.checkpoints == 1
    await _healthy(storage)


async def test_doctor_clears_missing_sessions_and_parents(storage: Storage) -> None:
    s = await storage.put_session(make_session())
    member = await storage.put_thread(make_thread(session_id=s.session_id, name="m"))
    gone_parent = str(uuid.uuid4())
    child = await storage.put_thread(make_thread(kind="fork", parent_thread_id=gone_parent))
    await execute(
        storage, "DELETE FROM sessions WHERE session_id = ?", (s.session_id,), foreign_keys=False
    )

    found = sorted(await storage.doctor(), key=lambda f: f.problem)
    assert [(f.problem, f.thread_id, f.repaired) for f in found] == [
        ("missing_parent", child.thread_id, False),
        ("missing_session", member.thread_id, False),
    ]
    assert gone_parent in found[0].detail
    assert s.session_id in found[1].detail
    assert (await storage.get_thread(member.thread_id)).session_id == s.session_id

    repaired = await storage.doctor(repair=True)
    assert {(f.problem, f.thread_id, f.repaired) for f in repaired} == {
        ("missing_parent", child.thread_id, True),
        ("missing_session", member.thread_id, True),
    }
    assert (await storage.get_thread(member.thread_id)).session_id is None
    assert (await storage.get_thread(child.thread_id)).parent_thread_id is None
    await _healthy(storage)


async def test_doctor_recounts(storage: Storage) -> None:
    source, ids = await _source(storage)
    await storage.branch_thread(
        make_thread(kind="branch", parent_thread_id=source.thread_id), checkpoint_id=ids[0]
    )
    await insert_run(storage, source.thread_id)
    quiet = await storage.put_thread(make_thread())
    await execute(
        storage,
        "UPDATE threads SET count_checkpoints = 3, count_branches = 0, count_runs = 7 "
        "WHERE thread_id = ?",
        (source.thread_id,),
    )
    await execute(
        storage, "UPDATE threads SET count_runs = 2 WHERE thread_id = ?", (quiet.thread_id,)
    )
    found = await storage.doctor()
    assert sorted(found, key=lambda f: f.thread_id == quiet.thread_id) == [
        DoctorFinding(
            "wrong_counts",
            source.thread_id,
            "count_checkpoints is 3, rows say 6; count_branches is 0, rows say 1; "
            "count_runs is 7, rows say 1",
        ),
        DoctorFinding("wrong_counts", quiet.thread_id, "count_runs is 2, rows say 0"),
    ]
    repaired = await storage.doctor(repair=True)
    assert all(f.repaired for f in repaired)
    assert len(repaired) == 2
    assert (await storage.get_thread(source.thread_id)).counts == ThreadCounts(
        checkpoints=6, branches=1, runs=1
    )
    assert (await storage.get_thread(quiet.thread_id)).counts.runs == 0
    await _healthy(storage)


# --- SQLite only ------------------------------------------------------------------------------


async def test_sqlite_metadata_search_uses_the_thread_metadata_index(storage: Storage) -> None:
    if storage.dialect != "sqlite":
        pytest.skip("SQLite's thread_metadata index")
    from weft.storage.sqlite_threads import thread_search_sql

    for i in range(50):
        await storage.put_thread(make_thread(metadata={"user": f"u{i}", "n": i, "ok": i % 2 == 0}))
    for wanted in ({"user": "u7"}, {"n": 7}, {"ok": True}, {"user": "u7", "nested": {"a": 1}}):
        sql, params = thread_search_sql(
            ThreadQuery(metadata=wanted),
            limit=10,
            offset=0,
            sort_by="created_at",
            sort_order="desc",
        )
        plan = await storage.engine.read(  # type: ignore[attr-defined]
            lambda conn, sql=sql, params=params: conn.execute(
                f"EXPLAIN QUERY PLAN {sql}", params
            ).fetchall()
        )
        text = "\n".join(str(row[-1]) for row in plan)
        assert "thread_metadata USING PRIMARY KEY (key=? AND value=?)" in text, text
    found = await storage.search_threads(ThreadQuery(metadata={"user": "u7", "n": 7.0}))
    assert [t.metadata["n"] for t in found] == [7]
