"""Either: Right, Left and Pending compose the same way; Pending settles once, to a Right or a Left."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.pool import ThreadPool

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chronopipe as cp
from chronopipe.either import Either, Left, Pending, Right, attempt, kleisli, settle


def half(n: int) -> Either[int]:
    return Right(n // 2) if n % 2 == 0 else Left(f"{n} is odd")


def negate(n: int) -> Either[int]:
    return Right(-n)


def small(n: int) -> Either[int]:
    return Right(n) if abs(n) < 100 else Left(f"{n} is too big")


ARROWS = [half, negate, small, Right, lambda n: Left(n)]


# -- Right and Left ---------------------------------------------------------------------
def test_right_map_applies_the_function():
    assert Right(2).map(lambda x: x + 1) == Right(3)


def test_left_map_passes_the_error_through():
    error = ValueError("bad")
    assert Left(error).map(lambda x: x + 1) == Left(error)


def test_right_bind_returns_the_functions_either():
    assert Right(4).bind(half) == Right(2)
    assert Right(3).bind(half) == Left("3 is odd")


def test_left_bind_never_calls_the_function():
    called = []
    assert Left("e").bind(lambda x: called.append(x) or Right(x)) == Left("e")
    assert called == []


def test_map_error_changes_only_a_left():
    assert Left("e").map_error(str.upper) == Left("E")
    assert Right("v").map_error(str.upper) == Right("v")


def test_bind_with_a_function_returning_a_plain_value_says_to_use_map():
    with pytest.raises(TypeError, match="use map"):
        Right(1).bind(lambda x: x + 1)


def test_unwrap_gives_a_rights_value():
    assert Right(5).unwrap() == 5


def test_unwrap_raises_a_lefts_exception():
    error = KeyError("k")
    with pytest.raises(KeyError) as info:
        Left(error).unwrap()
    assert info.value is error


def test_unwrap_of_a_left_holding_no_exception_raises_value_error():
    with pytest.raises(ValueError, match="holds an error"):
        Left("not an exception").unwrap()


def test_value_or_gives_the_default_for_a_left():
    assert (Right(1).value_or(0), Left("e").value_or(0)) == (1, 0)


@pytest.mark.parametrize(("either", "flags"), [
    (Right(1), (True, False, False)),
    (Left(1), (False, True, False)),
])
def test_kind_flags(either, flags):
    assert (either.is_right, either.is_left, either.is_pending) == flags


def test_right_and_left_holding_equal_things_are_not_equal():
    assert Right(1) != Left(1)
    assert len({Right(1), Right(1), Left(1)}) == 2


def test_pattern_matching_on_right_and_left():
    def describe(result: Either[int]) -> str:
        match result:
            case Right(value):
                return f"value {value}"
            case Left(error):
                return f"error {error}"
        return "pending"

    assert [describe(Right(1)), describe(Left("x"))] == ["value 1", "error x"]


def test_repr_is_readable():
    assert [repr(Right("a")), repr(Left(ValueError("b")))] == ["Right('a')", "Left(ValueError('b'))"]


# -- composition laws -------------------------------------------------------------------
@settings(deadline=None)
@given(st.integers(-300, 300), st.sampled_from(ARROWS))
def test_left_identity(x, f):
    assert Right(x).bind(f) == f(x)


@settings(deadline=None)
@given(st.one_of(st.integers(-300, 300).map(Right), st.text(max_size=3).map(Left)))
def test_right_identity(m):
    assert m.bind(Right) == m


@settings(deadline=None)
@given(st.integers(-300, 300), st.sampled_from(ARROWS), st.sampled_from(ARROWS), st.sampled_from(ARROWS))
def test_kleisli_composition_is_associative(x, f, g, h):
    assert kleisli(kleisli(f, g), h)(x) == kleisli(f, kleisli(g, h))(x)


def test_kleisli_runs_the_functions_left_to_right():
    assert kleisli(half, negate)(8) == Right(-4)


def test_kleisli_stops_at_the_first_left():
    calls = []
    assert kleisli(half, lambda n: calls.append(n) or Right(n))(3) == Left("3 is odd")
    assert calls == []


def test_kleisli_of_nothing_is_right():
    assert kleisli()(7) == Right(7)


def test_kleisli_refuses_what_is_not_callable():
    with pytest.raises(TypeError, match="composes functions"):
        kleisli(half, 3)


def test_attempt_turns_an_exception_into_a_left():
    result = attempt(int)("x")
    assert isinstance(result.error, ValueError)
    assert attempt(int)("3") == Right(3)


def test_attempt_keeps_the_functions_name_readable():
    assert attempt(int).__name__ == "attempt(int)"


# -- Pending ----------------------------------------------------------------------------
@pytest.fixture
def executor():
    with ThreadPoolExecutor(2) as pool:
        yield pool


def blocked_future(executor, gate: threading.Event, value=42):
    return executor.submit(lambda: gate.wait(10) and value)


def test_pending_from_a_future_settles_to_right(executor):
    assert Pending(executor.submit(lambda: 42)).wait(10) == Right(42)


def test_pending_from_a_future_that_raises_settles_to_left(executor):
    result = Pending(executor.submit(int, "x")).wait(10)
    assert result.is_left and isinstance(result.error, ValueError)


def test_pending_from_a_cancelled_future_settles_to_left():
    future: Future[int] = Future()
    future.cancel()
    assert Pending(future).wait(1).is_left


def test_pending_from_a_multiprocessing_async_result_settles():
    with ThreadPool(1) as pool:
        assert Pending(pool.apply_async(pow, (2, 5))).wait(10) == Right(32)


def test_pending_from_a_runtime_pool_task_settles_with_the_actor_error():
    result = Pending(cp.Runtime().submit(int, "x", mode="thread")).wait(10)
    assert isinstance(result.error, cp.ActorError)
    assert result.error.exc_type == "ValueError"


def test_wait_raises_timeout_error_while_the_task_runs(executor):
    gate = threading.Event()
    pending = Pending(blocked_future(executor, gate))
    with pytest.raises(TimeoutError, match="still pending"):
        pending.wait(0.05)
    gate.set()
    assert pending.wait(10) == Right(42)


def test_poll_returns_the_pending_itself_until_it_settles(executor):
    gate = threading.Event()
    pending = Pending(blocked_future(executor, gate))
    assert pending.poll() is pending and not pending.ready()
    gate.set()
    pending.wait(10)
    assert pending.poll() == Right(42) and pending.ready()


def test_value_or_of_an_unsettled_pending_is_the_default(executor):
    gate = threading.Event()
    pending = Pending(blocked_future(executor, gate))
    assert pending.value_or("default") == "default"
    gate.set()
    pending.wait(10)
    assert pending.value_or("default") == 42


def test_map_on_a_pending_is_lazy_and_applied_once(executor):
    gate, calls = threading.Event(), []
    mapped = Pending(blocked_future(executor, gate)).map(lambda v: calls.append(v) or v + 1)
    assert mapped.is_pending and calls == []
    gate.set()
    assert [mapped.wait(10), mapped.wait(10), mapped.unwrap()] == [Right(43), Right(43), 43]
    assert calls == [42]


def test_map_on_a_pending_is_applied_once_when_waited_from_many_threads(executor):
    gate, calls = threading.Event(), []
    mapped = Pending(blocked_future(executor, gate)).map(lambda v: calls.append(v) or time.sleep(0.01) or v)
    results = []
    waiters = [threading.Thread(target=lambda: results.append(mapped.wait(10))) for _ in range(4)]
    for t in waiters:
        t.start()
    gate.set()
    for t in waiters:
        t.join(10)
    assert results == [Right(42)] * 4 and calls == [42]


def test_bind_on_a_pending_may_return_another_pending(executor):
    chained = Pending(executor.submit(lambda: 20)).bind(lambda v: Pending(executor.submit(lambda: v + 1)))
    assert chained.wait(10) == Right(21)


def test_kleisli_through_a_pending_is_pending_then_settles(executor):
    pipeline = kleisli(lambda v: Pending(executor.submit(lambda: v * 2)), half, negate)
    result = pipeline(5)
    assert result.is_pending
    assert result.wait(10) == Right(-5)


def test_map_error_on_a_pending_changes_its_left(executor):
    result = Pending(executor.submit(int, "x")).map_error(lambda e: type(e).__name__)
    assert result.wait(10) == Left("ValueError")


def test_pending_needs_something_task_like():
    with pytest.raises(TypeError, match="ready\\(\\)/get\\(\\) or done\\(\\)/result\\(\\)"):
        Pending(42)


def test_pending_repr_shows_its_label_and_what_it_settled_to(executor):
    pending = Pending(executor.submit(lambda: 1), "job")
    pending.wait(10)
    assert repr(pending) == "Pending(job -> Right(1))"


def test_settle_waits_for_every_result_within_one_timeout(executor):
    results = [Right(1), Pending(executor.submit(lambda: 2)), Left("x")]
    assert settle(results, timeout=10) == [Right(1), Right(2), Left("x")]


def test_settle_raises_timeout_error_when_one_is_still_running(executor):
    gate = threading.Event()
    try:
        with pytest.raises(TimeoutError):
            settle([Pending(blocked_future(executor, gate))], timeout=0.05)
    finally:
        gate.set()
