"""The graphs a project declares, loaded once from :class:`weft.config.Settings`.

A ``graphs`` entry is one of:

* ``"path/file.py:attr"``: a Python file, relative to the config file's folder. It is
  imported under a unique module name, with its folder on ``sys.path`` while it imports.
* ``"package.module:attr"``: an importable module. Local ``dependencies`` (``"."``,
  ``"./src"``) are put on ``sys.path`` first, as ``langgraph.json``'s ``"."`` does.
* ``"path/workflow.yaml"`` (or ``.yml``): a weft YAML workflow (:mod:`weft.workflows`).

A Python attribute may be a compiled graph, a ``StateGraph`` (compiled here) or a factory:
a function (sync or async) of no argument or of the run's ``RunnableConfig`` that returns
either. Factories are called for every :meth:`GraphRegistry.graph` call, as LangGraph
Platform does; other graphs are compiled once per checkpointer and store.

``env`` is applied to ``os.environ`` before anything is imported, without overwriting
variables that are already set. Every problem is a :class:`weft.errors.ConfigError` naming
the config file, ``graphs.<id>``, the file and the cause.
"""

from __future__ import annotations

import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel

from weft.config import Settings
from weft.errors import ConfigError, NotFoundError
from weft.refs import (
    Ref,
    RefError,
    describe_exception,
    get_attr,
    load_module,
    parse_ref,
    resolve_path,
)

if TYPE_CHECKING:
    from weft.workflows import WorkflowSpec

CompiledGraph = Pregel[Any, Any, Any, Any]
Builder = StateGraph[Any, Any, Any, Any]
GraphKind = Literal["python", "yaml"]

_YAML_SUFFIXES = (".yaml", ".yml")
_DEFAULT_PREGEL_NAME = "LangGraph"


@dataclass(frozen=True)
class GraphEntry:
    """One configured graph."""

    graph_id: str
    source: str
    """The entry as written in the config file."""
    kind: GraphKind
    description: str | None = None
    timeout: float | None = None
    """Seconds a run may take (YAML ``timeout``); None for Python graphs."""
    max_iterations: int | None = None
    """Supersteps a run may take (YAML ``max_iterations``); None for Python graphs."""
    path: Path | None = None
    """The file the graph comes from (the module's file for ``package.module:attr``)."""
    is_factory: bool = False
    """Whether the graph is built by a function for every run."""


@dataclass
class _Target:
    """What an entry resolved to."""

    entry: GraphEntry
    graph: CompiledGraph | None = None
    builder: Builder | None = None
    factory: Callable[..., Any] | None = None
    factory_takes_config: bool = False
    spec: WorkflowSpec | None = None
    interrupt_before: list[str] | None = None
    interrupt_after: list[str] | None = None


@dataclass
class _Cached:
    checkpointer: Any
    store: Any
    graph: CompiledGraph


