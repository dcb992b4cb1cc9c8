"""The workflow format: defaults, extends, and the text of every validation problem."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from weft.workflows import (
    Expression,
    Template,
    WorkflowError,
    WorkflowSpec,
    load_workflow,
    validate_workflow_file,
)
from weft.workflows.expressions import json_view, route_key
from weft.workflows.spec import ConditionalEdge, Edge, HumanNode, PythonNode, RouterNode

FIXTURES = Path(__file__).resolve().parent / "fixtures"

MINIMAL = """\
nodes:
  a: {kind: human, prompt: "?", output: messages}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path, **kwargs: object) -> list[str]:
    found = validate_workflow_file(path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(WorkflowError) as info:
        load_workflow(path, **kwargs)  # type: ignore[arg-type]
    assert info.value.problems == found
    assert str(info.value) == "\n".join(found)
    assert info.value.status_code == 400
    return found


def only_problem(path: Path, **kwargs: object) -> str:
    found = problems(path, **kwargs)
    assert len(found) == 1, found
    return found[0]


# --- the format and its defaults ------------------------------------------------------------


def test_minimal_workflow_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "hello.workflow.yaml", MINIMAL)
    assert validate_workflow_file(path) == []
    spec = load_workflow(path)
    assert spec.name == "hello"
    assert spec.path == path
    assert spec.description == ""
    assert spec.version is None
    assert spec.entry == "a"
    assert list(spec.state) == ["messages"]
    assert (spec.state["messages"].type, spec.state["messages"].reducer) == ("messages", "messages")
    assert spec.edges == []
    assert (spec.interrupt_before, spec.interrupt_after) == ([], [])
    assert (spec.max_iterations, spec.timeout) == (None, None)


def test_every_field(tmp_path: Path) -> None:
    path = write(
        tmp_path / "full.yaml",
        """\
name: support
description: Answers and escalates.
version: 2.1
state:
  messages: {type: messages}
  attempts: {type: int, reducer: add, default: 0}
  notes: {type: dict, reducer: merge}
  log: {type: list, reducer: append}
  answer: {type: str}
  anything:
nodes:
  ask: {kind: human, prompt: "Question about {answer}?", output: answer}
  check: {kind: router, expression: "attempts > `2`", path_map: {true: END, false: ask}}
  code: {kind: python, function: "json:dumps"}
edges:
  - {from: code, condition: "answer == 'x'", path_map: {true: END, false: ask}}
  - {from: ask, to: check}
entry: code
interrupt_before: [ask]
interrupt_after: [code]
max_iterations: 7
timeout: 2.5
""",
    )
    spec = load_workflow(path)
    assert (spec.name, spec.description, spec.version) == (
        "support",
        "Answers and escalates.",
        "2.1",
    )
    assert {k: (f.type, f.reducer) for k, f in spec.state.items()} == {
        "messages": ("messages", "messages"),
        "attempts": ("int", "add"),
        "notes": ("dict", "merge"),
        "log": ("list", "append"),
        "answer": ("str", "replace"),
        "anything": ("any", "replace"),
    }
    assert spec.state["attempts"].has_default
    assert spec.state["attempts"].default == 0
    assert not spec.state["answer"].has_default
    assert spec.nodes["ask"] == HumanNode(
        kind="human", prompt=Template.parse("Question about {answer}?"), output="answer"
    )
    router = spec.nodes["check"]
    assert isinstance(router, RouterNode)
    assert router.expression == Expression.parse("attempts > `2`")
    assert router.path_map == {"true": "END", "false": "ask"}
    assert isinstance(spec.nodes["code"], PythonNode)
    first, second = spec.edges
    assert isinstance(first, ConditionalEdge)
    assert first.source == "code"
    assert first.path_map == {"true": "END", "false": "ask"}
    assert isinstance(second, Edge)
    assert (second.source, second.to) == ("ask", "check")
    assert spec.entry == "code"
    assert (spec.interrupt_before, spec.interrupt_after) == (["ask"], ["code"])
    assert (spec.max_iterations, spec.timeout) == (7, 2.5)
    dumped = spec.model_dump(mode="json", by_alias=True, exclude={"path"})
    assert dumped["edges"][1] == {"from": "ask", "to": "check"}
    assert dumped["nodes"]["check"]["expression"] == "attempts > `2`"
    assert WorkflowSpec.model_validate(dumped).nodes == spec.nodes


