"""Sample tool functions that the workflow tests import by reference."""

from __future__ import annotations

from langchain_core.tools import BaseTool, tool


def add(a: int, b: int = 2) -> int:
    """Add two integers.

    Args:
        a: The first number.
        b: The second number.
    """
    return a + b


async def shout(text: str) -> str:
    """Return the text in capitals."""
    return text.upper()


def explode(reason: str) -> str:
    """Always fail, to show how a failing tool is reported."""
    raise RuntimeError(f"exploded: {reason}")


def undocumented(x: int) -> int:
    return x


@tool
def word_count(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


ready_made: BaseTool = word_count

NOT_CALLABLE = 42


class Widget:
    """A class, which is not a tool."""
