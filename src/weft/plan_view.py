"""Views of a plan: its order (levels, critical path), a Mermaid drawing, and reports.

Pure functions over a :class:`weft.plans.PlanSpec` (imported for typing only, so
:mod:`weft.plans` can use the graph helpers here) and over stored plan records.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from weft.errors import UnprocessableEntityError
from weft.schema import (
    PLAN_FINAL_STATES,
    Plan,
    PlanPolicy,
    PlanStatus,
    PlanThread,
    PlanThreadState,
)
from weft.workflows.expressions import json_view

if TYPE_CHECKING:
    from weft.plans import PlanSpec

# --- order -------------------------------------------------------------------------------------


def _sources(spec: PlanSpec) -> dict[str, list[str]]:
    return {
        name: [s for s in thread.sources if s in spec.threads and s != name]
        for name, thread in spec.threads.items()
    }


def topological_order(spec: PlanSpec) -> list[str]:
    """Thread names, each after its sources, otherwise in spec order.

    Raises UnprocessableEntityError when the threads form a cycle (validate the plan first).
    """
    sources = _sources(spec)
    waiting = {name: len(found) for name, found in sources.items()}
    dependents: dict[str, list[str]] = {name: [] for name in sources}
    for name, found in sources.items():
        for source in found:
            dependents[source].append(name)
    names = list(sources)
    position = {name: i for i, name in enumerate(names)}
    ready = [i for i, name in enumerate(names) if waiting[name] == 0]  # positions: a heap
    order: list[str] = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for dependent in dependents[name]:
            waiting[dependent] -= 1
            if waiting[dependent] == 0:
                heapq.heappush(ready, position[dependent])
    if len(order) < len(sources):
        stuck = ", ".join(name for name in sources if name not in set(order))
        raise UnprocessableEntityError(f"the plan's threads form a cycle (among {stuck})")
    return order


def levels(spec: PlanSpec) -> list[list[str]]:
    """Threads by level: a thread's level is the longest path to it from a thread with no
    sources. Spec order within a level."""
    sources = _sources(spec)
    level: dict[str, int] = {}
    for name in topological_order(spec):
        level[name] = 1 + max((level[s] for s in sources[name]), default=-1)
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for name in spec.threads:
        out[level[name]].append(name)
    return out


def critical_path(
    spec: PlanSpec, weights: Mapping[str, float] | None = None
) -> tuple[list[str], float]:
    """The heaviest chain of dependent threads and its weight.

    Each thread weighs 1 without ``weights``; with them, a thread they do not name weighs 0.
    Ties go to the thread earlier in the spec.
    """
    sources = _sources(spec)
    best: dict[str, float] = {}
    previous: dict[str, str | None] = {}
    for name in topological_order(spec):
        weight = 1.0 if weights is None else float(weights.get(name, 0.0))
        before: str | None = None
        for source in sources[name]:
            if before is None or best[source] > best[before]:
                before = source
        best[name] = weight + (best[before] if before is not None else 0.0)
        previous[name] = before
    end: str | None = None
    for name in spec.threads:
        if end is None or best[name] > best[end]:
            end = name
    path: list[str] = []
    while end is not None:
        path.append(end)
        end = previous[end]
    path.reverse()
    return path, best[path[-1]] if path else 0.0


# --- drawing -----------------------------------------------------------------------------------

_MERMAID_ESCAPES = str.maketrans(
    {
        "#": "#35;",
        '"': "#quot;",
        "<": "#lt;",
        ">": "#gt;",
        "&": "#amp;",
        "`": "#96;",
        "|": "#124;",
        "\n": " ",
        "\r": " ",
    }
)


def _text(value: str) -> str:
    """``value`` safe inside a quoted Mermaid label (entity codes for special characters)."""
    return value.translate(_MERMAID_ESCAPES)


def mermaid(spec: PlanSpec) -> str:
    """A Mermaid ``flowchart TD``: a node per thread (name, workflow, ``when``), ``-->`` for
    ``after`` and a labelled arrow (``input ← expression``) for ``inputs_from``."""
    ids = {name: f"t{i}" for i, name in enumerate(spec.threads)}
    out = ["flowchart TD"]
    for name, thread in spec.threads.items():
        kind = "graph" if thread.graph_id else "assistant"
        label = [_text(name), f"{kind}: {_text(thread.workflow)}"]
        if thread.when is not None:
            label.append(f"when: {_text(thread.when)}")
        out.append(f'    {ids[name]}["{"<br/>".join(label)}"]')
    for name, thread in spec.threads.items():
        for source in thread.sources:
            if source not in ids:
                continue
            mapping = thread.inputs_from.get(source)
            if mapping:
                text = "<br/>".join(f"{_text(k)} ← {_text(v)}" for k, v in mapping.items())
                out.append(f'    {ids[source]} -->|"{text}"| {ids[name]}')
            else:
                out.append(f"    {ids[source]} --> {ids[name]}")
    return "\n".join(out) + "\n"


def describe(spec: PlanSpec) -> str:
    """Plain text for ``weft plan show``: the settings, levels, critical path and Mermaid."""
    title = f"plan {spec.name!r}" if spec.name else "plan"
    count = len(spec.threads)
    lines = [
        f"{title}: {count} thread{'s' if count != 1 else ''}, policy {spec.policy}, "
        f"max_parallel {spec.max_parallel}",
        "",
        "levels:",
    ]
    for i, names in enumerate(levels(spec), start=1):
        lines.append(f"  {i}. {', '.join(names)}")
    path, weight = critical_path(spec)
    lines += ["", f"critical path: {' → '.join(path)} ({int(weight)} threads)", "", "mermaid:"]
    return "\n".join(lines) + "\n" + mermaid(spec)


# --- cycles ------------------------------------------------------------------------------------


def components(names: list[str], edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in names:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                out.append(component)
    return out


def cycle_through(start: str, component: list[str], edges: Mapping[str, list[str]]) -> list[str]:
    """The shortest path ``start → ... → start`` inside ``component``."""
    inside = set(component)
    previous: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following: list[str] = []
        for node in frontier:
            for child in edges[node]:
                if child not in inside:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start, start]  # not reached: a component of two or more holds a cycle


# --- reports -----------------------------------------------------------------------------------


class ThreadReport(BaseModel):
    """One thread's outcome so far."""

    model_config = ConfigDict(frozen=True)

    name: str
    thread_id: str
    graph_id: str | None
    """The workflow it runs (graph id, or assistant id when the spec names an assistant)."""
    state: PlanThreadState
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None
    duration: float | None
    """Seconds from the first attempt's start to the end (or to ``now`` while it runs)."""
    error: str | None
    reason: str | None
    output_summary: str | None
    """Compact JSON of the final state, cut to 200 characters."""
    run_id: str | None


