"""HTTPSource and Backoff: polling a scripted local server (127.0.0.1, port 0, a thread)."""

from __future__ import annotations

import contextlib
import email.utils
import http.server
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import chronopipe as cp
from chronopipe.sources.backoff import Backoff
from chronopipe.sources.base import POLL, SourceError
from chronopipe.sources.connect import connect
from chronopipe.sources.http import HTTPSource
from sources_helper import client_sockets, free_port, wait_until

Response = tuple[int, dict[str, str], bytes]


class Server:
    """A local HTTP server answering from a script: each request takes the next response (the
    last one repeats). "hang" answers only once ``release`` is set. Requests are recorded as
    (time.monotonic(), path, headers)."""

    def __init__(self, *script: Response | str, port: int = 0) -> None:
        self.script = list(script)
        self.requests: list[tuple[float, str, dict[str, str]]] = []
        self.release = threading.Event()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.requests.append((time.monotonic(), self.path, dict(self.headers)))
                step = owner.script.pop(0) if len(owner.script) > 1 else owner.script[0]
                if step == "hang":
                    owner.release.wait(10)
                    step = (200, {}, b"{}")
                status, headers, body = step
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if status != 304:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if status != 304:
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}/feed"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def gaps(self) -> list[float]:
        times = [at for at, _, _ in self.requests]
        return [b - a for a, b in itertools.pairwise(times)]

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(*script: Response | str, port: int = 0) -> Server:
        servers.append(Server(*script, port=port))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def ok(body: bytes | str = b'{"n": 1}', **headers: str) -> Response:
    return 200, {k.replace("_", "-"): v for k, v in headers.items()}, body.encode() if isinstance(body, str) else body


def fast() -> Backoff:
    return Backoff(initial=0.01, maximum=0.02, seed=1)


@contextlib.contextmanager
def trickler(every: float = 0.02) -> Iterator[str]:
    """The url of a server that sends its response's headers, then one byte of the body every
    ``every`` seconds, for minutes."""
    listener = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def trickle(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            while not done.wait(every):
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=trickle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/slow"
    finally:
        done.set()
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        listener.close()


# -- conditional requests --------------------------------------------------------------------
def test_etag_goes_back_as_if_none_match_and_a_304_yields_nothing(serve):
    server = serve(ok('{"n": 1}', ETag='"v1"'), (304, {"ETag": '"v1"'}, b""), ok('{"n": 2}', ETag='"v2"'))
    source = HTTPSource(server.url, interval=0.02, limit=2)
    assert list(source) == [{"n": 1}, {"n": 2}]
    sent = [headers.get("If-None-Match") for _, _, headers in server.requests]
    assert sent == [None, '"v1"', '"v1"']
    assert source.detail["not_modified"] == 1 and source.detail["polls"] == 3


def test_last_modified_goes_back_as_if_modified_since(serve):
    first, second = "Wed, 21 Oct 2015 07:28:00 GMT", "Thu, 22 Oct 2015 07:28:00 GMT"
    server = serve(ok("1", Last_Modified=first), (304, {}, b""), ok("2", Last_Modified=second), ok("3"))
    source = HTTPSource(server.url, interval=0.02, limit=3)
    assert list(source) == [1, 2, 3]
    sent = [headers.get("If-Modified-Since") for _, _, headers in server.requests]
    assert sent == [None, first, first, second]


# -- throttling ------------------------------------------------------------------------------
def test_429_with_retry_after_seconds_waits_that_long_before_the_next_request(serve):
    server = serve((429, {"Retry-After": "1"}, b""), ok())
    source = HTTPSource(server.url, interval=0.02, limit=1, backoff=fast())
    assert list(source) == [{"n": 1}]
    assert server.gaps()[0] >= 1.0
    assert source.detail["throttled"] == 1 and source.errors == 0


def test_429_with_an_http_date_retry_after_waits_until_that_date(serve):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s from now
    server = serve((429, {"Retry-After": when}, b""), ok())
    source = HTTPSource(server.url, interval=0.02, limit=1, backoff=fast())
    assert list(source) == [{"n": 1}]
    assert 0.95 <= server.gaps()[0] < 3.0
    assert source.detail["throttled"] == 1


def test_503_with_retry_after_is_a_throttle_not_an_error(serve):
    server = serve((503, {"Retry-After": "0"}, b""), ok())
    source = HTTPSource(server.url, interval=0.02, limit=1, backoff=fast())
    assert list(source) == [{"n": 1}]
    assert source.detail["throttled"] == 1 and source.errors == 0


# -- errors and backoff ----------------------------------------------------------------------
def test_503_then_200_recovers_and_counts_the_error(serve):
    server = serve((503, {}, b"busy"), ok())
    source = HTTPSource(server.url, interval=0.02, limit=1, backoff=fast())
    assert list(source) == [{"n": 1}]
    assert source.errors == 1
    assert source.last_error == f"{server.url}: HTTP 503 Service Unavailable"
    assert source.detail["status"] == 200 and source.backoff.attempts == 0


class RecordedBackoff(Backoff):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[float, float, float]] = []  # (when, bound, wait)

    def next(self) -> float:
        bound = self.bound()
        wait = super().next()
        self.calls.append((time.monotonic(), bound, wait))
        return wait


