"""Socket and stdin sources against peers the tests start on 127.0.0.1: framing, backpressure,
reconnects with gap markers, shutdown that closes every socket."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest

from chronopipe import ActorError
from chronopipe.channels import END
from chronopipe.sources import Marker, SourceError, StdinSource, TCPClientSource, TCPServerSource, UDPSource
from chronopipe.sources.backoff import Backoff
from sources_helper import drain, free_port, take


def sockets_of(pid: int) -> list:
    return [c for c in psutil.Process(pid).net_connections(kind="inet")]


def no_socket_left(pid: int | None = None, before: int = 0) -> None:
    pid = pid or os.getpid()
    deadline = time.monotonic() + 2.0
    while len(sockets_of(pid)) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sockets_of(pid)) <= before, sockets_of(pid)


def send(port: int, *chunks: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port)) as peer:
        for chunk in chunks:
            peer.sendall(chunk)


# -- TCP server --------------------------------------------------------------------------------
def test_lines_split_across_reads_arrive_whole(mode):
    server = TCPServerSource(connections=1, mode=mode).start()
    send(server.port, b"alpha\nbe", b"ta\r\ngam", b"ma\n", b"tail without newline")
    assert drain(server.queue) == ["alpha", "beta", "gamma", "tail without newline"]
    stats = server.join()
    assert (stats.records, stats.bytes, stats.detail["accepted"]) == (4, 38, 1)


def test_length_prefixed_frames_arrive_whole():
    frames = [b"", b"x", os.urandom(70_000), b"last"]
    wire = b"".join(len(f).to_bytes(4, "big") + f for f in frames)
    server = TCPServerSource(framing="length", connections=1).start()
    send(server.port, *(wire[i:i + 999] for i in range(0, len(wire), 999)))
    assert drain(server.queue) == frames


def test_each_connection_is_framed_on_its_own():
    server = TCPServerSource(connections=2).start()
    with socket.create_connection(("127.0.0.1", server.port)) as a, \
            socket.create_connection(("127.0.0.1", server.port)) as b:
        a.sendall(b"a1\na")
        b.sendall(b"b1\nb")
        time.sleep(0.1)
        a.sendall(b"2\n")
        b.sendall(b"2\n")
    assert sorted(drain(server.queue)) == ["a1", "a2", "b1", "b2"]


def test_a_line_over_the_limit_drops_that_connection_and_the_server_goes_on():
    server = TCPServerSource(connections=2, max_record=1000).start()
    send(server.port, b"ok\n" + b"x" * 5000)
    send(server.port, b"after\n")
    assert drain(server.queue) == ["ok", "after"]
    stats = server.join()
    assert stats.detail["dropped"] == 1 and stats.errors == 1 and "longer than 1,000 bytes" in stats.last_error


def test_a_port_in_use_is_one_line_naming_the_source():
    first = TCPServerSource()
    try:
        with pytest.raises(SourceError, match=rf"source 'tcp:{first.port}': cannot bind 127.0.0.1:{first.port}: "):
            TCPServerSource(port=first.port, name=f"tcp:{first.port}")
    finally:
        first.close()


def test_a_bad_framing_fails_at_construction():
    with pytest.raises(ValueError, match="framing must be 'lines' or 'length'"):
        TCPServerSource(framing="json")


def test_stop_closes_the_listener_and_every_connection(mode):
    server = TCPServerSource(mode=mode).start()
    peer = socket.create_connection(("127.0.0.1", server.port))
    peer.sendall(b"one\n")
    assert take(server.queue, 1) == ["one"]
    started = time.monotonic()
    server.stop()
    server.join(5)
    assert time.monotonic() - started < 1.0
    peer.settimeout(2)
    assert peer.recv(10) == b""  # the server side is closed
    peer.close()
    no_socket_left()
    with socket.socket() as again:  # the port is free
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", server.port))


def test_backpressure_reaches_the_sender_and_nothing_is_lost():
    # The consumer reads nothing for a while: the sender must be held back by the TCP window,
    # not buffered in the process; then every line arrives.
    rss_before = psutil.Process().memory_info().rss
    server = TCPServerSource(connections=1, maxsize=1000).start()
    sent = [0]
    line = b"y" * 99 + b"\n"
    block = line * 1000

    def flood():
        with socket.create_connection(("127.0.0.1", server.port)) as peer, contextlib.suppress(OSError):
            for _ in range(2000):  # 200 MB if nothing held it back (an OSError: the test failed, the source is gone)
                peer.sendall(block)
                sent[0] += len(block)

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    time.sleep(1.5)
    held = sent[0]
    assert held < 30_000_000, f"the sender got {held:,} bytes through with nobody reading"
    grown = psutil.Process().memory_info().rss - rss_before
    assert grown < 50_000_000, f"this process grew by {grown / 1e6:.1f} MB with nobody reading"
    count = 0
    while True:
        batch = server.queue.get_batch(10)
        if batch[-1] is END:
            count += len(batch) - 1
            break
        count += len(batch)
    sender.join(10)
    assert count == 2_000_000 == server.join().records


# -- TCP client --------------------------------------------------------------------------------
class LineServer:
    """A TCP server that sends numbered lines to each connection, from where the client asks
    (a first line "from N"), and can be killed and restarted on the same port."""

    def __init__(self, total: int, port: int = 0) -> None:
        self.total, self.port, self.proc = total, port, None

    def start(self) -> LineServer:
        code = (
            "import socket, sys, time\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print(s.getsockname()[1], flush=True)\n"
            "while True:\n"
            "    c, _ = s.accept(); f = c.makefile('rb')\n"
            "    try:\n"  # a stray peer of another test (its port reused) is not the client
            "        start = int(f.readline().split()[1])\n"
            "        for i in range(start, int(sys.argv[2])):\n"
            "            c.sendall(b'%d\\n' % i); time.sleep(0.0005)\n"
            "    except (IndexError, ValueError, OSError):\n"
            "        pass\n"
            "    c.close()\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(self.port), str(self.total)],
                                     stdout=subprocess.PIPE)
        self.port = int(self.proc.stdout.readline())
        return self

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()


def test_a_client_reconnects_with_a_gap_marked_and_nothing_duplicated():
    server = LineServer(3000).start()
    seen: list[int] = []

    def resubscribe(sock):  # the hook's purpose: ask for what comes after what arrived
        sock.sendall(b"from %d\n" % (client.records - client.markers))  # (in the source's thread)

    client = TCPClientSource("127.0.0.1", server.port, on_connect=resubscribe,
                             backoff=Backoff(initial=0.05, maximum=0.2, seed=1))
    records, killed = [], False
    try:
        client.start()
        while len(seen) < 3000:
            record = client.queue.get(10)
            records.append(record)
            if isinstance(record, str):
                seen.append(int(record))
            if len(seen) == 500 and not killed:
                killed = True
                server.kill()
                time.sleep(0.3)
                server = LineServer(3000, server.port).start()
    finally:
        client.stop()
        client.join(5)
        server.kill()
    markers = [r for r in records if isinstance(r, Marker)]
    assert [m.kind for m in markers] == ["gap_start", "gap_end"]
    gap_start, gap_end = (records.index(m) for m in markers)
    assert gap_start < gap_end and markers[1].detail["gap"] > 0.2
    assert seen == list(range(3000)), "a line lost or duplicated across the reconnect"
    assert client.statistics().detail["reconnects"] == 1
    no_socket_left()


def test_a_client_fails_after_max_attempts_naming_the_address():
    port = free_port()  # nobody listens there
    client = TCPClientSource("127.0.0.1", port, max_attempts=3, backoff=Backoff(initial=0.01, maximum=0.02)).start()
    with pytest.raises(ActorError, match=rf"cannot connect to 127.0.0.1:{port} after 3 attempts"):
        client.join(10)
    assert client.statistics().errors == 3


def test_a_client_without_reconnect_ends_when_the_server_closes():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = TCPClientSource("127.0.0.1", listener.getsockname()[1], reconnect=False).start()
        peer, _ = listener.accept()
        peer.sendall(b"1\n2\n3")
        peer.close()
        assert drain(client.queue) == ["1", "2", "3"]


# -- UDP ---------------------------------------------------------------------------------------
def test_udp_gives_a_record_per_datagram(mode):
    receiver = UDPSource(mode=mode).start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        for i in range(50):
            peer.sendto(b"datagram %d" % i, ("127.0.0.1", receiver.port))
    got = take(receiver.queue, 50)
    receiver.stop()
    assert got == [f"datagram {i}" for i in range(50)]
    assert receiver.join(5).detail["datagrams"] == 50


def test_udp_lines_framing_splits_a_datagram():
    receiver = UDPSource(framing="lines").start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"a\nb\nc", ("127.0.0.1", receiver.port))
    assert take(receiver.queue, 3) == ["a", "b", "c"]
    receiver.stop()
    receiver.join(5)
    no_socket_left()


# -- stdin -------------------------------------------------------------------------------------
def test_stdin_lines_of_a_child_process():
    code = ("from chronopipe.sources import StdinSource\n"
            "print(sum(1 for _ in StdinSource()), flush=True)\n")
    out = subprocess.run([sys.executable, "-c", code], input=b"x\n" * 100_000 + b"last", capture_output=True,
                         timeout=60, check=True)
    assert out.stdout == b"100001\n"


def test_stdin_hosted_in_a_process_reads_the_parents_pipe():
    r, w = os.pipe()
    os.write(w, b"one\ntwo\n")
    os.close(w)  # before the fork: a child holding the write end would never see the end
    with os.fdopen(r, "rb") as stream:
        source = StdinSource(stream, mode="process").start()
        assert drain(source.queue) == ["one", "two"]
        assert source.join(5).records == 2


def test_stdin_stop_while_nothing_comes():
    r, w = os.pipe()
    with os.fdopen(r, "rb") as stream:
        source = StdinSource(stream).start()
        time.sleep(0.2)
        started = time.monotonic()
        source.stop()
        source.join(5)
        assert time.monotonic() - started < 0.5
    os.close(w)


FLOODED = """
import sys, time
from chronopipe.channels import END
from chronopipe.sources import TCPServerSource
source = TCPServerSource(connections=1, mode=sys.argv[1]).start()
print(source.port, flush=True)
n = 0
while True:
    batch = source.queue.get_batch(30)
    time.sleep(len(batch) * 1e-6)  # a consumer of 1M lines/s: far slower than the sender
    if batch[-1] is END:
        n += len(batch) - 1
        break
    n += len(batch)
