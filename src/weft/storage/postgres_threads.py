"""Threads on Postgres: JSONB columns, one transaction per change.

The checkpoint tables are langgraph-checkpoint-postgres's (``checkpoints``,
``checkpoint_blobs``, ``checkpoint_writes``); the thread counts are kept by migration 2's
triggers, never by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg import errors as pg_errors
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

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
    IfExists,
    PruneStrategy,
    SortOrder,
    ThreadPatch,
    ThreadQuery,
    ThreadSortBy,
)
from weft.storage.postgres_assistants import Conn, PostgresBase

__all__ = [
    "PostgresThreadStorage",
    "apply_patch",
    "delete_threads",
    "get_thread_row",
    "insert_thread",
    "owner_clause",
]

_COLUMNS = (
    'thread_id, created_at, updated_at, state_updated_at, metadata, config, status, "values", '
    "interrupts, lifecycle, kind, graph_id, session_id, name, parent_thread_id, "
    "source_checkpoint_id, count_messages, count_checkpoints, count_branches, count_runs, "
    "owner, rollbacks"
)

# --- copy_thread: every checkpoint, blob and write of one thread into another ----------------

# All three read one snapshot (the transaction is REPEATABLE READ), so a checkpoint saved on
# the source meanwhile is copied whole or not at all. Rows the target already has with the
# same key are made equal to the source's; blobs never change once written.
COPY_SNAPSHOT_SQL = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"

COPY_BLOBS_SQL = """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT %s, checkpoint_ns, channel, version, type, blob
FROM checkpoint_blobs
WHERE thread_id = %s
ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
"""

COPY_CHECKPOINTS_SQL = """
INSERT INTO checkpoints (
    thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
)
SELECT %s, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
FROM checkpoints
WHERE thread_id = %s
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET
    parent_checkpoint_id = EXCLUDED.parent_checkpoint_id,
    type = EXCLUDED.type,
    checkpoint = EXCLUDED.checkpoint,
    metadata = EXCLUDED.metadata
"""

COPY_WRITES_SQL = """
INSERT INTO checkpoint_writes (
    thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
)
SELECT %s, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
FROM checkpoint_writes
WHERE thread_id = %s
ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id, task_id, idx) DO UPDATE SET
    task_path = EXCLUDED.task_path,
    channel = EXCLUDED.channel,
    type = EXCLUDED.type,
    blob = EXCLUDED.blob
"""

# --- branch_thread: one root checkpoint, by primary key ---------------------------------------
# Parameters: (target, source, checkpoint_id).

_BRANCH_CHECKPOINT_SQL = """
INSERT INTO checkpoints (
    thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
)
SELECT %s, checkpoint_ns, checkpoint_id, NULL, type, checkpoint, metadata
FROM checkpoints
WHERE thread_id = %s AND checkpoint_ns = '' AND checkpoint_id = %s
"""

# The blobs of the checkpoint's channel versions, each looked up by the blobs' primary key.
_BRANCH_BLOBS_SQL = """
INSERT INTO checkpoint_blobs (thread_id, checkpoint_ns, channel, version, type, blob)
SELECT %s, b.checkpoint_ns, b.channel, b.version, b.type, b.blob
FROM checkpoints c
CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
JOIN checkpoint_blobs b
    ON b.thread_id = c.thread_id
    AND b.checkpoint_ns = c.checkpoint_ns
    AND b.channel = v.key
    AND b.version = v.value
WHERE c.thread_id = %s AND c.checkpoint_ns = '' AND c.checkpoint_id = %s
ON CONFLICT (thread_id, checkpoint_ns, channel, version) DO NOTHING
"""

_BRANCH_WRITES_SQL = """
INSERT INTO checkpoint_writes (
    thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
)
SELECT %s, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, blob
FROM checkpoint_writes
WHERE thread_id = %s AND checkpoint_ns = '' AND checkpoint_id = %s
    AND (channel = '__interrupt__' OR %s)
"""

# The newest root checkpoint of a thread, by the primary key. Parameter: (thread,).
_HEAD_SQL = (
    "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s "
    "AND checkpoint_ns = '' ORDER BY checkpoint_id DESC LIMIT 1"
)

# --- rollback_thread: a new head with the target's content ------------------------------------
# Parameters: (new id, new id, ts, old head, target, thread, target).

_ROLLBACK_CHECKPOINT_SQL = """
INSERT INTO checkpoints (
    thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata
)
SELECT thread_id, checkpoint_ns, %s, checkpoint_id, type,
    jsonb_set(jsonb_set(checkpoint, '{id}', to_jsonb(%s::text)), '{ts}', to_jsonb(%s::text)),
    (metadata - 'run_id') || jsonb_build_object(
        'source', 'rollback',
        'rollback', jsonb_build_object('from', %s::text, 'to', %s::text)
    )
