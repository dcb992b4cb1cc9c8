"""Crons through ``weft.Runtime`` on every storage backend: records, validation, firing on a
thread and on fresh threads, disabled and ended crons, time zones, missed slots, several
processes on one database, and restarts.

Firing is tested two ways: deterministically, with the scheduler stopped and
``rt.crons.fire_due(now)`` called at chosen times, and live, with a schedule of every second
(croniter's sixth field) that the scheduler fires on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from langgraph_sdk.schema import Cron as SdkCron

from tests.conftest import FIXTURES
from weft.config import Settings
from weft.crons import next_run
from weft.errors import ConflictError, NotFoundError, UnprocessableEntityError, WeftError
from weft.runtime import Runtime

DAILY = "0 9 * * *"
EVERY_SECOND = "* * * * * *"


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait until ``check()`` holds (a deadline only against hangs; nothing is timed)."""
    try:
        async with asyncio.timeout(15):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"never happened: {what}")


# --- records ---------------------------------------------------------------------------------


async def test_create_get_search_count_update_delete(rt: Runtime) -> None:
    thread = await rt.threads.create()
    before = datetime.now(UTC)
    on_thread = await rt.crons.create(
        "counter",
        DAILY,
        thread_id=thread.thread_id,
        input={"x": 1},
        metadata={"team": "a"},
        multitask_strategy="enqueue",
    )
    counter = await rt.assistants.get("counter")
    assert uuid.UUID(on_thread.cron_id)
    assert on_thread.assistant_id == counter.assistant_id
    assert on_thread.thread_id == thread.thread_id
    assert on_thread.on_run_completed is None
    assert on_thread.schedule == DAILY
    assert on_thread.timezone is None
    assert on_thread.end_time is None
    assert on_thread.enabled is True
    assert on_thread.user_id is None
    assert on_thread.payload == {
        "input": {"x": 1},
        "metadata": {"team": "a"},
        "multitask_strategy": "enqueue",
    }
    assert on_thread.metadata == {"team": "a"}
    assert on_thread.next_run_date == next_run(DAILY, None, on_thread.created_at)
    assert on_thread.created_at >= before
    assert set(on_thread.to_api()) == set(SdkCron.__annotations__)
    assert await rt.crons.get(on_thread.cron_id) == on_thread

    stateless = await rt.crons.create(
        "tally", "30 6 * * 1-5", timezone="Europe/Paris", metadata={"team": "b"}
    )
    assert stateless.thread_id is None
    assert stateless.on_run_completed == "delete"
    assert stateless.timezone == "Europe/Paris"

    assert [c.cron_id for c in await rt.crons.search()] == [stateless.cron_id, on_thread.cron_id]
    assert [c.cron_id for c in await rt.crons.search(assistant_id="counter")] == [on_thread.cron_id]
    assert [c.cron_id for c in await rt.crons.search(thread_id=thread.thread_id)] == [
        on_thread.cron_id
    ]
    assert [c.cron_id for c in await rt.crons.search(metadata={"team": "b"})] == [stateless.cron_id]
    assert [c.cron_id for c in await rt.crons.search(sort_by="created_at", sort_order="asc")] == [
        on_thread.cron_id,
        stateless.cron_id,
    ]
    assert await rt.crons.search(select=["cron_id", "schedule"], limit=1, offset=1) == [
        {"cron_id": on_thread.cron_id, "schedule": DAILY}
    ]
    assert await rt.crons.count() == 2
    assert await rt.crons.count(assistant_id=counter.assistant_id) == 1
    assert await rt.crons.count(metadata={"team": "a"}) == 1

    end = datetime.now(UTC) + timedelta(days=30)
    updated = await rt.crons.update(
        on_thread.cron_id,
        schedule="15 10 * * *",
        timezone="Asia/Tokyo",
        end_time=end.isoformat(),
        input={"x": 2},
        metadata={"team": "c"},
    )
    assert updated.schedule == "15 10 * * *"
    assert updated.timezone == "Asia/Tokyo"
    assert updated.end_time == end
    assert updated.payload == {
        "input": {"x": 2},
        "metadata": {"team": "c"},
        "multitask_strategy": "enqueue",
    }
    assert updated.metadata == {"team": "c"}
    assert updated.next_run_date == next_run("15 10 * * *", "Asia/Tokyo", updated.updated_at)
    assert updated.updated_at > on_thread.updated_at
    assert await rt.crons.get(on_thread.cron_id) == updated

    off = await rt.crons.update(on_thread.cron_id, enabled=False)
    assert off.enabled is False
    assert off.next_run_date is None
    assert off.end_time == end  # omitted: kept
    assert [c.cron_id for c in await rt.crons.search(enabled=False)] == [on_thread.cron_id]
    cleared = await rt.crons.update(on_thread.cron_id, end_time=None, enabled=True)
    assert cleared.end_time is None
    assert cleared.next_run_date is not None

    await rt.crons.delete(on_thread.cron_id)
    with pytest.raises(NotFoundError, match=rf"^cron {on_thread.cron_id} not found$"):
        await rt.crons.get(on_thread.cron_id)
    with pytest.raises(NotFoundError, match=rf"^cron {on_thread.cron_id} not found$"):
        await rt.crons.delete(on_thread.cron_id)
    assert await rt.crons.count() == 1


