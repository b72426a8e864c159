"""A real PostgreSQL server for the tests: ``from postgres_helper import postgres  # noqa: F401``.

The session fixture ``postgres`` starts a throwaway server (``chronopipe.runs.tempdb``: initdb into
a new folder, pg_ctl on a free 127.0.0.1 port and a unix socket, a user with a password and its
database) and yields it (host, port, user, password, dbname, ``connect()``, ``profile_dict()``);
it stops the server at the end of the session. Under pytest-xdist every worker has its own.

Where PostgreSQL is missing or cannot start, every test using the fixture is SKIPPED with the
reason ("PostgreSQL not found: ..." or "PostgreSQL could not start: ..."), never passed; with
``CHRONOPIPE_REQUIRE_POSTGRES=1`` (CI) that is a failure instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from chronopipe.runs.tempdb import (
    NOT_FOUND,
    PostgresServer,
    PostgresUnavailable,
    find_postgres_bin,
    processes_of,
    start_server,
)

__all__ = ["NOT_FOUND", "PostgresServer", "PostgresUnavailable", "find_postgres_bin", "postgres",
           "processes_of", "schema", "start_server"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One server per test session (per xdist worker); skips its users where PostgreSQL is missing."""
    try:
        server = start_server()
    except PostgresUnavailable as e:
        if os.environ.get("CHRONOPIPE_REQUIRE_POSTGRES") == "1":
            pytest.fail(str(e))
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def schema(postgres: PostgresServer) -> Iterator[str]:
    """A fresh schema name per test (dropped after it, with what it holds): tests sharing the
    session's server never meet."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with postgres.connect() as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
