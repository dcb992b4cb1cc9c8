"""Session plans over HTTP: a session created with its plan, PUT/GET of a plan with its view,
running it (sequential, parallel, data flow, a false condition), the status report, the SSE
stream from 0 and after Last-Event-ID, cancelling, the runs of plan threads through the SDK,
and every refusal with its detail."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from langgraph_sdk.client import LangGraphClient

from tests.api.conftest import GRAPHS, Server
from tests.api.test_runs import Event, sse_events

RESEARCH: dict[str, Any] = {
    "name": "research",
    "user_id": "u1",
    "metadata": {"project": "x"},
    "policy": "best_effort",
    "max_parallel": 2,
    "threads": {
        "collect": {"graph_id": "produce", "input": {"topic": "solar", "count": 3}},
        "outline": {"graph_id": "produce", "input": {"topic": "outline", "count": 1}},
        "analyze": {
            "graph_id": "consume",
            "input": {"note": "n: "},
            "inputs_from": {"collect": {"findings": "findings"}},
        },
        "write": {
            "graph_id": "consume",
            "after": ["analyze", "outline"],
            "when": "outline.confidence > `0.5`",
        },
    },
}
"""collect and outline in parallel; analyze gets collect's findings; write is skipped
(outline's confidence is 0.2)."""


def naps(seconds: float, max_parallel: int) -> dict[str, Any]:
    """Two independent sleepy threads, then one after both."""
    return {
        "max_parallel": max_parallel,
        "threads": {
            "a": {"graph_id": "sleepy", "input": {"seconds": seconds}},
            "b": {"graph_id": "sleepy", "input": {"seconds": seconds}},
            "c": {"graph_id": "produce", "after": ["a", "b"]},
        },
    }


async def stream(
    http: httpx.AsyncClient, sid: str, headers: dict[str, str] | None = None, **params: Any
) -> list[Event]:
    """Every event of the plan's stream until it ends (bounded)."""
    async with asyncio.timeout(60):
        async with http.stream(
            "GET", f"/sessions/{sid}/stream", headers=headers, params=params
        ) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            return [event async for event in sse_events(response)]


async def finished(http: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    """The report once the plan has ended (its stream ends then)."""
    await stream(http, sid)
    report: dict[str, Any] = (await http.get(f"/sessions/{sid}/plan/status")).json()
    return report


async def thread_state(http: httpx.AsyncClient, sid: str, name: str, wanted: str) -> None:
    """Wait (bounded) until the plan thread ``name`` is in state ``wanted``."""
    for _ in range(400):
        report = (await http.get(f"/sessions/{sid}/plan/status")).json()
        if {t["name"]: t["state"] for t in report["threads"]}[name] == wanted:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never became {wanted}: {report}")


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in report["threads"]}


# --- records -----------------------------------------------------------------------------


async def test_create_a_session_with_its_plan(server: Server) -> None:
    async with server.http() as http:
        made = await http.post("/sessions", json={"plan": RESEARCH})
        assert made.status_code == 200, made.text
        body = made.json()
        sid = body["session_id"]
        assert (body["user_id"], body["name"], body["metadata"]) == (
            "u1",
            "research",
            {"project": "x"},
        )
        assert body["status"] == "active"
        plan = body["plan"]
        assert plan["session_id"] == sid
        assert plan["status"] == "ready"
        assert (plan["started_at"], plan["ended_at"]) == (None, None)
        assert "lease_owner" not in plan
        assert "lease_until" not in plan
        assert list(plan["spec"]["threads"]) == ["collect", "outline", "analyze", "write"]
        assert plan["spec"]["policy"] == "best_effort"
        assert plan["view"]["levels"] == [["collect", "outline"], ["analyze"], ["write"]]
        assert plan["view"]["critical_path"] == ["collect", "analyze", "write"]
        assert plan["view"]["mermaid"].startswith("flowchart TD\n")
        assert "findings ← findings" in plan["view"]["mermaid"]

        session = (await http.get(f"/sessions/{sid}")).json()
        assert {k: body[k] for k in session} == session
        assert (await http.get(f"/sessions/{sid}/plan")).json() == plan

        mixed = await http.post(
            "/sessions", json={"plan": RESEARCH, "name": "other", "state": {"a": 1}}
        )
        assert mixed.status_code == 422
        assert mixed.json() == {
            "detail": "name, state cannot be given with plan: "
            "give name, user_id and metadata inside the plan"
        }
        plain = await http.post("/sessions", json={"name": "no plan", "plan": None})
        assert plain.status_code == 200
        assert "plan" not in plain.json()
        assert (await http.post("/sessions/count", json={})).json() == 2


async def test_put_replaces_a_plan_and_get_shows_its_view(server: Server) -> None:
    async with server.http() as http:
        sid = (await http.post("/sessions", json={"name": "s"})).json()["session_id"]
        no_plan = await http.get(f"/sessions/{sid}/plan")
        assert no_plan.status_code == 404
        assert no_plan.json() == {"detail": f"session {sid} has no plan"}

        put = await http.put(f"/sessions/{sid}/plan", json=naps(0.01, 2))
        assert put.status_code == 200, put.text
        plan = put.json()
        assert plan["status"] == "ready"
        assert plan["spec"]["max_parallel"] == 2
        assert plan["spec"]["policy"] == "strict"
        assert plan["view"]["levels"] == [["a", "b"], ["c"]]
        assert plan["view"]["critical_path"] == ["a", "c"]
        assert (await http.get(f"/sessions/{sid}/plan")).json() == plan

        replaced = (await http.put(f"/sessions/{sid}/plan", json=RESEARCH)).json()
        assert list(replaced["spec"]["threads"]) == list(RESEARCH["threads"])
        report = (await http.get(f"/sessions/{sid}/plan/status")).json()
        assert [t["name"] for t in report["threads"]] == list(RESEARCH["threads"])
        assert {t["state"] for t in report["threads"]} == {"waiting"}
        assert report["status"] == "ready"
        # the session keeps its own name: PUT sets the plan only
        assert (await http.get(f"/sessions/{sid}")).json()["name"] == "s"


# --- running -----------------------------------------------------------------------------


async def test_run_to_completion_with_data_flow_and_a_false_condition(
    server: Server, client: LangGraphClient
) -> None:
    async with server.http() as http:
        sid = (await http.post("/sessions", json={"plan": RESEARCH})).json()["session_id"]
        started = await http.post(f"/sessions/{sid}/run")
        assert started.status_code == 202, started.text
        assert started.json()["session_id"] == sid
        assert started.json()["status"] in ("running", "completed")

        report = await finished(http, sid)
        assert report["status"] == "completed"
        assert report["policy"] == "best_effort"
        assert report["counts"] == {"succeeded": 3, "skipped": 1}
        assert report["success_rate"] == 1.0
        assert report["started_at"]
        assert report["ended_at"]
        assert report["duration"] >= 0
        threads = by_name(report)
        assert list(threads) == ["collect", "outline", "analyze", "write"]
        for name in ("collect", "outline", "analyze"):
            t = threads[name]
            assert (t["state"], t["attempts"], t["error"], t["reason"]) == (
                "succeeded",
                1,
                None,
                None,
            )
            assert t["started_at"]
            assert t["ended_at"]
            assert t["duration"] >= 0
            assert t["run_id"]
        assert threads["collect"]["graph_id"] == "produce"
        assert json.loads(threads["analyze"]["output_summary"]) == {
            "findings": ["solar fact 1", "solar fact 2", "solar fact 3"],
            "note": "n: ",
            "summary": "n: 3 findings",
        }
        skipped = threads["write"]
        assert (skipped["state"], skipped["attempts"], skipped["run_id"]) == ("skipped", 0, None)
        assert skipped["reason"] == "condition 'outline.confidence > `0.5`' is false"
        assert (await http.get(f"/sessions/{sid}")).json()["status"] == "completed"

        # the plan's runs are ordinary runs on the plan's threads
        tid = threads["analyze"]["thread_id"]
        runs = await client.runs.list(tid)
        assert [(r["run_id"], r["status"]) for r in runs] == [
            (threads["analyze"]["run_id"], "success")
        ]
        state: dict[str, Any] = dict(await client.threads.get_state(tid))
        assert state["values"]["findings"] == ["solar fact 1", "solar fact 2", "solar fact 3"]
        assert state["values"]["summary"] == "n: 3 findings"
        thread: dict[str, Any] = dict(await client.threads.get(tid))
        assert thread["metadata"]["graph_id"] == "consume"
        listed = (await http.get(f"/sessions/{sid}/threads")).json()
        assert sorted(t["name"] for t in listed) == ["analyze", "collect", "outline"]

        again = await http.post(f"/sessions/{sid}/run", json={})
        assert again.status_code == 409
        assert again.json() == {
            "detail": f"session {sid} plan is completed; only a ready plan can run"
        }


async def test_parallel_threads_start_together_up_to_max_parallel(server: Server) -> None:
    async with server.http() as http:

        async def order(max_parallel: int) -> list[tuple[str, str]]:
            made = await http.post("/sessions", json={"plan": naps(0.2, max_parallel)})
            sid = made.json()["session_id"]
            assert (await http.post(f"/sessions/{sid}/run")).status_code == 202
            events = await stream(http, sid)
            assert (await http.get(f"/sessions/{sid}/plan/status")).json()["status"] == (
                "completed"
            )
            return [(d["thread"], d["event"]) for _, _, d in events if "thread" in d]

        started, ended = "thread_started", "thread_succeeded"
        parallel = await order(2)
        assert set(parallel[:2]) == {("a", started), ("b", started)}
        assert set(parallel[2:4]) == {("a", ended), ("b", ended)}
        assert parallel[4:] == [("c", started), ("c", ended)]
        one_at_a_time = await order(1)
        assert one_at_a_time == [
            ("a", started),
            ("a", ended),
            ("b", started),
            ("b", ended),
            ("c", started),
            ("c", ended),
        ]


async def test_stream_from_0_and_after_last_event_id(server: Server) -> None:
    async with server.http() as http:
        sid = (await http.post("/sessions", json={"plan": RESEARCH})).json()["session_id"]
        await http.post(f"/sessions/{sid}/run")
        events = await stream(http, sid)
        ids = [int(str(i)) for i, _, _ in events]
        assert ids == sorted(set(ids))
        names = [name for _, name, _ in events]
        assert names[0] == "plan_started"
        assert names[-1] == "plan_completed"
        assert names.count("thread_started") == 3
        assert names.count("thread_succeeded") == 3
        assert names.count("thread_skipped") == 1
        for event_id, name, data in events:
            assert data["seq"] == int(str(event_id))
            assert data["event"] == name
            assert {"thread_id", "run_id", "created_at"} <= set(data)
        first = events[0][2]
        assert first["threads"] == 4
        assert first["thread_id"] is None
        succeeded = next(d for _, n, d in events if n == "thread_succeeded")
        assert succeeded["attempt"] == 1
        assert succeeded["run_id"]
        assert succeeded["thread_id"]
        skipped = next(d for _, n, d in events if n == "thread_skipped")
        assert skipped["thread"] == "write"
        assert skipped["reason"] == "condition 'outline.confidence > `0.5`' is false"

        # the same events are in the session's interaction log
        log = (await http.get(f"/sessions/{sid}/interactions", params={"limit": 100})).json()
        assert [e["seq"] for e in log if e["kind"] in ("thread_event", "plan_event")] == ids

        cut = str(ids[2])
        assert await stream(http, sid, headers={"Last-Event-ID": cut}) == events[3:]
        assert await stream(http, sid, after=ids[4]) == events[5:]
        assert await stream(http, sid, headers={"Last-Event-ID": str(ids[-1])}) == []
        assert await stream(http, sid, headers={"Last-Event-ID": "0"}) == events
        bad = await http.get(f"/sessions/{sid}/stream", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 422
        assert bad.json() == {
            "detail": "Last-Event-ID must be an event's seq (an integer), not 'x'"
        }


async def test_cancel_a_running_plan_then_a_finished_one(
    server: Server, client: LangGraphClient
) -> None:
    async with server.http() as http:
        plan = {
            "threads": {
                "nap": {"graph_id": "sleepy", "input": {"seconds": 5}},
                "next": {"graph_id": "produce", "after": "nap"},
            }
        }
        sid = (await http.post("/sessions", json={"plan": plan})).json()["session_id"]
        assert (await http.post(f"/sessions/{sid}/run")).status_code == 202
        await thread_state(http, sid, "nap", "running")

        busy = await http.put(f"/sessions/{sid}/plan", json=plan)
        assert busy.status_code == 409
        assert busy.json() == {"detail": f"session {sid} is running its plan; cancel it first"}

        cancelled = await http.post(f"/sessions/{sid}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        report = cancelled.json()
        assert report["status"] == "cancelled"
        assert report["ended_at"]
        threads = by_name(report)
        assert threads["nap"]["state"] == "cancelled"
        assert threads["next"]["state"] == "cancelled"
        assert threads["nap"]["reason"] == threads["next"]["reason"] == "cancelled by request"
        assert report["success_rate"] == 0.0
        assert (await http.get(f"/sessions/{sid}")).json()["status"] == "cancelled"

        events = await stream(http, sid)
        assert events[-1][1] == "plan_cancelled"
        assert events[-1][2]["reason"] == "cancelled by request"

        # the thread's run was stopped, not left running
        tid = threads["nap"]["thread_id"]
        for _ in range(200):
            runs = await client.runs.list(tid)
            if runs and runs[0]["status"] not in ("pending", "running"):
                break
            await asyncio.sleep(0.05)
        assert len(runs) == 1
        assert runs[0]["status"] in ("interrupted", "error")

        again = await http.post(f"/sessions/{sid}/cancel", json={})
        assert again.status_code == 409
        assert again.json() == {
            "detail": f"session {sid} plan is already cancelled; "
            "only a ready or running plan can be cancelled"
        }
        rerun = await http.post(f"/sessions/{sid}/run")
        assert rerun.status_code == 409
        assert rerun.json() == {
            "detail": f"session {sid} plan is cancelled; only a ready plan can run"
        }


async def test_cancel_a_completed_plan_is_refused(server: Server) -> None:
    async with server.http() as http:
        sid = (await http.post("/sessions", json={"plan": naps(0.01, 4)})).json()["session_id"]
        await http.post(f"/sessions/{sid}/run")
        assert (await finished(http, sid))["status"] == "completed"
        refused = await http.post(f"/sessions/{sid}/cancel")
        assert refused.status_code == 409
        assert refused.json() == {
            "detail": f"session {sid} plan is already completed; "
            "only a ready or running plan can be cancelled"
        }


async def test_a_ready_plan_can_be_cancelled(server: Server) -> None:
    async with server.http() as http:
        sid = (await http.post("/sessions", json={"plan": naps(0.01, 4)})).json()["session_id"]
        report = (await http.post(f"/sessions/{sid}/cancel")).json()
        assert report["status"] == "cancelled"
        assert {t["state"] for t in report["threads"]} == {"cancelled"}
        assert [name for _, name, _ in await stream(http, sid)] == ["plan_cancelled"]


async def test_a_failing_thread_under_best_effort(server: Server) -> None:
    plan = {
        "policy": "best_effort",
        "threads": {
            "bad": {"graph_id": "boom", "retries": {"max": 1, "backoff": 0}},
            "after_bad": {"graph_id": "produce", "after": "bad"},
            "fine": {"graph_id": "produce"},
        },
    }
    async with server.http() as http:
        sid = (await http.post("/sessions", json={"plan": plan})).json()["session_id"]
        await http.post(f"/sessions/{sid}/run")
        report = await finished(http, sid)
        assert report["status"] == "failed"
        threads = by_name(report)
        assert (threads["bad"]["state"], threads["bad"]["attempts"]) == ("failed", 2)
        assert "boom on purpose" in threads["bad"]["error"]
        assert threads["after_bad"]["state"] == "skipped"
        assert threads["after_bad"]["reason"] == "source 'bad' failed"
        assert threads["fine"]["state"] == "succeeded"
        assert report["success_rate"] == 1 / 3
        assert (await http.get(f"/sessions/{sid}")).json()["status"] == "failed"
        names = [name for _, name, _ in await stream(http, sid)]
        assert names.count("thread_retrying") == 1
        assert names[-1] == "plan_failed"


async def test_a_missing_mapped_path_fails_the_thread(server: Server) -> None:
    plan = {
        "threads": {
            "collect": {"graph_id": "produce"},
            "analyze": {
                "graph_id": "consume",
                "inputs_from": {"collect": {"findings": "nothing.here"}},
            },
        }
    }
    async with server.http() as http:
        sid = (await http.post("/sessions", json={"plan": plan})).json()["session_id"]
        await http.post(f"/sessions/{sid}/run")
        report = await finished(http, sid)
        assert report["status"] == "failed"
        assert by_name(report)["analyze"]["error"] == (
            "inputs_from collect: 'nothing.here' is missing from collect's final state"
        )


# --- refusals ----------------------------------------------------------------------------


async def test_an_invalid_plan_lists_every_problem_and_writes_nothing(server: Server) -> None:
    plan = {
        "policy": "sometimes",
        "threads": {
            "collect": {"graph_id": "produce", "after": "analyze"},
            "analyze": {
                "graph_id": "consume",
                "after": ["collect", "collect", "analyze"],
                "inputs_from": {"colect": {"findings": "findings"}},
                "when": "collect.count >",
            },
            "x": {"graph_id": "nope", "colour": "red"},
        },
    }
    async with server.http() as http:
        refused = await http.post("/sessions", json={"plan": plan})
        assert refused.status_code == 422
        detail = refused.json()["detail"]
        lines = detail.splitlines()
        assert lines[0] == "invalid plan:"
        problems = lines[1:]
        assert len(problems) >= 6, detail
        assert "threads.collect.after: cycle: collect → analyze → collect" in problems
        assert "threads.analyze.after[1]: duplicate edge collect → analyze" in problems
        assert "threads.analyze.after[2]: analyze depends on itself" in problems
        assert (
            "threads.analyze.inputs_from.colect: unknown thread 'colect' "
            "(threads: analyze, collect, x)" in problems
        )
        assert any(p.startswith("threads.analyze.when: invalid JMESPath") for p in problems)
        assert any(p.startswith("policy: ") and "sometimes" in p for p in problems), problems
        graphs = ", ".join(sorted(GRAPHS))
        assert f"threads.x.graph_id: unknown workflow 'nope' (graphs: {graphs})" in problems
        assert any(p.startswith("threads.x.colour: unknown key 'colour'") for p in problems)
        assert (await http.post("/sessions/count", json={})).json() == 0

        sid = (await http.post("/sessions", json={})).json()["session_id"]
        put = await http.put(f"/sessions/{sid}/plan", json=plan)
        assert put.status_code == 422
        assert put.json()["detail"] == detail
        assert (await http.get(f"/sessions/{sid}/plan")).status_code == 404


async def test_unknown_workflow_and_bad_bodies(server: Server) -> None:
    graphs = ", ".join(sorted(GRAPHS))
    async with server.http() as http:
        unknown = await http.post(
            "/sessions", json={"plan": {"threads": {"a": {"graph_id": "ghost"}}}}
        )
        assert unknown.status_code == 422
        assert unknown.json() == {
            "detail": "invalid plan:\n"
            f"threads.a.graph_id: unknown workflow 'ghost' (graphs: {graphs})"
        }
        empty = await http.post("/sessions", json={"plan": {}})
        assert empty.status_code == 422
        assert empty.json()["detail"].startswith("invalid plan:\n")

        sid = (await http.post("/sessions", json={"plan": naps(0.01, 1)})).json()["session_id"]
        not_object = await http.put(f"/sessions/{sid}/plan", json=[1])
        assert not_object.status_code == 422
        options = await http.post(f"/sessions/{sid}/run", json={"detach": True})
        assert options.status_code == 422
        assert options.json() == {"detail": "unsupported field detach"}
        assert (await http.get(f"/sessions/{sid}/plan")).json()["status"] == "ready"
        bad_id = await http.get("/sessions/x/plan/status")
        assert bad_id.status_code == 422
        assert bad_id.json() == {"detail": "session_id must be a UUID, not 'x'"}


async def test_unknown_sessions_and_sessions_without_a_plan_are_404s(server: Server) -> None:
    missing = str(uuid.uuid4())
    async with server.http() as http:
        bare = (await http.post("/sessions", json={})).json()["session_id"]
        for sid, detail in (
            (missing, f"session {missing} not found"),
            (bare, f"session {bare} has no plan"),
        ):
            for response in (
                await http.get(f"/sessions/{sid}/plan"),
                await http.get(f"/sessions/{sid}/plan/status"),
                await http.post(f"/sessions/{sid}/run"),
                await http.post(f"/sessions/{sid}/cancel"),
                await http.get(f"/sessions/{sid}/stream"),
            ):
                assert response.status_code == 404, response.request.url
                assert response.json() == {"detail": detail}
        put = await http.put(f"/sessions/{missing}/plan", json=naps(0.01, 1))
        assert put.status_code == 404
        assert put.json() == {"detail": f"session {missing} not found"}


async def test_openapi_documents_the_plan_routes(server: Server) -> None:
    async with server.http() as http:
        spec = (await http.get("/openapi.json")).json()
    for path, method in (
        ("/sessions/{session_id}/plan", "put"),
        ("/sessions/{session_id}/plan", "get"),
        ("/sessions/{session_id}/plan/status", "get"),
        ("/sessions/{session_id}/run", "post"),
        ("/sessions/{session_id}/cancel", "post"),
        ("/sessions/{session_id}/stream", "get"),
    ):
        op = spec["paths"][path][method]
        assert op["tags"] == ["weft"]
        assert op["summary"]
    create = spec["components"]["schemas"]["SessionCreate"]["properties"]
    assert "plan" in create
