"""The run engine through ``weft.Runtime``: admission, queue, multitask strategies, streams
and their replay, join/wait/cancel, interrupts, bookkeeping, timeouts and webhooks, on every
storage backend."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread as OsThread
from typing import Any, ClassVar

import pytest

from weft.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    UnprocessableEntityError,
)
from weft.runtime import Runtime
from weft.schema import RunEvent
from weft.webhooks import Webhooks


async def collect(events: Any) -> list[RunEvent]:
    return [e async for e in events]


async def test_wait_returns_the_final_values_and_keeps_the_books(rt: Runtime) -> None:
    thread = await rt.threads.create()
    result = await rt.runs.wait(thread.thread_id, "counter", input={})
    assert result["count"] == 1
    assert result["messages"][0]["content"] == "turn 1"
    [run] = await rt.runs.list(thread.thread_id)
    assert run.status == "success"
    assert run.assistant_id == (await rt.assistants.get("counter")).assistant_id
    got = await rt.threads.get(thread.thread_id)
    assert got.status == "idle"
    assert got.metadata["graph_id"] == "counter"
    assert got.metadata["assistant_id"] == run.assistant_id
    assert got.counts.runs == 1
    assert got.counts.messages == 1
    assert got.values is not None
    assert got.values["count"] == 1
    history = await rt.threads.history(thread.thread_id, limit=100)
    assert got.counts.checkpoints == len(history)
    assert all(h.metadata.get("run_id") == run.run_id for h in history)


async def test_wait_and_stream_see_their_books_at_once(rt: Runtime) -> None:
    """``wait`` and ``stream`` admit and finish early (SQLite: before the commit); what
    they report is already what every read sees."""
    for _ in range(10):
        thread = await rt.threads.create()
        await rt.runs.wait(thread.thread_id, "counter", input={})
        [run] = await rt.runs.list(thread.thread_id)
        assert run.status == "success"
        assert (await rt.threads.get(thread.thread_id)).status == "idle"
        run, events = await rt.runs.stream(thread.thread_id, "counter", input={})
        assert (await rt.runs.get(thread.thread_id, run.run_id)).status in ("pending", "running")
        await collect(events)
        assert (await rt.runs.get(thread.thread_id, run.run_id)).status == "success"


async def test_an_admission_that_fails_to_commit_ends_the_run_with_the_error(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the commit of an early admission fails (the disk, not the request), the run's
    waiter gets the error and its task stops."""
    admit = rt.storage.admit

    async def failing_commit(*args: Any, **kwargs: Any) -> Any:
        admission = await admit(*args, **kwargs)

        async def commit() -> None:
            await asyncio.sleep(0.2)
            raise OSError("disk I/O error")

        return dataclasses.replace(admission, committed=commit())

    monkeypatch.setattr(rt.storage, "admit", failing_commit)
    thread = await rt.threads.create()
    result = await rt.runs.wait(thread.thread_id, "slow", input={"seconds": 2})
    assert result == {
        "__error__": {
            "error": "StorageError",
            "message": "the run's record could not be stored: disk I/O error",
        }
    }


async def test_stream_events_have_the_platforms_names_and_increasing_ids(rt: Runtime) -> None:
    thread = await rt.threads.create()
    run, events = await rt.runs.stream(
        thread.thread_id, "counter", input={}, stream_mode=["values", "updates", "debug"]
    )
    got = await collect(events)
    assert got[0].event == "metadata"
    assert got[0].data == {"run_id": run.run_id, "attempt": 1}
    seqs = [e.seq for e in got]
    assert seqs == list(range(1, len(got) + 1))
    names = {e.event for e in got}
    assert {"values", "updates", "debug"} <= names
    last_values = [e for e in got if e.event == "values"][-1]
    assert last_values.data["count"] == 1


async def test_messages_tuple_and_messages_modes(rt: Runtime) -> None:
    thread = await rt.threads.create()
    _, events = await rt.runs.stream(
        thread.thread_id, "counter", input={}, stream_mode=["messages-tuple"]
    )
    got = [e for e in await collect(events) if e.event != "metadata"]
    assert got
    assert {e.event for e in got} == {"messages"}
    message, meta = got[0].data
    assert message["content"] == "turn 1"
    assert meta["langgraph_node"] == "speak"


