"""``/assistants`` through the official SDK client, and bad input through raw HTTP."""

from __future__ import annotations

import uuid

import pytest
from langgraph_sdk import errors
from langgraph_sdk.client import LangGraphClient

from tests.api.conftest import GRAPHS, Server
from tests.api.unstorable import RANGE, SURROGATE, check
from weft.assistants import system_assistant_id
from weft.errors import NotFoundError

PLATFORM_FIELDS = {
    "assistant_id",
    "graph_id",
    "name",
    "description",
    "config",
    "context",
    "metadata",
    "version",
    "created_at",
    "updated_at",
}


async def test_create_get_update_versions_latest_delete(client: LangGraphClient) -> None:
    system = await client.assistants.get("counter")
    assert set(system) == PLATFORM_FIELDS
    assert system["assistant_id"] == system_assistant_id("counter")
    assert (system["name"], system["metadata"]) == ("counter", {"created_by": "system"})
    assert await client.assistants.get(system["assistant_id"]) == system

    made = await client.assistants.create(
        "nested",
        context={"greeting": "hi"},
        metadata={"team": "red"},
        name="Greeter",
        description="says hi",
    )
    aid = made["assistant_id"]
    uuid.UUID(aid)
    assert set(made) == PLATFORM_FIELDS
    assert (made["graph_id"], made["name"], made["description"]) == ("nested", "Greeter", "says hi")
    assert (made["version"], made["context"]) == (1, {"greeting": "hi"})
    assert made["config"] == {"configurable": {"greeting": "hi"}}
    assert await client.assistants.get(aid) == made

    chosen = str(uuid.uuid4())
    first = await client.assistants.create("counter", assistant_id=chosen)
    assert (first["assistant_id"], first["name"], first["metadata"]) == (chosen, "Untitled", {})
    again = await client.assistants.create(
        "counter", assistant_id=chosen, if_exists="do_nothing", name="other"
    )
    assert again == first
    with pytest.raises(errors.ConflictError) as conflict:
        await client.assistants.create("counter", assistant_id=chosen)
    assert conflict.value.message == f"assistant {chosen} already exists"

    updated = await client.assistants.update(
        aid, context={"greeting": "yo"}, metadata={"v": 2}, name="Greeter 2"
    )
    assert (updated["version"], updated["name"], updated["context"]) == (
        2,
        "Greeter 2",
        {"greeting": "yo"},
    )
    assert updated["metadata"] == {"team": "red", "v": 2}
    assert (await client.assistants.update(aid, description="new"))["version"] == 3

    versions = await client.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert set(versions[0]) == PLATFORM_FIELDS - {"updated_at"}
    assert [v["version"] for v in await client.assistants.get_versions(aid, limit=1)] == [3]
    only_v2 = await client.assistants.get_versions(aid, metadata={"v": 2}, offset=1)
    assert [v["version"] for v in only_v2] == [2]

    back = await client.assistants.set_latest(aid, 1)
    assert (back["version"], back["name"], back["context"]) == (1, "Greeter", {"greeting": "hi"})
    assert (await client.assistants.get(aid))["version"] == 1

    assert await client.assistants.delete(aid) is None
    with pytest.raises(errors.NotFoundError) as gone:
        await client.assistants.get(aid)
    assert gone.value.message == f"assistant {aid} not found"


async def test_search_count_select_and_pagination(client: LangGraphClient, server: Server) -> None:
    for name, team in (("Red team", "red"), ("Blue team", "blue"), ("Red two", "red")):
        await client.assistants.create("tally", name=name, metadata={"team": team})
    found = await client.assistants.search(graph_id="tally", sort_by="name", sort_order="asc")
    assert [a["name"] for a in found] == ["Blue team", "Red team", "Red two", "tally"]
    assert set(found[0]) == PLATFORM_FIELDS
    assert [a["name"] for a in await client.assistants.search(name="red", limit=1)] == ["Red two"]
    assert await client.assistants.count(graph_id="tally") == 4
    assert await client.assistants.count(metadata={"team": "red"}) == 2
    assert await client.assistants.count(name="TEAM") == 2
    everyone = len(GRAPHS) + 3  # the system assistants and ours
    assert await client.assistants.count() == everyone
    selected = await client.assistants.search(metadata={"team": "blue"}, select=["name", "version"])
    assert selected == [{"name": "Blue team", "version": 1}]

    page = await client.assistants.search(
        graph_id="tally", limit=3, sort_by="name", response_format="object"
    )
    assert [a["name"] for a in page["assistants"]] == ["tally", "Red two", "Red team"]
    assert page["next"] == "3"
    rest = await client.assistants.search(
        graph_id="tally", limit=3, offset=3, response_format="object"
    )
    assert (len(rest["assistants"]), rest["next"]) == (1, None)

    async with server.http() as http:
        full = await http.post("/assistants/search", json={"graph_id": "tally", "limit": 2})
        assert (full.headers["X-Pagination-Total"], full.headers["X-Pagination-Next"]) == ("4", "2")
        short = await http.post("/assistants/search", json={"graph_id": "tally", "limit": 10})
        assert short.headers["X-Pagination-Total"] == "4"
        assert "X-Pagination-Next" not in short.headers
        empty_body = await http.post("/assistants/search")
        assert empty_body.status_code == 200
        assert len(empty_body.json()) == min(everyone, 10)
        assert (await http.post("/assistants/count")).json() == everyone


