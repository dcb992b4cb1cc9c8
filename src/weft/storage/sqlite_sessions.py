"""Sessions and their interaction logs on SQLite: one writer job per change.

The single writer thread runs jobs one after another, so ``max(seq) + 1`` inside a job never
collides with a concurrent append.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from weft.errors import ConflictError, NotFoundError, WeftError
from weft.schema import Interaction, InteractionKind, Session
from weft.storage.base import (
    CreateSession,
    DeleteSession,
    SessionOp,
    SessionPatch,
    SessionQuery,
    Storage,
    UpdateSession,
)
from weft.storage.sqlite_engine import SqliteEngine
from weft.storage.sqlite_rows import _contains, _dumps, _owner_clause, _parse_ts, _ts
from weft.storage.sqlite_threads import delete_threads

_COLUMNS = (
    "session_id, user_id, name, status, metadata, state, state_version, owner, "
    "created_at, updated_at"
)
_INTERACTION_COLUMNS = "session_id, seq, kind, content, metadata, thread_id, run_id, created_at"


class SqliteSessionStorage(Storage):
    """The session methods of :class:`weft.storage.sqlite.SqliteStorage`."""

    engine: SqliteEngine

    async def put_session(self, session: Session) -> Session:
        return await self.engine.write(lambda conn: _create(conn, session))

    async def get_session(self, session_id: str, *, owner: str | None = None) -> Session:
        return await self.engine.read(lambda conn: _get(conn, session_id, owner))

    async def update_session(
        self, session_id: str, patch: SessionPatch, *, owner: str | None = None
    ) -> Session:
        return await self.engine.write(lambda conn: _update(conn, session_id, patch, owner))

    async def delete_session(
        self, session_id: str, *, cascade: bool = False, owner: str | None = None
    ) -> None:
        await self.engine.write(lambda conn: _delete(conn, session_id, cascade, owner))

    async def search_sessions(
        self, query: SessionQuery, *, limit: int = 10, offset: int = 0
    ) -> list[Session]:
        where, params = _where(query)

        def read(conn: sqlite3.Connection) -> list[Session]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM sessions WHERE {where} "
                "ORDER BY created_at DESC, session_id DESC LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            return [_session(r) for r in rows]

        return await self.engine.read(read)

    async def count_sessions(self, query: SessionQuery) -> int:
        where, params = _where(query)

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(f"SELECT count(*) FROM sessions WHERE {where}", params).fetchone()
            return int(row[0])

        return await self.engine.read(read)

    async def batch_sessions(
        self, ops: Sequence[SessionOp], *, owner: str | None = None
    ) -> list[Session | None]:
        def write(conn: sqlite3.Connection) -> list[Session | None]:
            results: list[Session | None] = []
            for i, op in enumerate(ops):
                try:
                    results.append(_run_op(conn, op, owner))
                except WeftError as e:
                    raise type(e)(f"batch item {i}: {e.message}") from e
            return results

        return await self.engine.write(write)

    async def set_session_state(
        self,
        session_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int,
        updated_at: datetime,
        owner: str | None = None,
    ) -> Session:
        def write(conn: sqlite3.Connection) -> Session:
            current = _get(conn, session_id, owner)
            if current.state_version != expected_version:
                raise ConflictError(
                    f"session {session_id} state changed "
                    f"(version {expected_version} -> {current.state_version})"
                )
            conn.execute(
                "UPDATE sessions SET state = ?, state_version = state_version + 1, "
                "updated_at = ? WHERE session_id = ? AND state_version = ?",
                (_dumps(dict(state)), _ts(updated_at), session_id, expected_version),
            )
            return _get(conn, session_id, None)

        return await self.engine.write(write)

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
        def write(conn: sqlite3.Connection) -> Interaction:
            _get(conn, session_id, owner)
            entry = (kind, content, metadata, thread_id, run_id)
            return insert_interactions(conn, session_id, [entry], created_at)[0]

        return await self.engine.write(write)

    async def list_interactions(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        kinds: Sequence[InteractionKind] | None = None,
        owner: str | None = None,
    ) -> list[Interaction]:
        def read(conn: sqlite3.Connection) -> list[Interaction]:
            _get(conn, session_id, owner)
            sql = (
                f"SELECT {_INTERACTION_COLUMNS} FROM interactions WHERE session_id = ? AND seq > ?"
            )
            params: list[Any] = [session_id, after]
            if kinds is not None:
                if not kinds:
                    return []
                sql += f" AND kind IN ({','.join('?' * len(kinds))})"
                params.extend(kinds)
            sql += " ORDER BY seq LIMIT ?"
            params.append(limit)
            return [_interaction(r) for r in conn.execute(sql, params).fetchall()]

        return await self.engine.read(read)


# --- operations (each runs inside the caller's job) -------------------------------------------

NewInteraction = tuple[InteractionKind, Any, Mapping[str, Any], str | None, str | None]
"""An entry to append: kind, content, metadata, thread ID, run ID."""


def insert_interactions(
    conn: sqlite3.Connection,
    session_id: str,
    entries: Sequence[NewInteraction],
    created_at: datetime,
) -> list[Interaction]:
    """Append ``entries`` to the log of a session the caller has checked, with the next seqs."""
    if not entries:
        return []
    row = conn.execute(
        "SELECT coalesce(max(seq), 0) FROM interactions WHERE session_id = ?", (session_id,)
    ).fetchone()
    first = int(row[0]) + 1
    added = [
        Interaction(
            session_id=session_id,
            seq=first + i,
            kind=kind,
            content=content,
            metadata=dict(metadata),
            thread_id=thread_id,
            run_id=run_id,
            created_at=created_at,
        )
        for i, (kind, content, metadata, thread_id, run_id) in enumerate(entries)
    ]
    at = _ts(created_at)
    conn.executemany(
        f"INSERT INTO interactions ({_INTERACTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.session_id,
                e.seq,
                e.kind,
                _dumps(e.content),
                _dumps(e.metadata),
                e.thread_id,
                e.run_id,
                at,
            )
            for e in added
        ],
    )
    return added


def _create(conn: sqlite3.Connection, s: Session) -> Session:
    taken = conn.execute("SELECT 1 FROM sessions WHERE session_id = ?", (s.session_id,)).fetchone()
    if taken is not None:
        raise ConflictError(f"session {s.session_id} already exists")
    conn.execute(
        f"INSERT INTO sessions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            s.session_id,
            s.user_id,
            s.name,
            s.status,
            _dumps(s.metadata),
            _dumps(s.state),
            s.state_version,
            s.owner,
            _ts(s.created_at),
            _ts(s.updated_at),
        ),
    )
    return _get(conn, s.session_id, None)


def _update(
    conn: sqlite3.Connection, session_id: str, patch: SessionPatch, owner: str | None
) -> Session:
    current = _get(conn, session_id, owner)
    sets = ["updated_at = ?"]
    params: list[Any] = [_ts(patch.updated_at)]
    if patch.user_id is not None:
        sets.append("user_id = ?")
        params.append(patch.user_id)
    if patch.name is not None:
        sets.append("name = ?")
        params.append(patch.name)
    if patch.status is not None:
        sets.append("status = ?")
        params.append(patch.status)
    if patch.metadata is not None:
        sets.append("metadata = ?")
        params.append(_dumps({**current.metadata, **patch.metadata}))
    conn.execute(
        f"UPDATE sessions SET {', '.join(sets)} WHERE session_id = ?", (*params, session_id)
    )
    return _get(conn, session_id, None)


def _delete(conn: sqlite3.Connection, session_id: str, cascade: bool, owner: str | None) -> None:
    _get(conn, session_id, owner)
    rows = conn.execute(
        "SELECT thread_id FROM threads WHERE session_id = ?", (session_id,)
    ).fetchall()
    if rows and not cascade:
        raise ConflictError(
            f"session {session_id} has {len(rows)} thread(s); "
            "delete them first or pass cascade=true"
        )
    delete_threads(conn, [str(r[0]) for r in rows])
    conn.execute("DELETE FROM interactions WHERE session_id = ?", (session_id,))
    conn.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))


def _run_op(conn: sqlite3.Connection, op: SessionOp, owner: str | None) -> Session | None:
    if isinstance(op, CreateSession):
        return _create(conn, op.session)
    if isinstance(op, UpdateSession):
        return _update(conn, op.session_id, op.patch, owner)
    if isinstance(op, DeleteSession):
        _delete(conn, op.session_id, op.cascade, owner)
        return None
    raise TypeError(f"unknown session operation {op!r}")


# --- rows ------------------------------------------------------------------------------------


def _session(row: tuple[Any, ...]) -> Session:
    return Session(
        session_id=row[0],
        user_id=row[1],
        name=row[2],
        status=row[3],
        metadata=json.loads(row[4]),
        state=json.loads(row[5]),
        state_version=row[6],
        owner=row[7],
        created_at=_parse_ts(row[8]),
        updated_at=_parse_ts(row[9]),
    )


def _interaction(row: tuple[Any, ...]) -> Interaction:
    return Interaction(
        session_id=row[0],
        seq=row[1],
        kind=row[2],
        content=json.loads(row[3]),
        metadata=json.loads(row[4]),
        thread_id=row[5],
        run_id=row[6],
        created_at=_parse_ts(row[7]),
    )


def _get(conn: sqlite3.Connection, session_id: str, owner: str | None) -> Session:
    seen, params = _owner_clause(owner)
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM sessions WHERE session_id = ?{seen}", (session_id, *params)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"session {session_id} not found")
    return _session(row)


def _where(query: SessionQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.user_id is not None:
        clauses.append("user_id = ?")
        params.append(query.user_id)
    if query.status is not None:
        clauses.append("status = ?")
        params.append(query.status)
    for clause, value in (
        ("created_at >= ?", query.created_after),
        ("created_at <= ?", query.created_before),
        ("updated_at >= ?", query.updated_after),
        ("updated_at <= ?", query.updated_before),
    ):
        if value is not None:
            clauses.append(clause)
            params.append(_ts(value))
    if query.owner is not None:
        clauses.append("(owner IS NULL OR owner = ?)")
        params.append(query.owner)
    if query.metadata:
        where, more = _contains("metadata", query.metadata)
        clauses.append(where)
        params.extend(more)
    return (" AND ".join(clauses) or "1 = 1"), tuple(params)
