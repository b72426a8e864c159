"""WebSocketSource against real websocket servers on 127.0.0.1: one in a thread of the test
(websockets.sync.server), or one in a subprocess when the test kills it hard (SIGKILL) and
starts it again on the same port."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from websockets.sync.server import serve

from chronopipe import ActorError
from chronopipe.sources.backoff import Backoff
from chronopipe.sources.base import Marker, SourceError
from chronopipe.sources.websocket import WebSocketSource
from sources_helper import client_sockets, free_port, wait_until

FAST = {"initial": 0.02, "maximum": 0.05, "jitter": "none"}  # Backoff of the tests that wait for no wait

# A numbered feed: the first message of a connection asks {"from": n}; then n, n+1, ... forever.
NUMBERED_FEED = r"""
import json, sys, time
from websockets.sync.server import serve

def feed(ws):
    n = json.loads(ws.recv())["from"]
    while True:
        ws.send(json.dumps({"seq": n}))
        n += 1
        time.sleep(0.002)

with serve(feed, "127.0.0.1", int(sys.argv[1])) as server:
    print(server.socket.getsockname()[1], flush=True)
    server.serve_forever()
"""


@contextlib.contextmanager
def websocket_server(handler: Callable) -> Iterator[str]:
    """A websocket server in a thread of the test; yields its uri."""
    server = serve(handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/feed"
    finally:
        server.shutdown()
        thread.join(5)


@contextlib.contextmanager
def tcp_listener(answer: bool) -> Iterator[tuple[int, list[float]]]:
    """A TCP port that is no websocket server: it accepts and closes at once (``answer``: the
    handshake fails at once), or it never accepts (the handshake hangs). Yields the port and
    the times connections were accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[float] = []
    done = threading.Event()

    def serve_forever() -> None:
        while not done.is_set():
            try:
                peer, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(time.monotonic())
            peer.close()

    thread = threading.Thread(target=serve_forever, daemon=True)
    if answer:
        thread.start()
    try:
        yield listener.getsockname()[1], accepted
    finally:
        done.set()
        if answer:
            thread.join(5)
        listener.close()


