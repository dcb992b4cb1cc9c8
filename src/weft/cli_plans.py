"""``weft run FILE`` (run a session plan, with live progress) and ``weft plan show FILE``;
the plan report that ``weft sessions status`` prints.

Commands translate only: they read the options, call :attr:`weft.runtime.Runtime.plans` and
print. An invalid plan prints its problems on stderr, one per line, and exits 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Group, RenderableType
from rich.live import Live
from rich.text import Text

from weft.cli_common import (
    DatabaseOption,
    out,
    print_fields,
    table,
    when,
    with_runtime,
)
from weft.config import CONFIG_FILE_NAMES

if TYPE_CHECKING:
    from weft.plan_view import PlanReport, ThreadReport
    from weft.runtime import Runtime
    from weft.schema import Interaction

T = TypeVar("T")

plan_app = typer.Typer(help="Look at a session plan without running it.", no_args_is_help=True)

PlanFile = Annotated[
    Path,
    typer.Argument(help="The plan: a YAML (or JSON) file.", show_default=False),
]
SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="KEY=VALUE: set a plan key before validation (KEY a dotted path such as "
        "threads.collect.input.topic; VALUE read as YAML). Repeat for several.",
        show_default=False,
    ),
]
PlanConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="weft.yaml or langgraph.json registering the plan's workflows. Default: the "
        "first of weft.yaml, weft.yml, langgraph.json in the current folder, else in the "
        "plan file's folder.",
        show_default=False,
    ),
]

EXIT_INTERRUPTED = 130
"""Exit code of ``weft run`` stopped by Ctrl-C (the plan is left to resume)."""


def plan_config(file: Path, config: Path | None) -> Path | None:
    """The configuration for a plan file: ``--config``, else a config file in the current
    folder (None: :meth:`weft.config.Settings.load` finds it), else one beside ``file``."""
    if config is not None:
        return config
    if any(Path(name).is_file() for name in CONFIG_FILE_NAMES):
        return None
    for name in CONFIG_FILE_NAMES:
        beside = file.parent / name
        if beside.is_file():
            return beside
    return None


# --- formatting --------------------------------------------------------------------------


def seconds(value: float | None) -> str:
    """A duration for people: ``0.42 s``, ``12.3 s``, ``4m 05s``; "" when there is none."""
    if value is None:
        return ""
    if value < 10:
        return f"{value:.2f} s"
    if value < 120:
        return f"{value:.1f} s"
    minutes, rest = divmod(int(value), 60)
    return f"{minutes}m {rest:02d}s"


def rate(report: PlanReport) -> str:
    """``success rate: 67%`` (``n/a`` when every thread was skipped by its condition)."""
    if report.success_rate is None:
        return "success rate: n/a"
    return f"success rate: {round(report.success_rate * 100)}%"


def _note(row: ThreadReport) -> str:
    return row.error or row.reason or ""


def outcome_table(report: PlanReport, title: str | None = "outcome") -> Any:
    """Each thread's state, attempts, duration and error or reason."""
    t = table(title, ("thread", "state", "attempts", "duration", "error / reason"))
    for row in report.threads:
        t.add_row(row.name, row.state, str(row.attempts), seconds(row.duration), _note(row))
    return t


def print_report(report: PlanReport, *, outputs: bool = False) -> None:
    """A plan report: its fields, each thread's outcome, the success rate."""
    counts = ", ".join(f"{state} {n}" for state, n in report.counts.items())
    print_fields(
        f"plan of session {report.session_id}",
        [
            ("status", report.status),
            ("policy", report.policy),
            ("started (UTC)", when(report.started_at)),
            ("ended (UTC)", when(report.ended_at)),
            ("duration", seconds(report.duration)),
            ("threads", counts),
            ("success rate", rate(report).removeprefix("success rate: ")),
        ],
    )
    columns = ("thread", "state", "attempts", "duration", "error / reason")
    t = table("threads", (*columns, "thread_id") + (("output",) if outputs else ()))
    for row in report.threads:
        cells = [row.name, row.state, str(row.attempts), seconds(row.duration), _note(row)]
        cells.append(row.thread_id)
        if outputs:
            cells.append(row.output_summary or "")
        t.add_row(*cells)
    out.print(t, highlight=False)


# --- following a run ---------------------------------------------------------------------

