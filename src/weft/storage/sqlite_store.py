"""The LangGraph store on weft's SQLite database.

LangGraph's own ``SqliteStore`` holds the SQL (its tables are migrated by its ``setup()``);
this class runs it on the engine's writer thread, so the store shares the database file and
connection with weft's tables and checkpoints, and offers the async API graphs use.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable

from langgraph.store.base import BaseStore, Op, Result
from langgraph.store.sqlite import SqliteStore as LangGraphSqliteStore

from weft.storage.sqlite_engine import SqliteEngine


class SqliteStore(BaseStore):
    """A ``BaseStore`` whose operations run on weft's SQLite writer thread."""

    supports_ttl = False

    def __init__(self, engine: SqliteEngine, inner: LangGraphSqliteStore) -> None:
        self.engine = engine
        self.inner = inner
        self.loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, engine: SqliteEngine) -> SqliteStore:
        """Bind LangGraph's store to the writer connection.

        Its tables were migrated with weft's (``sqlite._migrate_store``), under one lock.
        """

        def bind(conn: sqlite3.Connection) -> LangGraphSqliteStore:
            inner = LangGraphSqliteStore(conn)
            inner.is_setup = True
            return inner

        return cls(engine, await engine.write_alone(bind))

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        todo = list(ops)
        return await self.engine.write_alone(lambda _conn: self.inner.batch(todo))

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            raise asyncio.InvalidStateError(
                "weft's store is async on the event loop's thread: use aget/aput/asearch"
            )
        return asyncio.run_coroutine_threadsafe(self.abatch(ops), self.loop).result()
