"""Builds everything weft runs on from settings: ``async with Runtime.open(settings) as rt``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from langgraph.types import Command, StreamMode

from weft.assistants import Assistants
from weft.config import Settings
from weft.crons import Crons
from weft.errors import BadRequestError, RunError, WeftError
from weft.graphs import GraphRegistry
from weft.plan_runs import Plans
from weft.runner import Runner
from weft.runs import Runs
from weft.schema import check_writable
from weft.sessions import Sessions
from weft.storage import Storage, open_storage
from weft.storage.base import DoctorFinding
from weft.streams import RunStreams
from weft.threads import Threads
from weft.webhooks import Webhooks

STREAM_MODES = ("values", "updates", "messages", "custom", "debug", "tasks", "checkpoints")


@dataclass
class Runtime:
    """The graphs, the storage and the services of one weft process."""

    settings: Settings
    storage: Storage
    graphs: GraphRegistry
    assistants: Assistants
    threads: Threads
    sessions: Sessions
    runs: Runs
    crons: Crons
    plans: Plans

    @classmethod
    @asynccontextmanager
    async def open(
        cls, settings: Settings, *, shutdown_grace: float = 5.0, execute_plans: bool = True
    ) -> AsyncIterator[Runtime]:
        """Load the graphs, open (and migrate) the database, register system assistants,
        take up runs and plans a dead process left (``execute_plans=False``: this process
        runs no session plan, as for ``weft run --detach``). On exit, in-flight runs get
        ``shutdown_grace`` seconds to end; those still running go back to pending for the
        next start, and this process's plans are released for the next one to take up."""
        graphs = GraphRegistry.load(settings)
        async with open_storage(
            settings.database_url,
            sqlite_synchronous=settings.sqlite.synchronous,
            postgres_pool_size=settings.postgres.pool_size,
        ) as storage:
            assistants = Assistants(storage, graphs)
            await assistants.ensure_system_assistants()
            threads = Threads(storage, graphs)
            sessions = Sessions(storage, threads)
            streams = RunStreams(storage)
            runner = Runner(
                storage,
                graphs,
                assistants,
                threads,
                sessions,
                streams,
                default_timeout=settings.runs.default_timeout,
            )
            runs = Runs(
                storage,
                assistants,
                threads,
                runner,
                streams,
                Webhooks(allow_private=settings.runs.allow_private_webhooks),
                concurrency=settings.runs.concurrency,
                max_attempts=settings.runs.max_attempts,
            )
            await runs.start()
            crons = Crons(
                storage,
                assistants,
                threads,
                runs,
                poll_seconds=settings.runs.cron_poll_seconds,
            )
            await crons.start()
            plans = Plans(
                storage,
                graphs,
                assistants,
                threads,
                sessions,
                runs,
                lease_seconds=settings.plans.lease_seconds,
                poll_seconds=settings.plans.poll_seconds,
                execute=execute_plans,
            )
            sessions.plans = plans
            await plans.start()
            try:
                yield cls(
                    settings=settings,
                    storage=storage,
                    graphs=graphs,
                    assistants=assistants,
                    threads=threads,
                    sessions=sessions,
                    runs=runs,
                    crons=crons,
                    plans=plans,
                )
            finally:
                await plans.stop()
                await crons.stop()
                await runs.stop(grace=shutdown_grace)

    async def doctor(self, *, repair: bool = False) -> list[DoctorFinding]:
        """Inconsistencies in the database (and, with ``repair``, what was fixed)."""
        return await self.storage.doctor(repair=repair)

    async def invoke(
        self,
        graph_id: str,
        graph_input: Any,
        *,
        thread_id: str,
        resume: Any = None,
        stream_mode: str | None = None,
    ) -> AsyncIterator[tuple[str, Any]]:
        """Run ``graph_id`` on ``thread_id`` in this process, yielding ``(event, data)``.

        The thread is created when it does not exist; snapshots and threads whose lifecycle
        is not active or paused refuse runs. A thread in a session gets the session's shared
        state (``configurable.session_state``). Without ``stream_mode`` it yields one
        ``("values", final_state)``. A run that stops at an interrupt ends with
        ``("__interrupt__", [...])``; continue it with ``resume``.
        The workflow's ``timeout`` (seconds) bounds the whole run.
        """
        if stream_mode is not None and stream_mode not in STREAM_MODES:
            raise BadRequestError(
                f"unknown stream mode {stream_mode!r}; use one of {', '.join(STREAM_MODES)}"
            )
        entry = self.graphs.entry(graph_id)
        thread = await self.threads.create(
            thread_id=thread_id, graph_id=graph_id, if_exists="do_nothing"
        )
        check_writable(thread, "run")
        thread_id = thread.thread_id
        configurable: dict[str, Any] = {"thread_id": thread_id, "graph_id": graph_id}
        if thread.session_id is not None:
            session = await self.sessions.get(thread.session_id)
            configurable.update(self.sessions.run_config(session))
        config: RunnableConfig = {
            "configurable": configurable,
            "metadata": {"graph_id": graph_id},
        }
        graph = await self.graphs.graph(
            graph_id, config, checkpointer=self.storage.checkpointer, store=self.storage.store
        )
        payload: Any = Command(resume=resume) if resume is not None else graph_input
        finished = False
        try:
            async with asyncio.timeout(entry.timeout):
                if stream_mode is None:
                    async for _ in graph.astream(payload, config, stream_mode="values"):
                        pass
                else:
                    mode = cast(StreamMode, stream_mode)
                    async for chunk in graph.astream(payload, config, stream_mode=mode):
                        yield stream_mode, chunk
            finished = True
        except TimeoutError as e:
            raise RunError(
                f"the run of {graph_id} on thread {thread_id} passed its timeout of "
                f"{entry.timeout} s; its last checkpoint is kept"
            ) from e
        except GraphRecursionError as e:
            limit = entry.max_iterations or "the default of 25"
            raise RunError(
                f"the run of {graph_id} on thread {thread_id} reached its step limit "
                f"(max_iterations: {limit}) without finishing"
            ) from e
        except WeftError:
            raise
        except Exception as e:
            raise RunError(
                f"the run of {graph_id} on thread {thread_id} failed: {type(e).__name__}: {e}"
            ) from e
        finally:
            await self.threads.refresh(thread_id, failed=not finished)
        state = await graph.aget_state(config)
        if stream_mode is None:
            yield "values", state.values
        if state.interrupts:
            yield "__interrupt__", list(state.interrupts)
