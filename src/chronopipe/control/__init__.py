# Layer: between runtime (above) and actors | messages (below) in .importlinter. Imports actors,
# channels, either and messages; never the runtime, and aiohttp only inside ControlServer.start.
"""The HTTP control plane: a running Runtime, pipeline or run answers GET /stats, POST /stop, ...

Layer (.importlinter): below ``chronopipe.runtime``, above ``chronopipe.actors``; it imports
actors, channels, either and messages, never the runtime (a Runtime or a Pipeline makes a
ControlServer over a Target of its own). ``import chronopipe.control`` does not import aiohttp:
``ControlServer.start`` does (the ``control`` extra: ``pip install 'chronopipe[control]'``).
docs/control.md says what is served and how it is guarded.
"""

from .server import ControlError, ControlServer, open_control, parse_address
from .target import ACTOR_FIELDS, ActorsTarget, InputClosed, InputFull, Target, kill_process

__all__ = [
    "ACTOR_FIELDS",
    "ActorsTarget",
    "ControlError",
    "ControlServer",
    "InputClosed",
    "InputFull",
    "Target",
    "kill_process",
    "open_control",
    "parse_address",
]
