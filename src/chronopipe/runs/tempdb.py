"""A throwaway PostgreSQL server: for the examples, the benchmark and the tests.

    server = start_server()        # initdb into a new temporary folder, pg_ctl start, a user and a database
    try:
        ... server.connect() / server.profile_dict() ...
    finally:
        server.stop()              # immediate shutdown, then SIGKILL to what is left; the folder is removed

Contracts:
  * Binaries: the highest ``/usr/lib/postgresql/<version>/bin`` holding ``initdb``, ``pg_ctl`` and
    ``postgres`` (Debian's ``postgresql`` package), else those three on ``PATH``; none:
    :class:`PostgresUnavailable` ("PostgreSQL not found: ..."), which the tests turn into a skip.
  * Authentication: TCP (``host`` lines, 127.0.0.1 and a free port) needs the password
    (scram-sha-256); the unix socket in the server's folder trusts local users.
  * Speed over durability: ``fsync=off``, ``synchronous_commit=off``, ``full_page_writes=off``. A
    server crash may lose data; a *client* crash (what the tests kill) behaves exactly as in production.
  * Each server has its own ``mkdtemp`` folder (so its own socket) and its own port (a port taken
    between choosing and binding is retried with another): pytest-xdist workers never collide.
  * As root (initdb refuses root) the server runs as the ``postgres`` user through ``runuser`` (or
    ``setpriv``) and the folder is chowned to it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

__all__ = ["NOT_FOUND", "PostgresServer", "PostgresUnavailable", "find_postgres_bin",
           "processes_of", "start_server"]

NOT_FOUND = "PostgreSQL not found"
TOOLS = ("initdb", "pg_ctl", "postgres")
DEBIAN_ROOT = Path("/usr/lib/postgresql")
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "50",
        "shared_buffers": "64MB", "max_wal_size": "1GB", "log_min_messages": "warning"}
START_SECONDS = 60.0
STOP_SECONDS = 15.0


class PostgresUnavailable(Exception):  # noqa: N818 (a condition, not an error of ours)
    """PostgreSQL cannot be found or started here; the message is the reason a skip shows."""


def find_postgres_bin(root: Path | None = None, path: str | None = None) -> Path:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: the highest ``root/<version>/bin``
    with all three, else the folder of ``initdb`` found on ``path`` (default: ``$PATH``).

    Raises:
        PostgresUnavailable: "PostgreSQL not found: ..." naming where it looked and what to install.
    """

    root = DEBIAN_ROOT if root is None else root

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", folder.parent.name)) or (0,)

    candidates = sorted((b for b in root.glob("*/bin") if all((b / t).is_file() for t in TOOLS)),
                        key=version, reverse=True) if root.is_dir() else []
    if candidates:
        return candidates[0]
    initdb = shutil.which("initdb", path=os.environ.get("PATH", "") if path is None else path)
    if initdb:
        folder = Path(os.path.realpath(initdb)).parent
        if all((folder / t).is_file() for t in TOOLS):
            return folder
    raise PostgresUnavailable(f"{NOT_FOUND}: no initdb/pg_ctl/postgres in {root}/*/bin or on PATH "
                              "(Debian/Ubuntu: apt-get install postgresql, or run ./requirements.sh as root)")


