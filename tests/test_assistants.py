"""Assistants over real graphs, on every storage backend."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from weft.assistants import Assistants, system_assistant_id
from weft.config import Settings
from weft.errors import BadRequestError, ConflictError, NotFoundError, UnprocessableEntityError
from weft.graphs import GraphRegistry
from weft.schema import Assistant
from weft.storage import Storage
from weft.threads import Threads

FIXTURES = Path(__file__).parent / "fixtures" / "graphs"

# uuid5(LangGraph Platform's graph namespace, "agent"): the ID the Platform gives the
# system assistant of a graph named "agent" (langgraph_api.graph.NAMESPACE_GRAPH).
PLATFORM_AGENT_ASSISTANT_ID = "fe096781-5601-53d2-b2f6-0d3403f7e9ca"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GraphRegistry]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = dict(os.environ)
    shutil.copy(FIXTURES / "agent.py", tmp_path / "agent.py")
    (tmp_path / "langgraph.json").write_text(
        json.dumps(
            {
                "graphs": {
                    "agent": "./agent.py:graph",
                    "built": "./agent.py:builder",
                    "made": "./agent.py:make_graph",
                }
            }
        )
    )
    yield GraphRegistry.load(Settings.load(tmp_path / "langgraph.json", env={}))
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
async def assistants(storage: Storage, registry: GraphRegistry) -> Assistants:
    service = Assistants(storage, registry)
    await service.ensure_system_assistants()
    return service


def test_the_system_assistant_id_is_the_platforms() -> None:
    assert system_assistant_id("agent") == PLATFORM_AGENT_ASSISTANT_ID


async def test_system_assistants_are_created_once(assistants: Assistants) -> None:
    first = await assistants.search(metadata={"created_by": "system"}, sort_by="name")
    assert [(a.graph_id, a.name, a.version) for a in first] == [
        ("made", "made", 1),
        ("built", "built", 1),
        ("agent", "agent", 1),
    ]
    again = await assistants.ensure_system_assistants()
    assert {a.assistant_id for a in again} == {a.assistant_id for a in first}
    assert await assistants.count() == 3
    agent = await assistants.get("agent")
    assert agent.assistant_id == PLATFORM_AGENT_ASSISTANT_ID
    assert agent.metadata == {"created_by": "system"}
    assert (agent.config, agent.context, agent.owner) == ({}, {}, None)
    assert await assistants.get(PLATFORM_AGENT_ASSISTANT_ID.upper()) == agent
    api = agent.to_api()
    assert set(api) == {
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


async def test_create_get_update_versions_set_latest_delete(assistants: Assistants) -> None:
    created = await assistants.create(
        "agent",
        context={"greeting": "hi"},
        metadata={"team": "support"},
        name="Support",
        description="answers",
        owner="alice",
    )
    uuid.UUID(created.assistant_id)
    assert (created.version, created.name, created.owner) == (1, "Support", "alice")
    assert created.config == {"configurable": {"greeting": "hi"}}
    assert await assistants.get(created.assistant_id, owner="alice") == created
    with pytest.raises(NotFoundError, match=rf"^assistant {created.assistant_id} not found$"):
        await assistants.get(created.assistant_id, owner="bob")

    updated = await assistants.update(
        created.assistant_id, config={"configurable": {"greeting": "yo"}}, metadata={"v": 2}
    )
    assert updated.version == 2
    assert (updated.context, updated.name) == ({"greeting": "yo"}, "Support")
    assert updated.metadata == {"team": "support", "v": 2}
    third = await assistants.update(created.assistant_id, name="Support 3")
    assert (third.version, third.context) == (3, {"greeting": "yo"})

    versions = await assistants.versions(created.assistant_id)
    assert [v.version for v in versions] == [3, 2, 1]
    assert [v.version for v in await assistants.versions(created.assistant_id, limit=1)] == [3]
    only_v2 = await assistants.versions(created.assistant_id, metadata={"v": 2}, offset=1)
    assert [v.version for v in only_v2] == [2]

    back = await assistants.set_latest(created.assistant_id, 1)
    assert (back.version, back.name, back.context) == (1, "Support", {"greeting": "hi"})
    assert (await assistants.get(created.assistant_id)).version == 1
    with pytest.raises(
        NotFoundError, match=rf"^version 7 of assistant {created.assistant_id} not found$"
    ):
        await assistants.set_latest(created.assistant_id, 7)

    await assistants.delete(created.assistant_id)
    with pytest.raises(NotFoundError):
        await assistants.get(created.assistant_id)
    with pytest.raises(NotFoundError):
        await assistants.delete(created.assistant_id)


async def test_delete_with_its_threads(
    assistants: Assistants,
    storage: Storage,
    registry: GraphRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    threads = Threads(storage, registry)
    doomed = await assistants.create("agent", name="doomed")
    monkeypatch.setattr("weft.assistants.THREAD_BATCH", 2)  # several rounds of reading
    ours = [await threads.create(metadata={"assistant_id": doomed.assistant_id}) for _ in range(5)]
    other = await threads.create(metadata={"assistant_id": system_assistant_id("agent")})
    await assistants.delete(doomed.assistant_id, delete_threads=True)
    assert await threads.count(metadata={"assistant_id": doomed.assistant_id}) == 0
    for thread in ours:
        with pytest.raises(NotFoundError):
            await threads.get(thread.thread_id)
    assert (await threads.get(other.thread_id)).thread_id == other.thread_id
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=rf"^assistant {missing} not found$"):
        await assistants.delete(missing, delete_threads=True)


async def test_create_with_an_id_and_if_exists(assistants: Assistants) -> None:
    chosen = str(uuid.uuid4())
    made = await assistants.create("built", assistant_id=chosen)
    assert (made.assistant_id, made.name, made.metadata) == (chosen, "Untitled", {})
    with pytest.raises(ConflictError, match=rf"^assistant {chosen} already exists$"):
        await assistants.create("built", assistant_id=chosen, name="again")
    same = await assistants.create("built", assistant_id=chosen, if_exists="do_nothing")
    assert same == made
    with pytest.raises(
        UnprocessableEntityError,
        match=r"^if_exists must be one of raise, do_nothing, not 'update'$",
    ):
        await assistants.create("built", if_exists="update")


async def test_bad_input(assistants: Assistants) -> None:
    with pytest.raises(
        NotFoundError, match=r"^graph 'nope' not found; known graphs: 'agent', 'built', 'made'$"
    ):
        await assistants.create("nope")
    with pytest.raises(NotFoundError, match=r"^graph 'nope' not found"):
        await assistants.search(graph_id="nope")
    with pytest.raises(
        UnprocessableEntityError,
        match=r"^assistant_id must be a UUID \(or a graph id\), not 'not-a-uuid'$",
    ):
        await assistants.get("not-a-uuid")
    with pytest.raises(UnprocessableEntityError, match=r"^assistant_id must be a UUID"):
        await assistants.create("agent", assistant_id="nope")
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError, match=rf"^assistant {missing} not found$"):
        await assistants.update(missing, name="x")
    with pytest.raises(BadRequestError, match=r"^set either config.configurable or context"):
        await assistants.create("agent", config={"configurable": {"a": 1}}, context={"a": 2})
    with pytest.raises(
        UnprocessableEntityError,
        match=r"^sort_by must be one of assistant_id, graph_id, name, created_at, updated_at, "
        r"not 'size'$",
    ):
        await assistants.search(sort_by="size")
    with pytest.raises(UnprocessableEntityError, match=r"^sort_order must be one of asc, desc"):
        await assistants.search(sort_order="up")
    with pytest.raises(UnprocessableEntityError, match=r"^cannot select 'owner'; fields are "):
        await assistants.search(select=["name", "owner"])
    with pytest.raises(UnprocessableEntityError, match=r"^metadata must be JSON"):
        await assistants.create("agent", metadata={"when": object()})
    with pytest.raises(UnprocessableEntityError, match=r"^version must be a positive integer"):
        await assistants.set_latest("agent", 0)


async def test_search_count_and_select(assistants: Assistants) -> None:
    for name, team in (("Red team", "red"), ("Blue team", "blue"), ("Red two", "red")):
        await assistants.create("built", name=name, metadata={"team": team})
    found = await assistants.search(graph_id="built", sort_by="name", sort_order="asc")
    assert [a.name for a in found] == ["Blue team", "built", "Red team", "Red two"]
    assert [a.name for a in await assistants.search(name="red", limit=1)] == ["Red two"]
    assert [a.name for a in await assistants.search(name="red", offset=1)] == ["Red team"]
    assert await assistants.count(graph_id="built") == 4
    assert await assistants.count(metadata={"team": "red"}) == 2
    assert await assistants.count(name="TEAM") == 2
    selected = await assistants.search(metadata={"team": "blue"}, select=["name", "version"])
    assert selected == [{"name": "Blue team", "version": 1}]


async def test_schemas_of_a_real_graph(assistants: Assistants) -> None:
    schemas = await assistants.schemas("agent")
    items = {"items": {"type": "string"}, "title": "Items", "type": "array"}
    assert schemas["graph_id"] == "agent"
    assert schemas["input_schema"]["properties"] == {"items": items}
    assert schemas["output_schema"]["properties"] == {"items": items}
    assert schemas["state_schema"]["type"] == "object"
    assert schemas["state_schema"]["properties"]["items"]["type"] == "array"
    context = {"greeting": {"default": "hello", "title": "Greeting", "type": "string"}}
    assert schemas["context_schema"]["properties"] == context
    assert schemas["config_schema"]["properties"] == context
    made = await assistants.schemas("made")
    assert (made["context_schema"], made["config_schema"]) == (None, {})


async def test_graph_json_and_xray(assistants: Assistants) -> None:
    drawn = await assistants.graph("agent")
    assert [n["id"] for n in drawn["nodes"]] == ["__start__", "first", "child", "__end__"]
    assert drawn["edges"] == [
        {"source": "__start__", "target": "first"},
        {"source": "first", "target": "child"},
        {"source": "child", "target": "__end__"},
    ]
    child = next(n for n in drawn["nodes"] if n["id"] == "child")
    assert child["type"] == "runnable"
    assert child["data"] == {"name": "child"}
    assert child["metadata"] == {"__interrupt": "before"}

    xray = await assistants.graph("agent", xray=True)
    assert [n["id"] for n in xray["nodes"]] == ["__start__", "first", "__end__", "child:inner"]
    assert {"source": "first", "target": "child:inner"} in xray["edges"]
    assert await assistants.graph("agent", xray=1) == xray
    with pytest.raises(UnprocessableEntityError, match=r"^xray must be true, false or a positive"):
        await assistants.graph("agent", xray=-1)


async def test_subgraphs(assistants: Assistants) -> None:
    subgraphs = await assistants.subgraphs("agent")
    assert list(subgraphs) == ["child"]
    assert set(subgraphs["child"]) == {
        "input_schema",
        "output_schema",
        "state_schema",
        "config_schema",
        "context_schema",
    }
    assert subgraphs["child"]["input_schema"]["title"] == "ChildState"
    assert await assistants.subgraphs("agent", namespace="child") == subgraphs
    assert await assistants.subgraphs("agent", namespace="other") == {}
    assert await assistants.subgraphs("made") == {}


async def test_a_factory_graph_is_built_for_the_assistant(assistants: Assistants) -> None:
    made = await assistants.create("made", context={"label": "from the assistant"})
    assert isinstance(made, Assistant)
    drawn = await assistants.graph(made.assistant_id)
    assert [n["id"] for n in drawn["nodes"]] == ["__start__", "labelled", "__end__"]
