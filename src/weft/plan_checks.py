"""Reading and validating session plans.

:func:`read_plan` reads a YAML/JSON file or a JSON body and applies ``--set`` overrides;
:func:`validate_plan` lists every problem at once, each as ``FILE:LINE: dotted.path: message``
(or ``dotted.path: message`` for a body), and raises :class:`weft.plans.PlanError`.

The names a ``when`` reads at its root are found by walking the parsed expression: the left
side of sub-expressions, indexes, projections, filters, flattens and pipes, and every operand
of comparisons, ``&&``/``||``/``!``, function arguments and multi-selects. Names reached only
inside a filter condition, on the right of a pipe or inside ``&expr`` are not roots.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jmespath
from pydantic import ValidationError

from weft.plan_view import (
    components,
    cycle_through,
)
from weft.plans import (
    PLAN_KEYS,
    RETRY_KEYS,
    THREAD_KEYS,
    PlanError,
    PlanSpec,
    RetrySpec,
    ThreadSpec,
    Workflow,
    expression,
)
from weft.workflows.expressions import Expression
from weft.workflows.spec import choice_message
from weft.yamldoc import KeyPath, YamlSyntaxError, dotted, line_of, parse_yaml

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}\Z")


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanSource:
    """Where a plan's data came from, to locate problems: a file's lines, ``--set`` values."""

    file: Path | None = None
    lines: Mapping[KeyPath, int] = field(default_factory=dict)
    overrides: Mapping[KeyPath, str] = field(default_factory=dict)
    """Key path -> the ``--set`` text that gave it its value."""
    problems: tuple[tuple[KeyPath, str], ...] = ()
    """Found while reading (duplicate keys)."""

    def line(self, path: KeyPath) -> int:
        """The line of ``path`` in the file (0 when it has none)."""
        if self.file is None:
            return 0
        return line_of(path, self.lines) or 0

    def where(self, path: KeyPath) -> str:
        """``FILE:LINE: dotted.path``, ``dotted.path`` for a body, or the ``--set`` it came from."""
        for end in range(len(path), 0, -1):
            text = self.overrides.get(path[:end])
            if text is not None:
                return f"--set {text!r}: {dotted(path)}"
        if self.file is None:
            return dotted(path) or "plan"
        at = f"{self.file}:{line_of(path, self.lines) or 1}"
        return f"{at}: {dotted(path)}" if path else at


def read_plan(
    source: Mapping[str, Any] | Path | str, overrides: Sequence[str] = ()
) -> tuple[dict[str, Any], PlanSource]:
    """A plan's data from a file (a path) or a JSON body (a mapping), with ``--set`` applied.

    An unreadable file, a YAML syntax error, a top level that is not a mapping or a bad
    override raise PlanError.
    """
    if isinstance(source, str | Path):
        data, where = _read_file(Path(source))
    elif isinstance(source, Mapping):
        data, where = copy.deepcopy(dict(source)), PlanSource()
    else:
        raise PlanError([f"plan: must be a mapping, not {_kind(source)}"])
    set_paths = _apply_overrides(data, overrides)
    return data, replace(where, overrides=set_paths)


def _read_file(path: Path) -> tuple[dict[str, Any], PlanSource]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise PlanError([f"{path}: file not found"]) from e
    except UnicodeDecodeError as e:
        raise PlanError([f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"]) from e
    except OSError as e:
        raise PlanError([f"{path}: cannot read the file: {e.strerror or e}"]) from e
    try:
        doc = parse_yaml(text)
    except YamlSyntaxError as e:
        if e.line is None:
            raise PlanError([f"{path}: {e.message}"]) from e
        raise PlanError([f"{path}:{e.line}: invalid YAML: {e.problem} (column {e.column})"]) from e
    data = {} if doc.data is None else doc.data
    if not isinstance(data, dict):
        raise PlanError([f"{path}:1: a plan must be a mapping, not {_kind(data)}"])
    problems = []
    for dup in doc.duplicates:
        if len(dup.path) == 2 and dup.path[0] == "threads":
            message = f"duplicate thread {dup.path[1]!r} (first defined on line {dup.first_line})"
        else:
            message = dup.message
        problems.append((dup.path, message))
    return data, PlanSource(file=path, lines=doc.lines, problems=tuple(problems))


def _apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[KeyPath, str]:
    """Set each ``key.path=value`` in ``data``; the value is read as YAML."""
    set_paths: dict[KeyPath, str] = {}
    problems: list[str] = []
    for text in overrides:
        key, sep, raw = text.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            problems.append(f"--set {text!r}: expected KEY=VALUE (KEY a dotted path)")
            continue
        try:
            value = parse_yaml(raw).data
        except YamlSyntaxError as e:
            problems.append(f"--set {text!r}: cannot read the value: {e.problem}")
            continue
        node = data
        for end, part in enumerate(parts[:-1], start=1):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
                set_paths[tuple(parts[:end])] = text  # created by this override
            if not isinstance(child, dict):
                problems.append(f"--set {text!r}: {'.'.join(parts[:end])} is not a mapping")
                break
            node = child
        else:
            node[parts[-1]] = value
            set_paths[tuple(parts)] = text
    if problems:
        raise PlanError(problems)
    return set_paths


def load_plan(
    source: Mapping[str, Any] | Path | str,
    workflows: Mapping[str, Workflow],
    overrides: Sequence[str] = (),
) -> PlanSpec:
    """:func:`read_plan` then :func:`validate_plan`."""
    data, where = read_plan(source, overrides)
    return validate_plan(data, where, workflows)


# --- validation --------------------------------------------------------------------------------


def validate_plan(
    data: dict[str, Any], source: PlanSource, workflows: Mapping[str, Workflow]
) -> PlanSpec:
    """The plan ``data`` holds, checked against ``workflows`` (every known graph id and
    assistant id). Raises PlanError listing every problem."""
    return _Validation(source, workflows).run(data)


class _Validation:
    def __init__(self, source: PlanSource, workflows: Mapping[str, Workflow]) -> None:
        self.source = source
        self.workflows = workflows
        self.items: list[tuple[KeyPath, str]] = list(source.problems)

    def problem(self, path: KeyPath, message: str) -> None:
        self.items.append((path, message))

    def run(self, data: Any) -> PlanSpec:
        if not isinstance(data, Mapping):
            raise PlanError([f"{self.source.where(())}: a plan must be a mapping"])
        header: dict[str, Any] = {}
        for key, value in data.items():
            if key in PLAN_KEYS and key != "threads":
                header[key] = value
            elif key != "threads":
                self.problem((str(key),), choice_message("key", key, PLAN_KEYS))
        try:
            PlanSpec.model_validate({**header, "threads": {}})
        except ValidationError as e:
            self.pydantic(e, ())
        threads = self.threads(data.get("threads"))
        if self.items:
            path_line = self.source.line
            ordered = sorted(self.items, key=lambda item: path_line(item[0]))
            raise PlanError([f"{self.source.where(path)}: {message}" for path, message in ordered])
        return PlanSpec.model_validate({**header, "threads": threads})

    def pydantic(self, err: ValidationError, prefix: KeyPath) -> None:
        for e in err.errors():
            loc: KeyPath = (*prefix, *(str(p) if isinstance(p, str) else p for p in e["loc"]))
            if e["type"] == "extra_forbidden":
                parent = loc[:-1]
                if parent and parent[-1] == "retries":
                    allowed = RETRY_KEYS
                elif len(parent) == 2 and parent[0] == "threads":
                    allowed = THREAD_KEYS
                else:
                    allowed = PLAN_KEYS
                message = choice_message("key", loc[-1], allowed)
            elif e["type"] == "missing":
                message = "is required"
            elif e["type"] == "value_error" and "error" in e.get("ctx", {}):
                message = str(e["ctx"]["error"])
            else:
                message = e["msg"]
                value = e.get("input")
                if isinstance(value, str | int | float | bool):
                    message += f" (got {value!r})"
            self.problem(loc, message)

    def threads(self, raw: Any) -> dict[str, ThreadSpec]:
        if raw is None:
            self.problem(("threads",), "is required: a mapping of thread name -> thread")
            return {}
        if not isinstance(raw, Mapping):
            self.problem(
                ("threads",), f"must be a mapping of thread name -> thread, not {_kind(raw)}"
            )
            return {}
        if not raw:
            self.problem(("threads",), "a plan needs at least one thread")
            return {}
        names = [str(name) for name in raw]
        out: dict[str, ThreadSpec] = {}
        for name, value in raw.items():
            path: KeyPath = ("threads", str(name))
            if not isinstance(name, str) or not _NAME.match(name):
                self.problem(
                    path,
                    f"invalid thread name {str(name)!r}: use letters, digits, _ and - "
                    "(starting with a letter or _, at most 100 characters)",
                )
            thread = self.thread(path, value)
            if thread is not None:
                out[str(name)] = thread
        edges = {
            str(name): self.edges(str(name), value, names)
            for name, value in raw.items()
            if isinstance(value, Mapping)
        }
        self.cycles(names, edges)
        for name, value in raw.items():
            if isinstance(value, Mapping):
                self.references(str(name), value)
        return out

    def thread(self, path: KeyPath, raw: Any) -> ThreadSpec | None:
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            self.problem(
                path, f"must be a mapping {{graph_id, input, after, ...}}, not {_kind(raw)}"
            )
            return None
        body = dict(raw)
        refs = [key for key in ("graph_id", "assistant_id") if body.get(key) is not None]
        ok = len(refs) == 1
        if not ok:
            self.problem(
                path,
                "names no workflow: give graph_id or assistant_id"
                if not refs
                else "give graph_id or assistant_id, not both",
            )
            body = {k: v for k, v in body.items() if k not in ("graph_id", "assistant_id")}
            body["graph_id"] = "-"
        retries = body.get("retries")
        if isinstance(retries, Mapping):
            try:
                RetrySpec.model_validate(retries)
            except ValidationError as e:
                self.pydantic(e, (*path, "retries"))
                body["retries"] = None  # reported once, as RetrySpec sees it
                ok = False
        try:
            thread = ThreadSpec.model_validate(body)
        except ValidationError as e:
            self.pydantic(e, path)
            return None
        return thread if ok else None

    def edges(self, name: str, raw: Mapping[Any, Any], names: list[str]) -> dict[str, KeyPath]:
        """The sources ``name`` names that are other known threads -> where each is named."""
        found: dict[str, KeyPath] = {}
        after = raw.get("after")
        named: list[tuple[Any, KeyPath]] = []
        if isinstance(after, str):
            named.append((after, ("threads", name, "after")))
        elif isinstance(after, list):
            named.extend((s, ("threads", name, "after", i)) for i, s in enumerate(after))
        inputs_from = raw.get("inputs_from")
        if isinstance(inputs_from, Mapping):
            named.extend((s, ("threads", name, "inputs_from", str(s))) for s in inputs_from)
        in_after: set[str] = set()
        for source, path in named:
            if not isinstance(source, str):
                continue  # reported as a type problem
            is_after = path[2] == "after"
            if source == name:
                self.problem(path, f"{name} depends on itself")
            elif source not in names:
                self.problem(
                    path, f"unknown thread {source!r} (threads: {', '.join(sorted(names))})"
                )
            elif is_after and source in in_after:
                self.problem(path, f"duplicate edge {source} → {name}")
            else:
                found.setdefault(source, path)
            if is_after:
                in_after.add(source)
        return found

    def cycles(self, names: list[str], edges: Mapping[str, Mapping[str, KeyPath]]) -> None:
        order = {name: i for i, name in enumerate(names)}
        dependents: dict[str, list[str]] = {name: [] for name in names}
        for name in names:
            for source in edges.get(name, {}):
                dependents[source].append(name)
        starts = [
            (min(component, key=order.__getitem__), component)
            for component in components(names, dependents)
            if len(component) > 1
        ]
        for start, component in sorted(starts, key=lambda item: order[item[0]]):
            cycle = cycle_through(start, component, dependents)
            closing = edges[start][cycle[-2]]
            self.problem(closing, "cycle: " + " → ".join(cycle))

    def references(self, name: str, raw: Mapping[Any, Any]) -> None:
        """Workflow, expressions, input paths and ``when`` roots of thread ``name``."""
        base: KeyPath = ("threads", name)
        after, inputs_from = raw.get("after"), raw.get("inputs_from")
        listed = [after] if isinstance(after, str) else after if isinstance(after, list) else []
        sources = {s for s in listed if isinstance(s, str)}
        if isinstance(inputs_from, Mapping):
            sources.update(str(s) for s in inputs_from)
        workflow: Workflow | None = None
        for key in ("graph_id", "assistant_id"):
            ref = raw.get(key)
            if isinstance(ref, str):
                workflow = self.workflows.get(ref)
                if workflow is None:
                    graphs = sorted({w.graph_id for w in self.workflows.values()})
                    known = ", ".join(graphs) if graphs else "none registered"
                    self.problem((*base, key), f"unknown workflow {ref!r} (graphs: {known})")
        fields = workflow.input_fields if workflow is not None else None
        given = raw.get("input")
        if fields is not None and isinstance(given, Mapping):
            for key in given:
                if key not in fields:
                    self.problem(
                        (*base, "input", str(key)), _not_a_field(repr(key), workflow, fields)
                    )
        setters: dict[str, str] = {}
        if isinstance(inputs_from, Mapping):
            for source, mapping in inputs_from.items():
                if not isinstance(mapping, Mapping):
                    continue
                for ipath, expr in mapping.items():
                    path = (*base, "inputs_from", str(source), str(ipath))
                    if isinstance(expr, str):
                        self.expression(path, expr)
                    if not isinstance(ipath, str):
                        continue
                    if not re.fullmatch(r"[^.\s]+(\.[^.\s]+)*", ipath):
                        self.problem(path, f"input path {ipath!r} must be dotted names (a.b.c)")
                        continue
                    first = ipath.split(".")[0]
                    if fields is not None and first not in fields:
                        message = _not_a_field(f"input path {ipath!r}", workflow, fields)
                        self.problem(path, message)
                    clash = _clash(ipath, setters)
                    if clash is not None:
                        other, who = clash
                        self.problem(
                            path, f"input path {ipath!r} overlaps {other!r} set from {who}"
                        )
                    setters[ipath] = f"inputs_from {source}"
        when = raw.get("when")
        if isinstance(when, str):
            dashed = sorted(s for s in sources if "-" in s and f'"{s}"' not in when and s in when)
            hint = f' (quote names with a -: "{dashed[0]}".field)' if dashed else ""
            parsed = self.expression((*base, "when"), when, hint)
            if parsed is not None:
                shown = sorted(sources)
                for root in when_roots(parsed):
                    if root not in sources:
                        why = (
                            f"sources: {', '.join(shown)}"
                            if shown
                            else f"{name} has no sources; name them in after"
                        )
                        self.problem(
                            (*base, "when"),
                            f"when refers to {root!r}, which is not a source of {name} ({why})",
                        )

    def expression(self, path: KeyPath, text: str, hint: str = "") -> Expression | None:
        try:
            return expression(text)
        except ValueError as e:
            self.problem(path, f"{e}{hint}")
            return None


def _not_a_field(what: str, workflow: Workflow | None, fields: frozenset[str]) -> str:
    graph = workflow.graph_id if workflow is not None else "?"
    return f"{what} is not an input field of graph {graph!r} (fields: {', '.join(sorted(fields))})"


def _clash(ipath: str, setters: Mapping[str, str]) -> tuple[str, str] | None:
    for other, who in setters.items():
        if other == ipath or other.startswith(ipath + ".") or ipath.startswith(other + "."):
            return other, who
    return None


def when_roots(expression: Expression) -> list[str]:
    """The names a ``when`` expression reads at its root, in order (see the module doc)."""
    return list(dict.fromkeys(_roots(jmespath.compile(expression.source).parsed)))


_LEFT_ONLY = frozenset(
    {
        "subexpression",
        "index_expression",
        "projection",
        "value_projection",
        "filter_projection",
        "flatten",
        "pipe",
    }
)
_EVERY_CHILD = frozenset(
    {
        "comparator",
        "and_expression",
        "or_expression",
        "not_expression",
        "function_expression",
        "multi_select_list",
        "multi_select_dict",
        "key_val_pair",
    }
)


def _roots(node: Any) -> list[str]:
    if not isinstance(node, dict):
        return []
    kind = node.get("type")
    children = node.get("children") or []
    if kind == "field":
        return [str(node["value"])]
    if kind in _LEFT_ONLY and children:
        return _roots(children[0])
    if kind in _EVERY_CHILD:
        return [name for child in children for name in _roots(child)]
    return []


def _kind(value: object) -> str:
    kinds = {bool: "a boolean", dict: "a mapping", list: "a list", str: "a string", int: "a number"}
    for t, name in kinds.items():
        if isinstance(value, t):
            return name
    return "a number" if isinstance(value, float) else "null" if value is None else "a value"


__all__ = ["PlanSource", "load_plan", "read_plan", "validate_plan", "when_roots"]