async def test_interrupts_reach_the_stream_and_wait_and_resume(rt: Runtime) -> None:
    thread = await rt.threads.create()
    _, events = await rt.runs.stream(
        thread.thread_id, "review", input={"draft": "d"}, stream_mode="custom"
    )
    got = await collect(events)
    interrupt = [e for e in got if e.event == "updates"]
    assert interrupt[0].data["__interrupt__"][0]["value"] == {"question": "approve d?"}
    assert (await rt.threads.get(thread.thread_id)).status == "interrupted"
    waited = await rt.runs.wait(thread.thread_id, "review", command={"resume": "yes"})
    assert waited == {"draft": "d", "verdict": "yes"}
    assert (await rt.threads.get(thread.thread_id)).status == "idle"
    other = await rt.threads.create()
    stopped = await rt.runs.wait(other.thread_id, "review", input={"draft": "e"})
    assert stopped["__interrupt__"][0]["value"] == {"question": "approve e?"}


async def test_one_run_per_thread_in_fifo_order(rt: Runtime) -> None:
    thread = await rt.threads.create()
    runs = [
        await rt.runs.create(thread.thread_id, "slow", input={"seconds": 0.05}) for _ in range(5)
    ]
    results = [await rt.runs.join(thread.thread_id, r.run_id) for r in runs]
    assert [len(r["done"]) for r in results] == [2, 4, 6, 8, 10]
    listed = await rt.runs.list(thread.thread_id, limit=10)
    assert [r.run_id for r in reversed(listed)] == [r.run_id for r in runs]
    assert all(r.status == "success" for r in listed)


async def test_a_delayed_run_waits_and_holds_the_runs_behind_it(rt: Runtime) -> None:
    thread = await rt.threads.create()
    tid = thread.thread_id
    delayed = await rt.runs.create(tid, "slow", input={"seconds": 0}, after_seconds=0.3)
    behind = await rt.runs.create(tid, "slow", input={"seconds": 0})
    assert (await rt.runs.get(tid, delayed.run_id)).status == "pending"
    assert (await rt.runs.get(tid, behind.run_id)).status == "pending"
    assert (await rt.runs.join(tid, behind.run_id))["done"] == ["nap", "after"] * 2
    first, second = [await rt.runs.get(tid, r.run_id) for r in (delayed, behind)]
    assert (first.status, second.status) == ("success", "success")
    assert first.started_at is not None
    assert second.started_at is not None
    assert first.started_at < second.started_at
    assert first.kwargs["after_seconds"] == 0.3


async def test_reject_and_interrupt_strategies(rt: Runtime) -> None:
    thread = await rt.threads.create()
    first = await rt.runs.create(thread.thread_id, "slow", input={"seconds": 2})
    with pytest.raises(
        ConflictError,
        match=rf"^thread {thread.thread_id} is busy: run {first.run_id} is (pending|running) "
        r"\(multitask_strategy='reject'\)$",
    ):
        await rt.runs.create(
            thread.thread_id, "slow", input={"seconds": 0}, multitask_strategy="reject"
        )
    second = await rt.runs.create(
        thread.thread_id, "slow", input={"seconds": 0}, multitask_strategy="interrupt"
    )
    result = await rt.runs.join(thread.thread_id, second.run_id)
    assert result["done"] == ["nap", "after"]
    assert (await rt.runs.get(thread.thread_id, first.run_id)).status == "interrupted"


async def test_rollback_strategy_deletes_the_cancelled_run_and_its_checkpoints(
    rt: Runtime,
) -> None:
    thread = await rt.threads.create()
    done = await rt.runs.create(thread.thread_id, "slow", input={"seconds": 0})
    await rt.runs.join(thread.thread_id, done.run_id)
    before = await rt.threads.history(thread.thread_id, limit=100)
    first = await rt.runs.create(thread.thread_id, "slow", input={"seconds": 2})
    await asyncio.sleep(0.3)  # it has written its input checkpoint
    second = await rt.runs.create(
        thread.thread_id, "slow", input={"seconds": 0}, multitask_strategy="rollback"
    )
    await rt.runs.join(thread.thread_id, second.run_id)
    with pytest.raises(NotFoundError):
        await rt.runs.get(thread.thread_id, first.run_id)
    history = await rt.threads.history(thread.thread_id, limit=100)
    assert not any(h.metadata.get("run_id") == first.run_id for h in history)
    assert len(history) > len(before)


