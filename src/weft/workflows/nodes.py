"""Node functions for each workflow node kind, and the routing functions of edges.

``llm`` and ``tools`` nodes come from :mod:`weft.workflows.tools` and
:mod:`weft.workflows.models`, imported only when such a node is built.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jmespath.exceptions import JMESPathError
from langgraph.graph import END, StateGraph
from langgraph.types import interrupt

from weft.errors import WeftError
from weft.refs import Ref, RefError, load_ref, parse_ref, resolve_path
from weft.workflows.expressions import Expression, route_key
from weft.workflows.loading import WorkflowError
from weft.workflows.spec import (
    END_NAMES,
    HumanNode,
    LlmNode,
    SubgraphNode,
    ToolsNode,
)

Router = Callable[[Any], Any]


def import_function(
    ref: str,
    *,
    where: str,
    base_dir: Path | None = None,
    modules: dict[str, Any] | None = None,
) -> Callable[..., Any]:
    """The callable ``ref`` names: ``package.module:function`` or ``path/file.py:function``.

    A relative file path is taken against ``base_dir`` (default: the current directory).
    ``modules`` caches the files loaded so far (one module object per file). Errors are
    WorkflowError prefixed with ``where`` and naming the file or module and the error.
    """
    try:
        parsed = parse_ref(ref)
    except RefError:
        raise WorkflowError(
            f"{where}: must be 'package.module:function' or 'path/file.py:function' (got {ref!r})"
        ) from None
    shown = str(resolve_path(parsed.module, base_dir)) if parsed.is_file else parsed.module
    try:
        target = load_ref(parsed, base_dir=base_dir, modules=modules, prefix="weft_workflow")
    except RefError as e:
        if isinstance(e.cause, SystemExit):  # code that exits on import still exits
            raise e.cause from None
        raise WorkflowError(f"{where}: {_import_problem(parsed, shown, e)}") from e.cause
    if not callable(target):
        raise WorkflowError(f"{where}: {shown}:{parsed.attr} is not callable")
    return target  # type: ignore[no-any-return]


def _import_problem(ref: Ref, shown: str, e: RefError) -> str:
    if e.kind == "file_missing":
        return f"file not found: {shown}"
    if e.cause is None:  # a missing attribute, or a file that is not Python
        return str(e)
    cause = f"{type(e.cause).__name__}: {e.cause}"
    if ref.is_file:
        return f"cannot import {shown}: {cause}"
    return f"cannot import module {ref.module!r}: {cause}"


# --- routing -------------------------------------------------------------------------------


def expression_router(expression: Expression, where: str) -> Router:
    """A function of the state that evaluates ``expression`` (errors name ``where``)."""

    def select(state: Any) -> Any:
        try:
            return expression.search(state)
        except JMESPathError as e:
            raise WorkflowError(f"{where}: evaluating {expression.source!r} failed: {e}") from e

    return select


def routing_function(
    select: Callable[[Any], Any],
    *,
    path_map: Mapping[str, str] | None,
    nodes: Sequence[str],
    where: str,
    name: str,
) -> tuple[Callable[[Any], Any], dict[Any, str] | list[str]]:
    """The ``path`` and ``path_map`` arguments of ``add_conditional_edges``.

    ``select(state)`` gives a result; :func:`route_key` turns it into a key of ``path_map``.
    Without a ``path_map`` the key must be a node name or END. An async ``select`` gives an
    async path function.
    """
    if path_map is not None:
        langgraph_map: dict[Any, str] | list[str] = {
            key: END if target in END_NAMES else target for key, target in path_map.items()
        }
    else:
        langgraph_map = [*nodes, END]

    def choose(result: Any) -> str:
        try:
            key = route_key(result)
        except ValueError as e:
            raise WorkflowError(f"{where}: the result {result!r} selects no path: {e}") from e
        if path_map is not None:
            if key not in path_map:
                raise WorkflowError(
                    f"{where}: the result {result!r} is not a key of path_map "
                    f"(keys: {', '.join(path_map)})"
                )
            return key
        if key in END_NAMES:
            return END
        if key not in nodes:
            raise WorkflowError(
                f"{where}: the result {result!r} is not a node (nodes: {', '.join(nodes)}, END)"
            )
        return key

    path: Callable[[Any], Any]
    if inspect.iscoroutinefunction(select):
        async_select: Callable[[Any], Awaitable[Any]] = select

        async def async_path(state: Any) -> str:
            return choose(await async_select(state))

        path = async_path
    else:

        def sync_path(state: Any) -> str:
            return choose(select(state))

        path = sync_path
    path.__name__ = name
    path.__qualname__ = name
    return path, langgraph_map


def pass_through(state: Any) -> None:
    """The node of a ``router``: it writes nothing; its conditional edges do the routing."""
    return None


# --- node kinds ----------------------------------------------------------------------------


def human_node(name: str, node: HumanNode) -> Callable[[Any], dict[str, Any]]:
    """Interrupts with ``{"prompt": <rendered>, "node": name}``; writes the resume value."""

    def human(state: Any) -> dict[str, Any]:
        values = state if isinstance(state, Mapping) else {}
        value = interrupt({"prompt": node.prompt.render(values), "node": name})
        return {node.output: value}

    human.__name__ = human.__qualname__ = name
    return human


def subgraph_node(
    node: SubgraphNode, resolve_graph: Callable[[str], Any] | None, where: str
) -> Any:
    """The graph ``resolve_graph(node.graph)`` returns, compiled when it is a builder."""
    if resolve_graph is None:
        raise WorkflowError(
            f"{where}: a subgraph node needs a graph resolver (none was given to compile_workflow)"
        )
    try:
        graph = resolve_graph(node.graph)
    except WeftError as e:
        raise WorkflowError(f"{where}: {e.message}") from e
    if inspect.isawaitable(graph):
        if inspect.iscoroutine(graph):
            graph.close()
        raise WorkflowError(f"{where}: the graph resolver must return a graph, not an awaitable")
    if isinstance(graph, StateGraph):
        return graph.compile()
    if graph is None:
        raise WorkflowError(f"{where}: unknown graph {node.graph!r}")
    return graph


def llm_node(node: LlmNode, where: Callable[[str], str]) -> Any:
    """The ``llm`` node built by weft.workflows.tools.make_llm_node."""
    from weft.workflows.models import resolve_model
    from weft.workflows.tools import make_llm_node, resolve_tools

    try:
        model = resolve_model(node.model)
    except WeftError as e:
        raise WorkflowError(f"{where('model')}: {e.message}") from e
    try:
        tools = resolve_tools(node.tools)
        return make_llm_node(
            model,
            system=node.system.source if node.system is not None else None,
            tools=tools,
            structured_output=node.structured_output,
            input_key=node.input,
            output_key=node.output,
        )
    except WeftError as e:
        raise WorkflowError(f"{where('tools')}: {e.message}") from e


def tools_node(node: ToolsNode, where: Callable[[str], str]) -> Any:
    """The ``tools`` node built by weft.workflows.tools.make_tools_node."""
    from weft.workflows.tools import make_tools_node, resolve_tools

    try:
        return make_tools_node(resolve_tools(node.tools), messages_key=node.messages)
    except WeftError as e:
        raise WorkflowError(f"{where('tools')}: {e.message}") from e


__all__ = [
    "expression_router",
    "human_node",
    "import_function",
    "llm_node",
    "pass_through",
    "routing_function",
    "subgraph_node",
    "tools_node",
]
