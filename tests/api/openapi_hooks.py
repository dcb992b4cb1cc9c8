"""Schemathesis hooks for tests/api/test_openapi.py (loaded by the schemathesis CLI through
``SCHEMATHESIS_HOOKS``).

A run's ``after_seconds`` may be up to a year, and ``/wait`` and ``/join`` rightly wait that
long (a delayed run also holds the runs queued behind it on its thread). Generated delays
above :data:`LONGEST_DELAY` are shortened to it so that every request ends within the CLI's
request timeout; values the server must refuse (negative, beyond a year, not a number) are
sent unchanged.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis import Case, HookContext

from weft.schema import MAX_AFTER_SECONDS

LONGEST_DELAY = 0.2
"""Seconds: the longest ``after_seconds`` a generated request keeps."""


def _shorten(body: Any) -> None:
    if isinstance(body, list):
        for item in body:
            _shorten(item)
    elif isinstance(body, dict):
        delay = body.get("after_seconds")
        if (
            isinstance(delay, (int, float))
            and not isinstance(delay, bool)
            and LONGEST_DELAY < delay <= MAX_AFTER_SECONDS
        ):
            body["after_seconds"] = LONGEST_DELAY


@schemathesis.hook
def before_call(context: HookContext, case: Case[Any], kwargs: dict[str, Any]) -> None:
    _shorten(case.body)
