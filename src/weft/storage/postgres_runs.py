"""Runs and their event logs on Postgres: one transaction per change.

Everything that moves a thread's runs (admission, claim, requeue, finish, delete) locks the
thread row first (``SELECT ... FOR UPDATE``), so those changes queue per thread: exactly one
of several concurrent ``reject`` admissions wins, and two claimers never both start a run of
the same thread. Stateless runs (no thread) have no row to lock; their claim is a single
``UPDATE ... WHERE status = 'pending'``. ``count_runs`` is kept by migration 2's trigger.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg import errors as pg_errors
from psycopg.types.json import Jsonb

from weft.errors import BadRequestError, ConflictError, NotFoundError
from weft.schema import (
    INFLIGHT_STATUSES,
    Run,
    RunEvent,
    RunStatus,
    check_lifecycle_move,
    check_writable,
)
from weft.storage.base import Admission, Finished, ThreadPatch
from weft.storage.postgres_assistants import Conn, PostgresBase
from weft.storage.postgres_assistants import _get as _get_assistant
from weft.storage.postgres_threads import apply_patch, get_thread_row, owner_clause

__all__ = ["PostgresRunStorage"]

_COLUMNS = (
    "run_id, thread_id, assistant_id, status, metadata, kwargs, multitask_strategy, attempt, "
    "error, owner, created_at, updated_at, started_at, ended_at"
)
_INFLIGHT = list(INFLIGHT_STATUSES)

# A thread's in-flight runs, oldest first (FIFO: by creation, ties by run ID).
_INFLIGHT_SQL = (
    f"SELECT {_COLUMNS} FROM runs WHERE thread_id = %s AND status = ANY(%s) "
    "ORDER BY created_at, run_id"
)

# The run a thread may start next: its running one if any (then none may start), else its
# oldest pending one.
_NEXT_SQL = (
    "SELECT run_id, status FROM runs WHERE thread_id = %s AND status = ANY(%s) "
    "ORDER BY status = 'running' DESC, created_at, run_id LIMIT 1"
)

_CLAIM_SQL = (
    "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = %s, "
    f"updated_at = %s WHERE run_id = %s AND status = 'pending' RETURNING {_COLUMNS}"
)


class PostgresRunStorage(PostgresBase):
    """The run methods of :class:`weft.storage.postgres.PostgresStorage`."""

    async def admit(
        self,
        run: Run,
        *,
        owner: str | None = None,
        claim: bool = False,
        stamp: bool = False,
        early: bool = False,  # commits before returning: an early result needs one writer
    ) -> Admission:
        tid = run.thread_id
        new = run.model_copy(update={"status": "pending"})
        async with self._transaction() as conn:
            assistant = await _get_assistant(conn, run.assistant_id, owner) if stamp else None
            if tid is None:
                if claim:
                    new = _claimed(new, run.created_at)
                await _insert(conn, new)
                return Admission(new, [], None, assistant)
            thread = await get_thread_row(conn, tid, owner, lock="UPDATE")
            check_writable(thread, "run")
            cur = await conn.execute(_INFLIGHT_SQL, (tid, _INFLIGHT))
            inflight = [Run.model_validate(r) for r in await cur.fetchall()]
            strategy = run.multitask_strategy
            if strategy == "reject" and inflight:
                first = inflight[0]
                raise ConflictError(
                    f"thread {tid} is busy: run {first.run_id} is {first.status} "
                    "(multitask_strategy='reject')"
                )
            if strategy in ("interrupt", "rollback") and inflight:
                # The pending ones never start; returned as they are now stored.
                at = run.created_at
                await conn.execute(
                    "UPDATE runs SET status = 'interrupted', updated_at = %s, ended_at = %s "
                    "WHERE thread_id = %s AND status = 'pending'",
                    (at, at, tid),
                )
                stopped = {"status": "interrupted", "updated_at": at, "ended_at": at}
                inflight = [
                    r.model_copy(update=stopped) if r.status == "pending" else r for r in inflight
                ]
            if claim and not any(r.status in INFLIGHT_STATUSES for r in inflight):
                new = _claimed(new, run.created_at)
            await _insert(conn, new)
            metadata = (
                {"graph_id": assistant.graph_id, "assistant_id": assistant.assistant_id}
                if assistant is not None
                else None
            )
            if metadata is not None and any(
                thread.metadata.get(k) != v for k, v in metadata.items()
            ):
                await conn.execute(
                    "UPDATE threads SET status = 'busy', updated_at = %s, metadata = %s "
                    "WHERE thread_id = %s",
                    (run.created_at, Jsonb({**thread.metadata, **metadata}), tid),
                )
            else:
                await conn.execute(
                    "UPDATE threads SET status = 'busy', updated_at = %s WHERE thread_id = %s",
                    (run.created_at, tid),
                )
            return Admission(new, inflight, thread.session_id, assistant)

    async def get_run(
        self, run_id: str, *, thread_id: str | None = None, owner: str | None = None
    ) -> Run:
        sql = f"SELECT {_COLUMNS} FROM runs r WHERE run_id = %s"
        params: tuple[Any, ...] = ()
        if thread_id is not None:
            sql += " AND thread_id = %s"
            params += (thread_id,)
        if owner is not None:
            # The run's owner or none, and its thread (if any) visible too.
            sql += (
                " AND (owner IS NULL OR owner = %s) AND (thread_id IS NULL OR EXISTS "
                "(SELECT 1 FROM threads t WHERE t.thread_id = r.thread_id "
                "AND (t.owner IS NULL OR t.owner = %s)))"
            )
            params += (owner, owner)
        async with self._transaction() as conn:
            cur = await conn.execute(sql, (run_id, *params))
            row = await cur.fetchone()
        if row is None:
            where = f" in thread {thread_id}" if thread_id is not None else ""
            raise NotFoundError(f"run {run_id} not found{where}")
        return Run.model_validate(row)

    async def list_runs(
        self,
        thread_id: str,
        *,
        status: RunStatus | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[Run]:
        clause, params = owner_clause(owner)
        sql = f"SELECT {_COLUMNS} FROM runs WHERE thread_id = %s{clause}"
        if status is not None:
            sql += " AND status = %s"
            params += (status,)
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT %s OFFSET %s"
        async with self._transaction() as conn:
            await get_thread_row(conn, thread_id, owner)
            cur = await conn.execute(sql, (thread_id, *params, limit, offset))
            return [Run.model_validate(r) for r in await cur.fetchall()]

    async def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]:
        wanted = sorted({str(s) for s in statuses})
        if not wanted:
            return []
        async with self._transaction() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE status = ANY(%s) ORDER BY created_at, run_id",
                (wanted,),
            )
            return [Run.model_validate(r) for r in await cur.fetchall()]

    async def claim_run(self, run_id: str, *, started_at: datetime) -> Run | None:
        async with self._transaction() as conn:
            found, tid = await _thread_of(conn, run_id)
            if not found:
                return None
            if tid is not None:
                if not await _lock_thread(conn, tid):
                    return None  # deleted meanwhile, with its runs
                cur = await conn.execute(_NEXT_SQL, (tid, _INFLIGHT))
                head = await cur.fetchone()
                if head is None or head["status"] != "pending" or head["run_id"] != run_id:
                    return None
            cur = await conn.execute(_CLAIM_SQL, (started_at, started_at, run_id))
            row = await cur.fetchone()
            return Run.model_validate(row) if row is not None else None

    async def requeue_run(self, run_id: str, *, updated_at: datetime) -> Run:
        async with self._transaction() as conn:
            found, tid = await _thread_of(conn, run_id)
            if found and tid is not None:
                await _lock_thread(conn, tid)
            cur = await conn.execute(
                "UPDATE runs SET status = 'pending', updated_at = %s "
                f"WHERE run_id = %s AND status = 'running' RETURNING {_COLUMNS}",
                (updated_at, run_id),
            )
            row = await cur.fetchone()
            if row is not None:
                return Run.model_validate(row)
            current = await _status(conn, run_id)
            raise ConflictError(f"run {run_id} is {current}: only a running run can be requeued")

    async def finish(
        self,
        run_id: str,
        *,
        status: RunStatus,
        error: str | None,
        ended_at: datetime,
        thread_patch: ThreadPatch | None = None,
        claim_next: bool = False,
        early: bool = False,  # as in admit
        on_queued: Callable[[], None] | None = None,
    ) -> Finished:
        if status in INFLIGHT_STATUSES:
            raise BadRequestError(f"finish_run needs a final status, not {status!r}")
        done = await self._finish(run_id, status, error, ended_at, thread_patch, claim_next)
        if on_queued is not None:  # committed: ordered before whatever follows
            on_queued()
        return done

    async def _finish(
        self,
        run_id: str,
        status: RunStatus,
        error: str | None,
        ended_at: datetime,
        thread_patch: ThreadPatch | None,
        claim_next: bool,
    ) -> Finished:
        async with self._transaction() as conn:
            found, tid = await _thread_of(conn, run_id)
            if found and tid is not None:
                await _lock_thread(conn, tid)
            current = await _status(conn, run_id, lock=True)
            if current not in INFLIGHT_STATUSES:
                raise ConflictError(f"run {run_id} already ended ({current})")
            cur = await conn.execute(
                "UPDATE runs SET status = %s, error = %s, ended_at = %s, updated_at = %s "
                f"WHERE run_id = %s RETURNING {_COLUMNS}",
                (status, error, ended_at, ended_at, run_id),
            )
            row = await cur.fetchone()
            assert row is not None  # locked above
            ended = Run.model_validate(row)
            if tid is None:
                return Finished(ended)
            cur = await conn.execute(_INFLIGHT_SQL, (tid, _INFLIGHT))
            inflight = [Run.model_validate(r) for r in await cur.fetchall()]
            pending = [r for r in inflight if r.status == "pending"]
            claimed: Run | None = None
            if (
                claim_next
                and pending
                and len(pending) == len(inflight)  # none running
                and _due(pending[0], ended_at)
            ):
                cur = await conn.execute(_CLAIM_SQL, (ended_at, ended_at, pending[0].run_id))
                got = await cur.fetchone()
                claimed = Run.model_validate(got) if got is not None else None
            if thread_patch is not None:
                await _patch_thread(conn, tid, thread_patch, busy=bool(inflight))
            return Finished(ended, claimed, waiting=bool(pending) and claimed is None)

    async def delete_runs(self, run_ids: Sequence[str]) -> None:
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run IDs, not a str")
        ids = sorted({str(r) for r in run_ids})
        if not ids:
            return
        async with self._transaction() as conn:
            # The threads first, in one order: the count trigger updates them after the runs,
            # and a finish or claim of these runs locks the thread before the run.
            await conn.execute(
                "SELECT 1 FROM threads WHERE thread_id IN "
                "(SELECT thread_id FROM runs WHERE run_id = ANY(%s)) "
                "ORDER BY thread_id FOR UPDATE",
                (ids,),
            )
            # run_events go by ON DELETE CASCADE.
            await conn.execute("DELETE FROM runs WHERE run_id = ANY(%s)", (ids,))

    async def append_run_events(self, run_id: str, events: Sequence[RunEvent]) -> None:
        if not events:
            return
        rows = [(run_id, e.seq, e.event, Jsonb(e.data)) for e in events]
        async with self._transaction() as conn:
            try:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        "INSERT INTO run_events (run_id, seq, event, data) VALUES (%s, %s, %s, %s)",
                        rows,
                    )
            except pg_errors.ForeignKeyViolation as e:
                raise NotFoundError(f"run {run_id} not found") from e
            except pg_errors.UniqueViolation as e:
                seqs = ", ".join(str(ev.seq) for ev in events)
                raise ConflictError(f"run {run_id} already has an event among seq {seqs}") from e

    async def run_events(self, run_id: str, *, after: int = 0) -> list[RunEvent]:
        async with self._transaction() as conn:
            cur = await conn.execute(
                "SELECT seq, event, data FROM run_events WHERE run_id = %s AND seq > %s "
                "ORDER BY seq",
                (run_id, after),
            )
            return [RunEvent.model_validate(r) for r in await cur.fetchall()]


# --- row helpers ------------------------------------------------------------------------------


async def _insert(conn: Conn, run: Run) -> None:
    """Insert ``run`` as it is; ConflictError when its ID is taken."""
    cur = await conn.execute(
        f"INSERT INTO runs ({_COLUMNS}) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (run_id) DO NOTHING RETURNING run_id",
        (
            run.run_id,
            run.thread_id,
            run.assistant_id,
            run.status,
            Jsonb(run.metadata),
            Jsonb(run.kwargs),
            run.multitask_strategy,
            run.attempt,
            run.error,
            run.owner,
            run.created_at,
            run.updated_at,
            run.started_at,
            run.ended_at,
        ),
    )
    if await cur.fetchone() is None:
        raise ConflictError(f"run {run.run_id} already exists")


async def _thread_of(conn: Conn, run_id: str) -> tuple[bool, str | None]:
    """Whether the run exists, and its thread (fixed for the run's life, so read unlocked)."""
    cur = await conn.execute("SELECT thread_id FROM runs WHERE run_id = %s", (run_id,))
    row = await cur.fetchone()
    if row is None:
        return False, None
    tid = row["thread_id"]
    return True, (str(tid) if tid is not None else None)


async def _lock_thread(conn: Conn, thread_id: str) -> bool:
    """Lock the thread row (False when it is gone)."""
    cur = await conn.execute("SELECT 1 FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,))
    return await cur.fetchone() is not None


async def _status(conn: Conn, run_id: str, *, lock: bool = False) -> str:
    """The run's status (NotFoundError when it is gone), optionally locking its row."""
    sql = "SELECT status FROM runs WHERE run_id = %s" + (" FOR UPDATE" if lock else "")
    cur = await conn.execute(sql, (run_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError(f"run {run_id} not found")
    return str(row["status"])


async def _patch_thread(conn: Conn, thread_id: str, patch: ThreadPatch, *, busy: bool) -> None:
    """Apply a finishing run's ``patch`` to its (locked) thread; ``busy`` stays while another
    run of the thread is in flight."""
    if busy:
        patch = dataclasses.replace(patch, status="busy")
    current = await get_thread_row(conn, thread_id, None)
    if patch.lifecycle is not None:
        check_lifecycle_move(thread_id, current.lifecycle, patch.lifecycle)
    await apply_patch(conn, current, patch, lifecycle=patch.lifecycle)


def _claimed(run: Run, at: datetime) -> Run:
    return run.model_copy(
        update={"status": "running", "attempt": run.attempt + 1, "started_at": at, "updated_at": at}
    )


def _due(run: Run, now: datetime) -> bool:
    """Whether a pending run's ``after_seconds`` delay has passed at ``now``."""
    delay = run.kwargs.get("after_seconds") or 0
    return run.created_at + timedelta(seconds=float(delay)) <= now
