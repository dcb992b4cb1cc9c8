"""``weft sessions ...`` on a copy of ``examples/``: create, list, show, log, delete."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli_threads import TIMESTAMP, ok, refused, rows, say, texts, weft
from tests.test_cli_threads import config as config  # the fixture

MISSING = "44444444-4444-4444-4444-444444444444"


def create(config: Path, *args: str) -> dict[str, Any]:
    session: dict[str, Any] = json.loads(ok(weft(config, "sessions", "create", *args, "--json")))
    return session


def add_thread(config: Path, session_id: str, name: str) -> str:
    out = ok(weft(config, "sessions", "add-thread", session_id, name, "--graph", "echo"))
    assert out.startswith("created thread ")
    assert out.endswith(f"in session {session_id}\n")
    return out.split()[2]


def test_create_and_ls(config: Path) -> None:
    out = ok(weft(config, "sessions", "create", "--user", "u1", "--name", "trip"))
    assert out.startswith("created session ")
    trip = out.split()[-1]
    other = create(config, "--user", "u2", "--metadata", '{"team": "b"}', "--state", '{"n": 1}')
    assert other["user_id"] == "u2"
    assert other["metadata"] == {"team": "b"}
    assert other["state"] == {"n": 1}
    assert other["status"] == "active"

    table = rows(ok(weft(config, "sessions", "ls")))
    assert [row[:4] for row in table] == [
        [other["session_id"], "", "u2", "active"],
        [trip, "trip", "u1", "active"],
    ]
    assert all(TIMESTAMP.match(row[4]) and TIMESTAMP.match(row[5]) for row in table)
    assert [row[0] for row in rows(ok(weft(config, "sessions", "ls", "--user", "u1")))] == [trip]
    assert [
        r[0] for r in rows(ok(weft(config, "sessions", "ls", "--limit", "1", "--offset", "1")))
    ] == [trip]
    listed = json.loads(ok(weft(config, "sessions", "ls", "--json", "--user", "u2")))
    assert listed == [other]
    assert ok(weft(config, "sessions", "ls", "--status", "archived")) == "no sessions found\n"
    refused(
        weft(config, "sessions", "ls", "--status", "asleep"),
        "status must be one of active, completed, failed, cancelled, archived, not 'asleep'",
    )


def test_create_refuses_state_that_is_not_a_json_object(config: Path) -> None:
    refused(
        weft(config, "sessions", "create", "--state", "[1, 2]"),
        "--state must be a JSON object, not list",
        code=2,
    )
    refused(
        weft(config, "sessions", "create", "--metadata", "nope"),
        "--metadata is not valid JSON: Expecting value at column 1",
        code=2,
    )
    assert ok(weft(config, "sessions", "ls")) == "no sessions found\n"


def test_show_lists_the_session_threads_with_their_progress(config: Path) -> None:
    session = create(config, "--user", "u1", "--name", "trip", "--state", '{"budget": 100}')
    sid = session["session_id"]
    empty = ok(weft(config, "sessions", "show", sid))
    assert empty.endswith("no threads in this session\n")

    flights = add_thread(config, sid, "flights")
    hotels = add_thread(config, sid, "hotels")
    assert texts(say(config, flights, "book")) == ["book", "BOOK"]
    refused(
        weft(config, "sessions", "add-thread", sid, "hotels", "--graph", "echo"),
        f"a thread named 'hotels' already exists in session {sid}",
    )

    out = ok(weft(config, "sessions", "show", sid))
    table = rows(out)
    fields = {row[0]: row[1] for row in table if len(row) == 2}
    assert fields["session_id"] == sid
    assert fields["name"] == "trip"
    assert fields["user"] == "u1"
    assert fields["status"] == "active"
    assert fields["state"] == '{"budget": 100}'
    assert [row for row in table if len(row) == 6] == [
        [flights, "flights", "echo", "active", "idle", "3"],
        [hotels, "hotels", "echo", "active", "idle", "0"],
    ]
    shown = json.loads(ok(weft(config, "sessions", "show", sid, "--json")))
    assert shown["session_id"] == sid
    assert [t["name"] for t in shown["threads"]] == ["flights", "hotels"]
    in_session = rows(ok(weft(config, "threads", "ls", "--session", sid)))
    assert {row[0] for row in in_session} == {flights, hotels}


def test_record_and_log(config: Path) -> None:
    sid = create(config)["session_id"]
    assert ok(weft(config, "sessions", "log", sid)) == f"session {sid} has no log entries\n"
    assert ok(weft(config, "sessions", "record", sid, "request", '"book a flight"')) == (
        f"recorded request #1 in session {sid}\n"
    )
    ok(weft(config, "sessions", "record", sid, "response", '{"flight": "LH 123", "price": 90}'))
    entry = json.loads(
        ok(
            weft(
                config, "sessions", "record", sid, "feedback", '"thanks"',
                "--metadata", '{"stars": 5}', "--json",
            )
        )
    )  # fmt: skip
    assert entry["seq"] == 3
    assert entry["metadata"] == {"stars": 5}
    ok(weft(config, "sessions", "record", sid, "note", '"remember the hotel"'))

    table = rows(ok(weft(config, "sessions", "log", sid)))
    assert [row[:3] for row in table] == [
        ["1", "request", "book a flight"],
        ["2", "response", '{"flight": "LH 123", "price": 90}'],
        ["3", "feedback", "thanks"],
        ["4", "note", "remember the hotel"],
    ]
    assert all(TIMESTAMP.match(row[3]) for row in table)

    page = rows(ok(weft(config, "sessions", "log", sid, "--after", "1", "--limit", "2")))
    assert [row[0] for row in page] == ["2", "3"]
    kinds = rows(ok(weft(config, "sessions", "log", sid, "--kind", "note", "--kind", "request")))
    assert [row[1] for row in kinds] == ["request", "note"]
    as_json = json.loads(ok(weft(config, "sessions", "log", sid, "--kind", "response", "--json")))
    assert [e["content"] for e in as_json] == [{"flight": "LH 123", "price": 90}]
    assert ok(weft(config, "sessions", "log", sid, "--after", "4")) == (
        f"session {sid} has no log entries after #4\n"
    )


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["record", "S", "shout", '"hi"'], "kind must be one of request, response, feedback, "
         "note, not 'shout'", 1),
        (["record", "S", "note", "hi"], "CONTENT_JSON is not valid JSON: Expecting value at "
         "column 1", 2),
        (["log", "S", "--kind", "gossip"], "kinds[] must be one of request, response, feedback, "
         "note, thread_event, run_event, state_event, plan_event, not 'gossip'", 1),
        (["log", "S", "--limit", "-1"], "limit must be a number >= 0, not -1", 1),
    ],
)  # fmt: skip
def test_bad_log_input_is_refused(config: Path, args: list[str], message: str, code: int) -> None:
    sid = create(config)["session_id"]
    refused(weft(config, "sessions", *[sid if a == "S" else a for a in args]), message, code)


@pytest.mark.parametrize(
    "command",
    [["show"], ["log"], ["delete"], ["record", "note", '"x"'], ["add-thread", "t"]],
)
def test_unknown_and_malformed_session_ids(config: Path, command: list[str]) -> None:
    name, *rest = command
    refused(weft(config, "sessions", name, MISSING, *rest), f"session {MISSING} not found")
    refused(weft(config, "sessions", name, "s1", *rest), "session_id must be a UUID, not 's1'")


def test_delete_is_refused_while_threads_remain_unless_cascade(config: Path) -> None:
    sid = create(config, "--name", "doomed")["session_id"]
    thread = add_thread(config, sid, "work")
    say(config, thread, "hi")
    ok(weft(config, "sessions", "record", sid, "note", '"x"'))

    refused(
        weft(config, "sessions", "delete", sid),
        f"session {sid} has 1 thread(s); delete them first or pass cascade=true",
    )
    assert json.loads(ok(weft(config, "threads", "show", thread, "--json")))["session_id"] == sid

    assert ok(weft(config, "sessions", "delete", sid, "--cascade")) == f"deleted session {sid}\n"
    refused(weft(config, "sessions", "show", sid), f"session {sid} not found")
    refused(weft(config, "threads", "show", thread), f"thread {thread} not found")
    assert ok(weft(config, "doctor")) == "no problems found\n"  # no checkpoints left behind

    lone = create(config)["session_id"]
    assert ok(weft(config, "sessions", "delete", lone)) == f"deleted session {lone}\n"
