"""Socket sources: a TCP server, a TCP client and a UDP receiver, framed into records.

Backpressure reaches the socket. The source reads a socket only after the channel took what the
last read made, so while the channel is full nothing is read. The kernel's receive buffer fills,
the TCP window closes, and a sender that writes faster than the pipeline consumes is made to
wait in ``send()``. The source holds at most one read (``chunk`` bytes) and one unfinished
record per connection. UDP has no such brake: what arrives while the buffer is full is dropped
by the kernel (``rcvbuf`` raises the buffer).

>>> import socket
>>> server = TCPServerSource(port=0, connections=1, mode="thread").start()
>>> with socket.create_connection(("127.0.0.1", server.port)) as peer:
...     peer.sendall(b"first\\nsecond\\nthird")
>>> list(server.queue), server.join().records
(['first', 'second', 'third'], 3)
"""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, Self, Unpack

from .backoff import HEALTHY, Backoff
from .base import POLL, Source, SourceError, SourceOptions
from .connect import connect
from .framing import MAX_RECORD, Framing, FramingError, LengthFramer, LineFramer, framer

__all__ = ["TCPClientSource", "TCPServerSource", "UDPSource"]

CHUNK = 256 * 1024  # bytes read from a socket at once


def _at_least_one(**values: int) -> None:
    for name, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be >= 1, not {value!r}")


def _cut(framing: LineFramer | LengthFramer) -> str:
    return f" ({framing.pending} bytes of an unfinished record dropped)" if framing.pending else ""


class _Listening(Source):
    """A source that binds at construction: a port in use fails at once, and ``port`` tells the
    port the system chose for port 0. Until the source runs, ``close()`` releases it."""

    _sock: socket.socket

    def _bind(self, kind: int, host: str, port: int) -> None:
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"source {self.name!r}: port must be 0 to 65535, not {port!r}")
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise SourceError(self.name, f"cannot bind {host}:{port}: {exc.strerror or exc}") from None
        self._sock = sock
        self.host, self.port = host, sock.getsockname()[1]
        self.detail["address"] = f"{host}:{self.port}"

    def close(self) -> None:
        """Release the port of a source that will not run (a run releases it when it ends)."""
        self._sock.close()

    def start(self, runtime: Any = None) -> Self:
        super().start(runtime)
        if self.mode == "process":  # the child has the socket now; the parent's copy would hold the port
            self._sock.close()
        return self


