"""compile_workflow: real LangGraph runs of compiled workflows (InMemorySaver, offline)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import GraphRecursionError
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from weft.workflows import (
    WorkflowError,
    WorkflowSpec,
    compile_workflow,
    load_workflow,
    state_schema,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures"

STEPS = """\
def mark(state):
    return {"trail": state.get("node_name", "?")}


def step_a(state):
    return {"trail": "a"}


def step_b(state):
    return {"trail": ["b"]}


def step_c(state):
    return {"trail": "c"}


def tick(state):
    return {"count": 1}


def pick(state):
    return state["choice"]


async def apick(state):
    return state["choice"]
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def build(
    tmp_path: Path, text: str, *, resolve_graph: Any = None, **compile_args: Any
) -> tuple[WorkflowSpec, CompiledStateGraph[Any, Any, Any, Any]]:
    write(tmp_path / "steps.py", STEPS)
    spec = load_workflow(write(tmp_path / f"w{uuid.uuid4().hex[:6]}.yaml", text))
    graph = compile_workflow(spec, resolve_graph=resolve_graph).compile(
        checkpointer=InMemorySaver(), **compile_args
    )
    return spec, graph


def thread() -> dict[str, Any]:
    return {"configurable": {"thread_id": uuid.uuid4().hex}}


# --- state and reducers --------------------------------------------------------------------------

REDUCERS = """\
state:
  messages: {type: messages}
  log: {type: list, reducer: append}
  total: {type: int, reducer: add}
  scores: {type: float, reducer: add, default: 0.5}
  info: {type: dict, reducer: merge, default: {source: yaml}}
  status: {type: str, default: new}
  last: {type: any}
nodes:
  work: {kind: python, function: "updates.py:work"}
"""

UPDATES = """\
from langchain_core.messages import AIMessage


def work(state):
    n = len(state["log"])
    return {
        "messages": [AIMessage(f"reply {n}", id=f"m{n}")],
        "log": "one" if n == 0 else ["two", "three"],
        "total": 5,
        "scores": 1.0,
        "info": {f"run{n}": True},
        "status": f"seen {state['status']}",
        "last": {"n": n},
    }
"""


async def test_reducers(tmp_path: Path) -> None:
    write(tmp_path / "updates.py", UPDATES)
    _, graph = build(tmp_path, REDUCERS)
    config = thread()
    first = await graph.ainvoke({"messages": [HumanMessage("hi", id="h1")], "total": 1}, config)
    assert [m.content for m in first["messages"]] == ["hi", "reply 0"]
    assert first["log"] == ["one"]
    assert first["total"] == 6
    assert first["scores"] == 1.5
    assert first["info"] == {"source": "yaml", "run0": True}
    assert first["status"] == "seen new"
    assert first["last"] == {"n": 0}

    second = await graph.ainvoke({"messages": [HumanMessage("again", id="h2")]}, config)
    assert [m.content for m in second["messages"]] == ["hi", "reply 0", "again", "reply 1"]
    assert second["log"] == ["one", "two", "three"]
    assert second["total"] == 11
    assert second["scores"] == 2.5
    assert second["info"] == {"source": "yaml", "run0": True, "run1": True}
    assert second["status"] == "seen seen new"
    assert second["last"] == {"n": 1}

    # the messages reducer replaces a message with the same id
    third = await graph.ainvoke({"messages": [HumanMessage("edited", id="h1")]}, config)
    assert [m.content for m in third["messages"]][:2] == ["edited", "reply 0"]


async def test_defaults_are_there_before_any_write(tmp_path: Path) -> None:
    write(tmp_path / "updates.py", UPDATES)
    _, graph = build(tmp_path, REDUCERS, interrupt_before=["work"])
    config = thread()
    await graph.ainvoke({"messages": []}, config)
    values = (await graph.aget_state(config)).values
    assert values["status"] == "new"
    assert values["scores"] == 0.5
    assert values["info"] == {"source": "yaml"}
    assert values["log"] == []
    assert "last" not in values


