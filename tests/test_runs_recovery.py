"""Crash recovery: a process running a run is killed with SIGKILL; a new process on the same
database takes the run up again from its last checkpoint and no thread stays busy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, kill_after_first_line
from weft.config import Settings
from weft.runtime import Runtime

CRASHING = """
import asyncio, sys
from weft.config import Settings
from weft.runtime import Runtime

async def main():
    settings = Settings.load(sys.argv[1], env={"WEFT_DATABASE_URL": sys.argv[2]})
    async with Runtime.open(settings) as rt:
        thread = await rt.threads.create()
        run = await rt.runs.create(thread.thread_id, "slow", input={"seconds": 3})
        while (await rt.runs.get(thread.thread_id, run.run_id)).status != "running":
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # inside the node, after the input checkpoint
        print(thread.thread_id, run.run_id, flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(FIXTURES / "steps.py", tmp_path / "steps.py")
    config = tmp_path / "langgraph.json"
    config.write_text(json.dumps({"graphs": {"slow": "./steps.py:slow"}}))
    return config


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres")])
async def test_a_run_killed_mid_way_is_taken_up_by_the_next_process(
    backend: str, project: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/weft.db"
    else:
        url = str(request.getfixturevalue("postgres_database"))
    thread_id, run_id = kill_after_first_line(CRASHING, [str(project), url], tmp_path).split()

    settings = Settings.load(project, env={"WEFT_DATABASE_URL": url})
    async with Runtime.open(settings) as rt:
        left = await rt.runs.get(thread_id, run_id)
        assert left.status in ("pending", "running")  # taken up at start-up
        result = await rt.runs.join(thread_id, run_id)
        assert result["done"] == ["nap", "after"]  # continued, not started over with the input
        run = await rt.runs.get(thread_id, run_id)
        assert run.status == "success"
        assert run.attempt == 2
        thread = await rt.threads.get(thread_id)
        assert thread.status == "idle"
        history = await rt.threads.history(thread_id, limit=100)
        assert [h.metadata["source"] for h in history].count("input") == 1
