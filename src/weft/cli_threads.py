"""``weft threads ...`` and ``weft doctor``: threads as a person looks at them."""

from __future__ import annotations

from typing import Annotated, get_args

import typer

from weft.cli_common import (
    ConfigOption,
    DatabaseOption,
    JsonFlag,
    compact,
    json_object_option,
    out,
    print_fields,
    print_json,
    summary,
    table,
    when,
    with_runtime,
)
from weft.schema import LIFECYCLES, THREAD_KINDS, THREAD_STATUSES, Thread, ThreadState
from weft.storage.base import ThreadSortBy

SORT_BY_VALUES = get_args(ThreadSortBy)

threads_app = typer.Typer(
    help="List, inspect, branch, snapshot and roll back threads.", no_args_is_help=True
)

ThreadArg = Annotated[str, typer.Argument(help="The thread's ID (a UUID).", show_default=False)]
CheckpointOption = Annotated[
    str | None,
    typer.Option(
        "--checkpoint",
        help="A checkpoint ID from `weft threads history` (default: the thread's head).",
        show_default=False,
    ),
]


def _derived(thread: Thread) -> str:
    name = f" ({thread.name})" if thread.name else ""
    return (
        f"created {thread.kind} {thread.thread_id}{name} from checkpoint "
        f"{thread.source_checkpoint_id} of thread {thread.parent_thread_id}"
    )


def _counts(thread: Thread) -> str:
    c = thread.counts
    return ", ".join(
        f"{n} {one if n == 1 else many}"
        for n, one, many in (
            (c.messages, "message", "messages"),
            (c.checkpoints, "checkpoint", "checkpoints"),
            (c.branches, "branch", "branches"),
            (c.runs, "run", "runs"),
        )
    )


