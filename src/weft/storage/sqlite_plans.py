"""Session plans on SQLite: JSON as text, timestamps as ISO 8601 UTC text, one writer job per
change.

The writer runs jobs one after another, so a step's lease check and its writes see no other
writer in between; a job that raises is rolled back whole.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from weft.errors import ConflictError, NotFoundError
from weft.schema import Interaction, Plan, PlanThread
from weft.storage.base import Storage
from weft.storage.base_plans import (
    ACTIVE_PLAN_THREAD_STATES,
    UNFINISHED_PLAN_THREAD_STATES,
    PlanEvent,
    PlanFinish,
    PlanThreadPatch,
    merge_patches,
    no_plan,
    plan_cancel_conflict,
    plan_lease_lost,
    plan_running,
    plan_status_conflict,
)
from weft.storage.sqlite_engine import SqliteEngine
from weft.storage.sqlite_rows import _dumps, _owner_clause, _parse_ts, _ts
from weft.storage.sqlite_sessions import NewInteraction, insert_interactions

__all__ = ["SqlitePlanStorage"]

_COLUMNS = (
    "session_id, spec, status, lease_owner, lease_until, created_at, updated_at, "
    "started_at, ended_at"
)
_THREAD_COLUMNS = (
    "session_id, name, position, thread_id, state, attempts, run_id, started_at, ended_at, "
    "retry_at, deadline, error, reason, output, updated_at"
)
_TIMESTAMPS = frozenset({"started_at", "ended_at", "retry_at", "deadline"})


class SqlitePlanStorage(Storage):
    """The plan methods of :class:`weft.storage.sqlite.SqliteStorage`."""

    engine: SqliteEngine

    async def put_plan(
        self, plan: Plan, threads: Sequence[PlanThread], *, owner: str | None = None
    ) -> Plan:
        sid = plan.session_id

        def write(conn: sqlite3.Connection) -> Plan:
            current = _find(conn, sid, owner)
            if current is not None and current.status == "running":
                raise ConflictError(plan_running(sid))
            if current is not None:
                conn.execute("DELETE FROM plans WHERE session_id = ?", (sid,))
            conn.execute(
                f"INSERT INTO plans ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    sid,
                    _dumps(plan.spec),
                    plan.status,
                    plan.lease_owner,
                    _opt_ts(plan.lease_until),
                    _ts(plan.created_at),
                    _ts(plan.updated_at),
                    _opt_ts(plan.started_at),
                    _opt_ts(plan.ended_at),
                ),
            )
            conn.executemany(
                f"INSERT INTO plan_threads ({_THREAD_COLUMNS}) VALUES ({', '.join('?' * 15)})",
                [_thread_row(sid, t) for t in threads],
            )
            return plan

        return await self.engine.write(write)

    async def get_plan(self, session_id: str, *, owner: str | None = None) -> Plan:
        def read(conn: sqlite3.Connection) -> Plan:
            plan = _find(conn, session_id, owner)
            if plan is None:
                raise NotFoundError(no_plan(session_id))
            return plan

        return await self.engine.read(read)

    async def plan_threads(self, session_id: str) -> list[PlanThread]:
        def read(conn: sqlite3.Connection) -> list[PlanThread]:
            return _threads(conn, session_id)

        return await self.engine.read(read)

    async def start_plan(
        self,
        session_id: str,
        *,
        lease_owner: str | None,
        lease_until: datetime | None,
        now: datetime,
        event: PlanEvent,
    ) -> Plan:
        def write(conn: sqlite3.Connection) -> Plan:
            plan = _find(conn, session_id, None)
            if plan is None:
                raise NotFoundError(no_plan(session_id))
            if plan.status != "ready":
                raise ConflictError(plan_status_conflict(session_id, plan.status))
            at = _ts(now)
            conn.execute(
                "UPDATE plans SET status = 'running', lease_owner = ?, lease_until = ?, "
                "started_at = ?, updated_at = ? WHERE session_id = ?",
                (lease_owner, _opt_ts(lease_until), at, at, session_id),
            )
            conn.execute(
                "UPDATE sessions SET status = 'active', updated_at = ? WHERE session_id = ?",
                (at, session_id),
            )
            insert_interactions(conn, session_id, [_entry(event)], now)
            return plan.model_copy(
                update={
                    "status": "running",
                    "lease_owner": lease_owner,
                    "lease_until": lease_until,
                    "started_at": now,
                    "updated_at": now,
                }
            )

        return await self.engine.write(write)

    async def plan_step(
        self,
        session_id: str,
        *,
        lease_owner: str | None,
        patches: Sequence[PlanThreadPatch],
        events: Sequence[PlanEvent],
        now: datetime,
        finish: PlanFinish | None = None,
    ) -> list[Interaction]:
        at = _ts(now)
        groups = _patch_groups(patches, at)

        def write(conn: sqlite3.Connection) -> list[Interaction]:
            if finish is None:
                sql = "UPDATE plans SET updated_at = ?"
                params: tuple[Any, ...] = (at,)
            else:
                sql = (
                    "UPDATE plans SET updated_at = ?, status = ?, ended_at = ?, "
                    "lease_owner = NULL, lease_until = NULL"
                )
                params = (at, finish, at)
            changed = conn.execute(
                f"{sql} WHERE session_id = ? AND status = 'running' AND lease_owner IS ?",
                (*params, session_id, lease_owner),
            ).rowcount
            if changed == 0:
                raise ConflictError(plan_lease_lost(session_id))
            for statement, rows in groups:
                updated = conn.executemany(statement, [(*row, session_id) for row in rows]).rowcount
                if updated != len(rows):
                    raise _missing_thread(conn, session_id, rows)
            if finish is not None:
                conn.execute(
                    "UPDATE sessions SET status = ?, updated_at = ? WHERE session_id = ?",
                    (finish, at, session_id),
                )
            return insert_interactions(conn, session_id, [_entry(e) for e in events], now)

        return await self.engine.write(write)

    async def cancel_plan(
        self, session_id: str, *, now: datetime, reason: str, owner: str | None = None
    ) -> tuple[Plan, list[PlanThread]]:
        def write(conn: sqlite3.Connection) -> tuple[Plan, list[PlanThread]]:
            plan = _find(conn, session_id, owner)
            if plan is None:
                raise NotFoundError(no_plan(session_id))
            if plan.status not in ("ready", "running"):
                raise ConflictError(plan_cancel_conflict(session_id, plan.status))
            active = [t for t in _threads(conn, session_id) if t.state in ACTIVE_PLAN_THREAD_STATES]
            at = _ts(now)
            conn.execute(
                "UPDATE plans SET status = 'cancelled', ended_at = ?, updated_at = ?, "
                "lease_owner = NULL, lease_until = NULL WHERE session_id = ?",
                (at, at, session_id),
            )
            unfinished = ", ".join("?" * len(UNFINISHED_PLAN_THREAD_STATES))
            conn.execute(
                "UPDATE plan_threads SET state = 'cancelled', reason = ?, ended_at = ?, "
                f"updated_at = ? WHERE session_id = ? AND state IN ({unfinished})",
                (reason, at, at, session_id, *UNFINISHED_PLAN_THREAD_STATES),
            )
            conn.execute(
                "UPDATE sessions SET status = 'cancelled', updated_at = ? WHERE session_id = ?",
                (at, session_id),
            )
            event: NewInteraction = (
                "plan_event",
                {"event": "plan_cancelled", "reason": reason},
                {},
                None,
                None,
            )
            insert_interactions(conn, session_id, [event], now)
            cancelled = plan.model_copy(
                update={
                    "status": "cancelled",
                    "ended_at": now,
                    "updated_at": now,
                    "lease_owner": None,
                    "lease_until": None,
                }
            )
            return cancelled, active

        return await self.engine.write(write)

    async def claim_plan(
        self, session_id: str, *, lease_owner: str, lease_until: datetime, now: datetime
    ) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE plans SET lease_owner = ?, lease_until = ? "
                "WHERE session_id = ? AND status = 'running' "
                "AND (lease_owner IS NULL OR lease_owner = ? OR lease_until < ?)",
                (lease_owner, _ts(lease_until), session_id, lease_owner, _ts(now)),
            ).rowcount
            return changed == 1

        return await self.engine.write(write)

    async def renew_plan_lease(
        self, session_id: str, *, lease_owner: str, lease_until: datetime
    ) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            changed = conn.execute(
                "UPDATE plans SET lease_until = ? "
                "WHERE session_id = ? AND status = 'running' AND lease_owner = ?",
                (_ts(lease_until), session_id, lease_owner),
            ).rowcount
            return changed == 1

        return await self.engine.write(write)

    async def release_plan(self, session_id: str, *, lease_owner: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE plans SET lease_owner = NULL, lease_until = NULL "
                "WHERE session_id = ? AND lease_owner = ?",
                (session_id, lease_owner),
            )

        await self.engine.write(write)

    async def claimable_plans(self, *, now: datetime) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT session_id FROM plans WHERE status = 'running' "
                "AND (lease_owner IS NULL OR lease_until < ?) ORDER BY started_at, session_id",
                (_ts(now),),
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self.engine.read(read)


# --- rows ------------------------------------------------------------------------------------


def _opt_ts(value: datetime | None) -> str | None:
    return _ts(value) if value is not None else None


def _opt_parse(value: str | None) -> datetime | None:
    return _parse_ts(value) if value is not None else None


def _find(conn: sqlite3.Connection, session_id: str, owner: str | None) -> Plan | None:
    """The session's plan; None when it has none; NotFoundError when the session is unseen."""
    seen, params = _owner_clause(owner)
    row = conn.execute(
        "SELECT p.session_id, p.spec, p.status, p.lease_owner, p.lease_until, p.created_at, "
        "p.updated_at, p.started_at, p.ended_at FROM sessions s "
        f"LEFT JOIN plans p ON p.session_id = s.session_id WHERE s.session_id = ?{seen}",
        (session_id, *params),
    ).fetchone()
    if row is None:
        raise NotFoundError(f"session {session_id} not found")
    if row[0] is None:
        return None
    return Plan(
        session_id=row[0],
        spec=json.loads(row[1]),
        status=row[2],
        lease_owner=row[3],
        lease_until=_opt_parse(row[4]),
        created_at=_parse_ts(row[5]),
        updated_at=_parse_ts(row[6]),
        started_at=_opt_parse(row[7]),
        ended_at=_opt_parse(row[8]),
    )


