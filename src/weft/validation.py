"""Checks of caller input shared by the runtime's services. Each names the field at fault."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from weft.errors import UnprocessableEntityError


def uuid_arg(value: Any, what: str, *, hint: str = "") -> str:
    """``value`` as a canonical UUID string; 422 naming ``what`` otherwise."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise UnprocessableEntityError(f"{what} must be a UUID{hint}, not {value!r}") from None


def choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    """``value`` if it is one of ``allowed``; 422 listing them otherwise."""
    if value not in allowed:
        raise UnprocessableEntityError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")
    return str(value)


def page(limit: int, offset: int) -> None:
    """Both are integers >= 0."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise UnprocessableEntityError(f"limit must be a number >= 0, not {limit!r}")
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise UnprocessableEntityError(f"offset must be a number >= 0, not {offset!r}")


def json_object(value: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    """``value`` as a plain JSON object (a deep copy), or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise UnprocessableEntityError(f"{what} must be an object, not {type(value).__name__}")
    try:
        copied: dict[str, Any] = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise UnprocessableEntityError(f"{what} must be JSON: {e}") from None
    return copied


def pydantic_message(e: ValidationError) -> str:
    """A pydantic error as one line naming each field: unsupported fields first."""
    unknown: list[str] = []
    problems: list[str] = []
    for err in e.errors():
        # union members add a tag such as "literal['a','b']" to the path: leave it out
        where = ".".join(str(p) for p in err["loc"] if isinstance(p, int) or str(p).isidentifier())
        if err["type"] == "extra_forbidden":
            unknown.append(where)
        elif err["type"] == "literal_error":
            problems.append(f"{where}: {err['msg'].replace('Input should be', 'must be')}")
        elif where not in {p.split(":")[0] for p in problems}:
            problems.append(f"{where}: {err['msg']}")
    parts = []
    if unknown:
        parts.append(f"unsupported field(s): {', '.join(unknown)}")
    parts.extend(dict.fromkeys(problems))
    return "; ".join(parts)
