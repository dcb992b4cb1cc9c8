"""What every storage backend offers. Two real implementations: SQLite and Postgres."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from weft.schema import Assistant, AssistantVersion
from weft.storage.urls import DatabaseUrl, Dialect

IfExists = Literal["raise", "do_nothing"]
AssistantSortBy = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]
SortOrder = Literal["asc", "desc"]

ASSISTANT_SORT_COLUMNS: dict[str, str] = {
    "assistant_id": "assistant_id",
    "graph_id": "lower(graph_id)",
    "name": "lower(name)",
    "created_at": "created_at",
    "updated_at": "updated_at",
}
"""``sort_by`` value -> the SQL expression it orders by (names sort case-insensitively)."""


@dataclass(frozen=True)
class AssistantPatch:
    """A change to an assistant. ``None`` keeps a field; ``metadata`` is merged key by key."""

    updated_at: datetime
    graph_id: str | None = None
    config: Mapping[str, Any] | None = None
    context: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    name: str | None = None
    description: str | None = None

    def apply(self, current: Assistant, version: int) -> Assistant:
        """``current`` with this patch applied, showing ``version``.

        A new ``context`` without a new ``config`` also becomes ``config["configurable"]``.
        """
        if self.config is not None:
            config = dict(self.config)
        elif self.context is not None:
            config = {**current.config, "configurable": dict(self.context)}
        else:
            config = current.config
        return current.model_copy(
            update={
                "graph_id": self.graph_id if self.graph_id is not None else current.graph_id,
                "config": config,
                "context": dict(self.context) if self.context is not None else current.context,
                "metadata": (
                    {**current.metadata, **self.metadata}
                    if self.metadata is not None
                    else current.metadata
                ),
                "name": self.name if self.name is not None else current.name,
                "description": (
                    self.description if self.description is not None else current.description
                ),
                "version": version,
                "updated_at": self.updated_at,
            }
        )


@dataclass(frozen=True)
class AssistantQuery:
    """Which assistants a search or count considers.

    ``name`` matches a case-insensitive substring, ``metadata`` by containment (as
    Postgres' ``@>``), ``owner`` the assistant's owner or no owner (shared assistants).
    """

    graph_id: str | None = None
    name: str | None = None
    metadata: Mapping[str, Any] | None = None
    owner: str | None = None


def version_of(assistant: Assistant, version: int, created_at: datetime) -> AssistantVersion:
    """The version record that stores ``assistant``'s current settings."""
    return AssistantVersion(
        assistant_id=assistant.assistant_id,
        version=version,
        graph_id=assistant.graph_id,
        name=assistant.name,
        description=assistant.description,
        config=assistant.config,
        context=assistant.context,
        metadata=assistant.metadata,
        created_at=created_at,
    )


class Storage(ABC):
    """weft's records, LangGraph's checkpoints and the LangGraph store, on one database.

    Obtain one with :func:`weft.storage.open_storage`; it is closed when that context exits.

    Every assistant method that takes ``owner`` sees only the assistants of that owner and
    those without one; ``owner=None`` sees all. A missing (or unseen) assistant raises
    :class:`weft.errors.NotFoundError`.
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

    # --- assistants ---------------------------------------------------------------------

    @abstractmethod
    async def put_assistant(self, assistant: Assistant, *, if_exists: IfExists) -> Assistant:
        """Insert ``assistant`` and its version record, in one transaction.

        When the ID is taken: ``"do_nothing"`` returns the existing assistant (if its owner
        may see it); otherwise :class:`weft.errors.ConflictError`.
        """

    @abstractmethod
    async def get_assistant(self, assistant_id: str, *, owner: str | None = None) -> Assistant:
        """One assistant."""

    @abstractmethod
    async def update_assistant(
        self, assistant_id: str, patch: AssistantPatch, *, owner: str | None = None
    ) -> Assistant:
        """Save ``patch`` as a new version (highest + 1) and show it, in one transaction."""

    @abstractmethod
    async def set_assistant_version(
        self, assistant_id: str, version: int, *, owner: str | None = None
    ) -> Assistant:
        """Make the assistant show a saved ``version`` (NotFoundError when there is none)."""

    @abstractmethod
    async def list_assistant_versions(
        self,
        assistant_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[AssistantVersion]:
        """Saved versions, newest first; ``metadata`` filters by containment."""

    @abstractmethod
    async def delete_assistant(self, assistant_id: str, *, owner: str | None = None) -> None:
        """Delete an assistant with its versions and crons, in one transaction."""

    @abstractmethod
    async def search_assistants(
        self,
        query: AssistantQuery,
        *,
        limit: int = 10,
        offset: int = 0,
        sort_by: AssistantSortBy = "created_at",
        sort_order: SortOrder = "desc",
    ) -> list[Assistant]:
        """Assistants matching ``query``, sorted (ties by assistant ID) and paginated."""

    @abstractmethod
    async def count_assistants(self, query: AssistantQuery) -> int:
        """How many assistants match ``query``."""
