"""What every storage backend offers for crons (the ``crons`` table, migrations 1 and 4)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from weft.schema import Cron

CronSortBy = Literal[
    "cron_id", "assistant_id", "thread_id", "created_at", "updated_at", "next_run_date", "end_time"
]
CRON_SORT_COLUMNS: dict[str, str] = {
    "cron_id": "cron_id",
    "assistant_id": "assistant_id",
    "thread_id": "thread_id",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "next_run_date": "next_run_date",
    "end_time": "end_time",
}
"""``sort_by`` value -> the column it orders by (NULLs last either way, ties by cron ID)."""


@dataclass(frozen=True)
class CronQuery:
    """Which crons a search or count considers; every given filter must hold.

    ``metadata`` matches by containment (as Postgres' ``@>``); ``owner`` the cron's owner
    (``user_id``) or no owner.
    """

    assistant_id: str | None = None
    thread_id: str | None = None
    enabled: bool | None = None
    metadata: Mapping[str, Any] | None = None
    owner: str | None = None


class CronRecords(ABC):
    """The cron methods of :class:`weft.storage.base.Storage`.

    Every method taking ``owner`` sees only crons of that owner or of none; a cron it cannot
    see is "not found" (``cron {id} not found``).
    """

    @abstractmethod
    async def put_cron(self, cron: Cron) -> Cron:
        """Insert ``cron``, in one transaction that checks its assistant exists and its
        thread (if any) exists and is visible to ``cron.user_id`` (NotFoundError naming the
        one missing; nothing is written). A taken ID is a ConflictError."""

    @abstractmethod
    async def get_cron(self, cron_id: str, *, owner: str | None = None) -> Cron:
        """One cron."""

    @abstractmethod
    async def replace_cron(self, cron: Cron, *, owner: str | None = None) -> Cron:
        """Store every changeable field of ``cron`` (schedule, timezone, end time, enabled,
        payload, metadata, on_run_completed, next run date, updated_at) over the stored
        one, and return it as stored."""

    @abstractmethod
    async def delete_cron(self, cron_id: str, *, owner: str | None = None) -> None:
        """Delete one cron."""

    @abstractmethod
    async def search_crons(
        self,
        query: CronQuery,
        *,
        limit: int = 10,
        offset: int = 0,
        sort_by: CronSortBy = "created_at",
        sort_order: Literal["asc", "desc"] = "desc",
    ) -> list[Cron]:
        """Crons matching ``query``, sorted (NULLs last, ties by cron ID) and paginated."""

    @abstractmethod
    async def count_crons(self, query: CronQuery) -> int:
        """How many crons match ``query``."""

    @abstractmethod
    async def due_crons(self, now: datetime, *, limit: int = 100) -> list[Cron]:
        """Enabled crons whose ``next_run_date`` is at or before ``now``, earliest first."""

    @abstractmethod
    async def next_cron_date(self) -> datetime | None:
        """The earliest ``next_run_date`` of the enabled crons (None when none will fire)."""

    @abstractmethod
    async def claim_cron(
        self, cron_id: str, *, due: datetime, next_run_date: datetime | None
    ) -> bool:
        """Take the slot ``due`` of an enabled cron: move its ``next_run_date`` from ``due``
        to ``next_run_date`` in one conditional UPDATE. True for exactly one of any number
        of claimers of the same slot (in any process); False, changing nothing, when the
        cron was deleted, disabled, rescheduled or its slot already taken."""


__all__ = ["CRON_SORT_COLUMNS", "CronQuery", "CronRecords", "CronSortBy"]
