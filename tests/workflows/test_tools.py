"""Builtin tools, tool references and the llm/tools node builders in real LangGraph graphs."""

from __future__ import annotations

import operator
import re
from datetime import datetime, timedelta
from typing import Annotated, Any, TypedDict
from uuid import UUID

import pytest
from langchain_core.callbacks import AsyncCallbackHandler
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.prebuilt import tools_condition

from weft.errors import WeftError
from weft.workflows.models import resolve_model
from weft.workflows.tools import (
    BUILTIN_TOOLS,
    ToolError,
    calculator,
    current_time,
    make_llm_node,
    make_tools_node,
    resolve_tools,
)


class ChatState(TypedDict, total=False):
    messages: Annotated[list[BaseMessage], add_messages]
    notes: Annotated[dict[str, Any], operator.or_]
    topic: str
    rating: dict[str, Any]


def _call(name: str, **args: Any) -> dict[str, Any]:
    return {"name": name, "args": args}


def react_graph(script: list[Any], tools: list[BaseTool], *, system: str | None = None) -> Any:
    """llm -> (tool calls?) -> tools -> llm ... -> END, compiled with an in-memory saver."""
    model = resolve_model({"fake": script})
    builder = StateGraph(ChatState)
    builder.add_node(
        "llm", make_llm_node(model, system=system, tools=tools, structured_output=None)
    )
    builder.add_node("tools", make_tools_node(tools))
    builder.add_edge(START, "llm")
    builder.add_conditional_edges("llm", tools_condition)
    builder.add_edge("tools", "llm")
    return builder.compile(checkpointer=InMemorySaver())


def _thread(name: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": name}}


# --- the ReAct loop -----------------------------------------------------------------------


async def test_react_graph_calls_the_calculator_and_answers() -> None:
    script = [
        {"content": "", "tool_calls": [_call("calculator", expression="2+3*4")]},
        "The answer is 14",
    ]
    graph = react_graph(script, resolve_tools(["calculator"]), system="Be exact.")
    result = await graph.ainvoke({"messages": [HumanMessage("What is 2+3*4?")]}, _thread("t1"))
    messages = result["messages"]
    assert [type(m).__name__ for m in messages] == [
        "HumanMessage",
        "AIMessage",
        "ToolMessage",
        "AIMessage",
    ]
    tool_message = messages[2]
    assert isinstance(tool_message, ToolMessage)
    assert tool_message.content == "14"
    assert tool_message.tool_call_id == messages[1].tool_calls[0]["id"] == "call_0_0"
    assert messages[-1].content == "The answer is 14"
    # The system prompt is sent to the model, not stored in the state.
    assert not any(isinstance(m, SystemMessage) for m in messages)
    state = await graph.aget_state(_thread("t1"))
    assert state.values["messages"][-1].content == "The answer is 14"


async def test_a_failing_tool_becomes_an_error_tool_message() -> None:
    script = [
        {"tool_calls": [_call("calculator", expression="1/0")]},
        "Division by zero is undefined.",
    ]
    graph = react_graph(script, resolve_tools(["calculator"]))
    result = await graph.ainvoke({"messages": [HumanMessage("1/0?")]}, _thread("t2"))
    tool_message = result["messages"][2]
    assert isinstance(tool_message, ToolMessage)
    assert tool_message.status == "error"
    assert "cannot evaluate '1/0': division by zero" in str(tool_message.content)
    assert result["messages"][-1].content == "Division by zero is undefined."


async def test_an_exception_in_a_user_tool_is_reported_not_raised() -> None:
    script = [{"tool_calls": [_call("explode", reason="testing")]}, "It failed."]
    graph = react_graph(script, resolve_tools(["tests.workflows.toolbox:explode"]))
    result = await graph.ainvoke({"messages": [HumanMessage("go")]}, _thread("t3"))
    tool_message = result["messages"][2]
    assert isinstance(tool_message, ToolMessage)
    assert "exploded: testing" in str(tool_message.content)


async def test_messages_stream_mode_yields_several_token_chunks() -> None:
    script = [
        {"tool_calls": [_call("calculator", expression="2+3*4")]},
        "The answer is 14",
    ]
    graph = react_graph(script, resolve_tools(["calculator"]))
    tokens: list[str] = []
    async for chunk, metadata in graph.astream(
        {"messages": [HumanMessage("What is 2+3*4?")]}, _thread("t4"), stream_mode="messages"
    ):
        from_llm = metadata["langgraph_node"] == "llm"
        if isinstance(chunk, AIMessageChunk) and from_llm and chunk.content:
            tokens.append(str(chunk.content))
    assert tokens == ["The ", "answer ", "is ", "14"]


async def test_system_prompt_is_rendered_from_the_state() -> None:
    seen: list[list[BaseMessage]] = []

    class Recorder(AsyncCallbackHandler):
        async def on_chat_model_start(
            self,
            serialized: dict[str, Any],
            messages: list[list[BaseMessage]],
            *,
            run_id: UUID,
            **kwargs: Any,
        ) -> None:
            seen.extend(messages)

    model = resolve_model("fake:echo")
    node = make_llm_node(
        model, system="You write about {topic}.{missing}", tools=[], structured_output=None
    )
    builder = StateGraph(ChatState)
    builder.add_node("llm", node)
    builder.add_edge(START, "llm")
    builder.add_edge("llm", END)
    graph = builder.compile()
    result = await graph.ainvoke(
        {"messages": [HumanMessage("hello")], "topic": "weaving"},
        {"callbacks": [Recorder()]},
    )
    assert result["messages"][-1].content == "hello"
    assert seen[0][0] == SystemMessage("You write about weaving.")
    assert seen[0][1].content == "hello"


async def test_structured_output_writes_the_dict_to_the_output_key() -> None:
    model = resolve_model({"fake": [{"title": "Weft", "score": 3}]})
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["title", "score"],
    }
    builder = StateGraph(ChatState)
    builder.add_node(
        "rate",
        make_llm_node(model, system=None, tools=[], structured_output=schema, output_key="rating"),
    )
    builder.add_edge(START, "rate")
    builder.add_edge("rate", END)
    result = await builder.compile().ainvoke({"messages": [HumanMessage("rate weft")]})
    assert result["rating"] == {"title": "Weft", "score": 3}
    assert len(result["messages"]) == 1


