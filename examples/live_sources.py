"""Two live sources merged by event time: sensor rows arriving over TCP, and a log being written.

A sender streams the rows of one bundled occupancy file over a TCP connection, in small bursts;
a writer appends the rows of another to a log file, which a FollowSource follows (tail -F). Each
source orders its rows by their date within a bounded lateness, and the SortedQueueMultiplexer
merges the two by that date. Every row is accounted for: merged = in - late.
"""

import socket
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from chronopipe import SortedQueueMultiplexer
from chronopipe.channels import END
from chronopipe.sources import FollowSource, TCPServerSource

DATA = Path(__file__).parent / "data"


def date_of(row: str) -> float:
    """The event time of a row: its date, as seconds since the epoch."""
    return datetime.fromisoformat(row.split(",")[1].strip('"')).timestamp()


def rows(name: str) -> list[bytes]:
    return (DATA / name).read_bytes().splitlines(keepends=True)[1:]  # without the header


def send(port: int, lines: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", port)) as peer:
        for i in range(0, len(lines), 200):
            peer.sendall(b"".join(lines[i:i + 200]))
            time.sleep(0.002)


def write(log: Path, lines: list[bytes]) -> None:
    with open(log, "ab") as f:
        for i in range(0, len(lines), 200):
            f.write(b"".join(lines[i:i + 200]))
            f.flush()
            time.sleep(0.002)


def main() -> None:
    tcp_rows, log_rows = rows("datatest.txt"), rows("datatest2.txt")
    with tempfile.TemporaryDirectory() as scratch:
        log = Path(scratch) / "sensor.log"
        log.touch()
        merge = SortedQueueMultiplexer(sort_key=date_of, channel_mode="thread").run()
        tcp = TCPServerSource(connections=1, queue=merge.input_queue(), event_time=date_of, lateness=60)
        follow = FollowSource(log, queue=merge.input_queue(), event_time=date_of, lateness=60)
        merged = merge.output_queue()
        tcp.start()
        follow.start()
        merge.run()
        feeders = [threading.Thread(target=send, args=(tcp.port, tcp_rows)),
                   threading.Thread(target=write, args=(log, log_rows))]
        for feeder in feeders:
            feeder.start()
        for feeder in feeders:
            feeder.join()
        tcp.join(30)
        while follow.statistics().detail["offset"] < log.stat().st_size:  # it has read all that was written
            time.sleep(0.01)
        follow.stop()
        follow.join(30)
        count, last, in_order = 0, float("-inf"), True
        while (row := merged.get(30)) is not END:
            count += 1
            in_order = in_order and date_of(row) >= last
            last = date_of(row)
        tcp_stats, follow_stats = tcp.statistics(), follow.statistics()
        rows_in = len(tcp_rows) + len(log_rows)
        late = tcp_stats.late + follow_stats.late
        print(f"over TCP:      {tcp_stats.records:>6,} rows, {tcp_stats.late} late")
        print(f"followed file: {follow_stats.records:>6,} rows, {follow_stats.late} late")
        print(f"merged:        {count:>6,} rows, in date order: {in_order}")
        print(f"rows in {rows_in:,} = merged {count:,} + late {late}")
        assert count == rows_in - late and in_order


if __name__ == "__main__":
    main()