FROM checkpoints
WHERE thread_id = %s AND checkpoint_ns = '' AND checkpoint_id = %s
"""

# --- prune_threads(keep_latest): the newest checkpoint per namespace ---------------------------

_LATEST = """
SELECT DISTINCT ON (thread_id, checkpoint_ns) thread_id, checkpoint_ns, checkpoint_id
FROM checkpoints
WHERE thread_id = ANY(%s)
ORDER BY thread_id, checkpoint_ns, checkpoint_id DESC
"""

_KEEP_LATEST_SQL: tuple[str, ...] = (
    f"""DELETE FROM checkpoint_writes w
    WHERE w.thread_id = ANY(%s)
    AND (w.thread_id, w.checkpoint_ns, w.checkpoint_id) NOT IN ({_LATEST})""",
    f"""DELETE FROM checkpoints c
    WHERE c.thread_id = ANY(%s)
    AND (c.thread_id, c.checkpoint_ns, c.checkpoint_id) NOT IN ({_LATEST})""",
    # Runs after the checkpoints are gone: only the heads' channel versions are still used.
    """DELETE FROM checkpoint_blobs b
    WHERE b.thread_id = ANY(%s)
    AND NOT EXISTS (
        SELECT 1 FROM checkpoints c
        WHERE c.thread_id = b.thread_id
        AND c.checkpoint_ns = b.checkpoint_ns
        AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version
    )""",
)


class PostgresThreadStorage(PostgresBase):
    """The thread methods of :class:`weft.storage.postgres.PostgresStorage`."""

    async def put_thread(self, thread: Thread, *, if_exists: IfExists = "raise") -> Thread:
        t = thread
        async with self._transaction() as conn:
            existing = await _find(conn, t.thread_id, None)
            if existing is None:
                await _check_new(conn, t)
                if await insert_thread(conn, t, messages=0):
                    return await get_thread_row(conn, t.thread_id, None)
            # Taken, possibly by a transaction that committed meanwhile.
            if if_exists == "do_nothing":
                visible = await _find(conn, t.thread_id, t.owner)
                if visible is not None:
                    return visible
            raise ConflictError(f"thread {t.thread_id} already exists")

    async def get_thread(self, thread_id: str, *, owner: str | None = None) -> Thread:
        async with self._transaction() as conn:
            return await get_thread_row(conn, thread_id, owner)

    async def update_thread(
        self, thread_id: str, patch: ThreadPatch, *, owner: str | None = None
    ) -> Thread:
        async with self._transaction() as conn:
            current = await get_thread_row(conn, thread_id, owner, lock="UPDATE")
            if patch.lifecycle is not None:
                check_lifecycle_move(thread_id, current.lifecycle, patch.lifecycle)
            await apply_patch(conn, current, patch, lifecycle=patch.lifecycle)
            return await get_thread_row(conn, thread_id, None)

    async def delete_thread(self, thread_id: str, *, owner: str | None = None) -> None:
        async with self._transaction() as conn:
            await get_thread_row(conn, thread_id, owner, lock="UPDATE")
            await delete_threads(conn, [thread_id])

    async def search_threads(
        self,
        query: ThreadQuery,
        *,
        limit: int = 10,
        offset: int = 0,
        sort_by: ThreadSortBy = "created_at",
        sort_order: SortOrder = "desc",
    ) -> list[Thread]:
        column = THREAD_SORT_COLUMNS[sort_by]
        direction = "ASC" if sort_order == "asc" else "DESC"
        where, params = _where(query)
        async with self._transaction() as conn:
            # NULLs (only state_updated_at has them) come last ascending, first descending.
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM threads WHERE {where} "
                f"ORDER BY {column} {direction}, thread_id {direction} "
                "LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            return [_thread(r) for r in await cur.fetchall()]

    async def count_threads(self, query: ThreadQuery) -> int:
        where, params = _where(query)
        async with self._transaction() as conn:
            cur = await conn.execute(f"SELECT count(*) AS n FROM threads WHERE {where}", params)
            row = await cur.fetchone()
            return int(row["n"]) if row else 0

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
        if thread.source_checkpoint_id is None:
            thread = thread.model_copy(update={"source_checkpoint_id": checkpoint_id})
        async with self._transaction() as conn:
            # The insert trigger bumps a branch's source row: lock it for that from the start.
            lock: _Lock = "UPDATE" if thread.kind == "branch" else "SHARE"
            source = await get_thread_row(conn, source_id, owner, lock=lock)
            if thread.kind == "branch" and source.lifecycle not in RUNNABLE_LIFECYCLES:
                raise ConflictError(
                    f"thread {source_id} has lifecycle {source.lifecycle!r}: branching "
                    "refused; branch needs lifecycle 'active' or 'paused'"
                )
            await _require_checkpoint(conn, source_id, checkpoint_id)
            if await _find(conn, thread.thread_id, None) is not None:
                raise ConflictError(f"thread {thread.thread_id} already exists")
            await _check_new(conn, thread)
            if not await insert_thread(conn, thread, messages=thread.counts.messages):
                raise ConflictError(f"thread {thread.thread_id} already exists")
            params = (thread.thread_id, source_id, checkpoint_id)
            await conn.execute(_BRANCH_CHECKPOINT_SQL, params)
            await conn.execute(_BRANCH_BLOBS_SQL, params)
            head = await (await conn.execute(_HEAD_SQL, (source_id,))).fetchone()
            at_head = head is not None and str(head["checkpoint_id"]) == checkpoint_id
            await conn.execute(_BRANCH_WRITES_SQL, (*params, at_head))
            return await get_thread_row(conn, thread.thread_id, None)

    async def rollback_thread(
        self,
        thread_id: str,
        *,
        checkpoint_id: str,
        new_checkpoint_id: str,
        patch: ThreadPatch,
        owner: str | None = None,
    ) -> Thread:
        async with self._transaction() as conn:
            current = await get_thread_row(conn, thread_id, owner, lock="UPDATE")
            check_writable(current, "rollback")
            await _require_checkpoint(conn, thread_id, checkpoint_id)
            head = await (await conn.execute(_HEAD_SQL, (thread_id,))).fetchone()
            old_head = str(head["checkpoint_id"]) if head else checkpoint_id
            await conn.execute(
                _ROLLBACK_CHECKPOINT_SQL,
                (
                    new_checkpoint_id,
                    new_checkpoint_id,
                    datetime.now(UTC).isoformat(),
                    old_head,
                    checkpoint_id,
                    thread_id,
                    checkpoint_id,
                ),
            )
            mark = Rollback.model_validate(
                {"from": old_head, "to": checkpoint_id, "at": new_checkpoint_id}
            )
            await conn.execute(
                "UPDATE threads SET rollbacks = rollbacks || jsonb_build_array(%s::jsonb) "
                "WHERE thread_id = %s",
                (Jsonb(mark.model_dump(by_alias=True)), thread_id),
            )
            await apply_patch(conn, current, patch, lifecycle=None)
            return await get_thread_row(conn, thread_id, None)

    async def copy_thread(
        self, thread: Thread, *, source_thread_id: str, owner: str | None = None
    ) -> Thread:
        async with self._transaction() as conn:
            # One snapshot of the source for every statement; must open the transaction.
            await conn.execute(COPY_SNAPSHOT_SQL)
            await get_thread_row(conn, source_thread_id, owner)
            if await _find(conn, thread.thread_id, None) is not None:
                raise ConflictError(f"thread {thread.thread_id} already exists")
            await _check_new(conn, thread)
            if not await insert_thread(conn, thread, messages=thread.counts.messages):
                raise ConflictError(f"thread {thread.thread_id} already exists")
            if source_thread_id != thread.thread_id:
                for sql in (COPY_BLOBS_SQL, COPY_CHECKPOINTS_SQL, COPY_WRITES_SQL):
                    await conn.execute(sql, (thread.thread_id, source_thread_id))
            return await get_thread_row(conn, thread.thread_id, None)

    async def prune_threads(
        self, thread_ids: Sequence[str], *, strategy: PruneStrategy, owner: str | None = None
    ) -> int:
        if isinstance(thread_ids, str):
            raise TypeError("thread_ids must be a sequence of thread IDs, not a str")
        if strategy not in ("delete", "keep_latest"):
            raise BadRequestError(
                f"unknown prune strategy {strategy!r}; use 'delete' or 'keep_latest'"
            )
        wanted = sorted({str(t) for t in thread_ids})
        if not wanted:
            return 0
        async with self._transaction() as conn:
            sql = "SELECT thread_id FROM threads WHERE thread_id = ANY(%s) AND kind <> 'snapshot'"
            params: tuple[Any, ...] = (wanted,)
            if owner is not None:
                sql += " AND (owner IS NULL OR owner = %s)"
                params += (owner,)
            cur = await conn.execute(sql + " ORDER BY thread_id FOR UPDATE", params)
            ids = [str(r["thread_id"]) for r in await cur.fetchall()]
            if not ids:
                return 0
            if strategy == "delete":
                await delete_threads(conn, ids)
            else:
                for statement in _KEEP_LATEST_SQL:
                    n = statement.count("%s")
                    await conn.execute(statement, (ids,) * n)
            return len(ids)


# --- helpers shared with the session methods ---------------------------------------------------

_Lock = Literal["UPDATE", "SHARE"] | None


def owner_clause(owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """The SQL that restricts rows to ``owner``'s and unowned ones (nothing for None)."""
    if owner is None:
        return "", ()
    return " AND (owner IS NULL OR owner = %s)", (owner,)


