"""The session plan examples in examples/sessions/ run offline with the outcomes they describe."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from weft.config import Settings
from weft.errors import NotFoundError
from weft.plans import PlanReport, ThreadReport
from weft.runtime import Runtime
from weft.schema import Interaction

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "sessions"


@pytest.fixture
async def rt(database_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    """A runtime on examples/sessions/weft.yaml with a fresh database of each backend."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = dict(os.environ)
    settings = Settings.load(EXAMPLES / "weft.yaml", env={"WEFT_DATABASE_URL": database_url})
    try:
        async with Runtime.open(settings) as runtime:
            yield runtime
    finally:
        os.environ.clear()
        os.environ.update(saved)


def by_name(report: PlanReport) -> dict[str, ThreadReport]:
    return {t.name: t for t in report.threads}


async def values(rt: Runtime, thread_id: str) -> dict[str, Any]:
    state = await rt.threads.state(thread_id)
    assert isinstance(state.values, dict)
    return state.values


async def plan_log(rt: Runtime, session_id: str) -> list[dict[str, Any]]:
    return [entry.content async for entry in rt.plans.events(session_id)]


async def test_research_fans_out_flows_data_and_skips_by_condition(rt: Runtime) -> None:
    report = await rt.sessions.run_plan(EXAMPLES / "research.yaml")

    assert report.status == "completed"
    assert report.policy == "strict"
    threads = by_name(report)
    assert {n: (t.state, t.attempts) for n, t in threads.items()} == {
        "collect": ("succeeded", 1),
        "analyze": ("succeeded", 1),
        "outline": ("succeeded", 1),
        "write": ("succeeded", 1),
        "fact_check": ("skipped", 0),
    }
    assert threads["fact_check"].reason == (
        "condition \"analyze.analysis.confidence != 'high'\" is false"
    )
    assert report.success_rate == 1.0  # a thread skipped by its condition does not count
    assert report.counts == {"succeeded": 4, "skipped": 1}
    session = await rt.sessions.get(report.session_id)
    assert session.name == "research report"
    assert session.user_id == "demo"
    assert session.status == "completed"

    # data flow: analyze got collect's findings and topic; write got all three sources' fields
    collected = await values(rt, threads["collect"].thread_id)
    assert collected["count"] == 3
    analyzed = await values(rt, threads["analyze"].thread_id)
    assert analyzed["findings"] == collected["findings"]
    assert analyzed["topic"] == "solar power"
    assert analyzed["analysis"]["confidence"] == "high"
    written = await values(rt, threads["write"].thread_id)
    assert written["findings"] == collected["findings"]
    assert written["summary"] == analyzed["analysis"]["summary"]
    assert written["confidence"] == "high"
    assert written["sections"] == ["Background", "Findings", "Outlook"]
    assert written["report"].splitlines()[:3] == [
        "# solar power",
        "The findings agree; costs fell and capacity grew. (confidence: high)",
        "## Background",
    ]

    # the plan's threads are ordinary threads of the session, each with its run
    for t in report.threads:
        if t.state == "succeeded":
            thread = await rt.threads.get(t.thread_id)
            assert thread.session_id == report.session_id
            assert thread.name == t.name
            assert t.run_id is not None
    with pytest.raises(NotFoundError):
        await rt.threads.get(threads["fact_check"].thread_id)

    # fan-out: analyze and outline both started before either of them ended
    log = await plan_log(rt, report.session_id)
    events = [(c["event"], c.get("thread")) for c in log]
    assert events[0] == ("plan_started", None)
    assert events[-1] == ("plan_completed", None)
    started = {t: events.index(("thread_started", t)) for t in ("analyze", "outline")}
    ended = {t: events.index(("thread_succeeded", t)) for t in ("analyze", "outline")}
    assert max(started.values()) < min(ended.values())
    assert events.index(("thread_succeeded", "collect")) < min(started.values())
    assert ("thread_skipped", "fact_check") in events


