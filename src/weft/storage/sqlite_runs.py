"""Runs and their stored events on SQLite: one writer job per change.

The single writer thread runs jobs one after another, so an admission or a claim reads the
thread's in-flight runs and writes its decision without any other writer in between: two
admissions on one thread, or two claimers of one run, are serialised by the writer itself.
The thread's ``count_runs`` is raised by the admission's own update of the thread (the only
insert path) and lowered by the delete trigger of migration 2.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from weft.errors import BadRequestError, ConflictError, NotFoundError
from weft.schema import (
    INFLIGHT_STATUSES,
    Run,
    RunEvent,
    RunStatus,
    check_lifecycle_move,
    check_writable,
)
from weft.storage.base import Admission, Finished, Storage, ThreadPatch
from weft.storage.migrations import INFLIGHT_RUNS
from weft.storage.sqlite_assistants import _get as _get_assistant
from weft.storage.sqlite_engine import SqliteEngine
from weft.storage.sqlite_rows import _dumps, _owner_clause, _parse_ts, _ts
from weft.storage.sqlite_threads import _apply, _get

_COLUMNS = (
    "run_id, thread_id, assistant_id, status, metadata, kwargs, multitask_strategy, attempt, "
    "error, owner, created_at, updated_at, started_at, ended_at"
)
INFLIGHT_SQL = (
    f"SELECT {_COLUMNS} FROM runs WHERE thread_id = ? AND {INFLIGHT_RUNS} "
    "ORDER BY created_at, run_id"
)
"""A thread's in-flight runs, oldest first (the ``runs_thread_inflight`` index)."""
OLDEST_PENDING_SQL = (
    f"SELECT run_id FROM runs WHERE thread_id = ? AND {INFLIGHT_RUNS} AND status = 'pending' "
    "ORDER BY created_at, run_id LIMIT 1"
)
"""The run a FIFO claim on a thread may start (the ``runs_thread_inflight`` index)."""


