"""Threads: one workflow's durable execution, with its lifecycle, state and history.

Branch, snapshot and rollback copy or write one checkpoint, whatever the history's length;
copy is the Platform's full copy. The thread's record caches its head state (``values``,
``interrupts``, the message count); :meth:`Threads.refresh` brings it up to date.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast, overload

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.checkpoint.base.id import uuid6
from langgraph.errors import InvalidUpdateError

from weft.errors import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError
from weft.graphs import CompiledGraph, GraphRegistry
from weft.schema import (
    LIFECYCLES,
    THREAD_FIELDS,
    THREAD_KINDS,
    THREAD_STATUSES,
    Lifecycle,
    Thread,
    ThreadKind,
    ThreadState,
    ThreadStatus,
    check_writable,
)
from weft.storage import Storage
from weft.storage.base import PruneStrategy, SortOrder, ThreadPatch, ThreadQuery, ThreadSortBy
from weft.thread_state import (
    checkpoint_config,
    checkpoint_of,
    from_snapshot,
    from_tuple,
    interrupts_by_task,
    mark_abandoned,
    state_patch,
    step_of,
)
from weft.validation import choice, json_object, page, uuid_arg

IF_EXISTS_VALUES = ("raise", "do_nothing")
SORT_BY_VALUES = ("thread_id", "status", "created_at", "updated_at", "state_updated_at")
SORT_ORDER_VALUES = ("asc", "desc")
PRUNE_STRATEGIES = ("delete", "keep_latest")


class Threads:
    """Every thread operation of one runtime. Build it with the runtime's storage and graphs."""

    def __init__(self, storage: Storage, graphs: GraphRegistry) -> None:
        self.storage = storage
        self.graphs = graphs

    # --- records --------------------------------------------------------------------------

    async def create(
        self,
        *,
        thread_id: str | None = None,
        graph_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        if_exists: str = "raise",
        session_id: str | None = None,
        name: str | None = None,
        owner: str | None = None,
    ) -> Thread:
        """Create a thread of kind ``main``, lifecycle ``active``, status ``idle``.

        ``graph_id`` names the workflow it runs (also stamped into ``metadata``, as the
        Platform does). With ``session_id`` the thread belongs to that session; ``name`` must
        then be unique in it. ``if_exists="do_nothing"`` returns an existing thread with the
        same ID instead of raising :class:`ConflictError`.
        """
        choice(if_exists, IF_EXISTS_VALUES, "if_exists")
        new_id = uuid_arg(thread_id, "thread_id") if thread_id else new_thread_id()
        meta = json_object(metadata, "metadata") or {}
        if graph_id is not None:
            self.graphs.entry(graph_id)
            meta.setdefault("graph_id", graph_id)
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise UnprocessableEntityError("name must be a non-empty string")
        now = datetime.now(UTC)
        thread = Thread(
            thread_id=new_id,
            created_at=now,
            updated_at=now,
            metadata=meta,
            graph_id=graph_id,
            session_id=uuid_arg(session_id, "session_id") if session_id else None,
            name=name,
            owner=owner,
        )
        return await self.storage.put_thread(
            thread, if_exists="do_nothing" if if_exists == "do_nothing" else "raise"
        )

    async def get(self, thread_id: str, *, owner: str | None = None) -> Thread:
        """One thread (:class:`NotFoundError` when it does not exist)."""
        return await self.storage.get_thread(uuid_arg(thread_id, "thread_id"), owner=owner)

    async def update(
        self,
        thread_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        lifecycle: str | None = None,
        name: str | None = None,
        owner: str | None = None,
    ) -> Thread:
        """Merge ``metadata`` into the thread's (key by key), move its ``lifecycle``, rename.

        A lifecycle move design §1 forbids is a :class:`ConflictError` naming both states
        and the allowed targets.
        """
        if lifecycle is not None:
            choice(lifecycle, LIFECYCLES, "lifecycle")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise UnprocessableEntityError("name must be a non-empty string")
        patch = ThreadPatch(
            updated_at=datetime.now(UTC),
            metadata=json_object(metadata, "metadata"),
            lifecycle=cast(Lifecycle | None, lifecycle),
            name=name,
        )
        return await self.storage.update_thread(
            uuid_arg(thread_id, "thread_id"), patch, owner=owner
        )

    async def set_lifecycle(
        self, thread_id: str, lifecycle: str, *, owner: str | None = None
    ) -> Thread:
        """Move the thread's lifecycle (see :meth:`update`)."""
        return await self.update(thread_id, lifecycle=lifecycle, owner=owner)

    async def delete(self, thread_id: str, *, owner: str | None = None) -> None:
        """Delete a thread with its checkpoints, runs and crons.

        Its branches, snapshots and copies stay: each holds its own checkpoints.
        """
        await self.storage.delete_thread(uuid_arg(thread_id, "thread_id"), owner=owner)

    @overload
    async def search(
        self,
        *,
        metadata: Mapping[str, Any] | None = ...,
        values: Mapping[str, Any] | None = ...,
        ids: Sequence[str] | None = ...,
        status: str | None = ...,
        lifecycle: str | None = ...,
        kind: str | None = ...,
        graph_id: str | None = ...,
        session_id: str | None = ...,
        parent_thread_id: str | None = ...,
        limit: int = ...,
        offset: int = ...,
        sort_by: str | None = ...,
        sort_order: str | None = ...,
        select: None = ...,
        owner: str | None = ...,
    ) -> list[Thread]: ...

    @overload
    async def search(
        self,
        *,
        metadata: Mapping[str, Any] | None = ...,
        values: Mapping[str, Any] | None = ...,
        ids: Sequence[str] | None = ...,
        status: str | None = ...,
        lifecycle: str | None = ...,
        kind: str | None = ...,
        graph_id: str | None = ...,
        session_id: str | None = ...,
        parent_thread_id: str | None = ...,
        limit: int = ...,
        offset: int = ...,
        sort_by: str | None = ...,
        sort_order: str | None = ...,
        select: Sequence[str],
        owner: str | None = ...,
    ) -> list[dict[str, Any]]: ...

    async def search(
        self,
        *,
        metadata: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        status: str | None = None,
        lifecycle: str | None = None,
        kind: str | None = None,
        graph_id: str | None = None,
        session_id: str | None = None,
        parent_thread_id: str | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str | None = None,
        sort_order: str | None = None,
        select: Sequence[str] | None = None,
        owner: str | None = None,
    ) -> list[Thread] | list[dict[str, Any]]:
        """Threads matching every given filter, newest first unless ``sort_by`` says.

        ``metadata`` and ``values`` match by containment. With ``select`` the result is the
        JSON shape holding only those fields.
        """
        page(limit, offset)
        by = choice(sort_by or "created_at", SORT_BY_VALUES, "sort_by")
        order = choice((sort_order or "desc").lower(), SORT_ORDER_VALUES, "sort_order")
        fields = _select(select)
        query = _query(
            metadata, values, ids, status, lifecycle, kind, graph_id, session_id,
            parent_thread_id, owner,
        )  # fmt: skip
        found = await self.storage.search_threads(
            query,
            limit=limit,
            offset=offset,
            sort_by=cast(ThreadSortBy, by),
            sort_order=cast(SortOrder, order),
        )
        if fields is None:
            return found
        return [t.to_api(fields) for t in found]

    async def count(
        self,
        *,
        metadata: Mapping[str, Any] | None = None,
        values: Mapping[str, Any] | None = None,
        ids: Sequence[str] | None = None,
        status: str | None = None,
        lifecycle: str | None = None,
        kind: str | None = None,
        graph_id: str | None = None,
        session_id: str | None = None,
        parent_thread_id: str | None = None,
        owner: str | None = None,
    ) -> int:
        """How many threads match every given filter (the filters of :meth:`search`)."""
        query = _query(
            metadata, values, ids, status, lifecycle, kind, graph_id, session_id,
            parent_thread_id, owner,
        )  # fmt: skip
        return await self.storage.count_threads(query)

    # --- state ----------------------------------------------------------------------------

    async def state(
        self,
        thread_id: str,
        *,
        checkpoint_id: str | None = None,
        subgraphs: bool = False,
        owner: str | None = None,
    ) -> ThreadState:
        """The state at the head, or at ``checkpoint_id``; ``subgraphs`` nests the states of
        subgraphs that are in progress into their tasks."""
        thread = await self.get(thread_id, owner=owner)
        return await self._state(thread, _checkpoint_arg(checkpoint_id), subgraphs=subgraphs)

    async def update_state(
        self,
        thread_id: str,
        values: Any,
        *,
        as_node: str | None = None,
        checkpoint_id: str | None = None,
        owner: str | None = None,
    ) -> dict[str, Any]:
        """Write ``values`` as a new head checkpoint, as if ``as_node`` had returned them.

        From ``checkpoint_id`` it forks in place (the Platform's behaviour): the new head's
        parent is that checkpoint. Returns ``{"checkpoint": {...}}`` naming the new head.
        Refused on snapshots, on threads whose lifecycle is not active or paused, and
        while a run is in flight (status ``busy``; :class:`ConflictError`).
        """
        thread = await self.get(thread_id, owner=owner)
        check_writable(thread, "state update")
        if thread.status == "busy":
            raise ConflictError(
                f"thread {thread.thread_id} is busy: a run is in flight; update its state "
                "after the run ends, or cancel the run first"
            )
        cp = _checkpoint_arg(checkpoint_id)
        graph_id = _graph_id(thread)
        if graph_id is None:
            raise ConflictError(
                f"thread {thread.thread_id} has no graph yet: create it with graph_id "
                "or run it once before updating its state"
            )
        if cp is not None:
            await self._tuple(thread.thread_id, cp)
        config = checkpoint_config(thread.thread_id, graph_id, cp)
        graph = await self._graph(graph_id, config)
        try:
            new_config = await graph.aupdate_state(config, values, as_node=as_node)
        except (InvalidUpdateError, ValueError, KeyError) as e:
            raise BadRequestError(
                f"cannot update the state of thread {thread.thread_id}: {e}"
            ) from e
        await self.refresh(thread.thread_id)
        return {"checkpoint": checkpoint_of(new_config)}

    async def history(
        self,
        thread_id: str,
        *,
        limit: int = 10,
        before: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        checkpoint_id: str | None = None,
        owner: str | None = None,
    ) -> list[ThreadState]:
        """Root checkpoints, newest first: at most ``limit``, older than ``before``, whose
        metadata contains ``metadata``, from ``checkpoint_id`` down when given.

        Checkpoints a rollback abandoned carry ``"abandoned": true`` in their metadata.
        """
        page(limit, 0)
        thread = await self.get(thread_id, owner=owner)
        filter_ = json_object(metadata, "metadata")
        cp = _checkpoint_arg(checkpoint_id)
        before_cp = _checkpoint_arg(before, "before")
        graph_id = _graph_id(thread)
        config = checkpoint_config(thread.thread_id, graph_id, cp)
        before_config = (
            checkpoint_config(thread.thread_id, graph_id, before_cp) if before_cp else None
        )
        states: list[ThreadState] = []
        if graph_id is not None:
            graph = await self._graph(graph_id, config)
            async for snap in graph.aget_state_history(
                config, filter=filter_, before=before_config, limit=limit
            ):
                states.append(from_snapshot(snap))
        else:
            async for tup in self.storage.checkpointer.alist(
                config, filter=filter_, before=before_config, limit=limit
            ):
                states.append(from_tuple(tup))
        return [mark_abandoned(thread, s) for s in states]

    async def refresh(self, thread_id: str, *, failed: bool = False) -> Thread:
        """Copy the head state into the thread's record (see :meth:`head_patch`); a thread
        a run holds ``busy`` stays so."""
        patch = await self.head_patch(thread_id, failed=failed, keep_busy=True)
        return await self.storage.update_thread(thread_id, patch)

    async def head_patch(
        self, thread_id: str, *, failed: bool = False, keep_busy: bool = False
    ) -> ThreadPatch:
        """The head state as a change of the thread's record (``values``, ``interrupts``,
        the message count, ``state_updated_at``) with the status it implies: ``error``
        after a failed run, ``interrupted`` while an interrupt waits, else ``idle``
        (``busy`` kept with ``keep_busy``)."""
        thread = await self.storage.get_thread(thread_id)
        state = await self._state(thread, None)
        if keep_busy and thread.status == "busy":
            return state_patch(state, status="busy")
        return head_patch_of(state, failed=failed)

    # --- branch, snapshot, rollback, copy, prune ------------------------------------------

    async def branch(
        self,
        thread_id: str,
        *,
        checkpoint_id: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        owner: str | None = None,
    ) -> Thread:
        """A new thread of kind ``branch`` whose state is this thread's at ``checkpoint_id``
        (default: the head). Runs on it continue from there; the source's ``branches``
        count grows by one. Only ``active`` and ``paused`` threads may be branched.
        """
        return await self._derive(thread_id, "branch", checkpoint_id, name, metadata, owner)

    async def snapshot(
        self,
        thread_id: str,
        name: str,
        *,
        checkpoint_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        owner: str | None = None,
    ) -> Thread:
        """A named, read-only thread of kind ``snapshot`` frozen at ``checkpoint_id``
        (default: the head). It keeps its own copy: deleting or pruning the source leaves
        it whole. Runs and state updates on it are refused."""
        if not isinstance(name, str) or not name.strip():
            raise UnprocessableEntityError("a snapshot needs a name (a non-empty string)")
        return await self._derive(thread_id, "snapshot", checkpoint_id, name, metadata, owner)

    async def snapshots(
        self, thread_id: str, *, limit: int = 100, offset: int = 0, owner: str | None = None
    ) -> list[Thread]:
        """The snapshots taken of a thread, newest first."""
        source = await self.get(thread_id, owner=owner)
        page(limit, offset)
        return await self.storage.search_threads(
            ThreadQuery(parent_thread_id=source.thread_id, kind="snapshot", owner=owner),
            limit=limit,
            offset=offset,
        )

    async def rollback(
        self, thread_id: str, checkpoint_id: str, *, owner: str | None = None
    ) -> Thread:
        """Make ``checkpoint_id`` the thread's head again, deleting nothing.

        One checkpoint is written: a copy of the target whose parent is the target. The
        abandoned checkpoints stay in :meth:`history`, marked ``"abandoned": true``. The
        next run continues from the target's state (tasks pending there run again).
        """
        thread = await self.get(thread_id, owner=owner)
        check_writable(thread, "rollback")
        cp = uuid_arg(checkpoint_id, "checkpoint_id", hint=" from the thread's history")
        target = await self._state(thread, cp)
        patch = state_patch(target, status="idle", drop_interrupts=True)
        return await self.storage.rollback_thread(
            thread.thread_id,
            checkpoint_id=cp,
            new_checkpoint_id=str(uuid6(clock_seq=step_of(target) + 1)),
            patch=patch,
            owner=owner,
        )

    async def copy(self, thread_id: str, *, owner: str | None = None) -> Thread:
        """The Platform's copy: a new thread of kind ``fork`` with every checkpoint."""
        source = await self.get(thread_id, owner=owner)
        head = await self.storage.checkpointer.aget_tuple(
            checkpoint_config(source.thread_id, None, None)
        )
        now = datetime.now(UTC)
        thread = Thread(
            thread_id=new_thread_id(),
            created_at=now,
            updated_at=now,
            state_updated_at=source.state_updated_at,
            metadata=source.metadata,
            config=source.config,
            values=source.values,
            interrupts=source.interrupts,
            status="interrupted" if source.interrupts else "idle",
            kind="fork",
            graph_id=source.graph_id,
            session_id=source.session_id,
            parent_thread_id=source.thread_id,
            source_checkpoint_id=None
            if head is None
            else checkpoint_of(head.config)["checkpoint_id"],
            counts=source.counts.model_copy(update={"branches": 0, "runs": 0}),
            owner=owner if owner is not None else source.owner,
        )
        return await self.storage.copy_thread(
            thread, source_thread_id=source.thread_id, owner=owner
        )

    async def prune(
        self,
        thread_ids: Sequence[str],
        *,
        strategy: str = "delete",
        owner: str | None = None,
    ) -> int:
        """Delete threads (``"delete"``) or keep only their newest checkpoint
        (``"keep_latest"``); snapshots are never pruned. Returns how many were pruned."""
        choice(strategy, PRUNE_STRATEGIES, "strategy")
        if isinstance(thread_ids, str):
            raise UnprocessableEntityError("thread_ids must be a list of thread IDs")
        ids = [uuid_arg(t, "thread_ids[]") for t in thread_ids]
        return await self.storage.prune_threads(
            ids, strategy=cast(PruneStrategy, strategy), owner=owner
        )

    # --- helpers --------------------------------------------------------------------------

    async def _derive(
        self,
        thread_id: str,
        kind: ThreadKind,
        checkpoint_id: str | None,
        name: str | None,
        metadata: Mapping[str, Any] | None,
        owner: str | None,
    ) -> Thread:
        source = await self.get(thread_id, owner=owner)
        extra = json_object(metadata, "metadata") or {}
        cp = _checkpoint_arg(checkpoint_id)
        if cp is None:
            head = await self.storage.checkpointer.aget_tuple(
                checkpoint_config(source.thread_id, None, None)
            )
            if head is None:
                raise ConflictError(
                    f"thread {source.thread_id} has no checkpoint yet: nothing to {kind} from"
                )
            cp = checkpoint_of(head.config)["checkpoint_id"]
        state = await self._state(source, cp)
        now = datetime.now(UTC)
        patch = state_patch(state, status="idle")
        interrupts = dict(patch.interrupts or {})
        thread = Thread(
            thread_id=new_thread_id(),
            created_at=now,
            updated_at=now,
            state_updated_at=now,
            metadata={**source.metadata, **extra},
            config=source.config,
            values=dict(patch.values) if patch.values is not None else None,
            interrupts=interrupts,
            status="interrupted" if interrupts else "idle",
            kind=kind,
            graph_id=source.graph_id,
            session_id=source.session_id,
            name=name,
            parent_thread_id=source.thread_id,
            source_checkpoint_id=cp,
            owner=owner if owner is not None else source.owner,
        )
        thread = thread.model_copy(
            update={"counts": thread.counts.model_copy(update={"messages": patch.messages or 0})}
        )
        return await self.storage.branch_thread(thread, checkpoint_id=cp, owner=owner)

    async def _graph(self, graph_id: str, config: RunnableConfig) -> CompiledGraph:
        return await self.graphs.graph(
            graph_id, config, checkpointer=self.storage.checkpointer, store=self.storage.store
        )

    async def _head(self, thread_id: str) -> CheckpointTuple | None:
        return await self.storage.checkpointer.aget_tuple(checkpoint_config(thread_id, None, None))

    async def _tuple(self, thread_id: str, checkpoint_id: str) -> CheckpointTuple:
        found = await self.storage.checkpointer.aget_tuple(
            checkpoint_config(thread_id, None, checkpoint_id)
        )
        if found is None:
            raise NotFoundError(f"checkpoint {checkpoint_id} not found in thread {thread_id}")
        return found

    async def _state(
        self, thread: Thread, checkpoint_id: str | None, *, subgraphs: bool = False
    ) -> ThreadState:
        """The state at ``checkpoint_id`` (or the head); an empty state before any run."""
        if checkpoint_id is not None:
            tup: CheckpointTuple | None = await self._tuple(thread.thread_id, checkpoint_id)
        else:
            tup = await self.storage.checkpointer.aget_tuple(
                checkpoint_config(thread.thread_id, None, None)
            )
        if tup is None:
            return ThreadState()
        graph_id = _graph_id(thread)
        if graph_id is None or graph_id not in self.graphs:
            return from_tuple(tup)
        config = checkpoint_config(thread.thread_id, graph_id, checkpoint_id)
        graph = await self._graph(graph_id, config)
        snap = await graph.aget_state(config, subgraphs=subgraphs)
        return mark_abandoned(thread, from_snapshot(snap))


