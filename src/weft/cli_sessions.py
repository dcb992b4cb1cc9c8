"""``weft sessions ...``: sessions, their threads and their interaction log."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from weft.cli_common import (
    ConfigOption,
    DatabaseOption,
    JsonFlag,
    compact,
    json_object_option,
    json_option,
    out,
    print_fields,
    print_json,
    table,
    when,
    with_runtime,
)
from weft.cli_plans import print_report
from weft.schema import INTERACTION_KINDS, SESSION_STATUSES, USER_INTERACTION_KINDS, Session, Thread

if TYPE_CHECKING:
    from weft.runtime import Runtime

sessions_app = typer.Typer(
    help="Create, list, inspect and delete sessions; read and append to their log.",
    no_args_is_help=True,
)

SessionArg = Annotated[str, typer.Argument(help="The session's ID (a UUID).", show_default=False)]


@sessions_app.command("ls")
def sessions_ls(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's sessions.")] = None,
    status: Annotated[
        str | None, typer.Option(help=f"Only this status: {', '.join(SESSION_STATUSES)}.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many sessions.")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many sessions first.")] = 0,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """List sessions, newest first."""
    found = with_runtime(
        config,
        database,
        lambda rt: rt.sessions.search(user_id=user, status=status, limit=limit, offset=offset),
    )
    if as_json:
        print_json([s.to_api() for s in found])
        return
    if not found:
        typer.echo("no sessions found")
        return
    t = table(
        "sessions", ("session_id", "name", "user", "status", "created (UTC)", "updated (UTC)")
    )
    for s in found:
        t.add_row(
            s.session_id,
            s.name or "",
            s.user_id or "",
            s.status,
            when(s.created_at),
            when(s.updated_at),
        )
    out.print(t, highlight=False)


@sessions_app.command("show")
def sessions_show(
    session_id: SessionArg,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Show one session: its record, shared state and threads."""

    async def read(rt: Runtime) -> tuple[Session, list[Thread]]:
        session = await rt.sessions.get(session_id)
        return session, await rt.sessions.threads_of(session.session_id)

    session, threads = with_runtime(config, database, read)
    if as_json:
        print_json({**session.to_api(), "threads": [t.to_api() for t in threads]})
        return
    print_fields(
        f"session {session.session_id}",
        [
            ("session_id", session.session_id),
            ("name", session.name or ""),
            ("user", session.user_id or ""),
            ("status", session.status),
            ("created (UTC)", when(session.created_at)),
            ("updated (UTC)", when(session.updated_at)),
            ("metadata", compact(session.metadata, 400)),
            ("state", compact(session.state, 400)),
        ],
    )
    if not threads:
        typer.echo("no threads in this session")
        return
    t = table("threads", ("thread_id", "name", "graph", "lifecycle", "status", "checkpoints"))
    for thread in threads:
        t.add_row(
            thread.thread_id,
            thread.name or "",
            thread.graph_id or "",
            thread.lifecycle,
            thread.status,
            str(thread.counts.checkpoints),
        )
    out.print(t, highlight=False)


@sessions_app.command("status")
def sessions_status(
    session_id: SessionArg,
    as_json: JsonFlag = False,
    outputs: Annotated[
        bool, typer.Option("--outputs", help="Add a column with each thread's output summary.")
    ] = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Show where the session's plan stands: each thread's state, attempts, duration and
    error or reason, and the success rate."""
    report = with_runtime(config, database, lambda rt: rt.plans.status(session_id))
    if as_json:
        print_json(report.to_api())
        return
    print_report(report, outputs=outputs)


@sessions_app.command("create")
def sessions_create(
    user: Annotated[str | None, typer.Option("--user", help="The user the session is for.")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the session.")] = None,
    metadata: Annotated[
        str | None, typer.Option(help="Metadata, as a JSON object.", show_default=False)
    ] = None,
    state: Annotated[
        str | None,
        typer.Option(help="Initial shared state of its threads, as a JSON object."),
    ] = None,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Create a session (status active) and print its ID."""
    meta = json_object_option("--metadata", metadata)
    shared = json_object_option("--state", state)
    session = with_runtime(
        config,
        database,
        lambda rt: rt.sessions.create(user_id=user, name=name, metadata=meta, state=shared),
    )
    if as_json:
        print_json(session.to_api())
        return
    typer.echo(
        f"created session {session.session_id}",
    )


@sessions_app.command("add-thread")
def sessions_add_thread(
    session_id: SessionArg,
    name: Annotated[
        str, typer.Argument(help="The thread's name, unique in the session.", show_default=False)
    ],
    graph: Annotated[
        str | None, typer.Option("--graph", help="The graph id the thread runs.")
    ] = None,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Create a thread inside the session and print its ID.

    Run it with `weft invoke GRAPH --thread-id ID`; its runs see the session's shared state.
    """
    thread = with_runtime(
        config, database, lambda rt: rt.sessions.add_thread(session_id, name, graph)
    )
    if as_json:
        print_json(thread.to_api())
        return
    typer.echo(f"created thread {thread.thread_id} ({thread.name}) in session {thread.session_id}")


@sessions_app.command("delete")
def sessions_delete(
    session_id: SessionArg,
    cascade: Annotated[
        bool,
        typer.Option("--cascade", help="Also delete the session's threads and their checkpoints."),
    ] = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Delete a session and its log. Refused while it has threads, unless --cascade."""
    with_runtime(config, database, lambda rt: rt.sessions.delete(session_id, cascade=cascade))
    typer.echo(
        f"deleted session {session_id}",
    )


@sessions_app.command("record")
def sessions_record(
    session_id: SessionArg,
    kind: Annotated[
        str,
        typer.Argument(help=f"One of {', '.join(USER_INTERACTION_KINDS)}.", show_default=False),
    ],
    content: Annotated[
        str,
        typer.Argument(help="The entry, as JSON: '\"a text\"' or an object.", show_default=False),
    ],
    metadata: Annotated[
        str | None, typer.Option(help="Metadata of the entry, as a JSON object.")
    ] = None,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Append an entry to the session's interaction log and print its sequence number."""
    value = json_option("CONTENT_JSON", content)
    meta = json_object_option("--metadata", metadata)
    entry = with_runtime(
        config,
        database,
        lambda rt: rt.sessions.record(session_id, kind, value, metadata=meta),
    )
    if as_json:
        print_json(entry.to_api())
        return
    typer.echo(
        f"recorded {entry.kind} #{entry.seq} in session {entry.session_id}",
    )


@sessions_app.command("log")
def sessions_log(
    session_id: SessionArg,
    after: Annotated[
        int, typer.Option(help="Only entries after this sequence number (to page on).")
    ] = 0,
    limit: Annotated[int, typer.Option(help="At most this many entries.")] = 100,
    kind: Annotated[
        list[str] | None,
        typer.Option(
            "--kind",
            help=f"Only this kind (repeat for several): {', '.join(INTERACTION_KINDS)}.",
        ),
    ] = None,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Print the session's interaction log, oldest first."""
    entries = with_runtime(
        config,
        database,
        lambda rt: rt.sessions.interactions(session_id, after=after, limit=limit, kinds=kind),
    )
    if as_json:
        print_json([e.to_api() for e in entries])
        return
    if not entries:
        typer.echo(
            f"session {session_id} has no log entries" + (f" after #{after}" if after else "")
        )
        return
    t = table(f"log of session {session_id}", ("seq", "kind", "content", "created (UTC)"))
    for e in entries:
        t.add_row(str(e.seq), e.kind, compact(e.content), when(e.created_at))
    out.print(t, highlight=False)


__all__ = ["sessions_app"]
