"""Plan specs: reading, validation problems with their locations, order, drawing, run-time
expressions and reports."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from weft.plan_checks import PlanSource, load_plan, read_plan, validate_plan, when_roots
from weft.plan_view import critical_path, describe, levels, mermaid
from weft.plans import (
    PlanError,
    PlanRuntimeError,
    PlanSpec,
    RetrySpec,
    Workflow,
    condition_holds,
    referenced_workflows,
    report,
    thread_input,
)
from weft.schema import Plan, PlanThread
from weft.workflows.expressions import Expression

WORKFLOWS = {
    "collector": Workflow("collector", None),
    "analyst": Workflow("analyst", frozenset({"findings", "topic", "context"})),
    "writer": Workflow("writer", None),
    "00000000-0000-0000-0000-000000000001": Workflow("writer", None),
}

RESEARCH = """\
name: research report
user_id: demo
retries: {max: 2}
threads:
  collect:
    graph_id: collector
    input: {topic: solar}
  outline:
    graph_id: writer
    after: collect
  analyze:
    graph_id: analyst
    inputs_from:
      collect:
        findings: findings
        context.topic: request.topic
    when: "collect.count > `2`"
    timeout: 30
    retries: {backoff: 3}
  draft-report:
    assistant_id: 00000000-0000-0000-0000-000000000001
    after: [analyze, outline]