def test_fixture_extends_base() -> None:
    spec = load_workflow(FIXTURES / "review.yaml")
    assert spec.name == "review"  # a name is not inherited
    assert spec.description == "Drafts a text and loops until a human approves it."
    assert spec.version == "1"  # from base.yaml
    assert spec.extends == "base.yaml"
    assert list(spec.state) == ["messages", "topic", "verdict"]
    assert (spec.state["topic"].type, spec.state["topic"].default) == ("str", "weft")
    assert list(spec.nodes) == ["draft", "review", "decide"]
    assert spec.entry == "draft"
    assert spec.nodes["draft"] == PythonNode(
        kind="python", function=f"{FIXTURES / 'steps.py'}:draft"
    )
    review = spec.nodes["review"]
    assert isinstance(review, HumanNode)
    assert review.prompt.source == "Approve the draft about {topic}? (yes/no)"
    decide = spec.nodes["decide"]
    assert isinstance(decide, RouterNode)
    assert decide.path_map == {"yes": "END", "no": "draft"}
    assert [(e.source, e.to) for e in spec.edges if isinstance(e, Edge)] == [
        ("draft", "review"),
        ("review", "decide"),
    ]
    assert spec.interrupt_before == []  # lists are replaced
    assert (spec.max_iterations, spec.timeout) == (10, 30)
    assert load_workflow(FIXTURES / "base.yaml").name == "drafting"


def test_a_child_node_replaces_the_base_node_whole(tmp_path: Path) -> None:
    write(
        tmp_path / "base.yaml",
        'nodes:\n  a: {kind: llm, model: "fake:echo", system: "base prompt", output: out}\n'
        "state:\n  messages: {type: messages}\n  out: {type: any}\n",
    )
    child = write(
        tmp_path / "sub" / "child.yaml",
        'extends: ../base.yaml\nnodes:\n  a: {kind: llm, model: "fake:echo"}\n',
    )
    spec = load_workflow(child)
    assert spec.nodes["a"].model_dump(exclude_defaults=True) == {
        "kind": "llm",
        "model": "fake:echo",
    }
    assert list(spec.state) == ["messages", "out"]


def test_problems_in_the_base_name_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", MINIMAL + "edges:\n  - {from: a, to: b}\n")
    child = write(tmp_path / "child.yaml", "extends: base.yaml\ntimeout: 0\n")
    assert problems(child) == [
        f"{child}:2: timeout: Input should be greater than 0 (got 0)",
        f"{base}:4: edges[0].to: unknown node 'b' (nodes: a, END)",
    ]


def test_extends_cycle(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "extends: b.yaml\n" + MINIMAL)
    b = write(tmp_path / "b.yaml", "description: b\nextends: a.yaml\n")
    assert only_problem(a) == f"{b}:2: extends: extends cycle: a.yaml → b.yaml → a.yaml"


def test_extends_itself(tmp_path: Path) -> None:
    a = write(tmp_path / "a.yaml", "extends: ./a.yaml\n" + MINIMAL)
    assert only_problem(a) == f"{a}:1: extends: extends cycle: a.yaml → a.yaml"


def test_extends_missing_file(tmp_path: Path) -> None:
    # Only the extends problem: the edges to the base's nodes would be reported as unknown.
    a = write(tmp_path / "a.yaml", MINIMAL + "extends: nope/base.yaml\nedges: [{from: a, to: b}]\n")
    assert only_problem(a) == f"{a}:3: extends: file not found: {tmp_path}/nope/base.yaml"


def test_a_base_with_a_syntax_error(tmp_path: Path) -> None:
    base = write(tmp_path / "base.yaml", "nodes: [\n")
    a = write(tmp_path / "a.yaml", "extends: base.yaml\nentry: b\n")
    assert only_problem(a) == (
        f"{base}:2: invalid YAML at line 2, column 1: expected the node content, but found "
        "'<stream end>'"
    )


