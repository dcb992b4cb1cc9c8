"""``/sessions`` over HTTP: records, search and count with pagination headers, batches, threads
in a session (ordinary threads to the SDK), the interaction log and the shared state's
compare-and-set, with the detail of every bad input."""

from __future__ import annotations

import asyncio
import uuid

from langgraph_sdk.client import LangGraphClient

from tests.api.conftest import Server
from tests.api.unstorable import NUL, RANGE, SURROGATE, check


async def test_session_records(server: Server) -> None:
    async with server.http() as http:
        made = await http.post(
            "/sessions",
            json={"user_id": "u1", "name": "trip", "metadata": {"a": 1}, "state": {"k": 1}},
        )
        assert made.status_code == 200
        s = made.json()
        sid = s["session_id"]
        assert s["status"] == "active"
        assert s["state"] == {"k": 1}
        assert s["state_version"] == 0
        assert "owner" not in s
        assert (await http.get(f"/sessions/{sid}")).json() == s

        patched = await http.patch(
            f"/sessions/{sid}", json={"status": "completed", "metadata": {"b": 2}}
        )
        assert patched.status_code == 200
        assert patched.json()["status"] == "completed"
        assert patched.json()["metadata"] == {"a": 1, "b": 2}
        assert patched.json()["name"] == "trip"

        chosen = str(uuid.uuid4())
        assert (await http.post("/sessions", json={"session_id": chosen})).json()[
            "session_id"
        ] == chosen
        again = await http.post("/sessions", json={"session_id": chosen})
        assert again.status_code == 409
        assert again.json() == {"detail": f"session {chosen} already exists"}

        bad_id = await http.get("/sessions/x")
        assert bad_id.status_code == 422
        assert bad_id.json() == {"detail": "session_id must be a UUID, not 'x'"}
        missing = str(uuid.uuid4())
        for response in (
            await http.get(f"/sessions/{missing}"),
            await http.patch(f"/sessions/{missing}", json={"name": "n"}),
            await http.delete(f"/sessions/{missing}"),
        ):
            assert response.status_code == 404
            assert response.json() == {"detail": f"session {missing} not found"}
        state_in_patch = await http.patch(f"/sessions/{sid}", json={"state": {}})
        assert state_in_patch.status_code == 422
        assert state_in_patch.json() == {"detail": "unsupported field state"}
        bad_status = await http.patch(f"/sessions/{sid}", json={"status": "done"})
        assert bad_status.status_code == 422
        assert bad_status.json()["detail"].startswith("status: Input should be 'active'")
        assert "'archived'" in bad_status.json()["detail"]
        bad_user = await http.post("/sessions", json={"user_id": 5})
        assert bad_user.status_code == 422
        assert bad_user.json() == {"detail": "user_id: Input should be a valid string"}
        bad_new_id = await http.post("/sessions", json={"session_id": "nope"})
        assert bad_new_id.status_code == 422
        assert bad_new_id.json() == {"detail": "session_id must be a UUID, not 'nope'"}

        gone = await http.delete(f"/sessions/{sid}")
        assert gone.status_code == 204
        assert gone.content == b""
        assert (await http.get(f"/sessions/{sid}")).status_code == 404


async def test_search_and_count_with_pagination_headers(server: Server) -> None:
    async with server.http() as http:
        made = [
            (
                await http.post(
                    "/sessions",
                    json={"user_id": f"u{i % 2}", "metadata": {"team": "x" if i < 3 else "y"}},
                )
            ).json()
            for i in range(5)
        ]
        await http.patch(f"/sessions/{made[4]['session_id']}", json={"status": "archived"})

        first = await http.post("/sessions/search", json={"limit": 2})
        assert first.status_code == 200
        assert [s["session_id"] for s in first.json()] == [
            made[4]["session_id"],
            made[3]["session_id"],
        ]
        assert first.headers["X-Pagination-Total"] == "5"
        assert first.headers["X-Pagination-Next"] == "2"
        last = await http.post("/sessions/search", json={"limit": 2, "offset": 4})
        assert [s["session_id"] for s in last.json()] == [made[0]["session_id"]]
        assert last.headers["X-Pagination-Total"] == "5"
        assert "X-Pagination-Next" not in last.headers

        team_x = await http.post(
            "/sessions/search", json={"user_id": "u0", "metadata": {"team": "x"}}
        )
        assert [s["session_id"] for s in team_x.json()] == [
            made[2]["session_id"],
            made[0]["session_id"],
        ]
        assert team_x.headers["X-Pagination-Total"] == "2"
        archived = await http.post("/sessions/search", json={"status": "archived"})
        assert [s["session_id"] for s in archived.json()] == [made[4]["session_id"]]

        assert (await http.post("/sessions/count", json={})).json() == 5
        assert (await http.post("/sessions/count", json={"user_id": "u1"})).json() == 2
        since = made[4]["created_at"]
        assert (await http.post("/sessions/count", json={"created_after": since})).json() == 1
        assert (await http.post("/sessions/count", json={"created_before": since})).json() == 5

        naive = await http.post("/sessions/count", json={"created_after": "2024-01-01T00:00:00"})
        assert naive.status_code == 422
        assert naive.json() == {"detail": "created_after must be a timezone-aware datetime"}
        negative = await http.post("/sessions/search", json={"limit": -1})
        assert negative.status_code == 422
        assert negative.json() == {"detail": "limit must be a number >= 0, not -1"}
        sort = await http.post("/sessions/search", json={"sort_by": "created_at"})
        assert sort.status_code == 422
        assert sort.json() == {"detail": "unsupported field sort_by"}
        paging_in_count = await http.post("/sessions/count", json={"limit": 1})
        assert paging_in_count.status_code == 422
        assert paging_in_count.json() == {"detail": "unsupported field limit"}


