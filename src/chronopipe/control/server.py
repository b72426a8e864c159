"""ControlServer: the HTTP control API of one target, on a daemon thread with its own event loop.

The socket is bound in the caller's thread (so a taken port or a bad address raises there, as a
ControlError); aiohttp (``web.AppRunner`` without signal handling or access log, its connections
handled by ``connections.ControlHandler``: a cap, an idle timeout, JSON for malformed HTTP)
serves it on a thread of its own, started with SIGINT and
SIGTERM blocked (``channels.quiet.start_quiet``: they stay the main thread's). A process forked
while it serves (an actor process) drops its copies of the server's sockets right after the
fork, so only this process answers and ``close()`` really frees the port.

While a server runs, the interpreter's switch interval (``sys.setswitchinterval``) is at most
``SWITCH_INTERVAL``: a thread that wants the GIL waits that long before the thread holding it
(a pipeline's feed, busy in the main thread) is asked to let go, and an answer needs the GIL a
few times (accept, read, write). At Python's 5 ms, ``/stats`` took 10 to 25 ms behind a busy
feed. The interval only matters while threads contend, so an idle server costs nothing; the
value found at the first start is put back when the last server closes (unless someone changed
it meanwhile).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import sys
import threading
import time
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..channels.quiet import start_quiet
from .security import (
    TOKEN_ENV,
    allowed_hosts,
    check_token,
    generate_token,
    is_loopback,
    remove_token_file,
    write_token_file,
)
from .target import Target

__all__ = ["ControlError", "ControlServer", "open_control", "parse_address"]

log = logging.getLogger("chronopipe.control")
#: Seconds start() waits for the server's thread to serve.
START_TIMEOUT = 10.0
_LIVE: weakref.WeakSet[ControlServer] = weakref.WeakSet()
#: Seconds, the most the switch interval is while a server runs (see above).
SWITCH_INTERVAL = 0.0005
_switch_lock = threading.Lock()
_switch: dict[str, Any] = {"servers": 0, "before": None}


def _hold_switch_interval() -> None:
    with _switch_lock:
        _switch["servers"] += 1
        if _switch["servers"] == 1 and sys.getswitchinterval() > SWITCH_INTERVAL:
            _switch["before"] = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL)


def _release_switch_interval() -> None:
    with _switch_lock:
        _switch["servers"] = max(0, _switch["servers"] - 1)
        before = _switch["before"]
        if _switch["servers"] == 0 and before is not None:
            _switch["before"] = None
            if abs(sys.getswitchinterval() - SWITCH_INTERVAL) < 1e-9:  # still ours
                sys.setswitchinterval(before)


class ControlError(Exception):
    """The control server refuses to start (one line says why): a non-loopback address without a
    token, an address it cannot bind (taken, not this machine's), aiohttp not installed."""


def parse_address(address: str) -> tuple[str, int]:
    """``"HOST:PORT"`` as ``(host, port)``; an IPv6 host in brackets (``"[::1]:0"``).

    >>> parse_address("127.0.0.1:8080"), parse_address("[::1]:0"), parse_address("localhost:0")
    (('127.0.0.1', 8080), ('::1', 0), ('localhost', 0))

    Raises:
        ValueError: not HOST:PORT, or the port is not 0..65535 (one line).
    """
    text = str(address).strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"control address {address!r}: expected [IPv6]:PORT")
        port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"control address {address!r}: {host!r} is not an IPv6 address") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host or ":" in host:
            raise ValueError(f"control address {address!r}: expected HOST:PORT (an IPv6 host in brackets)")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"control address {address!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


