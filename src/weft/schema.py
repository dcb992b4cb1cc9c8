"""weft's records, as the storage returns them and the HTTP API shows them.

Field names follow the LangGraph Platform API (``langgraph_sdk.schema``), so that a record
dumped with ``model_dump(mode="json", exclude={"owner"})`` is what an SDK client expects.
Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

ASSISTANT_FIELDS: tuple[str, ...] = (
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "metadata",
    "version",
    "created_at",
    "updated_at",
)
"""The fields of an assistant a search may ``select`` (the Platform's, in its order)."""


class Assistant(BaseModel):
    """A configured graph: the latest-set version of its settings."""

    model_config = ConfigDict(frozen=True)

    assistant_id: str
    graph_id: str
    name: str
    description: str | None = None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    """The version the assistant currently shows (not necessarily the highest)."""
    owner: str | None = None
    """Who may see the assistant; None means everyone. Not part of the Platform's shape."""
    created_at: datetime
    updated_at: datetime

    def to_api(self, select: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
        """The Platform's JSON shape (without ``owner``), optionally only ``select``'s keys."""
        data = self.model_dump(mode="json", exclude={"owner"})
        if select:
            return {k: data[k] for k in select if k in data}
        return data


class AssistantVersion(BaseModel):
    """One saved version of an assistant's settings."""

    model_config = ConfigDict(frozen=True)

    assistant_id: str
    version: int
    graph_id: str
    name: str
    description: str | None = None
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    created_at: datetime

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


__all__ = ["ASSISTANT_FIELDS", "Assistant", "AssistantVersion"]
