"""Sort keys: they live in :mod:`chronopipe.order.keys`; this name stays for code that imports it."""

from ..order.keys import Path, SortKey, fast_key_function, key_function

__all__ = ["Path", "SortKey", "fast_key_function", "key_function"]