def _threads(conn: sqlite3.Connection, session_id: str) -> list[PlanThread]:
    rows = conn.execute(
        f"SELECT {_THREAD_COLUMNS} FROM plan_threads WHERE session_id = ? ORDER BY position",
        (session_id,),
    ).fetchall()
    return [_thread(r) for r in rows]


def _thread_row(session_id: str, t: PlanThread) -> tuple[Any, ...]:
    return (
        session_id,
        t.name,
        t.position,
        t.thread_id,
        t.state,
        t.attempts,
        t.run_id,
        _opt_ts(t.started_at),
        _opt_ts(t.ended_at),
        _opt_ts(t.retry_at),
        _opt_ts(t.deadline),
        t.error,
        t.reason,
        _dumps(t.output) if t.output is not None else None,
        _ts(t.updated_at),
    )


def _thread(row: tuple[Any, ...]) -> PlanThread:
    return PlanThread(
        session_id=row[0],
        name=row[1],
        position=row[2],
        thread_id=row[3],
        state=row[4],
        attempts=row[5],
        run_id=row[6],
        started_at=_opt_parse(row[7]),
        ended_at=_opt_parse(row[8]),
        retry_at=_opt_parse(row[9]),
        deadline=_opt_parse(row[10]),
        error=row[11],
        reason=row[12],
        output=json.loads(row[13]) if row[13] is not None else None,
        updated_at=_parse_ts(row[14]),
    )


