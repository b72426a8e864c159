"""Channels: bounded, ordered, closable streams of records between actors."""

from .base import Channel, ChannelBroken, ChannelStatistics
from .end import END, is_end
from .pipe import ProcessChannel
from .thread import ThreadChannel

__all__ = ["END", "Channel", "ChannelBroken", "ChannelStatistics", "ProcessChannel", "ThreadChannel", "is_end"]