# --- file-level problems ---------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    assert only_problem(tmp_path / "gone.yaml") == f"{tmp_path}/gone.yaml: file not found"


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", "nodes:\n  a: {kind: llm\n  b: 1\n")
    assert only_problem(path) == (
        f"{path}:3: invalid YAML at line 3, column 4: expected ',' or '}}', but got ':'"
    )


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", "- a\n- b\n")
    assert only_problem(path) == f"{path}:1: the top level must be a mapping, not a list"


def test_empty_file_needs_nodes(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", "# nothing\n")
    assert only_problem(path) == f"{path}: nodes: a workflow needs at least one node"


# --- keys, kinds, reducers, types ------------------------------------------------------------


def test_unknown_keys_at_every_level(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  a: {kind: human, prompt: "?", output: messages, outptu: x}
edges:
  - {from: a, to: END, when: x}
state:
  messages: {type: messages, defualt: []}
entyr: a
""",
    )
    assert problems(path) == [
        f"{path}:2: nodes.a.outptu: unknown key; did you mean 'output'? "
        "(allowed: kind, prompt, output)",
        f"{path}:4: edges[0].when: unknown key (allowed: from, to)",
        f"{path}:6: state.messages.defualt: unknown key; did you mean 'default'? "
        "(allowed: type, reducer, default)",
        f"{path}:7: entyr: unknown key; did you mean 'entry'? (allowed: name, description, "
        "version, extends, state, nodes, edges, entry, interrupt_before, interrupt_after, "
        "max_iterations, timeout)",
    ]


def test_unknown_node_kind(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", "nodes:\n  a:\n    kind: pyhton\n    function: m:f\n")
    assert only_problem(path) == (
        f"{path}:3: nodes.a.kind: unknown node kind 'pyhton'; did you mean 'python'? "
        "(allowed: llm, tools, router, human, python, subgraph)"
    )


def test_node_without_kind(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", "nodes:\n  a: {function: m:f}\n")
    assert only_problem(path) == (
        f"{path}:2: nodes.a: a node needs a kind "
        "(allowed: llm, tools, router, human, python, subgraph)"
    )


def test_unknown_reducer_and_state_type(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        MINIMAL + "state:\n  messages: {type: messages}\n"
        "  n: {type: integer}\n  m: {type: int, reducer: sum}\n",
    )
    assert problems(path) == [
        f"{path}:5: state.n.type: unknown state type 'integer'; did you mean 'int'? "
        "(allowed: str, int, float, bool, list, dict, messages, any)",
        f"{path}:6: state.m.reducer: unknown reducer 'sum' "
        "(allowed: replace, append, add, merge, messages)",
    ]


def test_reducer_must_fit_the_type_and_default_the_type(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        MINIMAL + "state:\n  messages: {type: messages}\n"
        "  n: {type: str, reducer: add}\n  m: {type: int, default: 'ten'}\n"
        "  b: {type: float, default: true}\n",
    )
    assert problems(path) == [
        f"{path}:5: state.n.reducer: reducer 'add' does not work with type 'str' "
        "(types it works with: int, float, any)",
        f"{path}:6: state.m.default: must be a int value (got 'ten')",
        f"{path}:7: state.b.default: must be a float value (got True)",
    ]


def test_duplicate_node_and_state_names(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
state:
  messages: {type: messages}
  x: {type: str}
  x: {type: int}
nodes:
  a: {kind: human, prompt: "?", output: messages}
  a: {kind: human, prompt: "!", output: x}
""",
    )
    assert problems(path) == [
        f"{path}:4: state.x: duplicate state field 'x' (first defined on line 3)",
        f"{path}:7: nodes.a: duplicate node 'a' (first defined on line 6)",
    ]


def test_wrong_shapes(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        "nodes:\n  a: human\nedges: {a: b}\nstate: [messages]\ninterrupt_before: a\n",
    )
    assert problems(path) == [
        f"{path}:2: nodes.a: must be a mapping with a kind, not a string",
        f"{path}:3: edges: must be a list of edges, not a mapping",
        f"{path}:4: state: must be a mapping of field -> {{type, reducer, default}}, not a list",
        f"{path}:5: interrupt_before: Input should be a valid list (got 'a')",
    ]


def test_reserved_and_bad_node_names(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        'nodes:\n  END: {kind: human, prompt: "?", output: messages}\n'
        '  "a:b": {kind: human, prompt: "?", output: messages}\n',
    )
    assert problems(path) == [
        f"{path}:2: nodes.END: 'END' is reserved; choose another node name",
        f"{path}:3: nodes.a:b: a node name cannot contain ':' or '|'",
    ]


def test_required_keys_and_wrong_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  a: {kind: human, prompt: "?"}
  b: {kind: tools, tools: []}
  c: {kind: llm, model: {script: [hi]}}
  d: {kind: llm, model: "fake:echo", tools: [calculator], structured_output: {type: object}}
  e: {kind: subgraph, graph: ""}
max_iterations: 0
timeout: soon
""",
    )
    assert problems(path) == [
        f"{path}:2: nodes.a.output: is required",
        f"{path}:3: nodes.b.tools: List should have at least 1 item after validation, not 0",
        f"{path}:4: nodes.c.model: must be 'provider:model', 'fake:echo' or {{fake: [reply, ...]}}"
        " (got {'script': ['hi']})",
        f"{path}:5: nodes.d: an llm node cannot have both tools and structured_output",
        f"{path}:6: nodes.e.graph: String should have at least 1 character (got '')",
        f"{path}:7: max_iterations: Input should be greater than or equal to 1 (got 0)",
        f"{path}:8: timeout: Input should be a valid number, unable to parse string as a number "
        "(got 'soon')",
    ]


# --- references between parts ----------------------------------------------------------------


def test_unknown_nodes_in_edges_entry_and_interrupts(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  ask: {kind: human, prompt: "?", output: messages}
  check: {kind: router, expression: "'x'", path_map: {x: END, y: akk}}
edges:
  - {from: ask, to: chek}
  - {from: nobody, to: ask}
  - {from: ask, condition: "true", path_map: {"true": END, "false": nowhere}}
entry: start
interrupt_before: [ask, review]
interrupt_after: [END]
""",
    )
    assert problems(path) == [
        f"{path}:3: nodes.check.path_map.y: unknown node 'akk'; did you mean 'ask'? "
        "(nodes: ask, check, END)",
        f"{path}:5: edges[0].to: unknown node 'chek'; did you mean 'check'? "
        "(nodes: ask, check, END)",
        f"{path}:6: edges[1].from: unknown node 'nobody' (nodes: ask, check)",
        f"{path}:7: edges[2].path_map.false: unknown node 'nowhere' (nodes: ask, check, END)",
        f"{path}:8: entry: unknown node 'start' (nodes: ask, check)",
        f"{path}:9: interrupt_before[1]: unknown node 'review' (nodes: ask, check)",
        f"{path}:10: interrupt_after[0]: unknown node 'END' (nodes: ask, check)",
    ]


def test_edges_from_end_or_from_a_router(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  ask: {kind: human, prompt: "?", output: messages}
  route: {kind: router, expression: "'ask'"}
edges:
  - {from: END, to: ask}
  - {from: route, to: ask}
""",
    )
    assert problems(path) == [
        f"{path}:5: edges[0].from: END has no outgoing edges",
        f"{path}:6: edges[1].from: 'route' is a router: it chooses the next node itself; "
        "list its targets in nodes.route.path_map instead",
    ]


def test_state_fields_that_nodes_use_must_exist(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
state:
  chat: {type: messages}
  answer: {type: str}
nodes:
  think: {kind: llm, model: "fake:echo", input: chat, output: answr, system: "On {topic}"}
  act: {kind: tools, tools: [calculator]}
  ask: {kind: human, prompt: "{answer[text]} {chat}", output: reply}
edges:
  - {from: think, to: act}
  - {from: act, to: ask}
""",
    )
    assert problems(path) == [
        f"{path}:5: nodes.think.output: unknown state field 'answr'; did you mean 'answer'? "
        "(state fields: chat, answer)",
        f"{path}:5: nodes.think.system: the template reads 'topic', which is not a state field "
        "(state fields: chat, answer)",
        f"{path}:6: nodes.act.messages: unknown state field 'messages' "
        "(state fields: chat, answer)",
        f"{path}:7: nodes.ask.output: unknown state field 'reply' (state fields: chat, answer)",
    ]


def test_subgraph_must_be_a_known_graph(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", "nodes:\n  sub: {kind: subgraph, graph: helpr}\n")
    assert validate_workflow_file(path) == []
    assert validate_workflow_file(path, known_graphs=["helper", "agent"]) == [
        f"{path}:2: nodes.sub.graph: unknown graph 'helpr' (graphs: agent, helper)"
    ]
    assert only_problem(path, known_graphs=[]) == (
        f"{path}:2: nodes.sub.graph: unknown graph 'helpr' (graphs: none)"
    )


def test_python_function_refs(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "steps.py", "def go(state):\n    return {}\n")
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  a: {kind: python, function: "lib/steps.py:go"}
  b: {kind: python, function: "steps"}
  c: {kind: python, function: "my module:fn"}
  d: {kind: python, function: "lib/nope.py:go"}
  e: {kind: router, function: "pkg.mod:"}
""",
    )
    assert problems(path) == [
        f"{path}:3: nodes.b.function: must be 'package.module:function' or "
        "'path/file.py:function' (got 'steps')",
        f"{path}:4: nodes.c.function: must be 'package.module:function' or "
        "'path/file.py:function' (got 'my module:fn')",
        f"{path}:5: nodes.d.function: file not found: {tmp_path}/lib/nope.py",
        f"{path}:6: nodes.e.function: must be 'package.module:function' or "
        "'path/file.py:function' (got 'pkg.mod:')",
    ]


# --- expressions and templates ------------------------------------------------------------------


def test_expressions_that_do_not_parse(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  a: {kind: human, prompt: "?", output: messages}
  r: {kind: router, expression: "messages[-1].content ==", path_map: {x: END}}
edges:
  - {from: a, condition: "foo bar", path_map: {"true": r}}
  - {from: a, condition: "lenght(messages) > `1`", path_map: {"true": r}}
  - {from: a, condition: "`oops", path_map: {"true": r}}
""",
    )
    assert problems(path) == [
        f"{path}:3: nodes.r.expression: invalid JMESPath expression "
        "'messages[-1].content ==': the expression is incomplete",
        f"{path}:5: edges[0].condition: invalid JMESPath expression 'foo bar': "
        "Unexpected token: bar at column 5",
        f"{path}:6: edges[1].condition: invalid JMESPath expression 'lenght(messages) > `1`': "
        "unknown function lenght() (functions: abs, avg, ceil, contains, ends_with, floor, "
        "join, keys, length, map, max, max_by, merge, min, min_by, not_null, reverse, sort, "
        "sort_by, starts_with, sum, to_array, to_number, to_string, type, values)",
        f"{path}:7: edges[2].condition: invalid JMESPath expression '`oops': "
        "Unclosed ` delimiter at column 1",
    ]


def test_router_needs_exactly_one_of_expression_or_function(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  a: {kind: router, path_map: {x: END}}
  b: {kind: router, expression: "'x'", function: "pkg.mod:route"}
""",
    )
    assert problems(path) == [
        f"{path}:2: nodes.a: a router needs exactly one of expression or function (got neither)",
        f"{path}:3: nodes.b: a router needs exactly one of expression or function (got both)",
    ]


def test_bad_templates(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
state:
  messages: {type: messages}
  x: {type: dict}
nodes:
  a: {kind: human, prompt: "{x.__class__}", output: x}
  b: {kind: human, prompt: "a } b", output: x}
  c: {kind: human, prompt: "{0} and {}", output: x}
  d: {kind: llm, model: "fake:echo", system: "{x[a].b}"}
  e: {kind: human, prompt: "{x:{width}}", output: x}
  f: {kind: human, prompt: "{x[name]!r:>10} {{literal}}", output: x}
""",
    )
    assert problems(path) == [
        f"{path}:5: nodes.a.prompt: invalid template field {{x.__class__}}: attribute access "
        "is not allowed; use {field} or {field[key]} (write {{ and }} for braces)",
        f"{path}:6: nodes.b.prompt: invalid template: Single '}}' encountered in format string "
        "(write {{ and }} for braces)",
        f"{path}:7: nodes.c.prompt: invalid template field {{0}}: name a state field; use "
        "{field} or {field[key]} (write {{ and }} for braces)",
        f"{path}:8: nodes.d.system: invalid template field {{x[a].b}}: attribute access is not "
        "allowed; use {field} or {field[key]} (write {{ and }} for braces)",
        f"{path}:9: nodes.e.prompt: invalid template field {{x:{{width}}}}: nested fields",
    ]


def test_template_render() -> None:
    template = Template.parse("Hi {user[name]}, item {items[1]} of {items[-1]}; {missing}{x[no]}")
    assert template.fields == ("user", "items", "missing", "x")
    state = {"user": {"name": "Ada"}, "items": ["a", "b", "c"], "x": {}}
    assert template.render(state) == "Hi Ada, item b of c; "


def test_expression_sees_messages_as_dicts() -> None:
    state = {
        "messages": [HumanMessage("hi", id="1"), AIMessage("yo", id="2")],
        "count": 3,
        "pair": (1, 2),
    }
    view = json_view(state)
    assert view["messages"][0]["type"] == "human"
    assert view["pair"] == [1, 2]
    assert Expression.parse("messages[-1].content").search(state) == "yo"
    assert Expression.parse("messages[?type=='human'] | length(@)").search(state) == 1
    assert Expression.parse("count > `2`").search(state) is True


def test_route_key() -> None:
    assert [route_key(v) for v in (True, False, None, "go", 3)] == [
        "true",
        "false",
        "null",
        "go",
        "3",
    ]
    with pytest.raises(ValueError, match="a list result cannot select a path"):
        route_key([1])


# --- paths through the graph --------------------------------------------------------------------


def test_unreachable_nodes(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  a: {kind: human, prompt: "?", output: messages}
  b: {kind: human, prompt: "?", output: messages}
  c: {kind: human, prompt: "?", output: messages}
edges:
  - {from: c, to: b}
""",
    )
    assert problems(path) == [
        f"{path}:3: nodes.b: unreachable: no path leads here from the entry 'a'",
        f"{path}:4: nodes.c: unreachable: no path leads here from the entry 'a'",
    ]


def test_no_path_to_end(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  a: {kind: human, prompt: "?", output: messages}
  b: {kind: human, prompt: "?", output: messages}
  c: {kind: human, prompt: "?", output: messages}
  d: {kind: human, prompt: "?", output: messages}
edges:
  - {from: a, condition: "messages", path_map: {"true": b, "false": d}}
  - {from: b, to: c}
  - {from: c, to: b}
""",
    )
    assert only_problem(path) == (
        f"{path}:3: nodes.b: no path to END from b, c: every route from them loops without "
        "an edge to END"
    )


def test_entry_that_cannot_reach_end(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        'nodes:\n  a: {kind: human, prompt: "?", output: messages}\nedges:\n  - {from: a, to: a}\n',
    )
    assert only_problem(path) == (
        f"{path}:2: nodes.a: no path to END from the entry a: every route from it loops "
        "without an edge to END"
    )


def test_router_without_path_map_can_go_anywhere(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  r: {kind: router, expression: "'b'"}
  b: {kind: human, prompt: "?", output: messages}
edges:
  - {from: b, to: r}
""",
    )
    assert validate_workflow_file(path) == []


def test_a_node_without_edges_ends_the_run(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nodes:
  a: {kind: human, prompt: "?", output: messages}
  b: {kind: human, prompt: "?", output: messages}
edges:
  - {from: a, to: b}
""",
    )
    assert validate_workflow_file(path) == []


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path / "w.yaml",
        """\
nmae: x
nodes:
  a: {kind: lm}
  b: {kind: router}
edges:
  - {from: a, to: c}
entry: z
""",
    )
    found = problems(path)
    assert [line.split(": ")[1] for line in found] == [
        "nmae",
        "nodes.a.kind",
        "nodes.b",
        "edges[0].to",
        "entry",
    ]
    assert all(line.startswith(f"{path}:") for line in found)
