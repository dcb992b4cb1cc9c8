"""Threads on SQLite (and ``weft doctor``): one writer job per change.

The checkpoint, branch and run counts of a thread row are kept by triggers (migration 2);
nothing here maintains them by hand. Metadata filters also go through ``thread_metadata``,
the trigger-filled index of top-level scalar keys.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from weft.errors import BadRequestError, ConflictError, NotFoundError
from weft.schema import (
    RUNNABLE_LIFECYCLES,
    Rollback,
    Thread,
    ThreadCounts,
    check_lifecycle_move,
    check_writable,
)
from weft.storage.base import (
    THREAD_SORT_COLUMNS,
    DoctorFinding,
    IfExists,
    PruneStrategy,
    SortOrder,
    Storage,
    ThreadPatch,
    ThreadQuery,
    ThreadSortBy,
)
from weft.storage.sqlite_checkpointer import (
    copy_thread_checkpoints,
    delete_thread_checkpoints,
    keep_latest_checkpoints,
)
from weft.storage.sqlite_engine import SqliteEngine
from weft.storage.sqlite_rows import (
    _contains,
    _dumps,
    _metadata_index,
    _owner_clause,
    _parse_ts,
    _ts,
    _visible,
)

_COLUMNS = (
    'thread_id, created_at, updated_at, state_updated_at, metadata, config, status, "values", '
    "interrupts, lifecycle, kind, graph_id, session_id, name, parent_thread_id, "
    "source_checkpoint_id, count_messages, count_checkpoints, count_branches, count_runs, "
    "owner, rollbacks"
)
_INSERT_COLUMNS = (
    'thread_id, created_at, updated_at, state_updated_at, metadata, config, status, "values", '
    "interrupts, lifecycle, kind, graph_id, session_id, name, parent_thread_id, "
    "source_checkpoint_id, count_messages, owner, rollbacks"
)
_NULLABLE_SORT = {"state_updated_at"}


class SqliteThreadStorage(Storage):
    """The thread and doctor methods of :class:`weft.storage.sqlite.SqliteStorage`."""

    engine: SqliteEngine

    async def put_thread(self, thread: Thread, *, if_exists: IfExists = "raise") -> Thread:
        def write(conn: sqlite3.Connection) -> Thread:
            existing = _find(conn, thread.thread_id)
            if existing is not None:
                if if_exists == "do_nothing" and _visible(existing.owner, thread.owner):
                    return existing
                raise ConflictError(f"thread {thread.thread_id} already exists")
            _insert(conn, thread.model_copy(update={"counts": ThreadCounts()}))
            return _get(conn, thread.thread_id, None)

        return await self.engine.write(write)

    async def get_thread(self, thread_id: str, *, owner: str | None = None) -> Thread:
        return await self.engine.read(lambda conn: _get(conn, thread_id, owner))

    async def update_thread(
        self, thread_id: str, patch: ThreadPatch, *, owner: str | None = None
    ) -> Thread:
        def write(conn: sqlite3.Connection) -> Thread:
            current = _get(conn, thread_id, owner)
            if patch.lifecycle is not None:
                check_lifecycle_move(thread_id, current.lifecycle, patch.lifecycle)
            _apply(conn, current, patch, lifecycle=patch.lifecycle)
            return _get(conn, thread_id, None)

        return await self.engine.write(write)

    async def delete_thread(self, thread_id: str, *, owner: str | None = None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            _get(conn, thread_id, owner)
            delete_threads(conn, [thread_id])

        await self.engine.write(write)

    async def search_threads(
        self,
        query: ThreadQuery,
        *,
        limit: int = 10,
        offset: int = 0,
        sort_by: ThreadSortBy = "created_at",
        sort_order: SortOrder = "desc",
    ) -> list[Thread]:
        sql, params = thread_search_sql(
            query, limit=limit, offset=offset, sort_by=sort_by, sort_order=sort_order
        )

        def read(conn: sqlite3.Connection) -> list[Thread]:
            return [_thread(r) for r in conn.execute(sql, params).fetchall()]

        return await self.engine.read(read)

    async def count_threads(self, query: ThreadQuery) -> int:
        where, params = _where(query)

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(f"SELECT count(*) FROM threads WHERE {where}", params).fetchone()
            return int(row[0])

        return await self.engine.read(read)

    async def branch_thread(
        self, thread: Thread, *, checkpoint_id: str, owner: str | None = None
    ) -> Thread:
        source_id = thread.parent_thread_id
        if source_id is None:
            raise BadRequestError("a branch or snapshot needs parent_thread_id (its source)")
        if thread.kind not in ("branch", "snapshot"):
            raise BadRequestError(
                f"branch_thread makes a branch or a snapshot, not {thread.kind!r}"
            )

        def write(conn: sqlite3.Connection) -> Thread:
            source = _get(conn, source_id, owner)
            if thread.kind == "branch" and source.lifecycle not in RUNNABLE_LIFECYCLES:
                raise ConflictError(
                    f"thread {source_id} has lifecycle {source.lifecycle!r}: branching refused; "
                    "branch needs lifecycle 'active' or 'paused'"
                )
            _require_checkpoint(conn, source_id, checkpoint_id)
            if _find(conn, thread.thread_id) is not None:
                raise ConflictError(f"thread {thread.thread_id} already exists")
            new = thread.model_copy(
                update={"source_checkpoint_id": thread.source_checkpoint_id or checkpoint_id}
            )
            _insert(conn, new)
            conn.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
                "parent_checkpoint_id, run_id, type, checkpoint, metadata) "
                "SELECT ?, checkpoint_ns, checkpoint_id, NULL, run_id, type, checkpoint, metadata "
                "FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ?",
                (thread.thread_id, source_id, checkpoint_id),
            )
            conn.execute(
                "INSERT INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, "
                "task_id, task_path, idx, channel, type, value) "
                "SELECT ?, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, "
                "value FROM checkpoint_writes "
                "WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ? "
                "AND (channel = '__interrupt__' OR ?)",
                (
                    thread.thread_id,
                    source_id,
                    checkpoint_id,
                    _head(conn, source_id) == checkpoint_id,
                ),
            )
            return _get(conn, thread.thread_id, None)

        return await self.engine.write(write)

    async def rollback_thread(
        self,
        thread_id: str,
        *,
        checkpoint_id: str,
        new_checkpoint_id: str,
        patch: ThreadPatch,
        owner: str | None = None,
    ) -> Thread:
        serde = self.checkpointer.serde

        def write(conn: sqlite3.Connection) -> Thread:
            current = _get(conn, thread_id, owner)
            check_writable(current, "rollback")
            target = conn.execute(
                "SELECT run_id, type, checkpoint, metadata FROM checkpoints "
                "WHERE thread_id = ? AND checkpoint_ns = '' AND checkpoint_id = ?",
                (thread_id, checkpoint_id),
            ).fetchone()
            if target is None:
                raise NotFoundError(f"checkpoint {checkpoint_id} not found in thread {thread_id}")
            head = _head(conn, thread_id)
            _, type_, blob, metadata = target
            checkpoint = serde.loads_typed((type_, blob))
            checkpoint["id"] = new_checkpoint_id
            checkpoint["ts"] = datetime.now(UTC).isoformat()
            new_type, new_blob = serde.dumps_typed(checkpoint)
            meta = json.loads(metadata)
            meta.pop("run_id", None)  # no run made it: delete_for_runs must not take it
            meta["source"] = "rollback"
            meta["rollback"] = {"from": head, "to": checkpoint_id}
            conn.execute(
                "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
                "parent_checkpoint_id, run_id, type, checkpoint, metadata) "
                "VALUES (?, '', ?, ?, ?, ?, ?, ?)",
                (
                    thread_id,
                    new_checkpoint_id,
                    checkpoint_id,
                    None,
                    new_type,
                    new_blob,
                    json.dumps(meta, ensure_ascii=False, sort_keys=True),
                ),
            )
            mark = Rollback.model_validate(
                {"from": head, "to": checkpoint_id, "at": new_checkpoint_id}
            )
            rollbacks = [*current.rollbacks, mark]
            _apply(conn, current, patch, lifecycle=None, rollbacks=rollbacks)
            return _get(conn, thread_id, None)

        return await self.engine.write(write)

    async def copy_thread(
        self, thread: Thread, *, source_thread_id: str, owner: str | None = None
    ) -> Thread:
        def write(conn: sqlite3.Connection) -> Thread:
            _get(conn, source_thread_id, owner)
            if _find(conn, thread.thread_id) is not None:
                raise ConflictError(f"thread {thread.thread_id} already exists")
            _insert(conn, thread)
            copy_thread_checkpoints(conn, source_thread_id, thread.thread_id)
            return _get(conn, thread.thread_id, None)

        return await self.engine.write(write)

    async def prune_threads(
        self, thread_ids: Sequence[str], *, strategy: PruneStrategy, owner: str | None = None
    ) -> int:
        wanted = list(dict.fromkeys(thread_ids))
        if not wanted:
            return 0
        if strategy not in ("delete", "keep_latest"):
            raise BadRequestError(
                f"unknown prune strategy {strategy!r}; use 'delete' or 'keep_latest'"
            )

        def write(conn: sqlite3.Connection) -> int:
            marks = ",".join("?" * len(wanted))
            seen, params = _owner_clause(owner)
            rows = conn.execute(
                f"SELECT thread_id FROM threads WHERE thread_id IN ({marks}) "
                f"AND kind != 'snapshot'{seen}",
                (*wanted, *params),
            ).fetchall()
            ids = [str(r[0]) for r in rows]
            if not ids:
                return 0
            if strategy == "delete":
                delete_threads(conn, ids)
            else:
                keep_latest_checkpoints(conn, ids)
            return len(ids)

        return await self.engine.write(write)

    # --- doctor ----------------------------------------------------------------------------

    async def doctor(self, *, repair: bool = False) -> list[DoctorFinding]:
        if repair:
            return await self.engine.write(lambda conn: _doctor(conn, repair=True))
        return await self.engine.read(lambda conn: _doctor(conn, repair=False))


# --- SQL shared with the session methods ------------------------------------------------------


def delete_threads(conn: sqlite3.Connection, thread_ids: Sequence[str]) -> None:
    """Delete threads with their checkpoints (every namespace), writes, runs and crons;
    threads naming one of them as parent keep their own rows, parent cleared."""
    if not thread_ids:
        return
    ids = list(thread_ids)
    marks = ",".join("?" * len(ids))
    delete_thread_checkpoints(conn, ids)
    conn.execute(f"DELETE FROM runs WHERE thread_id IN ({marks})", ids)
    conn.execute(f"DELETE FROM crons WHERE thread_id IN ({marks})", ids)
    conn.execute(
        f"UPDATE threads SET parent_thread_id = NULL WHERE parent_thread_id IN ({marks}) "
        f"AND thread_id NOT IN ({marks})",
        [*ids, *ids],
    )
    conn.execute(f"DELETE FROM threads WHERE thread_id IN ({marks})", ids)


def thread_search_sql(
    query: ThreadQuery,
    *,
    limit: int,
    offset: int,
    sort_by: ThreadSortBy,
    sort_order: SortOrder,
) -> tuple[str, tuple[Any, ...]]:
    """The SELECT behind :meth:`SqliteThreadStorage.search_threads` and its parameters."""
    column = THREAD_SORT_COLUMNS[sort_by]
    direction = "ASC" if sort_order == "asc" else "DESC"
    # Postgres puts NULLs last ascending and first descending; do the same.
    nulls = ""
    if sort_by in _NULLABLE_SORT:
        nulls = " NULLS LAST" if direction == "ASC" else " NULLS FIRST"
    where, params = _where(query)
    sql = (
        f"SELECT {_COLUMNS} FROM threads WHERE {where} "
        f"ORDER BY {column} {direction}{nulls}, thread_id {direction} LIMIT ? OFFSET ?"
    )
    return sql, (*params, limit, offset)


# --- rows ------------------------------------------------------------------------------------


def _thread(row: tuple[Any, ...]) -> Thread:
    return Thread(
        thread_id=row[0],
        created_at=_parse_ts(row[1]),
        updated_at=_parse_ts(row[2]),
        state_updated_at=_parse_ts(row[3]) if row[3] is not None else None,
        metadata=json.loads(row[4]),
        config=json.loads(row[5]),
        status=row[6],
        values=json.loads(row[7]) if row[7] is not None else None,
        interrupts=json.loads(row[8]),
        lifecycle=row[9],
        kind=row[10],
        graph_id=row[11],
        session_id=row[12],
        name=row[13],
        parent_thread_id=row[14],
        source_checkpoint_id=row[15],
        counts=ThreadCounts(messages=row[16], checkpoints=row[17], branches=row[18], runs=row[19]),
        owner=row[20],
        rollbacks=tuple(Rollback.model_validate(x) for x in json.loads(row[21])),
    )


def _find(conn: sqlite3.Connection, thread_id: str) -> Thread | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM threads WHERE thread_id = ?", (thread_id,)
    ).fetchone()
    return _thread(row) if row is not None else None


def _get(conn: sqlite3.Connection, thread_id: str, owner: str | None) -> Thread:
    seen, params = _owner_clause(owner)
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM threads WHERE thread_id = ?{seen}", (thread_id, *params)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"thread {thread_id} not found")
    return _thread(row)


def _head(conn: sqlite3.Connection, thread_id: str) -> str | None:
    """The newest root checkpoint of a thread (by the primary key)."""
    row = conn.execute(
        "SELECT checkpoint_id FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
        "ORDER BY checkpoint_id DESC LIMIT 1",
        (thread_id,),
    ).fetchone()
    return None if row is None else str(row[0])


def _require_checkpoint(conn: sqlite3.Connection, thread_id: str, checkpoint_id: str) -> None:
    row = conn.execute(
        "SELECT 1 FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = '' "
        "AND checkpoint_id = ?",
        (thread_id, checkpoint_id),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"checkpoint {checkpoint_id} not found in thread {thread_id}")


def _check_session(
    conn: sqlite3.Connection,
    thread_id: str,
    session_id: str,
    name: str | None,
    owner: str | None,
) -> None:
    """The session exists and ``owner`` sees it; ``name`` is free in it."""
    seen, params = _owner_clause(owner)
    row = conn.execute(
        f"SELECT 1 FROM sessions WHERE session_id = ?{seen}", (session_id, *params)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"session {session_id} not found")
    if name is not None:
        _check_name(conn, thread_id, session_id, name)


def _check_name(conn: sqlite3.Connection, thread_id: str, session_id: str, name: str) -> None:
    taken = conn.execute(
        "SELECT 1 FROM threads WHERE session_id = ? AND name = ? AND thread_id != ?",
        (session_id, name, thread_id),
    ).fetchone()
    if taken is not None:
        raise ConflictError(f"a thread named {name!r} already exists in session {session_id}")


def _insert(conn: sqlite3.Connection, t: Thread) -> None:
    if t.session_id is not None:
        _check_session(conn, t.thread_id, t.session_id, t.name, t.owner)
    conn.execute(
        f"INSERT INTO threads ({_INSERT_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            t.thread_id,
            _ts(t.created_at),
            _ts(t.updated_at),
            _ts(t.state_updated_at) if t.state_updated_at is not None else None,
            _dumps(t.metadata),
            _dumps(t.config),
            t.status,
            _dumps(t.values) if t.values is not None else None,
            _dumps(t.interrupts),
            t.lifecycle,
            t.kind,
            t.graph_id,
            t.session_id,
            t.name,
            t.parent_thread_id,
            t.source_checkpoint_id,
            t.counts.messages,
            t.owner,
            _rollbacks_json(t.rollbacks),
        ),
    )


def _rollbacks_json(rollbacks: Sequence[Rollback]) -> str:
    return _dumps([r.model_dump(by_alias=True) for r in rollbacks])


def _apply(
    conn: sqlite3.Connection,
    current: Thread,
    patch: ThreadPatch,
    *,
    lifecycle: str | None,
    rollbacks: Sequence[Rollback] | None = None,
) -> None:
    """Write ``patch`` (and ``lifecycle``/``rollbacks`` when given) to ``current``'s row."""
    sets = ["updated_at = ?"]
    params: list[Any] = [_ts(patch.updated_at)]

    def put(column: str, value: Any) -> None:
        sets.append(f"{column} = ?")
        params.append(value)

    if patch.metadata is not None:
        put("metadata", _dumps({**current.metadata, **patch.metadata}))
    if lifecycle is not None:
        put("lifecycle", lifecycle)
    if patch.name is not None and patch.name != current.name:
        if current.session_id is not None:
            _check_name(conn, current.thread_id, current.session_id, patch.name)
        put("name", patch.name)
    if patch.graph_id is not None:
        put("graph_id", patch.graph_id)
    if patch.status is not None:
        put("status", patch.status)
    if patch.values is not None:
        put('"values"', _dumps(dict(patch.values)))
    if patch.interrupts is not None:
        put("interrupts", _dumps(dict(patch.interrupts)))
    if patch.messages is not None:
        put("count_messages", patch.messages)
    if patch.state_updated_at is not None:
        put("state_updated_at", _ts(patch.state_updated_at))
    if rollbacks is not None:
        put("rollbacks", _rollbacks_json(rollbacks))
    conn.execute(
        f"UPDATE threads SET {', '.join(sets)} WHERE thread_id = ?",
        (*params, current.thread_id),
    )