async def get_thread_row(
    conn: Conn, thread_id: str, owner: str | None, *, lock: _Lock = None
) -> Thread:
    """The thread, visible to ``owner``, optionally row-locked; else NotFoundError."""
    found = await _find(conn, thread_id, owner, lock=lock)
    if found is None:
        raise NotFoundError(f"thread {thread_id} not found")
    return found


async def delete_threads(conn: Conn, thread_ids: Sequence[str]) -> None:
    """Delete threads with their checkpoints, blobs, writes, runs and crons.

    Threads naming one of them as parent keep their rows, with ``parent_thread_id`` cleared.
    The thread rows go first, so the count triggers of the checkpoints and runs deleted after
    them find no row to update.
    """
    ids = list(thread_ids)
    await conn.execute(
        "UPDATE threads SET parent_thread_id = NULL "
        "WHERE parent_thread_id = ANY(%s) AND NOT (thread_id = ANY(%s))",
        (ids, ids),
    )
    # runs (with their run_events) and crons go by ON DELETE CASCADE.
    await conn.execute("DELETE FROM threads WHERE thread_id = ANY(%s)", (ids,))
    for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoints"):
        await conn.execute(f"DELETE FROM {table} WHERE thread_id = ANY(%s)", (ids,))


# --- row helpers ------------------------------------------------------------------------------


