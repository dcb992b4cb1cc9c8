"""Runs: admission, the queue (one running run per thread, FIFO), multitask strategies,
join/wait/stream, cancellation, thread bookkeeping, webhooks and crash recovery.

The queue is in process (:class:`LocalQueue`): the one place to swap for a worker queue
shared by several processes. Pending runs live in storage, so a restarted process takes
them up again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from langgraph.checkpoint.base.id import uuid6
from pydantic import ValidationError

from weft.assistants import Assistants
from weft.errors import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError
from weft.runner import Outcome, Runner
from weft.schema import (
    INFLIGHT_STATUSES,
    RUN_STATUSES,
    Run,
    RunEvent,
    RunRequest,
    RunStatus,
    Thread,
    check_writable,
)
from weft.storage import Storage
from weft.storage.base import ThreadPatch
from weft.streams import RunStreams
from weft.threads import Threads
from weft.validation import choice, page, pydantic_message, uuid_arg
from weft.webhooks import Webhooks

CANCEL_ACTIONS = ("interrupt", "rollback")
_POLL = 0.05


class LocalQueue:
    """Starts admitted runs in this process: per thread, the oldest pending run once none is
    running (storage's ``claim_run`` decides), at most ``concurrency`` at once."""

    def __init__(self, runs: Runs, concurrency: int) -> None:
        self.runs = runs
        self.slots = asyncio.Semaphore(concurrency)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.cancel_actions: dict[str, str] = {}
        self.timers: set[asyncio.TimerHandle] = set()

    def submit(self, run: Run) -> None:
        delay = run.kwargs.get("after_seconds") or 0
        if delay > 0:
            handle = asyncio.get_running_loop().call_later(delay, self._kick_soon, run)
            self.timers.add(handle)
        else:
            self._kick_soon(run)

    def _kick_soon(self, run: Run) -> None:
        asyncio.get_running_loop().create_task(self.kick(run.thread_id))

    async def kick(self, thread_id: str | None) -> None:
        """Start the thread's oldest pending run if it may start now."""
        if thread_id is None:
            return
        pending = await self.runs.storage.list_runs(thread_id, status="pending", limit=1000)
        now = datetime.now(UTC)
        for run in reversed(pending):  # oldest first
            delay = run.kwargs.get("after_seconds") or 0
            if run.created_at + timedelta(seconds=delay) > now:
                return  # FIFO: a delayed run holds the ones behind it
            claimed = await self.runs.storage.claim_run(run.run_id, started_at=now)
            if claimed is not None:
                self.tasks[run.run_id] = asyncio.get_running_loop().create_task(
                    self.runs._execute(claimed), name=f"run {run.run_id}"
                )
            return

    async def cancel(self, run_id: str, action: str, *, wait: bool) -> bool:
        task = self.tasks.get(run_id)
        if task is None or task.done():
            return False
        self.cancel_actions[run_id] = action
        task.cancel()
        if wait:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        return True

    async def stop(self, grace: float) -> None:
        """Give in-flight runs ``grace`` seconds, then put them back to ``pending``."""
        for handle in self.timers:
            handle.cancel()
        tasks = [t for t in self.tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for run_id, task in list(self.tasks.items()):
            if not task.done():
                self.cancel_actions.setdefault(run_id, "shutdown")
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


class Runs:
    """Every run operation of one runtime."""

    def __init__(
        self,
        storage: Storage,
        assistants: Assistants,
        threads: Threads,
        runner: Runner,
        streams: RunStreams,
        webhooks: Webhooks,
        *,
        concurrency: int = 64,
        max_attempts: int = 3,
    ) -> None:
        self.storage = storage
        self.assistants = assistants
        self.threads = threads
        self.runner = runner
        self.streams = streams
        self.webhooks = webhooks
        self.max_attempts = max_attempts
        self.queue = LocalQueue(self, concurrency)
        self._results: dict[str, asyncio.Future[Outcome]] = {}

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> list[Run]:
        """Take up what a dead process left: running runs go back to pending, and every
        thread with pending runs is started again. Returns the runs taken up."""
        now = datetime.now(UTC)
        taken: list[Run] = []
        for run in await self.storage.runs_with_status(["running"]):
            taken.append(await self.storage.requeue_run(run.run_id, updated_at=now))
        pending = await self.storage.runs_with_status(["pending"])
        for thread_id in dict.fromkeys(r.thread_id for r in pending):
            await self.queue.kick(thread_id)
        return taken + [r for r in pending if r.run_id not in {t.run_id for t in taken}]

    async def stop(self, *, grace: float = 5.0) -> None:
        await self.queue.stop(grace)
        await self.webhooks.close()

    # --- creating -------------------------------------------------------------------------

    async def create(
        self,
        thread_id: str | None,
        assistant_id: str,
        *,
        owner: str | None = None,
        **options: Any,
    ) -> Run:
        """Admit a run on ``thread_id`` (None: a stateless run on a thread of its own,
        deleted when it ends unless ``on_completion="keep"``).

        ``options`` are the Platform's run options (:class:`weft.schema.RunRequest`); an
        unknown one is an error naming it. Returns the run as admitted (``pending``).
        """
        request = _request(options)
        _check(request, stateless=thread_id is None)
        if request.webhook:
            await self.webhooks.check_url(request.webhook)
        assistant = await self.assistants.get(assistant_id, owner=owner)
        thread = await self._thread(thread_id, request, assistant.graph_id, owner)
        check_writable(thread, "run")
        stamps = {"graph_id": assistant.graph_id, "assistant_id": assistant.assistant_id}
        if any(thread.metadata.get(k) != v for k, v in stamps.items()):
            await self.threads.update(thread.thread_id, metadata=stamps, owner=owner)
        now = datetime.now(UTC)
        kwargs = request.model_dump(mode="json", exclude_defaults=True)
        if thread_id is None:
            kwargs["on_completion"] = request.on_completion or "delete"
        run = Run(
            run_id=str(uuid6()),
            thread_id=thread.thread_id,
            assistant_id=assistant.assistant_id,
            metadata=dict(request.metadata or {}),
            kwargs=kwargs,
            multitask_strategy=request.multitask_strategy,
            owner=owner,
            created_at=now,
            updated_at=now,
        )
        loop = asyncio.get_running_loop()
        self._results[run.run_id] = loop.create_future()
        try:
            inflight = await self.storage.admit_run(run, owner=owner)
        except BaseException:
            self._results.pop(run.run_id, None)
            raise
        self.streams.open(run.run_id, resumable=request.stream_resumable)
        if request.multitask_strategy in CANCEL_ACTIONS and inflight:
            await self._displace(inflight, request.multitask_strategy)
        self.queue.submit(run)
        return run

    async def _thread(
        self, thread_id: str | None, request: RunRequest, graph_id: str, owner: str | None
    ) -> Thread:
        if thread_id is None:
            return await self.threads.create(
                graph_id=graph_id, metadata={"stateless": True}, owner=owner
            )
        tid = uuid_arg(thread_id, "thread_id")
        try:
            return await self.threads.get(tid, owner=owner)
        except NotFoundError:
            if request.if_not_exists != "create":
                raise
            return await self.threads.create(
                thread_id=tid, graph_id=graph_id, if_exists="do_nothing", owner=owner
            )

    async def _displace(self, inflight: Sequence[Run], action: str) -> None:
        """``interrupt``/``rollback``: cancel the runs in flight before a new one."""
        for old in inflight:
            await self.queue.cancel(old.run_id, action, wait=action == "rollback")
            self._settle(old.run_id, Outcome("interrupted", None, "cancelled"))
        if action == "rollback":
            ids = [r.run_id for r in inflight]
            await self.storage.checkpointer.adelete_for_runs(ids)
            await self.storage.delete_runs(ids)

    # --- executing ------------------------------------------------------------------------

    async def _execute(self, run: Run) -> None:
        stored = await self.storage.run_events(run.run_id) if run.attempt > 1 else []
        self.streams.open(
            run.run_id,
            resumable=bool(run.kwargs.get("stream_resumable")),
            first_seq=stored[-1].seq if stored else 0,
        )
        outcome: Outcome | None = None
        cancelled = False
        async with self.queue.slots:
            try:
                outcome = await self.runner.execute(run)
            except asyncio.CancelledError:
                cancelled = True
        action = self.queue.cancel_actions.pop(run.run_id, None)
        again = False
        try:
            if cancelled and action == "shutdown":
                with contextlib.suppress(ConflictError):  # it ended meanwhile
                    await self.storage.requeue_run(run.run_id, updated_at=datetime.now(UTC))
                return
            if cancelled:
                outcome = Outcome("interrupted", None, f"cancelled ({action or 'interrupt'})")
                self.streams.publish(
                    run.run_id, "error", {"error": "Cancelled", "message": "the run was cancelled"}
                )
            assert outcome is not None
            if outcome.retry and run.attempt < self.max_attempts:
                await asyncio.sleep(0.1 * 2**run.attempt)
                await self.storage.requeue_run(run.run_id, updated_at=datetime.now(UTC))
                again = True
                return
            await self._finish(run, outcome)
        finally:
            self.queue.tasks.pop(run.run_id, None)
            if not again:
                await self.streams.close(run.run_id)
            if action != "shutdown":
                await self.queue.kick(run.thread_id)

    async def _finish(self, run: Run, outcome: Outcome) -> None:
        assert run.thread_id is not None
        try:
            ended = await self.storage.finish_run(
                run.run_id,
                status=outcome.status,
                error=outcome.error,
                ended_at=datetime.now(UTC),
                thread_patch=await self._thread_patch(run.thread_id, outcome.status),
            )
        except ConflictError:  # cancelled while it was being claimed: already ended
            self._settle(run.run_id, outcome)
            return
        if run.kwargs.get("webhook"):
            self.webhooks.send(str(run.kwargs["webhook"]), ended, outcome.result)
        if run.kwargs.get("on_completion") == "delete":
            await self.threads.delete(run.thread_id)
        self._settle(run.run_id, outcome)

    async def _thread_patch(self, thread_id: str, status: RunStatus) -> ThreadPatch:
        """The thread's head state and status after a run ended with ``status``."""
        return await self.threads.head_patch(thread_id, failed=status in ("error", "timeout"))

    def _settle(self, run_id: str, outcome: Outcome) -> None:
        future = self._results.pop(run_id, None)
        if future is not None and not future.done():
            future.set_result(outcome)

    # --- reading and joining --------------------------------------------------------------

    async def get(self, thread_id: str | None, run_id: str, *, owner: str | None = None) -> Run:
        return await self.storage.get_run(
            uuid_arg(run_id, "run_id"),
            thread_id=uuid_arg(thread_id, "thread_id") if thread_id else None,
            owner=owner,
        )

    async def list(
        self,
        thread_id: str,
        *,
        status: str | None = None,
        limit: int = 10,
        offset: int = 0,
        owner: str | None = None,
    ) -> list[Run]:
        page(limit, offset)
        return await self.storage.list_runs(
            uuid_arg(thread_id, "thread_id"),
            status=cast(RunStatus, choice(status, RUN_STATUSES, "status")) if status else None,
            limit=limit,
            offset=offset,
            owner=owner,
        )

    async def delete(self, thread_id: str, run_id: str, *, owner: str | None = None) -> None:
        run = await self.get(thread_id, run_id, owner=owner)
        if run.status in INFLIGHT_STATUSES:
            raise ConflictError(f"run {run.run_id} is {run.status}: cancel it before deleting")
        await self.storage.delete_runs([run.run_id])

    async def join(self, thread_id: str | None, run_id: str, *, owner: str | None = None) -> Any:
        """The run's result once it ends: the final values (with ``__interrupt__`` when it
        stopped at an interrupt), or ``{"__error__": {error, message}}``."""
        run = await self.get(thread_id, run_id, owner=owner)
        future = self._results.get(run.run_id)
        if future is not None:
            return (await asyncio.shield(future)).result
        while run.status in INFLIGHT_STATUSES:
            await asyncio.sleep(_POLL)
            run = await self.get(thread_id, run_id, owner=owner)
        if run.status in ("error", "timeout"):
            return {"__error__": {"error": run.status, "message": run.error or ""}}
        assert run.thread_id is not None
        state = await self.threads.state(run.thread_id)
        values = state.values
        if state.interrupts:
            values = {**values, "__interrupt__": state.interrupts}
        return values

    async def wait(self, thread_id: str | None, assistant_id: str, **options: Any) -> Any:
        """Create a run and return its result (see :meth:`join`)."""
        run = await self.create(thread_id, assistant_id, **options)
        return await self.join(None, run.run_id)

    async def stream(
        self, thread_id: str | None, assistant_id: str, **options: Any
    ) -> tuple[Run, AsyncIterator[RunEvent]]:
        """Create a run and subscribe to its events from the first (``metadata``)."""
        run = await self.create(thread_id, assistant_id, **options)
        return run, self._events(run, cancel_on_exit=options.get("on_disconnect") == "cancel")

    async def join_stream(
        self,
        thread_id: str | None,
        run_id: str,
        *,
        last_event_id: str | None = None,
        cancel_on_disconnect: bool = False,
        owner: str | None = None,
    ) -> AsyncIterator[RunEvent]:
        """The run's events after ``last_event_id`` (``"0"`` or None: from the start of what
        is kept), live until the run ends."""
        run = await self.get(thread_id, run_id, owner=owner)
        after = 0
        if last_event_id not in (None, ""):
            try:
                after = int(str(last_event_id))
            except ValueError:
                raise BadRequestError(
                    f"Last-Event-ID must be an event id this server sent, not {last_event_id!r}"
                ) from None
        return self._events(run, after=after, cancel_on_exit=cancel_on_disconnect)

    async def _events(
        self, run: Run, *, after: int = 0, cancel_on_exit: bool = False
    ) -> AsyncIterator[RunEvent]:
        finished = False
        try:
            async for item in self.streams.subscribe(run.run_id, after=after):
                yield item
            finished = True
        finally:
            if cancel_on_exit and not finished:
                await self.queue.cancel(run.run_id, "interrupt", wait=False)

    # --- cancelling -----------------------------------------------------------------------

    async def cancel(
        self,
        thread_id: str | None,
        run_id: str,
        *,
        action: str = "interrupt",
        wait: bool = False,
        owner: str | None = None,
    ) -> None:
        """Cancel a pending or running run. ``rollback`` also deletes the run and its
        checkpoints. A run that already ended is a ConflictError."""
        choice(action, CANCEL_ACTIONS, "action")
        run = await self.get(thread_id, run_id, owner=owner)
        if run.status not in INFLIGHT_STATUSES:
            raise ConflictError(f"run {run.run_id} already ended ({run.status}); nothing to cancel")
        if not await self.queue.cancel(run.run_id, action, wait=wait or action == "rollback"):
            with contextlib.suppress(ConflictError):
                assert run.thread_id is not None
                await self.storage.finish_run(
                    run.run_id,
                    status="interrupted",
                    error=f"cancelled ({action})",
                    ended_at=datetime.now(UTC),
                    thread_patch=await self._thread_patch(run.thread_id, "interrupted"),
                )
            self._settle(run.run_id, Outcome("interrupted", None, "cancelled"))
            await self.queue.kick(run.thread_id)
        if action == "rollback":
            await self.storage.checkpointer.adelete_for_runs([run.run_id])
            await self.storage.delete_runs([run.run_id])

    async def cancel_many(
        self,
        *,
        thread_id: str | None = None,
        run_ids: Sequence[str] | None = None,
        status: str | None = None,
        action: str = "interrupt",
        owner: str | None = None,
    ) -> int:
        """Cancel runs by ids (of ``thread_id`` when given) or every run in ``status``
        (``pending``, ``running`` or ``all``). Returns how many were cancelled."""
        if run_ids is not None:
            targets = [await self.get(thread_id, r, owner=owner) for r in run_ids]
        else:
            wanted = choice(status or "all", ("pending", "running", "all"), "status")
            statuses = list(INFLIGHT_STATUSES) if wanted == "all" else [wanted]
            targets = [
                r
                for r in await self.storage.runs_with_status(cast(list[RunStatus], statuses))
                if thread_id is None or r.thread_id == thread_id
            ]
        done = 0
        for run in targets:
            if run.status in INFLIGHT_STATUSES:
                with contextlib.suppress(ConflictError):
                    await self.cancel(run.thread_id, run.run_id, action=action, owner=owner)
                    done += 1
        return done


def _request(options: Mapping[str, Any]) -> RunRequest:
    given = {k: v for k, v in options.items() if v is not None}
    try:
        return RunRequest.model_validate(given)
    except ValidationError as e:
        raise UnprocessableEntityError(pydantic_message(e)) from None


def _check(request: RunRequest, *, stateless: bool) -> None:
    if request.input is not None and request.command is not None:
        raise BadRequestError("give either input or command, not both")
    configurable = (request.config or {}).get("configurable")
    if configurable and request.context:
        raise BadRequestError("set either config.configurable or context, not both; prefer context")
    modes = request.stream_modes
    if "events" in modes and len(modes) > 1:
        raise BadRequestError("stream_mode 'events' cannot be combined with other modes")
    if "events" in modes:
        raise BadRequestError(
            "stream_mode 'events' is not supported by weft; use values, updates, messages, "
            "messages-tuple, debug, custom, tasks or checkpoints"
        )
    if stateless:
        if request.command is not None and request.command.resume is not None:
            raise BadRequestError("a resume needs a thread: a stateless run has nothing to resume")
        if request.checkpoint or request.checkpoint_id:
            raise BadRequestError("checkpoint needs a thread: a stateless run has no history")
    elif request.on_completion is not None:
        raise BadRequestError("on_completion applies only to stateless runs (no thread_id)")


__all__ = ["CANCEL_ACTIONS", "LocalQueue", "Runs"]