def test_state_schema(tmp_path: Path) -> None:
    write(tmp_path / "updates.py", UPDATES)
    spec, graph = build(tmp_path, REDUCERS)
    schema = state_schema(spec)
    assert list(schema.__annotations__) == [
        "messages",
        "log",
        "total",
        "scores",
        "info",
        "status",
        "last",
    ]
    properties = graph.get_input_jsonschema()["properties"]
    assert properties["total"]["type"] == "integer"
    assert properties["log"]["type"] == "array"


# --- edges ---------------------------------------------------------------------------------------

TRAIL = """\
state:
  trail: {type: list, reducer: append}
  choice: {type: any}
  count: {type: int, reducer: add}
"""


async def test_simple_edges(tmp_path: Path) -> None:
    _, graph = build(
        tmp_path,
        TRAIL
        + """\
nodes:
  c: {kind: python, function: "steps.py:step_c"}
  a: {kind: python, function: "steps.py:step_a"}
  b: {kind: python, function: "steps.py:step_b"}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
  - {from: c, to: END}
entry: a
""",
    )
    assert (await graph.ainvoke({}, thread()))["trail"] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("choice", "trail"),
    [(True, ["a", "b"]), (False, ["a", "c"]), ("skip", ["a"]), ("c", ["a", "c"])],
)
async def test_conditional_expression_edges(tmp_path: Path, choice: Any, trail: list[str]) -> None:
    _, graph = build(
        tmp_path,
        TRAIL
        + """\
nodes:
  a: {kind: python, function: "steps.py:step_a"}
  b: {kind: python, function: "steps.py:step_b"}
  c: {kind: python, function: "steps.py:step_c"}
edges:
  - {from: a, condition: choice, path_map: {true: b, false: c, skip: END, c: c}}
""",
    )
    assert (await graph.ainvoke({"choice": choice}, thread()))["trail"] == trail


async def test_condition_result_not_in_path_map(tmp_path: Path) -> None:
    spec, graph = build(
        tmp_path,
        TRAIL
        + """\
nodes:
  a: {kind: python, function: "steps.py:step_a"}
edges:
  - {from: a, condition: "choice", path_map: {"yes": END}}
""",
    )
    with pytest.raises(WorkflowError) as info:
        await graph.ainvoke({"choice": "maybe"}, thread())
    assert str(info.value) == (
        f"{spec.path}:8: edges[0].condition: the result 'maybe' is not a key of path_map "
        "(keys: yes)"
    )


ROUTER = (
    TRAIL
    + """\
nodes:
  start: {kind: python, function: "steps.py:step_a"}
  route: {kind: router, expression: "choice", path_map: {left: b, right: c, stop: END}}
  b: {kind: python, function: "steps.py:step_b"}
  c: {kind: python, function: "steps.py:step_c"}
edges:
  - {from: start, to: route}
"""
)


@pytest.mark.parametrize(
    ("choice", "trail"), [("left", ["a", "b"]), ("right", ["a", "c"]), ("stop", ["a"])]
)
async def test_router_with_path_map(tmp_path: Path, choice: str, trail: list[str]) -> None:
    _, graph = build(tmp_path, ROUTER)
    assert (await graph.ainvoke({"choice": choice}, thread()))["trail"] == trail


@pytest.mark.parametrize("function", ["steps.py:pick", "steps.py:apick"])
@pytest.mark.parametrize(("choice", "trail"), [("b", ["b"]), ("END", []), ("__end__", [])])
async def test_router_function_without_path_map(
    tmp_path: Path, function: str, choice: str, trail: list[str]
) -> None:
    _, graph = build(
        tmp_path,
        TRAIL
        + f"""\
nodes:
  route: {{kind: router, function: "{function}"}}
  b: {{kind: python, function: "steps.py:step_b"}}
""",
    )
    result = await graph.ainvoke({"choice": choice}, thread())
    assert result.get("trail", []) == trail


