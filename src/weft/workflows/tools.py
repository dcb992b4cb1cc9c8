"""Tools for workflow ``tools`` nodes, and the builders of the ``llm`` and ``tools`` nodes.

A tool is named by a reference: a builtin name (``calculator``, ``current_time``, ``note``)
or ``package.module:function``. A plain function becomes a LangChain tool whose argument
schema comes from its signature and whose description comes from its docstring; a
``BaseTool`` object is used as it is.

The ``note`` tool keeps key-value notes in the graph state's ``notes`` field, so a workflow
that uses it must declare that field with a merge reducer::

    state:
      notes: {type: dict, reducer: merge}
"""

from __future__ import annotations

import ast
import inspect
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool
from langgraph.prebuilt import InjectedState, ToolNode
from langgraph.types import Command

from weft.errors import WeftError
from weft.refs import RefError, get_attr, import_module, parse_ref


class ToolError(WeftError):
    """A tool reference cannot be turned into a tool."""

    status_code = 400


# --- calculator ---------------------------------------------------------------------------

MAX_EXPRESSION_LENGTH = 500
MAX_DIGITS = 300
"""Results (and intermediate values) may not exceed 10**MAX_DIGITS in magnitude."""

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "cos": math.cos,
    "exp": math.exp,
    "log": math.log,
    "max": max,
    "min": min,
    "round": round,
    "sin": math.sin,
    "sqrt": math.sqrt,
    "tan": math.tan,
}
_CONSTANTS: dict[str, float] = {"e": math.e, "pi": math.pi}
_LIMIT = 10**MAX_DIGITS


def _number(value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"the result {value!r} is not a real number")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("the result is not a number (nan)")
    if abs(value) > _LIMIT:
        raise ValueError(f"the result is too large (more than {MAX_DIGITS} digits)")
    return value


def _power(base: int | float, exponent: int | float) -> int | float:
    if base not in (0, 1, -1) and exponent * math.log10(abs(base)) > MAX_DIGITS:
        raise ValueError(
            f"the exponent is too large: {base} ** {exponent} would have more than "
            f"{MAX_DIGITS} digits"
        )
    result: int | float = base**exponent
    return result


def _evaluate(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise ValueError(f"{ast.unparse(node)} is not a number")
        return _number(node.value)
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ValueError(f"unknown name {node.id!r}; constants: {', '.join(_CONSTANTS)}")
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow):
            return _number(_power(left, right))
        return _number(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _number(_UNARY[type(node.op)](_evaluate(node.operand)))
    if isinstance(node, ast.Call):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name not in _FUNCTIONS:
            shown = ast.unparse(node.func)
            raise ValueError(
                f"unknown function {shown!r}; functions: {', '.join(sorted(_FUNCTIONS))}"
            )
        if node.keywords:
            raise ValueError(f"{name}() takes positional arguments only")
        args = [_evaluate(arg) for arg in node.args]
        try:
            return _number(_FUNCTIONS[name](*args))
        except TypeError as exc:
            raise ValueError(f"wrong arguments to {name}(): {exc}") from exc
        except ValueError as exc:
            if "not a real number" in str(exc) or "too large" in str(exc):
                raise
            raise ValueError(f"{name}() of these arguments is undefined ({exc})") from exc
    raise ValueError(
        f"{ast.unparse(node)!r} is not allowed; use numbers, + - * / // % **, parentheses, "
        f"the functions {', '.join(sorted(_FUNCTIONS))} and the constants pi, e"
    )


def _format(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.15g}"


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result.

    Supports numbers, + - * / // % ** (power), unary minus, parentheses, the functions
    sqrt, sin, cos, tan, log, exp, abs, round, min, max and the constants pi and e.
    Example: "2 + 3 * 4" returns "14".

    Args:
        expression: The arithmetic expression, for example "sqrt(2) * (3 + 4) ** 2".
    """
    text = expression.strip()
    if not text:
        raise ValueError("the expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ValueError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ValueError(f"cannot parse {text!r}: {exc.msg}") from exc
    try:
        return _format(_evaluate(tree))
    except ZeroDivisionError as exc:
        raise ValueError(f"cannot evaluate {text!r}: division by zero") from exc
    except OverflowError as exc:
        raise ValueError(f"cannot evaluate {text!r}: the result is too large") from exc
    except RecursionError as exc:
        raise ValueError(f"cannot evaluate {text!r}: it is nested too deeply") from exc
    except ValueError as exc:
        raise ValueError(f"cannot evaluate {text!r}: {exc}") from exc


# --- current_time -------------------------------------------------------------------------


def current_time(timezone: str = "UTC") -> str:
    """Return the current date and time in ISO 8601 format.

    Args:
        timezone: An IANA time zone name such as "UTC", "Europe/Paris" or "America/New_York".
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        if timezone.upper() == "UTC":
            return datetime.now(UTC).isoformat(timespec="seconds")
        raise ValueError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'UTC', "
            f"'Europe/Paris' or 'America/New_York'"
        ) from exc
    return datetime.now(zone).isoformat(timespec="seconds")