# --- pure helpers ----------------------------------------------------------------------------


def _query(
    metadata: Mapping[str, Any] | None,
    values: Mapping[str, Any] | None,
    ids: Sequence[str] | None,
    status: str | None,
    lifecycle: str | None,
    kind: str | None,
    graph_id: str | None,
    session_id: str | None,
    parent_thread_id: str | None,
    owner: str | None,
) -> ThreadQuery:
    if isinstance(ids, str):
        raise UnprocessableEntityError("ids must be a list of thread IDs")
    return ThreadQuery(
        ids=tuple(uuid_arg(i, "ids[]") for i in ids) if ids is not None else None,
        metadata=json_object(metadata, "metadata"),
        values=json_object(values, "values"),
        status=cast(ThreadStatus, choice(status, THREAD_STATUSES, "status")) if status else None,
        lifecycle=(
            cast(Lifecycle, choice(lifecycle, LIFECYCLES, "lifecycle")) if lifecycle else None
        ),
        kind=cast(ThreadKind, choice(kind, THREAD_KINDS, "kind")) if kind else None,
        graph_id=graph_id,
        session_id=uuid_arg(session_id, "session_id") if session_id else None,
        parent_thread_id=(
            uuid_arg(parent_thread_id, "parent_thread_id") if parent_thread_id else None
        ),
        owner=owner,
    )


