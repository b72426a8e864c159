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

import atexit
import hmac
import ipaddress
import json
import os
import secrets
import signal
import socket
import stat
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "TOKEN_ENV",
    "Scrubber",
    "allowed_hosts",
    "bearer_matches",
    "check_token",
    "generate_token",
    "host_allowed",
    "is_loopback",
    "origin_allowed",
    "remove_token_file",
    "remove_token_files",
    "token_dir",
    "token_dirs",
    "write_token_file",
]

#: The environment variable a token is read from when none is given.
TOKEN_ENV = "CHRONOPIPE_TOKEN"
MASK = "***"


def generate_token() -> str:
    """A fresh random token (``secrets.token_urlsafe(32)``: 43 characters, 256 bits)."""
    return secrets.token_urlsafe(32)


def token_dirs() -> list[Path]:
    """Where generated tokens may be written, in order: ``$XDG_RUNTIME_DIR/chronopipe`` (a
    per-user tmpfs), then ``~/.cache/chronopipe``."""
    found = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir():
        found.append(Path(runtime) / "chronopipe")
    found.append(Path.home() / ".cache" / "chronopipe")
    return found


def _unsafe(folder: Path) -> str | None:
    """Why ``folder`` (made 0700 if missing) must not hold a token, or None: it must be a real
    folder (not a symlink), the user's own, writable by nobody else."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        st = os.lstat(folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISLNK(st.st_mode):
        return "a symlink"
    if not stat.S_ISDIR(st.st_mode):
        return "not a folder"
    if st.st_uid != os.geteuid():
        return f"owned by uid {st.st_uid}, not by this user"
    if st.st_mode & 0o022:
        return f"writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def token_dir() -> Path:
    """The first of :func:`token_dirs` fit to hold a token: made mode 0700 if missing; one that
    exists must be a real folder (not a symlink) of this user's that no one else can write.

    Raises:
        PermissionError: none is (one line saying why for each).
    """
    refused = []
    for folder in token_dirs():
        why = _unsafe(folder)
        if why is None:
            return folder
        refused.append(f"{folder} ({why})")
    raise PermissionError(f"no safe folder for the control token: {'; '.join(refused)}")


#: The token files this process wrote and has not removed yet: path -> pid of the writer.
_written: dict[Path, int] = {}
_written_lock = threading.Lock()


def write_token_file(token: str, port: int) -> Path:
    """Write ``token`` to ``control-<pid>-<port>.token`` in :func:`token_dir`, readable by the user
    alone (mode 0600, made so: never widened afterwards); its path. The file is removed by
    :func:`remove_token_file` (``ControlServer.close``), else at exit (atexit), before a
    ``kill_process``, or on a SIGTERM (see :func:`remove_token_files`).

    Raises:
        OSError: no safe folder (PermissionError), or the file cannot be written.
    """
    folder = token_dir()
    path = folder / f"control-{os.getpid()}-{port}.token"
    try:
        path.unlink()  # a stale one of an earlier process with our pid
    except FileNotFoundError:
        pass
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with _written_lock:
        _written[path] = os.getpid()
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    _remove_on_sigterm()
    return path


def remove_token_file(path: Path) -> None:
    """Remove a token file written by :func:`write_token_file` (raises nothing)."""
    with _written_lock:
        _written.pop(path, None)
    try:
        path.unlink()
    except OSError:
        pass


def remove_token_files() -> None:
    """Remove every token file this process wrote and still has (not those of the process a
    fork copied them from). Runs at exit (atexit), from ``kill_process`` before its SIGTERM, and
    on a SIGTERM; takes no lock a signal handler could wait on forever. Raises nothing."""
    pid = os.getpid()
    for path, writer in list(_written.items()):
        if writer == pid:
            _written.pop(path, None)
            try:
                path.unlink()
            except OSError:
                pass


atexit.register(remove_token_files)
_sigterm: dict[str, object] = {}  # "previous": the handler ours chains to, once installed


def _remove_on_sigterm() -> None:
    """On the main thread, once per process: a SIGTERM handler that removes the token files,
    then lets the signal take its course (the handler before it, or death by SIGTERM). A SIGTERM
    ignored (or handled in C) is left alone; from another thread nothing is installed (atexit
    and ``kill_process`` still remove the files)."""
    if "previous" in _sigterm or threading.current_thread() is not threading.main_thread():
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_IGN or previous is None:
        return
    _sigterm["previous"] = previous
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: object) -> None:
    remove_token_files()
    previous = _sigterm.get("previous", signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    signal.signal(signum, signal.SIG_DFL)
    _sigterm.pop("previous", None)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    os.kill(os.getpid(), signum)  # die of it, as without us: exit status 128 + 15


def check_token(token: str) -> str:
    """``token``, if a client can send it as ``Authorization: Bearer <token>``: printable ASCII
    without spaces (characters 33 to 126), so that every HTTP client sends the same bytes.

    >>> check_token("s3cret-Token_1")
    's3cret-Token_1'

    Raises:
        ValueError: an empty token, or one with a space, a control or a non-ASCII character.
    """
    if not isinstance(token, str) or not token or any(not 33 <= ord(c) <= 126 for c in token):
        raise ValueError("the control token must be printable ASCII without spaces (characters 33 to 126)")
    return token


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
        self._shown = [json.dumps(s, ensure_ascii=False)[1:-1] for s in self.secrets]  # as in a JSON text

    def text(self, value: str) -> str:
        for secret in self.secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def dumps(self, value: Any) -> str:
        """``value`` as compact JSON, scrubbed. Serialized first: when no secret shows in the
        text (JSON escapes each character on its own, so a secret inside a string shows as its
        own escaped form) that text is the answer, and nothing is walked; else the scrubbed copy
        is serialized again.

        >>> Scrubber(["s3cret"]).dumps({"dsn": "postgres://u:s3cret@h", "n": 1})
        '{"dsn":"postgres://u:***@h","n":1}'

        Raises:
            TypeError, ValueError: ``value`` is not JSON (json.dumps's, NaN and infinities refused).
        """
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        if any(shown in text for shown in self._shown):
            text = json.dumps(self.scrub(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        return text

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.scrub(k) if isinstance(k, str) else k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.scrub(v) for v in value]
        return value