async def test_cancel(rt: Runtime) -> None:
    thread = await rt.threads.create()
    run = await rt.runs.create(thread.thread_id, "slow", input={"seconds": 5})
    await rt.runs.cancel(thread.thread_id, run.run_id, wait=True)
    assert (await rt.runs.get(thread.thread_id, run.run_id)).status == "interrupted"
    assert (await rt.threads.get(thread.thread_id)).status != "busy"
    with pytest.raises(
        ConflictError, match=rf"^run {run.run_id} already ended \(interrupted\); nothing to cancel$"
    ):
        await rt.runs.cancel(thread.thread_id, run.run_id)
    with pytest.raises(UnprocessableEntityError, match=r"^action must be one of interrupt"):
        await rt.runs.cancel(thread.thread_id, run.run_id, action="stop")


async def test_cancel_of_a_finished_run_is_refused(rt: Runtime) -> None:
    thread = await rt.threads.create()
    run = await rt.runs.create(thread.thread_id, "counter", input={})
    await rt.runs.join(thread.thread_id, run.run_id)
    with pytest.raises(
        ConflictError, match=rf"^run {run.run_id} already ended \(success\); nothing to cancel$"
    ):
        await rt.runs.cancel(thread.thread_id, run.run_id, action="rollback")
    assert (await rt.runs.get(thread.thread_id, run.run_id)).status == "success"


async def test_cancel_of_a_pending_run_starts_the_next(rt: Runtime) -> None:
    thread = await rt.threads.create()
    tid = thread.thread_id
    first = await rt.runs.create(tid, "slow", input={"seconds": 0.3})
    second = await rt.runs.create(tid, "slow", input={"seconds": 0})
    third = await rt.runs.create(tid, "slow", input={"seconds": 0})
    await rt.runs.cancel(tid, second.run_id)
    assert (await rt.runs.join(tid, third.run_id))["done"] == ["nap", "after", "nap", "after"]
    assert [(await rt.runs.get(tid, r.run_id)).status for r in (first, second, third)] == [
        "success",
        "interrupted",
        "success",
    ]
    assert (await rt.threads.get(tid)).status == "idle"


async def test_a_stream_consumer_leaving_cancels_with_on_disconnect_cancel(rt: Runtime) -> None:
    thread = await rt.threads.create()
    tid = thread.thread_id
    run, events = await rt.runs.stream(
        tid, "slow", input={"seconds": 5}, stream_mode="values", on_disconnect="cancel"
    )
    first = await anext(events)
    assert first.event == "metadata"
    await events.aclose()  # type: ignore[attr-defined]
    assert await rt.runs.join(tid, run.run_id) is None
    ended = await rt.runs.get(tid, run.run_id)
    assert ended.status == "interrupted"
    assert ended.error == "cancelled (interrupt)"
    assert (await rt.threads.get(tid)).status == "idle"

    # the default, "continue": the run goes on without its listener
    kept, events = await rt.runs.stream(tid, "slow", input={"seconds": 0.2})
    assert (await anext(events)).event == "metadata"
    await events.aclose()  # type: ignore[attr-defined]
    assert (await rt.runs.join(tid, kept.run_id))["done"] == ["nap", "after"]
    assert (await rt.runs.get(tid, kept.run_id)).status == "success"

    # a consumer that reads to the end cancels nothing
    whole, events = await rt.runs.stream(tid, "slow", input={"seconds": 0}, on_disconnect="cancel")
    assert (await collect(events))[-1].event == "values"
    assert (await rt.runs.get(tid, whole.run_id)).status == "success"


