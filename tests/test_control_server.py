"""The control API's endpoints, start and close: a real server on 127.0.0.1 in each test, real actors."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

import chronopipe as cp
from chronopipe.control import (
    ACTOR_FIELDS,
    ActorsTarget,
    ControlError,
    ControlServer,
    open_control,
    parse_address,
)
from control_helper import SECRET, Recorded, call, idle_actors, killed

TOKEN = "the-token-of-the-server-tests-0123456789"


@pytest.fixture
def served(monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    actors, inboxes = idle_actors()
    target = Recorded()
    with open_control(target, token=TOKEN) as server:
        yield server, target, actors, inboxes


def test_health_answers_ok(served):
    server = served[0]
    status, headers, answer = call(server.url, "GET", "/health")
    assert (status, answer, headers["content-type"]) == (200, {"status": "ok"}, "application/json; charset=utf-8")


def test_info_says_what_runs_the_version_pid_start_and_inputs(served):
    server = served[0]
    _, _, answer = call(server.url, "GET", "/info")
    assert answer == {"name": "test", "kind": "runtime", "state": "running", "running": ["echo0", "echo1"],
                      "version": cp.__version__, "pid": os.getpid(), "started_at": server.started_at,
                      "inputs": ["orders"]}


def test_actors_answers_one_row_of_every_field_per_actor(served):
    server = served[0]
    _, _, answer = call(server.url, "GET", "/actors")
    rows = answer["actors"]
    assert [r["name"] for r in rows] == ["echo0", "echo1"]
    for row in rows:
        assert tuple(row) == ACTOR_FIELDS
        assert (row["mode"], row["state"], row["pid"], row["received"], row["restarts"]) == \
            ("thread", "running", os.getpid(), 0, 0)
        assert row["rss"] > 1_000_000


def test_a_process_actors_row_has_its_own_pid_and_memory():
    inbox = cp.Channel(name="in", mode="process")
    actor = cp.Actor("proc", lambda x: x, inbox=inbox, mode="process").start()
    with open_control(ActorsTarget("p", cp.Runtime().actors), token=TOKEN) as server:
        (row,) = call(server.url, "GET", "/actors")[2]["actors"]
    assert row["pid"] == actor.pid != os.getpid()
    assert row["rss"] == pytest.approx(psutil.Process(actor.pid).memory_info().rss, rel=0.5)


def test_actors_rows_count_records_their_rate_and_queue(served):
    server, _, _, _ = served
    release = threading.Event()
    inbox = cp.Channel(name="slow-in")
    worker = cp.Actor("worker", lambda x: x, inbox=inbox).start()
    blocked = cp.Actor("blocked", lambda x: release.wait(), inbox=cp.Channel(name="stuck")).start()
    inbox.put_many(range(1000))
    inbox.flush()
    for _ in range(2):  # the first batch is in the actor's hands, the second waits in its inbox
        blocked.inbox.put_many(range(100))
        blocked.inbox.flush()
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while worker.counts.received < 1000 and time.monotonic() < deadline:
        time.sleep(0.01)
    rows = {r["name"]: r for r in call(server.url, "GET", "/actors")[2]["actors"]}
    assert rows["worker"]["received"] == 1000 and rows["worker"]["rate"] > 0
    assert 100 <= rows["blocked"]["queue"] < 200  # the second batch, and what the actor left of the first
    time.sleep(1.05)  # a second with nothing new: the rate falls to 0
    rows = {r["name"]: r for r in call(server.url, "GET", "/actors")[2]["actors"]}
    assert rows["worker"]["rate"] == 0
    release.set()


def test_stats_answers_the_state_seconds_totals_and_rows(served):
    server, _, _, inboxes = served
    inboxes[0].put_many([1, 2, 3])
    inboxes[0].flush()
    time.sleep(0.2)
    _, _, answer = call(server.url, "GET", "/stats")
    assert set(answer) == {"state", "seconds", "totals", "actors"}
    assert answer["state"] == "running" and answer["seconds"] > 0
    assert answer["totals"] == {"received": 3, "emitted": 3, "dead_letters": 0, "restarts": 0}
    assert [tuple(r) for r in answer["actors"]] == [ACTOR_FIELDS, ACTOR_FIELDS]


def test_features_answers_the_targets_fields_per_input(served):
    server = served[0]
    assert call(server.url, "GET", "/features")[2] == {
        "features": {"orders": {"id": ["int"], "price": ["float", "NoneType"]}}}


def test_features_of_a_target_without_any_is_empty(monkeypatch):
    with open_control(ActorsTarget("none", list), token=TOKEN) as server:
        assert call(server.url, "GET", "/features")[2] == {"features": {}}


def test_push_answers_the_records_taken(served):
    server, target, _, _ = served
    status, _, answer = call(server.url, "POST", "/push", token=TOKEN,
                             body={"input": "orders", "records": [{"id": 1}, 2]})
    assert (status, answer, target.pushed) == (200, {"input": "orders", "accepted": 2}, [{"id": 1}, 2])


def test_push_into_an_unknown_input_is_404_naming_the_inputs(served):
    server = served[0]
    status, _, answer = call(server.url, "POST", "/push", token=TOKEN, body={"input": "nope", "records": []})
    assert (status, answer) == (404, {"error": "no input named 'nope' (inputs: orders)"})


def test_push_into_a_full_input_is_429_with_retry_after(served):
    server = served[0]
    status, headers, answer = call(server.url, "POST", "/push", token=TOKEN,
                                   body={"input": "orders", "records": [1, 2, 3, 4]})
    assert (status, answer, headers["retry-after"]) == (429, {"error": "orders is full"}, "1")


def test_push_into_a_closed_input_is_409(served):
    server, target, _, _ = served
    target.closed = True
    status, _, answer = call(server.url, "POST", "/push", token=TOKEN, body={"input": "orders", "records": [1]})
    assert (status, answer) == (409, {"error": "orders is closed"})


@pytest.mark.parametrize("body", [{"records": []}, {"input": "orders"}, {"input": "", "records": []},
                                  {"input": "orders", "records": {}}, {"input": 1, "records": []},
                                  {"input": "orders", "records": [], "more": 1}])
def test_push_of_a_body_without_an_input_name_and_a_list_of_records_is_400(served, body):
    server, target, _, _ = served
    assert call(server.url, "POST", "/push", token=TOKEN, body=body)[0] == 400
    assert target.pushed == []


def test_stop_stops_the_actors_and_answers_the_final_counts(served):
    server, _, actors, inboxes = served
    inboxes[1].put_many([1, 2])
    inboxes[1].flush()
    time.sleep(0.2)
    status, _, answer = call(server.url, "POST", "/stop", token=TOKEN, body={"timeout": 5})
    assert status == 200
    assert answer["state"] == "finished"
    assert answer["totals"]["received"] == 2
    assert [r["state"] for r in answer["actors"]] == ["stopped", "stopped"]
    assert all(a.state == "stopped" for a in actors)


def test_stop_of_an_actor_that_does_not_end_in_time_answers_stopping():
    release = threading.Event()
    inbox = cp.Channel(name="in")
    cp.Actor("stuck", lambda x: release.wait(), inbox=inbox).start()
    inbox.put(1)
    inbox.flush()
    time.sleep(0.1)
    with open_control(ActorsTarget("t", cp.Runtime().actors), token=TOKEN) as server:
        status, _, answer = call(server.url, "POST", "/stop", token=TOKEN, body={"timeout": 0.2})
    release.set()
    assert (status, answer["state"]) == (200, "stopping")


def test_a_stop_in_progress_does_not_hold_up_other_requests():
    entered, release = threading.Event(), threading.Event()

    class Slow(ActorsTarget):
        def stop(self, timeout):
            entered.set()
            release.wait(timeout)
            return {"state": "finished"}

    with open_control(Slow("slow", list), token=TOKEN) as server:
        stopping = threading.Thread(target=call, args=(server.url, "POST", "/stop"),
                                    kwargs={"token": TOKEN, "body": {"timeout": 10}})
        stopping.start()
        assert entered.wait(5)
        started = time.monotonic()
        assert call(server.url, "GET", "/stats")[0] == 200
        assert time.monotonic() - started < 0.5
        release.set()
        stopping.join(5)


@pytest.mark.parametrize("timeout", [-1, "5", None, True, 3601])
def test_stop_with_a_timeout_that_is_not_0_to_3600_seconds_is_400(served, timeout):
    server, _, actors, _ = served
    assert call(server.url, "POST", "/stop", token=TOKEN, body={"timeout": timeout})[0] == 400
    assert all(a.state == "running" for a in actors)


def test_kill_answers_202_then_calls_the_targets_kill(served):
    server, target, _, _ = served
    status, _, answer = call(server.url, "POST", "/kill", token=TOKEN)
    assert (status, answer) == (202, {"state": "killing"})
    assert killed(target)


KILLED = textwrap.dedent("""
    import json, signal, sys, time
    import chronopipe as cp
    from chronopipe.control import ActorsTarget, open_control
    if sys.argv[1] == "ignore-sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for i in range(2):
        cp.Actor(f"p{i}", lambda x: x, inbox=cp.Channel(name=f"in{i}", mode="process"), mode="process").start()
    server = open_control(ActorsTarget("doomed", cp.Runtime().actors), token="kill-token")
    print(json.dumps({"url": server.url}), flush=True)
    time.sleep(60)
