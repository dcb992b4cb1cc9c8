"""weft.yamldoc: data, the line of every key path, duplicate keys and syntax errors."""

from __future__ import annotations

import pytest

from weft.errors import ConfigError
from weft.yamldoc import DuplicateKey, YamlSyntaxError, dotted, line_of, parse_yaml

TEXT = """\
# a comment
name: demo
nodes:
  think:
    kind: llm
    model: "fake:echo"
edges:
  - from: think
    to: END
  - {from: a, to: b}
"""


def test_data_and_lines() -> None:
    doc = parse_yaml(TEXT)
    assert doc.data == {
        "name": "demo",
        "nodes": {"think": {"kind": "llm", "model": "fake:echo"}},
        "edges": [{"from": "think", "to": "END"}, {"from": "a", "to": "b"}],
    }
    assert doc.lines[("name",)] == 2
    assert doc.lines[("nodes", "think", "model")] == 6
    assert doc.lines[("edges", 0)] == 8
    assert doc.lines[("edges", 0, "to")] == 9
    assert doc.lines[("edges", 1, "from")] == 10
    assert doc.duplicates == ()


def test_line_of_falls_back_to_the_nearest_parent() -> None:
    doc = parse_yaml(TEXT)
    assert doc.line_of(("nodes", "think", "system")) == 4
    assert doc.line_of(("edges", 1, "path_map", "x")) == 10
    assert doc.line_of(("missing",)) is None
    assert line_of((), doc.lines) is None


def test_duplicate_keys_are_reported_and_the_later_value_kept() -> None:
    doc = parse_yaml("nodes:\n  a: {kind: llm}\n  b: {}\n  a: {kind: python}\n")
    assert doc.duplicates == (DuplicateKey(("nodes", "a"), line=4, first_line=2),)
    assert doc.duplicates[0].message == "duplicate key (first set on line 2)"
    assert doc.data["nodes"]["a"] == {"kind": "python"}
    assert doc.lines[("nodes", "a")] == 4


def test_syntax_error_has_line_and_column() -> None:
    with pytest.raises(YamlSyntaxError) as info:
        parse_yaml("nodes:\n  a: 1\n b: 2\n")
    err = info.value
    assert (err.line, err.column) == (3, 2)
    assert str(err).startswith("invalid YAML at line 3, column 2: ")
    assert isinstance(err, ConfigError)


def test_unclosed_flow_mapping() -> None:
    with pytest.raises(YamlSyntaxError) as info:
        parse_yaml("a: {b: 1\nc: 2\n")
    assert str(info.value) == "invalid YAML at line 2, column 2: expected ',' or '}', but got ':'"


def test_a_bad_value_is_a_syntax_error_not_a_crash() -> None:
    with pytest.raises(YamlSyntaxError, match="cannot read a value: day is out of range"):
        parse_yaml("when: 2001-02-30\n")


def test_empty_text() -> None:
    doc = parse_yaml("# nothing\n")
    assert doc.data is None
    assert doc.lines == {}


def test_yes_and_no_stay_strings() -> None:
    doc = parse_yaml("path_map: {yes: a, no: b, on: c, true: d, False: e}\nflag: off\n")
    assert doc.data == {
        "path_map": {"yes": "a", "no": "b", "on": "c", True: "d", False: "e"},
        "flag": "off",
    }


def test_merge_keys_are_not_duplicates() -> None:
    doc = parse_yaml("base: &b {x: 1}\nchild:\n  <<: *b\n  y: 2\n")
    assert doc.data["child"] == {"x": 1, "y": 2}
    assert doc.duplicates == ()


def test_dotted() -> None:
    assert dotted(("nodes", "think", "model")) == "nodes.think.model"
    assert dotted(("edges", 0, "to")) == "edges[0].to"
    assert dotted(()) == ""
