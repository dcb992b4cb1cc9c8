"""Read YAML into plain data and remember the line of every key.

:func:`parse_yaml` turns text into a :class:`YamlDocument`: the data PyYAML's safe loader
builds, a map from key path (``("nodes", "think", "model")``, ``("edges", 0)``) to the line
the key (or the list item) starts on, and the duplicate keys the file holds. A syntax error
raises :class:`YamlSyntaxError`, which carries the line and the column.

Booleans follow YAML 1.2: only ``true`` and ``false`` (any case) are booleans, so ``yes``,
``no``, ``on`` and ``off`` stay strings (PyYAML's YAML 1.1 default turns them into booleans,
which silently changes mapping keys such as ``path_map: {yes: ..., no: ...}``).

Error messages built from a path use :func:`dotted` (``nodes.think.model``, ``edges[0].to``)
and :func:`line_of`, which falls back to the nearest parent key that has a line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from weft.errors import ConfigError

KeyPath = tuple[str | int, ...]
"""A path inside a document: mapping keys (as strings) and list indexes."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 booleans."""


_BOOL_TAG = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


class YamlSyntaxError(ConfigError):
    """The text is not valid YAML. ``line`` and ``column`` are 1-based (None when unknown)."""

    def __init__(self, problem: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line}, column {column}" if line is not None else ""
        super().__init__(f"invalid YAML{where}: {problem}")
        self.problem = problem
        self.line = line
        self.column = column


@dataclass(frozen=True)
class DuplicateKey:
    """A mapping key that appears twice; the later value is the one the data holds."""

    path: KeyPath
    line: int
    first_line: int

    @property
    def message(self) -> str:
        return f"duplicate key (first set on line {self.first_line})"


@dataclass(frozen=True)
class YamlDocument:
    """One parsed document: its data, the line of each key path, the duplicate keys."""

    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)
    duplicates: tuple[DuplicateKey, ...] = ()

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest parent that has one."""
        return line_of(path, self.lines)


def parse_yaml(text: str) -> YamlDocument:
    """Parse one YAML document (empty text gives ``data=None``). Raises YamlSyntaxError."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        problem = e.problem or e.context or "cannot parse"
        if mark is None:
            raise YamlSyntaxError(problem) from e
        raise YamlSyntaxError(problem, mark.line + 1, mark.column + 1) from e
    except yaml.YAMLError as e:
        raise YamlSyntaxError(str(e)) from e
    except RecursionError as e:
        raise YamlSyntaxError("the document is nested too deeply") from e
    except (ValueError, TypeError, OverflowError) as e:  # e.g. a date like 2001-02-30
        raise YamlSyntaxError(f"cannot read a value: {e}") from e
    finally:
        loader.dispose()
    if node is None:
        return YamlDocument(data=None)
    lines, duplicates = map_lines(node)
    return YamlDocument(data=data, lines=lines, duplicates=tuple(duplicates))


def map_lines(root: yaml.Node) -> tuple[dict[KeyPath, int], list[DuplicateKey]]:
    """The line (1-based) of every key path under ``root``, and the duplicate keys.

    A mapping key maps to the line of the key; a list item to the line it starts on. When a
    key appears twice, the path maps to the later line (the one whose value is kept).
    """
    lines: dict[KeyPath, int] = {}
    duplicates: list[DuplicateKey] = []
    active: set[int] = set()

    def walk(node: yaml.Node, path: KeyPath) -> None:
        if id(node) in active:
            return  # a recursive alias
        active.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                name = str(key_node.value)
                line = key_node.start_mark.line + 1
                if name in seen and name != "<<":
                    duplicates.append(DuplicateKey((*path, name), line, seen[name]))
                seen.setdefault(name, line)
                lines[(*path, name)] = line
                walk(value_node, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), item.start_mark.line + 1)
                walk(item, (*path, index))
        active.discard(id(node))

    walk(root, ())
    return lines, duplicates


def line_of(path: KeyPath, lines: Mapping[KeyPath, int]) -> int | None:
    """The line of ``path``, or of its nearest parent that has one; None when none has."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def dotted(path: KeyPath) -> str:
    """A key path as text: ``nodes.think.model``, ``edges[0].to``.

    Keys are shown as they are written (never quoted), which is what a reader searches for.
    """
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


__all__ = [
    "DuplicateKey",
    "KeyPath",
    "YamlDocument",
    "YamlSyntaxError",
    "dotted",
    "line_of",
    "map_lines",
    "parse_yaml",
]
