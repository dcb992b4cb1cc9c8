"""The SQLite backend: one database file (or memory) holding everything, in WAL mode."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from langgraph.store.sqlite.base import MIGRATIONS as STORE_MIGRATIONS

from weft.errors import StorageError
from weft.storage.migrations import SCHEMA_TABLE_SQLITE, pending
from weft.storage.sqlite_assistants import SqliteAssistantStorage
from weft.storage.sqlite_checkpointer import SqliteCheckpointer
from weft.storage.sqlite_crons import SqliteCronStorage
from weft.storage.sqlite_engine import SqliteEngine
from weft.storage.sqlite_plans import SqlitePlanStorage
from weft.storage.sqlite_runs import SqliteRunStorage
from weft.storage.sqlite_sessions import SqliteSessionStorage
from weft.storage.sqlite_store import SqliteStore
from weft.storage.sqlite_threads import SqliteThreadStorage
from weft.storage.urls import DatabaseUrl


class SqliteStorage(
    SqliteAssistantStorage,
    SqliteThreadStorage,
    SqliteSessionStorage,
    SqliteRunStorage,
    SqliteCronStorage,
    SqlitePlanStorage,
):
    dialect = "sqlite"
    checkpointer: SqliteCheckpointer

    def __init__(self, url: DatabaseUrl, engine: SqliteEngine, store: SqliteStore) -> None:
        self.url = url
        self.engine = engine
        self.checkpointer = SqliteCheckpointer(engine)
        self.store = store

    def checkpoint_commits_at_end(
        self, *, share: bool = True
    ) -> contextlib.AbstractAsyncContextManager[None]:
        return self.checkpointer.commit_at_end(share=share)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, url: DatabaseUrl, *, synchronous: str = "full"
    ) -> AsyncIterator[SqliteStorage]:
        if synchronous.lower() not in ("full", "normal"):
            raise StorageError(
                f"sqlite synchronous must be 'full' or 'normal', not {synchronous!r}"
            )
        path = _prepare_file(url) if url.path is not None else None
        engine = SqliteEngine(path, synchronous=synchronous)
        try:
            try:
                engine.start()
                await engine.write_alone(lambda conn: _migrate(conn, url))
                store = await SqliteStore.open(engine)
            except (sqlite3.DatabaseError, ValueError) as e:
                raise _open_error(url, e) from e
            yield cls(url, engine, store)
        finally:
            await engine.close()

    async def schema_version(self) -> int:
        return await self.engine.read(_current_version)

    async def table_names(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self.engine.read(read)

    async def integrity_check(self) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("PRAGMA integrity_check").fetchall()
            return [str(r[0]) for r in rows if r[0] != "ok"]

        return await self.engine.read(read)


def _prepare_file(url: DatabaseUrl) -> Path:
    """The database file's path (``~`` expanded), its folder created."""
    assert url.path is not None
    path = url.path.expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        is_dir = path.is_dir()
    except (OSError, ValueError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise StorageError(
            f"cannot create the folder {path.parent} for database {url.masked}: "
            f"{reason}; choose a writable path (WEFT_DATABASE_URL or database_url)"
        ) from e
    if is_dir:
        raise StorageError(
            f"database {url.masked} is a folder, not a file; give the path of a file inside it"
        )
    return path


def _open_error(url: DatabaseUrl, e: sqlite3.DatabaseError | ValueError) -> StorageError:
    text = str(e)
    if "file is not a database" in text:
        hint = "the file exists but is not a SQLite database; point the URL at another file"
    elif "unable to open" in text or "readonly" in text or "read-only" in text:
        hint = "the file or its folder is not writable; choose a writable path"
    else:
        hint = "check the file, or point the URL at another one"
    return StorageError(f"cannot open SQLite database {url.masked}: {text}; {hint}")


def _current_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT MAX(version) FROM weft_schema").fetchone()
    return int(row[0] or 0)


def _migrate(conn: sqlite3.Connection, url: DatabaseUrl) -> None:
    """Apply weft's and the store's pending migrations in one IMMEDIATE transaction.

    Another process opening the same file waits for it, then finds nothing left to do.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(SCHEMA_TABLE_SQLITE)
        for migration in pending(_current_version(conn), "sqlite", url.masked):
            for statement in migration.sqlite:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO weft_schema (version, description) VALUES (?, ?)",
                (migration.version, migration.description),
            )
        _migrate_store(conn)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _migrate_store(conn: sqlite3.Connection) -> None:
    """LangGraph's store migrations, run here rather than by its own ``setup()``.

    Its ``setup()`` commits statement by statement outside any lock, so two processes
    opening a new file at once could both apply the same ``ALTER TABLE``. Same SQL, same
    ``store_migrations`` bookkeeping, inside weft's locked transaction.
    """
    conn.execute("CREATE TABLE IF NOT EXISTS store_migrations (v INTEGER PRIMARY KEY)")
    row = conn.execute("SELECT MAX(v) FROM store_migrations").fetchone()
    done = -1 if row[0] is None else int(row[0])
    for version, script in enumerate(STORE_MIGRATIONS):
        if version <= done:
            continue
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute("INSERT INTO store_migrations (v) VALUES (?)", (version,))
    conn.execute(_STORE_KEEPS_CREATED_AT)


_STORE_KEEPS_CREATED_AT = """
CREATE TRIGGER IF NOT EXISTS store_keeps_created_at BEFORE INSERT ON store
WHEN EXISTS (SELECT 1 FROM store WHERE prefix = NEW.prefix AND key = NEW.key)
BEGIN
    UPDATE store SET value = NEW.value, updated_at = NEW.updated_at,
        expires_at = NEW.expires_at, ttl_minutes = NEW.ttl_minutes
    WHERE prefix = NEW.prefix AND key = NEW.key;
    SELECT RAISE(IGNORE);
END
"""
"""LangGraph's SQLite store puts with ``INSERT OR REPLACE``, which gives a replaced item a new
``created_at``; this turns a put of an existing key into an update, so ``created_at`` stays
the item's first put (as on Postgres and the Platform)."""


def _statements(script: str) -> list[str]:
    """Split a SQL script into complete statements (executescript would commit)."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():  # a trailing comment; harmless to execute
        statements.append(current.strip())
    return statements
