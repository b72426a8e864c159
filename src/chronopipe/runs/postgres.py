"""PostgresSink: load stage batches into PostgreSQL with ``COPY``, every batch exactly once.

Contracts:
  * A Sink (see ``runs.sinks``): ``open()`` once in the producer's own thread or process, then
    ``write(batch)`` per batch, ``close()`` at the end (also after a failure). One sink, one
    connection, one thread: a producer owns its sink.
  * Target: ``{schema}.{table}``; ``table`` defaults to the batch's consumer name (one table per
    consumer), ``schema`` to the connection's ``current_schema()`` (a given schema is created).
    ``CREATE TABLE IF NOT EXISTS`` from the batch's Arrow schema (:func:`postgres_type`); a column a
    later batch brings is added (``ALTER TABLE ... ADD COLUMN IF NOT EXISTS``). Columns are matched by
    name, so the table's column order does not matter. Identifiers are quoted, never interpolated.
  * Exactly once: ``write`` runs ONE transaction: it inserts ``(batch_id, target)`` into
    ``{schema}._chronopipe_batches`` (``ON CONFLICT DO NOTHING RETURNING``); nothing returned means a
    previous run committed this batch: roll back, return 0. Otherwise ``COPY`` the rows and commit.
    The ledger row and the rows commit together, so a process killed at any point leaves each row
    once after a rerun, and two sinks loading the same batch concurrently load it once (the second
    waits on the first's ledger row, then sees the conflict).
  * Values: ``COPY (FORMAT binary)`` built with numpy when every column is a number, boolean, date or
    timestamp that its column on the server takes exactly; else ``COPY (FORMAT csv)`` written by
    ``pyarrow.csv``: NULL an unquoted empty field, an empty string a quoted one (they stay apart),
    nested values (list, struct, map) JSON text for ``jsonb``, binary ``bytea`` hex. Both stream in
    CHUNK_ROWS pieces. Do not change a target's column types while a sink loads it.
  * Secrets: the password reaches psycopg only as ``password=`` (never in a DSN string) and is
    scrubbed from every message this module raises. psycopg and pyarrow are imported when used.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from .batch import json_default
from .sinks import Sink, SinkError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from .batch import Batch

__all__ = ["LEDGER", "PostgresSink", "PostgresSinkError", "postgres_type"]

LEDGER = "_chronopipe_batches"
CHUNK_ROWS = 10_000  # rows per COPY write: small enough to overlap our encoding with the server's parsing
MAX_IDENTIFIER = 63  # bytes: PostgreSQL silently truncates longer names (two columns could become one)


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


#: COPY (FORMAT binary) encodings: the column's type on the server -> (Arrow types it takes, wire dtype)
_BINARY = {"bigint": ("integer", ">i8"), "integer": ("integer", ">i4"), "smallint": ("integer", ">i2"),
           "double precision": ("float64", ">f8"), "boolean": ("boolean", "u1"), "date": ("date", ">i4"),
           "timestamp without time zone": ("naive", ">i8"), "timestamp with time zone": ("aware", ">i8")}
_PG_EPOCH_DAYS = 10_957  # 2000-01-01, PostgreSQL's epoch, in days after 1970-01-01


def _binary_column(column: pa.ChunkedArray, server_type: str) -> tuple[Any, Any] | None:
    """(big-endian values with nulls as 0, validity or None) of ``column`` for a ``server_type``
    column, or None when it does not encode exactly as the CSV text would load (then CSV it is)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.types as t

    takes, wire = _BINARY.get(server_type, ("", ""))
    kind = column.type
    if t.is_dictionary(kind):
        column, kind = column.cast(kind.value_type), kind.value_type
    fits = {"integer": t.is_integer(kind), "float64": t.is_float64(kind) or t.is_integer(kind),
            "boolean": t.is_boolean(kind), "date": t.is_date(kind), "naive": t.is_timestamp(kind) and kind.tz is None,
            "aware": t.is_timestamp(kind) and kind.tz is not None}
    if not fits.get(takes):
        return None
    valid = None if column.null_count == 0 else pc.is_valid(column).to_numpy(zero_copy_only=False)
    try:
        if takes in ("naive", "aware"):  # microseconds after 2000-01-01 (UTC for an aware one)
            micros = column if kind.unit == "ns" else column.cast(pa.timestamp("us", kind.tz))  # safe: may raise
            values = pc.fill_null(micros.cast(pa.int64()), 0).to_numpy()
            if kind.unit == "ns":
                values = (values + 500) // 1000  # rounded, as the server rounds a text value
            values = values - _PG_EPOCH_DAYS * 86_400_000_000
        elif takes == "date":
            values = pc.fill_null(column.cast(pa.date32()).cast(pa.int32()), 0).to_numpy() - _PG_EPOCH_DAYS
        else:
            to = {"boolean": pa.bool_(), "float64": pa.float64()}.get(takes) or pa.from_numpy_dtype(wire[1:])
            zero = False if takes == "boolean" else 0
            values = pc.fill_null(column.cast(to), zero).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # out of range: let the server say so in CSV
        return None
    return np.asarray(values).astype(wire), valid