def test_refused_connections_back_off_with_growing_jittered_waits_then_recover(serve):
    port = free_port()
    backoff = RecordedBackoff(initial=0.05, maximum=0.4, seed=3)
    source = HTTPSource(f"http://127.0.0.1:{port}/feed", interval=0.02, limit=1, backoff=backoff).start()
    wait_until(lambda: len(backoff.calls) >= 5)
    serve(ok(), port=port)
    assert source.queue.get(timeout=5) == {"n": 1}
    source.join(5)
    refused = backoff.calls[: source.errors]
    assert [bound for _, bound, _ in refused[:5]] == [0.05, 0.1, 0.2, 0.4, 0.4]
    assert all(0 <= wait <= bound for _, bound, wait in refused)
    for (at, _, wait), (then, _, _) in itertools.pairwise(refused):
        assert then - at >= wait  # each attempt came after the wait drawn
    assert "ConnectionRefusedError" in source.last_error and source.backoff.attempts == 0


def test_max_errors_in_a_row_fail_the_hosted_source_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/feed"
    source = HTTPSource(url, name="feed", max_errors=3, backoff=fast()).start()
    with pytest.raises(cp.ActorError) as caught:
        source.join(5)
    assert caught.value.message.startswith(f"source 'feed': {url}: 3 errors in a row, the last: ConnectionRefused")
    assert source.errors == 3


def test_an_error_message_says_the_url_once_when_the_name_is_the_url():
    url = f"http://127.0.0.1:{free_port()}/feed"
    source = HTTPSource(url, max_errors=2, backoff=fast())
    with pytest.raises(SourceError) as caught:
        list(source)
    message = str(caught.value)
    assert message.count(url) == 1 and "\n" not in message
    assert message.startswith(f"source '{url}': 2 errors in a row, the last: ConnectionRefusedError: ")


def test_an_error_after_a_redirect_says_each_url_once(serve):
    target = serve((404, {}, b""))
    server = serve((302, {"Location": target.url}, b""))
    with pytest.raises(SourceError) as caught:
        list(HTTPSource(server.url))
    assert str(caught.value) == f"source '{server.url}': HTTP 404 Not Found from {target.url} (redirected)"


def test_404_fails_at_once_with_a_one_line_message(serve):
    server = serve((404, {}, b"no such feed"))
    source = HTTPSource(server.url, name="feed", backoff=fast()).start()
    with pytest.raises(cp.ActorError) as caught:
        source.join(5)
    assert caught.value.message == f"source 'feed': {server.url}: HTTP 404 Not Found"
    assert len(server.requests) == 1 and source.errors == 0


def test_a_response_slower_than_timeout_is_an_error(serve):
    server = serve("hang")
    source = HTTPSource(server.url, timeout=0.3, max_errors=1).start()
    started = time.monotonic()
    with pytest.raises(cp.ActorError, match=r"no response within 0.3 s"):
        source.join(5)
    assert time.monotonic() - started < 1.5