@threads_app.command("ls")
def threads_ls(
    graph: Annotated[
        str | None, typer.Option("--graph", help="Only threads of this graph id.")
    ] = None,
    session: Annotated[
        str | None, typer.Option("--session", help="Only threads of this session (a UUID).")
    ] = None,
    lifecycle: Annotated[
        str | None, typer.Option(help=f"Only this lifecycle: {', '.join(LIFECYCLES)}.")
    ] = None,
    kind: Annotated[
        str | None, typer.Option(help=f"Only this kind: {', '.join(THREAD_KINDS)}.")
    ] = None,
    status: Annotated[
        str | None, typer.Option(help=f"Only this status: {', '.join(THREAD_STATUSES)}.")
    ] = None,
    metadata: Annotated[
        str | None,
        typer.Option(
            help='Only threads whose metadata contains this JSON object, e.g. \'{"user": "u1"}\'.'
        ),
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many threads.")] = 20,
    offset: Annotated[int, typer.Option(help="Skip this many threads first.")] = 0,
    sort_by: Annotated[
        str, typer.Option(help=f"Sort by one of {', '.join(SORT_BY_VALUES)}.")
    ] = "created_at",
    sort_order: Annotated[str, typer.Option(help="asc or desc.")] = "desc",
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """List threads, newest first; filter by graph, session, lifecycle, kind, status, metadata."""
    meta = json_object_option("--metadata", metadata)
    found = with_runtime(
        config,
        database,
        lambda rt: rt.threads.search(
            graph_id=graph,
            session_id=session,
            lifecycle=lifecycle,
            kind=kind,
            status=status,
            metadata=meta,
            limit=limit,
            offset=offset,
            sort_by=sort_by,
            sort_order=sort_order,
        ),
    )
    if as_json:
        print_json([t.to_api() for t in found])
        return
    if not found:
        typer.echo("no threads found")
        return
    t = table(
        "threads",
        (
            "thread_id",
            "name",
            "graph",
            "kind",
            "lifecycle",
            "status",
            "checkpoints",
            "updated (UTC)",
        ),
    )
    for thread in found:
        t.add_row(
            thread.thread_id,
            thread.name or "",
            thread.graph_id or "",
            thread.kind,
            thread.lifecycle,
            thread.status,
            str(thread.counts.checkpoints),
            when(thread.updated_at),
        )
    out.print(t, highlight=False)


@threads_app.command("show")
def threads_show(
    thread_id: ThreadArg,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Show one thread: its record, counts and a summary of its head state."""
    thread = with_runtime(config, database, lambda rt: rt.threads.get(thread_id))
    if as_json:
        print_json(thread.to_api())
        return
    rows = [
        ("thread_id", thread.thread_id),
        ("name", thread.name or ""),
        ("graph", thread.graph_id or ""),
        ("kind", thread.kind),
        ("lifecycle", thread.lifecycle),
        ("status", thread.status),
        ("session", thread.session_id or ""),
        ("parent thread", thread.parent_thread_id or ""),
        ("source checkpoint", thread.source_checkpoint_id or ""),
        ("created (UTC)", when(thread.created_at)),
        ("updated (UTC)", when(thread.updated_at)),
        ("state updated (UTC)", when(thread.state_updated_at)),
        ("counts", _counts(thread)),
        ("metadata", compact(thread.metadata, 400)),
    ]
    waiting = sum(len(v) for v in thread.interrupts.values())
    if waiting:
        rows.append(("interrupts", f"{waiting} waiting (resume with weft invoke --resume)"))
    print_fields(f"thread {thread.thread_id}", rows)
    values = thread.values or {}
    if not values:
        typer.echo("head state: empty (no run yet)")
        return
    t = table("head state", ("key", "value"))
    for key, value in values.items():
        t.add_row(key, summary(value))
    out.print(t, highlight=False)


def _history_row(state: ThreadState) -> tuple[str, ...]:
    meta = state.metadata
    return (
        state.checkpoint_id or "",
        str(meta.get("step", "")),
        str(meta.get("source", "")),
        ", ".join(state.next),
        when(state.created_at),
        "yes" if meta.get("abandoned") else "",
    )


@threads_app.command("history")
def threads_history(
    thread_id: ThreadArg,
    limit: Annotated[int, typer.Option(help="At most this many checkpoints.")] = 20,
    before: Annotated[
        str | None,
        typer.Option(help="Only checkpoints older than this checkpoint ID (to page on)."),
    ] = None,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """List a thread's checkpoints, newest first; those a rollback abandoned are marked."""
    states = with_runtime(
        config,
        database,
        lambda rt: rt.threads.history(thread_id, limit=limit, before=before),
    )
    if as_json:
        print_json([s.to_api() for s in states])
        return
    if not states:
        typer.echo(f"thread {thread_id} has no checkpoints")
        return
    t = table(
        f"history of thread {thread_id}",
        ("checkpoint_id", "step", "source", "next", "created (UTC)", "abandoned"),
    )
    for state in states:
        t.add_row(*_history_row(state))
    out.print(t, highlight=False)


@threads_app.command("branch")
def threads_branch(
    thread_id: ThreadArg,
    checkpoint: CheckpointOption = None,
    name: Annotated[str | None, typer.Option(help="A name for the new branch.")] = None,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Start a new thread (kind branch) from one checkpoint of this thread.

    Runs on the branch continue from that checkpoint's state; the source is unchanged.
    """
    thread = with_runtime(
        config,
        database,
        lambda rt: rt.threads.branch(thread_id, checkpoint_id=checkpoint, name=name),
    )
    if as_json:
        print_json(thread.to_api())
        return
    typer.echo(_derived(thread))


@threads_app.command("snapshot")
def threads_snapshot(
    thread_id: ThreadArg,
    name: Annotated[str, typer.Argument(help="The snapshot's name.", show_default=False)],
    checkpoint: CheckpointOption = None,
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Freeze one checkpoint of this thread as a named, read-only thread (kind snapshot)."""
    thread = with_runtime(
        config,
        database,
        lambda rt: rt.threads.snapshot(thread_id, name, checkpoint_id=checkpoint),
    )
    if as_json:
        print_json(thread.to_api())
        return
    typer.echo(_derived(thread))


@threads_app.command("rollback")
def threads_rollback(
    thread_id: ThreadArg,
    checkpoint: Annotated[
        str,
        typer.Argument(
            help="The checkpoint ID (from `weft threads history`) to make the head again.",
            show_default=False,
        ),
    ],
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Make a past checkpoint the thread's head again, deleting nothing.

    The checkpoints after it stay in the history, marked abandoned.
    """
    thread = with_runtime(config, database, lambda rt: rt.threads.rollback(thread_id, checkpoint))
    if as_json:
        print_json(thread.to_api())
        return
    typer.echo(
        f"thread {thread.thread_id} rolled back to checkpoint {checkpoint}; the later "
        "checkpoints stay in its history, marked abandoned"
    )


@threads_app.command("lifecycle")
def threads_lifecycle(
    thread_id: ThreadArg,
    state: Annotated[
        str, typer.Argument(help=f"The new lifecycle: {', '.join(LIFECYCLES)}.", show_default=False)
    ],
    as_json: JsonFlag = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Move a thread's lifecycle (active → any; paused or completed → active; others final)."""
    thread = with_runtime(config, database, lambda rt: rt.threads.set_lifecycle(thread_id, state))
    if as_json:
        print_json(thread.to_api())
        return
    typer.echo(f"thread {thread.thread_id} is now {thread.lifecycle}")


def doctor(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="Fix what is safe to fix (in one transaction) and report it."
        ),
    ] = False,
    config: ConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Check the database for inconsistencies; with --repair, fix what is safe to fix.

    Finds checkpoints without a thread, threads pointing at a missing session or parent,
    and counts that disagree with the rows. Exits 1 while problems remain, 0 otherwise.
    """
    findings = with_runtime(config, database, lambda rt: rt.doctor(repair=repair))
    if not findings:
        typer.echo("no problems found")
        return
    t = table("doctor", ("problem", "thread_id", "detail", "repaired"))
    for f in findings:
        t.add_row(f.problem, f.thread_id, f.detail, "yes" if f.repaired else "no")
    out.print(t, highlight=False)
    left = sum(1 for f in findings if not f.repaired)
    if left:
        hint = "" if repair else "; run `weft doctor --repair` to fix them"
        typer.echo(f"{left} problem{'' if left == 1 else 's'} left{hint}")
        raise typer.Exit(1)
    typer.echo(f"repaired {len(findings)} problem{'' if len(findings) == 1 else 's'}")


__all__ = ["doctor", "threads_app"]
