"""What a pipeline (or one node) promises about a record whose ``process()`` raises.

Two guarantees exist so far (issue 17 names two more, ``confirm`` and ``track``, for later):

* ``"none"``: today's behaviour and cost. The first exception fails the run, which raises an
  ActorError naming the node; nothing is retried and nothing is written anywhere.
* ``"replay"``: the record is given to ``process()`` again, up to ``max_retries`` more times
  (immediately, no sleep); if every attempt raised, it becomes a dead letter (letters.py) and
  the run goes on with the next record.

A node's own ``guarantee`` / ``max_retries`` (class attributes or keyword arguments, like
``workers``) override the pipeline's; ``None`` means "the pipeline's".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_MAX_RETRIES", "GUARANTEES", "Policy", "policy_of"]

#: The guarantees a pipeline or a node may ask for.
GUARANTEES = ("none", "replay")
#: What issue 17 plans beyond them: refused with a message saying so.
_LATER = ("confirm", "track")
#: Attempts after the first one, for a record under ``"replay"``, unless told otherwise.
DEFAULT_MAX_RETRIES = 3


@dataclass(frozen=True)
class Policy:
    """A checked guarantee and retry count.

    ``attempts`` is how many times ``process()`` sees a record at most: 1 + ``max_retries``
    under ``"replay"``, 1 under ``"none"``.

    >>> Policy("replay", 2).attempts, Policy().attempts, Policy().replays
    (3, 1, False)
    >>> Policy("track")
    Traceback (most recent call last):
    ...
    ValueError: guarantee 'track' is not available yet (issue 17 plans it); use 'none' or 'replay'

    Raises:
        ValueError: an unknown guarantee, or ``max_retries`` that is not an int >= 0.
    """

    guarantee: str = "none"
    max_retries: int = DEFAULT_MAX_RETRIES

    def __post_init__(self) -> None:
        check_guarantee(self.guarantee)
        check_max_retries(self.max_retries)

    @property
    def replays(self) -> bool:
        """True under ``"replay"``: the record is retried, then dead-lettered."""
        return self.guarantee == "replay"

    @property
    def attempts(self) -> int:
        return 1 + self.max_retries if self.replays else 1


def check_guarantee(guarantee: Any, where: str = "") -> str:
    """``guarantee`` if it is one of GUARANTEES.

    Raises:
        ValueError: naming ``where`` (e.g. ``"node 'parse': "``) and the guarantees there are.
    """
    if guarantee in GUARANTEES:
        return str(guarantee)
    if guarantee in _LATER:
        raise ValueError(f"{where}guarantee {guarantee!r} is not available yet (issue 17 plans it); "
                         "use 'none' or 'replay'")
    raise ValueError(f"{where}guarantee must be one of {GUARANTEES}, not {guarantee!r}")


def check_max_retries(max_retries: Any, where: str = "") -> int:
    """``max_retries`` if it is an int >= 0.

    Raises:
        ValueError: naming ``where`` and the value.
    """
    if isinstance(max_retries, int) and not isinstance(max_retries, bool) and max_retries >= 0:
        return max_retries
    raise ValueError(f"{where}max_retries must be an int >= 0, not {max_retries!r}")


def policy_of(name: str, guarantee: Any, max_retries: Any, default: Policy) -> Policy:
    """The policy of node ``name``: its own ``guarantee`` and ``max_retries`` where set (not
    None), the pipeline's ``default`` for the rest.

    >>> policy_of("parse", None, 5, Policy("replay")).max_retries
    5
    >>> policy_of("parse", "none", None, Policy("replay")).replays
    False
    >>> policy_of("parse", "often", None, Policy())
    Traceback (most recent call last):
    ...
    ValueError: node 'parse': guarantee must be one of ('none', 'replay'), not 'often'

    Raises:
        ValueError: a guarantee or a max_retries that is not valid, naming the node.
    """
    where = f"node {name!r}: "
    g = default.guarantee if guarantee is None else check_guarantee(guarantee, where)
    n = default.max_retries if max_retries is None else check_max_retries(max_retries, where)
    return Policy(g, n)
