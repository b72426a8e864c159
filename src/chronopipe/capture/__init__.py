"""Packet captures: pcap / pcapng reading with exact timestamps and reported damage."""

from .formats import CaptureError, Damage, Frame, read_frames

__all__ = ["CaptureError", "Damage", "Frame", "read_frames"]
