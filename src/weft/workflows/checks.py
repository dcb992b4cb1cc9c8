"""The graph checks of a workflow: references to nodes and state, reachability, a path to END."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from weft.workflows.expressions import Template
from weft.workflows.spec import (
    END_NAMES,
    ConditionalEdge,
    Edge,
    HumanNode,
    LlmNode,
    RouterNode,
    SubgraphNode,
    ToolsNode,
    WorkflowSpec,
)
from weft.yamldoc import KeyPath


@dataclass
class _Graph:
    """The cross-references and paths of a workflow (parts may be missing when invalid)."""

    names: list[str]
    nodes: Mapping[str, Any]
    edges: list[tuple[int, Edge | ConditionalEdge]]
    state: list[str]
    entry: str | None
    interrupts: Mapping[str, Any]
    known_graphs: Collection[str] | None

    @classmethod
    def of(cls, spec: WorkflowSpec, known_graphs: Collection[str] | None = None) -> _Graph:
        return cls(
            names=list(spec.nodes),
            nodes=spec.nodes,
            edges=list(enumerate(spec.edges)),
            state=list(spec.state),
            entry=spec.entry,
            interrupts={
                "interrupt_before": spec.interrupt_before,
                "interrupt_after": spec.interrupt_after,
            },
            known_graphs=known_graphs,
        )

    def problems(self, *, check_paths: bool) -> list[tuple[KeyPath, str]]:
        out: list[tuple[KeyPath, str]] = []
        names = set(self.names)

        def node_ref(path: KeyPath, name: Any, *, end_ok: bool) -> None:
            if name in names or (end_ok and name in END_NAMES):
                return
            out.append((path, self._unknown_node(name, end_ok=end_ok)))

        if self.entry is not None and self.names:
            node_ref(("entry",), self.entry, end_ok=False)
        for key, items in self.interrupts.items():
            for index, name in enumerate(items):
                node_ref((key, index), name, end_ok=False)
        for index, edge in self.edges:
            path: KeyPath = ("edges", index)
            if edge.source in END_NAMES:
                out.append(((*path, "from"), "END has no outgoing edges"))
            elif edge.source not in names:
                node_ref((*path, "from"), edge.source, end_ok=False)
            elif isinstance(self.nodes.get(edge.source), RouterNode):
                out.append(
                    (
                        (*path, "from"),
                        f"{edge.source!r} is a router: it chooses the next node itself; "
                        f"list its targets in nodes.{edge.source}.path_map instead",
                    )
                )
            if isinstance(edge, Edge):
                node_ref((*path, "to"), edge.to, end_ok=True)
            else:
                for result, target in edge.path_map.items():
                    node_ref((*path, "path_map", result), target, end_ok=True)
        for name, node in self.nodes.items():
            out.extend(self._node_problems(name, node))
        if check_paths and not out and self.entry is not None:
            out.extend(self._path_problems())
        return out

    def _unknown_node(self, name: Any, *, end_ok: bool) -> str:
        close = difflib.get_close_matches(str(name), self.names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(self.names) + (", END" if end_ok else "")
        return f"unknown node {name!r}{hint} (nodes: {known})"

    def _state_ref(self, path: KeyPath, key: str) -> list[tuple[KeyPath, str]]:
        if key in self.state:
            return []
        close = difflib.get_close_matches(key, self.state, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        known = ", ".join(self.state) or "none"
        return [(path, f"unknown state field {key!r}{hint} (state fields: {known})")]

    def _template_refs(self, path: KeyPath, template: Template) -> list[tuple[KeyPath, str]]:
        out = []
        for name in template.fields:
            if name not in self.state:
                known = ", ".join(self.state) or "none"
                out.append(
                    (
                        path,
                        f"the template reads {name!r}, which is not a state field "
                        f"(state fields: {known})",
                    )
                )
        return out

    def _node_problems(self, name: str, node: Any) -> list[tuple[KeyPath, str]]:
        path: KeyPath = ("nodes", name)
        out: list[tuple[KeyPath, str]] = []
        if isinstance(node, LlmNode):
            out += self._state_ref((*path, "input"), node.input)
            out += self._state_ref((*path, "output"), node.output)
            if node.system is not None:
                out += self._template_refs((*path, "system"), node.system)
        elif isinstance(node, ToolsNode):
            out += self._state_ref((*path, "messages"), node.messages)
        elif isinstance(node, HumanNode):
            out += self._state_ref((*path, "output"), node.output)
            out += self._template_refs((*path, "prompt"), node.prompt)
        elif isinstance(node, RouterNode) and node.path_map is not None:
            names = set(self.names)
            for result, target in node.path_map.items():
                if target not in names and target not in END_NAMES:
                    out.append(
                        ((*path, "path_map", result), self._unknown_node(target, end_ok=True))
                    )
        elif (
            isinstance(node, SubgraphNode)
            and self.known_graphs is not None
            and node.graph not in self.known_graphs
        ):
            known = ", ".join(sorted(self.known_graphs)) or "none"
            out.append(((*path, "graph"), f"unknown graph {node.graph!r} (graphs: {known})"))
        return out

    def successors(self) -> dict[str, set[str]]:
        """Node -> the nodes (and "END") it can go to; no outgoing edge means END."""
        succ: dict[str, set[str]] = {name: set() for name in self.names}
        for _, edge in self.edges:
            targets = [edge.to] if isinstance(edge, Edge) else list(edge.path_map.values())
            succ[edge.source].update("END" if t in END_NAMES else t for t in targets)
        for name, node in self.nodes.items():
            if isinstance(node, RouterNode):
                if node.path_map is None:
                    succ[name] = {*self.names, "END"}
                else:
                    succ[name] = {"END" if t in END_NAMES else t for t in node.path_map.values()}
        for following in succ.values():
            if not following:
                following.add("END")
        return succ

    def _path_problems(self) -> list[tuple[KeyPath, str]]:
        assert self.entry is not None
        succ = self.successors()
        reachable = _closure([self.entry], lambda n: succ.get(n, ()))
        out: list[tuple[KeyPath, str]] = []
        for name in self.names:
            if name not in reachable:
                out.append(
                    (
                        ("nodes", name),
                        f"unreachable: no path leads here from the entry {self.entry!r}",
                    )
                )
        preds: dict[str, set[str]] = {}
        for name, targets in succ.items():
            for target in targets:
                preds.setdefault(target, set()).add(name)
        reaches_end = _closure(["END"], lambda n: preds.get(n, ()))
        stuck = [n for n in self.names if n in reachable and n not in reaches_end]
        if stuck:
            first = "the entry " if self.entry in stuck else ""
            out.append(
                (
                    ("nodes", stuck[0]),
                    f"no path to END from {first}{', '.join(stuck)}: every route from "
                    f"{'it' if len(stuck) == 1 else 'them'} loops without an edge to END",
                )
            )
        return out


def _closure(start: Iterable[str], step: Any) -> set[str]:
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(step(name))
    return seen


def graph_problems(spec: WorkflowSpec, known_graphs: Collection[str] | None = None) -> list[str]:
    """The cross-reference and path problems of an already built spec (as text)."""
    return [
        f"{spec.where(path)}: {message}"
        for path, message in _Graph.of(spec, known_graphs).problems(check_paths=True)
    ]


__all__ = ["graph_problems"]
