"""Sources: records from outside the process, with backpressure, as actors or in a loop.

Each source runs like a reader: iterated in the calling thread (``for record in source``, as
``Pipeline.consume(source)`` does) or hosted as an actor (one per source, on a thread or in a
process) writing to its ``.queue``. base.py states the contract a new kind of source keeps.
"""

from .backoff import Backoff
from .base import POLL, Arrival, Marker, MarkerKind, Source, SourceError, SourceStatistics
from .follow import FollowSource
from .framing import Framing, FramingError, LengthFramer, LineFramer
from .sockets import TCPClientSource, TCPServerSource, UDPSource
from .stdin import StdinSource

__all__ = [
    "POLL",
    "Arrival",
    "Backoff",
    "FollowSource",
    "Framing",
    "FramingError",
    "LengthFramer",
    "LineFramer",
    "Marker",
    "MarkerKind",
    "Source",
    "SourceError",
    "SourceStatistics",
    "StdinSource",
    "TCPClientSource",
    "TCPServerSource",
    "UDPSource",
]