_STATES = {
    "thread_started": "running",
    "thread_succeeded": "succeeded",
    "thread_failed": "failed",
    "thread_timed_out": "timed_out",
    "thread_retrying": "retrying",
    "thread_skipped": "skipped",
    "thread_cancelled": "cancelled",
    "thread_interrupted": "interrupted",
}
_ENDED = frozenset({"succeeded", "failed", "timed_out", "skipped", "cancelled"})


@dataclass
class _Row:
    state: str
    attempts: int
    started_at: datetime | None
    ended_at: datetime | None

    def elapsed(self, now: datetime) -> float | None:
        if self.started_at is None:
            return None
        return max(((self.ended_at or now) - self.started_at).total_seconds(), 0.0)


class _Progress:
    """The live table: a row per thread, kept from the plan's events."""

    def __init__(self, report: PlanReport) -> None:
        self.rows = {
            r.name: _Row(r.state, r.attempts, r.started_at, r.ended_at) for r in report.threads
        }
        self.status: str = report.status

    def apply(self, entry: Interaction) -> None:
        content = entry.content if isinstance(entry.content, dict) else {}
        event = str(content.get("event", ""))
        if event.startswith("plan_"):
            self.status = "running" if event == "plan_started" else event.removeprefix("plan_")
            return
        row = self.rows.get(str(content.get("thread")))
        state = _STATES.get(event)
        if row is None or state is None:
            return
        row.state = state
        attempt = content.get("attempt")
        if isinstance(attempt, int):
            row.attempts = max(row.attempts, attempt)
        if event == "thread_started" and row.started_at is None:
            row.started_at = entry.created_at
        if state in _ENDED:
            row.ended_at = entry.created_at

    def render(self) -> RenderableType:
        now = datetime.now(UTC)
        t = table(None, ("thread", "state", "attempts", "elapsed"))
        for name, row in self.rows.items():
            t.add_row(name, row.state, str(row.attempts), seconds(row.elapsed(now)))
        done = sum(1 for r in self.rows.values() if r.state in _ENDED)
        return Group(Text(f"plan {self.status}: {done}/{len(self.rows)} threads ended"), t)


def event_line(entry: Interaction) -> str:
    """One plan event as a line of text."""
    content = entry.content if isinstance(entry.content, dict) else {}
    event = str(content.get("event", entry.kind))
    at = entry.created_at.astimezone(UTC).strftime("%H:%M:%S")
    if event.startswith("plan_"):
        extra = ""
        if event == "plan_started" and "threads" in content:
            extra = f" ({content['threads']} threads)"
        elif isinstance(content.get("reason"), str):
            extra = f": {content['reason']}"
        return f"[{at}] plan {event.removeprefix('plan_')}{extra}"
    name = content.get("thread", "?")
    what = event.removeprefix("thread_").replace("_", " ")
    attempt = content.get("attempt")
    if event == "thread_started":
        detail = f" (attempt {attempt})"
    elif event == "thread_retrying":
        detail = f" in {content.get('delay')} s after attempt {attempt}: {content.get('error')}"
    elif event in ("thread_failed", "thread_timed_out"):
        detail = f": {content.get('error')}"
    elif event in ("thread_skipped", "thread_cancelled"):
        detail = f": {content.get('reason')}"
    else:
        detail = ""
    return f"[{at}] {name} {what}{detail}"


def resume_hint(row: ThreadReport) -> str:
    """How to resume a thread of the plan that waits at a human interrupt: ``weft invoke
    --resume`` on its thread, or a run on it with ``command.resume`` through the HTTP API of
    a ``weft serve`` on the same database. The plan goes on once the thread is resumed."""
    graph = row.graph_id or "GRAPH"
    body = json.dumps({"assistant_id": graph, "command": {"resume": "approved"}})
    return (
        f"{row.name} waits for a human (interrupt) on thread {row.thread_id}; its dependents "
        "wait, the rest goes on. Resume it from another terminal (same --config/--database):\n"
        f"  weft invoke {graph} --thread-id {row.thread_id} --resume '\"approved\"'\n"
        "  or through a `weft serve` on the same database:\n"
        f"  curl -X POST http://127.0.0.1:2024/threads/{row.thread_id}/runs/wait "
        f"-H 'Content-Type: application/json' -d '{body}'\n"
        f"  or with the SDK: client.runs.wait({row.thread_id!r}, {graph!r}, "
        'command={"resume": ...})'
    )


