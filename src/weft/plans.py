"""Session plans: the spec, its validation, run-time expressions and reports.

A plan names a session's threads, each running one workflow, and the edges between them:
``after`` (start when the source succeeded), ``inputs_from`` (copy values from the source's
final state into this thread's input) and ``when`` (run only if a condition over the sources'
final states holds). Nothing here touches storage or runs anything; :mod:`weft.plan_runs`
executes plans and :mod:`weft.plan_view` draws them.

:func:`read_plan` reads a YAML/JSON file or a JSON body and applies ``--set`` overrides;
:func:`validate_plan` lists every problem at once, each as ``FILE:LINE: dotted.path: message``
(or ``dotted.path: message`` for a body), and raises :class:`PlanError`.

Expressions are JMESPath (:class:`weft.workflows.expressions.Expression`), never Python.
The names a ``when`` reads at its root are found by walking the parsed expression: the left
side of sub-expressions, indexes, projections, filters, flattens and pipes, and every operand
of comparisons, ``&&``/``||``/``!``, function arguments and multi-selects. Names reached only
inside a filter condition, on the right of a pipe or inside ``&expr`` are not roots.
"""

from __future__ import annotations

import copy
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from weft.errors import UnprocessableEntityError, WeftError
from weft.plan_view import (
    PlanReport,
    ThreadReport,
    components,
    critical_path,
    cycle_through,
    describe,
    levels,
    mermaid,
    report,
    topological_order,
)
from weft.schema import PlanPolicy
from weft.workflows.expressions import Expression, json_view
from weft.workflows.spec import choice_message
from weft.yamldoc import KeyPath, YamlSyntaxError, dotted, line_of, parse_yaml


class PlanError(UnprocessableEntityError):
    """A plan is invalid. ``problems`` lists each one as ``LOCATION: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: list[str] = list(problems)
        super().__init__("invalid plan:\n" + "\n".join(self.problems))


class PlanRuntimeError(WeftError):
    """An ``inputs_from`` mapping or a ``when`` condition failed while the plan ran."""

    status_code = 422


@dataclass(frozen=True)
class Workflow:
    """What validation knows of a workflow a plan may name."""

    graph_id: str
    input_fields: frozenset[str] | None
    """The fields its input schema accepts; None when it accepts any."""


# --- the spec ----------------------------------------------------------------------------------

_MODEL = ConfigDict(frozen=True, extra="forbid", strict=True)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,99}\Z")


class RetrySpec(BaseModel):
    """How often a failed or timed-out thread attempt is tried again, and how long to wait."""

    model_config = _MODEL

    max: int = Field(default=0, ge=0, le=100)
    """Attempts after the first one."""
    backoff: float = Field(default=1.0, ge=0, le=3600, allow_inf_nan=False)
    max_backoff: float = Field(default=60.0, ge=0, allow_inf_nan=False)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed ``attempt`` (1-based), jittered to 50-100%."""
        exponent = min(max(attempt - 1, 0), 64)
        return min(self.max_backoff, self.backoff * 2.0**exponent) * (0.5 + rand() / 2)


