"""QueueInput: read any queue with ``get()`` as if it were a Channel (get_batch, END)."""

from __future__ import annotations

import queue
from typing import Any

from ..channels import END, Channel, ChannelBroken, is_end
from ..channels.base import kind_of

__all__ = ["QueueInput", "as_input"]

DRAIN = 1000  # records taken at once from a queue that has them ready


class QueueInput(Channel):
    """Read side of a ``queue.Queue``, a ``multiprocessing``/``multiprocess`` Queue or a
    ``Manager().Queue()`` proxy. END (or the seed's ``queue.Empty`` class) ends it."""

    def __init__(self, source: Any, *, name: str = "queue") -> None:
        if not callable(getattr(source, "get", None)):
            raise TypeError(f"an input queue needs get(), got {type(source).__name__}")
        super().__init__(1, name=name)
        self.kind = kind_of(source)  # type: ignore[misc]  (per instance: it depends on the source)
        self.source = source
        self._nowait = getattr(source, "get_nowait", None)

    def put_many(self, items: Any, timeout: float | None = None) -> int:
        n = 0
        for item in items:
            self.source.put(item)
            n += 1
        return n

    def close(self) -> None:
        self.source.put(END)

    def _receive(self, timeout: float) -> list[Any] | None:
        """Raises:
            ChannelBroken: the queue is a Manager proxy whose server process is gone."""
        try:
            first = self.source.get(timeout=timeout) if timeout > 0 else self._get_nowait()
        except queue.Empty:
            return None
        except (EOFError, ConnectionError, BrokenPipeError) as exc:
            raise self._gone(exc) from exc
        batch = [first]
        while not is_end(batch[-1]) and len(batch) < DRAIN:
            try:
                batch.append(self._get_nowait())
            except queue.Empty:
                break
            except (EOFError, ConnectionError, BrokenPipeError) as exc:
                raise self._gone(exc) from exc
        if is_end(batch[-1]):
            batch[-1] = END
        return batch

    def _gone(self, exc: BaseException) -> ChannelBroken:
        proxy = "Proxy" in type(self.source).__name__  # AutoProxy[Queue]
        what = "the queue's Manager server is gone" if proxy else "the queue broke"
        return ChannelBroken(f"input {self.name!r}: {what} ({type(exc).__name__}: {str(exc) or 'connection closed'})")

    def _get_nowait(self) -> Any:
        if self._nowait is not None:
            return self._nowait()
        return self.source.get(False)


def as_input(source: Any, name: str) -> Channel:
    """A Channel as it is; any other queue wrapped in QueueInput."""
    return source if isinstance(source, Channel) else QueueInput(source, name=name)