def _column_value(field: str, value: Any) -> Any:
    if value is None:
        return None
    if field in _TIMESTAMPS:
        return _ts(value)
    if field == "output":
        return _dumps(value)
    return value


def _patch_groups(
    patches: Sequence[PlanThreadPatch], at: str
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """One UPDATE per set of changed columns (patches of one thread merged in order), with
    its rows (the session ID is appended last by the caller)."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for name, changes in merge_patches(patches).items():
        columns = tuple(sorted(changes))
        values = tuple(_column_value(f, changes[f]) for f in columns)
        groups.setdefault(columns, []).append((*values, at, name))
    return [
        (
            "UPDATE plan_threads SET "
            + "".join(f"{column} = ?, " for column in columns)
            + "updated_at = ? WHERE name = ? AND session_id = ?",
            rows,
        )
        for columns, rows in groups.items()
    ]


def _missing_thread(
    conn: sqlite3.Connection, session_id: str, rows: list[tuple[Any, ...]]
) -> NotFoundError:
    names = [str(row[-1]) for row in rows]
    found = {
        str(r[0])
        for r in conn.execute(
            f"SELECT name FROM plan_threads WHERE session_id = ? "
            f"AND name IN ({', '.join('?' * len(names))})",
            (session_id, *names),
        ).fetchall()
    }
    missing = next((n for n in names if n not in found), names[0])
    return NotFoundError(f"session {session_id} plan has no thread {missing!r}")


def _entry(event: PlanEvent) -> NewInteraction:
    return (event.kind, event.content, {}, event.thread_id, event.run_id)