async def test_cancel_many_by_ids(rt: Runtime) -> None:
    thread = await rt.threads.create()
    tid = thread.thread_id
    running = await rt.runs.create(tid, "slow", input={"seconds": 5})
    pending = await rt.runs.create(tid, "slow", input={"seconds": 5})
    done = await rt.runs.create((await rt.threads.create()).thread_id, "counter", input={})
    await rt.runs.join(None, done.run_id)
    count = await rt.runs.cancel_many(run_ids=[running.run_id, pending.run_id, done.run_id])
    assert count == 2  # the finished one is left as it is
    for run in (running, pending):
        await rt.runs.join(tid, run.run_id)
        assert (await rt.runs.get(tid, run.run_id)).status == "interrupted"
    assert (await rt.runs.get(None, done.run_id)).status == "success"
    assert (await rt.threads.get(tid)).status == "idle"
    other = await rt.threads.create()
    with pytest.raises(NotFoundError, match=rf"^run {running.run_id} not found in thread "):
        await rt.runs.cancel_many(thread_id=other.thread_id, run_ids=[running.run_id])


async def test_cancel_many_by_status(rt: Runtime) -> None:
    one, two = (await rt.threads.create()).thread_id, (await rt.threads.create()).thread_id
    a_running = await rt.runs.create(one, "slow", input={"seconds": 0.5})
    a_pending = [await rt.runs.create(one, "slow", input={"seconds": 0}) for _ in range(2)]
    b_running = await rt.runs.create(two, "slow", input={"seconds": 5})

    assert await rt.runs.cancel_many(thread_id=one, status="pending") == 2
    assert (await rt.runs.join(one, a_running.run_id))["done"] == ["nap", "after"]
    statuses = [(await rt.runs.get(one, r.run_id)).status for r in (a_running, *a_pending)]
    assert statuses == ["success", "interrupted", "interrupted"]
    assert (await rt.runs.get(two, b_running.run_id)).status == "running"  # other thread

    c_running = await rt.runs.create(one, "slow", input={"seconds": 5})
    c_pending = await rt.runs.create(one, "slow", input={"seconds": 0})
    assert await rt.runs.cancel_many(status="running") == 2  # every thread
    assert (await rt.runs.join(one, c_pending.run_id))["done"][-2:] == ["nap", "after"]
    for tid, run in ((one, c_running), (two, b_running)):
        assert (await rt.runs.get(tid, run.run_id)).status == "interrupted"
    assert (await rt.runs.get(one, c_pending.run_id)).status == "success"

    d_running = await rt.runs.create(one, "slow", input={"seconds": 5})
    d_pending = await rt.runs.create(one, "slow", input={"seconds": 5})
    e_running = await rt.runs.create(two, "slow", input={"seconds": 5})
    assert await rt.runs.cancel_many(status="all") == 3
    for tid, run in ((one, d_running), (one, d_pending), (two, e_running)):
        await rt.runs.join(tid, run.run_id)
        assert (await rt.runs.get(tid, run.run_id)).status == "interrupted"
    assert [(await rt.threads.get(t)).status for t in (one, two)] == ["idle", "idle"]
    assert await rt.runs.cancel_many(status="all") == 0
    with pytest.raises(
        UnprocessableEntityError, match=r"^status must be one of pending, running, all, not 'done'$"
    ):
        await rt.runs.cancel_many(status="done")


async def test_errors_and_timeouts_end_the_run(rt: Runtime) -> None:
    thread = await rt.threads.create()
    run, events = await rt.runs.stream(thread.thread_id, "failing", input={})
    got = await collect(events)
    assert got[-1].event == "error"
    assert got[-1].data == {"error": "ValueError", "message": "the node failed on purpose"}
    assert (await rt.runs.get(thread.thread_id, run.run_id)).status == "error"
    assert (await rt.threads.get(thread.thread_id)).status == "error"
    slow = await rt.threads.create()
    result = await rt.runs.wait(slow.thread_id, "slow", input={"seconds": 30})
    assert result["__error__"]["error"] == "TimeoutError"
    [timed_out] = await rt.runs.list(slow.thread_id)
    assert timed_out.status == "timeout"


async def test_resumable_stream_replays_after_last_event_id(rt: Runtime) -> None:
    thread = await rt.threads.create()
    run, events = await rt.runs.stream(
        thread.thread_id,
        "counter",
        input={},
        stream_mode=["values", "updates"],
        stream_resumable=True,
    )
    everything = await collect(events)
    again = await collect(
        await rt.runs.join_stream(thread.thread_id, run.run_id, last_event_id="2")
    )
    assert [e.seq for e in again] == [e.seq for e in everything if e.seq > 2]
    assert again == [e for e in everything if e.seq > 2]
    stored = await rt.storage.run_events(run.run_id)
    assert stored == everything
    with pytest.raises(BadRequestError, match=r"^Last-Event-ID must be an event id"):
        await rt.runs.join_stream(thread.thread_id, run.run_id, last_event_id="abc")