# --- note ---------------------------------------------------------------------------------

NOTE_DESCRIPTION = (
    "Keep short key-value notes for later steps of this conversation. "
    "action='set' stores value under key, action='get' returns the note stored under key, "
    "action='list' returns every note."
)


def _notes_of(state: Any) -> Mapping[str, Any]:
    notes = state.get("notes") if isinstance(state, Mapping) else getattr(state, "notes", None)
    return notes if isinstance(notes, Mapping) else {}


def _make_note_tool(messages_key: str = "messages") -> BaseTool:
    """The note tool; its ``set`` action writes its ToolMessage under ``messages_key``."""

    def note(
        action: Literal["set", "get", "list"],
        state: Annotated[Any, InjectedState],
        tool_call_id: Annotated[str, InjectedToolCallId],
        key: str | None = None,
        value: str | None = None,
    ) -> Any:
        notes = _notes_of(state)
        if action == "list":
            if not notes:
                return "No notes yet."
            return "\n".join(f"{k}: {v}" for k, v in sorted(notes.items()))
        if not key:
            raise ValueError(f"action {action!r} needs a key")
        if action == "get":
            if key not in notes:
                known = ", ".join(sorted(notes)) or "none"
                return f"No note named {key!r}. Notes: {known}."
            return str(notes[key])
        if action == "set":
            if value is None:
                raise ValueError("action 'set' needs a value")
            message = ToolMessage(f"Saved note {key!r}.", tool_call_id=tool_call_id)
            return Command(update={"notes": {key: value}, messages_key: [message]})
        raise ValueError(f"unknown action {action!r}; actions: set, get, list")

    return StructuredTool.from_function(note, name="note", description=NOTE_DESCRIPTION)


BUILTIN_TOOLS: dict[str, BaseTool] = {
    "calculator": StructuredTool.from_function(calculator, parse_docstring=True),
    "current_time": StructuredTool.from_function(current_time, parse_docstring=True),
    "note": _make_note_tool(),
}
"""The builtin tools by name. ``note`` needs ``notes: {type: dict, reducer: merge}``."""


# --- tool references ----------------------------------------------------------------------

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _builtins() -> str:
    return ", ".join(sorted(BUILTIN_TOOLS))