async def test_graph_schemas_and_subgraphs(client: LangGraphClient) -> None:
    drawn = await client.assistants.get_graph("nested")
    assert [n["id"] for n in drawn["nodes"]] == ["__start__", "first", "child", "__end__"]
    assert {"source": "first", "target": "child"} in drawn["edges"]
    assert all("id" not in (n.get("data") or {}) for n in drawn["nodes"])
    xray = await client.assistants.get_graph("nested", xray=True)
    assert [n["id"] for n in xray["nodes"]] == ["__start__", "first", "__end__", "child:inner"]
    assert await client.assistants.get_graph("nested", xray=1) == xray

    schemas = await client.assistants.get_schemas("nested")
    assert schemas["graph_id"] == "nested"
    assert schemas["input_schema"]["properties"]["items"]["type"] == "array"
    assert schemas["context_schema"]["properties"]["greeting"]["default"] == "hello"
    assert set(schemas) == {
        "graph_id",
        "input_schema",
        "output_schema",
        "state_schema",
        "config_schema",
        "context_schema",
    }

    subgraphs = await client.assistants.get_subgraphs("nested")
    assert list(subgraphs) == ["child"]
    assert subgraphs["child"]["input_schema"]["title"] == "ChildState"
    assert await client.assistants.get_subgraphs("nested", namespace="child") == subgraphs
    assert await client.assistants.get_subgraphs("nested", namespace="other") == {}
    assert await client.assistants.get_subgraphs("nested", recurse=True) == subgraphs
    assert await client.assistants.get_subgraphs("counter") == {}


async def test_delete_with_its_threads(client: LangGraphClient, server: Server) -> None:
    made = await client.assistants.create("counter", name="doomed")
    aid = made["assistant_id"]
    ours = [await server.rt.threads.create(metadata={"assistant_id": aid}) for _ in range(3)]
    other = await server.rt.threads.create(metadata={"assistant_id": str(uuid.uuid4())})
    await client.assistants.delete(aid, delete_threads=True)
    for thread in ours:
        with pytest.raises(NotFoundError):
            await server.rt.threads.get(thread.thread_id)
    assert (await server.rt.threads.get(other.thread_id)).thread_id == other.thread_id
    kept = await client.assistants.create("counter", name="kept")
    mine = await server.rt.threads.create(metadata={"assistant_id": kept["assistant_id"]})
    await client.assistants.delete(kept["assistant_id"])  # threads stay by default
    assert (await server.rt.threads.get(mine.thread_id)).thread_id == mine.thread_id


