"""POST /commands: a chronopipe.messages Command in, its one terminal Event out (a real server on
127.0.0.1 in each test, over real actors)."""

from __future__ import annotations

import pytest

from chronopipe.control import open_control
from chronopipe.messages import Command, Event
from control_helper import Recorded, call, idle_actors, killed

TOKEN = "the-token-of-the-command-tests-0123456789"


@pytest.fixture
def served(monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    actors, inboxes = idle_actors()
    target = Recorded()
    with open_control(target, token=TOKEN) as server:
        yield server, target, actors, inboxes


def test_a_command_is_answered_by_its_succeeded_event_with_the_endpoints_answer(served):
    server = served[0]
    status, _, event = call(server.url, "POST", "/commands", token=TOKEN, body={"type": "GET_FEATURES", "id": "c1"})
    assert status == 200
    assert (event["kind"], event["type"], event["correlation_id"]) == ("event", "GET_FEATURES_SUCCEEDED", "c1")
    assert event["data"] == {"result": call(server.url, "GET", "/features")[2]}


def test_a_full_command_as_messages_writes_it_is_answered(served):
    server, target, _, _ = served
    command = Command("PUSH", {"input": "orders", "records": [1, {"a": [2]}]})
    _, _, answer = call(server.url, "POST", "/commands", token=TOKEN, body=command.to_dict())
    event = Event.from_dict(answer)
    assert (event.type, event.correlation_id, event.is_terminal) == ("PUSH_SUCCEEDED", command.id, True)
    assert target.pushed == [1, {"a": [2]}]


def test_a_command_nobody_handles_is_rejected_with_200(served):
    server = served[0]
    status, _, event = call(server.url, "POST", "/commands", token=TOKEN, body={"type": "LAUNCH_ROCKETS"})
    assert (status, event["type"], event["data"]) == (200, "LAUNCH_ROCKETS_REJECTED",
                                                      {"reason": "unknown command LAUNCH_ROCKETS"})


def test_a_command_whose_handler_fails_is_answered_failed_with_the_reason(served):
    server = served[0]
    _, _, event = call(server.url, "POST", "/commands", token=TOKEN,
                       body={"type": "PUSH", "data": {"input": "nope", "records": []}})
    assert (event["type"], event["data"]) == ("PUSH_FAILED",
                                              {"reason": "LookupError: no input named 'nope' (inputs: orders)"})


def test_the_seeds_stop_requested_stops_and_answers_stop_succeeded(served):
    server, _, actors, _ = served
    _, _, event = call(server.url, "POST", "/commands", token=TOKEN,
                       body={"type": "STOP_REQUESTED", "data": {"timeout": 5}})
    assert event["type"] == "STOP_SUCCEEDED" and event["data"]["result"]["state"] == "finished"
    assert all(a.state == "stopped" for a in actors)


def test_a_kill_command_is_answered_before_the_target_is_killed(served):
    server, target, _, _ = served
    _, _, event = call(server.url, "POST", "/commands", token=TOKEN, body={"type": "KILL"})
    assert (event["type"], event["data"]) == ("KILL_SUCCEEDED", {"result": {"state": "killing"}})
    assert killed(target)


@pytest.mark.parametrize("body", [{}, {"type": "stop"}, {"type": "STOP_FAILED"}, {"kind": "event", "type": "STOP"},
                                  {"type": "STOP", "extra": 1}, {"type": "STOP", "id": ""}])
def test_a_body_that_is_no_command_is_400(served, body):
    server, target, actors, _ = served
    assert call(server.url, "POST", "/commands", token=TOKEN, body=body)[0] == 400
    assert all(a.state == "running" for a in actors) and target.kills == 0


@pytest.mark.parametrize("body", [
    b'{"type": "PUSH", "id": "\\ud800", "data": {"input": "orders", "records": [1, 2]}}',
    b'{"type": "PUSH", "data": {"input": "orders", "records": ["\\udfff"]}}',
    b'{"type": "KILL", "correlation_id": "\\ud800"}',
    b'{"type": "KILL", "data": {"\\ud800": 1}}',
])
def test_a_command_with_a_lone_surrogate_is_400_and_not_acted_on(served, body):
    server, target, _, _ = served
    status, _, answer = call(server.url, "POST", "/commands", token=TOKEN, body=body,
                             headers={"Content-Type": "application/json"})
    assert status == 400 and "lone surrogate" in answer["error"]
    assert (target.pushed, target.kills) == ([], 0)