@dataclass
class GraphRegistry:
    """Every configured graph, by id. Build it with :meth:`load`."""

    settings: Settings
    _targets: dict[str, _Target] = field(default_factory=dict)
    _cache: dict[tuple[str, int, int], _Cached] = field(default_factory=dict)
    _resolving: list[str] = field(default_factory=list)
    _subgraphs: dict[str, CompiledGraph] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings) -> GraphRegistry:
        """Apply ``env``, put ``dependencies`` on ``sys.path`` and load every graph.

        Python files are imported and YAML workflows loaded and compiled now, so that a
        broken graph stops start-up. Raises :class:`ConfigError`.
        """
        registry = cls(settings)
        apply_env(settings)
        _add_dependencies(settings)
        modules: dict[str, ModuleType] = {}
        for graph_id, source in settings.graphs.items():
            registry._targets[graph_id] = registry._load_entry(graph_id, source, modules)
        for target in registry._targets.values():
            if target.spec is not None and target.builder is None:
                registry._compile_yaml(target)
        return registry

    # --- lookup ---------------------------------------------------------------------------

    def ids(self) -> list[str]:
        """Graph ids, in the order of the config file."""
        return list(self._targets)

    def __contains__(self, graph_id: object) -> bool:
        return graph_id in self._targets

    def entry(self, graph_id: str) -> GraphEntry:
        """The entry of ``graph_id``; :class:`NotFoundError` listing the known ids."""
        return self._target(graph_id).entry

    def _target(self, graph_id: str) -> _Target:
        target = self._targets.get(graph_id)
        if target is None:
            known = ", ".join(repr(g) for g in self._targets) or "none are configured"
            raise NotFoundError(f"graph {graph_id!r} not found; known graphs: {known}")
        return target

    async def graph(
        self,
        graph_id: str,
        config: RunnableConfig | None = None,
        *,
        checkpointer: Any = None,
        store: Any = None,
    ) -> CompiledGraph:
        """A compiled graph bound to ``checkpointer`` and ``store``.

        A factory is called with ``config`` every time; other graphs are compiled once per
        (graph, checkpointer, store) and reused. A ``None`` checkpointer or store leaves
        the graph's own. The graph keeps its interrupt_before/after settings.
        """
        target = self._target(graph_id)
        if target.factory is not None:
            return await self._from_factory(target, config, checkpointer, store)
        key = (graph_id, id(checkpointer), id(store))
        cached = self._cache.get(key)
        if cached is not None and cached.checkpointer is checkpointer and cached.store is store:
            return cached.graph
        compiled = self._compile(target, checkpointer, store)
        self._cache[key] = _Cached(checkpointer, store, compiled)
        return compiled

    # --- compiling ------------------------------------------------------------------------

    def _compile(self, target: _Target, checkpointer: Any, store: Any) -> CompiledGraph:
        graph_id = target.entry.graph_id
        if target.graph is not None:
            return _bind(target.graph, graph_id, checkpointer, store)
        assert target.builder is not None
        compiled: CompiledGraph = target.builder.compile(
            checkpointer=checkpointer,
            store=store,
            interrupt_before=target.interrupt_before or None,
            interrupt_after=target.interrupt_after or None,
            name=graph_id,
        )
        if target.entry.max_iterations is not None:
            compiled = compiled.with_config(recursion_limit=target.entry.max_iterations)
        return compiled

    async def _from_factory(
        self, target: _Target, config: RunnableConfig | None, checkpointer: Any, store: Any
    ) -> CompiledGraph:
        assert target.factory is not None
        run_config: RunnableConfig = dict(config or {})  # type: ignore[assignment]
        run_config["configurable"] = dict(run_config.get("configurable") or {})
        value = target.factory(run_config) if target.factory_takes_config else target.factory()
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, Pregel):
            return _bind(value, target.entry.graph_id, checkpointer, store)
        if isinstance(value, StateGraph):
            compiled: CompiledGraph = value.compile(
                checkpointer=checkpointer, store=store, name=target.entry.graph_id
            )
            return compiled
        raise self._error(
            target.entry.graph_id,
            f"the factory {target.entry.source} returned {_describe(value)}, "
            "not a compiled graph or a StateGraph",
        )

    def _compile_yaml(self, target: _Target) -> None:
        """Build the StateGraph of a YAML workflow (once; other graphs may need it first)."""
        from weft.workflows import compile_workflow

        assert target.spec is not None
        graph_id = target.entry.graph_id
        if graph_id in self._resolving:
            cycle = " -> ".join([*self._resolving[self._resolving.index(graph_id) :], graph_id])
            raise ConfigError(f"workflows use each other as subgraphs: {cycle}")
        self._resolving.append(graph_id)
        try:
            target.builder = compile_workflow(target.spec, resolve_graph=self._subgraph)
        finally:
            self._resolving.pop()

    def _subgraph(self, graph_id: str) -> CompiledGraph:
        """``graph_id`` compiled without a checkpointer, to run as a workflow's node.

        Errors carry no location: the workflow compiler adds the file, line and node.
        """
        if graph_id in self._subgraphs:
            return self._subgraphs[graph_id]
        target = self._target(graph_id)
        if target.spec is not None and target.builder is None:
            self._compile_yaml(target)
        if target.factory is not None:
            value = (
                target.factory(RunnableConfig(configurable={}))
                if target.factory_takes_config
                else target.factory()
            )
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise ConfigError(
                    f"graph {graph_id!r} is built by an async factory ({target.entry.source}); "
                    "a subgraph must be a graph, a StateGraph or a sync factory"
                )
            if isinstance(value, StateGraph):
                value = value.compile()
            if not isinstance(value, Pregel):
                raise ConfigError(
                    f"graph {graph_id!r}: the factory {target.entry.source} returned "
                    f"{_describe(value)}, not a compiled graph or a StateGraph"
                )
            compiled: CompiledGraph = value
        else:
            compiled = self._compile(target, None, None)
        self._subgraphs[graph_id] = compiled
        return compiled

    # --- loading --------------------------------------------------------------------------

    def _error(self, graph_id: str, message: str) -> ConfigError:
        label = self.settings.config_path or "configuration"
        return ConfigError(f"{label}: graphs.{graph_id}: {message}")

    def _load_entry(self, graph_id: str, source: str, modules: dict[str, ModuleType]) -> _Target:
        text = source.strip()
        if text.lower().endswith(_YAML_SUFFIXES):
            return self._load_yaml(graph_id, text)
        try:
            ref = parse_ref(text)
        except RefError:
            raise self._error(
                graph_id,
                f"{source!r} is not a graph reference; write path/file.py:attribute, "
                "package.module:attribute or path/workflow.yaml",
            ) from None
        try:
            module = load_module(
                ref,
                base_dir=self.settings.base_dir,
                modules=modules,
                prefix="weft_graph",
                on_sys_path=True,
            )
        except RefError as e:
            raise self._error(graph_id, self._import_problem(ref, e)) from None
        file = getattr(module, "__file__", None)  # `python -c` has a __main__ without one
        path = Path(file) if file else None
        where = str(path) if path is not None else ref.module
        try:
            value = get_attr(module, ref.attr, where=where)
        except RefError as e:
            found = _graph_like(module)
            listing = (
                f"graph-like attributes there: {', '.join(found)}"
                if found
                else "it defines no compiled graph or StateGraph"
            )
            raise self._error(graph_id, f"{e}; {listing}") from None
        entry = GraphEntry(graph_id=graph_id, source=source, kind="python", path=path)
        if isinstance(value, Pregel):
            return _Target(entry, graph=value)
        if isinstance(value, StateGraph):
            return _Target(entry, builder=value)
        if callable(value) and not isinstance(value, type):
            entry = GraphEntry(
                graph_id=graph_id, source=source, kind="python", path=path, is_factory=True
            )
            return _Target(entry, factory=value, factory_takes_config=_takes_argument(value))
        raise self._error(
            graph_id,
            f"{where}:{ref.attr} is {_describe(value)}, not a compiled graph, a StateGraph "
            "or a function that returns one",
        )

    def _load_yaml(self, graph_id: str, source: str) -> _Target:
        path = self._resolve(source)
        if not path.is_file():
            what = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise self._error(graph_id, f"workflow file {path} {what}")
        try:
            from weft.workflows import load_workflow
        except ImportError as e:
            raise self._error(
                graph_id, f"cannot load workflow {path}: YAML workflows are unavailable ({e})"
            ) from e
        spec = load_workflow(path, known_graphs=list(self.settings.graphs))
        entry = GraphEntry(
            graph_id=graph_id,
            source=source,
            kind="yaml",
            description=spec.description,
            timeout=spec.timeout,
            max_iterations=spec.max_iterations,
            path=path,
        )
        return _Target(
            entry,
            spec=spec,
            interrupt_before=list(spec.interrupt_before or []),
            interrupt_after=list(spec.interrupt_after or []),
        )

    def _resolve(self, ref: str) -> Path:
        return resolve_path(ref, self.settings.base_dir)

    def _import_problem(self, ref: Ref, e: RefError) -> str:
        if e.kind == "module_missing":
            paths = [str(self._resolve(d)) for d in self.settings.dependencies]
            hint = (
                f"searched the dependencies {', '.join(paths)} and installed packages"
                if paths
                else 'add its folder to "dependencies" (for example ["."]) or install it'
            )
            return f"no module named {ref.module!r}; {hint}"
        if e.kind == "import_failed" and e.cause is not None:
            return f"importing {e.where} failed: {self._cause(e.cause)}"
        return str(e)

    def _cause(self, e: BaseException) -> str:
        """``Type: message`` and where in the project's own files it was raised."""
        text = describe_exception(e)
        if isinstance(e, SyntaxError) and e.filename and e.lineno:
            return f"{type(e).__name__}: {e.msg} ({e.filename}, line {e.lineno})"
        base = str(self.settings.base_dir)
        for dependency in self.settings.dependencies:
            base = os.path.commonpath([base, str(self._resolve(dependency))])
        frames = [
            f
            for f in traceback.extract_tb(e.__traceback__)
            if f.filename.startswith(base + os.sep) and "site-packages" not in f.filename
        ]
        if frames:
            text += f" ({frames[-1].filename}, line {frames[-1].lineno})"
        return text