class TCPServerSource(_Listening):
    """Listens on ``host:port`` and frames what every connection sends.

    ``framing``: ``"lines"`` (str lines, decoded with ``encoding``; ``encoding=None`` gives
    bytes) or ``"length"`` (4-byte big-endian length prefix, bytes records). A connection that
    breaks the framing is closed (a line or frame longer than ``max_record`` bytes) and counted
    as an error. The server goes on. A last line without ``\\n`` at a clean close is a record.
    ``connections``: end once that many connections have closed (None: run until ``stop()``).
    ``max_connections``: connections open at once; more wait in the listen backlog.

    Raises:
        SourceError: the address cannot be bound (in use, not local, not allowed)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, name: str | None = None,
                 framing: Framing = "lines", encoding: str | None = "utf-8", max_record: int = MAX_RECORD,
                 connections: int | None = None, max_connections: int = 64, chunk: int = CHUNK,
                 **options: Unpack[SourceOptions]) -> None:
        framer(framing, encoding, max_record)  # a bad framing, encoding or bound fails here
        _at_least_one(chunk=chunk, max_connections=max_connections)
        super().__init__(name or f"tcp:{port}", **options)
        self.framing, self.encoding, self.max_record = framing, encoding, max_record
        self.connections, self.max_connections, self.chunk = connections, max_connections, chunk
        self.detail.update(accepted=0, closed=0, dropped=0)
        self._bind(socket.SOCK_STREAM, host, port)
        self._sock.listen(128)

    def _batches(self) -> Iterator[list[Any]]:
        listener, chunk, detail = self._sock, self.chunk, self.detail
        listener.setblocking(False)
        selector = selectors.DefaultSelector()
        selector.register(listener, selectors.EVENT_READ)
        peers: dict[socket.socket, LineFramer | LengthFramer] = {}
        self._from: dict[socket.socket, str] = {}  # each connection's peer, for the errors
        try:
            while not self.stopping:
                events = selector.select(POLL)
                if not events:
                    yield []  # quiet (what a source ordering by event time learns it from)
                for key, _ in events:
                    sock: socket.socket = key.fileobj  # type: ignore[assignment]
                    if sock is listener:
                        self._accept(listener, selector, peers)
                        continue
                    framing = peers[sock]
                    try:
                        data = sock.recv(chunk)
                    except OSError as exc:  # reset by the peer: an unfinished last record is not a record
                        self._failed(f"connection from {self._from[sock]}: {type(exc).__name__}: {exc}" + _cut(framing))
                        framing = framer(self.framing, self.encoding, self.max_record)
                        data = b""
                    self.bytes += len(data)
                    try:
                        records = self._framed(framing, data)
                    except FramingError as exc:
                        self._failed(f"connection from {self._from[sock]}: {exc}; connection closed")
                        detail["dropped"] += 1
                        records, data = exc.records, b""
                    if not data:
                        selector.unregister(sock)
                        sock.close()
                        del peers[sock], self._from[sock]
                        detail["closed"] += 1
                        if len(peers) < self.max_connections and listener not in selector.get_map():
                            selector.register(listener, selectors.EVENT_READ)
                    yield records
                    if self.connections is not None and detail["closed"] >= self.connections:
                        return
        finally:
            for sock in peers:
                sock.close()
            selector.close()
            listener.close()

    def _accept(self, listener: socket.socket, selector: selectors.BaseSelector,
                peers: dict[socket.socket, LineFramer | LengthFramer]) -> None:
        try:
            sock, address = listener.accept()
        except BlockingIOError:  # another process or thread took it
            return
        sock.setblocking(False)
        self._from[sock] = f"{address[0]}:{address[1]}"
        peers[sock] = framer(self.framing, self.encoding, self.max_record)
        selector.register(sock, selectors.EVENT_READ)
        self.detail["accepted"] += 1
        if len(peers) >= self.max_connections:  # the rest wait in the backlog
            selector.unregister(listener)


class TCPClientSource(Source):
    """Connects to ``host:port`` and frames what the server sends.

    When the connection drops or cannot be made, the source tries again after a capped,
    jittered backoff (at once after a connection that stayed up HEALTHY seconds). Once data has
    flowed, a drop yields a ``Marker("gap_start")`` at once, and the first data after it a
    ``Marker("gap_end", gap=seconds, attempts=n)``. ``on_connect(sock)``
    runs after every connection, before reading (to send a request or a subscription).
    ``max_attempts``: consecutive failed connections before the source fails (None: never).
    ``reconnect=False``: end when the server closes the connection.

    Raises (from the run):
        SourceError: ``max_attempts`` connections in a row failed."""

    def __init__(self, host: str, port: int, *, name: str | None = None, framing: Framing = "lines",
                 encoding: str | None = "utf-8", max_record: int = MAX_RECORD, reconnect: bool = True,
                 on_connect: Callable[[socket.socket], Any] | None = None, backoff: Backoff | None = None,
                 max_attempts: int | None = None, connect_timeout: float = 5.0, chunk: int = CHUNK,
                 **options: Unpack[SourceOptions]) -> None:
        framer(framing, encoding, max_record)
        _at_least_one(chunk=chunk)
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0 seconds, not {connect_timeout!r}")
        super().__init__(name or f"tcp:{host}:{port}", **options)
        self.host, self.port = host, port
        self.framing, self.encoding, self.max_record, self.chunk = framing, encoding, max_record, chunk
        self.reconnect, self.on_connect, self.max_attempts = reconnect, on_connect, max_attempts
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff()
        self.detail.update(connects=0, reconnects=0, address=f"{host}:{port}")
        self._tries = 0  # connection attempts since data last flowed

    def _retry(self, reason: str) -> None:
        """A failed attempt: wait out the backoff, or fail once ``max_attempts`` were made."""
        attempts = self.backoff.attempts + 1
        if self.max_attempts is not None and attempts >= self.max_attempts:
            raise SourceError(self.name, f"cannot connect to {self.host}:{self.port} after {attempts} attempts: "
                                         f"{reason}")
        self._pause(self.backoff.next())

    def _check_within(self, deadline: float) -> Callable[[], None]:
        def check() -> None:
            if self.stopping:
                raise _Stopped
            if time.monotonic() > deadline:
                raise TimeoutError(f"no connection within {self.connect_timeout} s")

        return check

    def _connect(self) -> socket.socket | None:
        """A connection, or None once stopping; waits out the backoff between attempts, and
        notices stop() within POLL while it connects (connect.py)."""
        while not self.stopping:
            self._tries += 1
            try:
                sock = connect(self.host, self.port, self._check_within(time.monotonic() + self.connect_timeout))
            except _Stopped:
                return None
            except OSError as exc:
                self._failed(exc)
                self._retry(f"{type(exc).__name__}: {exc}")
                continue
            self.detail["connects"] += 1
            if self.on_connect is not None:
                try:
                    self.on_connect(sock)
                except Exception as exc:
                    sock.close()
                    hook = getattr(self.on_connect, "__name__", "on_connect")
                    raise SourceError(self.name, f"on_connect ({hook}) raised {type(exc).__name__}: {exc}") from exc
            return sock
        return None

    def _batches(self) -> Iterator[list[Any]]:
        # The gap ends when data flows again, not at the connection: a server going down may
        # still accept a connection and reset it, and that is one more failed attempt. The backoff
        # starts again only after a connection that stayed up HEALTHY seconds: a server that drops
        # every connection at once is not hammered.
        sock: socket.socket | None = None
        lost_at: float | None = None
        self._tries = 0
        try:
            while not self.stopping:
                sock = self._connect()
                if sock is None:
                    return
                framing, reason, flowing = framer(self.framing, self.encoding, self.max_record), "", False
                connected_at = time.monotonic()
                while not self.stopping:
                    try:
                        data = sock.recv(self.chunk)
                    except TimeoutError:
                        yield []
                        continue
                    except OSError as exc:  # reset: an unfinished last record is not a record
                        data, reason = b"", f"{type(exc).__name__}: {exc}" + _cut(framing)
                        framing = framer(self.framing, self.encoding, self.max_record)
                    if data and not flowing:
                        flowing = True
                        if lost_at is not None:
                            self.detail["reconnects"] += 1
                            yield [self._marker("gap_end", gap=time.time() - lost_at, attempts=self._tries)]
                            lost_at = None
                        self._tries = 0
                    self.bytes += len(data)
                    try:
                        records = self._framed(framing, data)
                    except FramingError as exc:
                        records, data, reason = exc.records, b"", str(exc)
                    yield records
                    if not data:
                        break
                sock.close()
                if self.stopping or not self.reconnect:
                    return
                reason = reason or "closed by the server"
                if not flowing:  # one more failed attempt of this gap (or of the first connection)
                    self._failed(f"the connection ended before any data came: {reason}")
                    self._retry(reason)
                    continue
                if reason != "closed by the server":
                    self._failed(reason)
                lost_at = time.time()
                yield [self._marker("gap_start", reason=reason)]
                if time.monotonic() - connected_at >= HEALTHY:
                    self.backoff.reset()  # it had been up a while: try again at once
                else:
                    self._pause(self.backoff.next())
        finally:
            if sock is not None:
                sock.close()


class _Stopped(Exception):  # noqa: N818 (control flow: stop() during a connect, never escapes)
    pass


class UDPSource(_Listening):
    """Receives datagrams on ``host:port``: one record per datagram, decoded with ``encoding``
    (``None``: bytes). With ``framing="lines"`` a datagram holding several lines gives one
    record per line. ``rcvbuf``: the socket's receive buffer, in bytes (the kernel may cap it).

    Raises:
        SourceError: the address cannot be bound."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, name: str | None = None,
                 framing: Framing | None = None, encoding: str | None = "utf-8", rcvbuf: int | None = None,
                 **options: Unpack[SourceOptions]) -> None:
        if framing not in (None, "lines"):
            raise ValueError(f"UDPSource framing must be None (a record per datagram) or 'lines', not {framing!r}")
        framer("lines", encoding)  # an unknown encoding fails here
        super().__init__(name or f"udp:{port}", **options)
        self.framing, self.encoding = framing, encoding
        self.detail["datagrams"] = 0
        self._bind(socket.SOCK_DGRAM, host, port)
        if rcvbuf is not None:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)

    def _batches(self) -> Iterator[list[Any]]:
        sock, detail = self._sock, self.detail
        sock.settimeout(POLL)
        try:
            while not self.stopping:
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    yield []
                    continue
                datagrams = [data]
                sock.setblocking(False)
                try:  # what else is already there, in the same list
                    while len(datagrams) < 1000:
                        datagrams.append(sock.recv(65536))
                except BlockingIOError:
                    pass
                finally:
                    sock.settimeout(POLL)
                detail["datagrams"] += len(datagrams)
                self.bytes += sum(map(len, datagrams))
                yield self._records(datagrams)
        finally:
            sock.close()

    def _records(self, datagrams: list[bytes]) -> list[Any]:
        if self.framing == "lines":
            lines = LineFramer(self.encoding)
            out = [line for d in datagrams for line in lines.feed(d) + lines.end()]
            if lines.undecodable:
                self._failed(f"{lines.undecodable} line(s) with undecodable bytes ({self.encoding})", lines.undecodable)
            return out
        if self.encoding is None:
            return datagrams
        out = []
        for d in datagrams:
            try:
                out.append(d.decode(self.encoding))
            except UnicodeDecodeError as exc:
                self._failed(exc)
                out.append(d.decode(self.encoding, "backslashreplace"))
        return out
