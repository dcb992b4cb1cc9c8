"""Threads through ``weft.Runtime``: lifecycle, state, history, branch, snapshot, rollback,
copy and prune, with real graphs on every storage backend."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import run
from weft.errors import ConflictError, NotFoundError, UnprocessableEntityError
from weft.runtime import Runtime


async def test_a_thread_record_has_every_field_and_exact_counts(rt: Runtime) -> None:
    thread = await rt.threads.create(graph_id="counter", metadata={"user": "u1"})
    assert thread.kind == "main"
    assert thread.lifecycle == "active"
    assert thread.status == "idle"
    assert thread.metadata == {"user": "u1", "graph_id": "counter"}
    assert uuid.UUID(thread.thread_id)
    await run(rt, thread)
    await run(rt, thread)
    got = await rt.threads.get(thread.thread_id)
    history = await rt.threads.history(thread.thread_id, limit=100)
    assert got.counts.checkpoints == len(history) > 2
    assert got.counts.messages == 2
    assert got.values is not None
    assert got.values["count"] == 2
    assert got.state_updated_at is not None
    assert got.updated_at >= thread.updated_at
    api = got.to_api()
    for field in ("thread_id", "created_at", "updated_at", "state_updated_at", "metadata"):
        assert field in api
    for field in ("config", "status", "values", "interrupts", "lifecycle", "kind", "graph_id"):
        assert field in api
    for field in ("session_id", "name", "parent_thread_id", "source_checkpoint_id", "counts"):
        assert field in api
    assert "owner" not in api
    assert "rollbacks" not in api


async def test_create_if_exists_and_bad_ids(rt: Runtime) -> None:
    tid = str(uuid.uuid4())
    first = await rt.threads.create(thread_id=tid, metadata={"a": 1})
    again = await rt.threads.create(thread_id=tid, metadata={"a": 2}, if_exists="do_nothing")
    assert again.metadata == first.metadata == {"a": 1}
    with pytest.raises(ConflictError, match=f"^thread {tid} already exists$"):
        await rt.threads.create(thread_id=tid)
    with pytest.raises(UnprocessableEntityError, match=r"^thread_id must be a UUID, not 'abc'$"):
        await rt.threads.get("abc")
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=f"^thread {missing} not found$"):
        await rt.threads.get(missing)
    with pytest.raises(NotFoundError, match=r"^graph 'nope' not found"):
        await rt.threads.create(graph_id="nope")
    with pytest.raises(UnprocessableEntityError, match=r"^if_exists must be one of raise"):
        await rt.threads.create(if_exists="update")


async def test_new_thread_ids_are_ordered_by_creation(rt: Runtime) -> None:
    made = [(await rt.threads.create()).thread_id for _ in range(5)]
    made.append((await rt.threads.copy(made[0])).thread_id)
    assert {uuid.UUID(t).version for t in made} == {6}
    assert made == sorted(made)  # a new thread's rows go to the end of the indexes


async def test_lifecycle_moves_are_checked_in_one_place(rt: Runtime) -> None:
    thread = await rt.threads.create(graph_id="counter")
    tid = thread.thread_id
    assert (await rt.threads.set_lifecycle(tid, "paused")).lifecycle == "paused"
    with pytest.raises(
        ConflictError,
        match=rf"^thread {tid} cannot move from lifecycle 'paused' to 'completed'; "
        r"allowed from 'paused': active$",
    ):
        await rt.threads.set_lifecycle(tid, "completed")
    await rt.threads.set_lifecycle(tid, "active")
    await rt.threads.set_lifecycle(tid, "archived")
    with pytest.raises(
        ConflictError,
        match=r"cannot move from lifecycle 'archived' to 'active'; "
        r"allowed from 'archived': none: it is final$",
    ):
        await rt.threads.set_lifecycle(tid, "active")
    with pytest.raises(
        UnprocessableEntityError,
        match=r"^lifecycle must be one of active, paused, completed, failed, archived, "
        "branched, not 'done'$",
    ):
        await rt.threads.set_lifecycle(tid, "done")
    with pytest.raises(ConflictError, match=r"has lifecycle 'archived': run refused"):
        await run(rt, thread)


async def test_update_metadata_is_merged(rt: Runtime) -> None:
    thread = await rt.threads.create(metadata={"a": 1, "b": 2})
    updated = await rt.threads.update(thread.thread_id, metadata={"b": 3, "c": 4})
    assert updated.metadata == {"a": 1, "b": 3, "c": 4}


async def test_search_count_and_select(rt: Runtime) -> None:
    made = [
        await rt.threads.create(graph_id="counter", metadata={"user": f"u{i % 2}", "i": i})
        for i in range(5)
    ]
    await run(rt, made[0])
    await rt.threads.set_lifecycle(made[1].thread_id, "paused")
    assert await rt.threads.count(metadata={"user": "u0"}) == 3
    found = await rt.threads.search(metadata={"user": "u0"}, sort_by="created_at", sort_order="asc")
    assert [t.thread_id for t in found] == [made[0].thread_id, made[2].thread_id, made[4].thread_id]
    assert [t.thread_id for t in await rt.threads.search(values={"count": 1})] == [
        made[0].thread_id
    ]
    assert [t.thread_id for t in await rt.threads.search(lifecycle="paused")] == [made[1].thread_id]
    assert await rt.threads.count(kind="main", graph_id="counter") == 5
    assert await rt.threads.count(ids=[made[3].thread_id, made[4].thread_id]) == 2
    page = await rt.threads.search(limit=2, offset=1, sort_by="created_at", sort_order="asc")
    assert [t.thread_id for t in page] == [made[1].thread_id, made[2].thread_id]
    selected = await rt.threads.search(select=["thread_id", "lifecycle"], limit=1)
    assert set(selected[0]) == {"thread_id", "lifecycle"}
    with pytest.raises(UnprocessableEntityError, match=r"^cannot select 'colour'; fields are"):
        await rt.threads.search(select=["colour"])
    with pytest.raises(UnprocessableEntityError, match=r"^sort_by must be one of thread_id"):
        await rt.threads.search(sort_by="colour")
    with pytest.raises(UnprocessableEntityError, match=r"^kind must be one of main, branch"):
        await rt.threads.search(kind="twig")
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'colour'"):
        await rt.threads.search(colour="red")  # type: ignore[call-overload]


async def test_state_update_state_and_history(rt: Runtime) -> None:
    thread = await rt.threads.create(graph_id="counter")
    tid = thread.thread_id
    empty = await rt.threads.state(tid)
    assert empty.values == {}
    assert empty.checkpoint is None
    await run(rt, thread)
    state = await rt.threads.state(tid)
    assert state.values["count"] == 1
    assert state.next == []
    assert state.values["messages"][0]["content"] == "turn 1"
    result = await rt.threads.update_state(tid, {"count": 10}, as_node="add_one")
    assert result["checkpoint"]["thread_id"] == tid
    assert (await rt.threads.state(tid)).values["count"] == 11
    assert (await rt.threads.get(tid)).values == (await rt.threads.state(tid)).values
    history = await rt.threads.history(tid, limit=100)
    ids = [h.checkpoint_id for h in history]
    assert ids == sorted(ids, reverse=True)  # newest first
    assert history[0].checkpoint_id == result["checkpoint"]["checkpoint_id"]
    older = await rt.threads.history(tid, before=ids[0], limit=2)
    assert [h.checkpoint_id for h in older] == ids[1:3]
    inputs = await rt.threads.history(tid, metadata={"source": "input"}, limit=100)
    assert [h.metadata["source"] for h in inputs] == ["input"]
    past = await rt.threads.state(tid, checkpoint_id=ids[-1])
    assert past.checkpoint_id == ids[-1]
    # fork in place: from a past checkpoint, the new head's parent is that checkpoint
    forked = await rt.threads.update_state(tid, {"count": 100}, checkpoint_id=ids[1])
    head = await rt.threads.state(tid)
    assert head.checkpoint_id == forked["checkpoint"]["checkpoint_id"]
    assert head.parent_checkpoint is not None
    assert head.parent_checkpoint["checkpoint_id"] == ids[1]
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=f"^checkpoint {missing} not found in thread {tid}$"):
        await rt.threads.state(tid, checkpoint_id=missing)
    with pytest.raises(UnprocessableEntityError, match=r"^checkpoint_id must be a UUID"):
        await rt.threads.state(tid, checkpoint_id="latest")


async def test_interrupts_are_on_the_record_and_in_state(rt: Runtime) -> None:
    thread = await rt.threads.create(graph_id="review")
    await run(rt, thread, {"draft": "d1"})
    got = await rt.threads.get(thread.thread_id)
    assert got.status == "interrupted"
    [(task_id, interrupts)] = got.interrupts.items()
    assert interrupts[0]["value"] == {"question": "approve d1?"}
    state = await rt.threads.state(thread.thread_id)
    assert state.next == ["ask"]
    assert state.tasks[0]["id"] == task_id
    await run(rt, thread, resume="yes")
    done = await rt.threads.get(thread.thread_id)
    assert done.status == "idle"
    assert done.interrupts == {}
    assert done.values == {
        "draft": "d1",
        "verdict": "yes",
    }


async def test_branch_continues_from_the_chosen_checkpoint(rt: Runtime) -> None:
    source = await rt.threads.create(graph_id="counter", metadata={"user": "u1"})
    await run(rt, source)
    first_head = (await rt.threads.state(source.thread_id)).checkpoint_id
    await run(rt, source)
    assert first_head is not None
    branch = await rt.threads.branch(
        source.thread_id, checkpoint_id=first_head, name="alt", metadata={"why": "try"}
    )
    assert branch.kind == "branch"
    assert branch.parent_thread_id == source.thread_id
    assert branch.source_checkpoint_id == first_head
    assert branch.name == "alt"
    assert branch.metadata == {"user": "u1", "graph_id": "counter", "why": "try"}
    assert branch.counts.checkpoints == 1
    assert branch.counts.messages == 1
    assert branch.values is not None
    assert branch.values["count"] == 1
    assert (await rt.threads.get(source.thread_id)).counts.branches == 1
    await run(rt, branch)
    assert (await rt.threads.state(branch.thread_id)).values["count"] == 2
    assert (await rt.threads.state(source.thread_id)).values["count"] == 2
    # the default checkpoint is the head
    at_head = await rt.threads.branch(source.thread_id)
    assert at_head.values is not None
    assert at_head.values["count"] == 2
    await rt.threads.set_lifecycle(source.thread_id, "archived")
    with pytest.raises(
        ConflictError,
        match=rf"^thread {source.thread_id} has lifecycle 'archived': branching refused",
    ):
        await rt.threads.branch(source.thread_id)


async def test_branch_of_an_interrupted_thread_can_be_resumed(rt: Runtime) -> None:
    source = await rt.threads.create(graph_id="review")
    await run(rt, source, {"draft": "d2"})
    branch = await rt.threads.branch(source.thread_id)
    assert branch.status == "interrupted"
    assert branch.interrupts
    await run(rt, branch, resume="no")
    assert (await rt.threads.state(branch.thread_id)).values["verdict"] == "no"
    assert (await rt.threads.get(source.thread_id)).status == "interrupted"


async def test_branch_at_an_answered_interrupt_asks_again(rt: Runtime) -> None:
    source = await rt.threads.create(graph_id="review")
    await run(rt, source, {"draft": "d3"})
    asked_at = (await rt.threads.state(source.thread_id)).checkpoint_id
    await run(rt, source, resume="yes")
    assert (await rt.threads.state(source.thread_id)).values["verdict"] == "yes"
    branch = await rt.threads.branch(source.thread_id, checkpoint_id=asked_at)
    assert branch.status == "interrupted"
    assert (await rt.threads.state(branch.thread_id)).next == ["ask"]
    await run(rt, branch, resume="no")  # the source's answer was not carried over
    assert (await rt.threads.state(branch.thread_id)).values["verdict"] == "no"


async def test_snapshots_are_read_only_and_outlive_their_source(rt: Runtime) -> None:
    source = await rt.threads.create(graph_id="counter")
    await run(rt, source)
    snap = await rt.threads.snapshot(source.thread_id, "v1")
    assert snap.kind == "snapshot"
    assert snap.name == "v1"
    assert [s.thread_id for s in await rt.threads.snapshots(source.thread_id)] == [snap.thread_id]
    with pytest.raises(
        ConflictError, match=rf"^thread {snap.thread_id} is a snapshot and is read-only: run"
    ):
        await run(rt, snap)
    with pytest.raises(ConflictError, match=r"is a snapshot and is read-only: state update"):
        await rt.threads.update_state(snap.thread_id, {"count": 5})
    with pytest.raises(ConflictError, match=r"is a snapshot and is read-only: rollback"):
        await rt.threads.rollback(snap.thread_id, snap.source_checkpoint_id or "")
    with pytest.raises(UnprocessableEntityError, match=r"^a snapshot needs a name"):
        await rt.threads.snapshot(source.thread_id, "")
    # keep_latest of the source leaves the snapshot whole, and prune skips snapshots
    await run(rt, source)
    assert await rt.threads.prune([source.thread_id], strategy="keep_latest") == 1
    assert (await rt.threads.get(source.thread_id)).counts.checkpoints == 1
    assert await rt.threads.prune([snap.thread_id], strategy="delete") == 0
    await rt.threads.delete(source.thread_id)
    kept = await rt.threads.get(snap.thread_id)
    assert kept.parent_thread_id is None
    assert kept.counts.checkpoints == 1
    assert (await rt.threads.state(snap.thread_id)).values["count"] == 1
    branch = await rt.threads.branch(snap.thread_id)
    await run(rt, branch)
    assert (await rt.threads.state(branch.thread_id)).values["count"] == 2


async def test_rollback_makes_a_past_checkpoint_the_head_and_deletes_nothing(
    rt: Runtime,
) -> None:
    thread = await rt.threads.create(graph_id="counter")
    tid = thread.thread_id
    await run(rt, thread)
    target = (await rt.threads.state(tid)).checkpoint_id
    assert target is not None
    await run(rt, thread)
    await run(rt, thread)
    before = await rt.threads.history(tid, limit=100)
    rolled = await rt.threads.rollback(tid, target)
    assert rolled.values is not None
    assert rolled.values["count"] == 1
    head = await rt.threads.state(tid)
    assert head.values["count"] == 1
    assert head.checkpoint_id not in {h.checkpoint_id for h in before}
    assert head.parent_checkpoint is not None
    assert head.parent_checkpoint["checkpoint_id"] == target
    assert head.metadata["source"] == "rollback"
    after = await rt.threads.history(tid, limit=100)
    assert len(after) == len(before) + 1
    abandoned = {h.checkpoint_id for h in after if h.metadata.get("abandoned")}
    assert abandoned == {h.checkpoint_id for h in before if (h.checkpoint_id or "") > target}
    assert (await rt.threads.get(tid)).counts.checkpoints == len(after)
    await run(rt, thread)
    assert (await rt.threads.state(tid)).values["count"] == 2
    other = await rt.threads.create(graph_id="counter")
    await run(rt, other)
    foreign = (await rt.threads.state(other.thread_id)).checkpoint_id
    with pytest.raises(NotFoundError, match=f"^checkpoint {foreign} not found in thread {tid}$"):
        await rt.threads.rollback(tid, foreign or "")


async def test_copy_is_a_full_fork(rt: Runtime) -> None:
    source = await rt.threads.create(graph_id="counter", metadata={"user": "u9"})
    await run(rt, source)
    await run(rt, source)
    fork = await rt.threads.copy(source.thread_id)
    assert fork.kind == "fork"
    assert fork.parent_thread_id == source.thread_id
    assert fork.metadata == source.metadata
    src_history = await rt.threads.history(source.thread_id, limit=100)
    fork_history = await rt.threads.history(fork.thread_id, limit=100)
    assert [h.checkpoint_id for h in fork_history] == [h.checkpoint_id for h in src_history]
    assert fork.counts.checkpoints == len(src_history)
    await run(rt, fork)
    assert (await rt.threads.state(fork.thread_id)).values["count"] == 3
    assert (await rt.threads.state(source.thread_id)).values["count"] == 2


async def test_delete_and_prune(rt: Runtime) -> None:
    a = await rt.threads.create(graph_id="counter")
    b = await rt.threads.create(graph_id="counter")
    await run(rt, a)
    await run(rt, b)
    assert await rt.threads.prune([a.thread_id, b.thread_id, str(uuid.uuid4())]) == 2
    for t in (a, b):
        with pytest.raises(NotFoundError):
            await rt.threads.get(t.thread_id)
    with pytest.raises(UnprocessableEntityError, match=r"^strategy must be one of delete"):
        await rt.threads.prune([a.thread_id], strategy="all")
    c = await rt.threads.create(graph_id="counter")
    await run(rt, c)
    await rt.threads.delete(c.thread_id)
    assert await rt.threads.count() == 0
    with pytest.raises(NotFoundError):
        await rt.threads.delete(c.thread_id)


async def test_owner_filter(rt: Runtime) -> None:
    mine = await rt.threads.create(owner="alice")
    await rt.threads.create(owner="bob")
    shared = await rt.threads.create()
    seen = {t.thread_id for t in await rt.threads.search(owner="alice")}
    assert seen == {mine.thread_id, shared.thread_id}
    with pytest.raises(NotFoundError):
        await rt.threads.get(mine.thread_id, owner="bob")
