"""The executor of one running plan: a loop that, at each step, records what ended and
starts what is ready, writing both (and their events) in one transaction.

Bookkeeping is incremental (a count of unfinished sources per thread, a heap of the threads
that became ready), so a step costs what changed, not the size of the plan. Each attempt is
an ordinary run of the engine; its thread is ``plan_thread_id(session, name)``, so after a
restart the executor finds the run an earlier process started and joins it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from weft.errors import ConflictError, NotFoundError, WeftError
from weft.plans import PlanRuntimeError, PlanSpec, condition_holds, thread_input
from weft.runner import error_result
from weft.schema import PLAN_FINAL_STATES, Plan, PlanThread, PlanThreadState
from weft.storage.base_plans import PlanEvent, PlanThreadPatch

if TYPE_CHECKING:
    from weft.plan_runs import Plans

_WATCH_SECONDS = 0.5
"""How often an interrupted thread is looked at for the run that resumed it."""
_FAILED = ("failed", "timed_out")


@dataclass
class _Ended:
    """What one attempt came to."""

    name: str
    attempt: int
    run_id: str | None
    state: Literal["succeeded", "failed", "timed_out", "interrupted"]
    output: Any = None
    error: str | None = None


@dataclass
class _Step:
    """The changes of one executor step, written in one transaction."""

    patches: list[PlanThreadPatch] = field(default_factory=list)
    events: list[PlanEvent] = field(default_factory=list)
    starts: list[tuple[str, int, dict[str, Any] | None]] = field(default_factory=list)
    cancels: list[str] = field(default_factory=list)
    """Threads whose runs are cancelled once the step is written (policy strict)."""


class Executor:
    """Runs one plan: a loop that, at each step, records what ended and starts what is ready.

    Bookkeeping is incremental (a count of unfinished sources per thread, a heap of the
    threads that became ready), so a step costs what changed, not the size of the plan.
    """

    task: asyncio.Task[None]

    def __init__(self, plans: Plans, plan: Plan, spec: PlanSpec, graph_ids: dict[str, str]):
        self.plans = plans
        self.session_id = plan.session_id
        self.spec = spec
        self.graph_ids = graph_ids
        self.dependents = spec.dependents()
        self.rows: dict[str, PlanThread] = {}
        self.outputs: dict[str, Any] = {}
        self.attempts: dict[str, asyncio.Task[None]] = {}
        self.ended: asyncio.Queue[_Ended] = asyncio.Queue()
        self.run_ids: dict[str, str] = {}
        """Runs started since the last step, written with the next one."""
        self.open_sources: dict[str, int] = {}
        self.ready: list[tuple[int, str]] = []
        self.retrying: set[str] = set()
        self.interrupted: set[str] = set()
        self.running = 0
        self.unfinished = 0

    # --- main loop ------------------------------------------------------------------------

    async def main(self) -> None:
        plans = self.plans
        heartbeat = asyncio.create_task(self._heartbeat())
        try:
            self._load(await plans.storage.plan_threads(self.session_id))
            for row in list(self.rows.values()):
                if row.state == "running":
                    self._launch(row.name, row.attempts, None, recovering=True)
            while True:
                step = _Step()
                self._collect(step)
                self._advance(step)
                finish: Literal["completed", "failed"] | None = None
                if self.unfinished == 0:
                    finish = "failed" if self._any_failed() else "completed"
                if step.patches or step.events or finish is not None:
                    await self._write(step, finish)
                if step.cancels:
                    await plans.cancel_runs(step.cancels)
                if finish is not None:
                    return
                for name, attempt, payload in step.starts:
                    self._launch(name, attempt, payload)
                await self._sleep()
        except ConflictError:
            await self._lost()
        finally:
            heartbeat.cancel()
            for task in self.attempts.values():
                task.cancel()
            plans.executors.pop(self.session_id, None)
            plans.notify(self.session_id)

    def _load(self, rows: Sequence[PlanThread]) -> None:
        for row in rows:
            self.rows[row.name] = row
            if row.state == "succeeded":
                self.outputs[row.name] = row.output
        for row in rows:
            self._track(row.name, None, row.state)
        for name, thread in self.spec.threads.items():
            self.open_sources[name] = sum(
                1 for s in thread.sources if self.rows[s].state not in PLAN_FINAL_STATES
            )
            if self.open_sources[name] == 0 and self.rows[name].state == "waiting":
                heapq.heappush(self.ready, (self.rows[name].position, name))

    def _any_failed(self) -> bool:
        return any(r.state in _FAILED for r in self.rows.values())

    async def _lost(self) -> None:
        """The plan is no longer ours to run: cancelled meanwhile, or its lease taken."""
        plan = await self.plans.storage.get_plan(self.session_id)
        if plan.status == "cancelled":
            await self.plans.cancel_runs([self.rows[n].thread_id for n in self.attempts])

    async def _heartbeat(self) -> None:
        plans = self.plans
        while True:
            await asyncio.sleep(plans.lease.total_seconds() / 3)
            until = datetime.now(UTC) + plans.lease
            if not await plans.storage.renew_plan_lease(
                self.session_id, lease_owner=plans.token, lease_until=until
            ):
                self.task.cancel()
                return

    async def _sleep(self) -> None:
        """Until an attempt ends, the next retry is due, or (with interrupted threads)
        the next look at them."""
        if not self.ended.empty():
            return
        timeout: float | None = None
        if self.retrying:
            now = datetime.now(UTC)
            due = min(self.rows[n].retry_at or now for n in self.retrying)
            timeout = max(0.0, (due - now).total_seconds())
        if self.interrupted:
            timeout = _WATCH_SECONDS if timeout is None else min(timeout, _WATCH_SECONDS)
        with contextlib.suppress(TimeoutError):
            ended = await asyncio.wait_for(self.ended.get(), timeout=timeout)
            self.ended.put_nowait(ended)
        if self.interrupted:
            await self._watch_interrupted()

    async def _write(self, step: _Step, finish: Literal["completed", "failed"] | None) -> None:
        plans = self.plans
        patches = step.patches
        for name, run_id in self.run_ids.items():
            patches.append(PlanThreadPatch(name, run_id=run_id))
            self.rows[name] = self.rows[name].model_copy(update={"run_id": run_id})
        if finish is not None:
            step.events.append(PlanEvent("plan_event", self._final_event(finish)))
        await plans.storage.plan_step(
            self.session_id,
            lease_owner=plans.token,
            patches=patches,
            events=step.events,
            now=datetime.now(UTC),
            finish=finish,
        )
        self.run_ids.clear()
        plans.notify(self.session_id)

    # --- deciding -------------------------------------------------------------------------

    def _collect(self, step: _Step) -> None:
        """Record the attempts that ended since the last step."""
        while not self.ended.empty():
            ended = self.ended.get_nowait()
            self.attempts.pop(ended.name, None)
            row = self.rows[ended.name]
            if row.state not in ("running", "interrupted") or row.attempts != ended.attempt:
                continue  # cancelled or superseded meanwhile
            now = datetime.now(UTC)
            if ended.run_id is not None:
                self.run_ids[ended.name] = ended.run_id
            base = {"thread": ended.name, "attempt": ended.attempt, "run_id": ended.run_id}
            if ended.state == "succeeded":
                self.outputs[ended.name] = ended.output
                self._set(step, ended.name, "succeeded", ended_at=now, output=ended.output,
                          clear={"deadline", "error"})  # fmt: skip
                step.events.append(self._event("thread_succeeded", base))
            elif ended.state == "interrupted":
                self._set(step, ended.name, "interrupted", clear={"deadline"})
                step.events.append(self._event("thread_interrupted", base))
            else:
                self._failed(step, ended, now, base)

    def _failed(self, step: _Step, ended: _Ended, now: datetime, base: dict[str, Any]) -> None:
        retries = self.spec.retries_of(ended.name)
        error = ended.error or ended.state
        if ended.attempt <= retries.max:
            delay = retries.delay(ended.attempt)
            self._set(step, ended.name, "retrying", retry_at=now + timedelta(seconds=delay),
                      error=error, clear={"deadline"})  # fmt: skip
            step.events.append(
                self._event("thread_retrying", {**base, "delay": round(delay, 3), "error": error})
            )
            return
        event = "thread_timed_out" if ended.state == "timed_out" else "thread_failed"
        self._set(step, ended.name, ended.state, ended_at=now, error=error, clear={"deadline"})
        step.events.append(self._event(event, {**base, "error": error}))
        if self.spec.policy == "strict":
            self._stop(step, f"plan stopped: '{ended.name}' {_said(ended.state)} (policy strict)")

    def _stop(self, step: _Step, reason: str) -> None:
        """Policy strict: everything not ended is cancelled."""
        now = datetime.now(UTC)
        for name, row in self.rows.items():
            if row.state in PLAN_FINAL_STATES:
                continue
            if row.state in ("running", "interrupted"):
                step.cancels.append(row.thread_id)
            self._set(step, name, "cancelled", ended_at=now, reason=reason, clear={"deadline"})
            step.events.append(self._event("thread_cancelled", {"thread": name, "reason": reason}))
            task = self.attempts.pop(name, None)
            if task is not None:
                task.cancel()
        self.ready.clear()

    def _advance(self, step: _Step) -> None:
        """Skip what cannot run, start what is ready (at most ``max_parallel`` at once)."""
        now = datetime.now(UTC)
        limit = self.spec.max_parallel
        for name in sorted(self.retrying, key=lambda n: self.rows[n].position):
            row = self.rows[name]
            if self.running >= limit or (row.retry_at is not None and row.retry_at > now):
                continue
            self._start(step, name, row.attempts + 1, None, now)
        while self.ready:
            position, name = heapq.heappop(self.ready)
            if self.rows[name].state != "waiting":
                continue
            thread = self.spec.threads[name]
            blocked = next((s for s in thread.sources if self.rows[s].state != "succeeded"), None)
            if blocked is not None:
                self._skip(step, name, f"source '{blocked}' {_said(self.rows[blocked].state)}", now)
                continue
            if self.running >= limit:
                heapq.heappush(self.ready, (position, name))
                break  # the rest waits for a free slot (a step costs what changed)
            try:
                if thread.when is not None and not condition_holds(self.spec, name, self.outputs):
                    self._skip(step, name, f"condition {thread.when!r} is false", now)
                    continue
                payload = thread_input(self.spec, name, self.outputs)
            except PlanRuntimeError as e:
                self._set(step, name, "failed", attempts=1, started_at=now, ended_at=now,
                          error=str(e))  # fmt: skip
                step.events.append(self._event("thread_failed", {"thread": name, "error": str(e)}))
                if self.spec.policy == "strict":
                    self._stop(step, f"plan stopped: '{name}' failed (policy strict)")
                    return
                continue
            self._start(step, name, 1, payload, now)

    def _start(
        self, step: _Step, name: str, attempt: int, payload: dict[str, Any] | None, now: datetime
    ) -> None:
        timeout = self.spec.timeout_of(name)
        deadline = now + timedelta(seconds=timeout) if timeout is not None else None
        first = {"started_at": now} if attempt == 1 else {}
        clear = {"retry_at"} if deadline is not None else {"retry_at", "deadline"}
        self._set(step, name, "running", attempts=attempt, deadline=deadline, clear=clear, **first)
        step.events.append(
            self._event(
                "thread_started",
                {"thread": name, "attempt": attempt, "thread_id": self.rows[name].thread_id},
            )
        )
        step.starts.append((name, attempt, payload))

    def _skip(self, step: _Step, name: str, reason: str, now: datetime) -> None:
        self._set(step, name, "skipped", ended_at=now, reason=reason)
        step.events.append(self._event("thread_skipped", {"thread": name, "reason": reason}))

    def _set(
        self, step: _Step, name: str, state: PlanThreadState, *,
        clear: set[str] | None = None, **fields: Any,
    ) -> None:  # fmt: skip
        """Change a row in memory and queue the same change for storage."""
        cleared = frozenset(clear or ())
        fields = {k: v for k, v in fields.items() if v is not None}
        step.patches.append(PlanThreadPatch(name, state=state, clear=cleared, **fields))
        old = self.rows[name]
        self.rows[name] = old.model_copy(
            update={"state": state, **fields, **dict.fromkeys(cleared)}
        )
        self._track(name, old.state, state)

    def _track(self, name: str, old: PlanThreadState | None, new: PlanThreadState) -> None:
        """Keep the counters and sets of :meth:`_advance` and :meth:`_sleep` in step."""
        for state, change in ((old, -1), (new, 1)):
            if state is None:
                continue
            if state == "running":
                self.running += change
            elif state == "retrying":
                (self.retrying.add if change > 0 else self.retrying.discard)(name)
            elif state == "interrupted":
                (self.interrupted.add if change > 0 else self.interrupted.discard)(name)
            if state not in PLAN_FINAL_STATES:
                self.unfinished += change
        if old is not None and old not in PLAN_FINAL_STATES and new in PLAN_FINAL_STATES:
            for dep in self.dependents.get(name, ()):
                self.open_sources[dep] -= 1
                if self.open_sources[dep] == 0 and self.rows[dep].state == "waiting":
                    heapq.heappush(self.ready, (self.rows[dep].position, dep))

    def _event(self, name: str, content: dict[str, Any]) -> PlanEvent:
        row = self.rows.get(str(content.get("thread")))
        return PlanEvent(
            "thread_event",
            {"event": name, **{k: v for k, v in content.items() if v is not None}},
            thread_id=row.thread_id if row is not None else None,
            run_id=content.get("run_id"),
        )

    def _final_event(self, finish: str) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for row in self.rows.values():
            counts[row.state] = counts.get(row.state, 0) + 1
        return {"event": f"plan_{finish}", "counts": counts}

    # --- attempts -------------------------------------------------------------------------

    def _launch(
        self, name: str, attempt: int, payload: dict[str, Any] | None, *, recovering: bool = False
    ) -> None:
        self.attempts[name] = asyncio.create_task(
            self._attempt(name, attempt, payload, recovering), name=f"weft-plan-{name}"
        )

    async def _attempt(
        self, name: str, attempt: int, payload: dict[str, Any] | None, recovering: bool
    ) -> None:
        """One attempt of one thread: its run, waited for until the thread's deadline."""
        try:
            result, run_id = await self._run(self.rows[name], attempt, payload, recovering)
        except (WeftError, PlanRuntimeError) as e:  # no run: say, the workflow is gone
            self.ended.put_nowait(_Ended(name, attempt, None, "failed", error=str(e)))
            return
        self.ended.put_nowait(_outcome(name, attempt, run_id, result))

    async def _run(
        self, row: PlanThread, attempt: int, payload: dict[str, Any] | None, recovering: bool
    ) -> tuple[Any, str]:
        plans = self.plans
        tid = row.thread_id
        run_id = await self._run_of(tid, attempt) if recovering else None
        future: asyncio.Future[Any]
        if run_id is None:
            if attempt == 1:
                await plans.threads.create(
                    thread_id=tid,
                    graph_id=self.graph_ids[row.name],
                    session_id=self.session_id,
                    name=row.name,
                    metadata=self.spec.threads[row.name].metadata,
                    if_exists="do_nothing",
                )
            if attempt > 1 or recovering:
                payload = await self._retry_input(row)
            run, future = await plans.runs.submit(
                tid,
                self.spec.threads[row.name].workflow,
                input=payload,
                metadata={"weft_plan": {"session": self.session_id, "thread": row.name,
                                        "attempt": attempt}},
            )  # fmt: skip
            run_id = run.run_id
            self.run_ids[row.name] = run_id
        else:
            future = asyncio.ensure_future(plans.runs.join(tid, run_id))
        deadline = self.rows[row.name].deadline
        remaining = None if deadline is None else (deadline - datetime.now(UTC)).total_seconds()
        try:
            async with asyncio.timeout(remaining):
                result = await future
        except TimeoutError:
            with contextlib.suppress(WeftError):
                await plans.runs.cancel(tid, run_id, action="interrupt", wait=True)
            timeout = self.spec.timeout_of(row.name)
            return {"__timeout__": f"the thread passed its timeout of {timeout} s"}, run_id
        finally:
            future.cancel()
        if result is None:  # cancelled by someone else
            run = await plans.runs.get(tid, run_id)
            return error_result(run.status, run.error or run.status), run_id
        return result, run_id

    async def _run_of(self, thread_id: str, attempt: int) -> str | None:
        """The run an earlier process started for this attempt (None: it did not get to)."""
        with contextlib.suppress(NotFoundError):
            for run in await self.plans.runs.list(thread_id, limit=10):
                meta = run.metadata.get("weft_plan")
                if isinstance(meta, dict) and meta.get("attempt") == attempt:
                    return run.run_id
        return None

    async def _retry_input(self, row: PlanThread) -> dict[str, Any] | None:
        """A retry continues from the last checkpoint when the failure left work pending;
        otherwise it starts again with the thread's input."""
        state = await self.plans.threads.state(row.thread_id)
        if state.next:
            return None
        return thread_input(self.spec, row.name, self.outputs)

    async def _watch_interrupted(self) -> None:
        """An interrupted thread goes on when a run resumes it (any client may send it)."""
        plans = self.plans
        for name in sorted(self.interrupted):
            row = self.rows[name]
            if name in self.attempts:
                continue
            thread = await plans.threads.get(row.thread_id)
            if thread.status in ("busy", "interrupted"):
                continue
            runs = await plans.runs.list(row.thread_id, limit=1)
            if runs and runs[0].run_id != row.run_id:
                self.attempts[name] = asyncio.create_task(self._join(name, row, runs[0].run_id))
            else:  # resumed without a run record (``weft invoke --resume``): read the thread
                await self._resumed_directly(name, row, thread.status)

    async def _resumed_directly(self, name: str, row: PlanThread, status: str) -> None:
        if status == "error":
            error = "the thread failed after it was resumed"
            self.ended.put_nowait(_Ended(name, row.attempts, row.run_id, "failed", error=error))
            return
        state = await self.plans.threads.state(row.thread_id)
        if not state.interrupts and not state.next:
            self.ended.put_nowait(
                _Ended(name, row.attempts, row.run_id, "succeeded", output=state.values)
            )

    async def _join(self, name: str, row: PlanThread, run_id: str) -> None:
        """Take the result of the run that resumed an interrupted thread."""
        result = await self.plans.runs.join(row.thread_id, run_id)
        self.ended.put_nowait(_outcome(name, row.attempts, run_id, result))


def _outcome(name: str, attempt: int, run_id: str | None, result: Any) -> _Ended:
    if isinstance(result, dict):
        if "__timeout__" in result:
            return _Ended(name, attempt, run_id, "timed_out", error=str(result["__timeout__"]))
        if "__error__" in result:
            error = result["__error__"]
            message = error.get("message") if isinstance(error, dict) else None
            if isinstance(error, dict) and error.get("error") == "timeout":
                return _Ended(name, attempt, run_id, "timed_out", error=str(message))
            return _Ended(name, attempt, run_id, "failed", error=str(message or error))
        if result.get("__interrupt__"):
            return _Ended(name, attempt, run_id, "interrupted")
    return _Ended(name, attempt, run_id, "succeeded", output=result)


def _said(state: str) -> str:
    return {
        "failed": "failed",
        "timed_out": "timed out",
        "skipped": "was skipped",
        "cancelled": "was cancelled",
    }.get(state, state)