class KillableServer:
    """NUMBERED_FEED in a subprocess: kill() with SIGKILL, restart() on the same port."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> int:
        for _ in range(50):  # the port may still be held for a moment after a kill
            proc = subprocess.Popen([sys.executable, "-c", NUMBERED_FEED, str(self.port)],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            line = proc.stdout.readline()
            if line.strip():
                self.proc, self.port = proc, int(line)
                return self.port
            proc.wait()
            time.sleep(0.05)
        raise RuntimeError(f"cannot start the feed on port {self.port}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc is not None:
            self.proc.stdout.close()


@pytest.fixture
def killable() -> Iterator[KillableServer]:
    server = KillableServer()
    try:
        yield server
    finally:
        server.kill()


def assert_no_socket_to(port: int, deadline: float = 2.0) -> None:
    end = time.monotonic() + deadline
    while client_sockets(port) and time.monotonic() < end:
        time.sleep(0.02)
    assert client_sockets(port) == []


def port_of(uri: str) -> int:
    return int(uri.rsplit(":", 1)[1].split("/")[0])


def send_all(messages: list) -> Callable:
    """A handler that sends ``messages`` and closes normally (code 1000)."""
    return lambda ws: [ws.send(m) for m in messages]


# -- the stream ----------------------------------------------------------------------------------
def test_messages_arrive_in_order(mode):
    messages = [f"message {n}" for n in range(1000)]
    with websocket_server(send_all(messages)) as uri:
        source = WebSocketSource(uri, end_on_close=True, mode=mode).start()
        assert list(source.queue) == messages
        stats = source.join(5)
    assert stats.records == 1000 and stats.detail["messages"] == 1000 and stats.bytes == sum(map(len, messages))
    assert stats.detail["connects"] == 1 and stats.markers == 0


def test_parse_json_yields_the_values_and_counts_a_bad_message():
    with websocket_server(send_all(['{"a": 1}', "not json", '{"a": 2}'])) as uri:
        source = WebSocketSource(uri, parse="json", end_on_close=True)
        assert list(source) == [{"a": 1}, {"a": 2}]
    assert source.errors == 1 and source.detail["messages"] == 3
    assert "message 2 is not JSON" in source.last_error and "not json" in source.last_error


def test_parse_bytes_yields_the_payloads_text_frames_too():
    with websocket_server(send_all(["héllo", b"\x00\xff"])) as uri:
        assert list(WebSocketSource(uri, parse="bytes", end_on_close=True)) == ["héllo".encode(), b"\x00\xff"]


def test_parse_text_skips_a_binary_message_that_is_not_utf8():
    with websocket_server(send_all(["one", b"\xff\xfe", b"two"])) as uri:
        source = WebSocketSource(uri, end_on_close=True)
        assert list(source) == ["one", "two"]
    assert source.errors == 1 and "message 2 is not UTF-8 text" in source.last_error


def test_limit_ends_the_source_after_that_many_records():
    with websocket_server(send_all([str(n) for n in range(50)])) as uri:
        source = WebSocketSource(uri, limit=10)
        assert list(source) == [str(n) for n in range(10)]
        assert_no_socket_to(port_of(uri))


# -- connections and reconnections ----------------------------------------------------------------
def test_on_connect_subscribes_on_every_connection():
    seen = []

    def handler(ws):  # one message per subscription, then a normal close
        seen.append(ws.recv())
        ws.send(f"data {len(seen)}")

    with websocket_server(handler) as uri:
        source = WebSocketSource(uri, on_connect=lambda ws: ws.send("subscribe trades"), limit=3,
                                 backoff=Backoff(**FAST))
        records = list(source)
    assert seen == ["subscribe trades"] * 3
    data = [r for r in records if not isinstance(r, Marker)]
    kinds = [r.kind for r in records if isinstance(r, Marker)]
    assert data == ["data 1", "data 2", "data 3"]
    assert kinds == ["gap_start", "gap_end"] * 2  # a normal close (1000) of a feed is a drop
    assert source.detail["connects"] == 3 and source.detail["reconnects"] == 2


def test_end_on_close_ends_the_source_at_a_normal_close():
    with websocket_server(send_all(["only"])) as uri:
        source = WebSocketSource(uri, end_on_close=True)
        assert list(source) == ["only"]
    assert source.markers == 0 and source.errors == 0 and source.detail["reconnects"] == 0


def test_server_killed_and_restarted_gives_gap_markers_and_no_duplicates(killable):
    port = killable.start()
    last = [-1]  # the last seq seen: the subscription asks for what follows it
    source = WebSocketSource(f"ws://127.0.0.1:{port}/", parse="json", backoff=Backoff(0.05, 0.2, seed=1),
                             on_connect=lambda ws: ws.send(json.dumps({"from": last[0] + 1})))
    stream, killed_at, restarter = [], None, None
    for record in source:
        stream.append(record)
        if isinstance(record, Marker):
            continue
        last[0] = record["seq"]
        if last[0] == 100 and restarter is None:
            killable.kill()
            killed_at = time.time()
            restarter = threading.Timer(0.5, killable.start)
            restarter.start()
        if last[0] >= 300:
            break
    restarter.join()
    markers = [(n, r) for n, r in enumerate(stream) if isinstance(r, Marker)]
    assert [r.kind for _, r in markers] == ["gap_start", "gap_end"]
    (start_at, start), (end_at, end) = markers
    assert start_at > 100 and end_at == start_at + 1  # between the data, nothing between the two
    assert start.at - killed_at < 0.5 and "connection closed" in start.detail["reason"]
    assert end.detail["gap"] >= 0.45 and end.detail["attempts"] >= 2  # refused while the server was down
    assert [r["seq"] for r in stream if not isinstance(r, Marker)] == list(range(last[0] + 1))  # none twice
    assert source.detail["connects"] == 2 and source.detail["reconnects"] == 1
    assert source.errors == source.detail["reconnects"] + end.detail["attempts"] - 1  # the drop, the refusals
    assert_no_socket_to(port)


def test_a_drop_of_a_young_connection_waits_the_backoff_even_after_a_message():
    accepted: list[float] = []

    def handler(ws):  # one message, then a normal close: a storm of reconnects if data reset the wait
        accepted.append(time.monotonic())
        ws.send("hi")

    with websocket_server(handler) as uri:
        source = WebSocketSource(uri, backoff=Backoff(0.2, 0.2, jitter="none")).start()
        time.sleep(1.0)
        source.stop()
        source.join(2)
    waits = [b - a for a, b in itertools.pairwise(accepted)]
    assert 3 <= len(accepted) <= 7 and all(w >= 0.18 for w in waits), waits
    assert source.statistics().markers == 2 * len(accepted) - 1  # still a gap_start at every drop


def test_a_drop_of_a_connection_up_longer_than_healthy_reconnects_at_once():
    accepted: list[float] = []

    def handler(ws):
        accepted.append(time.monotonic())
        ws.send("hi")
        time.sleep(0.3)

    with websocket_server(handler) as uri:
        source = WebSocketSource(uri, healthy=0.2, backoff=Backoff(2.0, 2.0, jitter="none"), limit=3)
        assert [r for r in source if not isinstance(r, Marker)] == ["hi"] * 3
    waits = [b - a for a, b in itertools.pairwise(accepted)]
    assert len(waits) == 2 and all(w < 0.3 + 0.5 for w in waits), waits  # not the 2 s of the backoff


def test_connections_closed_before_any_message_are_failed_attempts_of_one_gap():
    count = [0]

    def handler(ws):  # data, then 4 connections closed at once without a message, then data again
        count[0] += 1
        if count[0] == 1 or count[0] >= 6:
            ws.send(f"msg {count[0]}")
            if count[0] >= 6:
                [None for _ in ws]  # until the source closes

    with websocket_server(handler) as uri:
        source = WebSocketSource(uri, backoff=Backoff(**FAST), limit=2)
        stream = [(r.kind, r.detail.get("attempts")) if isinstance(r, Marker) else r for r in source]
    assert stream == ["msg 1", ("gap_start", None), ("gap_end", 5), "msg 6"]
    assert source.detail["connects"] == 6 and source.detail["reconnects"] == 1 and source.errors == 5


def test_backoff_waits_grow_while_the_server_is_down_and_stay_bounded():
    with tcp_listener(answer=True) as (port, accepted):  # every handshake fails at once
        source = WebSocketSource(f"ws://127.0.0.1:{port}/", backoff=Backoff(0.05, 0.2, jitter="none")).start()
        wait_until(lambda: len(accepted) >= 7)
        source.stop()
        source.join(2)
    waits = [b - a for a, b in itertools.pairwise(accepted)][:6]
    expected = [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]
    assert all(e * 0.9 <= w <= e + 0.25 for w, e in zip(waits, expected, strict=True)), waits
    assert waits[0] < waits[2]
    assert source.errors >= 6 and source.markers == 0  # never connected: no gap to mark


def test_max_attempts_fails_the_hosted_source_naming_the_uri():
    uri = f"ws://127.0.0.1:{free_port()}/trades"
    source = WebSocketSource(uri, name="trades", max_attempts=3, backoff=Backoff(**FAST)).start()
    expected = f"source 'trades': cannot connect ({uri}): 3 attempts in a row failed"
    with pytest.raises(ActorError, match=re.escape(expected)) as caught:
        source.join(5)
    assert isinstance(caught.value.__cause__, SourceError)
    assert source.statistics().errors == 3


def test_an_error_message_says_the_uri_once_when_the_default_name_is_made_of_it():
    port = free_port()
    source = WebSocketSource(f"ws://127.0.0.1:{port}/trades", max_attempts=2, backoff=Backoff(**FAST))
    with pytest.raises(SourceError) as caught:
        list(source)
    message = str(caught.value)
    assert message.startswith(f"source 'ws:127.0.0.1:{port}/trades': cannot connect: 2 attempts in a row failed, "
                              "the last: ConnectionRefusedError: "), message
    assert message.count(f"127.0.0.1:{port}/trades") == 1 and "\n" not in message


def test_on_connect_that_raises_fails_the_source_naming_it():
    def subscribe(ws):
        raise RuntimeError("no such channel")

    with websocket_server(lambda ws: [None for _ in ws]) as uri:
        source = WebSocketSource(uri, name="trades", on_connect=subscribe)
        with pytest.raises(SourceError) as caught:
            list(source)
        assert str(caught.value) == f"source 'trades': on_connect failed ({uri}): RuntimeError: no such channel"
        assert_no_socket_to(port_of(uri))


class Interrupted(BaseException):
    pass


def test_on_connect_that_raises_a_base_exception_closes_the_connection_too():
    def subscribe(ws):
        raise Interrupted

    with websocket_server(lambda ws: [None for _ in ws]) as uri:
        with pytest.raises(Interrupted):
            list(WebSocketSource(uri, on_connect=subscribe))
        assert_no_socket_to(port_of(uri))


@pytest.mark.parametrize("uri", ["http://127.0.0.1:80/", "127.0.0.1:80", "ws://", "tcp://host:1/"])
def test_a_bad_uri_is_a_value_error_at_construction(uri):
    with pytest.raises(ValueError, match="ws:// or wss://"):
        WebSocketSource(uri)


@pytest.mark.parametrize(("uri", "kwargs", "error", "match"), [
    ("ws://127.0.0.1:99999/", {}, ValueError, "Port out of range"),
    ("ws://u:secret@h:99999/", {}, ValueError, r"'ws://u:\*\*\*@h:99999/'"),
    (None, {}, ValueError, "ws:// or wss:// address, not None"),
    ("ws://h/", {"open_timeout": -1}, ValueError, "open_timeout must be finite and > 0"),
    ("ws://h/", {"open_timeout": float("inf")}, ValueError, "open_timeout must be finite and > 0"),
    ("ws://h/", {"open_timeout": None}, TypeError, "open_timeout must be a number"),
    ("ws://h/", {"max_attempts": 0}, ValueError, "max_attempts must be at least 1"),
    ("ws://h/", {"max_attempts": "3"}, TypeError, "max_attempts must be an int"),
    ("ws://h/", {"limit": 1.5}, TypeError, "limit must be an int"),
    ("ws://h/", {"parse": "xml"}, ValueError, "parse must be"),
])
def test_a_bad_argument_is_a_one_line_error_at_construction(uri, kwargs, error, match):
    with pytest.raises(error, match=f"WebSocketSource.*{match}") as caught:
        WebSocketSource(uri, **kwargs)
    assert "\n" not in str(caught.value) and "secret" not in str(caught.value)


def test_a_password_in_the_uri_is_not_shown():
    source = WebSocketSource("wss://user:secret@feed.example/trades?x=1")
    assert "secret" not in source.name and "secret" not in source.detail["uri"]
    assert source.detail["uri"] == "wss://user:***@feed.example/trades?x=1"


# -- stopping and cleaning up ----------------------------------------------------------------------
def test_stop_ends_a_connected_source_within_half_a_second():
    with websocket_server(lambda ws: [None for _ in ws]) as uri:  # connected, nothing sent
        source = WebSocketSource(uri).start()
        wait_until(lambda: source.statistics().detail["connects"] == 1)
        source.stop()
        assert source.wait(0.5)
        assert source.join().records == 0


def test_stop_ends_a_source_waiting_to_reconnect_within_half_a_second():
    source = WebSocketSource(f"ws://127.0.0.1:{free_port()}/", backoff=Backoff(5.0, 5.0, jitter="none")).start()
    wait_until(lambda: source.statistics().errors >= 1)  # refused, now waiting 5 s
    time.sleep(0.2)
    source.stop()
    assert source.wait(0.5)


def test_stop_ends_a_source_during_a_hanging_handshake_and_its_socket_is_closed_after():
    with tcp_listener(answer=False) as (port, _):  # the TCP connection is made, no handshake answer
        source = WebSocketSource(f"ws://127.0.0.1:{port}/", open_timeout=1.0).start()
        wait_until(lambda: len(client_sockets(port)) == 1)
        source.stop()
        assert source.wait(0.5)
        assert_no_socket_to(port, deadline=3.0)  # the attempt left behind ends within open_timeout


def test_stop_while_the_channel_is_full_ends_the_source_and_closes_its_connection():
    def flood(ws):
        with contextlib.suppress(Exception):
            for n in range(100_000):
                ws.send(str(n))

    with websocket_server(flood) as uri:
        source = WebSocketSource(uri, maxsize=10).start()
        wait_until(lambda: source.statistics().detail["messages"] > 10)
        time.sleep(0.3)  # the channel is full; nobody reads it
        started = time.monotonic()
        source.stop()
        assert source.wait(1.0), "still running"
        assert time.monotonic() - started < 1.0
        assert source.join(0).detail["unsent"] > 0
        assert_no_socket_to(port_of(uri))


def test_no_socket_is_left_after_the_end():
    with websocket_server(lambda ws: [ws.send(str(n)) for n in range(5)] + [None for _ in ws]) as uri:
        port = port_of(uri)
        source = WebSocketSource(uri).start()
        wait_until(lambda: source.statistics().detail["messages"] == 5)
        assert len(client_sockets(port)) == 1
        source.stop()
        source.join(2)
        assert_no_socket_to(port)
