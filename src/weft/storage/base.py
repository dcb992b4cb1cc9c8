"""What every storage backend offers. Two real implementations: SQLite and Postgres."""

from __future__ import annotations

from abc import ABC, abstractmethod

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from weft.storage.urls import DatabaseUrl, Dialect


class Storage(ABC):
    """weft's records, LangGraph's checkpoints and the LangGraph store, on one database.

    Obtain one with :func:`weft.storage.open_storage`; it is closed when that context exits.
    """

    dialect: Dialect
    url: DatabaseUrl
    checkpointer: BaseCheckpointSaver[str]
    store: BaseStore

    @abstractmethod
    async def schema_version(self) -> int:
        """The highest weft schema migration applied to this database."""

    @abstractmethod
    async def table_names(self) -> list[str]:
        """Every table in the database (weft's, the checkpointer's and the store's)."""

    @abstractmethod
    async def integrity_check(self) -> list[str]:
        """Problems the database engine finds in its own files; empty when healthy."""
