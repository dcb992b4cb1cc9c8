"""The plan methods of Storage, on every backend (SQLite file and memory, Postgres): records,
start, steps under a lease, cancel, leases, and the plan going with its session."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.storage.test_threads_storage import T0, make_session, scalar
from weft.errors import ConflictError, NotFoundError
from weft.schema import Plan, PlanThread, Session
from weft.storage import Storage
from weft.storage.base_plans import PlanEvent, PlanThreadPatch

SPEC: dict[str, Any] = {
    "name": "report",
    "policy": "strict",
    "max_parallel": 4,
    "threads": {
        "collect": {"graph_id": "collector", "input": {"topic": "sün"}},
        "analyze": {"graph_id": "analyst", "after": ["collect"]},
        "write": {"graph_id": "writer", "after": ["analyze"]},
    },
}
NAMES = ("collect", "analyze", "write")


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def make_plan(session_id: str, **fields: Any) -> Plan:
    return Plan(
        **{"session_id": session_id, "spec": SPEC, "created_at": T0, "updated_at": T0, **fields}
    )


def make_threads(session_id: str, names: tuple[str, ...] = NAMES) -> list[PlanThread]:
    return [
        PlanThread(
            session_id=session_id,
            name=name,
            position=i,
            thread_id=str(uuid.uuid5(uuid.UUID(session_id), name)),
            updated_at=T0,
        )
        for i, name in enumerate(names)
    ]


def event(name: str, what: str, **more: Any) -> PlanEvent:
    return PlanEvent(kind="thread_event", content={"event": what, "thread": name, **more})


async def new_plan(
    storage: Storage, *, owner: str | None = None, names: tuple[str, ...] = NAMES
) -> Session:
    session = await storage.put_session(make_session(owner=owner))
    await storage.put_plan(make_plan(session.session_id), make_threads(session.session_id, names))
    return session


async def running_plan(storage: Storage, lease: str | None = "p1") -> str:
    sid = (await new_plan(storage)).session_id
    await storage.start_plan(
        sid,
        lease_owner=lease,
        lease_until=at(60) if lease else None,
        now=at(1),
        event=PlanEvent(kind="plan_event", content={"event": "plan_started"}),
    )
    return sid


async def plan_rows(storage: Storage, sid: str) -> tuple[int, int]:
    plans = await scalar(storage, "SELECT count(*) FROM plans WHERE session_id = ?", (sid,))
    threads = await scalar(
        storage, "SELECT count(*) FROM plan_threads WHERE session_id = ?", (sid,)
    )
    return int(plans), int(threads)


# --- records ---------------------------------------------------------------------------------


async def test_put_get_round_trip_every_field(storage: Storage) -> None:
    session = await storage.put_session(make_session(owner="alice"))
    sid = session.session_id
    plan = make_plan(
        sid,
        status="completed",
        lease_owner="p9",
        lease_until=at(30),
        started_at=at(1),
        ended_at=at(20),
        updated_at=at(20),
    )
    threads = [
        PlanThread(
            session_id=sid,
            name="b",
            position=1,
            thread_id=str(uuid.uuid5(uuid.UUID(sid), "b")),
            state="succeeded",
            attempts=2,
            run_id=str(uuid.uuid4()),
            started_at=at(2),
            ended_at=at(9),
            retry_at=at(5),
            deadline=at(10),
            error="boom once",
            reason=None,
            output={"findings": ["ä", 1, None, {"n": 1.5}], "ok": True},
            updated_at=at(9),
        ),
        PlanThread(
            session_id=sid,
            name="a",
            position=0,
            thread_id=str(uuid.uuid5(uuid.UUID(sid), "a")),
            state="skipped",
            reason="when was false",
            updated_at=at(3),
        ),
    ]
    assert await storage.put_plan(plan, threads, owner="alice") == plan
    assert await storage.get_plan(sid) == plan
    assert await storage.get_plan(sid, owner="alice") == plan
    assert await storage.plan_threads(sid) == [threads[1], threads[0]]  # by position

    with pytest.raises(NotFoundError, match=rf"^session {sid} not found$"):
        await storage.get_plan(sid, owner="bob")
    with pytest.raises(NotFoundError, match=rf"^session {sid} not found$"):
        await storage.put_plan(make_plan(sid), [], owner="bob")
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=rf"^session {missing} not found$"):
        await storage.get_plan(missing)
    with pytest.raises(NotFoundError, match=rf"^session {missing} not found$"):
        await storage.put_plan(make_plan(missing), make_threads(missing))
    assert await storage.plan_threads(missing) == []

    bare = await storage.put_session(make_session())
    with pytest.raises(NotFoundError, match=rf"^session {bare.session_id} has no plan$"):
        await storage.get_plan(bare.session_id)


async def test_put_replaces_a_plan_but_not_a_running_one(storage: Storage) -> None:
    sid = (await new_plan(storage)).session_id
    replacement = make_plan(sid, spec={"threads": {"only": {"graph_id": "g"}}}, updated_at=at(5))
    await storage.put_plan(replacement, make_threads(sid, ("only",)))
    assert await storage.get_plan(sid) == replacement
    assert [t.name for t in await storage.plan_threads(sid)] == ["only"]
    assert await plan_rows(storage, sid) == (1, 1)

    await storage.start_plan(
        sid,
        lease_owner="p1",
        lease_until=at(60),
        now=at(6),
        event=PlanEvent(kind="plan_event", content={"event": "plan_started"}),
    )
    with pytest.raises(ConflictError) as e:
        await storage.put_plan(make_plan(sid), make_threads(sid))
    assert str(e.value) == f"session {sid} is running its plan; cancel it first"
    assert (await storage.get_plan(sid)).status == "running"
    assert [t.name for t in await storage.plan_threads(sid)] == ["only"]

    await storage.cancel_plan(sid, now=at(7), reason="by test")
    await storage.put_plan(make_plan(sid), make_threads(sid))  # a cancelled plan is replaced
    assert (await storage.get_plan(sid)).status == "ready"
    assert [t.name for t in await storage.plan_threads(sid)] == list(NAMES)


async def test_deleting_the_session_deletes_its_plan(storage: Storage) -> None:
    sid = (await new_plan(storage)).session_id
    other = (await new_plan(storage)).session_id
    assert await plan_rows(storage, sid) == (1, 3)
    await storage.delete_session(sid)
    assert await plan_rows(storage, sid) == (0, 0)
    assert await plan_rows(storage, other) == (1, 3)
    with pytest.raises(NotFoundError, match=rf"^session {sid} not found$"):
        await storage.get_plan(sid)


# --- start -----------------------------------------------------------------------------------


async def test_start_runs_only_a_ready_plan(storage: Storage) -> None:
    session = await storage.put_session(make_session(status="completed"))
    sid = session.session_id
    await storage.put_plan(make_plan(sid), make_threads(sid))
    started = await storage.start_plan(
        sid,
        lease_owner="p1",
        lease_until=at(60),
        now=at(1),
        event=PlanEvent(kind="plan_event", content={"event": "plan_started"}),
    )
    assert started.status == "running"
    assert (started.lease_owner, started.lease_until) == ("p1", at(60))
    assert (started.started_at, started.updated_at) == (at(1), at(1))
    assert await storage.get_plan(sid) == started
    after = await storage.get_session(sid)
    assert (after.status, after.updated_at) == ("active", at(1))
    [logged] = await storage.list_interactions(sid)
    assert (logged.seq, logged.kind, logged.content) == (
        1,
        "plan_event",
        {"event": "plan_started"},
    )

    with pytest.raises(ConflictError) as e:
        await storage.start_plan(
            sid,
            lease_owner="p2",
            lease_until=None,
            now=at(2),
            event=PlanEvent(kind="plan_event", content={"event": "plan_started"}),
        )
    assert str(e.value) == f"session {sid} plan is running; only a ready plan can run"
    assert (await storage.get_plan(sid)).lease_owner == "p1"
    assert len(await storage.list_interactions(sid)) == 1

    await storage.cancel_plan(sid, now=at(3), reason="stop")
    with pytest.raises(ConflictError, match=r"plan is cancelled; only a ready plan can run$"):
        await storage.start_plan(
            sid,
            lease_owner=None,
            lease_until=None,
            now=at(4),
            event=PlanEvent(kind="plan_event", content={"event": "plan_started"}),
        )

    bare = (await storage.put_session(make_session())).session_id
    with pytest.raises(NotFoundError, match=rf"^session {bare} has no plan$"):
        await storage.start_plan(
            bare,
            lease_owner=None,
            lease_until=None,
            now=at(4),
            event=PlanEvent(kind="plan_event", content={"event": "plan_started"}),
        )
    assert await storage.list_interactions(bare) == []


# --- steps -----------------------------------------------------------------------------------


async def test_step_applies_patches_and_appends_events_with_consecutive_seqs(
    storage: Storage,
) -> None:
    sid = await running_plan(storage)
    run_id = str(uuid.uuid4())
    await storage.append_interaction(
        sid, kind="note", content="by hand", metadata={}, created_at=at(2)
    )
    added = await storage.plan_step(
        sid,
        lease_owner="p1",
        patches=[
            PlanThreadPatch(
                name="collect",
                state="running",
                attempts=1,
                run_id=run_id,
                started_at=at(3),
                deadline=at(33),
            ),
            PlanThreadPatch(name="analyze", state="skipped", reason="when was false"),
            PlanThreadPatch(name="write", state="skipped", reason="depends on analyze"),
        ],
        events=[
            PlanEvent(
                kind="thread_event",
                content={"event": "thread_started", "thread": "collect", "attempt": 1},
                thread_id="t-collect",
                run_id=run_id,
            ),
            event("analyze", "thread_skipped", reason="when was false"),
        ],
        now=at(3),
    )
    assert [(e.seq, e.kind, e.content["event"]) for e in added] == [
        (3, "thread_event", "thread_started"),
        (4, "thread_event", "thread_skipped"),
    ]
    assert (added[0].thread_id, added[0].run_id, added[0].created_at) == (
        "t-collect",
        run_id,
        at(3),
    )
    assert await storage.list_interactions(sid, after=2) == added

    collect, analyze, write = await storage.plan_threads(sid)
    assert (collect.state, collect.attempts, collect.run_id) == ("running", 1, run_id)
    assert (collect.started_at, collect.deadline, collect.updated_at) == (at(3), at(33), at(3))
    assert (analyze.state, analyze.reason, analyze.attempts) == ("skipped", "when was false", 0)
    assert write.reason == "depends on analyze"
    plan = await storage.get_plan(sid)
    assert (plan.status, plan.updated_at, plan.lease_owner) == ("running", at(3), "p1")

    # None keeps a field, clear nulls it; output is JSON
    output = {"findings": ["a", "b"], "count": 3, "deep": {"x": [None, True]}}
    empty = await storage.plan_step(
        sid,
        lease_owner="p1",
        patches=[
            PlanThreadPatch(
                name="collect",
                state="succeeded",
                ended_at=at(4),
                output=output,
                clear=frozenset({"deadline"}),
            )
        ],
        events=[],
        now=at(4),
    )
    assert empty == []
    collect = (await storage.plan_threads(sid))[0]
    assert (collect.state, collect.output, collect.deadline) == ("succeeded", output, None)
    assert (collect.run_id, collect.started_at, collect.ended_at) == (run_id, at(3), at(4))

    await storage.plan_step(
        sid,
        lease_owner="p1",
        patches=[PlanThreadPatch(name="collect", clear=frozenset({"output", "run_id"}))],
        events=[],
        now=at(5),
    )
    collect = (await storage.plan_threads(sid))[0]
    assert (collect.output, collect.run_id, collect.state) == (None, None, "succeeded")


async def test_patches_of_one_thread_apply_in_order(storage: Storage) -> None:
    sid = await running_plan(storage)
    await storage.plan_step(
        sid,
        lease_owner="p1",
        patches=[
            PlanThreadPatch(name="collect", state="running", attempts=1, deadline=at(9)),
            PlanThreadPatch(name="analyze", error="other"),
            PlanThreadPatch(name="collect", state="failed", error="first", ended_at=at(3)),
            PlanThreadPatch(name="collect", state="retrying", retry_at=at(5)),
            PlanThreadPatch(name="collect", clear=frozenset({"ended_at", "deadline"})),
            PlanThreadPatch(name="collect", attempts=2, state="succeeded"),
        ],
        events=[],
        now=at(3),
    )
    collect, analyze, _ = await storage.plan_threads(sid)
    assert (collect.state, collect.attempts, collect.error) == ("succeeded", 2, "first")
    assert (collect.retry_at, collect.ended_at, collect.deadline) == (at(5), None, None)
    assert (analyze.state, analyze.error) == ("waiting", "other")


async def test_finish_ends_the_plan_and_sets_the_session_status(storage: Storage) -> None:
    for finish in ("completed", "failed", "cancelled"):
        sid = await running_plan(storage)
        added = await storage.plan_step(
            sid,
            lease_owner="p1",
            patches=[PlanThreadPatch(name="write", state="failed", error="boom")],
            events=[PlanEvent(kind="plan_event", content={"event": f"plan_{finish}"})],
            now=at(9),
            finish=finish,
        )
        assert [e.seq for e in added] == [2]
        plan = await storage.get_plan(sid)
        assert (plan.status, plan.ended_at, plan.updated_at) == (finish, at(9), at(9))
        assert (plan.lease_owner, plan.lease_until) == (None, None)
        session = await storage.get_session(sid)
        assert (session.status, session.updated_at) == (finish, at(9))
        with pytest.raises(ConflictError) as e:
            await storage.plan_step(sid, lease_owner=None, patches=[], events=[], now=at(10))
        assert str(e.value) == f"session {sid} plan is no longer run by this process"


async def test_step_is_refused_without_the_lease_and_writes_nothing(storage: Storage) -> None:
    sid = await running_plan(storage)
    before_threads = await storage.plan_threads(sid)
    before_plan = await storage.get_plan(sid)
    message = f"session {sid} plan is no longer run by this process"

    for lease in ("p2", None):
        with pytest.raises(ConflictError) as e:
            await storage.plan_step(
                sid,
                lease_owner=lease,
                patches=[PlanThreadPatch(name="collect", state="running", attempts=1)],
                events=[event("collect", "thread_started")],
                now=at(5),
                finish="completed",
            )
        assert str(e.value) == message

    # a patch naming no thread of the plan rolls back the whole step
    with pytest.raises(NotFoundError) as nf:
        await storage.plan_step(
            sid,
            lease_owner="p1",
            patches=[
                PlanThreadPatch(name="collect", state="running"),
                PlanThreadPatch(name="colect", state="running"),
            ],
            events=[event("collect", "thread_started")],
            now=at(5),
            finish="completed",
        )
    assert str(nf.value) == f"session {sid} plan has no thread 'colect'"

    assert await storage.plan_threads(sid) == before_threads
    assert await storage.get_plan(sid) == before_plan
    assert (await storage.get_session(sid)).status == "active"
    assert [e.seq for e in await storage.list_interactions(sid)] == [1]

    # a ready (not started) plan takes no steps either
    ready = (await new_plan(storage)).session_id
    with pytest.raises(ConflictError, match=rf"^session {ready} plan is no longer run"):
        await storage.plan_step(ready, lease_owner=None, patches=[], events=[], now=at(5))
    missing = str(uuid.uuid4())
    with pytest.raises(ConflictError, match=rf"^session {missing} plan is no longer run"):
        await storage.plan_step(
            missing, lease_owner=None, patches=[], events=[event("a", "x")], now=at(5)
        )


async def test_a_plan_started_without_a_lease_steps_with_none(storage: Storage) -> None:
    sid = await running_plan(storage, lease=None)
    await storage.plan_step(
        sid,
        lease_owner=None,
        patches=[PlanThreadPatch(name="collect", state="running")],
        events=[],
        now=at(2),
    )
    assert (await storage.plan_threads(sid))[0].state == "running"
    with pytest.raises(ConflictError):
        await storage.plan_step(sid, lease_owner="p1", patches=[], events=[], now=at(3))


async def test_a_step_over_a_thousand_threads(storage: Storage) -> None:
    names = tuple(f"t{i:04d}" for i in range(1000))
    sid = (await new_plan(storage, names=names)).session_id
    await storage.start_plan(
        sid,
        lease_owner="p1",
        lease_until=at(60),
        now=at(1),
        event=PlanEvent(kind="plan_event", content={"event": "plan_started"}),
    )
    patches = [
        PlanThreadPatch(name=n, state="succeeded", attempts=1, ended_at=at(2), output={"i": i})
        if i % 2
        else PlanThreadPatch(name=n, state="running", attempts=1, started_at=at(2))
        for i, n in enumerate(names)
    ]
    added = await storage.plan_step(
        sid,
        lease_owner="p1",
        patches=patches,
        events=[event(n, "thread_started") for n in names],
        now=at(2),
    )
    assert [e.seq for e in added] == list(range(2, 1002))
    assert [e.content["thread"] for e in added] == list(names)
    threads = await storage.plan_threads(sid)
    assert [t.name for t in threads] == list(names)
    assert [t.state for t in threads[:2]] == ["running", "succeeded"]
    assert threads[999].output == {"i": 999}
    assert sum(t.attempts for t in threads) == 1000


def test_a_patch_clears_only_nullable_fields_it_does_not_set() -> None:
    with pytest.raises(ValueError, match="state cannot be cleared"):
        PlanThreadPatch(name="a", clear=frozenset({"state"}))
    with pytest.raises(ValueError, match="error are both set and cleared"):
        PlanThreadPatch(name="a", error="x", clear=frozenset({"error"}))
    patch = PlanThreadPatch(name="a", state="failed", error="x", clear=frozenset({"output"}))
    assert patch.changes() == {"state": "failed", "error": "x", "output": None}


# --- cancel ----------------------------------------------------------------------------------


async def test_cancel_a_ready_plan(storage: Storage) -> None:
    session = await new_plan(storage, owner="alice")
    sid = session.session_id
    with pytest.raises(NotFoundError, match=rf"^session {sid} not found$"):
        await storage.cancel_plan(sid, now=at(2), reason="no", owner="bob")
    plan, active = await storage.cancel_plan(sid, now=at(2), reason="by alice", owner="alice")
    assert active == []
    assert (plan.status, plan.ended_at, plan.updated_at) == ("cancelled", at(2), at(2))
    assert await storage.get_plan(sid) == plan
    threads = await storage.plan_threads(sid)
    assert {(t.state, t.reason, t.ended_at) for t in threads} == {("cancelled", "by alice", at(2))}
    assert (await storage.get_session(sid)).status == "cancelled"
    [logged] = await storage.list_interactions(sid)
    assert (logged.kind, logged.content) == (
        "plan_event",
        {"event": "plan_cancelled", "reason": "by alice"},
    )

    bare = (await storage.put_session(make_session())).session_id
    with pytest.raises(NotFoundError, match=rf"^session {bare} has no plan$"):
        await storage.cancel_plan(bare, now=at(2), reason="x")


async def test_cancel_a_running_plan_returns_its_active_threads(storage: Storage) -> None:
    names = ("done", "running", "retrying", "interrupted", "waiting", "skipped")
    sid = (await new_plan(storage, names=names)).session_id
    await storage.start_plan(
        sid,
        lease_owner="p1",
        lease_until=at(60),
        now=at(1),
        event=PlanEvent(kind="plan_event", content={"event": "plan_started"}),
    )
    runs = {n: str(uuid.uuid4()) for n in names}
    await storage.plan_step(
        sid,
        lease_owner="p1",
        patches=[
            PlanThreadPatch(name="done", state="succeeded", run_id=runs["done"], ended_at=at(2)),
            PlanThreadPatch(name="running", state="running", run_id=runs["running"]),
            PlanThreadPatch(name="retrying", state="retrying", retry_at=at(9), error="e1"),
            PlanThreadPatch(name="interrupted", state="interrupted", run_id=runs["interrupted"]),
            PlanThreadPatch(name="skipped", state="skipped", reason="when", ended_at=at(2)),
        ],
        events=[],
        now=at(2),
    )
    plan, active = await storage.cancel_plan(sid, now=at(3), reason="user asked")
    assert (plan.status, plan.lease_owner, plan.lease_until) == ("cancelled", None, None)
    assert [(t.name, t.state) for t in active] == [
        ("running", "running"),
        ("retrying", "retrying"),
        ("interrupted", "interrupted"),
    ]
    assert active[0].run_id == runs["running"]
    after = {t.name: t for t in await storage.plan_threads(sid)}
    assert (after["done"].state, after["done"].reason, after["done"].ended_at) == (
        "succeeded",
        None,
        at(2),
    )
    assert (after["skipped"].state, after["skipped"].reason) == ("skipped", "when")
    for name in ("running", "retrying", "interrupted", "waiting"):
        assert (after[name].state, after[name].reason, after[name].ended_at) == (
            "cancelled",
            "user asked",
            at(3),
        )
    assert (await storage.get_session(sid)).status == "cancelled"
    log = await storage.list_interactions(sid)
    assert [(e.seq, e.content["event"]) for e in log] == [
        (1, "plan_started"),
        (2, "plan_cancelled"),
    ]

    # the process that ran it finds it gone
    with pytest.raises(ConflictError, match=r"plan is no longer run by this process$"):
        await storage.plan_step(sid, lease_owner="p1", patches=[], events=[], now=at(4))


async def test_cancel_a_finished_plan_is_a_conflict(storage: Storage) -> None:
    for end in ("completed", "failed", "cancelled"):
        sid = await running_plan(storage)
        if end == "cancelled":
            await storage.cancel_plan(sid, now=at(2), reason="first")
        else:
            await storage.plan_step(
                sid, lease_owner="p1", patches=[], events=[], now=at(2), finish=end
            )
        before = await storage.plan_threads(sid)
        count = len(await storage.list_interactions(sid))
        with pytest.raises(ConflictError) as e:
            await storage.cancel_plan(sid, now=at(3), reason="again")
        assert str(e.value) == (
            f"session {sid} plan is already {end}; only a ready or running plan can be cancelled"
        )
        assert await storage.plan_threads(sid) == before
        assert len(await storage.list_interactions(sid)) == count


# --- leases ----------------------------------------------------------------------------------


async def test_claim_renew_release_and_claimable(storage: Storage) -> None:
    sid = await running_plan(storage, lease="p1")  # lease until at(60)
    ready = (await new_plan(storage)).session_id
    unleased = await running_plan(storage, lease=None)

    assert await storage.claimable_plans(now=at(30)) == [unleased]
    assert set(await storage.claimable_plans(now=at(61))) == {sid, unleased}

    # a live lease of another process is not taken; our own is renewed by a claim
    assert not await storage.claim_plan(sid, lease_owner="p2", lease_until=at(90), now=at(30))
    assert await storage.claim_plan(sid, lease_owner="p1", lease_until=at(70), now=at(30))
    assert (await storage.get_plan(sid)).lease_until == at(70)
    # an expired one is
    assert await storage.claim_plan(sid, lease_owner="p2", lease_until=at(100), now=at(71))
    plan = await storage.get_plan(sid)
    assert (plan.lease_owner, plan.lease_until) == ("p2", at(100))
    assert not await storage.renew_plan_lease(sid, lease_owner="p1", lease_until=at(200))
    with pytest.raises(ConflictError):
        await storage.plan_step(sid, lease_owner="p1", patches=[], events=[], now=at(72))
    await storage.plan_step(sid, lease_owner="p2", patches=[], events=[], now=at(72))

    assert await storage.renew_plan_lease(sid, lease_owner="p2", lease_until=at(200))
    assert (await storage.get_plan(sid)).lease_until == at(200)
    assert sid not in await storage.claimable_plans(now=at(150))

    await storage.release_plan(sid, lease_owner="p1")  # not ours: nothing happens
    assert (await storage.get_plan(sid)).lease_owner == "p2"
    await storage.release_plan(sid, lease_owner="p2")
    plan = await storage.get_plan(sid)
    assert (plan.lease_owner, plan.lease_until, plan.status) == (None, None, "running")
    assert sid in await storage.claimable_plans(now=at(150))
    assert await storage.claim_plan(sid, lease_owner="p3", lease_until=at(300), now=at(150))

    # only running plans are claimed
    assert not await storage.claim_plan(ready, lease_owner="p1", lease_until=at(9), now=at(1))
    assert not await storage.renew_plan_lease(ready, lease_owner="p1", lease_until=at(9))
    await storage.plan_step(
        sid, lease_owner="p3", patches=[], events=[], now=at(151), finish="completed"
    )
    assert not await storage.claim_plan(sid, lease_owner="p3", lease_until=at(400), now=at(152))
    assert not await storage.renew_plan_lease(sid, lease_owner="p3", lease_until=at(400))
    assert await storage.claimable_plans(now=at(1000)) == [unleased]
    missing = str(uuid.uuid4())
    assert not await storage.claim_plan(missing, lease_owner="p", lease_until=at(9), now=at(1))
