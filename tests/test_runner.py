"""The runner through ``rt.runs``: stream mode ``events`` (LangChain's events, v2, made JSON)
alone and with other modes, and the final state a run reports and leaves on its thread
(from a past checkpoint, at a breakpoint, with an output schema)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from weft.config import Settings
from weft.runtime import Runtime
from weft.schema import RunEvent


async def collect(events: AsyncIterator[RunEvent]) -> list[RunEvent]:
    return [e async for e in events]


async def test_events_mode_sends_langchains_events_as_json(rt: Runtime) -> None:
    thread = await rt.threads.create()
    run, stream = await rt.runs.stream(thread.thread_id, "counter", input={}, stream_mode="events")
    got = await collect(stream)
    assert got[0].event == "metadata"
    assert {e.event for e in got[1:]} == {"events"}
    events = [e.data for e in got[1:]]
    assert json.loads(json.dumps(events)) == events  # plain JSON all through
    first, last = events[0], events[-1]
    assert (first["event"], first["name"], first["run_id"]) == (
        "on_chain_start",
        "counter",
        run.run_id,
    )
    assert first["parent_ids"] == []
    assert first["metadata"]["thread_id"] == thread.thread_id
    assert (last["event"], last["run_id"]) == ("on_chain_end", run.run_id)
    nodes = [e["name"] for e in events if e["event"] == "on_chain_start"][1:]
    assert nodes == ["speak", "add_one"]
    spoken = next(e for e in events if e["event"] == "on_chain_end" and e["name"] == "speak")
    assert spoken["data"]["output"]["messages"][0]["content"] == "turn 1"
    assert spoken["data"]["output"]["messages"][0]["type"] == "ai"
    # the root graph's own chunks are not events of their own
    assert not any(e["event"] == "on_chain_stream" and e["run_id"] == run.run_id for e in events)
    assert (await rt.runs.get(thread.thread_id, run.run_id)).status == "success"
    stored = await rt.threads.get(thread.thread_id)
    assert stored.status == "idle"
    assert stored.values is not None
    assert stored.values["count"] == 1


async def test_events_combine_with_other_modes(rt: Runtime) -> None:
    thread = await rt.threads.create()
    _, stream = await rt.runs.stream(
        thread.thread_id,
        "counter",
        input={},
        stream_mode=["events", "values", "updates", "messages-tuple"],
    )
    got = await collect(stream)
    names = [e.event for e in got]
    assert set(names) == {"metadata", "events", "values", "updates", "messages"}
    updates = [e.data for e in got if e.event == "updates"]
    assert [list(u) for u in updates] == [["speak"], ["add_one"]]
    assert [e.data for e in got if e.event == "values"][-1]["count"] == 1
    message, meta = next(e.data for e in got if e.event == "messages")
    assert message["content"] == "turn 1"
    assert meta["langgraph_node"] == "speak"
    # in order: each node's events come before the update it produced
    assert names.index("updates") > names.index("events")
    assert [e.seq for e in got] == list(range(1, len(got) + 1))


async def test_events_mode_reports_an_interrupt(rt: Runtime) -> None:
    thread = await rt.threads.create()
    _, stream = await rt.runs.stream(
        thread.thread_id, "review", input={"draft": "d"}, stream_mode="events"
    )
    got = await collect(stream)
    [interrupt] = [e.data for e in got if e.event == "updates"]
    assert interrupt["__interrupt__"][0]["value"] == {"question": "approve d?"}
    assert (await rt.threads.get(thread.thread_id)).status == "interrupted"
    resumed = await rt.runs.wait(
        thread.thread_id, "review", command={"resume": "yes"}, stream_mode="events"
    )
    assert resumed == {"draft": "d", "verdict": "yes"}


async def test_events_mode_with_a_failing_node(rt: Runtime) -> None:
    thread = await rt.threads.create()
    _, stream = await rt.runs.stream(thread.thread_id, "failing", input={}, stream_mode="events")
    got = await collect(stream)
    assert got[-1].event == "error"
    assert got[-1].data == {"error": "ValueError", "message": "the node failed on purpose"}
    assert any(e.event == "events" for e in got)
    assert (await rt.threads.get(thread.thread_id)).status == "error"


async def test_a_run_from_a_past_checkpoint_reports_the_new_head(rt: Runtime) -> None:
    thread = await rt.threads.create()
    await rt.runs.wait(thread.thread_id, "counter", input={})
    after_one = (await rt.threads.state(thread.thread_id)).checkpoint_id
    await rt.runs.wait(thread.thread_id, "counter", input={})
    forked = await rt.runs.wait(thread.thread_id, "counter", input={}, checkpoint_id=after_one)
    assert forked["count"] == 2
    assert [m["content"] for m in forked["messages"]] == ["turn 1", "turn 2"]
    head = await rt.threads.get(thread.thread_id)
    assert head.values is not None
    assert head.values["count"] == 2
    assert head.counts.messages == 2


async def test_a_run_stopped_at_a_breakpoint_reports_the_state_it_stopped_in(
    rt: Runtime,
) -> None:
    thread = await rt.threads.create()
    stopped = await rt.runs.wait(
        thread.thread_id, "counter", input={}, interrupt_before=["add_one"]
    )
    assert [m["content"] for m in stopped["messages"]] == ["turn 1"]
    assert stopped["count"] == 0  # add_one has not run
    assert (await rt.threads.state(thread.thread_id)).next == ["add_one"]
    went_on = await rt.runs.wait(thread.thread_id, "counter")
    assert went_on["count"] == 1
    assert (await rt.threads.state(thread.thread_id)).next == []


SCHEMAS = """
from typing import Any
from typing_extensions import TypedDict
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str
    scratch: str
    answer: str


