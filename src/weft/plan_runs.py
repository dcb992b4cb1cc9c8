"""Running a session's plan: its threads start as ordinary runs once their sources succeeded.

:class:`Plans` is what the runtime offers (``rt.plans``): set a session's plan, run it,
cancel it, report on it and follow its events. One executor per running plan lives in the
process holding the plan's lease (renewed every third of ``plans.lease_seconds``); every
process looks for plans without a live lease every ``plans.poll_seconds``, so a plan whose
process died (or a plan started detached) is taken up again. Progress is in storage, written
once per step of the executor (what ended, what starts, the events of both, in one
transaction): after a restart finished threads stay finished, running threads join their run
(which the run engine resumed from its checkpoint) and nothing that succeeded runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from weft.assistants import Assistants
from weft.errors import WeftError
from weft.graphs import GraphRegistry
from weft.plan_checks import read_plan, validate_plan
from weft.plan_executor import Executor
from weft.plans import (
    PlanReport,
    PlanSpec,
    Workflow,
    referenced_workflows,
    report,
)
from weft.runs import Runs
from weft.schema import Interaction, Plan, PlanThread, Session
from weft.sessions import Sessions
from weft.storage import Storage
from weft.storage.base_plans import PlanEvent
from weft.threads import Threads
from weft.validation import uuid_arg

PlanSource = Mapping[str, Any] | str | Path
EVENT_KINDS: tuple[Literal["thread_event", "plan_event"], ...] = ("thread_event", "plan_event")
FINAL_EVENTS = frozenset({"plan_completed", "plan_failed", "plan_cancelled"})


def plan_thread_id(session_id: str, name: str) -> str:
    """The thread a plan's named thread runs on: the same after every restart."""
    return str(uuid.uuid5(uuid.UUID(session_id), name))


