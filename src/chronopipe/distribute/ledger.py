"""The acknowledgement ledger: a JSON-lines file of acknowledged task ids, one per line.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "acks.jsonl")
>>> Ledger(path).append(["A:0", "A:1"])
>>> sorted(Ledger(path).ids)
['A:0', 'A:1']
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

__all__ = ["Ledger"]


class Ledger:
    """The ids acknowledged by earlier runs (``ids``), and where this run appends its own.

    A torn last line (a kill in the middle of a write) is ignored: its task runs again.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.ids: set[str] = set()
        self._torn = False
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return
        self._torn = bool(text) and not text.endswith("\n")
        for line in text.splitlines():
            try:
                self.ids.add(json.loads(line)["id"])
            except (ValueError, KeyError, TypeError):
                continue

    def append(self, ids: Iterable[str]) -> None:
        """Add a batch of acknowledged ids, on disk (fsync) before this returns.

        Raises:
            OSError: the file cannot be written.
        """
        lines = "".join(json.dumps({"id": i}) + "\n" for i in ids)
        if not lines:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            if self._torn:
                f.write("\n")
                self._torn = False
            f.write(lines)
            f.flush()
            os.fsync(f.fileno())
        self.ids.update(json.loads(line)["id"] for line in lines.splitlines())
