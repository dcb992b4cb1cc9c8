"""Checkpointer throughput: weft's SQLite checkpointer against AsyncSqliteSaver and InMemorySaver.

One process, one run, the same graphs for every saver:
  * a 1-node graph and a 10-node chain,
  * serial (one run after another on fresh threads) and 50 concurrent runs on 50 threads.

Both SQLite savers use a database file in WAL mode with synchronous=FULL, i.e. every
commit is fsynced before the run goes on (weft: before ``aput`` returns). Prints runs/s
for each and the ratio weft / AsyncSqliteSaver. Usage:

    python -P bench/checkpointer.py [--serial N] [--rounds R] [--out bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import operator
import platform
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypedDict

import aiosqlite
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import END, START, StateGraph

from weft.storage import open_storage


class State(TypedDict):
    value: int
    trail: Annotated[list[int], operator.add]


async def step(state: State) -> dict[str, Any]:
    return {"value": state["value"] + 1, "trail": [state["value"]]}


def build(n: int) -> StateGraph[State]:
    builder: StateGraph[State] = StateGraph(State)
    prev = START
    for i in range(n):
        builder.add_node(f"n{i}", step)
        builder.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    builder.add_edge(prev, END)
    return builder


Factory = Callable[[Path], Any]


@asynccontextmanager
async def weft_saver(folder: Path) -> AsyncIterator[BaseCheckpointSaver[str]]:
    async with open_storage(f"sqlite:///{folder}/weft.db") as storage:
        yield storage.checkpointer


@asynccontextmanager
async def weft_saver_normal(folder: Path) -> AsyncIterator[BaseCheckpointSaver[str]]:
    async with open_storage(f"sqlite:///{folder}/weft.db", sqlite_synchronous="normal") as storage:
        yield storage.checkpointer


@asynccontextmanager
async def stock_saver(folder: Path) -> AsyncIterator[BaseCheckpointSaver[str]]:
    async with aiosqlite.connect(folder / "stock.db") as conn:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        saver = AsyncSqliteSaver(conn)
        await saver.setup()
        yield saver


@asynccontextmanager
async def memory_saver(_folder: Path) -> AsyncIterator[BaseCheckpointSaver[str]]:
    yield InMemorySaver()


SAVERS: dict[str, Factory] = {
    "weft SqliteCheckpointer": weft_saver,
    "weft, synchronous=normal": weft_saver_normal,
    "AsyncSqliteSaver": stock_saver,
    "InMemorySaver": memory_saver,
}


async def measure(factory: Factory, nodes: int, concurrency: int, runs: int) -> float:
    """Runs per second for ``runs`` runs, ``concurrency`` at a time, each on a new thread."""
    with tempfile.TemporaryDirectory() as tmp:
        async with factory(Path(tmp)) as saver:
            graph = build(nodes).compile(checkpointer=saver)
            counter = 0

            async def one() -> None:
                nonlocal counter
                counter += 1
                config = {"configurable": {"thread_id": f"t{counter}"}}
                out = await graph.ainvoke({"value": 0, "trail": []}, config)
                assert out["value"] == nodes

            for _ in range(min(5, runs)):  # warm up
                await one()
            start = time.perf_counter()
            if concurrency == 1:
                for _ in range(runs):
                    await one()
            else:
                for _ in range(runs // concurrency):
                    await asyncio.gather(*(one() for _ in range(concurrency)))
            return runs / (time.perf_counter() - start)


async def op_latency(factory: Factory, n: int = 500) -> tuple[float, float]:
    """Microseconds per sequential ``aput`` and per ``aget_tuple`` of the latest checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        async with factory(Path(tmp)) as saver:
            config: Any = {"configurable": {"thread_id": "t", "checkpoint_ns": ""}}
            start = time.perf_counter()
            for i in range(n):
                config = await saver.aput(config, empty_checkpoint(), {"step": i}, {})
            put = (time.perf_counter() - start) / n * 1e6
            start = time.perf_counter()
            for _ in range(n):
                await saver.aget_tuple({"configurable": {"thread_id": "t", "checkpoint_ns": ""}})
            get = (time.perf_counter() - start) / n * 1e6
            return put, get


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--serial", type=int, default=300, help="runs in each serial case")
    parser.add_argument("--concurrent", type=int, default=500, help="runs in each 50-way case")
    parser.add_argument("--rounds", type=int, default=3, help="repeat and keep the median")
    parser.add_argument("--out", type=Path, help="append a Markdown table to this file")
    args = parser.parse_args()

    cases = [
        ("1-node, serial", 1, 1, args.serial),
        ("10-node chain, serial", 10, 1, args.serial // 3),
        ("1-node, 50 concurrent", 1, 50, args.concurrent),
        ("10-node chain, 50 concurrent", 10, 50, args.concurrent // 2),
    ]
    rows: list[tuple[str, dict[str, float]]] = []
    for label, nodes, conc, runs in cases:
        figures: dict[str, list[float]] = {name: [] for name in SAVERS}
        for _ in range(args.rounds):  # interleave savers so drift hits all alike
            for name, factory in SAVERS.items():
                figures[name].append(await measure(factory, nodes, conc, runs))
        medians = {name: statistics.median(v) for name, v in figures.items()}
        rows.append((label, medians))
        ratio = medians["weft SqliteCheckpointer"] / medians["AsyncSqliteSaver"]
        print(
            f"{label:30} weft {medians['weft SqliteCheckpointer']:8.0f} runs/s | "
            f"AsyncSqliteSaver {medians['AsyncSqliteSaver']:8.0f} | "
            f"InMemorySaver {medians['InMemorySaver']:8.0f} | weft/stock {ratio:5.2f}x | "
            f"weft normal {medians['weft, synchronous=normal']:8.0f}",
            flush=True,
        )

    table = [
        "| case | weft SqliteCheckpointer (runs/s) | AsyncSqliteSaver (runs/s) | "
        "InMemorySaver (runs/s) | weft / AsyncSqliteSaver | InMemorySaver / AsyncSqliteSaver "
        "(ceiling) | weft, synchronous=normal (runs/s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m in rows:
        weft, stock = m["weft SqliteCheckpointer"], m["AsyncSqliteSaver"]
        memory, normal = m["InMemorySaver"], m["weft, synchronous=normal"]
        table.append(
            f"| {label} | {weft:.0f} | {stock:.0f} | {memory:.0f} | **{weft / stock:.2f}x** | "
            f"{memory / stock:.2f}x | {normal:.0f} |"
        )
    latency = {name: await op_latency(factory) for name, factory in SAVERS.items()}
    table += [
        "",
        "| operation (sequential, µs each) | " + " | ".join(SAVERS) + " |",
        "|---|" + "---:|" * len(SAVERS),
        "| aput | " + " | ".join(f"{latency[n][0]:.0f}" for n in SAVERS) + " |",
        "| aget_tuple (latest) | " + " | ".join(f"{latency[n][1]:.0f}" for n in SAVERS) + " |",
    ]
    text = "\n".join(table)
    print()
    print(text)
    if args.out:
        stamp = time.strftime("%Y-%m-%d")
        with args.out.open("a") as f:
            f.write(
                f"\n### bench/checkpointer.py, {stamp}, Python {platform.python_version()}, "
                f"median of {args.rounds} rounds\n\n{text}\n"
            )


if __name__ == "__main__":
    asyncio.run(main())
