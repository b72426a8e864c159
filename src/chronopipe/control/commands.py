"""POST /commands: a chronopipe.messages Command in, its one terminal Event out.

The body is a Command as ``Command.to_dict`` writes it; only ``type`` is needed (``kind`` is
``"command"``, ``id`` a new uuid4, ``timestamp`` now, ``correlation_id`` null and ``data`` {}
unless given). A body that is no command is a 400; a command is always answered 200 with its
event, ``<TYPE>_SUCCEEDED`` (data ``{"result": ...}``, the same as the matching endpoint's
answer), ``<TYPE>_FAILED`` (the reason) or ``<TYPE>_REJECTED`` (a type nobody handles). The
handlers call the target as the endpoints do: STOP on a thread of its own (it blocks), KILL
after its event was sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..channels.quiet import start_quiet
from ..messages import Command, MessageError, answer
from .target import Target

if TYPE_CHECKING:
    from .server import ControlServer

__all__ = ["DEFAULT_STOP_TIMEOUT", "MAX_STOP_TIMEOUT", "handle_command", "read_command", "run_blocking",
           "stop_timeout"]

#: The longest ``timeout`` a stop takes, in seconds, and the one it gets when none is given.
MAX_STOP_TIMEOUT = 3600.0
DEFAULT_STOP_TIMEOUT = 30.0


def read_command(body: Mapping[str, Any]) -> Command:
    """The Command a POST /commands body describes (missing fields get their defaults).

    >>> read_command({"type": "GET_STATS"}).type
    'GET_STATS'

    Raises:
        MessageError: the body is no command (another kind, a bad or unknown field).
    """
    full = {"kind": "command", "data": {}, "correlation_id": None, "id": str(uuid.uuid4()), "timestamp": time.time()}
    full.update(body)
    if "type" not in body:
        raise MessageError("command: missing type")
    return Command.from_dict(full)


def stop_timeout(request: Mapping[str, Any]) -> float:
    """The seconds a stop may take: ``request["timeout"]``, DEFAULT_STOP_TIMEOUT without one.

    Raises:
        ValueError: not a number of seconds from 0 to MAX_STOP_TIMEOUT (null included).
    """
    if "timeout" not in request:
        return DEFAULT_STOP_TIMEOUT
    value = request["timeout"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_STOP_TIMEOUT:
        raise ValueError(f"'timeout' must be a number of seconds from 0 to {MAX_STOP_TIMEOUT:g}")
    return float(value)


def _handlers(server: ControlServer) -> dict[str, Callable[[Command], Any]]:
    target: Target = server.target

    def push(command: Command) -> dict[str, Any]:
        name = command.get_data("input").value_or(None)
        records = command.get_data("records").value_or(None)
        if not isinstance(name, str) or not isinstance(records, list):  # (get_data gives plain copies)
            raise ValueError('PUSH needs data {"input": name, "records": [...]}')
        try:
            accepted = target.push(name, records)
        except KeyError:
            raise LookupError(f"no input named {name!r} (inputs: {', '.join(target.inputs()) or 'none'})") from None
        return {"input": name, "accepted": int(accepted)}

    return {
        "GET_INFO": lambda _: server.describe(),
        "GET_ACTORS": lambda _: {"actors": list(target.actors())},
        "GET_STATS": lambda _: target.stats(),
        "GET_FEATURES": lambda _: {"features": target.features()},
        "PUSH": push,
        "STOP": lambda command: target.stop(stop_timeout(command.data)),
        "KILL": lambda _: {"state": "killing"},
    }


async def handle_command(server: ControlServer, body: Mapping[str, Any]
                         ) -> tuple[dict[str, Any], Callable[[], None] | None]:
    """The event answering the command in ``body`` (as a dict), and what to call once it was sent
    (the target's ``kill`` for a KILL that succeeded, else None).

    Raises:
        MessageError: ``body`` is no command.
    """
    command = read_command(body)
    handler = _handlers(server).get(command.type)
    if command.type == "STOP":
        event = await run_blocking(lambda: answer(command, handler))
    else:
        event = answer(command, handler)
    after = server.target.kill if command.type == "KILL" and event.outcome == "SUCCEEDED" else None
    return event.to_dict(), after


async def run_blocking(fn: Callable[[], Any]) -> Any:
    """``fn()`` on a daemon thread of its own (SIGINT/SIGTERM blocked), awaited: for the blocking
    target calls (``stop``), so the loop goes on serving and a hung one cannot hold up exit.

    Raises:
        BaseException: whatever ``fn`` raised.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)

    def work() -> None:
        try:
            value, error = fn(), None
        except BaseException as exc:
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop closed meanwhile: nobody waits for the answer
            pass

    start_quiet(threading.Thread(target=work, name="chronopipe-control-call", daemon=True))
    return await done
