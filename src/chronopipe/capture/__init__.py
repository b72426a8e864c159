"""Packet captures: pcap / pcapng reading with exact timestamps, decoding, reported damage."""

from .decode import decode
from .formats import CaptureError, Damage, Frame, Packet, read_batches, read_frames
from .reader import PACKET_FIELDS, PACKET_KEY, CaptureReader, CaptureStatistics, CaptureSummary, seconds_to_ns
from .writer import CaptureWriter

__all__ = [
    "PACKET_FIELDS",
    "PACKET_KEY",
    "CaptureError",
    "CaptureReader",
    "CaptureStatistics",
    "CaptureSummary",
    "CaptureWriter",
    "Damage",
    "Frame",
    "Packet",
    "decode",
    "read_batches",
    "read_frames",
    "seconds_to_ns",
]
