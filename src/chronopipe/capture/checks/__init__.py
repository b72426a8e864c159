"""The checks of a validation run (see base.py for what a check is)."""

from .base import Check, CheckResult, Finding, Status
from .basic import AllowList, Malformed, OutOfOrder, RequestResponse, Sliced, UdpSequence
from .clock import ClockOffset
from .dups import Duplicates
from .tcp import TcpAnalysis

__all__ = [
    "AllowList",
    "Check",
    "CheckResult",
    "ClockOffset",
    "Duplicates",
    "Finding",
    "Malformed",
    "OutOfOrder",
    "RequestResponse",
    "Sliced",
    "Status",
    "TcpAnalysis",
    "UdpSequence",
]
