"""HTTPSource: poll a URL every ``interval`` seconds; each new response body becomes records.

Each poll is a GET over its own connection (closed once the response is read) by http.client in
the source's thread. Every read and every wait (at most :data:`POLL` s; a DNS lookup runs on a
helper thread: :func:`.connect.connect`) checks ``stop()`` and ``timeout``: no server, not even one that trickles its
response, holds the source past them. Redirects are followed (five at most); no proxies.

- **Conditional requests**: the last ``ETag`` goes back as ``If-None-Match`` and the last
  ``Last-Modified`` as ``If-Modified-Since``. A 304 yields nothing (``detail["not_modified"]``).
- **2xx**: the body, parsed by ``parse``. A body that does not parse is counted as an error
  (``_failed``, naming the url and why) and polling goes on. A body over ``max_body`` bytes
  (64 MiB by default) is an error like those below; no more than ``max_body + 1`` bytes of it
  are read.
- **Throttling** (``detail["throttled"]``, not an error): a 429, or a 503 with ``Retry-After``
  (seconds or an HTTP date, at most :data:`MAX_RETRY_AFTER`), waits that long before the next
  request, and no less than the rest of the interval; a 429 without it, as after an error.
- **Errors** (other 5xx, 408, refused connections, timeouts, DNS failures, broken responses):
  counted, then the next request waits ``backoff.next()`` (a :class:`Backoff`, reset after a
  success). ``max_errors`` in a row end the source with a :class:`SourceError` naming the url
  and the last error. Any other status (404, 401, 3xx without ``Location``) is fatal at once.

>>> import http.server, threading
>>> class Weather(http.server.BaseHTTPRequestHandler):
...     def do_GET(self):  # HTTP/1.0: the body ends where the connection does
...         self.send_response(200)
...         self.end_headers()
...         self.wfile.write(b'{"temp": 21.5}')
...     log_message = lambda self, *args: None
>>> server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Weather)
>>> threading.Thread(target=server.serve_forever, daemon=True).start()
>>> source = HTTPSource(f"http://127.0.0.1:{server.server_port}/now", interval=0.05, limit=2)
>>> list(source)
[{'temp': 21.5}, {'temp': 21.5}]
>>> source.detail
{'polls': 2, 'not_modified': 0, 'throttled': 0, 'status': 200}
>>> server.shutdown(); server.server_close()
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import io
import json
import math
import selectors
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator, Mapping
from datetime import UTC
from email.message import Message
from typing import Any, Literal, Unpack, get_args

from .backoff import Backoff
from .base import POLL, Source, SourceError, SourceOptions
from .connect import Check, connect, wait

__all__ = ["MAX_RETRY_AFTER", "HTTPSource", "Parse", "retry_after"]

#: ``"json"``: one record per response (the decoded body, an array too). ``"json-lines"``: a
#: record per non-blank line, each JSON. ``"lines"``: a str per line (without its line end).
#: ``"text"``: the body as one str. ``"bytes"``: the body as one bytes.
Parse = Literal["json", "json-lines", "lines", "text", "bytes"]
PARSES = get_args(Parse)

#: The longest wait a ``Retry-After`` gets, in seconds.
MAX_RETRY_AFTER = 3600.0
MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

class _TooLarge(Exception):  # noqa: N818 (an error counted, never escapes)
    """The body is over ``max_body``."""


class _Stopped(Exception):  # noqa: N818 (control flow, never escapes)
    """stop() was asked for in the middle of a request."""


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait: delta-seconds or an HTTP date, at most
    :data:`MAX_RETRY_AFTER`, 0 for a date gone by; None when absent or unreadable.

    >>> retry_after("120"), retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    (120.0, 10.0)
    >>> retry_after("soon") is None, retry_after("-3") is None, retry_after("999999")
    (True, True, 3600.0)
    """
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": UTC, of unknown origin
            when = when.replace(tzinfo=UTC)
        seconds = max(when.timestamp() - (time.time() if now is None else now), 0.0)
    if not (math.isfinite(seconds) and seconds >= 0):
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _check_url(url: str) -> urllib.parse.SplitResult:
    """The URL's parts; ValueError unless it is an absolute http or https URL we can request."""
    if not isinstance(url, str) or not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise ValueError(f"HTTPSource: {url!r} is not a URL (ASCII without spaces; percent-encode the rest)")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"HTTPSource: {url!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"HTTPSource: {url!r}: no credentials in the URL; give headers={{'Authorization': ...}}")
    try:
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise ValueError(f"HTTPSource: {url!r}: {exc}") from None
    return parts


