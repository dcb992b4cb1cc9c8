"""``weft serve`` as a user starts it: a subprocess on a free port, the next port when the
asked one is taken, and SIGTERM giving in-flight runs their grace before leaving them
resumable for the next start."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES

pytestmark = pytest.mark.slow

WEFT = Path(sys.executable).parent / "weft"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(FIXTURES / "steps.py", tmp_path / "steps.py")
    (tmp_path / "langgraph.json").write_text(
        json.dumps(
            {
                "graphs": {"slow": "./steps.py:slow", "counter": "./steps.py:counter"},
                "weft": {"http": {"shutdown_grace": 0.5}},
            }
        )
    )
    return tmp_path


def _taken_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


class _Serve:
    def __init__(self, project: Path, port: int, *args: str) -> None:
        self.proc = subprocess.Popen(
            [str(WEFT), "serve", "--port", str(port), "--database", "sqlite:///weft.db", *args],
            cwd=project,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        self.lines: list[str] = []
        self.url = ""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if found := re.search(r"weft serving (http://\S+)", line):
                self.url = found[1]
                break
        assert self.url, "".join(self.lines)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/ok").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("server never answered /ok: " + "".join(self.lines))

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=30)
        return "".join(self.lines) + out


@pytest.fixture
def serve(project: Path) -> Iterator[type[_Serve]]:
    started: list[_Serve] = []

    class Tracked(_Serve):
        def __init__(self, project: Path, port: int, *args: str) -> None:
            super().__init__(project, port, *args)
            started.append(self)

    yield Tracked
    for s in started:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def test_taken_port_moves_to_the_next_free_one(project: Path, serve: type[_Serve]) -> None:
    blocker = _taken_port()
    try:
        port = blocker.getsockname()[1]
        server = serve(project, port)
        said = "".join(server.lines)
        assert f"port {port} is taken; using " in said
        assert not server.url.endswith(f":{port}")
        assert httpx.get(f"{server.url}/info").json()["server"] == "weft"
        output = server.stop()
        # uvicorn shuts down cleanly, then ends with the signal it was sent
        assert server.proc.returncode in (0, -signal.SIGTERM), output
        assert "Application shutdown complete" in output
        assert "Traceback" not in output
        assert "GET /info" not in output  # no access log unless asked for
    finally:
        blocker.close()


def test_access_log_logs_one_line_per_request(project: Path, serve: type[_Serve]) -> None:
    server = serve(project, 0, "--access-log")
    assert httpx.get(f"{server.url}/info").status_code == 200
    assert httpx.get(f"{server.url}/threads/not-a-uuid").status_code == 422
    output = server.stop()
    assert '"GET /info HTTP/1.1" 200' in output
    assert '"GET /threads/not-a-uuid HTTP/1.1" 422' in output


def test_sigterm_leaves_a_long_run_resumable_for_the_next_start(
    project: Path, serve: type[_Serve]
) -> None:
    first = serve(project, 0)
    thread = httpx.post(f"{first.url}/threads", json={}).json()
    tid = thread["thread_id"]
    run = httpx.post(
        f"{first.url}/threads/{tid}/runs",
        json={"assistant_id": "slow", "input": {"seconds": 4}},
    ).json()
    deadline = time.monotonic() + 10
    while httpx.get(f"{first.url}/threads/{tid}/runs/{run['run_id']}").json()["status"] != (
        "running"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    output = first.stop()  # grace 0.5 s < the 4 s nap: the run is left pending
    assert "Application shutdown complete" in output

    second = serve(project, 0)
    joined = httpx.get(f"{second.url}/threads/{tid}/runs/{run['run_id']}/join", timeout=30).json()
    assert joined["done"] == ["nap", "after"]
    again = httpx.get(f"{second.url}/threads/{tid}/runs/{run['run_id']}").json()
    assert again["status"] == "success"
    assert httpx.get(f"{second.url}/threads/{tid}").json()["status"] == "idle"
    second.stop()
