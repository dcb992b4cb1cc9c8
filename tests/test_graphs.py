"""The graph registry: every entry form of a langgraph.json project, and every error."""

from __future__ import annotations

import json
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.store.memory import InMemoryStore

from weft.config import Settings
from weft.errors import ConfigError, NotFoundError, WeftError
from weft.graphs import GraphRegistry, read_dotenv

FIXTURES = Path(__file__).parent / "fixtures" / "graphs"


@pytest.fixture(autouse=True)
def _restore_process_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry changes sys.path and os.environ on purpose; undo it after each test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def project(tmp_path: Path, graphs: dict[str, str], **extra: Any) -> Settings:
    """A langgraph.json project in tmp_path with the fixture graphs copied in."""
    shutil.copy(FIXTURES / "agent.py", tmp_path / "agent.py")
    shutil.copy(FIXTURES / "support.yaml", tmp_path / "support.yaml")
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps({"graphs": graphs, **extra}))
    return Settings.load(path, env={})


def unique_package(tmp_path: Path, body: str) -> str:
    """A package in tmp_path with a name no other test uses (sys.modules keeps modules)."""
    name = f"pkg_{uuid.uuid4().hex[:10]}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "graphs.py").write_text(body)
    return name


def load_error(tmp_path: Path, graphs: dict[str, str], **extra: Any) -> str:
    settings = project(tmp_path, graphs, **extra)
    with pytest.raises(ConfigError) as info:
        GraphRegistry.load(settings)
    return str(info.value)


# --- entry forms -------------------------------------------------------------------------------


async def test_a_compiled_graph_is_bound_to_the_checkpointer_and_keeps_its_interrupts(
    tmp_path: Path,
) -> None:
    registry = GraphRegistry.load(project(tmp_path, {"agent": "./agent.py:graph"}))
    assert registry.ids() == ["agent"]
    entry = registry.entry("agent")
    assert (entry.kind, entry.source, entry.path) == (
        "python",
        "./agent.py:graph",
        tmp_path / "agent.py",
    )
    assert not entry.is_factory
    assert (entry.description, entry.timeout, entry.max_iterations) == (None, None, None)

    saver, store = InMemorySaver(), InMemoryStore()
    graph = await registry.graph("agent", checkpointer=saver, store=store)
    assert graph.checkpointer is saver
    assert graph.store is store
    assert graph.interrupt_before_nodes == ["child"]
    assert graph.name == "agent"
    config = {"configurable": {"thread_id": "t1"}}
    assert await graph.ainvoke({"items": []}, config) == {"items": ["first"]}
    assert (await graph.aget_state(config)).next == ("child",)
    assert await graph.ainvoke(None, config) == {"items": ["first", "inner"]}


async def test_compiled_graphs_are_cached_per_checkpointer(tmp_path: Path) -> None:
    registry = GraphRegistry.load(
        project(tmp_path, {"agent": "agent.py:graph", "builder": "agent.py:builder"})
    )
    one, two = InMemorySaver(), InMemorySaver()
    for graph_id in ("agent", "builder"):
        first = await registry.graph(graph_id, checkpointer=one)
        assert await registry.graph(graph_id, checkpointer=one) is first
        other = await registry.graph(graph_id, checkpointer=two)
        assert other is not first
        assert other.checkpointer is two


async def test_a_state_graph_is_compiled(tmp_path: Path) -> None:
    registry = GraphRegistry.load(project(tmp_path, {"built": "agent.py:builder"}))
    saver = InMemorySaver()
    graph = await registry.graph("built", checkpointer=saver)
    assert graph.checkpointer is saver
    assert graph.name == "built"
    result = await graph.ainvoke({"items": []}, {"configurable": {"thread_id": "t"}})
    assert result == {"items": ["first", "inner"]}


async def test_two_entries_from_one_file_share_the_module(tmp_path: Path) -> None:
    registry = GraphRegistry.load(
        project(tmp_path, {"a": "agent.py:graph", "b": "./agent.py:builder"})
    )
    a = await registry.graph("a")
    b = await registry.graph("b")
    assert type(a.builder) is type(b.builder)
    assert a.builder.state_schema is b.builder.state_schema


