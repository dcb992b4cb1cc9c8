"""The YAML workflow format: its models, ``extends``, and validation with file and line.

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

``extends`` loads the base file (recursively) and deep-merges: mappings merge key by key with
the child winning, a node the child defines replaces the base's node of that name whole, and
lists are replaced. ``name`` is not inherited (it defaults to the child's file name).

:func:`load_workflow` and :func:`validate_workflow_file` collect every problem, each as
``FILE:LINE: dotted.path: message``.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from weft.errors import WeftError
from weft.workflows.expressions import Expression, Template, path_map_key
from weft.yamldoc import KeyPath, YamlSyntaxError, dotted, parse_yaml

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
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DOTTED = r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*"
_MODULE_REF = re.compile(rf"{_DOTTED}:{_DOTTED}\Z")
_FILE_REF = re.compile(rf".+\.py:{_DOTTED}\Z")


class WorkflowError(WeftError):
    """A workflow file (or a workflow being compiled) is invalid.

    ``problems`` lists each one as ``FILE:LINE: dotted.path: message``; the message is
    those lines joined.
    """

    status_code = 400

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems is not None else [message]


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


# --- loading -------------------------------------------------------------------------------


def load_workflow(path: Path, *, known_graphs: Collection[str] | None = None) -> WorkflowSpec:
    """Read, resolve ``extends`` and validate. Raises WorkflowError listing every problem."""
    spec, problems = _load(Path(path), known_graphs)
    if spec is None or problems:
        raise WorkflowError("\n".join(problems), problems)
    return spec


def validate_workflow_file(path: Path, *, known_graphs: Collection[str] | None = None) -> list[str]:
    """Every problem of the workflow at ``path`` as ``FILE:LINE: path: message``; [] if valid.

    With ``known_graphs``, a ``subgraph`` node must name one of them.
    """
    return _load(Path(path), known_graphs)[1]


@dataclass
class _Located:
    """Data merged from one or more files, and where each key path was written."""

    data: dict[Any, Any]
    origin: dict[KeyPath, tuple[Path, int]]


@dataclass
class _Problems:
    top: Path
    items: list[tuple[Path, int | None, KeyPath, str]] = field(default_factory=list)
    incomplete: bool = False
    """A file that is extended could not be read: checking the rest would only mislead."""

    def at(self, file: Path, line: int | None, path: KeyPath, message: str) -> None:
        self.items.append((file, line, path, message))

    def rendered(self) -> list[str]:
        order = {self.top: 0}
        for file, _, _, _ in self.items:
            order.setdefault(file, len(order))
        items = sorted(self.items, key=lambda p: (order[p[0]], p[1] or 0))
        return [f"{_prefix(f, line, path)}: {message}" for f, line, path, message in items]


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


def _load(
    path: Path, known_graphs: Collection[str] | None
) -> tuple[WorkflowSpec | None, list[str]]:
    problems = _Problems(top=path)
    located = _read(path, [os.path.abspath(path)], problems, path)
    if located is None or problems.incomplete:
        return None, problems.rendered()
    spec = _Validation(path, located, problems, known_graphs).run()
    return spec, problems.rendered()


def _read(path: Path, chain: list[str], problems: _Problems, top: Path) -> _Located | None:
    """Parse ``path`` and, recursively, what it extends. None when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.at(path, None, (), "file not found")
        return None
    except UnicodeDecodeError as e:
        problems.at(path, None, (), f"not UTF-8 text ({e.reason} at byte {e.start})")
        return None
    except OSError as e:
        problems.at(path, None, (), f"cannot read the file: {e.strerror or e}")
        return None
    try:
        doc = parse_yaml(text)
    except YamlSyntaxError as e:
        problems.at(path, e.line, (), e.message)
        return None
    for dup in doc.duplicates:
        problems.at(path, dup.line, dup.path, _duplicate_message(dup.path, dup.first_line))
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.at(path, 1, (), f"the top level must be a mapping, not {_kind(data)}")
        return None
    origin = {key: (path, line) for key, line in doc.lines.items()}
    located = _Located(data=data, origin=origin)
    extends = data.get("extends")
    if extends is None:
        return located
    line = doc.lines.get(("extends",))
    if not isinstance(extends, str) or not extends.strip():
        problems.at(path, line, ("extends",), "must be the path of a workflow file")
        return located
    base_path = Path(os.path.normpath(path.parent / extends))
    key = os.path.abspath(base_path)
    if key in chain:
        shown = " → ".join(_show(p, top) for p in [*chain, key])
        problems.at(path, line, ("extends",), f"extends cycle: {shown}")
        return located
    if not base_path.is_file():
        problems.at(path, line, ("extends",), f"file not found: {base_path}")
        problems.incomplete = True
        return located
    base = _read(base_path, [*chain, key], problems, top)
    if base is None:
        problems.incomplete = True
        return located
    return _merge(base, located)