async def follow(rt: Runtime, session_id: str, *, live: bool) -> PlanReport:
    """Show the plan's progress until it ends; its final report."""
    progress = _Progress(await rt.plans.status(session_id))
    explained: set[str] = set()

    async def explain(entry: Interaction, say: Callable[[str], None]) -> None:
        content = entry.content if isinstance(entry.content, dict) else {}
        name = str(content.get("thread"))
        if content.get("event") != "thread_interrupted" or name in explained:
            return
        explained.add(name)
        report = await rt.plans.status(session_id)
        for row in report.threads:
            if row.name == name:
                say(resume_hint(row))

    if live:
        with Live(
            console=out, get_renderable=progress.render, refresh_per_second=4, transient=True
        ) as screen:
            async for entry in rt.plans.events(session_id):
                progress.apply(entry)
                await explain(entry, lambda text: screen.console.print(text, highlight=False))
    else:
        async for entry in rt.plans.events(session_id):
            typer.echo(event_line(entry))
            await explain(entry, typer.echo)
    return await rt.plans.status(session_id)


# --- commands ----------------------------------------------------------------------------


def run(
    file: PlanFile,
    set_: SetOption = None,
    detach: Annotated[
        bool,
        typer.Option(
            "--detach",
            help="Start the plan and return: a `weft serve` on the same database runs it.",
        ),
    ] = False,
    config: PlanConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Run a session plan: validate it, create its session, run its threads in order.

    Shows a row per thread (state, attempts, elapsed time) while it runs, then the outcome
    of each thread and the success rate. Exit codes: 0 the plan completed (every thread
    succeeded or was skipped by its condition), 1 it failed or was cancelled, 2 the plan is
    invalid (every problem printed on stderr), 130 Ctrl-C (the plan stays running in the
    database: a `weft serve` on it resumes it). A thread stopped at a human interrupt waits
    for a resume (printed how); the rest of the plan goes on meanwhile.
    """
    overrides = list(set_ or ())
    cfg = plan_config(file, config)

    started: list[str] = []

    async def start(rt: Runtime) -> tuple[str, PlanReport | None]:
        session, _ = await rt.plans.create(file, overrides=overrides)
        sid = session.session_id
        started.append(sid)
        if detach:
            await rt.plans.run(sid, detach=True)
            return sid, None
        await rt.plans.run(sid)
        if not out.is_terminal:
            typer.echo(f"session {sid}")
        return sid, await follow(rt, sid, live=out.is_terminal)

    try:
        sid, report = with_runtime(cfg, database, start, execute_plans=not detach)
    except KeyboardInterrupt:
        where = f"session {started[0]}" if started else "the session"
        typer.echo(
            f"\nstopped following {where}: its plan stays running in the database and a "
            "`weft serve` on the same database resumes it where it stands"
            + (f"; `weft sessions status {started[0]}` shows its progress" if started else ""),
            err=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if report is None:
        typer.echo(f"session {sid}")
        typer.echo(
            "plan started detached: a `weft serve` on the same database runs it; "
            f"`weft sessions status {sid}` shows its progress"
        )
        return
    out.print(outcome_table(report, title=f"plan {report.status}"), highlight=False)
    typer.echo(rate(report))
    if report.status != "completed":
        raise typer.Exit(1)


@plan_app.command("show")
def plan_show(
    file: PlanFile,
    set_: SetOption = None,
    config: PlanConfigOption = None,
    database: DatabaseOption = None,
) -> None:
    """Validate a plan and print its levels, critical path and Mermaid drawing.

    Exit codes: 0 valid, 2 invalid (every problem printed on stderr as FILE:LINE: PATH:
    MESSAGE). Nothing runs and nothing is written.
    """
    from weft.plan_view import describe

    overrides = list(set_ or ())
    spec = with_runtime(
        plan_config(file, config), database, lambda rt: rt.plans.validate(file, overrides=overrides)
    )
    typer.echo(describe(spec), nl=False)


__all__ = [
    "EXIT_INTERRUPTED",
    "event_line",
    "follow",
    "outcome_table",
    "plan_app",
    "plan_config",
    "print_report",
    "rate",
    "resume_hint",
    "run",
    "seconds",
]
