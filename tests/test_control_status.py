"""``chronopipe status URL`` against misbehaving servers: each a real one on 127.0.0.1 started by
the test (socketserver on a thread), answering what a hostile or broken server would.

A redirect is not followed and the token never reaches the other address; ``--timeout`` bounds a
whole request (a server dripping its headers or its body a byte at a time); an answer too big or
too deeply nested is exit 6 in one line; a token that is not printable ASCII is refused (exit 2)
before anything is sent; what the server sends is printed with its control characters escaped,
and ``--json`` stays JSON.
"""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from chronopipe.cli import main
from chronopipe.cli.status import EXIT_UNREACHABLE, EXIT_WRONG_SERVER

Handler = Callable[[socketserver.BaseRequestHandler, bytes, threading.Event], None]


@contextlib.contextmanager
def serve(handle: Handler) -> Iterator[tuple[str, list[bytes]]]:
    """A server on 127.0.0.1 calling ``handle(handler, request, stop)`` for each connection: its
    URL and the requests it received (their first bytes)."""
    stop = threading.Event()
    received: list[bytes] = []

    class One(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(5)
            try:
                data = self.request.recv(65536)
                received.append(data)
                handle(self, data, stop)
            except OSError:
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), One)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def answer(handler: socketserver.BaseRequestHandler, status: str, body: bytes, *headers: str,
           kind: str = "application/json") -> None:
    head = [f"HTTP/1.1 {status}", f"Content-Type: {kind}", f"Content-Length: {len(body)}", "Connection: close",
            *headers]
    handler.request.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str, float]:
    """``chronopipe status ARGS`` in this process: (exit status, stdout, stderr, seconds taken)."""
    start = time.monotonic()
    code = main(["status", *args])
    took = time.monotonic() - start
    out, err = capsys.readouterr()
    return code, out, err, took


INFO = {"name": "p.yml", "kind": "run", "pid": 7, "version": "1.0", "state": "running"}
STATS = {"state": "running", "seconds": 2.5, "totals": {"received": 3, "emitted": 3},
         "actors": [{"name": "csv", "mode": "thread", "state": "running", "pid": 7, "received": 3, "emitted": 3}]}


def chronopipe_like(info: object = INFO, stats: object = STATS, raw: dict[str, bytes] | None = None) -> Handler:
    """A server answering ``info`` at /info and ``stats`` at /stats (``raw`` bodies, when given, as they are)."""
    def handle(handler: socketserver.BaseRequestHandler, request: bytes, stop: threading.Event) -> None:
        path = request.split(b" ")[1].decode() if b" " in request else "/"
        body = (raw or {}).get(path) or json.dumps(info if path == "/info" else stats).encode()
        answer(handler, "200 OK", body)
    return handle


# -- 1. a redirect is not followed: the token never leaves for another address -------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("code", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect",
                                  "308 Permanent Redirect"])
def test_a_redirect_is_not_followed_exit_6_naming_its_location_and_the_token_stays(capsys, code):
    token = "Tok-redirect-secret"
    with serve(chronopipe_like()) as (elsewhere, stolen):
        def redirect(handler, request, stop):
            answer(handler, code, b"", f"Location: {elsewhere}/steal")

        with serve(redirect) as (url, asked):
            got, out, err, _ = status(capsys, url, "--token", token)
    assert got == EXIT_WRONG_SERVER == 6
    assert stolen == [], "the request went to the redirect's address"
    assert len(asked) == 1 and f"Bearer {token}".encode() in asked[0]
    assert out == "" and err.splitlines() == [
        f"chronopipe status: {url}: not a chronopipe control API (GET /info answered {code.split()[0]}, "
        f"a redirect to {elsewhere}/steal: not followed)"]
    assert token not in err


# -- 2. --timeout bounds the whole request ------------------------------------------------------
def drip_headers(handler, request, stop):
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}":
        if stop.wait(0.2):
            return
        handler.request.sendall(bytes([byte]))


def drip_body(handler, request, stop):
    handler.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
    while not stop.wait(0.2):
        handler.request.sendall(b" ")


@pytest.mark.timeout(30)
@pytest.mark.parametrize("drip", [drip_headers, drip_body], ids=["headers", "body"])
def test_a_server_dripping_its_answer_a_byte_at_a_time_is_cut_at_the_timeout_exit_4(capsys, drip):
    with serve(drip) as (url, _):
        got, out, err, took = status(capsys, url, "--timeout", "1")
    assert got == EXIT_UNREACHABLE == 4
    assert out == "" and err.splitlines() == [f"chronopipe status: {url}: unreachable (no answer within 1 s)"]
    assert took < 2.5, f"--timeout 1 took {took:.1f} s"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("length", [True, False], ids=["content-length", "read-to-the-end"])
def test_an_answer_of_more_than_16_mib_is_exit_6_without_reading_it_all(capsys, length):
    def huge(handler, request, stop):
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
        handler.request.sendall(head + (b"Content-Length: 500000000\r\n" if length else b"") + b"\r\n[")
        chunk = b"1," * (1 << 19)
        for _ in range(500):  # 500 MiB at most
            if stop.is_set():
                return
            handler.request.sendall(chunk)

    with serve(huge) as (url, _):
        got, out, err, took = status(capsys, url, "--timeout", "20")
    assert got == EXIT_WRONG_SERVER and out == "" and len(err.splitlines()) == 1
    assert "not a chronopipe control API (GET /info: an answer of" in err and "16 MiB" in err, err
    assert took < 10


