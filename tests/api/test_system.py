"""``/ok``, ``/info``, ``/metrics``, ``/docs``, ``/openapi.json`` and the errors every route
shares: unknown routes and methods, malformed JSON, oversized bodies, unsupported fields."""

from __future__ import annotations

import gc
import re
from collections.abc import AsyncIterator
from pathlib import Path

from langgraph_sdk.client import LangGraphClient

from tests.api.conftest import Server, serving
from weft.api import YOUNG_COLLECTION_THRESHOLD


async def test_ok_info_and_docs(server: Server) -> None:
    async with server.http() as http:
        assert (await http.get("/ok")).json() == {"ok": True}
        info = (await http.get("/info")).json()
        assert info["server"] == "weft"
        assert info["flags"]["assistants"] is True
        assert "counter" in info["graphs"]
        docs = await http.get("/docs")
        assert docs.status_code == 200
        assert "swagger" in docs.text.lower()
        spec = (await http.get("/openapi.json")).json()
        assert spec["info"]["title"] == "weft"
        assert "/ok" in spec["paths"]


async def test_metrics_count_requests_by_route_template(server: Server) -> None:
    async with server.http() as http:
        await http.get("/ok")
        await http.get("/ok")
        await http.get("/nowhere")
        text = (await http.get("/metrics")).text
    assert 'weft_http_requests_total{method="GET",route="/ok",status="200"} 2.0' in text
    assert 'route="unmatched",status="404"' in text
    assert "weft_runs_running 0.0" in text
    assert "weft_http_request_duration_seconds_bucket" in text


async def test_unknown_route_and_method_are_clear_404_and_405(server: Server) -> None:
    async with server.http() as http:
        missing = await http.get("/nope")
        assert missing.status_code == 404
        assert missing.json() == {"detail": "no route GET /nope; see /docs for the API"}
        wrong = await http.delete("/ok")
        assert wrong.status_code == 405
        assert wrong.json() == {"detail": "method DELETE is not allowed on /ok; use GET"}
        assert wrong.headers["allow"] == "GET"


async def test_oversized_body_is_413_naming_the_limit(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/weft.db"
    async with (
        serving(tmp_path, url, {"http": {"max_body_bytes": 1000}}) as srv,
        srv.http() as http,
    ):
        big = await http.post("/ok", content=b"x" * 5000)
        assert big.status_code == 413
        assert big.json() == {
            "detail": "request body is 5000 bytes or more; the limit is 1000 bytes "
            "(http.max_body_bytes in the config)"
        }


async def test_chunked_body_over_the_limit_is_413(tmp_path: Path) -> None:
    # no Content-Length: the limit applies as the body streams into a route that reads it
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"metadata": {"pad": "'
        for _ in range(10):
            yield b"x" * 300
        yield b'"}}'

    url = f"sqlite:///{tmp_path}/weft.db"
    async with (
        serving(tmp_path, url, {"http": {"max_body_bytes": 1000}}) as srv,
        srv.http() as http,
    ):
        big = await http.post(
            "/assistants/search", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert "content-length" not in big.request.headers
        assert big.status_code == 413, big.text
        detail = big.json()["detail"]
        assert re.fullmatch(
            r"request body is (\d+) bytes or more; the limit is 1000 bytes "
            r"\(http.max_body_bytes in the config\)",
            detail,
        ), detail
        small = await http.post("/assistants/search", json={"limit": 1})
        assert small.status_code == 200


async def test_sdk_client_reaches_the_server(client: LangGraphClient, server: Server) -> None:
    # the SDK's own HTTP helper, as every resource client uses it
    assert await client.http.get("/ok") == {"ok": True}


async def test_unreadable_body_and_wrong_method_say_what_to_send(server: Server) -> None:
    async with server.http() as http:
        bad_bytes = await http.post(
            "/threads",
            content=b'{"metadata": "\xff"}',
            headers={"content-type": "application/json"},
        )
        assert (bad_bytes.status_code, bad_bytes.json()) == (
            400,
            {
                "detail": "the request body cannot be read as JSON ('utf-8' codec can't decode "
                "byte 0xff in position 14: invalid start byte); send UTF-8 encoded JSON"
            },
        )
        too_deep = await http.post(
            "/threads/count",
            content="[" * 100_000 + "]" * 100_000,
            headers={"content-type": "application/json"},
        )
        assert too_deep.status_code == 400
        assert too_deep.json()["detail"].startswith(
            "the request body cannot be read as JSON (maximum recursion depth exceeded"
        )
        # the path matches /sessions/{session_id} too; the closest route decides
        wrong = await http.request("OPTIONS", "/sessions/search")
        assert (wrong.status_code, wrong.json()) == (
            405,
            {"detail": "method OPTIONS is not allowed on /sessions/search; use POST"},
        )
        assert wrong.headers["allow"] == "POST"


async def test_what_start_up_loaded_is_kept_out_of_collections_while_serving(
    tmp_path: Path,
) -> None:
    """The server freezes the objects start-up created (the garbage collector skips them)
    and collects the youngest generation less often; it gives both back when it stops."""
    gc.unfreeze()
    before = gc.get_threshold()
    async with serving(tmp_path, f"sqlite:///{tmp_path}/weft.db") as srv, srv.http() as http:
        assert (await http.get("/ok")).status_code == 200
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG_COLLECTION_THRESHOLD, *before[1:])
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