class Plans:
    """Every plan operation of one runtime; also the executors of the plans it runs."""

    def __init__(
        self,
        storage: Storage,
        graphs: GraphRegistry,
        assistants: Assistants,
        threads: Threads,
        sessions: Sessions,
        runs: Runs,
        *,
        lease_seconds: float = 10.0,
        poll_seconds: float = 1.0,
        execute: bool = True,
    ) -> None:
        self.storage = storage
        self.graphs = graphs
        self.assistants = assistants
        self.threads = threads
        self.sessions = sessions
        self.runs = runs
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_seconds = poll_seconds
        self.execute = execute
        self.token = str(uuid.uuid4())
        self.executors: dict[str, Executor] = {}
        self._changed: dict[str, set[asyncio.Event]] = {}
        """Per session with listeners here, one event per listener (the entry goes with the
        last one): each clears only its own."""
        self._scanner: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Take up the running plans nobody holds, now and every ``poll_seconds``."""
        if not self.execute:
            return
        await self._scan()
        self._scanner = asyncio.create_task(self._scan_forever(), name="weft-plans")

    async def stop(self) -> None:
        """Stop the executors of this process and release their leases: the next process
        (or this one restarted) takes the plans up where they stand."""
        if self._scanner is not None:
            self._scanner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scanner
        executors = list(self.executors.values())
        for ex in executors:
            ex.task.cancel()
        for ex in executors:
            with contextlib.suppress(asyncio.CancelledError):
                await ex.task
            with contextlib.suppress(WeftError):
                await self.storage.release_plan(ex.session_id, lease_owner=self.token)

    async def _scan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self._scan()

    async def _scan(self) -> None:
        now = datetime.now(UTC)
        for session_id in await self.storage.claimable_plans(now=now):
            if session_id in self.executors:
                continue
            if await self.storage.claim_plan(
                session_id, lease_owner=self.token, lease_until=now + self.lease, now=now
            ):
                await self._spawn(session_id)

    async def _spawn(self, session_id: str) -> None:
        plan = await self.storage.get_plan(session_id)
        spec = PlanSpec.model_validate(plan.spec)
        ex = Executor(self, plan, spec, await self._graph_ids(spec))
        self.executors[session_id] = ex
        ex.task = asyncio.create_task(ex.main(), name=f"weft-plan-{session_id}")

    async def _graph_ids(self, spec: PlanSpec) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, thread in spec.threads.items():
            if thread.graph_id is not None:
                out[name] = thread.graph_id
            else:
                assert thread.assistant_id is not None
                resolved = self.assistants.resolve_id(thread.assistant_id)
                out[name] = (await self.assistants.get(resolved)).graph_id
        return out

    # --- specs ----------------------------------------------------------------------------

    async def validate(
        self, source: PlanSource, *, overrides: Sequence[str] = (), owner: str | None = None
    ) -> PlanSpec:
        """The plan, checked against the registered workflows; PlanError lists every
        problem with its location."""
        data, where = read_plan(source, overrides)
        return validate_plan(data, where, await self.workflows(data, owner=owner))

    async def workflows(self, data: Any, *, owner: str | None = None) -> dict[str, Workflow]:
        """Every registered graph, and the assistants ``data`` names; the input fields only
        of the workflows ``data`` uses (deriving a schema reads and builds the graph)."""
        refs = referenced_workflows(data)
        known: dict[str, Workflow] = {}
        for graph_id in self.graphs.ids():
            if graph_id in refs:
                known[graph_id] = await self._workflow(graph_id, graph_id, owner)
            else:
                known[graph_id] = Workflow(graph_id=graph_id, input_fields=None)
        for ref in sorted(refs - set(known)):
            with contextlib.suppress(WeftError):
                assistant = await self.assistants.get(self.assistants.resolve_id(ref), owner=owner)
                known[ref] = await self._workflow(ref, assistant.graph_id, owner)
        return known

    async def _workflow(self, ref: str, graph_id: str, owner: str | None) -> Workflow:
        schemas = await self.assistants.schemas(ref, owner=owner)
        return Workflow(graph_id=graph_id, input_fields=_input_fields(schemas.get("input_schema")))

    # --- records --------------------------------------------------------------------------

    async def create(
        self, source: PlanSource, *, overrides: Sequence[str] = (), owner: str | None = None
    ) -> tuple[Session, Plan]:
        """A new session (name, user and metadata from the plan) holding the plan."""
        spec = await self.validate(source, overrides=overrides, owner=owner)
        session = await self.sessions.create(
            user_id=spec.user_id, name=spec.name, metadata=spec.metadata, owner=owner
        )
        try:
            plan = await self._put(session.session_id, spec, owner)
        except BaseException:
            with contextlib.suppress(WeftError):
                await self.sessions.delete(session.session_id, owner=owner)
            raise
        return session, plan

    async def put(
        self,
        session_id: str,
        source: PlanSource,
        *,
        overrides: Sequence[str] = (),
        owner: str | None = None,
    ) -> Plan:
        """Set (or replace) the plan of an existing session; refused while it runs."""
        sid = uuid_arg(session_id, "session_id")
        spec = await self.validate(source, overrides=overrides, owner=owner)
        return await self._put(sid, spec, owner)

    async def _put(self, session_id: str, spec: PlanSpec, owner: str | None) -> Plan:
        now = datetime.now(UTC)
        plan = Plan(
            session_id=session_id,
            spec=spec.model_dump(mode="json"),
            created_at=now,
            updated_at=now,
        )
        rows = [
            PlanThread(
                session_id=session_id,
                name=name,
                position=i,
                thread_id=plan_thread_id(session_id, name),
                updated_at=now,
            )
            for i, name in enumerate(spec.threads)
        ]
        return await self.storage.put_plan(plan, rows, owner=owner)

    async def get(self, session_id: str, *, owner: str | None = None) -> Plan:
        return await self.storage.get_plan(uuid_arg(session_id, "session_id"), owner=owner)

    async def status(self, session_id: str, *, owner: str | None = None) -> PlanReport:
        """Each thread's outcome, attempts, duration, output summary and error."""
        plan = await self.get(session_id, owner=owner)
        threads = await self.storage.plan_threads(plan.session_id)
        return report(plan, threads, now=datetime.now(UTC))

    # --- running --------------------------------------------------------------------------

    async def run(self, session_id: str, *, owner: str | None = None, detach: bool = False) -> Plan:
        """Start the session's plan and return at once. ``detach``: leave it to whichever
        process looks for plans next (a ``weft serve`` on the same database)."""
        plan = await self.get(session_id, owner=owner)
        now = datetime.now(UTC)
        here = self.execute and not detach
        started = await self.storage.start_plan(
            plan.session_id,
            lease_owner=self.token if here else None,
            lease_until=now + self.lease if here else None,
            now=now,
            event=PlanEvent(
                "plan_event",
                {"event": "plan_started", "threads": len(plan.spec.get("threads", {}))},
            ),
        )
        self.notify(plan.session_id)
        if here:
            await self._spawn(plan.session_id)
        return started

    async def run_plan(
        self,
        source: PlanSource,
        *,
        overrides: Sequence[str] = (),
        wait: bool = True,
        owner: str | None = None,
    ) -> PlanReport:
        """Create a session from the plan, run it and (``wait``) return its final report."""
        session, _ = await self.create(source, overrides=overrides, owner=owner)
        await self.run(session.session_id, owner=owner)
        if wait:
            return await self.wait(session.session_id, owner=owner)
        return await self.status(session.session_id, owner=owner)

    async def wait(self, session_id: str, *, owner: str | None = None) -> PlanReport:
        """The report once the plan has ended."""
        async for _ in self.events(session_id, owner=owner):
            pass
        return await self.status(session_id, owner=owner)

    async def cancel(self, session_id: str, *, owner: str | None = None) -> PlanReport:
        """Stop a ready or running plan: its running threads' runs are cancelled (their
        checkpoints kept), what had not ended is ``cancelled``, the session too."""
        sid = uuid_arg(session_id, "session_id")
        _, active = await self.storage.cancel_plan(
            sid, now=datetime.now(UTC), reason="cancelled by request", owner=owner
        )
        self.notify(sid)
        ex = self.executors.get(sid)
        if ex is not None:
            ex.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ex.task
        await self.cancel_runs([row.thread_id for row in active])
        return await self.status(sid, owner=owner)

    async def cancel_runs(self, thread_ids: Sequence[str]) -> None:
        for thread_id in thread_ids:
            with contextlib.suppress(WeftError):
                await self.runs.cancel_many(thread_id=thread_id, status="all")

    # --- events ---------------------------------------------------------------------------

    async def events(
        self, session_id: str, *, after: int = 0, owner: str | None = None
    ) -> AsyncIterator[Interaction]:
        """The plan's events (interaction log entries) with ``seq > after``, then live ones,
        ending after the plan's final event (at once when the plan had ended)."""
        plan = await self.get(session_id, owner=owner)
        sid = plan.session_id
        changed = asyncio.Event()
        self._changed.setdefault(sid, set()).add(changed)
        try:
            while True:
                changed.clear()
                entries = await self.storage.list_interactions(
                    sid, after=after, limit=500, kinds=EVENT_KINDS, owner=owner
                )
                for entry in entries:
                    after = entry.seq
                    yield entry
                    if entry.kind == "plan_event" and entry.content.get("event") in FINAL_EVENTS:
                        return
                if entries:
                    continue
                try:  # this process's executor says when it wrote; another one is polled for
                    await asyncio.wait_for(changed.wait(), timeout=self.poll_seconds)
                    continue
                except TimeoutError:
                    pass
                plan = await self.storage.get_plan(sid, owner=owner)
                if plan.status not in ("ready", "running"):
                    return  # ended without a final event after `after`: nothing more will come
        finally:
            listeners = self._changed[sid]
            listeners.discard(changed)
            if not listeners:
                del self._changed[sid]

    def notify(self, session_id: str) -> None:
        """Wake this process's listeners to the session's plan events (none: nothing kept)."""
        for event in self._changed.get(session_id, ()):
            event.set()


def _input_fields(schema: Any) -> frozenset[str] | None:
    """The input fields a graph accepts, or None when it accepts anything."""
    if not isinstance(schema, dict):
        return None
    props = schema.get("properties")
    if not isinstance(props, dict) or schema.get("additionalProperties", False) is not False:
        return None
    return frozenset(props)
