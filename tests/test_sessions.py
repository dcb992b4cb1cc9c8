"""Sessions through ``weft.Runtime``: records, membership, the interaction log, batches and the
shared state that graphs read and write, on every storage backend."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import run
from weft.errors import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError
from weft.runtime import Runtime
from weft.sessions import update_session_state


async def test_session_records(rt: Runtime) -> None:
    s = await rt.sessions.create(user_id="u1", name="trip", metadata={"a": 1}, state={"k": 1})
    assert s.status == "active"
    assert s.state == {"k": 1}
    assert s.state_version == 0
    got = await rt.sessions.get(s.session_id)
    assert got == s
    updated = await rt.sessions.update(s.session_id, status="completed", metadata={"b": 2})
    assert updated.status == "completed"
    assert updated.metadata == {"a": 1, "b": 2}
    assert updated.name == "trip"
    assert updated.user_id == "u1"
    with pytest.raises(UnprocessableEntityError, match=r"^status must be one of active, completed"):
        await rt.sessions.update(s.session_id, status="done")
    with pytest.raises(UnprocessableEntityError, match=r"^session_id must be a UUID, not 'x'$"):
        await rt.sessions.get("x")
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=f"^session {missing} not found$"):
        await rt.sessions.get(missing)
    await rt.sessions.delete(s.session_id)
    with pytest.raises(NotFoundError):
        await rt.sessions.get(s.session_id)


async def test_search_filters_and_pages(rt: Runtime) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    made = [
        await rt.sessions.create(user_id=f"u{i % 2}", metadata={"team": "x" if i < 3 else "y"})
        for i in range(5)
    ]
    await rt.sessions.update(made[4].session_id, status="archived")
    assert await rt.sessions.count(user_id="u0") == 3
    assert await rt.sessions.count(metadata={"team": "x"}) == 3
    assert [s.session_id for s in await rt.sessions.search(status="archived")] == [
        made[4].session_id
    ]
    newest_first = await rt.sessions.search(limit=2, offset=0)
    assert [s.session_id for s in newest_first] == [made[4].session_id, made[3].session_id]
    assert await rt.sessions.count(created_after=start) == 5
    assert await rt.sessions.count(created_before=start) == 0
    assert await rt.sessions.count(updated_after=made[4].updated_at) == 1
    with pytest.raises(UnprocessableEntityError, match=r"^created_after must be a timezone-aware"):
        await rt.sessions.search(created_after=datetime.now())


async def test_membership_is_one_column(rt: Runtime) -> None:
    s = await rt.sessions.create(user_id="u1")
    a = await rt.sessions.add_thread(s.session_id, "research", "counter")
    b = await rt.sessions.add_thread(s.session_id, "write", "counter")
    assert a.session_id == s.session_id
    assert a.name == "research"
    assert [t.thread_id for t in await rt.sessions.threads_of(s.session_id)] == [
        a.thread_id,
        b.thread_id,
    ]
    with pytest.raises(
        ConflictError,
        match=f"^a thread named 'research' already exists in session {s.session_id}$",
    ):
        await rt.sessions.add_thread(s.session_id, "research", "counter")
    missing = str(uuid.uuid4())
    before = await rt.threads.count()
    with pytest.raises(NotFoundError, match=f"^session {missing} not found$"):
        await rt.sessions.add_thread(missing, "x", "counter")
    assert await rt.threads.count() == before  # nothing written
    await run(rt, a)
    with pytest.raises(
        ConflictError,
        match=f"^session {s.session_id} has 2 thread\\(s\\); delete them first "
        "or pass cascade=true$",
    ):
        await rt.sessions.delete(s.session_id)
    await rt.sessions.delete(s.session_id, cascade=True)
    assert await rt.threads.count() == 0
    assert (
        await rt.storage.checkpointer.aget_tuple(
            {"configurable": {"thread_id": a.thread_id, "checkpoint_ns": ""}}
        )
        is None
    )


async def test_interaction_log(rt: Runtime) -> None:
    s = await rt.sessions.create()
    await rt.sessions.record(s.session_id, "request", {"text": "plan a trip"})
    await rt.sessions.record(s.session_id, "response", "here is a plan", metadata={"m": 1})
    await rt.sessions.record(s.session_id, "feedback", {"stars": 5})
    await asyncio.gather(*(rt.sessions.record(s.session_id, "note", i) for i in range(20)))
    log = await rt.sessions.interactions(s.session_id, limit=1000)
    assert [e.seq for e in log] == list(range(1, 24))
    assert [e.kind for e in log[:3]] == ["request", "response", "feedback"]
    assert log[1].content == "here is a plan"
    assert log[1].metadata == {"m": 1}
    page = await rt.sessions.interactions(s.session_id, after=2, limit=2)
    assert [e.seq for e in page] == [3, 4]
    feedback = await rt.sessions.interactions(s.session_id, kinds=["feedback"])
    assert [e.content for e in feedback] == [{"stars": 5}]
    with pytest.raises(
        UnprocessableEntityError,
        match=r"^kind must be one of request, response, feedback, note, not 'run_event'$",
    ):
        await rt.sessions.record(s.session_id, "run_event", {})
    with pytest.raises(UnprocessableEntityError, match=r"^kinds\[\] must be one of request"):
        await rt.sessions.interactions(s.session_id, kinds=["chat"])
    with pytest.raises(NotFoundError):
        await rt.sessions.record(str(uuid.uuid4()), "note", "x")


async def test_batch_is_all_or_nothing(rt: Runtime) -> None:
    keep = await rt.sessions.create(name="keep")
    results = await rt.sessions.batch(
        [
            {"op": "create", "name": "one"},
            {"op": "update", "session_id": keep.session_id, "name": "kept"},
            {"op": "create", "name": "two", "user_id": "u2"},
        ]
    )
    assert [r.name if r else None for r in results] == ["one", "kept", "two"]
    assert await rt.sessions.count() == 3
    with pytest.raises(UnprocessableEntityError, match=r"^batch item 1: op must be one of"):
        await rt.sessions.batch([{"op": "create"}, {"op": "upsert"}])
    with pytest.raises(
        UnprocessableEntityError, match=r"^batch item 0: unknown field\(s\) 'colour'"
    ):
        await rt.sessions.batch([{"op": "create", "colour": "red"}])
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=f"^batch item 2: session {missing} not found$"):
        await rt.sessions.batch(
            [
                {"op": "create", "name": "three"},
                {"op": "delete", "session_id": keep.session_id},
                {"op": "update", "session_id": missing, "name": "x"},
            ]
        )
    assert await rt.sessions.count() == 3  # nothing of the failed batch was written
    assert (await rt.sessions.get(keep.session_id)).name == "kept"


async def test_shared_state_never_loses_a_concurrent_write(rt: Runtime) -> None:
    s = await rt.sessions.create(state={"total": 0})
    await asyncio.gather(
        *(
            rt.sessions.update_state(s.session_id, lambda st: {**st, "total": st["total"] + 1})
            for _ in range(30)
        )
    )
    final = await rt.sessions.get(s.session_id)
    assert final.state == {"total": 30}
    assert final.state_version == 30
    with pytest.raises(
        ConflictError, match=f"^session {s.session_id} state changed \\(version 3 -> 30\\)$"
    ):
        await rt.sessions.set_state(s.session_id, {"total": 0}, expected_version=3)
    merged = await rt.sessions.update_state(s.session_id, {"other": "x"})
    assert merged.state == {"total": 30, "other": "x"}


async def test_graphs_read_and_write_the_session_state(rt: Runtime) -> None:
    s = await rt.sessions.create(state={"total": 100})
    threads = [await rt.sessions.add_thread(s.session_id, f"t{i}", "tally") for i in range(6)]
    finals = await asyncio.gather(*(run(rt, t, {"amount": 2}) for t in threads))
    assert all(f["seen"]["total"] >= 100 for f in finals)  # each run saw the shared state
    assert (await rt.sessions.get(s.session_id)).state["total"] == 112
    loose = await rt.threads.create(graph_id="tally")
    with pytest.raises(Exception, match=r"this run does not belong to a session"):
        await run(rt, loose, {"amount": 1})


async def test_update_session_state_outside_a_run(rt: Runtime) -> None:
    with pytest.raises(BadRequestError, match=r"does not belong to a session"):
        await update_session_state({"configurable": {}}, {"a": 1})
