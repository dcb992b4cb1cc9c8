"""weft's route class: FastAPI's ``APIRoute``, served by a shorter request handler when the
endpoint has the shape nearly every weft endpoint has.

FastAPI's handler is general: per request it solves a dependency graph, reads telemetry
hooks, inspects the content type through ``email.message`` and checks for response models:
0.1-0.2 ms of CPU per request (a ``runs.wait`` served in process: 2.74-2.85 ms of CPU with
it, 2.63 ms with the shorter handler, alternated in one process). For an endpoint
whose parameters are only path parameters typed ``str``, the runtime (``rt: Rt``) and at
most one JSON body, and which returns a ``Response``, :class:`Route` does the same work
directly, with FastAPI's semantics: the body is parsed by the standard library's ``json``
when the content type is JSON (otherwise the bytes are validated, and fail), an empty body
is missing (required: a ``missing`` error; optional: the default), validation goes through
a pydantic ``TypeAdapter`` of the parameter's annotation with ``from_attributes``, and errors
are the same ``RequestValidationError`` (locations under ``body``) or 400 ``HTTPException``
the app's error handlers turn into ``{"detail": ...}``. Any other endpoint (including one
whose router is included with ``dependencies=``), and every request while the app has
``dependency_overrides``, gets FastAPI's own handler. The OpenAPI
document is FastAPI's either way.
"""

from __future__ import annotations

import copy
import inspect
import json
import typing
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from weft.api.wire import runtime_of

_MISSING: Any = object()

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class Route(APIRoute):
    """``APIRoute`` with the shorter handler for the common shape (see the module)."""

    def get_route_handler(self) -> Handler:
        general = super().get_route_handler()
        lean = _Lean.of(_as_included(self))
        if lean is None:
            return general

        async def handler(request: Request) -> Response:
            if request.app.dependency_overrides:
                return await general(request)
            return await lean.handle(request)

        return handler


@dataclass(frozen=True)
class _Lean:
    endpoint: Callable[..., Awaitable[Response]]
    path_names: tuple[str, ...]
    runtime_name: str | None
    body_name: str | None
    body: TypeAdapter[Any] | None
    body_required: bool
    body_default: Any

    @classmethod
    def of(cls, route: Any) -> _Lean | None:
        """The lean handler's plan for ``route`` (an ``APIRoute``, or FastAPI's view of it as
        included), or None when its endpoint has another shape."""
        d = route.dependant
        special = (
            d.request_param_name,
            d.websocket_param_name,
            d.http_connection_param_name,
            d.response_param_name,
            d.background_tasks_param_name,
            d.security_scopes_param_name,
        )
        if d.query_params or d.header_params or d.cookie_params or any(special):
            return None
        if any(p.field_info.annotation is not str for p in d.path_params):
            return None
        if len(d.body_params) > 1 or not inspect.iscoroutinefunction(route.endpoint):
            return None  # FastAPI runs a plain function in its thread pool
        if not _returns_response(route.endpoint):
            return None
        if getattr(route.strict_content_type, "value", route.strict_content_type) is False:
            return None  # FastAPI then reads a body without a content type as JSON
        runtime_name: str | None = None
        for dep in d.dependencies:
            if dep.call is not runtime_of or runtime_name is not None or dep.dependencies:
                return None
            runtime_name = dep.name
        body_name = body = None
        required, default = False, None
        if d.body_params:
            field = d.body_params[0]
            info = field.field_info
            if info.annotation is None or getattr(info, "embed", None):
                return None
            if isinstance(info, params.Form):  # File is a Form
                return None
            body_name, body = field.name, TypeAdapter(info.annotation)
            required, default = info.is_required(), info.default
        return cls(
            endpoint=route.endpoint,
            path_names=tuple(p.name for p in d.path_params),
            runtime_name=runtime_name,
            body_name=body_name,
            body=body,
            body_required=required,
            body_default=default,
        )

    async def handle(self, request: Request) -> Response:
        path = request.path_params
        kwargs: dict[str, Any] = {name: path[name] for name in self.path_names}
        if self.runtime_name is not None:
            kwargs[self.runtime_name] = await runtime_of(request)
        if self.body_name is not None:
            kwargs[self.body_name] = await self._body(request)
        return await self.endpoint(**kwargs)

    async def _body(self, request: Request) -> Any:
        assert self.body is not None
        try:
            raw = await request.body()
            value: Any = _MISSING
            if raw:
                value = json.loads(raw) if _is_json(request.headers.get("content-type")) else raw
        except json.JSONDecodeError as e:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", e.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": e.msg},
                    }
                ],
                body=e.doc,
            ) from e
        except HTTPException:  # the body limit
            raise
        except Exception as e:
            raise HTTPException(400, detail="There was an error parsing the body") from e
        if value is _MISSING:
            if self.body_required:
                raise RequestValidationError(
                    [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
                )
            return copy.deepcopy(self.body_default)
        try:
            return self.body.validate_python(value, from_attributes=True)
        except ValidationError as e:
            errors = e.errors(include_url=False)
            raise RequestValidationError(
                [{**err, "loc": ("body", *err["loc"])} for err in errors], body=value
            ) from e


def _as_included(route: APIRoute) -> Any:
    """FastAPI's view of ``route`` as an app includes it (with the including routers'
    prefixes and dependencies) while FastAPI builds that view's handler, else the route.
    FastAPI 0.165 hands it to ``get_route_handler`` through a context variable of its
    routing module; where that variable does not exist, included routes are routes of their
    own (older FastAPI copied them), so the route itself is the view."""
    var = getattr(fastapi.routing, "_effective_route_context_var", None)
    context = var.get() if var is not None else None
    if context is not None and getattr(context, "original_route", None) is route:
        return context
    return route


def _is_json(content_type: str | None) -> bool:
    """FastAPI's test: ``application/json`` or ``application/*+json``, any parameters."""
    if not content_type:
        return False
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or (
        kind.startswith("application/") and kind.endswith("+json")
    )


def _returns_response(endpoint: Callable[..., Any]) -> bool:
    try:
        returns = typing.get_type_hints(endpoint).get("return")
    except Exception:  # noqa: BLE001 - an annotation that does not resolve: FastAPI's handler
        return False
    return isinstance(returns, type) and issubclass(returns, Response)


__all__ = ["Route"]
