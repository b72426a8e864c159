"""The seed's vocabulary (py-zmq-pipeline): task types, endpoint addresses, message types, and
the abstract classes a user subclasses: Task, SingleThreadedWorker, MultiThreadedWorker,
MetaDataWorker and Collector.

Endpoint addresses are kept for compatibility with the seed's declarations and validated as it
validates them; chronopipe routes nothing through them (records travel through chronopipe
channels, docs/distribute.md).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

__all__ = [
    "MESSAGE_TYPE_ACK", "MESSAGE_TYPE_DATA", "MESSAGE_TYPE_EMPTY", "MESSAGE_TYPE_END", "MESSAGE_TYPE_FAILURE",
    "MESSAGE_TYPE_META_DATA", "MESSAGE_TYPE_READY", "MESSAGE_TYPE_SUCCESS", "Collector", "EndpointAddress",
    "MetaDataWorker", "MultiThreadedWorker", "SingleThreadedWorker", "Task", "TaskType", "Worker", "checked_output",
]

MESSAGE_TYPE_ACK = "ACK"
MESSAGE_TYPE_SUCCESS = "SUCCESS"
MESSAGE_TYPE_FAILURE = "FAILURE"
MESSAGE_TYPE_READY = "READY"
MESSAGE_TYPE_END = "END"
MESSAGE_TYPE_DATA = "DATA"
MESSAGE_TYPE_META_DATA = "META_DATA"
MESSAGE_TYPE_EMPTY = "EMPTY"

_ADDRESS = re.compile(r"^(tcp|tpc|ipc|inproc)://\S+$")


class TaskType(str):
    """A registered name that ties one Task class to its workers.

    >>> TaskType.register_type("DOCTSK")
    >>> TaskType("DOCTSK") == "DOCTSK"
    True
    >>> TaskType("NOPE")
    Traceback (most recent call last):
    ...
    ValueError: task type 'NOPE' is not registered: call TaskType.register_type('NOPE') first
    """

    _registered: ClassVar[set[str]] = set()

    def __new__(cls, name: str) -> TaskType:
        """Raises:
            ValueError: ``name`` was not registered with :meth:`register_type`.
        """
        if name not in cls._registered:
            raise ValueError(f"task type {name!r} is not registered: call TaskType.register_type({name!r}) first")
        return super().__new__(cls, name)

    @classmethod
    def register_type(cls, name: str) -> None:
        """Register ``name`` so ``TaskType(name)`` may be declared (registering twice is harmless).

        Raises:
            TypeError: ``name`` is not a non-empty string.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a task type is a non-empty string, not {name!r}")
        cls._registered.add(name)

    @classmethod
    def known(cls, name: str) -> TaskType:
        """``name`` as a TaskType without the registry's check: for a worker or collector
        process (a Ray actor, say) that never ran the module registering it."""
        return super().__new__(cls, name)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return str, (str(self),)  # a plain string where it is unpickled: no registry needed there

    def __repr__(self) -> str:
        return f"TaskType({str(self)!r})"


class EndpointAddress(str):
    """A seed-style address (``tcp://``, ``ipc://``, ``inproc://``; the seed's ``tpc://`` too).

    Validated and kept for compatibility only: chronopipe channels carry the messages.

    Raises:
        TypeError: not a string of one of those protocols (as the seed does).
    """

    def __new__(cls, address: str) -> EndpointAddress:
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise TypeError(f"not a valid endpoint address (tcp://, tpc://, ipc:// or inproc://): {address!r}")
        return super().__new__(cls, address)


def checked_output(value: Any, where: str) -> dict[str, Any]:
    """``value`` as the dict a handler must return (None is an empty dict).

    Raises:
        TypeError: ``value`` is neither a dict nor None (a list, a string, ...).
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{where} must return a dict or None, not {type(value).__name__}")
    return value


class Task(ABC):
    """Decides what each worker of its type gets: ``handle()`` is called once per task handed
    out, until ``is_complete`` is True (set it in handle(); that call's result is still a task).

    Declare ``task_type`` (a TaskType), ``endpoint`` (an EndpointAddress) and ``dependencies``
    (a list of TaskType: their tasks all acknowledged before this one's are handed out).
    """

    task_type: ClassVar[TaskType]
    endpoint: ClassVar[EndpointAddress]
    dependencies: ClassVar[list[TaskType]] = []
    is_complete: bool = False

    def initialize(self, metadata: dict[str, Any] | None = None) -> None:
        """Called once per run before the first handle(), with the run's metadata ({} if none)."""
        self.metadata = metadata if metadata is not None else {}

    @abstractmethod
    def handle(self, data: dict[str, Any], address: str, msgtype: str) -> dict[str, Any] | None:
        """The next task's data for the worker at ``address`` (None: an empty dict).

        ``data`` is the run's metadata; ``msgtype`` is MESSAGE_TYPE_READY.
        """


class Worker(ABC):
    """Runs the tasks of its ``task_type``; one instance per worker actor, made where it runs.

    ``self.metadata`` holds the run's metadata before ``init_worker()`` is called.
    """

    task_type: ClassVar[TaskType]
    endpoint: ClassVar[EndpointAddress]
    collector_endpoint: ClassVar[EndpointAddress]
    metadata: dict[str, Any] = {}

    def init_worker(self) -> None:  # noqa: B027 (optional, as in the seed)
        """Called once, after the worker received the run's metadata, before its first task."""

    @abstractmethod
    def handle_execution(self, data: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        """Do one task; what it returns goes to the collector (None: an empty dict)."""


class SingleThreadedWorker(Worker):
    """A worker that runs one task at a time."""


class MultiThreadedWorker(Worker):
    """A worker whose ``handle_execution`` passes each task's data on to one of ``n_threads``
    threads, which run ``handle_thread_execution(data, index)``; what that returns goes to
    the collector."""

    n_threads: int = 1

    @abstractmethod
    def handle_thread_execution(self, data: dict[str, Any], index: int) -> dict[str, Any] | None:
        """Run in thread ``index`` (0 .. n_threads - 1)."""


class MetaDataWorker(ABC):
    """Gives the run's metadata: ``get_metadata()`` is called once per run."""

    endpoint: ClassVar[EndpointAddress]

    @abstractmethod
    def get_metadata(self) -> dict[str, Any]:
        """The metadata handed to every task (``initialize``) and every worker (``metadata``)."""


class Collector(ABC):
    """Receives every task's result once; a task is acknowledged after handle_collection returns."""

    endpoint: ClassVar[EndpointAddress]
    ack_endpoint: ClassVar[EndpointAddress]

    @abstractmethod
    def handle_collection(self, data: dict[str, Any], task_type: TaskType, msgtype: str) -> None:
        """One result (``msgtype`` is MESSAGE_TYPE_DATA)."""

    def handle_finished(self, data: dict[str, Any], task_type: TaskType) -> None:  # noqa: B027 (optional)
        """Every task of ``task_type`` was acknowledged (``data`` is {})."""
