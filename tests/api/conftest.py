"""A real ``weft serve`` app (uvicorn on 127.0.0.1, a free port) and the official SDK client.

``server`` runs uvicorn in the test's event loop with the app's lifespan (so the runtime opens
and closes as in ``weft serve``); ``client`` is ``langgraph_sdk.get_client`` pointed at it.
Both run once per backend: a SQLite file, and Postgres when ``WEFT_TEST_POSTGRES_URL`` is set.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from tests.conftest import FIXTURES, needs_postgres
from weft.api import create_app
from weft.api.server import bind
from weft.config import Settings
from weft.runtime import Runtime

GRAPHS = {
    "counter": "./steps.py:counter",
    "review": "./steps.py:review",
    "tally": "./steps.py:tally_graph",
    "slow": "./steps.py:slow",
    "failing": "./steps.py:failing",
    "nested": "./agent.py:graph",  # a subgraph and a context schema (assistants tests)
    "streamer": "./api_runs.py:streamer",  # a subgraph writing custom events (runs tests)
    # session plans (plans tests)
    "produce": "./plan_steps.py:produce",
    "consume": "./plan_steps.py:consume",
    "sleepy": "./plan_steps.py:sleepy",
    "ask": "./steps.py:review",
    "boom": "./plan_steps.py:boom",
}


@dataclass
class Server:
    url: str
    app: FastAPI
    settings: Settings

    @property
    def rt(self) -> Runtime:
        rt: Runtime = self.app.state.rt
        return rt

    def http(self) -> httpx.AsyncClient:
        """A plain HTTP client for what the SDK does not expose (headers, raw bodies)."""
        return httpx.AsyncClient(base_url=self.url, timeout=30)


@asynccontextmanager
async def serving(
    tmp_path: Path, database_url: str, weft: Mapping[str, Any] | None = None
) -> AsyncIterator[Server]:
    """Serve the fixture graphs (tests/fixtures/graphs/*.py are copied beside the config) on
    ``database_url`` until the block ends. ``weft`` adds keys to the config's ``weft``
    section."""
    for source in FIXTURES.glob("*.py"):
        shutil.copy(source, tmp_path / source.name)
    section: dict[str, Any] = {"runs": {"default_timeout": 10}, "http": {"shutdown_grace": 2}}
    section.update(weft or {})
    (tmp_path / "langgraph.json").write_text(json.dumps({"graphs": GRAPHS, "weft": section}))
    saved_env = dict(os.environ)
    saved_path = list(sys.path)
    try:
        settings = Settings.load(
            tmp_path / "langgraph.json", env={"WEFT_DATABASE_URL": database_url}
        )
        app = create_app(settings)
        sock = bind("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        )
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
            await asyncio.sleep(0.01)
        try:
            yield Server(url=f"http://127.0.0.1:{port}", app=app, settings=settings)
        finally:
            server.should_exit = True
            await task
            sock.close()
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path


SERVER_BACKENDS = ["sqlite-file", pytest.param("postgres", marks=needs_postgres)]


@pytest.fixture(params=SERVER_BACKENDS)
async def server(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Server]:
    """``weft serve`` on a SQLite file, then on Postgres."""
    if request.param == "sqlite-file":
        url = f"sqlite:///{tmp_path}/weft.db"
    else:
        url = str(request.getfixturevalue("postgres_database"))
    async with serving(tmp_path, url) as served:
        yield served


@pytest.fixture
async def client(server: Server) -> AsyncIterator[LangGraphClient]:
    """The official SDK client against ``server``."""
    sdk = get_client(url=server.url, api_key=None)
    try:
        yield sdk
    finally:
        await sdk.aclose()
