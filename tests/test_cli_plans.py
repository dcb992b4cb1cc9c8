"""``weft run FILE``, ``weft plan show FILE`` and ``weft sessions status ID`` on real plans of
the tiny graphs in tests/fixtures/graphs/plan_steps.py (and steps.py), with a SQLite file
in tmp_path.

Most tests call the CLI in process (typer's CliRunner: no terminal, so ``weft run`` prints
event lines and the outcome table); the interrupt and Ctrl-C tests run ``weft`` as a
process.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.conftest import FIXTURES
from tests.test_cli_threads import rows
from weft.cli import app
from weft.config import Settings
from weft.plan_view import PlanReport
from weft.runtime import Runtime

runner = CliRunner()
WEFT = Path(sys.executable).parent / "weft"

CONFIG = """\
database_url: sqlite:///weft.db
plans: {poll_seconds: 0.2}
graphs:
  produce: plan_steps.py:produce
  consume: plan_steps.py:consume
  sleepy: plan_steps.py:sleepy
  ask: steps.py:review
  boom: plan_steps.py:boom
"""

RESEARCH = """\
name: research
policy: best_effort
threads:
  collect:
    graph_id: produce
    input: {topic: solar, count: 3}
  outline:
    graph_id: produce
    input: {topic: outline, count: 1}
  analyze:
    graph_id: consume
    inputs_from:
      collect: {findings: findings}
  write:
    graph_id: consume
    after: [analyze, outline]
    when: "outline.confidence > `0.5`"
"""

FAILING = """\
policy: best_effort
threads:
  bad:
    graph_id: boom
    retries: {max: 1, backoff: 0}
  after_bad: {graph_id: produce, after: bad}
  fine: {graph_id: produce}
"""

CYCLIC = """\
threads:
  collect:
    graph_id: produce
    after: analyze
  analyze:
    graph_id: consume
    after: collect
"""

REVIEW = """\
threads:
  draft: {graph_id: produce}
  review:
    graph_id: ask
    after: draft
  publish: {graph_id: consume, after: review}
  side: {graph_id: produce}
"""

NAP = """\
threads:
  nap: {graph_id: sleepy, input: {seconds: 3}}
  next: {graph_id: produce, after: nap}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with weft.yaml, the plan graphs and plan files; the current directory."""
    for name in list(os.environ):
        if name.startswith("WEFT_") and not name.startswith("WEFT_TEST_"):
            monkeypatch.delenv(name)
    shutil.copy(FIXTURES / "plan_steps.py", tmp_path / "plan_steps.py")
    shutil.copy(FIXTURES / "steps.py", tmp_path / "steps.py")
    (tmp_path / "weft.yaml").write_text(CONFIG)
    for name, text in (
        ("research.yaml", RESEARCH),
        ("failing.yaml", FAILING),
        ("cyclic.yaml", CYCLIC),
        ("review.yaml", REVIEW),
        ("nap.yaml", NAP),
    ):
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def weft(*args: str) -> Result:
    return runner.invoke(app, list(args), env={"COLUMNS": "200"})


def session_of(stdout: str) -> str:
    found = re.search(r"^session ([0-9a-f-]{36})$", stdout, re.MULTILINE)
    assert found, stdout
    return found[1]


def outcome(stdout: str) -> dict[str, list[str]]:
    """The outcome table's rows by thread name: state, attempts, duration, error/reason."""
    return {row[0]: row[1:] for row in rows(stdout)}


def final_report(project: Path, session_id: str) -> PlanReport:
    """The plan's report once it ended, from a runtime that runs plans (as weft serve)."""

    async def wait() -> PlanReport:
        async with Runtime.open(Settings.load(project / "weft.yaml")) as rt:
            async with asyncio.timeout(60):
                return await rt.plans.wait(session_id)

    return asyncio.run(wait())


# --- weft run ----------------------------------------------------------------------------


def test_run_to_completion(project: Path) -> None:
    result = weft("run", "research.yaml")
    assert result.exit_code == 0, result.output
    out = result.stdout
    sid = session_of(out)
    lines = out.splitlines()
    events = [re.sub(r"^\[\d\d:\d\d:\d\d\] ", "", line) for line in lines if line.startswith("[")]
    assert events[0] == "plan started (4 threads)"
    assert events[-1] == "plan completed"
    assert "collect started (attempt 1)" in events
    assert "analyze succeeded" in events
    assert "write skipped: condition 'outline.confidence > `0.5`' is false" in events
    table = outcome(out)
    assert list(table) == ["collect", "outline", "analyze", "write"]
    for name in ("collect", "outline", "analyze"):
        state, attempts, duration, note = table[name]
        assert (state, attempts, note) == ("succeeded", "1", "")
        assert re.fullmatch(r"\d+\.\d\d s", duration), duration
    assert table["write"] == [
        "skipped",
        "0",
        "",
        "condition 'outline.confidence > `0.5`' is false",
    ]
    assert lines[-1] == "success rate: 100%"

    status = weft("sessions", "status", sid, "--json")
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["status"] == "completed"
    assert report["counts"] == {"succeeded": 3, "skipped": 1}