async def test_owners_see_their_crons_and_unowned_ones(rt: Runtime) -> None:
    mine = await rt.crons.create("counter", DAILY, owner="u1")
    assert mine.user_id == "u1"
    shared = await rt.crons.create("counter", DAILY)
    assert {c.cron_id for c in await rt.crons.search(owner="u1")} == {
        mine.cron_id,
        shared.cron_id,
    }
    assert [c.cron_id for c in await rt.crons.search(owner="u2")] == [shared.cron_id]
    with pytest.raises(NotFoundError, match=rf"^cron {mine.cron_id} not found$"):
        await rt.crons.get(mine.cron_id, owner="u2")
    with pytest.raises(NotFoundError, match=rf"^cron {mine.cron_id} not found$"):
        await rt.crons.update(mine.cron_id, enabled=False, owner="u2")
    with pytest.raises(NotFoundError, match=rf"^cron {mine.cron_id} not found$"):
        await rt.crons.delete(mine.cron_id, owner="u2")


async def test_deleting_the_thread_deletes_its_crons(rt: Runtime) -> None:
    thread = await rt.threads.create()
    cron = await rt.crons.create("counter", DAILY, thread_id=thread.thread_id)
    await rt.threads.delete(thread.thread_id)
    with pytest.raises(NotFoundError, match=rf"^cron {cron.cron_id} not found$"):
        await rt.crons.get(cron.cron_id)


# --- bad input -------------------------------------------------------------------------------

GHOST = "00000000-0000-4000-8000-000000000000"


