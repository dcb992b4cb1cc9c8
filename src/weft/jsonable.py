"""A JSON view of graph state and stream chunks: LangChain messages, pydantic models, tuples."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from langchain_core.messages import BaseMessage
from pydantic import BaseModel


def to_jsonable(value: Any) -> Any:
    """``value`` made of dicts, lists, strings, numbers, booleans and None only.

    Messages become their ``model_dump()`` (``type``, ``content``, ``tool_calls``, ...), as the
    LangGraph Platform sends them; LangGraph's ``Interrupt`` becomes ``{"value", "id"}``.
    """
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, BaseMessage):
        return to_jsonable(value.model_dump())
    if isinstance(value, BaseModel):
        return to_jsonable(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (UUID, Enum)):
        return str(value.value if isinstance(value, Enum) else value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return repr(value)
