"""The example workflows through the ``weft`` command line: validate, list, draw and run them.

Every test works on a copy of ``examples/`` in tmp_path, so the runs' database lands in the
copy's ``.weft/`` folder and nothing is written into the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from weft.assistants import system_assistant_id
from weft.cli import app

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
EXAMPLE_WORKFLOWS = ("human_review", "plan_execute", "react")
QUESTION = {"messages": [{"role": "user", "content": "What is 2 + 3 * 4?"}]}
# Thread IDs are UUIDs; fixed ones keep the tests readable.
REVIEW_YES = "00000000-0000-4000-8000-000000000001"
REVIEW_NO = "00000000-0000-4000-8000-000000000002"
T1 = "00000000-0000-4000-8000-000000000003"

runner = CliRunner()


def _without_weft_env() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("WEFT_") or name.startswith("WEFT_TEST_")
    }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("WEFT_") and not name.startswith("WEFT_TEST_"):
            monkeypatch.delenv(name)
    return tmp_path


@pytest.fixture
def examples(project: Path) -> Path:
    """A copy of examples/ (without its database) in the project folder."""
    copy = project / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns(".weft", "__pycache__"))
    return copy


# --- helpers -------------------------------------------------------------------------------


def weft(*args: str, columns: int | None = None) -> Result:
    env = {"COLUMNS": str(columns)} if columns is not None else None
    return runner.invoke(app, list(args), env=env)


def invoke(
    examples: Path, graph_id: str, *args: str, config: str = "weft.yaml", graph_input: Any = None
) -> Result:
    """``weft invoke GRAPH_ID --config <copy>/CONFIG [--input JSON] ARGS...``."""
    options = ["--config", str(examples / config)]
    if graph_input is not None:
        options += ["--input", json.dumps(graph_input)]
    return weft("invoke", graph_id, *options, *args)


def final_state(result: Result) -> dict[str, Any]:
    """The final state a run without --stream prints (one indented JSON document)."""
    assert result.exit_code == 0, result.output
    state: dict[str, Any] = json.loads(result.stdout)
    return state


def interrupted(stdout: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The state and the ``__interrupt__`` list of a run that stopped at a human node."""
    *state_lines, last = stdout.rstrip().splitlines()
    interrupt = json.loads(last)
    assert list(interrupt) == ["__interrupt__"], last
    return json.loads("\n".join(state_lines)), interrupt["__interrupt__"]


def json_lines(result: Result) -> list[Any]:
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def messages(state: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["type"], m["content"]) for m in state["messages"]]


