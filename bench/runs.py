"""Runs engine (issue 5): weft's run engine in process against plain LangGraph, same run.

Three workloads, three setups, one process, the same graphs (async nodes) everywhere:

* workloads: one run of a 1-node echo graph (``runs.wait`` / ``ainvoke``); a 10-step chain
  streamed in ``values`` mode (``runs.stream`` / ``astream``: whole run and time to the first
  non-metadata event); 50 concurrent runs of the echo graph on 50 distinct threads;
* setups: **engine** (``Runtime.open`` + ``rt.runs``, no HTTP), **LangGraph + weft
  checkpointer** (``open_storage(...).checkpointer``) and **LangGraph + AsyncSqliteSaver**
  (``langgraph.checkpoint.sqlite.aio`` over aiosqlite). Each on its own SQLite file in a temp
  dir, WAL, synchronous=FULL (every commit fsynced, weft's default).

Every run gets a fresh thread (the engine's are created beforehand, untimed, with
``rt.threads.create()``). The setups are interleaved run by run (round by round for the
concurrent case), their order rotating, after a warm-up, so drift hits all alike. Each
concurrent round starts after an untimed ``gc.collect()``: the garbage collector's full
collections of this shared heap would otherwise fall on random rounds.
Targets: the engine's overhead over LangGraph + weft checkpointer < 25% (p50; runs/s for
the concurrent case) and the engine faster than LangGraph + AsyncSqliteSaver on all three.
``--profile`` adds a cProfile of the engine's echo runs (weft's functions by cumulative time)
and the storage jobs per run. Usage:

    python -P bench/runs.py [--quick] [--reps N] [--stream-reps N] [--rounds N] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import importlib.util
import io
import json
import platform
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from weft.config import Settings
from weft.runtime import Runtime
from weft.storage import Storage, open_storage

CHAIN = 10
CONCURRENCY = 50
OVERHEAD_TARGET = 0.25  # engine over LangGraph + weft checkpointer

GRAPHS = Path(__file__).with_name("echo_chain.py")
"""The echo and chain graphs (CHAIN steps), copied into the temporary project."""

SETUPS = ("engine", "LangGraph + weft checkpointer", "LangGraph + AsyncSqliteSaver")
ENGINE, LG_WEFT, LG_STOCK = SETUPS


def fresh_input() -> dict[str, Any]:
    return {"value": 0, "trail": []}


def pct(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    ms = sorted(s * 1e3 for s in samples)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


@dataclass
class Timing:
    """One streamed run: the whole run and the time to its first non-metadata event."""

    total: float
    first: float


class Setup:
    """One way of running the graphs; ``thread()`` is untimed preparation."""

    name: str

    async def thread(self) -> str:
        raise NotImplementedError

    async def wait(self, tid: str, graph: str) -> Any:
        raise NotImplementedError

    async def stream(self, tid: str, graph: str) -> Timing:
        raise NotImplementedError


class EngineSetup(Setup):
    name = ENGINE

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def thread(self) -> str:
        return (await self.rt.threads.create()).thread_id

    async def wait(self, tid: str, graph: str) -> Any:
        return await self.rt.runs.wait(tid, graph, input=fresh_input())

    async def stream(self, tid: str, graph: str) -> Timing:
        start = time.perf_counter()
        first = 0.0
        _, events = await self.rt.runs.stream(tid, graph, input=fresh_input(), stream_mode="values")
        last: Any = None
        async for e in events:
            if not first and e.event != "metadata":
                first = time.perf_counter() - start
            last = e
        total = time.perf_counter() - start
        assert last is not None
        assert last.event == "values", last
        assert last.data["value"] == CHAIN, last
        return Timing(total, first)


class LangGraphSetup(Setup):
    def __init__(self, name: str, module: ModuleType, saver: BaseCheckpointSaver[Any]) -> None:
        self.name = name
        self.graphs = {g: getattr(module, g).compile(checkpointer=saver) for g in ("echo", "chain")}
        self.count = 0

    async def thread(self) -> str:
        self.count += 1
        return f"t{self.count}"

    async def wait(self, tid: str, graph: str) -> Any:
        config: Any = {"configurable": {"thread_id": tid}}
        return await self.graphs[graph].ainvoke(fresh_input(), config)

    async def stream(self, tid: str, graph: str) -> Timing:
        config: Any = {"configurable": {"thread_id": tid}}
        start = time.perf_counter()
        first = 0.0
        last: Any = None
        async for chunk in self.graphs[graph].astream(fresh_input(), config, stream_mode="values"):
            if not first:
                first = time.perf_counter() - start
            last = chunk
        total = time.perf_counter() - start
        assert last["value"] == CHAIN, last
        return Timing(total, first)


@asynccontextmanager
async def stock_saver(path: Path) -> AsyncIterator[BaseCheckpointSaver[Any]]:
    async with aiosqlite.connect(path) as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver


def load_graphs(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("weft_bench_run_graphs", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the state schema's annotations resolve through it
    spec.loader.exec_module(module)
    return module


def rotated(setups: list[Setup], i: int) -> list[Setup]:
    k = i % len(setups)
    return setups[k:] + setups[:k]


async def timed(work: Awaitable[Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = await work
    return time.perf_counter() - start, out


async def bench_single(setups: list[Setup], reps: int) -> dict[str, list[float]]:
    """One echo run after another, each on a fresh thread, setups interleaved."""
    samples: dict[str, list[float]] = {s.name: [] for s in setups}
    for i in range(-min(20, reps), reps):  # negative i: warm-up
        for s in rotated(setups, i):
            tid = await s.thread()
            took, out = await timed(s.wait(tid, "echo"))
            assert out["value"] == 1, out
            if i >= 0:
                samples[s.name].append(took)
    return samples


async def bench_stream(setups: list[Setup], reps: int) -> dict[str, list[Timing]]:
    samples: dict[str, list[Timing]] = {s.name: [] for s in setups}
    for i in range(-min(5, reps), reps):
        for s in rotated(setups, i):
            tid = await s.thread()
            timing = await s.stream(tid, "chain")
            if i >= 0:
                samples[s.name].append(timing)
    return samples


@dataclass
class Concurrent:
    """Per round: runs/s and the process's CPU seconds per run (every thread); every run's
    own latency."""

    rates: list[float]
    cpu: list[float]
    latencies: list[float]


async def bench_concurrent(setups: list[Setup], rounds: int) -> dict[str, Concurrent]:
    """``rounds`` rounds of 50 concurrent echo runs on 50 fresh threads per setup."""
    out = {s.name: Concurrent([], [], []) for s in setups}
    for i in range(-1, rounds):
        for s in rotated(setups, i):
            tids = [await s.thread() for _ in range(CONCURRENCY)]
            # untimed: a full collection of this process's heap (all three setups and the
            # bench's own data) takes ~70 ms and otherwise lands on whichever round is running
            gc.collect()
            cpu, start = time.process_time(), time.perf_counter()
            results = await asyncio.gather(*(timed(s.wait(t, "echo")) for t in tids))
            elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
            assert all(r["value"] == 1 for _, r in results), results
            if i >= 0:
                out[s.name].rates.append(CONCURRENCY / elapsed)
                out[s.name].cpu.append(cpu / CONCURRENCY)
                out[s.name].latencies.extend(took for took, _ in results)
    return out


class StorageLog:
    """Records a storage's operations by job name while installed: reads, and writes with
    the time from submission to commit and the CPU the job itself took in the writer thread
    (wraps the SQLite engine's methods on the instance)."""

    def __init__(self, storage: Storage) -> None:
        self.engine: Any = storage.engine  # type: ignore[attr-defined]
        self.reads: Counter[str] = Counter()
        self.writes: dict[str, list[float]] = defaultdict(list)
        self.cpu: dict[str, list[float]] = defaultdict(list)

    def __enter__(self) -> StorageLog:
        submit, read = self.engine._submit, self.engine.read

        def logged_submit(fn: Any, mode: Any, committed: Any = None) -> Any:
            start, name = time.perf_counter(), job_name(fn)

            def timed(conn: Any) -> Any:
                cpu = time.thread_time()
                try:
                    return fn(conn)
                finally:
                    self.cpu[name].append(time.thread_time() - cpu)

            future = submit(timed, mode, committed)
            future.add_done_callback(
                lambda _: self.writes[name].append(time.perf_counter() - start)
            )
            return future

        def logged_read(fn: Any, **options: Any) -> Any:
            self.reads[job_name(fn)] += 1
            return read(fn, **options)

        self.engine._submit, self.engine.read = logged_submit, logged_read
        return self

    def __exit__(self, *exc: object) -> None:
        del self.engine._submit, self.engine.read  # back to the class's methods

    def report(self, runs: int) -> list[str]:
        lines = [
            f"    write {name:38} {len(took) / runs:4.1f} per run, "
            f"p50 {statistics.median(took) * 1e3:.2f} ms to commit, "
            f"{statistics.mean(self.cpu[name]) * 1e3:.3f} ms CPU in the writer"
            for name, took in sorted(self.writes.items())
        ]
        reads = sorted(self.reads.items())
        lines += [f"    read  {name:38} {n / runs:4.1f} per run" for name, n in reads]
        return lines


def job_name(fn: Any) -> str:
    """``SqliteRunStorage.admit`` for a job defined in that method."""
    return ".".join(getattr(fn, "__qualname__", repr(fn)).split(".")[:2])


async def profile_engine(engine: EngineSetup, lg_weft: Storage, lg: Setup, runs: int) -> str:
    """cProfile of ``runs`` engine echo runs, then the storage operations of an echo run."""
    tids = [await engine.thread() for _ in range(runs)]
    prof = cProfile.Profile()
    prof.enable()
    for tid in tids:
        await engine.wait(tid, "echo")
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out).sort_stats("cumulative")
    stats.print_stats(r"weft/(runs|runner|streams|storage/sqlite_runs|threads|assistants)", 25)
    lines = [
        f"cProfile, {runs} serial engine echo runs (weft's functions by cumulative time; "
        "a coroutine's time counts only while it runs, not while it awaits):",
        out.getvalue().split("\n\n", 1)[-1].rstrip(),
    ]
    for setup, storage in ((engine, engine.rt.storage), (lg, lg_weft)):
        tids = [await setup.thread() for _ in range(runs)]
        with StorageLog(storage) as log:
            for tid in tids:
                await setup.wait(tid, "echo")
        lines += ["", f"storage operations of a serial echo run, {setup.name}:", *log.report(runs)]
    return "\n".join(lines)


