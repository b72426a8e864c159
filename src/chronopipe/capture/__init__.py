"""Packet captures: pcap / pcapng reading with exact timestamps, decoding, reported damage."""

from .decode import decode
from .formats import CaptureError, CustomBlock, Damage, Frame, Packet, Untimed, read_batches, read_frames
from .reader import PACKET_FIELDS, PACKET_KEY, CaptureReader, CaptureStatistics, CaptureSummary, seconds_to_ns
from .writer import CaptureWriter, UnwritableError, WriteError

__all__ = [
    "PACKET_FIELDS",
    "PACKET_KEY",
    "CaptureError",
    "CaptureReader",
    "CaptureStatistics",
    "CaptureSummary",
    "CaptureWriter",
    "CustomBlock",
    "Damage",
    "Frame",
    "Packet",
    "Untimed",
    "UnwritableError",
    "WriteError",
    "decode",
    "read_batches",
    "read_frames",
    "seconds_to_ns",
]
