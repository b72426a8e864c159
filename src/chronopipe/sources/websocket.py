"""WebSocketSource: the messages of a websocket feed, one record each, reconnecting on a drop.

It uses the synchronous client of the ``websockets`` library (an optional dependency:
``pip install chronopipe[websocket]``). A feed does not end, so a connection that drops (the
server closes it, even normally, the network fails, the server dies) is reconnected after a
capped, jittered :class:`~chronopipe.sources.backoff.Backoff`, and the gap shows in the
stream: a ``Marker("gap_start")`` as soon as the drop is seen, a ``Marker("gap_end")`` with the
first message after it (not at the connection: a server going down may still accept a
connection and close it, and that is one more failed attempt). ``on_connect(ws)`` runs after
every connection, before anything is read: there the source (re)subscribes::

    def subscribe(ws):
        ws.send(json.dumps({"op": "subscribe", "channel": "trades"}))

    feed = WebSocketSource("wss://ws.coincap.io/trades/binance", parse="json", on_connect=subscribe)
    for record in feed:  # or feed.start() and read feed.queue
        if isinstance(record, Marker):
            ...  # "gap_start" / "gap_end": a reconnect, messages may be missing there
        else:
            ...  # a trade, a dict

A server that ends its stream on purpose (close code 1000) ends the source with
``end_on_close=True``:

>>> import threading
>>> from websockets.sync.server import serve
>>> server = serve(lambda ws: [ws.send(f"tick {n}") for n in range(3)], "127.0.0.1", 0)
>>> threading.Thread(target=server.serve_forever, daemon=True).start()
>>> uri = f"ws://127.0.0.1:{server.socket.getsockname()[1]}/"
>>> list(WebSocketSource(uri, end_on_close=True))
['tick 0', 'tick 1', 'tick 2']
>>> server.shutdown()
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from typing import Any, Literal, Unpack

from .backoff import HEALTHY, Backoff
from .base import POLL, Source, SourceError, SourceOptions

__all__ = ["Parse", "WebSocketSource"]

Parse = Literal["text", "json", "bytes"]

BATCH = 1000  # messages read at most per wake-up (what is already there), one list


def _websockets() -> tuple[Callable[..., Any], type[Exception]]:
    """The client's ``connect`` and its ``ConnectionClosed``, imported when a source needs them."""
    try:
        from websockets.exceptions import ConnectionClosed
        from websockets.sync.client import connect
    except ImportError:
        raise ImportError("WebSocketSource needs the websockets library: pip install chronopipe[websocket]") from None
    return connect, ConnectionClosed


