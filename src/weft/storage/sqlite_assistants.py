"""Assistants on SQLite: JSON as text, timestamps as ISO 8601 UTC text, one job per change.

Each change is one writer job, so it runs in one transaction (a savepoint of the group
commit) and its caller hears back only once it is durable.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from weft.errors import ConflictError, NotFoundError
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
from weft.storage.sqlite_engine import SqliteEngine
from weft.storage.sqlite_rows import _contains, _dumps, _parse_ts, _ts, _visible

_COLUMNS = (
    "assistant_id, graph_id, name, description, config, context, metadata, version, owner, "
    "created_at, updated_at"
)
_VERSION_COLUMNS = (
    "assistant_id, version, graph_id, name, description, config, context, metadata, created_at"
)


class SqliteAssistantStorage(Storage):
    """The assistant methods of :class:`weft.storage.sqlite.SqliteStorage`."""

    engine: SqliteEngine

    async def put_assistant(self, assistant: Assistant, *, if_exists: IfExists) -> Assistant:
        def write(conn: sqlite3.Connection) -> Assistant:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM assistants WHERE assistant_id = ?",
                (assistant.assistant_id,),
            ).fetchone()
            if row is not None:
                existing = _assistant(row)
                if if_exists == "do_nothing" and _visible(existing.owner, assistant.owner):
                    return existing
                raise ConflictError(f"assistant {assistant.assistant_id} already exists")
            _insert(conn, assistant)
            _insert_version(conn, version_of(assistant, assistant.version, assistant.created_at))
            return assistant

        return await self.engine.write(write)

    async def get_assistant(self, assistant_id: str, *, owner: str | None = None) -> Assistant:
        return await self.engine.read(lambda conn: _get(conn, assistant_id, owner))

    async def update_assistant(
        self, assistant_id: str, patch: AssistantPatch, *, owner: str | None = None
    ) -> Assistant:
        def write(conn: sqlite3.Connection) -> Assistant:
            current = _get(conn, assistant_id, owner)
            row = conn.execute(
                "SELECT coalesce(max(version), 0) FROM assistant_versions WHERE assistant_id = ?",
                (assistant_id,),
            ).fetchone()
            updated = patch.apply(current, int(row[0]) + 1)
            _insert_version(conn, version_of(updated, updated.version, patch.updated_at))
            _show(conn, updated)
            return updated

        return await self.engine.write(write)

    async def set_assistant_version(
        self, assistant_id: str, version: int, *, owner: str | None = None
    ) -> Assistant:
        def write(conn: sqlite3.Connection) -> Assistant:
            current = _get(conn, assistant_id, owner)
            row = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM assistant_versions "
                "WHERE assistant_id = ? AND version = ?",
                (assistant_id, version),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"version {version} of assistant {assistant_id} not found")
            saved = _version(row)
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
            _show(conn, shown)
            return shown

        return await self.engine.write(write)

    async def list_assistant_versions(
        self,
        assistant_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[AssistantVersion]:
        def read(conn: sqlite3.Connection) -> list[AssistantVersion]:
            _get(conn, assistant_id, owner)
            where, params = _contains("metadata", metadata or {})
            rows = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM assistant_versions "
                f"WHERE assistant_id = ? AND {where} ORDER BY version DESC LIMIT ? OFFSET ?",
                (assistant_id, *params, limit, offset),
            ).fetchall()
            return [_version(r) for r in rows]

        return await self.engine.read(read)

    async def delete_assistant(self, assistant_id: str, *, owner: str | None = None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            _get(conn, assistant_id, owner)
            conn.execute("DELETE FROM crons WHERE assistant_id = ?", (assistant_id,))
            conn.execute("DELETE FROM assistant_versions WHERE assistant_id = ?", (assistant_id,))
            conn.execute("DELETE FROM assistants WHERE assistant_id = ?", (assistant_id,))

        await self.engine.write(write)

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

        def read(conn: sqlite3.Connection) -> list[Assistant]:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM assistants WHERE {where} "
                f"ORDER BY {column} {direction}, assistant_id {direction} LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
            return [_assistant(r) for r in rows]

        return await self.engine.read(read)

    async def count_assistants(self, query: AssistantQuery) -> int:
        where, params = _where(query)

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(f"SELECT count(*) FROM assistants WHERE {where}", params).fetchone()
            return int(row[0])

        return await self.engine.read(read)


# --- rows ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _assistant(row: tuple[Any, ...]) -> Assistant:
    """The assistant of a row; the same row gives the same (frozen) model, so that a run's
    admission parses its assistant's JSON only when the row changed."""
    return Assistant(
        assistant_id=row[0],
        graph_id=row[1],
        name=row[2],
        description=row[3],
        config=json.loads(row[4]),
        context=json.loads(row[5]),
        metadata=json.loads(row[6]),
        version=row[7],
        owner=row[8],
        created_at=_parse_ts(row[9]),
        updated_at=_parse_ts(row[10]),
    )


