"""Sessions, their interaction logs, and ``doctor`` on Postgres: one transaction per change.

A session's threads are those whose ``session_id`` names it; there is no second list.
Appends and state changes lock the session row first, so concurrent writers queue there.
``doctor`` checks threads against their checkpoints, sessions and parents.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from weft.errors import ConflictError, NotFoundError, WeftError
from weft.schema import Interaction, InteractionKind, Session, Thread
from weft.storage.base import (
    CreateSession,
    DeleteSession,
    DoctorFinding,
    SessionOp,
    SessionPatch,
    SessionQuery,
    UpdateSession,
)
from weft.storage.postgres_assistants import Conn, PostgresBase
from weft.storage.postgres_threads import delete_threads, insert_thread, owner_clause

__all__ = ["NewInteraction", "PostgresDoctor", "PostgresSessionStorage", "insert_interactions"]

_COLUMNS = (
    "session_id, user_id, name, status, metadata, state, state_version, owner, "
    "created_at, updated_at"
)
_INTERACTION_COLUMNS = "session_id, seq, kind, content, metadata, thread_id, run_id, created_at"


class PostgresSessionStorage(PostgresBase):
    """The session methods of :class:`weft.storage.postgres.PostgresStorage`."""

    async def put_session(self, session: Session) -> Session:
        async with self._transaction() as conn:
            return await _put(conn, session)

    async def get_session(self, session_id: str, *, owner: str | None = None) -> Session:
        async with self._transaction() as conn:
            return await _get(conn, session_id, owner)

    async def update_session(
        self, session_id: str, patch: SessionPatch, *, owner: str | None = None
    ) -> Session:
        async with self._transaction() as conn:
            return await _update(conn, session_id, patch, owner)

    async def delete_session(
        self, session_id: str, *, cascade: bool = False, owner: str | None = None
    ) -> None:
        async with self._transaction() as conn:
            await _delete(conn, session_id, cascade, owner)

    async def search_sessions(
        self, query: SessionQuery, *, limit: int = 10, offset: int = 0
    ) -> list[Session]:
        where, params = _where(query)
        async with self._transaction() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM sessions WHERE {where} "
                "ORDER BY created_at DESC, session_id DESC LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            return [Session.model_validate(r) for r in await cur.fetchall()]

    async def count_sessions(self, query: SessionQuery) -> int:
        where, params = _where(query)
        async with self._transaction() as conn:
            cur = await conn.execute(f"SELECT count(*) AS n FROM sessions WHERE {where}", params)
            row = await cur.fetchone()
            return int(row["n"]) if row else 0

    async def batch_sessions(
        self, ops: Sequence[SessionOp], *, owner: str | None = None
    ) -> list[Session | None]:
        results: list[Session | None] = []
        async with self._transaction() as conn:
            for i, op in enumerate(ops):
                try:
                    results.append(await _run(conn, op, owner))
                except WeftError as e:
                    # Leaving the block with an error rolls the whole batch back.
                    raise type(e)(f"batch item {i}: {e.message}") from e
        return results

    async def set_session_state(
        self,
        session_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int,
        updated_at: datetime,
        owner: str | None = None,
    ) -> Session:
        async with self._transaction() as conn:
            current = await _get(conn, session_id, owner, lock=True)
            if current.state_version != expected_version:
                raise ConflictError(
                    f"session {session_id} state changed "
                    f"(version {expected_version} -> {current.state_version})"
                )
            cur = await conn.execute(
                "UPDATE sessions SET state = %s, state_version = state_version + 1, "
                f"updated_at = %s WHERE session_id = %s RETURNING {_COLUMNS}",
                (Jsonb(dict(state)), updated_at, session_id),
            )
            return _one(await cur.fetchone(), session_id)

    async def append_interaction(
        self,
        session_id: str,
        *,
        kind: InteractionKind,
        content: Any,
        metadata: Mapping[str, Any],
        thread_id: str | None = None,
        run_id: str | None = None,
        created_at: datetime,
        owner: str | None = None,
    ) -> Interaction:
        async with self._transaction() as conn:
            # The row lock queues concurrent appends: each reads the max the previous wrote.
            await _get(conn, session_id, owner, lock=True)
            entry = (kind, content, metadata, thread_id, run_id)
            return (await insert_interactions(conn, session_id, [entry], created_at))[0]

    async def list_interactions(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        kinds: Sequence[InteractionKind] | None = None,
        owner: str | None = None,
    ) -> list[Interaction]:
        sql = f"SELECT {_INTERACTION_COLUMNS} FROM interactions WHERE session_id = %s AND seq > %s"
        params: tuple[Any, ...] = (session_id, after)
        if kinds is not None:
            sql += " AND kind = ANY(%s)"
            params += (list(kinds),)
        async with self._transaction() as conn:
            await _get(conn, session_id, owner)
            cur = await conn.execute(sql + " ORDER BY seq LIMIT %s", (*params, limit))
            return [Interaction.model_validate(r) for r in await cur.fetchall()]


NewInteraction = tuple[InteractionKind, Any, Mapping[str, Any], str | None, str | None]
"""An entry to append: kind, content, metadata, thread ID, run ID."""


async def insert_interactions(
    conn: Conn, session_id: str, entries: Sequence[NewInteraction], created_at: datetime
) -> list[Interaction]:
    """Append ``entries`` to the log of a session the caller has locked (``FOR UPDATE``, which
    queues concurrent appends), with the next seqs, in one statement."""
    if not entries:
        return []
    cur = await conn.execute(
        f"INSERT INTO interactions ({_INTERACTION_COLUMNS}) "
        "SELECT %s, m.seq + e.n, e.kind, e.content::jsonb, e.metadata::jsonb, e.thread_id, "
        "e.run_id, %s "
        "FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[]) "
        "WITH ORDINALITY AS e(kind, content, metadata, thread_id, run_id, n), "
        "(SELECT coalesce(max(seq), 0) AS seq FROM interactions WHERE session_id = %s) AS m "
        f"RETURNING {_INTERACTION_COLUMNS}",
        (
            session_id,
            created_at,
            [e[0] for e in entries],
            [json.dumps(e[1]) for e in entries],
            [json.dumps(dict(e[2])) for e in entries],
            [e[3] for e in entries],
            [e[4] for e in entries],
            session_id,
        ),
    )
    added = [Interaction.model_validate(r) for r in await cur.fetchall()]
    return sorted(added, key=lambda e: e.seq)


# --- doctor -----------------------------------------------------------------------------------

_ORPHANS_SQL = """
SELECT o.thread_id, o.n, (
    SELECT CASE WHEN jsonb_typeof(c.metadata -> 'graph_id') = 'string'
        THEN c.metadata ->> 'graph_id' END
    FROM checkpoints c
    WHERE c.thread_id = o.thread_id AND c.checkpoint_ns = ''
    ORDER BY c.checkpoint_id DESC LIMIT 1
) AS graph_id
FROM (
    SELECT c.thread_id, count(*) AS n FROM checkpoints c
    WHERE c.checkpoint_ns = ''
    AND NOT EXISTS (SELECT 1 FROM threads t WHERE t.thread_id = c.thread_id)
    GROUP BY c.thread_id
) AS o
ORDER BY o.thread_id
"""

# (problem, the thread's column, the table and key it names, what to call it)
_MISSING_LINKS: tuple[
    tuple[Literal["missing_session", "missing_parent"], str, str, str, str], ...
] = (
    ("missing_session", "session_id", "sessions", "session_id", "session"),
    ("missing_parent", "parent_thread_id", "threads", "thread_id", "parent thread"),
)

_COUNTS_SQL = """
SELECT * FROM (
    SELECT t.thread_id,
        t.count_checkpoints, coalesce(c.n, 0) AS real_checkpoints,
        t.count_branches, coalesce(b.n, 0) AS real_branches,
        t.count_runs, coalesce(r.n, 0) AS real_runs
    FROM threads t
    LEFT JOIN (
        SELECT thread_id, count(*) AS n FROM checkpoints WHERE checkpoint_ns = ''
        GROUP BY thread_id
    ) c ON c.thread_id = t.thread_id
    LEFT JOIN (
        SELECT parent_thread_id AS thread_id, count(*) AS n FROM threads
        WHERE kind = 'branch' AND parent_thread_id IS NOT NULL GROUP BY parent_thread_id
    ) b ON b.thread_id = t.thread_id
    LEFT JOIN (
        SELECT thread_id, count(*) AS n FROM runs WHERE thread_id IS NOT NULL
        GROUP BY thread_id
    ) r ON r.thread_id = t.thread_id
) AS x
WHERE count_checkpoints <> real_checkpoints
OR count_branches <> real_branches
OR count_runs <> real_runs
ORDER BY thread_id
"""

_COUNTED = ("count_checkpoints", "count_branches", "count_runs")


class PostgresDoctor(PostgresBase):
    """``doctor`` of :class:`weft.storage.postgres.PostgresStorage`."""

    async def doctor(self, *, repair: bool = False) -> list[DoctorFinding]:
        findings: list[DoctorFinding] = []
        async with self._transaction() as conn:
            if repair:
                # What we fix is what we found: a row changed meanwhile fails the repair
                # (serialization error) instead of being overwritten with a stale count.
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            now = datetime.now(UTC)
            cur = await conn.execute(_ORPHANS_SQL)
            for row in await cur.fetchall():
                tid, graph_id = str(row["thread_id"]), row["graph_id"]
                detail = f"{row['n']} checkpoint(s) without a thread row"
                findings.append(DoctorFinding("orphan_checkpoints", tid, detail, repair))
                if repair:
                    # A main thread row; the insert trigger counts its checkpoints.
                    metadata = {"graph_id": graph_id} if graph_id is not None else {}
                    adopted = Thread(
                        thread_id=tid,
                        created_at=now,
                        updated_at=now,
                        metadata=metadata,
                        graph_id=graph_id,
                    )
                    await insert_thread(conn, adopted, messages=0)
            for problem, column, table, key, noun in _MISSING_LINKS:
                cur = await conn.execute(
                    f"SELECT thread_id, {column} AS missing FROM threads t "
                    f"WHERE {column} IS NOT NULL "
                    f"AND NOT EXISTS (SELECT 1 FROM {table} x WHERE x.{key} = t.{column}) "
                    "ORDER BY thread_id"
                )
                for row in await cur.fetchall():
                    tid = str(row["thread_id"])
                    detail = f"{noun} {row['missing']} not found"
                    findings.append(DoctorFinding(problem, tid, detail, repair))
                    if repair:
                        await conn.execute(
                            f"UPDATE threads SET {column} = NULL WHERE thread_id = %s", (tid,)
                        )
            cur = await conn.execute(_COUNTS_SQL)
            for row in await cur.fetchall():
                tid = str(row["thread_id"])
                real = [row[c.replace("count_", "real_")] for c in _COUNTED]
                wrong = [
                    f"{c} is {row[c]}, rows say {n}"
                    for c, n in zip(_COUNTED, real, strict=True)
                    if row[c] != n
                ]
                findings.append(DoctorFinding("wrong_counts", tid, "; ".join(wrong), repair))
                if repair:
                    sets = ", ".join(f"{c} = %s" for c in _COUNTED)
                    await conn.execute(
                        f"UPDATE threads SET {sets} WHERE thread_id = %s", (*real, tid)
                    )
        return findings


async def _run(conn: Conn, op: SessionOp, owner: str | None) -> Session | None:
    if isinstance(op, CreateSession):
        return await _put(conn, op.session)
    if isinstance(op, UpdateSession):
        return await _update(conn, op.session_id, op.patch, owner)
    if isinstance(op, DeleteSession):
        await _delete(conn, op.session_id, op.cascade, owner)
        return None
    raise TypeError(f"not a session operation: {op!r}")


async def _put(conn: Conn, s: Session) -> Session:
    cur = await conn.execute(
        f"INSERT INTO sessions ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT (session_id) DO NOTHING RETURNING {_COLUMNS}",
        (
            s.session_id,
            s.user_id,
            s.name,
            s.status,
            Jsonb(s.metadata),
            Jsonb(s.state),
            s.state_version,
            s.owner,
            s.created_at,
            s.updated_at,
        ),
    )
    row = await cur.fetchone()
    if row is None:
        raise ConflictError(f"session {s.session_id} already exists")
    return Session.model_validate(row)


async def _get(conn: Conn, session_id: str, owner: str | None, *, lock: bool = False) -> Session:
    clause, params = owner_clause(owner)
    sql = f"SELECT {_COLUMNS} FROM sessions WHERE session_id = %s{clause}"
    if lock:
        sql += " FOR UPDATE"
    cur = await conn.execute(sql, (session_id, *params))
    return _one(await cur.fetchone(), session_id)


async def _update(conn: Conn, session_id: str, patch: SessionPatch, owner: str | None) -> Session:
    current = await _get(conn, session_id, owner, lock=True)
    metadata = (
        {**current.metadata, **patch.metadata} if patch.metadata is not None else current.metadata
    )
    cur = await conn.execute(
        "UPDATE sessions SET user_id = %s, name = %s, status = %s, metadata = %s, "
        f"updated_at = %s WHERE session_id = %s RETURNING {_COLUMNS}",
        (
            patch.user_id if patch.user_id is not None else current.user_id,
            patch.name if patch.name is not None else current.name,
            patch.status if patch.status is not None else current.status,
            Jsonb(metadata),
            patch.updated_at,
            session_id,
        ),
    )
    return _one(await cur.fetchone(), session_id)


async def _delete(conn: Conn, session_id: str, cascade: bool, owner: str | None) -> None:
    # The lock waits for threads being added (they hold FOR SHARE) and keeps new ones out.
    await _get(conn, session_id, owner, lock=True)
    cur = await conn.execute(
        "SELECT thread_id FROM threads WHERE session_id = %s ORDER BY thread_id FOR UPDATE",
        (session_id,),
    )
    thread_ids = [str(r["thread_id"]) for r in await cur.fetchall()]
    if thread_ids and not cascade:
        raise ConflictError(
            f"session {session_id} has {len(thread_ids)} thread(s); delete them first or "
            "pass cascade=true"
        )
    if thread_ids:
        await delete_threads(conn, thread_ids)
    await conn.execute("DELETE FROM interactions WHERE session_id = %s", (session_id,))
    await conn.execute("DELETE FROM sessions WHERE session_id = %s", (session_id,))


def _one(row: DictRow | None, session_id: str) -> Session:
    if row is None:
        raise NotFoundError(f"session {session_id} not found")
    return Session.model_validate(row)


_Range = Literal[">=", "<="]


def _where(query: SessionQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.user_id is not None:
        clauses.append("user_id = %s")
        params.append(query.user_id)
    if query.status is not None:
        clauses.append("status = %s")
        params.append(query.status)
    if query.metadata:
        clauses.append("metadata @> %s")
        params.append(Jsonb(dict(query.metadata)))
    bounds: tuple[tuple[str, _Range, datetime | None], ...] = (
        ("created_at", ">=", query.created_after),
        ("created_at", "<=", query.created_before),
        ("updated_at", ">=", query.updated_after),
        ("updated_at", "<=", query.updated_before),
    )
    for column, op, value in bounds:
        if value is not None:
            clauses.append(f"{column} {op} %s")
            params.append(value)
    if query.owner is not None:
        clauses.append("(owner IS NULL OR owner = %s)")
        params.append(query.owner)
    return (" AND ".join(clauses) or "TRUE"), tuple(params)