async def test_router_result_must_be_a_node(tmp_path: Path) -> None:
    spec, graph = build(
        tmp_path,
        TRAIL
        + """\
nodes:
  route: {kind: router, expression: choice}
  b: {kind: python, function: "steps.py:step_b"}
""",
    )
    with pytest.raises(WorkflowError) as info:
        await graph.ainvoke({"choice": "x"}, thread())
    assert str(info.value) == (
        f"{spec.path}:6: nodes.route.expression: the result 'x' is not a node "
        "(nodes: route, b, END)"
    )


def test_graph_drawing_shows_the_routes(tmp_path: Path) -> None:
    _, graph = build(tmp_path, ROUTER)
    edges = {(e.source, e.target, e.conditional) for e in graph.get_graph().edges}
    assert ("route", "b", True) in edges
    assert ("route", "__end__", True) in edges
    assert ("b", "__end__", False) in edges  # no outgoing edge: the run ends


# --- human ---------------------------------------------------------------------------------------


async def test_human_node_interrupts_and_resumes(tmp_path: Path) -> None:
    _, graph = build(
        tmp_path,
        """\
state:
  topic: {type: str, default: weft}
  verdict: {type: str}
  trail: {type: list, reducer: append}
nodes:
  ask: {kind: human, prompt: "Approve {topic}?", output: verdict}
  done: {kind: python, function: "steps.py:step_c"}
edges:
  - {from: ask, to: done}
""",
    )
    config = thread()
    first = await graph.ainvoke({}, config)
    [pending] = first["__interrupt__"]
    assert pending.value == {"prompt": "Approve weft?", "node": "ask"}
    state = await graph.aget_state(config)
    assert state.next == ("ask",)
    final = await graph.ainvoke(Command(resume="yes"), config)
    assert final["verdict"] == "yes"
    assert final["trail"] == ["c"]
    assert (await graph.aget_state(config)).next == ()


async def test_fixture_workflow_loops_until_approved() -> None:
    spec = load_workflow(FIXTURES / "review.yaml")
    graph = compile_workflow(spec).compile(checkpointer=InMemorySaver())
    config = thread()
    result = await graph.ainvoke({"messages": [HumanMessage("write")]}, config)
    assert result["__interrupt__"][0].value == {
        "prompt": "Approve the draft about weft? (yes/no)",
        "node": "review",
    }
    result = await graph.ainvoke(Command(resume="no"), config)
    assert result["__interrupt__"][0].value["node"] == "review"
    result = await graph.ainvoke(Command(resume="yes"), config)
    assert [m.content for m in result["messages"]] == [
        "write",
        "draft 1 about weft",
        "draft 2 about weft",
    ]
    assert result["verdict"] == "yes"


# --- python nodes --------------------------------------------------------------------------------


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    name = f"weft_test_nodes_{uuid.uuid4().hex[:8]}"
    package = tmp_path / "modules" / name
    write(package / "__init__.py", "")
    write(package / "steps.py", STEPS)
    monkeypatch.syspath_prepend(str(tmp_path / "modules"))
    yield package
    for key in [k for k in sys.modules if k.startswith(name)]:
        del sys.modules[key]


async def test_python_node_from_a_module(tmp_path: Path, module_dir: Path) -> None:
    _, graph = build(
        tmp_path,
        TRAIL + f'nodes:\n  a: {{kind: python, function: "{module_dir.name}.steps:step_b"}}\n',
    )
    assert (await graph.ainvoke({}, thread()))["trail"] == ["b"]


async def test_python_node_from_a_file_relative_to_the_workflow(tmp_path: Path) -> None:
    write(tmp_path / "lib" / "more.py", "def go(state):\n    return {'trail': 'from file'}\n")
    spec = load_workflow(
        write(
            tmp_path / "flows" / "w.yaml",
            TRAIL + 'nodes:\n  a: {kind: python, function: "../lib/more.py:go"}\n',
        )
    )
    graph = compile_workflow(spec).compile()
    assert (await graph.ainvoke({}))["trail"] == ["from file"]


