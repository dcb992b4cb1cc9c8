"""The run and run-event methods of Storage, on every backend (SQLite file and memory, Postgres).

Runs are admitted the way the run queue admits them: ``admit_run`` per request, then
``claim_run`` when a worker picks one up, ``finish_run`` when it ends.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.storage.test_assistants_storage import make as make_assistant
from tests.storage.test_threads_storage import T0, make_session, make_thread, scalar
from weft.errors import BadRequestError, ConflictError, NotFoundError
from weft.schema import MultitaskStrategy, Run, RunEvent, Thread
from weft.storage import Storage
from weft.storage.base import ThreadPatch, ThreadQuery


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_run(
    thread_id: str | None,
    *,
    run_id: str | None = None,
    created: float = 0,
    multitask_strategy: MultitaskStrategy = "enqueue",
    assistant_id: str = "agent",
    **fields: Any,
) -> Run:
    return Run(
        run_id=run_id or str(uuid.uuid4()),
        thread_id=thread_id,
        assistant_id=assistant_id,
        multitask_strategy=multitask_strategy,
        created_at=at(created),
        updated_at=at(created),
        **fields,
    )


async def new_thread(storage: Storage, **fields: Any) -> Thread:
    return await storage.put_thread(make_thread(**fields))


async def admit(storage: Storage, thread_id: str | None, created: float, **fields: Any) -> Run:
    """Admit a run and return it as stored."""
    run = make_run(thread_id, created=created, **fields)
    await storage.admit_run(run)
    return await storage.get_run(run.run_id)


async def statuses(storage: Storage, *runs: Run) -> list[str]:
    return [(await storage.get_run(r.run_id)).status for r in runs]


# --- admission ---------------------------------------------------------------------------------


async def test_admit_then_get_round_trips_every_field(storage: Storage) -> None:
    t = await new_thread(storage, owner="alice")
    run = make_run(
        t.thread_id,
        created=5,
        metadata={"user": "ünï", "n": 1, "nested": {"a": [1, None]}},
        kwargs={"input": {"messages": [{"role": "user", "content": "hi"}]}, "stream_mode": []},
        multitask_strategy="reject",
        owner="alice",
    )
    assert await storage.admit_run(run, owner="alice") == []
    got = await storage.get_run(run.run_id)
    assert got == run
    assert got.created_at == at(5)
    assert got.created_at.tzinfo is not None
    assert got.started_at is None
    assert got.ended_at is None
    assert await storage.get_run(run.run_id, thread_id=t.thread_id, owner="alice") == run

    thread = await storage.get_thread(t.thread_id)
    assert thread.status == "busy"
    assert thread.updated_at == at(5)
    assert thread.counts.runs == 1


async def test_admit_stores_the_run_as_pending(storage: Storage) -> None:
    t = await new_thread(storage)
    run = make_run(t.thread_id, status="success", attempt=0)
    await storage.admit_run(run)
    assert (await storage.get_run(run.run_id)).status == "pending"


async def test_admit_refusals(storage: Storage) -> None:
    t = await new_thread(storage, owner="alice")
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as e:
        await storage.admit_run(make_run(missing))
    assert str(e.value) == f"thread {missing} not found"
    with pytest.raises(NotFoundError) as e:
        await storage.admit_run(make_run(t.thread_id), owner="bob")
    assert str(e.value) == f"thread {t.thread_id} not found"
    assert await storage.runs_with_status(["pending"]) == []
    assert (await storage.get_thread(t.thread_id)).status == "idle"

    run = make_run(t.thread_id)
    await storage.admit_run(run)
    with pytest.raises(ConflictError) as e:
        await storage.admit_run(run.model_copy(update={"created_at": at(9)}))
    assert str(e.value) == f"run {run.run_id} already exists"
    assert (await storage.get_thread(t.thread_id)).counts.runs == 1


async def test_enqueue_keeps_the_runs_in_flight(storage: Storage) -> None:
    t = await new_thread(storage)
    first = await admit(storage, t.thread_id, 1)
    second = await admit(storage, t.thread_id, 2)
    claimed = await storage.claim_run(first.run_id, started_at=at(3))
    assert claimed is not None

    third = make_run(t.thread_id, created=4)
    inflight = await storage.admit_run(third)
    assert inflight == [claimed, second]  # oldest first, as stored
    assert await statuses(storage, first, second, third) == ["running", "pending", "pending"]


async def test_reject_refuses_while_a_run_is_in_flight(storage: Storage) -> None:
    t = await new_thread(storage)
    assert await storage.admit_run(make_run(t.thread_id, multitask_strategy="reject")) == []
    pending = (await storage.list_runs(t.thread_id))[0]

    refused = make_run(t.thread_id, created=1, multitask_strategy="reject")
    with pytest.raises(ConflictError) as e:
        await storage.admit_run(refused)
    assert str(e.value) == (
        f"thread {t.thread_id} is busy: run {pending.run_id} is pending "
        "(multitask_strategy='reject')"
    )
    await storage.claim_run(pending.run_id, started_at=at(2))
    with pytest.raises(ConflictError) as e:
        await storage.admit_run(refused)
    assert str(e.value) == (
        f"thread {t.thread_id} is busy: run {pending.run_id} is running "
        "(multitask_strategy='reject')"
    )
    # nothing was written
    with pytest.raises(NotFoundError):
        await storage.get_run(refused.run_id)
    assert (await storage.get_thread(t.thread_id)).counts.runs == 1

    await storage.finish_run(
        pending.run_id,
        status="success",
        error=None,
        ended_at=at(3),
        thread_patch=ThreadPatch(updated_at=at(3), status="idle"),
    )
    assert await storage.admit_run(refused) == []
    assert (await storage.get_thread(t.thread_id)).status == "busy"


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
async def test_interrupt_and_rollback_stop_the_pending_runs(
    storage: Storage, strategy: MultitaskStrategy
) -> None:
    t = await new_thread(storage)
    first = await admit(storage, t.thread_id, 1)
    running = await storage.claim_run(first.run_id, started_at=at(2))
    assert running is not None
    waiting = await admit(storage, t.thread_id, 3)
    other = await new_thread(storage)
    elsewhere = await admit(storage, other.thread_id, 3)

    new = make_run(t.thread_id, created=4, multitask_strategy=strategy)
    inflight = await storage.admit_run(new)
    stopped = waiting.model_copy(
        update={"status": "interrupted", "updated_at": at(4), "ended_at": at(4)}
    )
    assert inflight == [running, stopped]
    assert await storage.get_run(waiting.run_id) == stopped
    # the running one is the caller's to cancel; other threads are untouched
    assert await statuses(storage, running, new, elsewhere) == ["running", "pending", "pending"]
    assert (await storage.get_thread(t.thread_id)).status == "busy"


async def test_concurrent_rejecting_admissions_admit_exactly_one(storage: Storage) -> None:
    t = await new_thread(storage)
    runs = [make_run(t.thread_id, created=i, multitask_strategy="reject") for i in range(20)]
    results = await asyncio.gather(*(storage.admit_run(r) for r in runs), return_exceptions=True)
    assert sum(1 for r in results if r == []) == 1
    refused = [r for r in results if isinstance(r, ConflictError)]
    assert len(refused) == 19
    assert all("(multitask_strategy='reject')" in str(e) for e in refused)
    assert len(await storage.list_runs(t.thread_id, limit=100)) == 1
    assert (await storage.get_thread(t.thread_id)).counts.runs == 1


async def test_concurrent_enqueued_admissions_all_land(storage: Storage) -> None:
    t = await new_thread(storage)
    runs = [make_run(t.thread_id, created=i) for i in range(20)]
    results = await asyncio.gather(*(storage.admit_run(r) for r in runs))
    assert sorted(len(r) for r in results) == list(range(20))
    assert (await storage.get_thread(t.thread_id)).counts.runs == 20


# --- reading -----------------------------------------------------------------------------------


async def test_get_run_not_found(storage: Storage) -> None:
    alice = await new_thread(storage, owner="alice")
    shared = await new_thread(storage)
    mine = await admit(storage, shared.thread_id, 1, owner="alice")
    theirs = await admit(storage, alice.thread_id, 2)
    missing = str(uuid.uuid4())

    with pytest.raises(NotFoundError) as e:
        await storage.get_run(missing)
    assert str(e.value) == f"run {missing} not found"
    with pytest.raises(NotFoundError) as e:
        await storage.get_run(mine.run_id, thread_id=alice.thread_id)
    assert str(e.value) == f"run {mine.run_id} not found in thread {alice.thread_id}"
    assert await storage.get_run(mine.run_id, thread_id=shared.thread_id) == mine

    assert await storage.get_run(mine.run_id, owner="alice") == mine
    assert await storage.get_run(theirs.run_id, owner="alice") == theirs
    for run in (mine, theirs):  # bob sees neither alice's run nor a run of alice's thread
        with pytest.raises(NotFoundError) as e:
            await storage.get_run(run.run_id, owner="bob")
        assert str(e.value) == f"run {run.run_id} not found"


async def test_list_runs(storage: Storage) -> None:
    t = await new_thread(storage, owner="alice")
    other = await new_thread(storage)
    await admit(storage, other.thread_id, 0)
    a = await admit(storage, t.thread_id, 1, run_id="00000000-0000-4000-8000-00000000000a")
    b = await admit(storage, t.thread_id, 1, run_id="00000000-0000-4000-8000-00000000000b")
    c = await admit(storage, t.thread_id, 2, owner="alice")
    claimed = await storage.claim_run(a.run_id, started_at=at(3))
    assert claimed is not None

    assert await storage.list_runs(t.thread_id) == [c, b, claimed]  # newest first, ties by ID
    assert await storage.list_runs(t.thread_id, limit=2, offset=1) == [b, claimed]
    assert await storage.list_runs(t.thread_id, status="running") == [claimed]
    assert await storage.list_runs(t.thread_id, status="pending") == [c, b]
    assert await storage.list_runs(t.thread_id, status="error") == []
    assert await storage.list_runs(t.thread_id, owner="alice") == [c, b, claimed]

    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as e:
        await storage.list_runs(missing)
    assert str(e.value) == f"thread {missing} not found"
    with pytest.raises(NotFoundError) as e:
        await storage.list_runs(t.thread_id, owner="bob")
    assert str(e.value) == f"thread {t.thread_id} not found"


async def test_runs_with_status(storage: Storage) -> None:
    t1 = await new_thread(storage)
    t2 = await new_thread(storage)
    late = await admit(storage, t1.thread_id, 5)
    stateless = await admit(storage, None, 1)
    early = await admit(storage, t2.thread_id, 0)
    done = await admit(storage, t2.thread_id, 2)
    await storage.finish_run(done.run_id, status="error", error="boom", ended_at=at(6))

    assert await storage.runs_with_status(["pending"]) == [early, stateless, late]
    assert await storage.runs_with_status([]) == []
    assert [r.run_id for r in await storage.runs_with_status(["pending", "error"])] == [
        early.run_id,
        stateless.run_id,
        done.run_id,
        late.run_id,
    ]
    assert await storage.runs_with_status(["running"]) == []


# --- the queue ---------------------------------------------------------------------------------


async def test_claim_is_fifo_and_one_run_at_a_time(storage: Storage) -> None:
    t = await new_thread(storage)
    first = await admit(storage, t.thread_id, 1)
    second = await admit(storage, t.thread_id, 2)
    third = await admit(storage, t.thread_id, 3)

    assert await storage.claim_run(second.run_id, started_at=at(4)) is None  # not the oldest
    assert await storage.claim_run(third.run_id, started_at=at(4)) is None
    claimed = await storage.claim_run(first.run_id, started_at=at(4))
    assert claimed == first.model_copy(
        update={"status": "running", "attempt": 1, "started_at": at(4), "updated_at": at(4)}
    )
    assert await storage.claim_run(second.run_id, started_at=at(5)) is None  # one running
    assert await statuses(storage, first, second, third) == ["running", "pending", "pending"]

    await storage.finish_run(first.run_id, status="success", error=None, ended_at=at(6))
    assert await storage.claim_run(third.run_id, started_at=at(7)) is None
    assert await storage.claim_run(second.run_id, started_at=at(7)) is not None
    assert await storage.claim_run(third.run_id, started_at=at(8)) is None


async def test_claim_of_a_run_that_is_not_pending_returns_none(storage: Storage) -> None:
    t = await new_thread(storage)
    run = await admit(storage, t.thread_id, 1)
    running = await storage.claim_run(run.run_id, started_at=at(2))
    assert running is not None
    assert await storage.claim_run(run.run_id, started_at=at(3)) is None
    assert await storage.get_run(run.run_id) == running
    await storage.finish_run(run.run_id, status="success", error=None, ended_at=at(4))
    assert await storage.claim_run(run.run_id, started_at=at(5)) is None
    assert (await storage.get_run(run.run_id)).status == "success"
    assert await storage.claim_run(str(uuid.uuid4()), started_at=at(5)) is None


async def test_concurrent_claims(storage: Storage) -> None:
    t = await new_thread(storage)
    runs = [await admit(storage, t.thread_id, i) for i in range(5)]
    one = await asyncio.gather(
        *(storage.claim_run(runs[0].run_id, started_at=at(9)) for _ in range(10))
    )
    assert sum(1 for r in one if r is not None) == 1
    assert (await storage.get_run(runs[0].run_id)).attempt == 1

    await storage.requeue_run(runs[0].run_id, updated_at=at(10))
    many = await asyncio.gather(*(storage.claim_run(r.run_id, started_at=at(11)) for r in runs))
    assert [r is not None for r in many] == [True, False, False, False, False]
    assert len(await storage.list_runs(t.thread_id, status="running")) == 1


async def test_requeue(storage: Storage) -> None:
    t = await new_thread(storage)
    run = await admit(storage, t.thread_id, 1)
    with pytest.raises(ConflictError):
        await storage.requeue_run(run.run_id, updated_at=at(2))
    await storage.claim_run(run.run_id, started_at=at(2))
    requeued = await storage.requeue_run(run.run_id, updated_at=at(3))
    assert requeued.status == "pending"
    assert requeued.attempt == 1
    assert requeued.updated_at == at(3)
    assert await storage.get_run(run.run_id) == requeued
    again = await storage.claim_run(run.run_id, started_at=at(4))
    assert again is not None
    assert again.attempt == 2
    assert again.started_at == at(4)
    with pytest.raises(NotFoundError) as e:
        await storage.requeue_run("nope", updated_at=at(5))
    assert str(e.value) == "run nope not found"


async def test_finish_sets_the_outcome_and_patches_the_thread(storage: Storage) -> None:
    t = await new_thread(storage, metadata={"keep": 1})
    run = await admit(storage, t.thread_id, 1)
    await storage.claim_run(run.run_id, started_at=at(2))
    patch = ThreadPatch(
        updated_at=at(3),
        status="error",
        metadata={"graph_id": "agent"},
        values={"n": 1},
        interrupts={},
        messages=4,
        state_updated_at=at(3),
    )
    done = await storage.finish_run(
        run.run_id, status="error", error="ValueError: boom", ended_at=at(3), thread_patch=patch
    )
    assert done.status == "error"
    assert done.error == "ValueError: boom"
    assert done.ended_at == at(3)
    assert done.updated_at == at(3)
    assert done.started_at == at(2)
    assert await storage.get_run(run.run_id) == done

    thread = await storage.get_thread(t.thread_id)
    assert thread.status == "error"
    assert thread.metadata == {"keep": 1, "graph_id": "agent"}
    assert thread.values == {"n": 1}
    assert thread.counts.messages == 4
    assert thread.updated_at == at(3)
    assert thread.state_updated_at == at(3)


async def test_finish_of_an_ended_run_is_a_conflict(storage: Storage) -> None:
    t = await new_thread(storage)
    run = await admit(storage, t.thread_id, 1)
    await storage.finish_run(run.run_id, status="interrupted", error=None, ended_at=at(2))
    with pytest.raises(ConflictError) as e:
        await storage.finish_run(
            run.run_id,
            status="success",
            error=None,
            ended_at=at(3),
            thread_patch=ThreadPatch(updated_at=at(3), status="idle"),
        )
    assert str(e.value) == f"run {run.run_id} already ended (interrupted)"
    assert (await storage.get_run(run.run_id)).status == "interrupted"
    assert (await storage.get_thread(t.thread_id)).status == "busy"  # the patch was not applied

    with pytest.raises(BadRequestError):
        await storage.finish_run(run.run_id, status="running", error=None, ended_at=at(3))
    with pytest.raises(NotFoundError) as e2:
        await storage.finish_run("nope", status="success", error=None, ended_at=at(3))
    assert str(e2.value) == "run nope not found"


async def test_finish_keeps_the_thread_busy_while_another_run_is_in_flight(
    storage: Storage,
) -> None:
    t = await new_thread(storage)
    first = await admit(storage, t.thread_id, 1)
    second = await admit(storage, t.thread_id, 2)
    await storage.claim_run(first.run_id, started_at=at(3))
    await storage.finish_run(
        first.run_id,
        status="success",
        error=None,
        ended_at=at(4),
        thread_patch=ThreadPatch(updated_at=at(4), status="idle", values={"n": 1}),
    )
    thread = await storage.get_thread(t.thread_id)
    assert thread.status == "busy"
    assert thread.values == {"n": 1}  # the rest of the patch applies

    await storage.claim_run(second.run_id, started_at=at(5))
    await storage.finish_run(
        second.run_id,
        status="success",
        error=None,
        ended_at=at(6),
        thread_patch=ThreadPatch(updated_at=at(6), status="interrupted"),
    )
    assert (await storage.get_thread(t.thread_id)).status == "interrupted"


# --- one write per admission and per finish ---------------------------------------------------


async def test_admit_claims_at_once_and_stamps_the_thread_when_it_is_free(
    storage: Storage,
) -> None:
    t = await new_thread(storage, metadata={"keep": 1, "graph_id": "agent"}, owner="alice")
    assistant = await storage.put_assistant(make_assistant(owner="alice"), if_exists="raise")
    aid = assistant.assistant_id
    run = make_run(t.thread_id, created=1, assistant_id=aid)
    stamps = {"graph_id": "agent", "assistant_id": aid}
    admitted = await storage.admit(run, owner="alice", claim=True, stamp=True)
    running = run.model_copy(
        update={"status": "running", "attempt": 1, "started_at": at(1), "updated_at": at(1)}
    )
    assert admitted.run == running
    assert admitted.inflight == []
    assert admitted.assistant == assistant
    assert await storage.get_run(run.run_id) == running
    stored = await storage.get_thread(t.thread_id)
    assert stored.status == "busy"
    assert stored.metadata == {"keep": 1, **stamps}
    assert admitted.session_id is None
    assert stored.counts.runs == 1
    assert [x.thread_id for x in await storage.search_threads(ThreadQuery(metadata=stamps))] == [
        t.thread_id
    ]

    # in flight: admitted pending, the thread's metadata left as it is
    second = make_run(t.thread_id, created=2, assistant_id=aid)
    queued = await storage.admit(second, claim=True, stamp=True)
    assert queued.run == second
    assert queued.inflight == [running]
    assert (await storage.get_run(second.run_id)).status == "pending"
    assert (await storage.get_thread(t.thread_id)).metadata == stored.metadata

    # interrupt: the pending runs stop, the running one stays, so nothing is claimed
    third = make_run(t.thread_id, created=3, multitask_strategy="interrupt")
    displacing = await storage.admit(third, claim=True)
    assert displacing.run.status == "pending"
    assert [r.status for r in displacing.inflight] == ["running", "interrupted"]


async def test_admit_restamps_a_thread_run_by_another_assistant(storage: Storage) -> None:
    """The stamps are replaced in place, the rest of the metadata (and its index) kept; the
    admission reports the session of the thread."""
    session = await storage.put_session(make_session())
    t = await new_thread(
        storage,
        session_id=session.session_id,
        metadata={"graph_id": "old", "n": 1.5, "assistant_id": "a0", "tag": "x"},
    )
    assistant = await storage.put_assistant(make_assistant(), if_exists="raise")
    run = make_run(t.thread_id, created=1, assistant_id=assistant.assistant_id)
    admitted = await storage.admit(run, claim=True, stamp=True)
    assert admitted.session_id == session.session_id
    stored = await storage.get_thread(t.thread_id)
    assert stored.metadata == {
        "graph_id": assistant.graph_id,
        "n": 1.5,
        "assistant_id": assistant.assistant_id,
        "tag": "x",
    }
    found = await storage.search_threads(
        ThreadQuery(metadata={"graph_id": assistant.graph_id, "n": 1.5})
    )
    assert [x.thread_id for x in found] == [t.thread_id]
    assert await storage.search_threads(ThreadQuery(metadata={"graph_id": "old"})) == []


async def test_admit_reads_the_assistant_first(storage: Storage) -> None:
    t = await new_thread(storage)
    private = await storage.put_assistant(make_assistant(owner="bob"), if_exists="raise")
    for assistant_id in (str(uuid.uuid4()), private.assistant_id):
        run = make_run(str(uuid.uuid4()), assistant_id=assistant_id)  # no such thread either
        with pytest.raises(NotFoundError) as e:
            await storage.admit(run, owner="alice", claim=True, stamp=True)
        assert str(e.value) == f"assistant {assistant_id} not found"
    with pytest.raises(NotFoundError) as e:
        await storage.admit(make_run(t.thread_id, assistant_id="nope"), stamp=True)
    assert str(e.value) == "assistant nope not found"
    assert await storage.runs_with_status(["pending", "running"]) == []
    assert (await storage.get_thread(t.thread_id)).metadata == {}


async def test_admit_claims_when_only_stopped_runs_were_in_flight(storage: Storage) -> None:
    t = await new_thread(storage)
    pending = await admit(storage, t.thread_id, 1)
    new = make_run(t.thread_id, created=2, multitask_strategy="rollback")
    admitted = await storage.admit(new, claim=True)
    assert admitted.run.status == "running"
    assert [(r.run_id, r.status) for r in admitted.inflight] == [(pending.run_id, "interrupted")]


async def test_admit_refuses_threads_that_take_no_runs(storage: Storage) -> None:
    snapshot = await new_thread(storage, kind="snapshot")
    with pytest.raises(ConflictError) as e:
        await storage.admit(make_run(snapshot.thread_id), claim=True)
    assert str(e.value) == (
        f"thread {snapshot.thread_id} is a snapshot and is read-only: run refused; "
        "branch it to continue from its state"
    )
    done = await new_thread(storage, lifecycle="completed")
    with pytest.raises(ConflictError) as e:
        await storage.admit_run(make_run(done.thread_id))
    assert str(e.value) == (
        f"thread {done.thread_id} has lifecycle 'completed': run refused; "
        "run needs lifecycle 'active' or 'paused'"
    )
    assert await storage.runs_with_status(["pending", "running"]) == []


async def test_admit_claims_stateless_runs_at_once(storage: Storage) -> None:
    assistant = await storage.put_assistant(make_assistant(), if_exists="raise")
    run = make_run(None, created=1, assistant_id=assistant.assistant_id)
    admitted = await storage.admit(run, claim=True, stamp=True)
    assert admitted.run.status == "running"
    assert admitted.session_id is None
    assert admitted.assistant == assistant
    assert await storage.get_run(run.run_id) == admitted.run


async def test_finish_claims_the_next_run_in_the_same_write(storage: Storage) -> None:
    t = await new_thread(storage)
    first = (await storage.admit(make_run(t.thread_id, created=1), claim=True)).run
    second = await admit(storage, t.thread_id, 2)
    third = await admit(storage, t.thread_id, 3)
    done = await storage.finish(
        first.run_id,
        status="success",
        error=None,
        ended_at=at(4),
        thread_patch=ThreadPatch(updated_at=at(4), status="idle", values={"n": 1}),
        claim_next=True,
    )
    assert done.run == await storage.get_run(first.run_id)
    assert done.run.status == "success"
    assert done.next == second.model_copy(
        update={"status": "running", "attempt": 1, "started_at": at(4), "updated_at": at(4)}
    )
    assert done.waiting is False
    assert await statuses(storage, first, second, third) == ["success", "running", "pending"]
    thread = await storage.get_thread(t.thread_id)
    assert thread.status == "busy"
    assert thread.values == {"n": 1}

    # without claim_next: the pending run is left waiting
    left = await storage.finish(second.run_id, status="error", error="boom", ended_at=at(5))
    assert left.next is None
    assert left.waiting is True
    assert await statuses(storage, third) == ["pending"]
    last = await storage.finish(third.run_id, status="interrupted", error=None, ended_at=at(6))
    assert (last.next, last.waiting) == (None, False)


async def test_finish_leaves_a_delayed_run_until_it_is_due(storage: Storage) -> None:
    t = await new_thread(storage)
    first = (await storage.admit(make_run(t.thread_id, created=1), claim=True)).run
    delayed = await admit(storage, t.thread_id, 2, kwargs={"after_seconds": 10})
    behind = await admit(storage, t.thread_id, 3)
    done = await storage.finish(
        first.run_id, status="success", error=None, ended_at=at(4), claim_next=True
    )
    assert (done.next, done.waiting) == (None, True)  # FIFO: the delayed one holds the queue
    assert await statuses(storage, delayed, behind) == ["pending", "pending"]
    await storage.finish(behind.run_id, status="interrupted", error=None, ended_at=at(5))
    assert (await storage.claim_run(delayed.run_id, started_at=at(12))) is not None
    again = await admit(storage, t.thread_id, 13, kwargs={"after_seconds": 1})
    due = await storage.finish(
        delayed.run_id, status="success", error=None, ended_at=at(14), claim_next=True
    )
    assert due.next is not None
    assert due.next.run_id == again.run_id


# --- deletion, events, counts ------------------------------------------------------------------


async def test_events_append_and_read_after(storage: Storage) -> None:
    t = await new_thread(storage)
    run = await admit(storage, t.thread_id, 1)
    first = [
        RunEvent(seq=1, event="metadata", data={"run_id": run.run_id, "attempt": 1}),
        RunEvent(seq=2, event="values", data={"messages": ["ünï"], "n": None}),
    ]
    await storage.append_run_events(run.run_id, first)
    await storage.append_run_events(run.run_id, [])
    later = [RunEvent(seq=3, event="end", data=None), RunEvent(seq=4, event="x", data=[1, "a"])]
    await storage.append_run_events(run.run_id, later)

    assert await storage.run_events(run.run_id) == first + later
    assert await storage.run_events(run.run_id, after=2) == later
    assert await storage.run_events(run.run_id, after=4) == []
    assert await storage.run_events(str(uuid.uuid4())) == []

    with pytest.raises(ConflictError):  # a taken seq: the whole batch is refused
        await storage.append_run_events(
            run.run_id, [RunEvent(seq=5, event="x", data=1), RunEvent(seq=4, event="x", data=1)]
        )
    assert len(await storage.run_events(run.run_id)) == 4
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as e:
        await storage.append_run_events(missing, [RunEvent(seq=1, event="x", data=1)])
    assert str(e.value) == f"run {missing} not found"


async def test_delete_runs_removes_their_events(storage: Storage) -> None:
    t = await new_thread(storage)
    gone = await admit(storage, t.thread_id, 1)
    kept = await admit(storage, t.thread_id, 2)
    stateless = await admit(storage, None, 3)
    for run in (gone, kept, stateless):
        await storage.append_run_events(run.run_id, [RunEvent(seq=1, event="e", data={})])

    await storage.delete_runs([gone.run_id, stateless.run_id, str(uuid.uuid4())])
    await storage.delete_runs([])
    for run in (gone, stateless):
        with pytest.raises(NotFoundError):
            await storage.get_run(run.run_id)
        assert await storage.run_events(run.run_id) == []
    events = "SELECT count(*) FROM run_events WHERE run_id = ?"
    assert await scalar(storage, events, (gone.run_id,)) == 0
    assert await storage.list_runs(t.thread_id) == [kept]
    assert len(await storage.run_events(kept.run_id)) == 1
    assert (await storage.get_thread(t.thread_id)).counts.runs == 1


async def test_counts_and_thread_deletion(storage: Storage) -> None:
    t = await new_thread(storage)
    runs = [await admit(storage, t.thread_id, i) for i in range(3)]
    await admit(storage, None, 4)  # stateless: counted nowhere
    assert (await storage.get_thread(t.thread_id)).counts.runs == 3
    await storage.delete_runs([runs[0].run_id])
    assert (await storage.get_thread(t.thread_id)).counts.runs == 2
    await storage.append_run_events(runs[1].run_id, [RunEvent(seq=1, event="e", data=1)])

    await storage.delete_thread(t.thread_id)
    assert [r.thread_id for r in await storage.runs_with_status(["pending"])] == [None]
    assert await scalar(storage, "SELECT count(*) FROM run_events") == 0
    assert await storage.doctor() == []


async def test_stateless_runs(storage: Storage) -> None:
    t = await new_thread(storage)
    threaded = await admit(storage, t.thread_id, 0)
    await storage.claim_run(threaded.run_id, started_at=at(1))

    first = make_run(None, created=1, multitask_strategy="reject")
    second = make_run(None, created=2, multitask_strategy="reject")
    assert await storage.admit_run(first) == []
    assert await storage.admit_run(second) == []  # no thread, nothing to reject for
    assert await storage.get_run(first.run_id) == first
    with pytest.raises(NotFoundError):
        await storage.get_run(first.run_id, thread_id=t.thread_id)

    # always claimable while pending, whatever else runs
    assert await storage.claim_run(second.run_id, started_at=at(3)) is not None
    assert await storage.claim_run(first.run_id, started_at=at(3)) is not None
    assert await storage.claim_run(first.run_id, started_at=at(4)) is None
    done = await storage.finish_run(
        first.run_id,
        status="success",
        error=None,
        ended_at=at(5),
        thread_patch=ThreadPatch(updated_at=at(5), status="idle"),
    )
    assert done.status == "success"
    thread = await storage.get_thread(t.thread_id)
    assert thread.status == "busy"
    assert thread.counts.runs == 1


async def test_sqlite_queue_lookups_use_the_in_flight_index(storage: Storage) -> None:
    if storage.dialect != "sqlite":
        pytest.skip("SQLite's query plans")
    from weft.storage.migrations import INFLIGHT_RUNS
    from weft.storage.sqlite_runs import INFLIGHT_SQL, OLDEST_PENDING_SQL

    t = await new_thread(storage)
    for i in range(20):
        run = await admit(storage, t.thread_id, i)
        await storage.finish_run(run.run_id, status="success", error=None, ended_at=at(i))
    at_start = (
        f"SELECT run_id FROM runs WHERE status IN (?) AND {INFLIGHT_RUNS} ORDER BY created_at"
    )
    for sql, args, index in (
        (INFLIGHT_SQL, (t.thread_id,), "runs_thread_inflight (thread_id=?)"),
        (OLDEST_PENDING_SQL, (t.thread_id,), "runs_thread_inflight (thread_id=?)"),
        (at_start, ("running",), "runs_inflight (status=?)"),
    ):
        plan = await storage.engine.read(  # type: ignore[attr-defined]
            lambda conn, sql=sql, args=args: conn.execute(
                f"EXPLAIN QUERY PLAN {sql}", args
            ).fetchall()
        )
        text = "\n".join(str(row[-1]) for row in plan)
        assert index in text, text
    # an ended run leaves the in-flight indexes: they hold nothing now
    count = await storage.engine.read(  # type: ignore[attr-defined]
        lambda conn: conn.execute(
            f"SELECT count(*) FROM runs INDEXED BY runs_thread_inflight WHERE {INFLIGHT_RUNS}"
        ).fetchone()[0]
    )
    assert count == 0


@pytest.mark.parametrize("early", [False, True])
async def test_finish_says_once_when_it_is_queued(storage: Storage, early: bool) -> None:
    """``on_queued`` comes once, before the finish returns; what reads after it see the
    run ended (SQLite, early: they wait for the commit of a finish that may not have run)."""
    t = await new_thread(storage)
    run = (await storage.admit(make_run(t.thread_id, created=1), claim=True)).run
    reads: list[asyncio.Future[Run]] = []

    def queued() -> None:
        reads.append(asyncio.ensure_future(storage.get_run(run.run_id)))

    done = await storage.finish(
        run.run_id, status="success", error=None, ended_at=at(2), early=early, on_queued=queued
    )
    assert done.run.status == "success"
    assert len(reads) == 1
    assert (await reads[0]).status == "success"