async def test_batch_is_all_or_nothing(server: Server) -> None:
    async with server.http() as http:
        kept = (await http.post("/sessions", json={"name": "kept"})).json()["session_id"]
        dropped = (await http.post("/sessions", json={"name": "dropped"})).json()["session_id"]
        done = await http.post(
            "/sessions/batch",
            json=[
                {"op": "create", "user_id": "u1", "name": "new"},
                {"op": "update", "session_id": kept, "status": "completed"},
                {"op": "delete", "session_id": dropped},
            ],
        )
        assert done.status_code == 200
        created, updated, deleted = done.json()
        assert created["name"] == "new"
        assert updated["session_id"] == kept
        assert updated["status"] == "completed"
        assert deleted is None
        assert (await http.get(f"/sessions/{dropped}")).status_code == 404
        assert (await http.post("/sessions/count", json={})).json() == 2

        bad_field = await http.post(
            "/sessions/batch",
            json=[{"op": "create", "name": "a"}, {"op": "create", "colour": "red"}],
        )
        assert bad_field.status_code == 422
        assert bad_field.json() == {
            "detail": "batch item 1: unknown field(s) 'colour' for op 'create'; "
            "allowed: metadata, name, session_id, state, user_id"
        }
        missing = str(uuid.uuid4())
        not_found = await http.post(
            "/sessions/batch",
            json=[
                {"op": "create", "name": "b"},
                {"op": "update", "session_id": kept, "name": "renamed"},
                {"op": "update", "session_id": missing, "name": "x"},
            ],
        )
        assert not_found.status_code == 404
        assert not_found.json() == {"detail": f"batch item 2: session {missing} not found"}
        not_an_op = await http.post("/sessions/batch", json=[{"op": "create"}, 7])
        assert not_an_op.status_code == 422
        assert not_an_op.json() == {"detail": "batch item 1: an operation is an object, not int"}
        not_a_list = await http.post("/sessions/batch", json={"op": "create"})
        assert not_a_list.status_code == 422
        assert not_a_list.json() == {"detail": "body: Input should be a valid list"}
        # nothing of the failed batches was written
        assert (await http.post("/sessions/count", json={})).json() == 2
        assert (await http.get(f"/sessions/{kept}")).json()["name"] == "kept"