def resolve_tool(ref: str) -> BaseTool:
    """The tool named by ``ref``: a builtin name or ``package.module:function``."""
    if not isinstance(ref, str):
        raise ToolError(f"a tool reference must be a string, not {type(ref).__name__}")
    if ref in BUILTIN_TOOLS:
        return BUILTIN_TOOLS[ref]
    if ":" not in ref:
        raise ToolError(
            f"unknown builtin tool {ref!r}; builtin tools: {_builtins()}, or give "
            f"'package.module:function'"
        )
    try:
        parsed = parse_ref(ref)
    except RefError:
        parsed = None
    if parsed is None or not _DOTTED.match(parsed.module) or not _DOTTED.match(parsed.attr):
        raise ToolError(
            f"malformed tool reference {ref!r}; expected 'package.module:function', "
            f"for example 'my_tools.search:web_search', or a builtin: {_builtins()}"
        )
    module_name, attribute = parsed.module, parsed.attr
    try:
        obj = get_attr(import_module(module_name), attribute, where=f"module {module_name!r}")
    except RefError as e:
        exc = e.cause
        if e.kind == "attribute_missing" or exc is None:
            raise ToolError(f"tool {ref!r}: {e}") from None
        if not isinstance(exc, Exception):  # code that exits on import still exits
            raise exc from None
        if isinstance(exc, ImportError):
            raise ToolError(f"tool {ref!r}: cannot import module {module_name!r}: {exc}") from exc
        raise ToolError(
            f"tool {ref!r}: importing module {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if isinstance(obj, BaseTool):
        return obj
    if inspect.isclass(obj) or not callable(obj):
        raise ToolError(
            f"tool {ref!r}: {attribute!r} is a {type(obj).__name__}, not a function or a "
            f"langchain BaseTool"
        )
    if not inspect.getdoc(obj):
        raise ToolError(
            f"tool {ref!r}: function {attribute!r} has no docstring; the docstring is the "
            f"description the model sees, so write one"
        )
    try:
        if inspect.iscoroutinefunction(obj):
            return StructuredTool.from_function(coroutine=obj)
        return StructuredTool.from_function(obj)
    except Exception as exc:
        raise ToolError(
            f"tool {ref!r}: cannot build a tool from {attribute!r}: {type(exc).__name__}: {exc}"
        ) from exc


def resolve_tools(refs: Sequence[str]) -> list[BaseTool]:
    """The tools named by ``refs``; ToolError names the first bad reference."""
    tools: list[BaseTool] = []
    seen: dict[str, str] = {}
    for ref in refs:
        tool = resolve_tool(ref)
        if tool.name in seen:
            raise ToolError(
                f"tools {seen[tool.name]!r} and {ref!r} have the same name {tool.name!r}; "
                f"the model could not tell them apart"
            )
        seen[tool.name] = ref
        tools.append(tool)
    return tools


# --- node builders ------------------------------------------------------------------------


class _Blank(dict[str, Any]):
    """State for template rendering: a field that is not set yet renders as ''."""

    def __missing__(self, key: str) -> str:
        return ""


def _state_dict(state: Any) -> dict[str, Any]:
    if isinstance(state, Mapping):
        return dict(state)
    if hasattr(state, "model_dump"):
        return {name: getattr(state, name) for name in type(state).model_fields}
    return dict(vars(state))


def _structured_schema(schema: dict[str, Any]) -> dict[str, Any]:
    # Tool-calling providers need a title and a description on a JSON schema.
    full = {"type": "object", "title": "output", "description": "The structured result."}
    full.update(schema)
    return full


def make_llm_node(
    model: BaseChatModel,
    *,
    system: str | None,
    tools: Sequence[BaseTool],
    structured_output: dict[str, Any] | None,
    input_key: str = "messages",
    output_key: str = "messages",
) -> Callable[..., Any]:
    """An async LangGraph node that calls ``model`` on ``state[input_key]``.

    ``system`` is rendered with ``str.format`` over the state and sent first as a system
    message. With ``tools`` the model is bound to them; the reply (an AIMessage) is written
    as ``{output_key: [reply]}``. With ``structured_output`` (a JSON schema) the parsed dict
    is written as ``{output_key: dict}`` instead.
    """
    if tools and structured_output is not None:
        raise ToolError("an llm node cannot have both tools and structured_output")
    if structured_output is not None:
        runnable: Any = model.with_structured_output(_structured_schema(structured_output))
    elif tools:
        runnable = model.bind_tools(list(tools))
    else:
        runnable = model

    async def llm_node(state: Any, config: RunnableConfig) -> dict[str, Any]:
        values = _state_dict(state)
        history = values.get(input_key) or []
        if isinstance(history, BaseMessage | str | dict):
            history = [history]
        messages: list[Any] = list(history)
        if system:
            messages.insert(0, SystemMessage(system.format_map(_Blank(values))))
        result = await runnable.ainvoke(messages, config)
        if structured_output is not None:
            if isinstance(result, AIMessage):  # pragma: no cover - defensive
                raise ValueError("the model did not return structured output")
            if hasattr(result, "model_dump"):
                result = result.model_dump()
            return {output_key: result}
        return {output_key: [result]}

    return llm_node


def make_tools_node(tools: Sequence[BaseTool], *, messages_key: str = "messages") -> Any:
    """A LangGraph ``ToolNode`` over ``tools``; a failing tool becomes an error ToolMessage."""
    builtin_note = BUILTIN_TOOLS["note"]
    node_tools = [
        _make_note_tool(messages_key)
        if tool is builtin_note and messages_key != "messages"
        else tool
        for tool in tools
    ]
    return ToolNode(node_tools, messages_key=messages_key, handle_tool_errors=True)


__all__ = [
    "BUILTIN_TOOLS",
    "ToolError",
    "calculator",
    "current_time",
    "make_llm_node",
    "make_tools_node",
    "resolve_tool",
    "resolve_tools",
]