class SqliteRunStorage(Storage):
    """The run methods of :class:`weft.storage.sqlite.SqliteStorage`."""

    engine: SqliteEngine

    async def admit(
        self,
        run: Run,
        *,
        owner: str | None = None,
        claim: bool = False,
        stamp: bool = False,
        early: bool = False,
    ) -> Admission:
        def job(conn: sqlite3.Connection) -> Admission:
            return _admit(conn, run, owner, claim, stamp)

        if not early:
            return await self.engine.write(job)
        admission, committed = await self.engine.write_early(job)
        return dataclasses.replace(admission, committed=committed)

    async def get_run(
        self, run_id: str, *, thread_id: str | None = None, owner: str | None = None
    ) -> Run:
        def read(conn: sqlite3.Connection) -> Run:
            sql = f"SELECT {_prefixed('r')} FROM runs r WHERE r.run_id = ?"
            params: list[Any] = [run_id]
            if thread_id is not None:
                sql += " AND r.thread_id = ?"
                params.append(thread_id)
            if owner is not None:
                sql += (
                    " AND (r.owner IS NULL OR r.owner = ?) AND (r.thread_id IS NULL OR EXISTS "
                    "(SELECT 1 FROM threads t WHERE t.thread_id = r.thread_id "
                    "AND (t.owner IS NULL OR t.owner = ?)))"
                )
                params.extend([owner, owner])
            row = conn.execute(sql, params).fetchone()
            if row is None:
                where = f" in thread {thread_id}" if thread_id is not None else ""
                raise NotFoundError(f"run {run_id} not found{where}")
            return _run(row)

        return await self.engine.read(read)

    async def list_runs(
        self,
        thread_id: str,
        *,
        status: RunStatus | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[Run]:
        def read(conn: sqlite3.Connection) -> list[Run]:
            _get(conn, thread_id, owner)
            seen, params = _owner_clause(owner)
            where = "thread_id = ?" + seen
            args: list[Any] = [thread_id, *params]
            if status is not None:
                where += " AND status = ?"
                args.append(status)
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE {where} "
                "ORDER BY created_at DESC, run_id DESC LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
            return [_run(r) for r in rows]

        return await self.engine.read(read)

    async def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]:
        wanted = list(dict.fromkeys(statuses))
        if not wanted:
            return []

        def read(conn: sqlite3.Connection) -> list[Run]:
            inflight = f" AND {INFLIGHT_RUNS}" if set(wanted) <= set(INFLIGHT_STATUSES) else ""
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM runs WHERE status IN ({','.join('?' * len(wanted))})"
                f"{inflight} ORDER BY created_at, run_id",
                wanted,
            ).fetchall()
            return [_run(r) for r in rows]

        return await self.engine.read(read)

    async def claim_run(self, run_id: str, *, started_at: datetime) -> Run | None:
        return await self.engine.write(lambda conn: _claim(conn, run_id, started_at))

    async def requeue_run(self, run_id: str, *, updated_at: datetime) -> Run:
        def write(conn: sqlite3.Connection) -> Run:
            current = _require(conn, run_id)
            if current.status != "running":
                raise ConflictError(
                    f"run {run_id} is {current.status}: only a running run can be requeued"
                )
            conn.execute(
                "UPDATE runs SET status = 'pending', updated_at = ? WHERE run_id = ?",
                (_ts(updated_at), run_id),
            )
            return _require(conn, run_id)

        return await self.engine.write(write)

    async def finish(
        self,
        run_id: str,
        *,
        status: RunStatus,
        error: str | None,
        ended_at: datetime,
        thread_patch: ThreadPatch | None = None,
        claim_next: bool = False,
        early: bool = False,
        on_queued: Callable[[], None] | None = None,
    ) -> Finished:
        if status in INFLIGHT_STATUSES:
            raise BadRequestError(f"finish_run needs a final status, not {status!r}")

        def job(conn: sqlite3.Connection) -> Finished:
            return _finish(conn, run_id, status, error, ended_at, thread_patch, claim_next)

        if not early:
            done = await self.engine.write(job)
            if on_queued is not None:
                on_queued()
            return done
        finished, committed = await self.engine.write_early(job, on_queued=on_queued)
        return dataclasses.replace(finished, committed=committed)

    async def delete_runs(self, run_ids: Sequence[str]) -> None:
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return

        def write(conn: sqlite3.Connection) -> None:
            marks = ",".join("?" * len(ids))
            conn.execute(f"DELETE FROM run_events WHERE run_id IN ({marks})", ids)
            conn.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", ids)

        await self.engine.write(write)

    async def append_run_events(self, run_id: str, events: Sequence[RunEvent]) -> None:
        if not events:
            return
        rows = [(run_id, e.seq, e.event, _dumps(e.data)) for e in events]

        def write(conn: sqlite3.Connection) -> None:
            _require(conn, run_id)
            try:
                conn.executemany(
                    "INSERT INTO run_events (run_id, seq, event, data) VALUES (?, ?, ?, ?)", rows
                )
            except sqlite3.IntegrityError as e:
                seqs = ", ".join(str(r[1]) for r in rows)
                raise ConflictError(f"run {run_id} already has an event among seq {seqs}") from e

        await self.engine.write(write)

    async def run_events(self, run_id: str, *, after: int = 0) -> list[RunEvent]:
        def read(conn: sqlite3.Connection) -> list[RunEvent]:
            rows = conn.execute(
                "SELECT seq, event, data FROM run_events WHERE run_id = ? AND seq > ? ORDER BY seq",
                (run_id, after),
            ).fetchall()
            return [RunEvent(seq=r[0], event=r[1], data=json.loads(r[2])) for r in rows]

        return await self.engine.read(read)


# --- jobs ------------------------------------------------------------------------------------


class _Head(NamedTuple):
    """What an admission reads of its thread's row."""

    thread_id: str
    kind: str
    lifecycle: str
    session_id: str | None
    graph_id: Any
    """``metadata.graph_id`` (as SQLite extracts it)."""
    assistant_id: Any
    """``metadata.assistant_id``."""


_HEAD_SQL = (
    "SELECT thread_id, kind, lifecycle, session_id, json_extract(metadata, '$.graph_id'), "
    "json_extract(metadata, '$.assistant_id') FROM threads WHERE thread_id = ?"
)


