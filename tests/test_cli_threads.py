"""``weft threads ...`` and ``weft doctor`` on real runs of the example ``echo`` graph.

Every test works on a copy of ``examples/`` in tmp_path (its SQLite file lands in the copy's
``.weft/``), runs ``weft invoke echo`` to get checkpoints, then reads them back as a person
(tables) and as a program (``--json``) would.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from weft.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
THREAD = "11111111-1111-1111-1111-111111111111"
OTHER = "33333333-3333-3333-3333-333333333333"
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The weft.yaml of a copy of examples/ (without its database), from a clean env."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WEFT_") and not name.startswith("WEFT_TEST_"):
            monkeypatch.delenv(name)
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns(".weft", "__pycache__"))
    return copy / "weft.yaml"


# --- helpers (test_cli_sessions uses them too) -----------------------------------------------


def weft(config: Path, *args: str) -> Result:
    """``weft ARGS... --config CONFIG`` on a terminal wide enough for full UUIDs."""
    return runner.invoke(app, [*args, "--config", str(config)], env={"COLUMNS": "200"})


def ok(result: Result) -> str:
    assert result.exit_code == 0, result.output
    return result.stdout


def refused(result: Result, message: str, code: int = 1) -> None:
    """The command failed with exactly one ``error: MESSAGE`` line on stderr."""
    assert result.exit_code == code, result.output
    assert result.stderr == f"error: {message}\n"
    assert "Traceback" not in result.output


def rows(stdout: str) -> list[list[str]]:
    """The body rows of the rich tables in ``stdout``, as stripped cells."""
    return [
        [cell.strip() for cell in line.strip().strip("│").split("│")]
        for line in stdout.splitlines()
        if line.startswith("│")
    ]


def say(config: Path, thread_id: str, text: str) -> dict[str, Any]:
    """Run the echo graph on ``thread_id`` with one user message; its final state."""
    graph_input = json.dumps({"messages": [{"role": "user", "content": text}]})
    state: dict[str, Any] = json.loads(
        ok(weft(config, "invoke", "echo", "--thread-id", thread_id, "--input", graph_input))
    )
    return state


def texts(state: dict[str, Any]) -> list[str]:
    return [m["content"] for m in state["messages"]]


def history(config: Path, thread_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        ok(weft(config, "threads", "history", thread_id, "--json"))
    )
    return found


@pytest.fixture
def ran(config: Path) -> Path:
    """THREAD with two runs of echo: six checkpoints (steps -1..4), four messages."""
    say(config, THREAD, "hi")
    say(config, THREAD, "again")
    return config


# --- ls / show / history ----------------------------------------------------------------------


def test_ls_lists_the_thread_a_run_created(ran: Path) -> None:
    say(ran, OTHER, "other")
    table = rows(ok(weft(ran, "threads", "ls")))
    assert [row[:7] for row in table] == [
        [OTHER, "", "echo", "main", "active", "idle", "3"],
        [THREAD, "", "echo", "main", "active", "idle", "6"],
    ]
    assert all(TIMESTAMP.match(row[7]) for row in table), table

    oldest_first = rows(ok(weft(ran, "threads", "ls", "--sort-order", "asc", "--limit", "1")))
    assert [row[0] for row in oldest_first] == [THREAD]
    offset = rows(ok(weft(ran, "threads", "ls", "--offset", "1")))
    assert [row[0] for row in offset] == [THREAD]

    listed = json.loads(
        ok(weft(ran, "threads", "ls", "--json", "--metadata", '{"graph_id": "echo"}'))
    )
    assert {t["thread_id"] for t in listed} == {THREAD, OTHER}
    assert listed[1]["counts"] == {"messages": 4, "checkpoints": 6, "branches": 0, "runs": 0}

    assert ok(weft(ran, "threads", "ls", "--graph", "react")) == "no threads found\n"
    assert ok(weft(ran, "threads", "ls", "--kind", "branch")) == "no threads found\n"
    assert ok(weft(ran, "threads", "ls", "--metadata", '{"graph_id": "react"}')) == (
        "no threads found\n"
    )
    assert json.loads(ok(weft(ran, "threads", "ls", "--lifecycle", "paused", "--json"))) == []


def test_ls_refuses_bad_filters(ran: Path) -> None:
    refused(
        weft(ran, "threads", "ls", "--lifecycle", "asleep"),
        "lifecycle must be one of active, paused, completed, failed, archived, branched, "
        "not 'asleep'",
    )
    refused(
        weft(ran, "threads", "ls", "--sort-by", "name"),
        "sort_by must be one of thread_id, status, created_at, updated_at, state_updated_at, "
        "not 'name'",
    )
    refused(weft(ran, "threads", "ls", "--session", "s1"), "session_id must be a UUID, not 's1'")
    refused(
        weft(ran, "threads", "ls", "--metadata", "{oops"),
        "--metadata is not valid JSON: Expecting property name enclosed in double quotes "
        "at column 2",
        code=2,
    )
    refused(
        weft(ran, "threads", "ls", "--metadata", "[1]"),
        "--metadata must be a JSON object, not list",
        code=2,
    )


def test_show_prints_the_record_counts_and_head_state(ran: Path) -> None:
    fields = {row[0]: row[1] for row in rows(ok(weft(ran, "threads", "show", THREAD)))}
    assert fields["thread_id"] == THREAD
    assert fields["graph"] == "echo"
    assert fields["kind"] == "main"
    assert fields["lifecycle"] == "active"
    assert fields["status"] == "idle"
    assert fields["counts"] == "4 messages, 6 checkpoints, 0 branches, 0 runs"
    assert fields["metadata"] == '{"graph_id": "echo"}'
    assert TIMESTAMP.match(fields["created (UTC)"])
    assert fields["messages"] == "4 messages; last: ai: AGAIN"  # the head state's summary

    record = json.loads(ok(weft(ran, "threads", "show", THREAD, "--json")))
    assert record["thread_id"] == THREAD
    assert texts(record["values"]) == ["hi", "HI", "again", "AGAIN"]
    assert record["kind"] == "main"
    assert "owner" not in record


def test_a_thread_without_runs_has_an_empty_state_and_no_history(config: Path) -> None:
    refused(weft(config, "threads", "show", THREAD), f"thread {THREAD} not found")
    session = json.loads(ok(weft(config, "sessions", "create", "--json")))["session_id"]
    created = ok(weft(config, "sessions", "add-thread", session, "draft", "--graph", "echo"))
    thread = created.split()[2]
    show = ok(weft(config, "threads", "show", thread))
    assert show.endswith("head state: empty (no run yet)\n")
    assert {row[0]: row[1] for row in rows(show)}["session"] == session
    assert ok(weft(config, "threads", "history", thread)) == (
        f"thread {thread} has no checkpoints\n"
    )
    assert json.loads(ok(weft(config, "threads", "history", thread, "--json"))) == []
    refused(
        weft(config, "threads", "branch", thread),
        f"thread {thread} has no checkpoint yet: nothing to branch from",
    )


def test_history_lists_checkpoints_newest_first(ran: Path) -> None:
    table = rows(ok(weft(ran, "threads", "history", THREAD)))
    assert [row[1:4] for row in table] == [
        ["4", "loop", ""],
        ["3", "loop", "respond"],
        ["2", "input", "__start__"],
        ["1", "loop", ""],
        ["0", "loop", "respond"],
        ["-1", "input", "__start__"],
    ]
    assert all(TIMESTAMP.match(row[4]) for row in table)
    assert [row[5] for row in table] == [""] * 6  # nothing abandoned
    ids = [row[0] for row in table]
    assert [h["checkpoint"]["checkpoint_id"] for h in history(ran, THREAD)] == ids

    page = rows(ok(weft(ran, "threads", "history", THREAD, "--limit", "2", "--before", ids[1])))
    assert [row[0] for row in page] == ids[2:4]


def test_history_refuses_unknown_and_malformed_ids(ran: Path) -> None:
    refused(weft(ran, "threads", "history", OTHER), f"thread {OTHER} not found")
    refused(
        weft(ran, "threads", "history", THREAD, "--before", "yesterday"),
        "before must be a UUID, not 'yesterday'",
    )


@pytest.mark.parametrize(
    "args",
    [
        ["threads", "show", "t1"],
        ["threads", "history", "t1"],
        ["threads", "branch", "t1"],
        ["threads", "snapshot", "t1", "name"],
        ["threads", "rollback", "t1", THREAD],
        ["threads", "lifecycle", "t1", "paused"],
        ["invoke", "echo", "--thread-id", "t1"],
    ],
)
def test_a_thread_id_that_is_not_a_uuid_is_refused(config: Path, args: list[str]) -> None:
    refused(weft(config, *args), "thread_id must be a UUID, not 't1'")


# --- branch / snapshot / rollback ---------------------------------------------------------------


def test_branch_continues_from_a_past_checkpoint(ran: Path) -> None:
    first_run_end = history(ran, THREAD)[3]["checkpoint"]["checkpoint_id"]  # step 1
    out = ok(weft(ran, "threads", "branch", THREAD, "--checkpoint", first_run_end, "--name", "alt"))
    match = re.fullmatch(
        rf"created branch ([0-9a-f-]{{36}}) \(alt\) from checkpoint {first_run_end} "
        rf"of thread {THREAD}\n",
        out,
    )
    assert match, out
    branch = match.group(1)

    assert texts(say(ran, branch, "instead")) == ["hi", "HI", "instead", "INSTEAD"]
    assert texts(say(ran, THREAD, "still")) == ["hi", "HI", "again", "AGAIN", "still", "STILL"]
    fields = {row[0]: row[1] for row in rows(ok(weft(ran, "threads", "show", branch)))}
    assert fields["kind"] == "branch"
    assert fields["name"] == "alt"
    assert fields["parent thread"] == THREAD
    assert fields["source checkpoint"] == first_run_end
    source = json.loads(ok(weft(ran, "threads", "show", THREAD, "--json")))
    assert source["counts"]["branches"] == 1
    assert [row[0] for row in rows(ok(weft(ran, "threads", "ls", "--kind", "branch")))] == [branch]

    head = json.loads(ok(weft(ran, "threads", "branch", THREAD, "--json")))  # from the head
    assert head["kind"] == "branch"
    assert texts(head["values"]) == ["hi", "HI", "again", "AGAIN", "still", "STILL"]


def test_snapshot_is_read_only(ran: Path) -> None:
    out = ok(weft(ran, "threads", "snapshot", THREAD, "before-change"))
    match = re.fullmatch(
        rf"created snapshot ([0-9a-f-]{{36}}) \(before-change\) from checkpoint (\S+) "
        rf"of thread {THREAD}\n",
        out,
    )
    assert match, out
    snapshot, checkpoint = match.groups()
    assert checkpoint == history(ran, THREAD)[0]["checkpoint"]["checkpoint_id"]

    graph_input = json.dumps({"messages": [{"role": "user", "content": "no"}]})
    refused(
        weft(ran, "invoke", "echo", "--thread-id", snapshot, "--input", graph_input),
        f"thread {snapshot} is a snapshot and is read-only: run refused; "
        "branch it to continue from its state",
    )
    assert [row[0] for row in rows(ok(weft(ran, "threads", "ls", "--kind", "snapshot")))] == [
        snapshot
    ]
    oldest = history(ran, THREAD)[-1]["checkpoint"]["checkpoint_id"]
    at_start = json.loads(
        ok(weft(ran, "threads", "snapshot", THREAD, "start", "--checkpoint", oldest, "--json"))
    )
    assert at_start["source_checkpoint_id"] == oldest
    refused(
        weft(ran, "threads", "snapshot", THREAD, "x", "--checkpoint", OTHER),
        f"checkpoint {OTHER} not found in thread {THREAD}",
    )


def test_rollback_marks_the_abandoned_checkpoints_and_continues_from_the_target(
    ran: Path,
) -> None:
    target = history(ran, THREAD)[3]["checkpoint"]["checkpoint_id"]  # the end of the first run
    out = ok(weft(ran, "threads", "rollback", THREAD, target))
    assert out == (
        f"thread {THREAD} rolled back to checkpoint {target}; the later checkpoints stay in "
        "its history, marked abandoned\n"
    )
    table = rows(ok(weft(ran, "threads", "history", THREAD)))
    assert [(row[1], row[2], row[5]) for row in table] == [
        ("1", "rollback", ""),
        ("4", "loop", "yes"),
        ("3", "loop", "yes"),
        ("2", "input", "yes"),
        ("1", "loop", ""),
        ("0", "loop", ""),
        ("-1", "input", ""),
    ]
    assert table[4][0] == target
    fields = {row[0]: row[1] for row in rows(ok(weft(ran, "threads", "show", THREAD)))}
    assert fields["counts"] == "2 messages, 7 checkpoints, 0 branches, 0 runs"
    assert texts(say(ran, THREAD, "redo")) == ["hi", "HI", "redo", "REDO"]

    refused(
        weft(ran, "threads", "rollback", THREAD, OTHER),
        f"checkpoint {OTHER} not found in thread {THREAD}",
    )


# --- lifecycle --------------------------------------------------------------------------------


def test_lifecycle_moves_and_refusals(ran: Path) -> None:
    assert (
        ok(weft(ran, "threads", "lifecycle", THREAD, "paused"))
        == f"thread {THREAD} is now paused\n"
    )
    refused(
        weft(ran, "threads", "lifecycle", THREAD, "completed"),
        f"thread {THREAD} cannot move from lifecycle 'paused' to 'completed'; "
        "allowed from 'paused': active",
    )
    assert (
        json.loads(ok(weft(ran, "threads", "lifecycle", THREAD, "active", "--json")))["lifecycle"]
        == "active"
    )
    ok(weft(ran, "threads", "lifecycle", THREAD, "archived"))
    refused(
        weft(ran, "threads", "lifecycle", THREAD, "active"),
        f"thread {THREAD} cannot move from lifecycle 'archived' to 'active'; "
        "allowed from 'archived': none: it is final",
    )
    refused(
        weft(ran, "threads", "branch", THREAD),
        f"thread {THREAD} has lifecycle 'archived': branching refused; "
        "branch needs lifecycle 'active' or 'paused'",
    )
    refused(
        weft(ran, "threads", "lifecycle", THREAD, "asleep"),
        "lifecycle must be one of active, paused, completed, failed, archived, branched, "
        "not 'asleep'",
    )
    assert [row[4] for row in rows(ok(weft(ran, "threads", "ls")))] == ["archived"]


# --- doctor -----------------------------------------------------------------------------------


def test_doctor_finds_and_repairs_orphan_checkpoints_and_wrong_counts(ran: Path) -> None:
    assert ok(weft(ran, "doctor")) == "no problems found\n"
    say(ran, OTHER, "doomed")
    db = sqlite3.connect(ran.parent / ".weft" / "weft.db")
    with db:
        db.execute("DELETE FROM threads WHERE thread_id = ?", (OTHER,))
        db.execute("UPDATE threads SET count_checkpoints = 99 WHERE thread_id = ?", (THREAD,))
    db.close()

    found = weft(ran, "doctor")
    assert found.exit_code == 1, found.output
    assert rows(found.stdout) == [
        ["orphan_checkpoints", OTHER, "3 checkpoint(s) without a thread row", "no"],
        ["wrong_counts", THREAD, "count_checkpoints is 99, rows say 6", "no"],
    ]
    assert "2 problems left; run `weft doctor --repair` to fix them" in found.stdout

    repaired = weft(ran, "doctor", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert [row[-1] for row in rows(repaired.stdout)] == ["yes", "yes"]
    assert "repaired 2 problems" in repaired.stdout
    assert ok(weft(ran, "doctor")) == "no problems found\n"
    adopted = json.loads(ok(weft(ran, "threads", "show", OTHER, "--json")))
    assert adopted["counts"]["checkpoints"] == 3
    assert adopted["graph_id"] == "echo"
    fields = {row[0]: row[1] for row in rows(ok(weft(ran, "threads", "show", THREAD)))}
    assert fields["counts"] == "4 messages, 6 checkpoints, 0 branches, 0 runs"


# --- help -------------------------------------------------------------------------------------


def test_every_command_and_option_has_help() -> None:
    root: Any = typer.main.get_command(app)
    commands = {
        f"{group} {name}": command
        for group in ("threads", "sessions")
        for name, command in root.commands[group].commands.items()
    }
    commands["doctor"] = root.commands["doctor"]
    assert root.commands["threads"].help
    assert root.commands["sessions"].help
    for name, command in commands.items():
        assert command.help, name
        for param in command.params:
            assert getattr(param, "help", None), f"{name}: {param.name}"
    listed = runner.invoke(app, ["threads", "--help"], env={"COLUMNS": "200"}).stdout
    for name in ("ls", "show", "history", "branch", "snapshot", "rollback", "lifecycle"):
        assert f" {name} " in listed


# --- the README's example ---------------------------------------------------------------------


README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_the_readme_threads_and_sessions_example_runs(config: Path) -> None:
    section = README.read_text().split("### Threads, sessions and the doctor", 1)[1]
    script = re.findall(r"```sh\n(.*?)```", section, flags=re.S)[0]
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=config.parent.parent,  # the folder holding the copy of examples/
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "error" not in done.stderr
    assert "is now paused" in done.stdout
    assert "created branch " in done.stdout
    assert "book a flight" in done.stdout
    assert done.stdout.endswith("no problems found\n")
