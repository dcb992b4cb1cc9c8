"""``/threads`` through the official SDK client (records, search, count, state, history,
copy, prune) and weft's thread operations over plain HTTP (branch, snapshots, rollback,
lifecycle), with the errors each bad request gets."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from langgraph_sdk import errors as sdk_errors
from langgraph_sdk.client import LangGraphClient

from tests.api.conftest import Server
from tests.api.unstorable import NAN, NUL, RANGE, SURROGATE, check, nested


def detail(response: httpx.Response) -> Any:
    return response.json()["detail"]


async def counted_thread(client: LangGraphClient, server: Server, runs: int = 2) -> str:
    """A thread of the ``counter`` graph after ``runs`` runs (each adds a message and 1)."""
    thread = await client.threads.create(graph_id="counter")
    for _ in range(runs):
        await server.rt.runs.wait(thread["thread_id"], "counter", input={"count": 0})
    return str(thread["thread_id"])


async def test_create_get_update_delete(client: LangGraphClient, server: Server) -> None:
    tid = str(uuid.uuid4())
    thread: Any = await client.threads.create(
        thread_id=tid, metadata={"user": "u1"}, graph_id="counter"
    )
    assert thread["thread_id"] == tid
    assert thread["metadata"] == {"user": "u1", "graph_id": "counter"}
    assert thread["status"] == "idle"
    assert (thread["lifecycle"], thread["kind"], thread["graph_id"]) == (
        "active",
        "main",
        "counter",
    )
    assert thread["counts"] == {"messages": 0, "checkpoints": 0, "branches": 0, "runs": 0}
    assert "owner" not in thread
    assert "rollbacks" not in thread

    with pytest.raises(sdk_errors.ConflictError) as taken:
        await client.threads.create(thread_id=tid)
    assert detail(taken.value.response) == f"thread {tid} already exists"
    same: Any = await client.threads.create(
        thread_id=tid, metadata={"other": 1}, if_exists="do_nothing"
    )
    assert same["metadata"] == {"user": "u1", "graph_id": "counter"}

    got: Any = await client.threads.get(tid)
    assert (got["thread_id"], got["created_at"]) == (tid, thread["created_at"])

    updated: Any = await client.threads.update(tid, metadata={"x": 1})
    assert updated["metadata"] == {"user": "u1", "graph_id": "counter", "x": 1}
    assert await client.threads.update(tid, metadata={"y": 2}, return_minimal=True) is None
    assert (await client.threads.get(tid))["metadata"]["y"] == 2

    async with server.http() as http:
        paused = await http.patch(f"/threads/{tid}", json={"lifecycle": "paused", "name": "n"})
        assert paused.status_code == 200
        assert (paused.json()["lifecycle"], paused.json()["name"]) == ("paused", "n")
        wrong = await http.patch(f"/threads/{tid}", json={"lifecycle": "completed"})
        assert wrong.status_code == 409
        assert detail(wrong) == (
            f"thread {tid} cannot move from lifecycle 'paused' to 'completed'; "
            "allowed from 'paused': active"
        )
        unknown = await http.patch(f"/threads/{tid}", json={"lifecycle": "gone"})
        assert unknown.status_code == 422
        assert detail(unknown).startswith("lifecycle: Input should be 'active', 'paused'")

    assert await client.threads.delete(tid) is None
    with pytest.raises(sdk_errors.NotFoundError) as gone:
        await client.threads.get(tid)
    assert detail(gone.value.response) == f"thread {tid} not found"


async def test_search_count_select_and_pagination(client: LangGraphClient, server: Server) -> None:
    made = [await client.threads.create(metadata={"tag": "s", "i": i}) for i in range(3)]
    await client.threads.create(metadata={"tag": "other"})
    ids = [str(t["thread_id"]) for t in made]

    found = await client.threads.search(metadata={"tag": "s"}, limit=2, sort_order="asc")
    assert [t["thread_id"] for t in found] == ids[:2]
    rest = await client.threads.search(metadata={"tag": "s"}, limit=2, offset=2, sort_order="asc")
    assert [t["thread_id"] for t in rest] == ids[2:]
    picked = await client.threads.search(
        ids=ids[:1],
        select=["thread_id", "status", "lifecycle"],
    )
    assert picked == [{"thread_id": ids[0], "status": "idle", "lifecycle": "active"}]
    assert await client.threads.count(metadata={"tag": "s"}) == 3
    assert await client.threads.count(status="idle") == 4
    assert await client.threads.count(status="busy") == 0

    async with server.http() as http:
        first = await http.post("/threads/search", json={"metadata": {"tag": "s"}, "limit": 2})
        assert first.headers["X-Pagination-Total"] == "3"
        assert first.headers["X-Pagination-Next"] == "2"
        last = await http.post(
            "/threads/search", json={"metadata": {"tag": "s"}, "limit": 2, "offset": 2}
        )
        assert last.headers["X-Pagination-Total"] == "3"
        assert "X-Pagination-Next" not in last.headers
        weft_filter = await http.post("/threads/count", json={"kind": "main"})
        assert weft_filter.json() == 4

        bad_select = await http.post("/threads/search", json={"select": ["context"]})
        assert bad_select.status_code == 422
        assert detail(bad_select).startswith("cannot select 'context'; fields are thread_id,")
        extract = await http.post("/threads/search", json={"extract": {"m": "values.m"}})
        assert extract.status_code == 422
        assert detail(extract) == (
            "extract is not supported by weft: use select, then read the fields you need"
        )
        bad_status = await http.post("/threads/count", json={"status": "sleeping"})
        assert bad_status.status_code == 422
        assert detail(bad_status) == (
            "status: Input should be 'idle', 'busy', 'interrupted' or 'error'"
        )
        bad_limit = await http.post("/threads/search", json={"limit": 0})
        assert bad_limit.status_code == 422
        assert detail(bad_limit) == "limit: Input should be greater than or equal to 1"


async def test_state_history_and_update_state(client: LangGraphClient, server: Server) -> None:
    tid = await counted_thread(client, server)

    state: Any = await client.threads.get_state(tid)
    assert state["values"]["count"] == 2
    assert [m["content"] for m in state["values"]["messages"]] == ["turn 1", "turn 2"]
    assert state["next"] == []
    assert state["checkpoint"]["thread_id"] == tid
    only = await client.threads.get_state(tid, select=["values.count", "next"])
    assert only == {"values": {"count": 2}, "next": []}
    assert (await client.threads.get(tid))["values"]["count"] == 2

    history: Any = await client.threads.get_history(tid, limit=100)
    ids = [h["checkpoint"]["checkpoint_id"] for h in history]
    assert ids[0] == state["checkpoint"]["checkpoint_id"]
    assert len(ids) == 8  # per run: input, speak, add_one and the start of the next
    assert [h["values"].get("count") for h in history[:2]] == [2, 1]
    page: Any = await client.threads.get_history(tid, limit=2, before=history[1]["checkpoint"])
    assert [h["checkpoint"]["checkpoint_id"] for h in page] == ids[2:4]
    by_id: Any = await client.threads.get_history(tid, limit=1, before=ids[4])
    assert [h["checkpoint"]["checkpoint_id"] for h in by_id] == ids[5:6]
    inputs: Any = await client.threads.get_history(tid, limit=100, metadata={"source": "input"})
    assert [h["metadata"]["source"] for h in inputs] == ["input", "input"]
    # as on the Platform, a checkpoint_id in ``checkpoint`` selects that one checkpoint
    one: Any = await client.threads.get_history(tid, checkpoint=history[3]["checkpoint"])
    assert [h["checkpoint"]["checkpoint_id"] for h in one] == ids[3:4]

    first_run_end = next(h for h in history if h["values"].get("count") == 1)
    cp = first_run_end["checkpoint"]
    at_id: Any = await client.threads.get_state(tid, checkpoint_id=cp["checkpoint_id"])
    at_cp: Any = await client.threads.get_state(tid, checkpoint=cp)
    assert at_id["values"]["count"] == at_cp["values"]["count"] == 1
    assert at_cp["checkpoint"]["checkpoint_id"] == cp["checkpoint_id"]

    result: Any = await client.threads.update_state(tid, {"count": 10}, as_node="add_one")
    head: Any = await client.threads.get_state(tid)
    assert result["checkpoint"]["checkpoint_id"] == head["checkpoint"]["checkpoint_id"]
    assert head["values"]["count"] == 12
    assert head["metadata"]["source"] == "update"
    assert head["next"] == []
    forked: Any = await client.threads.update_state(tid, {"count": 5}, checkpoint=cp)
    head = await client.threads.get_state(tid)
    assert head["checkpoint"]["checkpoint_id"] == forked["checkpoint"]["checkpoint_id"]
    assert head["values"]["count"] == 6
    assert head["parent_checkpoint"]["checkpoint_id"] == cp["checkpoint_id"]

    async with server.http() as http:
        raw = await http.get(f"/threads/{tid}/history", params={"limit": 3})
        assert (raw.status_code, len(raw.json())) == (200, 3)
        bad_node = await http.post(
            f"/threads/{tid}/state", json={"values": {"count": 1}, "as_node": "nope"}
        )
        assert bad_node.status_code == 400
        assert "cannot update the state of thread" in detail(bad_node)
        assert "nope" in detail(bad_node)
        sub = await http.post(
            f"/threads/{tid}/state/checkpoint",
            json={"checkpoint": {"checkpoint_ns": "child:1", "checkpoint_id": ids[0]}},
        )
        assert sub.status_code == 422
        assert detail(sub) == (
            "checkpoint.checkpoint_ns 'child:1' is not supported: weft reads root "
            "checkpoints only; omit checkpoint_ns or send ''"
        )
        missing_cp = str(uuid.uuid4())
        nowhere = await http.get(f"/threads/{tid}/state/{missing_cp}")
        assert nowhere.status_code == 404
        assert detail(nowhere) == f"checkpoint {missing_cp} not found in thread {tid}"
        bad_cp = await http.get(f"/threads/{tid}/state/not-a-checkpoint")
        assert bad_cp.status_code == 422
        assert detail(bad_cp) == "checkpoint_id must be a UUID, not 'not-a-checkpoint'"
        bad_select = await http.get(f"/threads/{tid}/state", params={"select": "vals"})
        assert bad_select.status_code == 422
        assert detail(bad_select).startswith("cannot select 'vals'; fields are values, next,")


async def test_copy_and_prune(client: LangGraphClient, server: Server) -> None:
    tid = await counted_thread(client, server)
    copied: Any = await client.threads.copy(tid)
    cid = copied["thread_id"]
    assert cid != tid
    assert (copied["kind"], copied["parent_thread_id"]) == ("fork", tid)
    assert copied["values"]["count"] == 2
    source_history = await client.threads.get_history(tid, limit=100)
    assert len(await client.threads.get_history(cid, limit=100)) == len(source_history)

    kept = await client.threads.prune([cid], strategy="keep_latest")
    assert kept == {"pruned_count": 1}
    latest: Any = await client.threads.get_history(cid, limit=100)
    assert [h["values"]["count"] for h in latest] == [2]

    assert await client.threads.prune([cid, tid]) == {"pruned_count": 2}
    for gone in (cid, tid):
        with pytest.raises(sdk_errors.NotFoundError):
            await client.threads.get(gone)
    assert await client.threads.prune([]) == {"pruned_count": 0}

    async with server.http() as http:
        bad = await http.post("/threads/prune", json={"thread_ids": ["x"]})
        assert bad.status_code == 422
        assert detail(bad) == "thread_ids[] must be a UUID, not 'x'"
        strategy = await http.post("/threads/prune", json={"thread_ids": [], "strategy": "shred"})
        assert strategy.status_code == 422
        assert detail(strategy) == "strategy: Input should be 'delete' or 'keep_latest'"
        no_ids = await http.post("/threads/prune", json={})
        assert no_ids.status_code == 422
        assert detail(no_ids) == "thread_ids is required"


async def test_branch_snapshots_rollback(client: LangGraphClient, server: Server) -> None:
    tid = await counted_thread(client, server)
    history: Any = await client.threads.get_history(tid, limit=100)
    first = next(h for h in history if h["values"].get("count") == 1)["checkpoint"]
    first_id = first["checkpoint_id"]

    async with server.http() as http:
        branched = await http.post(
            f"/threads/{tid}/branch",
            json={"checkpoint_id": first_id, "name": "alt", "metadata": {"why": "try"}},
        )
        assert branched.status_code == 200
        branch = branched.json()
        assert (branch["kind"], branch["parent_thread_id"]) == ("branch", tid)
        assert (branch["source_checkpoint_id"], branch["name"]) == (first_id, "alt")
        assert branch["values"]["count"] == 1
        assert branch["metadata"]["why"] == "try"
        assert (await client.threads.get(tid))["counts"]["branches"] == 1
        head_branch = await http.post(f"/threads/{tid}/branch")
        assert head_branch.json()["values"]["count"] == 2

        snap = await http.post(f"/threads/{tid}/snapshots", json={"name": "two"})
        assert snap.status_code == 200
        assert (snap.json()["kind"], snap.json()["name"]) == ("snapshot", "two")
        older = await http.post(
            f"/threads/{tid}/snapshots", json={"name": "one", "checkpoint_id": first_id}
        )
        assert older.json()["values"]["count"] == 1
        listed = await http.get(f"/threads/{tid}/snapshots", params={"limit": 1})
        assert [s["name"] for s in listed.json()] == ["one"]
        assert listed.headers["X-Pagination-Total"] == "2"
        assert listed.headers["X-Pagination-Next"] == "1"
        read_only = await http.post(
            f"/threads/{snap.json()['thread_id']}/state", json={"values": {"count": 1}}
        )
        assert read_only.status_code == 409
        assert "is a snapshot and is read-only: state update refused" in detail(read_only)
        nameless = await http.post(f"/threads/{tid}/snapshots", json={})
        assert nameless.status_code == 422
        assert detail(nameless) == "name is required"

        rolled = await http.post(f"/threads/{tid}/rollback", json={"checkpoint_id": first_id})
        assert rolled.status_code == 200
        assert rolled.json()["values"]["count"] == 1
        assert (await client.threads.get_state(tid))["values"]["count"] == 1
        after: Any = await client.threads.get_history(tid, limit=100)
        assert len(after) == len(history) + 1
        assert after[1]["metadata"].get("abandoned") is True
        no_cp = await http.post(f"/threads/{tid}/rollback", json={})
        assert no_cp.status_code == 422
        assert detail(no_cp) == "checkpoint_id is required"

        archived = await http.patch(f"/threads/{tid}", json={"lifecycle": "archived"})
        assert archived.json()["lifecycle"] == "archived"
        refused = await http.post(f"/threads/{tid}/rollback", json={"checkpoint_id": first_id})
        assert refused.status_code == 409
        assert detail(refused) == (
            f"thread {tid} has lifecycle 'archived': rollback refused; rollback needs "
            "lifecycle 'active' or 'paused'"
        )

        spec = (await http.get("/openapi.json")).json()
        assert spec["paths"]["/threads/{thread_id}/rollback"]["post"]["tags"] == ["weft"]
        assert spec["paths"]["/threads/search"]["post"]["tags"] == ["threads"]


async def test_bad_input_and_busy_thread(client: LangGraphClient, server: Server) -> None:
    async with server.http() as http:
        bad_id = await http.get("/threads/abc")
        assert bad_id.status_code == 422
        assert detail(bad_id) == "thread_id must be a UUID, not 'abc'"
        bad_state = await http.post("/threads/abc/state", json={"values": {}})
        assert detail(bad_state) == "thread_id must be a UUID, not 'abc'"
        unknown = str(uuid.uuid4())
        for method, path in [
            ("GET", f"/threads/{unknown}"),
            ("GET", f"/threads/{unknown}/state"),
            ("POST", f"/threads/{unknown}/copy"),
            ("DELETE", f"/threads/{unknown}"),
        ]:
            missing = await http.request(method, path)
            assert missing.status_code == 404, path
            assert detail(missing) == f"thread {unknown} not found"
        bare = await http.post("/threads")
        assert (bare.status_code, bare.json()["kind"]) == (200, "main")
        extra = await http.post("/threads", json={"bogus": 1})
        assert extra.status_code == 422
        assert detail(extra) == "unsupported field bogus"
        include = await http.get(f"/threads/{unknown}", params={"include": "ttl"})
        assert include.status_code == 422
        assert detail(include) == (
            "include=ttl is not supported: weft threads have no TTL; omit include"
        )
        no_graph = await http.post("/threads", json={"graph_id": "nope"})
        assert no_graph.status_code == 404
        assert detail(no_graph).startswith("graph 'nope' not found; known graphs: 'counter'")
        other_thread = await http.post(
            f"/threads/{unknown}/history",
            json={"checkpoint": {"thread_id": str(uuid.uuid4()), "checkpoint_id": unknown}},
        )
        assert other_thread.status_code == 422
        assert "checkpoint.thread_id" in detail(other_thread)
        assert "is not the thread in the path" in detail(other_thread)

    with pytest.raises(sdk_errors.UnprocessableEntityError) as ttl:
        await client.threads.create(ttl=5)
    assert detail(ttl.value.response) == (
        "ttl is not supported by weft: weft does not expire threads; prune them instead"
    )
    with pytest.raises(sdk_errors.UnprocessableEntityError) as steps:
        await client.threads.create(
            supersteps=[{"updates": [{"values": {"count": 1}, "as_node": "add_one"}]}]
        )
    assert detail(steps.value.response) == (
        "supersteps is not supported by weft: create the thread, then apply each update "
        "with POST /threads/{thread_id}/state"
    )

    thread = await client.threads.create(graph_id="slow")
    tid = str(thread["thread_id"])
    run = await server.rt.runs.create(tid, "slow", input={"seconds": 30})
    with pytest.raises(sdk_errors.ConflictError) as busy:
        await client.threads.update_state(tid, {"done": ["x"]})
    assert detail(busy.value.response) == (
        f"thread {tid} is busy: a run is in flight; update its state after the run ends, "
        "or cancel the run first"
    )
    await server.rt.runs.cancel(tid, run.run_id, wait=True)
    await client.threads.update_state(tid, {"done": ["x"]}, as_node="after")
    assert (await client.threads.get_state(tid))["values"]["done"] == ["x"]


async def test_input_storage_cannot_hold_is_422(server: Server) -> None:
    async with server.http() as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        await check(
            http,
            [
                (
                    "POST",
                    f"/threads/{tid}/rollback",
                    {"checkpoint_id": ""},
                    422,
                    "checkpoint_id must be a UUID from the thread's history, not ''",
                ),
                (
                    "POST",
                    "/threads/count",
                    {"values": {"n": 2**64}},
                    422,
                    f"values.n: 18446744073709551616 {RANGE}",
                ),
                (
                    "POST",
                    "/threads/search",
                    {"metadata": {"k\ud800": 1}},
                    422,
                    f"metadata['k\\ud800']: the key {SURROGATE}",
                ),
                (
                    "POST",
                    f"/threads/{tid}/state",
                    {"values": {"x": float("nan")}},
                    422,
                    f"values.x: {NAN}",
                ),
                ("PATCH", f"/threads/{tid}", {"name": "a\x00b"}, 422, f"name: the string {NUL}"),
            ],
        )
        deep = await http.post("/threads", json={"metadata": nested(100)})
        assert deep.status_code == 422
        assert detail(deep).startswith("metadata.a.a.a")
        assert detail(deep).endswith(".a.a: nested more than 100 levels deep; flatten the data")
        assert (await http.post("/threads/count", json={})).json() == 1
        # a graph may compute past 64 bits: the response writes the integer exactly
        run = {"assistant_id": "counter", "input": {"count": 2**63 - 1}}
        waited = await http.post(f"/threads/{tid}/runs/wait", json=run)
        assert waited.json()["count"] == 2**63
        assert (await http.get(f"/threads/{tid}/state")).json()["values"]["count"] == 2**63
