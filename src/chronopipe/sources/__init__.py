"""Sources: records from outside the process, with backpressure, as actors or in a loop.

Each source runs like a reader: iterated in the calling thread (``for record in source``, as
``Pipeline.consume(source)`` does) or hosted as an actor (one per source, on a thread or in a
process) writing to its ``.queue``. base.py states the contract a new kind of source keeps.
"""

from .backoff import Backoff
from .base import POLL, Arrival, Marker, MarkerKind, Source, SourceError, SourceOptions, SourceStatistics
from .follow import FollowSource
from .framing import Framing, FramingError, LengthFramer, LineFramer
from .http import HTTPSource
from .sockets import TCPClientSource, TCPServerSource, UDPSource
from .stdin import StdinSource
from .timers import Clock, CronSource, FakeClock, IntervalSource, Misfire, Tick
from .websocket import WebSocketSource

__all__ = [
    "POLL",
    "Arrival",
    "Backoff",
    "Clock",
    "CronSource",
    "FakeClock",
    "FollowSource",
    "Framing",
    "FramingError",
    "HTTPSource",
    "IntervalSource",
    "LengthFramer",
    "LineFramer",
    "Marker",
    "MarkerKind",
    "Misfire",
    "Source",
    "SourceError",
    "SourceOptions",
    "SourceStatistics",
    "StdinSource",
    "TCPClientSource",
    "TCPServerSource",
    "Tick",
    "UDPSource",
    "WebSocketSource",
]
