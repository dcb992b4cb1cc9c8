"""The YAML workflow format: its models (state fields, node kinds, edges, the workflow).

A workflow file::

    name: support                 # default: the file name without .yaml
    description: Answers questions, asks a human when unsure.
    version: "1.2"
    extends: base.yaml            # optional; relative to this file
    state:
      messages: {type: messages}              # reducer messages (add_messages)
      attempts: {type: int, reducer: add, default: 0}
      answer: {type: str}                     # reducer replace
      topic: {type: str, default: billing}
    nodes:
      think: {kind: llm, model: "fake:echo", system: "You help with {topic}."}
      check: {kind: router, expression: "attempts > `2`", path_map: {"true": ask, "false": END}}
      ask: {kind: human, prompt: "Is this right? {answer}", output: answer}
    edges:
      - {from: think, to: check}
      - {from: ask, condition: "answer == 'yes'", path_map: {"true": END, "false": think}}
    entry: think                  # default: the first node
    interrupt_before: []
    max_iterations: 25            # the run's recursion_limit
    timeout: 60                   # seconds per run (enforced by the runner)

Node kinds: ``llm``, ``tools``, ``router``, ``human``, ``python``, ``subgraph`` (see the
``*Node`` models). A node without outgoing edges ends the run (an implicit edge to END).
``END`` and ``__end__`` name the end.

Reading files, ``extends`` and validation with file and line are in
:mod:`weft.workflows.loading`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from weft.workflows.expressions import Expression, Template, path_map_key
from weft.yamldoc import KeyPath, dotted

NODE_KINDS = ("llm", "tools", "router", "human", "python", "subgraph")
STATE_TYPES = ("str", "int", "float", "bool", "list", "dict", "messages", "any")
REDUCERS = ("replace", "append", "add", "merge", "messages")
END_NAMES = ("END", "__end__")
"""Names that mean the end of the run in edges and path maps."""
RESERVED_NODE_NAMES = (*END_NAMES, "START", "__start__")
YAML_KEYS = (
    "name",
    "description",
    "version",
    "extends",
    "state",
    "nodes",
    "edges",
    "entry",
    "interrupt_before",
    "interrupt_after",
    "max_iterations",
    "timeout",
)
"""The top-level keys of a workflow file."""

REDUCER_TYPES: dict[str, tuple[str, ...]] = {
    "replace": STATE_TYPES,
    "append": ("list", "any"),
    "add": ("int", "float", "any"),
    "merge": ("dict", "any"),
    "messages": ("messages", "list", "any"),
}
"""The state types each reducer works with."""

_DEFAULT_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "list": list,
    "dict": dict,
    "messages": list,
}
_DOTTED = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
_MODULE_REF = re.compile(rf"{_DOTTED}:{_DOTTED}\Z")
_FILE_REF = re.compile(rf".+\.py:{_DOTTED}\Z")


def choice_message(what: str, value: Any, allowed: Sequence[str]) -> str:
    """``unknown node kind 'llmm'; did you mean 'llm'? (allowed: llm, tools, ...)``."""
    close = difflib.get_close_matches(str(value), allowed, n=1) if isinstance(value, str) else []
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown {what} {value!r}{hint} (allowed: {', '.join(allowed)})"


def is_file_ref(ref: str) -> bool:
    """Whether a ``module:function`` reference names a file (``path/file.py:fn``)."""
    module = ref.rpartition(":")[0]
    return module.endswith(".py") or "/" in module or "\\" in module


def _check_function_ref(ref: str) -> str:
    if _MODULE_REF.match(ref) or _FILE_REF.match(ref):
        return ref
    raise ValueError(f"must be 'package.module:function' or 'path/file.py:function' (got {ref!r})")


FunctionRef = Annotated[str, AfterValidator(_check_function_ref)]
"""``package.module:function`` or ``path/file.py:function`` (relative to the workflow file)."""


def _check_model_ref(value: Any) -> Any:
    if isinstance(value, str) and value.strip():
        return value
    if isinstance(value, Mapping) and list(value) == ["fake"] and isinstance(value["fake"], list):
        return dict(value)
    raise ValueError(
        f"must be 'provider:model', 'fake:echo' or {{fake: [reply, ...]}} (got {value!r})"
    )


ModelRef = Annotated[str | dict[str, Any], BeforeValidator(_check_model_ref)]


def _path_map_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {path_map_key(k): v for k, v in value.items()}
    return value


PathMap = Annotated[dict[str, str], BeforeValidator(_path_map_keys), Field(min_length=1)]
"""Result -> node name (or END). YAML ``true:``/``false:`` keys become ``"true"``/``"false"``."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- state ---------------------------------------------------------------------------------