def _admit(
    conn: sqlite3.Connection,
    run: Run,
    owner: str | None,
    claim: bool,
    stamp: bool,
) -> Admission:
    """Admit ``run``. It reads of the thread only what it decides on, and writes the thread's
    metadata only when the stamps change (a thread's first run, or another assistant's)."""
    assistant = _get_assistant(conn, run.assistant_id, owner) if stamp else None
    if run.thread_id is None:
        new = _admitted(run, claim)
        _insert(conn, new)
        return Admission(new, [], None, assistant)
    thread_id = run.thread_id
    seen, params = _owner_clause(owner)
    row = conn.execute(_HEAD_SQL + seen, (thread_id, *params)).fetchone()
    if row is None:
        raise NotFoundError(f"thread {thread_id} not found")
    head = _Head(*row)
    check_writable(head, "run")
    inflight = _inflight(conn, thread_id)
    if inflight and run.multitask_strategy == "reject":
        first = inflight[0]
        raise ConflictError(
            f"thread {thread_id} is busy: run {first.run_id} is {first.status} "
            "(multitask_strategy='reject')"
        )
    if run.multitask_strategy in ("interrupt", "rollback"):
        stopped = [r.run_id for r in inflight if r.status == "pending"]
        if stopped:
            at = _ts(run.created_at)
            conn.execute(
                "UPDATE runs SET status = 'interrupted', updated_at = ?, ended_at = ? "
                f"WHERE run_id IN ({','.join('?' * len(stopped))})",
                (at, at, *stopped),
            )
            done = {"status": "interrupted", "updated_at": run.created_at}
            inflight = [
                r.model_copy(update={**done, "ended_at": run.created_at})
                if r.status == "pending"
                else r
                for r in inflight
            ]
    new = _admitted(run, claim and not any(r.status in INFLIGHT_STATUSES for r in inflight))
    _insert(conn, new)
    at = _ts(run.created_at)
    if assistant is None or (head.graph_id, head.assistant_id) == (
        assistant.graph_id,
        assistant.assistant_id,
    ):  # nothing new to stamp: the metadata (and its index) is left alone
        conn.execute(
            "UPDATE threads SET status = 'busy', updated_at = ?, count_runs = count_runs + 1 "
            "WHERE thread_id = ?",
            (at, thread_id),
        )
    else:
        conn.execute(
            "UPDATE threads SET status = 'busy', updated_at = ?, count_runs = count_runs + 1, "
            "metadata = json_set(metadata, '$.graph_id', ?, '$.assistant_id', ?) "
            "WHERE thread_id = ?",
            (at, assistant.graph_id, assistant.assistant_id, thread_id),
        )
    return Admission(new, inflight, head.session_id, assistant)


def _admitted(run: Run, claimed: bool) -> Run:
    """``run`` as admission stores it: ``pending``, or ``running`` when claimed at once."""
    if claimed:
        return _claimed(run, run.created_at)
    return run.model_copy(update={"status": "pending"})


def _claimed(run: Run, at: datetime) -> Run:
    return run.model_copy(
        update={"status": "running", "attempt": run.attempt + 1, "started_at": at, "updated_at": at}
    )


def _claim(conn: sqlite3.Connection, run_id: str, started_at: datetime) -> Run | None:
    current = _find(conn, run_id)
    if current is None or current.status != "pending":
        return None
    if current.thread_id is not None:
        busy = conn.execute(
            f"SELECT 1 FROM runs WHERE thread_id = ? AND {INFLIGHT_RUNS} "
            "AND status = 'running' LIMIT 1",
            (current.thread_id,),
        ).fetchone()
        if busy is not None:
            return None
        first = conn.execute(OLDEST_PENDING_SQL, (current.thread_id,)).fetchone()
        if first[0] != run_id:
            return None
    return _start(conn, current, started_at)


def _start(conn: sqlite3.Connection, run: Run, started_at: datetime) -> Run:
    """``run`` (pending, checked claimable) moved to running."""
    at = _ts(started_at)
    conn.execute(
        "UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = ?, "
        "updated_at = ? WHERE run_id = ?",
        (at, at, run.run_id),
    )
    return _claimed(run, started_at)


def _finish(
    conn: sqlite3.Connection,
    run_id: str,
    status: RunStatus,
    error: str | None,
    ended_at: datetime,
    thread_patch: ThreadPatch | None,
    claim_next: bool,
) -> Finished:
    at = _ts(ended_at)
    row = conn.execute(
        "UPDATE runs SET status = ?, error = ?, ended_at = ?, updated_at = ? "
        f"WHERE run_id = ? AND status IN ('pending', 'running') RETURNING {_COLUMNS}",
        (status, error, at, at, run_id),
    ).fetchone()
    if row is None:
        raise ConflictError(f"run {run_id} already ended ({_require(conn, run_id).status})")
    ended = _run(row)
    if ended.thread_id is None:
        return Finished(ended)
    inflight = _inflight(conn, ended.thread_id)
    pending = [r for r in inflight if r.status == "pending"]
    claimed: Run | None = None
    if claim_next and pending and len(pending) == len(inflight) and _due(pending[0], ended_at):
        claimed = _start(conn, pending[0], ended_at)
    if thread_patch is not None:
        if inflight:
            thread_patch = dataclasses.replace(thread_patch, status="busy")
        _patch_thread(conn, ended.thread_id, thread_patch)
    return Finished(ended, claimed, waiting=bool(pending) and claimed is None)