def _show(path: str, top: Path) -> str:
    rel = os.path.relpath(path, os.path.abspath(top.parent))
    return rel if not rel.startswith("..") else path


def _duplicate_message(path: KeyPath, first_line: int) -> str:
    if len(path) == 2 and path[0] == "nodes":
        return f"duplicate node {path[1]!r} (first defined on line {first_line})"
    if len(path) == 2 and path[0] == "state":
        return f"duplicate state field {path[1]!r} (first defined on line {first_line})"
    return f"duplicate key (first set on line {first_line})"


def _merge(base: _Located, child: _Located) -> _Located:
    """``child`` over ``base``: mappings merged, nodes and lists replaced whole."""
    replaced: set[KeyPath] = set()

    def merge(left: dict[Any, Any], right: dict[Any, Any], path: KeyPath) -> dict[Any, Any]:
        out = dict(left)
        for key, value in right.items():
            sub = (*path, str(key))
            old = out.get(key)
            whole = len(sub) == 2 and sub[0] == "nodes"
            if isinstance(old, dict) and isinstance(value, dict) and not whole:
                out[key] = merge(old, value, sub)
            else:
                out[key] = value
                replaced.add(sub)
        return out

    data = merge(base.data, child.data, ())
    if "name" not in child.data:
        data.pop("name", None)  # a name belongs to its file
    origin = {
        key: where
        for key, where in base.origin.items()
        if not any(key[:end] in replaced for end in range(1, len(key) + 1))
    }
    origin.update(child.origin)
    return _Located(data=data, origin=origin)


def _kind(value: object) -> str:
    kinds = {bool: "a boolean", dict: "a mapping", list: "a list", str: "a string", int: "a number"}
    for t, name in kinds.items():
        if isinstance(value, t):
            return name
    return "a number" if isinstance(value, float) else type(value).__name__


# --- validation ----------------------------------------------------------------------------


