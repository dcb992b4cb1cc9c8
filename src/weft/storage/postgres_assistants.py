"""Assistants on Postgres: JSONB columns, one transaction per change."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from weft.errors import ConflictError, NotFoundError, StorageError
from weft.schema import Assistant, AssistantVersion
from weft.storage.base import (
    ASSISTANT_SORT_COLUMNS,
    AssistantPatch,
    AssistantQuery,
    AssistantSortBy,
    IfExists,
    SortOrder,
    Storage,
    version_of,
)

_COLUMNS = (
    "assistant_id, graph_id, name, description, config, context, metadata, version, owner, "
    "created_at, updated_at"
)
_VERSION_COLUMNS = (
    "assistant_id, version, graph_id, name, description, config, context, metadata, created_at"
)

Conn = AsyncConnection[DictRow]


class PostgresBase(Storage):
    """What the Postgres mixins share: the pool and one transaction per change."""

    pool: AsyncConnectionPool[Conn]

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Conn]:
        """A pooled connection inside a transaction; driver errors become StorageError."""
        try:
            async with self.pool.connection() as conn, conn.transaction():
                yield conn
        except (psycopg.Error, PoolTimeout) as e:
            from weft.storage.postgres import _first_line

            raise StorageError(
                f"query on Postgres at {self.url.masked} failed: {_first_line(e, self.url)}"
            ) from e


class PostgresAssistantStorage(PostgresBase):
    """The assistant methods of :class:`weft.storage.postgres.PostgresStorage`."""

    async def put_assistant(self, assistant: Assistant, *, if_exists: IfExists) -> Assistant:
        a = assistant
        async with self._transaction() as conn:
            cur = await conn.execute(
                f"INSERT INTO assistants ({_COLUMNS}) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (assistant_id) DO NOTHING RETURNING assistant_id",
                (
                    a.assistant_id,
                    a.graph_id,
                    a.name,
                    a.description,
                    Jsonb(a.config),
                    Jsonb(a.context),
                    Jsonb(a.metadata),
                    a.version,
                    a.owner,
                    a.created_at,
                    a.updated_at,
                ),
            )
            if await cur.fetchone() is not None:
                await _insert_version(conn, version_of(a, a.version, a.created_at))
                return a
            if if_exists == "do_nothing":
                try:
                    return await _get(conn, a.assistant_id, a.owner)
                except NotFoundError:
                    pass  # another owner's: a conflict
            raise ConflictError(f"assistant {a.assistant_id} already exists")

    async def get_assistant(self, assistant_id: str, *, owner: str | None = None) -> Assistant:
        async with self._transaction() as conn:
            return await _get(conn, assistant_id, owner)

    async def update_assistant(
        self, assistant_id: str, patch: AssistantPatch, *, owner: str | None = None
    ) -> Assistant:
        async with self._transaction() as conn:
            current = await _get(conn, assistant_id, owner, lock=True)
            cur = await conn.execute(
                "SELECT coalesce(max(version), 0) AS v FROM assistant_versions "
                "WHERE assistant_id = %s",
                (assistant_id,),
            )
            row = await cur.fetchone()
            updated = patch.apply(current, int(row["v"] if row else 0) + 1)
            await _insert_version(conn, version_of(updated, updated.version, patch.updated_at))
            await _show(conn, updated)
            return updated

    async def set_assistant_version(
        self, assistant_id: str, version: int, *, owner: str | None = None
    ) -> Assistant:
        async with self._transaction() as conn:
            current = await _get(conn, assistant_id, owner, lock=True)
            cur = await conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM assistant_versions "
                "WHERE assistant_id = %s AND version = %s",
                (assistant_id, version),
            )
            row = await cur.fetchone()
            if row is None:
                raise NotFoundError(f"version {version} of assistant {assistant_id} not found")
            saved = AssistantVersion.model_validate(row)
            shown = current.model_copy(
                update={
                    "graph_id": saved.graph_id,
                    "name": saved.name,
                    "description": saved.description,
                    "config": saved.config,
                    "context": saved.context,
                    "metadata": saved.metadata,
                    "version": saved.version,
                    "updated_at": datetime.now(UTC),
                }
            )
            await _show(conn, shown)
            return shown

    async def list_assistant_versions(
        self,
        assistant_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[AssistantVersion]:
        async with self._transaction() as conn:
            await _get(conn, assistant_id, owner)
            cur = await conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM assistant_versions "
                "WHERE assistant_id = %s AND metadata @> %s "
                "ORDER BY version DESC LIMIT %s OFFSET %s",
                (assistant_id, Jsonb(dict(metadata or {})), limit, offset),
            )
            return [AssistantVersion.model_validate(r) for r in await cur.fetchall()]

    async def delete_assistant(self, assistant_id: str, *, owner: str | None = None) -> None:
        async with self._transaction() as conn:
            await _get(conn, assistant_id, owner, lock=True)
            await conn.execute("DELETE FROM crons WHERE assistant_id = %s", (assistant_id,))
            await conn.execute(
                "DELETE FROM assistant_versions WHERE assistant_id = %s", (assistant_id,)
            )
            await conn.execute("DELETE FROM assistants WHERE assistant_id = %s", (assistant_id,))

    async def search_assistants(
        self,
        query: AssistantQuery,
        *,
        limit: int = 10,
        offset: int = 0,
        sort_by: AssistantSortBy = "created_at",
        sort_order: SortOrder = "desc",
    ) -> list[Assistant]:
        column = ASSISTANT_SORT_COLUMNS[sort_by]
        direction = "ASC" if sort_order == "asc" else "DESC"
        where, params = _where(query)
        async with self._transaction() as conn:
            cur = await conn.execute(
                f"SELECT {_COLUMNS} FROM assistants WHERE {where} "
                f"ORDER BY {column} {direction}, assistant_id {direction} LIMIT %s OFFSET %s",
                (*params, limit, offset),
            )
            return [Assistant.model_validate(r) for r in await cur.fetchall()]

    async def count_assistants(self, query: AssistantQuery) -> int:
        where, params = _where(query)
        async with self._transaction() as conn:
            cur = await conn.execute(f"SELECT count(*) AS n FROM assistants WHERE {where}", params)
            row = await cur.fetchone()
            return int(row["n"]) if row else 0


async def _get(
    conn: Conn, assistant_id: str, owner: str | None, *, lock: bool = False
) -> Assistant:
    sql = f"SELECT {_COLUMNS} FROM assistants WHERE assistant_id = %s"
    params: tuple[Any, ...] = (assistant_id,)
    if owner is not None:
        sql += " AND (owner IS NULL OR owner = %s)"
        params += (owner,)
    if lock:
        sql += " FOR UPDATE"
    cur = await conn.execute(sql, params)
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError(f"assistant {assistant_id} not found")
    return Assistant.model_validate(row)


async def _insert_version(conn: Conn, v: AssistantVersion) -> None:
    await conn.execute(
        f"INSERT INTO assistant_versions ({_VERSION_COLUMNS}) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            v.assistant_id,
            v.version,
            v.graph_id,
            v.name,
            v.description,
            Jsonb(v.config),
            Jsonb(v.context),
            Jsonb(v.metadata),
            v.created_at,
        ),
    )


async def _show(conn: Conn, a: Assistant) -> None:
    """Make the assistants row show ``a``'s settings and version."""
    await conn.execute(
        "UPDATE assistants SET graph_id = %s, name = %s, description = %s, config = %s, "
        "context = %s, metadata = %s, version = %s, updated_at = %s WHERE assistant_id = %s",
        (
            a.graph_id,
            a.name,
            a.description,
            Jsonb(a.config),
            Jsonb(a.context),
            Jsonb(a.metadata),
            a.version,
            a.updated_at,
            a.assistant_id,
        ),
    )


def _where(query: AssistantQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.graph_id is not None:
        clauses.append("graph_id = %s")
        params.append(query.graph_id)
    if query.name:
        clauses.append("strpos(lower(name), lower(%s)) > 0")
        params.append(query.name)
    if query.owner is not None:
        clauses.append("(owner IS NULL OR owner = %s)")
        params.append(query.owner)
    if query.metadata:
        clauses.append("metadata @> %s")
        params.append(Jsonb(dict(query.metadata)))
    return (" AND ".join(clauses) or "TRUE"), tuple(params)