@dataclass
class PostgresServer:
    """A running test server. ``connect()`` opens a psycopg connection over TCP with the password;
    ``profile_dict()`` is the server as a profiles.yml entry; ``connect_options()`` the psycopg keywords
    (so the server itself can stand where a Profile is expected)."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    folder: Path
    bindir: Path
    run_as: list[str] = field(default_factory=list, repr=False)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder

    def connect_options(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "dbname": self.dbname}

    def profile_dict(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "user": self.user, "password": self.password,
                "database": self.dbname}

    def connect(self, **options: Any):
        """A psycopg connection (autocommit unless ``autocommit=False`` is given) as the test user."""
        import psycopg

        options = {"autocommit": True, "connect_timeout": 10, **options}
        return psycopg.connect(**self.connect_options(), **options)

    def admin(self):
        """A superuser connection through the unix socket (trust), for setup and inspection."""
        import psycopg

        return psycopg.connect(host=str(self.socket_dir), port=self.port, user="postgres", dbname="postgres",
                               autocommit=True, connect_timeout=10)

    def stop(self) -> None:
        """Stop the server (immediate shutdown, then SIGKILL after STOP_SECONDS) and remove its folder.
        Idempotent."""
        if not self.folder.exists():
            return
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.TimeoutExpired, OSError):
                _run(self, [self.bindir / "pg_ctl", "-D", self.data, "stop", "-m", "immediate", "-w",
                            "-t", str(int(STOP_SECONDS))], timeout=STOP_SECONDS + 5)
        _kill_left(self.folder)
        shutil.rmtree(self.folder, ignore_errors=True)


def processes_of(folder: Path) -> list[psutil.Process]:
    """Live processes whose command line or working folder mentions ``folder`` (a server's leftovers)."""
    mark, found = str(folder), []
    for process in psutil.process_iter(["cmdline", "cwd", "status"]):
        info = process.info
        if info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if mark in " ".join(info["cmdline"] or ()) or (info["cwd"] or "").startswith(mark):
            found.append(process)
    return found


def _kill_left(folder: Path) -> None:
    left = processes_of(folder)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.send_signal(signal.SIGKILL)
    psutil.wait_procs(left, timeout=5)


def _run_as() -> list[str]:
    """The command prefix that drops root to the ``postgres`` user (empty when not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailable("PostgreSQL could not start: running as root and there is no 'postgres' "
                                  "user to run initdb as (Debian's postgresql package creates it)") from None
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--"]
    if shutil.which("setpriv"):
        return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    raise PostgresUnavailable("PostgreSQL could not start: running as root without runuser or setpriv")


def _run(server: PostgresServer, argv: list, timeout: float) -> subprocess.CompletedProcess:
    """Run a PostgreSQL tool as the server's user; its output lands in the returned process."""
    return subprocess.run([*server.run_as, *map(str, argv)], cwd=server.folder, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, "LC_ALL": "C"})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def start_server(bindir: Path | None = None, attempts: int = 3) -> PostgresServer:
    """initdb, configure, start and populate a new server; the caller owns ``stop()``.

    Raises:
        PostgresUnavailable: binaries missing, or initdb/start/setup failed (with the log's last lines).
    """
    bindir = bindir or find_postgres_bin()
    run_as = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="chronopipe-pg-"))
    server = PostgresServer("127.0.0.1", 0, "chronopipe", secrets.token_urlsafe(12), "chronopipe_test",
                            folder, bindir, run_as)
    try:
        if run_as:
            os.chmod(folder, 0o700)
            shutil.chown(folder, "postgres", "postgres")
        done = _run(server, [bindir / "initdb", "-D", server.data, "-U", "postgres", "-E", "UTF8",
                             "--locale=C", "--no-sync", "--auth-local=trust", "--auth-host=scram-sha-256"],
                    timeout=START_SECONDS)
        if done.returncode:
            raise PostgresUnavailable(f"PostgreSQL could not start: initdb failed: {_last(done)}")
        _write(server, "pg_hba.conf",
               "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\nhost all all ::1/128 scram-sha-256\n")
        for attempt in range(attempts):
            server.port = _free_port()
            settings = {**FAST, "port": server.port, "listen_addresses": "'127.0.0.1'",
                        "unix_socket_directories": f"'{folder}'"}
            _write(server, "postgresql.auto.conf", "".join(f"{k} = {v}\n" for k, v in settings.items()))
            log = folder / "server.log"
            log.unlink(missing_ok=True)
            done = _run(server, [bindir / "pg_ctl", "-D", server.data, "-l", log, "-w", "-t",
                                 str(int(START_SECONDS)), "start"], timeout=START_SECONDS + 10)
            if done.returncode == 0:
                break
            if "could not bind" not in log.read_text(errors="replace") or attempt == attempts - 1:
                raise PostgresUnavailable(f"PostgreSQL could not start: {_last(done)} {_tail(log)}")
        _populate(server)
        return server
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as e:
        server.stop()
        if isinstance(e, PostgresUnavailable):
            raise
        raise PostgresUnavailable(f"PostgreSQL could not start: {type(e).__name__}: {e}") from e
    except BaseException:
        server.stop()
        raise


def _write(server: PostgresServer, name: str, text: str) -> None:
    """A configuration file of the data folder, owned by the server's user."""
    path = server.data / name
    path.write_text(text)
    if server.run_as:
        shutil.chown(path, "postgres", "postgres")


def _last(done: subprocess.CompletedProcess) -> str:
    return " | ".join((done.stderr or done.stdout or "").strip().splitlines()[-3:])


def _populate(server: PostgresServer) -> None:
    """Create the user (with its password) and its database through the socket, retrying until the
    server accepts connections or START_SECONDS pass."""
    import psycopg
    from psycopg import sql

    deadline = time.monotonic() + START_SECONDS
    while True:
        try:
            with server.admin() as conn:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(server.user), sql.Literal(server.password)))
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(
                    sql.Identifier(server.dbname), sql.Identifier(server.user)))
            return
        except psycopg.OperationalError as e:
            if time.monotonic() > deadline:
                raise PostgresUnavailable(f"PostgreSQL could not start: not ready after {START_SECONDS:.0f} s: "
                                          f"{' '.join(str(e).split())}") from e
            time.sleep(0.1)
