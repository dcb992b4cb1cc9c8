"""Run streams: ids, late listeners, and how long an ended run's events stay in memory."""

from __future__ import annotations

from datetime import UTC, datetime

from weft.schema import Run
from weft.storage import Storage
from weft.streams import RunStreams

RUN_A = "00000000-0000-4000-8000-00000000000a"
RUN_B = "00000000-0000-4000-8000-00000000000b"


async def _events(streams: RunStreams, run_id: str) -> list[tuple[int, str]]:
    return [(e.seq, e.event) async for e in streams.subscribe(run_id)]


async def test_a_late_listener_gets_an_ended_runs_events(storage: Storage) -> None:
    streams = RunStreams(storage)
    streams.open(RUN_A, resumable=False)
    streams.publish(RUN_A, "metadata", {"run_id": RUN_A})
    streams.publish(RUN_A, "values", {"x": 1})
    await streams.close(RUN_A)
    assert await _events(streams, RUN_A) == [(1, "metadata"), (2, "values")]
    assert not streams.is_live(RUN_A)


def _start(streams: RunStreams, run_id: str) -> None:
    """Open a run's stream (not resumable) with its ``metadata`` event."""
    streams.open(run_id, resumable=False)
    streams.publish(run_id, "metadata", {"run_id": run_id})


async def test_ended_streams_are_forgotten_once_their_time_is_up(storage: Storage) -> None:
    streams = RunStreams(storage, keep_ended=0)
    _start(streams, RUN_A)
    _start(streams, RUN_B)
    await streams.close(RUN_A)
    assert await _events(streams, RUN_A) == []  # expired at once; not resumable: not stored
    assert streams.is_live(RUN_B)
    await streams.close(RUN_B)
    assert await _events(streams, RUN_B) == []


async def test_only_the_latest_ended_streams_stay_in_memory(storage: Storage) -> None:
    streams = RunStreams(storage, keep_ended_runs=1)
    for run_id in (RUN_A, RUN_B):
        _start(streams, run_id)
        await streams.close(run_id)
    assert await _events(streams, RUN_A) == []  # pushed out by B's end; not resumable
    assert await _events(streams, RUN_B) == [(1, "metadata")]


async def test_a_resumable_run_is_read_back_from_storage_once_forgotten(
    storage: Storage,
) -> None:
    now = datetime.now(UTC)
    run = Run(run_id=RUN_A, thread_id=None, assistant_id="a", created_at=now, updated_at=now)
    await storage.admit(run)
    streams = RunStreams(storage, keep_ended=0)
    streams.open(RUN_A, resumable=True)
    streams.publish(RUN_A, "metadata", {"run_id": RUN_A})
    streams.publish(RUN_A, "values", {"x": 1})
    await streams.close(RUN_A)  # forgotten at once (keep_ended=0): read from storage
    assert await _events(streams, RUN_A) == [(1, "metadata"), (2, "values")]
