"""A LangGraph graph written in Python, served by weft exactly as `langgraph dev` would.

`graph` is a compiled graph; `make_graph` is a factory that LangGraph Platform (and weft)
calls with each run's config.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from langchain_core.messages import AIMessage, AnyMessage
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages


class State(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]


async def respond(state: State) -> dict[str, list[AnyMessage]]:
    """Echo the last message back, upper-cased."""
    last = state["messages"][-1].content if state["messages"] else ""
    return {"messages": [AIMessage(content=str(last).upper())]}


builder = StateGraph(State)
builder.add_node("respond", respond)
builder.add_edge(START, "respond")
builder.add_edge("respond", END)

graph = builder.compile()


def make_graph(config: RunnableConfig) -> object:
    """A factory: called with the run's config, returns the graph to run."""
    return builder.compile()
