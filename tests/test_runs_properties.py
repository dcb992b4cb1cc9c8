"""Hundreds of concurrent run requests with mixed multitask strategies at a few threads; the
engine's invariants hold throughout."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

from weft.errors import ConflictError
from weft.runtime import Runtime
from weft.schema import Run


async def test_mixed_strategies_keep_the_invariants(rt: Runtime) -> None:
    rng = random.Random(7)
    threads = [(await rt.threads.create()).thread_id for _ in range(3)]
    admitted: dict[str, list[Run]] = defaultdict(list)
    rejected = 0
    overlap: list[str] = []
    messages: list[str] = []
    stop = asyncio.Event()

    async def watch() -> None:  # at most one running run per thread, at every moment
        while not stop.is_set():
            running = await rt.storage.runs_with_status(["running"])
            per_thread = defaultdict(int)
            for run in running:
                per_thread[run.thread_id] += 1
            overlap.extend(t for t, n in per_thread.items() if t and n > 1)
            await asyncio.sleep(0.002)

    async def request(i: int) -> None:
        nonlocal rejected
        tid = rng.choice(threads)
        strategy = rng.choice(["enqueue", "enqueue", "reject", "interrupt", "rollback"])
        try:
            run = await rt.runs.create(
                tid, "slow", input={"seconds": 0.002}, multitask_strategy=strategy
            )
        except ConflictError as e:
            messages.append(str(e))
            rejected += 1
            return
        admitted[tid].append(run)

    watcher = asyncio.create_task(watch())
    await asyncio.gather(*(request(i) for i in range(200)))
    for runs in admitted.values():
        for run in runs:
            await rt.runs.join(None, run.run_id) if await _exists(rt, run) else None
    stop.set()
    await watcher

    assert overlap == []
    assert rejected > 0
    assert all("(multitask_strategy='reject')" in m for m in messages)
    for tid, runs in admitted.items():
        kept = [r for r in runs if await _exists(rt, r)]
        stored = {r.run_id: r for r in await rt.runs.list(tid, limit=1000)}
        statuses = [stored[r.run_id].status for r in kept]
        assert set(statuses) <= {"success", "interrupted"}
        # FIFO: runs that ran to the end started in the order of their admission
        done = sorted(
            (stored[r.run_id] for r in kept if stored[r.run_id].status == "success"),
            key=lambda r: (r.created_at, r.run_id),
        )
        starts = [r.started_at for r in done]
        assert starts == sorted(s for s in starts if s is not None)
        # rolled-back runs left no checkpoints
        gone = {r.run_id for r in runs} - set(stored)
        history = await rt.threads.history(tid, limit=10000)
        assert not {h.metadata.get("run_id") for h in history} & gone
        thread = await rt.threads.get(tid)
        assert thread.status != "busy"
        assert thread.counts.runs == len(stored)


async def _exists(rt: Runtime, run: Run) -> bool:
    try:
        await rt.runs.get(None, run.run_id)
    except Exception:  # noqa: BLE001 - deleted by a rollback
        return False
    return True
