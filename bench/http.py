"""HTTP server (issue 6): ``weft serve`` through the official SDK against the in-process floor.

The server is a real ``weft serve`` subprocess (uvicorn, 127.0.0.1, a SQLite file with WAL and
synchronous=FULL, no access log: weft's defaults); the client is ``langgraph_sdk.get_client``
in this process. The floor is plain LangGraph with ``AsyncSqliteSaver`` (aiosqlite, WAL,
synchronous=FULL) in this process, on the same graphs. Workloads:

* ``runs.wait`` on a 1-node echo graph, one at a time: p50/p95 (floor: ``ainvoke``);
* a 10-step chain streamed in ``values`` mode: total and time to the first event after
  ``metadata`` (floor: ``astream``);
* 50 concurrent ``runs.wait`` on 50 distinct threads: runs/s (floor: 50 concurrent ``ainvoke``);
* ``threads.get_history`` of a thread with 100 checkpoints (floor: ``aget_state_history``);
* for scale, the same ``runs.wait`` (one at a time, and 50 concurrent) through the same client
  against bench/zero_server.py, a uvicorn server that answers at once without doing anything:
  what the SDK client and the loopback transport cost on their own on these cores while
  sharing them with a server. The floor's p50 minus this p50 is what a server may spend on a
  run to meet the first target; this runs/s bounds what any server can show at 50-way.

Threads are created beforehand, untimed. The setups alternate rep by rep after a warm-up.
Targets (issue 6): ``runs.wait`` p50 no slower than the floor; >= 500 runs/s at 50-way
concurrency; time to first event < 3 ms. Usage:

    python -P bench/http.py [--quick] [--reps N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import aiosqlite
import httpx
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

CHAIN = 10
CONCURRENCY = 50
HISTORY = 100
RUNS_PER_S_TARGET = 500.0
FIRST_EVENT_TARGET_MS = 3.0

GRAPHS = Path(__file__).with_name("echo_chain.py")
"""The echo and chain graphs (CHAIN steps), copied into the temporary project."""


def fresh_input() -> dict[str, Any]:
    return {"value": 0, "trail": []}


def pct(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    ms = sorted(s * 1e3 for s in samples)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


ZERO_SERVER = Path(__file__).with_name("zero_server.py")


def weft_serve(project: Path) -> AbstractContextManager[str]:
    """``weft serve`` on a free port; its URL."""
    weft = Path(sys.executable).parent / "weft"
    command = [str(weft), "serve", "--port", "0", "--config", str(project / "langgraph.json")]
    return serving(command, project, "weft serving")


def zero_serve(project: Path) -> AbstractContextManager[str]:
    """bench/zero_server.py on a free port; its URL."""
    return serving([sys.executable, "-P", str(ZERO_SERVER)], project, "zero serving")


@contextmanager
def serving(command: list[str], cwd: Path, announces: str) -> Iterator[str]:
    """Run ``command`` until the block ends; the URL it prints after ``announces``."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if found := re.search(rf"{announces} (http://\S+)", line):
                url = found[1]
                break
        if not url:
            raise SystemExit(f"{command[0]} did not start")
        # keep reading its log (a request line each): a full pipe would stall the server
        threading.Thread(target=proc.stdout.read, daemon=True).start()
        for _ in range(600):
            try:
                if httpx.get(f"{url}/ok").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Floor:
    """Plain LangGraph with AsyncSqliteSaver in this process."""

    def __init__(self, module: ModuleType, saver: AsyncSqliteSaver) -> None:
        self.echo = module.echo.compile(checkpointer=saver)
        self.chain = module.chain.compile(checkpointer=saver)

    @staticmethod
    def config(tid: str) -> Any:
        return {"configurable": {"thread_id": tid}}

    async def wait(self, tid: str) -> Any:
        return await self.echo.ainvoke(fresh_input(), self.config(tid))

    async def stream(self, tid: str) -> tuple[float, float]:
        start = time.perf_counter()
        first = 0.0
        async for _ in self.chain.astream(fresh_input(), self.config(tid), stream_mode="values"):
            if not first:
                first = time.perf_counter() - start
        return time.perf_counter() - start, first

    async def history(self, tid: str) -> int:
        return len(
            [s async for s in self.chain.aget_state_history(self.config(tid), limit=HISTORY)]
        )


class Weft:
    """``weft serve`` through the official SDK."""

    def __init__(self, client: LangGraphClient) -> None:
        self.client = client

    async def thread(self) -> str:
        return str((await self.client.threads.create())["thread_id"])

    async def wait(self, tid: str) -> Any:
        return await self.client.runs.wait(tid, "echo", input=fresh_input())

    async def stream(self, tid: str) -> tuple[float, float]:
        start = time.perf_counter()
        first = 0.0
        async for part in self.client.runs.stream(
            tid, "chain", input=fresh_input(), stream_mode="values"
        ):
            if not first and part.event != "metadata":
                first = time.perf_counter() - start
        return time.perf_counter() - start, first

    async def history(self, tid: str) -> int:
        return len(await self.client.threads.get_history(tid, limit=HISTORY))


def load_graphs(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_http_graphs", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # LangGraph resolves the state's annotations through it
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--reps", type=int, default=None, help="runs per serial workload")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of 50 concurrent runs")
    args = parser.parse_args()
    reps = args.reps or (40 if args.quick else 200)
    rounds = args.rounds or (3 if args.quick else 10)

    with tempfile.TemporaryDirectory(prefix="weft-bench-http-") as tmp:
        project = Path(tmp)
        shutil.copy(GRAPHS, project / "graphs.py")
        (project / "langgraph.json").write_text(
            json.dumps(
                {
                    "graphs": {"echo": "./graphs.py:echo", "chain": "./graphs.py:chain"},
                    "weft": {"database_url": "sqlite:///weft.db"},
                }
            )
        )
        with weft_serve(project) as url, zero_serve(project) as zero_url:
            asyncio.run(measure(url, zero_url, project, reps, rounds))


async def measure(url: str, zero_url: str, project: Path, reps: int, rounds: int) -> None:
    module = load_graphs(project / "graphs.py")
    assert module.CHAIN == CHAIN, "bench/echo_chain.py and this script disagree on CHAIN"
    async with aiosqlite.connect(project / "floor.db") as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        client = get_client(url=url, api_key=None)
        zero_client = get_client(url=zero_url, api_key=None)
        try:
            await run_all(Weft(client), Floor(module, saver), Weft(zero_client), reps, rounds)
        finally:
            await client.aclose()
            await zero_client.aclose()


async def run_all(weft: Weft, floor: Floor, zero: Weft, reps: int, rounds: int) -> None:
    print(
        f"# bench/http.py — {time.strftime('%Y-%m-%d')}, {platform.python_version()}, "
        f"{os.cpu_count()} cores, reps={reps}, rounds={rounds}\n"
    )
    # warm-up
    for _ in range(10):
        await weft.wait(await weft.thread())
        await floor.wait(str(uuid.uuid4()))
        await zero.wait(str(uuid.uuid4()))

    # 1. runs.wait, one at a time
    w_times: list[float] = []
    f_times: list[float] = []
    z_times: list[float] = []
    for i in range(reps):
        tid = await weft.thread()
        for which in (i % 3, (i + 1) % 3, (i + 2) % 3):
            start = time.perf_counter()
            if which == 0:
                await weft.wait(tid)
                w_times.append(time.perf_counter() - start)
            elif which == 1:
                await floor.wait(str(uuid.uuid4()))
                f_times.append(time.perf_counter() - start)
            else:
                await zero.wait(str(uuid.uuid4()))
                z_times.append(time.perf_counter() - start)
    w50, w95 = pct(w_times)
    f50, f95 = pct(f_times)
    z50, z95 = pct(z_times)

    # 2. the chain, streamed
    w_stream: list[tuple[float, float]] = []
    f_stream: list[tuple[float, float]] = []
    for i in range(max(reps // 2, 10)):
        tid = await weft.thread()
        if i % 2:
            w_stream.append(await weft.stream(tid))
            f_stream.append(await floor.stream(str(uuid.uuid4())))
        else:
            f_stream.append(await floor.stream(str(uuid.uuid4())))
            w_stream.append(await weft.stream(tid))
    ws50, _ = pct([t for t, _ in w_stream])
    wf50, wf95 = pct([f for _, f in w_stream])
    fs50, _ = pct([t for t, _ in f_stream])
    ff50, _ = pct([f for _, f in f_stream])

    # 3. 50 concurrent runs.wait on distinct threads
    w_rates: list[float] = []
    f_rates: list[float] = []
    z_rates: list[float] = []
    for _ in range(rounds):
        tids = [await weft.thread() for _ in range(CONCURRENCY)]
        gc.collect()  # untimed, see below
        start = time.perf_counter()
        await asyncio.gather(*(weft.wait(t) for t in tids))
        w_rates.append(CONCURRENCY / (time.perf_counter() - start))
        gc.collect()  # a full collection of this shared heap would land on a random round
        start = time.perf_counter()
        await asyncio.gather(*(floor.wait(str(uuid.uuid4())) for _ in range(CONCURRENCY)))
        f_rates.append(CONCURRENCY / (time.perf_counter() - start))
        gc.collect()
        start = time.perf_counter()
        await asyncio.gather(*(zero.wait(str(uuid.uuid4())) for _ in range(CONCURRENCY)))
        z_rates.append(CONCURRENCY / (time.perf_counter() - start))
    wr = statistics.median(w_rates)
    fr = statistics.median(f_rates)
    zr = statistics.median(z_rates)

    # 4. history of a thread with 100 checkpoints (chain runs write 12 each)
    tid = await weft.thread()
    ftid = str(uuid.uuid4())
    while await weft.history(tid) < HISTORY:
        await weft.stream(tid)
    while await floor.history(ftid) < HISTORY:
        await floor.stream(ftid)
    wh: list[float] = []
    fh: list[float] = []
    for _ in range(max(reps // 4, 10)):
        start = time.perf_counter()
        assert await weft.history(tid) == HISTORY
        wh.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert await floor.history(ftid) == HISTORY
        fh.append(time.perf_counter() - start)
    wh50, _ = pct(wh)
    fh50, _ = pct(fh)

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    print(
        "| workload | weft serve + SDK | LangGraph + AsyncSqliteSaver (in process) "
        "| ratio | target |"
    )
    print("|---|---|---|---|---|")
    print(
        f"| runs.wait, echo (p50 / p95) | {w50:.2f} / {w95:.2f} ms | {f50:.2f} / {f95:.2f} ms "
        f"| {w50 / f50:.2f}x | p50 no slower: {verdict(w50 <= f50)} |"
    )
    print(
        f"| 10-step chain streamed (p50 total) | {ws50:.2f} ms | {fs50:.2f} ms "
        f"| {ws50 / fs50:.2f}x | |"
    )
    print(
        f"| time to first event (p50 / p95) | {wf50:.2f} / {wf95:.2f} ms | {ff50:.2f} ms | "
        f"{wf50 / ff50:.2f}x | < {FIRST_EVENT_TARGET_MS:g} ms: "
        f"{verdict(wf50 < FIRST_EVENT_TARGET_MS)} |"
    )
    print(
        f"| {CONCURRENCY} concurrent runs.wait | {wr:.0f} runs/s | {fr:.0f} runs/s | "
        f"{wr / fr:.2f}x | >= {RUNS_PER_S_TARGET:g} runs/s: {verdict(wr >= RUNS_PER_S_TARGET)} |"
    )
    print(
        f"| threads.get_history, {HISTORY} checkpoints (p50) | {wh50:.2f} ms | {fh50:.2f} ms "
        f"| {wh50 / fh50:.2f}x | |"
    )
    print(
        f"| runs.wait against a zero-work server (p50 / p95; the client's own cost) "
        f"| {z50:.2f} / {z95:.2f} ms | | | |"
    )
    print(
        f"| {CONCURRENCY} concurrent runs.wait against a zero-work server (the client's ceiling) "
        f"| {zr:.0f} runs/s | | | |"
    )
    print(
        f"\nweft's server: {w50 - z50:.2f} ms per run.wait (p50 minus the zero-work server's); "
        f"the floor's p50 leaves a server {f50 - z50:.2f} ms."
    )


if __name__ == "__main__":
    main()
