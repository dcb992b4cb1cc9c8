"""The in-process run queue: per thread, the oldest pending run starts once none is running;
at most ``runs.concurrency`` runs execute at once in this process.

This is the seam where a worker queue shared by several processes (procrastinate on
Postgres) would replace it: :class:`weft.runs.Runs` only calls ``start``, ``submit``,
``later``, ``kick``, ``cancel`` and ``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from weft.errors import NotFoundError
from weft.runner import Admitted
from weft.schema import Run

if TYPE_CHECKING:
    from weft.runs import Runs


class LocalQueue:
    """Starts admitted runs in this process: per thread, the oldest pending run once none is
    running (storage's claims decide), at most ``concurrency`` at once.

    Whoever claims a run starts its task at once, with nothing awaited in between, so a run
    this process claimed always has its task here.
    """

    def __init__(self, runs: Runs, concurrency: int) -> None:
        self.runs = runs
        self.slots = asyncio.Semaphore(concurrency)
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.cancellable: set[str] = set()
        """Runs whose task may be cancelled now: it has begun (a task cancelled before it
        begins would run nothing, not even its clean-up) and its graph has not ended (the
        bookkeeping after it is not cut short). The others see ``cancel_actions``."""
        self.cancel_actions: dict[str, str] = {}
        self.timers: set[asyncio.TimerHandle] = set()
        self.kicks: set[asyncio.Task[None]] = set()
        self.stopping = False

    def start(self, run: Run, admitted: Admitted | None = None) -> None:
        """Execute ``run``, already claimed (``running``)."""
        self.tasks[run.run_id] = asyncio.get_running_loop().create_task(
            self.runs._execute(run, admitted), name=f"run {run.run_id}"
        )

    def submit(self, run: Run) -> None:
        """Start ``run`` (``pending``) when its thread and its ``after_seconds`` allow."""
        self.later(run.thread_id, run.kwargs.get("after_seconds") or 0)

    def later(self, thread_id: str | None, delay: float = 0) -> None:
        """:meth:`kick` the thread in ``delay`` seconds (0: as soon as the loop can)."""
        if self.stopping or thread_id is None:
            return
        loop = asyncio.get_running_loop()
        if delay > 0:

            def fire() -> None:
                self.timers.discard(handle)
                self.later(thread_id)

            handle = loop.call_later(delay, fire)
            self.timers.add(handle)
        else:
            task = loop.create_task(self.kick(thread_id))
            self.kicks.add(task)
            task.add_done_callback(self.kicks.discard)

    async def kick(self, thread_id: str | None) -> None:
        """Start the thread's oldest pending run if it may start now (a delayed one: when
        its delay has passed)."""
        if thread_id is None or self.stopping:
            return
        try:
            pending = await self.runs.storage.list_runs(thread_id, status="pending", limit=1000)
        except NotFoundError:
            return  # the thread went, with its runs
        now = datetime.now(UTC)
        for run in reversed(pending):  # oldest first
            due = run.created_at + timedelta(seconds=run.kwargs.get("after_seconds") or 0)
            if due > now:  # FIFO: a delayed run holds the ones behind it
                self.later(thread_id, (due - now).total_seconds())
                return
            claimed = await self.runs.storage.claim_run(run.run_id, started_at=now)
            if claimed is not None:
                self.start(claimed)
            return

    async def cancel(self, run_id: str, action: str, *, wait: bool) -> bool:
        """Stop the run's task; False when this process has no task for it."""
        task = self.tasks.get(run_id)
        if task is None or task.done():
            return False
        self.cancel_actions[run_id] = action
        if run_id in self.cancellable:
            task.cancel()
        if wait:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(task)
        return True

    async def stop(self, grace: float) -> None:
        """Give in-flight runs ``grace`` seconds, then put them back to ``pending``."""
        self.stopping = True
        for handle in self.timers:
            handle.cancel()
        if self.kicks:
            await asyncio.wait(list(self.kicks))
        tasks = [t for t in self.tasks.values() if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        while any(not t.done() for t in self.tasks.values()):
            for run_id, task in list(self.tasks.items()):
                if not task.done():
                    self.cancel_actions.setdefault(run_id, "shutdown")
                    if run_id in self.cancellable:
                        task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task


__all__ = ["LocalQueue"]
