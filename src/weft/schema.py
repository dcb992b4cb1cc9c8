"""weft's records, as the storage returns them and the HTTP API shows them.

Field names follow the LangGraph Platform API (``langgraph_sdk.schema``), so that a record
dumped with ``model_dump(mode="json", exclude={"owner"})`` is what an SDK client expects.
Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal, Protocol, get_args

from pydantic import BaseModel, ConfigDict, Field

from weft.errors import ConflictError, UnprocessableEntityError

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


# --- threads ---------------------------------------------------------------------------------

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
"""The Platform's thread status, derived from runs."""
Lifecycle = Literal["active", "paused", "completed", "failed", "archived", "branched"]
"""The work item's state, set by people and by weft (design §1)."""
ThreadKind = Literal["main", "branch", "fork", "snapshot"]

THREAD_STATUSES: tuple[str, ...] = get_args(ThreadStatus)
LIFECYCLES: tuple[str, ...] = get_args(Lifecycle)
THREAD_KINDS: tuple[str, ...] = get_args(ThreadKind)

LIFECYCLE_MOVES: dict[str, tuple[str, ...]] = {
    "active": ("paused", "completed", "failed", "archived", "branched"),
    "paused": ("active",),
    "completed": ("active",),
    "failed": (),
    "archived": (),
    "branched": (),
}
"""Where a thread's lifecycle may go from each state; the only copy of these rules."""

RUNNABLE_LIFECYCLES: tuple[str, ...] = ("active", "paused")
"""Lifecycles in which a thread admits runs and state updates, and may be branched."""


def check_lifecycle_move(thread_id: str, current: str, target: str) -> None:
    """Raise ConflictError unless ``current`` -> ``target`` is an allowed move.

    Moving to the state a thread is already in is allowed (and changes nothing).
    """
    if target not in LIFECYCLES:
        raise UnprocessableEntityError(
            f"unknown lifecycle {target!r}; use one of {', '.join(LIFECYCLES)}"
        )
    if target == current or target in LIFECYCLE_MOVES[current]:
        return
    allowed = LIFECYCLE_MOVES[current]
    targets = ", ".join(allowed) if allowed else "none: it is final"
    raise ConflictError(
        f"thread {thread_id} cannot move from lifecycle {current!r} to {target!r}; "
        f"allowed from {current!r}: {targets}"
    )


