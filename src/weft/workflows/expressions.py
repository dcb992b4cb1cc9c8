"""Expressions and templates over a workflow's state. Nothing here evaluates Python code.

* :class:`Expression`: a JMESPath expression, compiled once when the workflow is loaded and
  evaluated against :func:`json_view` of the state (LangChain messages become the dicts of
  their ``model_dump()``), e.g. ``messages[-1].content``, ``length(items) > `3```.
* :class:`Template`: ``str.format`` syntax with plain field access only: ``{topic}``,
  ``{user[name]}``, ``{items[0]}``. Attribute access (``{x.__class__}``), positional fields
  (``{}``, ``{0}``) and nested fields in format specs are rejected when the template is
  parsed. A field that the state does not hold renders as an empty string.
* :func:`route_key`: how an expression's result selects a ``path_map`` entry.
"""

from __future__ import annotations

import dataclasses
import re
import string
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

import jmespath
import jmespath.functions
from jmespath.exceptions import (
    IncompleteExpressionError,
    JMESPathError,
    LexerError,
    ParseError,
)
from langchain_core.messages import BaseMessage
from pydantic import BaseModel, GetCoreSchemaHandler
from pydantic_core import core_schema

_FUNCTIONS = frozenset(jmespath.functions.Functions.FUNCTION_TABLE)


def json_view(value: Any) -> Any:
    """``value`` as JSON-like data (dicts, lists, strings, numbers, booleans, None).

    Messages and other pydantic models become their ``model_dump()``, dataclasses dicts,
    tuples and sets lists, dates ISO strings, UUIDs strings, enums their value. Anything
    else is left as it is.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseMessage | BaseModel):
        return json_view(value.model_dump())
    if isinstance(value, Mapping):
        return {str(k): json_view(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_view(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_view(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Enum):
        return json_view(value.value)
    return value


def route_key(result: Any) -> str:
    """The ``path_map`` key an expression result selects.

    ``True``/``False`` -> ``"true"``/``"false"``, ``None`` -> ``"null"``, a string -> itself,
    a number -> its text (``3`` -> ``"3"``). Other results (lists, objects) have no key and
    raise ValueError.
    """
    if isinstance(result, bool):
        return "true" if result else "false"
    if result is None:
        return "null"
    if isinstance(result, str):
        return result
    if isinstance(result, int | float):
        return str(result)
    raise ValueError(f"a {type(result).__name__} result cannot select a path")


def path_map_key(key: Any) -> Any:
    """A YAML ``path_map`` key as text: ``true:`` (a YAML boolean) -> ``"true"``, ``3:`` -> ``"3"``.

    Anything that is not a scalar is returned unchanged (and then rejected as not a string).
    """
    if isinstance(key, bool | int | float | str) or key is None:
        return route_key(key)
    return key


class _SourceText(ABC):
    """Checked text from a workflow file: equal when the text is, a string in pydantic."""

    __slots__ = ("source",)
    source: str

    @classmethod
    @abstractmethod
    def parse(cls, source: str) -> Any:
        """Check ``source`` and build the object; ValueError says what is wrong."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.source == self.source

    def __hash__(self) -> int:
        return hash(self.source)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source_type: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return _text_type_schema(cls, cls.parse)


class Expression(_SourceText):
    """A compiled JMESPath expression. Build it with :meth:`parse`."""

    __slots__ = ("_parsed",)

    def __init__(self, source: str, parsed: jmespath.parser.ParsedResult) -> None:
        self.source = source
        self._parsed = parsed

    @classmethod
    def parse(cls, source: str) -> Expression:
        """Compile ``source``. Raises ValueError with JMESPath's description of the problem."""
        if not source.strip():
            raise ValueError("the expression is empty")
        try:
            parsed = jmespath.compile(source)
        except JMESPathError as e:
            raise ValueError(f"invalid JMESPath expression {source!r}: {_parse_error(e)}") from e
        unknown = sorted(_function_names(parsed.parsed) - _FUNCTIONS)
        if unknown:
            raise ValueError(
                f"invalid JMESPath expression {source!r}: unknown function "
                f"{unknown[0]}() (functions: {', '.join(sorted(_FUNCTIONS))})"
            )
        return cls(source, parsed)

    def search(self, state: Any) -> Any:
        """Evaluate against :func:`json_view` of ``state``. Raises JMESPathError."""
        return self._parsed.search(json_view(state))


