"""Session plans on Postgres, one transaction per change. The spec and outputs are JSON, not
JSONB: JSONB would reorder keys, and the order of a plan's threads is its order.

A transaction that changes the session or its log locks the session row first (as appends to
the log do), then the plan row; a step without events or finish takes only the plan row. So
two writers never wait for each other in opposite orders. A step's lease check is its
``UPDATE plans ... WHERE lease_owner IS NOT DISTINCT FROM ...``: the row lock makes a
concurrent cancel or claim wait, and a step after them finds the condition false.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from psycopg.types.json import Json

from weft.errors import ConflictError, NotFoundError
from weft.schema import Interaction, Plan, PlanThread
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
from weft.storage.postgres_assistants import Conn, PostgresBase
from weft.storage.postgres_sessions import NewInteraction, insert_interactions
from weft.storage.postgres_threads import owner_clause

__all__ = ["PostgresPlanStorage"]

_COLUMNS = (
    "session_id, spec, status, lease_owner, lease_until, created_at, updated_at, "
    "started_at, ended_at"
)
_THREAD_COLUMNS = (
    "session_id, name, position, thread_id, state, attempts, run_id, started_at, ended_at, "
    "retry_at, deadline, error, reason, output, updated_at"
)


class PostgresPlanStorage(PostgresBase):
    """The plan methods of :class:`weft.storage.postgres.PostgresStorage`."""

    async def put_plan(
        self, plan: Plan, threads: Sequence[PlanThread], *, owner: str | None = None
    ) -> Plan:
        p, sid = plan, plan.session_id
        async with self._transaction() as conn:
            status = await _lock_session(conn, sid, owner)
            if status == "running":
                raise ConflictError(plan_running(sid))
            if status is not None:
                await conn.execute("DELETE FROM plans WHERE session_id = %s", (sid,))
            await conn.execute(
                f"INSERT INTO plans ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    sid,
                    Json(p.spec),
                    p.status,
                    p.lease_owner,
                    p.lease_until,
                    p.created_at,
                    p.updated_at,
                    p.started_at,
                    p.ended_at,
                ),
            )
            if threads:
                async with conn.cursor() as cur:
                    await cur.executemany(
                        f"INSERT INTO plan_threads ({_THREAD_COLUMNS}) "
                        f"VALUES ({', '.join(['%s'] * 15)})",
                        [_thread_row(sid, t) for t in threads],
                    )
        return plan

    async def get_plan(self, session_id: str, *, owner: str | None = None) -> Plan:
        clause, params = owner_clause(owner)
        async with self._transaction() as conn:
            cur = await conn.execute(
                "SELECT s.session_id AS sid, p.* FROM sessions s "
                "LEFT JOIN plans p ON p.session_id = s.session_id "
                f"WHERE s.session_id = %s{clause}",
                (session_id, *params),
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFoundError(f"session {session_id} not found")
        if row["session_id"] is None:
            raise NotFoundError(no_plan(session_id))
        data = dict(row)
        del data["sid"]
        return Plan.model_validate(data)

    async def plan_threads(self, session_id: str) -> list[PlanThread]:
        async with self._transaction() as conn:
            cur = await conn.execute(
                f"SELECT {_THREAD_COLUMNS} FROM plan_threads WHERE session_id = %s "
                "ORDER BY position",
                (session_id,),
            )
            return [PlanThread.model_validate(r) for r in await cur.fetchall()]

    async def start_plan(
        self,
        session_id: str,
        *,
        lease_owner: str | None,
        lease_until: datetime | None,
        now: datetime,
        event: PlanEvent,
    ) -> Plan:
        async with self._transaction() as conn:
            status = await _lock_session(conn, session_id, None)
            if status is None:
                raise NotFoundError(no_plan(session_id))
            if status != "ready":
                raise ConflictError(plan_status_conflict(session_id, status))
            cur = await conn.execute(
                "UPDATE plans SET status = 'running', lease_owner = %s, lease_until = %s, "
                f"started_at = %s, updated_at = %s WHERE session_id = %s RETURNING {_COLUMNS}",
                (lease_owner, lease_until, now, now, session_id),
            )
            row = await cur.fetchone()
            await conn.execute(
                "UPDATE sessions SET status = 'active', updated_at = %s WHERE session_id = %s",
                (now, session_id),
            )
            await insert_interactions(conn, session_id, [_entry(event)], now)
        assert row is not None  # the locked session's plan row is there
        return Plan.model_validate(row)

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
        groups = _patch_groups(patches, now, session_id)
        async with self._transaction() as conn:
            if events or finish is not None:
                await conn.execute(
                    "SELECT 1 FROM sessions WHERE session_id = %s FOR UPDATE", (session_id,)
                )
            if finish is None:
                sql = "UPDATE plans SET updated_at = %s"
                params: tuple[Any, ...] = (now,)
            else:
                sql = (
                    "UPDATE plans SET updated_at = %s, status = %s, ended_at = %s, "
                    "lease_owner = NULL, lease_until = NULL"
                )
                params = (now, finish, now)
            cur = await conn.execute(
                f"{sql} WHERE session_id = %s AND status = 'running' "
                "AND lease_owner IS NOT DISTINCT FROM %s RETURNING session_id",
                (*params, session_id, lease_owner),
            )
            if await cur.fetchone() is None:
                raise ConflictError(plan_lease_lost(session_id))
            if groups:
                async with conn.cursor() as many:
                    for statement, rows in groups:
                        await many.executemany(statement, rows)
                        if many.rowcount != len(rows):
                            raise await _missing_thread(conn, session_id, rows)
            if finish is not None:
                await conn.execute(
                    "UPDATE sessions SET status = %s, updated_at = %s WHERE session_id = %s",
                    (finish, now, session_id),
                )
            return await insert_interactions(conn, session_id, [_entry(e) for e in events], now)

    async def cancel_plan(
        self, session_id: str, *, now: datetime, reason: str, owner: str | None = None
    ) -> tuple[Plan, list[PlanThread]]:
        async with self._transaction() as conn:
            status = await _lock_session(conn, session_id, owner)
            if status is None:
                raise NotFoundError(no_plan(session_id))
            if status not in ("ready", "running"):
                raise ConflictError(plan_cancel_conflict(session_id, status))
            cur = await conn.execute(
                "UPDATE plans SET status = 'cancelled', ended_at = %s, updated_at = %s, "
                "lease_owner = NULL, lease_until = NULL WHERE session_id = %s "
                f"RETURNING {_COLUMNS}",
                (now, now, session_id),
            )
            row = await cur.fetchone()
            cur = await conn.execute(
                f"SELECT {_THREAD_COLUMNS} FROM plan_threads "
                "WHERE session_id = %s AND state = ANY(%s) ORDER BY position",
                (session_id, list(ACTIVE_PLAN_THREAD_STATES)),
            )
            active = [PlanThread.model_validate(r) for r in await cur.fetchall()]
            await conn.execute(
                "UPDATE plan_threads SET state = 'cancelled', reason = %s, ended_at = %s, "
                "updated_at = %s WHERE session_id = %s AND state = ANY(%s)",
                (reason, now, now, session_id, list(UNFINISHED_PLAN_THREAD_STATES)),
            )
            await conn.execute(
                "UPDATE sessions SET status = 'cancelled', updated_at = %s WHERE session_id = %s",
                (now, session_id),
            )
            event: NewInteraction = (
                "plan_event",
                {"event": "plan_cancelled", "reason": reason},
                {},
                None,
                None,
            )
            await insert_interactions(conn, session_id, [event], now)
        assert row is not None  # the locked session's plan row is there
        return Plan.model_validate(row), active

    async def claim_plan(
        self, session_id: str, *, lease_owner: str, lease_until: datetime, now: datetime
    ) -> bool:
        async with self._transaction() as conn:
            cur = await conn.execute(
                "UPDATE plans SET lease_owner = %s, lease_until = %s "
                "WHERE session_id = %s AND status = 'running' "
                "AND (lease_owner IS NULL OR lease_owner = %s OR lease_until < %s) "
                "RETURNING session_id",
                (lease_owner, lease_until, session_id, lease_owner, now),
            )
            return await cur.fetchone() is not None

    async def renew_plan_lease(
        self, session_id: str, *, lease_owner: str, lease_until: datetime
    ) -> bool:
        async with self._transaction() as conn:
            cur = await conn.execute(
                "UPDATE plans SET lease_until = %s "
                "WHERE session_id = %s AND status = 'running' AND lease_owner = %s "
                "RETURNING session_id",
                (lease_until, session_id, lease_owner),
            )
            return await cur.fetchone() is not None

    async def release_plan(self, session_id: str, *, lease_owner: str) -> None:
        async with self._transaction() as conn:
            await conn.execute(
                "UPDATE plans SET lease_owner = NULL, lease_until = NULL "
                "WHERE session_id = %s AND lease_owner = %s",
                (session_id, lease_owner),
            )

    async def claimable_plans(self, *, now: datetime) -> list[str]:
        async with self._transaction() as conn:
            cur = await conn.execute(
                "SELECT session_id FROM plans WHERE status = 'running' "
                "AND (lease_owner IS NULL OR lease_until < %s) ORDER BY started_at, session_id",
                (now,),
            )
            return [str(r["session_id"]) for r in await cur.fetchall()]


# --- rows ------------------------------------------------------------------------------------


async def _lock_session(conn: Conn, session_id: str, owner: str | None) -> str | None:
    """Lock the session row; its plan's status (None without a plan). NotFoundError when the
    session is missing or unseen."""
    clause, params = owner_clause(owner)
    cur = await conn.execute(
        "SELECT p.status FROM sessions s LEFT JOIN plans p ON p.session_id = s.session_id "
        f"WHERE s.session_id = %s{clause} FOR UPDATE OF s",
        (session_id, *params),
    )
    row = await cur.fetchone()
    if row is None:
        raise NotFoundError(f"session {session_id} not found")
    status = row["status"]
    return str(status) if status is not None else None


def _thread_row(session_id: str, t: PlanThread) -> tuple[Any, ...]:
    return (
        session_id,
        t.name,
        t.position,
        t.thread_id,
        t.state,
        t.attempts,
        t.run_id,
        t.started_at,
        t.ended_at,
        t.retry_at,
        t.deadline,
        t.error,
        t.reason,
        Json(t.output) if t.output is not None else None,
        t.updated_at,
    )


def _patch_groups(
    patches: Sequence[PlanThreadPatch], now: datetime, session_id: str
) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """One UPDATE per set of changed columns (patches of one thread merged in order), with
    its rows."""
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for name, changes in merge_patches(patches).items():
        columns = tuple(sorted(changes))
        values = tuple(
            Json(changes[f]) if f == "output" and changes[f] is not None else changes[f]
            for f in columns
        )
        groups.setdefault(columns, []).append((*values, now, name, session_id))
    return [
        (
            "UPDATE plan_threads SET "
            + "".join(f"{column} = %s, " for column in columns)
            + "updated_at = %s WHERE name = %s AND session_id = %s",
            rows,
        )
        for columns, rows in groups.items()
    ]


async def _missing_thread(
    conn: Conn, session_id: str, rows: list[tuple[Any, ...]]
) -> NotFoundError:
    names = [str(row[-2]) for row in rows]
    cur = await conn.execute(
        "SELECT name FROM plan_threads WHERE session_id = %s AND name = ANY(%s)",
        (session_id, names),
    )
    found = {str(r["name"]) for r in await cur.fetchall()}
    missing = next((n for n in names if n not in found), names[0])
    return NotFoundError(f"session {session_id} plan has no thread {missing!r}")


def _entry(event: PlanEvent) -> NewInteraction:
    return (event.kind, event.content, {}, event.thread_id, event.run_id)