source.join(10)
print(n, flush=True)
"""


@pytest.mark.timeout(180)
def test_a_gigabyte_flood_into_a_slow_consumer_stays_under_100_mb(tmp_path):
    block = tmp_path / "block.txt"
    block.write_bytes((b"z" * 99 + b"\n") * 100_000)  # 100,000 lines, 10 MB
    child = subprocess.Popen([sys.executable, "-c", FLOODED, "process"], stdout=subprocess.PIPE)
    try:
        port = int(child.stdout.readline())
        tree = psutil.Process(child.pid)

        def flood():
            with socket.create_connection(("127.0.0.1", port)) as peer, open(block, "rb") as f:
                for _ in range(100):  # 1 GB
                    f.seek(0)
                    peer.sendfile(f)

        sender = threading.Thread(target=flood, daemon=True)
        sender.start()
        peak = 0
        while child.poll() is None:
            try:
                peak = max(peak, sum(p.memory_info().rss for p in [tree, *tree.children(recursive=True)]))
            except psutil.NoSuchProcess:
                pass
            time.sleep(0.05)
        sender.join(10)
        assert int(child.stdout.read()) == 10_000_000
        assert peak < 100_000_000, f"peak RSS of the source's process tree: {peak / 1e6:.1f} MB"
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


# -- what the hostile tester found -------------------------------------------------------------
def test_stop_is_noticed_while_the_channel_is_full_and_the_port_is_released():
    server = TCPServerSource(maxsize=10).start()
    peer = socket.create_connection(("127.0.0.1", server.port))
    peer.sendall(b"x\n" * 1000)  # nobody reads the channel
    deadline = time.monotonic() + 5
    while server.statistics().emitted < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.stop()
    server.join(5)
    assert time.monotonic() - started < 1.0
    assert server.statistics().detail["unsent"] > 0  # read, but never taken: counted, not hidden
    peer.close()
    no_socket_left()


def test_a_reset_connection_does_not_make_its_unfinished_line_a_record():
    server = TCPServerSource(connections=1).start()
    peer = socket.create_connection(("127.0.0.1", server.port))
    peer.sendall(b"complete\npart")
    time.sleep(0.2)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # close = RST
    peer.close()
    assert drain(server.queue) == ["complete"]
    stats = server.join()
    assert stats.errors == 1 and "4 bytes of an unfinished record dropped" in stats.last_error
    assert stats.last_error.startswith("connection from 127.0.0.1:")


def test_an_on_connect_that_raises_fails_the_client_naming_it_and_closes_the_socket():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        def subscribe(sock):
            raise TypeError("bad subscription")

        client = TCPClientSource("127.0.0.1", listener.getsockname()[1], on_connect=subscribe).start()
        with pytest.raises(ActorError, match=r"on_connect \(subscribe\) raised TypeError: bad subscription"):
            client.join(5)
        peer, _ = listener.accept()
        peer.settimeout(2)
        assert peer.recv(10) == b""  # the client's side was closed
        peer.close()


@pytest.mark.parametrize(("make", "says"), [
    (lambda: TCPServerSource(chunk=0), "chunk must be >= 1"),
    (lambda: TCPServerSource(max_connections=0), "max_connections must be >= 1"),
    (lambda: TCPServerSource(encoding="bogus"), "unknown encoding 'bogus'"),
    (lambda: UDPSource(encoding="bogus"), "unknown encoding 'bogus'"),
    (lambda: StdinSource(encoding="bogus"), "unknown encoding 'bogus'"),
    (lambda: TCPServerSource(port=70000), "port must be 0 to 65535"),
    (lambda: UDPSource(port=-1), "port must be 0 to 65535"),
    (lambda: TCPClientSource("127.0.0.1", 9, connect_timeout=0), "connect_timeout must be > 0"),
    (lambda: TCPServerSource(max_record=0), "max_record must be a number of bytes >= 1"),
], ids=["chunk", "max_connections", "tcp-encoding", "udp-encoding", "stdin-encoding", "port-high", "port-low",
        "connect_timeout", "max_record"])
def test_a_bad_argument_is_one_line_at_construction(make, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        make()


def test_a_server_dropping_every_connection_at_once_is_not_hammered():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        accepted = [0]

        def serve():
            with contextlib.suppress(OSError):
                while True:
                    peer, _ = listener.accept()
                    accepted[0] += 1
                    peer.sendall(b"one line\n")
                    peer.close()

        threading.Thread(target=serve, daemon=True).start()
        client = TCPClientSource("127.0.0.1", listener.getsockname()[1],
                                 backoff=Backoff(initial=0.05, maximum=0.4, seed=2)).start()
        time.sleep(2.0)
        client.stop()
        client.join(5)
    assert 3 <= accepted[0] <= 40, f"{accepted[0]} connections in 2 s"  # (thousands without the backoff)


def test_stop_is_noticed_while_the_client_connects():
    with socket.socket() as listener:  # a backlog that is full: connects hang
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        fillers = []
        for _ in range(8):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        client = TCPClientSource("127.0.0.1", port, connect_timeout=30).start()
        time.sleep(0.5)
        started = time.monotonic()
        client.stop()
        client.join(5)
        assert time.monotonic() - started < 0.5
        for s in fillers:
            s.close()


def test_a_reset_before_any_data_is_one_error():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = TCPClientSource("127.0.0.1", listener.getsockname()[1],
                                 backoff=Backoff(initial=0.01, maximum=0.02)).start()
        for _ in range(3):
            peer, _ = listener.accept()
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            peer.close()
        peer, _ = listener.accept()
        client.stop()
        client.join(5)
        peer.close()
    assert client.statistics().errors == 3


def test_a_line_over_the_limit_inside_one_read_breaks_the_framing_too():
    server = TCPServerSource(connections=2, max_record=100).start()
    send(server.port, b"short\n" + b"y" * 5000 + b"\nnever\n")
    send(server.port, b"next\n")
    assert drain(server.queue) == ["short", "next"]
    assert server.join().detail["dropped"] == 1


def test_udp_lines_count_undecodable_bytes():
    receiver = UDPSource(framing="lines").start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(b"ok\n\xff\xfe", ("127.0.0.1", receiver.port))
    assert take(receiver.queue, 2) == ["ok", "\\xff\\xfe"]
    receiver.stop()
    assert receiver.join(5).errors == 1


def test_every_line_framed_source_counts_undecodable_lines():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = TCPClientSource("127.0.0.1", listener.getsockname()[1], reconnect=False).start()
        peer, _ = listener.accept()
        peer.sendall(b"ok\n\xff one\n\xfe two\n")
        peer.close()
        assert drain(client.queue) == ["ok", "\\xff one", "\\xfe two"]
    assert client.join(5).errors == 2
    r, w = os.pipe()
    os.write(w, b"\xffbad\ngood\n")
    os.close(w)
    with os.fdopen(r, "rb") as stream:
        source = StdinSource(stream)
        assert list(source) == ["\\xffbad", "good"] and source.errors == 1
