"""The SQLite engine: group commit keeps each job atomic and reports only what committed."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from weft.storage.sqlite_engine import SqliteEngine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[SqliteEngine]:
    eng = SqliteEngine(tmp_path / "e.db")
    eng.start()
    await eng.write(lambda c: c.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
    yield eng
    await eng.close()


def _insert(k: int) -> Callable[[sqlite3.Connection], int]:
    return lambda c: c.execute("INSERT INTO t VALUES (?, ?)", (k, str(k))).rowcount


def _select(k: int) -> Callable[[sqlite3.Connection], list[tuple[str]]]:
    return lambda c: c.execute("SELECT v FROM t WHERE k = ?", (k,)).fetchall()


async def test_a_failing_job_in_a_group_leaves_its_neighbours_committed(
    engine: SqliteEngine,
) -> None:
    def half_then_fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (100, 'half')")
        c.execute("INSERT INTO t VALUES (1, 'duplicate of a neighbour')")

    gate = threading.Event()
    held = asyncio.ensure_future(engine.write_alone(lambda _c: gate.wait(10)))
    jobs = [
        asyncio.ensure_future(engine.write(_insert(1))),
        asyncio.ensure_future(engine.write(half_then_fail)),
        asyncio.ensure_future(engine.write(_insert(2))),
    ]
    await asyncio.sleep(0.05)  # all three are queued behind the gate: one batch, one commit
    gate.set()
    await held
    results = await asyncio.gather(*jobs, return_exceptions=True)
    assert results[0] == 1
    assert results[2] == 1
    assert isinstance(results[1], sqlite3.IntegrityError)
    rows = await engine.read(lambda c: c.execute("SELECT k FROM t ORDER BY k").fetchall())
    assert rows == [(1,), (2,)]  # nothing of the failed job, not even its first insert


async def test_a_lone_failing_job_is_rolled_back(engine: SqliteEngine) -> None:
    def fail(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t VALUES (7, 'x')")
        raise ValueError("job failed")

    with pytest.raises(ValueError, match="job failed"):
        await engine.write(fail)
    assert await engine.read(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 0


async def test_many_concurrent_writers_all_land(engine: SqliteEngine) -> None:
    await asyncio.gather(*(engine.write(_insert(k)) for k in range(500)))
    assert await engine.read(lambda c: c.execute("SELECT COUNT(*) FROM t").fetchone()[0]) == 500


async def test_closed_engine_refuses_work(tmp_path: Path) -> None:
    eng = SqliteEngine(tmp_path / "c.db")
    eng.start()
    await eng.close()
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        await eng.write(lambda c: None)


async def test_a_transaction_that_vanishes_fails_its_jobs_and_the_writer_lives_on(
    engine: SqliteEngine,
) -> None:
    # As when SQLite rolls a transaction back by itself (disk full, I/O error).
    def vanish(c: sqlite3.Connection) -> None:
        c.execute("ROLLBACK")
        raise sqlite3.OperationalError("database or disk is full")

    gate = threading.Event()
    held = asyncio.ensure_future(engine.write_alone(lambda _c: gate.wait(10)))
    jobs = [
        asyncio.ensure_future(engine.write(_insert(1))),
        asyncio.ensure_future(engine.write(vanish)),
        asyncio.ensure_future(engine.write(_insert(2))),
    ]
    await asyncio.sleep(0.05)
    gate.set()
    await held
    results = await asyncio.gather(*jobs, return_exceptions=True)
    # the job before it shared its transaction: undone and failed with it
    assert [type(r) for r in results[:2]] == [sqlite3.OperationalError] * 2, results
    assert str(results[0]) == "database or disk is full"
    assert results[2] == 1  # the job after it ran in a transaction of its own
    rows = await engine.read(lambda c: c.execute("SELECT k FROM t").fetchall())
    assert rows == [(2,)]
    assert await engine.write(_insert(3)) == 1  # the writer still works


async def test_write_alone_must_not_leave_a_transaction_open(engine: SqliteEngine) -> None:
    def leaves_open(c: sqlite3.Connection) -> str:
        c.execute("BEGIN")
        c.execute("INSERT INTO t VALUES (9, 'x')")
        return "ok"

    with pytest.raises(sqlite3.ProgrammingError, match="transaction still open"):
        await engine.write_alone(leaves_open)
    assert await engine.write(_insert(1)) == 1
    rows = await engine.read(lambda c: c.execute("SELECT k FROM t").fetchall())
    assert rows == [(1,)]


async def test_reads_from_two_threads_at_once(engine: SqliteEngine) -> None:
    await asyncio.gather(*(engine.write(_insert(k)) for k in range(50)))

    async def count() -> int:
        def read(c: sqlite3.Connection) -> int:
            return int(c.execute("SELECT COUNT(*) FROM t").fetchone()[0])

        return await engine.read(read)

    def many_reads_on_own_loop() -> list[int]:
        async def reads() -> list[int]:
            return [await count() for _ in range(300)]

        return asyncio.run(reads())

    results = await asyncio.gather(
        asyncio.to_thread(many_reads_on_own_loop), asyncio.to_thread(many_reads_on_own_loop)
    )
    assert {n for r in results for n in r} == {50}


async def test_an_early_write_answers_before_its_commit(tmp_path: Path) -> None:
    """The result comes back once the job ran; the commit is reported apart. A deferred
    foreign key makes the COMMIT itself fail after the job succeeded."""
    eng = SqliteEngine(tmp_path / "early.db")
    eng.start()
    try:
        await eng.write(lambda c: c.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)"))
        await eng.write(
            lambda c: c.execute(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES "
                "parent(id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )

        def orphan(c: sqlite3.Connection) -> str:
            c.execute("INSERT INTO child VALUES (1, 42)")  # checked only at COMMIT
            return "ran"

        result, committed = await eng.write_early(orphan)
        assert result == "ran"
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await committed
        assert await eng.read(lambda c: c.execute("SELECT * FROM child").fetchall()) == []
        # an error of the job itself is raised as by write()
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            await eng.write_early(lambda c: c.execute("INSERT INTO parent VALUES (1), (1)"))
    finally:
        await eng.close()


async def test_reads_wait_for_early_writes_submitted_before_them(engine: SqliteEngine) -> None:
    """Read-your-writes: a read after an early write sees it, even when its commit is still
    under way when the write returns (it is on most of these rounds: the fsync is slow)."""
    still_committing = 0
    for k in range(30):
        rowcount, committed = await engine.write_early(_insert(k))
        assert rowcount == 1
        still_committing += not committed.done()
        seen = await engine.read(_select(k))
        assert seen == [(str(k),)]
        assert committed.done()
    assert still_committing > 0  # the barrier was needed, not only passed through


async def test_an_early_write_the_engine_refuses_holds_no_read_back(engine: SqliteEngine) -> None:
    """A write refused before it was queued (the writer stopped) leaves reads free."""
    engine._dead = RuntimeError("writer gone")  # as after an unexpected writer error
    with pytest.raises(sqlite3.OperationalError, match="writer stopped"):
        await engine.write_early(_insert(1))
    rows = await asyncio.wait_for(engine.read(_select(1)), timeout=5)
    assert rows == []


@asynccontextmanager
async def _lingering(path: Path, linger: float) -> AsyncIterator[SqliteEngine]:
    """An engine on ``path`` whose early writes linger ``linger`` s, with table ``t``."""
    eng = SqliteEngine(path, linger=linger)
    eng.start()
    try:
        await eng.write(lambda c: c.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)"))
        yield eng
    finally:
        await eng.close()


async def test_an_early_write_commits_with_the_write_that_follows(tmp_path: Path) -> None:
    """Within its linger, an early write's transaction stays open for the next write and
    commits with it; a job failing meanwhile takes nothing of the early write with it."""
    async with _lingering(tmp_path / "linger.db", 60.0) as eng:
        _, committed = await eng.write_early(_insert(1))
        await asyncio.sleep(0.05)
        assert not committed.done()  # kept open for a neighbour
        with pytest.raises(sqlite3.IntegrityError):
            await eng.write_early(_insert(1))  # fails alone: the transaction stays open
        assert not committed.done()
        assert await eng.write(_insert(2)) == 1  # its caller waits for the commit: both go
        assert committed.done()
        assert committed.exception() is None
        rows = await eng.read(lambda c: c.execute("SELECT k FROM t ORDER BY k").fetchall())
        assert rows == [(1,), (2,)]


async def test_a_read_ends_the_linger_of_the_early_writes_before_it(tmp_path: Path) -> None:
    async with _lingering(tmp_path / "flush.db", 60.0) as eng:
        _, committed = await eng.write_early(_insert(1))
        rows = await asyncio.wait_for(eng.read(_select(1)), timeout=10)
        assert rows == [("1",)]
        assert committed.done()
        await eng.write_early(_insert(2))  # closing the engine commits what lingers
    again = SqliteEngine(tmp_path / "flush.db")
    again.start()
    try:
        assert await again.read(_select(2)) == [("2",)]
    finally:
        await again.close()


async def test_an_early_write_alone_commits_when_its_linger_ends(tmp_path: Path) -> None:
    async with _lingering(tmp_path / "alone.db", 0.01) as eng:
        _, committed = await eng.write_early(_insert(1))
        await asyncio.wait_for(committed, timeout=10)
        # committed, seen by a connection of its own
        other = sqlite3.connect(tmp_path / "alone.db")
        try:
            assert other.execute("SELECT k FROM t").fetchall() == [(1,)]
        finally:
            other.close()


async def test_waiting_for_early_commits_ends_their_linger(tmp_path: Path) -> None:
    async with _lingering(tmp_path / "committed.db", 60.0) as eng:
        commits = [(await eng.write_early(_insert(k)))[1] for k in (1, 2)]
        assert not any(c.done() for c in commits)  # kept open for a neighbour
        await asyncio.wait_for(eng.committed(commits), timeout=10)
        assert all(c.done() and c.exception() is None for c in commits)
        other = sqlite3.connect(tmp_path / "committed.db")
        try:
            assert other.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (2,)]
        finally:
            other.close()
        await eng.committed([])  # nothing to wait for


async def test_waiting_for_early_commits_raises_a_failed_commit(tmp_path: Path) -> None:
    async with _lingering(tmp_path / "failed.db", 60.0) as eng:
        await eng.write(
            lambda c: c.execute(
                "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES "
                "t(k) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
        _, fine = await eng.write_early(_insert(1))
        _, orphan = await eng.write_early(
            lambda c: c.execute("INSERT INTO child VALUES (1, 42)")  # fails at COMMIT
        )
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            await asyncio.wait_for(eng.committed([fine, orphan]), timeout=10)
        assert await eng.read(_select(1)) == []  # the whole transaction was undone


def _insert_noting_thread(k: int, threads: list[int]) -> Callable[[sqlite3.Connection], int]:
    def job(c: sqlite3.Connection) -> int:
        threads.append(threading.get_ident())
        return int(c.execute("INSERT INTO t VALUES (?, ?)", (k, str(k))).rowcount)

    return job


async def test_an_early_write_on_an_idle_writer_runs_on_the_callers_thread(
    tmp_path: Path,
) -> None:
    """No job waiting and the connection free: the job runs at once on the event loop's
    thread, inside the open transaction; its COMMIT is still the writer thread's."""
    async with _lingering(tmp_path / "inline.db", 60.0) as eng:
        threads: list[int] = []
        assert (await eng.write_early(_insert_noting_thread(1, threads)))[0] == 1
        _, second = await eng.write_early(_insert_noting_thread(2, threads))
        assert threads == [threading.get_ident()] * 2
        assert not second.done()  # lingering for a neighbour, as when queued
        await asyncio.wait_for(eng.committed([second]), timeout=10)
        other = sqlite3.connect(tmp_path / "inline.db")
        try:
            assert other.execute("SELECT k FROM t ORDER BY k").fetchall() == [(1,), (2,)]
        finally:
            other.close()