async def test_failing_branch_is_retried_then_skips_its_dependents(rt: Runtime) -> None:
    report = await rt.sessions.run_plan(EXAMPLES / "failing.yaml")

    assert report.status == "failed"
    assert report.policy == "best_effort"
    threads = by_name(report)
    assert {n: (t.state, t.attempts) for n, t in threads.items()} == {
        "collect": ("succeeded", 1),
        "scrape": ("failed", 2),  # retries {max: 1}: two attempts
        "tabulate": ("skipped", 0),
        "analyze": ("succeeded", 1),
        "write": ("succeeded", 1),
    }
    assert threads["scrape"].error == "cannot fetch pages about 'wind power': no network"
    assert threads["tabulate"].reason == "source 'scrape' failed"
    assert report.success_rate == pytest.approx(3 / 5)
    assert (await rt.sessions.get(report.session_id)).status == "failed"
    written = await values(rt, threads["write"].thread_id)
    assert written["topic"] == "wind power"
    assert written["confidence"] == "high"

    log = await plan_log(rt, report.session_id)
    scrape = [(c["event"], c.get("attempt")) for c in log if c.get("thread") == "scrape"]
    assert scrape == [
        ("thread_started", 1),
        ("thread_retrying", 1),
        ("thread_started", 2),
        ("thread_failed", 2),
    ]
    retrying = next(c for c in log if c["event"] == "thread_retrying")
    assert retrying["error"] == "cannot fetch pages about 'wind power': no network"
    assert 0 <= retrying["delay"] <= 1  # backoff 0.1, max_backoff 1
    assert log[-1]["event"] == "plan_failed"
    # the failing thread's runs are ordinary runs, both kept with their error
    runs = await rt.runs.list(threads["scrape"].thread_id)
    assert sorted(r.status for r in runs) == ["error", "error"]


async def _until_interrupted(rt: Runtime, session_id: str) -> list[Interaction]:
    """The plan's events until ``draft`` is interrupted and ``collect`` succeeded."""
    seen: list[Interaction] = []
    waiting = {("thread_interrupted", "draft"), ("thread_succeeded", "collect")}
    async for entry in rt.plans.events(session_id):
        seen.append(entry)
        waiting.discard((entry.content["event"], entry.content.get("thread")))
        if not waiting:
            return seen
    raise AssertionError(f"the plan ended first: {[e.content for e in seen]}")


@pytest.mark.parametrize(
    ("answer", "announce", "result"),
    [
        ("yes", "succeeded", "published: We are glad to announce it: ready for orders next month."),
        ("no", "skipped", "not published (reviewer said 'no')"),
    ],
)
async def test_review_pauses_its_branch_until_resumed(
    rt: Runtime, answer: str, announce: str, result: str
) -> None:
    session, _ = await rt.plans.create(EXAMPLES / "review.yaml")
    sid = session.session_id
    await rt.plans.run(sid)
    await _until_interrupted(rt, sid)

    # the draft waits for its reviewer, and its dependent with it; the rest went on
    report = await rt.plans.status(sid)
    assert report.status == "running"
    threads = by_name(report)
    assert {n: t.state for n, t in threads.items()} == {
        "draft": "interrupted",
        "announce": "waiting",
        "collect": "succeeded",
    }
    draft_id = threads["draft"].thread_id
    thread = await rt.threads.get(draft_id)
    assert thread.status == "interrupted"
    [interrupt] = thread.interrupts[next(iter(thread.interrupts))]
    assert interrupt["value"]["prompt"] == (
        "Publish this announcement? (yes/no) "
        "We are glad to announce it: ready for orders next month."
    )

    # a reviewer resumes the thread like any other (here in process; an SDK client works too)
    resumed = await rt.runs.wait(draft_id, "approval", command={"resume": answer})
    assert resumed["result"] == result

    report = await rt.plans.wait(sid)
    assert report.status == "completed"
    threads = by_name(report)
    assert {n: t.state for n, t in threads.items()} == {
        "draft": "succeeded",
        "announce": announce,
        "collect": "succeeded",
    }
    assert threads["draft"].attempts == 1
    if announce == "succeeded":
        announced = await values(rt, threads["announce"].thread_id)
        assert announced["summary"] == result
        assert announced["report"].startswith("# announcement\n" + result)
    else:
        assert threads["announce"].reason == "condition \"draft.approval == 'yes'\" is false"
    events = [(e["event"], e.get("thread")) for e in await plan_log(rt, sid)]
    assert ("thread_interrupted", "draft") in events
    assert events[-1] == ("plan_completed", None)
    assert (await rt.sessions.get(sid)).status == "completed"


@pytest.mark.parametrize(
    ("plan", "code", "outcome"),
    [("research.yaml", 0, "plan completed"), ("failing.yaml", 1, "plan failed")],
)
def test_weft_run_finishes_the_example_with_its_exit_code(
    plan: str, code: int, outcome: str, tmp_path: Path
) -> None:
    """``weft run examples/sessions/PLAN`` finds the weft.yaml beside the plan."""
    weft = Path(sys.executable).parent / "weft"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_")}
    done = subprocess.run(
        [str(weft), "run", str(EXAMPLES / plan), "--database", f"sqlite:///{tmp_path}/w.db"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=120,
    )
    assert done.returncode == code, done.stdout + done.stderr
    assert outcome in done.stdout