async def _find(
    conn: Conn, thread_id: str, owner: str | None, *, lock: _Lock = None
) -> Thread | None:
    clause, params = owner_clause(owner)
    sql = f"SELECT {_COLUMNS} FROM threads WHERE thread_id = %s{clause}"
    if lock is not None:
        sql += f" FOR {lock}"
    cur = await conn.execute(sql, (thread_id, *params))
    row = await cur.fetchone()
    return _thread(row) if row is not None else None


async def _check_new(conn: Conn, thread: Thread) -> None:
    """The session a new thread joins exists, is visible to its owner and has the name free."""
    sid = thread.session_id
    if sid is None:
        return
    clause, params = owner_clause(thread.owner)
    # FOR SHARE: the session cannot be deleted before this transaction commits.
    cur = await conn.execute(
        f"SELECT 1 FROM sessions WHERE session_id = %s{clause} FOR SHARE", (sid, *params)
    )
    if await cur.fetchone() is None:
        raise NotFoundError(f"session {sid} not found")
    if thread.name is not None:
        await _check_name_free(conn, sid, thread.name, thread.thread_id)


async def _check_name_free(conn: Conn, session_id: str, name: str, thread_id: str) -> None:
    cur = await conn.execute(
        "SELECT 1 FROM threads WHERE session_id = %s AND name = %s AND thread_id <> %s",
        (session_id, name, thread_id),
    )
    if await cur.fetchone() is not None:
        raise ConflictError(f"a thread named {name!r} already exists in session {session_id}")


