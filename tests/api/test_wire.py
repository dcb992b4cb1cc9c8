"""The server-sent event response: frames in order, heartbeats while idle, and a client that
leaves closing the frames' iterator at once (without leaving its task cancelled)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from weft.api import wire
from weft.api.wire import EventStream, frame


class Client:
    """The ASGI side of one response: what it sent, and a disconnect when told."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.leave = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent[1:])


async def serve(response: EventStream, client: Client) -> None:
    await response({"type": "http"}, client.receive, client.send)  # type: ignore[arg-type]


def test_frame_is_one_event() -> None:
    assert frame(3, "values", {"a": [1, "x\ny"]}) == (
        b'id: 3\nevent: values\ndata: {"a":[1,"x\\ny"]}\n\n'
    )


async def test_frames_then_the_end() -> None:
    async def frames() -> AsyncIterator[bytes]:
        yield frame(1, "metadata", {"run_id": "r"})
        yield frame(2, "values", {"n": 1})

    client = Client()
    await serve(EventStream(frames(), headers={"Location": "/here"}), client)
    start = client.sent[0]
    headers = dict(start["headers"])
    assert start["status"] == 200
    assert headers[b"content-type"] == b"text/event-stream; charset=utf-8"
    assert headers[b"cache-control"] == b"no-store"
    assert headers[b"location"] == b"/here"
    assert client.body == frame(1, "metadata", {"run_id": "r"}) + frame(2, "values", {"n": 1})
    assert client.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}


async def test_heartbeats_while_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "HEARTBEAT_SECONDS", 0.05)

    async def frames() -> AsyncIterator[bytes]:
        await asyncio.sleep(0.3)
        yield frame(1, "values", {})

    client = Client()
    await serve(EventStream(frames()), client)
    pings = client.body.count(b": ping\n\n")
    assert pings >= 2
    assert client.body.endswith(frame(1, "values", {}))


async def test_a_client_that_leaves_closes_the_frames() -> None:
    closed, first_sent = asyncio.Event(), asyncio.Event()

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield frame(1, "metadata", {})
            first_sent.set()  # resumed: the first frame went out
            await asyncio.sleep(3600)
            yield frame(2, "values", {})
        finally:
            closed.set()

    client = Client()
    task = asyncio.create_task(serve(EventStream(frames()), client))
    await first_sent.wait()
    client.leave.set()
    await asyncio.wait_for(task, 5)
    assert closed.is_set()
    assert not task.cancelled()
    assert client.body == frame(1, "metadata", {})


async def test_a_cancelled_server_task_still_stops() -> None:
    async def frames() -> AsyncIterator[bytes]:
        await asyncio.sleep(3600)
        yield b""

    task = asyncio.create_task(serve(EventStream(frames()), Client()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
