"""Resume after the main process was killed: the durable watermark of a pipeline's source.

``Pipeline(..., state_dir="state/")`` keeps, per pipeline, a small JSON file there
(``<name>.state.json``) saying how many records of which source every terminal node has finished
with (the ledger's confirmed offset, acks.py). It is replaced atomically: written to a temporary
file in the same folder, fsynced, renamed over the old one, the folder fsynced; a kill at any
moment leaves the old state or the new one, never a torn one.

The feed never runs more than ``window`` records ahead of the saved offset (it saves again, or
waits, first), so a rerun after a kill, which starts after the saved offset, handles at most
``window`` records a second time: those are counted as ``duplicates_possible``.

A source can be resumed when it names a file (an open file's ``name``, a reader's ``filename``,
a ``path``) or says what it is (a ``resume_key`` attribute). The file's size and the hash of its
first 64 KiB are kept: a rerun on a file that shrank or whose beginning changed is refused
(appending to it is fine: the rerun reads on into what was added).

>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> s = StateFile(d, "orders")
>>> s.load() is None
True
>>> s.save({"source": "rows", "confirmed": 3000, "window": 100000, "finished": False})
>>> s.load()["confirmed"]
3000
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["FORMAT_VERSION", "HEAD", "StateError", "StateFile", "source_identity"]

#: The ``v`` of the state files this version writes and reads.
FORMAT_VERSION = 1
#: Bytes of a file source hashed to recognise it again.
HEAD = 65536


class StateError(ValueError):
    """A state file that cannot be used: unreadable, of another source, or its source changed."""


def source_identity(source: Any) -> dict[str, Any]:
    """What identifies ``source`` in a state file: ``{"source": key}``, plus ``size`` and
    ``head`` (a hash of its first bytes) when it is a file.

    Raises:
        StateError: ``source`` names no file and has no ``resume_key``.
    """
    key = getattr(source, "resume_key", None)
    if key is not None:
        return {"source": str(key)}
    for attribute in ("filename", "path", "name"):
        value = getattr(source, attribute, None)
        if isinstance(value, (str, os.PathLike)) and os.path.isfile(value):
            path = Path(value).resolve()
            size = path.stat().st_size
            n = min(size, HEAD)
            return {"source": str(path), "size": size, "head": _head(path, n), "head_len": n}
    raise StateError(f"cannot resume {type(source).__name__} {source!r:.80}: state_dir needs a source that names "
                     "a file (an open file, a reader, a path) or has a resume_key attribute")


def _head(path: Path, n: int) -> str:
    with path.open("rb") as f:
        return hashlib.sha256(f.read(n)).hexdigest()


class StateFile:
    """The state file of pipeline ``name`` in ``directory`` (created when first saved)."""

    def __init__(self, directory: str | os.PathLike[str], name: str) -> None:
        self.directory = Path(directory)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "pipeline"
        self.path = self.directory / f"{safe}.state.json"

    def load(self) -> dict[str, Any] | None:
        """The saved state, or None when there is none.

        Raises:
            StateError: the file cannot be read or is not a state file of this version.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StateError(f"{self.path}: cannot read the state file ({exc.strerror or exc})") from None
        try:
            state = json.loads(text)
        except ValueError:
            state = None
        if not isinstance(state, dict) or state.get("v") != FORMAT_VERSION or not isinstance(state.get("confirmed"),
                                                                                              int):
            raise StateError(f"{self.path}: not a chronopipe state file (version {FORMAT_VERSION}); delete it to "
                             "start over")
        return state

    def resume_at(self, identity: dict[str, Any]) -> int:
        """Where a run over the source ``identity`` starts: after the records the saved state
        confirmed (0 with no state).

        Raises:
            StateError: the state is of another source, or the file source shrank or changed.
        """
        state = self.load()
        if state is None:
            return 0
        if state.get("source") != identity["source"]:
            raise StateError(f"{self.path}: the saved state is of source {state.get('source')!r}, not "
                             f"{identity['source']!r}; give another state_dir, or delete it to start over")
        if "size" in identity and (identity["size"] < state.get("size", 0) or
                                   _head(Path(identity["source"]), int(state.get("head_len", 0))) != state.get("head")):
            raise StateError(f"{self.path}: {identity['source']} changed since the state was saved (it shrank or "
                             "its beginning differs); delete the state file to start over")
        return int(state["confirmed"])

    def save(self, state: dict[str, Any]) -> None:
        """Replace the state atomically and durably (temporary file, fsync, rename, fsync the folder)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"v": FORMAT_VERSION, **state}, sort_keys=True).encode()
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