class PlanReport(BaseModel):
    """A plan's outcome so far: per-thread results, counts and the success rate."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    status: PlanStatus
    policy: PlanPolicy
    started_at: datetime | None
    ended_at: datetime | None
    duration: float | None
    success_rate: float | None
    """Succeeded / threads not skipped by a condition; None when there are none."""
    counts: dict[str, int]
    """Thread state -> how many threads are in it (states present only)."""
    threads: list[ThreadReport]

    def to_api(self) -> dict[str, Any]:
        """The report as JSON data."""
        return self.model_dump(mode="json")


SUMMARY_CHARS = 200


def report(plan: Plan, threads: Sequence[PlanThread], *, now: datetime | None = None) -> PlanReport:
    """The report of ``plan`` and its thread rows. With ``now``, unfinished durations run to it."""
    specs = plan.spec.get("threads")
    specs = specs if isinstance(specs, Mapping) else {}
    rows: list[ThreadReport] = []
    counts: dict[str, int] = {}
    succeeded = counted = 0
    for row in sorted(threads, key=lambda t: t.position):
        spec = specs.get(row.name)
        graph = None
        if isinstance(spec, Mapping):
            graph = spec.get("graph_id") or spec.get("assistant_id")
        counts[row.state] = counts.get(row.state, 0) + 1
        by_condition = row.state == "skipped" and (row.reason or "").startswith("condition")
        if not by_condition:
            counted += 1
        if row.state == "succeeded":
            succeeded += 1
        final = row.state in PLAN_FINAL_STATES
        rows.append(
            ThreadReport(
                name=row.name,
                thread_id=row.thread_id,
                graph_id=graph if isinstance(graph, str) else None,
                state=row.state,
                attempts=row.attempts,
                started_at=row.started_at,
                ended_at=row.ended_at,
                duration=_duration(row.started_at, row.ended_at, None if final else now),
                error=row.error,
                reason=row.reason,
                output_summary=_summary(row.output),
                run_id=row.run_id,
            )
        )
    finished = plan.status in ("completed", "failed", "cancelled")
    policy = plan.spec.get("policy")
    return PlanReport(
        session_id=plan.session_id,
        status=plan.status,
        policy="best_effort" if policy == "best_effort" else "strict",
        started_at=plan.started_at,
        ended_at=plan.ended_at,
        duration=_duration(plan.started_at, plan.ended_at, None if finished else now),
        success_rate=succeeded / counted if counted else None,
        counts=counts,
        threads=rows,
    )


def _duration(start: datetime | None, end: datetime | None, now: datetime | None) -> float | None:
    end = end or now
    if start is None or end is None:
        return None
    return max((end - start).total_seconds(), 0.0)


def _summary(output: Any) -> str | None:
    if output is None:
        return None
    text = json.dumps(
        json_view(output), separators=(",", ":"), ensure_ascii=False, sort_keys=False, default=str
    )
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


__all__ = [
    "PlanReport",
    "ThreadReport",
    "components",
    "critical_path",
    "cycle_through",
    "describe",
    "levels",
    "mermaid",
    "report",
    "topological_order",
]