def test_an_llm_node_cannot_have_tools_and_structured_output() -> None:
    with pytest.raises(ToolError) as caught:
        make_llm_node(
            resolve_model("fake:echo"),
            system=None,
            tools=resolve_tools(["calculator"]),
            structured_output={"type": "object"},
        )
    assert str(caught.value) == "an llm node cannot have both tools and structured_output"


# --- the note tool --------------------------------------------------------------------------


async def test_note_tool_sets_and_gets_through_the_graph_state() -> None:
    script = [
        {"tool_calls": [_call("note", action="set", key="color", value="blue")]},
        {"tool_calls": [_call("note", action="get", key="color")]},
        {"tool_calls": [_call("note", action="get", key="size"), _call("note", action="list")]},
        "Noted.",
    ]
    graph = react_graph(script, resolve_tools(["note"]))
    result = await graph.ainvoke({"messages": [HumanMessage("remember blue")]}, _thread("n1"))
    assert result["notes"] == {"color": "blue"}
    tool_texts = [m.content for m in result["messages"] if isinstance(m, ToolMessage)]
    assert tool_texts == [
        "Saved note 'color'.",
        "blue",
        "No note named 'size'. Notes: color.",
        "color: blue",
    ]
    assert result["messages"][-1].content == "Noted."


async def test_note_tool_writes_its_message_under_a_custom_messages_key() -> None:
    class HistoryState(TypedDict, total=False):
        history: Annotated[list[BaseMessage], add_messages]
        notes: Annotated[dict[str, Any], operator.or_]

    tools = resolve_tools(["note"])
    model = resolve_model(
        {"fake": [{"tool_calls": [_call("note", action="set", key="k", value="v")]}, "ok"]}
    )
    builder = StateGraph(HistoryState)
    builder.add_node(
        "llm",
        make_llm_node(
            model,
            system=None,
            tools=tools,
            structured_output=None,
            input_key="history",
            output_key="history",
        ),
    )
    builder.add_node("tools", make_tools_node(tools, messages_key="history"))
    builder.add_edge(START, "llm")
    builder.add_conditional_edges("llm", lambda s: tools_condition(s, messages_key="history"))
    builder.add_edge("tools", "llm")
    result = await builder.compile().ainvoke({"history": [HumanMessage("save")]})
    assert result["notes"] == {"k": "v"}
    assert [m.content for m in result["history"]][2:] == ["Saved note 'k'.", "ok"]


