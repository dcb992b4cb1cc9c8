"""Crons: schedules that create runs, on one thread or each on a fresh (stateless) thread.

A cron is stored with its ``next_run_date`` (UTC). One scheduler task per process sleeps
until the earliest one (at most ``poll_seconds``, and less when a cron of this process is
created or changed), fires what is due through :meth:`weft.runs.Runs.create`, and moves
each cron to its next slot, computed by croniter in the cron's time zone.

Several processes may share one database: before firing a slot, a process claims it in
storage with one conditional UPDATE (``... WHERE next_run_date = <slot>``), so exactly one
of them fires it. Slots missed while no process ran are not replayed one by one: the cron
fires once on start-up, and its next slot is the first one after that moment.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, cast, get_args, overload
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

from weft.assistants import Assistants
from weft.errors import UnprocessableEntityError, WeftError
from weft.runs import Runs, _check, _request
from weft.schema import CRON_FIELDS, ON_RUN_COMPLETED, Cron, OnRunCompleted, Run, check_writable
from weft.storage import Storage
from weft.storage.base_crons import CronQuery, CronSortBy
from weft.threads import Threads
from weft.validation import choice, json_object, page, uuid_arg

log = logging.getLogger("weft.crons")

CRON_OPTIONS: tuple[str, ...] = (
    "input",
    "config",
    "context",
    "metadata",
    "interrupt_before",
    "interrupt_after",
    "webhook",
    "multitask_strategy",
    "stream_mode",
    "stream_subgraphs",
    "stream_resumable",
    "durability",
    "checkpoint_during",
)
"""The run options a cron passes to each of its runs (the Platform's ``CronCreate``)."""

SORT_BY_VALUES: tuple[str, ...] = get_args(CronSortBy)
SORT_ORDER_VALUES: tuple[str, ...] = ("asc", "desc")
BATCH = 100
"""Due crons read (and fired) per query."""


class _Unset:
    """The default of :meth:`Crons.update`'s ``end_time``: None there clears the end time."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


def next_run(schedule: str, timezone: str | None, after: datetime) -> datetime:
    """The first slot of ``schedule`` strictly after ``after``, read in ``timezone`` (None:
    UTC), as a UTC datetime. Daylight-saving changes follow the zone's rules."""
    zone = _zone(timezone)
    check_schedule(schedule)
    try:
        slot: datetime = croniter(schedule, after.astimezone(zone)).get_next(datetime)
    except CroniterBadDateError as e:
        raise UnprocessableEntityError(
            f"schedule {schedule!r} never fires after {after.isoformat()}: {e}"
        ) from None
    return slot.astimezone(UTC)


def check_schedule(schedule: Any) -> str:
    """``schedule`` if croniter reads it; 422 naming it and croniter's reason otherwise."""
    if not isinstance(schedule, str):
        raise UnprocessableEntityError(
            f"schedule must be a cron expression (a string), not {type(schedule).__name__}"
        )
    try:
        croniter(schedule)
    except CroniterError as e:
        raise UnprocessableEntityError(
            f"schedule {schedule!r} is not a valid cron expression: {e}; write 5 fields "
            "(minute hour day-of-month month day-of-week, e.g. '0 9 * * 1-5') or 6 with "
            "seconds last"
        ) from None
    return schedule


def _zone(timezone: Any) -> ZoneInfo:
    if timezone is None:
        return ZoneInfo("UTC")
    if isinstance(timezone, str) and timezone:
        try:
            return ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise UnprocessableEntityError(
        f"timezone {timezone!r} is not a known IANA time zone; use a name such as "
        "'America/New_York' or 'UTC', or none for UTC"
    )


class Crons:
    """Every cron operation of one runtime, and its scheduler."""

    def __init__(
        self,
        storage: Storage,
        assistants: Assistants,
        threads: Threads,
        runs: Runs,
        *,
        poll_seconds: float = 1.0,
    ) -> None:
        self.storage = storage
        self.assistants = assistants
        self.threads = threads
        self.runs = runs
        self.poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # --- records --------------------------------------------------------------------------

    async def create(
        self,
        assistant_id: str,
        schedule: str,
        *,
        thread_id: str | None = None,
        end_time: datetime | str | None = None,
        timezone: str | None = None,
        enabled: bool | None = None,
        on_run_completed: str | None = None,
        owner: str | None = None,
        **options: Any,
    ) -> Cron:
        """A cron creating a run of ``assistant_id`` (an assistant ID or a graph id) at each
        slot of ``schedule``: on ``thread_id``, or without one each on a fresh thread that
        is deleted after its run (``on_run_completed="keep"`` keeps it).

        ``options`` are the options of each run (:data:`CRON_OPTIONS`), checked as
        :meth:`Runs.create` checks them. Any problem is raised before anything is written.
        """
        now = datetime.now(UTC)
        check_schedule(schedule)
        _zone(timezone)
        end = _end_time(end_time, now)
        on = self._on_run_completed(on_run_completed, thread_id)
        if enabled is not None and not isinstance(enabled, bool):
            raise UnprocessableEntityError(f"enabled must be true or false, not {enabled!r}")
        payload = await self._payload(options, stateless=thread_id is None)
        assistant = await self.assistants.get(assistant_id, owner=owner)
        tid: str | None = None
        if thread_id is not None:
            thread = await self.threads.get(uuid_arg(thread_id, "thread_id"), owner=owner)
            check_writable(thread, "a cron")
            tid = thread.thread_id
        active = enabled is not False
        cron = Cron(
            cron_id=str(uuid.uuid4()),
            assistant_id=assistant.assistant_id,
            thread_id=tid,
            on_run_completed=on,
            end_time=end,
            schedule=schedule,
            timezone=timezone,
            created_at=now,
            updated_at=now,
            payload=payload,
            user_id=owner,
            next_run_date=_next(schedule, timezone, end, active, now),
            metadata=dict(payload.get("metadata") or {}),
            enabled=active,
        )
        stored = await self.storage.put_cron(cron)
        self._wake.set()
        return stored

    async def get(self, cron_id: str, *, owner: str | None = None) -> Cron:
        return await self.storage.get_cron(uuid_arg(cron_id, "cron_id"), owner=owner)

    async def update(
        self,
        cron_id: str,
        *,
        schedule: str | None = None,
        end_time: datetime | str | _Unset | None = UNSET,
        timezone: str | None = None,
        enabled: bool | None = None,
        on_run_completed: str | None = None,
        owner: str | None = None,
        **options: Any,
    ) -> Cron:
        """Change a cron. A None keeps a field, except ``end_time=None``, which clears it.

        Run ``options`` replace those of the payload one by one (``metadata`` replaces the
        cron's metadata too). A new schedule, time zone, end time or ``enabled`` computes
        the next slot again from now.
        """
        now = datetime.now(UTC)
        current = await self.get(cron_id, owner=owner)
        if schedule is not None:
            check_schedule(schedule)
        if timezone is not None:
            _zone(timezone)
        end = current.end_time if isinstance(end_time, _Unset) else _end_time(end_time, now)
        if enabled is not None and not isinstance(enabled, bool):
            raise UnprocessableEntityError(f"enabled must be true or false, not {enabled!r}")
        on = current.on_run_completed
        if on_run_completed is not None:
            on = self._on_run_completed(on_run_completed, current.thread_id)
        given = {k: v for k, v in options.items() if v is not None}
        payload = current.payload
        if given:
            payload = await self._payload(
                {**current.payload, **given}, stateless=current.thread_id is None
            )
        sched = schedule if schedule is not None else current.schedule
        zone = timezone if timezone is not None else current.timezone
        active = enabled if enabled is not None else current.enabled
        reschedule = (
            schedule is not None
            or timezone is not None
            or enabled is not None
            or not isinstance(end_time, _Unset)
        )
        updated = current.model_copy(
            update={
                "schedule": sched,
                "timezone": zone,
                "end_time": end,
                "enabled": active,
                "on_run_completed": on,
                "payload": payload,
                "metadata": dict(payload.get("metadata") or {})
                if "metadata" in given
                else current.metadata,
                "next_run_date": _next(sched, zone, end, active, now)
                if reschedule
                else current.next_run_date,
                "updated_at": now,
            }
        )
        stored = await self.storage.replace_cron(updated, owner=owner)
        self._wake.set()
        return stored

    async def delete(self, cron_id: str, *, owner: str | None = None) -> None:
        await self.storage.delete_cron(uuid_arg(cron_id, "cron_id"), owner=owner)

    @overload
    async def search(
        self,
        assistant_id: str | None = ...,
        thread_id: str | None = ...,
        enabled: bool | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        limit: int = ...,
        offset: int = ...,
        sort_by: str | None = ...,
        sort_order: str | None = ...,
        select: None = ...,
        *,
        owner: str | None = ...,
    ) -> list[Cron]: ...

    @overload
    async def search(
        self,
        assistant_id: str | None = ...,
        thread_id: str | None = ...,
        enabled: bool | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        limit: int = ...,
        offset: int = ...,
        sort_by: str | None = ...,
        sort_order: str | None = ...,
        *,
        select: Sequence[str],
        owner: str | None = ...,
    ) -> list[dict[str, Any]]: ...

    async def search(
        self,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        metadata: Mapping[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: str | None = None,
        sort_order: str | None = None,
        select: Sequence[str] | None = None,
        *,
        owner: str | None = None,
    ) -> list[Cron] | list[dict[str, Any]]:
        """Crons matching every given filter, newest first unless ``sort_by`` says.

        ``metadata`` matches by containment. With ``select`` the result is the Platform's
        JSON shape holding only those fields.
        """
        page(limit, offset)
        by = choice(sort_by.lower() if sort_by else "created_at", SORT_BY_VALUES, "sort_by")
        order = choice(
            sort_order.lower() if sort_order else "desc", SORT_ORDER_VALUES, "sort_order"
        )
        fields: list[str] | None = None
        if select is not None:
            chosen = [select] if isinstance(select, str) else list(select)
            bad = [f for f in chosen if f not in CRON_FIELDS]
            if bad:
                raise UnprocessableEntityError(
                    f"cannot select {', '.join(map(repr, bad))}; "
                    f"fields are {', '.join(CRON_FIELDS)}"
                )
            fields = chosen
        found = await self.storage.search_crons(
            self._query(assistant_id, thread_id, enabled, metadata, owner),
            limit=limit,
            offset=offset,
            sort_by=cast(CronSortBy, by),
            sort_order=cast(Literal["asc", "desc"], order),
        )
        if fields is None:
            return found
        return [c.to_api(fields) for c in found]

    async def count(
        self,
        assistant_id: str | None = None,
        thread_id: str | None = None,
        enabled: bool | None = None,
        metadata: Mapping[str, Any] | None = None,
        *,
        owner: str | None = None,
    ) -> int:
        """How many crons :meth:`search` would find without paging."""
        return await self.storage.count_crons(
            self._query(assistant_id, thread_id, enabled, metadata, owner)
        )

    def _query(
        self,
        assistant_id: str | None,
        thread_id: str | None,
        enabled: bool | None,
        metadata: Mapping[str, Any] | None,
        owner: str | None,
    ) -> CronQuery:
        if enabled is not None and not isinstance(enabled, bool):
            raise UnprocessableEntityError(f"enabled must be true or false, not {enabled!r}")
        return CronQuery(
            assistant_id=self.assistants.resolve_id(assistant_id) if assistant_id else None,
            thread_id=uuid_arg(thread_id, "thread_id") if thread_id else None,
            enabled=enabled,
            metadata=json_object(metadata, "metadata"),
            owner=owner,
        )

    @staticmethod
    def _on_run_completed(value: str | None, thread_id: str | None) -> OnRunCompleted | None:
        if value is None:
            return "delete" if thread_id is None else None
        if thread_id is not None:
            raise UnprocessableEntityError(
                "on_run_completed applies only to crons without a thread_id (each run on a "
                "fresh thread); a cron on a thread always keeps its thread"
            )
        return cast(OnRunCompleted, choice(value, ON_RUN_COMPLETED, "on_run_completed"))

    async def _payload(self, options: Mapping[str, Any], *, stateless: bool) -> dict[str, Any]:
        """The run options as each run gets them, checked as :meth:`Runs.create` checks."""
        request = _request(options)
        others = [k for k in options if k not in CRON_OPTIONS and options[k] is not None]
        if others:
            hint = "; use on_run_completed" if others == ["on_completion"] else ""
            raise UnprocessableEntityError(
                f"{', '.join(others)}: not an option of a cron's runs{hint}; a cron takes "
                f"{', '.join(CRON_OPTIONS)}"
            )
        _check(request, stateless=stateless)
        if request.webhook:
            await self.runs.webhooks.check_url(request.webhook)
        return request.model_dump(mode="json", exclude_unset=True)

    # --- the scheduler --------------------------------------------------------------------

    async def start(self) -> None:
        """Start the scheduler task (once); a cron due while no process ran fires now."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="weft crons")

    async def stop(self, *, grace: float = 5.0) -> None:
        """Stop the scheduler after the cron it is firing (cancelled after ``grace`` s)."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        self._wake.set()
        await asyncio.wait([task], timeout=grace)
        if not task.done():
            task.cancel()
            await asyncio.wait([task])

    async def fire_due(self, now: datetime | None = None) -> list[Run]:
        """Fire every cron due at ``now`` (default: the current time) whose slot this
        process claims; return the runs created. The scheduler calls this in its loop."""
        return await self._fire_due(now or datetime.now(UTC), scheduler=False)

    async def _fire_due(self, at: datetime, *, scheduler: bool) -> list[Run]:
        fired: list[Run] = []
        while True:
            due = await self.storage.due_crons(at, limit=BATCH)
            for cron in due:
                if scheduler and self._stopping:
                    return fired
                run = await self._fire(cron, at)
                if run is not None:
                    fired.append(run)
            if len(due) < BATCH:
                return fired

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = self.poll_seconds
            try:
                await self._fire_due(datetime.now(UTC), scheduler=True)
                delay = await self._delay()
            except WeftError as e:
                log.warning("crons: %s; trying again in %s s", e, delay)
            except Exception:  # the scheduler's task guard: it must not die (it logs the error)
                log.exception("crons: the scheduler failed; trying again in %s s", delay)
            if self._stopping:
                return
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _delay(self) -> float:
        """Seconds until the earliest next run, at most ``poll_seconds``."""
        at = await self.storage.next_cron_date()
        if at is None:
            return self.poll_seconds
        return min(self.poll_seconds, max(0.0, (at - datetime.now(UTC)).total_seconds()))

    async def _fire(self, cron: Cron, now: datetime) -> Run | None:
        """Claim the cron's due slot, move it to the next one, and create its run."""
        due = cron.next_run_date
        assert due is not None
        late = cron.end_time is not None and due > cron.end_time
        nxt: datetime | None = None
        if not late:
            try:
                nxt = _next(cron.schedule, cron.timezone, cron.end_time, True, max(due, now))
            except UnprocessableEntityError as e:  # e.g. no later date exists
                log.warning("cron %s: %s; it will not fire again", cron.cron_id, e)
        if not await self.storage.claim_cron(cron.cron_id, due=due, next_run_date=nxt):
            return None  # another process fired it, or it changed meanwhile
        if late:
            return None
        options = dict(cron.payload)
        if cron.thread_id is None:
            options["on_completion"] = cron.on_run_completed or "delete"
        try:
            return await self.runs.create(
                cron.thread_id, cron.assistant_id, owner=cron.user_id, **options
            )
        except WeftError as e:
            log.warning(
                "cron %s: the run due at %s was refused: %s", cron.cron_id, due.isoformat(), e
            )
            return None


def _next(
    schedule: str, timezone: str | None, end: datetime | None, enabled: bool, after: datetime
) -> datetime | None:
    """The next slot after ``after``; None when disabled or past ``end``."""
    if not enabled:
        return None
    slot = next_run(schedule, timezone, after)
    return None if end is not None and slot > end else slot


def _end_time(value: Any, now: datetime) -> datetime | None:
    """``value`` (a datetime or ISO 8601 text; naive means UTC) if it is after ``now``."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise UnprocessableEntityError(
                f"end_time must be an ISO 8601 date and time, not {value!r}"
            ) from None
    if not isinstance(value, datetime):
        raise UnprocessableEntityError(
            f"end_time must be a date and time, not {type(value).__name__}"
        )
    end = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if end <= now:
        raise UnprocessableEntityError(
            f"end_time {end.isoformat()} is in the past; give a later time, or none to run "
            "indefinitely"
        )
    return end


__all__ = ["CRON_OPTIONS", "UNSET", "Crons", "check_schedule", "next_run"]
