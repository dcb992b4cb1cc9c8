"""``/ok``, ``/info`` and ``/metrics`` (Prometheus text): what load balancers and operators
ask a server."""

from __future__ import annotations

import time
from typing import Any

import langgraph.version
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from weft import __version__
from weft.api.route import Route
from weft.api.wire import JSON, Rt
from weft.runtime import Runtime
from weft.storage import mask_url

router = APIRouter(tags=["system"], route_class=Route)


@router.get("/ok", summary="Liveness: 200 while the server runs")
async def ok() -> JSON:
    return JSON({"ok": True})


@router.get("/info", summary="Server version and the features it serves")
async def info(rt: Rt) -> JSON:
    return JSON(
        {
            "version": __version__,
            "server": "weft",
            "langgraph_py_version": langgraph.version.__version__,
            "flags": {"assistants": True, "crons": True, "store": True, "langsmith": False},
            "database": mask_url(rt.settings.database_url).split(":", 1)[0],
            "graphs": sorted(rt.graphs.ids()),
        }
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry: CollectorRegistry = request.app.state.metrics
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class _RunCollector(Collector):
    """Runs in flight in this process, read at scrape time."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Any:
        rt: Runtime | None = getattr(self.app.state, "rt", None)
        running = GaugeMetricFamily(
            "weft_runs_running", "Runs executing in this process right now."
        )
        running.add_metric([], len(rt.runs.queue.tasks) if rt is not None else 0)
        yield running


class _Measure:
    """Counts requests and times them by method, route template and status."""

    def __init__(self, app: ASGIApp, requests: Counter, seconds: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        began = time.perf_counter()

        async def tracking(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            labels = (scope["method"], path, str(status))
            self.requests.labels(*labels).inc()
            self.seconds.labels(*labels).observe(time.perf_counter() - began)


def install_metrics(app: FastAPI) -> None:
    """A registry of this app's own (tests run several apps in one process)."""
    registry = CollectorRegistry()
    requests = Counter(
        "weft_http_requests",
        "HTTP requests served.",
        ["method", "route", "status"],
        registry=registry,
    )
    seconds = Histogram(
        "weft_http_request_duration_seconds",
        "Time to the end of the response (streams: until the stream ends).",
        ["method", "route", "status"],
        registry=registry,
    )
    registry.register(_RunCollector(app))
    app.state.metrics = registry
    app.add_middleware(_Measure, requests=requests, seconds=seconds)


__all__ = ["JSON", "install_metrics", "router"]