def test_set_overrides_a_plan_key(project: Path) -> None:
    result = weft(
        "run", "research.yaml", "--set", "threads.outline.input.count=2", "--set", "name=other"
    )
    assert result.exit_code == 0, result.output
    table = outcome(result.stdout)
    assert table["write"][:2] == ["succeeded", "1"]
    sid = session_of(result.stdout)
    shown = weft("sessions", "show", sid, "--json")
    assert json.loads(shown.stdout)["name"] == "other"

    bad = weft("run", "research.yaml", "--set", "threads.outline.input")
    assert bad.exit_code == 2
    assert "--set 'threads.outline.input': expected KEY=VALUE" in bad.stderr


def test_a_failing_plan_exits_1(project: Path) -> None:
    result = weft("run", "failing.yaml")
    assert result.exit_code == 1, result.output
    table = outcome(result.stdout)
    assert table["bad"][:2] == ["failed", "2"]
    assert "boom on purpose" in table["bad"][3]
    assert table["after_bad"] == ["skipped", "0", "", "source 'bad' failed"]
    assert table["fine"][:2] == ["succeeded", "1"]
    assert result.stdout.splitlines()[-1] == "success rate: 33%"
    assert re.search(
        r"^\[\d\d:\d\d:\d\d\] bad retrying in 0(\.0)? s after attempt 1: ", result.stdout, re.M
    )
    assert "plan failed" in result.stdout


def test_a_cyclic_plan_exits_2_with_the_cycle(project: Path) -> None:
    result = weft("run", "cyclic.yaml")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "cyclic.yaml:4: threads.collect.after: cycle: collect → analyze → collect",
        "invalid plan: 1 problem; nothing ran",
    ]
    status = weft("sessions", "ls", "--json")
    assert json.loads(status.stdout) == []

    missing = weft("run", "nowhere.yaml")
    assert missing.exit_code == 2
    assert missing.stderr.splitlines()[0] == "nowhere.yaml: file not found"


def test_the_config_beside_the_plan_file_is_found(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.chdir(elsewhere)
    result = weft("run", str(project / "research.yaml"))
    assert result.exit_code == 0, result.output
    assert (project / "weft.db").is_file()
    assert not (elsewhere / "weft.db").exists()
    show = weft("plan", "show", str(project / "cyclic.yaml"))
    assert show.exit_code == 2
    assert "cycle: collect → analyze → collect" in show.stderr


def test_detach_leaves_the_plan_to_a_runtime(project: Path) -> None:
    result = weft("run", "research.yaml", "--detach")
    assert result.exit_code == 0, result.output
    sid = session_of(result.stdout)
    assert result.stdout.splitlines()[-1] == (
        "plan started detached: a `weft serve` on the same database runs it; "
        f"`weft sessions status {sid}` shows its progress"
    )
    status = json.loads(weft("sessions", "status", sid, "--json").stdout)
    assert status["status"] == "running"
    assert {t["state"] for t in status["threads"]} == {"waiting"}

    report = final_report(project, sid)
    assert report.status == "completed"
    assert [t.state for t in report.threads] == ["succeeded", "succeeded", "succeeded", "skipped"]


# --- weft plan show / weft sessions status ----------------------------------------------


def test_plan_show(project: Path) -> None:
    result = weft("plan", "show", "research.yaml")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "plan 'research': 4 threads, policy best_effort, max_parallel 4\n\n"
        "levels:\n"
        "  1. collect, outline\n"
        "  2. analyze\n"
        "  3. write\n\n"
        "critical path: collect → analyze → write (3 threads)\n\n"
        "mermaid:\n"
        "flowchart TD\n"
    )
    assert '-->|"findings ← findings"|' in result.stdout
    assert json.loads(weft("sessions", "ls", "--json").stdout) == []  # nothing written

    changed = weft("plan", "show", "research.yaml", "--set", "max_parallel=9")
    assert "max_parallel 9" in changed.stdout
    invalid = weft("plan", "show", "research.yaml", "--set", "threads.write.after=[nope]")
    assert invalid.exit_code == 2
    assert invalid.stderr.splitlines() == [
        "--set 'threads.write.after=[nope]': threads.write.after[0]: unknown thread 'nope' "
        "(threads: analyze, collect, outline, write)",
        "research.yaml:17: threads.write.when: when refers to 'outline', which is not a "
        "source of write (sources: nope)",
        "invalid plan: 2 problems; nothing ran",
    ]


