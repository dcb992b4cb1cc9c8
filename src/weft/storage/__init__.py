"""Durable storage: weft's records, LangGraph checkpoints and the store, on one database.

``open_storage(url)`` is the only way in::

    async with open_storage("sqlite:///.weft/weft.db") as storage:
        graph = builder.compile(checkpointer=storage.checkpointer, store=storage.store)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from weft.storage.base import Storage
from weft.storage.urls import DatabaseUrl, mask_url, parse_url

__all__ = ["DatabaseUrl", "Storage", "mask_url", "open_storage", "parse_url"]


@asynccontextmanager
async def open_storage(
    url: str,
    *,
    sqlite_synchronous: str = "full",
    postgres_pool_size: int = 10,
) -> AsyncIterator[Storage]:
    """Open (creating and migrating when needed) the database at ``url``.

    ``url`` is ``sqlite:///PATH``, ``sqlite:///:memory:`` or ``postgresql://...``.
    Every failure to open is a :class:`weft.errors.StorageError` naming the masked URL.
    """
    parsed = parse_url(url)
    if parsed.dialect == "sqlite":
        from weft.storage.sqlite import SqliteStorage

        async with SqliteStorage.open(parsed, synchronous=sqlite_synchronous) as storage:
            yield storage
    else:
        from weft.storage.postgres import PostgresStorage

        async with PostgresStorage.open(parsed, pool_size=postgres_pool_size) as storage:
            yield storage
