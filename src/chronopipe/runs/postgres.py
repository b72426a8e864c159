"""PostgresSink: load stage batches into PostgreSQL with ``COPY``, every batch exactly once.

Contracts:
  * A Sink (see ``runs.sinks``): ``open()`` once in the producer's own thread or process, then
    ``write(batch)`` per batch, ``close()`` at the end (also after a failure). One sink, one
    connection, one thread: a producer owns its sink.
  * Target: ``{schema}.{table}``; ``table`` defaults to the batch's consumer name (one table per
    consumer), ``schema`` to the profile's ``schema``, else the connection's ``current_schema()``
    (a schema given either way is created).
    ``CREATE TABLE IF NOT EXISTS`` from the batch's Arrow schema (:func:`postgres_type`); a column a
    later batch brings is added (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``). Columns are matched by
    name, so the table's column order does not matter. Identifiers are quoted, never interpolated.
  * Exactly once: ``write`` runs ONE transaction: it inserts ``(batch_id, target)`` into
    ``{schema}._chronopipe_batches`` (``ON CONFLICT DO NOTHING RETURNING``); nothing returned means a
    previous run committed this batch: roll back, return 0. Otherwise ``COPY`` the rows and commit.
    The ledger row and the rows commit together, so a process killed at any point leaves each row
    once after a rerun, and two sinks loading the same batch concurrently load it once (the second
    waits on the first's ledger row, then sees the conflict).
  * Values: ``COPY (FORMAT binary)`` built with numpy (``runs.pgbinary``) when every column is a
    number, boolean, date or timestamp that its column on the server takes exactly; else ``COPY
    (FORMAT csv)`` written by ``pyarrow.csv``: NULL an unquoted empty field, an empty string a quoted
    one (they stay apart), nested values (list, struct, map) JSON text for ``jsonb``, binary ``bytea``
    hex. Both stream in CHUNK_ROWS pieces. Do not change a target's column types while a sink loads it.
  * A dead or stalled server: :data:`KEEPALIVES` (a profile's fields override them) end the
    connection, failing the batch, when a sent piece of a COPY stays unacknowledged, or the server's
    receive buffer full, for ``tcp_user_timeout`` (a host down, a server stopped mid-COPY), or when
    the server's host stops answering keepalives while we wait. NOT noticed: a server process that is
    stopped or hung while we wait for its answer (its kernel still answers): the producer waits.
  * Secrets: every Secret value of the profile (and a dict's password and dsn) is scrubbed from every
    message this module raises. psycopg and pyarrow are imported when used.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .batch import json_default
from .pgbinary import binary_chunks
from .sinks import Sink, SinkError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from .batch import Batch

__all__ = ["KEEPALIVES", "LEDGER", "PostgresSink", "PostgresSinkError", "postgres_type"]

LEDGER = "_chronopipe_batches"
CHUNK_ROWS = 10_000  # rows per COPY write: small enough to overlap our encoding with the server's parsing
MAX_IDENTIFIER = 63  # bytes: PostgreSQL silently truncates longer names (two columns could become one)
_DSN = ("dsn", "conninfo")  # a connection string, given whole: a secret (it may hold the password)
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3,
              "tcp_user_timeout": 30_000}  # fmt: skip
"""libpq options every connection gets unless its profile sets them: probes after 30 s idle, every 10 s,
3 unanswered ends it; data unacknowledged (or a zero window) for 30,000 ms ends it."""


class PostgresSinkError(SinkError):
    """A one-line reason naming the table (or the server for a connection failure); never a password."""


def postgres_type(arrow_type: pa.DataType) -> str:
    """The PostgreSQL column type for an Arrow type (anything unknown is stored as its text).

    >>> import pyarrow as pa
    >>> [postgres_type(t) for t in (pa.int64(), pa.int8(), pa.uint64(), pa.float32(), pa.string(), pa.bool_())]
    ['bigint', 'integer', 'numeric', 'double precision', 'text', 'boolean']
    >>> [postgres_type(t) for t in (pa.timestamp("us"), pa.timestamp("ns", tz="UTC"), pa.list_(pa.int8()))]
    ['timestamp', 'timestamptz', 'jsonb']
    """
    import pyarrow.types as t

    if t.is_dictionary(arrow_type):
        return postgres_type(arrow_type.value_type)
    checks = (  # the first that matches
        (t.is_boolean, "boolean"), (lambda x: t.is_int64(x) or t.is_uint32(x), "bigint"),
        (t.is_uint64, "numeric"), (t.is_integer, "integer"), (t.is_floating, "double precision"),
        (t.is_decimal, "numeric"), (lambda x: t.is_timestamp(x) and x.tz is not None, "timestamptz"),
        (t.is_timestamp, "timestamp"), (t.is_date, "date"), (t.is_time, "time"), (t.is_duration, "interval"),
        (lambda x: t.is_binary(x) or t.is_large_binary(x) or t.is_fixed_size_binary(x), "bytea"),
        (t.is_nested, "jsonb"))
    return next((name for check, name in checks if check(arrow_type)), "text")


def _jsonable(value: Any) -> Any:
    """An Arrow nested value's pylist as JSON data: a map's [(key, value), ...] becomes an object."""
    if isinstance(value, list) and value and all(isinstance(v, tuple) and len(v) == 2 for v in value):
        return {str(k): _jsonable(v) for k, v in value}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _as_text(column: pa.ChunkedArray, convert) -> pa.Array:
    import pyarrow as pa

    return pa.array([None if v is None else convert(v) for v in column.to_pylist()], pa.string())


def _csv_ready(table: pa.Table) -> pa.Table:
    """The table with every column in a type pyarrow.csv writes the way COPY (FORMAT csv) reads."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as t

    columns = []
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = field.type
        if t.is_dictionary(kind):
            column, kind = column.cast(kind.value_type), kind.value_type
        if t.is_nested(kind):
            column = _as_text(column, lambda v: json.dumps(_jsonable(v), default=json_default, ensure_ascii=False))
        elif postgres_type(kind) == "bytea":
            column = _as_text(column, lambda v: "\\x" + v.hex())
        elif t.is_duration(kind):
            micros = pc.divide(column.cast(pa.duration("ns")).cast(pa.int64()), 1000)
            column = pc.binary_join_element_wise(micros.cast(pa.string()), " microseconds", "")
        elif t.is_null(kind) or (postgres_type(kind) == "text" and not (t.is_string(kind) or t.is_large_string(kind))):
            column = _as_text(column, str)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _csv_chunks(table: pa.Table) -> Iterator[memoryview]:
    """COPY (FORMAT csv) text of ``table`` in CHUNK_ROWS pieces (the server parses one while we write the next)."""
    import pyarrow as pa
    import pyarrow.csv as csv

    options = csv.WriteOptions(include_header=False, batch_size=CHUNK_ROWS)
    for piece in _csv_ready(table).to_batches(max_chunksize=CHUNK_ROWS):
        out = pa.BufferOutputStream()
        csv.write_csv(piece, out, options)
        yield memoryview(out.getvalue())