def _version(row: tuple[Any, ...]) -> AssistantVersion:
    return AssistantVersion(
        assistant_id=row[0],
        version=row[1],
        graph_id=row[2],
        name=row[3],
        description=row[4],
        config=json.loads(row[5]),
        context=json.loads(row[6]),
        metadata=json.loads(row[7]),
        created_at=_parse_ts(row[8]),
    )


def _get(conn: sqlite3.Connection, assistant_id: str, owner: str | None) -> Assistant:
    sql = f"SELECT {_COLUMNS} FROM assistants WHERE assistant_id = ?"
    params: tuple[Any, ...] = (assistant_id,)
    if owner is not None:
        sql += " AND (owner IS NULL OR owner = ?)"
        params += (owner,)
    row = conn.execute(sql, params).fetchone()
    if row is None:
        raise NotFoundError(f"assistant {assistant_id} not found")
    return _assistant(row)


def _insert(conn: sqlite3.Connection, a: Assistant) -> None:
    conn.execute(
        f"INSERT INTO assistants ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            a.assistant_id,
            a.graph_id,
            a.name,
            a.description,
            _dumps(a.config),
            _dumps(a.context),
            _dumps(a.metadata),
            a.version,
            a.owner,
            _ts(a.created_at),
            _ts(a.updated_at),
        ),
    )


def _insert_version(conn: sqlite3.Connection, v: AssistantVersion) -> None:
    conn.execute(
        f"INSERT INTO assistant_versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            v.assistant_id,
            v.version,
            v.graph_id,
            v.name,
            v.description,
            _dumps(v.config),
            _dumps(v.context),
            _dumps(v.metadata),
            _ts(v.created_at),
        ),
    )


def _show(conn: sqlite3.Connection, a: Assistant) -> None:
    """Make the assistants row show ``a``'s settings and version."""
    conn.execute(
        "UPDATE assistants SET graph_id = ?, name = ?, description = ?, config = ?, "
        "context = ?, metadata = ?, version = ?, updated_at = ? WHERE assistant_id = ?",
        (
            a.graph_id,
            a.name,
            a.description,
            _dumps(a.config),
            _dumps(a.context),
            _dumps(a.metadata),
            a.version,
            _ts(a.updated_at),
            a.assistant_id,
        ),
    )


# --- filters -------------------------------------------------------------------------------


def _where(query: AssistantQuery) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if query.graph_id is not None:
        clauses.append("graph_id = ?")
        params.append(query.graph_id)
    if query.name:
        clauses.append("instr(lower(name), lower(?)) > 0")
        params.append(query.name)
    if query.owner is not None:
        clauses.append("(owner IS NULL OR owner = ?)")
        params.append(query.owner)
    if query.metadata:
        where, more = _contains("metadata", query.metadata)
        clauses.append(where)
        params.extend(more)
    return (" AND ".join(clauses) or "1 = 1"), tuple(params)
