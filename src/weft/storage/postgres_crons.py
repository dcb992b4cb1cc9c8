"""Crons on Postgres: JSONB payload and metadata, one transaction per change.

A claim is one conditional ``UPDATE ... WHERE next_run_date = <the slot>``: Postgres locks
the row for the first updater, and a second one, re-checking the condition after the first
commits, finds the date moved and changes nothing. So exactly one of several processes on
the database fires a given slot.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from weft.errors import ConflictError, NotFoundError
from weft.schema import Cron
from weft.storage.base_crons import CRON_SORT_COLUMNS, CronQuery, CronSortBy
from weft.storage.postgres_assistants import PostgresBase
from weft.storage.postgres_threads import get_thread_row, owner_clause

__all__ = ["PostgresCronStorage"]

_COLUMNS = (
    "cron_id, assistant_id, thread_id, on_run_completed, end_time, schedule, timezone, "
    "created_at, updated_at, payload, owner, next_run_date, metadata, enabled"
)


class PostgresCronStorage(PostgresBase):
    """The cron methods of :class:`weft.storage.postgres.PostgresStorage`."""

    async def put_cron(self, cron: Cron) -> Cron:
        c = cron
        async with self._transaction() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM assistants WHERE assistant_id = %s FOR SHARE", (c.assistant_id,)
            )
            if await cur.fetchone() is None:
                raise NotFoundError(f"assistant {c.assistant_id} not found")
            if c.thread_id is not None:
                # FOR SHARE: a concurrent deletion of the thread waits for this insert, then
                # deletes the cron with it (ON DELETE CASCADE).
                await get_thread_row(conn, c.thread_id, c.user_id, lock="SHARE")
            cur = await conn.execute(
                f"INSERT INTO crons ({_COLUMNS}) VALUES "
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (cron_id) DO NOTHING RETURNING cron_id",
                (
                    c.cron_id,
                    c.assistant_id,
                    c.thread_id,
                    c.on_run_completed,
                    c.end_time,
                    c.schedule,
                    c.timezone,
                    c.created_at,
                    c.updated_at,
                    Jsonb(c.payload),
                    c.user_id,
                    c.next_run_date,
                    Jsonb(c.metadata),
                    c.enabled,
                ),
            )
            if await cur.fetchone() is None:
                raise ConflictError(f"cron {c.cron_id} already exists")
            return c

    async def get_cron(self, cron_id: str, *, owner: str | None = None) -> Cron:
        clause, params = owner_clause(owner)
        async with self._transaction() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM crons WHERE cron_id = %s{clause}", (cron_id, *params)
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFoundError(f"cron {cron_id} not found")
        return _cron(row)

    async def replace_cron(self, cron: Cron, *, owner: str | None = None) -> Cron:
        c = cron
        clause, params = owner_clause(owner)
        async with self._transaction() as conn:
            cur = await conn.execute(
                "UPDATE crons SET schedule = %s, timezone = %s, end_time = %s, enabled = %s, "
                "payload = %s, metadata = %s, on_run_completed = %s, next_run_date = %s, "
                f"updated_at = %s WHERE cron_id = %s{clause} RETURNING {_COLUMNS}",
                (
                    c.schedule,
                    c.timezone,
                    c.end_time,
                    c.enabled,
                    Jsonb(c.payload),
                    Jsonb(c.metadata),
                    c.on_run_completed,
                    c.next_run_date,
                    c.updated_at,
                    c.cron_id,
                    *params,
                ),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFoundError(f"cron {c.cron_id} not found")
        return _cron(row)

    async def delete_cron(self, cron_id: str, *, owner: str | None = None) -> None:
        clause, params = owner_clause(owner)
        async with self._transaction() as conn:
            cur = await conn.execute(
                f"DELETE FROM crons WHERE cron_id = %s{clause} RETURNING cron_id",
                (cron_id, *params),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFoundError(f"cron {cron_id} not found")

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
        async with self._transaction() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM crons WHERE {where} "
                f"ORDER BY {column} {direction} NULLS LAST, cron_id {direction} "
                "LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            return [_cron(r) for r in await cur.fetchall()]

    async def count_crons(self, query: CronQuery) -> int:
        where, params = _where(query)
        async with self._transaction() as conn:
            cur = await conn.execute(f"SELECT count(*) AS n FROM crons WHERE {where}", params)
            row = await cur.fetchone()
            return int(row["n"]) if row else 0

    async def due_crons(self, now: datetime, *, limit: int = 100) -> list[Cron]:
        async with self._transaction() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM crons WHERE next_run_date <= %s AND enabled "
                "ORDER BY next_run_date, cron_id LIMIT %s",
                (now, limit),
            )
            return [_cron(r) for r in await cur.fetchall()]

    async def next_cron_date(self) -> datetime | None:
        async with self._transaction() as conn:
            cur = await conn.execute(
                "SELECT min(next_run_date) AS at FROM crons "
                "WHERE next_run_date IS NOT NULL AND enabled"
            )
            row = await cur.fetchone()
        at = row["at"] if row else None
        return at if isinstance(at, datetime) else None

    async def claim_cron(
        self, cron_id: str, *, due: datetime, next_run_date: datetime | None
    ) -> bool:
        async with self._transaction() as conn:
            cur = await conn.execute(
                "UPDATE crons SET next_run_date = %s "
                "WHERE cron_id = %s AND next_run_date = %s AND enabled RETURNING cron_id",
                (next_run_date, cron_id, due),
            )
            return await cur.fetchone() is not None


def _cron(row: DictRow) -> Cron:
    data = dict(row)
    data["user_id"] = data.pop("owner")
    return Cron.model_validate(data)


def _where(query: CronQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.assistant_id is not None:
        clauses.append("assistant_id = %s")
        params.append(query.assistant_id)
    if query.thread_id is not None:
        clauses.append("thread_id = %s")
        params.append(query.thread_id)
    if query.enabled is not None:
        clauses.append("enabled = %s")
        params.append(query.enabled)
    if query.owner is not None:
        clauses.append("(owner IS NULL OR owner = %s)")
        params.append(query.owner)
    if query.metadata:
        clauses.append("metadata @> %s")
        params.append(Jsonb(dict(query.metadata)))
    return (" AND ".join(clauses) or "TRUE"), tuple(params)
