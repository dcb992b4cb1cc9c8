"""The cron methods of Storage, on every backend (SQLite file and memory, Postgres): records,
filters, the scheduler's lookups and the atomic claim of a slot."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.storage.test_assistants_storage import make as make_assistant
from tests.storage.test_threads_storage import T0, make_thread
from weft.errors import ConflictError, NotFoundError
from weft.schema import Cron
from weft.storage import Storage, open_storage
from weft.storage.base_crons import CronQuery


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_cron(assistant_id: str, *, due: float | None = 60, **fields: Any) -> Cron:
    return Cron(
        **{
            "cron_id": str(uuid.uuid4()),
            "assistant_id": assistant_id,
            "schedule": "* * * * *",
            "created_at": T0,
            "updated_at": T0,
            "next_run_date": at(due) if due is not None else None,
            "payload": {"input": {"n": 1}, "metadata": {"team": "a"}},
            "metadata": {"team": "a"},
            **fields,
        }
    )


async def new_assistant(storage: Storage) -> str:
    return (await storage.put_assistant(make_assistant(), if_exists="raise")).assistant_id


async def test_put_get_replace_delete_round_trip_every_field(storage: Storage) -> None:
    aid = await new_assistant(storage)
    thread = await storage.put_thread(make_thread())
    cron = make_cron(
        aid,
        thread_id=thread.thread_id,
        timezone="Europe/Paris",
        end_time=at(86400),
        user_id="u1",
        enabled=True,
    )
    assert await storage.put_cron(cron) == cron
    assert await storage.get_cron(cron.cron_id) == cron
    assert await storage.get_cron(cron.cron_id, owner="u1") == cron
    with pytest.raises(NotFoundError, match=rf"^cron {cron.cron_id} not found$"):
        await storage.get_cron(cron.cron_id, owner="u2")
    with pytest.raises(ConflictError, match=rf"^cron {cron.cron_id} already exists$"):
        await storage.put_cron(cron)

    stateless = make_cron(aid, on_run_completed="keep", timezone=None, due=None, enabled=False)
    await storage.put_cron(stateless)
    assert await storage.get_cron(stateless.cron_id) == stateless

    changed = cron.model_copy(
        update={
            "schedule": "0 9 * * *",
            "timezone": None,
            "end_time": None,
            "enabled": False,
            "payload": {"input": {"n": 2}},
            "metadata": {},
            "next_run_date": None,
            "updated_at": at(5),
        }
    )
    assert await storage.replace_cron(changed) == changed
    assert await storage.get_cron(cron.cron_id) == changed
    with pytest.raises(NotFoundError, match=rf"^cron {cron.cron_id} not found$"):
        await storage.replace_cron(changed, owner="u2")
    with pytest.raises(NotFoundError, match=rf"^cron {cron.cron_id} not found$"):
        await storage.delete_cron(cron.cron_id, owner="u2")
    await storage.delete_cron(cron.cron_id)
    with pytest.raises(NotFoundError, match=rf"^cron {cron.cron_id} not found$"):
        await storage.delete_cron(cron.cron_id)


async def test_put_refuses_a_missing_assistant_or_thread_and_writes_nothing(
    storage: Storage,
) -> None:
    aid = await new_assistant(storage)
    ghost = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=rf"^assistant {ghost} not found$"):
        await storage.put_cron(make_cron(ghost))
    with pytest.raises(NotFoundError, match=rf"^thread {ghost} not found$"):
        await storage.put_cron(make_cron(aid, thread_id=ghost))
    owned = await storage.put_thread(make_thread(owner="u1"))
    with pytest.raises(NotFoundError, match=rf"^thread {owned.thread_id} not found$"):
        await storage.put_cron(make_cron(aid, thread_id=owned.thread_id, user_id="u2"))
    assert await storage.count_crons(CronQuery()) == 0


async def test_deleting_the_thread_or_the_assistant_deletes_its_crons(storage: Storage) -> None:
    aid = await new_assistant(storage)
    thread = await storage.put_thread(make_thread())
    on_thread = await storage.put_cron(make_cron(aid, thread_id=thread.thread_id))
    stateless = await storage.put_cron(make_cron(aid))
    await storage.delete_thread(thread.thread_id)
    with pytest.raises(NotFoundError):
        await storage.get_cron(on_thread.cron_id)
    assert await storage.get_cron(stateless.cron_id) == stateless
    await storage.delete_assistant(aid)
    assert await storage.count_crons(CronQuery()) == 0


async def test_search_and_count_filter_sort_and_page(storage: Storage) -> None:
    a1 = await new_assistant(storage)
    a2 = await new_assistant(storage)
    thread = await storage.put_thread(make_thread())
    c1 = await storage.put_cron(make_cron(a1, due=30, created_at=at(1)))
    c2 = await storage.put_cron(
        make_cron(a1, due=None, enabled=False, created_at=at(2), metadata={"team": "b"})
    )
    c3 = await storage.put_cron(
        make_cron(a2, thread_id=thread.thread_id, due=10, created_at=at(3), user_id="u1")
    )

    async def ids(query: CronQuery, **kw: Any) -> list[str]:
        return [c.cron_id for c in await storage.search_crons(query, **kw)]

    assert await ids(CronQuery()) == [c3.cron_id, c2.cron_id, c1.cron_id]
    assert await ids(CronQuery(), sort_order="asc") == [c1.cron_id, c2.cron_id, c3.cron_id]
    assert await ids(CronQuery(assistant_id=a1)) == [c2.cron_id, c1.cron_id]
    assert await ids(CronQuery(thread_id=thread.thread_id)) == [c3.cron_id]
    assert await ids(CronQuery(enabled=False)) == [c2.cron_id]
    assert await ids(CronQuery(metadata={"team": "a"})) == [c3.cron_id, c1.cron_id]
    assert await ids(CronQuery(owner="u2")) == [c2.cron_id, c1.cron_id]
    # NULLs (c2 has no next run) come last in either direction
    by_next = {"sort_by": "next_run_date"}
    assert await ids(CronQuery(), sort_order="asc", **by_next) == [
        c3.cron_id,
        c1.cron_id,
        c2.cron_id,
    ]
    assert await ids(CronQuery(), sort_order="desc", **by_next) == [
        c1.cron_id,
        c3.cron_id,
        c2.cron_id,
    ]
    assert await ids(CronQuery(), limit=1, offset=1) == [c2.cron_id]
    assert await storage.count_crons(CronQuery()) == 3
    assert await storage.count_crons(CronQuery(assistant_id=a1, enabled=True)) == 1
    assert await storage.count_crons(CronQuery(metadata={"team": "b"})) == 1


async def test_due_crons_and_the_next_date_skip_disabled_ones(storage: Storage) -> None:
    aid = await new_assistant(storage)
    assert await storage.next_cron_date() is None
    late = await storage.put_cron(make_cron(aid, due=20))
    early = await storage.put_cron(make_cron(aid, due=10))
    await storage.put_cron(make_cron(aid, due=5, enabled=False))
    await storage.put_cron(make_cron(aid, due=None))
    assert await storage.next_cron_date() == at(10)
    assert await storage.due_crons(at(9)) == []
    assert [c.cron_id for c in await storage.due_crons(at(10))] == [early.cron_id]
    assert [c.cron_id for c in await storage.due_crons(at(60))] == [early.cron_id, late.cron_id]
    assert [c.cron_id for c in await storage.due_crons(at(60), limit=1)] == [early.cron_id]


async def test_one_of_two_claims_of_a_slot_wins(storage: Storage) -> None:
    aid = await new_assistant(storage)
    cron = await storage.put_cron(make_cron(aid, due=60))
    assert await storage.claim_cron(cron.cron_id, due=at(60), next_run_date=at(120))
    assert not await storage.claim_cron(cron.cron_id, due=at(60), next_run_date=at(120))
    assert (await storage.get_cron(cron.cron_id)).next_run_date == at(120)
    # concurrent claims of the next slot: exactly one wins
    results = await asyncio.gather(
        *(storage.claim_cron(cron.cron_id, due=at(120), next_run_date=at(180)) for _ in range(8))
    )
    assert sorted(results) == [False] * 7 + [True]
    # the last slot: no next run
    assert await storage.claim_cron(cron.cron_id, due=at(180), next_run_date=None)
    assert (await storage.get_cron(cron.cron_id)).next_run_date is None
    assert await storage.due_crons(at(10_000)) == []


async def test_a_disabled_deleted_or_missing_cron_cannot_be_claimed(storage: Storage) -> None:
    aid = await new_assistant(storage)
    off = await storage.put_cron(make_cron(aid, due=60, enabled=False))
    assert not await storage.claim_cron(off.cron_id, due=at(60), next_run_date=at(120))
    assert (await storage.get_cron(off.cron_id)).next_run_date == at(60)
    gone = await storage.put_cron(make_cron(aid, due=60))
    await storage.delete_cron(gone.cron_id)
    assert not await storage.claim_cron(gone.cron_id, due=at(60), next_run_date=at(120))
    assert not await storage.claim_cron(str(uuid.uuid4()), due=at(60), next_run_date=None)


async def test_claims_from_two_storages_on_one_database(database_url: str) -> None:
    """Two processes' storages (two SQLite engines on one file, or two Postgres pools):
    each slot is fired by exactly one."""
    if database_url.endswith(":memory:"):
        pytest.skip("an in-memory database belongs to one storage")
    async with open_storage(database_url) as one, open_storage(database_url) as two:
        aid = await new_assistant(one)
        crons = [await one.put_cron(make_cron(aid, due=60)) for _ in range(10)]
        results = await asyncio.gather(
            *(
                s.claim_cron(c.cron_id, due=at(60), next_run_date=at(120))
                for c in crons
                for s in (one, two, one, two)
            )
        )
        for i in range(len(crons)):
            assert sorted(results[4 * i : 4 * i + 4]) == [False, False, False, True]
