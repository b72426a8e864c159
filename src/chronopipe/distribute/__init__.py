"""The seed's distributor / worker / collector pattern (py-zmq-pipeline) on chronopipe's own
runtime: registered tasks handed out in dependency order to load-balanced workers (threads,
processes or Ray actors), results acknowledged by a collector, an acknowledged task never run
again (a ledger), a killed worker or collector started again and what it may have lost handed
out again.
See docs/distribute.md.
"""

from .distributor import Distributor
from .ledger import Ledger
from .run import DistributeReport
from .types import (
    MESSAGE_TYPE_ACK,
    MESSAGE_TYPE_DATA,
    MESSAGE_TYPE_EMPTY,
    MESSAGE_TYPE_END,
    MESSAGE_TYPE_FAILURE,
    MESSAGE_TYPE_META_DATA,
    MESSAGE_TYPE_READY,
    MESSAGE_TYPE_SUCCESS,
    Collector,
    EndpointAddress,
    MetaDataWorker,
    MultiThreadedWorker,
    SingleThreadedWorker,
    Task,
    TaskType,
    Worker,
)

__all__ = [
    "MESSAGE_TYPE_ACK", "MESSAGE_TYPE_DATA", "MESSAGE_TYPE_EMPTY", "MESSAGE_TYPE_END", "MESSAGE_TYPE_FAILURE",
    "MESSAGE_TYPE_META_DATA", "MESSAGE_TYPE_READY", "MESSAGE_TYPE_SUCCESS", "Collector", "DistributeReport",
    "Distributor", "EndpointAddress", "Ledger", "MetaDataWorker", "MultiThreadedWorker", "SingleThreadedWorker",
    "Task", "TaskType", "Worker",
]
