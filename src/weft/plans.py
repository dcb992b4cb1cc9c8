"""Session plans: the spec, its validation, run-time expressions and reports.

A plan names a session's threads, each running one workflow, and the edges between them:
``after`` (start when the source succeeded), ``inputs_from`` (copy values from the source's
final state into this thread's input) and ``when`` (run only if a condition over the sources'
final states holds). Nothing here touches storage or runs anything; :mod:`weft.plan_runs`
executes plans and :mod:`weft.plan_view` draws them.

:mod:`weft.plan_checks` reads and validates plans.

Expressions are JMESPath (:class:`weft.workflows.expressions.Expression`), never Python.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from weft.errors import UnprocessableEntityError, WeftError
from weft.plan_view import PlanReport, ThreadReport, report
from weft.schema import PlanPolicy
from weft.workflows.expressions import Expression, json_view


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


# --- run time ----------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def expression(text: str) -> Expression:
    return Expression.parse(text)


def _compiled(text: str, where: str) -> Expression:
    try:
        return expression(text)
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


__all__ = [
    "PLAN_KEYS",
    "RETRY_KEYS",
    "THREAD_KEYS",
    "PlanError",
    "PlanReport",
    "PlanRuntimeError",
    "PlanSpec",
    "RetrySpec",
    "ThreadReport",
    "ThreadSpec",
    "Workflow",
    "condition_holds",
    "expression",
    "referenced_workflows",
    "report",
    "thread_input",
]
