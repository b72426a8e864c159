"""Progress for long command-line runs: a tqdm bar on a terminal, nothing on a pipe or a log.

A bar appears only when the stream is a terminal (and after ``delay`` seconds, so short runs
stay quiet); elsewhere :func:`progress` returns a bar that ignores every update, and the command's
one-line summary on stdout is all that is printed. Nothing is ever glued to the next message:
tqdm clears its line when closed.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

__all__ = ["progress"]


def progress(unit: str, *, err: TextIO | None = None, total: int | None = None, delay: float = 1.0,
             desc: str | None = None) -> Any:
    """A tqdm bar counting ``unit`` on ``err`` (stderr) if it is a terminal, else a silent one.

    Use it as a context manager and call ``update(n)``; the bar shows count, rate and elapsed time.

    >>> import io
    >>> with progress("rows", err=io.StringIO()) as bar:
    ...     bar.update(10)
    ...     bar.disable  # not a terminal: silent
    True
    """
    from tqdm import tqdm

    stream = sys.stderr if err is None else err
    quiet = not (hasattr(stream, "isatty") and stream.isatty())
    return tqdm(total=total, unit=f" {unit}", unit_scale=True, file=stream, disable=quiet, delay=delay,
                desc=desc, leave=False, dynamic_ncols=True)
