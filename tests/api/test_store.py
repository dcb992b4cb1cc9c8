"""``/store`` through the official SDK client, and bad input through raw HTTP."""

from __future__ import annotations

from datetime import datetime

import pytest
from langgraph_sdk import errors
from langgraph_sdk.client import LangGraphClient

from tests.api.conftest import Server
from tests.api.unstorable import NUL, RANGE, check

ITEM_FIELDS = {"namespace", "key", "value", "created_at", "updated_at"}


async def test_put_get_search_list_delete(client: LangGraphClient) -> None:
    store = client.store
    assert await store.put_item(["users", "u1"], "prefs", {"theme": "dark", "size": 3}) is None
    await store.put_item(["users", "u2"], "prefs", {"theme": "light", "size": 5}, index=False)
    await store.put_item(["users", "u2", "notes"], "n1", {"text": "hello"})
    await store.put_item(["docs"], "readme", {"size": 1})

    item = await store.get_item(["users", "u1"], "prefs")
    assert set(item) == ITEM_FIELDS
    assert (item["namespace"], item["key"]) == (["users", "u1"], "prefs")
    assert item["value"] == {"theme": "dark", "size": 3}
    assert datetime.fromisoformat(item["created_at"]).tzinfo is not None
    assert await store.get_item(["users", "u1"], "prefs", refresh_ttl=True) == item
    assert await store.get_item(["users", "u1"], "missing") is None

    await store.put_item(["users", "u1"], "prefs", {"theme": "blue"})
    replaced = await store.get_item(["users", "u1"], "prefs")
    assert replaced["value"] == {"theme": "blue"}
    assert replaced["created_at"] == item["created_at"]
    assert replaced["updated_at"] >= item["updated_at"]

    found = await store.search_items(["users"])
    assert set(found) == {"items"}
    assert sorted((tuple(i["namespace"]), i["key"]) for i in found["items"]) == [
        (("users", "u1"), "prefs"),
        (("users", "u2"), "prefs"),
        (("users", "u2", "notes"), "n1"),
    ]
    assert set(found["items"][0]) == ITEM_FIELDS | {"score"}
    light = await store.search_items(["users"], filter={"theme": "light"})
    assert [i["value"] for i in light["items"]] == [{"theme": "light", "size": 5}]
    big = await store.search_items([], filter={"size": {"$gt": 2}})
    assert [i["value"]["size"] for i in big["items"]] == [5]
    assert len((await store.search_items(["users"], limit=2))["items"]) == 2
    assert len((await store.search_items(["users"], limit=2, offset=2))["items"]) == 1

    everything = await store.list_namespaces()
    assert sorted(everything["namespaces"]) == [
        ["docs"],
        ["users", "u1"],
        ["users", "u2"],
        ["users", "u2", "notes"],
    ]
    under = await store.list_namespaces(prefix=["users"], max_depth=2)
    assert sorted(under["namespaces"]) == [["users", "u1"], ["users", "u2"]]
    assert (await store.list_namespaces(suffix=["notes"]))["namespaces"] == [
        ["users", "u2", "notes"]
    ]
    assert len((await store.list_namespaces(limit=1, offset=1))["namespaces"]) == 1

    assert await store.delete_item(["users", "u1"], "prefs") is None
    assert await store.get_item(["users", "u1"], "prefs") is None
    await store.delete_item(["users", "u1"], "prefs")  # deleting nothing is fine
    assert await store.get_item(["users", "u2"], "prefs") is not None


async def test_unsupported_options_are_refused_by_name(
    client: LangGraphClient, server: Server
) -> None:
    with pytest.raises(errors.UnprocessableEntityError) as ttl:
        await client.store.put_item(["users"], "k", {"a": 1}, ttl=5)
    assert ttl.value.message == (
        "ttl is not supported: this server's store does not expire items; leave ttl out "
        "(or null) and delete items when they are no longer needed"
    )
    with pytest.raises(errors.UnprocessableEntityError) as index:
        await client.store.put_item(["users"], "k", {"a": 1}, index=["a"])
    assert index.value.message == (
        "index is not supported: this server's store has no semantic search index (no "
        "embeddings are configured); leave index out or set it to false"
    )
    with pytest.raises(errors.UnprocessableEntityError) as query:
        await client.store.search_items(["users"], query="cats")
    assert query.value.message == (
        "query is not supported: this server's store has no semantic search index (no "
        "embeddings are configured); search with namespace_prefix and filter instead"
    )
    async with server.http() as http:
        nothing = await http.get("/store/items", params={"namespace": "users", "key": "k"})
        assert (nothing.status_code, nothing.json()) == (200, None)