def _parse_error(e: JMESPathError) -> str:
    if isinstance(e, IncompleteExpressionError):
        return "the expression is incomplete"
    if isinstance(e, LexerError):
        return f"{e.message} at column {e.lexer_position + 1}"
    if isinstance(e, ParseError) and getattr(e, "lex_position", None) is not None:
        return f"{e.msg} at column {e.lex_position + 1}"
    return str(e).splitlines()[0]


def _function_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        if node.get("type") == "function_expression" and isinstance(node.get("value"), str):
            names.add(node["value"])
        for child in node.get("children", ()):
            names |= _function_names(child)
    return names


_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^\[\]]+\])*\Z")


class Template(_SourceText):
    """A ``str.format`` template over the state. Build it with :meth:`parse`."""

    __slots__ = ("fields",)

    def __init__(self, source: str, fields: tuple[str, ...]) -> None:
        self.source = source
        self.fields = fields
        """The state fields the template reads (the part before any ``[key]``)."""

    @classmethod
    def parse(cls, source: str) -> Template:
        """Check ``source``. Raises ValueError naming the offending field."""
        fields: list[str] = []
        try:
            parts = list(string.Formatter().parse(source))
        except ValueError as e:
            raise ValueError(f"invalid template: {e} (write {{{{ and }}}} for braces)") from e
        for _, name, spec, _ in parts:
            if name is None:
                continue
            if not _FIELD.match(name):
                if "." in name.split("[", 1)[0] or "." in name.rsplit("]", 1)[-1]:
                    why = "attribute access is not allowed"
                elif name == "" or name.isdigit():
                    why = "name a state field"
                else:
                    why = "not a state field"
                raise ValueError(
                    f"invalid template field {{{name}}}: {why}; use {{field}} or "
                    f"{{field[key]}} (write {{{{ and }}}} for braces)"
                )
            if spec and ("{" in spec or "}" in spec):
                raise ValueError(f"invalid template field {{{name}:{spec}}}: nested fields")
            root = name.split("[", 1)[0]
            if root not in fields:
                fields.append(root)
        return cls(source, tuple(fields))

    def render(self, state: Mapping[str, Any]) -> str:
        """The text with fields taken from ``state``; a missing field renders as ''."""
        return _Renderer().vformat(self.source, (), state)


class _Renderer(string.Formatter):
    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        if isinstance(key, int):
            raise ValueError("positional fields are not allowed")
        return kwargs.get(key, "")

    def get_field(self, field_name: str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        first, rest = _split_field(field_name)
        obj = self.get_value(first, args, kwargs)
        for key in rest:
            try:
                obj = obj[key]
            except (KeyError, IndexError, TypeError):
                return "", first
        return obj, first


def _split_field(name: str) -> tuple[str, list[int | str]]:
    root, _, rest = name.partition("[")
    keys: list[int | str] = []
    if rest:
        for part in ("[" + rest).split("[")[1:]:
            key = part.rstrip("]")
            keys.append(int(key) if re.fullmatch(r"-?\d+", key) else key)
    return root, keys


def _text_type_schema(cls: type[Any], parse: Callable[[str], Any]) -> core_schema.CoreSchema:
    def validate(value: Any) -> Any:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str):
            raise ValueError(f"must be a string, not {type(value).__name__}")
        return parse(value)

    return core_schema.no_info_plain_validator_function(
        validate,
        json_schema_input_schema=core_schema.str_schema(),
        serialization=core_schema.plain_serializer_function_ser_schema(
            lambda v: v.source, when_used="always"
        ),
    )


__all__ = ["Expression", "Template", "json_view", "path_map_key", "route_key"]
