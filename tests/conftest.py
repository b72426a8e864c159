"""Shared fixtures: every test gets a clean runtime, and actor tests run in both hostings."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import psutil
import pytest

import chronopipe as cp
from processes_helper import of_ray


@pytest.fixture(autouse=True)
def clean_runtime():
    """Each test ends with the runtime torn down and, a second later at most, no process the
    test started left alive (psutil): no test leaks actors or pool workers into the next. (An
    actor's Ray worker is given 5 s: Ray ends a killed actor's process in its own time.)"""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    cp.Runtime().shutdown()
    started = time.monotonic()
    while True:
        left = [p for p in psutil.Process().children(recursive=True)
                if p.pid not in before and _alive(p) and not of_ray(p)]
        waited = time.monotonic() - started
        if not left or waited > (5.0 if all(_name(p).startswith("ray::") for p in left) else 1.0):
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


@pytest.fixture(params=["sync", "threads", "processes", "ray"])
def pipeline_mode(request) -> str:
    """Pipeline execution: every behaviour holds in each of the four modes (ray: on a local Ray,
    skipped with the reason when Ray is not installed)."""
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    return request.param


TESTS = Path(__file__).resolve().parent
@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray for the tests of one module (2 CPUs, a small object store), shut down after
    them: Ray's processes and sockets, which a driver holds, are not left to the next module's
    checks of this process's children and sockets."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'chronopipe[ray]')")
    # Ray workers import the tests' node classes by module name, as a user's workers import theirs
    # (docs/ray.md): this folder is on their path as it is on ours.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))
    if not ray.is_initialized():
        ray.init(num_cpus=2, object_store_memory=80 * 1024 * 1024, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.ERROR)  # (its start-up notes are not the output of the test that starts it)
    yield ray
    ray.shutdown()
    deadline = time.monotonic() + 10  # its processes gone before the next module looks at ours
    while any(of_ray(p) and _alive(p) for p in psutil.Process().children(recursive=True)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)



@pytest.fixture
def channel(mode):
    """A channel factory of the kind that fits the hosting under test."""

    def make(maxsize: int = 10_000, **kwargs) -> cp.Channel:
        return cp.Channel(maxsize, mode=mode, **kwargs)

    return make
