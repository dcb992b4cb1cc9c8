"""Executes one run: the graph's ``astream`` turned into the Platform's stream events.

The only module that drives graphs for runs. It publishes ``metadata`` first, then one event
per chunk (``mode`` or ``mode|ns`` for subgraphs), an ``error`` event on failure, and ends
the run with its final status: ``success`` (also when it stopped at a human interrupt: the
thread is then ``interrupted``), ``error``, ``timeout``, or ``interrupted`` when cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphRecursionError
from langgraph.types import Command

from weft.assistants import Assistants
from weft.errors import StorageError, WeftError
from weft.graphs import CompiledGraph, GraphRegistry
from weft.jsonable import to_jsonable
from weft.schema import Assistant, Run, RunRequest, RunStatus, ThreadState
from weft.sessions import Sessions
from weft.storage import Storage
from weft.storage.base import ThreadPatch
from weft.streams import RunStreams
from weft.thread_state import from_snapshot
from weft.threads import Threads, head_patch_of


@dataclass
class Outcome:
    """How a run ended, and what ``wait``/``join`` return for it."""

    status: RunStatus
    result: Any
    error: str | None = None
    retry: bool = False
    patch: ThreadPatch | None = None
    """The thread's head state after the run, as a change of its record (when known)."""


@dataclass(frozen=True)
class Admitted:
    """What the admission of a run already holds, so that the runner reads none of it again."""

    request: RunRequest
    assistant: Assistant
    session_id: str | None
    """The session of the run's thread, if any."""


