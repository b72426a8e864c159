"""The control server's connections: a cap on how many, a timeout on idle ones, JSON for bad HTTP.

Imported by ``ControlServer.start`` alone (it imports aiohttp). aiohttp's own listener takes
every connection a client opens and keeps one that sends nothing, or half a request line, for
as long as its keep-alive timeout; so a local user without the token could hold a thousand of
them open and leave the process (a pipeline) without file descriptors. Here:

- at most ``MAX_CONNECTIONS`` connections are served at once; one beyond is answered
  ``503 {"error": ...}`` and closed at once (its file descriptor is freed right away);
- a connection with no request being answered (a client that sends nothing, sends its headers
  a byte at a time, or keeps an idle keep-alive connection) is closed ``IDLE_TIMEOUT`` seconds
  after it was opened or its last answer left; a body must arrive within ``BODY_TIMEOUT``
  (``app.read_body``);
- a request aiohttp cannot parse (no Host on HTTP/1.1, both Content-Length and
  Transfer-Encoding, a bad request line) is answered ``400 {"error": ...}``, logged as one line
  at DEBUG, never as a traceback on stderr;
- an error of the event loop itself (``accept()`` out of file descriptors) is one log line at
  most every ``LOOP_ERROR_EVERY`` seconds.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from .security import Scrubber

if TYPE_CHECKING:
    import asyncio

    from .server import ControlServer

__all__ = ["BODY_TIMEOUT", "IDLE_TIMEOUT", "MAX_CONNECTIONS", "ControlHandler", "handler_factory", "loop_errors"]

log = logging.getLogger("chronopipe.control")
#: Connections served at once; one more is answered 503 and closed.
MAX_CONNECTIONS = 64
#: Seconds a connection may stay without a request being answered (opened, idle, or slow headers).
IDLE_TIMEOUT = 5.0
#: Seconds a request's body may take to arrive, once its headers did.
BODY_TIMEOUT = 10.0
#: Seconds between two log lines about errors of the server's event loop.
LOOP_ERROR_EVERY = 10.0
HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _json_error(status: int, message: str) -> bytes:
    return json.dumps({"error": message}, ensure_ascii=False).encode("utf-8", "backslashreplace")


class ControlHandler(RequestHandler):
    """aiohttp's connection handler with the control server's limits (see the module)."""

    def __init__(self, control: ControlServer, manager: web.Server, counts: dict[str, int], **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.control = control
        self.counts = counts
        self.refused = False
        self.busy = 0  #: requests of this connection being answered (app.guard counts them)
        self.idle_since = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    # -- the cap -----------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.counts["open"] >= self.counts["max"]:
            self.refused = True
            body = _json_error(503, f"the control server serves {self.counts['max']} connections at most: retry")
            head = (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
                    f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n").encode("ascii")
            try:
                transport.write(head + body)  # type: ignore[attr-defined]
            finally:
                transport.close()
            return
        self.counts["open"] += 1
        super().connection_made(transport)
        self.idle_since = self._loop.time()
        self._arm(self.idle_since + self.counts["idle"])

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.refused:
            return
        self.counts["open"] -= 1
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            super().data_received(data)

    # -- the idle timeout ----------------------------------------------------------------------
    def request_began(self) -> None:
        """A request of this connection is being answered (called by the app's guard)."""
        self.busy += 1

    def request_ended(self) -> None:
        """Its answer is made: the connection is idle from now unless another one began."""
        self.busy = max(0, self.busy - 1)
        self.idle_since = self._loop.time()

    def _arm(self, when: float) -> None:
        self._idle_timer = self._loop.call_at(when, self._idle_check)

    def _idle_check(self) -> None:
        self._idle_timer = None
        if self.transport is None:
            return
        now, limit = self._loop.time(), self.counts["idle"]
        if self.busy:
            self._arm(now + limit)
        elif now - self.idle_since >= limit:
            log.debug("control: closing a connection idle for %.1f s", now - self.idle_since)
            self.force_close()
        else:
            self._arm(self.idle_since + limit)

    # -- what aiohttp answers itself -----------------------------------------------------------
    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """A request aiohttp could not parse or handle: ``{"error": "one line"}``, the connection
        closed, one log line at DEBUG (never a traceback on stderr)."""
        text = str(getattr(exc, "message", "") or message or exc or "").strip().splitlines()
        reason = text[0].rstrip(": ") if text else HTTPStatus(status).phrase
        if status >= 500:
            reason = HTTPStatus(status).phrase  # nothing of our internals
        log.debug("control: answered %d to a malformed request: %s", status, reason)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had begun: cannot send an error instead")
        reason = Scrubber([self.control.token]).text(reason)
        response = web.Response(body=_json_error(status, f"bad HTTP request: {reason}" if status == 400 else reason),
                                status=status, content_type="application/json", charset="utf-8", headers=HEADERS)
        response.force_close()
        return response

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """aiohttp's "Unhandled exception" and the like: one line at DEBUG."""
        error = kw.get("exc_info")
        line = (args[0] % args[1:]) if args else "error"
        detail = f": {type(error).__name__}: {error}" if isinstance(error, BaseException) else ""
        log.debug("control: %s%s", line, detail.splitlines()[0] if detail else "")


def handler_factory(control: ControlServer, manager: web.Server, loop: asyncio.AbstractEventLoop, *,
                    max_connections: int = MAX_CONNECTIONS, idle_timeout: float = IDLE_TIMEOUT
                    ) -> Callable[[], ControlHandler]:
    """The protocol factory for ``loop.create_server``: a ControlHandler per connection of
    ``manager`` (an AppRunner's ``server``), sharing one count (at most ``max_connections`` open)."""
    counts: dict[str, Any] = {"open": 0, "max": max_connections, "idle": idle_timeout}

    def make() -> ControlHandler:
        return ControlHandler(control, manager, counts, loop=loop, keepalive_timeout=idle_timeout, access_log=None,
                              max_line_size=8190, max_field_size=8190)

    return make


def loop_errors() -> Callable[[Any, dict[str, Any]], None]:
    """An event loop exception handler: one log line (no traceback) per error, at most one
    every ``LOOP_ERROR_EVERY`` seconds (a flood of ``accept()`` errors is one line)."""
    last = {"at": -LOOP_ERROR_EVERY, "dropped": 0}

    def handle(loop: Any, context: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last["at"] < LOOP_ERROR_EVERY:
            last["dropped"] += 1
            return
        error = context.get("exception")
        detail = f": {type(error).__name__}: {error}" if error is not None else ""
        more = f" (and {last['dropped']} more since the last)" if last["dropped"] else ""
        last["at"], last["dropped"] = now, 0
        log.warning("control server: %s%s%s", context.get("message", "event loop error"), detail, more)

    return handle
