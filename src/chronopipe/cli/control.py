"""``--control HOST:PORT`` of ``chronopipe run`` and ``chronopipe validate``: a control API for the
command's lifetime (see docs/runs.md, docs/validate.md and ``chronopipe status``).

The address is checked before anything runs (:func:`check_address`): one that does not parse, or
one other than loopback without ``CHRONOPIPE_TOKEN``, is a UsageError (one line, exit status 2).
:func:`serving` then starts the :class:`~chronopipe.control.ControlServer` (its one stderr line
says where it is and where its token file is) and closes it when the command's work is done,
after the answer to a ``POST /stop`` has left.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

from .outputs import UsageError

__all__ = ["ANSWER_WAIT", "add_control_option", "check_address", "run_target", "serving", "validate_target"]

#: Seconds the command waits, once its work is done, for a ``POST /stop`` being answered to be sent.
ANSWER_WAIT = 2.0


def add_control_option(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--control HOST:PORT`` to ``parser`` (``what``: "run", "validation run")."""
    parser.add_argument("--control", metavar="HOST:PORT",
                        help=f"serve the control API over the {what} on HOST:PORT while it goes (127.0.0.1:0: a "
                             "free port; its URL and token file are printed on stderr; chronopipe status URL "
                             "shows it). Off loopback it needs CHRONOPIPE_TOKEN")


def check_address(address: str | None) -> None:
    """Refuse a ``--control`` address the server would refuse, before anything runs.

    Raises:
        UsageError: an address that is not HOST:PORT; a host other than loopback while
            CHRONOPIPE_TOKEN is not set (exit status 2).
    """
    if address is None:
        return
    from ..control import parse_address
    from ..control.security import TOKEN_ENV, check_token, is_loopback

    try:
        host, _ = parse_address(address)
        if os.environ.get(TOKEN_ENV):
            check_token(os.environ[TOKEN_ENV])
    except ValueError as exc:
        raise UsageError(f"--control: {_line(exc)}") from None
    if not is_loopback(host) and not os.environ.get(TOKEN_ENV):
        raise UsageError(f"--control: refusing to serve the control API on {host} (not loopback) without a token: "
                         f"set {TOKEN_ENV}")


@contextlib.contextmanager
def serving(target: Any, address: str | None) -> Iterator[Any]:
    """The started ControlServer over ``target`` on ``address`` (None: no server, yields None),
    closed at the end of the block, once an answer to ``POST /stop`` has been made and sent.

    Raises:
        UsageError: the server refused to start (a port taken, no token off loopback), or the
            ``control`` extra (aiohttp) is missing.
    """
    if address is None:
        yield None
        return
    from ..control import ControlError, open_control

    try:
        server = open_control(target, address)
    except ModuleNotFoundError as exc:
        raise UsageError(f"--control needs {exc.name}: pip install 'chronopipe[control]'") from None
    except (ControlError, ValueError, OSError) as exc:
        raise UsageError(f"--control: {_line(exc)}") from None
    try:
        yield server
    finally:
        _wait_for_answer(target)
        server.close()


def _wait_for_answer(target: Any) -> None:
    """When a stop was asked through the API, give its answer up to ANSWER_WAIT s to be made, and
    the server a moment to send it (close also lets the requests in flight finish)."""
    asked, answered = getattr(target, "stop_requested", None), getattr(target, "stop_answered", None)
    if asked is None or answered is None or not asked.is_set():
        return
    answered.wait(ANSWER_WAIT)
    time.sleep(0.05)


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def run_target(run: Any, path: Any, address: str | None) -> Any:
    """The :class:`~chronopipe.runs.control.RunTarget` of ``chronopipe run --control``; None without one."""
    if address is None:
        return None
    from ..runs.control import RunTarget

    return RunTarget(run, path)


def validate_target(captures: list[Any]) -> Any:
    """The target of ``chronopipe validate --control``: the Runtime's actors (the capture readers,
    the merge, the check hosts), kind ``"validate"``, ``/info`` naming the captures.

    ``POST /stop`` drains: it stops the capture readers (those started later too, until the run is
    over); what they read is merged, checked and reported (the files are not ``complete`` in the
    JSON report). It answers once the run is over (the command sets ``run_over``), or at its
    timeout (``"stopping"``). ``stop_requested`` is set then, for the command to say so.
    """
    import threading

    from ..capture.reader import CaptureReader
    from ..control import ActorsTarget
    from ..runtime import Runtime

    class ValidateTarget(ActorsTarget):
        def __init__(self, name: str) -> None:
            super().__init__(name, lambda: Runtime().actors(), kind="validate")
            self.stop_requested, self.stop_answered = threading.Event(), threading.Event()
            self.run_over = threading.Event()

        def info(self) -> dict[str, Any]:
            answer = super().info()
            answer["captures"] = [str(c) for c in captures]
            return answer

        def stop(self, timeout: float) -> dict[str, Any]:
            self.stop_requested.set()
            try:
                deadline = time.monotonic() + max(0.0, float(timeout))
                while not self.run_over.is_set() and time.monotonic() < deadline:
                    for reader in self.members():
                        if isinstance(reader, CaptureReader) and reader.state in ("new", "running"):
                            reader.stop()  # a flag: a reader not yet started stops at its start
                    self.run_over.wait(0.02)
                answer = self.stats()
                answer["state"] = "finished" if self.run_over.is_set() else "stopping"
                return answer
            finally:
                self.stop_answered.set()

    return ValidateTarget(" ".join(os.path.basename(str(c)) for c in captures))