BAD_INPUT: list[tuple[tuple[str, str], dict[str, Any], type[WeftError], str]] = [
    (
        ("counter", "61 * * * *"),
        {},
        UnprocessableEntityError,
        r"^schedule '61 \* \* \* \*' is not a valid cron expression: "
        r"\[61 \* \* \* \*\] is not acceptable, out of range; write 5 fields",
    ),
    (
        ("counter", "every day"),
        {},
        UnprocessableEntityError,
        r"^schedule 'every day' is not a valid cron expression: Exactly 5, 6 or 7 columns",
    ),
    (
        ("counter", "0 0 31 2 *"),
        {},
        UnprocessableEntityError,
        r"^schedule '0 0 31 2 \*' never fires after .*: failed to find next date$",
    ),
    (
        ("counter", DAILY),
        {"timezone": "Mars/Olympus"},
        UnprocessableEntityError,
        r"^timezone 'Mars/Olympus' is not a known IANA time zone; use a name such as "
        r"'America/New_York' or 'UTC', or none for UTC$",
    ),
    (
        ("counter", DAILY),
        {"end_time": "2001-01-01T00:00:00Z"},
        UnprocessableEntityError,
        r"^end_time 2001-01-01T00:00:00\+00:00 is in the past; give a later time, or none "
        r"to run indefinitely$",
    ),
    (
        ("counter", DAILY),
        {"end_time": "tomorrow"},
        UnprocessableEntityError,
        r"^end_time must be an ISO 8601 date and time, not 'tomorrow'$",
    ),
    (
        (GHOST, DAILY),
        {},
        NotFoundError,
        rf"^assistant {GHOST} not found$",
    ),
    (
        ("nope", DAILY),
        {},
        UnprocessableEntityError,
        r"^assistant_id must be a UUID \(or a graph id\), not 'nope'$",
    ),
    (
        ("counter", DAILY),
        {"thread_id": "abc"},
        UnprocessableEntityError,
        r"^thread_id must be a UUID, not 'abc'$",
    ),
    (
        ("counter", DAILY),
        {"thread_id": GHOST},
        NotFoundError,
        rf"^thread {GHOST} not found$",
    ),
    (
        ("counter", DAILY),
        {"bogus": 1},
        UnprocessableEntityError,
        r"^unsupported field\(s\): bogus$",
    ),
    (
        ("counter", DAILY),
        {"stream_mode": "everything"},
        UnprocessableEntityError,
        r"^stream_mode: must be ",
    ),
    (
        ("counter", DAILY),
        {"after_seconds": 5},
        UnprocessableEntityError,
        r"^after_seconds: not an option of a cron's runs; a cron takes input, config, ",
    ),
    (
        ("counter", DAILY),
        {"on_completion": "keep"},
        UnprocessableEntityError,
        r"^on_completion: not an option of a cron's runs; use on_run_completed; ",
    ),
    (
        ("counter", DAILY),
        {"on_run_completed": "archive"},
        UnprocessableEntityError,
        r"^on_run_completed must be one of delete, keep, not 'archive'$",
    ),
    (
        ("counter", DAILY),
        {"enabled": "yes"},
        UnprocessableEntityError,
        r"^enabled must be true or false, not 'yes'$",
    ),
]


async def test_bad_input_is_a_clear_error_and_writes_nothing(rt: Runtime) -> None:
    for args, kwargs, error, message in BAD_INPUT:
        with pytest.raises(error, match=message):
            await rt.crons.create(*args, **kwargs)
    assert await rt.crons.count() == 0


async def test_thread_crons_refuse_on_run_completed_and_read_only_threads(rt: Runtime) -> None:
    thread = await rt.threads.create()
    with pytest.raises(
        UnprocessableEntityError,
        match=r"^on_run_completed applies only to crons without a thread_id",
    ):
        await rt.crons.create("counter", DAILY, thread_id=thread.thread_id, on_run_completed="keep")
    await rt.threads.set_lifecycle(thread.thread_id, "archived")
    with pytest.raises(
        ConflictError, match=rf"^thread {thread.thread_id} has lifecycle 'archived': a cron refused"
    ):
        await rt.crons.create("counter", DAILY, thread_id=thread.thread_id)
    assert await rt.crons.count() == 0


async def test_a_bad_update_changes_nothing(rt: Runtime) -> None:
    cron = await rt.crons.create("counter", DAILY, input={"x": 1})
    with pytest.raises(
        UnprocessableEntityError, match=r"^schedule '\* \* \*' is not a valid cron expression: "
    ):
        await rt.crons.update(cron.cron_id, schedule="* * *", input={"x": 2})
    with pytest.raises(UnprocessableEntityError, match=r"^timezone 'Nowhere' is not a known"):
        await rt.crons.update(cron.cron_id, timezone="Nowhere", enabled=False)
    with pytest.raises(UnprocessableEntityError, match=r"^unsupported field\(s\): colour$"):
        await rt.crons.update(cron.cron_id, colour="red")
    with pytest.raises(UnprocessableEntityError, match=r"^cron_id must be a UUID, not 'x'$"):
        await rt.crons.update("x", enabled=False)
    assert await rt.crons.get(cron.cron_id) == cron