# --- environment and dependencies -----------------------------------------------------------


def apply_env(settings: Settings) -> dict[str, str]:
    """Put ``settings.env`` into ``os.environ`` (keeping variables already set).

    A string is the path of a .env file relative to ``base_dir``. Returns the variables read.
    """
    if settings.env is None:
        return {}
    if isinstance(settings.env, Mapping):
        values = dict(settings.env)
    else:
        path = Path(settings.env).expanduser()
        if not path.is_absolute():
            path = settings.base_dir / path
        label = settings.config_path or "configuration"
        if not path.is_file():
            raise ConfigError(f"{label}: env: the .env file {path} does not exist")
        values = read_dotenv(path)
    for key, value in values.items():
        os.environ.setdefault(key, value)
    return values


_DOTENV_LINE = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=\s*(.*)$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a .env file: ``KEY=VALUE`` lines, ``export``, comments, single and double quotes.

    Double-quoted values understand ``\\n``, ``\\t``, ``\\"`` and ``\\\\``; single-quoted ones
    are literal; an unquoted value ends at `` #``. Raises ConfigError naming file and line.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the .env file {path}: {e}") from e
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _DOTENV_LINE.match(line)
        if match is None:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {raw.strip()!r}")
        key, rest = match.group(1), match.group(2)
        try:
            values[key] = _dotenv_value(rest)
        except ValueError as e:
            raise ConfigError(f"{path}:{number}: {key}: {e}") from None
    return values


