"""Sources feeding pipelines: a node that fails is noticed while the source is quiet or slow."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from chronopipe import ActorError
from chronopipe.graph import Node, Pipeline
from chronopipe.sources import TCPServerSource


class FailsOn(Node):
    def process(self, item):
        if item in ("boom", 3):
            raise ValueError(f"boom on {item!r}")


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_node_failing_stops_a_run_fed_by_a_quiet_source(mode):
    source = TCPServerSource()
    peer = socket.create_connection(("127.0.0.1", source.port))
    peer.sendall(b"a\nb\nboom\n")  # then nothing more: the source waits for data
    started = time.monotonic()
    try:
        with pytest.raises(ActorError, match="boom on 'boom'"):
            Pipeline(FailsOn("fails"), mode=mode).consume(source)
        assert time.monotonic() - started < 3.0
        assert source.state == "new" and source.stopping  # iterated here, and stopped by the run
    finally:
        peer.close()


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_node_failing_stops_a_run_fed_by_a_slow_generator(mode):
    def slow():
        for i in range(10_000):
            time.sleep(0.02)
            yield i

    started = time.monotonic()
    with pytest.raises(ActorError, match="boom on 3"):
        Pipeline(FailsOn("fails"), mode=mode).consume(slow())
    assert time.monotonic() - started < 3.0  # not after the 1,000 records of a whole batch (20 s)


SENDER = """
import socket, sys, time
with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as peer:
    for _ in range(20):
        peer.sendall(b"line\\n" * 5000)
        time.sleep(0.01)
"""


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_a_live_source_feeds_a_pipeline_to_its_end(mode, tmp_path):
    # (the sender is another process: a socket of this one would be inherited by the node processes
    # forked meanwhile, and its close would not end the connection)
    class Count(Node):
        def begin(self):
            self.n = 0

        def process(self, item):
            self.n += 1

        def end(self):
            with open(tmp_path / "count", "w") as f:
                f.write(str(self.n))

    source = TCPServerSource(connections=1)
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(source.port)])
    try:
        Pipeline(Count("count"), mode=mode).consume(source)
    finally:
        sender.wait(30)
    assert (tmp_path / "count").read_text() == "100000" and source.statistics().records == 100_000