def test_a_server_trickling_its_response_is_cut_off_after_timeout_as_an_error():
    with trickler() as url:
        source = HTTPSource(url, timeout=0.5, max_errors=2, backoff=fast()).start()
        started = time.monotonic()
        with pytest.raises(cp.ActorError, match=r"2 errors in a row, the last: TimeoutError: no response within 0.5 s"):
            source.join(5)
    took = time.monotonic() - started  # two requests of 0.5 s each, two short backoffs
    assert 1.0 <= took < 1.0 + 2 * POLL + 0.5, took
    assert source.statistics().detail["polls"] == 2


def test_stop_during_a_trickling_response_ends_the_hosted_source_within_half_a_second():
    with trickler() as url:
        source = HTTPSource(url, timeout=30).start()
        time.sleep(0.5)  # mid-response: a byte every 20 ms
        started = time.monotonic()
        source.stop()
        assert source.wait(0.5), "still running"
        assert time.monotonic() - started < 0.5
        assert source.join(0).errors == 0


def test_a_redirect_is_followed(serve):
    target = serve(ok('"moved"'))
    server = serve((302, {"Location": target.url}, b""))
    assert list(HTTPSource(server.url, limit=1)) == ["moved"]


# -- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("parse", "body", "records"), [
    ("json", b'[1, {"a": 2}]', [[1, {"a": 2}]]),
    ("json-lines", b'{"a": 1}\n\n{"a": 2}\n', [{"a": 1}, {"a": 2}]),
    ("lines", b"one\r\ntwo\n\nfour\n", ["one", "two", "", "four"]),
    ("text", "caf\u00e9\n".encode(), ["caf\u00e9\n"]),
    ("bytes", b"\x00\xff", [b"\x00\xff"]),
])
def test_parse_mode_makes_records_of_a_body(serve, parse, body, records):
    server = serve(ok(body))
    assert list(HTTPSource(server.url, parse=parse, limit=1)) == records


def test_a_body_that_does_not_parse_is_counted_and_polling_goes_on(serve):
    server = serve(ok("{not json"), ok('{"n": 2}'))
    source = HTTPSource(server.url, interval=0.02, limit=1)
    assert list(source) == [{"n": 2}]
    assert source.errors == 1
    assert source.last_error.startswith(f"{server.url}: the body is not JSON")


@pytest.mark.parametrize("url", ["ftp://example.com/x", "example.com/feed", "http:///feed",
                                 "http://user:secret@example.com/", "http://example.com:99999/", "http://a b/"])
def test_a_url_that_is_not_http_is_a_value_error(url):
    with pytest.raises(ValueError, match="HTTPSource"):
        HTTPSource(url)


@pytest.mark.parametrize("kwargs", [{"interval": 0}, {"interval": float("inf")}, {"timeout": float("nan")},
                                    {"timeout": float("inf")}, {"interval": "5"}, {"limit": True}, {"max_errors": 0},
                                    {"limit": 1.5}, {"parse": "xml"}])
def test_a_bad_argument_is_a_one_line_value_error_naming_it(kwargs):
    with pytest.raises(ValueError, match=f"HTTPSource: {next(iter(kwargs))} ") as caught:
        HTTPSource("http://127.0.0.1/feed", **kwargs)
    assert "\n" not in str(caught.value)


# -- stopping and cleaning up ----------------------------------------------------------------
def test_stop_during_a_long_interval_ends_the_hosted_source_within_half_a_second(serve):
    server = serve(ok())
    source = HTTPSource(server.url, interval=60).start()
    assert source.queue.get(timeout=5) == {"n": 1}
    started = time.monotonic()
    source.stop()
    assert source.wait(0.5), "still running"
    assert time.monotonic() - started < 0.5 and source.join(0).detail["polls"] == 1


def test_stop_during_a_slow_response_ends_the_hosted_source_within_half_a_second(serve):
    server = serve("hang")
    source = HTTPSource(server.url, timeout=30).start()
    wait_until(lambda: server.requests)
    source.stop()
    assert source.wait(0.5), "still running"
    source.join(0)
    wait_until(lambda: not client_sockets(server.port), timeout=2)


def test_no_socket_is_left_open_after_the_source_ends(serve):
    server = serve(ok(), (304, {}, b""), (503, {}, b""), ok())
    source = HTTPSource(server.url, interval=0.02, limit=2, backoff=fast()).start()
    statistics = source.join(5)
    assert statistics.records == 2 and statistics.detail["polls"] == 4
    wait_until(lambda: not client_sockets(server.port), timeout=2)


