"""weft's settings: where they come from and how they are checked.

:meth:`Settings.load` reads one configuration file, then applies environment overrides:

* ``weft.yaml`` (or ``weft.yml``): a YAML mapping with the keys ``database_url``, ``graphs``,
  ``env``, ``dependencies``, ``http``, ``sqlite`` and ``postgres``.
* ``langgraph.json``: LangGraph's project file. weft reads ``graphs``, ``env`` and
  ``dependencies``, plus an optional ``weft`` object holding any ``weft.yaml`` key. Keys that
  LangGraph defines but weft does not use are collected in :attr:`Settings.ignored_keys` and
  reported once with a :class:`ConfigWarning`.

Without an explicit path, the current directory is searched for ``weft.yaml``, ``weft.yml``
and ``langgraph.json``, in that order; when none exists the defaults apply.

The environment variables in :data:`SUPPORTED_ENV_VARS` override the file. An empty value
counts as unset. Other ``WEFT_*`` variables are ignored, except that a name close to a
supported one (``WEFT_DATABSE_URL``) is an error, so that a typo is not silently dropped.

A relative SQLite path is made absolute: against the config file's folder when it comes from
the file (or the default), against the current directory when it comes from
``WEFT_DATABASE_URL``. Every problem is a :class:`weft.errors.ConfigError` that names the file,
the key path and the line, or the environment variable; all problems are reported at once.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from weft.errors import ConfigError, StorageError
from weft.storage.urls import parse_url
from weft.yamldoc import KeyPath, YamlDocument, YamlSyntaxError, line_of, parse_yaml

CONFIG_FILE_NAMES = ("weft.yaml", "weft.yml", "langgraph.json")
"""Files :meth:`Settings.load` looks for in the current directory, first match wins."""

SUPPORTED_ENV_VARS: dict[str, str] = {
    "WEFT_DATABASE_URL": "database_url",
    "WEFT_HOST": "http.host",
    "WEFT_PORT": "http.port",
    "WEFT_MAX_BODY_BYTES": "http.max_body_bytes",
    "WEFT_ACCESS_LOG": "http.access_log",
    "WEFT_SQLITE_SYNCHRONOUS": "sqlite.synchronous",
    "WEFT_POSTGRES_POOL_SIZE": "postgres.pool_size",
}
"""Environment variable -> the dotted settings key it overrides."""

LANGGRAPH_IGNORED_KEYS = frozenset(
    {
        "python_version",
        "node_version",
        "pip_config_file",
        "pip_installer",
        "dockerfile_lines",
        "image_distro",
        "base_image",
        "store",
        "checkpointer",
        "auth",
        "http",
        "ui",
        "ui_config",
        "keep_pkg_tools",
        "webhooks",
        "api_version",
    }
)
"""langgraph.json keys that LangGraph defines and weft accepts without using them."""

FILE_KEYS = (
    "database_url",
    "graphs",
    "env",
    "dependencies",
    "http",
    "sqlite",
    "postgres",
    "runs",
    "plans",
)
"""Keys of a weft.yaml file (and of the ``weft`` object in langgraph.json)."""

_LANGGRAPH_KEYS = ("graphs", "env", "dependencies", "weft")
_ENV_TEST_PREFIX = "WEFT_TEST_"
_MIB = 1024 * 1024

Key = KeyPath


class ConfigWarning(UserWarning):
    """A configuration file holds something weft accepts but does not use."""


class HttpSettings(BaseModel):
    """The HTTP server."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 2024
    max_body_bytes: Annotated[int, Field(gt=0)] = 10 * _MIB
    shutdown_grace: Annotated[float, Field(ge=0)] = 10.0
    access_log: bool = False
    """One log line per request (off by default: it costs a few percent of throughput)."""


class SqliteSettings(BaseModel):
    """Options used when ``database_url`` is a SQLite URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    synchronous: Literal["full", "normal"] = "full"


class PostgresSettings(BaseModel):
    """Options used when ``database_url`` is a PostgreSQL URL."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pool_size: Annotated[int, Field(ge=1, le=1000)] = 10


