"""Session plans executed by the runtime (weft.plan_runs): order, parallelism, data flow,
conditions, policies, retries, timeouts, interrupts, cancel, events, and restart after SIGKILL."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FIXTURES, kill_after_first_line
from weft.config import Settings
from weft.errors import ConflictError
from weft.plans import PlanError, PlanReport
from weft.runtime import Runtime

GRAPHS = {
    name: f"./plan_steps.py:{name}" for name in ("produce", "consume", "sleepy", "flaky", "boom")
} | {"ask": "./steps.py:review"}


def _project(tmp_path: Path, lease: float = 10.0) -> Path:
    shutil.copy(FIXTURES / "plan_steps.py", tmp_path / "plan_steps.py")
    shutil.copy(FIXTURES / "steps.py", tmp_path / "steps.py")
    config = tmp_path / "langgraph.json"
    config.write_text(
        json.dumps(
            {
                "graphs": GRAPHS,
                "weft": {
                    "runs": {"default_timeout": 30},
                    "plans": {"lease_seconds": lease, "poll_seconds": 0.2},
                },
            }
        )
    )
    return config


@pytest.fixture(params=["sqlite-file", pytest.param("postgres")])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path}/weft.db"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
async def rt(url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    settings = Settings.load(_project(tmp_path), env={"WEFT_DATABASE_URL": url})
    async with Runtime.open(settings) as runtime:
        yield runtime


def by_name(report: PlanReport) -> dict[str, Any]:
    return {t.name: t for t in report.threads}


async def run_to_end(rt: Runtime, plan: dict[str, Any]) -> PlanReport:
    return await asyncio.wait_for(rt.sessions.run_plan(plan), timeout=60)


async def outputs(rt: Runtime, report: PlanReport) -> dict[str, Any]:
    rows = await rt.storage.plan_threads(report.session_id)
    return {r.name: r.output for r in rows}


async def test_sequence_data_flow_and_conditions(rt: Runtime) -> None:
    report = await run_to_end(
        rt,
        {
            "name": "research",
            "threads": {
                "collect": {"graph_id": "produce", "input": {"topic": "solar", "count": 3}},
                "analyze": {
                    "graph_id": "consume",
                    "inputs_from": {"collect": {"findings": "findings"}},
                    "input": {"note": "saw "},
                },
                "write": {
                    "graph_id": "consume",
                    "after": ["analyze"],
                    "when": "analyze.summary == 'saw 3 findings'",
                },
                "doubt": {
                    "graph_id": "consume",
                    "after": "collect",
                    "when": "collect.confidence < `0.5`",
                },
            },
        },
    )
    threads = by_name(report)
    assert report.status == "completed"
    assert {n: t.state for n, t in threads.items()} == {
        "collect": "succeeded",
        "analyze": "succeeded",
        "write": "succeeded",
        "doubt": "skipped",
    }
    assert threads["doubt"].reason == "condition 'collect.confidence < `0.5`' is false"
    assert all(t.attempts == 1 for n, t in threads.items() if n != "doubt")
    assert report.success_rate == 1.0
    out = await outputs(rt, report)
    assert out["analyze"]["findings"] == ["solar fact 1", "solar fact 2", "solar fact 3"]
    assert out["analyze"]["summary"] == "saw 3 findings"
    session = await rt.sessions.get(report.session_id)
    assert session.status == "completed"
    assert session.name == "research"
    # every thread ran as an ordinary run on a thread of the session
    analyze = await rt.threads.get(threads["analyze"].thread_id)
    assert analyze.session_id == report.session_id
    assert analyze.name == "analyze"
    runs = await rt.runs.list(analyze.thread_id)
    assert [r.status for r in runs] == ["success"]
    assert runs[0].metadata["weft_plan"]["thread"] == "analyze"


async def test_listeners_each_see_every_event_and_leave_nothing_behind(rt: Runtime) -> None:
    plan = {
        "threads": {f"t{i}": {"graph_id": "sleepy", "input": {"seconds": 0.1}} for i in range(3)}
    }
    session, _ = await rt.plans.create(plan)
    sid = session.session_id

    async def follow() -> list[str]:
        return [e.content["event"] async for e in rt.plans.events(sid)]

    async def first_only() -> str:
        events = rt.plans.events(sid)
        first = await anext(events)
        await events.aclose()  # a listener that leaves early
        return str(first.content["event"])

    listeners = [asyncio.create_task(follow()) for _ in range(2)]
    early = asyncio.create_task(first_only())
    await asyncio.sleep(0)  # all three listening before the plan starts
    await rt.plans.run(sid)
    seen = await asyncio.gather(*listeners)
    assert seen[0] == seen[1]
    assert seen[0][0] == "plan_started"
    assert seen[0][-1] == "plan_completed"
    assert await early == "plan_started"
    assert rt.plans._changed == {}  # no wake-up kept for a session nobody follows


async def test_max_parallel_bounds_the_threads_running_at_once(rt: Runtime) -> None:
    plan = {
        "max_parallel": 2,
        "threads": {f"t{i}": {"graph_id": "sleepy", "input": {"seconds": 0.15}} for i in range(6)},
    }
    report = await run_to_end(rt, plan)
    assert report.status == "completed"
    events = [e.content async for e in rt.plans.events(report.session_id)]  # replayed from the log
    running = peak = 0
    for event in events:
        if event["event"] == "thread_started":
            running += 1
            peak = max(peak, running)
        elif event["event"] == "thread_succeeded":
            running -= 1
    assert peak == 2
    assert events[0]["event"] == "plan_started"
    assert events[-1]["event"] == "plan_completed"
    assert events[-1]["counts"] == {"succeeded": 6}


async def test_best_effort_skips_the_dependents_of_a_failure(rt: Runtime) -> None:
    report = await run_to_end(
        rt,
        {
            "policy": "best_effort",
            "threads": {
                "a": {"graph_id": "boom"},
                "b": {"graph_id": "consume", "after": "a"},
                "c": {"graph_id": "consume", "after": "b"},
                "d": {"graph_id": "produce"},
            },
        },
    )
    threads = by_name(report)
    assert report.status == "failed"
    assert threads["a"].state == "failed"
    assert "boom on purpose" in (threads["a"].error or "")
    assert threads["b"].state == "skipped"
    assert threads["b"].reason == "source 'a' failed"
    assert threads["c"].state == "skipped"
    assert threads["c"].reason == "source 'b' was skipped"
    assert threads["d"].state == "succeeded"
    assert (await rt.sessions.get(report.session_id)).status == "failed"


async def test_strict_stops_at_the_first_failure_and_cancels_what_runs(rt: Runtime) -> None:
    report = await run_to_end(
        rt,
        {
            "policy": "strict",
            "threads": {
                "a": {"graph_id": "boom"},
                "slow": {"graph_id": "sleepy", "input": {"seconds": 20}},
                "b": {"graph_id": "consume", "after": "a"},
            },
        },
    )
    threads = by_name(report)
    assert report.status == "failed"
    assert threads["a"].state == "failed"
    reason = "plan stopped: 'a' failed (policy strict)"
    assert threads["slow"].state == "cancelled"
    assert threads["slow"].reason == reason
    assert threads["b"].state == "cancelled"
    for _ in range(100):  # the cancelled run ends a moment later
        runs = await rt.runs.list(threads["slow"].thread_id)
        if runs and runs[0].status == "interrupted":
            break
        await asyncio.sleep(0.05)
    assert runs[0].status == "interrupted"


async def test_retries_count_attempts_until_success_or_the_limit(rt: Runtime) -> None:
    report = await run_to_end(
        rt,
        {
            "policy": "best_effort",
            "retries": {"max": 2, "backoff": 0.01, "max_backoff": 0.05},
            "threads": {
                "twice": {"graph_id": "flaky", "input": {"fail_times": 2}},
                "thrice": {"graph_id": "flaky", "input": {"fail_times": 3}},
            },
        },
    )
    threads = by_name(report)
    assert threads["twice"].state == "succeeded"
    assert threads["twice"].attempts == 3
    assert threads["thrice"].state == "failed"
    assert threads["thrice"].attempts == 3
    assert "flaky failure 3" in (threads["thrice"].error or "")
    retrying = [
        e.content
        async for e in rt.plans.events(report.session_id)
        if e.content["event"] == "thread_retrying"
    ]
    assert sorted((e["thread"], e["attempt"]) for e in retrying) == [
        ("thrice", 1),
        ("thrice", 2),
        ("twice", 1),
        ("twice", 2),
    ]
    assert all(0 <= e["delay"] <= 0.05 for e in retrying)


async def test_a_thread_past_its_timeout_is_timed_out(rt: Runtime) -> None:
    report = await run_to_end(
        rt,
        {
            "policy": "best_effort",
            "threads": {
                "slow": {"graph_id": "sleepy", "input": {"seconds": 20}, "timeout": 0.3},
                "after": {"graph_id": "consume", "after": "slow"},
            },
        },
    )
    threads = by_name(report)
    assert threads["slow"].state == "timed_out"
    assert threads["slow"].error == "the thread passed its timeout of 0.3 s"
    assert threads["after"].reason == "source 'slow' timed out"
    runs = await rt.runs.list(threads["slow"].thread_id)
    assert runs[0].status == "interrupted"


@pytest.mark.parametrize("direct", [False, True])
async def test_an_interrupt_pauses_its_branch_until_resumed(rt: Runtime, direct: bool) -> None:
    session, _ = await rt.plans.create(
        {
            "threads": {
                "review": {"graph_id": "ask", "input": {"draft": "v1"}},
                "publish": {"graph_id": "consume", "after": "review"},
                "other": {"graph_id": "produce"},
            }
        }
    )
    await rt.plans.run(session.session_id)
    for _ in range(200):
        threads = by_name(await rt.plans.status(session.session_id))
        if threads["review"].state == "interrupted" and threads["other"].state == "succeeded":
            break
        await asyncio.sleep(0.05)
    assert threads["review"].state == "interrupted"
    assert threads["other"].state == "succeeded"
    assert threads["publish"].state == "waiting"
    if direct:  # weft invoke --resume: the graph runs in process and leaves no run record
        async for _ in rt.invoke("ask", None, thread_id=threads["review"].thread_id, resume="yes"):
            pass
    else:
        tid = threads["review"].thread_id
        result = await rt.runs.wait(tid, "ask", command={"resume": "yes"})
        assert result["verdict"] == "yes"
    report = await asyncio.wait_for(rt.plans.wait(session.session_id), timeout=30)
    threads = by_name(report)
    assert report.status == "completed"
    assert threads["review"].state == "succeeded"
    assert threads["publish"].state == "succeeded"
    assert (await outputs(rt, report))["review"]["verdict"] == "yes"


async def test_cancel_stops_a_running_plan_and_refuses_a_finished_one(rt: Runtime) -> None:
    session, _ = await rt.plans.create(
        {"threads": {"slow": {"graph_id": "sleepy", "input": {"seconds": 20}},
                     "next": {"graph_id": "consume", "after": "slow"}}}
    )  # fmt: skip
    await rt.plans.run(session.session_id)
    for _ in range(200):
        if by_name(await rt.plans.status(session.session_id))["slow"].state == "running":
            break
        await asyncio.sleep(0.02)
    report = await rt.plans.cancel(session.session_id)
    assert report.status == "cancelled"
    assert {t.state for t in report.threads} == {"cancelled"}
    assert (await rt.sessions.get(session.session_id)).status == "cancelled"
    with pytest.raises(ConflictError) as e:
        await rt.plans.cancel(session.session_id)
    assert str(e.value) == (
        f"session {session.session_id} plan is already cancelled; "
        "only a ready or running plan can be cancelled"
    )
    events = [e.content["event"] async for e in rt.plans.events(session.session_id)]
    assert events[-1] == "plan_cancelled"


async def test_run_time_mapping_and_expression_failures_name_the_problem(rt: Runtime) -> None:
    report = await run_to_end(
        rt,
        {
            "policy": "best_effort",
            "threads": {
                "collect": {"graph_id": "produce"},
                "missing": {
                    "graph_id": "consume",
                    "inputs_from": {"collect": {"findings": "nowhere.deep"}},
                },
                "raising": {
                    "graph_id": "consume",
                    "after": "collect",
                    "when": "abs(collect.findings) > `1`",
                },
            },
        },
    )
    threads = by_name(report)
    assert threads["missing"].state == "failed"
    assert threads["missing"].error == (
        "inputs_from collect: 'nowhere.deep' is missing from collect's final state"
    )
    assert threads["raising"].state == "failed"
    assert (threads["raising"].error or "").startswith("when 'abs(collect.findings) > `1`' failed:")
    assert report.status == "failed"


async def test_an_invalid_plan_writes_nothing(rt: Runtime) -> None:
    before = await rt.sessions.count()
    with pytest.raises(PlanError) as e:
        await rt.plans.create(
            {"threads": {"a": {"graph_id": "nope"}, "b": {"graph_id": "consume", "after": "b"}}}
        )
    assert any("unknown workflow 'nope'" in p for p in e.value.problems)
    assert any("b depends on itself" in p for p in e.value.problems)
    assert await rt.sessions.count() == before


# --- restart after SIGKILL -------------------------------------------------------------------

CRASHING = """
import asyncio, sys
from weft.config import Settings
from weft.runtime import Runtime

