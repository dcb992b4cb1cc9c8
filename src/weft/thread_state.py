"""A thread's state as weft shows it: LangGraph's snapshots and checkpoints made into the
Platform's ``ThreadState``, and the cached head state a thread record keeps."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import CheckpointTuple
from langgraph.types import StateSnapshot

from weft.jsonable import to_jsonable
from weft.schema import Thread, ThreadState, ThreadStatus
from weft.storage.base import ThreadPatch


def checkpoint_config(
    thread_id: str, graph_id: str | None, checkpoint_id: str | None
) -> RunnableConfig:
    configurable: dict[str, Any] = {"thread_id": thread_id, "checkpoint_ns": ""}
    if graph_id is not None:
        configurable["graph_id"] = graph_id
    if checkpoint_id is not None:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


def checkpoint_of(config: RunnableConfig | None) -> dict[str, Any]:
    conf = (config or {}).get("configurable", {})
    out = {
        "thread_id": conf.get("thread_id"),
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": conf.get("checkpoint_id"),
    }
    if conf.get("checkpoint_map"):
        out["checkpoint_map"] = to_jsonable(conf["checkpoint_map"])
    return out


def from_snapshot(snap: StateSnapshot) -> ThreadState:
    tasks: list[dict[str, Any]] = []
    for task in snap.tasks:
        sub: Any = None
        if isinstance(task.state, StateSnapshot):
            sub = from_snapshot(task.state).to_api()
        tasks.append(
            {
                "id": task.id,
                "name": task.name,
                "error": None if task.error is None else _error_text(task.error),
                "interrupts": [to_jsonable(i) for i in task.interrupts],
                "checkpoint": (checkpoint_of(task.state) if isinstance(task.state, dict) else None),
                "state": sub,
                "result": to_jsonable(task.result),
            }
        )
    values = to_jsonable(snap.values)
    return ThreadState(
        values=values if values is not None else {},
        next=list(snap.next),
        checkpoint=checkpoint_of(snap.config) if snap.config else None,
        metadata=to_jsonable(dict(snap.metadata or {})),
        created_at=snap.created_at,
        parent_checkpoint=checkpoint_of(snap.parent_config) if snap.parent_config else None,
        tasks=tasks,
        interrupts=[to_jsonable(i) for i in snap.interrupts],
    )


def from_tuple(tup: CheckpointTuple) -> ThreadState:
    """A state read from the checkpoint alone (the thread's graph is unknown)."""
    channels = tup.checkpoint.get("channel_values", {})
    values = {
        k: v for k, v in channels.items() if not k.startswith("__") and not k.startswith("branch:")
    }
    return ThreadState(
        values=to_jsonable(values),
        checkpoint=checkpoint_of(tup.config),
        metadata=to_jsonable(dict(tup.metadata or {})),
        created_at=tup.checkpoint.get("ts"),
        parent_checkpoint=checkpoint_of(tup.parent_config) if tup.parent_config else None,
    )


def _error_text(error: Exception) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


def mark_abandoned(thread: Thread, state: ThreadState) -> ThreadState:
    cp = state.checkpoint_id
    if cp is None or not any(r.abandons(cp) for r in thread.rollbacks):
        return state
    return state.model_copy(update={"metadata": {**state.metadata, "abandoned": True}})


def interrupts_by_task(state: ThreadState) -> dict[str, list[dict[str, Any]]]:
    return {t["id"]: list(t["interrupts"]) for t in state.tasks if t["interrupts"]}


def step_of(state: ThreadState) -> int:
    step = state.metadata.get("step", 0)
    return step if isinstance(step, int) and step >= 0 else 0


def state_patch(
    state: ThreadState, *, status: ThreadStatus, drop_interrupts: bool = False
) -> ThreadPatch:
    values = state.values if isinstance(state.values, dict) else {"__root__": state.values}
    messages = values.get("messages")
    now = datetime.now(UTC)
    return ThreadPatch(
        updated_at=now,
        status=status,
        values=values,
        interrupts={} if drop_interrupts else interrupts_by_task(state),
        messages=len(messages) if isinstance(messages, list) else 0,
        state_updated_at=now,
    )
