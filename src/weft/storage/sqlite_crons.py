"""Crons on SQLite: JSON as text, timestamps as ISO 8601 UTC text (which sorts as time does),
one writer job per change.

A claim is one conditional UPDATE; the writer runs jobs one after another (and other
processes wait for the file's write lock), so of two claims of one slot exactly one changes
the row.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any, Literal

from weft.errors import ConflictError, NotFoundError
from weft.schema import Cron
from weft.storage.base import Storage
from weft.storage.base_crons import CRON_SORT_COLUMNS, CronQuery, CronSortBy
from weft.storage.sqlite_engine import SqliteEngine
from weft.storage.sqlite_rows import _contains, _dumps, _owner_clause, _parse_ts, _ts

_COLUMNS = (
    "cron_id, assistant_id, thread_id, on_run_completed, end_time, schedule, timezone, "
    "created_at, updated_at, payload, owner, next_run_date, metadata, enabled"
)


class SqliteCronStorage(Storage):
    """The cron methods of :class:`weft.storage.sqlite.SqliteStorage`."""

    engine: SqliteEngine

    async def put_cron(self, cron: Cron) -> Cron:
        def write(conn: sqlite3.Connection) -> Cron:
            found = conn.execute(
                "SELECT 1 FROM assistants WHERE assistant_id = ?", (cron.assistant_id,)
            ).fetchone()
            if found is None:
                raise NotFoundError(f"assistant {cron.assistant_id} not found")
            if cron.thread_id is not None:
                seen, params = _owner_clause(cron.user_id)
                found = conn.execute(
                    f"SELECT 1 FROM threads WHERE thread_id = ?{seen}", (cron.thread_id, *params)
                ).fetchone()
                if found is None:
                    raise NotFoundError(f"thread {cron.thread_id} not found")
            try:
                conn.execute(
                    f"INSERT INTO crons ({_COLUMNS}) VALUES ({', '.join('?' * 14)})",
                    _row(cron),
                )
            except sqlite3.IntegrityError as e:
                raise ConflictError(f"cron {cron.cron_id} already exists") from e
            return cron

        return await self.engine.write(write)

    async def get_cron(self, cron_id: str, *, owner: str | None = None) -> Cron:
        return await self.engine.read(lambda conn: _get(conn, cron_id, owner))

    async def replace_cron(self, cron: Cron, *, owner: str | None = None) -> Cron:
        def write(conn: sqlite3.Connection) -> Cron:
            seen, params = _owner_clause(owner)
            changed = conn.execute(
                "UPDATE crons SET schedule = ?, timezone = ?, end_time = ?, enabled = ?, "
                "payload = ?, metadata = ?, on_run_completed = ?, next_run_date = ?, "
                f"updated_at = ? WHERE cron_id = ?{seen}",
                (
                    cron.schedule,
                    cron.timezone,
                    _opt_ts(cron.end_time),
                    int(cron.enabled),
                    _dumps(cron.payload),
                    _dumps(cron.metadata),
                    cron.on_run_completed,
                    _opt_ts(cron.next_run_date),
                    _ts(cron.updated_at),
                    cron.cron_id,
                    *params,
                ),
            ).rowcount
            if changed == 0:
                raise NotFoundError(f"cron {cron.cron_id} not found")
            return _get(conn, cron.cron_id, None)

        return await self.engine.write(write)

    async def delete_cron(self, cron_id: str, *, owner: str | None = None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            seen, params = _owner_clause(owner)
            changed = conn.execute(
                f"DELETE FROM crons WHERE cron_id = ?{seen}", (cron_id, *params)
            ).rowcount
            if changed == 0:
                raise NotFoundError(f"cron {cron_id} not found")

        await self.engine.write(write)

    async def search_crons(
        self,
        query: CronQuery,
        *,
        limit: int = 10,
        offset: int = 0,
        sort_by: CronSortBy = "created_at",
        sort_order: Literal["asc", "desc"] = "desc",
    ) -> list[Cron]:
        column = CRON_SORT_COLUMNS[sort_by]
        direction = "ASC" if sort_order == "asc" else "DESC"
        where, params = _where(query)

        def read(conn: sqlite3.Connection) -> list[Cron]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM crons WHERE {where} "
                f"ORDER BY {column} {direction} NULLS LAST, cron_id {direction} "
                "LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            return [_cron(r) for r in rows]

        return await self.engine.read(read)

    async def count_crons(self, query: CronQuery) -> int:
        where, params = _where(query)

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(f"SELECT count(*) FROM crons WHERE {where}", params).fetchone()
            return int(row[0])

        return await self.engine.read(read)

    async def due_crons(self, now: datetime, *, limit: int = 100) -> list[Cron]:
        def read(conn: sqlite3.Connection) -> list[Cron]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM crons WHERE next_run_date <= ? AND enabled "
                "ORDER BY next_run_date, cron_id LIMIT ?",
                (_ts(now), limit),
            ).fetchall()
            return [_cron(r) for r in rows]

        return await self.engine.read(read)

    async def next_cron_date(self) -> datetime | None:
        def read(conn: sqlite3.Connection) -> datetime | None:
            row = conn.execute(
                "SELECT min(next_run_date) FROM crons WHERE next_run_date IS NOT NULL AND enabled"
            ).fetchone()
            return _parse_ts(row[0]) if row[0] is not None else None

        return await self.engine.read(read)

    async def claim_cron(
        self, cron_id: str, *, due: datetime, next_run_date: datetime | None
    ) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE crons SET next_run_date = ? "
                "WHERE cron_id = ? AND next_run_date = ? AND enabled",
                (_opt_ts(next_run_date), cron_id, _ts(due)),
            ).rowcount
            return changed == 1

        return await self.engine.write(write)


# --- rows ------------------------------------------------------------------------------------


def _opt_ts(value: datetime | None) -> str | None:
    return _ts(value) if value is not None else None


def _opt_parse(value: str | None) -> datetime | None:
    return _parse_ts(value) if value is not None else None


def _row(c: Cron) -> tuple[Any, ...]:
    return (
        c.cron_id,
        c.assistant_id,
        c.thread_id,
        c.on_run_completed,
        _opt_ts(c.end_time),
        c.schedule,
        c.timezone,
        _ts(c.created_at),
        _ts(c.updated_at),
        _dumps(c.payload),
        c.user_id,
        _opt_ts(c.next_run_date),
        _dumps(c.metadata),
        int(c.enabled),
    )


def _cron(row: tuple[Any, ...]) -> Cron:
    return Cron(
        cron_id=row[0],
        assistant_id=row[1],
        thread_id=row[2],
        on_run_completed=row[3],
        end_time=_opt_parse(row[4]),
        schedule=row[5],
        timezone=row[6],
        created_at=_parse_ts(row[7]),
        updated_at=_parse_ts(row[8]),
        payload=json.loads(row[9]),
        user_id=row[10],
        next_run_date=_opt_parse(row[11]),
        metadata=json.loads(row[12]),
        enabled=bool(row[13]),
    )


def _get(conn: sqlite3.Connection, cron_id: str, owner: str | None) -> Cron:
    seen, params = _owner_clause(owner)
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM crons WHERE cron_id = ?{seen}", (cron_id, *params)
    ).fetchone()
    if row is None:
        raise NotFoundError(f"cron {cron_id} not found")
    return _cron(row)


def _where(query: CronQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.assistant_id is not None:
        clauses.append("assistant_id = ?")
        params.append(query.assistant_id)
    if query.thread_id is not None:
        clauses.append("thread_id = ?")
        params.append(query.thread_id)
    if query.enabled is not None:
        clauses.append("enabled = ?")
        params.append(int(query.enabled))
    if query.owner is not None:
        clauses.append("(owner IS NULL OR owner = ?)")
        params.append(query.owner)
    if query.metadata:
        where, more = _contains("metadata", query.metadata)
        clauses.append(where)
        params.extend(more)
    return (" AND ".join(clauses) or "1 = 1"), tuple(params)
