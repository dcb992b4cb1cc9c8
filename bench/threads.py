"""Threads (issue 4): branch, snapshot, rollback and metadata search cost on SQLite.

1. branch, snapshot and rollback on a thread with 10 checkpoints and on one with 10,000,
   interleaved, through ``rt.threads``: p50/p95 of each and the ratio long/short.
   Targets: ratio <= 1.5 and p50 <= 5 ms. Both histories are real LangGraph checkpoints:
   two runs of the ``counter`` graph (4 checkpoints each), then ``update_state`` as
   ``add_one`` up to the length, so both heads hold the same two messages and the long
   thread differs only by its history. "old" is the 5th checkpoint, "head" the newest.
   Each rollback adds one checkpoint (and one rollback mark) to the thread it rolls back.
   A one-row durable write timed between the operations gives the fsync'd-commit floor.
2. ``rt.threads.search(metadata={"user": ...}, limit=10)`` and ``count`` over 100,000
   threads (1,000 users, 100 threads each, a few other keys). Target: search p50 <= 5 ms,
   and its query plan uses the ``thread_metadata`` index. Baseline in the same run: the same
   query as raw SQL with and without the index clause (pure ``json_extract`` predicate).
   Also timed, without a target: a filter matching a quarter of the threads.

Database file in a temp dir, WAL, synchronous=FULL (weft's default). Usage:

    python -P bench/threads.py [--quick] [--checkpoints N] [--reps N] [--threads N] [--users N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from weft.config import Settings
from weft.runtime import Runtime
from weft.storage.base import ThreadQuery
from weft.storage.sqlite_engine import SqliteEngine
from weft.storage.sqlite_threads import thread_search_sql

STEPS = Path(__file__).parent.parent / "tests" / "fixtures" / "graphs" / "steps.py"
OLD = 5  # branch/snapshot/rollback "old" = the 5th checkpoint (oldest first)
RATIO_TARGET, P50_TARGET_MS = 1.5, 5.0

Op = Callable[[str, str, int], Awaitable[Any]]


def touch(tid: str) -> Callable[[sqlite3.Connection], Any]:
    """A one-row durable write (no trigger fires): the floor of any write's latency."""
    return lambda conn: conn.execute("UPDATE threads SET name = name WHERE thread_id = ?", (tid,))