async def test_threads_in_a_session_are_ordinary_threads(
    server: Server, client: LangGraphClient
) -> None:
    async with server.http() as http:
        sid = (await http.post("/sessions", json={"user_id": "u1"})).json()["session_id"]
        made = await http.post(
            f"/sessions/{sid}/threads",
            json={"name": "research", "graph_id": "counter", "metadata": {"topic": "t"}},
        )
        assert made.status_code == 200
        research = made.json()
        assert research["session_id"] == sid
        assert research["name"] == "research"
        assert research["graph_id"] == "counter"
        seen = await client.threads.get(research["thread_id"])
        assert seen["thread_id"] == research["thread_id"]
        assert seen["metadata"] == {"topic": "t", "graph_id": "counter"}
        assert seen["status"] == "idle"

        chosen = str(uuid.uuid4())
        write = await http.post(
            f"/sessions/{sid}/threads", json={"name": "write", "thread_id": chosen}
        )
        assert write.json()["thread_id"] == chosen
        third = await http.post(f"/sessions/{sid}/threads", json={"name": "review"})

        listed = await http.get(f"/sessions/{sid}/threads", params={"limit": 2})
        assert [t["thread_id"] for t in listed.json()] == [research["thread_id"], chosen]
        assert listed.headers["X-Pagination-Total"] == "3"
        assert listed.headers["X-Pagination-Next"] == "2"
        rest = await http.get(f"/sessions/{sid}/threads", params={"offset": 2})
        assert [t["thread_id"] for t in rest.json()] == [third.json()["thread_id"]]
        assert "X-Pagination-Next" not in rest.headers

        duplicate = await http.post(f"/sessions/{sid}/threads", json={"name": "research"})
        assert duplicate.status_code == 409
        assert duplicate.json() == {
            "detail": f"a thread named 'research' already exists in session {sid}"
        }
        taken = await http.post(
            f"/sessions/{sid}/threads", json={"name": "other", "thread_id": chosen}
        )
        assert taken.status_code == 409
        assert taken.json() == {"detail": f"thread {chosen} already exists"}
        nameless = await http.post(f"/sessions/{sid}/threads", json={"graph_id": "counter"})
        assert nameless.status_code == 422
        assert nameless.json() == {"detail": "name is required"}
        blank = await http.post(f"/sessions/{sid}/threads", json={"name": " "})
        assert blank.status_code == 422
        assert blank.json() == {"detail": "a thread in a session needs a name"}
        no_graph = await http.post(
            f"/sessions/{sid}/threads", json={"name": "n", "graph_id": "nope"}
        )
        assert no_graph.status_code == 404
        assert no_graph.json()["detail"].startswith("graph 'nope' not found; known graphs: ")
        missing = str(uuid.uuid4())
        for response in (
            await http.post(f"/sessions/{missing}/threads", json={"name": "n"}),
            await http.get(f"/sessions/{missing}/threads"),
        ):
            assert response.status_code == 404
            assert response.json() == {"detail": f"session {missing} not found"}
        bad_id = await http.get("/sessions/42/threads")
        assert bad_id.status_code == 422
        assert bad_id.json() == {"detail": "session_id must be a UUID, not '42'"}

        busy = await http.delete(f"/sessions/{sid}")
        assert busy.status_code == 409
        assert busy.json() == {
            "detail": f"session {sid} has 3 thread(s); delete them first or pass cascade=true"
        }
        bad_flag = await http.delete(f"/sessions/{sid}", params={"cascade": "maybe"})
        assert bad_flag.status_code == 422
        assert bad_flag.json()["detail"].startswith("cascade: Input should be a valid boolean")
        assert (await http.delete(f"/sessions/{sid}", params={"cascade": "true"})).status_code == (
            204
        )
        assert await server.rt.threads.count(ids=[research["thread_id"], chosen]) == 0


async def test_interaction_log(server: Server) -> None:
    async with server.http() as http:
        sid = (await http.post("/sessions", json={})).json()["session_id"]
        thread_id = str(uuid.uuid4())
        entries = [
            {"kind": "request", "content": "book a flight"},
            {"kind": "response", "content": {"flights": 2}, "thread_id": thread_id},
            {"kind": "feedback", "content": 5, "metadata": {"by": "u1"}},
        ]
        for entry in entries:
            appended = await http.post(f"/sessions/{sid}/interactions", json=entry)
            assert appended.status_code == 200
        first = await http.get(f"/sessions/{sid}/interactions", params={"limit": 2})
        assert [(e["seq"], e["kind"], e["content"]) for e in first.json()] == [
            (1, "request", "book a flight"),
            (2, "response", {"flights": 2}),
        ]
        assert first.json()[1]["thread_id"] == thread_id
        assert first.headers["X-Pagination-Next"] == "2"
        rest = await http.get(f"/sessions/{sid}/interactions", params={"after": 2})
        assert [(e["seq"], e["metadata"]) for e in rest.json()] == [(3, {"by": "u1"})]
        assert "X-Pagination-Next" not in rest.headers
        some = await http.get(
            f"/sessions/{sid}/interactions", params={"kinds": ["request", "feedback"]}
        )
        assert [e["seq"] for e in some.json()] == [1, 3]

        system_kind = await http.post(
            f"/sessions/{sid}/interactions", json={"kind": "run_event", "content": {}}
        )
        assert system_kind.status_code == 422
        assert system_kind.json() == {
            "detail": "kind: Input should be 'request', 'response', 'feedback' or 'note'"
        }
        no_content = await http.post(f"/sessions/{sid}/interactions", json={"kind": "note"})
        assert no_content.status_code == 422
        assert no_content.json() == {"detail": "content is required"}
        bad_thread = await http.post(
            f"/sessions/{sid}/interactions",
            json={"kind": "note", "content": None, "thread_id": "t1"},
        )
        assert bad_thread.status_code == 422
        assert bad_thread.json() == {"detail": "thread_id must be a UUID, not 't1'"}
        bad_kind = await http.get(f"/sessions/{sid}/interactions", params={"kinds": "chat"})
        assert bad_kind.status_code == 422
        assert bad_kind.json()["detail"].startswith("kinds[] must be one of request, response")
        bad_after = await http.get(f"/sessions/{sid}/interactions", params={"after": -1})
        assert bad_after.status_code == 422
        assert bad_after.json() == {"detail": "after must be a number >= 0, not -1"}
        missing = str(uuid.uuid4())
        for response in (
            await http.get(f"/sessions/{missing}/interactions"),
            await http.post(
                f"/sessions/{missing}/interactions", json={"kind": "note", "content": 1}
            ),
        ):
            assert response.status_code == 404
            assert response.json() == {"detail": f"session {missing} not found"}


