"""Shared fixtures: every test gets a clean runtime, and actor tests run in both hostings."""

from __future__ import annotations

import pytest

import chronopipe as cp


@pytest.fixture(autouse=True)
def clean_runtime():
    """Each test ends with the runtime torn down, so no test leaks actors into the next."""
    yield
    cp.Runtime().shutdown()


@pytest.fixture(params=["thread", "process"])
def mode(request) -> str:
    """Actor hosting: the same behaviour must hold on a thread and in a process."""
    return request.param


@pytest.fixture
def channel(mode):
    """A channel factory of the kind that fits the hosting under test."""

    def make(maxsize: int = 10_000, **kwargs) -> cp.Channel:
        return cp.Channel(maxsize, kind=mode, **kwargs)

    return make
