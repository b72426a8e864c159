"""What a pipeline (or one node) promises about a record whose ``process()`` raises.

* ``"none"``: the first exception fails the run, which raises an ActorError naming the node;
  nothing is retried and nothing is written anywhere.
* ``"confirm"`` and ``"track"`` (seed 002's "confirmation-only" and "tracking-only"): a record
  whose ``process()`` raises is not retried and does not stop the run: ``"confirm"`` counts it
  (the run says whether every record was handled), ``"track"`` also keeps the last failures
  (record, node, error, traceback). And records are acknowledged a batch at a time (acks.py):
  the source learns how many of its records every terminal node is done with. Any node asking
  for acknowledgements turns them on for the whole pipeline.
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
GUARANTEES = ("none", "confirm", "track", "replay")
#: Attempts after the first one, for a record under ``"replay"``, unless told otherwise.
DEFAULT_MAX_RETRIES = 3


@dataclass(frozen=True)
class Policy:
    """A checked guarantee and retry count.

    ``attempts`` is how many times ``process()`` sees a record at most: 1 + ``max_retries``
    under ``"replay"``, 1 under ``"none"``.

    >>> Policy("replay", 2).attempts, Policy().attempts, Policy().replays, Policy("track").acks
    (3, 1, False, True)
    >>> Policy("track", 5).attempts, Policy("track").catches, Policy().catches
    (1, True, False)

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
    def catches(self) -> bool:
        """True unless ``"none"``: a record whose ``process()`` raises does not stop the run."""
        return self.guarantee != "none"

    @property
    def acks(self) -> bool:
        """True under ``"confirm"`` and ``"track"``: records are acknowledged a batch at a time."""
        return self.guarantee in ("confirm", "track")

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
    ValueError: node 'parse': guarantee must be one of ('none', 'confirm', 'track', 'replay'), not 'often'

    Raises:
        ValueError: a guarantee or a max_retries that is not valid, naming the node.
    """
    where = f"node {name!r}: "
    g = default.guarantee if guarantee is None else check_guarantee(guarantee, where)
    n = default.max_retries if max_retries is None else check_max_retries(max_retries, where)
    return Policy(g, n)
