"""The ``weft`` command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from weft import __version__
from weft.cli_common import ConfigOption, DatabaseOption, fail, json_option, load_settings, out
from weft.cli_plans import plan_app
from weft.cli_plans import run as run_plan
from weft.cli_sessions import sessions_app
from weft.cli_threads import doctor, threads_app
from weft.config import Settings
from weft.errors import ConfigError, WeftError
from weft.jsonable import to_jsonable
from weft.storage import mask_url, open_storage
from weft.threads import new_thread_id

app = typer.Typer(
    help="weft: a durable, self-hosted runtime for LangGraph agents.",
    no_args_is_help=True,
    add_completion=False,
)
db_app = typer.Typer(help="Inspect and migrate the database.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
graph_app = typer.Typer(help="Look at one registered graph.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(config_app, name="config")
app.add_typer(graph_app, name="graph")
app.add_typer(threads_app, name="threads")
app.add_typer(sessions_app, name="sessions")
app.add_typer(plan_app, name="plan")
app.command("run")(run_plan)
app.command("doctor")(doctor)


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
        fail(e)


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
    port: Annotated[
        int | None,
        typer.Option(help="Port to serve on (default 2024); when taken, the next free one."),
    ] = None,
    database: DatabaseOption = None,
    reload: Annotated[
        bool, typer.Option(help="Restart when a source file changes (for development).")
    ] = False,
    access_log: Annotated[
        bool | None,
        typer.Option(
            "--access-log/--no-access-log",
            help="Log one line per request (default: http.access_log, off).",
        ),
    ] = None,
) -> None:
    """Serve the LangGraph Platform API (and weft's /sessions) over HTTP.

    Loads the graphs, opens and migrates the database, takes up runs a stopped server left,
    then serves until Ctrl-C or SIGTERM. On shutdown, in-flight runs get http.shutdown_grace
    seconds; runs still going are left to resume at the next start. Prints the URL it serves
    (the next free port when the asked one is taken); API docs are at /docs.
    """
    from weft.api.server import serve as run_server
    from weft.graphs import GraphRegistry

    settings = load_settings(config, database)
    try:
        GraphRegistry.load(settings)
    except WeftError as e:
        fail(e)
    _open_and_report(settings)
    try:
        run_server(
            settings,
            host=host or settings.http.host,
            port=settings.http.port if port is None else port,
            reload=reload,
            access_log=settings.http.access_log if access_log is None else access_log,
            announce=lambda line: out.print(line, soft_wrap=True),
        )
    except WeftError as e:
        fail(e)


@db_app.command("status")
def db_status(config: ConfigOption = None, database: DatabaseOption = None) -> None:
    """Open the database, apply pending migrations and print its schema and health."""
    settings = load_settings(config, database)
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
    settings = load_settings(config, database)
    version, _, _ = _open_and_report(settings)
    out.print(f"database {mask_url(settings.database_url)} is at schema version {version}")


@config_app.command("show")
def config_show(config: ConfigOption = None, database: DatabaseOption = None) -> None:
    """Print the settings weft would use, after environment overrides."""
    settings = load_settings(config, database)
    rows = [
        ("config file", str(settings.config_path or "(none: defaults)")),
        ("database_url", mask_url(settings.database_url)),
        ("http", f"{settings.http.host}:{settings.http.port}"),
        ("http.max_body_bytes", str(settings.http.max_body_bytes)),
        ("sqlite.synchronous", settings.sqlite.synchronous),
        ("postgres.pool_size", str(settings.postgres.pool_size)),
        ("graphs", ", ".join(settings.graphs) or "(none)"),
    ]
    if settings.ignored_keys:
        rows.append(("ignored langgraph.json keys", ", ".join(settings.ignored_keys)))
    for key, value in rows:
        typer.echo(f"{key}: {value}")


@app.command()
def validate(
    files: Annotated[list[Path], typer.Argument(help="YAML workflow files to check.")],
    config: ConfigOption = None,
) -> None:
    """Check YAML workflows without running them.

    Prints every problem as FILE:LINE: PATH: MESSAGE. Exits 0 when every file is valid,
    2 otherwise. Subgraph references are checked against the configured graphs when a
    configuration file is found.
    """
    from weft.workflows import validate_workflow_file

    known: list[str] | None = None
    if config is not None or any(
        Path(n).is_file() for n in ("weft.yaml", "weft.yml", "langgraph.json")
    ):
        known = list(load_settings(config).graphs)
    failed = False
    for path in files:
        problems = validate_workflow_file(path, known_graphs=known)
        if problems:
            failed = True
            for problem in problems:
                typer.echo(problem, err=True)
        else:
            out.print(f"{path}: valid", highlight=False)
    if failed:
        raise typer.Exit(2)


def _registry(config: Path | None) -> Any:
    from weft.graphs import GraphRegistry

    settings = load_settings(config)
    try:
        return GraphRegistry.load(settings)
    except WeftError as e:
        fail(e)


@app.command()
def graphs(config: ConfigOption = None) -> None:
    """List the registered graphs with their system assistant ids."""
    from weft.assistants import system_assistant_id

    registry = _registry(config)
    table = Table(title="graphs")
    for column in ("graph_id", "kind", "source", "assistant_id", "description"):
        table.add_column(column, overflow="fold")
    for graph_id in registry.ids():
        entry = registry.entry(graph_id)
        table.add_row(
            graph_id,
            entry.kind,
            entry.source,
            str(system_assistant_id(graph_id)),
            entry.description or "",
        )
    out.print(table)


@graph_app.command("show")
def graph_show(
    graph_id: Annotated[str, typer.Argument(help="A graph id from `weft graphs`.")],
    config: ConfigOption = None,
    ascii_art: Annotated[
        bool, typer.Option("--ascii", help="Draw with characters instead of Mermaid text.")
    ] = False,
    xray: Annotated[int, typer.Option(help="Subgraph depth to expand (0: none).")] = 0,
) -> None:
    """Print a graph's nodes and edges as Mermaid text (or ASCII art)."""
    registry = _registry(config)

    async def draw() -> str:
        graph = await registry.graph(graph_id)
        drawable = graph.get_graph(xray=xray)
        return str(drawable.draw_ascii() if ascii_art else drawable.draw_mermaid())

    try:
        typer.echo(asyncio.run(draw()))
    except WeftError as e:
        fail(e)


@app.command()
def invoke(
    graph_id: Annotated[str, typer.Argument(help="A graph id from `weft graphs`.")],
    input_json: Annotated[
        str, typer.Option("--input", "-i", help="The run's input, as JSON.")
    ] = "{}",
    thread_id: Annotated[
        str | None,
        typer.Option(
            help="The thread to run on, a UUID: continues it if it exists, creates it "
            "otherwise. Default: a new thread, its ID printed on stderr."
        ),
    ] = None,
    stream: Annotated[
        str | None,
        typer.Option(
            help="Print the stream as JSON lines: values, updates, messages, custom, debug, "
            "tasks or checkpoints. Default: print the final state."
        ),
    ] = None,
    resume: Annotated[
        str | None,
        typer.Option(help="Resume an interrupted thread with this JSON value (needs --thread-id)."),
    ] = None,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Run a graph in this process against the configured database.

    The state is kept: a second call with the same --thread-id continues the thread. A run
    that stops at a human interrupt prints {"__interrupt__": [...]}; continue it with
    --thread-id ID --resume JSON.
    """
    from weft.runtime import STREAM_MODES, Runtime

    if stream is not None and stream not in STREAM_MODES:
        fail(
            ConfigError(
                f"--stream {stream!r} is not a stream mode; use one of {', '.join(STREAM_MODES)}"
            )
        )
    graph_input = json_option("--input", input_json)
    resume_value = json_option("--resume", resume) if resume is not None else None
    if resume is not None and thread_id is None:
        fail(ConfigError("--resume needs --thread-id: the thread to resume"))
    settings = load_settings(config, database)
    tid = thread_id or new_thread_id()
    if thread_id is None:
        typer.echo(f"thread_id: {tid}", err=True)

    async def run() -> None:
        async with Runtime.open(settings, execute_plans=False) as rt:
            events = rt.invoke(
                graph_id, graph_input, thread_id=tid, resume=resume_value, stream_mode=stream
            )
            async for event, data in events:
                if event == "__interrupt__":
                    typer.echo(json.dumps({"__interrupt__": to_jsonable(data)}))
                elif stream is None:
                    typer.echo(json.dumps(to_jsonable(data), indent=2))
                else:
                    typer.echo(json.dumps(to_jsonable(data)))

    try:
        asyncio.run(run())
    except WeftError as e:
        fail(e)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="weft")


if __name__ == "__main__":
    main()