async def test_bad_input_is_named(server: Server) -> None:
    dotted = "namespace label 'a.b' must be a non-empty string without periods ('.')"
    cases: list[tuple[str, str, dict[str, object], str]] = [
        ("PUT", "/store/items", {"json": {"namespace": ["a.b"], "key": "k", "value": {}}}, dotted),
        (
            "PUT",
            "/store/items",
            {"json": {"namespace": ["a", ""], "key": "k", "value": {}}},
            "namespace label '' must be a non-empty string without periods ('.')",
        ),
        (
            "PUT",
            "/store/items",
            {"json": {"namespace": [], "key": "k", "value": {}}},
            'namespace must have at least one label, e.g. ["users", "u1"]',
        ),
        (
            "PUT",
            "/store/items",
            {"json": {"namespace": ["langgraph"], "key": "k", "value": {}}},
            "namespace: Root label for namespace cannot be \"langgraph\". Got: ('langgraph',)",
        ),
        (
            "PUT",
            "/store/items",
            {"json": {"namespace": ["a"], "key": "k", "value": {}, "colour": 1}},
            "unsupported field colour",
        ),
        (
            "PUT",
            "/store/items",
            {"json": {"namespace": ["a"], "key": "k", "value": [1]}},
            "value: Input should be a valid dictionary",
        ),
        ("PUT", "/store/items", {"json": {"namespace": ["a"], "value": {}}}, "key is required"),
        ("GET", "/store/items", {"params": {"namespace": "a"}}, "key is required"),
        (
            "GET",
            "/store/items",
            {"params": {"namespace": "a.b.", "key": "k"}},
            dotted.replace("'a.b'", "''"),
        ),
        (
            "GET",
            "/store/items",
            {"params": {"key": "k"}},
            'namespace must have at least one label, e.g. ["users", "u1"]',
        ),
        ("DELETE", "/store/items", {"json": {"namespace": ["a.b"], "key": "k"}}, dotted),
        (
            "DELETE",
            "/store/items",
            {"json": {"key": "k"}},
            'namespace must have at least one label, e.g. ["users", "u1"]',
        ),
        (
            "POST",
            "/store/items/search",
            {"json": {"namespace_prefix": ["a.b"]}},
            "namespace_prefix label 'a.b' must be a non-empty string without periods ('.')",
        ),
        (
            "POST",
            "/store/items/search",
            {"json": {"limit": -1}},
            "limit: Input should be greater than or equal to 0",
        ),
        (
            "POST",
            "/store/namespaces",
            {"json": {"max_depth": 0}},
            "max_depth: Input should be greater than or equal to 1",
        ),
        (
            "POST",
            "/store/namespaces",
            {"json": {"suffix": ["x.y"]}},
            "suffix label 'x.y' must be a non-empty string without periods ('.')",
        ),
    ]
    async with server.http() as http:
        for method, path, kwargs, detail in cases:
            response = await http.request(method, path, **kwargs)  # type: ignore[arg-type]
            assert (response.status_code, response.json()) == (422, {"detail": detail}), (
                method,
                path,
                kwargs,
            )
        malformed = await http.put(
            "/store/items", content=b"{nope", headers={"Content-Type": "application/json"}
        )
        assert malformed.status_code == 422
        assert malformed.json()["detail"].startswith("malformed JSON body: ")
        operator = await http.post("/store/items/search", json={"filter": {"a": {"$near": 1}}})
        assert operator.status_code == 422, operator.text
        assert operator.json()["detail"].startswith("filter: ")
        empty = await http.post("/store/items/search")
        assert (empty.status_code, empty.json()) == (200, {"items": []})
        listed = await http.post("/store/namespaces")
        assert (listed.status_code, listed.json()) == (200, {"namespaces": []})


async def test_input_storage_cannot_hold_is_422(server: Server) -> None:
    async with server.http() as http:
        await check(
            http,
            [
                (
                    "POST",
                    "/store/namespaces",
                    {"max_depth": 2**31},
                    422,
                    "max_depth: Input should be less than or equal to 2147483647",
                ),
                (
                    "PUT",
                    "/store/items",
                    {"namespace": ["a"], "key": "k", "value": {"t": "x\x00"}},
                    422,
                    f"value.t: the string {NUL}",
                ),
                (
                    "POST",
                    "/store/items/search",
                    {"offset": 2**64},
                    422,
                    f"offset: 18446744073709551616 {RANGE}",
                ),
            ],
        )
        listed = await http.post("/store/namespaces", json={"max_depth": 2**31 - 1})
        assert listed.json() == {"namespaces": []}
