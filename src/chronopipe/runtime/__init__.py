"""The runtime: one per process; owns pools, actor threads and actor processes."""

from .pools import PoolTask
from .runtime import Runtime
from .seed import MultiProcessing

__all__ = ["MultiProcessing", "PoolTask", "Runtime"]