class _Validation:
    """Checks merged data piece by piece, so that one bad node hides nothing else."""

    def __init__(
        self,
        top: Path,
        located: _Located,
        problems: _Problems,
        known_graphs: Collection[str] | None,
    ) -> None:
        self.top = top
        self.data = located.data
        self.origin = located.origin
        self.problems = problems
        self.known_graphs = known_graphs
        self.broken = False  # a node, edge or state field failed: skip the path checks
        self.state_names: list[str] = []

    def problem(self, path: KeyPath, message: str) -> None:
        file, line = _locate(path, self.origin, self.top)
        self.problems.at(file, line, path, message)

    def pydantic(self, err: ValidationError, prefix: KeyPath, model: type[BaseModel]) -> None:
        allowed = [f.alias or name for name, f in model.model_fields.items()]
        if model is WorkflowSpec:
            allowed = list(YAML_KEYS)
        for e in err.errors():
            loc: KeyPath = tuple(e["loc"])
            kind = e["type"]
            if kind == "extra_forbidden":
                message = _unknown_key(str(loc[-1]), allowed)
            elif kind == "missing":
                message = "is required"
            elif kind in ("value_error", "assertion_error") and "error" in e.get("ctx", {}):
                message = str(e.get("ctx", {})["error"])
            else:
                message = e["msg"]
                value = e.get("input")
                if isinstance(value, str | int | float | bool):
                    message += f" (got {value!r})"
            self.problem((*prefix, *loc), message)

    def run(self) -> WorkflowSpec | None:
        data = self.data
        for key in data:
            if key not in YAML_KEYS:
                self.problem((str(key),), _unknown_key(str(key), YAML_KEYS))
        state = self.state()
        names, nodes = self.nodes()
        edges = self.edges()
        header = {k: data[k] for k in YAML_KEYS if k in data and k not in _PIECES}
        header.setdefault("name", self.top.stem.split(".")[0] or self.top.stem)
        if not header.get("entry") and names:
            header["entry"] = names[0]
        spec: WorkflowSpec | None = None
        try:
            spec = WorkflowSpec.model_validate(
                {**header, "state": state, "nodes": nodes, "edges": [e for _, e in edges]}
            )
        except ValidationError as e:
            self.pydantic(e, (), WorkflowSpec)
        if spec is not None:
            spec = spec.model_copy(update={"path": self.top})
            spec._locations = dict(self.origin)
        entry = header.get("entry")
        graph = _Graph(
            names=names,
            nodes=nodes,
            edges=edges,
            state=list(self.state_names),
            entry=entry if isinstance(entry, str) else None,
            interrupts={
                key: header.get(key)
                for key in ("interrupt_before", "interrupt_after")
                if isinstance(header.get(key), list)
            },
            known_graphs=self.known_graphs,
        )
        for path, message in graph.problems(check_paths=not self.broken):
            self.problem(path, message)
        return spec if not self.problems.items else None

    # pieces

    def state(self) -> dict[str, StateField]:
        raw = self.data.get("state")
        if raw is None:
            self.state_names = ["messages"]
            return default_state()
        if not isinstance(raw, dict):
            self.problem(
                ("state",),
                f"must be a mapping of field -> {{type, reducer, default}}, not {_kind(raw)}",
            )
            self.broken = True
            return {}
        out: dict[str, StateField] = {}
        for name, value in raw.items():
            path: KeyPath = ("state", str(name))
            if not isinstance(name, str) or not _IDENTIFIER.match(name):
                self.problem(path, "a state field name must be letters, digits and _")
                self.broken = True
                continue
            self.state_names.append(name)
            if value is None:
                value = {}
            if not isinstance(value, dict):
                self.problem(
                    path, f"must be a mapping {{type, reducer, default}}, not {_kind(value)}"
                )
                self.broken = True
                continue
            try:
                out[name] = StateField.model_validate(value)
            except ValidationError as e:
                self.pydantic(e, path, StateField)
                self.broken = True
        return out

    def nodes(self) -> tuple[list[str], dict[str, Any]]:
        raw = self.data.get("nodes")
        if raw is None:
            self.problem(("nodes",), "a workflow needs at least one node")
            self.broken = True
            return [], {}
        if not isinstance(raw, dict):
            self.problem(("nodes",), f"must be a mapping of node name -> node, not {_kind(raw)}")
            self.broken = True
            return [], {}
        names: list[str] = []
        out: dict[str, Any] = {}
        for name, value in raw.items():
            path: KeyPath = ("nodes", str(name))
            if not isinstance(name, str) or not name:
                self.problem(path, "a node name must be a string")
                self.broken = True
                continue
            names.append(name)
            if name in RESERVED_NODE_NAMES:
                self.problem(path, f"{name!r} is reserved; choose another node name")
                self.broken = True
            elif ":" in name or "|" in name:
                self.problem(path, "a node name cannot contain ':' or '|'")
                self.broken = True
            node = self.node(path, value)
            if node is None:
                self.broken = True
            else:
                out[name] = node
        if not raw:
            self.problem(("nodes",), "a workflow needs at least one node")
            self.broken = True
        return names, out

    def node(self, path: KeyPath, value: Any) -> Any:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping with a kind, not {_kind(value)}")
            return None
        kind = value.get("kind")
        if kind is None:
            self.problem(path, f"a node needs a kind (allowed: {', '.join(NODE_KINDS)})")
            return None
        if kind not in NODE_KINDS:
            self.problem((*path, "kind"), choice_message("node kind", kind, NODE_KINDS))
            return None
        function = value.get("function")
        if isinstance(function, str) and is_file_ref(function) and _check_ref(function):
            file, _ = _locate((*path, "function"), self.origin, self.top)
            module, _, attr = function.rpartition(":")
            target = Path(module)
            if not target.is_absolute():
                target = Path(os.path.normpath(os.path.abspath(file.parent / target)))
            if not target.is_file():
                self.problem((*path, "function"), f"file not found: {target}")
                return None
            value = {**value, "function": f"{target}:{attr}"}
        model = NODE_MODELS[kind]
        try:
            return model.model_validate(value)
        except ValidationError as e:
            self.pydantic(e, path, model)
            return None

    def edges(self) -> list[tuple[int, Edge | ConditionalEdge]]:
        raw = self.data.get("edges")
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problem(("edges",), f"must be a list of edges, not {_kind(raw)}")
            self.broken = True
            return []
        out: list[tuple[int, Edge | ConditionalEdge]] = []
        for index, value in enumerate(raw):
            path: KeyPath = ("edges", index)
            if not isinstance(value, dict):
                self.problem(
                    path,
                    f"an edge is {{from, to}} or {{from, condition, path_map}}, not {_kind(value)}",
                )
                self.broken = True
                continue
            model: type[Edge | ConditionalEdge] = (
                ConditionalEdge if _edge_tag(value) == "conditional" else Edge
            )
            try:
                out.append((index, model.model_validate(value)))
            except ValidationError as e:
                self.pydantic(e, path, model)
                self.broken = True
        return out


_PIECES = ("state", "nodes", "edges")


def _check_ref(ref: str) -> bool:
    try:
        _check_function_ref(ref)
    except ValueError:
        return False
    return True


def _unknown_key(name: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(allowed)})"


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
    "WorkflowError",
    "WorkflowSpec",
    "graph_problems",
    "load_workflow",
    "validate_workflow_file",
]
