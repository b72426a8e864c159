"""Checks on the other cores: a validation run's checks split across processes.

Alone, a validation run's main process merges the taps, decodes every packet and runs every
check, on one core; the reader processes use little of the others. So the checks that may
run elsewhere (``Check.portable``: the built-in ones; a rules file's Python callbacks stay
here) are split by :func:`partition` into groups of about equal cost, one stays in the main
process and each other group gets a :class:`CheckHost`: an actor in its own process that
receives the merged packets (flat tuples, the cheapest records to send: see
:func:`~chronopipe.channels.pipe.dumps_batch`), decodes them as the main process does and
dispatches them to its checks on an EventManager of its own. Every check sees every packet, in
merge order, in whichever process it runs, so the report is the same as in one process
(tests/test_validate.py compares them). The checks' state comes home the one way a process
actor's does (:mod:`chronopipe.actors.home`): the host tracks its checks when its process
starts, its result is what each changed (a patch per check), and its ``on_result`` (the Actor
hook for that, in the caller's process) applies them to the caller's check objects, so once
``join()`` returns the caller's own checks are up to date.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..actors.actor import Actor
from ..actors.home import Patch, Token, apply, changes, track
from ..channels import Channel
from ..events import EventManager
from .checks.base import Check

__all__ = ["MERGE_COST", "CheckHost", "partition"]

#: What the main process spends per packet besides its checks (receiving, merging, sending
#: to each host), in the units of ``Check.cost``: microseconds per packet on the benchmark's taps
MERGE_COST = 0.6
SEND_COST = 0.15


def partition(checks: Sequence[Check], hosts: int) -> list[list[Check]]:
    """``checks`` in ``hosts + 1`` groups, the first for the main process: there, every check
    that is not portable; the portable ones to the group with the least cost so far, the
    costliest first. Each group keeps the order the checks were given in.

    >>> class C(Check):
    ...     portable = True
    ...     def __init__(self, name, cost): super().__init__(); self.name, self.cost = name, cost
    >>> checks = [C("a", 0.1), C("b", 1.2), C("c", 1.3), C("d", 1.5)]
    >>> [[c.name for c in group] for group in partition(checks, 1)]
    [['a', 'c'], ['b', 'd']]
    >>> [[c.name for c in group] for group in partition(checks, 0)]
    [['a', 'b', 'c', 'd']]
    """
    if hosts < 0:
        raise ValueError(f"check hosts are 0 or more, not {hosts}")
    order = {id(check): i for i, check in enumerate(checks)}
    groups: list[list[Check]] = [[] for _ in range(hosts + 1)]
    loads = [MERGE_COST + SEND_COST * hosts] + [0.0] * hosts
    for check in checks:
        if not check.portable or not hosts:
            groups[0].append(check)
            loads[0] += check.cost
    for check in sorted((c for c in checks if c.portable and hosts), key=lambda c: -c.cost):
        lightest = loads.index(min(loads))
        groups[lightest].append(check)
        loads[lightest] += check.cost
    return [sorted(group, key=lambda c: order[id(c)]) for group in groups]


class CheckHost(Actor):
    """An actor, in its own process, running ``checks`` over the packets put on its ``inbox``.

    ``decoder`` turns a packet tuple into the record the checks see (the run's decode, with the
    SCL fields when asked for). The inbox is a bounded process channel: a host that falls
    behind slows the merge down, it does not fill the memory. Once ``join()`` returns, the
    checks given (the caller's objects) hold the state they reached in the host (its result is
    the patches applied, see ``on_stop``); a check that raises fails the host, and the run with
    it. A value a check keeps that cannot be pickled does not come back (a warning names it).
    """

    def __init__(self, name: str, checks: Sequence[Check], decoder: Callable[[tuple[Any, ...]], Any], *,
                 maxsize: int = 20_000) -> None:
        super().__init__(name, inbox=Channel(maxsize, mode="process", name=f"{name}.in"), mode="process")
        self.checks = list(checks)
        self._decoder = decoder
        self._home = os.getpid()  # the process of the caller's checks
        self._tokens: list[Token] | None = None

    def on_start(self) -> None:
        """In the host's process: track the checks (copies of the caller's), before they run."""
        if os.getpid() != self._home:  # hosted in the caller's process, they are the caller's own
            self._tokens = [track(check, f"check {check.name!r}") for check in self.checks]

    def run(self) -> None:
        events = EventManager(name=self.name, on_error="raise")
        for check in self.checks:
            check.attach(events)
        events.dispatch(self._records())

    def _records(self) -> Iterator[Any]:
        assert self.inbox is not None
        for batch in self._inbox_batches(self.inbox):
            yield from map(self._decoder, batch)
            self.counts.received += len(batch)

    def on_stop(self) -> list[Patch] | None:
        """In the host's process: what each check changed since on_start, in the checks' order
        (None when the host ran in the caller's process: nothing to bring home)."""
        if self._tokens is None:
            return None
        return [changes(token, check) for token, check in zip(self._tokens, self.checks, strict=True)]

    def on_result(self, result: list[Patch] | None) -> None:
        """In the caller's process: apply the patches on_stop made to the caller's checks."""
        if result is not None:
            for check, patch in zip(self.checks, result, strict=True):
                apply(check, patch)