def _dotenv_value(rest: str) -> str:
    if not rest:
        return ""
    quote = rest[0]
    if quote not in ("'", '"'):
        return re.split(r"\s#", rest, maxsplit=1)[0].strip()
    out: list[str] = []
    i = 1
    while i < len(rest):
        ch = rest[i]
        if ch == quote:
            tail = rest[i + 1 :].strip()
            if tail and not tail.startswith("#"):
                raise ValueError(f"unexpected text after the closing quote: {tail!r}")
            return "".join(out)
        if ch == "\\" and quote == '"' and i + 1 < len(rest):
            nxt = rest[i + 1]
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    raise ValueError(f"the value's opening {quote} is never closed")


def _add_dependencies(settings: Settings) -> None:
    """Put local ``dependencies`` on ``sys.path`` (first); package names are left alone."""
    label = settings.config_path or "configuration"
    for index, dependency in reversed(list(enumerate(settings.dependencies))):
        local = dependency.startswith((".", "/", "~")) or os.sep in dependency
        path = Path(dependency).expanduser()
        if not path.is_absolute():
            path = settings.base_dir / path
        path = Path(os.path.normpath(path))
        if not path.is_dir():
            if local:
                raise ConfigError(
                    f"{label}: dependencies[{index}]: the folder {path} does not exist"
                )
            continue  # a package name: expected to be installed
        if str(path) in sys.path:
            sys.path.remove(str(path))
        sys.path.insert(0, str(path))


# --- helpers ---------------------------------------------------------------------------------


def _bind(graph: CompiledGraph, graph_id: str, checkpointer: Any, store: Any) -> CompiledGraph:
    update: dict[str, Any] = {}
    if checkpointer is not None:
        update["checkpointer"] = checkpointer
    if store is not None:
        update["store"] = store
    if graph.name == _DEFAULT_PREGEL_NAME:
        update["name"] = graph_id
    return graph.copy(update=update) if update else graph


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in parameters
    )


def _graph_like(module: ModuleType) -> list[str]:
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and isinstance(value, Pregel | StateGraph)
    )


def _describe(value: object) -> str:
    if value is None:
        return "None"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name}"


__all__ = ["GraphEntry", "GraphRegistry", "apply_env", "read_dotenv"]
