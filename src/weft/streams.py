"""Run streams: fan-out of a run's events to its listeners, and the replay log behind
``Last-Event-ID``.

Every event of a run gets the next ``seq`` (1, 2, ...): ids strictly increase and never
repeat, however fast events come. While a run lives its events are kept in memory, so a
listener that joins late misses nothing; events of resumable runs are also written to the
run event log in storage (in batches, off the run's critical path), so that a client can
reconnect, even to another process after a restart, and get exactly what came after the
last id it saw.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from weft.schema import RunEvent
from weft.storage import Storage


@dataclass
class _Live:
    resumable: bool
    base: int = 0
    """The seq before the first event kept here: ``events[i].seq == base + 1 + i``."""
    events: list[RunEvent] = field(default_factory=list)
    waiters: set[asyncio.Event] = field(default_factory=set)
    unsaved: list[RunEvent] = field(default_factory=list)
    ended: bool = False
    saver: asyncio.Task[None] | None = None


KEEP_ENDED = 60.0
"""How long (s) an ended run's events stay in memory for late listeners."""

KEEP_ENDED_RUNS = 1000
"""How many ended runs' events stay in memory at most (the oldest go first): under load, 60 s
of runs would be tens of thousands of event lists, each holding the states it streamed."""


class RunStreams:
    """The live streams of this process's runs."""

    def __init__(
        self,
        storage: Storage,
        *,
        keep_ended: float = KEEP_ENDED,
        keep_ended_runs: int = KEEP_ENDED_RUNS,
    ) -> None:
        self.storage = storage
        self.keep_ended = keep_ended
        self.keep_ended_runs = keep_ended_runs
        self._live: dict[str, _Live] = {}
        self._next: dict[str, int] = {}
        self._ended: deque[tuple[float, str, _Live]] = deque()
        """Closed streams, oldest first, with the time each may be forgotten: one queue
        rather than a timer per run (thousands of timers slow every timer of the loop)."""

    def open(self, run_id: str, *, resumable: bool, first_seq: int = 0) -> None:
        """Start a run's stream (kept as it is when already open). ``first_seq``: the last
        seq already stored (a run taken up again numbers on after its earlier attempt)."""
        current = self._live.get(run_id)
        if current is not None and not current.ended:
            return
        self._live[run_id] = _Live(resumable=resumable, base=first_seq)
        self._next[run_id] = first_seq

    def publish(self, run_id: str, event: str, data: Any) -> RunEvent:
        """Append one event to a run's stream and wake its listeners."""
        live = self._live[run_id]
        self._next[run_id] += 1
        item = RunEvent.model_construct(seq=self._next[run_id], event=event, data=data)
        live.events.append(item)
        if live.resumable:
            live.unsaved.append(item)
            if live.saver is None or live.saver.done():
                live.saver = asyncio.create_task(self._save(run_id, live))
        for waiter in live.waiters:
            waiter.set()
        return item

    def end(self, run_id: str) -> None:
        """End a run's stream now: listeners get what is left, then stop (its events may
        still be on their way to storage: :meth:`close` waits for them)."""
        live = self._live.get(run_id)
        if live is None or live.ended:
            return
        live.ended = True
        for waiter in live.waiters:
            waiter.set()

    async def close(self, run_id: str) -> None:
        """End a run's stream (see :meth:`end`) and wait until every event of a resumable
        run is stored."""
        live = self._live.get(run_id)
        if live is None:
            return
        self.end(run_id)
        while live.saver is not None and not live.saver.done():
            await asyncio.shield(live.saver)
        if live.unsaved:
            await self._save(run_id, live)
        now = asyncio.get_running_loop().time()
        self._ended.append((now + self.keep_ended, run_id, live))
        while self._ended and (self._ended[0][0] <= now or len(self._ended) > self.keep_ended_runs):
            _, old_id, old = self._ended.popleft()
            if self._live.get(old_id) is old:
                del self._live[old_id]
                self._next.pop(old_id, None)

    def is_live(self, run_id: str) -> bool:
        live = self._live.get(run_id)
        return live is not None and not live.ended

    async def subscribe(self, run_id: str, *, after: int = 0) -> AsyncIterator[RunEvent]:
        """Events of the run with ``seq > after``: stored ones first, then live ones until
        the run ends. A run that is neither live here nor stored yields what is stored."""
        sent = after
        live = self._live.get(run_id)
        # kept here: every event after ``live.base``; before it, only in storage
        if live is None or sent < live.base:
            for item in await self.storage.run_events(run_id, after=sent):
                if live is not None and item.seq > live.base:
                    break
                yield item
                sent = item.seq
        if live is None:
            return
        waiter = asyncio.Event()
        live.waiters.add(waiter)
        try:
            while True:
                waiter.clear()
                start = max(0, sent - live.base)
                if start < len(live.events):
                    for item in live.events[start:]:
                        yield item
                        sent = item.seq
                    continue
                if live.ended:
                    return
                await waiter.wait()
        finally:
            live.waiters.discard(waiter)

    async def _save(self, run_id: str, live: _Live) -> None:
        while live.unsaved:
            batch, live.unsaved = live.unsaved, []
            await self.storage.append_run_events(run_id, batch)


__all__ = ["RunStreams"]
