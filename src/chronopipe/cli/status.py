"""``chronopipe status URL [--token TOKEN] [--json]``: what a running pipeline's control API says.

    $ chronopipe status http://127.0.0.1:44789
    run pipeline.yml (pid 569, chronopipe 0.1.0): running, 2.06 s
    actor  mode     state    pid     in    out     rate  queue      rss  restarts  dead letters
    lines  thread   running  569  8,144  8,144  3.96k/s      0  131 MiB         0             0
    out    thread   running  569  8,144  8,144  3.91k/s      0  131 MiB         0             0
    totals: 2 actors; in 8,144, out 8,144, restarts 0, dead letters 0

It asks ``GET /info`` and ``GET /stats`` (the same as the ``/actors`` rows), each whole request
within ``--timeout`` seconds and 16 MiB, and prints them as a table (what the server sent escaped
of control characters); ``--json`` prints ``{"info": ..., "stats": ...}`` as the server said.
The token (``--token``, else ``CHRONOPIPE_TOKEN``; printable ASCII) is needed only for a server on
another address than loopback; it is sent as ``Authorization: Bearer``, never printed, and never
to another address: a redirect is not followed. Every failure is one line on stderr with its own
exit status (STATUS_EXIT_CODES), never a traceback.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import math
import os
import re
import socket
import sys
import time
import urllib.parse
from typing import Any, TextIO

from ..control.security import check_token as sendable
from .outputs import EXIT_OK, UsageError

__all__ = ["EXIT_REFUSED", "EXIT_UNREACHABLE", "EXIT_WRONG_SERVER", "StatusError", "add_parser", "check_token",
           "clean", "fetch", "format_status", "run_status"]

EXIT_UNREACHABLE = 4  #: nothing answered at the URL (connection refused, timed out, no such host)
EXIT_REFUSED = 5  #: the server refused us (401 / 403): no token or a wrong one, a Host it does not allow
EXIT_WRONG_SERVER = 6  #: something answered, but not a chronopipe control API
STATUS_EXIT_CODES = """exit status:
  0    the server answered; its table is printed
  2    usage error (a URL that is not http://HOST:PORT, a token that is not printable ASCII)
  4    unreachable: nothing answers at the URL (connection refused, unknown host), or no whole
       answer within --timeout seconds
  5    refused (401 / 403): give the token with --token or CHRONOPIPE_TOKEN
  6    something answered that is not a chronopipe control API (a redirect, not JSON, too big)"""
TIMEOUT = 5.0  #: seconds per request, all of it: connecting, the headers, the body
MAX_ANSWER = 16 << 20  #: bytes read at most from an answer; a longer one is not ours
#: what is escaped in what a server sends before it is printed: C0, DEL, C1, line and paragraph
#: separators, the bidirectional overrides (a name cannot move the cursor, retitle the terminal)
UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
COLUMNS = ("actor", "mode", "state", "pid", "in", "out", "rate", "queue", "rss", "restarts", "dead letters")


class StatusError(Exception):
    """One line for the user, and the exit status it means."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_parser(sub: Any) -> None:
    """Register ``status`` on ``sub`` (from ``ArgumentParser.add_subparsers``)."""
    p = sub.add_parser("status", help="show what a running pipeline's control API says (its actors, as a table)",
                       description="Ask a control API (chronopipe run/validate --control HOST:PORT, "
                                   "Pipeline(control=...)) for /info and /stats and print them as a table.",
                       epilog=STATUS_EXIT_CODES)
    p.add_argument("url", metavar="URL", help="the control API: http://HOST:PORT (as its start-up line says)")
    p.add_argument("--token", help="the bearer token (default: CHRONOPIPE_TOKEN); needed off loopback only")
    p.add_argument("--json", action="store_true", help="print the answers as JSON, not a table")
    p.add_argument("--timeout", type=float, default=TIMEOUT,
                   help=f"seconds per request, connecting and the whole answer (default {TIMEOUT:g})")


def base_url(url: str) -> str:
    """``http://HOST:PORT`` of what was given (a bare ``HOST:PORT`` too; a path such as ``/stats``
    is dropped).

    Raises:
        UsageError: not an http URL with a host and a port.

    >>> base_url("127.0.0.1:8080"), base_url("http://[::1]:9/stats")
    ('http://127.0.0.1:8080', 'http://[::1]:9')
    """
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise UsageError(f"{url!r} is not a control API's URL: give http://HOST:PORT")
    return f"http://{parts.netloc.rpartition('@')[2]}"


def fetch(url: str, path: str, *, token: str | None = None, timeout: float = TIMEOUT) -> Any:
    """GET ``url + path``: the JSON it answers, the whole request (connect, headers, body) within
    ``timeout`` seconds and ``MAX_ANSWER`` bytes. A redirect is not followed (the token never
    leaves for another address): it is "not a chronopipe control API".

    Raises:
        StatusError: unreachable, refused, or not a chronopipe answer (one line, with its exit status).
        UsageError: a token that is not printable ASCII.
    """
    check_token(token)
    parts = urllib.parse.urlsplit(url)
    deadline = time.monotonic() + timeout
    late = f"{url}: unreachable (no answer within {timeout:g} s)"
    connection = _Connection(parts.hostname or "", parts.port, deadline)
    try:
        try:
            connection.connect()
        except TimeoutError:
            raise StatusError(late, EXIT_UNREACHABLE) from None
        except OSError as exc:
            raise StatusError(f"{url}: unreachable ({_why(exc)})", EXIT_UNREACHABLE) from None
        headers = {"Accept": "application/json", "User-Agent": "chronopipe-status"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request("GET", path, headers=headers)
            answer = connection.getresponse()
            code, kind = answer.status, answer.headers.get_content_type()
            if 200 <= code < 300:
                body = _read(answer, deadline, url, path)
            elif code in (401, 403):
                reason = _error_text(answer)
                raise StatusError(f"{url}: refused ({code}{': ' + reason if reason else ''}); give the token "
                                  "with --token or CHRONOPIPE_TOKEN", EXIT_REFUSED)
            elif 300 <= code < 400:
                where = " ".join((answer.getheader("Location") or "nowhere").split())[:200]
                raise StatusError(f"{url}: not a chronopipe control API (GET {path} answered {code}, a redirect "
                                  f"to {where}: not followed)", EXIT_WRONG_SERVER)
            else:
                raise StatusError(f"{url}: not a chronopipe control API (GET {path} answered {code})",
                                  EXIT_WRONG_SERVER)
        except TimeoutError:
            raise StatusError(late, EXIT_UNREACHABLE) from None
        except (http.client.HTTPException, OSError, ValueError) as exc:
            raise StatusError(f"{url}: not a chronopipe control API ({_why(exc)})", EXIT_WRONG_SERVER) from None
    finally:
        connection.release()
    if kind != "application/json":
        raise StatusError(f"{url}: not a chronopipe control API (GET {path} answered {kind})", EXIT_WRONG_SERVER)
    try:
        return json.loads(body, parse_constant=lambda _: None, parse_float=_finite)
    except (ValueError, RecursionError):
        raise StatusError(f"{url}: not a chronopipe control API (GET {path}: not JSON)", EXIT_WRONG_SERVER) from None


def _finite(text: str) -> float | None:
    """A JSON number as a float; ``None`` for one out of range (``1e999``): ``--json`` stays JSON."""
    value = float(text)
    return value if math.isfinite(value) else None


def _read(answer: http.client.HTTPResponse, deadline: float, url: str, path: str) -> bytes:
    """The body of ``answer``, in chunks, until ``deadline`` (TimeoutError) and ``MAX_ANSWER`` bytes."""
    length = answer.getheader("Content-Length", "")
    if length.strip().isdigit() and int(length) > MAX_ANSWER:
        raise StatusError(f"{url}: not a chronopipe control API (GET {path}: an answer of {int(length):,} "
                          f"bytes, more than {MAX_ANSWER >> 20} MiB)", EXIT_WRONG_SERVER)
    chunks: list[bytes] = []
    size = 0
    while chunk := answer.read(65536):
        size += len(chunk)
        if size > MAX_ANSWER:
            raise StatusError(f"{url}: not a chronopipe control API (GET {path}: an answer of more than "
                              f"{MAX_ANSWER >> 20} MiB)", EXIT_WRONG_SERVER)
        if time.monotonic() > deadline:
            raise TimeoutError
        chunks.append(chunk)
    return b"".join(chunks)


class _Connection(http.client.HTTPConnection):
    """An HTTP connection whose every send and receive waits only until ``deadline`` (a server
    sending a byte at a time cannot hold it longer): its socket is a :class:`_DeadlineSocket`."""

    def __init__(self, host: str, port: int | None, deadline: float) -> None:
        super().__init__(host, port, timeout=max(deadline - time.monotonic(), 0.001))
        self.deadline = deadline
        self.raw: socket.socket | None = None

    def connect(self) -> None:
        super().connect()
        self.raw = self.sock
        self.sock = _DeadlineSocket(self.sock, self.deadline)

    def release(self) -> None:
        """Close the socket (``close`` leaves it to the answer being read, as http.client expects)."""
        self.close()
        if self.raw is not None:
            self.raw.close()


class _DeadlineSocket:
    """What http.client uses of a socket (sendall, makefile), each call's timeout set to the time
    left until ``deadline``; past it, TimeoutError. Its close is the connection's own (http.client
    closes the socket once it has the headers of a last answer, and reads the body after)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock, self.deadline = sock, deadline

    def left(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self.sock.settimeout(left)
        return left

    def sendall(self, data: bytes) -> None:
        self.left()
        self.sock.sendall(data)

    def makefile(self, mode: str = "rb", *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self.sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.sock.left()
        return self.sock.sock.recv_into(buffer)


def _why(reason: Any) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return "timed out"
    if isinstance(reason, socket.gaierror):
        return f"unknown host: {reason.strerror or reason}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason).splitlines()[0] if str(reason) else type(reason).__name__


def _error_text(answer: http.client.HTTPResponse) -> str:
    """The ``error`` line of a chronopipe error answer (at most 200 characters), else ''."""
    try:
        error = json.loads(answer.read(65536)).get("error", "")
    except (ValueError, AttributeError, RecursionError, OSError, http.client.HTTPException):
        return ""
    return " ".join(str(error).split())[:200]


def check_token(token: str | None, source: str = "the token") -> None:
    """Refuse a token the server would refuse (control.security.check_token): a CR/LF in it would add headers.

    Raises:
        UsageError: naming ``source``, never the token.

    >>> check_token("Tok-1"); check_token("a b")
    Traceback (most recent call last):
    ...
    chronopipe.cli.outputs.UsageError: the token must be printable ASCII (visible characters, no spaces)
    """
    try:
        if token:
            sendable(token)
    except ValueError:
        raise UsageError(f"{source} must be printable ASCII (visible characters, no spaces)") from None


def clean(text: str) -> str:
    r"""``text`` with what a terminal would obey escaped (UNPRINTABLE), as Python writes it.

    >>> print(clean("\x1b]0;pwned\x07a\u202e"))
    \x1b]0;pwned\x07a\u202e
    """
    return UNPRINTABLE.sub(lambda found: ascii(found.group())[1:-1], text)


def run_status(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the table (or JSON) of the control API at ``args.url``; the exit status.

    Raises:
        UsageError: a URL that is not http://HOST:PORT (exit status 2).
    """
    out = sys.stdout if out is None else out
    url = base_url(args.url)
    if args.token:
        token, source = args.token, "--token: the token"
    else:
        token, source = os.environ.get("CHRONOPIPE_TOKEN") or None, "CHRONOPIPE_TOKEN: the token"
    check_token(token, source)
    if args.timeout is None or not 0 < args.timeout < math.inf:
        raise UsageError(f"--timeout is a number of seconds > 0, not {args.timeout}")
    try:
        info = fetch(url, "/info", token=token, timeout=args.timeout)
        stats = fetch(url, "/stats", token=token, timeout=args.timeout)
        if not (isinstance(info, dict) and isinstance(stats, dict) and isinstance(stats.get("actors"), list)):
            raise StatusError(f"{url}: not a chronopipe control API (no actors in its /stats)", EXIT_WRONG_SERVER)
        try:
            text = json.dumps({"info": info, "stats": stats}, indent=1) if args.json else format_status(info, stats)
        except RecursionError:
            raise StatusError(f"{url}: not a chronopipe control API (answers nested too deep)",
                              EXIT_WRONG_SERVER) from None
    except StatusError as exc:
        print(f"chronopipe status: {clean(str(exc))}", file=sys.stderr)
        return exc.exit_code
    print(text, file=out)
    return EXIT_OK


def format_status(info: dict[str, Any], stats: dict[str, Any]) -> str:
    """The table: a heading line, a row per actor, a totals line.

    >>> print(format_status({"name": "p.yml", "kind": "run", "pid": 7, "version": "1.0"},
    ...                     {"state": "running", "seconds": 2.5, "totals": {"received": 1200, "emitted": 1000},
    ...                      "actors": [{"name": "csv", "mode": "thread", "state": "running", "pid": 7,
    ...                                  "received": 1200, "emitted": 1000, "rate": 480.0, "queue": 0,
    ...                                  "rss": 52428800, "restarts": 0, "dead_letters": 0}]}))
    run p.yml (pid 7, chronopipe 1.0): running, 2.50 s
    actor  mode    state    pid     in    out   rate  queue     rss  restarts  dead letters
    csv    thread  running    7  1,200  1,000  480/s      0  50 MiB         0             0
    totals: 1 actor; in 1,200, out 1,000, restarts 0, dead letters 0
    """
    target = info.get("target") if isinstance(info.get("target"), dict) else info
    kind, name = target.get("kind", "?"), target.get("name", "?")
    seconds = stats.get("seconds")
    when = f", {seconds:.2f} s" if isinstance(seconds, int | float) else ""
    head = clean(f"{kind} {name} (pid {info.get('pid', '?')}, chronopipe {info.get('version', '?')}): "
                 f"{stats.get('state', target.get('state', '?'))}{when}")
    rows = [COLUMNS]
    for actor in stats.get("actors", []):
        if not isinstance(actor, dict):
            continue
        rows.append((clean(str(actor.get("name", "?"))), clean(str(actor.get("mode", "-"))),
                     clean(str(actor.get("state", "-"))),
                     _pid(actor.get("pid")), _int(actor.get("received")), _int(actor.get("emitted")),
                     _rate(actor.get("rate")), _int(actor.get("queue")), _bytes(actor.get("rss")),
                     _int(actor.get("restarts")), _int(actor.get("dead_letters"))))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = [head]
    for row in rows:
        cells = [cell.ljust(width) if i < 3 else cell.rjust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
    totals = stats.get("totals") if isinstance(stats.get("totals"), dict) else {}
    count = len(rows) - 1
    lines.append(f"totals: {count} actor{'' if count == 1 else 's'}; in {_int(totals.get('received'))}, "
                 f"out {_int(totals.get('emitted'))}, restarts {_int(totals.get('restarts', 0))}, "
                 f"dead letters {_int(totals.get('dead_letters', 0))}")
    return "\n".join(lines)


def _int(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def _pid(value: Any) -> str:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else "-"


def _rate(value: Any) -> str:
    """``480/s``, ``1.5k/s``, ``2M/s``; ``-`` when unknown.

    >>> [_rate(v) for v in (0, 0.5, 480.2, 1500, 2e6, None)]
    ['0/s', '0.5/s', '480/s', '1.5k/s', '2M/s', '-']
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.3g}{unit}/s"
    return f"{value:.3g}/s" if value else "0/s"


def _bytes(value: Any) -> str:
    """``50 MiB``, ``1.2 GiB``; ``-`` when unknown.

    >>> [_bytes(v) for v in (52428800, 1288490189, 900, None)]
    ['50 MiB', '1.2 GiB', '900 B', '-']
    """
    if not isinstance(value, int) or isinstance(value, bool):
        return "-"
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= size:
            return f"{value / size:.2g} {unit}" if value < 10 * size else f"{value / size:.0f} {unit}"
    return f"{value} B"