# --- filters ---------------------------------------------------------------------------------


def _where(query: ThreadQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.ids is not None:
        if not query.ids:
            return "0 = 1", ()
        clauses.append(f"thread_id IN ({','.join('?' * len(query.ids))})")
        params.extend(query.ids)
    for column, value in (
        ("status", query.status),
        ("lifecycle", query.lifecycle),
        ("kind", query.kind),
        ("graph_id", query.graph_id),
        ("session_id", query.session_id),
        ("parent_thread_id", query.parent_thread_id),
    ):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if query.owner is not None:
        clauses.append("(owner IS NULL OR owner = ?)")
        params.append(query.owner)
    if query.metadata:
        where, more = _contains("metadata", query.metadata)
        indexed, indexed_params = _metadata_index(query.metadata)
        clauses.extend(indexed)
        params.extend(indexed_params)
        clauses.append(where)
        params.extend(more)
    if query.values:
        where, more = _contains('"values"', query.values)
        clauses.append(where)
        params.extend(more)
    return (" AND ".join(clauses) or "1 = 1"), tuple(params)


# --- doctor ----------------------------------------------------------------------------------


_MISSING_LINKS: tuple[
    tuple[Literal["missing_session", "missing_parent"], str, str, str, str], ...
] = (
    ("missing_session", "session_id", "sessions", "session_id", "session"),
    ("missing_parent", "parent_thread_id", "threads", "thread_id", "parent thread"),
)
_COUNTED = (
    (
        "count_checkpoints",
        "SELECT count(*) FROM checkpoints c WHERE c.thread_id = t.thread_id "
        "AND c.checkpoint_ns = ''",
    ),
    (
        "count_branches",
        "SELECT count(*) FROM threads b WHERE b.parent_thread_id = t.thread_id "
        "AND b.kind = 'branch'",
    ),
    ("count_runs", "SELECT count(*) FROM runs r WHERE r.thread_id = t.thread_id"),
)


def _doctor(conn: sqlite3.Connection, *, repair: bool) -> list[DoctorFinding]:
    findings: list[DoctorFinding] = []
    orphans = conn.execute(
        "SELECT thread_id, count(*) FROM checkpoints c WHERE checkpoint_ns = '' "
        "AND NOT EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = c.thread_id) "
        "GROUP BY thread_id ORDER BY thread_id"
    ).fetchall()
    for thread_id, n in orphans:
        if repair:
            _adopt(conn, thread_id)
        detail = f"{n} checkpoint(s) without a thread row"
        findings.append(DoctorFinding("orphan_checkpoints", thread_id, detail, repair))

    for problem, column, table, key, noun in _MISSING_LINKS:
        links = conn.execute(
            f"SELECT thread_id, {column} FROM threads t WHERE {column} IS NOT NULL AND NOT "
            f"EXISTS (SELECT 1 FROM {table} x WHERE x.{key} = t.{column}) ORDER BY thread_id"
        ).fetchall()
        for thread_id, missing in links:
            if repair:
                conn.execute(
                    f"UPDATE threads SET {column} = NULL WHERE thread_id = ?", (thread_id,)
                )
            detail = f"{noun} {missing} not found"
            findings.append(DoctorFinding(problem, thread_id, detail, repair))

    stored = ", ".join(column for column, _ in _COUNTED)
    real = ", ".join(f"({sql})" for _, sql in _COUNTED)
    rows = conn.execute(
        f"SELECT thread_id, {stored}, {real} FROM threads t ORDER BY thread_id"
    ).fetchall()
    for row in rows:
        thread_id, values = row[0], row[1:]
        n = len(_COUNTED)
        wrong = [
            f"{column} is {values[i]}, rows say {values[n + i]}"
            for i, (column, _) in enumerate(_COUNTED)
            if values[i] != values[n + i]
        ]
        if not wrong:
            continue
        if repair:
            sets = ", ".join(f"{column} = ?" for column, _ in _COUNTED)
            conn.execute(f"UPDATE threads SET {sets} WHERE thread_id = ?", (*values[n:], thread_id))
        findings.append(DoctorFinding("wrong_counts", thread_id, "; ".join(wrong), repair))
    return findings


def _adopt(conn: sqlite3.Connection, thread_id: str) -> None:
    """A ``main`` thread row for checkpoints stored without one (the trigger counts them)."""
    newest = conn.execute(
        "SELECT json_extract(metadata, '$.graph_id') FROM checkpoints "
        "WHERE thread_id = ? AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1",
        (thread_id,),
    ).fetchone()
    graph_id = newest[0] if newest is not None and isinstance(newest[0], str) else None
    metadata = {"graph_id": graph_id} if graph_id is not None else {}
    now = _ts(datetime.now(UTC))
    conn.execute(
        "INSERT INTO threads (thread_id, created_at, updated_at, metadata, config, status, "
        "interrupts, lifecycle, kind, graph_id) "
        "VALUES (?, ?, ?, ?, '{}', 'idle', '{}', 'active', 'main', ?)",
        (thread_id, now, now, _dumps(metadata), graph_id),
    )
