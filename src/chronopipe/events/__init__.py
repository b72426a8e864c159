"""Events: conditions on records, and indexed dispatch of records to the callbacks that want them."""

from .condition import Condition, ConditionError, all_of, any_of, not_
from .index import ConditionIndex, IndexEntry
from .manager import EventManager, EventStatistics, Subscription
from .matchers import Matcher, between, eq, exists, ge, gt, le, lt, regex, satisfies

__all__ = [
    "Condition",
    "ConditionError",
    "ConditionIndex",
    "EventManager",
    "EventStatistics",
    "IndexEntry",
    "Matcher",
    "Subscription",
    "all_of",
    "any_of",
    "between",
    "eq",
    "exists",
    "ge",
    "gt",
    "le",
    "lt",
    "not_",
    "regex",
    "satisfies",
]
