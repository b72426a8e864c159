"""guarantee "replay" for actor chains on the Runtime, without a Pipeline: replaying(handler)."""

from __future__ import annotations

import pytest

import chronopipe as cp
from chronopipe.delivery import read_dead_letters, replaying

pytestmark = pytest.mark.timeout(60)


class Flaky:
    """Fails the first attempt at every record divisible by 100, and always at 'x'."""

    def __init__(self) -> None:
        self.failed: set[int] = set()

    def __call__(self, item: object) -> int:
        if item == "x":
            raise ValueError("not a number: 'x'")
        assert isinstance(item, int)
        if item % 100 == 0 and item not in self.failed:
            self.failed.add(item)
            raise RuntimeError(f"flaky at {item}")
        return item * 2


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_a_replaying_actor_retries_emits_once_and_dead_letters_what_always_fails(mode, tmp_path):
    handle = replaying(Flaky(), "double", max_retries=2, dead_letter=tmp_path / "dl.jsonl")
    inbox, out = cp.Channel(mode=mode), cp.Channel(mode=mode)
    actor = cp.Actor("double", handle, inbox=inbox, outputs=out, mode=mode).start()
    inbox.put_many([*range(1000), "x", 1000])
    inbox.close()
    assert list(out) == [i * 2 for i in range(1001)]  # each once, in order; nothing for "x"
    actor.join(10)
    assert actor.state == "finished"
    assert (handle.tally.retried, handle.tally.dead_lettered) == (11 + 2, 1)
    [letter] = read_dead_letters(tmp_path / "dl.jsonl")
    assert (letter.node, letter.attempts, letter.record, letter.error_type) == ("double", 3, "x", "ValueError")
    assert "not a number" in letter.traceback


def test_a_chain_of_replaying_actors_counts_every_record(tmp_path):
    letters: list = []
    first = replaying(Flaky(), "first", max_retries=0, dead_letter=letters.append)
    second = replaying(lambda v: v + 1, "second", dead_letter=letters.append)
    a, b, c = (cp.Channel(mode="thread") for _ in range(3))
    cp.Actor("first", first, inbox=a, outputs=b).start()
    cp.Actor("second", second, inbox=b, outputs=c).start()
    a.put_many(range(500))
    a.close()
    got = list(c)
    assert len(got) + first.tally.dead_lettered == 500  # out = in - dead-lettered
    assert sorted(letter.record for letter in letters) == [0, 100, 200, 300, 400]


def test_system_exit_is_not_retried():
    calls = []

    def leave(item):
        calls.append(item)
        raise SystemExit(3)

    with pytest.raises(SystemExit):
        replaying(leave, "leave", max_retries=5, dead_letter=[].append)(1)
    assert calls == [1]


@pytest.mark.parametrize(("args", "error"), [
    ((42, "a"), TypeError), ((int, ""), ValueError), ((int, "a", -1), ValueError),
])
def test_bad_arguments_are_refused(args, error):
    handler, name, *rest = args
    with pytest.raises(error):
        replaying(handler, name, max_retries=rest[0] if rest else 3, dead_letter=[].append)
