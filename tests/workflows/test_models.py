"""Model references and the offline fake chat model."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from pydantic import BaseModel

from weft.errors import WeftError
from weft.workflows.models import FakeChatModel, ModelError, resolve_model

SCRIPT: dict[str, Any] = {
    "fake": [
        {
            "content": "Let me compute that.",
            "tool_calls": [{"name": "calculator", "args": {"expression": "2+3*4"}}],
        },
        "The answer is 14",
    ]
}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# --- references and their errors -------------------------------------------------------------


def test_model_error_is_a_400_weft_error() -> None:
    assert issubclass(ModelError, WeftError)
    assert ModelError.status_code == 400


@pytest.mark.parametrize(
    ("ref", "variable"),
    [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY"),
        ("anthropic:claude-3-5-haiku-latest", "ANTHROPIC_API_KEY"),
        ("google_genai:gemini-2.0-flash", "GOOGLE_API_KEY"),
        ("mistralai:mistral-small-latest", "MISTRAL_API_KEY"),
        ("groq:llama-3.1-8b-instant", "GROQ_API_KEY"),
    ],
)
def test_missing_api_key_names_the_variable_and_the_model(ref: str, variable: str) -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model(ref, env={})
    assert str(caught.value) == (
        f"model {ref!r} needs the environment variable {variable}, which is not set"
    )


def test_an_empty_api_key_counts_as_missing() -> None:
    with pytest.raises(ModelError, match="OPENAI_API_KEY, which is not set"):
        resolve_model("openai:gpt-4o-mini", env={"OPENAI_API_KEY": ""})


def test_unknown_provider_lists_the_supported_ones() -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model("acme:brain-1", env={})
    assert str(caught.value) == (
        "unknown model provider 'acme' in 'acme:brain-1'; supported providers: "
        "anthropic, google_genai, groq, mistralai, ollama, openai, fake"
    )


@pytest.mark.parametrize("ref", ["gpt-4o-mini", "openai:", ":gpt-4o", ""])
def test_a_ref_without_provider_and_model_gives_an_example(ref: str) -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model(ref)
    assert str(caught.value) == (
        f"model {ref!r} must have the form 'provider:model', for example "
        f"'openai:gpt-4o-mini' or 'fake:echo'"
    )


def test_a_model_that_is_neither_string_nor_mapping() -> None:
    with pytest.raises(ModelError, match="not int"):
        resolve_model(3)  # type: ignore[arg-type]


@pytest.mark.skipif(_installed("langchain_ollama"), reason="langchain-ollama is installed")
def test_missing_provider_package_names_the_extra() -> None:
    # Ollama needs no key, so the missing package is the first problem found.
    with pytest.raises(ModelError) as caught:
        resolve_model("ollama:llama3.1", env={})
    assert str(caught.value) == (
        "model 'ollama:llama3.1' needs the langchain-ollama package, which is not installed: "
        "pip install 'weft[ollama]' (or pip install langchain-ollama)"
    )


@pytest.mark.skipif(_installed("langchain_openai"), reason="langchain-openai is installed")
def test_missing_openai_package_once_the_key_is_set() -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model("openai:gpt-4o-mini", env={"OPENAI_API_KEY": "sk-test"})
    assert "needs the langchain-openai package" in str(caught.value)
    assert "pip install 'weft[openai]'" in str(caught.value)


@pytest.mark.skipif(_installed("langchain_groq"), reason="langchain-groq is installed")
def test_missing_package_without_a_weft_extra_names_the_pip_package() -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model("groq:llama-3.1-8b-instant", env={"GROQ_API_KEY": "gsk-test"})
    assert str(caught.value).endswith("which is not installed: pip install langchain-groq")


def test_unknown_fake_variant_lists_the_variants() -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model("fake:parrot")
    assert str(caught.value) == (
        "unknown fake model 'fake:parrot'; fake variants: fake:echo, "
        "or a mapping {fake: [reply, ...]} for scripted replies"
    )


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        (
            {"openai": "gpt-4o"},
            "a model given as a mapping must be {fake: [reply, ...]}, got keys ['openai']; "
            "a real model is a string like 'openai:gpt-4o-mini'",
        ),
        ({"fake": []}, "model {fake: ...} needs a non-empty list of replies"),
        ({"fake": "hello"}, "model {fake: ...} needs a non-empty list of replies"),
        (
            {"fake": ["ok", 7]},
            "model {fake: ...}: reply 1: a reply must be a string, a mapping "
            "{content, tool_calls} or a mapping/list for structured output, not int",
        ),
        (
            {"fake": [{"content": 5}]},
            "model {fake: ...}: reply 0: 'content' must be a string, not int",
        ),
        (
            {"fake": [{"tool_calls": [{"args": {}}]}]},
            "model {fake: ...}: reply 0: tool call 0 must be a mapping with a string 'name'",
        ),
        (
            {"fake": [{"tool_calls": [{"name": "calculator", "args": "2+2"}]}]},
            "model {fake: ...}: reply 0: tool call 0: 'args' must be a mapping",
        ),
        (
            {"fake": [{"tool_calls": [{"name": "calculator", "id": "x"}]}]},
            "model {fake: ...}: reply 0: tool call 0 has unknown keys ['id']; allowed: name, args",
        ),
        (
            {"fake": [{"tool_calls": "calculator"}]},
            "model {fake: ...}: reply 0: 'tool_calls' must be a list of {name, args} mappings",
        ),
    ],
)
def test_bad_fake_scripts(ref: dict[str, Any], message: str) -> None:
    with pytest.raises(ModelError) as caught:
        resolve_model(ref)
    assert str(caught.value) == message


def test_fake_model_built_directly_validates_its_replies() -> None:
    with pytest.raises(ValueError, match="not int"):
        FakeChatModel(replies=[1])


# --- the fake model --------------------------------------------------------------------------


async def test_echo_replies_with_the_last_human_message() -> None:
    model = resolve_model("fake:echo")
    assert isinstance(model, FakeChatModel)
    reply = await model.ainvoke(
        [HumanMessage("first"), AIMessage("first"), HumanMessage("hello there")]
    )
    assert reply.content == "hello there"
    assert (await model.ainvoke([])).content == ""


async def test_fake_model_streams_several_chunks() -> None:
    model = resolve_model({"fake": ["The answer is 14"]})
    chunks = [chunk async for chunk in model.astream([HumanMessage("2+3*4?")])]
    assert all(isinstance(chunk, AIMessageChunk) for chunk in chunks)
    texts = [chunk.content for chunk in chunks if chunk.content]
    assert texts == ["The ", "answer ", "is ", "14"]
    assert chunks[-1].chunk_position == "last"


def test_fake_model_streams_synchronously_too() -> None:
    model = resolve_model("fake:echo")
    texts = [chunk.content for chunk in model.stream("one two three") if chunk.content]
    assert texts == ["one ", "two ", "three"]


async def test_script_follows_the_conversation_and_clamps_to_the_last_reply() -> None:
    model = resolve_model({"fake": ["one", "two"]})
    history: list[Any] = [HumanMessage("a")]
    assert (await model.ainvoke(history)).content == "one"
    history += [AIMessage("one"), HumanMessage("b")]
    assert (await model.ainvoke(history)).content == "two"
    history += [AIMessage("two"), HumanMessage("c")]
    assert (await model.ainvoke(history)).content == "two"
    # A fresh model (as in another process) replays the same conversation identically.
    assert (await resolve_model({"fake": ["one", "two"]}).ainvoke(history[:3])).content == "two"


async def test_tool_calls_come_out_with_deterministic_ids() -> None:
    model = resolve_model(SCRIPT)
    reply = await model.ainvoke([HumanMessage("What is 2+3*4?")])
    assert isinstance(reply, AIMessage)
    assert reply.content == "Let me compute that."
    assert reply.tool_calls == [
        {
            "name": "calculator",
            "args": {"expression": "2+3*4"},
            "id": "call_0_0",
            "type": "tool_call",
        }
    ]
    streamed = [chunk async for chunk in model.astream([HumanMessage("What is 2+3*4?")])]
    merged = streamed[0]
    for chunk in streamed[1:]:
        merged = merged + chunk
    assert merged.tool_calls == reply.tool_calls
    assert streamed[-1].tool_call_chunks[0]["id"] == "call_0_0"
    # The second turn answers in text.
    history = [
        HumanMessage("What is 2+3*4?"),
        reply,
        ToolMessage("14", tool_call_id="call_0_0"),
    ]
    assert (await model.ainvoke(history)).content == "The answer is 14"


async def test_several_tool_calls_in_one_reply_get_distinct_ids() -> None:
    model = resolve_model(
        {"fake": [{"tool_calls": [{"name": "a"}, {"name": "b", "args": {"x": 1}}]}]}
    )
    reply = await model.ainvoke([HumanMessage("go"), AIMessage("earlier")])
    assert isinstance(reply, AIMessage)
    assert [(call["name"], call["args"], call["id"]) for call in reply.tool_calls] == [
        ("a", {}, "call_1_0"),
        ("b", {"x": 1}, "call_1_1"),
    ]


async def test_bound_tools_still_follow_the_script() -> None:
    def calculator(expression: str) -> str:
        """Evaluate."""
        return expression

    bound = resolve_model(SCRIPT).bind_tools([calculator])
    reply = await bound.ainvoke([HumanMessage("What is 2+3*4?")])
    assert reply.tool_calls[0]["name"] == "calculator"
    assert bound.kwargs["tools"][0]["function"]["name"] == "calculator"  # type: ignore[attr-defined]


async def test_structured_output_returns_the_scripted_dict() -> None:
    model = resolve_model({"fake": [{"title": "Weft", "score": 3}]})
    schema = {"type": "object", "properties": {}, "required": ["title", "score"]}
    assert await model.with_structured_output(schema).ainvoke("rate it") == {
        "title": "Weft",
        "score": 3,
    }


async def test_structured_output_checks_required_keys() -> None:
    model = resolve_model({"fake": [{"title": "Weft"}]})
    schema = {"type": "object", "required": ["title", "score"]}
    with pytest.raises(ValueError, match=r"lacks required keys \['score'\]"):
        await model.with_structured_output(schema).ainvoke("rate it")
    raw = await model.with_structured_output(schema, include_raw=True).ainvoke("rate it")
    assert isinstance(raw, dict)
    assert raw["parsed"] is None
    assert "score" in str(raw["parsing_error"])


async def test_structured_output_needs_a_json_reply() -> None:
    model = resolve_model({"fake": ["not json"]})
    with pytest.raises(ValueError, match="reply is not JSON"):
        await model.with_structured_output({"type": "object"}).ainvoke("x")


async def test_structured_output_with_a_pydantic_schema() -> None:
    class Rating(BaseModel):
        title: str
        score: int

    model = resolve_model({"fake": [{"title": "Weft", "score": 3}]})
    assert await model.with_structured_output(Rating).ainvoke("x") == Rating(title="Weft", score=3)
