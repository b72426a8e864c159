"""The sorted merge window: it lives in :mod:`chronopipe.order.window`; this name stays for code
that imports it."""

from ..order.window import ENDED, IDLE, LIVE, MergeWindow, merge_sorted

__all__ = ["ENDED", "IDLE", "LIVE", "MergeWindow", "merge_sorted"]