def user_says(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


# --- weft validate -------------------------------------------------------------------------


def test_validate_accepts_the_example_workflows(examples: Path) -> None:
    files = [f"examples/workflows/{name}.yaml" for name in EXAMPLE_WORKFLOWS]
    result = weft("validate", "--config", str(examples / "weft.yaml"), *files)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{file}: valid" for file in files]


BROKEN = """\
name: broken
state:
  messages: {type: messages}
  tally: {type: int, reducer: sum}
nodes:
  think:
    kind: thinker
  check:
    kind: router
    expression: "messages[-1"
  done:
    kind: python
    function: "json:dumps"
edges:
  - {from: check, to: nowhere}
  - {from: done, to: END}
"""


def test_validate_lists_every_problem_with_file_line_and_path(project: Path) -> None:
    (project / "broken.yaml").write_text(BROKEN)
    (project / "child.yaml").write_text(
        "extends: base.yaml\nnodes:\n  only: {kind: python, function: 'json:dumps'}\n"
    )
    (project / "base.yaml").write_text("extends: child.yaml\ndescription: the base\n")
    (project / "fine.yaml").write_text("nodes:\n  only: {kind: python, function: 'json:dumps'}\n")

    result = weft("validate", "broken.yaml", "child.yaml", "fine.yaml")

    assert result.exit_code == 2
    assert result.stdout.splitlines() == ["fine.yaml: valid"]
    problems = result.stderr.splitlines()
    broken = [line for line in problems if line.startswith("broken.yaml:")]
    assert [line.split(":")[1] for line in broken] == ["4", "7", "10", "15"]
    expected = [
        "broken.yaml:4: state.tally.reducer: unknown reducer 'sum' "
        "(allowed: replace, append, add, merge, messages)",
        "broken.yaml:7: nodes.think.kind: unknown node kind 'thinker' "
        "(allowed: llm, tools, router, human, python, subgraph)",
        "broken.yaml:10: nodes.check.expression: invalid JMESPath expression 'messages[-1'",
        "broken.yaml:15: edges[0].to: unknown node 'nowhere' (nodes: think, check, done, END)",
        "base.yaml:1: extends: extends cycle: child.yaml → base.yaml → child.yaml",
    ]
    for text, line in zip(expected, [*broken, problems[-1]], strict=True):
        assert line.startswith(text), (text, result.stderr)
    assert len(problems) == len(expected), result.stderr


def test_validate_reports_a_yaml_syntax_error_with_line_and_column(project: Path) -> None:
    (project / "syntax.yaml").write_text("name: oops\nnodes:\n  a: {kind: llm\n  b: [\n")
    result = weft("validate", "syntax.yaml")
    assert result.exit_code == 2
    assert result.stderr.startswith("syntax.yaml:4: invalid YAML at line 4, column 4"), (
        result.stderr
    )


# --- weft graphs / weft graph show ---------------------------------------------------------


def test_graphs_lists_the_examples_with_kind_and_assistant_id(examples: Path) -> None:
    result = weft("graphs", "--config", str(examples / "weft.yaml"), columns=200)
    assert result.exit_code == 0, result.output
    rows = {
        cells[0]: cells[1:]
        for line in result.stdout.splitlines()
        if line.startswith("│")
        for cells in [[cell.strip() for cell in line.strip("│").split("│")]]
    }
    assert list(rows) == ["react", "plan_execute", "human_review", "echo"]
    kinds = {graph_id: row[0] for graph_id, row in rows.items()}
    assert kinds == {
        "react": "yaml",
        "plan_execute": "yaml",
        "human_review": "yaml",
        "echo": "python",
    }
    assert rows["react"][1] == "workflows/react.yaml"
    assert rows["echo"][1] == "python/agent.py:graph"
    for graph_id, row in rows.items():
        assert row[2] == system_assistant_id(graph_id)
    assert system_assistant_id("react") in result.stdout


def test_graph_show_prints_mermaid_with_the_conditional_edges(examples: Path) -> None:
    result = weft("graph", "show", "react", "--config", str(examples / "weft.yaml"))
    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.stdout.splitlines()]
    assert "graph TD;" in lines
    assert "think(think)" in lines
    assert "observe(observe)" in lines
    assert any(line.startswith("act(act") for line in lines), result.stdout
    assert "__start__ --> think;" in lines
    assert "act --> observe;" in lines
    assert "observe --> think;" in lines
    assert "think -. &nbsp;true&nbsp; .-> act;" in lines
    assert "think -. &nbsp;false&nbsp; .-> __end__;" in lines


def test_graph_show_ascii_draws_boxes(examples: Path) -> None:
    result = weft("graph", "show", "react", "--ascii", "--config", str(examples / "weft.yaml"))
    assert result.exit_code == 0, result.output
    for node in ("__start__", "think", "act", "observe", "__end__"):
        assert f"| {node} |" in result.stdout
        assert f"+{'-' * (len(node) + 2)}+" in result.stdout
    assert "graph TD" not in result.stdout


# --- weft invoke ---------------------------------------------------------------------------


def test_invoke_react_uses_the_calculator_and_answers(examples: Path) -> None:
    result = invoke(examples, "react", graph_input=QUESTION)
    state = final_state(result)
    assert "thread_id: " in result.stderr  # a new thread, named on stderr
    assert messages(state) == [
        ("human", "What is 2 + 3 * 4?"),
        ("ai", "Let me work that out."),
        ("tool", "14"),
        ("ai", "2 + 3 * 4 is 14."),
    ]
    assert state["messages"][2]["name"] == "calculator"
    assert state["rounds"] == 1
    assert (examples / ".weft" / "weft.db").is_file()  # the copy's database, not the repo's