async def main():
    settings = Settings.load(sys.argv[1], env={"WEFT_DATABASE_URL": sys.argv[2]})
    async with Runtime.open(settings) as rt:
        session, _ = await rt.plans.create({
            "threads": {
                "first": {"graph_id": "produce", "input": {"topic": "wind"}},
                "second": {"graph_id": "sleepy", "input": {"seconds": 2}, "after": "first"},
                "third": {"graph_id": "consume", "inputs_from": {"first": {"findings": "findings"}},
                          "after": "second"},
            }
        })
        await rt.plans.run(session.session_id)
        async for event in rt.plans.events(session.session_id):
            if event.content["event"] == "thread_started" and event.content["thread"] == "second":
                break
        await asyncio.sleep(0.5)  # inside second's node
        print(session.session_id, flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_plan_survives_a_kill_9_and_resumes_where_it_stood(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    project = _project(tmp_path, lease=1.0)
    session_id = kill_after_first_line(CRASHING, [str(project), url], tmp_path)
    settings = Settings.load(project, env={"WEFT_DATABASE_URL": url})
    async with Runtime.open(settings) as rt:
        before = by_name(await rt.plans.status(session_id))
        assert before["first"].state == "succeeded"
        assert before["second"].state == "running"
        report = await asyncio.wait_for(rt.plans.wait(session_id), timeout=60)
        threads = by_name(report)
        assert report.status == "completed"
        assert {t.state for t in report.threads} == {"succeeded"}
        assert [t.attempts for t in report.threads] == [1, 1, 1]
        # nothing ran twice: one run per thread; second's run was resumed, not restarted
        for name in ("first", "second", "third"):
            runs = await rt.runs.list(threads[name].thread_id)
            assert [r.status for r in runs] == ["success"], name
        second_runs = await rt.runs.list(threads["second"].thread_id)
        assert second_runs[0].attempt == 2
        out = await outputs(rt, report)
        assert out["third"]["summary"] == "2 findings"
        events = [e.content["event"] async for e in rt.plans.events(session_id)]
        assert events.count("thread_started") == 3
        assert events[-1] == "plan_completed"


async def test_validation_uses_the_registered_workflows_input_schemas(rt: Runtime) -> None:
    with pytest.raises(PlanError) as e:
        await rt.plans.validate(
            {
                "threads": {
                    "collect": {"graph_id": "produce"},
                    "analyze": {
                        "graph_id": "consume",
                        "inputs_from": {"collect": {"fidnings": "findings"}},
                    },
                    "loop": {"graph_id": "consume", "after": ["analyze", "loop2"]},
                    "loop2": {"graph_id": "consume", "after": "loop"},
                }
            }
        )
    problems = e.value.problems
    assert any(
        "input path 'fidnings' is not an input field of graph 'consume'" in p for p in problems
    ), problems
    assert any("cycle: loop → loop2 → loop" in p for p in problems), problems
