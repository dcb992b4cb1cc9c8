"""A thread's stream: the events of every run of one thread as they happen, one run after
the other (runs of a thread execute one at a time, in the order they were created).

Event ids are ``<run_id>:<seq>`` (the run's own event id) and ``<run_id>:done`` for the
``run_done`` event that follows each run, so ``Last-Event-ID`` names a place in the
thread's stream: the events after it, then the runs created later. ``0`` replays every run
the thread still has (events of a run are kept while it lives and for a minute after, and
for good when it was created with ``stream_resumable``); no id starts with the runs in
flight, from their first event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from weft.errors import BadRequestError, NotFoundError, UnprocessableEntityError
from weft.runs import Runs
from weft.schema import INFLIGHT_STATUSES, Run
from weft.validation import uuid_arg

THREAD_STREAM_MODES: tuple[str, ...] = ("run_modes", "lifecycle", "state_update")
"""``run_modes``: every event of the thread's runs, and ``run_done`` after each;
``lifecycle``: only a run's first ``metadata`` event and its ``run_done``;
``state_update``: state changes made outside runs (weft sends none yet)."""

POLL_SECONDS = 0.1
"""How often the stream looks for runs created after the last one it followed."""
_PAGE = 50


@dataclass(frozen=True)
class ThreadEvent:
    """One event of a thread's stream: ``id`` is what ``Last-Event-ID`` takes back."""

    id: str
    event: str
    data: Any


async def thread_events(
    runs: Runs,
    thread_id: str,
    *,
    last_event_id: str | None = None,
    modes: Sequence[str] = ("run_modes",),
    owner: str | None = None,
) -> AsyncGenerator[ThreadEvent]:
    """The events of ``thread_id``'s runs after ``last_event_id``, live and without end
    (until the thread is deleted). Checks its arguments and the thread before it returns."""
    tid = uuid_arg(thread_id, "thread_id")
    wanted = set(modes) or {"run_modes"}
    bad = sorted(wanted - set(THREAD_STREAM_MODES))
    if bad:
        raise UnprocessableEntityError(
            f"stream_mode must be one of {', '.join(THREAD_STREAM_MODES)}, not "
            f"{', '.join(map(repr, bad))}"
        )
    await runs.threads.get(tid, owner=owner)
    follow = _Follow(runs, tid, wanted, owner)
    if last_event_id in (None, ""):
        newest = await runs.list(tid, limit=_PAGE, owner=owner)
        follow.queue = [r for r in reversed(newest) if r.status in INFLIGHT_STATUSES]
        follow.handled = {r.run_id for r in newest if r.status not in INFLIGHT_STATUSES}
        follow.cursor = newest[0].created_at if newest else None
    elif last_event_id != "0":
        await follow.resume_after(str(last_event_id))
    return follow.events()


class _Follow:
    def __init__(self, runs: Runs, thread_id: str, modes: set[str], owner: str | None) -> None:
        self.runs = runs
        self.thread_id = thread_id
        self.modes = modes
        self.owner = owner
        self.queue: list[Run] = []
        """Runs to follow next, oldest first."""
        self.handled: set[str] = set()
        self.cursor: datetime | None = None
        """Runs created before this were all followed (or skipped)."""
        self.after: dict[str, int] = {}
        """Where to start in a run's events (a resumed run)."""

    async def resume_after(self, last_event_id: str) -> None:
        run_id, _, where = last_event_id.partition(":")
        if where != "done" and not where.isdigit():
            raise BadRequestError(
                f"Last-Event-ID must be an event id this thread stream sent "
                f"('<run_id>:<n>' or '<run_id>:done'), or 0 to replay everything; "
                f"not {last_event_id!r}"
            )
        try:
            run = await self.runs.get(self.thread_id, run_id, owner=self.owner)
        except (NotFoundError, UnprocessableEntityError):
            raise BadRequestError(
                f"Last-Event-ID {last_event_id!r} names a run thread {self.thread_id} does not "
                "have (any more); reconnect with Last-Event-ID 0 to replay what it has"
            ) from None
        self.cursor = run.created_at
        if where == "done":
            self.handled.add(run.run_id)
        else:
            self.queue = [run]
            self.after[run.run_id] = int(where)

    async def events(self) -> AsyncGenerator[ThreadEvent]:
        while True:
            for run in self.queue:
                async with contextlib.aclosing(self._run(run)) as events:
                    async for item in events:
                        yield item
                self.handled.add(run.run_id)
                if self.cursor is None or run.created_at > self.cursor:
                    self.cursor = run.created_at
            try:
                self.queue = await self._newer()
            except NotFoundError:
                return  # the thread was deleted
            if not self.queue:
                await asyncio.sleep(POLL_SECONDS)

    async def _run(self, run: Run) -> AsyncGenerator[ThreadEvent]:
        """The run's events, then ``run_done``. A run not (yet) streaming in this process
        is looked at again until it ends."""
        sent = self.after.pop(run.run_id, 0)
        all_events = "run_modes" in self.modes
        while True:
            try:
                events = await self.runs.join_stream(
                    self.thread_id, run.run_id, last_event_id=str(sent), owner=self.owner
                )
                async with contextlib.aclosing(events):  # type: ignore[type-var]
                    async for item in events:
                        sent = item.seq
                        first = item.event == "metadata" and isinstance(item.data, dict)
                        if all_events or ("lifecycle" in self.modes and first):
                            yield ThreadEvent(f"{run.run_id}:{item.seq}", item.event, item.data)
                current = await self.runs.get(self.thread_id, run.run_id, owner=self.owner)
            except NotFoundError:
                return  # rolled back, or deleted with its thread
            if current.status not in INFLIGHT_STATUSES:
                break
            await asyncio.sleep(POLL_SECONDS)
        if all_events or "lifecycle" in self.modes:
            yield ThreadEvent(
                f"{run.run_id}:done", "metadata", {"status": "run_done", "run_id": run.run_id}
            )

    async def _newer(self) -> list[Run]:
        """Runs created since the cursor and not yet followed, oldest first."""
        found: dict[str, Run] = {}
        offset = 0
        while True:
            page = await self.runs.list(
                self.thread_id, limit=_PAGE, offset=offset, owner=self.owner
            )
            for run in page:
                if self.cursor is not None and run.created_at < self.cursor:
                    return _oldest_first(found)
                if run.run_id not in self.handled:
                    found[run.run_id] = run
            if len(page) < _PAGE:
                return _oldest_first(found)
            offset += _PAGE


def _oldest_first(runs: dict[str, Run]) -> list[Run]:
    return sorted(runs.values(), key=lambda r: (r.created_at, r.run_id))


__all__ = ["POLL_SECONDS", "THREAD_STREAM_MODES", "ThreadEvent", "thread_events"]
