"""What every storage backend offers. Two real implementations: SQLite and Postgres."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.store.base import BaseStore

from weft.schema import (
    Assistant,
    AssistantVersion,
    Interaction,
    InteractionKind,
    Lifecycle,
    Run,
    RunEvent,
    RunStatus,
    Session,
    SessionStatus,
    Thread,
    ThreadKind,
    ThreadStatus,
)
from weft.storage.base_crons import CronRecords
from weft.storage.base_plans import PlanRecords
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


ThreadSortBy = Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"]
THREAD_SORT_COLUMNS: dict[str, str] = {
    "thread_id": "thread_id",
    "status": "status",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "state_updated_at": "state_updated_at",
}
PruneStrategy = Literal["delete", "keep_latest"]


@dataclass(frozen=True)
class ThreadQuery:
    """Which threads a search or count considers; every given filter must hold.

    ``metadata`` and ``values`` match by containment (as Postgres' ``@>``); ``owner`` the
    thread's owner or no owner. ``ids`` restricts to those thread IDs.
    """

    ids: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] | None = None
    values: Mapping[str, Any] | None = None
    status: ThreadStatus | None = None
    lifecycle: Lifecycle | None = None
    kind: ThreadKind | None = None
    graph_id: str | None = None
    session_id: str | None = None
    parent_thread_id: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class ThreadPatch:
    """A change to a thread row. ``None`` keeps a field; ``metadata`` is merged key by key.

    ``lifecycle`` is checked with :func:`weft.schema.check_lifecycle_move` inside the
    transaction. ``values``/``interrupts``/``messages`` are the cached head state (set
    together with ``state_updated_at``).
    """

    updated_at: datetime
    metadata: Mapping[str, Any] | None = None
    lifecycle: Lifecycle | None = None
    name: str | None = None
    graph_id: str | None = None
    status: ThreadStatus | None = None
    values: Mapping[str, Any] | None = None
    interrupts: Mapping[str, list[dict[str, Any]]] | None = None
    messages: int | None = None
    state_updated_at: datetime | None = None


@dataclass(frozen=True)
class Admission:
    """What :meth:`Storage.admit` did, in one transaction."""

    run: Run
    """The run as stored: ``pending``, or ``running`` when it was claimed at once."""
    inflight: list[Run]
    """The thread's runs that were in flight before it, oldest first, as they are now."""
    session_id: str | None
    """The session of the run's thread (its runs' config carries the session's); None for a
    thread outside sessions and for a run without a thread."""
    assistant: Assistant | None = None
    """The run's assistant as the admission read it (with ``stamp``)."""
    committed: Awaitable[None] | None = None
    """For an ``early`` admission whose transaction may still be committing: its commit
    (raises if it failed). None when it is committed already."""


@dataclass(frozen=True)
class Finished:
    """What :meth:`Storage.finish` did, in one transaction."""

    run: Run
    """The run as ended."""
    next: Run | None = None
    """The thread's next run, claimed (``running``) in the same transaction."""
    waiting: bool = False
    """Runs of the thread are still ``pending`` and none was claimed (one is not due yet,
    or ``claim_next`` was off)."""
    committed: Awaitable[None] | None = None
    """As :attr:`Admission.committed`, for an ``early`` finish."""


@dataclass(frozen=True)
class SessionQuery:
    """Which sessions a search or count considers. Ranges are inclusive."""

    user_id: str | None = None
    status: SessionStatus | None = None
    metadata: Mapping[str, Any] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    updated_after: datetime | None = None
    updated_before: datetime | None = None
    owner: str | None = None


@dataclass(frozen=True)
class SessionPatch:
    """A partial change to a session. ``None`` keeps a field; ``metadata`` is merged."""

    updated_at: datetime
    user_id: str | None = None
    name: str | None = None
    status: SessionStatus | None = None
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CreateSession:
    session: Session


@dataclass(frozen=True)
class UpdateSession:
    session_id: str
    patch: SessionPatch


@dataclass(frozen=True)
class DeleteSession:
    session_id: str
    cascade: bool = False


SessionOp = CreateSession | UpdateSession | DeleteSession


@dataclass(frozen=True)
class DoctorFinding:
    """One inconsistency ``weft doctor`` found, and whether ``--repair`` fixed it."""

    problem: Literal["orphan_checkpoints", "missing_session", "missing_parent", "wrong_counts"]
    thread_id: str
    detail: str
    repaired: bool = False


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


class Storage(CronRecords, PlanRecords, ABC):
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

    def checkpoint_commits_at_end(
        self, *, share: bool = True
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """A block (one run) in which the checkpointer's writes may return before their
        commit, so that they share one; leaving it normally waits for every one of them,
        raising the first commit error. ``share=False``: each write waits for its own
        commit (LangGraph's ``sync`` durability). Here (Postgres) each write commits as it
        is made."""
        return contextlib.nullcontext()

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

    # --- threads ------------------------------------------------------------------------
    #
    # Every method taking ``owner`` sees only threads (and sessions) of that owner or of
    # none, filtered in SQL; a thread it cannot see is "not found". The checkpoint counts
    # and the ``branches``/``runs`` counts are kept by the database itself (triggers), so
    # they stay exact whoever writes checkpoints.

    @abstractmethod
    async def put_thread(self, thread: Thread, *, if_exists: IfExists = "raise") -> Thread:
        """Insert ``thread`` (its ``counts`` are ignored and start at zero).

        A taken ID: ``"do_nothing"`` returns the existing thread if its owner may see it,
        else ConflictError. With ``session_id``: the session must exist and be visible to
        ``thread.owner`` (NotFoundError), and ``name`` be free in it (ConflictError);
        nothing is written when either fails.
        """

    @abstractmethod
    async def get_thread(self, thread_id: str, *, owner: str | None = None) -> Thread:
        """One thread (NotFoundError naming it when missing or unseen)."""

    @abstractmethod
    async def update_thread(
        self, thread_id: str, patch: ThreadPatch, *, owner: str | None = None
    ) -> Thread:
        """Apply ``patch`` in one transaction and return the thread as stored."""

    @abstractmethod
    async def delete_thread(self, thread_id: str, *, owner: str | None = None) -> None:
        """Delete a thread with its checkpoints, writes, runs and crons, in one transaction.

        Threads that name it as ``parent_thread_id`` (branches, snapshots, forks) keep their
        own checkpoints; their ``parent_thread_id`` becomes NULL.
        """

    @abstractmethod
    async def search_threads(
        self,
        query: ThreadQuery,
        *,
        limit: int = 10,
        offset: int = 0,
        sort_by: ThreadSortBy = "created_at",
        sort_order: SortOrder = "desc",
    ) -> list[Thread]:
        """Threads matching ``query``, sorted (ties by thread ID) and paginated."""

    @abstractmethod
    async def count_threads(self, query: ThreadQuery) -> int:
        """How many threads match ``query``."""

    @abstractmethod
    async def branch_thread(
        self, thread: Thread, *, checkpoint_id: str, owner: str | None = None
    ) -> Thread:
        """Insert ``thread`` (kind ``branch`` or ``snapshot``) holding one checkpoint.

        ``thread.parent_thread_id`` is the source; ``checkpoint_id`` one of its root
        checkpoints. In one transaction: check the source is visible to ``owner``
        (NotFoundError) and, for kind ``branch``, that its lifecycle is active or paused
        (ConflictError naming it); copy that checkpoint (parent cleared) and its pending
        writes into the new thread (from the source's head: all of them; from an older
        checkpoint: only its interrupts, so the tasks of that step run again on the branch
        instead of replaying what the source did next, such as the answer to an interrupt),
        whatever the source's history length (O(1) rows; on Postgres also the blobs of its
        channel versions); insert the thread row, bumping the
        source's ``branches`` count for kind ``branch``. A checkpoint the source does not
        have is a NotFoundError: ``checkpoint {id} not found in thread {source}``.
        """

    @abstractmethod
    async def rollback_thread(
        self,
        thread_id: str,
        *,
        checkpoint_id: str,
        new_checkpoint_id: str,
        patch: ThreadPatch,
        owner: str | None = None,
    ) -> Thread:
        """Make root checkpoint ``checkpoint_id`` the head again, in one transaction.

        Refused (ConflictError, via :func:`weft.schema.check_writable`) for snapshots and
        threads that are not active or paused. Inserts one checkpoint ``new_checkpoint_id``
        (its ``id`` and ``ts`` rewritten, parent = ``checkpoint_id``) with the target's
        content, channel versions and metadata (without ``run_id``) plus ``source: "rollback"``
        and ``rollback: {from, to}``; pending writes are not copied (the next run redoes the
        tasks). Appends :class:`weft.schema.Rollback` ``{from: old head, to, at}`` to the
        thread's ``rollbacks`` and applies ``patch``. Deletes nothing; touches O(1) rows.
        A checkpoint the thread does not have: ``checkpoint {id} not found in thread {tid}``.
        """

    @abstractmethod
    async def copy_thread(
        self, thread: Thread, *, source_thread_id: str, owner: str | None = None
    ) -> Thread:
        """Insert ``thread`` (kind ``fork``) with every checkpoint and write of the source,
        in one transaction (NotFoundError when the source is missing or unseen)."""

    @abstractmethod
    async def prune_threads(
        self, thread_ids: Sequence[str], *, strategy: PruneStrategy, owner: str | None = None
    ) -> int:
        """Delete the threads (``"delete"``) or keep only each one's newest checkpoint per
        namespace (``"keep_latest"``), in one transaction; return how many were pruned.

        Snapshots are never pruned, and IDs that are missing or unseen are skipped.
        """

    # --- sessions -----------------------------------------------------------------------

    @abstractmethod
    async def put_session(self, session: Session) -> Session:
        """Insert ``session`` (ConflictError when the ID is taken)."""

    @abstractmethod
    async def get_session(self, session_id: str, *, owner: str | None = None) -> Session:
        """One session (NotFoundError naming it)."""

    @abstractmethod
    async def update_session(
        self, session_id: str, patch: SessionPatch, *, owner: str | None = None
    ) -> Session:
        """Apply ``patch`` and return the session as stored."""

    @abstractmethod
    async def delete_session(
        self, session_id: str, *, cascade: bool = False, owner: str | None = None
    ) -> None:
        """Delete a session and its interactions in one transaction.

        While threads belong to it: with ``cascade`` they are deleted too (as
        :meth:`delete_thread`), else ConflictError
        ``session {id} has {n} thread(s); delete them first or pass cascade=true``.
        """

    @abstractmethod
    async def search_sessions(
        self, query: SessionQuery, *, limit: int = 10, offset: int = 0
    ) -> list[Session]:
        """Sessions matching ``query``, newest first (ties by session ID), paginated."""

    @abstractmethod
    async def count_sessions(self, query: SessionQuery) -> int:
        """How many sessions match ``query``."""

    @abstractmethod
    async def batch_sessions(
        self, ops: Sequence[SessionOp], *, owner: str | None = None
    ) -> list[Session | None]:
        """Apply ``ops`` in order in one transaction: all or nothing.

        Returns, per op, the created/updated session, or None for a delete. The first
        failing op's error is raised with ``batch item {i}: `` prefixed to its message.
        """

    @abstractmethod
    async def set_session_state(
        self,
        session_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int,
        updated_at: datetime,
        owner: str | None = None,
    ) -> Session:
        """Compare-and-set the shared state: write ``state`` and bump ``state_version``
        only if it still equals ``expected_version``, else ConflictError
        ``session {id} state changed (version {expected} -> {actual})``."""

    @abstractmethod
    async def append_interaction(
        self,
        session_id: str,
        *,
        kind: InteractionKind,
        content: Any,
        metadata: Mapping[str, Any],
        thread_id: str | None = None,
        run_id: str | None = None,
        created_at: datetime,
        owner: str | None = None,
    ) -> Interaction:
        """Append to the session's log with the next ``seq`` (1, 2, ...; no gaps, no
        duplicates under concurrency) and return the entry."""

    @abstractmethod
    async def list_interactions(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        kinds: Sequence[InteractionKind] | None = None,
        owner: str | None = None,
    ) -> list[Interaction]:
        """Entries with ``seq > after``, oldest first, at most ``limit``, optionally only
        ``kinds`` (NotFoundError when the session is missing or unseen)."""

    # --- runs ---------------------------------------------------------------------------
    #
    # The ``runs`` and ``run_events`` tables of migration 1. ``count_runs`` of the thread is
    # exact: raised by the admission, lowered by a delete trigger (SQLite, migration 6; both by
    # triggers on Postgres). A run whose ``thread_id`` is None is stateless.

    @abstractmethod
    async def admit(
        self,
        run: Run,
        *,
        owner: str | None = None,
        claim: bool = False,
        stamp: bool = False,
        early: bool = False,
    ) -> Admission:
        """Insert ``run`` (status ``pending``) following its ``multitask_strategy``, in one
        transaction that serialises admissions on the same thread (SQLite: the writer;
        Postgres: ``SELECT ... FOR UPDATE`` of the thread row).

        The thread must exist and be visible (NotFoundError) and accept runs
        (:func:`weft.schema.check_writable`: ConflictError for a snapshot or a lifecycle
        other than ``active``/``paused``). With ``reject`` and any run in flight:
        ConflictError ``thread {tid} is busy: run {rid} is {status}
        (multitask_strategy='reject')``, and nothing is written. With
        ``interrupt``/``rollback`` the in-flight runs that are still ``pending`` are set to
        ``interrupted`` here (they never start); the running ones are left to the caller to
        cancel. The thread's ``status`` becomes ``busy``. With ``claim``, the run is claimed
        in the same transaction (``running``, ``attempt`` 1, ``started_at`` = ``created_at``)
        when no other run of its thread is in flight. With ``stamp``, the run's assistant is
        read first (NotFoundError ``assistant {id} not found`` when it is missing or
        ``owner`` does not see it), returned, and its ``graph_id`` and ``assistant_id`` are
        merged into the thread's metadata. A run without a thread skips the thread's part.

        ``early``: the caller may get the admission before its transaction has committed
        (see :attr:`Admission.committed`); reads of this storage still see it, and later
        writes commit with or after it. A backend that cannot do that commits first.
        """

    async def admit_run(self, run: Run, *, owner: str | None = None) -> list[Run]:
        """:meth:`admit` without claiming: the runs that were in flight before ``run``."""
        return (await self.admit(run, owner=owner)).inflight

    @abstractmethod
    async def get_run(
        self, run_id: str, *, thread_id: str | None = None, owner: str | None = None
    ) -> Run:
        """One run; with ``thread_id`` it must belong to that thread. NotFoundError
        ``run {run_id} not found`` (``... not found in thread {tid}`` with a thread)."""

    @abstractmethod
    async def list_runs(
        self,
        thread_id: str,
        *,
        status: RunStatus | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[Run]:
        """A thread's runs, newest first (ties by run ID). NotFoundError for the thread."""

    @abstractmethod
    async def runs_with_status(self, statuses: Sequence[RunStatus]) -> list[Run]:
        """Every run (any thread, stateless too) in one of ``statuses``, oldest first."""

    @abstractmethod
    async def claim_run(self, run_id: str, *, started_at: datetime) -> Run | None:
        """Move a ``pending`` run to ``running`` (``attempt`` + 1, ``started_at``) if no other
        run of its thread is ``running``, and it is the oldest ``pending`` one of its thread
        (FIFO). Return it, or None (changing nothing) when it may not start now or is no
        longer pending. Stateless runs are always claimable while pending."""

    @abstractmethod
    async def requeue_run(self, run_id: str, *, updated_at: datetime) -> Run:
        """Put a ``running`` run back to ``pending`` (crash recovery, retries)."""

    @abstractmethod
    async def finish(
        self,
        run_id: str,
        *,
        status: RunStatus,
        error: str | None,
        ended_at: datetime,
        thread_patch: ThreadPatch | None = None,
        claim_next: bool = False,
        early: bool = False,
        on_queued: Callable[[], None] | None = None,
    ) -> Finished:
        """Set a run's final ``status`` and ``error`` (from ``pending`` or ``running``;
        ConflictError ``run {rid} already ended ({status})`` otherwise) and, in the same
        transaction, apply ``thread_patch`` to its thread (values, interrupts, status, ...)
        except that the thread's status stays ``busy`` while another run of it is in flight.

        With ``claim_next``, the thread's oldest ``pending`` run is claimed in the same
        transaction (``started_at`` = ``ended_at``) when no run of the thread is running
        any more and that run is due (``created_at`` + its ``kwargs["after_seconds"]`` is
        not after ``ended_at``). A final ``status`` is one of the run statuses other than
        ``pending`` and ``running`` (BadRequestError otherwise). ``early``: as for
        :meth:`admit` (:attr:`Finished.committed`). ``on_queued`` is called (on the event
        loop, before this returns) once the finish is ordered before every read and write
        of this storage that starts later: with ``early`` on SQLite, as soon as the job is
        queued to the writer, before it ran; else once committed.
        """

    async def finish_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        error: str | None,
        ended_at: datetime,
        thread_patch: ThreadPatch | None = None,
    ) -> Run:
        """:meth:`finish` without claiming: the run as ended."""
        done = await self.finish(
            run_id, status=status, error=error, ended_at=ended_at, thread_patch=thread_patch
        )
        return done.run

    @abstractmethod
    async def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Delete runs with their events (not their checkpoints: the checkpointer's
        ``adelete_for_runs`` does that)."""

    @abstractmethod
    async def append_run_events(self, run_id: str, events: Sequence[RunEvent]) -> None:
        """Store events of a run (their ``seq`` are new and increasing), one transaction."""

    @abstractmethod
    async def run_events(self, run_id: str, *, after: int = 0) -> list[RunEvent]:
        """The stored events of a run with ``seq > after``, in order."""

    # --- doctor -------------------------------------------------------------------------

    @abstractmethod
    async def doctor(self, *, repair: bool = False) -> list[DoctorFinding]:
        """Find (and with ``repair`` fix, in one transaction) inconsistencies.

        Root checkpoints without a thread row (repair: create a ``main`` thread row for
        them); threads whose session is missing (repair: clear ``session_id``); threads
        whose parent is missing (repair: clear ``parent_thread_id``); ``counts`` of
        checkpoints, branches or runs that disagree with the rows (repair: recount).
        """