@pytest.mark.parametrize("attr", ["make_graph", "make_graph_async"])
async def test_a_factory_is_called_with_the_run_config_every_time(
    tmp_path: Path, attr: str
) -> None:
    registry = GraphRegistry.load(project(tmp_path, {"made": f"agent.py:{attr}"}))
    assert registry.entry("made").is_factory
    saver = InMemorySaver()
    results = []
    for label in ("red", "blue"):
        config = {"configurable": {"thread_id": label, "label": label}}
        graph = await registry.graph("made", config, checkpointer=saver)
        assert graph.checkpointer is saver
        results.append(await graph.ainvoke({"items": []}, config))
    assert results == [{"items": ["red"]}, {"items": ["blue"]}]


async def test_a_factory_without_arguments_may_return_a_state_graph(tmp_path: Path) -> None:
    registry = GraphRegistry.load(project(tmp_path, {"made": "agent.py:make_builder"}))
    graph = await registry.graph("made", checkpointer=InMemorySaver())
    assert set(graph.nodes) == {"__start__", "first", "child"}


async def test_a_module_attribute_through_dependencies(tmp_path: Path) -> None:
    package = unique_package(
        tmp_path, "from agent import graph as compiled\n"
    )  # agent.py is importable from "." too
    settings = project(tmp_path, {"mod": f"{package}.graphs:compiled"}, dependencies=["."])
    registry = GraphRegistry.load(settings)
    assert str(tmp_path) == sys.path[0]
    entry = registry.entry("mod")
    assert entry.path == tmp_path / package / "graphs.py"
    graph = await registry.graph("mod", checkpointer=InMemorySaver())
    assert graph.interrupt_before_nodes == ["child"]


async def test_env_from_a_mapping_does_not_overwrite_set_variables(tmp_path: Path) -> None:
    os.environ["WEFT_GRAPHS_TEST_KEEP"] = "from the shell"
    package = unique_package(
        tmp_path,
        "import os\n"
        "from agent import make_builder\n"
        "SEEN = os.environ['WEFT_GRAPHS_TEST_NEW']\n"
        "graph = make_builder().compile()\n",
    )
    settings = project(
        tmp_path,
        {"env": f"{package}.graphs:graph"},
        dependencies=["."],
        env={"WEFT_GRAPHS_TEST_NEW": "from config", "WEFT_GRAPHS_TEST_KEEP": "from config"},
    )
    GraphRegistry.load(settings)
    assert os.environ["WEFT_GRAPHS_TEST_NEW"] == "from config"
    assert os.environ["WEFT_GRAPHS_TEST_KEEP"] == "from the shell"
    assert sys.modules[f"{package}.graphs"].SEEN == "from config"


async def test_env_from_a_dotenv_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / ".env").write_text(
        "# a comment\n"
        "\n"
        "WEFT_DOTENV_PLAIN=plain value # trailing comment\n"
        "export WEFT_DOTENV_EXPORTED=yes\n"
        "WEFT_DOTENV_SINGLE='keep # and \\n as they are'\n"
        'WEFT_DOTENV_DOUBLE="line one\\nline \\"two\\""\n'
        "WEFT_DOTENV_EMPTY=\n"
    )
    settings = project(tmp_path, {"agent": "agent.py:graph"}, env="conf/.env")
    GraphRegistry.load(settings)
    assert os.environ["WEFT_DOTENV_PLAIN"] == "plain value"
    assert os.environ["WEFT_DOTENV_EXPORTED"] == "yes"
    assert os.environ["WEFT_DOTENV_SINGLE"] == "keep # and \\n as they are"
    assert os.environ["WEFT_DOTENV_DOUBLE"] == 'line one\nline "two"'
    assert os.environ["WEFT_DOTENV_EMPTY"] == ""


def test_dotenv_errors_name_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("OK=1\nthis is not a variable\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: expected KEY=VALUE, got 'this is not"):
        read_dotenv(path)
    path.write_text('OK=1\n\nQUOTED="never closed\n')
    with pytest.raises(ConfigError, match=rf'{path}:3: QUOTED: the value\'s opening " is never'):
        read_dotenv(path)


def test_a_missing_dotenv_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"agent": "agent.py:graph"}, env=".env.missing")
    assert message == (
        f"{tmp_path / 'langgraph.json'}: env: the .env file {tmp_path / '.env.missing'} "
        "does not exist"
    )


