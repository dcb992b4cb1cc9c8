"""Sessions: a user's work across threads, its interaction log and its shared state.

A thread belongs to a session through its ``session_id`` column only; a session's threads
are a query. This module uses :mod:`weft.threads`; threads never use sessions.

Graphs read the shared state from their run config (``configurable.session_state``) and
change it with :func:`update_session_state`, which never loses a concurrent write.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from langchain_core.runnables import RunnableConfig

from weft.errors import BadRequestError, ConflictError, UnprocessableEntityError, WeftError
from weft.schema import (
    INTERACTION_KINDS,
    SESSION_STATUSES,
    USER_INTERACTION_KINDS,
    Interaction,
    InteractionKind,
    Session,
    SessionStatus,
    Thread,
)
from weft.storage import Storage
from weft.storage.base import (
    CreateSession,
    DeleteSession,
    SessionOp,
    SessionPatch,
    SessionQuery,
    UpdateSession,
)
from weft.threads import Threads
from weft.validation import choice, json_object, page, uuid_arg

if TYPE_CHECKING:
    from weft.plan_runs import Plans
    from weft.plans import PlanReport

SESSION_KEY = "__weft_session__"
"""The run config key (under ``configurable``) holding the session handle of a run."""

StateChange = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]]
"""A merge patch (top-level keys replaced) or a function from the current state to the new."""

_CAS_ATTEMPTS = 100


class Sessions:
    """Every session operation of one runtime."""

    plans: Plans
    """The session plans of the runtime (set when the runtime builds its :class:`Plans`)."""

    def __init__(self, storage: Storage, threads: Threads) -> None:
        self.storage = storage
        self.threads = threads

    # --- records --------------------------------------------------------------------------

    async def create(
        self,
        *,
        user_id: str | None = None,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        state: Mapping[str, Any] | None = None,
        session_id: str | None = None,
        owner: str | None = None,
    ) -> Session:
        """A new session, status ``active``."""
        return await self.storage.put_session(
            _new_session(user_id, name, metadata, state, session_id, owner)
        )

    async def get(self, session_id: str, *, owner: str | None = None) -> Session:
        return await self.storage.get_session(_sid(session_id), owner=owner)

    async def update(
        self,
        session_id: str,
        *,
        user_id: str | None = None,
        name: str | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        owner: str | None = None,
    ) -> Session:
        """Change the given fields only; ``metadata`` is merged key by key."""
        patch = _patch(user_id, name, status, metadata)
        return await self.storage.update_session(_sid(session_id), patch, owner=owner)

    async def delete(
        self, session_id: str, *, cascade: bool = False, owner: str | None = None
    ) -> None:
        """Delete a session and its log. While it has threads this is refused, unless
        ``cascade`` (then its threads and their checkpoints go too)."""
        await self.storage.delete_session(_sid(session_id), cascade=cascade, owner=owner)

    async def search(
        self,
        *,
        user_id: str | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[Session]:
        """Sessions matching every given filter, newest first. Ranges are inclusive."""
        page(limit, offset)
        query = _query(
            user_id, status, metadata, created_after, created_before, updated_after,
            updated_before, owner,
        )  # fmt: skip
        return await self.storage.search_sessions(query, limit=limit, offset=offset)

    async def count(
        self,
        *,
        user_id: str | None = None,
        status: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        updated_after: datetime | None = None,
        updated_before: datetime | None = None,
        owner: str | None = None,
    ) -> int:
        query = _query(
            user_id, status, metadata, created_after, created_before, updated_after,
            updated_before, owner,
        )  # fmt: skip
        return await self.storage.count_sessions(query)

    async def batch(
        self, operations: Sequence[Mapping[str, Any]], *, owner: str | None = None
    ) -> list[Session | None]:
        """Create, update and delete many sessions in one transaction: all or nothing.

        Each operation is ``{"op": "create", ...create's fields}``,
        ``{"op": "update", "session_id": ..., ...update's fields}`` or
        ``{"op": "delete", "session_id": ..., "cascade": false}``. Returns per operation the
        session created or updated, or None for a delete. The first invalid item is named:
        ``batch item 2: ...``; nothing of the batch is written then.
        """
        if isinstance(operations, (Mapping, str)):
            raise UnprocessableEntityError("a batch is a list of operations")
        ops: list[SessionOp] = []
        for i, item in enumerate(operations):
            try:
                ops.append(_operation(item, owner))
            except WeftError as e:
                raise type(e)(f"batch item {i}: {e.message}") from None
        return await self.storage.batch_sessions(ops, owner=owner)

    # --- membership -----------------------------------------------------------------------

    async def add_thread(
        self,
        session_id: str,
        name: str,
        graph_id: str | None = None,
        *,
        metadata: Mapping[str, Any] | None = None,
        thread_id: str | None = None,
        owner: str | None = None,
    ) -> Thread:
        """Create a thread inside the session, in one transaction.

        ``name`` must be unique in the session (:class:`ConflictError`); a missing session is
        a :class:`NotFoundError`; either way nothing is written.
        """
        if not isinstance(name, str) or not name.strip():
            raise UnprocessableEntityError("a thread in a session needs a name")
        return await self.threads.create(
            thread_id=thread_id,
            graph_id=graph_id,
            metadata=metadata,
            session_id=_sid(session_id),
            name=name,
            owner=owner,
        )

    async def threads_of(
        self, session_id: str, *, limit: int = 100, offset: int = 0, owner: str | None = None
    ) -> list[Thread]:
        """The session's threads, oldest first (a query on their ``session_id``)."""
        session = await self.get(session_id, owner=owner)
        return await self.threads.search(
            session_id=session.session_id,
            limit=limit,
            offset=offset,
            sort_by="created_at",
            sort_order="asc",
            owner=owner,
        )

    # --- interactions ---------------------------------------------------------------------

    async def record(
        self,
        session_id: str,
        kind: str,
        content: Any,
        *,
        metadata: Mapping[str, Any] | None = None,
        thread_id: str | None = None,
        run_id: str | None = None,
        owner: str | None = None,
        _system: bool = False,
    ) -> Interaction:
        """Append to the session's log. Callers record ``request``, ``response``,
        ``feedback`` and ``note``; weft itself records thread, run and state events."""
        allowed = INTERACTION_KINDS if _system else USER_INTERACTION_KINDS
        choice(kind, allowed, "kind")
        return await self.storage.append_interaction(
            _sid(session_id),
            kind=cast(InteractionKind, kind),
            content=_json_value(content, "content"),
            metadata=json_object(metadata, "metadata") or {},
            thread_id=uuid_arg(thread_id, "thread_id") if thread_id else None,
            run_id=uuid_arg(run_id, "run_id") if run_id else None,
            created_at=datetime.now(UTC),
            owner=owner,
        )

    async def interactions(
        self,
        session_id: str,
        *,
        after: int = 0,
        limit: int = 100,
        kinds: Sequence[str] | None = None,
        owner: str | None = None,
    ) -> list[Interaction]:
        """The log in order: entries after ``seq`` ``after``, at most ``limit``, optionally
        only some ``kinds``. Page on with ``after=<last seq>``."""
        page(limit, after, offset_name="after")
        wanted: list[InteractionKind] | None = None
        if kinds is not None:
            listed = [kinds] if isinstance(kinds, str) else list(kinds)
            wanted = [
                cast(InteractionKind, choice(k, INTERACTION_KINDS, "kinds[]")) for k in listed
            ]
        return await self.storage.list_interactions(
            _sid(session_id), after=after, limit=limit, kinds=wanted, owner=owner
        )

    # --- shared state ---------------------------------------------------------------------

    async def update_state(
        self, session_id: str, change: StateChange, *, owner: str | None = None
    ) -> Session:
        """Change the shared state without losing a concurrent write.

        ``change`` is a merge patch or a function of the current state (called again if
        another writer got in first; keep it free of side effects). Compare-and-set on the
        session's ``state_version``.
        """
        sid = _sid(session_id)
        for _ in range(_CAS_ATTEMPTS):
            current = await self.storage.get_session(sid, owner=owner)
            new_state = _apply(current.state, change)
            try:
                return await self.storage.set_session_state(
                    sid,
                    new_state,
                    expected_version=current.state_version,
                    updated_at=datetime.now(UTC),
                    owner=owner,
                )
            except ConflictError:
                await asyncio.sleep(0)
        raise ConflictError(
            f"session {sid} state changed under {_CAS_ATTEMPTS} attempts in a row; try again"
        )

    async def set_state(
        self,
        session_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int,
        owner: str | None = None,
    ) -> Session:
        """Replace the shared state if its version is still ``expected_version``
        (:class:`ConflictError` otherwise)."""
        return await self.storage.set_session_state(
            _sid(session_id),
            json_object(state, "state") or {},
            expected_version=expected_version,
            updated_at=datetime.now(UTC),
            owner=owner,
        )

    async def run_plan(
        self,
        plan: Mapping[str, Any] | str | Path,
        *,
        overrides: Sequence[str] = (),
        wait: bool = True,
        owner: str | None = None,
    ) -> PlanReport:
        """Create a session from a plan (a YAML file or its data), run it and, with ``wait``,
        return its final report (else the report as it starts). ``overrides`` are
        ``key.path=value`` settings applied to the plan first. See :class:`weft.plan_runs.Plans`
        (``rt.plans``) for each step on its own."""
        return await self.plans.run_plan(plan, overrides=overrides, wait=wait, owner=owner)

    def run_config(self, session: Session) -> dict[str, Any]:
        """The ``configurable`` entries that give a run of one of ``session``'s threads its
        shared state: ``session_id``, ``session_state`` and the handle used by
        :func:`update_session_state`."""
        return {
            "session_id": session.session_id,
            "session_state": copy.deepcopy(session.state),
            SESSION_KEY: _Handle(self, session.session_id, session.owner),
        }


class _Handle:
    """What a run carries to reach its session's state (not serialised into checkpoints)."""

    def __init__(self, sessions: Sessions, session_id: str, owner: str | None) -> None:
        self.sessions = sessions
        self.session_id = session_id
        self.owner = owner

    async def update(self, change: StateChange) -> dict[str, Any]:
        session = await self.sessions.update_state(self.session_id, change, owner=self.owner)
        return dict(session.state)


async def update_session_state(config: RunnableConfig, change: StateChange) -> dict[str, Any]:
    """From a node of a graph running in a session: change the session's shared state.

    ``change`` is a merge patch (``{"key": value}``) or a function ``state -> new state``
    (re-applied if another thread wrote first, so no update is lost). Returns the new state.
    Take ``config: RunnableConfig`` as the node's second argument and pass it here::

        async def remember(state: State, config: RunnableConfig) -> dict:
            await update_session_state(config, lambda s: {**s, "seen": s.get("seen", 0) + 1})
            return {}
    """
    handle = (config.get("configurable") or {}).get(SESSION_KEY)
    if not isinstance(handle, _Handle):
        raise BadRequestError(
            "update_session_state: this run does not belong to a session "
            "(its thread has no session_id)"
        )
    return await handle.update(change)


# --- helpers ---------------------------------------------------------------------------------


def _sid(session_id: str) -> str:
    return uuid_arg(session_id, "session_id")


def _apply(state: dict[str, Any], change: StateChange) -> dict[str, Any]:
    if callable(change):
        result = change(copy.deepcopy(state))
        if not isinstance(result, Mapping):
            raise BadRequestError(
                f"a session state change must return an object, not {type(result).__name__}"
            )
        return json_object(result, "state") or {}
    patch = json_object(change, "state")
    return {**state, **(patch or {})}


def _json_value(value: Any, what: str) -> Any:
    wrapped = json_object({"v": value}, what)
    assert wrapped is not None
    return wrapped["v"]


def _new_session(
    user_id: str | None,
    name: str | None,
    metadata: Mapping[str, Any] | None,
    state: Mapping[str, Any] | None,
    session_id: str | None,
    owner: str | None,
) -> Session:
    now = datetime.now(UTC)
    return Session(
        session_id=_sid(session_id) if session_id else str(uuid.uuid4()),
        user_id=_text(user_id, "user_id"),
        name=_text(name, "name"),
        metadata=json_object(metadata, "metadata") or {},
        state=json_object(state, "state") or {},
        owner=owner,
        created_at=now,
        updated_at=now,
    )


def _text(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise UnprocessableEntityError(f"{what} must be a string, not {type(value).__name__}")
    return value


def _patch(
    user_id: str | None, name: str | None, status: str | None, metadata: Mapping[str, Any] | None
) -> SessionPatch:
    return SessionPatch(
        updated_at=datetime.now(UTC),
        user_id=_text(user_id, "user_id"),
        name=_text(name, "name"),
        status=cast(SessionStatus, choice(status, SESSION_STATUSES, "status")) if status else None,
        metadata=json_object(metadata, "metadata"),
    )


def _query(
    user_id: str | None,
    status: str | None,
    metadata: Mapping[str, Any] | None,
    created_after: datetime | None,
    created_before: datetime | None,
    updated_after: datetime | None,
    updated_before: datetime | None,
    owner: str | None,
) -> SessionQuery:
    for what, value in (
        ("created_after", created_after),
        ("created_before", created_before),
        ("updated_after", updated_after),
        ("updated_before", updated_before),
    ):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise UnprocessableEntityError(f"{what} must be a timezone-aware datetime")
    return SessionQuery(
        user_id=_text(user_id, "user_id"),
        status=cast(SessionStatus, choice(status, SESSION_STATUSES, "status")) if status else None,
        metadata=json_object(metadata, "metadata"),
        created_after=created_after,
        created_before=created_before,
        updated_after=updated_after,
        updated_before=updated_before,
        owner=owner,
    )


_OP_FIELDS = {
    "create": {"op", "user_id", "name", "metadata", "state", "session_id"},
    "update": {"op", "session_id", "user_id", "name", "status", "metadata"},
    "delete": {"op", "session_id", "cascade"},
}


def _operation(item: Mapping[str, Any], owner: str | None) -> SessionOp:
    if not isinstance(item, Mapping):
        raise UnprocessableEntityError(f"an operation is an object, not {type(item).__name__}")
    op = item.get("op")
    if op not in _OP_FIELDS:
        raise UnprocessableEntityError(f"op must be one of {', '.join(_OP_FIELDS)}, not {op!r}")
    unknown = sorted(set(item) - _OP_FIELDS[op])
    if unknown:
        raise UnprocessableEntityError(
            f"unknown field(s) {', '.join(map(repr, unknown))} for op {op!r}; "
            f"allowed: {', '.join(sorted(_OP_FIELDS[op] - {'op'}))}"
        )
    if op == "create":
        return CreateSession(
            _new_session(
                item.get("user_id"),
                item.get("name"),
                item.get("metadata"),
                item.get("state"),
                item.get("session_id"),
                owner,
            )
        )
    if "session_id" not in item:
        raise UnprocessableEntityError(f"op {op!r} needs a session_id")
    sid = _sid(item["session_id"])
    if op == "update":
        patch = _patch(
            item.get("user_id"), item.get("name"), item.get("status"), item.get("metadata")
        )
        return UpdateSession(sid, patch)
    cascade = item.get("cascade", False)
    if not isinstance(cascade, bool):
        raise UnprocessableEntityError("cascade must be true or false")
    return DeleteSession(sid, cascade)


__all__ = ["SESSION_KEY", "Sessions", "StateChange", "update_session_state"]