async def test_stateless_runs(rt: Runtime) -> None:
    result = await rt.runs.wait(None, "counter", input={})
    assert result["count"] == 1
    assert await rt.threads.count() == 0  # its thread went with it
    kept = await rt.runs.wait(None, "counter", input={}, on_completion="keep")
    assert kept["count"] == 1
    assert await rt.threads.count() == 1


async def test_bad_input(rt: Runtime) -> None:
    thread = await rt.threads.create()
    tid = thread.thread_id
    with pytest.raises(BadRequestError, match=r"^give either input or command, not both$"):
        await rt.runs.create(tid, "counter", input={}, command={"resume": 1})
    with pytest.raises(UnprocessableEntityError, match=r"^unsupported field\(s\): colour$"):
        await rt.runs.create(tid, "counter", input={}, colour="red")
    with pytest.raises(UnprocessableEntityError, match=r"^stream_mode: must be 'values'"):
        await rt.runs.create(tid, "counter", input={}, stream_mode="everything")
    with pytest.raises(BadRequestError, match=r"^a resume needs a thread"):
        await rt.runs.create(None, "counter", command={"resume": 1})
    with pytest.raises(BadRequestError, match=r"^set either config.configurable or context"):
        await rt.runs.create(tid, "counter", config={"configurable": {"a": 1}}, context={"b": 2})
    with pytest.raises(
        UnprocessableEntityError, match=r"^assistant_id must be a UUID \(or a graph id\)"
    ):
        await rt.runs.create(tid, "nope", input={})
    with pytest.raises(NotFoundError, match=r"^assistant [0-9a-f-]+ not found$"):
        await rt.runs.create(tid, str(uuid.uuid4()), input={})
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=f"^thread {missing} not found$"):
        await rt.runs.create(missing, "counter", input={})
    created = await rt.runs.wait(missing, "counter", input={}, if_not_exists="create")
    assert created["count"] == 1
    with pytest.raises(BadRequestError, match=r"points to 127.0.0.1, a loopback, private"):
        await rt.runs.create(tid, "counter", input={}, webhook="http://127.0.0.1:9/hook")
    with pytest.raises(BadRequestError, match=r"^webhook must be an http"):
        await rt.runs.create(tid, "counter", input={}, webhook="ftp://example.com/x")
    assert await rt.runs.list(tid) == []  # nothing half-written
    snap = await rt.threads.snapshot(missing, "s")
    with pytest.raises(ConflictError, match=r"is a snapshot and is read-only: run refused"):
        await rt.runs.create(snap.thread_id, "counter", input={})


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_webhook_receives_the_run_and_its_values(rt: Runtime) -> None:
    _Hook.received.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    OsThread(target=server.serve_forever, daemon=True).start()
    try:
        rt.runs.webhooks = Webhooks(allow_private=True)
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        thread = await rt.threads.create()
        run = await rt.runs.create(thread.thread_id, "counter", input={}, webhook=url)
        await rt.runs.join(thread.thread_id, run.run_id)
        for _ in range(100):
            if _Hook.received:
                break
            await asyncio.sleep(0.05)
        [body] = _Hook.received
        assert body["run_id"] == run.run_id
        assert body["status"] == "success"
        assert body["values"]["count"] == 1
    finally:
        server.shutdown()


async def test_wait_ends_when_another_process_on_the_database_ran_the_run(
    rt: Runtime, database_url: str
) -> None:
    if database_url.endswith(":memory:"):
        pytest.skip("an in-memory database belongs to one runtime")
    async with Runtime.open(rt.settings) as other:
        thread = await rt.threads.create()
        await rt.runs.create(thread.thread_id, "slow", input={"seconds": 0.3})
        # admitted by `other` behind the first run; `rt` takes it up when the first one ends
        async with asyncio.timeout(30):
            result = await other.runs.wait(thread.thread_id, "slow", input={"seconds": 0})
        assert result["done"] == ["nap", "after", "nap", "after"]
        runs = await other.runs.list(thread.thread_id)
        assert [r.status for r in runs] == ["success", "success"]