def test_python_import_errors_name_the_file_and_the_error(tmp_path: Path) -> None:
    write(tmp_path / "broken.py", "import no_such_module_xyz\n")
    write(tmp_path / "fine.py", "value = 1\n")
    path = write(
        tmp_path / "w.yaml",
        TRAIL
        + """\
nodes:
  a: {kind: python, function: "broken.py:go"}
  b: {kind: python, function: "fine.py:go"}
  c: {kind: python, function: "fine.py:value"}
  d: {kind: python, function: "no_such_pkg_xyz.mod:go"}
edges:
  - {from: a, to: b}
  - {from: b, to: c}
  - {from: c, to: d}
""",
    )
    spec = load_workflow(path)
    expected = {
        "a": f"{path}:6: nodes.a.function: cannot import {tmp_path}/broken.py: "
        "ModuleNotFoundError: No module named 'no_such_module_xyz'",
        "b": f"{path}:7: nodes.b.function: {tmp_path}/fine.py has no attribute 'go'",
        "c": f"{path}:8: nodes.c.function: {tmp_path}/fine.py:value is not callable",
        "d": f"{path}:9: nodes.d.function: cannot import module 'no_such_pkg_xyz.mod': "
        "ModuleNotFoundError: No module named 'no_such_pkg_xyz'",
    }
    for name, message in expected.items():
        others = {k: v for k, v in spec.nodes.items() if k == name}
        single = spec.model_copy(update={"nodes": others, "edges": [], "entry": name})
        with pytest.raises(WorkflowError) as info:
            compile_workflow(single)
        assert str(info.value) == message


# --- subgraphs -----------------------------------------------------------------------------------


async def test_subgraph_via_resolve_graph(tmp_path: Path) -> None:
    write(tmp_path / "steps.py", STEPS)
    child_spec = load_workflow(
        write(
            tmp_path / "child.yaml",
            TRAIL
            + """\
nodes:
  b: {kind: python, function: "steps.py:step_b"}
  c: {kind: python, function: "steps.py:step_c"}
edges:
  - {from: b, to: c}
""",
        )
    )
    asked: list[str] = []

    def resolve(graph_id: str) -> Any:
        asked.append(graph_id)
        return compile_workflow(child_spec)  # a builder: compile_workflow compiles it

    _, graph = build(
        tmp_path,
        TRAIL
        + """\
nodes:
  a: {kind: python, function: "steps.py:step_a"}
  inner: {kind: subgraph, graph: child}
edges:
  - {from: a, to: inner}
""",
        resolve_graph=resolve,
    )
    assert asked == ["child"]
    result = await graph.ainvoke({}, thread())
    # The subgraph starts from the parent's state (trail == ["a"]) and returns its whole
    # trail, which the parent's append reducer adds: LangGraph's shared-key semantics.
    assert result["trail"] == ["a", "a", "b", "c"]


