"""The session and interaction methods of Storage, on every backend."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from tests.storage.test_threads_storage import (
    T0,
    make_session,
    make_thread,
    root_checkpoints,
    run,
    scalar,
)
from weft.errors import ConflictError, NotFoundError
from weft.schema import Session
from weft.storage import Storage
from weft.storage.base import (
    CreateSession,
    DeleteSession,
    SessionPatch,
    SessionQuery,
    ThreadQuery,
    UpdateSession,
)


async def test_put_then_get_round_trips_every_field(storage: Storage) -> None:
    original = make_session(
        user_id="u1",
        name="Quarterly report",
        status="completed",
        metadata={"team": "ünï", "n": 1, "nested": {"a": [1, None]}},
        state={"plan": ["a", "b"], "done": False},
        state_version=3,
        owner="alice",
    )
    assert await storage.put_session(original) == original
    assert await storage.get_session(original.session_id) == original
    assert await storage.get_session(original.session_id, owner="alice") == original
    got = await storage.get_session(original.session_id)
    assert got.created_at == T0
    assert got.created_at.tzinfo is not None

    with pytest.raises(ConflictError) as e:
        await storage.put_session(original.model_copy(update={"name": "other"}))
    assert str(e.value) == f"session {original.session_id} already exists"
    assert (await storage.get_session(original.session_id)).name == "Quarterly report"


async def test_missing_and_unseen_sessions_are_not_found(storage: Storage) -> None:
    s = await storage.put_session(make_session(owner="alice"))
    shared = await storage.put_session(make_session())
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError) as e:
        await storage.get_session(missing)
    assert str(e.value) == f"session {missing} not found"
    with pytest.raises(NotFoundError) as e:
        await storage.get_session(s.session_id, owner="bob")
    assert str(e.value) == f"session {s.session_id} not found"
    assert await storage.get_session(shared.session_id, owner="bob") == shared
    with pytest.raises(NotFoundError):
        await storage.update_session(s.session_id, SessionPatch(updated_at=T0), owner="bob")
    with pytest.raises(NotFoundError):
        await storage.delete_session(s.session_id, owner="bob")
    with pytest.raises(NotFoundError):
        await storage.delete_session(missing)
    with pytest.raises(NotFoundError):
        await storage.set_session_state(
            s.session_id, {}, expected_version=0, updated_at=T0, owner="bob"
        )
    with pytest.raises(NotFoundError):
        await storage.append_interaction(
            s.session_id, kind="note", content="x", metadata={}, created_at=T0, owner="bob"
        )
    with pytest.raises(NotFoundError):
        await storage.list_interactions(s.session_id, owner="bob")
    with pytest.raises(NotFoundError):
        await storage.list_interactions(missing)
    assert await storage.get_session(s.session_id) == s


async def test_update_sets_given_fields_and_merges_metadata(storage: Storage) -> None:
    s = await storage.put_session(
        make_session(user_id="u1", name="n", metadata={"a": 1, "b": {"x": 1}}, state={"k": 1})
    )
    later = T0 + timedelta(hours=1)
    updated = await storage.update_session(
        s.session_id, SessionPatch(updated_at=later, metadata={"b": {"y": 2}, "c": 3})
    )
    assert updated == s.model_copy(
        update={"metadata": {"a": 1, "b": {"y": 2}, "c": 3}, "updated_at": later}
    )
    updated = await storage.update_session(
        s.session_id,
        SessionPatch(updated_at=later, user_id="u2", name="renamed", status="archived"),
    )
    assert (updated.user_id, updated.name, updated.status) == ("u2", "renamed", "archived")
    assert updated.state == {"k": 1}
    assert updated.state_version == 0
    assert await storage.get_session(s.session_id) == updated


async def test_delete_is_refused_while_threads_belong_to_it(storage: Storage) -> None:
    s = await storage.put_session(make_session())
    members = [
        await storage.put_thread(make_thread(session_id=s.session_id, name=f"t{i}"))
        for i in range(2)
    ]
    for member in members:
        await run(storage, member.thread_id)
    outsider = await storage.put_thread(make_thread())
    await run(storage, outsider.thread_id)
    await storage.append_interaction(
        s.session_id, kind="request", content="go", metadata={}, created_at=T0
    )

    with pytest.raises(ConflictError) as e:
        await storage.delete_session(s.session_id)
    assert str(e.value) == (
        f"session {s.session_id} has 2 thread(s); delete them first or pass cascade=true"
    )
    assert await storage.get_session(s.session_id) == s
    assert len(await storage.list_interactions(s.session_id)) == 1

    await storage.delete_session(s.session_id, cascade=True)
    with pytest.raises(NotFoundError):
        await storage.get_session(s.session_id)
    for member in members:
        with pytest.raises(NotFoundError):
            await storage.get_thread(member.thread_id)
        assert await root_checkpoints(storage, member.thread_id) == []
    sql = "SELECT count(*) FROM interactions WHERE session_id = ?"
    assert await scalar(storage, sql, (s.session_id,)) == 0
    assert len(await root_checkpoints(storage, outsider.thread_id)) == 3
    assert await storage.count_threads(ThreadQuery()) == 1

    empty = await storage.put_session(make_session())
    await storage.delete_session(empty.session_id)
    with pytest.raises(NotFoundError):
        await storage.get_session(empty.session_id)


async def test_search_and_count(storage: Storage) -> None:
    specs = [
        ("s0", "u1", "active", {"team": "a", "n": 1}, 0, 5, None),
        ("s1", "u1", "completed", {"team": "b"}, 1, 1, "alice"),
        ("s2", "u2", "active", {"team": "a", "deep": {"k": True}}, 2, 2, "bob"),
        ("s3", "u3", "archived", {}, 3, 3, None),
    ]
    for session_id, user, status, metadata, created, updated, owner in specs:
        await storage.put_session(
            make_session(
                session_id=session_id,
                user_id=user,
                status=status,
                metadata=metadata,
                owner=owner,
                at=T0 + timedelta(hours=created),
            ).model_copy(update={"updated_at": T0 + timedelta(hours=updated)})
        )

    async def ids(query: SessionQuery) -> list[str]:
        found = await storage.search_sessions(query, limit=100)
        assert await storage.count_sessions(query) == len(found)
        return [s.session_id for s in found]

    assert await ids(SessionQuery()) == ["s3", "s2", "s1", "s0"]  # newest first
    assert await ids(SessionQuery(user_id="u1")) == ["s1", "s0"]
    assert await ids(SessionQuery(status="active")) == ["s2", "s0"]
    assert await ids(SessionQuery(status="failed")) == []
    assert await ids(SessionQuery(metadata={"team": "a"})) == ["s2", "s0"]
    assert await ids(SessionQuery(metadata={"team": "a", "n": 1})) == ["s0"]
    assert await ids(SessionQuery(metadata={"deep": {"k": True}})) == ["s2"]
    assert await ids(SessionQuery(metadata={"n": "1"})) == []
    hour = timedelta(hours=1)
    assert await ids(SessionQuery(created_after=T0 + hour)) == ["s3", "s2", "s1"]
    assert await ids(SessionQuery(created_before=T0 + hour)) == ["s1", "s0"]
    assert await ids(SessionQuery(created_after=T0 + hour, created_before=T0 + 2 * hour)) == [
        "s2",
        "s1",
    ]
    assert await ids(SessionQuery(updated_after=T0 + 3 * hour)) == ["s3", "s0"]
    assert await ids(SessionQuery(updated_before=T0 + 2 * hour)) == ["s2", "s1"]
    assert await ids(SessionQuery(owner="alice")) == ["s3", "s1", "s0"]
    assert await ids(SessionQuery(owner="bob", user_id="u2")) == ["s2"]
    assert await ids(SessionQuery(user_id="u1", status="active", created_before=T0)) == ["s0"]

    page = await storage.search_sessions(SessionQuery(), limit=2, offset=1)
    assert [s.session_id for s in page] == ["s2", "s1"]
    assert await storage.search_sessions(SessionQuery(), offset=10) == []


async def test_search_ties_are_ordered_by_id(storage: Storage) -> None:
    for session_id in ("b", "c", "a"):
        await storage.put_session(make_session(session_id=session_id))
    found = await storage.search_sessions(SessionQuery())
    assert [s.session_id for s in found] == ["c", "b", "a"]


async def test_batch_applies_every_op(storage: Storage) -> None:
    gone = await storage.put_session(make_session())
    kept = await storage.put_session(make_session(metadata={"a": 1}))
    new = make_session(name="new")
    later = T0 + timedelta(minutes=1)
    results = await storage.batch_sessions(
        [
            CreateSession(new),
            UpdateSession(kept.session_id, SessionPatch(updated_at=later, metadata={"b": 2})),
            DeleteSession(gone.session_id),
            UpdateSession(new.session_id, SessionPatch(updated_at=later, name="newer")),
        ]
    )
    assert results[0] == new
    assert results[1] is not None
    assert results[1].metadata == {"a": 1, "b": 2}
    assert results[2] is None
    assert results[3] is not None
    assert results[3].name == "newer"
    assert await storage.get_session(new.session_id) == results[3]
    with pytest.raises(NotFoundError):
        await storage.get_session(gone.session_id)
    assert await storage.batch_sessions([]) == []


@pytest.mark.parametrize("failing", ["missing", "duplicate", "has_threads", "unseen"])
async def test_batch_is_all_or_nothing(storage: Storage, failing: str) -> None:
    existing = await storage.put_session(make_session(metadata={"v": 1}, owner="alice"))
    victim = await storage.put_session(make_session())
    await storage.put_thread(make_thread(session_id=victim.session_id))
    created = make_session()
    missing = str(uuid.uuid4())
    bad, error, text = {
        "missing": (
            UpdateSession(missing, SessionPatch(updated_at=T0)),
            NotFoundError,
            f"session {missing} not found",
        ),
        "duplicate": (
            CreateSession(make_session(session_id=existing.session_id)),
            ConflictError,
            f"session {existing.session_id} already exists",
        ),
        "has_threads": (
            DeleteSession(victim.session_id),
            ConflictError,
            f"session {victim.session_id} has 1 thread(s); delete them first or pass cascade=true",
        ),
        "unseen": (
            DeleteSession(existing.session_id),
            NotFoundError,
            f"session {existing.session_id} not found",
        ),
    }[failing]
    ops = [
        CreateSession(created),
        UpdateSession(existing.session_id, SessionPatch(updated_at=T0, metadata={"v": 2})),
        bad,
        DeleteSession(str(uuid.uuid4())),  # never reached
    ]
    owner = "bob" if failing == "unseen" else None
    if owner is not None:
        ops[1] = UpdateSession(victim.session_id, SessionPatch(updated_at=T0, name="x"))
    with pytest.raises(error) as e:
        await storage.batch_sessions(ops, owner=owner)
    assert str(e.value) == f"batch item 2: {text}"
    with pytest.raises(NotFoundError):
        await storage.get_session(created.session_id)
    assert await storage.get_session(existing.session_id) == existing
    assert await storage.get_session(victim.session_id) == victim
    assert await storage.count_sessions(SessionQuery()) == 2


async def test_set_session_state_compares_and_sets(storage: Storage) -> None:
    s = await storage.put_session(make_session(state={"a": 1}))
    later = T0 + timedelta(minutes=1)
    first = await storage.set_session_state(
        s.session_id, {"a": 2, "b": [1]}, expected_version=0, updated_at=later
    )
    assert first.state == {"a": 2, "b": [1]}
    assert first.state_version == 1
    assert first.updated_at == later
    with pytest.raises(ConflictError) as e:
        await storage.set_session_state(
            s.session_id, {"a": 3}, expected_version=0, updated_at=later
        )
    assert str(e.value) == f"session {s.session_id} state changed (version 0 -> 1)"
    assert await storage.get_session(s.session_id) == first
    second = await storage.set_session_state(s.session_id, {}, expected_version=1, updated_at=later)
    assert (second.state, second.state_version) == ({}, 2)


async def test_concurrent_set_session_state_lets_one_win(storage: Storage) -> None:
    s = await storage.put_session(make_session())
    results = await asyncio.gather(
        *(
            storage.set_session_state(
                s.session_id, {"writer": i}, expected_version=0, updated_at=T0
            )
            for i in range(10)
        ),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, Session)]
    assert len(wins) == 1
    assert all(isinstance(r, ConflictError) for r in results if not isinstance(r, Session))
    stored = await storage.get_session(s.session_id)
    assert stored.state_version == 1
    assert stored.state == wins[0].state


async def test_concurrent_appends_get_consecutive_seqs(storage: Storage) -> None:
    s = await storage.put_session(make_session())
    other = await storage.put_session(make_session())
    entries = await asyncio.gather(
        *(
            storage.append_interaction(
                s.session_id,
                kind="note",
                content={"i": i},
                metadata={"i": i},
                created_at=T0,
            )
            for i in range(50)
        ),
        storage.append_interaction(
            other.session_id, kind="note", content="x", metadata={}, created_at=T0
        ),
    )
    assert sorted(e.seq for e in entries[:50]) == list(range(1, 51))
    assert entries[50].seq == 1
    stored = await storage.list_interactions(s.session_id, limit=1000)
    assert [e.seq for e in stored] == list(range(1, 51))
    assert {e.seq: e for e in stored} == {e.seq: e for e in entries[:50]}


async def test_list_interactions(storage: Storage) -> None:
    s = await storage.put_session(make_session())
    thread = await storage.put_thread(make_thread(session_id=s.session_id))
    kinds = ["request", "response", "feedback", "note", "thread_event", "run_event"]
    for i, kind in enumerate(kinds * 2):
        entry = await storage.append_interaction(
            s.session_id,
            kind=kind,  # type: ignore[arg-type]
            content={"text": f"ünï {i}", "list": [i, None]} if i % 2 else f"plain {i}",
            metadata={"i": i},
            thread_id=thread.thread_id if kind == "thread_event" else None,
            run_id="r1" if kind == "run_event" else None,
            created_at=T0 + timedelta(seconds=i),
        )
        assert entry.seq == i + 1

    everything = await storage.list_interactions(s.session_id)
    assert [e.seq for e in everything] == list(range(1, 13))
    first = everything[0]
    assert (first.kind, first.content, first.metadata) == ("request", "plain 0", {"i": 0})
    assert first.created_at == T0
    assert everything[1].content == {"text": "ünï 1", "list": [1, None]}
    assert everything[4].thread_id == thread.thread_id
    assert everything[5].run_id == "r1"
    assert everything[0].thread_id is None

    assert [e.seq for e in await storage.list_interactions(s.session_id, after=10)] == [11, 12]
    assert [e.seq for e in await storage.list_interactions(s.session_id, after=3, limit=2)] == [
        4,
        5,
    ]
    assert await storage.list_interactions(s.session_id, after=12) == []
    picked = await storage.list_interactions(s.session_id, kinds=["feedback", "run_event"])
    assert [(e.seq, e.kind) for e in picked] == [
        (3, "feedback"),
        (6, "run_event"),
        (9, "feedback"),
        (12, "run_event"),
    ]
    picked = await storage.list_interactions(s.session_id, after=3, limit=2, kinds=["feedback"])
    assert [e.seq for e in picked] == [9]
    empty = await storage.put_session(make_session())
    assert await storage.list_interactions(empty.session_id) == []
