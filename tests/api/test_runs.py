"""Runs over HTTP through the official SDK client (and raw HTTP for headers, status codes
and bytes on the wire): every stream mode, subgraph event names, resumable streams and
Last-Event-ID, interrupts, multitask strategies, background runs, cancellation, stateless
runs, the thread stream, and bad input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    UnprocessableEntityError,
)
from langgraph_sdk.schema import StreamPart

from tests.api.conftest import Server
from tests.api.unstorable import NAN, RANGE, check
from weft.errors import WeftError

Event = tuple[str | None, str, Any]
"""One server-sent event as read off the wire: id, event, data."""


async def sse_events(response: httpx.Response) -> AsyncIterator[Event]:
    """The events of an SSE response (comments skipped)."""
    event_id: str | None = None
    name = "message"
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                yield event_id, name, json.loads("\n".join(data))
            event_id, name, data = None, "message", []
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "id":
                event_id = value
            elif field == "event":
                name = value
            elif field == "data":
                data.append(value)


async def parts(stream: AsyncIterator[StreamPart]) -> list[StreamPart]:
    return [p async for p in stream]


async def status_becomes(client: LangGraphClient, tid: str, rid: str, wanted: str) -> None:
    """Wait (bounded) until the run's status is ``wanted``."""
    for _ in range(200):
        if (await client.runs.get(tid, rid))["status"] == wanted:
            return
        await asyncio.sleep(0.05)
    assert (await client.runs.get(tid, rid))["status"] == wanted


