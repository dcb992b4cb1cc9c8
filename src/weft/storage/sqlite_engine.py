"""SQLite access for weft: one writer thread with group commit, reads on the caller's thread.

Why not aiosqlite: aiosqlite runs each statement as its own hop to a worker thread and
commits when told to, so N concurrent writers pay N commits (N fsyncs) plus a hop per
statement. Here every write is a *job* (a plain function of a ``sqlite3.Connection``)
queued to one writer thread. The thread takes every job waiting in the queue, runs each
inside its own savepoint of one transaction, commits once, and only then resolves the
jobs' futures. So concurrent runs share one fsync (group commit), a job's caller never
hears "saved" before its data is durable, and one failing job does not undo the others.

Reads of a file database run inline on the event loop thread through a read-only
connection: under WAL a reader never waits for the writer, and a point read costs less
than a hop to another thread. An in-memory database has a single connection, so its
reads are jobs too.

A few bookkeeping writes on a run's critical path (its admission, its finish) are *early*:
their caller gets the job's result as soon as it ran, while the COMMIT (and its fsync) is
still under way, plus a future of that commit. Nothing observable breaks: reads through
:meth:`SqliteEngine.read` first wait for every early write submitted before them (a
read-your-writes barrier), later writes queue behind them, and what the caller acts on
(starting a graph, returning its result) is made durable by the writes that follow.
Since nobody waits for an early write's commit, the writer keeps a transaction holding only
early writes open for a few milliseconds (:data:`LINGER`) and runs the writes that arrive
meanwhile in it: they share one COMMIT. Any write whose caller waits for its commit, or a read
that waits for an early write, ends the wait at once. When the writer thread is idle (no job
queued or running), an early write runs at once on the caller's thread, in the open
transaction: two thread hops less on a run's critical path; the COMMIT stays the writer
thread's, asked for by a timer of the event loop when the linger ends (waking the writer
thread at once would make it compete for the GIL with the request being served). It never
waits there for another process's lock: it is queued instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

Job = Callable[[sqlite3.Connection], Any]

_MAX_BATCH = 512
LINGER = 0.005
"""How long (s) a transaction holding only early writes stays open for the writes that follow,
so that they share its COMMIT (one fsync): a run's admission commits with its first
checkpoint, its finish with the next run's admission. A read waiting for them, or any other
write, ends the wait at once."""
_BUSY_TIMEOUT_MS = 30_000


@dataclass
class _Work:
    fn: Job
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    # "group": runs in the shared transaction; "alone": runs outside any transaction
    # and manages its own (used by code that issues BEGIN/COMMIT itself).
    mode: Literal["group", "alone"] = "group"
    committed: asyncio.Future[None] | None = None
    """For an early write: resolved once its transaction committed (``future`` got the
    result before the COMMIT)."""
    result: Any = None
    error: BaseException | None = field(default=None)


class _Flush:
    """Commit the open transaction now: queued by a read or a wait for early writes, and by
    the event loop when the linger of a transaction an inline write began ends."""


_FLUSH = _Flush()


def _deliver(batch: list[_Work]) -> None:
    for w in batch:
        if w.committed is not None and not w.committed.done():
            if w.error is not None:
                w.committed.set_exception(w.error)
                w.committed.exception()  # retrieved: the caller may never look
            else:
                w.committed.set_result(None)
        if w.future.done():  # the awaiting coroutine was cancelled, or an early result
            continue
        if w.error is not None:
            w.future.set_exception(w.error)
        else:
            w.future.set_result(w.result)


def _deliver_early(batch: list[_Work]) -> None:
    """Results of early writes that ran without error, before their COMMIT."""
    for w in batch:
        if not w.future.done():
            w.future.set_result(w.result)


def connect(target: str, *, uri: bool = False, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit BEGIN), usable from any one thread."""
    conn = sqlite3.connect(
        target,
        uri=uri,
        isolation_level=None,
        check_same_thread=False,
        timeout=_BUSY_TIMEOUT_MS / 1000,
    )
    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return conn


