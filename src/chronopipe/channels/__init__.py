"""Channels: bounded, ordered, closable streams of records between actors.

``Channel(mode=...)`` and ``open_channel(mode=...)`` make the class registered for that mode
(base.py); importing this package registers the implementations, ``ThreadChannel``,
``ProcessChannel`` and ``RayChannel`` (which imports Ray only when one is made). ``queues.py``
puts a Channel's face on any foreign queue; ``wait_any`` (wait.py) waits on several channels
at once, of any kinds.

Every package of chronopipe that logs imports this one, so the library's ``NullHandler`` is
added here (the top-level package imports nothing at start-up).
"""

import logging

from .base import Channel, ChannelBroken, ChannelStatistics, Mode, NotPicklable, channel_class, open_channel
from .end import END, is_end
from .onray import RayChannel
from .pipe import ProcessChannel
from .rayhub import RayMissingError
from .thread import ThreadChannel
from .wait import wait_any

__all__ = ["END", "Channel", "ChannelBroken", "ChannelStatistics", "Mode", "NotPicklable", "ProcessChannel",
           "RayChannel", "RayMissingError", "ThreadChannel", "channel_class", "is_end", "open_channel", "wait_any"]

logging.getLogger("chronopipe").addHandler(logging.NullHandler())
