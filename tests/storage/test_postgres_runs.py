"""Runs on Postgres under concurrency: several connections and several storages on one database.

The behaviour every backend shares is in ``test_runs_storage.py``; here the races that only a
multi-connection server can produce. Each test gets its own database (``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from weft.errors import ConflictError
from weft.schema import INFLIGHT_STATUSES, MultitaskStrategy, Run, RunEvent, Thread
from weft.storage import open_storage
from weft.storage.base import Storage, ThreadPatch
from weft.storage.postgres import PostgresStorage
from weft.storage.postgres_runs import _INFLIGHT_SQL, _NEXT_SQL

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        not os.environ.get("WEFT_TEST_POSTGRES_URL"),
        reason="set WEFT_TEST_POSTGRES_URL to run Postgres tests",
    ),
]

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
async def two(postgres_database: str) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two storages (two pools, as two processes would have) on one database."""
    async with (
        open_storage(postgres_database, postgres_pool_size=8) as one,
        open_storage(postgres_database, postgres_pool_size=8) as other,
    ):
        assert isinstance(one, PostgresStorage)
        assert isinstance(other, PostgresStorage)
        yield one, other


def now() -> datetime:
    return datetime.now(UTC)


async def new_thread(storage: Storage) -> str:
    t = now()
    thread = Thread(thread_id=str(uuid.uuid4()), created_at=t, updated_at=t)
    return (await storage.put_thread(thread)).thread_id


def new_run(thread_id: str | None, strategy: MultitaskStrategy = "enqueue", *, at: int = 0) -> Run:
    t = T0 + timedelta(seconds=at)
    return Run(
        run_id=str(uuid.uuid4()),
        thread_id=thread_id,
        assistant_id="agent",
        multitask_strategy=strategy,
        created_at=t,
        updated_at=t,
    )


async def running_count(storage: PostgresStorage, thread_id: str) -> int:
    async with storage.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM runs WHERE thread_id = %s AND status = 'running'",
            (thread_id,),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row["n"])


