"""YAML workflows: load + compile cost, and run speed against the same graph written by hand.

1. Load and compile 50 YAML workflows (5 python nodes and a conditional edge each) vs
   building and compiling the same 50 graphs in Python. Target: 50 YAML files under 1 s.
2. Run one YAML-compiled graph and the same graph written by hand, interleaved, same
   checkpointer (InMemorySaver). Target: YAML no slower than hand-written, within 10%.

    python -P bench/workflows.py [--runs N] [--rounds R] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import platform
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Annotated, Any, TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, StateGraph

from weft.workflows import compile_workflow, load_workflow

N_WORKFLOWS = 50

STEPS = textwrap.dedent(
    """
    def step(state):
        return {"count": 1, "trail": [state["count"]]}
    """
)


def workflow_yaml(i: int) -> str:
    return textwrap.dedent(
        f"""
        name: chain_{i}
        description: five steps and a loop-back condition
        state:
          count: {{type: int, reducer: add, default: 0}}
          trail: {{type: list, reducer: append, default: []}}
        nodes:
          a: {{kind: python, function: steps.py:step}}
          b: {{kind: python, function: steps.py:step}}
          c: {{kind: python, function: steps.py:step}}
          d: {{kind: python, function: steps.py:step}}
          e: {{kind: python, function: steps.py:step}}
        entry: a
        edges:
          - {{from: a, to: b}}
          - {{from: b, to: c}}
          - {{from: c, to: d}}
          - {{from: d, to: e}}
          - from: e
            condition: "count < `10`"
            path_map: {{"true": a, "false": END}}
        """
    )


class State(TypedDict):
    count: Annotated[int, operator.add]
    trail: Annotated[list[int], operator.add]


def by_hand(step: Any) -> StateGraph[State]:
    builder: StateGraph[State] = StateGraph(State)
    for name in "abcde":
        builder.add_node(name, step)
    builder.set_entry_point("a")
    for src, dst in zip("abcd", "bcde", strict=True):
        builder.add_edge(src, dst)
    builder.add_conditional_edges(
        "e", lambda s: "true" if s["count"] < 10 else "false", {"true": "a", "false": END}
    )
    return builder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per graph per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", type=Path, help="append a Markdown table to this file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "steps.py").write_text(STEPS)
        paths = []
        for i in range(N_WORKFLOWS):
            path = folder / f"chain_{i}.yaml"
            path.write_text(workflow_yaml(i))
            paths.append(path)
        sys.path.insert(0, str(folder))
        import steps  # type: ignore[import-not-found]  # written above

        load_yaml, load_py = [], []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for path in paths:
                compile_workflow(load_workflow(path)).compile()
            load_yaml.append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in paths:
                by_hand(steps.step).compile()
            load_py.append(time.perf_counter() - start)
        yaml_load, py_load = statistics.median(load_yaml), statistics.median(load_py)

        yaml_graph = compile_workflow(load_workflow(paths[0])).compile(checkpointer=InMemorySaver())
        hand_graph = by_hand(steps.step).compile(checkpointer=InMemorySaver())

        async def per_run(graph: Any, tag: str) -> float:
            start = time.perf_counter()
            for n in range(args.runs):
                config = {"configurable": {"thread_id": f"{tag}-{n}"}}
                out = await graph.ainvoke({"count": 0, "trail": []}, config)
                assert out["count"] == 10, out
            return (time.perf_counter() - start) / args.runs

        async def race() -> tuple[float, float]:
            yaml_t, hand_t = [], []
            for r in range(args.rounds):
                yaml_t.append(await per_run(yaml_graph, f"y{r}"))
                hand_t.append(await per_run(hand_graph, f"h{r}"))
            return statistics.median(yaml_t), statistics.median(hand_t)

        yaml_run, hand_run = asyncio.run(race())

    rows = [
        "| measure | YAML | Python by hand | YAML / Python |",
        "|---|---:|---:|---:|",
        f"| load + compile {N_WORKFLOWS} workflows | {yaml_load * 1000:.0f} ms | "
        f"{py_load * 1000:.0f} ms | {yaml_load / py_load:.2f}x |",
        f"| one run (10 node steps, condition checked twice) | "
        f"{yaml_run * 1000:.2f} ms | {hand_run * 1000:.2f} ms | **{yaml_run / hand_run:.2f}x** |",
    ]
    text = "\n".join(rows)
    print(text)
    if args.out:
        with args.out.open("a") as f:
            f.write(
                f"\n### bench/workflows.py, {time.strftime('%Y-%m-%d')}, Python "
                f"{platform.python_version()}, median of {args.rounds} rounds\n\n{text}\n"
            )


if __name__ == "__main__":
    main()