class ControlServer:
    """The control API of ``target`` on ``address`` (``HOST:PORT``; port 0 picks a free one).

    >>> from chronopipe.control import ActorsTarget
    >>> with ControlServer(ActorsTarget("demo", list)).start() as server:  # doctest: +SKIP
    ...     print(server.url)
    http://127.0.0.1:41235

    ``token``: the bearer token every request that changes anything needs (default: the
    ``CHRONOPIPE_TOKEN`` environment variable, else a new one written to ``token_file``, mode
    0600, removed by ``close()``). On any address but loopback a token must be given, and every
    request needs it. ``allowed_hosts``: more names (or ``name:port``) the Host header may say,
    besides 127.0.0.1, localhost, [::1] and the bound host. ``max_body``: bytes a request body
    may have (413 above).
    """

    def __init__(self, target: Target, address: str = "127.0.0.1:0", *, token: str | None = None,
                 allowed_hosts: Iterable[str] = (), max_body: int = 65536) -> None:
        if not isinstance(target, Target):
            raise TypeError(f"a control server serves a chronopipe.control.Target, not {type(target).__name__}")
        try:
            self.host, self.port = parse_address(address)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        self._token_source = "as given"
        if token is None:
            token = os.environ.get(TOKEN_ENV) or None
            self._token_source = f"from {TOKEN_ENV}"
        self.token_given = token is not None
        if token is not None:
            try:
                check_token(token)
            except ValueError as exc:
                raise ControlError(f"{exc} ({self._token_source})") from None
        self.token: str = token if token is not None else generate_token()
        self.target = target
        self.max_body = int(max_body)
        self.loopback = is_loopback(self.host)
        self.reads_need_token = not self.loopback
        self.token_file: Path | None = None
        self.started_at: float | None = None
        self.closing = False
        self.allowed: frozenset[str] = frozenset()
        self._extra_hosts = tuple(allowed_hosts)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: Any = None
        self._done: asyncio.Event | None = None
        self.inflight = 0  #: requests being answered (counted on the server's thread)
        self._drain_for = 0.0
        self._error: BaseException | None = None
        self._pid = os.getpid()
        self._holds_switch = False

    # -- where it listens ------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        """(host, port) it is bound to (the port chosen, once started with port 0)."""
        return self.host, self.port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (this machine's name for a wildcard bind)."""
        host = socket.gethostname() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def describe(self) -> dict[str, Any]:
        """What ``GET /info`` answers: the target's ``info()`` with the version, pid, start time
        of the server and the target's inputs.

        Raises:
            Exception: whatever the target's ``info`` or ``inputs`` raised.
        """
        target = self.target
        described = dict(target.info())
        described.setdefault("name", target.name)
        described.setdefault("kind", target.kind)
        described.update(version=_version(), pid=os.getpid(), started_at=self.started_at, inputs=list(target.inputs()))
        return described

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ControlServer:
        """Bind, serve on a daemon thread, print one line to stderr saying where; returns self.

        Raises:
            ControlError: a non-loopback address without a given token (nothing is bound), the
                address cannot be bound, aiohttp is missing, or the server did not come up.
        """
        if self._thread is not None:
            raise ControlError("this control server was started already")
        if not self.loopback and not self.token_given:
            raise ControlError(f"refusing to serve the control API on {self.host} (not loopback) without a token: "
                               f"set {TOKEN_ENV} or pass token=")
        try:
            from aiohttp import web
        except ImportError:
            raise ControlError("the control API needs aiohttp: pip install 'chronopipe[control]'") from None
        from .app import make_app

        self._sock = _bind(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self.allowed = allowed_hosts(self.host, self.port, self._extra_hosts)
        try:
            if not self.token_given:
                try:
                    self.token_file = write_token_file(self.token, self.port)
                except OSError as exc:
                    raise ControlError(f"cannot write the control token file: {exc}") from None
            self.started_at = time.time()
            runner = web.AppRunner(make_app(self), handle_signals=False, access_log=None, shutdown_timeout=0.25)
            ready = threading.Event()
            self._thread = threading.Thread(target=self._serve, args=(runner, ready), name="chronopipe-control",
                                            daemon=True)
            _LIVE.add(self)
            _hold_switch_interval()
            self._holds_switch = True
            start_quiet(self._thread)
            if not ready.wait(START_TIMEOUT) or self._error is not None:
                raise ControlError(f"the control server did not start: {self._error or 'timed out'}")
        except BaseException:
            self.close()
            raise
        where = f"token in {self.token_file}" if self.token_file else f"token {self._token_source}"
        print(f"chronopipe: control API on {self.url} ({where})", file=sys.stderr, flush=True)
        return self

    def _serve(self, runner: Any, ready: threading.Event) -> None:
        from .connections import loop_errors

        loop = asyncio.new_event_loop()
        loop.set_exception_handler(loop_errors())
        self._loop = loop
        try:
            loop.run_until_complete(self._main(runner, ready))
        except BaseException as exc:  # reported to start(), or logged
            self._error = exc
            log.error("control server: %s: %s", type(exc).__name__, exc)
        finally:
            ready.set()
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self, runner: Any, ready: threading.Event) -> None:
        from . import connections

        self._done = asyncio.Event()
        await runner.setup()
        self._runner = runner
        listener = None
        try:
            loop = asyncio.get_running_loop()
            factory = connections.handler_factory(  # the limits as they are now (tests lower them)
                self, runner.server, loop, max_connections=connections.MAX_CONNECTIONS,
                idle_timeout=connections.IDLE_TIMEOUT)
            listener = await loop.create_server(factory, sock=self._sock, backlog=128)
            ready.set()
            await self._done.wait()
            deadline = loop.time() + self._drain_for
            while self.inflight and loop.time() < deadline:  # answers being made (a /stop's) still leave
                await asyncio.sleep(0.005)
        finally:
            if listener is not None:
                listener.close()
            await runner.cleanup()

    def close(self, timeout: float = 2.0) -> None:
        """Stop serving, free the port, end the thread, remove a generated token file; idempotent,
        raises nothing. New requests are answered 503 at once; those in flight (a /stop whose
        drain is ending) get up to three quarters of ``timeout`` to send their answers. Call it
        from any thread but the one running the target's ``stop`` (that answer would wait for it)."""
        if os.getpid() != self._pid:
            return  # a forked copy: the server is its parent's
        self.closing = True
        self._drain_for = max(0.0, timeout * 0.75 - 0.25)
        loop, done, thread = self._loop, self._done, self._thread
        if loop is not None and done is not None and thread is not None and thread.is_alive():
            try:
                loop.call_soon_threadsafe(done.set)
            except RuntimeError:  # the loop closed already
                pass
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("control server: its thread still runs %g s after close()", timeout)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()  # aiohttp closed it already once it served; a no-op then
        path, self.token_file = self.token_file, None
        if path is not None:
            remove_token_file(path)
        _LIVE.discard(self)
        if self._holds_switch:
            self._holds_switch = False
            _release_switch_interval()

    def __enter__(self) -> ControlServer:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closing else ("serving" if self._thread is not None else "new")
        return f"<ControlServer {self.url} {state}>"

    def _drop_in_child(self) -> None:
        """In a forked child: point the fds of our sockets at /dev/null (the fd numbers stay
        valid for the socket objects that still name them), so the port and the connections
        belong to the parent alone. The listening socket first: the connections are read from
        aiohttp's table, which the fork may have caught mid-change."""
        null = os.open(os.devnull, os.O_RDWR)
        try:
            if self._sock is not None and self._sock.fileno() >= 0:
                os.dup2(null, self._sock.fileno())
            server = getattr(self._runner, "server", None)
            for handler in list(getattr(server, "connections", ())):
                transport = getattr(handler, "transport", None)
                sock = transport.get_extra_info("socket") if transport is not None else None
                if sock is not None and sock.fileno() >= 0:
                    os.dup2(null, sock.fileno())
        finally:
            os.close(null)


def _version() -> str:
    # The root package is loaded already (it is our parent); naming it in an import would draw an
    # edge to every package its TYPE_CHECKING block names (import-linter).
    return str(getattr(sys.modules["chronopipe"], "__version__", "unknown"))


def open_control(target: Target, address: str = "127.0.0.1:0", **kwargs: Any) -> ControlServer:
    """A :class:`ControlServer` of ``target`` on ``address``, started (``kwargs``: its options).

    Raises:
        ControlError: it cannot start (see ``ControlServer.start``).
    """
    return ControlServer(target, address, **kwargs).start()


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ControlError(f"control address {host}:{port}: {exc.strerror or exc}") from None
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot serve the control API on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _drop_all_in_child() -> None:
    for server in list(_LIVE):
        try:
            server._drop_in_child()
        except Exception:  # a child must start whatever happens here
            pass


os.register_at_fork(after_in_child=_drop_all_in_child)
