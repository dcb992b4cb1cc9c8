"""The OpenAPI document: every route the SDK calls, weft's own routes under the tag ``weft``,
errors documented as ``{detail}``; and schemathesis against a real ``weft serve``: a few
thousand generated requests (valid, invalid and odd ones) and not one 5xx."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import FIXTURES
from weft.api import create_app
from weft.config import Settings

BIN = Path(sys.executable).parent
REPO = Path(__file__).parents[2]
SEED = 20251121
"""Schemathesis' seed: a failure found here replays with ``--seed`` (see the output)."""

GRAPHS = {
    "counter": "./steps.py:counter",
    "review": "./steps.py:review",
    "tally": "./steps.py:tally_graph",
    "slow": "./steps.py:slow",
    "failing": "./steps.py:failing",
}

PLATFORM = {
    ("GET", "/ok"),
    ("GET", "/info"),
    ("GET", "/metrics"),
    ("POST", "/assistants"),
    ("POST", "/assistants/search"),
    ("POST", "/assistants/count"),
    ("GET", "/assistants/{assistant_id}"),
    ("PATCH", "/assistants/{assistant_id}"),
    ("DELETE", "/assistants/{assistant_id}"),
    ("GET", "/assistants/{assistant_id}/graph"),
    ("GET", "/assistants/{assistant_id}/schemas"),
    ("GET", "/assistants/{assistant_id}/subgraphs"),
    ("GET", "/assistants/{assistant_id}/subgraphs/{namespace}"),
    ("POST", "/assistants/{assistant_id}/versions"),
    ("POST", "/assistants/{assistant_id}/latest"),
    ("POST", "/threads"),
    ("POST", "/threads/search"),
    ("POST", "/threads/count"),
    ("POST", "/threads/prune"),
    ("GET", "/threads/{thread_id}"),
    ("PATCH", "/threads/{thread_id}"),
    ("DELETE", "/threads/{thread_id}"),
    ("POST", "/threads/{thread_id}/copy"),
    ("GET", "/threads/{thread_id}/state"),
    ("POST", "/threads/{thread_id}/state"),
    ("POST", "/threads/{thread_id}/state/checkpoint"),
    ("GET", "/threads/{thread_id}/state/{checkpoint_id}"),
    ("GET", "/threads/{thread_id}/history"),
    ("POST", "/threads/{thread_id}/history"),
    ("GET", "/threads/{thread_id}/stream"),
    ("POST", "/threads/{thread_id}/runs"),
    ("GET", "/threads/{thread_id}/runs"),
    ("POST", "/threads/{thread_id}/runs/stream"),
    ("POST", "/threads/{thread_id}/runs/wait"),
    ("GET", "/threads/{thread_id}/runs/{run_id}"),
    ("DELETE", "/threads/{thread_id}/runs/{run_id}"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/join"),
    ("GET", "/threads/{thread_id}/runs/{run_id}/stream"),
    ("POST", "/threads/{thread_id}/runs/{run_id}/cancel"),
    ("POST", "/runs"),
    ("POST", "/runs/stream"),
    ("POST", "/runs/wait"),
    ("POST", "/runs/batch"),
    ("POST", "/runs/cancel"),
    ("POST", "/runs/crons"),
    ("POST", "/threads/{thread_id}/runs/crons"),
    ("GET", "/runs/crons/{cron_id}"),
    ("PATCH", "/runs/crons/{cron_id}"),
    ("DELETE", "/runs/crons/{cron_id}"),
    ("POST", "/runs/crons/search"),
    ("POST", "/runs/crons/count"),
    ("PUT", "/store/items"),
    ("GET", "/store/items"),
    ("DELETE", "/store/items"),
    ("POST", "/store/items/search"),
    ("POST", "/store/namespaces"),
}
"""The LangGraph Platform's routes weft serves: every one ``langgraph-sdk`` 0.4 calls."""

WEFT_ONLY = {
    ("POST", "/sessions"),
    ("POST", "/sessions/search"),
    ("POST", "/sessions/count"),
    ("POST", "/sessions/batch"),
    ("GET", "/sessions/{session_id}"),
    ("PATCH", "/sessions/{session_id}"),
    ("DELETE", "/sessions/{session_id}"),
    ("GET", "/sessions/{session_id}/threads"),
    ("POST", "/sessions/{session_id}/threads"),
    ("GET", "/sessions/{session_id}/interactions"),
    ("POST", "/sessions/{session_id}/interactions"),
    ("GET", "/sessions/{session_id}/state"),
    ("PUT", "/sessions/{session_id}/state"),
    ("PATCH", "/sessions/{session_id}/state"),
    ("POST", "/threads/{thread_id}/branch"),
    ("POST", "/threads/{thread_id}/snapshots"),
    ("GET", "/threads/{thread_id}/snapshots"),
    ("POST", "/threads/{thread_id}/rollback"),
    ("PUT", "/sessions/{session_id}/plan"),
    ("GET", "/sessions/{session_id}/plan"),
    ("GET", "/sessions/{session_id}/plan/status"),
    ("POST", "/sessions/{session_id}/run"),
    ("POST", "/sessions/{session_id}/cancel"),
    ("GET", "/sessions/{session_id}/stream"),
}
"""weft's own routes, outside the Platform's (tag ``weft``)."""


def _project(path: Path, database_url: str) -> Path:
    for source in FIXTURES.glob("*.py"):
        shutil.copy(source, path / source.name)
    weft = {"database_url": database_url, "runs": {"default_timeout": 5}}
    weft["http"] = {"shutdown_grace": 0.5}
    config = path / "langgraph.json"
    config.write_text(json.dumps({"graphs": GRAPHS, "weft": weft}))
    return config


def test_openapi_lists_every_route_with_tags_summaries_and_errors(tmp_path: Path) -> None:
    spec: dict[str, Any] = create_app(
        Settings.load(_project(tmp_path, f"sqlite:///{tmp_path}/weft.db"))
    ).openapi()
    operations = {
        (method.upper(), path): op
        for path, item in spec["paths"].items()
        for method, op in item.items()
    }
    assert set(operations) == PLATFORM | WEFT_ONLY
    for key, op in operations.items():
        assert op.get("summary"), key
        assert op.get("tags"), key
        assert ("weft" in op["tags"]) == (key in WEFT_ONLY), key
        success = {"200", "202", "204"} & set(op["responses"])
        assert success, key
        errors = op["responses"]["4XX"]["content"]["application/json"]["schema"]
        assert errors == {"$ref": "#/components/schemas/Detail"}, key
        for param in op.get("parameters", ()):
            if param["in"] == "path" and param["name"] not in ("assistant_id", "namespace"):
                assert param["schema"]["format"] == "uuid", (key, param)
    assert spec["components"]["schemas"]["Detail"]["properties"] == {
        "detail": {"title": "Detail", "type": "string"}
    }
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    run_create = spec["components"]["schemas"]["RunCreate"]["properties"]["after_seconds"]
    assert run_create["anyOf"][0] == {"type": "number", "minimum": 0.0, "maximum": 31536000.0}


@pytest.fixture
def weft_serve(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``weft serve --port 0`` on a SQLite file: its URL and its log file."""
    _project(tmp_path, "sqlite:///weft.db")
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(BIN / "weft"), "serve", "--port", "0"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        )
    try:
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline and proc.poll() is None:
            if found := re.search(r"weft serving (http://\S+)", log.read_text()):
                url = found[1]
            else:
                time.sleep(0.05)
        assert url, log.read_text()
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/ok").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url, log
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(weft_serve: tuple[str, Path], tmp_path: Path) -> None:
    url, log = weft_serve
    env = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.api.openapi_hooks",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "5",
            "--exclude-path-regex",
            "/stream$",  # endless event streams
            "--request-timeout",
            "10",
            "--seed",
            str(SEED),
            "--generation-database",
            "none",
            "--no-color",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = done.stdout + done.stderr
    served = log.read_text()
    assert done.returncode == 0, (
        output + "\n--- server log (tracebacks) ---\n" + _tracebacks(served)
    )
    tested = re.search(r"Operations:\s+(\d+) selected", output)
    assert tested, output
    assert int(tested[1]) >= 60, output  # every route but the streams
    assert "Traceback" not in served, _tracebacks(served)


def _tracebacks(log: str) -> str:
    """The server log's tracebacks (the access log around them left out)."""
    lines = log.splitlines()
    out: list[str] = []
    keep = False
    for line in lines:
        if line.startswith("Traceback"):
            keep = True
        elif keep and line.startswith("INFO:"):
            keep = False
        if keep:
            out.append(line)
    return "\n".join(out[-200:]) or log[-5000:]