""")


@pytest.mark.parametrize("how", ["sigterm", "ignore-sigterm"])
def test_kill_ends_the_process_and_its_children_within_a_second(how):
    proc = subprocess.Popen([sys.executable, "-c", KILLED, how], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        url = json.loads(proc.stdout.readline())["url"]
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert len(family) == 3
        status, _, _ = call(url, "POST", "/kill", token="kill-token")
        answered = time.monotonic()
        assert status == 202
        proc.wait(1.0)
        while any(alive(p) for p in family) and time.monotonic() - answered < 1.0:
            time.sleep(0.01)
        assert not [p for p in family if alive(p)]
        assert proc.returncode in (-15, 143)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE  # a zombie has ended; its parent has yet to reap it
    except psutil.NoSuchProcess:
        return False


def test_a_target_that_raises_is_answered_500_in_one_line():
    class Broken(ActorsTarget):
        def stats(self):
            raise RuntimeError("the counts are gone\nsecond line")

    with open_control(Broken("b", list), token=TOKEN) as server:
        status, _, answer = call(server.url, "GET", "/stats")
        assert (status, answer) == (500, {"error": "RuntimeError: the counts are gone"})
        assert call(server.url, "GET", "/health")[0] == 200


def test_a_target_whose_secrets_raise_is_answered_500():
    class Broken(ActorsTarget):
        def secrets(self):
            raise OSError("vault down")

    with open_control(Broken("b", list), token=TOKEN) as server:
        assert call(server.url, "GET", "/info")[0::2] == (500, {"error": "the target's secrets() failed"})


def test_unknown_paths_are_404_in_json(served):
    server = served[0]
    assert call(server.url, "GET", "/admin")[0::2] == (404, {"error": "no endpoint /admin"})
    assert call(server.url, "GET", "/../etc/passwd")[0] == 404


def test_head_answers_the_headers_of_get_without_a_body(served):
    server = served[0]
    status, headers, answer = call(server.url, "HEAD", "/stats")
    assert (status, answer, headers["content-type"]) == (200, None, "application/json; charset=utf-8")


# -- the token and the secrets never leave ----------------------------------------------------
def test_no_answer_of_a_session_carries_the_token_or_a_secret(monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    cp.Actor(f"db-{SECRET}", lambda x: x, inbox=cp.Channel(name="in")).start()
    target = Recorded()
    seen = []
    with open_control(target) as server:
        token = server.token

        def record(*args, **kwargs):
            status, headers, answer = call(server.url, *args, **kwargs)
            seen.append((status, json.dumps(headers), json.dumps(answer)))
            return status

        for path in ("/health", "/info", "/actors", "/stats", "/features", "/openapi.json", "/nope", "/kill"):
            record("GET", path)
        for body in ({"input": token, "records": [token]}, {"input": SECRET, "records": []},
                     {"input": "orders", "records": [1, 2, 3, 4, 5]}):
            record("POST", "/push", token=token, body=body)
        for body in ({"type": "GET_STATS", "id": token}, {"type": "PUSH", "data": {"input": SECRET, "records": []}},
                     {"type": "GET_INFO", "correlation_id": SECRET}, {"type": token.upper().replace("-", "_")[:20]}):
            record("POST", "/commands", token=token, body=body)
        record("POST", "/stop", token=token + "x", body={"timeout": 0})
        record("POST", "/stop", token=token, body=b'{"timeout": "' + token.encode() + b'"', headers={
            "Content-Type": "application/json"})
        record("POST", "/stop", token=token, body={"timeout": token})
        record("DELETE", "/stats", token=token)
        record("GET", "/stats", headers={"Host": token})
        record("POST", "/stop", token=token, body={"timeout": 1})
        record("POST", "/kill", token=token)
    assert killed(target) and len(seen) == 22
    for status, headers, answer in seen:
        assert token not in headers + answer, (status, answer)
        assert SECRET not in headers + answer, (status, answer)
    assert any("***" in answer for _, _, answer in seen)


# -- start and close ---------------------------------------------------------------------------
def test_close_frees_the_port_and_ends_the_thread():
    server = open_control(ActorsTarget("t", list), token=TOKEN)
    thread = server._thread
    assert thread.is_alive() and thread.daemon
    server.close()
    assert not thread.is_alive()
    with socket.socket() as s:
        s.bind(server.address)
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(server.address, timeout=2).close()
    server.close()  # again: nothing


def test_a_stop_in_flight_at_close_still_gets_its_answer_and_new_requests_get_503():
    entered, release = threading.Event(), threading.Event()

    class Draining(ActorsTarget):
        def stop(self, timeout):
            entered.set()
            release.wait(timeout)
            return {"state": "finished"}

    server = open_control(Draining("d", list), token=TOKEN)
    answers = []
    stopping = threading.Thread(target=lambda: answers.append(
        call(server.url, "POST", "/stop", token=TOKEN, body={"timeout": 5})))
    stopping.start()
    assert entered.wait(5)
    closing = threading.Thread(target=server.close, kwargs={"timeout": 4})
    closing.start()
    while not server.closing:
        time.sleep(0.005)
    assert call(server.url, "GET", "/health")[0::2] == (503, {"error": "the control server is closing"})
    release.set()
    stopping.join(5)
    closing.join(5)
    assert answers[0][0::2] == (200, {"state": "finished"})


def test_a_process_forked_while_it_serves_does_not_keep_the_port():
    server = open_control(ActorsTarget("t", cp.Runtime().actors), token=TOKEN)
    actor = cp.Actor("forked", lambda x: x, inbox=cp.Channel(name="in", mode="process"), mode="process").start()
    assert call(server.url, "GET", "/health")[0] == 200
    server.close()
    assert actor.state == "running"
    with socket.socket() as s:
        s.bind(server.address)
        s.listen()


def test_the_servers_thread_leaves_sigint_and_sigterm_to_the_main_thread(served):
    import signal

    server = served[0]
    mask = []
    server._loop.call_soon_threadsafe(lambda: mask.append(signal.pthread_sigmask(signal.SIG_BLOCK, [])))
    deadline = time.monotonic() + 2
    while not mask and time.monotonic() < deadline:
        time.sleep(0.01)
    assert {signal.SIGINT, signal.SIGTERM} <= mask[0]


def test_a_taken_port_is_a_control_error_at_start():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(ControlError, match="cannot serve the control API on 127.0.0.1:.*in use"):
            open_control(ActorsTarget("t", list), f"127.0.0.1:{s.getsockname()[1]}", token=TOKEN)


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.1:99999", "::1:80", "[::1", ":80", "host:port"])
def test_a_bad_address_is_a_control_error(address):
    with pytest.raises(ControlError, match="control address"):
        ControlServer(ActorsTarget("t", list), address)


def test_parse_address_reads_host_and_port():
    assert parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_address("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError, match="expected HOST:PORT"):
        parse_address("8080")


def test_it_serves_on_ipv6_loopback():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        server = open_control(ActorsTarget("t", list), "[::1]:0", token=TOKEN)
    except ControlError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with server:
        assert server.url.startswith("http://[::1]:")
        assert call(server.url, "GET", "/health")[0] == 200


def test_importing_chronopipe_control_does_not_import_aiohttp():
    code = "import sys, chronopipe.control; print('aiohttp' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout == "False\n"


def test_the_switch_interval_is_short_while_a_server_runs_and_put_back_after_the_last(monkeypatch):
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        first = open_control(ActorsTarget("first", list))
        second = open_control(ActorsTarget("second", list))
        assert sys.getswitchinterval() <= 0.0005 + 1e-9
        first.close()
        assert sys.getswitchinterval() <= 0.0005 + 1e-9  # the second still serves
        second.close()
        assert sys.getswitchinterval() == pytest.approx(0.005)
    finally:
        sys.setswitchinterval(before)


# -- connections: a cap, an idle timeout, JSON for malformed HTTP, quiet loop errors ---------------
def _raw(address, data: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(data)
        return s.makefile("rb").read()


def test_connections_beyond_the_cap_are_answered_503_and_closed_at_once(monkeypatch):
    from chronopipe.control import connections

    monkeypatch.setattr(connections, "MAX_CONNECTIONS", 4)
    with open_control(ActorsTarget("t", list), token=TOKEN) as server:
        held = [socket.create_connection(server.address, timeout=5) for _ in range(4)]
        try:
            time.sleep(0.2)
            with socket.create_connection(server.address, timeout=5) as extra:
                reply = extra.makefile("rb").read()  # closed by the server without a request
            assert reply.startswith(b"HTTP/1.1 503")
            assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"].startswith("the control server serves 4")
        finally:
            for s in held:
                s.close()
        time.sleep(0.2)
        assert call(server.url, "GET", "/health")[0] == 200  # the held ones gone, it serves again


def test_a_silent_or_slow_header_connection_is_closed_after_the_idle_timeout(monkeypatch):
    from chronopipe.control import connections

    monkeypatch.setattr(connections, "IDLE_TIMEOUT", 0.5)
    with open_control(ActorsTarget("t", list), token=TOKEN) as server:
        silent = socket.create_connection(server.address, timeout=5)
        slow = socket.create_connection(server.address, timeout=5)
        began = time.monotonic()
        try:
            slow.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{server.address[1]}\r\n".encode())
            for _ in range(3):  # a header byte now and then does not keep it open
                time.sleep(0.2)
                slow.sendall(b"X")
            assert silent.recv(100) == b""
            assert slow.recv(100) == b""
            assert time.monotonic() - began < 3
        finally:
            silent.close()
            slow.close()
        assert call(server.url, "GET", "/health")[0] == 200


def test_malformed_http_is_answered_400_in_json_without_a_traceback(capfd):
    with open_control(ActorsTarget("t", list), token=TOKEN) as server:
        port = server.address[1]
        capfd.readouterr()
        no_host = _raw(server.address, b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        smuggled = _raw(server.address, (f"POST /push HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 4\r\n"
                                         "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n").encode())
    for reply in (no_host, smuggled):
        head, body = reply.split(b"\r\n\r\n", 1)
        assert head.split(b" ", 2)[1] == b"400"
        assert b"Content-Type: application/json" in head
        assert json.loads(body)["error"].startswith("bad HTTP request: ")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error handling request" not in err


def test_event_loop_errors_are_one_line_at_most_every_ten_seconds(caplog):
    from chronopipe.control.connections import loop_errors

    handle = loop_errors()
    with caplog.at_level("WARNING", logger="chronopipe.control"):
        for _ in range(4000):
            handle(None, {"message": "socket.accept() out of system resource",
                          "exception": OSError(24, "Too many open files")})
    (record,) = caplog.records
    assert record.getMessage() == ("control server: socket.accept() out of system resource: "
                                   "OSError: [Errno 24] Too many open files")
    assert record.exc_info is None


def test_an_answer_with_a_lone_surrogate_is_sent_escaped_not_a_500():
    class Odd(ActorsTarget):
        def stats(self):
            return {"state": "odd \ud800"}

    with open_control(Odd("t", list), token=TOKEN) as server:
        status, _, answer = call(server.url, "GET", "/stats")
    assert (status, answer) == (200, {"state": "odd \ud800"})  # the JSON escape \ud800 reads back


def test_features_keep_a_lone_surrogate_name_escaped_and_push_refuses_one():
    from chronopipe.control.features import Features

    features = Features()
    features.see({"\ud800": 1, "price": 2.5})
    snapshot = features.snapshot()
    assert snapshot == {"\\ud800": ["int"], "price": ["float"]}
    json.dumps(snapshot, ensure_ascii=False).encode("utf-8")  # encodable: GET /features keeps working
    target = Recorded()
    with open_control(target, token=TOKEN) as server:
        status, _, answer = call(server.url, "POST", "/push", token=TOKEN,
                                 body=b'{"input": "orders", "records": [{"\\ud800": 1}]}',
                                 headers={"Content-Type": "application/json"})
    assert status == 400 and "lone surrogate" in answer["error"]
    assert target.pushed == []


_SERVE_FOREVER = """
import json, sys, time
from chronopipe.control import ActorsTarget, open_control
server = open_control(ActorsTarget("victim", list))
print(json.dumps({"address": server.address, "token": server.token, "file": str(server.token_file)}), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("how", ["kill", "sigterm"])
def test_the_token_file_is_removed_when_the_process_dies_of_kill_or_sigterm(tmp_path, how):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    env.pop("CHRONOPIPE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", _SERVE_FOREVER], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        started = json.loads(proc.stdout.readline())
        path = started["file"]
        assert os.path.exists(path)
        if how == "kill":
            url = f"http://127.0.0.1:{started['address'][1]}"
            assert call(url, "POST", "/kill", token=started["token"], body={})[0] == 202
        else:
            os.kill(proc.pid, 15)
        assert psutil.Process(proc.pid).wait(5) in (-15, 143)
        assert not os.path.exists(path)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


_SERVE_ON_A_THREAD = """
import json, threading, time
import chronopipe as cp
from chronopipe.control import ActorsTarget, open_control
cp.Runtime()  # made on the main thread: its SIGTERM handler is the one there
started = {}
def serve():
    server = open_control(ActorsTarget("victim", list))  # off the main thread: no handler of its own
    started.update(address=server.address, token=server.token, file=str(server.token_file))
threading.Thread(target=serve).start()
while not started:
    time.sleep(0.01)
print(json.dumps(started), flush=True)
time.sleep(60)
"""


def test_the_runtimes_sigterm_removes_the_token_file_of_a_server_started_off_the_main_thread(tmp_path):
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "HOME": str(tmp_path)}
    env.pop("CHRONOPIPE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-c", _SERVE_ON_A_THREAD], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        path = json.loads(proc.stdout.readline())["file"]
        assert os.path.exists(path)
        os.kill(proc.pid, 15)
        assert psutil.Process(proc.pid).wait(5) in (-15, 143)
        assert not os.path.exists(path)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_an_actors_rss_is_read_at_most_once_a_second():
    target = ActorsTarget("rss", list)
    pid = os.getpid()
    first = target._rss(pid)
    ballast = bytearray(64 * 1024 * 1024)  # resident once its pages are touched:
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    assert target._rss(pid) == first  # kept: no system calls within the second
    time.sleep(1.05)
    assert target._rss(pid) > first + 32 * 1024 * 1024