_HEAD_FIELDS = ("status", "values", "interrupts", "messages", "state_updated_at")


def _patch_thread(conn: sqlite3.Connection, thread_id: str, patch: ThreadPatch) -> None:
    """``patch`` applied as update_thread applies it. A run's usual patch (its head state and
    status) is written without reading the row first."""
    if any(getattr(patch, f) is not None for f in ("metadata", "lifecycle", "name", "graph_id")):
        thread = _get(conn, thread_id, None)
        if patch.lifecycle is not None:
            check_lifecycle_move(thread_id, thread.lifecycle, patch.lifecycle)
        _apply(conn, thread, patch, lifecycle=patch.lifecycle)
        return
    given = {f: getattr(patch, f) for f in _HEAD_FIELDS if getattr(patch, f) is not None}
    columns = {"values": '"values"', "messages": "count_messages"}
    values: dict[str, Any] = {
        "status": given.get("status"),
        "values": _dumps(dict(given["values"])) if "values" in given else None,
        "interrupts": _dumps(dict(given["interrupts"])) if "interrupts" in given else None,
        "messages": given.get("messages"),
        "state_updated_at": (
            _ts(given["state_updated_at"]) if "state_updated_at" in given else None
        ),
    }
    sets = ["updated_at = ?"] + [f"{columns.get(f, f)} = ?" for f in given]
    conn.execute(
        f"UPDATE threads SET {', '.join(sets)} WHERE thread_id = ?",
        (_ts(patch.updated_at), *(values[f] for f in given), thread_id),
    )


def _due(run: Run, now: datetime) -> bool:
    """Whether a pending run's ``after_seconds`` delay has passed at ``now``."""
    delay = run.kwargs.get("after_seconds") or 0
    return run.created_at + timedelta(seconds=float(delay)) <= now


# --- rows ------------------------------------------------------------------------------------


def _prefixed(alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in _COLUMNS.split(","))


def _run(row: tuple[Any, ...]) -> Run:
    """A stored run. Built without validation: every field is given, from a row weft wrote
    after validating it (the timestamps are parsed here)."""
    return Run.model_construct(
        run_id=row[0],
        thread_id=row[1],
        assistant_id=row[2],
        status=row[3],
        metadata=json.loads(row[4]),
        kwargs=json.loads(row[5]),
        multitask_strategy=row[6],
        attempt=row[7],
        error=row[8],
        owner=row[9],
        created_at=_parse_ts(row[10]),
        updated_at=_parse_ts(row[11]),
        started_at=_parse_ts(row[12]) if row[12] is not None else None,
        ended_at=_parse_ts(row[13]) if row[13] is not None else None,
    )


def _find(conn: sqlite3.Connection, run_id: str) -> Run | None:
    row = conn.execute(f"SELECT {_COLUMNS} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return _run(row) if row is not None else None


def _require(conn: sqlite3.Connection, run_id: str) -> Run:
    found = _find(conn, run_id)
    if found is None:
        raise NotFoundError(f"run {run_id} not found")
    return found


def _inflight(conn: sqlite3.Connection, thread_id: str) -> list[Run]:
    """The thread's pending and running runs, oldest first."""
    return [_run(r) for r in conn.execute(INFLIGHT_SQL, (thread_id,)).fetchall()]


def _insert(conn: sqlite3.Connection, r: Run) -> None:
    try:
        _insert_row(conn, r)
    except sqlite3.IntegrityError:
        if _find(conn, r.run_id) is not None:
            raise ConflictError(f"run {r.run_id} already exists") from None
        raise


def _insert_row(conn: sqlite3.Connection, r: Run) -> None:
    created = _ts(r.created_at)
    conn.execute(
        f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            r.run_id,
            r.thread_id,
            r.assistant_id,
            r.status,
            _dumps(r.metadata),
            _dumps(r.kwargs),
            r.multitask_strategy,
            r.attempt,
            r.error,
            r.owner,
            created,
            _same_ts(r.updated_at, r.created_at, created),
            _same_ts(r.started_at, r.created_at, created),
            _same_ts(r.ended_at, r.created_at, created),
        ),
    )


def _same_ts(value: datetime | None, known: datetime, text: str) -> str | None:
    """``_ts(value)``, reusing ``text`` (``_ts(known)``) for the same instant: an admitted
    run's timestamps are mostly one."""
    if value is None:
        return None
    return text if value == known else _ts(value)
