"""Crons over HTTP through the official SDK client: create (on a thread and stateless),
firing, update, get, search, count, delete, and bad input."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import BadRequestError, NotFoundError, UnprocessableEntityError

from tests.api.conftest import Server
from tests.api.unstorable import SURROGATE, check


async def test_crons(client: LangGraphClient, server: Server) -> None:
    tid = (await client.threads.create())["thread_id"]
    every_second = await client.crons.create_for_thread(
        tid, "counter", schedule="* * * * * *", input={}, metadata={"team": "a"}
    )
    cron_id = every_second["cron_id"]
    assert every_second["thread_id"] == tid
    assert every_second["schedule"] == "* * * * * *"
    assert every_second["enabled"] is True
    assert every_second["metadata"] == {"team": "a"}
    assert every_second["payload"]["input"] == {}
    assert every_second["next_run_date"] is not None
    for _ in range(100):  # it fires within a second or two
        if await client.runs.list(tid):
            break
        await asyncio.sleep(0.05)
    [fired, *_] = await client.runs.list(tid)
    assert fired["metadata"] == {"team": "a"}

    end = datetime(2100, 1, 1, tzinfo=UTC)
    weekdays = await client.crons.create(
        "counter",
        schedule="0 9 * * 1-5",
        input={},
        timezone="America/New_York",
        end_time=end,
        on_run_completed="keep",
    )
    wid = weekdays["cron_id"]
    assert weekdays["thread_id"] is None
    assert weekdays["on_run_completed"] == "keep"
    assert weekdays["timezone"] == "America/New_York"
    assert datetime.fromisoformat(weekdays["end_time"]) == end

    paused = await client.crons.update(wid, schedule="0 10 * * *", enabled=False)
    assert (paused["schedule"], paused["enabled"], paused["next_run_date"]) == (
        "0 10 * * *",
        False,
        None,
    )
    assert (await client.crons.update(wid, end_time=None))["end_time"] is None

    assert [c["cron_id"] for c in await client.crons.search(thread_id=tid)] == [cron_id]
    assert len(await client.crons.search(assistant_id="counter")) == 2
    assert [c["cron_id"] for c in await client.crons.search(enabled=False)] == [wid]
    assert [c["cron_id"] for c in await client.crons.search(metadata={"team": "a"})] == [cron_id]
    oldest = await client.crons.search(
        sort_by="created_at", sort_order="asc", select=["cron_id", "schedule"]
    )
    assert oldest == [
        {"cron_id": cron_id, "schedule": "* * * * * *"},
        {"cron_id": wid, "schedule": "0 10 * * *"},
    ]
    assert await client.crons.count() == 2
    assert await client.crons.count(thread_id=tid) == 1
    async with server.http() as http:
        page = await http.post("/runs/crons/search", json={"limit": 1})
        assert len(page.json()) == 1
        assert page.headers["x-pagination-next"] == "1"
        got = await http.get(f"/runs/crons/{wid}")
        assert got.json()["schedule"] == "0 10 * * *"
        empty = await http.patch(f"/runs/crons/{wid}", json={})
        assert empty.status_code == 400
        assert empty.json()["detail"].startswith("the body names nothing to change")
        extra = await http.post(
            "/runs/crons", json={"assistant_id": "counter", "schedule": "* * * * *", "colour": 1}
        )
        assert (extra.status_code, extra.json()) == (422, {"detail": "unsupported field colour"})
        bad_id = await http.get("/runs/crons/nope")
        assert (bad_id.status_code, bad_id.json()) == (
            422,
            {"detail": "cron_id must be a UUID, not 'nope'"},
        )

    await client.crons.delete(cron_id)
    assert await client.crons.count() == 1
    with pytest.raises(NotFoundError) as gone:
        await client.crons.delete(cron_id)
    assert gone.value.message == f"cron {cron_id} not found"


async def test_bad_crons(client: LangGraphClient) -> None:
    tid = (await client.threads.create())["thread_id"]
    with pytest.raises(UnprocessableEntityError) as schedule:
        await client.crons.create("counter", schedule="every day", input={})
    assert schedule.value.message.startswith(
        "schedule 'every day' is not a valid cron expression: "
    )
    with pytest.raises(UnprocessableEntityError) as zone:
        await client.crons.create("counter", schedule="* * * * *", timezone="Mars/Olympus")
    assert zone.value.message.startswith("timezone 'Mars/Olympus' is not a known IANA time zone")
    with pytest.raises(BadRequestError) as webhook:
        await client.crons.create_for_thread(
            tid, "counter", schedule="* * * * *", webhook="http://127.0.0.1:9/hook"
        )
    assert "points to 127.0.0.1, a loopback, private" in webhook.value.message
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as thread:
        await client.crons.create_for_thread(missing, "counter", schedule="* * * * *")
    assert thread.value.message == f"thread {missing} not found"
    with pytest.raises(NotFoundError) as assistant:
        await client.crons.create(missing, schedule="* * * * *")
    assert assistant.value.message == f"assistant {missing} not found"
    with pytest.raises(NotFoundError) as update:
        await client.crons.update(missing, schedule="* * * * *")
    assert update.value.message == f"cron {missing} not found"
    assert await client.crons.count() == 0  # nothing half-written


async def test_input_storage_cannot_hold_is_422(server: Server) -> None:
    async with server.http() as http:
        await check(
            http,
            [
                (
                    "POST",
                    "/runs/crons",
                    {
                        "assistant_id": "counter",
                        "schedule": "0 9 * * *",
                        "metadata": {"k": "\udfff"},
                    },
                    422,
                    f"metadata.k: the string {SURROGATE}",
                ),
            ],
        )
        assert (await http.post("/runs/crons/count", json={})).json() == 0
