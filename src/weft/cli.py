"""The ``weft`` command line."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from weft import __version__
from weft.config import SUPPORTED_ENV_VARS, ConfigWarning, Settings
from weft.errors import ConfigError, WeftError
from weft.storage import mask_url, open_storage

app = typer.Typer(
    help="weft: a durable, self-hosted runtime for LangGraph agents.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Inspect and migrate the database.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")

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


def _fail(e: WeftError) -> NoReturn:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(2 if isinstance(e, ConfigError) else 1)


def _settings(config: Path | None, database: str | None = None) -> Settings:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConfigWarning)
        try:
            settings = Settings.load(config)
            if database is not None:
                settings = Settings.load(config, env={"WEFT_DATABASE_URL": database})
        except WeftError as e:
            _fail(e)
    for w in caught:
        typer.echo(f"warning: {w.message}", err=True)
    return settings


async def _status(settings: Settings) -> tuple[int, list[str], list[str]]:
    async with open_storage(
        settings.database_url,
        sqlite_synchronous=settings.sqlite.synchronous,
        postgres_pool_size=settings.postgres.pool_size,
    ) as storage:
        return (
            await storage.schema_version(),
            await storage.table_names(),
            await storage.integrity_check(),
        )


def _open_and_report(settings: Settings) -> tuple[int, list[str], list[str]]:
    try:
        return asyncio.run(_status(settings))
    except WeftError as e:
        _fail(e)


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        out.print(f"weft {__version__}")
        raise typer.Exit(0)


@app.command()
def serve(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port to serve on (default 2024).")] = None,
    database: DatabaseOption = None,
    reload: Annotated[bool, typer.Option(help="Restart when source files change.")] = False,
) -> None:
    """Serve the LangGraph Platform API.

    The HTTP server is not built yet: for now this loads the configuration, opens and
    migrates the database, reports what it found and exits.
    """
    settings = _settings(config, database)
    version, tables, problems = _open_and_report(settings)
    url = mask_url(settings.database_url)
    where = f"{host or settings.http.host}:{port or settings.http.port}"
    out.print(
        f"weft {__version__}: database {url} is ready (schema version {version}, "
        f"{len(tables)} tables{', integrity problems found' if problems else ''})."
    )
    out.print(
        f"The HTTP server (http://{where}) is not built yet; it arrives with the HTTP API "
        "issue. Nothing is being served, so weft serve exits now."
        + (" (--reload has no effect yet.)" if reload else "")
    )


@db_app.command("status")
def db_status(config: ConfigOption = None, database: DatabaseOption = None) -> None:
    """Open the database, apply pending migrations and print its schema and health."""
    settings = _settings(config, database)
    version, tables, problems = _open_and_report(settings)
    table = Table(title=f"database {mask_url(settings.database_url)}")
    table.add_column("schema version")
    table.add_column("tables")
    table.add_column("integrity")
    table.add_row(str(version), ", ".join(tables), "ok" if not problems else "; ".join(problems))
    out.print(table)
    if problems:
        raise typer.Exit(1)


@db_app.command("migrate")
def db_migrate(config: ConfigOption = None, database: DatabaseOption = None) -> None:
    """Apply every pending schema migration (opening the database does this too)."""
    settings = _settings(config, database)
    version, _, _ = _open_and_report(settings)
    out.print(f"database {mask_url(settings.database_url)} is at schema version {version}")


@config_app.command("show")
def config_show(config: ConfigOption = None, database: DatabaseOption = None) -> None:
    """Print the settings weft would use, after environment overrides."""
    settings = _settings(config, database)
    table = Table(show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    table.add_row("config file", str(settings.config_path or "(none: defaults)"))
    table.add_row("database_url", mask_url(settings.database_url))
    table.add_row("http", f"{settings.http.host}:{settings.http.port}")
    table.add_row("http.max_body_bytes", str(settings.http.max_body_bytes))
    table.add_row("sqlite.synchronous", settings.sqlite.synchronous)
    table.add_row("postgres.pool_size", str(settings.postgres.pool_size))
    table.add_row("graphs", ", ".join(settings.graphs) or "(none)")
    if settings.ignored_keys:
        table.add_row("ignored langgraph.json keys", ", ".join(settings.ignored_keys))
    out.print(table)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="weft")


if __name__ == "__main__":
    main()
