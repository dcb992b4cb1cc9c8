"""The runner through ``rt.runs``: stream mode ``events`` (LangChain's events, v2, made JSON)
alone and with other modes, and the final state a run reports and leaves on its thread
(from a past checkpoint, at a breakpoint, with an output schema)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from weft.config import Settings
from weft.runtime import Runtime
from weft.schema import RunEvent
from weft.storage.sqlite import SqliteStorage


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


COMMITS = """
import operator, os, sqlite3
from typing import Annotated, Any
from typing_extensions import TypedDict
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    committed: int
    last: int
    seen: Annotated[list[int], operator.add]


def first(state: State) -> dict[str, Any]:
    return {}


def look(state: State, config: RunnableConfig) -> dict[str, Any]:
    # what another connection sees of this thread's checkpoints: committed ones only
    conn = sqlite3.connect(os.environ["WEFT_TEST_DB"])
    try:
        (n,) = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = ?",
            (config["configurable"]["thread_id"],),
        ).fetchone()
    finally:
        conn.close()
    return {"committed": n}


peek = StateGraph(State).add_sequence([first, look])
peek.add_edge(START, "first")
peek.add_edge("look", END)


class Inner(TypedDict, total=False):
    calls: Annotated[list[int], operator.add]
    last: int


def call(state: Inner) -> dict[str, Any]:
    return {"calls": [1], "last": len(state.get("calls", [])) + 1}


inner = StateGraph(Inner)
inner.add_node("call", call)
inner.add_edge(START, "call")
inner.add_edge("call", END)


def note(state: State) -> dict[str, Any]:
    return {"seen": [state["last"]]}


outer = StateGraph(State)
outer.add_node("sub", inner.compile(checkpointer=True))
outer.add_node("note", note)
outer.add_edge(START, "sub")
outer.add_edge("sub", "note")
outer.add_conditional_edges("note", lambda s: "sub" if len(s["seen"]) < 3 else END)
stateful = outer
"""


@pytest.fixture
async def lingering_rt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    """A runtime on a SQLite file whose writer keeps early writes uncommitted until someone
    waits for them (an hour's linger): what a run's own waits commit is all that is."""
    (tmp_path / "commits.py").write_text(COMMITS)
    config = tmp_path / "langgraph.json"
    graphs = {"peek": "./commits.py:peek", "stateful": "./commits.py:stateful"}
    config.write_text(json.dumps({"graphs": graphs}))
    db = tmp_path / "weft.db"
    monkeypatch.setenv("WEFT_TEST_DB", str(db))
    env = {"WEFT_DATABASE_URL": f"sqlite:///{db}"}
    async with Runtime.open(Settings.load(config, env=env)) as runtime:
        assert isinstance(runtime.storage, SqliteStorage)
        runtime.storage.engine.linger = 3600.0
        yield runtime


def _committed_checkpoints(db: Path, thread_id: str) -> int:
    conn = sqlite3.connect(db)
    try:
        (n,) = conn.execute(
            "SELECT count(*) FROM checkpoints WHERE thread_id = ?", (thread_id,)
        ).fetchone()
    finally:
        conn.close()
    return int(n)


async def test_a_run_reports_its_result_once_its_checkpoints_are_committed(
    lingering_rt: Runtime, tmp_path: Path
) -> None:
    rt = lingering_rt
    thread = await rt.threads.create()
    result = await asyncio.wait_for(rt.runs.wait(thread.thread_id, "peek", input={}), 30)
    # the run's checkpoints waited for one commit, made when the run ended (not one each,
    # so none was committed while it ran) ...
    assert result["committed"] == 0
    # ... and every one of them (input, start, two steps) was committed before the result
    assert _committed_checkpoints(tmp_path / "weft.db", thread.thread_id) == 4


async def test_durability_sync_commits_each_checkpoint_before_the_next_step(
    lingering_rt: Runtime,
) -> None:
    rt = lingering_rt
    thread = await rt.threads.create()
    result = await asyncio.wait_for(
        rt.runs.wait(thread.thread_id, "peek", input={}, durability="sync"), 30
    )
    assert result["committed"] == 3  # the input's, the start's and the first step's


async def test_a_stateful_subgraph_reads_what_the_same_run_wrote(lingering_rt: Runtime) -> None:
    rt = lingering_rt
    thread = await rt.threads.create()
    result = await asyncio.wait_for(rt.runs.wait(thread.thread_id, "stateful", input={}), 30)
    assert result["seen"] == [1, 2, 3]


async def test_a_run_whose_checkpoints_fail_to_commit_is_tried_again(
    lingering_rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = lingering_rt
    assert isinstance(rt.storage, SqliteStorage)
    engine = rt.storage.engine
    real = engine.committed
    failures: list[int] = []

    async def committed(commits: list[asyncio.Future[None]]) -> None:
        await real(commits)
        if not failures:  # as if the first COMMIT had hit a full disk
            failures.append(len(commits))
            raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(engine, "committed", committed)
    thread = await rt.threads.create()
    run, result = await rt.runs.submit(thread.thread_id, "peek", input={})
    assert "committed" in await asyncio.wait_for(result, 30)
    assert len(failures) == 1
    assert failures[0] > 0  # the run's checkpoints were waited for
    again = await rt.runs.get(thread.thread_id, run.run_id)
    assert (again.status, again.attempt) == ("success", 2)