async def insert_thread(conn: Conn, t: Thread, *, messages: int) -> bool:
    """Insert the row (counts other than ``messages`` start at zero; the triggers set
    ``checkpoints``); False when the ID is taken."""
    try:
        cur = await conn.execute(
            f"INSERT INTO threads ({_COLUMNS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 0, 0, 0, %s, %s) "
            "ON CONFLICT (thread_id) DO NOTHING RETURNING thread_id",
            (
                t.thread_id,
                t.created_at,
                t.updated_at,
                t.state_updated_at,
                Jsonb(t.metadata),
                Jsonb(t.config),
                t.status,
                Jsonb(t.values) if t.values is not None else None,
                Jsonb(t.interrupts),
                t.lifecycle,
                t.kind,
                t.graph_id,
                t.session_id,
                t.name,
                t.parent_thread_id,
                t.source_checkpoint_id,
                messages,
                t.owner,
                Jsonb([r.model_dump(by_alias=True) for r in t.rollbacks]),
            ),
        )
    except pg_errors.UniqueViolation as e:
        # Only (session_id, name) is left: a concurrent insert took the name.
        raise ConflictError(
            f"a thread named {t.name!r} already exists in session {t.session_id}"
        ) from e
    return await cur.fetchone() is not None


async def apply_patch(
    conn: Conn, current: Thread, patch: ThreadPatch, *, lifecycle: str | None
) -> None:
    """Write ``patch`` (and ``lifecycle``, already checked) onto the locked row ``current``."""
    name = patch.name if patch.name is not None else current.name
    if current.session_id is not None and name is not None and name != current.name:
        await _check_name_free(conn, current.session_id, name, current.thread_id)
    metadata = (
        {**current.metadata, **patch.metadata} if patch.metadata is not None else current.metadata
    )
    values: Any = current.values if patch.values is None else dict(patch.values)
    interrupts = current.interrupts if patch.interrupts is None else dict(patch.interrupts)
    try:
        await conn.execute(
            "UPDATE threads SET updated_at = %s, metadata = %s, lifecycle = %s, name = %s, "
            'graph_id = %s, status = %s, "values" = %s, interrupts = %s, count_messages = %s, '
            "state_updated_at = %s WHERE thread_id = %s",
            (
                patch.updated_at,
                Jsonb(metadata),
                lifecycle if lifecycle is not None else current.lifecycle,
                name,
                patch.graph_id if patch.graph_id is not None else current.graph_id,
                patch.status if patch.status is not None else current.status,
                Jsonb(values) if values is not None else None,
                Jsonb(interrupts),
                patch.messages if patch.messages is not None else current.counts.messages,
                (
                    patch.state_updated_at
                    if patch.state_updated_at is not None
                    else current.state_updated_at
                ),
                current.thread_id,
            ),
        )
    except pg_errors.UniqueViolation as e:
        raise ConflictError(
            f"a thread named {name!r} already exists in session {current.session_id}"
        ) from e


async def _require_checkpoint(conn: Conn, thread_id: str, checkpoint_id: str) -> None:
    cur = await conn.execute(
        "SELECT 1 FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = '' "
        "AND checkpoint_id = %s",
        (thread_id, checkpoint_id),
    )
    if await cur.fetchone() is None:
        raise NotFoundError(f"checkpoint {checkpoint_id} not found in thread {thread_id}")


def _thread(row: DictRow) -> Thread:
    data = dict(row)
    counts = ThreadCounts(
        messages=data.pop("count_messages"),
        checkpoints=data.pop("count_checkpoints"),
        branches=data.pop("count_branches"),
        runs=data.pop("count_runs"),
    )
    rollbacks = tuple(Rollback.model_validate(r) for r in data.pop("rollbacks") or ())
    return Thread.model_validate({**data, "counts": counts, "rollbacks": rollbacks})


def _where(query: ThreadQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.ids is not None:
        clauses.append("thread_id = ANY(%s)")
        params.append(list(query.ids))
    if query.metadata:
        clauses.append("metadata @> %s")
        params.append(Jsonb(dict(query.metadata)))
    if query.values:
        clauses.append('"values" @> %s')
        params.append(Jsonb(dict(query.values)))
    for column in (
        "status",
        "lifecycle",
        "kind",
        "graph_id",
        "session_id",
        "parent_thread_id",
    ):
        value = getattr(query, column)
        if value is not None:
            clauses.append(f"{column} = %s")
            params.append(value)
    if query.owner is not None:
        clauses.append("(owner IS NULL OR owner = %s)")
        params.append(query.owner)
    return (" AND ".join(clauses) or "TRUE"), tuple(params)