def test_sessions_status_table(project: Path) -> None:
    sid = session_of(weft("run", "failing.yaml").stdout)
    result = weft("sessions", "status", sid)
    assert result.exit_code == 0, result.output
    fields = dict(row[:2] for row in rows(result.stdout) if len(row) == 2)
    assert fields["status"] == "failed"
    assert fields["policy"] == "best_effort"
    assert fields["threads"] == "failed 1, skipped 1, succeeded 1"
    assert fields["success rate"] == "33%"
    threads = {row[0]: row[1:] for row in rows(result.stdout) if len(row) == 6}
    assert threads["bad"][:2] == ["failed", "2"]
    assert threads["after_bad"][3] == "source 'bad' failed"
    assert re.fullmatch(r"[0-9a-f-]{36}", threads["fine"][4])

    with_outputs = weft("sessions", "status", sid, "--outputs")
    fine = next(row for row in rows(with_outputs.stdout) if row[0] == "fine")
    assert json.loads(fine[-1]) == {
        "findings": ["nothing fact 1", "nothing fact 2"],
        "confidence": 0.9,
    }

    missing = weft("sessions", "status", "44444444-4444-4444-4444-444444444444")
    assert missing.exit_code == 1
    assert missing.stderr == "error: session 44444444-4444-4444-4444-444444444444 not found\n"
    bare = json.loads(weft("sessions", "create", "--json").stdout)["session_id"]
    no_plan = weft("sessions", "status", bare)
    assert no_plan.exit_code == 1
    assert no_plan.stderr == f"error: session {bare} has no plan\n"


# --- as a process: human interrupts and Ctrl-C -------------------------------------------


def _start(project: Path, *args: str) -> subprocess.Popen[str]:
    def default_sigint() -> None:  # a shell's background job ignores SIGINT; undo that
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    return subprocess.Popen(
        [str(WEFT), *args],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "200", "PYTHONUNBUFFERED": "1"},
        preexec_fn=default_sigint,
    )


def _read_until(proc: subprocess.Popen[str], pattern: str, seen: list[str]) -> re.Match[str]:
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if found := re.search(pattern, line):
            return found
    proc.kill()
    raise AssertionError("".join(seen) + (proc.stderr.read() if proc.stderr else ""))


@pytest.mark.slow
@pytest.mark.parametrize("how", ["weft invoke", "a run"])
def test_an_interrupted_thread_waits_for_a_resume_from_another_process(
    project: Path, how: str
) -> None:
    proc = _start(project, "run", "review.yaml")
    seen: list[str] = []
    try:
        hint = _read_until(proc, r"^review waits for a human \(interrupt\) on thread (\S+);", seen)
        tid = hint[1]
        invoke = _read_until(proc, r"^  (weft invoke .*)$", seen)
        assert invoke[1] == f"weft invoke ask --thread-id {tid} --resume '\"approved\"'"
        curl = _read_until(proc, r"^  curl -X POST (\S+) .* -d '(.*)'$", seen)
        assert curl[1] == f"http://127.0.0.1:2024/threads/{tid}/runs/wait"
        assert json.loads(curl[2]) == {"assistant_id": "ask", "command": {"resume": "approved"}}
        sdk = _read_until(proc, r"^  or with the SDK: (.*)$", seen)
        assert sdk[1] == f"client.runs.wait({tid!r}, 'ask', command={{\"resume\": ...}})"

        if how == "weft invoke":
            resumed = subprocess.run(
                [str(WEFT), "invoke", "ask", "--thread-id", tid, "--resume", '"approved"'],
                cwd=project,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert resumed.returncode == 0, resumed.stderr
            assert json.loads(resumed.stdout) == {"verdict": "approved"}
        else:

            async def resume() -> Any:
                settings = Settings.load(project / "weft.yaml")
                async with Runtime.open(settings, execute_plans=False) as rt:
                    return await rt.runs.wait(tid, "ask", command={"resume": "approved"})

            assert asyncio.run(resume()) == {"verdict": "approved"}
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(seen) + out + err
    text = "".join(seen) + out
    assert "side succeeded" in text
    table = outcome(out)
    assert [table[n][0] for n in ("draft", "review", "publish", "side")] == ["succeeded"] * 4


@pytest.mark.slow
def test_ctrl_c_leaves_the_plan_to_resume(project: Path) -> None:
    proc = _start(project, "run", "nap.yaml")
    seen: list[str] = []
    try:
        sid = _read_until(proc, r"^session (\S+)$", seen)[1]
        _read_until(proc, r"nap started", seen)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(seen) + out + err
    assert err.strip().endswith(
        f"stopped following session {sid}: its plan stays running in the database and a "
        "`weft serve` on the same database resumes it where it stands; "
        f"`weft sessions status {sid}` shows its progress"
    )
    assert "Traceback" not in err
    report = final_report(project, sid)
    assert report.status == "completed"
    assert [t.state for t in report.threads] == ["succeeded", "succeeded"]
    assert report.threads[0].attempts == 1