def ratio_line(label: str, engine: float, lg_weft: float, stock: float) -> str:
    """Latencies: engine overhead over LangGraph + weft, engine / stock (below 1: faster)."""
    return (
        f"| {label} | {engine / lg_weft - 1:+.0%} | {engine / stock:.2f}x "
        f"({'faster' if engine < stock else 'slower'}) |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, a smoke run")
    parser.add_argument("--reps", type=int, help="timed echo runs per setup (200)")
    parser.add_argument("--stream-reps", type=int, help="timed streamed chains per setup (50)")
    parser.add_argument("--rounds", type=int, help="rounds of 50 concurrent runs (20)")
    parser.add_argument("--profile", action="store_true", help="cProfile the engine's runs")
    args = parser.parse_args()
    reps = args.reps or (30 if args.quick else 200)
    stream_reps = args.stream_reps or (10 if args.quick else 50)
    rounds = args.rounds or (2 if args.quick else 20)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(GRAPHS, folder / "bench_graphs.py")
        (folder / "langgraph.json").write_text(
            json.dumps(
                {"graphs": {"echo": "./bench_graphs.py:echo", "chain": "./bench_graphs.py:chain"}}
            )
        )
        env = {"WEFT_DATABASE_URL": f"sqlite:///{folder}/engine.db"}
        settings = Settings.load(folder / "langgraph.json", env=env)
        module = load_graphs(folder / "bench_graphs.py")
        assert module.CHAIN == CHAIN, "bench/echo_chain.py and this script disagree on CHAIN"
        saved_path = list(sys.path)
        profile = ""
        try:
            async with AsyncExitStack() as stack:
                rt = await stack.enter_async_context(Runtime.open(settings))
                storage = await stack.enter_async_context(
                    open_storage(f"sqlite:///{folder}/lg_weft.db")
                )
                stock = await stack.enter_async_context(stock_saver(folder / "lg_stock.db"))
                engine = EngineSetup(rt)
                lg_weft = LangGraphSetup(LG_WEFT, module, storage.checkpointer)
                setups: list[Setup] = [engine, lg_weft, LangGraphSetup(LG_STOCK, module, stock)]
                start = time.perf_counter()
                single = await bench_single(setups, reps)
                print(f"echo runs done in {time.perf_counter() - start:.0f} s", flush=True)
                start = time.perf_counter()
                streamed = await bench_stream(setups, stream_reps)
                print(f"streamed chains done in {time.perf_counter() - start:.0f} s", flush=True)
                start = time.perf_counter()
                concurrent = await bench_concurrent(setups, rounds)
                print(f"concurrent rounds done in {time.perf_counter() - start:.0f} s", flush=True)
                if args.profile:
                    profile = await profile_engine(engine, storage, lg_weft, max(reps, 50))
        finally:
            sys.path[:] = saved_path

    if args.profile:
        print(f"\n{profile}")
    one = {n: pct(v) for n, v in single.items()}
    total = {n: pct([t.total for t in v]) for n, v in streamed.items()}
    first = {n: pct([t.first for t in v]) for n, v in streamed.items()}
    rate = {n: statistics.median(c.rates) for n, c in concurrent.items()}
    cpu = {n: statistics.median(c.cpu) * 1e3 for n, c in concurrent.items()}
    conc = {n: pct(c.latencies) for n, c in concurrent.items()}

    print(f"\nPython {platform.python_version()}; {reps} echo runs, {stream_reps} streamed "
          f"{CHAIN}-step chains, {rounds} rounds of {CONCURRENCY} concurrent echo runs "
          "per setup\n")  # fmt: skip
    print("| setup | echo run p50 | p95 | streamed chain p50 | p95 | first event p50 | p95 | "
          f"{CONCURRENCY} concurrent runs/s | per-run p50 | p95 | CPU per run |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in SETUPS:
        print(f"| {n} | {one[n][0]:.2f} ms | {one[n][1]:.2f} ms | {total[n][0]:.2f} ms | "
              f"{total[n][1]:.2f} ms | {first[n][0]:.2f} ms | {first[n][1]:.2f} ms | "
              f"{rate[n]:.0f} | {conc[n][0]:.1f} ms | {conc[n][1]:.1f} ms | "
              f"{cpu[n]:.2f} ms |")  # fmt: skip

    print("\n| workload | engine overhead over LangGraph + weft checkpointer | "
          "engine / LangGraph + AsyncSqliteSaver |")  # fmt: skip
    print("|---|---:|---:|")
    print(ratio_line("echo run (p50)", one[ENGINE][0], one[LG_WEFT][0], one[LG_STOCK][0]))
    print(ratio_line("streamed chain (p50)", *(total[n][0] for n in SETUPS)))
    print(ratio_line("first event (p50)", *(first[n][0] for n in SETUPS)))
    # throughput: overhead = how much longer the engine takes for the same runs
    print(ratio_line(f"{CONCURRENCY} concurrent (runs/s)", *(1 / rate[n] for n in SETUPS)))
    print()

    def verdict(ok: bool, what: str) -> None:
        print(f"{'PASS' if ok else 'FAIL'}  {what}")

    checks = {
        "echo run": (one[ENGINE][0], one[LG_WEFT][0], one[LG_STOCK][0]),
        "streamed chain": tuple(total[n][0] for n in SETUPS),
        f"{CONCURRENCY} concurrent": tuple(1 / rate[n] for n in SETUPS),
    }
    for label, (e, w, _) in checks.items():
        verdict(e / w - 1 < OVERHEAD_TARGET,
                f"{label}: engine overhead {e / w - 1:+.0%} over LangGraph + weft checkpointer "
                f"(< {OVERHEAD_TARGET:.0%})")  # fmt: skip
    for label, (e, _, s) in checks.items():
        verdict(e < s, f"{label}: engine {s / e:.2f}x the speed of LangGraph + AsyncSqliteSaver")


if __name__ == "__main__":
    asyncio.run(main())