def new_thread_id() -> str:
    """A new thread's ID: a UUID ordered by creation time (version 6), so that new threads'
    rows, and their checkpoints' (keyed by thread ID first), go to the end of their indexes
    instead of a random page each."""
    return str(uuid6())


def head_patch_of(state: ThreadState, *, failed: bool = False) -> ThreadPatch:
    """The thread record's change for head state ``state`` (see :meth:`Threads.head_patch`):
    status ``error`` after a failed run, ``interrupted`` while an interrupt waits, else
    ``idle``."""
    status: ThreadStatus
    if failed:
        status = "error"
    elif interrupts_by_task(state) or state.interrupts:
        status = "interrupted"
    else:
        status = "idle"
    return state_patch(state, status=status)


def _select(select: Sequence[str] | None) -> list[str] | None:
    if select is None:
        return None
    fields = [select] if isinstance(select, str) else list(select)
    bad = [f for f in fields if f not in THREAD_FIELDS]
    if bad:
        raise UnprocessableEntityError(
            f"cannot select {', '.join(map(repr, bad))}; fields are {', '.join(THREAD_FIELDS)}"
        )
    return fields


def _checkpoint_arg(value: str | None, what: str = "checkpoint_id") -> str | None:
    return uuid_arg(value, what) if value else None


def _graph_id(thread: Thread) -> str | None:
    graph_id = thread.graph_id or thread.metadata.get("graph_id")
    return graph_id if isinstance(graph_id, str) else None


__all__ = [
    "IF_EXISTS_VALUES",
    "PRUNE_STRATEGIES",
    "SORT_BY_VALUES",
    "Threads",
    "head_patch_of",
    "new_thread_id",
]
