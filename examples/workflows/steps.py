"""Plain Python steps used by the example workflows (`python` nodes and routers)."""

from __future__ import annotations

from typing import Any


def observe(state: dict[str, Any]) -> dict[str, Any]:
    """Count one more think → act round (the ReAct loop's 'observe' step)."""
    return {"rounds": 1}


def execute_step(state: dict[str, Any]) -> dict[str, Any]:
    """Carry out the next step of the plan (here: record that it was done)."""
    steps = state["plan"]["steps"]
    step = steps[len(state["done"])]
    return {"done": [f"done: {step}"]}


def summarize(state: dict[str, Any]) -> dict[str, Any]:
    return {"result": f"{len(state['done'])} steps done: " + "; ".join(state["done"])}


def take_draft(state: dict[str, Any]) -> dict[str, Any]:
    """Copy the model's last reply into the `draft` field the reviewer sees."""
    return {"draft": state["messages"][-1].content}


def publish(state: dict[str, Any]) -> dict[str, Any]:
    return {"result": f"published: {state['draft']}"}


def discard(state: dict[str, Any]) -> dict[str, Any]:
    return {"result": f"not published (reviewer said {state['approval']!r})"}