class RunsSettings(BaseModel):
    """The run engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    concurrency: Annotated[int, Field(ge=1, le=10000)] = 64
    """Runs executing at once in this process."""
    default_timeout: Annotated[float, Field(gt=0)] = 3600.0
    """Seconds a run may take when its workflow sets no ``timeout``."""
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 3
    """Attempts of a run whose failure is the infrastructure's (the database), not the graph's."""
    allow_private_webhooks: bool = False
    """Allow webhooks to loopback, private and link-local addresses (off: refused)."""
    cron_poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    """Most seconds the cron scheduler waits before looking for due crons again (crons
    created by other processes are seen within this time)."""


class PlansSettings(BaseModel):
    """Session plans (dependency plans run by ``weft run`` and ``POST /sessions/{id}/run``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lease_seconds: Annotated[float, Field(gt=0, le=3600)] = 10.0
    """A running plan belongs to the process that renews its lease within this time; after
    a crash another process (or the restarted one) takes it up once the lease ran out."""
    poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 1.0
    """Most seconds before a process looks for running plans nobody holds."""


_SECTIONS: dict[str, type[BaseModel]] = {
    "http": HttpSettings,
    "plans": PlansSettings,
    "runs": RunsSettings,
    "sqlite": SqliteSettings,
    "postgres": PostgresSettings,
}


class Settings(BaseModel):
    """Validated, immutable settings. Build them with :meth:`load`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    config_path: Path | None = None
    """The file the settings came from, or None."""
    base_dir: Path = Field(default_factory=Path.cwd)
    """Folder that relative paths in the file are resolved against (absolute)."""
    database_url: str = ""
    """Database URL; a SQLite file path is always absolute. Default: base_dir/.weft/weft.db."""
    graphs: dict[str, str] = Field(default_factory=dict)
    """graph_id -> "path/file.py:attr", "pkg.module:attr" or "path/workflow.yaml"."""
    env: dict[str, str] | str | None = None
    """Variables for the graphs: a mapping, or the path of a .env file."""
    dependencies: list[str] = Field(default_factory=list)
    http: HttpSettings = Field(default_factory=HttpSettings)
    runs: RunsSettings = Field(default_factory=RunsSettings)
    plans: PlansSettings = Field(default_factory=PlansSettings)
    sqlite: SqliteSettings = Field(default_factory=SqliteSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    ignored_keys: tuple[str, ...] = ()
    """langgraph.json keys that were present but are not used by weft."""

    @model_validator(mode="before")
    @classmethod
    def _fill_database_url(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and "database_url" not in data:
            data = dict(data)
            base = data.get("base_dir")
            if base is None:
                base = Path.cwd()
                data["base_dir"] = base
            if isinstance(base, str | os.PathLike):
                data["database_url"] = default_database_url(Path(os.path.abspath(base)))
        return data

    @field_validator("base_dir")
    @classmethod
    def _absolute_base_dir(cls, value: Path) -> Path:
        return Path(os.path.abspath(value))

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str, info: ValidationInfo) -> str:
        base = info.data.get("base_dir")
        try:
            return resolve_database_url(value, base if isinstance(base, Path) else Path.cwd())
        except StorageError as e:
            raise ValueError(e.message) from e

    @field_validator("env", mode="before")
    @classmethod
    def _check_env(cls, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, Mapping):
            bad = [
                str(k) for k, v in value.items() if not isinstance(k, str) or not isinstance(v, str)
            ]
            if bad:
                raise ValueError(
                    "variable names and values must be strings (quote them); "
                    f"check {', '.join(bad)}"
                )
            return dict(value)
        raise ValueError(
            f"must be a mapping of variables or the path of a .env file, not {_kind(value)}"
        )

    @classmethod
    def load(
        cls, path: str | Path | None = None, *, env: Mapping[str, str] | None = None
    ) -> Settings:
        """Read ``path`` (or the file found in the current directory), then apply ``env``.

        ``env`` defaults to ``os.environ``. Raises :class:`ConfigError` listing every problem.
        """
        environ: Mapping[str, str] = os.environ if env is None else env
        cwd = Path.cwd()
        if path is None:
            found = next((cwd / n for n in CONFIG_FILE_NAMES if (cwd / n).is_file()), None)
        else:
            found = Path(path)
            if not found.exists():
                raise ConfigError(f"config file {found} does not exist")
            if found.is_dir():
                raise ConfigError(
                    f"config file {found} is a directory; pass the weft.yaml or "
                    f"langgraph.json inside it"
                )
        doc = _read_document(found) if found is not None else _Document(label="configuration")
        problems = list(doc.problems)

        data = dict(doc.data)
        overrides = _apply_env(environ, data, cwd, problems)
        if found is not None:
            data["config_path"] = Path(os.path.abspath(found))
            data["base_dir"] = data["config_path"].parent
        else:
            data["base_dir"] = cwd
        data["ignored_keys"] = doc.ignored

        settings: Settings | None = None
        try:
            settings = cls.model_validate(data)
        except ValidationError as e:
            problems.extend(_from_pydantic(err, doc, overrides) for err in e.errors())
        if problems or settings is None:
            raise ConfigError(_render(problems, doc))
        if doc.ignored:
            warnings.warn(
                f"{doc.label}: weft does not use these langgraph.json keys: "
                f"{', '.join(doc.ignored)}",
                ConfigWarning,
                stacklevel=2,
            )
        return settings


def default_database_url(base_dir: Path) -> str:
    """``sqlite:///<base_dir>/.weft/weft.db`` with ``base_dir`` made absolute."""
    return f"sqlite:///{Path(os.path.abspath(base_dir)) / '.weft' / 'weft.db'}"


def resolve_database_url(url: str, base_dir: Path) -> str:
    """Validate ``url`` and make a relative SQLite file path absolute against ``base_dir``.

    ``:memory:`` and PostgreSQL URLs are returned as they are. Raises StorageError.
    """
    parsed = parse_url(url)
    if parsed.path is None:
        return parsed.raw
    target = parsed.path.expanduser()
    if not target.is_absolute():
        target = Path(os.path.normpath(Path(os.path.abspath(base_dir)) / target))
    return f"sqlite:///{target}"


# --- reading files ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Problem:
    message: str
    key: Key | None = None  # path inside the file
    env_var: str | None = None


@dataclass
class _Document:
    label: str  # how messages name the source
    data: dict[str, Any] = field(default_factory=dict)  # weft keys -> raw values
    origin: dict[str, Key] = field(default_factory=dict)  # weft key -> prefix inside the file
    lines: dict[Key, int] = field(default_factory=dict)  # key path in the file -> line (1-based)
    problems: list[_Problem] = field(default_factory=list)
    ignored: tuple[str, ...] = ()


def _read_document(path: Path) -> _Document:
    label = str(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".json"):
        raise ConfigError(
            f"{label}: unsupported config file type {path.suffix or '(none)'!r}; "
            f"use weft.yaml or langgraph.json"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise ConfigError(f"cannot read config file {label}: {e.strerror or e}") from e
    doc = _Document(label=label)
    if suffix == ".json":
        _read_langgraph_json(text, doc)
    else:
        _read_weft_yaml(text, doc)
    return doc


def _read_weft_yaml(text: str, doc: _Document) -> None:
    try:
        parsed = parse_yaml(text)
    except YamlSyntaxError as e:
        raise ConfigError(f"{doc.label}: {e.message}") from e
    _take_lines(parsed, doc)
    raw = parsed.data
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{doc.label}: the top level must be a mapping of settings, not {_kind(raw)}"
        )
    doc.data = _take_weft_keys(raw, (), doc)


def _read_langgraph_json(text: str, doc: _Document) -> None:
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{doc.label}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from e
    with contextlib.suppress(YamlSyntaxError):  # no line numbers, then
        _take_lines(parse_yaml(text), doc)
    if not isinstance(raw, dict):
        raise ConfigError(f"{doc.label}: the top level must be a JSON object, not {_kind(raw)}")
    ignored: list[str] = []
    for key, value in raw.items():
        if key in ("graphs", "env", "dependencies"):
            if value is not None:
                doc.data[key] = value
        elif key in LANGGRAPH_IGNORED_KEYS:
            ignored.append(key)
        elif key not in ("weft", "$schema"):
            candidates = (*_LANGGRAPH_KEYS, *sorted(LANGGRAPH_IGNORED_KEYS))
            doc.problems.append(_unknown_key((key,), key, _LANGGRAPH_KEYS, candidates))
    doc.ignored = tuple(ignored)
    inner = raw.get("weft")
    if inner is None:
        return
    if not isinstance(inner, dict):
        doc.problems.append(
            _Problem(f"must be an object of weft settings, not {_kind(inner)}", key=("weft",))
        )
        return
    for key, value in _take_weft_keys(inner, ("weft",), doc).items():
        if key in doc.data:
            doc.problems.append(
                _Problem(f"{key!r} is also set at the top level; set it once", key=("weft", key))
            )
        else:
            doc.data[key] = value
            doc.origin[key] = ("weft",)


def _take_weft_keys(raw: Mapping[Any, Any], prefix: Key, doc: _Document) -> dict[str, Any]:
    """The known weft keys of ``raw``; unknown keys become problems. Empty values are unset."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key)
        if name not in FILE_KEYS:
            doc.problems.append(_unknown_key((*prefix, name), name, FILE_KEYS))
            continue
        if value is None and name != "database_url":
            continue
        section = _SECTIONS.get(name)
        if section is not None and isinstance(value, Mapping):
            allowed = tuple(section.model_fields)
            value = dict(value)
            for sub in list(value):
                if str(sub) not in allowed:
                    doc.problems.append(_unknown_key((*prefix, name, str(sub)), str(sub), allowed))
                    del value[sub]
        out[name] = value
    return out


def _unknown_key(
    key: Key, name: str, allowed: tuple[str, ...], candidates: tuple[str, ...] | None = None
) -> _Problem:
    close = difflib.get_close_matches(name, candidates or allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return _Problem(f"unknown key{hint} (allowed: {', '.join(allowed)})", key=key)


def _take_lines(parsed: YamlDocument, doc: _Document) -> None:
    """Keep the line of every key path and report duplicate keys."""
    doc.lines.update(parsed.lines)
    doc.problems.extend(_Problem(d.message, d.path) for d in parsed.duplicates)


# --- environment ---------------------------------------------------------------------------


def _apply_env(
    environ: Mapping[str, str], data: dict[str, Any], cwd: Path, problems: list[_Problem]
) -> dict[Key, str]:
    """Put the overrides from ``environ`` into ``data``; return settings key -> variable."""
    for name in sorted(environ):
        if (
            not name.startswith("WEFT_")
            or name in SUPPORTED_ENV_VARS
            or name.startswith(_ENV_TEST_PREFIX)
        ):
            continue
        close = difflib.get_close_matches(name, SUPPORTED_ENV_VARS, n=1, cutoff=0.8)
        if close:
            problems.append(_Problem(f"not a weft setting; did you mean {close[0]}?", env_var=name))
    overrides: dict[Key, str] = {}
    for var, dotted in SUPPORTED_ENV_VARS.items():
        value = environ.get(var, "").strip()
        if not value:
            continue
        key: Key = tuple(dotted.split("."))
        if dotted == "database_url":
            try:
                value = resolve_database_url(value, cwd)
            except StorageError as e:
                problems.append(_Problem(e.message, env_var=var))
                continue
            data["database_url"] = value
        else:
            section, sub = dotted.split(".")
            current = data.get(section, {})
            if not isinstance(current, Mapping):
                continue  # the file's own value is reported as wrong
            data[section] = {**current, sub: value}
        overrides[key] = var
    return overrides


# --- messages ------------------------------------------------------------------------------


def _from_pydantic(err: ErrorDetails, doc: _Document, overrides: Mapping[Key, str]) -> _Problem:
    loc: Key = tuple(err["loc"])
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        message = str(err.get("ctx", {})["error"])
    else:
        message = err["msg"]
        value = err.get("input")
        if isinstance(value, str | int | float | bool) and err["type"] != "missing":
            message += f" (got {value!r})"
    for key, var in overrides.items():
        if loc[: len(key)] == key:
            return _Problem(message, env_var=var)
    prefix = doc.origin.get(str(loc[0]), ()) if loc else ()
    return _Problem(message, key=(*prefix, *loc))


def _render(problems: list[_Problem], doc: _Document) -> str:
    rendered: list[tuple[int, int, str]] = []
    for p in problems:
        if p.env_var is not None:
            rendered.append((1, 0, f"environment variable {p.env_var}: {p.message}"))
            continue
        if p.key is None:
            rendered.append((0, 0, f"{doc.label}: {p.message}"))
            continue
        line = line_of(p.key, doc.lines)
        where = _key_text(p.key) + (f" (line {line})" if line else "")
        rendered.append((0, line or 0, f"{doc.label}: {where}: {p.message}"))
    rendered.sort(key=lambda r: (r[0], r[1]))
    return "\n".join(text for _, _, text in rendered)


def _key_text(key: Key) -> str:
    text = ""
    for part in key:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else part
    return text or "(top level)"


def _kind(value: object) -> str:
    kinds = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "a number"}
    for t, name in kinds.items():
        if isinstance(value, t):
            return name
    return "a number" if isinstance(value, float) else type(value).__name__


__all__ = [
    "CONFIG_FILE_NAMES",
    "FILE_KEYS",
    "LANGGRAPH_IGNORED_KEYS",
    "SUPPORTED_ENV_VARS",
    "ConfigWarning",
    "HttpSettings",
    "PostgresSettings",
    "Settings",
    "SqliteSettings",
    "default_database_url",
    "resolve_database_url",
]
