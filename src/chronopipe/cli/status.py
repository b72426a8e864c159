"""``chronopipe status URL [--token TOKEN] [--json]``: what a running pipeline's control API says.

    $ chronopipe status http://127.0.0.1:44789
    run pipeline.yml (pid 569, chronopipe 0.1.0): running, 2.06 s
    actor  mode     state    pid     in    out     rate  queue      rss  restarts  dead letters
    lines  thread   running  569  8,144  8,144  3.96k/s      0  131 MiB         0             0
    out    thread   running  569  8,144  8,144  3.91k/s      0  131 MiB         0             0
    totals: 2 actors; in 8,144, out 8,144, restarts 0, dead letters 0

It asks ``GET /info`` and ``GET /stats`` (the same as the ``/actors`` rows), each with a timeout,
and prints them as a table; ``--json`` prints ``{"info": ..., "stats": ...}`` as the server said.
The token (``--token``, else ``CHRONOPIPE_TOKEN``) is needed only for a server on another address
than loopback; it is sent as ``Authorization: Bearer`` and never printed. Every failure is one line
on stderr with its own exit status (STATUS_EXIT_CODES), never a traceback.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, TextIO

from .outputs import EXIT_OK, UsageError

__all__ = ["EXIT_REFUSED", "EXIT_UNREACHABLE", "EXIT_WRONG_SERVER", "StatusError", "add_parser", "fetch",
           "format_status", "run_status"]

EXIT_UNREACHABLE = 4  #: nothing answered at the URL (connection refused, timed out, no such host)
EXIT_REFUSED = 5  #: the server refused us (401 / 403): no token or a wrong one, a Host it does not allow
EXIT_WRONG_SERVER = 6  #: something answered, but not a chronopipe control API
STATUS_EXIT_CODES = """exit status:
  0    the server answered; its table is printed
  2    usage error (a URL that is not http://HOST:PORT)
  4    unreachable: nothing answers at the URL (connection refused, timed out, unknown host)
  5    refused (401 / 403): give the token with --token or CHRONOPIPE_TOKEN
  6    something answered that is not a chronopipe control API"""
TIMEOUT = 5.0  #: seconds per request
MAX_ANSWER = 8 << 20  #: bytes read at most from an answer
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
    p.add_argument("--timeout", type=float, default=TIMEOUT, help=f"seconds per request (default {TIMEOUT:g})")


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
    """GET ``url + path``: the JSON it answers.

    Raises:
        StatusError: unreachable, refused, or not a chronopipe answer (one line, with its exit status).
    """
    request = urllib.request.Request(url + path, headers={"Accept": "application/json"})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a proxy is not the server
    try:
        with opener.open(request, timeout=timeout) as answer:
            body = answer.read(MAX_ANSWER)
            kind = answer.headers.get_content_type()
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            reason = _error_text(exc)
            raise StatusError(f"{url}: refused ({exc.code}{': ' + reason if reason else ''}); give the token "
                              "with --token or CHRONOPIPE_TOKEN", EXIT_REFUSED) from None
        raise StatusError(f"{url}: not a chronopipe control API (GET {path} answered {exc.code})",
                          EXIT_WRONG_SERVER) from None
    except urllib.error.URLError as exc:
        raise StatusError(f"{url}: unreachable ({_why(exc.reason)})", EXIT_UNREACHABLE) from None
    except TimeoutError:
        raise StatusError(f"{url}: unreachable (no answer within {timeout:g} s)", EXIT_UNREACHABLE) from None
    except (ConnectionError, http.client.HTTPException, OSError) as exc:
        raise StatusError(f"{url}: not a chronopipe control API ({_why(exc)})", EXIT_WRONG_SERVER) from None
    if kind != "application/json":
        raise StatusError(f"{url}: not a chronopipe control API (GET {path} answered {kind})", EXIT_WRONG_SERVER)
    try:
        return json.loads(body)
    except ValueError:
        raise StatusError(f"{url}: not a chronopipe control API (GET {path}: not JSON)", EXIT_WRONG_SERVER) from None


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


def _error_text(exc: urllib.error.HTTPError) -> str:
    """The ``error`` line of a chronopipe error answer (at most 200 characters), else ''."""
    try:
        error = json.loads(exc.read(65536)).get("error", "")
    except (ValueError, AttributeError, OSError):
        return ""
    return " ".join(str(error).split())[:200]


def run_status(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print the table (or JSON) of the control API at ``args.url``; the exit status.

    Raises:
        UsageError: a URL that is not http://HOST:PORT (exit status 2).
    """
    out = sys.stdout if out is None else out
    url = base_url(args.url)
    token = args.token or os.environ.get("CHRONOPIPE_TOKEN") or None
    if args.timeout is None or not args.timeout > 0:
        raise UsageError(f"--timeout is a number of seconds > 0, not {args.timeout}")
    try:
        info = fetch(url, "/info", token=token, timeout=args.timeout)
        stats = fetch(url, "/stats", token=token, timeout=args.timeout)
        if not (isinstance(info, dict) and isinstance(stats, dict) and isinstance(stats.get("actors"), list)):
            raise StatusError(f"{url}: not a chronopipe control API (no actors in its /stats)", EXIT_WRONG_SERVER)
        text = json.dumps({"info": info, "stats": stats}, indent=1) if args.json else format_status(info, stats)
    except StatusError as exc:
        print(f"chronopipe status: {exc}", file=sys.stderr)
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
    head = f"{kind} {name} (pid {info.get('pid', '?')}, chronopipe {info.get('version', '?')}): " \
           f"{stats.get('state', target.get('state', '?'))}{when}"
    rows = [COLUMNS]
    for actor in stats.get("actors", []):
        if not isinstance(actor, dict):
            continue
        rows.append((str(actor.get("name", "?")), str(actor.get("mode", "-")), str(actor.get("state", "-")),
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