async def test_an_early_write_queues_behind_the_jobs_already_waiting(engine: SqliteEngine) -> None:
    gate = threading.Event()
    held = asyncio.ensure_future(engine.write_alone(lambda _c: gate.wait(10)))
    await asyncio.sleep(0.05)  # the writer thread is in it
    first = asyncio.ensure_future(engine.write(_insert(1)))
    threads: list[int] = []
    early = asyncio.ensure_future(engine.write_early(_insert_noting_thread(2, threads)))
    await asyncio.sleep(0.05)
    assert threads == []  # not run ahead of the queued job
    gate.set()
    await asyncio.gather(held, first, early)
    assert threads != [threading.get_ident()]  # the writer thread ran it, in order
    rows = await engine.read(lambda c: c.execute("SELECT k FROM t ORDER BY rowid").fetchall())
    assert rows == [(1,), (2,)]


async def test_an_early_write_never_waits_on_the_loop_for_another_process(
    engine: SqliteEngine, tmp_path: Path
) -> None:
    """Another connection (another process) holds the database's write lock: the early
    write is queued for the writer thread, which waits for the lock; the loop goes on."""
    other = sqlite3.connect(tmp_path / "e.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        threads: list[int] = []
        early = asyncio.ensure_future(engine.write_early(_insert_noting_thread(1, threads)))
        await asyncio.sleep(0.1)  # the loop runs: the write did not block it
        assert not early.done()
        other.execute("COMMIT")
        _, committed = await asyncio.wait_for(early, timeout=20)
        await asyncio.wait_for(committed, timeout=20)
        assert threads != [threading.get_ident()]
    finally:
        other.close()
