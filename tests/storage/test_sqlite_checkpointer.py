"""weft's SQLite checkpointer: the LangGraph conformance suite and our own additions."""

from __future__ import annotations

import asyncio
import operator
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, TypedDict

import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import ALL_CAPABILITIES
from langgraph.graph import END, START, StateGraph
from langgraph.pregel._checkpoint import put_writes_accepts_task_path

from weft.storage import open_storage


class State(TypedDict):
    items: Annotated[list[str], operator.add]


def chain(n: int) -> StateGraph[State]:
    builder: StateGraph[State] = StateGraph(State)
    prev = START
    for i in range(n):
        name = f"n{i}"
        builder.add_node(name, lambda _s, name=name: {"items": [name]})
        builder.add_edge(prev, name)
        prev = name
    builder.add_edge(prev, END)
    return builder


@pytest.mark.parametrize("where", ["file", "memory"])
async def test_conformance_every_capability(tmp_path: Path, where: str) -> None:
    url = f"sqlite:///{tmp_path}/c.db" if where == "file" else "sqlite:///:memory:"

    @checkpointer_test(name=f"weft-sqlite-{where}")
    async def saver() -> AsyncIterator[BaseCheckpointSaver[str]]:
        async with open_storage(url) as storage:
            yield storage.checkpointer

    report = await validate(saver)
    failures = {k: r.failures for k, r in report.results.items() if not r.passed}
    assert not failures, failures
    for capability in ALL_CAPABILITIES:
        result = report.results[capability.value]
        assert result.detected, f"{capability.value} not implemented"
        assert result.passed, result.failures
        assert result.tests_passed > 0
        assert result.tests_failed == 0


async def test_delete_for_runs_on_a_real_graph(tmp_path: Path) -> None:
    async with open_storage(f"sqlite:///{tmp_path}/g.db") as storage:
        graph = chain(3).compile(checkpointer=storage.checkpointer)
        config = {"configurable": {"thread_id": "t"}}
        await graph.ainvoke({"items": []}, {**config, "metadata": {"run_id": "run-1"}})
        await graph.ainvoke({"items": []}, {**config, "metadata": {"run_id": "run-2"}})
        before = [c async for c in storage.checkpointer.alist(config)]
        assert {c.metadata.get("run_id") for c in before} == {"run-1", "run-2"}

        await storage.checkpointer.adelete_for_runs(["run-2"])

        after = [c async for c in storage.checkpointer.alist(config)]
        assert {c.metadata.get("run_id") for c in after} == {"run-1"}
        state = await graph.aget_state(config)
        assert state.values["items"] == ["n0", "n1", "n2"]


async def test_langgraph_sees_that_writes_take_their_task_path(tmp_path: Path) -> None:
    """LangGraph reads the signature of ``(a)put_writes`` at the start of every run (weft
    stores it on the methods); it must still see ``task_path``."""
    async with open_storage(f"sqlite:///{tmp_path}/g.db") as storage:
        assert put_writes_accepts_task_path(storage.checkpointer.aput_writes)
        assert put_writes_accepts_task_path(storage.checkpointer.put_writes)


async def test_copy_thread_then_continue_on_the_copy(tmp_path: Path) -> None:
    async with open_storage(f"sqlite:///{tmp_path}/g.db") as storage:
        graph = chain(2).compile(checkpointer=storage.checkpointer)
        src = {"configurable": {"thread_id": "src"}}
        dst = {"configurable": {"thread_id": "dst"}}
        await graph.ainvoke({"items": ["x"]}, src)
        await storage.checkpointer.acopy_thread("src", "dst")
        assert (await graph.aget_state(dst)).values == (await graph.aget_state(src)).values
        await graph.ainvoke({"items": ["y"]}, dst)
        assert (await graph.aget_state(src)).values["items"] == ["x", "n0", "n1"]
        assert (await graph.aget_state(dst)).values["items"] == ["x", "n0", "n1", "y", "n0", "n1"]


async def test_prune_keep_latest_keeps_state(tmp_path: Path) -> None:
    async with open_storage(f"sqlite:///{tmp_path}/g.db") as storage:
        graph = chain(4).compile(checkpointer=storage.checkpointer)
        config = {"configurable": {"thread_id": "t"}}
        await graph.ainvoke({"items": []}, config)
        await storage.checkpointer.aprune(["t"], strategy="keep_latest")
        history = [c async for c in storage.checkpointer.alist(config)]
        assert len(history) == 1
        assert (await graph.aget_state(config)).values["items"] == ["n0", "n1", "n2", "n3"]
        with pytest.raises(ValueError, match="unknown prune strategy 'all'"):
            await storage.checkpointer.aprune(["t"], strategy="all")


async def test_sync_calls_from_another_thread_work_and_on_loop_refuse(tmp_path: Path) -> None:
    async with open_storage(f"sqlite:///{tmp_path}/g.db") as storage:
        saver = storage.checkpointer
        graph = chain(2).compile(checkpointer=saver)
        config = {"configurable": {"thread_id": "t"}}
        await graph.ainvoke({"items": []}, config)

        found: list[object] = []
        worker = threading.Thread(target=lambda: found.append(saver.get_tuple(config)))
        worker.start()
        await asyncio.to_thread(worker.join)
        assert found
        assert found[0] is not None

        with pytest.raises(asyncio.InvalidStateError, match="use the async methods"):
            saver.get_tuple(config)


async def test_concurrent_runs_share_commits_and_all_persist(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/g.db"
    async with open_storage(url) as storage:
        graph = chain(5).compile(checkpointer=storage.checkpointer)
        await asyncio.gather(
            *(
                graph.ainvoke({"items": []}, {"configurable": {"thread_id": f"t{i}"}})
                for i in range(40)
            )
        )
    async with open_storage(url) as storage:
        graph = chain(5).compile(checkpointer=storage.checkpointer)
        for i in range(40):
            state = await graph.aget_state({"configurable": {"thread_id": f"t{i}"}})
            assert state.values["items"] == ["n0", "n1", "n2", "n3", "n4"]


async def test_metadata_filters_match_as_in_memory_saver(tmp_path: Path) -> None:
    async with open_storage(f"sqlite:///{tmp_path}/f.db") as storage:
        saver = storage.checkpointer
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        meta = {
            "source": "input",
            "step": 1,
            "a.b": "dotted",
            "odd key": 1,
            "nest": {"x": 1, "y": 2},
        }
        await saver.aput(config, empty_checkpoint(), meta, {})  # type: ignore[arg-type]

        async def found(**flt: object) -> int:
            return len([c async for c in saver.alist(None, filter=flt)])

        assert await found(**{"a.b": "dotted"}) == 1  # a key, not a path
        assert await found(**{"odd key": 1}) == 1
        assert await found(nest={"y": 2, "x": 1}) == 1  # key order does not matter
        assert await found(nest={"x": 1}) == 0
        assert await found(step=1, source="input") == 1
        before_without_id = {"configurable": {"thread_id": "t"}}
        assert len([c async for c in saver.alist(config, before=before_without_id)]) == 1
        with pytest.raises(ValueError, match="may not contain"):
            await found(**{'bad"key': 1})


async def test_nan_in_metadata_is_refused_clearly(tmp_path: Path) -> None:
    async with open_storage(f"sqlite:///{tmp_path}/n.db") as storage:
        config = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
        with pytest.raises(ValueError, match="metadata cannot be stored as JSON"):
            await storage.checkpointer.aput(
                config,
                empty_checkpoint(),
                {"score": float("nan")},
                {},  # type: ignore[typeddict-unknown-key]
            )
        assert [c async for c in storage.checkpointer.alist(None)] == []
