"""weft's SQLite checkpointer: LangGraph's ``BaseCheckpointSaver`` on the shared database.

Writes go through :class:`SqliteEngine`, so the checkpoints of concurrent runs share one
commit, and ``aput`` returns only once its checkpoint is durable, except inside
:meth:`SqliteCheckpointer.commit_at_end` (a run of the engine): there ``aput`` and
``aput_writes`` return once written, and leaving the block waits for their commit. Beyond the
stock saver it implements ``copy_thread``, ``prune`` and ``delete_for_runs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import random
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar, cast

import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    PendingWrite,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from weft.storage.sqlite_engine import SqliteEngine

T = TypeVar("T")

_FILTER_KEY = re.compile(r'^[^"\\]+$')

_CHECKPOINT_COLUMNS = (
    "thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata"
)
_WRITES_OF = (
    "SELECT task_id, channel, type, value, task_path, idx FROM checkpoint_writes "
    "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?"
)
# An upsert, not INSERT OR REPLACE: REPLACE deletes without firing the delete trigger that
# keeps threads.count_checkpoints exact, then inserts (firing the insert trigger).
_UPSERT_CHECKPOINT = (
    " ON CONFLICT (thread_id, checkpoint_ns, checkpoint_id) DO UPDATE SET "
    "parent_checkpoint_id = excluded.parent_checkpoint_id, run_id = excluded.run_id, "
    "type = excluded.type, checkpoint = excluded.checkpoint, metadata = excluded.metadata"
)
_INSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
    "parent_checkpoint_id, run_id, type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    + _UPSERT_CHECKPOINT
)
_INSERT_WRITE = (
    "INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, "
    "idx, channel, type, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)

Row = tuple[Any, ...]


class SqliteCheckpointer(BaseCheckpointSaver[str]):
    """Checkpoints in the ``checkpoints`` and ``checkpoint_writes`` tables of weft's database.

    Async first. The sync methods work when called from a thread other than the event
    loop's (as LangGraph does for sync graph calls in a worker thread); called on the loop
    thread they raise ``asyncio.InvalidStateError`` instead of deadlocking.
    """

    def __init__(self, engine: SqliteEngine, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.engine = engine
        self.loop = asyncio.get_running_loop()
        self._at_end: ContextVar[list[asyncio.Future[None]] | None] = ContextVar(
            f"weft_checkpoint_commits_{id(self)}", default=None
        )
        """Inside :meth:`commit_at_end`: the commits its writes still wait for (one variable
        per checkpointer: a node may use another database's)."""

    @contextlib.asynccontextmanager
    async def commit_at_end(self, *, share: bool = True) -> AsyncIterator[None]:
        """A block (one run, in this task and the tasks it starts) in which ``aput`` and
        ``aput_writes`` return as soon as their rows are written, before the COMMIT: a run's
        checkpoints then share one commit instead of waiting for one each. Reads of
        checkpoints in the block first wait for those commits (read-your-writes); leaving
        it normally waits for all of them, raising the first commit error.

        ``share=False`` (LangGraph's ``sync`` durability: each step waits for its
        checkpoint): every write in the block waits for its own commit, as outside any.
        """
        commits: list[asyncio.Future[None]] = []
        token = self._at_end.set(commits if share else None)
        try:
            yield
        finally:
            self._at_end.reset(token)
        await self.engine.committed(commits)

    async def _write(self, fn: Callable[[sqlite3.Connection], None]) -> None:
        commits = self._at_end.get()
        if commits is None:
            await self.engine.write(fn)
            return
        _, committed = await self.engine.write_early(fn)
        # keep what is pending or failed: a long run's list stays short
        commits[:] = [c for c in commits if not c.done() or c.cancelled() or c.exception()]
        commits.append(committed)

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        commits = self._at_end.get()
        if commits:
            await self.engine.committed(commits)
        return await self.engine.read(fn, after_early=False)

    # -- reads ------------------------------------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        checkpoint_id = get_checkpoint_id(config)

        def read(conn: sqlite3.Connection) -> tuple[Row, list[Row]] | None:
            if checkpoint_id:
                row = conn.execute(
                    f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints "
                    "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
                    (thread_id, ns, checkpoint_id),
                ).fetchone()
            else:
                row = conn.execute(
                    f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints "
                    "WHERE thread_id = ? AND checkpoint_ns = ? "
                    "ORDER BY checkpoint_id DESC LIMIT 1",
                    (thread_id, ns),
                ).fetchone()
            if row is None:
                return None
            writes = conn.execute(_WRITES_OF, (thread_id, ns, row[2])).fetchall()
            return row, writes

        found = await self._read(read)
        if found is None:
            return None
        return self._tuple(*found)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        where, params = _where(config, filter, before)
        sql = f"SELECT {_CHECKPOINT_COLUMNS} FROM checkpoints {where} ORDER BY checkpoint_id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))

        def read(conn: sqlite3.Connection) -> list[tuple[Row, list[Row]]]:
            rows = conn.execute(sql, params).fetchall()
            return [
                (row, conn.execute(_WRITES_OF, (row[0], row[1], row[2])).fetchall()) for row in rows
            ]

        for row, writes in await self._read(read):
            yield self._tuple(row, writes)

    def _tuple(self, row: Row, writes: list[Row]) -> CheckpointTuple:
        thread_id, ns, checkpoint_id, parent_id, type_, blob, metadata = row
        pending: list[PendingWrite] = [
            (task_id, channel, self.serde.loads_typed((wtype, value)))
            for task_id, channel, wtype, value, _, _ in sorted(
                writes, key=lambda w: writes_sort_key(w[4], w[0], w[5])
            )
        ]
        return CheckpointTuple(
            config={
                "configurable": {
                    "thread_id": thread_id,
                    "checkpoint_ns": ns,
                    "checkpoint_id": checkpoint_id,
                }
            },
            checkpoint=self.serde.loads_typed((type_, blob)),
            metadata=cast(CheckpointMetadata, orjson.loads(metadata)),
            parent_config=(
                {
                    "configurable": {
                        "thread_id": thread_id,
                        "checkpoint_ns": ns,
                        "checkpoint_id": parent_id,
                    }
                }
                if parent_id
                else None
            ),
            pending_writes=pending,
        )

    # -- writes -----------------------------------------------------------------------

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = conf.get("checkpoint_ns", "")
        type_, blob = self.serde.dumps_typed(checkpoint)
        meta = get_serializable_checkpoint_metadata(config, metadata)
        run_id = meta.get("run_id")
        params = (
            thread_id,
            ns,
            checkpoint["id"],
            conf.get("checkpoint_id"),
            str(run_id) if run_id is not None else None,
            type_,
            blob,
            _metadata_json(meta),
        )

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(_INSERT_CHECKPOINT, params)

        await self._write(write)
        return {
            "configurable": {
                "thread_id": thread_id,
                "checkpoint_ns": ns,
                "checkpoint_id": checkpoint["id"],
            }
        }

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        if not writes:
            return
        conf = config["configurable"]
        thread_id = str(conf["thread_id"])
        ns = str(conf.get("checkpoint_ns", ""))
        checkpoint_id = str(conf["checkpoint_id"])
        # Special channels (errors, interrupts, ...) replace; ordinary writes keep the first.
        verb = (
            "INSERT OR REPLACE "
            if all(w[0] in WRITES_IDX_MAP for w in writes)
            else ("INSERT OR IGNORE ")
        )
        rows = [
            (
                thread_id,
                ns,
                checkpoint_id,
                task_id,
                task_path,
                WRITES_IDX_MAP.get(channel, idx),
                channel,
                *self.serde.dumps_typed(value),
            )
            for idx, (channel, value) in enumerate(writes)
        ]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(verb + _INSERT_WRITE, rows)

        await self._write(write)

    async def adelete_thread(self, thread_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            delete_thread_checkpoints(conn, [str(thread_id)])

        await self.engine.write(write)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        ids = [str(r) for r in run_ids]
        if not ids:
            return
        marks = ",".join("?" * len(ids))

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM checkpoint_writes WHERE (thread_id, checkpoint_ns, checkpoint_id) IN "
                "(SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints "
                f"WHERE run_id IN ({marks}))",
                ids,
            )
            conn.execute(f"DELETE FROM checkpoints WHERE run_id IN ({marks})", ids)

        await self.engine.write(write)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        src, dst = str(source_thread_id), str(target_thread_id)

        def write(conn: sqlite3.Connection) -> None:
            copy_thread_checkpoints(conn, src, dst)

        await self.engine.write(write)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        if strategy not in ("keep_latest", "delete"):
            raise ValueError(f"unknown prune strategy {strategy!r}; use 'keep_latest' or 'delete'")
        ids = [str(t) for t in thread_ids]
        if not ids:
            return

        def write(conn: sqlite3.Connection) -> None:
            if strategy == "delete":
                delete_thread_checkpoints(conn, ids)
            else:
                keep_latest_checkpoints(conn, ids)

        await self.engine.write(write)

    def get_next_version(self, current: str | None, channel: None) -> str:
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # -- sync bridges -----------------------------------------------------------------

    def _sync(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            on_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            coro.close()
            raise asyncio.InvalidStateError(
                "weft's SQLite checkpointer is async: from the event loop's thread use the "
                "async methods (graph.ainvoke, checkpointer.aget_tuple, ...). Sync calls work "
                "only from other threads."
            )
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync(self.aget_tuple(config))

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        async def collect() -> list[CheckpointTuple]:
            return [t async for t in self.alist(config, filter=filter, before=before, limit=limit)]

        yield from self._sync(collect())

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync(self.aput(config, checkpoint, metadata, new_versions))

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._sync(self.aput_writes(config, writes, task_id, task_path))

    def delete_thread(self, thread_id: str) -> None:
        self._sync(self.adelete_thread(thread_id))

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        self._sync(self.adelete_for_runs(run_ids))

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        self._sync(self.acopy_thread(source_thread_id, target_thread_id))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        self._sync(self.aprune(thread_ids, strategy=strategy))


def _keep_signature(method: Any) -> None:
    """Store ``method``'s signature on it. LangGraph asks ``inspect.signature`` of the
    checkpointer's ``(a)put_writes`` at the start of every run whether it takes
    ``task_path``; a stored signature makes that a lookup instead of a rebuild."""
    method.__signature__ = inspect.signature(method)


_keep_signature(SqliteCheckpointer.aput_writes)
_keep_signature(SqliteCheckpointer.put_writes)


# -- SQL shared with weft's own thread operations (they run inside the same transaction) --


def delete_thread_checkpoints(conn: sqlite3.Connection, thread_ids: Sequence[str]) -> None:
    marks = ",".join("?" * len(thread_ids))
    conn.execute(f"DELETE FROM checkpoint_writes WHERE thread_id IN ({marks})", thread_ids)
    conn.execute(f"DELETE FROM checkpoints WHERE thread_id IN ({marks})", thread_ids)


def copy_thread_checkpoints(conn: sqlite3.Connection, src: str, dst: str) -> None:
    conn.execute(
        "INSERT INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, "
        "parent_checkpoint_id, run_id, type, checkpoint, metadata) "
        "SELECT ?, checkpoint_ns, checkpoint_id, parent_checkpoint_id, run_id, type, "
        "checkpoint, metadata FROM checkpoints WHERE thread_id = ?" + _UPSERT_CHECKPOINT,
        (dst, src),
    )
    conn.execute(
        "INSERT OR REPLACE INTO checkpoint_writes (thread_id, checkpoint_ns, checkpoint_id, "
        "task_id, task_path, idx, channel, type, value) "
        "SELECT ?, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, type, value "
        "FROM checkpoint_writes WHERE thread_id = ?",
        (dst, src),
    )


def keep_latest_checkpoints(conn: sqlite3.Connection, thread_ids: Sequence[str]) -> None:
    """Keep, per thread and namespace, only the newest checkpoint and its writes."""
    marks = ",".join("?" * len(thread_ids))
    latest = (
        "SELECT thread_id, checkpoint_ns, MAX(checkpoint_id) FROM checkpoints "
        f"WHERE thread_id IN ({marks}) GROUP BY thread_id, checkpoint_ns"
    )
    conn.execute(
        f"DELETE FROM checkpoint_writes WHERE thread_id IN ({marks}) AND "
        f"(thread_id, checkpoint_ns, checkpoint_id) NOT IN ({latest})",
        [*thread_ids, *thread_ids],
    )
    conn.execute(
        f"DELETE FROM checkpoints WHERE thread_id IN ({marks}) AND "
        f"(thread_id, checkpoint_ns, checkpoint_id) NOT IN ({latest})",
        [*thread_ids, *thread_ids],
    )


def _metadata_json(value: Any) -> str:
    """Canonical JSON: sorted keys (so filters on nested objects ignore key order), and no
    NaN/Infinity, which SQLite's JSON functions (and Postgres) cannot read back."""
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False, default=str)
    except ValueError as e:
        raise ValueError(f"checkpoint metadata cannot be stored as JSON: {e}") from e


def _where(
    config: RunnableConfig | None,
    filter: dict[str, Any] | None,
    before: RunnableConfig | None,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if config is not None:
        conf = config["configurable"]
        clauses.append("thread_id = ?")
        params.append(str(conf["thread_id"]))
        ns = conf.get("checkpoint_ns")
        if ns is not None:
            clauses.append("checkpoint_ns = ?")
            params.append(ns)
        if checkpoint_id := get_checkpoint_id(config):
            clauses.append("checkpoint_id = ?")
            params.append(checkpoint_id)
    for key, value in (filter or {}).items():
        if not _FILTER_KEY.match(key):
            raise ValueError(
                f"invalid metadata filter key {key!r}: a key may not contain '\"' or '\\'"
            )
        path = f'$."{key}"'  # the top-level key itself, dots and all, as InMemorySaver does
        if value is None:
            clauses.append("json_extract(metadata, ?) IS NULL")
            params.append(path)
        elif isinstance(value, bool):
            clauses.append("json_extract(metadata, ?) = ?")
            params.extend((path, 1 if value else 0))
        elif isinstance(value, (dict, list)):
            # Metadata is stored with sorted keys, so equal objects have equal text.
            clauses.append("json(json_extract(metadata, ?)) = json(?)")
            params.extend((path, _metadata_json(value)))
        elif isinstance(value, (str, int, float)):
            clauses.append("json_extract(metadata, ?) = ?")
            params.extend((path, value))
        else:
            clauses.append("json_extract(metadata, ?) = ?")
            params.extend((path, str(value)))
    if before is not None and (before_id := get_checkpoint_id(before)):
        clauses.append("checkpoint_id < ?")
        params.append(before_id)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), params