async def test_concurrent_reject_admissions_from_two_storages_exactly_one_wins(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    one, other = two
    tid = await new_thread(one)
    runs = [new_run(tid, "reject", at=i) for i in range(20)]

    results = await asyncio.gather(
        *((one if i % 2 else other).admit_run(r) for i, r in enumerate(runs)),
        return_exceptions=True,
    )

    won = [r for r, res in zip(runs, results, strict=True) if res == []]
    lost = [res for res in results if isinstance(res, BaseException)]
    assert len(won) == 1
    assert len(lost) == 19
    winner = won[0].run_id
    for e in lost:
        assert isinstance(e, ConflictError)
        assert str(e) == (
            f"thread {tid} is busy: run {winner} is pending (multitask_strategy='reject')"
        )
    stored = await other.list_runs(tid, limit=100)
    assert [r.run_id for r in stored] == [winner]
    thread = await one.get_thread(tid)
    assert thread.counts.runs == 1
    assert thread.status == "busy"


async def test_concurrent_enqueue_admissions_all_land(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    one, other = two
    tid = await new_thread(one)
    runs = [new_run(tid, at=i) for i in range(20)]
    results = await asyncio.gather(
        *((one if i % 2 else other).admit_run(r) for i, r in enumerate(runs))
    )
    # Each admission saw the ones committed before it: the in-flight lists grow by one.
    assert sorted(len(r) for r in results) == list(range(20))
    assert (await one.get_thread(tid)).counts.runs == 20
    pending = await other.runs_with_status(["pending"])
    assert [r.run_id for r in pending] == [r.run_id for r in runs]


async def test_two_claimers_on_one_thread_run_one_at_a_time_in_fifo_order(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    one, other = two
    tid = await new_thread(one)
    runs = [new_run(tid, at=i) for i in range(8)]
    for r in runs:
        await one.admit_run(r)
    started: list[str] = []
    overlaps: list[int] = []

    async def claimer(storage: PostgresStorage) -> None:
        while True:
            pending = await storage.runs_with_status(["pending"])
            if not pending:
                return
            # Race for every pending run, not only the head: FIFO must hold anyway.
            for candidate in reversed(pending):
                claimed = await storage.claim_run(candidate.run_id, started_at=now())
                if claimed is None:
                    continue
                started.append(claimed.run_id)
                overlaps.append(await running_count(storage, tid))
                await asyncio.sleep(0.01)
                last = len(started) == len(runs)
                await storage.finish_run(
                    claimed.run_id,
                    status="success",
                    error=None,
                    ended_at=now(),
                    thread_patch=ThreadPatch(updated_at=now(), status="idle" if last else None),
                )
                break

    await asyncio.wait_for(
        asyncio.gather(claimer(one), claimer(other), claimer(one), claimer(other)), 60
    )
    assert started == [r.run_id for r in runs]
    assert overlaps == [1] * len(runs)
    done = await one.list_runs(tid, limit=100)
    assert {r.status for r in done} == {"success"}
    assert all(r.attempt == 1 for r in done)
    assert (await other.get_thread(tid)).status == "idle"


async def test_concurrent_claims_of_one_run_exactly_one_wins(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    one, other = two
    tid = await new_thread(one)
    threaded = new_run(tid)
    stateless = new_run(None)
    await one.admit_run(threaded)
    await one.admit_run(stateless)
    for run in (threaded, stateless):
        results = await asyncio.gather(
            *((one if i % 2 else other).claim_run(run.run_id, started_at=now()) for i in range(16))
        )
        claimed = [r for r in results if r is not None]
        assert len(claimed) == 1
        assert claimed[0].status == "running"
        assert claimed[0].attempt == 1
    assert await running_count(one, tid) == 1


@pytest.mark.parametrize("strategy", ["interrupt", "rollback"])
async def test_admit_with_interrupt_sets_pending_runs_to_interrupted(
    two: tuple[PostgresStorage, PostgresStorage], strategy: MultitaskStrategy
) -> None:
    one, other = two
    tid = await new_thread(one)
    first, second, third = (new_run(tid, at=i) for i in range(3))
    for r in (first, second, third):
        await one.admit_run(r)
    assert await other.claim_run(first.run_id, started_at=now()) is not None

    newcomer = new_run(tid, strategy, at=10)
    before = await other.admit_run(newcomer)

    assert [(r.run_id, r.status) for r in before] == [
        (first.run_id, "running"),
        (second.run_id, "interrupted"),
        (third.run_id, "interrupted"),
    ]
    stored = {r.run_id: r for r in await one.list_runs(tid, limit=10)}
    assert stored[first.run_id].status == "running"  # the caller cancels it
    for r in (second, third):
        assert stored[r.run_id].status == "interrupted"
        assert stored[r.run_id].ended_at is not None
        assert await one.claim_run(r.run_id, started_at=now()) is None
    assert stored[newcomer.run_id].status == "pending"
    assert (await one.get_thread(tid)).status == "busy"
    # The newcomer starts once the running one is finished.
    assert await one.claim_run(newcomer.run_id, started_at=now()) is None
    await one.finish_run(first.run_id, status="interrupted", error=None, ended_at=now())
    claimed = await other.claim_run(newcomer.run_id, started_at=now())
    assert claimed is not None
    assert claimed.run_id == newcomer.run_id


async def test_finish_and_delete_of_the_same_runs_do_not_deadlock(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    one, other = two
    tids = [await new_thread(one) for _ in range(3)]
    runs = [new_run(tid, at=i) for i, tid in enumerate(tids)]
    for r in runs:
        await one.admit_run(r)
        assert await one.claim_run(r.run_id, started_at=now()) is not None
        await one.append_run_events(r.run_id, [RunEvent(seq=1, event="metadata", data={})])

    async def finish(storage: PostgresStorage, run: Run) -> Any:
        return await storage.finish_run(
            run.run_id,
            status="success",
            error=None,
            ended_at=now(),
            thread_patch=ThreadPatch(updated_at=now(), status="idle"),
        )

    results = await asyncio.wait_for(
        asyncio.gather(
            other.delete_runs([r.run_id for r in reversed(runs)]),
            *(finish(one, r) for r in runs),
            return_exceptions=True,
        ),
        30,
    )
    # Each finish ran before the delete (and succeeded) or after it (run not found).
    assert results[0] is None
    for res in results[1:]:
        assert isinstance(res, Run) or "not found" in str(res), res
    assert await one.runs_with_status(["pending", "running", "success"]) == []
    for r, tid in zip(runs, tids, strict=True):
        assert await one.run_events(r.run_id) == []
        assert (await one.get_thread(tid)).counts.runs == 0


async def test_inflight_lookups_use_the_thread_status_index(
    two: tuple[PostgresStorage, PostgresStorage],
) -> None:
    pg, _ = two
    async with pg.pool.connection() as conn:
        await conn.execute(
            "INSERT INTO threads (thread_id, metadata, config, status, interrupts, lifecycle, "
            "kind) SELECT 't' || i, '{}', '{}', 'idle', '{}', 'active', 'main' "
            "FROM generate_series(0, 199) AS i"
        )
        await conn.execute(
            "INSERT INTO runs (run_id, thread_id, assistant_id, status, metadata, kwargs, "
            "multitask_strategy) SELECT 'r' || i, 't' || (i % 200), 'a', "
            "CASE WHEN i % 1000 = 0 THEN 'pending' ELSE 'success' END, '{}', '{}', 'enqueue' "
            "FROM generate_series(1, 20000) AS i"
        )
        await conn.execute("ANALYZE runs")
        for sql in (_INFLIGHT_SQL, _NEXT_SQL):
            cur = await conn.execute(f"EXPLAIN {sql}", ("t0", list(INFLIGHT_STATUSES)))
            plan = "\n".join(str(r["QUERY PLAN"]) for r in await cur.fetchall())
            assert "runs_thread_status" in plan, plan
