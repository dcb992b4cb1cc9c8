"""Session plans (issue 7): a plan's coordination cost and parallel efficiency, same run.

Two measures, one process, one database (SQLite file, WAL, synchronous=FULL, or Postgres with
``--database-url``):

* **Coordination overhead.** A layered DAG of 1,000 threads (10 layers of 100; each thread
  of a layer after 1 to 3 threads of the layer before it, chosen with a fixed seed: fan-out
  and fan-in) of a trivial 1-node workflow, run as a plan (``rt.plans.run`` until
  ``rt.plans.wait`` returns) with ``max_parallel`` 1 and 16, against the same 1,000 runs
  done directly through the engine: ``rt.threads.create`` + ``rt.runs.wait`` per thread,
  one at a time in layer order, and 16 at a time (a semaphore; a thread starts once its
  sources have ended). Overhead per thread = (plan time - direct time) / threads. The plan's
  creation (validation, one session and its thread rows) is timed on its own and not
  included. The four setups are interleaved, their order rotating, over ``--rounds`` rounds;
  the median is kept.
* **Parallel efficiency.** The same shape, 10 layers of 32 (320 threads), of a workflow
  whose node sleeps 50 ms, as a plan with ``max_parallel`` 16. Ideal time = sum over the
  DAG's levels of ceil(level width / 16) x 50 ms (every level here is one layer: its threads
  depend on the layer before); efficiency = ideal / actual. The ideal leaves out what a run
  itself costs (its thread, checkpoints and bookkeeping), so the direct 16-at-a-time run of
  the same DAG is shown beside it: what the engine alone reaches, the plan's ceiling.

Targets: overhead at most 1 ms per thread (both ``max_parallel``), efficiency at least 90%.
Usage:

    python -P bench/plans.py [--quick] [--rounds N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from weft.config import Settings
from weft.runtime import Runtime

OVERHEAD_TARGET_MS = 1.0
EFFICIENCY_TARGET = 0.90
SLEEP = 0.05
PARALLEL = 16

GRAPHS = f'''"""Graphs of bench/plans.py: a trivial 1-node graph and one that sleeps {SLEEP} s."""

from __future__ import annotations

import asyncio
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    value: int


async def step(state: State) -> dict[str, Any]:
    return {{"value": state.get("value", 0) + 1}}


async def nap(state: State) -> dict[str, Any]:
    await asyncio.sleep({SLEEP})
    return {{"value": state.get("value", 0) + 1}}


def build(node: Any) -> Any:
    builder = StateGraph(State)
    builder.add_node("step", node)
    builder.add_edge(START, "step")
    builder.add_edge("step", END)
    return builder


noop = build(step)
sleepy = build(nap)
'''


@dataclass(frozen=True)
class Dag:
    """A layered DAG: ``layers[k]`` are thread names; ``sources[name]`` its sources."""

    layers: list[list[str]]
    sources: dict[str, list[str]]

    @property
    def size(self) -> int:
        return sum(len(layer) for layer in self.layers)

    def plan(self, graph_id: str, max_parallel: int) -> dict[str, Any]:
        threads: dict[str, Any] = {}
        for layer in self.layers:
            for name in layer:
                thread: dict[str, Any] = {"graph_id": graph_id, "input": {"value": 0}}
                if self.sources[name]:
                    thread["after"] = self.sources[name]
                threads[name] = thread
        return {
            "name": f"bench {self.size} x {graph_id}",
            "policy": "strict",
            "max_parallel": max_parallel,
            "threads": threads,
        }

    def ideal(self, parallel: int, seconds: float) -> float:
        """Sum over levels of ceil(width / parallel) x seconds."""
        return sum(math.ceil(len(layer) / parallel) for layer in self.layers) * seconds


def layered_dag(layers: int, width: int, seed: int = 7) -> Dag:
    rnd = random.Random(seed)
    names = [[f"l{k}_{i}" for i in range(width)] for k in range(layers)]
    sources: dict[str, list[str]] = {}
    for k, layer in enumerate(names):
        for name in layer:
            sources[name] = sorted(rnd.sample(names[k - 1], rnd.randint(1, 3))) if k else []
    return Dag(names, sources)


async def run_plan(rt: Runtime, dag: Dag, graph_id: str, parallel: int) -> tuple[float, float]:
    """(creation seconds, run seconds) of ``dag`` as a plan; checks every thread succeeded."""
    start = time.perf_counter()
    session, _ = await rt.plans.create(dag.plan(graph_id, parallel))
    created = time.perf_counter() - start
    start = time.perf_counter()
    await rt.plans.run(session.session_id)
    report = await rt.plans.wait(session.session_id)
    took = time.perf_counter() - start
    assert report.status == "completed", report.counts
    assert report.counts == {"succeeded": dag.size}, report.counts
    return created, took


async def run_direct(rt: Runtime, dag: Dag, graph_id: str, parallel: int) -> float:
    """Seconds to run ``dag``'s threads through the engine, ``parallel`` at a time, each
    once its sources ended (serial: in layer order)."""
    start = time.perf_counter()

    async def one() -> None:
        thread = await rt.threads.create(graph_id=graph_id)
        out = await rt.runs.wait(thread.thread_id, graph_id, input={"value": 0})
        assert out == {"value": 1}, out

    if parallel == 1:
        for layer in dag.layers:
            for _ in layer:
                await one()
        return time.perf_counter() - start
    gate = asyncio.Semaphore(parallel)
    done = {name: asyncio.Event() for name in dag.sources}

    async def node(name: str) -> None:
        for source in dag.sources[name]:
            await done[source].wait()
        async with gate:
            await one()
        done[name].set()

    async with asyncio.TaskGroup() as tg:
        for layer in dag.layers:
            for name in layer:
                tg.create_task(node(name))
    return time.perf_counter() - start


Setup = tuple[str, Callable[[], Awaitable[float]]]


async def overhead(rt: Runtime, dag: Dag, rounds: int) -> tuple[dict[str, float], list[float]]:
    creations: list[float] = []

    async def plan(parallel: int) -> float:
        created, took = await run_plan(rt, dag, "noop", parallel)
        creations.append(created)
        return took

    setups: list[Setup] = [
        ("plan, max_parallel 1", lambda: plan(1)),
        ("direct, 1 at a time", lambda: run_direct(rt, dag, "noop", 1)),
        (f"plan, max_parallel {PARALLEL}", lambda: plan(PARALLEL)),
        (f"direct, {PARALLEL} at a time", lambda: run_direct(rt, dag, "noop", PARALLEL)),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in setups}
    for i in range(-1, rounds):  # round -1: warm-up
        k = i % len(setups)
        for name, work in setups[k:] + setups[:k]:
            took = await work()
            if i >= 0:
                samples[name].append(took)
        print(f"overhead round {i + 1}/{rounds} done", flush=True)
    return {n: statistics.median(v) for n, v in samples.items()}, creations


async def efficiency(rt: Runtime, dag: Dag, rounds: int) -> tuple[float, float]:
    """Median seconds of the sleeping DAG: as a plan, and directly (both 16 at a time)."""
    plans: list[float] = []
    direct: list[float] = []
    for i in range(rounds):
        if i % 2:
            direct.append(await run_direct(rt, dag, "sleepy", PARALLEL))
            plans.append((await run_plan(rt, dag, "sleepy", PARALLEL))[1])
        else:
            plans.append((await run_plan(rt, dag, "sleepy", PARALLEL))[1])
            direct.append(await run_direct(rt, dag, "sleepy", PARALLEL))
    return statistics.median(plans), statistics.median(direct)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small DAG, one round")
    parser.add_argument("--rounds", type=int, help="rounds of each measure (3; --quick 1)")
    parser.add_argument("--database-url", help="default: a SQLite file in a temp folder")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    dag = layered_dag(5, 40) if args.quick else layered_dag(10, 100)
    sleepy = layered_dag(5, 32) if args.quick else layered_dag(10, 32)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench_plan_graphs.py").write_text(GRAPHS)
        (folder / "langgraph.json").write_text(
            json.dumps(
                {
                    "graphs": {
                        "noop": "./bench_plan_graphs.py:noop",
                        "sleepy": "./bench_plan_graphs.py:sleepy",
                    }
                }
            )
        )
        url = args.database_url or f"sqlite:///{folder}/plans.db"
        settings = Settings.load(folder / "langgraph.json", env={"WEFT_DATABASE_URL": url})
        saved_path = list(sys.path)
        try:
            async with Runtime.open(settings) as rt:
                start = time.perf_counter()
                times, creations = await overhead(rt, dag, rounds)
                print(f"overhead done in {time.perf_counter() - start:.0f} s", flush=True)
                start = time.perf_counter()
                plan_s, direct_s = await efficiency(rt, sleepy, rounds)
                print(f"efficiency done in {time.perf_counter() - start:.0f} s", flush=True)
        finally:
            sys.path[:] = saved_path

    kind = "Postgres" if url.startswith("postgres") else "SQLite file (WAL, synchronous=FULL)"
    n = dag.size
    print(f"\nPython {platform.python_version()}; {kind}; median of {rounds} round(s)\n")
    print(f"Coordination: {n} threads of a 1-node workflow, {len(dag.layers)} layers of "
          f"{len(dag.layers[0])}, each after 1-3 threads of the layer before "
          f"({sum(map(len, dag.sources.values()))} edges)\n")  # fmt: skip
    print("| max parallel | plan | direct (engine) | plan / direct | overhead per thread |")
    print("|---:|---:|---:|---:|---:|")
    over: dict[int, float] = {}
    for parallel, plan_key, direct_key in (
        (1, "plan, max_parallel 1", "direct, 1 at a time"),
        (PARALLEL, f"plan, max_parallel {PARALLEL}", f"direct, {PARALLEL} at a time"),
    ):
        p, d = times[plan_key], times[direct_key]
        over[parallel] = (p - d) / n * 1e3
        print(f"| {parallel} | {p:.2f} s ({p / n * 1e3:.2f} ms/thread) | {d:.2f} s "
              f"({d / n * 1e3:.2f} ms/thread) | {p / d:.2f}x | "
              f"{over[parallel]:+.2f} ms |")  # fmt: skip
    print(f"\nPlan creation (validate + session + {n} thread rows): median "
          f"{statistics.median(creations):.2f} s, not included above\n")  # fmt: skip

    ideal = sleepy.ideal(PARALLEL, SLEEP)
    widths = " + ".join(f"ceil({len(layer)}/{PARALLEL})" for layer in sleepy.layers[:2])
    print(f"Parallel efficiency: {sleepy.size} threads sleeping {SLEEP * 1e3:.0f} ms, "
          f"{len(sleepy.layers)} layers of {len(sleepy.layers[0])}, {PARALLEL} at a time; "
          f"ideal = ({widths} + ...) x {SLEEP * 1e3:.0f} ms = {ideal:.2f} s\n")  # fmt: skip
    print("| setup | time | efficiency (ideal / time) |")
    print("|---|---:|---:|")
    print(f"| plan, max_parallel {PARALLEL} | {plan_s:.2f} s | {ideal / plan_s:.1%} |")
    print(f"| direct, {PARALLEL} at a time | {direct_s:.2f} s | {ideal / direct_s:.1%} |")
    print(f"\nThe plan reaches {direct_s / plan_s:.1%} of the direct runs' speed (the engine's "
          f"own ceiling at {PARALLEL} at a time on this machine)\n")  # fmt: skip

    def verdict(ok: bool, what: str) -> None:
        print(f"{'PASS' if ok else 'FAIL'}  {what}")

    for parallel, ms in over.items():
        verdict(ms <= OVERHEAD_TARGET_MS,
                f"coordination overhead at max_parallel {parallel}: {ms:+.2f} ms per thread "
                f"(<= {OVERHEAD_TARGET_MS:.0f} ms)")  # fmt: skip
    verdict(ideal / plan_s >= EFFICIENCY_TARGET,
            f"parallel efficiency at max_parallel {PARALLEL}: {ideal / plan_s:.1%} "
            f"(>= {EFFICIENCY_TARGET:.0%})")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