class ThreadSpec(BaseModel):
    """One named thread of a plan."""

    model_config = _MODEL

    graph_id: str | None = None
    assistant_id: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    after: list[str] = Field(default_factory=list)
    inputs_from: dict[str, dict[str, str]] = Field(default_factory=dict)
    """Source thread -> {dotted input path: JMESPath over the source's final state}."""
    when: str | None = None
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    retries: dict[str, float | int] | None = None
    """The override of the plan's retries, as given."""

    @field_validator("input", "metadata", "inputs_from", mode="before")
    @classmethod
    def _empty_mapping(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("after", mode="before")
    @classmethod
    def _source_list(cls, value: Any) -> Any:
        if value is None:
            return []
        return [value] if isinstance(value, str) else value

    @property
    def workflow(self) -> str:
        """The graph id or assistant id the thread runs."""
        return self.graph_id or self.assistant_id or ""

    @property
    def sources(self) -> list[str]:
        """``after`` then ``inputs_from`` sources, each once, in order."""
        return list(dict.fromkeys([*self.after, *self.inputs_from]))


class PlanSpec(BaseModel):
    """A validated plan: session settings and its named threads, in order."""

    model_config = _MODEL

    name: str | None = None
    user_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    policy: PlanPolicy = "strict"
    max_parallel: int = Field(default=4, ge=1, le=1000)
    timeout: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    """Seconds per thread attempt; None: the workflow's or engine's default."""
    retries: RetrySpec = Field(default_factory=RetrySpec)
    threads: dict[str, ThreadSpec]

    @field_validator("metadata", mode="before")
    @classmethod
    def _empty_metadata(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("retries", mode="before")
    @classmethod
    def _default_retries(cls, value: Any) -> Any:
        return RetrySpec() if value is None else value

    def retries_of(self, name: str) -> RetrySpec:
        """The plan's retries with thread ``name``'s override merged over them."""
        override = self.threads[name].retries
        if not override:
            return self.retries
        return RetrySpec.model_validate({**self.retries.model_dump(), **override}, strict=False)

    def timeout_of(self, name: str) -> float | None:
        """Thread ``name``'s timeout, else the plan's."""
        own = self.threads[name].timeout
        return own if own is not None else self.timeout

    def dependents(self) -> dict[str, list[str]]:
        """Thread name -> the threads that list it as a source, in spec order."""
        out: dict[str, list[str]] = {name: [] for name in self.threads}
        for name, thread in self.threads.items():
            for source in thread.sources:
                if source in out:
                    out[source].append(name)
        return out

    def descendants(self, name: str) -> list[str]:
        """Every thread that depends on ``name``, directly or not, in spec order."""
        dependents = self.dependents()
        seen: set[str] = set()
        todo = list(dependents.get(name, ()))
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(dependents[current])
        return [n for n in self.threads if n in seen]


PLAN_KEYS = tuple(PlanSpec.model_fields)
THREAD_KEYS = tuple(ThreadSpec.model_fields)
RETRY_KEYS = tuple(RetrySpec.model_fields)


def referenced_workflows(data: Any) -> set[str]:
    """The ``graph_id``/``assistant_id`` strings of ``data``'s threads; tolerant of bad data."""
    found: set[str] = set()
    threads = data.get("threads") if isinstance(data, Mapping) else None
    if isinstance(threads, Mapping):
        for thread in threads.values():
            if isinstance(thread, Mapping):
                for key in ("graph_id", "assistant_id"):
                    value = thread.get(key)
                    if isinstance(value, str) and value:
                        found.add(value)
    return found


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
            return _expression(text)
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


# --- run time ----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _expression(text: str) -> Expression:
    return Expression.parse(text)


def _compiled(text: str, where: str) -> Expression:
    try:
        return _expression(text)
    except ValueError as e:
        raise PlanRuntimeError(f"{where}: {e}") from e


def thread_input(spec: PlanSpec, name: str, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Thread ``name``'s input: its ``input`` with each ``inputs_from`` value set over it.

    ``outputs`` maps source names to their final states. A mapping whose result is null (a
    missing path) or that raises is a PlanRuntimeError.
    """
    thread = spec.threads[name]
    data = copy.deepcopy(thread.input)
    for source, mapping in thread.inputs_from.items():
        state = json_view(outputs.get(source))
        where = f"inputs_from {source}"
        for ipath, text in mapping.items():
            try:
                value = _compiled(text, where).search(state)
            except (JMESPathError, TypeError) as e:  # jmespath 1.1 raises TypeError for '3' > 2
                raise PlanRuntimeError(f"{where}: {text!r} failed: {e}") from e
            if value is None:
                raise PlanRuntimeError(f"{where}: {text!r} is missing from {source}'s final state")
            _set_path(data, ipath, value, where)
    return data


def _set_path(data: dict[str, Any], ipath: str, value: Any, where: str) -> None:
    parts = ipath.split(".")
    node = data
    for end, part in enumerate(parts[:-1], start=1):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise PlanRuntimeError(
                f"{where}: cannot set {ipath!r}: input {'.'.join(parts[:end])!r} is not an object"
            )
        node = child
    node[parts[-1]] = value


def condition_holds(spec: PlanSpec, name: str, outputs: Mapping[str, Any]) -> bool:
    """Whether thread ``name`` runs: its ``when`` over ``{source: final state}`` is truthy
    (JMESPath truthiness: false, null, "", [] and {} are false). True without ``when``."""
    thread = spec.threads[name]
    if thread.when is None:
        return True
    expression = _compiled(thread.when, f"when {thread.when!r}")
    data = {source: json_view(outputs.get(source)) for source in thread.sources}
    try:
        result = expression.search(data)
    except (JMESPathError, TypeError) as e:  # jmespath 1.1 raises TypeError for '3' > 2
        raise PlanRuntimeError(f"when {thread.when!r} failed: {e}") from e
    if result is None or result is False:
        return False
    if isinstance(result, str | list | dict):
        return len(result) > 0
    return True


def _kind(value: object) -> str:
    kinds = {bool: "a boolean", dict: "a mapping", list: "a list", str: "a string", int: "a number"}
    for t, name in kinds.items():
        if isinstance(value, t):
            return name
    return "a number" if isinstance(value, float) else "null" if value is None else "a value"


__all__ = [
    "PLAN_KEYS",
    "RETRY_KEYS",
    "THREAD_KEYS",
    "PlanError",
    "PlanReport",
    "PlanRuntimeError",
    "PlanSource",
    "PlanSpec",
    "RetrySpec",
    "ThreadReport",
    "ThreadSpec",
    "Workflow",
    "condition_holds",
    "critical_path",
    "describe",
    "levels",
    "load_plan",
    "mermaid",
    "read_plan",
    "referenced_workflows",
    "report",
    "thread_input",
    "topological_order",
    "validate_plan",
    "when_roots",
]