def test_subgraph_without_a_resolver(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", "nodes:\n  inner: {kind: subgraph, graph: child}\n")
    with pytest.raises(WorkflowError) as info:
        compile_workflow(load_workflow(path))
    assert str(info.value) == (
        f"{path}:2: nodes.inner.graph: a subgraph node needs a graph resolver "
        "(none was given to compile_workflow)"
    )


def test_subgraph_resolver_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", "nodes:\n  inner: {kind: subgraph, graph: child}\n")
    spec = load_workflow(path)

    def missing(graph_id: str) -> Any:
        raise WorkflowError(f"no graph {graph_id!r}")

    async def later(graph_id: str) -> Any:
        return None

    with pytest.raises(WorkflowError, match=r"nodes.inner.graph: no graph 'child'$"):
        compile_workflow(spec, resolve_graph=missing)
    with pytest.raises(WorkflowError, match="must return a graph, not an awaitable"):
        compile_workflow(spec, resolve_graph=later)


# --- limits and interrupts -----------------------------------------------------------------------


async def test_max_iterations_is_the_recursion_limit(tmp_path: Path) -> None:
    spec, graph = build(
        tmp_path,
        TRAIL
        + """\
nodes:
  loop: {kind: python, function: "steps.py:tick"}
  check: {kind: router, expression: "count > `100`", path_map: {true: END, false: loop}}
edges:
  - {from: loop, to: check}
max_iterations: 6
""",
    )
    assert spec.max_iterations == 6
    with pytest.raises(GraphRecursionError):
        await graph.ainvoke({}, {**thread(), "recursion_limit": spec.max_iterations})
    done = await graph.ainvoke({"count": 100}, {**thread(), "recursion_limit": spec.max_iterations})
    assert done["count"] == 101


async def test_interrupts_are_left_to_compile(tmp_path: Path) -> None:
    text = (
        TRAIL
        + """\
nodes:
  a: {kind: python, function: "steps.py:step_a"}
  b: {kind: python, function: "steps.py:step_b"}
edges:
  - {from: a, to: b}
interrupt_before: [b]
"""
    )
    spec, plain = build(tmp_path, text)
    assert (await plain.ainvoke({}, thread()))["trail"] == ["a", "b"]
    _, paused = build(tmp_path, text, interrupt_before=spec.interrupt_before)
    config = thread()
    assert (await paused.ainvoke({}, config))["trail"] == ["a"]
    assert (await paused.aget_state(config)).next == ("b",)


def test_compile_checks_a_spec_built_in_python() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "inline",
            "nodes": {"a": {"kind": "human", "prompt": "?", "output": "messages"}},
            "edges": [{"from": "a", "to": "b"}],
        }
    )
    with pytest.raises(WorkflowError) as info:
        compile_workflow(spec)
    assert str(info.value) == "inline: edges[0].to: unknown node 'b' (nodes: a, END)"


# --- llm and tools (weft.workflows.models / tools) -----------------------------------------------


async def test_llm_and_tools_loop(tmp_path: Path) -> None:
    _, graph = build(
        tmp_path,
        """\
nodes:
  agent:
    kind: llm
    model:
      fake:
        - {content: "", tool_calls: [{name: calculator, args: {expression: "6 * 7"}}]}
        - "The answer is 42."
    tools: [calculator]
    system: "You are terse."
  act: {kind: tools, tools: [calculator]}
edges:
  - from: agent
    condition: "length(messages[-1].tool_calls || `[]`) > `0`"
    path_map: {true: act, false: END}
  - {from: act, to: agent}
""",
    )
    result = await graph.ainvoke({"messages": [HumanMessage("6 times 7?")]}, thread())
    kinds = [type(m) for m in result["messages"]]
    assert kinds == [HumanMessage, AIMessage, ToolMessage, AIMessage]
    assert result["messages"][2].content == "42"
    assert result["messages"][-1].content == "The answer is 42."


async def test_llm_echo_with_output_key(tmp_path: Path) -> None:
    _, graph = build(
        tmp_path,
        """\
state:
  messages: {type: messages}
  reply: {type: messages}
nodes:
  echo: {kind: llm, model: "fake:echo", output: reply}
""",
    )
    result = await graph.ainvoke({"messages": [HumanMessage("ping")]}, thread())
    assert [m.content for m in result["reply"]] == ["ping"]
    assert [m.content for m in result["messages"]] == ["ping"]


def test_llm_model_errors_name_the_node(tmp_path: Path) -> None:
    path = write(tmp_path / "w.yaml", 'nodes:\n  think: {kind: llm, model: "nosuch:model"}\n')
    with pytest.raises(WorkflowError) as info:
        compile_workflow(load_workflow(path))
    assert str(info.value).startswith(f"{path}:2: nodes.think.model: ")
    path = write(
        tmp_path / "t.yaml",
        'nodes:\n  think: {kind: llm, model: "fake:echo", tools: [no_such_tool]}\n',
    )
    with pytest.raises(WorkflowError) as info:
        compile_workflow(load_workflow(path))
    assert str(info.value).startswith(f"{path}:2: nodes.think.tools: ")