class Output(TypedDict, total=False):
    answer: str


def think(state: State) -> dict[str, Any]:
    return {"scratch": "thinking", "answer": state.get("question", "") + "!"}


builder = StateGraph(State, output_schema=Output)
builder.add_node("think", think)
builder.add_edge(START, "think")
builder.add_edge("think", END)
narrow = builder


def report(state: State) -> dict[str, Any]:
    get_stream_writer()({"progress": "inner"})
    return {"answer": "inner"}


inner = StateGraph(State)
inner.add_node("report", report)
inner.add_edge(START, "report")
inner.add_edge("report", END)
outer = StateGraph(State)
outer.add_node("inner", inner.compile())
outer.add_edge(START, "inner")
outer.add_edge("inner", END)
nested = outer
"""


@pytest.fixture
async def narrow_rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    """A runtime with a graph whose output schema is narrower than its state, and one with a
    subgraph."""
    (tmp_path / "narrow.py").write_text(SCHEMAS)
    config = tmp_path / "langgraph.json"
    graphs = {"narrow": "./narrow.py:narrow", "nested": "./narrow.py:nested"}
    config.write_text(json.dumps({"graphs": graphs}))
    env = {"WEFT_DATABASE_URL": f"sqlite:///{tmp_path}/weft.db"}
    async with Runtime.open(Settings.load(config, env=env)) as runtime:
        yield runtime


async def test_a_graph_with_an_output_schema_reports_its_whole_state(narrow_rt: Runtime) -> None:
    rt = narrow_rt
    thread = await rt.threads.create()
    _, stream = await rt.runs.stream(
        thread.thread_id, "narrow", input={"question": "why"}, stream_mode="values"
    )
    got: list[Any] = [e.data for e in await collect(stream) if e.event == "values"]
    assert got[-1]["answer"] == "why!"
    result = await rt.runs.wait(thread.thread_id, "narrow", input={"question": "how"})
    assert result == {"question": "how", "scratch": "thinking", "answer": "how!"}
    stored = await rt.threads.get(thread.thread_id)
    assert stored.values == result


async def test_only_the_modes_asked_are_sent_with_subgraphs(narrow_rt: Runtime) -> None:
    rt = narrow_rt
    thread = await rt.threads.create()
    _, stream = await rt.runs.stream(
        thread.thread_id, "nested", input={}, stream_mode="custom", stream_subgraphs=True
    )
    got = (await collect(stream))[1:]
    assert [e.event.split(":")[0] for e in got] == ["custom|inner"]
    assert got[0].data == {"progress": "inner"}
    assert (await rt.threads.get(thread.thread_id)).values == {"answer": "inner"}