async def test_yaml_workflow_entry(tmp_path: Path) -> None:
    workflows = pytest.importorskip("weft.workflows")
    if not hasattr(workflows, "load_workflow") or not hasattr(workflows, "compile_workflow"):
        pytest.skip("weft.workflows does not offer load_workflow/compile_workflow yet")
    registry = GraphRegistry.load(project(tmp_path, {"support": "support.yaml"}))
    entry = registry.entry("support")
    assert entry.kind == "yaml"
    assert entry.description == "Echoes the question, then asks a human whether it helped."
    assert (entry.timeout, entry.max_iterations) == (30, 7)
    saver = InMemorySaver()
    graph = await registry.graph("support", checkpointer=saver)
    assert graph.checkpointer is saver
    assert graph.interrupt_before_nodes == ["ask"]
    assert graph.config is not None
    assert graph.config["recursion_limit"] == 7
    assert await registry.graph("support", checkpointer=saver) is graph


# --- lookups and errors --------------------------------------------------------------------------


def test_an_unknown_graph_lists_the_known_ones(tmp_path: Path) -> None:
    registry = GraphRegistry.load(project(tmp_path, {"agent": "agent.py:graph"}))
    with pytest.raises(NotFoundError, match=r"^graph 'nope' not found; known graphs: 'agent'$"):
        registry.entry("nope")
    assert "agent" in registry
    assert "nope" not in registry


def test_a_missing_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"agent": "graphs/missing.py:graph"})
    assert message == (
        f"{tmp_path / 'langgraph.json'}: graphs.agent: file "
        f"{tmp_path / 'graphs' / 'missing.py'} does not exist"
    )


def test_a_missing_workflow_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"flow": "flows/missing.yaml"})
    assert message == (
        f"{tmp_path / 'langgraph.json'}: graphs.flow: workflow file "
        f"{tmp_path / 'flows' / 'missing.yaml'} does not exist"
    )


def test_an_entry_without_an_attribute(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"agent": "agent.py"})
    assert message == (
        f"{tmp_path / 'langgraph.json'}: graphs.agent: 'agent.py' is not a graph reference; "
        "write path/file.py:attribute, package.module:attribute or path/workflow.yaml"
    )


def test_a_file_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import os\n\nVALUE = 1 / 0\n")
    message = load_error(tmp_path, {"broken": "broken.py:graph"})
    assert message == (
        f"{tmp_path / 'langgraph.json'}: graphs.broken: importing {tmp_path / 'broken.py'} "
        f"failed: ZeroDivisionError: division by zero ({tmp_path / 'broken.py'}, line 3)"
    )
    assert "Traceback" not in message


def test_a_file_with_a_syntax_error(tmp_path: Path) -> None:
    (tmp_path / "syntax.py").write_text("graph = (\n")
    message = load_error(tmp_path, {"syntax": "syntax.py:graph"})
    assert message.startswith(
        f"{tmp_path / 'langgraph.json'}: graphs.syntax: importing {tmp_path / 'syntax.py'} "
        "failed: SyntaxError: "
    )
    assert message.endswith(f"({tmp_path / 'syntax.py'}, line 1)")


def test_a_file_whose_import_fails_in_a_sibling_module(tmp_path: Path) -> None:
    (tmp_path / "helper_mod_for_weft.py").write_text("raise RuntimeError('no API key')\n")
    (tmp_path / "uses.py").write_text("import helper_mod_for_weft\n")
    message = load_error(tmp_path, {"uses": "uses.py:graph"})
    assert message == (
        f"{tmp_path / 'langgraph.json'}: graphs.uses: importing {tmp_path / 'uses.py'} "
        f"failed: RuntimeError: no API key ({tmp_path / 'helper_mod_for_weft.py'}, line 1)"
    )


def test_a_missing_module(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"mod": "no_such_pkg_weft.graphs:graph"}, dependencies=["."])
    assert message == (
        f"{tmp_path / 'langgraph.json'}: graphs.mod: no module named "
        f"'no_such_pkg_weft.graphs'; searched the dependencies {tmp_path} and installed packages"
    )


def test_a_module_that_fails_to_import(tmp_path: Path) -> None:
    package = unique_package(tmp_path, "raise ImportError('needs langchain_openai')\n")
    message = load_error(tmp_path, {"mod": f"{package}.graphs:graph"}, dependencies=["."])
    file = tmp_path / package / "graphs.py"
    assert message == (
        f"{tmp_path / 'langgraph.json'}: graphs.mod: importing {file} failed: "
        f"ImportError: needs langchain_openai ({file}, line 1)"
    )


