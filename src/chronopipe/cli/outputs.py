"""What the command line writes: checked before a run starts, never onto an input, atomically.

Every file a command writes (``--output``, ``-w``, ``--json``, ``--html``, a late-rows file) goes
through here:

- :func:`check_outputs` runs before any input is opened: an output that is also an input (same
  resolved path, or the same inode through a link), a directory, a missing or read-only folder, or
  two outputs on one path, is a :class:`UsageError` (exit status 2), so a 12 s run never ends in
  "cannot write".
- :class:`AtomicOutput` writes to a temporary file in the target's folder and renames it into place
  only on :meth:`~AtomicOutput.commit`; :meth:`~AtomicOutput.discard` (also on an exception inside
  ``with``) removes it. An interrupted run leaves the previous file, if any, untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "EXIT_CODES",
    "EXIT_DIED",
    "EXIT_FOUND",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "AtomicOutput",
    "UsageError",
    "check_inputs",
    "check_outputs",
]

EXIT_OK = 0  #: the run finished and found nothing wrong
EXIT_FOUND = 1  #: the run finished but found something: rejects, late rows, damage, failed checks
EXIT_USAGE = 2  #: a usage error or an unreadable input; nothing was run
EXIT_DIED = 3  #: an actor or a worker died (or failed) during the run
EXIT_INTERRUPTED = 130  #: Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  #: SIGTERM

#: The exit status table of every command, as ``--help`` and the README print it.
EXIT_CODES = """exit status:
  0    all good
  1    the run finished but found something (rejects, late rows, damage, failed checks)
  2    usage error or unreadable input
  3    an actor or worker died
  130  interrupted (Ctrl-C)
  143  terminated (SIGTERM)"""


class UsageError(Exception):
    """A mistake in the command line or an input that cannot be read: one line, exit status 2.

    >>> str(UsageError("--output a.csv: is also an input"))
    '--output a.csv: is also an input'
    """

    exit_code = EXIT_USAGE


def check_inputs(paths: Iterable[Path]) -> None:
    """Every path is a readable regular file.

    Raises:
        UsageError: naming the first path that does not exist, is a directory, cannot be read, or
            is given twice (the same resolved path or the same inode): its rows would count twice.

    >>> check_inputs([Path("/")])
    Traceback (most recent call last):
    ...
    chronopipe.cli.outputs.UsageError: /: is a directory, not a file
    """
    seen: list[Path] = []
    for path in paths:
        if path.is_dir():
            raise UsageError(f"{path}: is a directory, not a file")
        if not path.exists():
            raise UsageError(f"{path}: no such file")
        if not path.is_file():
            raise UsageError(f"{path}: not a regular file")
        if not os.access(path, os.R_OK):
            raise UsageError(f"{path}: permission denied (cannot read it)")
        for earlier in seen:
            if _same_file(path, earlier):
                raise UsageError(f"{path}: given twice (also as {earlier})")
        seen.append(path)


def check_outputs(outputs: Mapping[str, Path | None], inputs: Iterable[Path]) -> None:
    """Each output (``{flag: path}``, None for unused ones) can be created and overwrites no input.

    Run it before anything is opened.

    Raises:
        UsageError: naming the flag and the path: it is an input (same resolved path or same
            inode), a directory, in a folder that does not exist or cannot be written, a file that
            cannot be overwritten, or the same path as another output.

    >>> check_outputs({"--output": Path("/tmp/a.csv")}, [Path("/tmp/a.csv")])
    Traceback (most recent call last):
    ...
    chronopipe.cli.outputs.UsageError: --output /tmp/a.csv: is also an input; refusing to overwrite it
    """
    inputs = list(inputs)
    resolved_inputs = {p.resolve() for p in inputs}
    seen: dict[Path, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        where = f"{flag} {path}"
        resolved = path.resolve()
        if resolved in resolved_inputs or any(_same_file(path, p) for p in inputs):
            raise UsageError(f"{where}: is also an input; refusing to overwrite it")
        if resolved in seen:
            raise UsageError(f"{where}: is also the path given to {seen[resolved]}")
        seen[resolved] = flag
        if path.is_dir():
            raise UsageError(f"{where}: is a directory; give a file name")
        folder = resolved.parent
        if not folder.is_dir():
            raise UsageError(f"{where}: no such folder {folder}")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise UsageError(f"{where}: cannot write in the folder {folder} (permission denied)")
        if path.exists() and not os.access(path, os.W_OK):
            raise UsageError(f"{where}: the file exists and cannot be overwritten (permission denied)")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


class AtomicOutput:
    """A file written under a temporary name beside ``target``, renamed into place on commit().

    The temporary name keeps the target's suffix (writers that choose a format by the suffix still
    do) and starts with a dot. A target that exists and is no regular file (``/dev/null``, a FIFO)
    is written in place. Use it as a context manager: leaving the block by an exception (a
    failure, Ctrl-C) discards the temporary file; leaving it normally does *not* commit, the caller
    says when the run succeeded.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "merged.csv"
    >>> with AtomicOutput(target) as out:
    ...     _ = out.path.write_text("a,b\\n")
    ...     target.exists()
    ...     out.commit()
    False
    >>> target.read_text(), [p.name for p in target.parent.iterdir()]
    ('a,b\\n', ['merged.csv'])
    """

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.target = Path(target)
        self.committed = False
        if self.target.exists() and not self.target.is_file():  # /dev/null, a FIFO: write to it as it is
            self.path = self.target
            self.direct = True
            return
        self.direct = False  #: True for a target that is no regular file: written in place
        fd, name = tempfile.mkstemp(dir=self.target.resolve().parent, prefix=f".{self.target.name}.",
                                    suffix=f".part{self.target.suffix}")
        os.close(fd)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)  # as open() would have created it, not mkstemp's 0600
        self.path = Path(name)  #: where to write until commit()

    def commit(self) -> None:
        """Rename the temporary file onto the target (atomic on one file system)."""
        if not self.direct:
            os.replace(self.path, self.target)
        self.committed = True

    def discard(self) -> bool:
        """Remove the temporary file unless committed; True if there was something to remove."""
        if self.committed or self.direct:
            return False
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            self.discard()

    def __repr__(self) -> str:
        return f"<AtomicOutput {str(self.target)!r}{' committed' if self.committed else ''}>"
