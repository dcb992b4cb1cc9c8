"""Bodies no backend can store (integers beyond 64 bits, NaN, NUL characters, lone
surrogates, deep nesting), sent as raw JSON (httpx's encoder refuses some of them), and the
422 details they get. Each of these was once a 500."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

RANGE = (
    "is outside the 64-bit integer range (-9223372036854775808 to 9223372036854775807); "
    "send larger numbers as strings"
)
SURROGATE = (
    "contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which is not "
    "valid Unicode; send valid UTF-8 text"
)
NUL = "contains a NUL character (\\u0000), which storage cannot hold; remove it"
NAN = "NaN and Infinity are not JSON numbers; send null or a string"

Case = tuple[str, str, Any, int, str]
"""method, path, body (sent as raw JSON), status, detail."""


def nested(levels: int) -> dict[str, Any]:
    """``{"a": {"a": ... 1}}``, ``levels`` objects deep."""
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return dict(value)


async def check(http: httpx.AsyncClient, cases: Sequence[Case]) -> None:
    """Send each case and assert its status and ``{"detail": ...}``."""
    for method, path, body, status, detail in cases:
        response = await http.request(
            method,
            path,
            content=json.dumps(body),  # NaN and "\ud800" escapes as Python writes them
            headers={"content-type": "application/json"},
        )
        got = (response.status_code, response.json())
        assert got == (status, {"detail": detail}), (method, path, body)