def test_a_missing_local_dependency(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"agent": "agent.py:graph"}, dependencies=[".", "./libs"])
    assert message == (
        f"{tmp_path / 'langgraph.json'}: dependencies[1]: the folder {tmp_path / 'libs'} "
        "does not exist"
    )


def test_a_missing_attribute_lists_the_graph_like_ones(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"agent": "agent.py:grpah"})
    assert message == (
        f"{tmp_path / 'langgraph.json'}: graphs.agent: {tmp_path / 'agent.py'} has no "
        "attribute 'grpah'; graph-like attributes there: builder, graph"
    )
    (tmp_path / "empty.py").write_text("x = 1\n")
    message = load_error(tmp_path, {"empty": "empty.py:graph"})
    assert message.endswith("has no attribute 'graph'; it defines no compiled graph or StateGraph")


def test_an_attribute_that_is_not_a_graph(tmp_path: Path) -> None:
    message = load_error(tmp_path, {"agent": "agent.py:not_a_graph"})
    assert message == (
        f"{tmp_path / 'langgraph.json'}: graphs.agent: {tmp_path / 'agent.py'}:not_a_graph "
        "is an int, not a compiled graph, a StateGraph or a function that returns one"
    )
    message = load_error(tmp_path, {"agent": "agent.py:State"})
    assert "agent.py:State is the class State, not a compiled graph" in message


async def test_a_factory_that_returns_something_else(tmp_path: Path) -> None:
    registry = GraphRegistry.load(project(tmp_path, {"odd": "agent.py:returns_nothing"}))
    with pytest.raises(ConfigError) as info:
        await registry.graph("odd")
    assert str(info.value) == (
        f"{tmp_path / 'langgraph.json'}: graphs.odd: the factory agent.py:returns_nothing "
        "returned None, not a compiled graph or a StateGraph"
    )


def _workflows_ready() -> bool:
    try:
        import weft.workflows as workflows
    except ImportError:
        return False
    return hasattr(workflows, "load_workflow") and hasattr(workflows, "compile_workflow")


needs_workflows = pytest.mark.skipif(
    not _workflows_ready(), reason="weft.workflows (load/compile_workflow) is not available"
)

SUBGRAPH_FLOW = """\
name: wrapper
state:
  items: {type: list, reducer: append}
nodes:
  inner: {kind: subgraph, graph: %s}
"""


@needs_workflows
async def test_a_workflow_runs_another_graph_as_a_subgraph(tmp_path: Path) -> None:
    (tmp_path / "wrapper.yaml").write_text(SUBGRAPH_FLOW % "built")
    registry = GraphRegistry.load(
        project(tmp_path, {"wrapper": "wrapper.yaml", "built": "agent.py:builder"})
    )
    graph = await registry.graph("wrapper", checkpointer=InMemorySaver())
    nodes = {n["id"] for n in graph.get_graph(xray=True).to_json()["nodes"]}
    assert {"inner:first", "inner:child:inner"} <= nodes


@needs_workflows
def test_workflows_that_use_each_other_are_a_cycle(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(SUBGRAPH_FLOW % "two")
    (tmp_path / "two.yaml").write_text(SUBGRAPH_FLOW % "one")
    settings = project(tmp_path, {"one": "one.yaml", "two": "two.yaml"})
    with pytest.raises(WeftError) as info:
        GraphRegistry.load(settings)
    assert str(info.value) == (
        f"{tmp_path / 'one.yaml'}:5: nodes.inner.graph: {tmp_path / 'two.yaml'}:5: "
        "nodes.inner.graph: workflows use each other as subgraphs: one -> two -> one"
    )


@needs_workflows
def test_a_workflow_naming_an_unknown_subgraph(tmp_path: Path) -> None:
    (tmp_path / "lost.yaml").write_text(SUBGRAPH_FLOW % "nowhere")
    settings = project(tmp_path, {"lost": "lost.yaml"})
    with pytest.raises(WeftError) as info:
        GraphRegistry.load(settings)
    assert str(info.value) == (
        f"{tmp_path / 'lost.yaml'}:5: nodes.inner.graph: unknown graph 'nowhere' (graphs: lost)"
    )