async def test_search_refuses_bad_sorting_selection_and_paging(rt: Runtime) -> None:
    with pytest.raises(UnprocessableEntityError, match=r"^sort_by must be one of cron_id, "):
        await rt.crons.search(sort_by="colour")
    with pytest.raises(UnprocessableEntityError, match=r"^sort_order must be one of asc, desc"):
        await rt.crons.search(sort_order="up")
    with pytest.raises(UnprocessableEntityError, match=r"^cannot select 'colour'; fields are "):
        await rt.crons.search(select=["colour"])
    with pytest.raises(UnprocessableEntityError, match=r"^limit must be a number >= 0, not -1$"):
        await rt.crons.search(limit=-1)


# --- the schedule ----------------------------------------------------------------------------


def test_next_run_reads_the_schedule_in_the_cron_time_zone() -> None:
    winter = datetime(2024, 1, 15, 12, 0, tzinfo=UTC)  # 07:00 in New York (EST, UTC-5)
    summer = datetime(2024, 7, 15, 12, 0, tzinfo=UTC)  # 08:00 in New York (EDT, UTC-4)
    assert next_run(DAILY, "America/New_York", winter) == datetime(2024, 1, 15, 14, tzinfo=UTC)
    assert next_run(DAILY, "America/New_York", summer) == datetime(2024, 7, 15, 13, tzinfo=UTC)
    assert next_run(DAILY, None, winter) == datetime(2024, 1, 16, 9, tzinfo=UTC)
    assert next_run(DAILY, "Asia/Kolkata", winter) == datetime(2024, 1, 16, 3, 30, tzinfo=UTC)
    # across the spring change: 09:00 EST on Saturday, 09:00 EDT on Sunday
    saturday = next_run(DAILY, "America/New_York", datetime(2024, 3, 9, 12, tzinfo=UTC))
    sunday = next_run(DAILY, "America/New_York", saturday)
    assert (saturday, sunday) == (
        datetime(2024, 3, 9, 14, tzinfo=UTC),
        datetime(2024, 3, 10, 13, tzinfo=UTC),
    )
    # a sixth field counts seconds
    assert next_run("* * * * * */10", None, datetime(2024, 1, 1, 0, 0, 3, tzinfo=UTC)) == (
        datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)
    )


