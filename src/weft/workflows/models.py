"""Chat models for workflow ``llm`` nodes.

A model is named by a reference:

- ``"provider:model"`` (``openai:gpt-4o-mini``, ``anthropic:claude-3-5-haiku-latest``,
  ``ollama:llama3.1``): built by LangChain's ``init_chat_model`` once the provider's API key
  variable is known to be set.
- ``"fake:echo"``: an offline model that answers with the text of the last human message.
- ``{"fake": [reply, ...]}``: an offline model that plays a script. A reply is a string, a
  mapping ``{"content": str, "tool_calls": [{"name": str, "args": {...}}]}`` (only those two
  keys), or any other mapping or list, which is the reply to a structured-output request.

The fake model is deterministic: which scripted reply it gives is a pure function of the
messages it is given (the number of AI messages already among them, clamped to the last
reply), so a conversation replays identically in any process.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolCall,
    ToolCallChunk,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, field_validator

from weft.errors import WeftError


class ModelError(WeftError):
    """A model reference cannot be turned into a chat model."""

    status_code = 400


@dataclass(frozen=True)
class _Provider:
    key_variable: str | None
    package: str
    extra: str | None


PROVIDERS: dict[str, _Provider] = {
    "anthropic": _Provider("ANTHROPIC_API_KEY", "langchain-anthropic", "anthropic"),
    "google_genai": _Provider("GOOGLE_API_KEY", "langchain-google-genai", None),
    "groq": _Provider("GROQ_API_KEY", "langchain-groq", None),
    "mistralai": _Provider("MISTRAL_API_KEY", "langchain-mistralai", None),
    "ollama": _Provider(None, "langchain-ollama", "ollama"),
    "openai": _Provider("OPENAI_API_KEY", "langchain-openai", "openai"),
}
"""Providers weft knows: the API key variable, the pip package and the weft extra."""

FAKE_VARIANTS = ("fake:echo",)


def _supported() -> str:
    return ", ".join([*sorted(PROVIDERS), "fake"])


def resolve_model(
    ref: str | dict[str, Any], *, env: Mapping[str, str] | None = None
) -> BaseChatModel:
    """Build the chat model named by ``ref``; raise ModelError saying what to fix.

    ``env`` is where the provider's API key variable is looked up (default ``os.environ``).
    """
    if isinstance(ref, dict):
        return _resolve_fake_script(ref)
    if not isinstance(ref, str):
        raise ModelError(
            f"model must be a string like 'openai:gpt-4o-mini' or a mapping "
            f"{{fake: [reply, ...]}}, not {type(ref).__name__}"
        )
    provider, sep, name = ref.strip().partition(":")
    provider, name = provider.strip(), name.strip()
    if not sep or not provider or not name:
        raise ModelError(
            f"model {ref!r} must have the form 'provider:model', for example "
            f"'openai:gpt-4o-mini' or 'fake:echo'"
        )
    if provider == "fake":
        if name == "echo":
            return FakeChatModel()
        raise ModelError(
            f"unknown fake model {ref!r}; fake variants: {', '.join(FAKE_VARIANTS)}, "
            f"or a mapping {{fake: [reply, ...]}} for scripted replies"
        )
    spec = PROVIDERS.get(provider)
    if spec is None:
        raise ModelError(
            f"unknown model provider {provider!r} in {ref!r}; supported providers: {_supported()}"
        )
    environ = os.environ if env is None else env
    if spec.key_variable is not None and not environ.get(spec.key_variable):
        raise ModelError(
            f"model {ref!r} needs the environment variable {spec.key_variable}, which is not set"
        )
    from langchain.chat_models import init_chat_model

    try:
        return init_chat_model(name, model_provider=provider)
    except ImportError as exc:
        install = f"pip install {spec.package}"
        if spec.extra is not None:
            install = f"pip install 'weft[{spec.extra}]' (or {install})"
        raise ModelError(
            f"model {ref!r} needs the {spec.package} package, which is not installed: {install}"
        ) from exc
    except (ValueError, TypeError) as exc:
        raise ModelError(f"model {ref!r} cannot be created: {exc}") from exc


def _resolve_fake_script(ref: dict[str, Any]) -> FakeChatModel:
    if set(ref) != {"fake"}:
        raise ModelError(
            f"a model given as a mapping must be {{fake: [reply, ...]}}, got keys "
            f"{sorted(map(str, ref))}; a real model is a string like 'openai:gpt-4o-mini'"
        )
    replies = ref["fake"]
    if not isinstance(replies, list) or not replies:
        raise ModelError("model {fake: ...} needs a non-empty list of replies")
    for position, reply in enumerate(replies):
        try:
            _parse_reply(reply)
        except ValueError as exc:
            raise ModelError(f"model {{fake: ...}}: reply {position}: {exc}") from exc
    return FakeChatModel(replies=replies)


# --- the fake model -----------------------------------------------------------------------


@dataclass
class _Reply:
    content: str
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


_MESSAGE_KEYS = {"content", "tool_calls"}


def _parse_reply(reply: Any) -> _Reply:
    """Turn one scripted reply into content and tool calls; ValueError when malformed."""
    if isinstance(reply, str):
        return _Reply(reply)
    if isinstance(reply, dict) and reply and set(reply) <= _MESSAGE_KEYS:
        content = reply.get("content", "")
        if not isinstance(content, str):
            raise ValueError(f"'content' must be a string, not {type(content).__name__}")
        calls = reply.get("tool_calls", [])
        if not isinstance(calls, list):
            raise ValueError("'tool_calls' must be a list of {name, args} mappings")
        parsed: list[tuple[str, dict[str, Any]]] = []
        for n, call in enumerate(calls):
            if not isinstance(call, dict) or not isinstance(call.get("name"), str):
                raise ValueError(f"tool call {n} must be a mapping with a string 'name'")
            unknown = set(call) - {"name", "args"}
            if unknown:
                raise ValueError(
                    f"tool call {n} has unknown keys {sorted(unknown)}; allowed: name, args"
                )
            args = call.get("args", {})
            if not isinstance(args, dict):
                raise ValueError(f"tool call {n}: 'args' must be a mapping")
            parsed.append((call["name"], args))
        return _Reply(content, parsed)
    if isinstance(reply, dict | list):
        # A structured-output reply: the model answers with its JSON text.
        return _Reply(json.dumps(reply))
    raise ValueError(
        f"a reply must be a string, a mapping {{content, tool_calls}} or a mapping/list for "
        f"structured output, not {type(reply).__name__}"
    )


_TOKEN = re.compile(r"\S+\s*|\s+")


def _turn(messages: Sequence[BaseMessage]) -> int:
    return sum(isinstance(m, AIMessage) for m in messages)


def _last_human_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return str(message.text)
    return ""


class FakeChatModel(BaseChatModel):
    """A deterministic, offline chat model that streams.

    ``replies=None`` echoes the last human message; otherwise the reply for a call is
    ``replies[min(number of AI messages in the input, len(replies) - 1)]``.
    """

    replies: list[Any] | None = None

    @field_validator("replies")
    @classmethod
    def _check_replies(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None:
            if not value:
                raise ValueError("replies must not be empty")
            for reply in value:
                _parse_reply(reply)
        return value

    @property
    def _llm_type(self) -> str:
        return "weft-fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"replies": self.replies}

    def _reply(self, messages: Sequence[BaseMessage]) -> tuple[int, _Reply]:
        turn = _turn(messages)
        if self.replies is None:
            return turn, _Reply(_last_human_text(messages))
        return turn, _parse_reply(self.replies[min(turn, len(self.replies) - 1)])

    @staticmethod
    def _call_id(turn: int, n: int) -> str:
        return f"call_{turn}_{n}"

    def _message(self, messages: Sequence[BaseMessage]) -> AIMessage:
        turn, reply = self._reply(messages)
        calls = [
            ToolCall(name=name, args=args, id=self._call_id(turn, n), type="tool_call")
            for n, (name, args) in enumerate(reply.tool_calls)
        ]
        return AIMessage(
            content=reply.content,
            tool_calls=calls,
            response_metadata={"model_name": "fake"},
        )

    def _chunks(self, messages: Sequence[BaseMessage]) -> list[ChatGenerationChunk]:
        turn, reply = self._reply(messages)
        tokens: list[AIMessageChunk] = [
            AIMessageChunk(content=token) for token in _TOKEN.findall(reply.content)
        ]
        if reply.tool_calls:
            tokens.append(
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        ToolCallChunk(
                            name=name,
                            args=json.dumps(args),
                            id=self._call_id(turn, n),
                            index=n,
                            type="tool_call_chunk",
                        )
                        for n, (name, args) in enumerate(reply.tool_calls)
                    ],
                )
            )
        if not tokens:
            tokens.append(AIMessageChunk(content=""))
        tokens[-1].response_metadata = {"model_name": "fake"}
        tokens[-1].chunk_position = "last"
        return [ChatGenerationChunk(message=token) for token in tokens]

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._message(messages))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return self._generate(messages, stop)

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        # BaseChatModel reports each chunk to the callbacks (on_llm_new_token) itself.
        yield from self._chunks(messages)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(messages):
            yield chunk

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools; the script is followed regardless, the tools are only recorded."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | BaseModel]:
        """Parse the scripted reply as JSON and check it against ``schema``."""
        parse = partial(_parse_structured, schema=schema, include_raw=include_raw)
        return self | RunnableLambda(parse, name="FakeStructuredOutput")


def _parse_structured(
    message: AIMessage, *, schema: dict[str, Any] | type, include_raw: bool
) -> Any:
    try:
        parsed = _validate_structured(str(message.text), schema)
    except ValueError as exc:
        if include_raw:
            return {"raw": message, "parsed": None, "parsing_error": exc}
        raise
    if include_raw:
        return {"raw": message, "parsed": parsed, "parsing_error": None}
    return parsed


def _validate_structured(text: str, schema: dict[str, Any] | type) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"the fake model's reply is not JSON, so it cannot be structured output: {text!r}"
        ) from exc
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema.model_validate(value)
    if isinstance(schema, dict) and schema.get("type", "object") == "object":
        if not isinstance(value, dict):
            raise ValueError(f"structured output must be an object, the fake model replied {text}")
        missing = [key for key in schema.get("required", []) if key not in value]
        if missing:
            raise ValueError(
                f"structured output lacks required keys {missing}; the fake model replied {text}"
            )
    return value


__all__ = ["PROVIDERS", "FakeChatModel", "ModelError", "resolve_model"]