async def test_every_stream_mode_over_sse(client: LangGraphClient, server: Server) -> None:
    tid = (await client.threads.create())["thread_id"]

    async def stream(graph: str, mode: str, **options: Any) -> list[StreamPart]:
        got = await parts(client.runs.stream(tid, graph, input={}, stream_mode=mode, **options))
        assert got[0].event == "metadata"
        assert set(got[0].data) == {"run_id", "attempt"}
        return got[1:]

    values = await stream("counter", "values")
    assert {p.event for p in values} == {"values"}
    assert values[-1].data["count"] == 1
    updates = await stream("counter", "updates")
    assert [next(iter(p.data)) for p in updates] == ["speak", "add_one"]
    messages = await stream("counter", "messages")
    assert [p.event for p in messages] == ["messages/metadata", "messages/complete"]
    assert messages[-1].data[0]["content"] == "turn 3"
    pairs = await stream("counter", "messages-tuple")
    assert [p.event for p in pairs] == ["messages"]
    message, meta = pairs[0].data
    assert (message["content"], meta["langgraph_node"]) == ("turn 4", "speak")
    debug = await stream("counter", "debug")
    assert {p.event for p in debug} == {"debug"}
    assert {p.data["type"] for p in debug} == {"checkpoint", "task", "task_result"}
    events = await stream("counter", "events")
    assert {p.event for p in events} == {"events"}
    assert {"on_chain_start", "on_chain_end"} <= {p.data["event"] for p in events}
    tasks = await stream("streamer", "tasks")
    assert {p.event for p in tasks} == {"tasks"}
    assert {p.data["name"] for p in tasks} == {"outer_step", "inner"}
    checkpoints = await stream("streamer", "checkpoints")
    assert {p.event for p in checkpoints} == {"checkpoints"}
    assert checkpoints[-1].data["values"]["steps"][-2:] == ["outer", "inner"]
    custom = await stream("streamer", "custom", stream_subgraphs=True)
    [event] = custom
    assert event.event.startswith("custom|inner:")
    assert event.data == {"progress": "inner"}
    nested = await stream("streamer", "values", stream_subgraphs=True)
    names = [p.event.split(":")[0] for p in nested]
    assert names == ["values", "values|inner", "values|inner", "values"]
    with pytest.raises(UnprocessableEntityError) as bad:
        await parts(client.runs.stream(tid, "counter", input={}, stream_mode="everything"))
    assert bad.value.message.startswith("stream_mode: must be 'values', 'updates'")

    async with (
        server.http() as http,
        http.stream(
            "POST", f"/threads/{tid}/runs/stream", json={"assistant_id": "counter", "input": {}}
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        wire = [e async for e in sse_events(response)]
        run_id = wire[0][2]["run_id"]
        assert response.headers["content-location"] == f"/threads/{tid}/runs/{run_id}"
        assert response.headers["location"] == f"/threads/{tid}/runs/{run_id}/stream"
    assert wire[0][:2] == ("1", "metadata")
    assert [e[0] for e in wire] == [str(n) for n in range(1, len(wire) + 1)]

    errors = await parts(client.runs.stream(tid, "failing", input={}))
    assert errors[-1] == StreamPart(
        "error",
        {"error": "ValueError", "message": "the node failed on purpose"},
        errors[-1].id,
    )
    threads_before = await client.threads.count()
    stateless = await parts(client.runs.stream(None, "counter", input={}))
    assert stateless[-1].data["count"] == 1
    assert await client.threads.count() == threads_before  # its thread went with it


async def test_reconnect_with_last_event_id(client: LangGraphClient, server: Server) -> None:
    tid = (await client.threads.create())["thread_id"]
    body = {
        "assistant_id": "slow",
        "input": {"seconds": 0.5},
        "stream_mode": ["values", "updates"],
        "stream_resumable": True,
    }
    seen: list[Event] = []
    async with (
        server.http() as http,
        http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response,
    ):
        async for event in sse_events(response):
            seen.append(event)
            if len(seen) == 2:  # metadata and the input's values; the node still naps
                break
    run_id = seen[0][2]["run_id"]
    assert (await client.runs.get(tid, run_id))["status"] == "running"  # the drop let it run
    rest = await parts(client.runs.join_stream(tid, run_id, last_event_id=seen[-1][0]))
    everything = await parts(client.runs.join_stream(tid, run_id, last_event_id="0"))
    assert [(p.id, p.event, p.data) for p in everything] == [
        *seen,
        *[(p.id, p.event, p.data) for p in rest],
    ]
    assert [p.event for p in rest] == ["updates", "values", "updates", "values"]
    assert rest[-1].data["done"] == ["nap", "after"]
    only = await parts(
        client.runs.join_stream(tid, run_id, stream_mode="updates", last_event_id="0")
    )
    assert [p.event for p in only] == ["metadata", "updates", "updates"]
    with pytest.raises(BadRequestError) as bad:
        await parts(client.runs.join_stream(tid, run_id, last_event_id="abc"))
    assert bad.value.message.startswith("Last-Event-ID must be an event id this server sent")
    with pytest.raises(UnprocessableEntityError) as mode:
        await parts(client.runs.join_stream(tid, run_id, stream_mode="everything"))
    assert mode.value.message.startswith("stream_mode must be one of values, updates")
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as gone:
        await parts(client.runs.join_stream(tid, missing))
    assert gone.value.message == f"run {missing} not found in thread {tid}"


async def test_interrupt_wait_join_and_resume(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    waited = await client.runs.wait(tid, "review", input={"draft": "d"})
    assert isinstance(waited, dict)
    assert waited["draft"] == "d"
    assert waited["__interrupt__"][0]["value"] == {"question": "approve d?"}
    assert (await client.threads.get(tid))["status"] == "interrupted"
    [run] = await client.runs.list(tid)
    joined = await client.runs.join(tid, run["run_id"])
    assert joined["__interrupt__"][0]["value"] == {"question": "approve d?"}
    resumed = await client.runs.wait(tid, "review", command={"resume": "yes"})
    assert resumed == {"draft": "d", "verdict": "yes"}
    assert (await client.threads.get(tid))["status"] == "idle"
    other = (await client.threads.create())["thread_id"]
    streamed = await parts(
        client.runs.stream(other, "review", input={"draft": "e"}, stream_mode="custom")
    )
    assert streamed[-1].event == "updates"  # interrupts arrive whatever the modes
    assert streamed[-1].data["__interrupt__"][0]["value"] == {"question": "approve e?"}
    failed = await client.runs.wait(tid, "failing", input={}, raise_error=False)
    assert failed == {"__error__": {"error": "ValueError", "message": "the node failed on purpose"}}
    with pytest.raises(Exception, match=r"^ValueError: the node failed on purpose$"):
        await client.runs.wait(tid, "failing", input={})


async def test_multitask_strategies(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    first = await client.runs.create(tid, "slow", input={"seconds": 5})
    with pytest.raises(ConflictError) as rejected:
        await client.runs.create(tid, "slow", input={"seconds": 0}, multitask_strategy="reject")
    assert rejected.value.message in {
        f"thread {tid} is busy: run {first['run_id']} is {s} (multitask_strategy='reject')"
        for s in ("pending", "running")
    }
    second = await client.runs.create(
        tid, "slow", input={"seconds": 0}, multitask_strategy="interrupt"
    )
    assert (await client.runs.join(tid, second["run_id"]))["done"] == ["nap", "after"]
    assert (await client.runs.get(tid, first["run_id"]))["status"] == "interrupted"
    third = await client.runs.create(tid, "slow", input={"seconds": 5})
    fourth = await client.runs.create(
        tid, "slow", input={"seconds": 0}, multitask_strategy="rollback"
    )
    await client.runs.join(tid, fourth["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, third["run_id"])
    queued = [
        await client.runs.create(tid, "slow", input={"seconds": 0.05}, multitask_strategy="enqueue")
        for _ in range(3)
    ]
    last = await client.runs.join(tid, queued[-1]["run_id"])
    assert len(last["done"]) == 2 * 5  # the interrupted run wrote none; the others two each
    listed = await client.runs.list(tid, limit=3)
    assert [r["run_id"] for r in reversed(listed)] == [r["run_id"] for r in queued]
    assert {r["status"] for r in listed} == {"success"}


async def test_background_runs(client: LangGraphClient, server: Server) -> None:
    tid = (await client.threads.create())["thread_id"]
    run = await client.runs.create(tid, "counter", input={})
    assert (run["thread_id"], run["status"]) == (tid, "pending")
    assert (await client.runs.join(tid, run["run_id"]))["count"] == 1
    got = await client.runs.get(tid, run["run_id"])
    assert got["status"] == "success"
    assert got["assistant_id"] == (await client.assistants.get("counter"))["assistant_id"]
    for _ in range(2):
        await client.runs.wait(tid, "counter", input={})
    async with server.http() as http:
        created = await http.post(
            f"/threads/{tid}/runs", json={"assistant_id": "counter", "input": {}}
        )
        rid = created.json()["run_id"]
        assert created.headers["content-location"] == f"/threads/{tid}/runs/{rid}"
        await client.runs.join(tid, rid)
        page = await http.get(f"/threads/{tid}/runs", params={"limit": 2, "offset": 1})
        assert page.headers["x-pagination-next"] == "3"
        assert len(page.json()) == 2
        joined = await http.get(f"/threads/{tid}/runs/{rid}/join")
        assert joined.headers["location"] == f"/threads/{tid}/runs/{rid}/join"
        assert joined.json()["count"] == 4
        slow = await client.runs.create(tid, "slow", input={"seconds": 0.3})
        long_poll = await http.get(
            f"/threads/{tid}/runs/{slow['run_id']}/join", params={"cancel_on_disconnect": True}
        )
        assert "content-length" not in long_poll.headers  # streamed while the run went on
        assert long_poll.json()["done"][-2:] == ["nap", "after"]
        bad_select = await http.get(f"/threads/{tid}/runs", params={"select": "colour"})
        assert bad_select.status_code == 422
        assert bad_select.json()["detail"].startswith("cannot select 'colour'; fields are run_id")
    selected = await client.runs.list(tid, select=["run_id", "status"], status="success")
    assert len(selected) == 5
    assert all(set(r) == {"run_id", "status"} for r in selected)

    running = await client.runs.create(tid, "slow", input={"seconds": 5})
    with pytest.raises(ConflictError) as busy:
        await client.runs.delete(tid, running["run_id"])
    assert busy.value.message.startswith(f"run {running['run_id']} is ")
    assert busy.value.message.endswith(": cancel it before deleting")
    await client.runs.cancel(tid, running["run_id"], wait=True)
    assert (await client.runs.get(tid, running["run_id"]))["status"] == "interrupted"
    with pytest.raises(ConflictError) as ended:
        await client.runs.cancel(tid, running["run_id"])
    assert ended.value.message == (
        f"run {running['run_id']} already ended (interrupted); nothing to cancel"
    )
    await client.runs.delete(tid, running["run_id"])
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, running["run_id"])

    batch = await client.runs.create_batch(
        [{"assistant_id": "counter", "input": {}}, {"assistant_id": "counter", "input": {}}]
    )
    assert len(batch) == 2
    assert batch[0]["thread_id"] != batch[1]["thread_id"]
    assert {r["status"] for r in batch} == {"pending"}

    one = await client.runs.create(tid, "slow", input={"seconds": 5})
    two = await client.runs.create(tid, "slow", input={"seconds": 5})
    await client.runs.cancel_many(thread_id=tid, run_ids=[one["run_id"], two["run_id"]])
    for r in (one, two):
        await status_becomes(client, tid, r["run_id"], "interrupted")
    three = await client.runs.create(tid, "slow", input={"seconds": 5})
    four = await client.runs.create(tid, "slow", input={"seconds": 5})
    await status_becomes(client, tid, three["run_id"], "running")
    await client.runs.cancel_many(status="pending")
    assert (await client.runs.get(tid, four["run_id"]))["status"] == "interrupted"
    assert (await client.runs.get(tid, three["run_id"]))["status"] == "running"
    await client.runs.cancel_many(status="all", action="rollback")
    with pytest.raises(NotFoundError):
        await client.runs.get(tid, three["run_id"])


async def test_disconnecting_cancels_when_asked(client: LangGraphClient, server: Server) -> None:
    tid = (await client.threads.create())["thread_id"]
    async with server.http() as http:
        body = {"assistant_id": "slow", "input": {"seconds": 5}, "on_disconnect": "cancel"}
        async with http.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
            async for _, name, data in sse_events(response):
                assert name == "metadata"
                streamed = data["run_id"]
                break
        await status_becomes(client, tid, streamed, "interrupted")

        waiting = asyncio.create_task(http.post(f"/threads/{tid}/runs/wait", json=body))
        for _ in range(200):
            if len(listed := await client.runs.list(tid)) == 2:
                break
            await asyncio.sleep(0.02)
        [run] = [r for r in listed if r["run_id"] != streamed]
        await status_becomes(client, tid, run["run_id"], "running")
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        await status_becomes(client, tid, run["run_id"], "interrupted")

        joined = await client.runs.create(tid, "slow", input={"seconds": 5})
        async with http.stream(
            "GET",
            f"/threads/{tid}/runs/{joined['run_id']}/stream",
            params={"cancel_on_disconnect": True},
        ) as response:
            async for _event in sse_events(response):
                break
        await status_becomes(client, tid, joined["run_id"], "interrupted")

        kept = await client.runs.create(tid, "slow", input={"seconds": 0.2})
        async with http.stream("GET", f"/threads/{tid}/runs/{kept['run_id']}/stream") as response:
            async for _ in sse_events(response):
                break
        await status_becomes(client, tid, kept["run_id"], "success")  # continue: the default


async def test_stateless_runs(client: LangGraphClient) -> None:
    result = await client.runs.wait(None, "counter", input={})
    assert result["count"] == 1
    assert await client.threads.count() == 0
    kept = await client.runs.wait(None, "counter", input={}, on_completion="keep")
    assert kept["count"] == 1
    assert await client.threads.count() == 1
    background = await client.runs.create(None, "counter", input={}, on_completion="keep")
    assert background["thread_id"] is not None
    assert (await client.runs.join(background["thread_id"], background["run_id"]))["count"] == 1


async def test_bad_input(client: LangGraphClient, server: Server) -> None:
    tid = (await client.threads.create())["thread_id"]
    with pytest.raises(BadRequestError) as webhook:
        await client.runs.create(tid, "counter", input={}, webhook="http://127.0.0.1:9/hook")
    assert webhook.value.message.startswith(
        "webhook 'http://127.0.0.1:9/hook' points to 127.0.0.1, a loopback, private"
    )
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as assistant:
        await client.runs.create(tid, missing, input={})
    assert assistant.value.message == f"assistant {missing} not found"
    with pytest.raises(NotFoundError) as thread:
        await client.runs.create(missing, "counter", input={})
    assert thread.value.message == f"thread {missing} not found"
    with pytest.raises(UnprocessableEntityError) as not_uuid:
        await client.runs.create("nope", "counter", input={})
    assert not_uuid.value.message == "thread_id must be a UUID, not 'nope'"
    with pytest.raises(BadRequestError) as both:
        await client.runs.create(tid, "counter", input={}, command={"resume": 1})
    assert both.value.message == "give either input or command, not both"
    with pytest.raises(UnprocessableEntityError) as feedback:
        await parts(client.runs.stream(tid, "counter", input={}, feedback_keys=["x"]))
    assert feedback.value.message.startswith("feedback_keys is not supported: feedback keys")
    with pytest.raises(UnprocessableEntityError) as batch:
        await client.runs.create_batch([])
    assert batch.value.message == "the body must be a list of at least one run"
    with pytest.raises(UnprocessableEntityError) as bulk:
        await client.runs.cancel_many(thread_id=tid, run_ids=[missing], status="all")
    assert bulk.value.message.startswith("give either status (every run in it) or run_ids")
    with pytest.raises(UnprocessableEntityError) as action:
        await client.runs.cancel_many(status="all", action="stop")
    assert action.value.message == "action must be one of interrupt, rollback, not 'stop'"
    async with server.http() as http:
        extra = await http.post(
            f"/threads/{tid}/runs", json={"assistant_id": "counter", "colour": "red"}
        )
        assert (extra.status_code, extra.json()) == (422, {"detail": "unsupported field colour"})
        waited = await http.post(
            f"/threads/{tid}/runs/wait",
            json={"assistant_id": "counter", "input": {}, "command": {"resume": 1}},
        )
        assert waited.status_code == 400
        assert waited.json() == {"detail": "give either input or command, not both"}
        join = await http.get(f"/threads/{tid}/runs/{missing}/join")
        assert (join.status_code, join.json()) == (
            404,
            {"detail": f"run {missing} not found in thread {tid}"},
        )
        nothing = await http.post("/runs/cancel", json={})
        assert nothing.status_code == 422
        assert nothing.json()["detail"].startswith("give run_ids (with their thread_id)")
    assert await client.runs.list(tid) == []  # nothing half-written


async def test_thread_stream(client: LangGraphClient, server: Server) -> None:
    tid = (await client.threads.create())["thread_id"]
    before = await client.runs.wait(tid, "counter", input={})  # ended: not in a live stream
    assert before["count"] == 1

    async def read(stream: AsyncIterator[StreamPart], runs: int) -> list[StreamPart]:
        """Events until ``runs`` runs are done (the stream itself never ends)."""
        got: list[StreamPart] = []
        async with contextlib.aclosing(stream):
            async for part in stream:
                got.append(part)
                if part.data.get("status") == "run_done":
                    runs -= 1
                    if runs == 0:
                        return got
        return got

    live = asyncio.create_task(read(await client.threads.join_stream(tid), 2))
    await asyncio.sleep(0.3)
    first = await client.runs.create(tid, "slow", input={"seconds": 0.1})
    second = await client.runs.create(tid, "counter", input={})
    got = await asyncio.wait_for(live, 30)
    ids = [first["run_id"], second["run_id"]]
    metadata = [p.data for p in got if p.event == "metadata"]
    assert metadata == [
        {"run_id": ids[0], "attempt": 1},
        {"status": "run_done", "run_id": ids[0]},
        {"run_id": ids[1], "attempt": 1},
        {"status": "run_done", "run_id": ids[1]},
    ]
    assert all(p.id is not None and p.id.split(":")[0] in ids for p in got)
    first_done = next(p.id for p in got if p.data.get("status") == "run_done")
    assert first_done == f"{ids[0]}:done"
    assert first_done is not None
    again = await read(await client.threads.join_stream(tid, last_event_id=first_done), 1)
    assert [(p.id, p.event, p.data) for p in again] == [
        (p.id, p.event, p.data)
        for p in got[got.index(next(p for p in got if p.id == first_done)) + 1 :]
    ]
    everything = await read(await client.threads.join_stream(tid, last_event_id="0"), 3)
    assert [p.data for p in everything if p.event == "metadata"][-4:] == metadata

    lifecycle = await read(
        await client.threads.join_stream(tid, last_event_id="0", stream_mode="lifecycle"), 3
    )
    assert {p.event for p in lifecycle} == {"metadata"}
    async with server.http() as http:
        response = await http.get(f"/threads/{tid}/stream", params={"stream_modes": "bogus"})
        assert response.status_code == 422
        assert response.json() == {
            "detail": "stream_mode must be one of run_modes, lifecycle, state_update, not 'bogus'"
        }
        gone = str(uuid.uuid4())
        response = await http.get(f"/threads/{gone}/stream")
        assert (response.status_code, response.json()) == (
            404,
            {"detail": f"thread {gone} not found"},
        )
        response = await http.get(f"/threads/{tid}/stream", headers={"Last-Event-ID": "x"})
        assert response.status_code == 400
        assert response.json()["detail"].startswith(
            "Last-Event-ID must be an event id this thread stream sent"
        )


async def test_input_storage_cannot_hold_is_422(server: Server) -> None:
    async with server.http() as http:
        await check(
            http,
            [
                (
                    "POST",
                    "/runs",
                    {"assistant_id": "counter", "after_seconds": 10**9},
                    422,
                    "after_seconds: Input should be less than or equal to 31536000",
                ),
                (
                    "POST",
                    "/runs/wait",
                    {"assistant_id": "counter", "input": {"n": 2**64}},
                    422,
                    f"input.n: 18446744073709551616 {RANGE}",
                ),
                (
                    "POST",
                    "/runs/batch",
                    [{"assistant_id": "counter", "input": {"x": float("inf")}}],
                    422,
                    f"input.x: {NAN}",
                ),
            ],
        )
    with pytest.raises(WeftError, match="after_seconds") as in_process:
        await server.rt.runs.create(None, "counter", after_seconds=10**9)
    assert in_process.value.status_code == 422