def _shown(uri: str) -> str:
    """``uri`` without a password, as names, details and errors show it."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _close_late(attempt: futures.Future[Any]) -> None:
    """Close the connection of an attempt nobody waits for any more (the source was stopped)."""
    if not attempt.cancelled() and attempt.exception() is None:
        attempt.result().close()


class WebSocketSource(Source):
    """Reads the websocket at ``uri`` (``ws://`` or ``wss://``): a record per message.

    ``parse``: ``"text"`` (str, UTF-8), ``"json"`` (the parsed value) or ``"bytes"`` (the
    payload as it came, text frames too). A message that does not parse is skipped and counted
    as an error (``last_error`` says which message and why).

    ``on_connect(ws)``: called after every connection and reconnection, before reading; it
    sends the subscriptions (``ws.send(...)``). If it raises, the source fails.

    Reconnection: a connection that drops is counted as an error and tried again after the
    waits of ``backoff`` (default ``Backoff()``: 0.5 s doubling up to 30 s, full jitter). The
    waits restart from the shortest, and the first attempt is made at once, only after a
    connection that stayed up ``healthy`` seconds (default :data:`HEALTHY`): a server that
    accepts, sends a message and drops at once is tried less and less often.

    Gaps: the drop of a connection that gave messages yields ``Marker("gap_start",
    reason=...)`` at once, and the first message after it comes after ``Marker("gap_end",
    gap=seconds, attempts=n)`` (``n`` attempts since the drop, the one that gave it included).
    A connection that ends before any message is a failed attempt: it makes no markers (a gap
    already open goes on). So before the first message nothing was missed and nothing is
    marked; errors are counted. A close with code 1000 by the server is a drop too, unless
    ``end_on_close=True``: then the source ends there.

    ``max_attempts``: fail after that many failed attempts in a row (None: never give up). An
    attempt fails when it cannot connect, or when its connection drops before any message.
    ``open_timeout``: seconds for a connection's TCP, TLS and websocket handshakes.
    ``connect_options``: more keyword arguments of ``websockets.sync.client.connect``
    (``additional_headers``, ``ping_interval``, ``max_size``, ...).
    ``limit``: end after that many records (markers not counted); None: run until ``stop()``.

    ``stop()`` is noticed within :data:`~chronopipe.sources.base.POLL` seconds, while
    connected, between attempts and during one (an attempt left behind closes its connection
    when it completes, within ``open_timeout``).

    ``detail``: ``connects`` (connections made), ``reconnects`` (gaps ended),
    ``messages`` (received, parsed or not) and ``uri`` (its password hidden).

    Raises:
        ValueError: ``uri`` is not a ws:// or wss:// address (with a port of 0-65535); ``parse``
            is unknown; ``max_attempts``, ``open_timeout`` or ``limit`` is out of range.
        TypeError: one of those is not a number.
        ImportError: the websockets library is not installed.
        SourceError (from the run): ``on_connect`` raised; ``max_attempts`` attempts failed. Its
            message names the uri once: the default name is made of it.
    """

    def __init__(self, uri: str, *, name: str | None = None, on_connect: Callable[[Any], Any] | None = None,
                 parse: Parse = "text", backoff: Backoff | None = None, max_attempts: int | None = None,
                 open_timeout: float = 10.0, end_on_close: bool = False,
                 connect_options: Mapping[str, Any] | None = None, limit: int | None = None,
                 healthy: float = HEALTHY, **options: Unpack[SourceOptions]) -> None:
        shown = _shown(uri) if isinstance(uri, str) else ""  # the password hidden
        parts = urllib.parse.urlsplit(shown)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ValueError(f"WebSocketSource needs a ws:// or wss:// address, not {shown or uri!r}")
        try:
            parts.port  # noqa: B018 (raises ValueError for a bad port)
        except ValueError as exc:
            raise ValueError(f"WebSocketSource: {shown!r}: {exc}") from None
        if parse not in ("text", "json", "bytes"):
            raise ValueError(f"WebSocketSource: parse must be 'text', 'json' or 'bytes', not {parse!r}")
        for label, value, low in (("max_attempts", max_attempts, 1), ("limit", limit, 0)):
            if value is not None and not (isinstance(value, int) and value is not True):
                raise TypeError(f"WebSocketSource: {label} must be an int (or None), not {value!r}")
            if value is not None and value < low:
                raise ValueError(f"WebSocketSource: {label} must be at least {low} (or None), not {value}")
        if not (isinstance(open_timeout, int | float) and open_timeout is not True):
            raise TypeError(f"WebSocketSource: open_timeout must be a number of seconds, not {open_timeout!r}")
        if not 0 < open_timeout < math.inf:
            raise ValueError(f"WebSocketSource: open_timeout must be finite and > 0 seconds, not {open_timeout}")
        if not (isinstance(healthy, int | float) and healthy is not True and 0 <= healthy < math.inf):
            raise ValueError(f"WebSocketSource: healthy must be finite and >= 0 seconds, not {healthy!r}")
        _websockets()  # not installed: fail here, not in the run
        default = f"ws:{shown.split('://', 1)[1]}"
        super().__init__(name or default, **options)
        #: what an error message says of the uri: nothing when the name (the default) says it
        self._at = "" if self.name == default else f" ({shown})"
        self.uri, self.parse, self.on_connect, self.end_on_close = uri, parse, on_connect, end_on_close
        self.max_attempts, self.open_timeout, self.limit = max_attempts, open_timeout, limit
        self.healthy = float(healthy)
        self.connect_options = dict(connect_options or {})
        self.backoff = backoff or Backoff()
        self.detail.update(connects=0, reconnects=0, messages=0, uri=shown)
        self._failures = 0  # failed attempts in a row
        self._attempts = 0  # attempts since the last drop

    # -- the run ---------------------------------------------------------------------------
    def _batches(self) -> Iterator[list[Any]]:
        connect, closed = _websockets()
        detail, delivered = self.detail, 0
        self._failures = self._attempts = 0
        self.backoff.reset()
        lost_at: float | None = None  # time.time() of the last drop, until messages flow again
        ws: Any = None
        wait = False  # before the next attempt: the drop was of a connection younger than healthy
        try:
            while not self.stopping and (self.limit is None or delivered < self.limit):
                ws = self._connection(connect, closed, wait)
                if ws is None:
                    return
                connected_at = time.monotonic()
                received, reason, normal = 0, None, False
                while reason is None and not self.stopping:
                    left = BATCH if self.limit is None else min(BATCH, self.limit - delivered)
                    if left <= 0:
                        return
                    messages, reason, normal = self._read(ws, closed, left)
                    if messages:
                        received += len(messages)
                        self._failures = 0
                        if lost_at is not None:
                            detail["reconnects"] += 1
                            yield [self._marker("gap_end", gap=time.time() - lost_at, attempts=self._attempts)]
                            lost_at = None
                        records = self._parsed(messages)
                        delivered += len(records)
                        yield records
                    else:
                        yield []  # quiet (what a source ordering by event time learns it from)
                ws.close()
                ws = None
                if reason is None or (normal and self.end_on_close):
                    return
                self._failed(reason)
                wait = time.monotonic() - connected_at < self.healthy
                if not wait:
                    self.backoff.reset()
                if not received:
                    self._failures += 1  # a failed attempt: a gap open goes on, none starts
                else:
                    lost_at, self._attempts = time.time(), 0
                    yield [self._marker("gap_start", reason=reason)]
        finally:
            if ws is not None:
                ws.close()

    def _connection(self, connect: Callable[..., Any], closed: type[Exception], wait: bool) -> Any:
        """An open connection, its ``on_connect`` done; None once stopping. Waits out the
        backoff first when ``wait``, and after a failed attempt."""
        while not self.stopping:
            if self.max_attempts is not None and self._failures >= self.max_attempts:
                tries = f"{self._failures} attempts in a row failed" if self._failures > 1 else "it failed"
                raise SourceError(self.name, f"cannot connect{self._at}: {tries}, the last: {self.last_error}")
            if (wait or self._failures) and not self._pause(self.backoff.next()):
                return None
            ws, error = self._open(connect)
            if ws is None and error is None:
                return None
            self._attempts += 1
            if ws is not None:
                error = self._subscribe(ws, closed)
                if error is None:
                    self.detail["connects"] += 1
                    return ws
            self._failures += 1
            self._failed(f"{type(error).__name__}: {error}")
        return None

    def _open(self, connect: Callable[..., Any]) -> tuple[Any, BaseException | None]:
        """One attempt: ``(connection, None)``, ``(None, error)``, or ``(None, None)`` once
        stopping. The handshakes run on a helper thread, so that stop() is noticed meanwhile."""
        attempt: futures.Future[Any] = futures.Future()
        options = {"open_timeout": self.open_timeout, "close_timeout": POLL, **self.connect_options}

        def run() -> None:
            try:
                ws = connect(self.uri, **options)
                ws.__enter__()  # used as a context manager (websockets 17 warns otherwise); close() exits
            except BaseException as exc:
                attempt.set_exception(exc)
            else:
                attempt.set_result(ws)

        threading.Thread(target=run, name=f"{self.name} connect", daemon=True).start()
        taken = False
        try:
            while not self.stopping:
                if futures.wait([attempt], POLL).done:
                    taken = True
                    error = attempt.exception()
                    return (None, error) if error is not None else (attempt.result(), None)
            return None, None
        finally:
            if not taken:
                attempt.add_done_callback(_close_late)

    def _subscribe(self, ws: Any, closed: type[Exception]) -> BaseException | None:
        """Run ``on_connect``: None when done, the error when the connection closed meanwhile."""
        if self.on_connect is None:
            return None
        try:
            self.on_connect(ws)
        except BaseException as exc:  # whatever it is, the connection is not used: closed here
            ws.close()
            if isinstance(exc, closed):
                return exc
            if not isinstance(exc, Exception):
                raise
            raise SourceError(self.name, f"on_connect failed{self._at}: {type(exc).__name__}: {exc}") from exc
        return None

    def _read(self, ws: Any, closed: type[Exception], most: int) -> tuple[list[bytes], str | None, bool]:
        """The messages there are (up to ``most``, waiting up to POLL for the first one), why the
        connection closed (None: it is open) and whether that was a normal close (code 1000)."""
        messages: list[bytes] = []
        try:
            messages.append(ws.recv(POLL, decode=False))
            while len(messages) < most:
                messages.append(ws.recv(0, decode=False))
        except TimeoutError:
            pass
        except closed as exc:
            rcvd = getattr(exc, "rcvd", None)
            return messages, f"connection closed: {exc}", rcvd is not None and rcvd.code == 1000
        except OSError as exc:
            return messages, f"{type(exc).__name__}: {exc}", False
        finally:
            self.detail["messages"] += len(messages)
            self.bytes += sum(map(len, messages))
        return messages, None, False

    def _parsed(self, messages: list[bytes]) -> list[Any]:
        if self.parse == "bytes":
            return messages
        loads = json.loads if self.parse == "json" else bytes.decode
        first = self.detail["messages"] - len(messages) + 1
        records = []
        for n, message in enumerate(messages, first):
            try:
                records.append(loads(message))
            except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
                kind = "JSON" if self.parse == "json" else "UTF-8 text"
                self._failed(f"message {n} is not {kind}, skipped: {exc}: {message[:60]!r}")
        return records
