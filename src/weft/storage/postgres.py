"""PostgreSQL storage: weft's records, LangGraph's checkpoints and store on one connection pool.

One :class:`psycopg_pool.AsyncConnectionPool` serves the checkpointer
(:class:`PostgresCheckpointer`), the store (``langgraph.store.postgres.AsyncPostgresStore``)
and weft's own queries. Opening a database creates and migrates every table, serialised
across processes by a Postgres advisory lock, so any number of weft processes may open the
same database at once.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any, TypeVar

import psycopg
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.store.postgres import AsyncPostgresStore
from psycopg import AsyncConnection
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from weft.errors import StorageError
from weft.storage.migrations import SCHEMA_TABLE_POSTGRES, pending
from weft.storage.postgres_assistants import PostgresAssistantStorage
from weft.storage.postgres_crons import PostgresCronStorage
from weft.storage.postgres_plans import PostgresPlanStorage
from weft.storage.postgres_runs import PostgresRunStorage
from weft.storage.postgres_sessions import PostgresDoctor, PostgresSessionStorage
from weft.storage.postgres_threads import (
    COPY_BLOBS_SQL,
    COPY_CHECKPOINTS_SQL,
    COPY_SNAPSHOT_SQL,
    COPY_WRITES_SQL,
    PostgresThreadStorage,
)
from weft.storage.urls import DatabaseUrl, Dialect

__all__ = ["MIGRATION_LOCK_KEY", "PostgresCheckpointer", "PostgresStorage"]

T = TypeVar("T")

#: The advisory lock key every weft process takes while it creates or migrates tables
#: (the ASCII bytes of "weftmigr").
MIGRATION_LOCK_KEY = 0x7765_6674_6D69_6772

#: Seconds to wait for the server when connecting and when the pool opens.
CONNECT_TIMEOUT = 5.0
#: Seconds the pool keeps retrying a lost connection before giving up on that attempt.
RECONNECT_TIMEOUT = 5.0
#: Seconds to wait for another process to finish migrating the same database.
MIGRATION_LOCK_TIMEOUT = 300.0

# --- delete_for_runs -------------------------------------------------------------------------

# Removes the runs' checkpoints (in every namespace) and their writes, and returns the blobs
# those checkpoints used. The writes go by the checkpoints deleted: a superstep's writes can
# commit before its checkpoint does, but never belong to another run's checkpoint.
_DELETE_RUN_CHECKPOINTS_SQL = """
WITH deleted AS (
    DELETE FROM checkpoints
    WHERE metadata ->> 'run_id' = ANY(%s)
    RETURNING thread_id, checkpoint_ns, checkpoint_id, checkpoint -> 'channel_versions' AS versions
), deleted_writes AS (
    DELETE FROM checkpoint_writes w
    USING deleted d
    WHERE w.thread_id = d.thread_id
    AND w.checkpoint_ns = d.checkpoint_ns
    AND w.checkpoint_id = d.checkpoint_id
)
SELECT DISTINCT d.thread_id, d.checkpoint_ns, v.key AS channel, v.value AS version
FROM deleted d
CROSS JOIN LATERAL jsonb_each_text(d.versions) AS v
"""

# Deletes the freed blobs that no checkpoint left in the same thread and namespace uses.
# A separate statement, so that it sees the checkpoints the first one deleted as gone.
_DELETE_FREED_BLOBS_SQL = """
WITH freed AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[])
        AS f(thread_id, checkpoint_ns, channel, version)
), scopes AS (
    SELECT DISTINCT thread_id, checkpoint_ns FROM freed
), still_used AS (
    SELECT c.thread_id, c.checkpoint_ns, v.key AS channel, v.value AS version
    FROM checkpoints c
    JOIN scopes s ON c.thread_id = s.thread_id AND c.checkpoint_ns = s.checkpoint_ns
    CROSS JOIN LATERAL jsonb_each_text(c.checkpoint -> 'channel_versions') AS v
), garbage AS (
    SELECT thread_id, checkpoint_ns, channel, version FROM freed
    EXCEPT
    SELECT thread_id, checkpoint_ns, channel, version FROM still_used
)
DELETE FROM checkpoint_blobs b
USING garbage g
WHERE b.thread_id = g.thread_id
AND b.checkpoint_ns = g.checkpoint_ns
AND b.channel = g.channel
AND b.version = g.version
"""


class PostgresCheckpointer(AsyncPostgresSaver):
    """LangGraph's Postgres checkpointer plus ``delete_for_runs`` and ``copy_thread``.

    Like the library's other methods on this async saver, the sync variants may only be
    called from a thread other than the one running its event loop.
    """

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Delete the checkpoints whose metadata ``run_id`` is one of ``run_ids``.

        Every namespace of every thread is searched. The checkpoints' pending writes go with
        them, and so do the blobs that no remaining checkpoint of the same thread and
        namespace refers to. One transaction; an empty ``run_ids`` does nothing. Checkpoints
        of other runs that named a deleted checkpoint as their parent keep that reference.
        """
        if isinstance(run_ids, str):
            raise TypeError("run_ids must be a sequence of run IDs, not a str")
        ids = sorted({str(r) for r in run_ids})
        if not ids:
            return
        async with self._cursor() as cur, cur.connection.transaction():
            await cur.execute(_DELETE_RUN_CHECKPOINTS_SQL, (ids,))
            freed = await cur.fetchall()
            if freed:
                await cur.execute(
                    _DELETE_FREED_BLOBS_SQL,
                    (
                        [r["thread_id"] for r in freed],
                        [r["checkpoint_ns"] for r in freed],
                        [r["channel"] for r in freed],
                        [r["version"] for r in freed],
                    ),
                )

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and pending write of one thread to another.

        All namespaces and the whole parent chain are copied, in one transaction reading one
        snapshot of the source. Checkpoint IDs and metadata are kept as they are. Copying a
        thread that has no checkpoints does nothing; so does copying a thread onto itself.
        """
        source, target = str(source_thread_id), str(target_thread_id)
        if source == target:
            return
        async with self._cursor() as cur:
            if self.pipe:
                # The isolation level has to open the transaction (see ``aprune``).
                await self.pipe.sync()
            async with cur.connection.transaction():
                await cur.execute(COPY_SNAPSHOT_SQL)
                for sql in (COPY_BLOBS_SQL, COPY_CHECKPOINTS_SQL, COPY_WRITES_SQL):
                    await cur.execute(sql, (target, source))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Sync bridge to :meth:`adelete_for_runs`; not callable from the saver's loop."""
        self._refuse_on_loop("await checkpointer.adelete_for_runs(...)")
        self._run_on_loop(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Sync bridge to :meth:`acopy_thread`; not callable from the saver's loop."""
        self._refuse_on_loop("await checkpointer.acopy_thread(...)")
        self._run_on_loop(self.acopy_thread(source_thread_id, target_thread_id))

    def _refuse_on_loop(self, instead: str) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            return
        if running is self.loop:
            raise asyncio.InvalidStateError(
                "Synchronous calls to PostgresCheckpointer are only allowed from a thread "
                f"other than the one running its event loop. There, use `{instead}`."
            )

    def _run_on_loop(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()


Pool = AsyncConnectionPool[AsyncConnection[DictRow]]


class PostgresStorage(
    PostgresAssistantStorage,
    PostgresThreadStorage,
    PostgresSessionStorage,
    PostgresRunStorage,
    PostgresCronStorage,
    PostgresPlanStorage,
    PostgresDoctor,
):
    """weft's storage on PostgreSQL. Obtain one with :func:`weft.storage.open_storage`."""

    dialect: Dialect = "postgres"
    checkpointer: PostgresCheckpointer
    store: AsyncPostgresStore

    def __init__(
        self,
        url: DatabaseUrl,
        pool: Pool,
        checkpointer: PostgresCheckpointer,
        store: AsyncPostgresStore,
    ) -> None:
        self.url = url
        self.pool = pool
        self.checkpointer = checkpointer
        self.store = store

    @classmethod
    @asynccontextmanager
    async def open(cls, url: DatabaseUrl, *, pool_size: int = 10) -> AsyncIterator[PostgresStorage]:
        """Connect to ``url``, create and migrate every table, and close it all on exit.

        Raises :class:`StorageError` (naming the masked URL) when the server cannot be
        reached or the schema cannot be set up, and :class:`SchemaVersionError` when the
        database was written by a newer weft.
        """
        if pool_size < 1:
            raise StorageError(f"Postgres pool size must be at least 1, not {pool_size}")
        kwargs = _connection_kwargs(url)
        async with AsyncExitStack() as stack:
            # A connection of its own holds the migration lock, so that a pool of one
            # connection can still run the libraries' setup() meanwhile. It also makes the
            # first connection attempt, whose error the pool would not report.
            bootstrap = await _connect(url, kwargs)
            stack.push_async_callback(bootstrap.close)
            pool = await _open_pool(url, kwargs, pool_size)
            stack.push_async_callback(pool.close)
            storage = cls(url, pool, PostgresCheckpointer(conn=pool), AsyncPostgresStore(pool))
            stack.push_async_callback(storage._close_store)
            await storage._migrate(bootstrap)
            await bootstrap.close()
            yield storage

    async def schema_version(self) -> int:
        rows = await self._fetch("SELECT coalesce(max(version), 0) AS version FROM weft_schema")
        return int(rows[0]["version"])

    async def table_names(self) -> list[str]:
        """Every table in the connection's current schema (normally ``public``)."""
        rows = await self._fetch(
            "SELECT tablename FROM pg_catalog.pg_tables "
            "WHERE schemaname = current_schema() ORDER BY tablename"
        )
        return [str(r["tablename"]) for r in rows]

    async def integrity_check(self) -> list[str]:
        """Whether the server answers ``SELECT 1``; Postgres has no file-level check to run.

        Postgres verifies its own pages (checksums, WAL) as it reads them and reports damage
        in its log; ``amcheck`` and ``pg_checksums`` need superuser or a stopped server. So
        this returns ``[]`` when a query works and the reason, as one problem, when not.
        """
        try:
            rows = await self._fetch("SELECT 1 AS ok")
        except StorageError as e:
            return [e.message]
        if not rows or rows[0]["ok"] != 1:
            return [f"SELECT 1 on {self.url.masked} returned {rows!r}"]
        return []

    async def _fetch(self, sql: str) -> list[DictRow]:
        try:
            async with self.pool.connection() as conn:
                cur = await conn.execute(sql)
                return await cur.fetchall()
        except (psycopg.Error, PoolTimeout) as e:
            raise StorageError(
                f"query on Postgres at {self.url.masked} failed: {_first_line(e, self.url)}"
            ) from e

    async def _migrate(self, conn: AsyncConnection[DictRow]) -> None:
        """Create and migrate every table, holding weft's advisory lock on ``conn``."""
        masked = self.url.masked
        try:
            await _take_migration_lock(conn, self.url)
            try:
                await self.checkpointer.setup()
                await self.store.setup()
                await conn.execute(SCHEMA_TABLE_POSTGRES)
                cur = await conn.execute(
                    "SELECT coalesce(max(version), 0) AS version FROM weft_schema"
                )
                row = await cur.fetchone()
                current = int(row["version"]) if row else 0
                for migration in pending(current, "postgres", masked):
                    async with conn.transaction():
                        for statement in migration.postgres:
                            await conn.execute(statement)
                        await conn.execute(
                            "INSERT INTO weft_schema (version, description) VALUES (%s, %s)",
                            (migration.version, migration.description),
                        )
            finally:
                if not conn.closed:
                    with suppress(psycopg.Error):
                        await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        except (psycopg.Error, PoolTimeout) as e:
            raise StorageError(
                f"cannot set up the weft schema in Postgres at {masked}: "
                f"{_first_line(e, self.url)}; {_migration_hint(e)}"
            ) from e

    async def _close_store(self) -> None:
        """Stop the store's background tasks (the batching loop and any TTL sweeper)."""
        await self.store.stop_ttl_sweeper(timeout=CONNECT_TIMEOUT)
        task = self.store._task
        if task is not None and not task.done():
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


def _connection_kwargs(url: DatabaseUrl) -> dict[str, Any]:
    """What LangGraph's Postgres savers require of a connection, plus a short timeout."""
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
    }
    if "connect_timeout" not in conninfo_to_dict(url.raw) and not os.environ.get(
        "PGCONNECT_TIMEOUT"
    ):
        kwargs["connect_timeout"] = int(CONNECT_TIMEOUT)
    return kwargs


async def _connect(url: DatabaseUrl, kwargs: dict[str, Any]) -> AsyncConnection[DictRow]:
    try:
        conn: AsyncConnection[DictRow] = await AsyncConnection.connect(url.raw, **kwargs)
    except psycopg.Error as e:
        raise _connect_error(url, e) from e
    return conn


async def _open_pool(url: DatabaseUrl, kwargs: dict[str, Any], pool_size: int) -> Pool:
    pool: Pool = AsyncConnectionPool(
        url.raw,
        kwargs=kwargs,
        min_size=1,
        max_size=pool_size,
        open=False,
        name="weft",
        check=AsyncConnectionPool.check_connection,
        reconnect_timeout=RECONNECT_TIMEOUT,
    )
    try:
        await pool.open(wait=True, timeout=CONNECT_TIMEOUT)
    except (psycopg.Error, PoolTimeout) as e:
        await pool.close()
        raise _connect_error(url, e) from e
    except BaseException:
        await pool.close()
        raise
    return pool


async def _take_migration_lock(conn: AsyncConnection[DictRow], url: DatabaseUrl) -> None:
    """Wait for weft's migration lock on ``conn``.

    ``pg_try_advisory_lock`` in a loop, not ``pg_advisory_lock``: a session blocked in the
    latter keeps a snapshot open, and the ``CREATE INDEX CONCURRENTLY`` that the lock
    holder's ``setup()`` runs (on a pool connection) waits for every older snapshot. As the
    lock is held on another connection than the one waiting, the cycle runs through the
    client and Postgres cannot detect it: both processes would hang.
    """
    deadline = time.monotonic() + MIGRATION_LOCK_TIMEOUT
    delay = 0.05
    while True:
        cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (MIGRATION_LOCK_KEY,))
        row = await cur.fetchone()
        if row and row["locked"]:
            return
        if time.monotonic() >= deadline:
            raise StorageError(
                f"cannot set up the weft schema in Postgres at {url.masked}: another process "
                f"has held weft's migration lock (advisory lock {MIGRATION_LOCK_KEY}) for "
                f"{MIGRATION_LOCK_TIMEOUT:.0f} s; wait for it to finish or stop it"
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, 1.0)


