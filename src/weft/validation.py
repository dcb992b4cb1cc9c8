"""Checks of caller input shared by the runtime's services. Each names the field at fault."""

from __future__ import annotations

import json
import math
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


INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""The integers storage holds (SQLite INTEGER, Postgres bigint, msgpack, orjson)."""

MAX_DEPTH = 100
"""How deep objects and lists may nest (JSON encoders and pydantic stop near 255 levels, and
a stored value comes back wrapped in a few more)."""


def page(limit: int, offset: int, *, offset_name: str = "offset") -> None:
    """Both are integers from 0 to :data:`INT64_MAX`."""
    for name, value in (("limit", limit), (offset_name, offset)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise UnprocessableEntityError(f"{name} must be a number >= 0, not {value!r}")
        if value > INT64_MAX:
            raise UnprocessableEntityError(
                f"{name} must be at most {INT64_MAX}, not {_short(value)}"
            )


def json_object(value: Mapping[str, Any] | None, what: str) -> dict[str, Any] | None:
    """``value`` as a plain JSON object (a deep copy) that storage can hold, or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise UnprocessableEntityError(f"{what} must be an object, not {type(value).__name__}")
    storable(value, what)
    try:
        copied: dict[str, Any] = json.loads(json.dumps(dict(value), allow_nan=False))
    except (TypeError, ValueError) as e:
        raise UnprocessableEntityError(f"{what} must be JSON: {e}") from None
    return copied


def storable(value: Any, what: str = "") -> None:
    """422 naming a place in ``value`` (JSON-like data) that no backend can store:
    an integer outside 64 bits, NaN or Infinity, a string or key with a NUL character or a
    lone UTF-16 surrogate (``"\\ud800"`` in JSON: not valid Unicode), nesting deeper than
    :data:`MAX_DEPTH`. ``what`` names ``value`` in the message; other types are left to
    their own checks."""
    stack: list[tuple[Any, str, int]] = [(value, what, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise UnprocessableEntityError(
                f"{_place(where)}: nested more than {MAX_DEPTH} levels deep; flatten the data"
            )
        if isinstance(item, str):
            problem = _bad_text(item)
            if problem:
                raise UnprocessableEntityError(f"{_place(where)}: the string {problem}")
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise UnprocessableEntityError(
                    f"{_place(where)}: {_short(item)} is outside the 64-bit integer range "
                    f"({INT64_MIN} to {INT64_MAX}); send larger numbers as strings"
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UnprocessableEntityError(
                    f"{_place(where)}: NaN and Infinity are not JSON numbers; send null or a string"
                )
        elif isinstance(item, Mapping):
            for key, child in item.items():
                place = _member(where, str(key))
                problem = _bad_text(key) if isinstance(key, str) else None
                if problem:
                    raise UnprocessableEntityError(f"{_place(place)}: the key {problem}")
                stack.append((child, place, depth + 1))
        elif isinstance(item, (list, tuple)):
            stack.extend((child, f"{where}[{i}]", depth + 1) for i, child in enumerate(item))


def _bad_text(text: str) -> str | None:
    """Why storage cannot hold ``text``, or None."""
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which storage cannot hold; remove it"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return (
                "contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), "
                "which is not valid Unicode; send valid UTF-8 text"
            )
    return None


def _place(where: str) -> str:
    """A path for a message: ``body`` for the root, long ones shortened in the middle."""
    if not where:
        return "body"
    if len(where) <= 120:
        return where
    head, tail = where[:70], where[-40:]
    head = head[: max(head.rfind("."), head.rfind("["), 1)]
    starts = [i for i in (tail.find("."), tail.find("[")) if i >= 0]
    tail = tail[min(starts, default=0) :].lstrip(".")
    return f"{head}...{tail}"


def _member(where: str, key: str) -> str:
    """The path of ``key`` inside the object at ``where``: ``a.b``, or ``a['odd key']``."""
    if key.isidentifier() and key.isascii():
        return f"{where}.{key}" if where else key
    shown = repr(key) if len(key) <= 40 else repr(key[:40]) + "..."
    return f"{where}[{shown}]"


def _short(value: Any) -> str:
    """``value`` for a message; very long integers by their number of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 96:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    return repr(value)


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
