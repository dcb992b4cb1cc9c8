"""Node functions for each workflow node kind, and the routing functions of edges.

``llm`` and ``tools`` nodes come from :mod:`weft.workflows.tools` and
:mod:`weft.workflows.models`, imported only when such a node is built.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jmespath.exceptions import JMESPathError
from langgraph.graph import END, StateGraph
from langgraph.types import interrupt

from weft.errors import WeftError
from weft.workflows.expressions import Expression, route_key
from weft.workflows.loading import WorkflowError
from weft.workflows.spec import (
    END_NAMES,
    HumanNode,
    LlmNode,
    SubgraphNode,
    ToolsNode,
    is_file_ref,
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
    module_name, _, attr = ref.rpartition(":")
    if not module_name or not attr:
        raise WorkflowError(
            f"{where}: must be 'package.module:function' or 'path/file.py:function' (got {ref!r})"
        )
    if is_file_ref(ref):
        path = Path(module_name)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        module = _load_file(path, where, modules if modules is not None else {})
        shown = str(path)
    else:
        shown = module_name
        try:
            module = importlib.import_module(module_name)
        except Exception as e:
            raise WorkflowError(
                f"{where}: cannot import module {module_name!r}: {type(e).__name__}: {e}"
            ) from e
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise WorkflowError(f"{where}: {shown} has no attribute {attr!r}") from None
    if not callable(target):
        raise WorkflowError(f"{where}: {shown}:{attr} is not callable")
    return target  # type: ignore[no-any-return]


def _load_file(path: Path, where: str, modules: dict[str, Any]) -> Any:
    key = str(path.resolve()) if path.exists() else str(path)
    if key in modules:
        return modules[key]
    if not path.is_file():
        raise WorkflowError(f"{where}: file not found: {path}")
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:12]
    name = f"weft_workflow_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise WorkflowError(f"{where}: cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:
        sys.modules.pop(name, None)
        raise WorkflowError(f"{where}: cannot import {path}: {type(e).__name__}: {e}") from e
    modules[key] = module
    return module


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