class StateField(_Strict):
    """One state field: its type, how writes combine (the reducer), its initial value."""

    type: str = "any"
    reducer: str = "replace"
    """Default: ``messages`` for type messages, else ``replace``."""
    default: Any = None
    """The value the field holds before anything writes it (only when given)."""

    @model_validator(mode="before")
    @classmethod
    def _default_reducer(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("reducer") is None:
            data = dict(data)
            data["reducer"] = "messages" if data.get("type") == "messages" else "replace"
        return data

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        if value not in STATE_TYPES:
            raise ValueError(choice_message("state type", value, STATE_TYPES))
        return value

    @field_validator("reducer")
    @classmethod
    def _check_reducer(cls, value: str, info: ValidationInfo) -> str:
        if value not in REDUCERS:
            raise ValueError(choice_message("reducer", value, REDUCERS))
        typ = info.data.get("type")
        if typ is not None and typ not in REDUCER_TYPES[value]:
            raise ValueError(
                f"reducer {value!r} does not work with type {typ!r} "
                f"(types it works with: {', '.join(REDUCER_TYPES[value])})"
            )
        return value

    @field_validator("default")
    @classmethod
    def _check_default(cls, value: Any, info: ValidationInfo) -> Any:
        expected = _DEFAULT_TYPES.get(info.data.get("type", "any"))
        if value is None or expected is None:
            return value
        if not isinstance(value, expected) or (
            isinstance(value, bool) and info.data.get("type") in ("int", "float")
        ):
            raise ValueError(f"must be a {info.data.get('type')} value (got {value!r})")
        return value

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set


def default_state() -> dict[str, StateField]:
    """The state of a workflow without ``state``: ``messages`` with add_messages."""
    return {"messages": StateField(type="messages")}


# --- nodes ---------------------------------------------------------------------------------


class LlmNode(_Strict):
    """Calls a chat model on ``state[input]``; the reply goes to ``state[output]``."""

    kind: Literal["llm"]
    model: ModelRef
    """``"provider:model"``, ``"fake:echo"`` or ``{"fake": [reply, ...]}``."""
    system: Template | None = None
    tools: list[str] = Field(default_factory=list)
    structured_output: dict[str, Any] | None = None
    """A JSON schema; the parsed object is written to ``output`` instead of a message."""
    input: str = "messages"
    output: str = "messages"

    @model_validator(mode="after")
    def _tools_or_structured(self) -> LlmNode:
        if self.tools and self.structured_output is not None:
            raise ValueError("an llm node cannot have both tools and structured_output")
        return self


class ToolsNode(_Strict):
    """Runs the tool calls of the last AI message in ``state[messages]``."""

    kind: Literal["tools"]
    tools: list[str] = Field(min_length=1)
    messages: str = "messages"


class RouterNode(_Strict):
    """Chooses the next node from a JMESPath ``expression`` or a Python ``function``.

    The result selects ``path_map[result]``; without ``path_map`` it must be a node name or
    END.
    """

    kind: Literal["router"]
    expression: Expression | None = None
    function: FunctionRef | None = None
    path_map: PathMap | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RouterNode:
        if (self.expression is None) == (self.function is None):
            got = "both" if self.expression is not None else "neither"
            raise ValueError(f"a router needs exactly one of expression or function (got {got})")
        return self


class HumanNode(_Strict):
    """Interrupts with ``{"prompt": ..., "node": name}``; the resume value goes to ``output``."""

    kind: Literal["human"]
    prompt: Template
    output: str


class PythonNode(_Strict):
    """A Python function used as the node (``pkg.mod:fn`` or ``path/file.py:fn``)."""

    kind: Literal["python"]
    function: FunctionRef


class SubgraphNode(_Strict):
    """Another registered graph, run as this node."""

    kind: Literal["subgraph"]
    graph: str = Field(min_length=1)


NodeSpec = Annotated[
    LlmNode | ToolsNode | RouterNode | HumanNode | PythonNode | SubgraphNode,
    Field(discriminator="kind"),
]
NODE_MODELS: dict[str, type[_Strict]] = {
    "llm": LlmNode,
    "tools": ToolsNode,
    "router": RouterNode,
    "human": HumanNode,
    "python": PythonNode,
    "subgraph": SubgraphNode,
}


# --- edges ---------------------------------------------------------------------------------


class Edge(_Strict):
    """``{from: a, to: b}``."""

    source: str = Field(alias="from")
    to: str


class ConditionalEdge(_Strict):
    """``{from: a, condition: <JMESPath>, path_map: {result: node}}``."""

    source: str = Field(alias="from")
    condition: Expression
    path_map: PathMap


def _edge_tag(value: Any) -> str:
    if isinstance(value, ConditionalEdge):
        return "conditional"
    if isinstance(value, Mapping) and ("condition" in value or "path_map" in value):
        return "conditional"
    return "simple"


EdgeSpec = Annotated[
    Annotated[Edge, Tag("simple")] | Annotated[ConditionalEdge, Tag("conditional")],
    Discriminator(_edge_tag),
]


# --- the workflow --------------------------------------------------------------------------


class WorkflowSpec(_Strict):
    """A validated workflow. Build it with :func:`load_workflow`."""

    name: str = Field(min_length=1)
    description: str = ""
    version: str | None = None
    extends: str | None = None
    state: dict[str, StateField] = Field(default_factory=default_state)
    nodes: dict[str, NodeSpec] = Field(default_factory=dict)
    edges: list[EdgeSpec] = Field(default_factory=list)
    entry: str = ""
    """The first node; default: the first node listed."""
    interrupt_before: list[str] = Field(default_factory=list)
    interrupt_after: list[str] = Field(default_factory=list)
    max_iterations: int | None = Field(default=None, ge=1)
    """The run's recursion_limit."""
    timeout: float | None = Field(default=None, gt=0)
    """Seconds a run may take (the runner enforces it)."""
    path: Path | None = None
    """The file the workflow was loaded from (not a YAML key)."""

    _locations: dict[KeyPath, tuple[Path, int]] = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _default_entry(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not data.get("entry"):
            nodes = data.get("nodes")
            if isinstance(nodes, Mapping) and nodes:
                data = {**data, "entry": next(iter(nodes))}
        return data

    @field_validator("description", mode="before")
    @classmethod
    def _no_description(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        return value

    def where(self, path: KeyPath) -> str:
        """``FILE:LINE: dotted.path``: where ``path`` is written (or its nearest parent)."""
        file, line = _locate(path, self._locations, self.path or Path(self.name))
        return _prefix(file, line, path)


def _prefix(file: Path, line: int | None, path: KeyPath) -> str:
    where = f"{file}:{line}" if line is not None else str(file)
    return f"{where}: {dotted(path)}" if path else where


def _locate(
    path: KeyPath, origin: Mapping[KeyPath, tuple[Path, int]], top: Path
) -> tuple[Path, int | None]:
    for end in range(len(path), 0, -1):
        found = origin.get(path[:end])
        if found is not None:
            return found
    return top, 1 if origin else None


__all__ = [
    "END_NAMES",
    "NODE_KINDS",
    "REDUCERS",
    "STATE_TYPES",
    "YAML_KEYS",
    "ConditionalEdge",
    "Edge",
    "FunctionRef",
    "HumanNode",
    "LlmNode",
    "PythonNode",
    "RouterNode",
    "StateField",
    "SubgraphNode",
    "ToolsNode",
    "WorkflowSpec",
]
