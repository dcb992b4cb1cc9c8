"""A process killed with SIGKILL mid-run loses no checkpoint it had reported saved."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from weft.storage import open_storage

WRITER = textwrap.dedent(
    """
    import asyncio, operator, sys
    from typing import Annotated, TypedDict
    from langgraph.graph import END, START, StateGraph
    from weft.storage import open_storage

    class State(TypedDict):
        n: int
        trail: Annotated[list[int], operator.add]

    async def step(state):
        return {"n": state["n"] + 1, "trail": [state["n"]]}

    builder = StateGraph(State)
    builder.add_node("step", step)
    builder.add_edge(START, "step")
    builder.add_conditional_edges("step", lambda s: "step" if s["n"] < 10**9 else END)

    async def main(url):
        async with open_storage(url) as storage:
            saver = storage.checkpointer
            saved = saver.aput

            async def reporting_aput(config, checkpoint, metadata, versions):
                stored = await saved(config, checkpoint, metadata, versions)
                c = stored["configurable"]
                print(c["thread_id"], c["checkpoint_ns"], c["checkpoint_id"], flush=True)
                return stored

            saver.aput = reporting_aput
            graph = builder.compile(checkpointer=saver)
            await asyncio.gather(*(
                graph.ainvoke({"n": 0, "trail": []},
                              {"configurable": {"thread_id": f"t{i}"}, "recursion_limit": 10**9})
                for i in range(8)
            ))

    asyncio.run(main(sys.argv[1]))
    """
)


@pytest.mark.slow
def test_sigkill_mid_run_keeps_every_reported_checkpoint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/durable.db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    reported: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while len(reported) < 400 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        thread_id, ns, checkpoint_id = line.split(" ")
        reported.append((thread_id, ns, checkpoint_id.strip()))
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stderr is not None
    assert len(reported) >= 400, f"the writer reported {len(reported)}: {proc.stderr.read()}"
    assert proc.returncode == -signal.SIGKILL

    asyncio.run(_check_everything_reported_is_there(url, reported))


async def _check_everything_reported_is_there(
    url: str, reported: list[tuple[str, str, str]]
) -> None:
    async with open_storage(url) as storage:
        assert await storage.integrity_check() == []
        missing = []
        for thread_id, ns, checkpoint_id in reported:
            config = {
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id,
                }
            }
            if await storage.checkpointer.aget_tuple(config) is None:
                missing.append(checkpoint_id)
        assert missing == []
        threads = {t for t, _, _ in reported}
        assert len(threads) > 1  # several runs were writing at once
