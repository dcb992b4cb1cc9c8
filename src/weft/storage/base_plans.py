"""What every storage backend offers for session plans (tables ``plans`` and ``plan_threads``,
migration 5).

A plan belongs to a session (one at most) and has one row per named thread. The process that
runs a plan holds a lease on it; every change it makes goes through :meth:`PlanRecords.plan_step`,
one transaction that checks the lease is still its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from weft.schema import Interaction, Plan, PlanThread, PlanThreadState

PLAN_THREAD_CLEARABLE: tuple[str, ...] = (
    "run_id",
    "started_at",
    "ended_at",
    "retry_at",
    "deadline",
    "error",
    "reason",
    "output",
)
"""The fields of a plan thread a :class:`PlanThreadPatch` may set to NULL."""

PlanFinish = Literal["completed", "failed", "cancelled"]


@dataclass(frozen=True)
class PlanThreadPatch:
    """Changes to one plan thread: fields left None are kept; ``clear`` names fields to NULL."""

    name: str
    state: PlanThreadState | None = None
    attempts: int | None = None
    run_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    retry_at: datetime | None = None
    deadline: datetime | None = None
    error: str | None = None
    reason: str | None = None
    output: Any = None
    """The final state (JSON); None keeps the stored one (``clear`` nulls it)."""
    clear: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.clear) - set(PLAN_THREAD_CLEARABLE))
        if unknown:
            raise ValueError(
                f"plan thread fields {', '.join(unknown)} cannot be cleared; "
                f"clearable: {', '.join(PLAN_THREAD_CLEARABLE)}"
            )
        both = sorted(f for f in self.clear if getattr(self, f) is not None)
        if both:
            raise ValueError(f"plan thread fields {', '.join(both)} are both set and cleared")

    def changes(self) -> dict[str, Any]:
        """Column -> new value (None for a cleared one), in a fixed order."""
        out: dict[str, Any] = {}
        for field in ("state", "attempts", *PLAN_THREAD_CLEARABLE):
            if field in self.clear:
                out[field] = None
            else:
                value = getattr(self, field)
                if value is not None:
                    out[field] = value
        return out


def merge_patches(patches: Sequence[PlanThreadPatch]) -> dict[str, dict[str, Any]]:
    """Thread name -> column -> new value, the patches applied in order (a later patch of the
    same thread wins, field by field)."""
    merged: dict[str, dict[str, Any]] = {}
    for patch in patches:
        merged.setdefault(patch.name, {}).update(patch.changes())
    return merged


@dataclass(frozen=True)
class PlanEvent:
    """An entry appended to the session's interaction log with a plan change."""

    kind: Literal["thread_event", "plan_event"]
    content: dict[str, Any]
    thread_id: str | None = None
    run_id: str | None = None


class PlanRecords(ABC):
    """The plan methods of :class:`weft.storage.base.Storage`.

    Methods taking ``owner`` see only plans of sessions of that owner or of none; a session
    they cannot see is "not found" (``session {id} not found``).
    """

    @abstractmethod
    async def put_plan(
        self, plan: Plan, threads: Sequence[PlanThread], *, owner: str | None = None
    ) -> Plan:
        """Store ``plan`` and its thread rows, replacing the session's previous plan (one
        transaction). A running plan is not replaced: ConflictError
        ``session {id} is running its plan; cancel it first``."""

    @abstractmethod
    async def get_plan(self, session_id: str, *, owner: str | None = None) -> Plan:
        """The session's plan; NotFoundError ``session {id} has no plan`` without one."""

    @abstractmethod
    async def plan_threads(self, session_id: str) -> list[PlanThread]:
        """The plan's thread rows in spec order (empty without a plan)."""

    @abstractmethod
    async def start_plan(
        self,
        session_id: str,
        *,
        lease_owner: str | None,
        lease_until: datetime | None,
        now: datetime,
        event: PlanEvent,
    ) -> Plan:
        """Move a ready plan to running (``started_at`` now, the lease given), set the
        session active and append ``event``, in one transaction. Any other status is a
        ConflictError ``session {id} plan is {status}; only a ready plan can run``."""

    @abstractmethod
    async def plan_step(
        self,
        session_id: str,
        *,
        lease_owner: str | None,
        patches: Sequence[PlanThreadPatch],
        events: Sequence[PlanEvent],
        now: datetime,
        finish: PlanFinish | None = None,
    ) -> list[Interaction]:
        """Apply ``patches``, append ``events`` (consecutive seqs) and, with ``finish``, end
        the plan and set the session's status to it; one transaction, made only while the
        plan is running under ``lease_owner`` (else ConflictError
        ``session {id} plan is no longer run by this process``, nothing written).
        Returns the appended log entries."""

    @abstractmethod
    async def cancel_plan(
        self, session_id: str, *, now: datetime, reason: str, owner: str | None = None
    ) -> tuple[Plan, list[PlanThread]]:
        """Cancel a ready or running plan with its unfinished threads and the session, and
        log a ``plan_cancelled`` event; one transaction. Returns the cancelled plan and the
        rows (as they were before) of the threads that were running, retrying or
        interrupted. A finished plan is a ConflictError
        ``session {id} plan is already {status}; only a ready or running plan can be
        cancelled``."""

    @abstractmethod
    async def claim_plan(
        self, session_id: str, *, lease_owner: str, lease_until: datetime, now: datetime
    ) -> bool:
        """Take the lease of a running plan that has none, has ours, or has an expired one.
        True when taken."""

    @abstractmethod
    async def renew_plan_lease(
        self, session_id: str, *, lease_owner: str, lease_until: datetime
    ) -> bool:
        """Extend our lease of a running plan; False when it is no longer ours."""

    @abstractmethod
    async def release_plan(self, session_id: str, *, lease_owner: str) -> None:
        """Give up our lease (nothing happens when it is not ours)."""

    @abstractmethod
    async def claimable_plans(self, *, now: datetime) -> list[str]:
        """Session IDs of running plans without a lease or with an expired one."""


def plan_status_conflict(session_id: str, status: str) -> str:
    """The message for starting a plan that is not ready."""
    return f"session {session_id} plan is {status}; only a ready plan can run"


def plan_cancel_conflict(session_id: str, status: str) -> str:
    """The message for cancelling a finished plan."""
    return (
        f"session {session_id} plan is already {status}; "
        "only a ready or running plan can be cancelled"
    )


def plan_lease_lost(session_id: str) -> str:
    """The message for a step by a process that no longer runs the plan."""
    return f"session {session_id} plan is no longer run by this process"


def plan_running(session_id: str) -> str:
    """The message for replacing a running plan."""
    return f"session {session_id} is running its plan; cancel it first"


def no_plan(session_id: str) -> str:
    return f"session {session_id} has no plan"


ACTIVE_PLAN_THREAD_STATES: tuple[str, ...] = ("running", "retrying", "interrupted")
"""Thread states with a run (or a pending retry) a cancel must stop."""
UNFINISHED_PLAN_THREAD_STATES: tuple[str, ...] = ("waiting", *ACTIVE_PLAN_THREAD_STATES)


__all__ = [
    "ACTIVE_PLAN_THREAD_STATES",
    "PLAN_THREAD_CLEARABLE",
    "UNFINISHED_PLAN_THREAD_STATES",
    "PlanEvent",
    "PlanFinish",
    "PlanRecords",
    "PlanThreadPatch",
    "merge_patches",
    "no_plan",
    "plan_cancel_conflict",
    "plan_lease_lost",
    "plan_running",
    "plan_status_conflict",
]