def test_invoke_plan_execute_works_through_the_three_steps(examples: Path) -> None:
    state = final_state(invoke(examples, "plan_execute", graph_input=user_says("Compare")))
    steps = ["collect the facts", "compare the options", "write the summary"]
    assert state["plan"] == {"steps": steps}
    assert state["done"] == [f"done: {step}" for step in steps]
    assert state["result"].startswith("3 steps done: ")
    for step in steps:
        assert step in state["result"]


@pytest.mark.slow
def test_human_review_stops_in_one_process_and_resumes_in_another(examples: Path) -> None:
    weft_script = Path(sys.executable).parent / "weft"
    args = ["invoke", "human_review", "--config", str(examples / "weft.yaml")]
    args += ["--thread-id", REVIEW_YES, "--input", json.dumps(user_says("Where is my order?"))]
    done = subprocess.run(
        [str(weft_script), *args],
        capture_output=True,
        text=True,
        check=False,
        env=_without_weft_env(),
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    state, interrupts = interrupted(done.stdout)
    draft = "Thanks for your message, we will reply within a day."
    assert state["draft"] == draft
    assert state["result"] == ""
    assert [i["value"] for i in interrupts] == [
        {"prompt": f"Publish this reply? (yes/no) {draft}", "node": "review"}
    ]

    resumed = final_state(
        invoke(examples, "human_review", "--thread-id", REVIEW_YES, "--resume", '"yes"')
    )
    assert resumed["approval"] == "yes"
    assert resumed["result"].startswith("published:")
    assert resumed["result"] == f"published: {draft}"


def test_human_review_answered_no_is_not_published(examples: Path) -> None:
    first = invoke(examples, "human_review", "--thread-id", REVIEW_NO, graph_input=user_says("Hi"))
    assert first.exit_code == 0, first.output
    _, interrupts = interrupted(first.stdout)
    assert "Publish this reply? (yes/no)" in interrupts[0]["value"]["prompt"]

    resumed = final_state(
        invoke(examples, "human_review", "--thread-id", REVIEW_NO, "--resume", '"no"')
    )
    assert resumed["result"].startswith("not published")
    assert "__interrupt__" not in resumed


def test_invoke_on_the_same_thread_continues_it(examples: Path) -> None:
    first = final_state(invoke(examples, "echo", "--thread-id", T1, graph_input=user_says("hi")))
    assert messages(first) == [("human", "hi"), ("ai", "HI")]
    second = invoke(examples, "echo", "--thread-id", T1, graph_input=user_says("again"))
    assert "thread_id:" not in second.stderr  # no new thread announced
    assert messages(final_state(second)) == [
        ("human", "hi"),
        ("ai", "HI"),
        ("human", "again"),
        ("ai", "AGAIN"),
    ]


def test_stream_messages_prints_token_chunks(examples: Path) -> None:
    events = json_lines(invoke(examples, "react", "--stream", "messages", graph_input=QUESTION))
    assert len(events) > 3
    assert all(isinstance(event, list) and len(event) == 2 for event in events)
    chunks = [message for message, _ in events if message["type"] == "AIMessageChunk"]
    assert len(chunks) > 2  # tokens, not whole messages
    text = "".join(chunk["content"] for chunk in chunks)
    assert text == "Let me work that out.2 + 3 * 4 is 14."
    tools = [message["content"] for message, _ in events if message["type"] == "tool"]
    assert tools == ["14"]
    assert {metadata["langgraph_node"] for _, metadata in events} == {"think", "act"}


def test_stream_updates_prints_one_line_per_node(examples: Path) -> None:
    events = json_lines(invoke(examples, "react", "--stream", "updates", graph_input=QUESTION))
    assert [list(event) for event in events] == [["think"], ["act"], ["observe"], ["think"]]
    assert events[2] == {"observe": {"rounds": 1}}
    assert events[3]["think"]["messages"][0]["content"] == "2 + 3 * 4 is 14."


@pytest.mark.parametrize("graph_id", ["echo", "echo_factory"])
def test_invoke_runs_the_python_project(examples: Path, graph_id: str) -> None:
    result = invoke(
        examples, graph_id, config="python/langgraph.json", graph_input=user_says("hello")
    )
    assert messages(final_state(result)) == [("human", "hello"), ("ai", "HELLO")]
    assert (examples / "python" / ".weft" / "weft.db").is_file()


# --- bad input -----------------------------------------------------------------------------


def test_input_that_is_not_json_exits_2(examples: Path) -> None:
    result = invoke(examples, "echo", "--input", "not json")
    assert result.exit_code == 2
    assert "error: --input is not valid JSON" in result.stderr
    assert result.stdout == ""


def test_unknown_graph_lists_the_known_ones(examples: Path) -> None:
    result = invoke(examples, "nope", graph_input=user_says("hi"))
    assert result.exit_code != 0
    assert "graph 'nope' not found" in result.stderr
    for graph_id in ("react", "plan_execute", "human_review", "echo"):
        assert repr(graph_id) in result.stderr
    assert "Traceback" not in result.output


def test_unknown_stream_mode_lists_the_modes(examples: Path) -> None:
    result = invoke(examples, "echo", "--stream", "bogus", graph_input=user_says("hi"))
    assert result.exit_code == 2
    assert (
        "--stream 'bogus' is not a stream mode; use one of values, updates, messages, custom, "
        "debug, tasks, checkpoints" in result.stderr
    )
    assert "thread_id" not in result.stderr  # refused before anything was opened
    assert result.stdout == ""


def test_resume_needs_a_thread_id(examples: Path) -> None:
    result = invoke(examples, "human_review", "--resume", '"yes"')
    assert result.exit_code == 2
    assert "error: --resume needs --thread-id" in result.stderr
    assert result.stdout == ""


FAILING = {
    "slow.yaml": "timeout: 0.3\nnodes:\n  nap: {kind: python, function: naps.py:nap}\n",
    "loop.yaml": (
        "max_iterations: 4\nstate:\n  n: {type: int, reducer: add, default: 0}\n"
        "nodes:\n  spin: {kind: python, function: naps.py:spin}\n"
        "edges:\n  - {from: spin, condition: 'n < `1000`',\n"
        "     path_map: {'true': spin, 'false': END}}\n"
    ),
    "boom.yaml": "nodes:\n  boom: {kind: python, function: naps.py:boom}\n",
}
NAPS = """
import asyncio

async def nap(state):
    await asyncio.sleep(30)
    return {}

def spin(state):
    return {"n": 1}

def boom(state):
    raise RuntimeError("the node broke")
"""


@pytest.mark.parametrize(
    ("graph_id", "message"),
    [
        ("slow", "the run of slow on thread T passed its timeout of 0.3 s"),
        ("loop", "the run of loop on thread T reached its step limit (max_iterations: 4)"),
        ("boom", "the run of boom on thread T failed: RuntimeError: the node broke"),
    ],
)
def test_failing_runs_end_with_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, graph_id: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "naps.py").write_text(NAPS)
    graphs = []
    for name, text in FAILING.items():
        (tmp_path / name).write_text(text)
        graphs.append(f"  {name.removesuffix('.yaml')}: {name}")
    (tmp_path / "weft.yaml").write_text("graphs:\n" + "\n".join(graphs) + "\n")
    thread = "22222222-2222-2222-2222-222222222222"
    result = CliRunner().invoke(app, ["invoke", graph_id, "--thread-id", thread])
    assert result.exit_code == 1
    assert f"error: {message.replace('thread T', f'thread {thread}')}" in result.stderr
    assert "Traceback" not in result.output
