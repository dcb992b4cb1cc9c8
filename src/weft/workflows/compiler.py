"""Turn a :class:`WorkflowSpec` into a LangGraph ``StateGraph`` (not yet compiled).

The state schema is a TypedDict with one key per ``state`` field, annotated with its
reducer: ``append`` (list concatenation; a single value is appended), ``add``
(``operator.add``), ``merge`` (dict update), ``messages`` (``add_messages``) or none for
``replace``. A field with a ``default`` holds that value until something writes it (a write
through a reducer combines with it: ``add`` with default 10 and a write of 5 gives 15).

``interrupt_before``/``interrupt_after``, ``max_iterations`` and ``timeout`` stay on the
spec: the caller passes them to ``.compile()`` and to the run's config.
"""

from __future__ import annotations

import copy
import operator
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, cast

from langchain_core.messages import AnyMessage, convert_to_messages
from langgraph.channels import BinaryOperatorAggregate, LastValue
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from weft.workflows import nodes as kinds
from weft.workflows.checks import graph_problems
from weft.workflows.loading import WorkflowError
from weft.workflows.spec import (
    END_NAMES,
    ConditionalEdge,
    Edge,
    HumanNode,
    LlmNode,
    PythonNode,
    RouterNode,
    StateField,
    SubgraphNode,
    ToolsNode,
    WorkflowSpec,
)

Builder = StateGraph[Any, Any, Any, Any]

_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list[Any],
    "dict": dict[str, Any],
    "messages": list[AnyMessage],
    "any": Any,
}


def append_reducer(left: Any, right: Any) -> list[Any]:
    """``left + right`` for a list ``right``, else ``left + [right]``."""
    items = list(left) if isinstance(left, list | tuple) else ([] if left is None else [left])
    if isinstance(right, list | tuple):
        return items + list(right)
    return [*items, right]


def merge_reducer(left: Any, right: Any) -> dict[str, Any]:
    """``{**left, **right}``."""
    merged = dict(left) if isinstance(left, Mapping) else {}
    if right is None:
        return merged
    if not isinstance(right, Mapping):
        raise ValueError(f"a merge field takes a mapping, not {type(right).__name__}")
    merged.update(right)
    return merged


REDUCER_FUNCTIONS: dict[str, Callable[[Any, Any], Any]] = {
    "append": append_reducer,
    "add": operator.add,
    "merge": merge_reducer,
    "messages": add_messages,
}


class _DefaultLastValue(LastValue[Any]):
    """A ``replace`` field that holds ``default`` until it is written."""

    __slots__ = ("default",)

    def __init__(self, typ: Any, key: str = "", default: Any = None) -> None:
        super().__init__(typ, key)
        self.default = default
        self.value = copy.deepcopy(default)

    def copy(self) -> _DefaultLastValue:
        new = type(self)(self.typ, self.key, self.default)
        new.value = self.value
        return new

    def from_checkpoint(self, checkpoint: Any) -> _DefaultLastValue:
        restored: LastValue[Any] = LastValue(self.typ, self.key).from_checkpoint(checkpoint)
        new = type(self)(self.typ, self.key, self.default)
        if restored.is_available():
            new.value = restored.value
        return new


class _DefaultAggregate(BinaryOperatorAggregate[Any]):
    """A field with a reducer that starts from ``default``."""

    __slots__ = ("default",)

    def __init__(self, typ: Any, operator: Callable[[Any, Any], Any], default: Any = None):
        super().__init__(typ, operator)
        self.default = default
        self.value = copy.deepcopy(default)

    def copy(self) -> _DefaultAggregate:
        new = type(self)(self.typ, self.operator, self.default)
        new.key = self.key
        new.value = self.value
        return new

    def from_checkpoint(self, checkpoint: Any) -> _DefaultAggregate:
        restored: BinaryOperatorAggregate[Any] = BinaryOperatorAggregate(
            self.typ, self.operator
        ).from_checkpoint(checkpoint)
        new = type(self)(self.typ, self.operator, self.default)
        new.key = self.key
        if restored.is_available():
            new.value = restored.value
        return new


