"""What every ``weft`` command shares: options, settings, error exits, runtime and formatting.

Commands translate only: parse the options, call one runtime method through
:func:`with_runtime`, and print the result as a table (:func:`table`) or JSON
(:func:`print_json`).
"""

from __future__ import annotations

import asyncio
import json
import os
import warnings
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from weft.config import SUPPORTED_ENV_VARS, ConfigWarning, Settings
from weft.errors import ConfigError, WeftError
from weft.plans import PlanError
from weft.storage import parse_url

if TYPE_CHECKING:
    from weft.runtime import Runtime

T = TypeVar("T")

out = Console()

ENV_HELP = ", ".join(SUPPORTED_ENV_VARS)
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="weft.yaml or langgraph.json. Default: the first of weft.yaml, weft.yml, "
        f"langgraph.json in the current folder. Environment overrides: {ENV_HELP}.",
        show_default=False,
    ),
]
DatabaseOption = Annotated[
    str | None,
    typer.Option(
        "--database",
        help="Database URL (sqlite:///PATH, sqlite:///:memory:, postgresql://...); "
        "overrides the config and WEFT_DATABASE_URL.",
        show_default=False,
    ),
]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print the records as JSON instead of a table.")
]


def fail(e: WeftError) -> NoReturn:
    """Print ``error: <message>`` on stderr; exit 2 for a configuration error, 1 otherwise.
    An invalid plan prints each of its problems on a line of its own, and exits 2."""
    if isinstance(e, PlanError):
        for problem in e.problems:
            typer.echo(problem, err=True)
        count = len(e.problems)
        typer.echo(
            f"invalid plan: {count} problem{'s' if count != 1 else ''}; nothing ran", err=True
        )
        raise typer.Exit(2)
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2 if isinstance(e, ConfigError) else 1)


def load_settings(config: Path | None, database: str | None = None) -> Settings:
    """The settings from ``--config`` and the environment; ``--database`` wins over both."""
    env: dict[str, str] = dict(os.environ)
    if database is not None:
        try:
            parse_url(database)
        except WeftError as e:
            fail(ConfigError(f"--database: {e}"))
        env["WEFT_DATABASE_URL"] = database  # the option wins over the environment
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigWarning)
        try:
            settings = Settings.load(config, env=env)
        except WeftError as e:
            fail(e)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    return settings


def json_option(name: str, text: str) -> Any:
    """``text`` parsed as JSON; a configuration error (exit 2) naming ``name`` otherwise."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        fail(ConfigError(f"{name} is not valid JSON: {e.msg} at column {e.colno}"))


def json_object_option(name: str, text: str | None) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object, or None when the option was not given."""
    if text is None:
        return None
    value = json_option(name, text)
    if not isinstance(value, dict):
        fail(ConfigError(f"{name} must be a JSON object, not {type(value).__name__}"))
    return value


def with_runtime(
    config: Path | None,
    database: str | None,
    action: Callable[[Runtime], Awaitable[T]],
    *,
    execute_plans: bool = False,
) -> T:
    """Open the runtime of ``--config``/``--database``, run ``action`` on it, close it.

    The runtime runs no session plan unless ``execute_plans`` (``weft run``): a command that
    only reads must not take up plans left for a ``weft serve``. A :class:`WeftError` ends
    the command with :func:`fail`.
    """
    from weft.runtime import Runtime

    settings = load_settings(config, database)

    async def run() -> T:
        async with Runtime.open(settings, execute_plans=execute_plans) as rt:
            return await action(rt)

    try:
        return asyncio.run(run())
    except WeftError as e:
        fail(e)


# --- formatting ------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (no colours: the output is for programs)."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def table(title: str | None, columns: tuple[str, ...]) -> Table:
    """A table whose cells wrap instead of being cut, so full IDs stay readable."""
    t = Table(title=title, title_justify="left")
    for column in columns:
        t.add_column(column, overflow="fold")
    return t


def print_fields(title: str, rows: list[tuple[str, str]]) -> None:
    """A record as a two-column table: field, value."""
    t = Table(title=title, title_justify="left", show_header=False)
    t.add_column("field", style="bold", no_wrap=True)
    t.add_column("value", overflow="fold")
    for key, value in rows:
        t.add_row(key, value)
    out.print(t, highlight=False)


def when(value: datetime | str | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS`` in UTC ("" when there is none)."""
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            return when(datetime.fromisoformat(value))
        except ValueError:
            return value
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%S")


def compact(value: Any, width: int = 120) -> str:
    """``value`` on one line: text as it is, anything else as JSON; cut at ``width``."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def summary(value: Any) -> str:
    """A short description of a state value: a message list by its size and last message,
    other lists and objects by their size, scalars as they are."""
    if isinstance(value, list):
        if value and all(isinstance(m, Mapping) and "type" in m for m in value):
            last = value[-1]
            noun = "message" if len(value) == 1 else "messages"
            return f"{len(value)} {noun}; last: {last['type']}: {compact(last.get('content'), 80)}"
        return f"{len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, Mapping):
        return f"object with {len(value)} key{'' if len(value) == 1 else 's'}"
    return compact(value, 80)


__all__ = [
    "ConfigOption",
    "DatabaseOption",
    "JsonFlag",
    "compact",
    "fail",
    "json_object_option",
    "json_option",
    "load_settings",
    "out",
    "print_fields",
    "print_json",
    "summary",
    "table",
    "when",
    "with_runtime",
]
