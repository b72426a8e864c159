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

import fcntl
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["FORMAT_VERSION", "HEAD", "StateError", "StateFile", "file_of", "source_identity"]

#: The ``v`` of the state files this version writes and reads.
FORMAT_VERSION = 1
#: Bytes of a file source hashed to recognise it again.
HEAD = 65536


class StateError(ValueError):
    """A state file that cannot be used: unreadable, of another source, or its source changed."""


def source_identity(source: Any) -> dict[str, Any]:
    """What identifies ``source`` in a state file: ``{"source": key}``, plus, when it is a file,
    its ``size``, hashes of its first and last 64 KiB (``head``, ``tail``), and for a text source
    whether it ended with a newline (a last line without one may go on when data is appended).

    Raises:
        StateError: ``source`` names no file and has no ``resume_key``.
    """
    key = getattr(source, "resume_key", None)
    if key is not None:
        return {"source": str(key)}
    path = file_of(source)
    if path is None:
        raise StateError(f"cannot resume {type(source).__name__} {source!r:.80}: state_dir needs a source that names "
                         "a file (an open file, a reader, a path) or has a resume_key attribute (wrap a list or a "
                         "generator in a class that sets one)")
    size = path.stat().st_size
    n = min(size, HEAD)
    identity = {"source": str(path), "size": size, "head": _hash(path, 0, n), "head_len": n,
                "tail": _hash(path, size - n, n)}
    if getattr(source, "encoding", None) is not None:  # text: records are lines
        identity["newline"] = size == 0 or _read(path, size - 1, 1) == b"\n"
    return identity


def file_of(source: Any) -> Path | None:
    """The regular file ``source`` reads: the one behind its descriptor when it is open (so a
    relative name opened from another folder is not mistaken), else the one it names."""
    try:
        fd = source.fileno()
        behind = Path(os.path.realpath(f"/proc/self/fd/{fd}"))
        if behind.is_file():
            return behind
    except (AttributeError, OSError, ValueError, TypeError):
        pass
    for attribute in ("filename", "path", "name"):
        value = getattr(source, attribute, None)
        if isinstance(value, (str, os.PathLike)) and os.path.isfile(value):
            return Path(value).resolve()
    return None


def _read(path: Path, at: int, n: int) -> bytes:
    with path.open("rb") as f:
        f.seek(at)
        return f.read(n)


def _hash(path: Path, at: int, n: int) -> str:
    return hashlib.sha256(_read(path, at, n)).hexdigest()


class StateFile:
    """The state file of pipeline ``name`` in ``directory`` (created when first saved)."""

    def __init__(self, directory: str | os.PathLike[str], name: str) -> None:
        self.directory = Path(directory)
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name) or "pipeline"
        if safe != name:  # "a/b" and "a_b" are two pipelines: two files
            safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
        self.path = self.directory / f"{safe}.state.json"
        self._lock: int | None = None

    def lock(self) -> None:
        """Hold the state for this run (released by :meth:`unlock`, or when the process dies).

        Raises:
            StateError: another run holds it, or the folder cannot be written.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(f"{self.directory}: cannot keep a state there ({exc.strerror or exc})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StateError(f"{self.path}: another run of this pipeline uses this state now; wait for it to end, "
                             "or give another state_dir") from None
        self._lock = fd

    def unlock(self) -> None:
        fd, self._lock = self._lock, None
        if fd is not None:
            os.close(fd)

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
        if "size" in identity:
            self._check_same_file(Path(identity["source"]), identity, state)
        return int(state["confirmed"])

    def _check_same_file(self, path: Path, identity: dict[str, Any], state: dict[str, Any]) -> None:
        """The file still holds what the saved run read: not shorter, the same first and last
        64 KiB of it; and a text file whose last line had no newline has not grown since."""
        size, n = int(state.get("size", 0)), int(state.get("head_len", 0))
        changed = identity["size"] < size or _hash(path, 0, n) != state.get("head") or (
            "tail" in state and _hash(path, size - n, n) != state["tail"])
        if changed:
            raise StateError(f"{self.path}: {path} changed since the state was saved (it shrank, or its beginning or "
                             "the end of what was read differs); delete the state file to start over")
        if state.get("newline") is False and identity["size"] > size:
            raise StateError(f"{self.path}: the last line of {path} had no newline when it was read, and data was "
                             "appended since (that line may go on); delete the state file to start over")

    def save(self, state: dict[str, Any]) -> None:
        """Replace the state atomically and durably (temporary file, fsync, rename, fsync the folder).

        Raises:
            StateError: it cannot be written (the folder, the disk).
        """
        try:
            self._save(state)
        except OSError as exc:
            raise StateError(f"{self.path}: cannot save the state ({exc.strerror or exc})") from None

    def _save(self, state: dict[str, Any]) -> None:
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