def pct(samples: list[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds."""
    ms = sorted(s * 1e3 for s in samples)
    return statistics.median(ms), ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]


async def timed(work: Awaitable[Any]) -> float:
    """Seconds awaiting ``work`` (a coroutine does nothing before it is awaited)."""
    start = time.perf_counter()
    await work
    return time.perf_counter() - start


async def build_thread(rt: Runtime, checkpoints: int) -> tuple[str, str]:
    """A thread of ``checkpoints`` real checkpoints; returns its ID and the 5th's ID."""
    tid = str(uuid.uuid4())
    for _ in range(2):
        async for _ in rt.invoke("counter", {}, thread_id=tid):
            pass
    n = (await rt.threads.get(tid)).counts.checkpoints
    for _ in range(checkpoints - n):
        await rt.threads.update_state(tid, {"count": 1}, as_node="add_one")
    assert (await rt.threads.get(tid)).counts.checkpoints == checkpoints
    history = await rt.threads.history(tid, limit=checkpoints)
    return tid, str(history[-OLD].checkpoint_id)


Ops = list[tuple[str, tuple[float, float, float, float, float, float]]]


async def bench_ops(rt: Runtime, short: int, long: int, reps: int) -> tuple[Ops, str]:
    """The operations' rows (with the p50 of a one-row durable write timed between them, the
    floor any write pays for its fsync'd commit) and the cost of rollback marks."""
    engine: SqliteEngine = rt.storage.engine  # type: ignore[attr-defined]
    start = time.perf_counter()
    threads = {"short": await build_thread(rt, short), "long": await build_thread(rt, long)}
    print(f"built {short} + {long} checkpoints in {time.perf_counter() - start:.1f} s", flush=True)
    ops: dict[str, Op] = {
        "branch, old": lambda t, cp, i: rt.threads.branch(t, checkpoint_id=cp),
        "branch, head": lambda t, cp, i: rt.threads.branch(t),
        "snapshot, old": lambda t, cp, i: rt.threads.snapshot(t, f"old{i}", checkpoint_id=cp),
        "snapshot, head": lambda t, cp, i: rt.threads.snapshot(t, f"head{i}"),
        "rollback to old": lambda t, cp, i: rt.threads.rollback(t, cp),
    }
    rows: Ops = []
    warm = min(20, reps)
    spare = (await rt.threads.create()).thread_id  # a small row for the write floor
    for name, op in ops.items():
        samples: dict[str, list[float]] = {"short": [], "long": [], "floor": []}
        for i in range(-warm, reps):  # negative i: warm-up, not kept
            for which, (tid, old) in threads.items():  # interleaved: drift hits both
                took = await timed(op(tid, old, i))
                floor = await timed(engine.write(touch(spare)))
                if i >= 0:
                    samples[which].append(took)
                    samples["floor"].append(floor)
        (s50, s95), (l50, l95) = pct(samples["short"]), pct(samples["long"])
        f50 = pct(samples["floor"])[0]
        rows.append((name, (s50, s95, l50, l95, l50 / s50, f50)))
        print(f"{name:16} short p50 {s50:6.2f} ms p95 {s95:6.2f} | long p50 {l50:6.2f} ms "
              f"p95 {l95:6.2f} | long/short {l50 / s50:4.2f} | write floor {f50:.2f} ms",
              flush=True)  # fmt: skip
    # Each rollback appends a mark to the thread row's ``rollbacks``, parsed by every read of
    # the row: time get() on the short thread (now marked) against a fresh branch (none).
    marked, fresh = threads["short"][0], (await rt.threads.branch(threads["short"][0])).thread_id
    got: dict[str, list[float]] = {marked: [], fresh: []}
    for _ in range(reps):
        for tid in got:
            got[tid].append(await timed(rt.threads.get(tid)))
    n_marks = len((await rt.threads.get(marked)).rollbacks)
    growth = (
        f"rt.threads.get p50: {pct(got[fresh])[0]:.2f} ms on a thread with no rollback mark, "
        f"{pct(got[marked])[0]:.2f} ms on one with {n_marks}"
    )
    print(growth)
    for which, (tid, _) in threads.items():
        t = await rt.threads.get(tid)
        print(f"{which} thread after the runs: {t.counts.checkpoints} checkpoints, "
              f"{len(t.rollbacks)} rollback marks, {t.counts.branches} branches")  # fmt: skip
    return rows, growth


def insert_threads(conn: sqlite3.Connection, n: int, users: int) -> None:
    """``n`` thread rows with the column values ``put_thread`` writes; the triggers fill
    ``thread_metadata``. Users are shuffled so each one's threads spread over time."""
    rng = random.Random(4)
    owners = [i % users for i in range(n)]
    rng.shuffle(owners)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = []
    for i, user in enumerate(owners):
        ts = (base + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        meta = {
            "user": f"user-{user:04d}",
            "graph_id": "counter",
            "tier": ("free", "pro", "team", "enterprise")[i % 4],
            "priority": i % 5,
            "archived": i % 10 == 0,
        }
        rows.append(
            (str(uuid.UUID(int=rng.getrandbits(128), version=4)), ts, ts, None,
             json.dumps(meta, separators=(",", ":")), "{}", "idle", None, "{}", "active",
             "main", "counter", None, None, None, None, 0, None, "[]")
        )  # fmt: skip
    conn.executemany(
        "INSERT INTO threads (thread_id, created_at, updated_at, state_updated_at, metadata, "
        'config, status, "values", interrupts, lifecycle, kind, graph_id, session_id, name, '
        "parent_thread_id, source_checkpoint_id, count_messages, owner, rollbacks) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )


async def bench_search(rt: Runtime, n: int, users: int, reps: int) -> list[tuple[str, Any]]:
    engine: SqliteEngine = rt.storage.engine  # type: ignore[attr-defined]
    start = time.perf_counter()
    await engine.write(lambda conn: insert_threads(conn, n, users))
    print(f"inserted {n} threads in {time.perf_counter() - start:.1f} s", flush=True)
    rng = random.Random(7)
    picks = [f"user-{rng.randrange(users):04d}" for _ in range(reps + 20)]

    def sql_of(user: str, indexed: bool, count: bool = False) -> tuple[str, tuple[Any, ...]]:
        """The SQL ``rt.threads.search`` runs; without the index clause (its first clause,
        two parameters) for the baseline; as a ``count(*)`` with ``count``."""
        query = ThreadQuery(metadata={"user": user})
        sql, params = thread_search_sql(
            query, limit=10, offset=0, sort_by="created_at", sort_order="desc"
        )
        if not indexed:
            head, _, rest = sql.partition(" WHERE thread_id IN (")
            sql, params = head + " WHERE " + rest.split(") AND ", 1)[1], params[2:]
            assert "thread_metadata" not in sql, sql
        if count:
            where = sql.split(" WHERE ", 1)[1].split(" ORDER BY ")[0]
            sql, params = f"SELECT count(*) FROM threads WHERE {where}", params[:-2]
        assert sql.count("?") == len(params), sql
        return sql, params

    def raw(sql: str, params: tuple[Any, ...]) -> Awaitable[Any]:
        return engine.read(lambda conn: conn.execute(sql, params).fetchall())

    cases: dict[str, Callable[[str], Awaitable[Any]]] = {
        "search (rt.threads.search)": lambda u: rt.threads.search(metadata={"user": u}, limit=10),
        "count (rt.threads.count)": lambda u: rt.threads.count(metadata={"user": u}),
        "search SQL, index": lambda u: raw(*sql_of(u, True)),
        "search SQL, json_extract only": lambda u: raw(*sql_of(u, False)),
        "count SQL, index": lambda u: raw(*sql_of(u, True, count=True)),
        "count SQL, json_extract only": lambda u: raw(*sql_of(u, False, count=True)),
        "search tier=pro (1/4 of threads)": lambda u: rt.threads.search(
            metadata={"tier": "pro"}, limit=10
        ),
        "count tier=pro (1/4 of threads)": lambda u: rt.threads.count(metadata={"tier": "pro"}),
    }
    found = await rt.threads.search(metadata={"user": picks[0]}, limit=10)
    assert len(found) == 10, found
    assert await rt.threads.count(metadata={"user": picks[0]}) == n // users
    rows: list[tuple[str, Any]] = []
    for name, case in cases.items():
        samples = [await timed(case(u)) for u in picks]
        p50, p95 = pct(samples[20:])
        rows.append((name, (p50, p95)))
        print(f"{name:34} p50 {p50:7.2f} ms  p95 {p95:7.2f} ms", flush=True)
    sql, params = sql_of(picks[0], True)
    plan = await engine.read(
        lambda conn: conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    )
    print("\nsearch SQL:", sql, "\nEXPLAIN QUERY PLAN:")
    for row in plan:
        print("   ", row[-1])
    rows.append(("plan", " / ".join(str(r[-1]) for r in plan)))
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--short", type=int, default=10, help="checkpoints of the short thread")
    parser.add_argument("--checkpoints", type=int, help="of the long thread (10000)")
    parser.add_argument("--reps", type=int, help="timed repetitions per operation (200)")
    parser.add_argument("--threads", type=int, help="threads for the search (100000)")
    parser.add_argument("--users", type=int, help="distinct users among them (1000)")
    args = parser.parse_args()
    q = args.quick
    long = args.checkpoints or (1_000 if q else 10_000)
    reps = args.reps or (50 if q else 200)
    n = args.threads or (10_000 if q else 100_000)
    users = args.users or (100 if q else 1_000)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        shutil.copy(STEPS, folder / "steps.py")
        (folder / "langgraph.json").write_text(
            json.dumps({"graphs": {"counter": "./steps.py:counter"}})
        )
        env = {"WEFT_DATABASE_URL": f"sqlite:///{folder}/weft.db"}
        settings = Settings.load(folder / "langgraph.json", env=env)
        saved_path = list(sys.path)
        try:
            async with Runtime.open(settings) as rt:
                ops, growth = await bench_ops(rt, args.short, long, reps)
                print()
                search = await bench_search(rt, n, users, reps)
        finally:
            sys.path[:] = saved_path

    print(f"\n| operation ({reps} reps) | {args.short} cp p50 | p95 | {long} cp p50 | p95 | "
          "long/short (p50) | durable 1-row write p50 |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (s50, s95, l50, l95, ratio, f50) in ops:
        print(f"| {name} | {s50:.2f} ms | {s95:.2f} ms | {l50:.2f} ms | {l95:.2f} ms | "
              f"**{ratio:.2f}x** | {f50:.2f} ms |")  # fmt: skip
    figures = dict(search)
    print(f"\n| {n} threads, {users} users, filter on one user ({reps} reps) | p50 | p95 |")
    print("|---|---:|---:|")
    for name, value in search:
        if name != "plan":
            print(f"| {name} | {value[0]:.2f} ms | {value[1]:.2f} ms |")
    speedup = (
        figures["search SQL, json_extract only"][0] / figures["search SQL, index"][0],
        figures["count SQL, json_extract only"][0] / figures["count SQL, index"][0],
    )
    print(f"\n{growth}")
    print(f"\nindex speed-up (p50): search {speedup[0]:.1f}x, count {speedup[1]:.1f}x\n")

    def verdict(ok: bool, what: str) -> None:
        print(f"{'PASS' if ok else 'FAIL'}  {what}")

    for name, (s50, _, l50, _, ratio, _) in ops:
        verdict(ratio <= RATIO_TARGET, f"{name}: long/short {ratio:.2f} <= {RATIO_TARGET}")
        worst = max(s50, l50)
        verdict(worst <= P50_TARGET_MS, f"{name}: p50 {worst:.2f} ms <= {P50_TARGET_MS} ms")
    p50 = figures["search (rt.threads.search)"][0]
    verdict(p50 <= P50_TARGET_MS, f"search by user: p50 {p50:.2f} ms <= {P50_TARGET_MS} ms")
    verdict("thread_metadata" in figures["plan"], "search plan uses the thread_metadata index")


if __name__ == "__main__":
    asyncio.run(main())
