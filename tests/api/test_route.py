"""weft's route class: which endpoints take the shorter handler, and that it answers every
request (good or bad) exactly as FastAPI's own handler does."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException
from fastapi.routing import APIRoute

from tests.api.conftest import Server
from weft.api import ROUTERS
from weft.api.route import Route, _is_json, _Lean
from weft.api.wire import JSON, Body, Rt, runtime_of


def _route(method: str, path: str) -> APIRoute:
    for router in ROUTERS:
        for route in router.routes:
            if isinstance(route, APIRoute) and route.path == path and method in route.methods:
                return route
    raise AssertionError(f"no route {method} {path}")


def test_the_common_shape_takes_the_short_handler_and_others_fastapis() -> None:
    wait = _Lean.of(_route("POST", "/threads/{thread_id}/runs/wait"))
    assert wait is not None
    assert (wait.path_names, wait.runtime_name, wait.body_name) == (("thread_id",), "rt", "body")
    assert wait.body_required
    created = _Lean.of(_route("POST", "/threads"))
    assert created is not None
    assert (created.body_required, created.body_default) == (False, None)
    ok = _Lean.of(_route("GET", "/ok"))
    assert ok is not None
    assert (ok.runtime_name, ok.body_name) == (None, None)
    # query parameters or headers: FastAPI's handler
    assert _Lean.of(_route("GET", "/threads/{thread_id}/runs")) is None
    assert _Lean.of(_route("GET", "/threads/{thread_id}/runs/{run_id}/stream")) is None


def test_json_content_types_are_fastapis() -> None:
    assert _is_json("application/json")
    assert _is_json("Application/JSON; charset=utf-8")
    assert _is_json("application/vnd.api+json")
    assert not _is_json(None)
    assert not _is_json("")
    assert not _is_json("text/plain")
    assert not _is_json("application/x-www-form-urlencoded")


_JSON = {"content-type": "application/json"}
_THREAD = "/threads/00000000-0000-4000-8000-000000000001"

REQUESTS: list[tuple[str, str, dict[str, str], bytes]] = [
    ("POST", f"{_THREAD}/runs/wait", _JSON, b'{"assistant_id": '),
    ("POST", f"{_THREAD}/runs/wait", _JSON, b""),
    ("POST", f"{_THREAD}/runs/wait", _JSON, b"null"),
    ("POST", f"{_THREAD}/runs/wait", _JSON, b"[]"),
    ("POST", f"{_THREAD}/runs/wait", _JSON, b'{"assistant_id": 5}'),
    ("POST", f"{_THREAD}/runs/wait", _JSON, b'{"assistant_id": "counter", "bogus": 1}'),
    ("POST", f"{_THREAD}/runs/wait", _JSON, b'{"assistant_id": "counter", "input": NaN}'),
    ("POST", f"{_THREAD}/runs/wait", _JSON, b'{"assistant_id": "counter", "input": "\xff"}'),
    ("POST", f"{_THREAD}/runs/wait", {"content-type": "text/plain"}, b'{"assistant_id": "x"}'),
    ("POST", f"{_THREAD}/runs/wait", {}, b'{"assistant_id": "counter"}'),
    ("POST", f"{_THREAD}/runs/wait", _JSON, b'{"assistant_id": "counter"}'),  # 404 thread
    ("POST", "/runs/batch", _JSON, b'[{"assistant_id": "counter"}, {"assistant_id": []}]'),
    ("POST", "/threads/search", _JSON, b'{"limit": "many"}'),
    ("POST", "/threads/count", {"content-type": "application/vnd.api+json"}, b'{"bogus": 1}'),
    ("PUT", "/store/items", _JSON, b'{"namespace": ["a"], "key": 1}'),
    ("POST", "/threads/not-a-uuid/runs/wait", _JSON, b'{"assistant_id": "counter"}'),
]
"""Bad requests of every kind the body reader and validation meet (the last: the path)."""


async def _answers(http: httpx.AsyncClient) -> list[tuple[int, Any]]:
    out = []
    for method, path, headers, content in REQUESTS:
        response = await http.request(method, path, headers=headers, content=content)
        out.append((response.status_code, response.json()))
    return out


async def test_the_short_handler_answers_bad_requests_as_fastapis_does(server: Server) -> None:
    async with server.http() as http:
        short = await _answers(http)
        # with dependency overrides every request takes FastAPI's own handler
        server.app.dependency_overrides[_unused] = _unused
        try:
            general = await _answers(http)
        finally:
            server.app.dependency_overrides.clear()
    assert short == general
    assert all(400 <= status < 500 for status, _ in short)
    assert short[0] == (422, {"detail": "malformed JSON body: Expecting value"})
    assert short[1] == (422, {"detail": "body is required"})
    assert short[5] == (422, {"detail": "unsupported field bogus"})


async def test_the_short_handler_serves_good_requests(server: Server) -> None:
    async with server.http() as http:
        # an optional body left out, or given with a JSON content type's parameters
        empty = await http.post("/threads")
        assert empty.status_code == 200
        thread_id = empty.json()["thread_id"]
        got = await http.post(
            f"/threads/{thread_id}/runs/wait",
            content=b'{"assistant_id": "counter", "input": {"count": 1}}',
            headers={"content-type": "application/json; charset=utf-8"},
        )
        assert got.status_code == 200
        assert got.json()["count"] == 2
        assert got.headers["content-location"].startswith(f"/threads/{thread_id}/runs/")


async def test_dependency_overrides_are_honoured(server: Server) -> None:
    def closed() -> None:
        raise HTTPException(503, detail="closed for maintenance")

    server.app.dependency_overrides[runtime_of] = closed
    try:
        async with server.http() as http:
            answer = await http.post("/threads", json={})
    finally:
        server.app.dependency_overrides.clear()
    assert (answer.status_code, answer.json()) == (503, {"detail": "closed for maintenance"})


def _unused() -> None:
    """A dependency no route has: overriding it changes nothing but the handler taken."""


class _Echo(Body):
    text: str


def _closed() -> None:
    raise HTTPException(503, detail="closed for maintenance")


async def _post(app: FastAPI, body: dict[str, Any]) -> tuple[int, Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://weft") as http:
        answer = await http.post("/echo/00000000-0000-4000-8000-000000000001", json=body)
    return answer.status_code, answer.json()


async def test_a_router_included_with_dependencies_runs_them() -> None:
    router = APIRouter(route_class=Route)

    @router.post("/echo/{thread_id}")
    async def echo(thread_id: str, rt: Rt, body: _Echo) -> JSON:
        return JSON({"thread_id": thread_id, "rt": rt, "text": body.text})

    plain, guarded = FastAPI(), FastAPI()
    plain.include_router(router)
    guarded.include_router(router, dependencies=[Depends(_closed)])
    for app in (plain, guarded):
        app.state.rt = "the runtime"
    assert await _post(plain, {"text": "hi"}) == (
        200,
        {"thread_id": "00000000-0000-4000-8000-000000000001", "rt": "the runtime", "text": "hi"},
    )
    assert await _post(plain, {"text": 1}) == (
        422,
        {
            "detail": [
                {
                    "type": "string_type",
                    "loc": ["body", "text"],
                    "msg": "Input should be a valid string",
                    "input": 1,
                }
            ]
        },
    )
    assert await _post(guarded, {"text": "hi"}) == (503, {"detail": "closed for maintenance"})


async def test_a_plain_function_endpoint_keeps_fastapis_handler() -> None:
    router = APIRouter(route_class=Route)

    @router.post("/echo/{thread_id}")
    def echo(thread_id: str, rt: Rt, body: _Echo) -> JSON:  # run in FastAPI's thread pool
        return JSON({"text": body.text})

    assert _Lean.of(router.routes[0]) is None
    app = FastAPI()
    app.include_router(router)
    app.state.rt = "the runtime"
    assert await _post(app, {"text": "hi"}) == (200, {"text": "hi"})