def _binary_chunks(table: pa.Table, server_types: dict[str, str]) -> Iterator[memoryview] | None:
    """COPY (FORMAT binary) of ``table`` in CHUNK_ROWS pieces built with numpy, or None when a column
    has no exact binary encoding for its server type. Each row: int16 field count, then per field an
    int32 length (-1: NULL) and the big-endian value; null fields' value bytes are masked out."""
    import numpy as np

    encoded = [_binary_column(column, server_types.get(name, "")) for name, column in
               zip(table.column_names, table.columns, strict=True)]
    if not encoded or any(e is None for e in encoded):
        return None
    row = np.dtype([("n", ">i2")] + [f for i, (v, _) in enumerate(encoded) for f in
                                     ((f"l{i}", ">i4"), (f"v{i}", v.dtype))])

    def chunks() -> Iterator[memoryview]:
        yield memoryview(b"PGCOPY\n\xff\r\n\x00" + bytes(8))
        for start in range(0, table.num_rows, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, table.num_rows)
            rec = np.empty(stop - start, row)
            rec["n"] = len(encoded)
            keep = None
            for i, (values, valid) in enumerate(encoded):
                rec[f"v{i}"] = values[start:stop]
                size = values.dtype.itemsize
                if valid is None:
                    rec[f"l{i}"] = size
                    continue
                rec[f"l{i}"] = np.where(valid[start:stop], size, -1)
                if keep is None:
                    keep = np.ones((stop - start, row.itemsize), bool)
                offset = row.fields[f"v{i}"][1]
                keep[~valid[start:stop], offset:offset + size] = False
            raw = rec.view(np.uint8).reshape(stop - start, row.itemsize)
            yield memoryview(raw.reshape(-1) if keep is None else raw[keep])
        yield memoryview(b"\xff\xff")

    return chunks()


def _connect_options(profile: Any) -> tuple[str, dict[str, Any]]:
    """(profile name, psycopg keywords with every Secret revealed) from a Profile or a plain dict."""
    if isinstance(profile, Mapping):
        name, options = "", dict(profile)
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
    connection's current schema. ``connect_timeout``: seconds for a connection attempt.

    Raises:
        ValueError: ``table`` or ``schema`` is empty or longer than MAX_IDENTIFIER bytes.
    """

    def __init__(self, profile: Any, *, table: str | None = None, schema: str | None = None,
                 connect_timeout: float = 10.0) -> None:
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
        _, options = _connect_options(self.profile)
        fields = getattr(self.profile, "fields", None) or {}  # a Profile's other Secret fields too
        return [str(v) for k, v in options.items() if k in ("password", "dsn", "conninfo") and v] + [
            v.reveal() for v in fields.values() if hasattr(v, "reveal") and v.reveal()]

    def _say(self, where: str, error: BaseException) -> str:
        """A one-line message for ``error`` with every secret of the profile replaced by ***."""
        reason = " ".join(str(error).split()) or type(error).__name__
        for secret in self._secrets():
            reason = reason.replace(secret, "***")
        return f"postgres sink: {where}: {reason}"

    def _connection(self) -> Any:
        """The open connection, (re)connecting and setting up the schema and ledger when needed."""
        import psycopg
        from psycopg import sql

        if self._conn is not None and not self._conn.closed and not self._conn.broken:
            return self._conn
        self._columns.clear()
        name, options = _connect_options(self.profile)
        conninfo = str(options.pop("dsn", "") or options.pop("conninfo", "") or "")
        options.setdefault("connect_timeout", max(1, round(self.connect_timeout)))
        options.setdefault("application_name", "chronopipe")
        where = (f"cannot connect to {options.get('user', '')}@{options.get('host', '')}:{options.get('port', '')}"
                 f"/{options.get('dbname', '')}" + (f" (profile {name})" if name else ""))
        schema = self.schema or "current_schema()"
        try:
            conn = psycopg.connect(conninfo, **options, autocommit=True)
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
            chunks = _binary_chunks(table, self._columns[target])
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