async def test_create_stores_the_next_slot_in_the_time_zone(rt: Runtime) -> None:
    cron = await rt.crons.create("counter", DAILY, timezone="America/New_York")
    assert cron.next_run_date == next_run(DAILY, "America/New_York", cron.created_at)
    assert cron.next_run_date is not None
    local = cron.next_run_date.astimezone(ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (9, 0)
    assert await rt.crons.get(cron.cron_id) == cron


# --- firing, deterministically ---------------------------------------------------------------


async def test_a_thread_cron_fires_each_slot_once_and_skips_missed_ones(rt: Runtime) -> None:
    await rt.crons.stop()
    thread = await rt.threads.create()
    cron = await rt.crons.create("counter", DAILY, thread_id=thread.thread_id, input={})
    due = cron.next_run_date
    assert due is not None
    assert await rt.crons.fire_due(due - timedelta(seconds=1)) == []

    [run] = await rt.crons.fire_due(due + timedelta(seconds=1))
    assert run.thread_id == thread.thread_id
    assert run.assistant_id == cron.assistant_id
    assert (await rt.runs.join(thread.thread_id, run.run_id))["count"] == 1
    assert (await rt.crons.get(cron.cron_id)).next_run_date == due + timedelta(days=1)
    assert await rt.crons.fire_due(due + timedelta(seconds=2)) == []  # the slot is taken

    # down for ten days: one run, then the first slot after that moment
    late = due + timedelta(days=10, hours=1)
    [again] = await rt.crons.fire_due(late)
    assert (await rt.runs.join(thread.thread_id, again.run_id))["count"] == 2
    assert (await rt.crons.get(cron.cron_id)).next_run_date == due + timedelta(days=11)
    assert await rt.crons.fire_due(late) == []
    assert len(await rt.runs.list(thread.thread_id)) == 2


async def test_a_stateless_cron_runs_on_a_fresh_thread_deleted_after(rt: Runtime) -> None:
    await rt.crons.stop()
    cron = await rt.crons.create("counter", DAILY, input={})
    assert cron.next_run_date is not None
    [run] = await rt.crons.fire_due(cron.next_run_date)
    assert run.thread_id is not None
    result = await rt.runs.join(None, run.run_id)
    assert result["count"] == 1
    with pytest.raises(NotFoundError, match=rf"^thread {run.thread_id} not found$"):
        await rt.threads.get(run.thread_id)
    await rt.crons.delete(cron.cron_id)

    kept = await rt.crons.create("counter", DAILY, input={}, on_run_completed="keep")
    assert kept.next_run_date is not None
    [first] = await rt.crons.fire_due(kept.next_run_date)
    [second] = await rt.crons.fire_due(kept.next_run_date + timedelta(days=1))
    assert first.thread_id != second.thread_id
    for r in (first, second):
        assert (await rt.runs.join(None, r.run_id))["count"] == 1
        assert r.thread_id is not None
        thread = await rt.threads.get(r.thread_id)
        assert thread.metadata["stateless"] is True
        assert thread.values is not None
        assert thread.values["count"] == 1


async def test_a_disabled_cron_does_not_fire(rt: Runtime) -> None:
    await rt.crons.stop()
    thread = await rt.threads.create()
    off = await rt.crons.create("counter", DAILY, thread_id=thread.thread_id, enabled=False)
    assert off.enabled is False
    assert off.next_run_date is None
    later = datetime.now(UTC) + timedelta(days=3)
    assert await rt.crons.fire_due(later) == []

    on = await rt.crons.create("counter", DAILY, thread_id=thread.thread_id)
    await rt.crons.update(on.cron_id, enabled=False)
    assert await rt.crons.fire_due(later) == []
    assert await rt.runs.list(thread.thread_id) == []
    back = await rt.crons.update(on.cron_id, enabled=True)
    assert back.next_run_date is not None
    assert len(await rt.crons.fire_due(back.next_run_date)) == 1


async def test_end_time_stops_a_cron(rt: Runtime) -> None:
    await rt.crons.stop()
    thread = await rt.threads.create()
    probe = next_run(DAILY, None, datetime.now(UTC))
    cron = await rt.crons.create(
        "counter", DAILY, thread_id=thread.thread_id, end_time=probe + timedelta(hours=1)
    )
    assert cron.next_run_date == probe
    assert len(await rt.crons.fire_due(probe)) == 1
    assert (await rt.crons.get(cron.cron_id)).next_run_date is None  # the next is past the end
    assert await rt.crons.fire_due(probe + timedelta(days=5)) == []

    never = await rt.crons.create(
        "counter", DAILY, thread_id=thread.thread_id, end_time=probe - timedelta(minutes=1)
    )
    assert never.next_run_date is None
    assert await rt.crons.fire_due(probe + timedelta(days=5)) == []
    assert len(await rt.runs.list(thread.thread_id)) == 1


async def test_a_refused_run_uses_up_its_slot_and_the_cron_goes_on(rt: Runtime) -> None:
    await rt.crons.stop()
    thread = await rt.threads.create()
    busy = await rt.runs.create(thread.thread_id, "slow", input={"seconds": 2})
    cron = await rt.crons.create(
        "slow",
        DAILY,
        thread_id=thread.thread_id,
        input={"seconds": 0},
        multitask_strategy="reject",
    )
    assert cron.next_run_date is not None
    assert await rt.crons.fire_due(cron.next_run_date) == []  # refused: the thread is busy
    assert (await rt.crons.get(cron.cron_id)).next_run_date == cron.next_run_date + timedelta(
        days=1
    )
    await rt.runs.cancel(thread.thread_id, busy.run_id, wait=True)


# --- firing by the scheduler -----------------------------------------------------------------


async def test_the_scheduler_fires_on_a_thread_and_on_fresh_threads(rt: Runtime) -> None:
    thread = await rt.threads.create()
    on_thread = await rt.crons.create("counter", EVERY_SECOND, thread_id=thread.thread_id, input={})
    kept = await rt.crons.create("counter", EVERY_SECOND, input={}, on_run_completed="keep")

    async def ran_on_thread() -> bool:
        return any(r.status == "success" for r in await rt.runs.list(thread.thread_id))

    async def ran_stateless() -> bool:
        found = await rt.threads.search(metadata={"stateless": True, "graph_id": "counter"})
        return any(t.values for t in found)

    await eventually(ran_on_thread, "a run of the thread cron")
    await eventually(ran_stateless, "a run of the stateless cron")
    await rt.crons.delete(on_thread.cron_id)
    await rt.crons.delete(kept.cron_id)


# --- several processes, restarts -------------------------------------------------------------


@pytest.fixture
def open_runtime(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[[], Any]:
    """Opens a Runtime on the test's database as a fresh process would (not in memory)."""
    if database_url.endswith(":memory:"):
        pytest.skip("an in-memory database does not outlive its runtime")
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = dict(os.environ)
    shutil.copy(FIXTURES / "steps.py", tmp_path / "steps.py")
    (tmp_path / "langgraph.json").write_text(
        json.dumps({"graphs": {"counter": "./steps.py:counter"}})
    )

    @asynccontextmanager
    async def opened() -> AsyncIterator[Runtime]:
        settings = Settings.load(
            tmp_path / "langgraph.json", env={"WEFT_DATABASE_URL": database_url}
        )
        try:
            async with Runtime.open(settings) as runtime:
                yield runtime
        finally:
            os.environ.clear()
            os.environ.update(saved)

    return opened


async def test_a_cron_survives_a_restart(open_runtime: Callable[[], Any]) -> None:
    async with open_runtime() as rt:
        await rt.crons.stop()  # so that nothing fires before the restart
        thread = await rt.threads.create()
        cron = await rt.crons.create("counter", EVERY_SECOND, thread_id=thread.thread_id)
    async with open_runtime() as rt:
        assert (await rt.crons.get(cron.cron_id)).schedule == EVERY_SECOND

        async def fired() -> bool:
            return bool(await rt.runs.list(thread.thread_id))

        await eventually(fired, "a run after the restart")
        await rt.crons.delete(cron.cron_id)


async def test_two_processes_fire_each_slot_once(open_runtime: Callable[[], Any]) -> None:
    async with open_runtime() as one, open_runtime() as two:
        await one.crons.stop()
        await two.crons.stop()
        threads = [await one.threads.create() for _ in range(3)]
        crons = [
            await one.crons.create("counter", DAILY, thread_id=t.thread_id, input={})
            for t in threads
        ]
        due = max(c.next_run_date for c in crons if c.next_run_date is not None)
        fired = await asyncio.gather(*(rt.crons.fire_due(due) for rt in (one, two, one, two)))
        assert sorted(r.thread_id or "" for batch in fired for r in batch) == sorted(
            t.thread_id for t in threads
        )

        async def all_done() -> bool:
            for t in threads:
                runs = await one.runs.list(t.thread_id)
                if len(runs) != 1 or runs[0].status != "success":
                    return False
            return True

        await eventually(all_done, "one successful run per cron")