class ThreadKindOf(Protocol):
    """What :func:`check_writable` looks at: a thread, or just these fields of its row."""

    @property
    def thread_id(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def lifecycle(self) -> str: ...


def check_writable(thread: ThreadKindOf, action: str) -> None:
    """Raise ConflictError unless ``thread`` admits ``action`` (a run, a state update, ...).

    Snapshots are read-only; other threads only while their lifecycle is active or paused.
    """
    if thread.kind == "snapshot":
        raise ConflictError(
            f"thread {thread.thread_id} is a snapshot and is read-only: {action} refused; "
            "branch it to continue from its state"
        )
    if thread.lifecycle not in RUNNABLE_LIFECYCLES:
        raise ConflictError(
            f"thread {thread.thread_id} has lifecycle {thread.lifecycle!r}: {action} refused; "
            f"{action} needs lifecycle {' or '.join(repr(x) for x in RUNNABLE_LIFECYCLES)}"
        )


THREAD_FIELDS: tuple[str, ...] = (
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "config",
    "status",
    "values",
    "interrupts",
    "lifecycle",
    "kind",
    "graph_id",
    "session_id",
    "name",
    "parent_thread_id",
    "source_checkpoint_id",
    "counts",
)
"""The fields of a thread a search may ``select``: the Platform's, then weft's."""


class ThreadCounts(BaseModel):
    """Exact counts, kept by the storage in the same transactions that change them."""

    model_config = ConfigDict(frozen=True)

    messages: int = 0
    """Messages in the head state's ``messages`` channel."""
    checkpoints: int = 0
    """Checkpoints of the root graph (subgraph checkpoints are not counted)."""
    branches: int = 0
    """Threads of kind ``branch`` whose parent is this thread."""
    runs: int = 0


class Rollback(BaseModel):
    """One rollback: checkpoints with ``to < id <= from_`` were abandoned by head ``at``."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    from_: str = Field(alias="from")
    to: str
    at: str

    def abandons(self, checkpoint_id: str) -> bool:
        # Checkpoint IDs are UUIDv6: their text sorts in creation order.
        return self.to < checkpoint_id <= self.from_


class Thread(BaseModel):
    """One workflow's durable execution: the Platform's thread plus weft's fields."""

    model_config = ConfigDict(frozen=True)

    thread_id: str
    created_at: datetime
    updated_at: datetime
    state_updated_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    status: ThreadStatus = "idle"
    values: dict[str, Any] | None = None
    interrupts: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)
    lifecycle: Lifecycle = "active"
    kind: ThreadKind = "main"
    graph_id: str | None = None
    session_id: str | None = None
    name: str | None = None
    parent_thread_id: str | None = None
    source_checkpoint_id: str | None = None
    counts: ThreadCounts = Field(default_factory=ThreadCounts)
    rollbacks: tuple[Rollback, ...] = ()
    """Rollbacks done on this thread, oldest first (history marks what they abandoned)."""
    owner: str | None = None
    """Who may see the thread; None means everyone. Not part of the Platform's shape."""

    def to_api(self, select: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
        """The Platform's JSON shape plus weft's fields, optionally only ``select``'s keys."""
        data = self.model_dump(mode="json", exclude={"owner", "rollbacks"})
        if select:
            return {k: data[k] for k in select if k in data}
        return data


class ThreadState(BaseModel):
    """A thread's state at one checkpoint, in the Platform's shape (``ThreadState``).

    Built from LangGraph's ``StateSnapshot``; values are JSON (messages as dicts).
    """

    model_config = ConfigDict(frozen=True)

    values: Any = Field(default_factory=dict)
    next: list[str] = Field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    """``{thread_id, checkpoint_ns, checkpoint_id, checkpoint_map}``; None before any run."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str | None = None
    parent_checkpoint: dict[str, Any] | None = None
    tasks: list[dict[str, Any]] = Field(default_factory=list)
    interrupts: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def checkpoint_id(self) -> str | None:
        return None if self.checkpoint is None else self.checkpoint.get("checkpoint_id")

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --- runs ------------------------------------------------------------------------------------

RunStatus = Literal["pending", "running", "success", "error", "timeout", "interrupted"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)
INFLIGHT_STATUSES: tuple[str, ...] = ("pending", "running")
MultitaskStrategy = Literal["reject", "interrupt", "rollback", "enqueue"]
MULTITASK_STRATEGIES: tuple[str, ...] = get_args(MultitaskStrategy)


class Run(BaseModel):
    """One execution of a thread's workflow (the Platform's run record)."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    thread_id: str | None
    assistant_id: str
    status: RunStatus = "pending"
    metadata: dict[str, Any] = Field(default_factory=dict)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """The request as admitted (input, command, config, stream modes, ...), JSON."""
    multitask_strategy: MultitaskStrategy = "enqueue"
    attempt: int = 0
    """How many times execution started (recovery and retries start it again)."""
    error: str | None = None
    owner: str | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"owner", "error", "started_at", "ended_at"})


StreamModeName = Literal[
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "events",
    "debug",
    "custom",
    "tasks",
    "checkpoints",
]
STREAM_MODE_NAMES: tuple[str, ...] = get_args(StreamModeName)


