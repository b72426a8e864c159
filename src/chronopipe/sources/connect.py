"""Interruptible TCP connects: :func:`connect` calls ``check()`` at least every :data:`POLL` s
while it resolves the name (on a helper thread: a DNS lookup cannot be interrupted) and while
each address connects, so a source whose ``check`` raises (on ``stop()``, past a deadline) is
never held by a slow resolver or a peer that does not answer.

>>> import socket
>>> with socket.create_server(("127.0.0.1", 0)) as listener:
...     calls = []
...     sock = connect("127.0.0.1", listener.getsockname()[1], lambda: calls.append(1))
...     peer, _ = listener.accept()
...     sock.gettimeout() == POLL, sock.getpeername() == peer.getsockname()
...     sock.close(); peer.close()
(True, True)
"""

from __future__ import annotations

import errno
import ipaddress
import os
import selectors
import socket
import threading
from collections.abc import Callable
from typing import Any

from .base import POLL

__all__ = ["Check", "connect", "wait"]

#: Called at least every POLL s while waiting; raises to stop the wait (its exception goes up).
Check = Callable[[], None]

_IN_PROGRESS = frozenset({errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN})


def wait(sock: socket.socket, events: int, check: Check) -> None:
    """Wait until ``sock`` is ready for ``events`` (selectors.EVENT_READ/EVENT_WRITE), calling
    ``check()`` every POLL s meanwhile."""
    with selectors.DefaultSelector() as selector:
        selector.register(sock, events)
        while not selector.select(POLL):
            check()


def _addresses(host: str, port: int, check: Check) -> list[Any]:
    """getaddrinfo; for a name, on a helper thread (a DNS lookup cannot be interrupted)."""
    try:
        ipaddress.ip_address(host)
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except ValueError:
        pass
    found: list[Any] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # raised in the caller's thread
            found.append(exc)
        done.set()

    threading.Thread(target=lookup, name=f"chronopipe dns {host}", daemon=True).start()
    while not done.wait(POLL):
        check()
    if isinstance(found[0], Exception):
        raise found[0]
    return found[0]


def connect(host: str, port: int, check: Check) -> socket.socket:
    """A socket connected to ``host`` ``port`` (timeout :data:`POLL`), trying each address in
    turn; ``check()`` is called at least every POLL s throughout and what it raises goes up
    (the socket being made is closed).

    Raises:
        OSError: the last address's error (refused, unreachable, DNS failure as socket.gaierror).
    """
    error: OSError = OSError(f"no address for {host}")
    for family, kind, proto, _, address in _addresses(host, port, check):
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            code = sock.connect_ex(address)
            if code in _IN_PROGRESS:
                wait(sock, selectors.EVENT_WRITE, check)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if code:
                raise OSError(code, f"{os.strerror(code)} ({host} port {port})")
            sock.settimeout(POLL)
            return sock
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):
                raise
            error = exc
    raise error
