"""Graphs of bench/runs.py and bench/http.py: a 1-node echo and a 10-step chain, async nodes.

Each script copies this file into its temporary project, registers ``echo`` and ``chain`` in
that project's langgraph.json and loads the same file for its in-process floor.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

CHAIN = 10


class State(TypedDict):
    value: int
    trail: Annotated[list[int], operator.add]


async def step(state: State) -> dict[str, Any]:
    return {"value": state["value"] + 1, "trail": [state["value"]]}


def build(n: int) -> StateGraph:
    builder = StateGraph(State)
    prev = START
    for i in range(n):
        builder.add_node(f"n{i}", step)
        builder.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    builder.add_edge(prev, END)
    return builder


echo = build(1)
chain = build(CHAIN)