class SqliteEngine:
    """Owns the connections to one SQLite database. Use :meth:`start` and :meth:`close`.

    A write whose awaiting coroutine is cancelled still commits when the writer reaches it:
    cancelling the wait does not take the job back.
    """

    def __init__(
        self, path: Path | None, *, synchronous: str = "full", linger: float = LINGER
    ) -> None:
        self.path = path
        self.synchronous = synchronous.upper()
        self.linger = linger
        self._queue: queue.SimpleQueue[_Work | _Flush | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._writer: sqlite3.Connection | None = None
        self._readers = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._dead: BaseException | None = None
        self._uncommitted: asyncio.Future[None] | None = None
        """The commit of the last early write submitted (reads wait for it)."""
        # the writer thread's own: the jobs of its open transaction, and since when it is open
        self._open: list[_Work] = []
        self._open_since = 0.0
        # Whoever uses the writer connection holds this: the writer thread for each batch,
        # or the event loop's thread for an early write it runs itself (see _inline).
        self._lock = threading.Lock()
        self._submitted = 0
        """Jobs queued (by the event loop's thread)."""
        self._finished = 0
        """Jobs the writer thread ran or failed; equal to _submitted when none waits."""

    @property
    def in_memory(self) -> bool:
        return self.path is None

    def start(self) -> None:
        """Open the writer connection (raising sqlite3 errors to the caller), start its thread."""
        conn = connect(":memory:" if self.path is None else str(self.path))
        try:
            if self.path is not None:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise sqlite3.OperationalError(f"could not switch to WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except BaseException:
            conn.close()
            raise
        self._writer = conn
        self._thread = threading.Thread(target=self._run, name="weft-sqlite-writer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
        with self._readers_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    # -- the API -----------------------------------------------------------------------

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer's transaction; return once it is committed (durable)."""
        result: T = await self._submit(fn, "group")
        return result

    async def write_early(
        self,
        fn: Callable[[sqlite3.Connection], T],
        *,
        on_queued: Callable[[], None] | None = None,
    ) -> tuple[T, asyncio.Future[None]]:
        """Run ``fn`` in the writer's transaction; return its result once it ran, before the
        transaction commits, with a future of the commit (raising if the commit failed).

        Until that commit, :meth:`read` waits for it, and every later write commits with or
        after it. For writes whose caller only needs the outcome to go on, and whose
        durability the writes that follow provide (or that can be derived again after a
        crash). An error of ``fn`` itself is raised here, as by :meth:`write`.
        ``on_queued`` is called once the job is queued (before it ran): from then on, every
        read waits for its commit and every write queues behind it.
        """
        loop = asyncio.get_running_loop()
        committed: asyncio.Future[None] = loop.create_future()
        ran, result = self._inline(fn, loop, committed)
        submitted = None if ran else self._submit(fn, "group", committed)
        self._uncommitted = committed  # only once run or queued: a refused job commits nothing
        if on_queued is not None:
            on_queued()
        if submitted is not None:
            result = await submitted
        return result, committed

    async def committed(self, commits: list[asyncio.Future[None]]) -> None:
        """Wait for the commits of early writes (their ``write_early`` futures), asking the
        writer to commit its open transaction now rather than at the end of its linger.
        Raises the first commit's error, if any."""
        commits = list(commits)  # the caller's list may grow meanwhile
        if not all(c.done() for c in commits):
            self._queue.put(_FLUSH)
            await asyncio.wait(commits)
        for c in commits:
            c.result()

    async def write_alone(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the writer connection outside weft's transaction.

        For code that issues its own BEGIN/COMMIT (migrations, the LangGraph SQLite store).
        A job that returns with its transaction still open is rolled back and fails.
        """
        result: T = await self._submit(fn, "alone")
        return result

    async def read(self, fn: Callable[[sqlite3.Connection], T], *, after_early: bool = True) -> T:
        """Run ``fn`` against a consistent snapshot of committed data.

        A file database is read inline, on the calling thread, through that thread's own
        read-only connection; an in-memory one through the writer. The read first waits
        for the commit of any early write submitted before it (:meth:`write_early`), unless
        ``after_early`` is off (reads of tables early writes never touch).
        """
        pending = self._uncommitted
        if pending is not None and after_early:
            if pending.done():
                self._uncommitted = None
            elif pending.get_loop() is asyncio.get_running_loop():
                self._queue.put(_FLUSH)  # the writer may be keeping it for a neighbour
                await asyncio.wait({pending})
        if self.path is None:
            result: T = await self._submit(fn, "group")
            return result
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def _inline(
        self, fn: Job, loop: asyncio.AbstractEventLoop, committed: asyncio.Future[None]
    ) -> tuple[bool, Any]:
        """Run an early write here, on the calling thread, when the writer is idle: no job
        queued or running, the connection free. It joins the open transaction (or begins
        one, unless another process holds the database: then it is queued as usual) and
        its COMMIT is left to the writer thread, as for any early write. Saves the two
        thread hops of a queued job on a run's critical path. (False, None) when it did
        not run; an error of ``fn`` is raised, as by :meth:`write_early`."""
        conn = self._writer
        if conn is None or not self._lock.acquire(blocking=False):
            return False, None
        try:
            if self._closed or self._dead is not None or self._submitted != self._finished:
                return False, None
            if not conn.in_transaction:
                conn.execute("PRAGMA busy_timeout=0")  # never wait for a lock on this thread
                try:
                    conn.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError:
                    return False, None
                finally:
                    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
                self._open_since = time.monotonic()
            idle = not self._open
            w = _Work(fn, loop, loop.create_future(), "group", committed)
            if not self._run_job(conn, w):
                w.future.cancel()  # its error is raised here; the hand-back skips it
                assert w.error is not None
                raise w.error
            w.future.set_result(None)
            if idle:  # nobody held it open: the writer does not know, this loop ends the linger
                loop.call_later(self.linger, self._end_linger, self._open_since)
            return True, w.result
        finally:
            self._lock.release()

    def _end_linger(self, opened: float) -> None:
        """Ask the writer to commit the transaction an inline write opened at ``opened``,
        unless it was committed meanwhile."""
        if self._open and self._open_since == opened and not self._closed:
            self._queue.put(_FLUSH)

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            if self._closed:
                raise sqlite3.ProgrammingError("the SQLite storage is closed")
            assert self.path is not None
            conn = connect(str(self.path), readonly=True)
            self._readers.conn = conn
            with self._readers_lock:
                self._reader_conns.append(conn)
        return conn

    def _submit(
        self,
        fn: Job,
        mode: Literal["group", "alone"],
        committed: asyncio.Future[None] | None = None,
    ) -> asyncio.Future[Any]:
        if self._dead is not None:
            raise sqlite3.OperationalError(
                f"the SQLite writer stopped after an unexpected error: {self._dead}"
            )
        if self._closed or self._thread is None:
            raise sqlite3.ProgrammingError("the SQLite storage is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._submitted += 1
        self._queue.put(_Work(fn, loop, fut, mode, committed))
        return fut

    # -- the writer thread ------------------------------------------------------------

    def _run(self) -> None:
        assert self._writer is not None
        conn = self._writer
        try:
            stop = False
            while not stop:
                batch, flush, stop = self._take()
                with self._lock:
                    try:
                        self._run_batch(conn, batch, linger=not (flush or stop))
                    except BaseException as e:  # noqa: BLE001 - the thread must not die silently
                        _reset(conn)
                        failed = list({id(w): w for w in [*self._open, *batch]}.values())
                        self._open = []
                        for w in failed:
                            w.error = w.error or e
                        self._hand_back(failed)  # futures already resolved are left alone
                    finally:
                        self._finished += len(batch)
        except BaseException as e:
            self._dead = e
            raise
        finally:
            conn.close()

    def _take(self) -> tuple[list[_Work], bool, bool]:
        """The next batch of jobs, whether a read asked for a commit, whether the engine
        stops after it. While early writes wait in the open transaction, waits only until
        their linger ends (then an empty batch, which commits them)."""
        first: _Work | _Flush | None
        if self._open:
            left = self._open_since + self.linger - time.monotonic()
            try:
                first = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                return [], True, False
        else:
            first = self._queue.get()
        items = [first]
        while first is not None and len(items) < _MAX_BATCH:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            items.append(item)
            if item is None:
                break
        works = [w for w in items if isinstance(w, _Work)]
        return works, any(w is _FLUSH for w in items), items[-1] is None

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Work], *, linger: bool) -> None:
        """Run ``batch``, the ``group`` jobs in the open transaction; commit unless every job
        in it is an early write still within its linger (their results are handed back
        now: the commit waits for the writes that follow, to share their fsync)."""
        ran: list[_Work] = []
        for w in batch:
            if w.mode == "group":
                if self._run_job(conn, w):
                    ran.append(w)
                continue
            self._commit(conn)
            try:
                w.result = w.fn(conn)
                if conn.in_transaction:
                    _reset(conn)
                    raise sqlite3.ProgrammingError(
                        "a job returned with its transaction still open; it was rolled back"
                    )
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                w.error = e
                _reset(conn)
            self._hand_back([w])
        held = {id(w) for w in self._open}  # a job that failed may have undone the others
        early = [w for w in ran if w.committed is not None and id(w) in held]
        if early:
            self._hand_back(early, _deliver_early)
        keep = (
            linger
            and time.monotonic() - self._open_since < self.linger
            and all(w.committed is not None for w in self._open)
        )
        if not keep:
            self._commit(conn)

    def _run_job(self, conn: sqlite3.Connection, w: _Work) -> bool:
        """Run ``w`` in the open transaction (begun here when none is), in a savepoint of its
        own when other jobs share the transaction. A job that fails is handed back at once
        (nothing of it stays); True when it ran and waits for the commit."""
        if not conn.in_transaction:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                w.error = e
                self._hand_back([w])
                return False
            self._open_since = time.monotonic()
        if not self._open:  # no neighbour to protect: the transaction is the job's own
            try:
                w.result = w.fn(conn)
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                w.error = e
                _reset(conn)
                self._hand_back([w])
                return False
            self._open.append(w)
            return True
        conn.execute("SAVEPOINT job")
        try:
            w.result = w.fn(conn)
        except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
            w.error = e
            if not conn.in_transaction:  # SQLite rolled back the whole transaction itself
                for other in self._open:
                    other.error = e
                self._hand_back([*self._open, w])
                self._open = []
                return False
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            self._hand_back([w])
            return False
        conn.execute("RELEASE job")
        self._open.append(w)
        return True

    def _commit(self, conn: sqlite3.Connection) -> None:
        """Commit the open transaction and hand back its jobs (all failed if it failed)."""
        group, self._open = self._open, []
        try:
            if conn.in_transaction:
                conn.execute("COMMIT")
        except BaseException as e:  # noqa: BLE001 - nothing of the group was committed
            _reset(conn)
            for w in group:
                w.error = w.error or e
        self._hand_back(group)

    @staticmethod
    def _hand_back(done: list[_Work], deliver: Callable[[list[_Work]], None] = _deliver) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[_Work]] = {}
        for w in done:
            by_loop.setdefault(w.loop, []).append(w)
        for loop, works in by_loop.items():
            # A closed loop raises RuntimeError: nobody is waiting for these any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(deliver, works)


def _reset(conn: sqlite3.Connection) -> None:
    """Roll back whatever is open, tolerating SQLite having done it already."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
