"""Shared fixtures: a fresh database for every backend the machine offers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from weft.config import Settings
from weft.runtime import Runtime
from weft.schema import Thread
from weft.storage import Storage, open_storage

FIXTURES = Path(__file__).parent / "fixtures" / "graphs"

POSTGRES_URL = os.environ.get("WEFT_TEST_POSTGRES_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="set WEFT_TEST_POSTGRES_URL to run the Postgres tests"
)


def _with_database(url: str, dbname: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{dbname}"


@pytest.fixture
def postgres_database() -> Iterator[str]:
    """The URL of a new, empty Postgres database, dropped after the test."""
    if not POSTGRES_URL:
        pytest.skip("set WEFT_TEST_POSTGRES_URL to run the Postgres tests")
    name = f"weft_test_{uuid.uuid4().hex[:12]}"
    admin = _with_database(POSTGRES_URL, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


BACKENDS = [
    "sqlite-file",
    "sqlite-memory",
    pytest.param("postgres", marks=needs_postgres),
]


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database URL, once per backend."""
    if request.param == "sqlite-file":
        return f"sqlite:///{tmp_path}/weft.db"
    if request.param == "sqlite-memory":
        return "sqlite:///:memory:"
    return str(request.getfixturevalue("postgres_database"))


@pytest.fixture
async def storage(database_url: str) -> AsyncIterator[Storage]:
    async with open_storage(database_url) as opened:
        yield opened


@pytest.fixture
async def rt(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Runtime]:
    """A runtime on a fresh database of each backend, with the graphs of fixtures/steps.py."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = dict(os.environ)
    shutil.copy(FIXTURES / "steps.py", tmp_path / "steps.py")
    (tmp_path / "langgraph.json").write_text(
        json.dumps(
            {
                "graphs": {
                    "counter": "./steps.py:counter",
                    "review": "./steps.py:review",
                    "tally": "./steps.py:tally_graph",
                    "slow": "./steps.py:slow",
                    "failing": "./steps.py:failing",
                },
                "weft": {"runs": {"default_timeout": 5}},
            }
        )
    )
    settings = Settings.load(tmp_path / "langgraph.json", env={"WEFT_DATABASE_URL": database_url})
    try:
        async with Runtime.open(settings) as runtime:
            yield runtime
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def run(rt: Runtime, thread: Thread | str, graph_input: Any = None, **kw: Any) -> Any:
    tid = thread if isinstance(thread, str) else thread.thread_id
    graph = kw.pop("graph_id", None) or (
        thread.graph_id if isinstance(thread, Thread) and thread.graph_id else "counter"
    )
    last: Any = None
    async for _, data in rt.invoke(graph, graph_input or {}, thread_id=tid, **kw):
        last = data
    return last


ROOT = Path(__file__).resolve().parents[1]


def kill_after_first_line(script: str, args: list[str], cwd: Path) -> str:
    """Run ``python -c script *args`` in ``cwd``, wait for its first line of output, then
    SIGKILL it (a crash: no cleanup of any kind). Returns that line, stripped."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return line.strip()
