"""Plain Python steps of the session examples' workflows (offline and deterministic)."""

from __future__ import annotations

from typing import Any

NOTES = (
    "costs fell by half in ten years",
    "installed capacity doubled since 2019",
    "storage is the main bottleneck",
)


def collect(state: dict[str, Any]) -> dict[str, Any]:
    """Findings about the topic: a fixed set of notes, named after it."""
    topic = state.get("topic") or "the topic"
    findings = [f"{topic}: {note}" for note in NOTES]
    return {"findings": findings, "count": len(findings)}


def write_report(state: dict[str, Any]) -> dict[str, Any]:
    """A short report from the summary, the outline's sections and the findings."""
    lines = [f"# {state.get('topic') or 'Report'}"]
    if state.get("summary"):
        lines.append(f"{state['summary']} (confidence: {state.get('confidence') or 'n/a'})")
    for section in state.get("sections") or []:
        lines.append(f"## {section}")
    lines.extend(f"- {finding}" for finding in state.get("findings") or [])
    return {"report": "\n".join(lines)}


def check_facts(state: dict[str, Any]) -> dict[str, Any]:
    return {"checked": [f"checked: {finding}" for finding in state.get("findings") or []]}


def fetch_pages(state: dict[str, Any]) -> dict[str, Any]:
    """There is no network in the examples: fail the same way every time."""
    raise ConnectionError(f"cannot fetch pages about {state.get('topic')!r}: no network")


def take_draft(state: dict[str, Any]) -> dict[str, Any]:
    """Copy the model's last reply into the `draft` field the reviewer sees."""
    return {"draft": state["messages"][-1].content}


def publish(state: dict[str, Any]) -> dict[str, Any]:
    return {"result": f"published: {state['draft']}"}


def discard(state: dict[str, Any]) -> dict[str, Any]:
    return {"result": f"not published (reviewer said {state['approval']!r})"}