def _annotation(field: StateField) -> Any:
    typ = _TYPES[field.type]
    reducer = REDUCER_FUNCTIONS.get(field.reducer)
    if not field.has_default:
        return typ if reducer is None else Annotated[typ, reducer]
    default = field.default
    if field.reducer == "messages" and isinstance(default, list):
        default = convert_to_messages(default)
    optional = cast(Any, typ) | None
    channel: Any = (
        _DefaultLastValue(optional, "", default)
        if reducer is None
        else _DefaultAggregate(optional, reducer, default)
    )
    return Annotated[optional, channel]


def state_schema(spec: WorkflowSpec) -> type[Any]:
    """A TypedDict (total=False) with one annotated key per state field."""
    name = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", spec.name) if p)
    fields = {key: _annotation(field) for key, field in spec.state.items()}
    make = cast(Any, TypedDict)
    return cast(type[Any], make(f"{name or 'Workflow'}State", fields, total=False))


def compile_workflow(
    spec: WorkflowSpec, *, resolve_graph: Callable[[str], Any] | None = None
) -> Builder:
    """A ``StateGraph`` for ``spec``; call ``.compile(checkpointer=...)`` on it.

    ``resolve_graph(graph_id)`` returns the graph of a ``subgraph`` node (a compiled graph,
    or a StateGraph, which is compiled). Raises WorkflowError naming the file, line and node
    (for instance when a Python function cannot be imported).
    """
    problems = graph_problems(spec)
    if problems:
        raise WorkflowError("\n".join(problems), problems)
    builder: Builder = StateGraph(state_schema(spec))
    base_dir = spec.path.parent if spec.path is not None else None
    modules: dict[str, Any] = {}
    names = list(spec.nodes)
    has_edges: set[str] = set()

    for name, node in spec.nodes.items():

        def where(key: str, _name: str = name) -> str:
            return spec.where(("nodes", _name, key))

        action: Any
        if isinstance(node, LlmNode):
            action = kinds.llm_node(node, where)
        elif isinstance(node, ToolsNode):
            action = kinds.tools_node(node, where)
        elif isinstance(node, HumanNode):
            action = kinds.human_node(name, node)
        elif isinstance(node, PythonNode):
            action = kinds.import_function(
                node.function, where=where("function"), base_dir=base_dir, modules=modules
            )
        elif isinstance(node, SubgraphNode):
            action = kinds.subgraph_node(node, resolve_graph, where("graph"))
        elif isinstance(node, RouterNode):
            action = kinds.pass_through
            if node.expression is not None:
                select = kinds.expression_router(node.expression, where("expression"))
                at = where("expression")
            else:
                assert node.function is not None
                select = kinds.import_function(
                    node.function, where=where("function"), base_dir=base_dir, modules=modules
                )
                at = where("function")
            path, path_map = kinds.routing_function(
                select, path_map=node.path_map, nodes=names, where=at, name="route"
            )
            has_edges.add(name)
        else:  # pragma: no cover - the spec's union is closed
            raise WorkflowError(f"{spec.where(('nodes', name))}: unknown node kind")
        builder.add_node(name, action)
        if isinstance(node, RouterNode):
            builder.add_conditional_edges(name, path, path_map)

    builder.add_edge(START, spec.entry)
    for index, edge in enumerate(spec.edges):
        has_edges.add(edge.source)
        if isinstance(edge, Edge):
            builder.add_edge(edge.source, END if edge.to in END_NAMES else edge.to)
        else:
            assert isinstance(edge, ConditionalEdge)
            at = spec.where(("edges", index, "condition"))
            path, path_map = kinds.routing_function(
                kinds.expression_router(edge.condition, at),
                path_map=edge.path_map,
                nodes=names,
                where=at,
                name=f"condition_{index}",
            )
            builder.add_conditional_edges(edge.source, path, path_map)
    for name in names:
        if name not in has_edges:
            builder.add_edge(name, END)
    return builder


__all__ = [
    "REDUCER_FUNCTIONS",
    "append_reducer",
    "compile_workflow",
    "merge_reducer",
    "state_schema",
]