class HTTPSource(Source):
    """Records from polling ``url`` (see the module docstring for what each response does).

    ``interval``: seconds from the start of one poll to the next. ``parse``: see :data:`Parse`.
    ``headers``: sent with every request. ``timeout``: seconds for a whole request. ``backoff``:
    the waits after errors (default ``Backoff()``). ``max_errors``: errors in a row that end the
    source (None: never). ``limit``: end after this many responses that gave records. ``queue``,
    ``max_body``: the most bytes a body may have (a larger one is an error). ``bytes``: the
    bytes of the bodies read. ``mode``, ``stamp``, ``maxsize``: as for every :class:`Source`. ``detail``: ``polls``,
    ``not_modified``, ``throttled`` and the last ``status``.

    Raises:
        ValueError: not an http(s) URL, or a bad argument.
    """

    def __init__(self, url: str, *, name: str | None = None, interval: float = 5.0, parse: Parse = "json",
                 headers: Mapping[str, str] | None = None, timeout: float = 10.0, backoff: Backoff | None = None,
                 max_errors: int | None = None, limit: int | None = None, max_body: int = 64 << 20,
                 **options: Unpack[SourceOptions]) -> None:
        _check_url(url)
        if parse not in PARSES:
            raise ValueError(f"HTTPSource: parse must be one of {', '.join(PARSES)}, not {parse!r}")
        for label, value in (("interval", interval), ("timeout", timeout)):
            if not (isinstance(value, int | float) and value is not True and 0 < value < math.inf):
                raise ValueError(f"HTTPSource: {label} must be finite and > 0 seconds, got {value!r}")
        for label, value in (("max_errors", max_errors), ("limit", limit)):
            if value is not None and not (isinstance(value, int) and value is not True and value >= 1):
                raise ValueError(f"HTTPSource: {label} must be None or an int >= 1, got {value!r}")
        if not (isinstance(max_body, int) and max_body is not True and max_body >= 1):
            raise ValueError(f"HTTPSource: max_body must be an int >= 1 (bytes), got {max_body!r}")
        sent = {"user-agent": ("User-Agent", "chronopipe"), "connection": ("Connection", "close")}
        for key, value in (headers or {}).items():
            if any(c in str(key) + str(value) for c in "\r\n\0") or not str(key).strip():
                raise ValueError(f"HTTPSource: bad header {key!r}: {value!r}")
            sent[str(key).lower()] = (str(key), str(value))
        super().__init__(name or url, **options)
        self.url, self.interval, self.parse, self.timeout = url, float(interval), parse, float(timeout)
        self.headers, self.max_body = dict(sent.values()), max_body
        self.backoff, self.max_errors, self.limit = backoff if backoff is not None else Backoff(), max_errors, limit
        self.detail.update(polls=0, not_modified=0, throttled=0, status=None)
        self._tls_context: ssl.SSLContext | None = None  # made in the source's thread, on first use

    # -- the polling loop --------------------------------------------------------------------
    def _batches(self) -> Iterator[list[Any]]:
        detail, backoff = self.detail, self.backoff
        validators: dict[str, str] = {}  # If-None-Match, If-Modified-Since
        self._in_row = gave = 0  # errors in a row; responses that gave records
        while not self.stopping:
            started = time.monotonic()
            detail["polls"] += 1
            try:
                status, reason, headers, body, url = self._get(validators, started + self.timeout)
            except _Stopped:
                return
            except (OSError, http.client.HTTPException) as exc:
                wait = self._error(f"{type(exc).__name__}: {exc}")
            except _TooLarge as exc:
                wait = self._error(str(exc))
            else:
                detail["status"] = status
                delay = retry_after(headers.get("Retry-After")) if status in (429, 503) else None
                if status == 429 or delay is not None:
                    detail["throttled"] += 1
                    wait = max(backoff.next() if delay is None else delay, self._left(started))
                elif status == 304 or 200 <= status < 300:
                    backoff.reset()
                    self._in_row = 0
                    fresh = {name: headers[header] for name, header in
                             (("If-None-Match", "ETag"), ("If-Modified-Since", "Last-Modified")) if headers[header]}
                    if status == 304:
                        detail["not_modified"] += 1
                        validators.update(fresh)
                    else:
                        validators = fresh
                        records = self._records(url, body, headers) if status != 204 else []
                        if records:
                            yield records
                            gave += 1
                            if self.limit is not None and gave >= self.limit:
                                return
                    wait = self._left(started)
                elif status >= 500 or status == 408:
                    wait = self._error(f"HTTP {status} {reason}")
                else:
                    raise self._fail(f"HTTP {status} {reason}" + (f" from {url} (redirected)" * (url != self.url)))
            yield []  # between polls: quiet (what a source ordering by event time learns it from)
            if not self._pause(wait):
                return

    def _left(self, started: float) -> float:
        return self.interval - (time.monotonic() - started)

    def _fail(self, message: str) -> SourceError:
        """The error that ends the source: the url said once (the default name is the url)."""
        return SourceError(self.name, message if self.name == self.url else f"{self.url}: {message}")

    def _error(self, reason: str) -> float:
        """Count an error and return the wait before the next request; the ``max_errors``-th
        error in a row ends the source."""
        self._failed(f"{self.url}: {reason}")
        self._in_row += 1
        if self.max_errors is not None and self._in_row >= self.max_errors:
            raise self._fail(f"{self._in_row} errors in a row, the last: {reason}")
        return self.backoff.next()

    def _records(self, url: str, body: bytes, headers: Message) -> list[Any] | None:
        """The body's records by ``parse``; None (counted as an error) when it does not parse."""
        if self.parse == "bytes":
            return [body]
        charset = headers.get_content_charset() or "utf-8"
        try:
            text = body.decode(charset)
        except (LookupError, UnicodeDecodeError) as exc:
            self._failed(f"{url}: the body is not {charset} text: {exc}")
            return None
        if self.parse == "text":
            return [text]
        if self.parse == "json":
            try:
                return [json.loads(text)]
            except ValueError as exc:
                self._failed(f"{url}: the body is not JSON: {exc}")
                return None
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        lines = [line.removesuffix("\r") for line in lines]
        if self.parse == "lines":
            return lines
        records = []
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError as exc:
                    self._failed(f"{url}: line {number} is not JSON: {exc}")
        return records

    # -- one request -------------------------------------------------------------------------
    def _get(self, validators: dict[str, str], deadline: float) -> tuple[int, str, Message, bytes, str]:
        """GET the URL, following redirects: status, reason, headers, body and the final url."""

        def check() -> None:
            if self.stopping:
                raise _Stopped
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no response within {self.timeout:g} s")

        url = self.url
        for _ in range(MAX_REDIRECTS + 1):
            try:
                parts = _check_url(url)
            except ValueError as exc:
                raise self._fail(f"redirects to a URL it cannot follow: {exc}".replace("HTTPSource: ", "")) from None
            status, reason, headers, body = self._fetch(parts, {**self.headers, **validators}, check)
            location = headers.get("Location")
            if status not in _REDIRECTS or not location:
                return status, reason, headers, body, url
            url = urllib.parse.urljoin(url, location.strip())
        raise self._fail(f"more than {MAX_REDIRECTS} redirects (the last to {url})")

    def _fetch(self, parts: urllib.parse.SplitResult, headers: dict[str, str],
               check: Check) -> tuple[int, str, Message, bytes]:
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        sock = connect(host, port, check)
        try:
            if parts.scheme == "https":
                if self._tls_context is None:
                    self._tls_context = ssl.create_default_context()
                sock = self._tls_context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
                _handshake(sock, check)  # wrap_socket took over the socket: the finally closes the new one
            connection = http.client.HTTPConnection(host, port)
            connection.sock = _Socket(sock, check)
            target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            connection.putrequest("GET", target, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", parts.netloc)
            for name, value in headers.items():
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            return response.status, response.reason, response.headers, self._body(response)
        finally:
            sock.close()


    def _body(self, response: http.client.HTTPResponse) -> bytes:
        """The response's body, counted in ``bytes`` as it comes; _TooLarge past ``max_body``."""
        most = self.max_body
        chunks: list[bytes] = []
        size = 0 if response.length is None or response.length <= most else most + 1
        while size <= most:
            chunk = response.read(min(1 << 16, most + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            self.bytes += len(chunk)
        chunks.clear()  # not kept alive by the traceback until the next collection
        raise _TooLarge(f"HTTP {response.status}: the body is over max_body ({most} bytes)")


class _Socket(io.RawIOBase):
    """What http.client sees of the socket: reads that call ``check`` first and every POLL. Its
    close() leaves the socket open: http.client closes before it reads the body (a real
    socket stays open while its makefile() is); _fetch closes it."""

    def __init__(self, sock: socket.socket, check: Check) -> None:
        super().__init__()
        self._sock, self._check = sock, check

    def sendall(self, data: bytes) -> None:
        self._sock.sendall(data)  # a request's few hundred bytes fit the send buffer of a new socket

    def makefile(self, *args: Any, **kwargs: Any) -> io.BufferedReader:
        return io.BufferedReader(self)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while True:
            self._check()  # at every read: a trickle of bytes must not outlast the timeout or stop()
            with contextlib.suppress(TimeoutError):  # POLL went by with nothing: check again
                return self._sock.recv_into(buffer)

    def close(self) -> None:
        pass


def _handshake(sock: ssl.SSLSocket, check: Check) -> None:
    """The TLS handshake, on a non-blocking socket; noticing ``check``."""
    sock.settimeout(0.0)
    while True:
        try:
            sock.do_handshake()
            break
        except ssl.SSLWantReadError:
            wait(sock, selectors.EVENT_READ, check)
        except ssl.SSLWantWriteError:
            wait(sock, selectors.EVENT_WRITE, check)
    sock.settimeout(POLL)