async def test_bad_input_is_named(server: Server) -> None:
    missing = str(uuid.uuid4())
    aid = system_assistant_id("counter")
    cases: list[tuple[str, str, dict[str, object], int, str]] = [
        (
            "GET",
            "/assistants/not-a-uuid",
            {},
            422,
            "assistant_id must be a UUID (or a graph id), not 'not-a-uuid'",
        ),
        ("GET", f"/assistants/{missing}", {}, 404, f"assistant {missing} not found"),
        (
            "PATCH",
            f"/assistants/{missing}",
            {"json": {"name": "x"}},
            404,
            f"assistant {missing} not found",
        ),
        ("DELETE", f"/assistants/{missing}", {}, 404, f"assistant {missing} not found"),
        (
            "DELETE",
            f"/assistants/{missing}",
            {"params": {"delete_threads": "true"}},
            404,
            f"assistant {missing} not found",
        ),
        (
            "POST",
            f"/assistants/{missing}/versions",
            {"json": {}},
            404,
            f"assistant {missing} not found",
        ),
        ("GET", f"/assistants/{missing}/schemas", {}, 404, f"assistant {missing} not found"),
        (
            "POST",
            f"/assistants/{aid}/latest",
            {"json": {"version": 9}},
            404,
            f"version 9 of assistant {aid} not found",
        ),
        ("POST", f"/assistants/{aid}/latest", {"json": {}}, 422, "version is required"),
        (
            "POST",
            f"/assistants/{aid}/latest",
            {"json": {"version": 0}},
            422,
            "version must be a positive integer, not 0",
        ),
        (
            "POST",
            "/assistants",
            {"json": {"graph_id": "counter", "colour": "red"}},
            422,
            "unsupported field colour",
        ),
        ("POST", "/assistants", {"json": {}}, 422, "graph_id is required"),
        (
            "POST",
            "/assistants",
            {"json": {"graph_id": "nope"}},
            404,
            f"graph 'nope' not found; known graphs: {', '.join(map(repr, GRAPHS))}",
        ),
        (
            "POST",
            "/assistants",
            {"json": {"graph_id": "counter", "assistant_id": "abc"}},
            422,
            "assistant_id must be a UUID (or a graph id), not 'abc'",
        ),
        (
            "POST",
            "/assistants",
            {"json": {"graph_id": "counter", "if_exists": "update"}},
            422,
            "if_exists: Input should be 'raise' or 'do_nothing'",
        ),
        (
            "POST",
            "/assistants",
            {
                "json": {
                    "graph_id": "counter",
                    "config": {"configurable": {"a": 1}},
                    "context": {"a": 2},
                }
            },
            400,
            "set either config.configurable or context, not both; prefer context "
            "(it replaces configurable since LangGraph 0.6)",
        ),
        (
            "POST",
            "/assistants/search",
            {"json": {"sort_by": "size"}},
            422,
            "sort_by must be one of assistant_id, graph_id, name, created_at, updated_at, "
            "not 'size'",
        ),
        (
            "POST",
            "/assistants/search",
            {"json": {"limit": -1}},
            422,
            "limit must be a number >= 0, not -1",
        ),
        (
            "POST",
            "/assistants/search",
            {"json": {"select": ["owner"]}},
            422,
            "cannot select 'owner'; fields are assistant_id, graph_id, name, description, "
            "config, context, metadata, version, created_at, updated_at",
        ),
        ("POST", "/assistants/count", {"json": {"where": 1}}, 422, "unsupported field where"),
        (
            "GET",
            f"/assistants/{aid}/graph",
            {"params": {"xray": "deep"}},
            422,
            "xray must be true, false or a positive number of levels, not 'deep'",
        ),
        (
            "GET",
            f"/assistants/{aid}/graph",
            {"params": {"xray": "0"}},
            422,
            "xray must be true, false or a positive number of levels, not '0'",
        ),
    ]
    async with server.http() as http:
        for method, path, kwargs, status, detail in cases:
            response = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert (response.status_code, response.json()) == (status, {"detail": detail}), (
                method,
                path,
                kwargs,
            )
        malformed = await http.post(
            "/assistants", content=b'{"graph_id": ', headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 422
        assert malformed.json()["detail"].startswith("malformed JSON body: ")
        not_an_object = await http.post(
            "/assistants", json={"graph_id": "counter", "metadata": [1]}
        )
        assert not_an_object.status_code == 422
        assert not_an_object.json() == {"detail": "metadata: Input should be a valid dictionary"}


async def test_input_storage_cannot_hold_is_422(server: Server) -> None:
    async with server.http() as http:
        aid = (await http.post("/assistants", json={"graph_id": "counter"})).json()["assistant_id"]
        await check(
            http,
            [
                (
                    "PATCH",
                    f"/assistants/{aid}",
                    {"context": {"x": "\ud83d"}},
                    422,
                    f"context.x: the string {SURROGATE}",
                ),
                (
                    "PATCH",
                    f"/assistants/{aid}",
                    {"context": {"n": 10**40}},
                    422,
                    f"context.n: an integer of about 41 digits {RANGE}",
                ),
                (
                    "POST",
                    "/assistants/search",
                    {"limit": 2**64},
                    422,
                    f"limit: 18446744073709551616 {RANGE}",
                ),
            ],
        )
        assert (await http.get(f"/assistants/{aid}")).json()["version"] == 1
