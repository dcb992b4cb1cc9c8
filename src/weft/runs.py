"""Runs: admission, multitask strategies, join/wait/stream, cancellation, thread
bookkeeping, webhooks and crash recovery.

The queue is in process (:class:`weft.run_queue.LocalQueue`): the one place to swap for a
worker queue shared by several processes. Pending runs live in storage, so a restarted
process takes them up again.

A run's bookkeeping costs two storage writes on its critical path: one admission that
stamps the thread, admits the run and, when the thread is free, claims it at once; and one
finish that records the outcome with the thread's head state and claims the thread's next
run. The admission's request, assistant and thread go to the runner, which reads none of
them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from langgraph.checkpoint.base.id import uuid6
from pydantic import ValidationError

from weft.assistants import Assistants
from weft.errors import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError
from weft.run_queue import LocalQueue
from weft.runner import Admitted, Outcome, Runner, error_result
from weft.schema import (
    INFLIGHT_STATUSES,
    RUN_STATUSES,
    Run,
    RunEvent,
    RunRequest,
    RunStatus,
)
from weft.storage import Storage
from weft.storage.base import Admission, Finished, ThreadPatch
from weft.streams import RunStreams
from weft.threads import Threads
from weft.validation import choice, page, pydantic_message, uuid_arg
from weft.webhooks import Webhooks

log = logging.getLogger("weft.runs")

CANCEL_ACTIONS = ("interrupt", "rollback")
_POLL = 0.05
_REMOTE_POLL = 1.0
"""While waiting for a run's result, how often to look whether another process ended it."""


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
        unknown one is an error naming it. Returns the run as admitted (``pending``; it
        may have started already).
        """
        run, _ = await self._create(thread_id, assistant_id, owner, options, early=False)
        return run

    async def _create(
        self,
        thread_id: str | None,
        assistant_id: str,
        owner: str | None,
        options: Mapping[str, Any],
        *,
        early: bool = True,
    ) -> tuple[Run, asyncio.Future[Outcome]]:
        """Admit a run; it and the future of its outcome. The admission reads the assistant
        itself, in its one write: a run on an existing thread costs no read before it.

        ``early``: the run may start before its admission has committed (callers whose
        answer comes from the run itself: ``wait`` and ``stream``; its checkpoints commit
        after the admission). ``create``, whose answer is the admission, waits for it."""
        request = _request(options)
        _check(request, stateless=thread_id is None)
        if request.webhook:
            await self.webhooks.check_url(request.webhook)
        resolved = self.assistants.resolve_id(assistant_id)
        if thread_id is None:
            assistant = await self.assistants.get(resolved, owner=owner)
            tid = (
                await self.threads.create(
                    graph_id=assistant.graph_id, metadata={"stateless": True}, owner=owner
                )
            ).thread_id
        else:
            tid = uuid_arg(thread_id, "thread_id")
        kwargs = request.model_dump(mode="json", exclude_defaults=True)
        if thread_id is None:
            kwargs["on_completion"] = request.on_completion or "delete"
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        try:
            admission = await self._admit(tid, resolved, request, kwargs, owner, future, early)
        except NotFoundError:
            if request.if_not_exists != "create" or thread_id is None:
                raise
            assistant = await self.assistants.get(resolved, owner=owner)  # it may be missing
            await self.threads.create(
                thread_id=tid, graph_id=assistant.graph_id, if_exists="do_nothing", owner=owner
            )
            admission = await self._admit(tid, resolved, request, kwargs, owner, future, early)
        run = admission.run
        if admission.committed is not None:
            self._watch_commit(run, admission.committed)
        assert admission.assistant is not None
        self.streams.open(run.run_id, resumable=request.stream_resumable)
        if run.status == "running":
            self.queue.start(run, Admitted(request, admission.assistant, admission.session_id))
        if request.multitask_strategy in CANCEL_ACTIONS and admission.inflight:
            await self._displace(admission.inflight, request.multitask_strategy)
        if run.status != "running":
            self.queue.submit(run)
        if run.status != "pending":
            run = run.model_copy(
                update={"status": "pending", "attempt": 0, "started_at": None},
            )
        return run, future

    async def _admit(
        self,
        thread_id: str,
        assistant_id: str,
        request: RunRequest,
        kwargs: dict[str, Any],
        owner: str | None,
        future: asyncio.Future[Outcome],
        early: bool,
    ) -> Admission:
        """Read the assistant, stamp the thread, admit the run and claim it when the thread
        is free: one write. Nothing is awaited between taking the time and handing the write
        over, so runs of this process are admitted in the order of their ``created_at``."""
        now = datetime.now(UTC)
        run = Run(
            run_id=str(uuid6()),
            thread_id=thread_id,
            assistant_id=assistant_id,
            metadata=dict(request.metadata or {}),
            kwargs=kwargs,
            multitask_strategy=request.multitask_strategy,
            owner=owner,
            created_at=now,
            updated_at=now,
        )
        self._results[run.run_id] = future
        try:
            return await self.storage.admit(
                run,
                owner=owner,
                claim=not request.after_seconds and not self.queue.stopping,
                stamp=True,
                early=early,
            )
        except BaseException:
            self._results.pop(run.run_id, None)
            raise

    async def _displace(self, inflight: Sequence[Run], action: str) -> None:
        """``interrupt``/``rollback``: cancel the runs in flight before a new one."""
        for old in inflight:
            await self.queue.cancel(old.run_id, action, wait=action == "rollback")
            self._settle(old.run_id, Outcome("interrupted", None, "cancelled"))
        if action == "rollback":
            ids = [r.run_id for r in inflight]
            await self.storage.checkpointer.adelete_for_runs(ids)
            await self.storage.delete_runs(ids)

    def _watch_commit(self, run: Run, committed: Awaitable[None]) -> None:
        """An early admission or finish whose commit fails (the disk, not the run) ends the
        run's waiters with the error and stops its task: nothing of it was stored."""

        def done(future: asyncio.Future[None]) -> None:
            error = future.exception()
            if error is None:
                return
            log.error("run %s: its bookkeeping was not stored: %s", run.run_id, error)
            message = f"the run's record could not be stored: {error}"
            result = error_result("StorageError", message)
            self._settle(run.run_id, Outcome("error", result, message))
            task = self.queue.tasks.get(run.run_id)
            if task is not None and run.run_id in self.queue.cancellable:
                task.cancel()

        asyncio.ensure_future(committed).add_done_callback(done)

    # --- executing ------------------------------------------------------------------------

    async def _execute(self, run: Run, admitted: Admitted | None = None) -> None:
        queue = self.queue
        if queue.stopping:
            queue.cancel_actions.setdefault(run.run_id, "shutdown")
        outcome: Outcome | None = None
        cancelled = run.run_id in queue.cancel_actions  # cancelled before it began
        again = finished = False
        action: str | None = None
        queue.cancellable.add(run.run_id)
        try:
            try:
                stored = await self.storage.run_events(run.run_id) if run.attempt > 1 else []
                self.streams.open(
                    run.run_id,
                    resumable=bool(run.kwargs.get("stream_resumable")),
                    first_seq=stored[-1].seq if stored else 0,
                )
                if not cancelled:
                    async with queue.slots:
                        outcome = await self.runner.execute(run, admitted)
            except asyncio.CancelledError:
                cancelled = True
            finally:
                queue.cancellable.discard(run.run_id)
            action = queue.cancel_actions.get(run.run_id)
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
            finished = await self._finish(run, outcome)
        finally:
            action = queue.cancel_actions.pop(run.run_id, action)
            queue.tasks.pop(run.run_id, None)
            if not again:
                await self.streams.close(run.run_id)
            if not finished and action not in ("shutdown", "rollback"):
                queue.later(run.thread_id)

    def _next(self, thread_id: str | None, finished: Finished) -> None:
        """Start the run a finish claimed; look again only when runs are left waiting."""
        if finished.next is not None:
            self.queue.start(finished.next)
        elif finished.waiting:
            self.queue.later(thread_id)

    async def _finish(self, run: Run, outcome: Outcome) -> bool:
        """Record the outcome and start the thread's next run. False when the run had ended
        already (cancelled meanwhile). A run cancelled by a ``rollback`` starts nothing: the
        canceller deletes its checkpoints first, then starts the next run."""
        assert run.thread_id is not None
        patch = outcome.patch or await self._thread_patch(run.thread_id, outcome.status)
        rolled_back = self.queue.cancel_actions.get(run.run_id) == "rollback"
        # A success is settled (and its stream ended) as soon as its finish is queued, before
        # it ran and committed: later reads wait for that commit, later writes queue behind
        # it, and a crash before it re-runs the run from its last checkpoint, which ends at
        # once with the same values.
        early = outcome.status == "success"
        settle_early = early and run.kwargs.get("on_completion") != "delete"

        def queued() -> None:
            self._settle(run.run_id, outcome)
            self.streams.end(run.run_id)

        try:
            done = await self.storage.finish(
                run.run_id,
                status=outcome.status,
                error=outcome.error,
                ended_at=datetime.now(UTC),
                thread_patch=patch,
                claim_next=not rolled_back and not self.queue.stopping,
                early=early,
                on_queued=queued if settle_early else None,
            )
        except ConflictError:  # cancelled while it was being claimed: already ended
            self._settle(run.run_id, outcome)
            return False
        if done.committed is not None:
            self._watch_commit(run, done.committed)
        if not rolled_back:
            self._next(run.thread_id, done)
        if run.kwargs.get("webhook"):
            self.webhooks.send(str(run.kwargs["webhook"]), done.run, outcome.result)
        if run.kwargs.get("on_completion") == "delete":
            await self.threads.delete(run.thread_id)
        self._settle(run.run_id, outcome)
        return True

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
            return await self._result(run, future)
        while run.status in INFLIGHT_STATUSES:
            await asyncio.sleep(_POLL)
            run = await self.get(thread_id, run_id, owner=owner)
        return await self._stored_result(run)

    async def _result(self, run: Run, future: asyncio.Future[Outcome]) -> Any:
        """The result this process settles in ``future`` or, when another process on the
        same database executes the run (its queue took the thread's next run), the result
        read from storage once the run has ended there."""
        while True:
            done, _ = await asyncio.wait({future}, timeout=_REMOTE_POLL)
            if done:
                return future.result().result
            try:
                stored = await self.storage.get_run(run.run_id)
            except NotFoundError:  # rolled back or deleted: only this process can tell
                continue
            if stored.status not in INFLIGHT_STATUSES and run.run_id not in self.queue.tasks:
                await asyncio.sleep(_POLL)  # this process may be settling it right now
                if future.done():
                    return future.result().result
                self._results.pop(run.run_id, None)
                return await self._stored_result(stored)

    async def _stored_result(self, run: Run) -> Any:
        if run.status in ("error", "timeout"):
            return error_result(run.status, run.error or "")
        assert run.thread_id is not None
        state = await self.threads.state(run.thread_id)
        values = state.values
        if state.interrupts:
            values = {**values, "__interrupt__": state.interrupts}
        return values

    async def wait(
        self,
        thread_id: str | None,
        assistant_id: str,
        *,
        owner: str | None = None,
        **options: Any,
    ) -> Any:
        """Create a run and return its result (see :meth:`join`)."""
        run, future = await self._create(thread_id, assistant_id, owner, options)
        return await self._result(run, future)

    async def stream(
        self, thread_id: str | None, assistant_id: str, **options: Any
    ) -> tuple[Run, AsyncIterator[RunEvent]]:
        """Create a run and subscribe to its events from the first (``metadata``)."""
        owner = options.pop("owner", None)
        run, _ = await self._create(thread_id, assistant_id, owner, options)
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
        waits = wait or action == "rollback"
        if not await self.queue.cancel(run.run_id, action, wait=waits):
            # Not executing here: pending, or claimed a moment ago (its task comes next).
            assert run.thread_id is not None
            with contextlib.suppress(ConflictError):
                finished = await self.storage.finish(
                    run.run_id,
                    status="interrupted",
                    error=f"cancelled ({action})",
                    ended_at=datetime.now(UTC),
                    thread_patch=await self._thread_patch(run.thread_id, "interrupted"),
                    claim_next=action != "rollback",
                )
                if action != "rollback":
                    self._next(run.thread_id, finished)
            self._settle(run.run_id, Outcome("interrupted", None, "cancelled"))
            await self.queue.cancel(run.run_id, action, wait=waits)
        if action == "rollback":
            await self.storage.checkpointer.adelete_for_runs([run.run_id])
            await self.storage.delete_runs([run.run_id])
            self.queue.later(run.thread_id)

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

    async def submit(
        self,
        thread_id: str | None,
        assistant_id: str,
        *,
        owner: str | None = None,
        **options: Any,
    ) -> tuple[Run, asyncio.Future[Any]]:
        """Create a run; it and a future of its result (see :meth:`join`), for callers that
        need the run before its end (the HTTP wait sends its id first). Cancelling the
        future leaves the run alone."""
        run, outcome = await self._create(thread_id, assistant_id, owner, options)
        return run, asyncio.ensure_future(self._result(run, outcome))


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
    if stateless:
        if request.command is not None and request.command.resume is not None:
            raise BadRequestError("a resume needs a thread: a stateless run has nothing to resume")
        if request.checkpoint or request.checkpoint_id:
            raise BadRequestError("checkpoint needs a thread: a stateless run has no history")
    elif request.on_completion is not None:
        raise BadRequestError("on_completion applies only to stateless runs (no thread_id)")


__all__ = ["CANCEL_ACTIONS", "Runs"]
