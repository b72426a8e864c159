"""Shared fixtures: every test gets a clean runtime, and actor tests run in both hostings."""

from __future__ import annotations

import time

import psutil
import pytest

import chronopipe as cp


@pytest.fixture(autouse=True)
def clean_runtime():
    """Each test ends with the runtime torn down and, a second later at most, no process the
    test started left alive (psutil): no test leaks actors or pool workers into the next."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    cp.Runtime().shutdown()
    deadline = time.monotonic() + 1.0
    while True:
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and _alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert not left, f"processes left after teardown: {[(p.pid, _name(p)) for p in left]}"


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _name(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline()[:4])
    except psutil.Error:
        return "?"


@pytest.fixture(params=["thread", "process"])
def mode(request) -> str:
    """Actor hosting: the same behaviour must hold on a thread and in a process."""
    return request.param


@pytest.fixture(params=["sync", "threads", "processes"])
def pipeline_mode(request) -> str:
    """Pipeline execution: every behaviour holds in each of the three modes."""
    return request.param


@pytest.fixture
def channel(mode):
    """A channel factory of the kind that fits the hosting under test."""

    def make(maxsize: int = 10_000, **kwargs) -> cp.Channel:
        return cp.Channel(maxsize, mode=mode, **kwargs)

    return make
