"""The control API's guards: the bearer token, the Host and Origin allowlist, loopback, the scrub.

Each one answers a known attack on control planes of this kind: anyone who can reach the port
runs jobs (Ray's unauthenticated job API, CVE-2023-48022) -- so a non-loopback bind needs a
token given by its owner, and every request that changes anything needs it; a web page the
user visits sends requests to 127.0.0.1 through a DNS name it controls (DNS rebinding, Ray's
CVE-2026-27482) -- so the Host header must name this server and an Origin, when sent, must be
one of ours; a handler reads what it should not and hands it out (Flink's file read,
CVE-2020-17519) -- so no endpoint serves files or runs code, and every response is scrubbed of
the token and the target's secrets.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "TOKEN_ENV",
    "Scrubber",
    "allowed_hosts",
    "bearer_matches",
    "generate_token",
    "host_allowed",
    "is_loopback",
    "origin_allowed",
    "token_dir",
    "write_token_file",
]

#: The environment variable a token is read from when none is given.
TOKEN_ENV = "CHRONOPIPE_TOKEN"
MASK = "***"


def generate_token() -> str:
    """A fresh random token (``secrets.token_urlsafe(32)``: 43 characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_dir() -> Path:
    """Where generated tokens are written: ``$XDG_RUNTIME_DIR/chronopipe`` (a per-user tmpfs),
    else ``~/.cache/chronopipe``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / "chronopipe"
    return Path.home() / ".cache" / "chronopipe"


def write_token_file(token: str, port: int) -> Path:
    """Write ``token`` to ``control-<pid>-<port>.token`` in :func:`token_dir`, readable by the user
    alone (mode 0600, made so: never widened afterwards); its path.

    Raises:
        OSError: the folder cannot be made or the file written.
    """
    folder = token_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / f"control-{os.getpid()}-{port}.token"
    try:
        path.unlink()  # a stale one of an earlier process with our pid
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    return path


def bearer_matches(header: str | None, token: str) -> bool:
    """True if ``header`` (an Authorization header) is ``Bearer <token>``, compared in constant
    time (``hmac.compare_digest``, so its timing tells nothing of the token)."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "surrogateescape"), token.encode("utf-8"))


def is_loopback(host: str) -> bool:
    """True if ``host`` (an IP address or a name) means this machine only: ``127.0.0.0/8``,
    ``::1``, ``localhost``, or a name that resolves to loopback addresses alone.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0"), is_loopback("localhost")
    (True, True, False, True)
    """
    host = host.strip("[]")
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        found = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        return False
    return bool(found) and all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in found)


def _hostport(host: str, port: int) -> str:
    host = host.lower().strip("[]")
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def allowed_hosts(bound: str, port: int, extra: Iterable[str] = ()) -> frozenset[str]:
    """The Host header values this server answers: ``127.0.0.1``, ``localhost``, ``[::1]``, the
    bound host (and this machine's name, for a wildcard bind) at ``port``, and ``extra`` (a name
    without a port gets ``port``).

    >>> sorted(allowed_hosts("127.0.0.1", 8080))
    ['127.0.0.1:8080', '[::1]:8080', 'localhost:8080']
    """
    hosts = {"127.0.0.1", "localhost", "::1", bound}
    if bound in ("0.0.0.0", "::", ""):
        hosts.discard(bound)
        hosts.add(socket.gethostname())
    found = {_hostport(h, port) for h in hosts}
    for item in extra:
        item = item.strip().lower()
        if not item:
            continue
        if (item.startswith("[") and "]:" in item) or item.count(":") == 1:
            found.add(item)
        else:
            found.add(_hostport(item, port))
    return frozenset(found)


def host_allowed(host: str | None, allowed: frozenset[str]) -> bool:
    """True if the Host header ``host`` is in ``allowed`` (no port means 80). A request without
    one is refused: every HTTP/1.1 client sends it, and a rebinding page cannot leave it out."""
    if not host:
        return False
    host = host.strip().lower()
    if host.endswith("]") or ":" not in host:
        host += ":80"
    return host in allowed


def origin_allowed(origin: str | None, allowed: frozenset[str]) -> bool:
    """True if there is no Origin header (not a browser's cross-site request) or it is
    ``http://<an allowed host>``; ``null`` and every other origin are refused."""
    if origin is None:
        return True
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme != "http" or "/" in rest:
        return False
    return host_allowed(rest, allowed)


class Scrubber:
    """Replaces each secret (and the token) by ``***`` in every string of a JSON value, keys
    included, before it is serialized (so the answer stays valid JSON).

    >>> Scrubber(["s3cret"]).scrub({"dsn": "postgres://u:s3cret@h", "n": 1})
    {'dsn': 'postgres://u:***@h', 'n': 1}
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        # longest first: a secret that contains another is masked whole
        self.secrets = sorted({s for s in secrets if isinstance(s, str) and s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.scrub(k) if isinstance(k, str) else k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        return value
