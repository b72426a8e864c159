"""Readers: stream files onto channels or queues, as actors (one per file) or in a plain loop.

``FileReader`` streams lines, ``CSVReader`` streams rows as dicts (quirks of real CSV files
handled: see its docstring). Bad rows become ``Reject`` records (or a ``ReaderError`` with
``on_error="raise"``); ``join()`` returns a ``ReaderSummary``.
"""

from .base import FileReader, OnError, ReaderError, ReaderStatistics, ReaderSummary, Reject
from .convert import infer_value, parse_timestamp
from .csvreader import CSVReader, sniff_delimiter
from .output import QueueOutput

__all__ = [
    "CSVReader",
    "FileReader",
    "OnError",
    "QueueOutput",
    "ReaderError",
    "ReaderStatistics",
    "ReaderSummary",
    "Reject",
    "infer_value",
    "parse_timestamp",
    "sniff_delimiter",
]