async def test_shared_state_compare_and_set(server: Server) -> None:
    async with server.http() as http:
        sid = (await http.post("/sessions", json={"state": {"budget": 100}})).json()["session_id"]
        read = (await http.get(f"/sessions/{sid}/state")).json()
        assert read["session_id"] == sid
        assert (read["state"], read["state_version"]) == ({"budget": 100}, 0)

        put = await http.put(
            f"/sessions/{sid}/state", json={"state": {"budget": 80}, "expected_version": 0}
        )
        assert put.status_code == 200
        assert (put.json()["state"], put.json()["state_version"]) == ({"budget": 80}, 1)
        stale = await http.put(
            f"/sessions/{sid}/state", json={"state": {"budget": 0}, "expected_version": 0}
        )
        assert stale.status_code == 409
        assert stale.json() == {"detail": f"session {sid} state changed (version 0 -> 1)"}

        merges = await asyncio.gather(
            *(http.patch(f"/sessions/{sid}/state", json={"state": {f"k{i}": i}}) for i in range(5))
        )
        assert all(m.status_code == 200 for m in merges)
        after = (await http.get(f"/sessions/{sid}")).json()
        assert after["state"] == {"budget": 80, **{f"k{i}": i for i in range(5)}}
        assert after["state_version"] == 6

        no_version = await http.put(f"/sessions/{sid}/state", json={"state": {}})
        assert no_version.status_code == 422
        assert no_version.json() == {"detail": "expected_version is required"}
        not_object = await http.patch(f"/sessions/{sid}/state", json={"state": [1]})
        assert not_object.status_code == 422
        assert not_object.json() == {"detail": "state: Input should be a valid dictionary"}
        missing = str(uuid.uuid4())
        gone = await http.put(
            f"/sessions/{missing}/state", json={"state": {}, "expected_version": 0}
        )
        assert gone.status_code == 404
        assert gone.json() == {"detail": f"session {missing} not found"}


async def test_openapi_documents_the_sessions_resource(server: Server) -> None:
    async with server.http() as http:
        spec = (await http.get("/openapi.json")).json()
    get = spec["paths"]["/sessions/{session_id}"]["get"]
    assert get["tags"] == ["weft"]
    assert get["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Session"
    }
    assert get["responses"]["404"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Detail"
    }
    for path in ("/sessions/search", "/sessions/count", "/sessions/batch"):
        assert "post" in spec["paths"][path]
    assert {"get", "put", "patch"} <= set(spec["paths"]["/sessions/{session_id}/state"])
    assert "owner" not in spec["components"]["schemas"]["Session"]["properties"]


async def test_input_storage_cannot_hold_is_422(server: Server) -> None:
    async with server.http() as http:
        found = await http.post("/sessions/search", json={})
        assert (found.status_code, found.json()) == (200, [])
        assert found.headers["x-pagination-total"] == "0"
        sid = (await http.post("/sessions", json={})).json()["session_id"]
        await check(
            http,
            [
                (
                    "PATCH",
                    f"/sessions/{sid}/state",
                    {"state": {"n": -(2**70)}},
                    422,
                    f"state.n: -1180591620717411303424 {RANGE}",
                ),
                (
                    "PATCH",
                    f"/sessions/{sid}/state",
                    {"state": {"\udc00": 1}},
                    422,
                    f"state['\\udc00']: the key {SURROGATE}",
                ),
                (
                    "POST",
                    "/sessions/batch",
                    [{"op": "create", "name": "ok"}, {"op": "create", "name": "a\x00"}],
                    422,
                    f"body[1].name: the string {NUL}",
                ),
                (
                    "POST",
                    f"/sessions/{sid}/interactions",
                    {"kind": "note", "content": [1, 2**63]},
                    422,
                    f"content[1]: 9223372036854775808 {RANGE}",
                ),
            ],
        )
        huge = await http.get(f"/sessions/{sid}/threads", params={"limit": 2**66})
        assert (huge.status_code, huge.json()) == (
            422,
            {"detail": "limit must be at most 9223372036854775807, not 73786976294838206464"},
        )
        assert (await http.get(f"/sessions/{sid}/state")).json()["state"] == {}
        assert (await http.post("/sessions/count", json={})).json() == 1
