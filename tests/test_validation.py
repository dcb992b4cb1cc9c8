"""Checks of caller input: pages and JSON that storage can hold, each naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from weft.errors import UnprocessableEntityError
from weft.validation import INT64_MAX, INT64_MIN, json_object, page, storable

RANGE = (
    "is outside the 64-bit integer range (-9223372036854775808 to 9223372036854775807); "
    "send larger numbers as strings"
)
SURROGATE = (
    "contains a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape), which is not "
    "valid Unicode; send valid UTF-8 text"
)
NAN = "NaN and Infinity are not JSON numbers; send null or a string"
NUL = "contains a NUL character (\\u0000), which storage cannot hold; remove it"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"a": {"b": [1, 2**64]}}, f"state.a.b[1]: 18446744073709551616 {RANGE}"),
        ({"a": INT64_MIN - 1}, f"state.a: -9223372036854775809 {RANGE}"),
        ({"big": 10**5000}, f"state.big: an integer of about 5001 digits {RANGE}"),
        ({"x": float("nan")}, f"state.x: {NAN}"),
        ({"x": [float("-inf")]}, f"state.x[0]: {NAN}"),
        ({"k": "a\ud800"}, f"state.k: the string {SURROGATE}"),
        ({"odd key": {"\udfffx": 1}}, f"state['odd key']['\\udfffx']: the key {SURROGATE}"),
        ({"n": "a\x00b"}, f"state.n: the string {NUL}"),
        ({1: "\x00"}, f"state['1']: the string {NUL}"),
    ],
)
def test_storable_names_what_storage_cannot_hold(value: Any, message: str) -> None:
    with pytest.raises(UnprocessableEntityError) as bad:
        storable(value, "state")
    assert bad.value.message == message
    with pytest.raises(UnprocessableEntityError) as again:
        json_object(value, "state")
    assert again.value.message == message


def test_storable_accepts_what_every_backend_stores() -> None:
    fine = {"a": [1, INT64_MAX, INT64_MIN, 2.5, 1e308, None, True, "é ✓ 😀"], "b": {"c": ""}}
    storable(fine, "state")
    assert json_object(fine, "state") == fine
    storable(object(), "state")  # not JSON data: left to the caller's own checks


def test_storable_limits_nesting_and_names_the_root() -> None:
    value: Any = 1
    for _ in range(101):
        value = [value]
    with pytest.raises(UnprocessableEntityError) as deep:
        storable(value)
    assert deep.value.message == (
        f"{'[0]' * 23}...{'[0]' * 13}: nested more than 100 levels deep; flatten the data"
    )
    storable(value[0])  # 100 levels
    with pytest.raises(UnprocessableEntityError) as root:
        storable("\x00")
    assert root.value.message.startswith("body: the string contains a NUL character")


def test_page_bounds() -> None:
    page(0, INT64_MAX)
    with pytest.raises(UnprocessableEntityError) as negative:
        page(1, -1, offset_name="after")
    assert negative.value.message == "after must be a number >= 0, not -1"
    with pytest.raises(UnprocessableEntityError) as huge:
        page(2**70, 0)
    assert (
        huge.value.message
        == "limit must be at most 9223372036854775807, not 1180591620717411303424"
    )
    with pytest.raises(UnprocessableEntityError) as not_int:
        page(True, 0)  # type: ignore[arg-type]
    assert not_int.value.message == "limit must be a number >= 0, not True"