"""


def problems_of(data: dict[str, Any], workflows: dict[str, Workflow] | None = None) -> list[str]:
    with pytest.raises(PlanError) as info:
        validate_plan(data, PlanSource(), WORKFLOWS if workflows is None else workflows)
    assert str(info.value) == "invalid plan:\n" + "\n".join(info.value.problems)
    assert info.value.status_code == 422
    return info.value.problems


def plan(**threads: dict[str, Any]) -> dict[str, Any]:
    return {"threads": threads}


def spec_of(data: dict[str, Any]) -> PlanSpec:
    return validate_plan(data, PlanSource(), WORKFLOWS)


# --- reading and the spec ----------------------------------------------------------------------


def test_a_valid_file_gives_the_normalised_spec(tmp_path: Path) -> None:
    path = tmp_path / "research.yaml"
    path.write_text(RESEARCH)
    spec = load_plan(path, WORKFLOWS)
    assert list(spec.threads) == ["collect", "outline", "analyze", "draft-report"]
    assert spec.name == "research report"
    assert spec.user_id == "demo"
    assert spec.policy == "strict"
    assert spec.max_parallel == 4
    assert spec.timeout is None
    assert spec.threads["outline"].after == ["collect"]
    assert spec.threads["analyze"].sources == ["collect"]
    assert spec.threads["draft-report"].workflow == "00000000-0000-0000-0000-000000000001"
    assert spec.threads["draft-report"].graph_id is None
    assert spec.retries_of("analyze") == RetrySpec(max=2, backoff=3.0, max_backoff=60.0)
    assert spec.retries_of("collect") == RetrySpec(max=2)
    assert spec.timeout_of("analyze") == 30
    assert spec.timeout_of("collect") is None
    assert spec.dependents() == {
        "collect": ["outline", "analyze"],
        "outline": ["draft-report"],
        "analyze": ["draft-report"],
        "draft-report": [],
    }
    assert spec.descendants("collect") == ["outline", "analyze", "draft-report"]
    assert spec.descendants("draft-report") == []
    dumped = spec.model_dump(mode="json")
    assert json.loads(json.dumps(dumped)) == dumped
    assert PlanSpec.model_validate(dumped) == spec


def test_a_json_body_and_a_json_file_give_the_same_spec(tmp_path: Path) -> None:
    body: dict[str, Any] = {
        "policy": "best_effort",
        "max_parallel": 2,
        "timeout": 5,
        "threads": {"a": {"graph_id": "writer"}, "b": {"graph_id": "writer", "after": "a"}},
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(body))
    from_body = load_plan(body, WORKFLOWS)
    assert from_body == load_plan(path, WORKFLOWS) == load_plan(str(path), WORKFLOWS)
    assert from_body.policy == "best_effort"
    assert from_body.timeout_of("a") == 5
    assert body["threads"]["b"]["after"] == "a"  # the caller's data is left alone


def test_empty_values_take_their_defaults() -> None:
    spec = spec_of(
        {"metadata": None, "retries": None, "threads": {"a": {"graph_id": "writer", "input": None}}}
    )
    assert spec.metadata == {}
    assert spec.retries == RetrySpec()
    assert spec.threads["a"].input == {}


def test_referenced_workflows_tolerates_bad_data() -> None:
    assert referenced_workflows(None) == set()
    assert referenced_workflows({"threads": ["x"]}) == set()
    data = {"threads": {"a": {"graph_id": "g"}, "b": {"assistant_id": "as"}, "c": 3, "d": {}}}
    assert referenced_workflows(data) == {"g", "as"}


def test_overrides_set_values_read_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "research.yaml"
    path.write_text(RESEARCH)
    spec = load_plan(
        path,
        WORKFLOWS,
        [
            "max_parallel=2",
            "policy=best_effort",
            "threads.collect.input.topic=wind power",
            "threads.collect.input.years=[2023, 2024]",
            "threads.outline.timeout=1.5",
            "metadata.project=x",
        ],
    )
    assert spec.max_parallel == 2
    assert spec.policy == "best_effort"
    assert spec.threads["collect"].input == {"topic": "wind power", "years": [2023, 2024]}
    assert spec.threads["outline"].timeout == 1.5
    assert spec.metadata == {"project": "x"}


def test_bad_overrides_are_all_reported() -> None:
    body = {"threads": {"a": {"graph_id": "writer", "after": ["b"]}}}
    with pytest.raises(PlanError) as info:
        read_plan(body, ["max_parallel", "=3", "a..b=1", "x=[1", "threads.a.after.x=1"])
    assert info.value.problems == [
        "--set 'max_parallel': expected KEY=VALUE (KEY a dotted path)",
        "--set '=3': expected KEY=VALUE (KEY a dotted path)",
        "--set 'a..b=1': expected KEY=VALUE (KEY a dotted path)",
        "--set 'x=[1': cannot read the value: expected ',' or ']', but got '<stream end>'",
        "--set 'threads.a.after.x=1': threads.a.after is not a mapping",
    ]


def test_a_problem_in_an_overridden_value_names_the_override(tmp_path: Path) -> None:
    path = tmp_path / "research.yaml"
    path.write_text(RESEARCH)
    with pytest.raises(PlanError) as info:
        load_plan(path, WORKFLOWS, ["threads.outline.timeout=-1", "threads.outline.x.y=1"])
    assert info.value.problems == [
        "--set 'threads.outline.timeout=-1': threads.outline.timeout: "
        "Input should be greater than 0 (got -1)",
        "--set 'threads.outline.x.y=1': threads.outline.x: unknown key 'x' "
        "(allowed: graph_id, assistant_id, input, metadata, after, inputs_from, when, "
        "timeout, retries)",
    ]


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PlanError) as info:
        read_plan(missing)
    assert info.value.problems == [f"{missing}: file not found"]

    broken = tmp_path / "broken.yaml"
    broken.write_text("threads:\n  a: {graph_id: x\n  b: 1\n")
    with pytest.raises(PlanError) as info:
        read_plan(broken)
    [problem] = info.value.problems
    assert problem.startswith(f"{broken}:3: invalid YAML: ")

    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(PlanError) as info:
        read_plan(listed)
    assert info.value.problems == [f"{listed}:1: a plan must be a mapping, not a list"]

    with pytest.raises(PlanError) as info:
        read_plan([1, 2])  # type: ignore[arg-type]
    assert info.value.problems == ["plan: must be a mapping, not a list"]


def test_an_empty_file_needs_threads(tmp_path: Path) -> None:
    path = tmp_path / "empty.yaml"
    path.write_text("")
    with pytest.raises(PlanError) as info:
        load_plan(path, WORKFLOWS)
    assert info.value.problems == [
        f"{path}:1: threads: is required: a mapping of thread name -> thread"
    ]


# --- validation problems -----------------------------------------------------------------------


def test_unknown_keys_name_the_key_and_the_allowed_keys() -> None:
    data = {
        "polcy": "strict",
        "retries": {"mx": 1},
        "threads": {"a": {"graph_id": "writer", "aftr": [], "retries": {"max": 1, "zz": 2}}},
    }
    assert problems_of(data) == [
        "polcy: unknown key 'polcy'; did you mean 'policy'? (allowed: name, user_id, metadata, "
        "policy, max_parallel, timeout, retries, threads)",
        "retries.mx: unknown key 'mx'; did you mean 'max'? (allowed: max, backoff, max_backoff)",
        "threads.a.retries.zz: unknown key 'zz' (allowed: max, backoff, max_backoff)",
        "threads.a.aftr: unknown key 'aftr'; did you mean 'after'? (allowed: graph_id, "
        "assistant_id, input, metadata, after, inputs_from, when, timeout, retries)",
    ]


def test_invalid_values_and_types() -> None:
    data = {
        "name": 3,
        "policy": "lenient",
        "max_parallel": 1001,
        "timeout": 0,
        "retries": {"max": 101, "backoff": -1, "max_backoff": "x"},
        "threads": {
            "a": {
                "graph_id": "writer",
                "input": [1],
                "after": 5,
                "inputs_from": {"b": "x"},
                "when": True,
                "timeout": "soon",
                "retries": {"max": 1.5, "backoff": "x"},
            },
            "b": {"graph_id": "writer", "retries": 3, "metadata": "m"},
        },
    }
    assert problems_of(data) == [
        "name: Input should be a valid string (got 3)",
        "policy: Input should be 'strict' or 'best_effort' (got 'lenient')",
        "max_parallel: Input should be less than or equal to 1000 (got 1001)",
        "timeout: Input should be greater than 0 (got 0)",
        "retries.max: Input should be less than or equal to 100 (got 101)",
        "retries.backoff: Input should be greater than or equal to 0 (got -1)",
        "retries.max_backoff: Input should be a valid number (got 'x')",
        "threads.a.retries.max: Input should be a valid integer (got 1.5)",
        "threads.a.retries.backoff: Input should be a valid number (got 'x')",
        "threads.a.input: Input should be a valid dictionary",
        "threads.a.after: Input should be a valid list (got 5)",
        "threads.a.inputs_from.b: Input should be a valid dictionary (got 'x')",
        "threads.a.when: Input should be a valid string (got True)",
        "threads.a.timeout: Input should be a valid number (got 'soon')",
        "threads.b.metadata: Input should be a valid dictionary (got 'm')",
        "threads.b.retries: Input should be a valid dictionary (got 3)",
    ]


def test_threads_missing_empty_or_not_a_mapping() -> None:
    assert problems_of({}) == ["threads: is required: a mapping of thread name -> thread"]
    assert problems_of({"threads": {}}) == ["threads: a plan needs at least one thread"]
    assert problems_of({"threads": ["a"]}) == [
        "threads: must be a mapping of thread name -> thread, not a list"
    ]
    assert problems_of(plan(a="writer")) == [  # type: ignore[arg-type]
        "threads.a: must be a mapping {graph_id, input, after, ...}, not a string"
    ]


def test_bad_thread_names() -> None:
    long = "x" * 101
    writer = {"graph_id": "writer"}
    data = {"threads": {"a b": writer, "9a": writer, long: writer}}
    rule = "use letters, digits, _ and - (starting with a letter or _, at most 100 characters)"
    assert problems_of(data) == [
        f"threads.a b: invalid thread name 'a b': {rule}",
        f"threads.9a: invalid thread name '9a': {rule}",
        f"threads.{long}: invalid thread name '{long}': {rule}",
    ]
    assert list(spec_of(plan(**{"_a-1": {"graph_id": "writer"}})).threads) == ["_a-1"]


def test_a_thread_names_exactly_one_workflow() -> None:
    assert problems_of(
        plan(a={}, b={"graph_id": "writer", "assistant_id": "writer"}, c={"input": 3})
    ) == [
        "threads.a: names no workflow: give graph_id or assistant_id",
        "threads.b: give graph_id or assistant_id, not both",
        "threads.c: names no workflow: give graph_id or assistant_id",
        "threads.c.input: Input should be a valid dictionary (got 3)",
    ]


def test_unknown_workflows_list_the_graphs() -> None:
    assert problems_of(plan(a={"graph_id": "colector"}, b={"assistant_id": "nope"})) == [
        "threads.a.graph_id: unknown workflow 'colector' (graphs: analyst, collector, writer)",
        "threads.b.assistant_id: unknown workflow 'nope' (graphs: analyst, collector, writer)",
    ]
    assert problems_of(plan(a={"graph_id": "x"}), {}) == [
        "threads.a.graph_id: unknown workflow 'x' (graphs: none registered)"
    ]


def test_unknown_threads_self_edges_and_duplicate_edges() -> None:
    data = plan(
        collect={"graph_id": "collector"},
        analyze={
            "graph_id": "writer",
            "after": ["collect", "colect", "analyze", "collect"],
            "inputs_from": {"analyze": {}, "outline": {"x": "y"}, "collect": {"a": "b"}},
        },
    )
    assert problems_of(data) == [
        "threads.analyze.after[1]: unknown thread 'colect' (threads: analyze, collect)",
        "threads.analyze.after[2]: analyze depends on itself",
        "threads.analyze.after[3]: duplicate edge collect → analyze",
        "threads.analyze.inputs_from.analyze: analyze depends on itself",
        "threads.analyze.inputs_from.outline: unknown thread 'outline' (threads: analyze, collect)",
    ]


def test_unparsable_expressions() -> None:
    data = plan(
        collect={"graph_id": "collector"},
        analyze={
            "graph_id": "writer",
            "inputs_from": {"collect": {"a": "request.topic[", "b": "nope(x)", "c": " "}},
            "when": "collect.count >",
        },
    )
    assert problems_of(data) == [
        "threads.analyze.inputs_from.collect.a: invalid JMESPath expression 'request.topic[': "
        "the expression is incomplete",
        "threads.analyze.inputs_from.collect.b: invalid JMESPath expression 'nope(x)': "
        f"{_unknown_function_tail()}",
        "threads.analyze.inputs_from.collect.c: the expression is empty",
        "threads.analyze.when: invalid JMESPath expression 'collect.count >': "
        "the expression is incomplete",
    ]


def _unknown_function_tail() -> str:
    with pytest.raises(ValueError, match="unknown function") as info:
        Expression.parse("nope(x)")
    return str(info.value).split(": ", 1)[1]


def test_when_may_only_read_the_threads_sources() -> None:
    data = plan(
        collect={"graph_id": "collector"},
        outline={"graph_id": "writer"},
        analyze={
            "graph_id": "writer",
            "after": "collect",
            "when": "collect.count > `2` && outline.ok || length(report) > `0`",
        },
        lone={"graph_id": "writer", "when": "collect.ok"},
        fine={"graph_id": "writer", "after": "outline", "when": "`true`"},
    )
    assert problems_of(data) == [
        "threads.analyze.when: when refers to 'outline', which is not a source of analyze "
        "(sources: collect)",
        "threads.analyze.when: when refers to 'report', which is not a source of analyze "
        "(sources: collect)",
        "threads.lone.when: when refers to 'collect', which is not a source of lone "
        "(lone has no sources; name them in after)",
    ]


def test_when_names_a_misspelled_source_once_and_hints_at_quoting() -> None:
    data = plan(
        collect={"graph_id": "collector"},
        **{"draft-outline": {"graph_id": "writer"}},
        analyze={"graph_id": "writer", "after": ["colect"], "when": "colect.ok"},
        report={"graph_id": "writer", "after": "draft-outline", "when": "draft-outline.ok"},
    )
    problems = problems_of(data)
    assert problems[0] == (
        "threads.analyze.after[0]: unknown thread 'colect' (threads: analyze, collect, "
        "draft-outline, report)"
    )
    assert problems[1].startswith("threads.report.when: invalid JMESPath expression ")
    assert problems[1].endswith(' (quote names with a -: "draft-outline".field)')
    assert len(problems) == 2
    spec = spec_of(
        plan(
            **{"draft-outline": {"graph_id": "writer"}},
            report={"graph_id": "writer", "after": "draft-outline", "when": '"draft-outline".ok'},
        )
    )
    assert condition_holds(spec, "report", {"draft-outline": {"ok": True}}) is True


def test_when_roots() -> None:
    def roots(text: str) -> list[str]:
        return when_roots(Expression.parse(text))

    assert roots("a.b.c") == ["a"]
    assert roots('"draft-outline".ok && b[0].x') == ["draft-outline", "b"]
    assert roots("a[?score > `1`].name | [0]") == ["a"]
    assert roots("{x: a.x, y: [b, c]}") == ["a", "b", "c"]
    assert roots("!a || not_null(b, c.d)") == ["a", "b", "c"]
    assert roots("a[*].b && c.*.d && e[]") == ["a", "c", "e"]
    assert roots("sort_by(a, &weight)[0]") == ["a"]
    assert roots("`true`") == []
    assert roots("@") == []


def test_input_paths_the_input_schema_rejects() -> None:
    data = plan(
        collect={"graph_id": "collector"},
        analyze={
            "graph_id": "analyst",
            "input": {"topic": "x", "tpoic": "y"},
            "inputs_from": {
                "collect": {"fidnings": "findings", "context.topic": "a", "findings": "f"}
            },
        },
        anything={"graph_id": "writer", "input": {"q": 1}, "inputs_from": {"collect": {"z": "z"}}},
    )
    fields = "(fields: context, findings, topic)"
    assert problems_of(data) == [
        f"threads.analyze.input.tpoic: 'tpoic' is not an input field of graph 'analyst' {fields}",
        "threads.analyze.inputs_from.collect.fidnings: input path 'fidnings' is not an input "
        f"field of graph 'analyst' {fields}",
    ]


def test_input_paths_must_be_dotted_and_not_overlap() -> None:
    data = plan(
        a={"graph_id": "writer"},
        b={"graph_id": "writer"},
        c={
            "graph_id": "writer",
            "inputs_from": {"a": {"x.y": "p", "q..r": "p", "w": "p"}, "b": {"x": "p", "w": "q"}},
        },
    )
    assert problems_of(data) == [
        "threads.c.inputs_from.a.q..r: input path 'q..r' must be dotted names (a.b.c)",
        "threads.c.inputs_from.b.x: input path 'x' overlaps 'x.y' set from inputs_from a",
        "threads.c.inputs_from.b.w: input path 'w' overlaps 'w' set from inputs_from a",
    ]


def test_cycles_are_printed_as_their_path() -> None:
    data = plan(
        a={"graph_id": "writer", "after": "c"},
        b={"graph_id": "writer", "after": ["a"]},
        c={"graph_id": "writer", "inputs_from": {"b": {"x": "x"}}},
        d={"graph_id": "writer", "after": ["e", "a"]},
        e={"graph_id": "writer", "after": "d"},
        f={"graph_id": "writer", "after": ["a", "e"]},
    )
    assert problems_of(data) == [
        "threads.a.after: cycle: a → b → c → a",
        "threads.d.after[0]: cycle: d → e → d",
    ]


def test_one_cycle_per_strongly_connected_component() -> None:
    data = plan(
        a={"graph_id": "writer", "after": ["b", "c"]},
        b={"graph_id": "writer", "after": "a"},
        c={"graph_id": "writer", "after": "a"},
    )
    assert problems_of(data) == ["threads.a.after[0]: cycle: a → b → a"]


def test_a_cycle_through_a_long_chain() -> None:
    names = [f"t{i}" for i in range(2000)]
    threads = {name: {"graph_id": "writer", "after": names[i - 1]} for i, name in enumerate(names)}
    [problem] = problems_of({"threads": threads})
    assert problem.startswith("threads.t0.after: cycle: t0 → t1 → t2 → ")
    assert problem.endswith(" → t1999 → t0")


def test_every_problem_at_once_with_file_lines(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        """\
name: research
polcy: strict
threads:
  collect:
    graph_id: collector
    after: report
  analyze:
    graph_id: analyst
    after: [collect, collect, colect]
    inputs_from:
      collect:
        fidnings: findings
    when: "collect.count >"
  report:
    graph_id: nope
    after:
      - analyze
  collect:
    graph_id: collector
    after: report