def _connect_options(profile: Any) -> tuple[str, dict[str, Any]]:
    """(profile name, psycopg keywords with every Secret revealed) from a Profile or a plain dict
    (its ``schema`` is the sink's, not a keyword)."""
    if isinstance(profile, Mapping):
        name, options = "", {key: value for key, value in profile.items() if key != "schema"}
    else:
        name, options = str(getattr(profile, "name", "") or ""), dict(profile.connect_options())
    options = {k: v.reveal() if hasattr(v, "reveal") else v for k, v in options.items()}
    if "database" in options and "dbname" not in options:
        options["dbname"] = options.pop("database")
    return name, options


class PostgresSink(Sink):
    """Rows of each batch into ``{schema}.{table}`` with COPY, exactly once per ``batch.id``.

    ``profile``: a Profile (``.name``, ``.connect_options()``) or a dict of psycopg connect keywords.
    ``table``: the target table (default: each batch's consumer name). ``schema``: default the
    profile's ``schema``, else the connection's current schema. ``connect_timeout``: seconds for a
    connection attempt.

    Raises:
        ValueError: ``table`` or ``schema`` is empty or longer than MAX_IDENTIFIER bytes.
    """

    def __init__(self, profile: Any, *, table: str | None = None, schema: str | None = None,
                 connect_timeout: float = 10.0) -> None:
        if schema is None and callable(get := getattr(profile, "get", None)) and get("schema") is not None:
            schema = str(get("schema"))  # the seed's profile names its schema: created if missing, as schema= is
        for what, value in (("table", table), ("schema", schema)):
            if value is not None and not 0 < len(value.encode()) <= MAX_IDENTIFIER:
                raise ValueError(f"postgres sink: {what} name {value!r} must have 1 to {MAX_IDENTIFIER} bytes")
        self.profile, self.table, self.schema, self.connect_timeout = profile, table, schema, connect_timeout
        self._conn: Any = None
        self._schema = ""  # resolved by open()
        self._columns: dict[str, dict[str, str]] = {}  # target -> {column: its type on the server}
        self.seconds = 0.0  # spent in write()

    def __repr__(self) -> str:
        name = getattr(self.profile, "name", "") if not isinstance(self.profile, Mapping) else ""
        return f"PostgresSink(profile={name or '...'!r}, table={self.table!r}, schema={self.schema!r})"

    # -- the Sink protocol -----------------------------------------------------------------
    def open(self) -> None:
        """Connect, resolve the schema, create it (if given) and the batch ledger.

        Raises:
            PostgresSinkError: the server is unreachable, refuses the login, or the setup fails.
        """
        self._connection()

    def write(self, batch: Batch) -> int:
        """Load ``batch`` in one transaction; the rows written, 0 when this target already has it.

        Raises:
            PostgresSinkError: no target name or batch id, a bad column name, the connection is lost,
                or the server refuses the DDL, the ledger row or a value (the batch is then not loaded).
        """
        started = time.perf_counter()
        target = self.table or batch.consumer
        if not 0 < len(target.encode()) <= MAX_IDENTIFIER:
            raise PostgresSinkError(f"postgres sink: table name {target!r} must have 1 to {MAX_IDENTIFIER} bytes "
                                    "(give table= or batches with a consumer name)")
        if not batch.id:
            raise PostgresSinkError(f"postgres sink: {target}: a batch without an id cannot be loaded exactly once")
        try:
            return self._count(self._load(target, batch) if batch.num_rows else 0)
        finally:
            self.seconds += time.perf_counter() - started

    def close(self) -> None:
        """Close the connection (idempotent)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def statistics(self) -> dict[str, Any]:
        """batches and rows loaded, batches skipped (loaded before), seconds spent in write()."""
        return {**super().statistics(), "seconds": round(self.seconds, 3)}

    # -- internals ------------------------------------------------------------------------
    def _secrets(self) -> list[str]:
        """Every Secret value of the profile, its password and dsn whatever their type, and the password
        inside its dsn: the longest first (one may hold another)."""
        from psycopg import Error
        from psycopg.conninfo import conninfo_to_dict

        profile = self.profile
        fields = profile if isinstance(profile, Mapping) else getattr(profile, "fields", None)
        fields = fields if fields is not None else profile.connect_options()  # a tempdb server, say
        found = {key: value.reveal() if hasattr(value, "reveal") else str(value) for key, value in fields.items()
                 if value is not None and (hasattr(value, "reveal") or key in ("password", "passwd", *_DSN))}
        for key in _DSN:
            with contextlib.suppress(Error):
                found[f"{key} password"] = conninfo_to_dict(found.get(key, "")).get("password") or ""
        return sorted({secret for secret in found.values() if secret}, key=len, reverse=True)

    def _say(self, where: str, error: BaseException) -> str:
        """A one-line message for ``error``, with every secret of the profile replaced by ***."""
        message = f"postgres sink: {where}: {' '.join(str(error).split()) or type(error).__name__}"
        for secret in self._secrets():
            message = message.replace(secret, "***")
        return message

    def _connection(self) -> Any:
        """The open connection, (re)connecting and setting up the schema and ledger when needed."""
        import psycopg
        from psycopg import sql
        from psycopg.conninfo import conninfo_to_dict

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._columns.clear()
        name, options = _connect_options(self.profile)
        dsn = next((str(given) for given in [options.pop(key, None) for key in _DSN] if given), "")
        notes = [f"profile {name}"] * bool(name) + ["dsn ***"] * bool(dsn)  # the dsn may hold a password
        suffix = f" ({', '.join(notes)})" if notes else ""
        where, schema = "cannot connect" + suffix, self.schema or "current_schema()"
        try:
            params = conninfo_to_dict(dsn, **options)  # the profile's own fields over the dsn's
            for key, value in {**KEEPALIVES, "connect_timeout": max(1, round(self.connect_timeout)),
                               "application_name": "chronopipe"}.items():  # fmt: skip
                params.setdefault(key, value)
            user, host, port, dbname = (params.get(key, "") for key in ("user", "host", "port", "dbname"))
            where = f"cannot connect to {user}@{host}:{port}/{dbname}{suffix}"
            conn = psycopg.connect(**params, autocommit=True)
        except psycopg.Error as e:
            raise PostgresSinkError(self._say(where, e)) from None
        try:
            schema = self.schema or conn.execute("SELECT current_schema()").fetchone()[0]
            if not schema:
                raise PostgresSinkError("postgres sink: no schema: no schema of the search_path exists; give schema=")
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"chronopipe:{schema}"])
                if self.schema:
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                conn.execute(sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.{} (batch_id text NOT NULL, target text NOT NULL, rows bigint "
                    "NOT NULL, loaded_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (batch_id, target))"
                ).format(sql.Identifier(schema), sql.Identifier(LEDGER)))
        except psycopg.Error as e:
            conn.close()
            raise PostgresSinkError(self._say(f"{schema}.{LEDGER}", e)) from None
        except BaseException:
            conn.close()
            raise
        self._conn, self._schema = conn, schema
        return conn

    def _load(self, target: str, batch: Batch) -> int | None:
        """The rows loaded, or None when the ledger says this target has the batch already."""
        import psycopg
        import pyarrow as pa
        from psycopg import sql

        conn = self._connection()
        where = f"{self._schema}.{target}"
        try:
            table = batch.table
            columns = [(field.name, postgres_type(field.type)) for field in table.schema]
            bad = [c for c, _ in columns if not 0 < len(c.encode()) <= MAX_IDENTIFIER]
            if bad or len({c for c, _ in columns}) != len(columns):
                raise PostgresSinkError(f"postgres sink: {where}: batch {batch.id}: column names must be distinct "
                                        f"and of 1 to {MAX_IDENTIFIER} bytes, not {bad or table.column_names}")
            name = sql.Identifier(self._schema, target)
            names = sql.SQL(", ").join(sql.Identifier(c) for c, _ in columns)
            ledger = sql.SQL("INSERT INTO {} (batch_id, target, rows) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING "
                             "RETURNING batch_id").format(sql.Identifier(self._schema, LEDGER))
            self._ensure_table(conn, target, columns)
            chunks = binary_chunks(table, self._columns[target], CHUNK_ROWS)
            copy_format = "binary" if chunks is not None else "csv"
            copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(name, names, sql.SQL(copy_format))
            with conn.transaction():
                if conn.execute(ledger, [batch.id, target, batch.num_rows]).fetchone() is None:
                    raise psycopg.Rollback  # committed by an earlier run: nothing to do
                with conn.cursor() as cur, cur.copy(copy) as out:
                    for chunk in chunks if chunks is not None else _csv_chunks(table):
                        out.write(chunk)
                return batch.num_rows
            return None
        except (psycopg.Error, pa.ArrowException) as e:
            self._columns.pop(target, None)  # the table may have changed under us: look again next time
            raise PostgresSinkError(self._say(where, e)) from None

    def _ensure_table(self, conn: Any, target: str, columns: list[tuple[str, str]]) -> None:
        """Create the target or add the columns this batch brings, once per sink and change
        (serialised across sinks by an advisory lock: concurrent CREATE/ALTER would race)."""
        from psycopg import sql

        known = self._columns.get(target)
        if known is not None and all(c in known for c, _ in columns):
            return
        name = sql.Identifier(self._schema, target)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"chronopipe:{self._schema}.{target}"])
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(name, sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c), sql.SQL(kind)) for c, kind in columns)))
            existing = self._server_columns(conn, target)
            missing = [(column, kind) for column, kind in columns if column not in existing]
            for column, kind in missing:
                conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    name, sql.Identifier(column), sql.SQL(kind)))
            self._columns[target] = self._server_columns(conn, target) if missing else existing

    def _server_columns(self, conn: Any, target: str) -> dict[str, str]:
        return dict(conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = "
            "to_regclass(format('%%I.%%I', %s::text, %s::text)) AND attnum > 0 AND NOT attisdropped",
            [self._schema, target]).fetchall())
