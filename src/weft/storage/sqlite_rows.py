"""Row helpers shared by the SQLite mixins: JSON as text, timestamps as ISO 8601 UTC text,
owner visibility, JSON containment filters and the thread metadata index."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from weft.errors import BadRequestError

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _dumps(value: Any) -> str:
    """``value`` as compact JSON text (one shared encoder: ``json.dumps`` with options builds
    a new one per call)."""
    return _ENCODER.encode(value)


def _ts(value: datetime) -> str:
    """``2026-11-21T06:52:01.123456Z`` (UTC, microseconds): sorts as it orders in time."""
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="microseconds")[:26] + "Z"


def _parse_ts(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _visible(row_owner: str | None, owner: str | None) -> bool:
    return owner is None or row_owner is None or row_owner == owner


def _owner_clause(owner: str | None) -> tuple[str, tuple[Any, ...]]:
    """`` AND (owner IS NULL OR owner = ?)`` when ``owner`` is given, else nothing."""
    if owner is None:
        return "", ()
    return " AND (owner IS NULL OR owner = ?)", (owner,)


def _contains(column: str, wanted: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """SQL true when the JSON object in ``column`` contains ``wanted``.

    Objects match key by key (recursively); any other value must be equal. ``json_type``
    tells ``1`` from ``true`` and a missing key from ``null``.
    """
    clauses: list[str] = []
    params: list[Any] = []

    def walk(path: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                if '"' in str(key):
                    raise BadRequestError(
                        f"metadata filter key {key!r} contains '\"', which weft cannot "
                        "match on SQLite"
                    )
                walk(f'{path}."{key}"', item)
            return
        if isinstance(value, Mapping):
            clauses.append(f"json_type({column}, ?) = 'object'")
            params.append(path)
        elif value is None:
            clauses.append(f"json_type({column}, ?) = 'null'")
            params.append(path)
        elif isinstance(value, bool):
            clauses.append(f"json_type({column}, ?) = ?")
            params.extend([path, "true" if value else "false"])
        elif isinstance(value, int | float):
            clauses.append(
                f"json_type({column}, ?) IN ('integer', 'real') AND json_extract({column}, ?) = ?"
            )
            params.extend([path, path, value])
        elif isinstance(value, str):
            clauses.append(f"json_type({column}, ?) = 'text' AND json_extract({column}, ?) = ?")
            params.extend([path, path, value])
        else:
            clauses.append(f"json_type({column}, ?) = 'array' AND json_extract({column}, ?) = ?")
            params.extend([path, path, _dumps(value)])

    walk("$", wanted)
    return (" AND ".join(clauses) or "1 = 1"), tuple(params)


def _canonical(value: Any) -> tuple[str, Any] | None:
    """The SQL (and parameter) computing ``value``'s text in thread_metadata, as the trigger
    does; None for values the index does not hold (objects, arrays)."""
    if value is None:
        return "'null'", None
    if isinstance(value, bool):
        return "?", "true" if value else "false"
    if isinstance(value, int | float):
        return "CAST(CAST(? AS REAL) AS TEXT)", value
    if isinstance(value, str):
        return "json_quote(?)", value
    return None


def _metadata_index(metadata: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
    """Per top-level scalar key of a metadata filter, a clause the planner answers from the
    ``thread_metadata`` primary key; :func:`_contains` stays the exact check."""
    clauses: list[str] = []
    params: list[Any] = []
    for key, value in metadata.items():
        canonical = _canonical(value)
        if canonical is None:
            continue
        sql, param = canonical
        clauses.append(
            f"thread_id IN (SELECT thread_id FROM thread_metadata WHERE key = ? AND value = {sql})"
        )
        params.append(str(key))
        if sql != "'null'":
            params.append(param)
    return clauses, params