class Runner:
    """Runs one admitted run at a time per call; shared by every run of the process."""

    def __init__(
        self,
        storage: Storage,
        graphs: GraphRegistry,
        assistants: Assistants,
        threads: Threads,
        sessions: Sessions,
        streams: RunStreams,
        *,
        default_timeout: float = 3600.0,
    ) -> None:
        self.storage = storage
        self.graphs = graphs
        self.assistants = assistants
        self.threads = threads
        self.sessions = sessions
        self.streams = streams
        self.default_timeout = default_timeout

    async def execute(self, run: Run, admitted: Admitted | None = None) -> Outcome:
        """Run ``run`` (already ``running``) to its end and publish its events.

        ``admitted``: the request, assistant and session as its admission saw them (else they
        are read). The caller closes the stream and records the outcome; it cancels a run by
        cancelling the task that awaits this (``CancelledError`` passes through untouched).
        """
        request = (
            admitted.request if admitted is not None else RunRequest.model_validate(run.kwargs)
        )
        self.streams.publish(run.run_id, "metadata", {"run_id": run.run_id, "attempt": run.attempt})
        # The run's checkpoints share commits, and its outcome waits for the last of them;
        # with durability "sync" every step waits for its checkpoint's commit.
        share = _durability(request) != "sync"
        try:
            async with self.storage.checkpoint_commits_at_end(share=share):
                outcome = await self._execute(run, request, admitted)
        except Exception as e:  # noqa: BLE001 - a commit failed: retried from what was saved
            message = f"saving the run's checkpoints failed: {e}"
            self._error(run, "StorageError", message)
            return Outcome("error", error_result("StorageError", message), message, retry=True)
        return outcome

    async def _execute(self, run: Run, request: RunRequest, admitted: Admitted | None) -> Outcome:
        timeout = self.default_timeout
        try:
            if admitted is not None:
                assistant = admitted.assistant
            else:
                assistant = await self.assistants.get(run.assistant_id)
            graph_id = assistant.graph_id
            entry = self.graphs.entry(graph_id)
            config = await self._config(run, request, assistant.config, graph_id, admitted)
            graph = await self.graphs.graph(
                graph_id,
                config,
                checkpointer=self.storage.checkpointer,
                store=self.storage.store,
            )
            payload = _payload(request)
            if run.attempt > 1 and await self._started_before(run, config):
                payload = None  # taken up again: continue from its last checkpoint
            modes = request.stream_modes
            # The final state comes from the last root ``values`` chunk when that chunk is
            # the whole state and the run cannot stop at a breakpoint (else: aget_state).
            exact = _values_are_state(graph, request)
            lg_modes = _langgraph_modes(modes, internal_values=exact or "events" in modes)
            timeout = entry.timeout or self.default_timeout
            messages = _Messages()
            tail = _Tail()
            async with asyncio.timeout(timeout):
                stream = self._stream(graph, payload, config, request, lg_modes)
                async with contextlib.aclosing(stream) as items:
                    async for ns, mode, chunk in items:
                        if mode == "values":
                            if not ns:
                                tail.see(chunk)
                            if "values" not in modes:  # asked for the runner's own use
                                continue
                        for event, data in _events(mode, chunk, modes, messages):
                            self.streams.publish(run.run_id, _name(event, ns), data)
                            if event == "values" and not ns:
                                tail.data = data
            if exact and tail.seen and not tail.interrupted:
                state = ThreadState(values=tail.values())
                return Outcome("success", state.values, patch=head_patch_of(state))
            state = from_snapshot(await graph.aget_state(_head(config)))
            values: Any = state.values
            if state.interrupts:
                values = {**values, "__interrupt__": state.interrupts}
                if "values" not in modes and "updates" not in modes:
                    # the Platform reports interrupts whatever was asked
                    self.streams.publish(run.run_id, "updates", {"__interrupt__": state.interrupts})
            return Outcome("success", values, patch=head_patch_of(state))
        except TimeoutError:
            message = f"the run passed its timeout of {timeout} s; its last checkpoint is kept"
            self._error(run, "TimeoutError", message)
            return Outcome("timeout", error_result("TimeoutError", message), message)
        except StorageError as e:
            self._error(run, "StorageError", str(e))
            return Outcome("error", error_result("StorageError", str(e)), str(e), retry=True)
        except GraphRecursionError as e:
            self._error(run, "GraphRecursionError", str(e))
            return Outcome("error", error_result("GraphRecursionError", str(e)), str(e))
        except WeftError as e:
            self._error(run, type(e).__name__, str(e))
            return Outcome("error", error_result(type(e).__name__, str(e)), str(e))
        except Exception as e:  # noqa: BLE001 - the runner's task guard: a node failed
            name = type(e).__name__
            self._error(run, name, str(e))
            return Outcome("error", error_result(name, str(e)), f"{name}: {e}")

    async def _stream(
        self,
        graph: CompiledGraph,
        payload: Any,
        config: RunnableConfig,
        request: RunRequest,
        lg_modes: list[str],
    ) -> AsyncGenerator[tuple[tuple[str, ...], str, Any], None]:
        """The run's chunks as ``(namespace, mode, chunk)``. With stream mode ``events`` the
        graph runs under ``astream_events`` (v2): the root graph's own ``on_chain_stream``
        events carry the other modes' chunks; every other event is an ``events`` chunk."""
        options: dict[str, Any] = {
            "stream_mode": lg_modes,
            "subgraphs": request.stream_subgraphs,
            "interrupt_before": request.interrupt_before,
            "interrupt_after": request.interrupt_after,
            "durability": _durability(request),
        }
        subgraphs = request.stream_subgraphs
        if "events" not in request.stream_modes:
            chunks = cast(AsyncGenerator[Any, None], graph.astream(payload, config, **options))
            async with contextlib.aclosing(chunks):
                async for item in chunks:
                    yield item if subgraphs else ((), *item)
            return
        root = str(config.get("run_id"))
        events = cast(
            AsyncGenerator[Any, None],
            graph.astream_events(payload, config, version="v2", **options),
        )
        async with contextlib.aclosing(events):
            async for event in events:
                if event["event"] == "on_chain_stream" and event["run_id"] == root:
                    item = event["data"]["chunk"]
                    yield item if subgraphs else ((), *item)
                else:
                    yield (), "events", event

    async def _started_before(self, run: Run, config: RunnableConfig) -> bool:
        """Whether an earlier attempt of ``run`` wrote a checkpoint."""
        head = {"configurable": {"thread_id": config["configurable"]["thread_id"]}}
        async for _ in self.storage.checkpointer.alist(
            cast(RunnableConfig, head), filter={"run_id": run.run_id}, limit=1
        ):
            return True
        return False

    def _error(self, run: Run, error: str, message: str) -> None:
        self.streams.publish(run.run_id, "error", {"error": error, "message": message})

    async def _config(
        self,
        run: Run,
        request: RunRequest,
        assistant_config: dict[str, Any],
        graph_id: str,
        admitted: Admitted | None,
    ) -> RunnableConfig:
        given = dict(request.config or {})
        configurable: dict[str, Any] = {
            **(assistant_config.get("configurable") or {}),
            **(given.pop("configurable", None) or {}),
            **(request.context or {}),
        }
        thread_id = run.thread_id or run.kwargs.get("__thread_id__")
        configurable.update(
            {
                "thread_id": thread_id,
                "run_id": run.run_id,
                "graph_id": graph_id,
                "assistant_id": run.assistant_id,
            }
        )
        checkpoint = dict(request.checkpoint or {})
        if request.checkpoint_id:
            checkpoint["checkpoint_id"] = request.checkpoint_id
        for key in ("checkpoint_id", "checkpoint_ns", "checkpoint_map"):
            if checkpoint.get(key):
                configurable[key] = checkpoint[key]
        session_id: str | None = None
        if admitted is not None:
            session_id = admitted.session_id
        elif thread_id is not None:  # taken up again: the admission is not at hand
            session_id = (await self.storage.get_thread(str(thread_id))).session_id
        if session_id is not None:
            session = await self.sessions.get(session_id)
            configurable.update(self.sessions.run_config(session))
        metadata = {
            **(given.pop("metadata", None) or {}),
            **(request.metadata or {}),
            "graph_id": graph_id,
            "assistant_id": run.assistant_id,
            "run_id": run.run_id,
            "thread_id": thread_id,
            "run_attempt": run.attempt,
        }
        config: dict[str, Any] = {
            **{k: v for k, v in given.items() if k in ("tags", "recursion_limit")},
            "configurable": configurable,
            "metadata": metadata,
        }
        if "events" in request.stream_modes:
            config["run_id"] = uuid.UUID(run.run_id)  # the root run of the events
        return cast(RunnableConfig, config)


