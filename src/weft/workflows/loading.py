"""Reading workflow files: ``extends``, and validation with file and line.

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
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from weft.errors import WeftError
from weft.workflows.checks import _Graph
from weft.workflows.spec import (
    NODE_KINDS,
    NODE_MODELS,
    RESERVED_NODE_NAMES,
    YAML_KEYS,
    ConditionalEdge,
    Edge,
    StateField,
    WorkflowSpec,
    _check_function_ref,
    _edge_tag,
    _locate,
    _prefix,
    choice_message,
    default_state,
    is_file_ref,
)
from weft.yamldoc import KeyPath, YamlSyntaxError, parse_yaml

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class WorkflowError(WeftError):
    """A workflow file (or a workflow being compiled) is invalid.

    ``problems`` lists each one as ``FILE:LINE: dotted.path: message``; the message is
    those lines joined.
    """

    status_code = 400

    def __init__(self, message: str, problems: Sequence[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = list(problems) if problems is not None else [message]


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


__all__ = [
    "WorkflowError",
    "load_workflow",
    "validate_workflow_file",
]