async def test_note_tool_errors_are_tool_messages() -> None:
    script = [{"tool_calls": [_call("note", action="set", key="k")]}, "oops"]
    graph = react_graph(script, resolve_tools(["note"]))
    result = await graph.ainvoke({"messages": [HumanMessage("x")]}, _thread("n3"))
    assert "action 'set' needs a value" in str(result["messages"][2].content)
    assert not result.get("notes")


# --- builtin tools --------------------------------------------------------------------------


def test_builtin_tools_have_names_descriptions_and_schemas() -> None:
    assert sorted(BUILTIN_TOOLS) == ["calculator", "current_time", "note"]
    for name, tool in BUILTIN_TOOLS.items():
        assert tool.name == name
        assert len(tool.description) > 30
    assert BUILTIN_TOOLS["calculator"].args["expression"]["type"] == "string"
    # The injected state and tool call id are hidden from the model.
    note_schema = convert_to_openai_tool(BUILTIN_TOOLS["note"])["function"]["parameters"]
    assert set(note_schema["properties"]) == {
        "action",
        "key",
        "value",
    }


@pytest.mark.parametrize(
    ("expression", "result"),
    [
        ("2+3*4", "14"),
        ("(2+3)*4", "20"),
        ("10/4", "2.5"),
        ("7//2", "3"),
        ("7 % 3", "1"),
        ("2**10", "1024"),
        ("-3 + +1", "-2"),
        ("sqrt(16)", "4"),
        ("round(pi, 2)", "3.14"),
        ("max(1, 5, 3) - min(4, 2)", "3"),
        ("abs(-2.5)", "2.5"),
        ("log(e)", "1"),
        ("exp(0) + sin(0) + cos(0) + tan(0)", "2"),
        ("0.1 + 0.2", "0.3"),
    ],
)
def test_calculator(expression: str, result: str) -> None:
    assert calculator(expression) == result
    assert BUILTIN_TOOLS["calculator"].invoke({"expression": expression}) == result


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("1/0", "cannot evaluate '1/0': division by zero"),
        ("5 % 0", "cannot evaluate '5 % 0': division by zero"),
        (
            "__import__('os')",
            "cannot evaluate \"__import__('os')\": unknown function '__import__'; "
            "functions: abs, cos, exp, log, max, min, round, sin, sqrt, tan",
        ),
        (
            "9**9**9",
            "cannot evaluate '9**9**9': the exponent is too large: "
            "9 ** 387420489 would have more than 300 digits",
        ),
        (
            "10**300 * 10",
            "cannot evaluate '10**300 * 10': the result is too large (more than 300 digits)",
        ),
        ("exp(1000)", "cannot evaluate 'exp(1000)': the result is too large"),
        (
            "sqrt(-1)",
            "cannot evaluate 'sqrt(-1)': sqrt() of these arguments is undefined "
            "(math domain error)",
        ),
        ("(-8) ** 0.5", "is not a real number"),
        ("x + 1", "cannot evaluate 'x + 1': unknown name 'x'; constants: e, pi"),
        ("'a' * 3", "cannot evaluate \"'a' * 3\": 'a' is not a number"),
        ("True + 1", "cannot evaluate 'True + 1': True is not a number"),
        ("(1).real", "'1 .real' is not allowed"),
        ("[1, 2]", "'[1, 2]' is not allowed"),
        ("round(1.5, ndigits=1)", "round() takes positional arguments only"),
        ("min()", "wrong arguments to min()"),
        ("2 +", "cannot parse '2 +': invalid syntax"),
        ("", "the expression is empty"),
        ("1+" * 300 + "1", "the expression is longer than 500 characters"),
    ],
)
def test_calculator_rejects(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        calculator(expression)


def test_current_time_is_iso_8601_in_the_zone() -> None:
    utc = datetime.fromisoformat(current_time())
    assert utc.utcoffset() == timedelta(0)
    tokyo = datetime.fromisoformat(BUILTIN_TOOLS["current_time"].invoke({"timezone": "Asia/Tokyo"}))
    assert tokyo.utcoffset() == timedelta(hours=9)
    assert abs((tokyo - utc).total_seconds()) < 60


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", ""])
def test_current_time_rejects_an_unknown_zone(zone: str) -> None:
    with pytest.raises(ValueError, match=r"^unknown time zone") as caught:
        current_time(zone)
    assert str(caught.value) == (
        f"unknown time zone {zone!r}; use an IANA name such as 'UTC', "
        f"'Europe/Paris' or 'America/New_York'"
    )


# --- tool references ------------------------------------------------------------------------


def test_tool_error_is_a_400_weft_error() -> None:
    assert issubclass(ToolError, WeftError)
    assert ToolError.status_code == 400


def test_resolve_tools_builds_a_schema_from_a_module_function() -> None:
    (add,) = resolve_tools(["tests.workflows.toolbox:add"])
    assert add.name == "add"
    assert add.description.startswith("Add two integers.")
    schema = convert_to_openai_tool(add)["function"]["parameters"]
    assert schema["required"] == ["a"]
    assert schema["properties"]["a"]["type"] == "integer"
    assert schema["properties"]["b"]["default"] == 2
    assert add.invoke({"a": 40}) == 42


async def test_resolve_tools_handles_async_functions_and_ready_tools() -> None:
    shout, counter, calc = resolve_tools(
        ["tests.workflows.toolbox:shout", "tests.workflows.toolbox:ready_made", "calculator"]
    )
    assert await shout.ainvoke({"text": "hi"}) == "HI"
    assert counter.name == "word_count"
    assert counter.invoke({"text": "a b c"}) == 3
    assert calc is BUILTIN_TOOLS["calculator"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            "search",
            "unknown builtin tool 'search'; builtin tools: calculator, current_time, note, "
            "or give 'package.module:function'",
        ),
        (
            "tests.workflows.nowhere:find",
            "tool 'tests.workflows.nowhere:find': cannot import module "
            "'tests.workflows.nowhere': No module named 'tests.workflows.nowhere'",
        ),
        (
            "tests.workflows.toolbox:missing",
            "tool 'tests.workflows.toolbox:missing': module 'tests.workflows.toolbox' "
            "has no attribute 'missing'",
        ),
        (
            "tests.workflows.toolbox:NOT_CALLABLE",
            "tool 'tests.workflows.toolbox:NOT_CALLABLE': 'NOT_CALLABLE' is a int, "
            "not a function or a langchain BaseTool",
        ),
        (
            "tests.workflows.toolbox:Widget",
            "tool 'tests.workflows.toolbox:Widget': 'Widget' is a type, "
            "not a function or a langchain BaseTool",
        ),
        (
            "tests.workflows.toolbox:undocumented",
            "tool 'tests.workflows.toolbox:undocumented': function 'undocumented' has no "
            "docstring; the docstring is the description the model sees, so write one",
        ),
        (
            "tests/workflows/toolbox.py:add",
            "malformed tool reference 'tests/workflows/toolbox.py:add'; expected "
            "'package.module:function', for example 'my_tools.search:web_search', "
            "or a builtin: calculator, current_time, note",
        ),
        (
            "toolbox:",
            "malformed tool reference 'toolbox:'; expected 'package.module:function', "
            "for example 'my_tools.search:web_search', or a builtin: calculator, "
            "current_time, note",
        ),
    ],
)
def test_bad_tool_references(ref: str, message: str) -> None:
    with pytest.raises(ToolError) as caught:
        resolve_tools(["calculator", ref])
    assert str(caught.value) == message


def test_two_tools_with_the_same_name_are_refused() -> None:
    with pytest.raises(ToolError) as caught:
        resolve_tools(["tests.workflows.toolbox:add", "tests.workflows.toolbox:add"])
    assert str(caught.value) == (
        "tools 'tests.workflows.toolbox:add' and 'tests.workflows.toolbox:add' have the same "
        "name 'add'; the model could not tell them apart"
    )


async def test_a_tool_call_for_a_tool_not_in_the_node_is_reported() -> None:
    script = [{"tool_calls": [_call("search", query="weft")]}, "I cannot search."]
    graph = react_graph(script, resolve_tools(["calculator"]))
    result = await graph.ainvoke({"messages": [HumanMessage("find weft")]}, _thread("u1"))
    tool_message = result["messages"][2]
    assert isinstance(tool_message, ToolMessage)
    assert "search" in str(tool_message.content)
    assert isinstance(result["messages"][-1], AIMessage)
