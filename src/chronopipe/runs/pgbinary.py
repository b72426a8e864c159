"""COPY (FORMAT binary) of an Arrow table, built with numpy: PostgresSink's fast path.

:func:`binary_chunks` encodes a table whose every column is a number, boolean, date or timestamp
that its column on the server takes exactly (the values load as their CSV text would); for anything
else it returns None and the sink writes CSV. The stream comes in ``chunk_rows`` pieces, so the
server parses one while the next is encoded.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = ["binary_chunks"]

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


def binary_chunks(table: pa.Table, server_types: dict[str, str], chunk_rows: int = 10_000
                  ) -> Iterator[memoryview] | None:
    """COPY (FORMAT binary) of ``table`` in ``chunk_rows`` pieces built with numpy, or None when a column
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
        for start in range(0, table.num_rows, chunk_rows):
            stop = min(start + chunk_rows, table.num_rows)
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