class RunCommand(BaseModel):
    """``command``: resume an interrupt, go to nodes, and/or update the state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resume: Any = None
    goto: Any = None
    update: Any = None


MAX_AFTER_SECONDS = 365 * 24 * 3600
"""The longest ``after_seconds`` delay of a run: a year (a cron schedules later work)."""


class RunRequest(BaseModel):
    """The options of a run, as the Platform's ``RunCreate`` names them.

    Unknown options are refused (extra="forbid"), naming the field.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: Any = None
    command: RunCommand | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    checkpoint: dict[str, Any] | None = None
    checkpoint_id: str | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    stream_mode: StreamModeName | list[StreamModeName] = "values"
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    multitask_strategy: MultitaskStrategy = "enqueue"
    if_not_exists: Literal["reject", "create"] = "reject"
    on_disconnect: Literal["cancel", "continue"] = "continue"
    on_completion: Literal["delete", "keep"] | None = None
    after_seconds: float | None = Field(default=None, ge=0, le=MAX_AFTER_SECONDS)
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint_during: bool | None = None
    webhook: str | None = None

    @property
    def stream_modes(self) -> list[str]:
        modes = [self.stream_mode] if isinstance(self.stream_mode, str) else self.stream_mode
        return list(dict.fromkeys(modes)) or ["values"]


class RunEvent(BaseModel):
    """One event of a run's stream; ``seq`` counts 1, 2, ... within the run (the SSE id)."""

    model_config = ConfigDict(frozen=True)

    seq: int
    event: str
    data: Any


# --- crons -----------------------------------------------------------------------------------

OnRunCompleted = Literal["delete", "keep"]
ON_RUN_COMPLETED: tuple[str, ...] = get_args(OnRunCompleted)

CRON_FIELDS: tuple[str, ...] = (
    "cron_id",
    "assistant_id",
    "thread_id",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "user_id",
    "payload",
    "next_run_date",
    "metadata",
    "now",
    "on_run_completed",
    "enabled",
)
"""The fields of a cron a search may ``select`` (the Platform's; ``now`` is the server's time)."""


class Cron(BaseModel):
    """A schedule that creates runs: on ``thread_id``, or (None) each on a fresh thread."""

    model_config = ConfigDict(frozen=True)

    cron_id: str
    assistant_id: str
    thread_id: str | None = None
    """None: each firing is a stateless run on a thread of its own."""
    on_run_completed: OnRunCompleted | None = None
    """Stateless crons only: ``delete`` (the default) or ``keep`` each run's thread."""
    end_time: datetime | None = None
    """No run is created for a slot after it."""
    schedule: str
    """A cron expression: 5 fields, or 6 with seconds last (croniter's syntax)."""
    timezone: str | None = None
    """The IANA time zone the schedule is read in; None means UTC."""
    created_at: datetime
    updated_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)
    """The options of each run (:class:`RunRequest` fields), JSON."""
    user_id: str | None = None
    """The owner: who may see the cron, and whose runs it creates; None means everyone."""
    next_run_date: datetime | None = None
    """The next slot to fire; None when it will not fire (disabled, or past ``end_time``)."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    def to_api(self, select: tuple[str, ...] | list[str] | None = None) -> dict[str, Any]:
        """The Platform's JSON shape, optionally only ``select``'s keys (``now`` included)."""
        data = self.model_dump(mode="json")
        if not select:
            return data
        if "now" in select:
            data["now"] = datetime.now(UTC).isoformat()
        return {k: data[k] for k in select if k in data}


# --- sessions --------------------------------------------------------------------------------

SessionStatus = Literal["active", "completed", "failed", "cancelled", "archived"]
SESSION_STATUSES: tuple[str, ...] = get_args(SessionStatus)

InteractionKind = Literal[
    "request",
    "response",
    "feedback",
    "note",
    "thread_event",
    "run_event",
    "state_event",
    "plan_event",
]
INTERACTION_KINDS: tuple[str, ...] = get_args(InteractionKind)
USER_INTERACTION_KINDS: tuple[str, ...] = ("request", "response", "feedback", "note")
"""The kinds a caller may record; the others are written by weft itself."""


class Session(BaseModel):
    """A user's work across threads. Its threads are those whose ``session_id`` is its ID."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    user_id: str | None = None
    name: str | None = None
    status: SessionStatus = "active"
    metadata: dict[str, Any] = Field(default_factory=dict)
    state: dict[str, Any] = Field(default_factory=dict)
    """Shared by the session's threads; see :meth:`weft.sessions.Sessions.update_state`."""
    state_version: int = 0
    """Bumped by every state change; the compare-and-set token."""
    owner: str | None = None
    created_at: datetime
    updated_at: datetime

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"owner"})