def _head(config: RunnableConfig) -> RunnableConfig:
    """``config`` pointing at the thread's head (a run from a past checkpoint forks there)."""
    drop = ("checkpoint_id", "checkpoint_map")
    configurable = {k: v for k, v in config["configurable"].items() if k not in drop}
    return cast(RunnableConfig, {**config, "configurable": configurable})


def _payload(request: RunRequest) -> Any:
    if request.command is None:
        return request.input
    cmd = request.command
    kwargs: dict[str, Any] = {}
    if cmd.resume is not None:
        kwargs["resume"] = cmd.resume
    if cmd.goto is not None:
        kwargs["goto"] = cmd.goto
    if cmd.update is not None:
        kwargs["update"] = cmd.update
    return Command(**kwargs)


def _durability(request: RunRequest) -> Any:
    if request.durability is not None:
        return request.durability
    if request.checkpoint_during is False:
        return "exit"
    return None


def _langgraph_modes(modes: list[str], *, internal_values: bool) -> list[str]:
    """The modes asked of LangGraph: the Platform's names mapped to LangGraph's (``events``
    is not one: it changes how the graph is run), with ``values`` when the runner needs
    it for itself."""
    out: list[str] = []
    for mode in modes:
        lg = "messages" if mode in ("messages", "messages-tuple") else mode
        if lg != "events" and lg not in out:
            out.append(lg)
    if internal_values and "values" not in out:
        out.append("values")
    return out


def _values_are_state(graph: CompiledGraph, request: RunRequest) -> bool:
    """Whether the last root ``values`` chunk of a run that did not stop at an interrupt is
    its final state: the output channels are the state's, and no breakpoint can stop it."""
    return (
        not request.interrupt_before
        and not request.interrupt_after
        and not graph.interrupt_before_nodes
        and not graph.interrupt_after_nodes
        and graph.output_channels == graph.stream_channels_asis
    )


class _Tail:
    """The last root ``values`` chunk of a run, and whether one stopped at an interrupt."""

    def __init__(self) -> None:
        self.seen = False
        self.interrupted = False
        self.raw: Any = None
        self.data: Any = None
        """``raw`` as published (JSON), when it was."""

    def see(self, chunk: Any) -> None:
        self.seen = True
        self.raw, self.data = chunk, None
        if isinstance(chunk, dict) and "__interrupt__" in chunk:
            self.interrupted = True

    def values(self) -> Any:
        values = self.data if self.data is not None else to_jsonable(self.raw)
        return values if values is not None else {}


def _name(event: str, ns: tuple[str, ...]) -> str:
    return f"{event}|{'|'.join(ns)}" if ns else event


def _events(mode: str, chunk: Any, asked: list[str], messages: _Messages) -> list[tuple[str, Any]]:
    """The Platform events for one LangGraph chunk (or one ``astream_events`` event)."""
    if mode == "messages":
        out: list[tuple[str, Any]] = []
        if "messages-tuple" in asked:
            message, meta = chunk
            out.append(("messages", [to_jsonable(message), to_jsonable(meta)]))
        if "messages" in asked:
            out.extend(messages.events(chunk))
        return out
    return [(mode, to_jsonable(chunk))]


class _Messages:
    """The Platform's ``messages`` mode: metadata once per message, then the message so far
    (``messages/partial``), and ``messages/complete`` for whole messages."""

    def __init__(self) -> None:
        self.seen: dict[str, BaseMessage] = {}

    def events(self, chunk: Any) -> list[tuple[str, Any]]:
        message, meta = chunk
        if not isinstance(message, BaseMessage):
            return []
        key = message.id or str(id(message))
        out: list[tuple[str, Any]] = []
        if key not in self.seen:
            out.append(("messages/metadata", {key: {"metadata": to_jsonable(meta)}}))
        if isinstance(message, BaseMessageChunk):
            previous = self.seen.get(key)
            merged = previous + message if isinstance(previous, BaseMessageChunk) else message
            self.seen[key] = merged
            out.append(("messages/partial", [to_jsonable(merged)]))
        else:
            self.seen[key] = message
            out.append(("messages/complete", [to_jsonable(message)]))
        return out


def error_result(error: str, message: str) -> dict[str, Any]:
    """A failed run's result, as the Platform reports it."""
    return {"__error__": {"error": error, "message": message}}


__all__ = ["Admitted", "Outcome", "Runner", "error_result"]