def _connect_error(url: DatabaseUrl, e: BaseException) -> StorageError:
    if isinstance(e, PoolTimeout):
        detail = f"no connection within {CONNECT_TIMEOUT:.0f} s"
    else:
        detail = _first_line(e, url).removeprefix("connection failed: ")
    return StorageError(
        f"cannot connect to Postgres at {url.masked}: {detail}; {_connect_hint(detail)}"
    )


def _connect_hint(detail: str) -> str:
    text = detail.lower()
    if "database" in text and "does not exist" in text:
        return "create the database (createdb NAME) or fix its name in the URL"
    if "role" in text and "does not exist" in text:
        return "create the role or fix the user name in the URL"
    if "authentication" in text or "password" in text or "pg_hba.conf" in text:
        return "check the user name and password in the URL and the server's pg_hba.conf"
    if "connection refused" in text:
        return "is the server running and listening on that host and port?"
    if "timeout" in text or "no connection within" in text:
        return "is the server reachable from this host and accepting connections?"
    return "is the server running and does the database exist?"


def _migration_hint(e: BaseException) -> str:
    if isinstance(e, pg_errors.InsufficientPrivilege):
        return "the database user needs permission to create tables in the current schema"
    return "check the server log, then open the database again"


def _first_line(e: BaseException, url: DatabaseUrl) -> str:
    """The driver's first error line, with the URL's password (if any) masked."""
    text = str(e).strip()
    line = text.splitlines()[0].strip() if text else type(e).__name__
    password = conninfo_to_dict(url.raw).get("password")
    if password:
        line = line.replace(str(password), "***")
    return line