class Interaction(BaseModel):
    """One entry of a session's append-only log. ``seq`` counts from 1 in each session."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    seq: int
    kind: InteractionKind
    content: Any
    metadata: dict[str, Any] = Field(default_factory=dict)
    thread_id: str | None = None
    run_id: str | None = None
    created_at: datetime

    def to_api(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


# --- plans -----------------------------------------------------------------------------------

PlanPolicy = Literal["strict", "best_effort"]
PlanStatus = Literal["ready", "running", "completed", "failed", "cancelled"]
PlanThreadState = Literal[
    "waiting",
    "running",
    "retrying",
    "interrupted",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
    "timed_out",
]
PLAN_POLICIES: tuple[str, ...] = get_args(PlanPolicy)
PLAN_STATUSES: tuple[str, ...] = get_args(PlanStatus)
PLAN_THREAD_STATES: tuple[str, ...] = get_args(PlanThreadState)
PLAN_FINAL_STATES: tuple[str, ...] = ("succeeded", "failed", "skipped", "cancelled", "timed_out")
"""Thread states a plan never moves a thread out of."""


class Plan(BaseModel):
    """A session's plan: its threads' dependencies, and how far its execution is."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    spec: dict[str, Any]
    """The normalised plan spec (JSON)."""
    status: PlanStatus = "ready"
    lease_owner: str | None = None
    """The process running the plan; None when none holds it."""
    lease_until: datetime | None = None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None


class PlanThread(BaseModel):
    """One named thread of a plan and its outcome so far."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    name: str
    position: int
    """Its order in the spec."""
    thread_id: str
    """``uuid5(UUID(session_id), name)``."""
    state: PlanThreadState = "waiting"
    attempts: int = 0
    run_id: str | None = None
    started_at: datetime | None = None
    """When the first attempt started."""
    ended_at: datetime | None = None
    retry_at: datetime | None = None
    """When the next attempt starts (state ``retrying``)."""
    deadline: datetime | None = None
    """The current attempt's timeout deadline; None: no timeout."""
    error: str | None = None
    reason: str | None = None
    """Why the thread was skipped or cancelled."""
    output: Any = None
    """The final state (JSON) when succeeded."""
    updated_at: datetime


__all__ = [
    "ASSISTANT_FIELDS",
    "CRON_FIELDS",
    "INFLIGHT_STATUSES",
    "INTERACTION_KINDS",
    "LIFECYCLES",
    "LIFECYCLE_MOVES",
    "MAX_AFTER_SECONDS",
    "MULTITASK_STRATEGIES",
    "ON_RUN_COMPLETED",
    "PLAN_FINAL_STATES",
    "PLAN_POLICIES",
    "PLAN_STATUSES",
    "PLAN_THREAD_STATES",
    "RUNNABLE_LIFECYCLES",
    "RUN_STATUSES",
    "SESSION_STATUSES",
    "STREAM_MODE_NAMES",
    "THREAD_FIELDS",
    "THREAD_KINDS",
    "THREAD_STATUSES",
    "USER_INTERACTION_KINDS",
    "Assistant",
    "AssistantVersion",
    "Cron",
    "Interaction",
    "InteractionKind",
    "Lifecycle",
    "MultitaskStrategy",
    "OnRunCompleted",
    "Plan",
    "PlanPolicy",
    "PlanStatus",
    "PlanThread",
    "PlanThreadState",
    "Rollback",
    "Run",
    "RunCommand",
    "RunEvent",
    "RunRequest",
    "RunStatus",
    "Session",
    "SessionStatus",
    "Thread",
    "ThreadCounts",
    "ThreadKind",
    "ThreadState",
    "ThreadStatus",
    "check_lifecycle_move",
    "check_writable",
]
