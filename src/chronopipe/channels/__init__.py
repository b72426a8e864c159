"""Channels: bounded, ordered, closable streams of records between actors.

``Channel(kind=...)`` and ``open_channel(kind=...)`` make the class registered for that kind
(base.py); importing this package registers both implementations, ``ThreadChannel`` and
``ProcessChannel``. ``queues.py`` puts a Channel's face on any foreign queue.
"""

from .base import Channel, ChannelBroken, ChannelStatistics, channel_class, open_channel
from .end import END, is_end
from .pipe import ProcessChannel
from .thread import ThreadChannel

__all__ = ["END", "Channel", "ChannelBroken", "ChannelStatistics", "ProcessChannel", "ThreadChannel",
           "channel_class", "is_end", "open_channel"]