# -- 3. an answer nested too deep, or not JSON ----------------------------------------------------
@pytest.mark.timeout(30)
@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,
                                  b'{"pid": ' + b"9" * 100_000 + b"}", b'{"name": "x", "state":'],
                         ids=["deep-list", "deep-object", "huge-int", "cut"])
def test_an_answer_too_deeply_nested_or_not_json_is_exit_6_in_one_line(capsys, body):
    with serve(chronopipe_like(raw={"/info": body})) as (url, _):
        got, out, err, _ = status(capsys, url)
    assert got == EXIT_WRONG_SERVER == 6
    assert out == "" and err.splitlines() == [f"chronopipe status: {url}: not a chronopipe control API "
                                              "(GET /info: not JSON)"]


# -- 4, 5. a token that is not printable ASCII ------------------------------------------------------
BAD_TOKENS = ["Tok\r\nX-Injected: 1", "Tok\nx", "Tok\x00x", "Tok\tx", "Tok x", "Tok\x7f", "Tok\x85x",
              "Tøken", "Tok\u2028x", "Tok😀"]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("where", ["--token", "CHRONOPIPE_TOKEN"])
@pytest.mark.parametrize("token", BAD_TOKENS, ids=[ascii(t) for t in BAD_TOKENS])
def test_a_token_that_is_not_printable_ascii_is_exit_2_before_anything_is_sent(capsys, monkeypatch, where, token):
    if where == "CHRONOPIPE_TOKEN" and "\x00" in token:
        pytest.skip("an environment variable cannot hold a NUL")
    monkeypatch.delenv("CHRONOPIPE_TOKEN", raising=False)
    with serve(chronopipe_like()) as (url, asked):
        if where == "--token":
            got, out, err, _ = status(capsys, url, "--token", token)
        else:
            monkeypatch.setenv("CHRONOPIPE_TOKEN", token)
            got, out, err, _ = status(capsys, url)
    assert got == 2
    assert asked == []
    assert out == "" and err.splitlines() == [
        f"chronopipe status: {where}: the token must be printable ASCII (visible characters, no spaces)"]
    assert "Tok" not in err


@pytest.mark.timeout(30)
def test_a_printable_ascii_token_is_sent_as_a_bearer(capsys):
    token = "Tok-~!#$%&'*+.^_`|0123456789"
    with serve(chronopipe_like()) as (url, asked):
        got, out, err, _ = status(capsys, url, "--token", token)
    assert got == 0 and out.startswith("run p.yml (pid 7, chronopipe 1.0): running"), err
    assert all(f"Authorization: Bearer {token}\r\n".encode() in request for request in asked) and len(asked) == 2


# -- 6. what the server sends is printed escaped ----------------------------------------------------
HOSTILE_INFO = {"name": "\x1b[31mRED\x1b[0m\x07", "kind": "run\r\n", "pid": "7\x1b[2J", "version": "1\x9b31m",
                "state": "x"}
HOSTILE_STATS = {"state": "running\x1b]0;pwned\x07", "seconds": 1.0, "totals": {},
                 "actors": [{"name": "\x1b]0;pwned\x07a", "mode": "thr\x7fead", "state": "run\u202ening\u2028",
                             "pid": 7}]}


@pytest.mark.timeout(30)
def test_control_characters_the_server_sends_are_escaped_in_the_table(capsys):
    with serve(chronopipe_like(HOSTILE_INFO, HOSTILE_STATS)) as (url, _):
        got, out, err, _ = status(capsys, url)
    assert got == 0, err
    lines = out.splitlines()
    assert lines[0] == ("run\\r\\n \\x1b[31mRED\\x1b[0m\\x07 (pid 7\\x1b[2J, chronopipe 1\\x9b31m): "
                        "running\\x1b]0;pwned\\x07, 1.00 s")
    assert lines[2].split()[:3] == ["\\x1b]0;pwned\\x07a", "thr\\x7fead", "run\\u202ening\\u2028"]
    assert len(lines) == 4
    assert not any((ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f or c in "\u202e\u2028" for c in out)


@pytest.mark.timeout(30)
def test_json_output_of_hostile_answers_stays_valid_json(capsys):
    raw = {"/stats": b'{"state": "r\\u001b[2J", "seconds": NaN, "rate": Infinity, "big": 1e999, "actors": []}'}
    with serve(chronopipe_like(HOSTILE_INFO, raw=raw)) as (url, _):
        got, out, err, _ = status(capsys, url, "--json")
    assert got == 0, err
    assert not any((ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f for c in out)
    answered = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert answered["info"] == HOSTILE_INFO
    assert answered["stats"] == {"state": "r\x1b[2J", "seconds": None, "rate": None, "big": None, "actors": []}


@pytest.mark.timeout(30)
def test_an_error_text_the_server_sends_is_escaped_in_the_one_line(capsys):
    def refuse(handler, request, stop):
        answer(handler, "401 Unauthorized", json.dumps({"error": "no\x1b]0;pwned\x07 token"}).encode())

    with serve(refuse) as (url, _):
        got, out, err, _ = status(capsys, url)
    assert got == 5 and out == ""
    assert err.splitlines() == [f"chronopipe status: {url}: refused (401: no\\x1b]0;pwned\\x07 token); give the "
                                "token with --token or CHRONOPIPE_TOKEN"]
