"""The HTTP API: the LangGraph Platform's routes plus weft's own (``/sessions`` and thread
branch/snapshot/rollback), over one :class:`weft.runtime.Runtime`.

``create_app(settings)`` builds the ASGI app; its lifespan opens the runtime (graphs,
storage, run recovery) and closes it on shutdown, giving in-flight runs
``http.shutdown_grace`` seconds before leaving them resumable.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from weft import __version__
from weft.api import assistants, crons, plans, runs, sessions, store, system, threads
from weft.api.wire import ERRORS, BodyLimit, install_error_handlers
from weft.config import Settings
from weft.runtime import Runtime

ROUTERS = (
    runs.router,
    threads.router,
    assistants.router,
    crons.router,
    store.router,
    sessions.router,
    plans.router,
    system.router,
)
"""In the order requests try them: the runs' routes first, since every request walks the
routers before its own (no two routes here match the same method and path)."""

YOUNG_COLLECTION_THRESHOLD = 50_000
"""Allocations between two collections of the youngest generation while serving (Python's
default: 700). A run allocates a few hundred tracked objects and 50 runs in flight keep
thousands alive, so at 700 the collector traversed them over and over: ~8% of the server's
CPU at 50 concurrent runs. At 50,000 garbage cycles wait a little longer to be freed."""


def create_app(settings: Settings) -> FastAPI:
    """The ASGI app serving ``settings``' graphs and database."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime.open(settings, shutdown_grace=settings.http.shutdown_grace) as rt:
            app.state.rt = rt
            # What start-up loaded (modules, graphs, the app) lives as long as the server:
            # out of the collector's way, collections scan only what requests allocate.
            gc.collect()
            gc.freeze()
            thresholds = gc.get_threshold()
            gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *thresholds[1:])
            try:
                yield
            finally:
                gc.set_threshold(*thresholds)
                gc.unfreeze()

    app = FastAPI(
        title="weft",
        version=__version__,
        summary="LangGraph Platform API with durable sessions, threads and runs.",
        lifespan=lifespan,
        default_response_class=system.JSON,
        responses=ERRORS,
    )
    install_error_handlers(app, [route for router in ROUTERS for route in router.routes])
    for router in ROUTERS:
        app.include_router(router)
    system.install_metrics(app)
    app.add_middleware(BodyLimit, limit=settings.http.max_body_bytes)
    return app


__all__ = ["YOUNG_COLLECTION_THRESHOLD", "create_app"]