def test_hosted_in_a_process_the_figures_come_back(serve):
    server = serve(ok(), (304, {}, b""), ok('{"n": 2}'))
    source = HTTPSource(server.url, interval=0.02, limit=2, mode="process").start()
    assert list(source.queue) == [{"n": 1}, {"n": 2}]
    statistics = source.join(5)
    assert statistics.records == 2
    assert statistics.detail == {"polls": 3, "not_modified": 1, "throttled": 0, "status": 200}


# -- Backoff ---------------------------------------------------------------------------------
def test_backoff_waits_stay_within_growing_bounds_and_reset_starts_over():
    backoff = Backoff(initial=0.5, maximum=4.0, seed=11)
    bounds, waits = zip(*[(backoff.bound(), backoff.next()) for _ in range(6)], strict=True)
    assert bounds == (0.5, 1.0, 2.0, 4.0, 4.0, 4.0)
    assert all(0 <= wait <= bound for wait, bound in zip(waits, bounds, strict=True))
    backoff.reset()
    assert backoff.attempts == 0 and backoff.bound() == 0.5


def test_backoff_equal_jitter_keeps_at_least_half_the_bound():
    backoff = Backoff(initial=1.0, maximum=1.0, jitter="equal", seed=5)
    assert all(0.5 <= backoff.next() <= 1.0 for _ in range(50))


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"maximum": 0.1}, {"factor": 0.5}, {"jitter": "some"}])
def test_backoff_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)


def test_backoff_does_not_overflow_after_many_attempts():
    backoff = Backoff(initial=1.0, maximum=5.0, factor=10.0, jitter="none")
    assert [backoff.next() for _ in range(400)][-1] == 5.0


def test_a_large_body_is_read_whole(serve):
    records = [{"i": i, "pad": "x" * 100} for i in range(2000)]
    server = serve(ok(json.dumps(records)))
    assert list(HTTPSource(server.url, limit=1)) == [records]


# -- connect ---------------------------------------------------------------------------------
def test_connect_notices_check_during_a_slow_name_lookup(monkeypatch):
    release = threading.Event()
    real = socket.getaddrinfo

    def slow(*args, **kwargs):
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow)
    deadline = time.monotonic() + 0.3

    def check() -> None:
        if time.monotonic() >= deadline:
            raise TimeoutError("stop")

    started = time.monotonic()
    try:
        with pytest.raises(TimeoutError, match="stop"):
            connect("slow.example", 80, check)
        assert time.monotonic() - started < 0.3 + 2 * POLL
    finally:
        release.set()


# -- max_body --------------------------------------------------------------------------------
def test_a_body_over_max_body_is_an_error_and_polling_goes_on(serve):
    server = serve(ok(json.dumps("x" * 200)), ok('{"n": 2}'))
    source = HTTPSource(server.url, interval=0.02, limit=1, max_body=100, backoff=fast())
    assert list(source) == [{"n": 2}]
    assert source.errors == 1 and source.last_error == f"{server.url}: HTTP 200: the body is over max_body (100 bytes)"
    assert source.bytes == len(b'{"n": 2}')  # a Content-Length over max_body: nothing read


def test_an_endless_body_is_read_no_further_than_max_body_and_its_bytes_are_counted():
    listener = socket.create_server(("127.0.0.1", 0))

    def endless() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
                while True:
                    conn.sendall(b"x" * 65536)

    threading.Thread(target=endless, daemon=True).start()
    try:
        source = HTTPSource(f"http://127.0.0.1:{listener.getsockname()[1]}/", parse="bytes",
                            max_body=100_000, max_errors=1)
        with pytest.raises(SourceError, match=r"the body is over max_body \(100000 bytes\)"):
            list(source)
        assert source.bytes == 100_001
    finally:
        listener.close()


def test_max_body_must_be_a_positive_int():
    with pytest.raises(ValueError, match="HTTPSource: max_body must be an int >= 1"):
        HTTPSource("http://127.0.0.1/feed", max_body=0)