"""
    )
    with pytest.raises(PlanError) as info:
        load_plan(path, WORKFLOWS)
    assert info.value.problems == [
        f"{path}:2: polcy: unknown key 'polcy'; did you mean 'policy'? (allowed: name, "
        "user_id, metadata, policy, max_parallel, timeout, retries, threads)",
        f"{path}:9: threads.analyze.after[1]: duplicate edge collect → analyze",
        f"{path}:9: threads.analyze.after[2]: unknown thread 'colect' (threads: analyze, "
        "collect, report)",
        f"{path}:12: threads.analyze.inputs_from.collect.fidnings: input path 'fidnings' is "
        "not an input field of graph 'analyst' (fields: context, findings, topic)",
        f"{path}:13: threads.analyze.when: invalid JMESPath expression 'collect.count >': "
        "the expression is incomplete",
        f"{path}:15: threads.report.graph_id: unknown workflow 'nope' (graphs: analyst, "
        "collector, writer)",
        f"{path}:18: threads.collect: duplicate thread 'collect' (first defined on line 4)",
        f"{path}:20: threads.collect.after: cycle: collect → analyze → report → collect",
    ]


def test_body_problems_have_no_file() -> None:
    problems = problems_of({"threads": {"a": {"graph_id": "writer", "after": ["a"]}}})
    assert problems == ["threads.a.after[0]: a depends on itself"]
    with pytest.raises(PlanError) as info:
        validate_plan([], PlanSource(), WORKFLOWS)  # type: ignore[arg-type]
    assert info.value.problems == ["plan: a plan must be a mapping"]


# --- order and drawing -------------------------------------------------------------------------


def layered() -> PlanSpec:
    return spec_of(
        plan(
            collect={"graph_id": "collector"},
            outline={"graph_id": "writer", "after": "collect"},
            analyze={"graph_id": "analyst", "inputs_from": {"collect": {"findings": "f"}}},
            check={"graph_id": "writer", "after": ["analyze"]},
            report={"graph_id": "writer", "after": ["outline", "check"]},
            side={"graph_id": "writer"},
        )
    )


def test_levels_follow_the_longest_path_in_spec_order() -> None:
    assert levels(layered()) == [
        ["collect", "side"],
        ["outline", "analyze"],
        ["check"],
        ["report"],
    ]
    spec = spec_of(plan(z={"graph_id": "writer", "after": "a"}, a={"graph_id": "writer"}))
    assert levels(spec) == [["a"], ["z"]]


def test_critical_path() -> None:
    spec = layered()
    assert critical_path(spec) == (["collect", "analyze", "check", "report"], 4.0)
    weights = {"collect": 1.0, "outline": 10.0, "analyze": 2.0, "check": 2.0, "report": 1.0}
    assert critical_path(spec, weights) == (["collect", "outline", "report"], 12.0)
    assert critical_path(spec, {"side": 50.0}) == (["side"], 50.0)


def test_mermaid_draws_nodes_and_edges_with_escaped_text() -> None:
    spec = spec_of(
        plan(
            collect={"graph_id": "collector"},
            **{
                "draft-outline": {
                    "graph_id": "writer",
                    "after": "collect",
                    "when": "collect.\"a|b\" > `2` && collect.x == '<#>'",
                }
            },
            analyze={
                "assistant_id": "00000000-0000-0000-0000-000000000001",
                "after": ["collect"],
                "inputs_from": {"collect": {"findings": "findings", "context.topic": "r.t"}},
            },
        )
    )
    assert mermaid(spec) == (
        "flowchart TD\n"
        '    t0["collect<br/>graph: collector"]\n'
        '    t1["draft-outline<br/>graph: writer<br/>when: collect.#quot;a#124;b#quot; #gt; '
        "#96;2#96; #amp;#amp; collect.x == '#lt;#35;#gt;'\"]\n"
        '    t2["analyze<br/>assistant: 00000000-0000-0000-0000-000000000001"]\n'
        "    t0 --> t1\n"
        '    t0 -->|"findings ← findings<br/>context.topic ← r.t"| t2\n'
    )


def test_describe_shows_levels_critical_path_and_mermaid() -> None:
    spec = layered()
    text = describe(spec)
    assert text.startswith(
        "plan: 6 threads, policy strict, max_parallel 4\n\n"
        "levels:\n"
        "  1. collect, side\n"
        "  2. outline, analyze\n"
        "  3. check\n"
        "  4. report\n\n"
        "critical path: collect → analyze → check → report (4 threads)\n\n"
        "mermaid:\nflowchart TD\n"
    )
    assert text.endswith(mermaid(spec))


# --- retries -----------------------------------------------------------------------------------


def test_delay_doubles_up_to_the_cap_with_jitter() -> None:
    retry = RetrySpec(max=5, backoff=1.0, max_backoff=5.0)
    assert [retry.delay(n, lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert [retry.delay(n, lambda: 0.0) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    for attempt in range(1, 200):
        delay = retry.delay(attempt)
        base = min(5.0, 2.0 ** (attempt - 1))
        assert base / 2 <= delay <= base
    assert RetrySpec(backoff=0).delay(3) == 0.0


# --- run time ----------------------------------------------------------------------------------


def flow() -> PlanSpec:
    return spec_of(
        plan(
            collect={"graph_id": "collector"},
            analyze={
                "graph_id": "analyst",
                "input": {"topic": "solar", "context": {"lang": "en"}},
                "inputs_from": {
                    "collect": {"findings": "findings[?ok].name", "context.topic": "request.topic"}
                },
                "when": "collect.count > `2`",
            },
        )
    )


def test_thread_input_maps_source_values_over_the_input() -> None:
    spec = flow()
    state = {
        "count": 3,
        "findings": [{"name": "a", "ok": True}, {"name": "b", "ok": False}],
        "request": {"topic": "wind"},
    }
    assert thread_input(spec, "analyze", {"collect": state}) == {
        "topic": "solar",
        "context": {"lang": "en", "topic": "wind"},
        "findings": ["a"],
    }
    assert spec.threads["analyze"].input == {"topic": "solar", "context": {"lang": "en"}}
    assert thread_input(spec, "collect", {}) == {}


def test_a_missing_source_path_fails_the_thread() -> None:
    with pytest.raises(PlanRuntimeError) as info:
        thread_input(flow(), "analyze", {"collect": {"findings": []}})
    assert str(info.value) == (
        "inputs_from collect: 'request.topic' is missing from collect's final state"
    )
    assert info.value.status_code == 422


def test_a_mapping_that_raises_fails_the_thread() -> None:
    spec = spec_of(
        plan(
            a={"graph_id": "writer"},
            b={"graph_id": "writer", "inputs_from": {"a": {"n": "length(count)"}}},
            c={"graph_id": "writer", "input": {"x": 1}, "inputs_from": {"a": {"x.y": "count"}}},
        )
    )
    with pytest.raises(PlanRuntimeError) as info:
        thread_input(spec, "b", {"a": {"count": 3}})
    assert str(info.value) == (
        "inputs_from a: 'length(count)' failed: In function length(), invalid type for value: "
        "3, expected one of: ['string', 'array', 'object'], received: \"number\""
    )
    with pytest.raises(PlanRuntimeError) as info:
        thread_input(spec, "c", {"a": {"count": 3}})
    assert str(info.value) == "inputs_from a: cannot set 'x.y': input 'x' is not an object"


@pytest.mark.parametrize(
    ("value", "holds"),
    [
        (3, True),
        (2, False),
        (None, False),
    ],
)
def test_condition_over_the_sources_final_states(value: Any, holds: bool) -> None:
    assert condition_holds(flow(), "analyze", {"collect": {"count": value}}) is holds


@pytest.mark.parametrize(
    ("result", "holds"),
    [
        (False, False),
        (None, False),
        ("", False),
        ([], False),
        ({}, False),
        (0, True),
        ("no", True),
        ([0], True),
        ({"a": None}, True),
        (True, True),
    ],
)
def test_condition_uses_jmespath_truthiness(result: Any, holds: bool) -> None:
    spec = spec_of(
        plan(a={"graph_id": "writer"}, b={"graph_id": "writer", "after": "a", "when": "a.r"})
    )
    assert condition_holds(spec, "b", {"a": {"r": result}}) is holds
    assert condition_holds(spec, "a", {}) is True


def test_a_condition_that_raises() -> None:
    spec = spec_of(
        plan(
            a={"graph_id": "writer"},
            b={"graph_id": "writer", "after": "a", "when": "sum(a.items) > `1`"},
        )
    )
    with pytest.raises(PlanRuntimeError) as info:
        condition_holds(spec, "b", {"a": {"items": "x"}})
    assert str(info.value) == (
        "when 'sum(a.items) > `1`' failed: In function sum(), invalid type for value: x, "
        "expected one of: ['array-number'], received: \"string\""
    )
    with pytest.raises(PlanRuntimeError) as info:  # the jmespath library raises TypeError
        condition_holds(flow(), "analyze", {"collect": {"count": "3"}})
    assert str(info.value) == (
        "when 'collect.count > `2`' failed: '>' not supported between instances of 'str' and 'int'"
    )


# --- reports -----------------------------------------------------------------------------------

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def test_report_summarises_each_thread_and_the_success_rate() -> None:
    spec = layered()
    session_id = str(uuid.uuid4())
    stored = Plan(
        session_id=session_id,
        spec=spec.model_dump(mode="json"),
        status="completed",
        created_at=T0,
        updated_at=T0,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=10),
    )

    def row(name: str, state: Any, **fields: Any) -> PlanThread:
        return PlanThread(
            session_id=session_id,
            name=name,
            position=list(spec.threads).index(name),
            thread_id=str(uuid.uuid5(uuid.UUID(session_id), name)),
            state=state,
            updated_at=T0,
            **fields,
        )

    rows = [
        row(
            "collect",
            "succeeded",
            attempts=2,
            started_at=T0,
            ended_at=T0 + timedelta(seconds=2),
            output={"text": "x" * 300},
            run_id="r1",
        ),
        row("outline", "failed", attempts=1, started_at=T0, error="boom"),
        row("analyze", "succeeded", attempts=1, output={"score": 1}),
        row("check", "skipped", reason="condition 'analyze.ok' is false"),
        row("report", "skipped", reason="source 'outline' failed"),
        row("side", "timed_out", attempts=3, error="timed out after 1s"),
    ]
    result = report(stored, list(reversed(rows)))
    assert [t.name for t in result.threads] == list(spec.threads)
    assert result.status == "completed"
    assert result.policy == "strict"
    assert result.duration == 10.0
    assert result.counts == {"succeeded": 2, "failed": 1, "skipped": 2, "timed_out": 1}
    assert result.success_rate == 2 / 5
    first = result.threads[0]
    assert first.graph_id == "collector"
    assert first.duration == 2.0
    assert first.attempts == 2
    assert first.run_id == "r1"
    assert first.output_summary is not None
    assert len(first.output_summary) == 200
    assert first.output_summary.startswith('{"text":"xxx')
    assert first.output_summary.endswith("…")
    assert result.threads[2].output_summary == '{"score":1}'
    assert result.threads[1].duration is None
    assert result.threads[1].error == "boom"
    assert result.threads[4].reason == "source 'outline' failed"

    now = T0 + timedelta(seconds=4)
    going = stored.model_copy(update={"status": "running", "ended_at": None})
    rows[5] = row("side", "running", attempts=1, started_at=T0 + timedelta(seconds=1))
    running = report(going, rows, now=now)
    assert running.duration == 4.0
    assert running.threads[5].duration == 3.0
    assert running.threads[1].duration is None  # final: never runs on to `now`
    assert report(going, rows).threads[5].duration is None

    api = result.to_api()
    assert json.loads(json.dumps(api)) == api
    assert api["threads"][0]["started_at"] == T0.isoformat().replace("+00:00", "Z")


def test_report_of_only_condition_skips_has_no_success_rate() -> None:
    session_id = str(uuid.uuid4())
    stored = Plan(
        session_id=session_id,
        spec={"policy": "best_effort", "threads": {"a": {"assistant_id": "as"}}},
        created_at=T0,
        updated_at=T0,
    )
    only = PlanThread(
        session_id=session_id,
        name="a",
        position=0,
        thread_id="t",
        state="skipped",
        reason="condition 'x' is false",
        updated_at=T0,
    )
    result = report(stored, [only])
    assert result.success_rate is None
    assert result.policy == "best_effort"
    assert result.threads[0].graph_id == "as"
    assert result.duration is None
    assert report(stored, []).counts == {}
