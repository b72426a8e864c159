"""Backpressure: a bounded channel slows the producer, so memory stays flat on long streams."""

from __future__ import annotations

import time

import psutil
import pytest

import chronopipe as cp


def tree_rss_mb() -> float:
    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_memory_stays_flat_while_a_producer_streams_5m_records(kind):
    records = cp.Channel(10_000, mode=kind, name="stream")
    producer = cp.Actor("producer", source=lambda: ({"n": i} for i in range(5_000_000)), outputs=records,
                        mode=kind).start()
    samples, count, batches = [], 0, 0
    while True:
        batch = records.get_batch()
        ended = batch[-1] is cp.END
        count += len(batch) - ended
        batches += 1
        if batches % 200 == 0:
            samples.append(tree_rss_mb())
        if ended:
            break
    producer.join(timeout=60)
    assert count == 5_000_000
    early = max(samples[: max(2, len(samples) // 5)])
    assert max(samples) - early < 40, f"tree RSS grew from {early:.0f} MB to {max(samples):.0f} MB"


class Endless(cp.Actor):
    """Emits 0, 1, 2, ... until stopped."""

    def run(self):
        n = 0
        while not self.stopping:
            self.emit(n)
            n += 1


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_full_channel_blocks_an_emitting_actor_at_the_channels_bound(kind):
    out = cp.Channel(2000, mode=kind, name="full")  # a process channel: 2 batches of 1,000 in flight
    actor = Endless("endless", outputs=out, mode=kind).start()
    deadline = time.monotonic() + 10
    while actor.counts.emitted < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    assert actor.counts.emitted == 2000  # blocked in its third batch, which is not counted yet
    actor.stop()
    drained = list(out)
    assert drained == list(range(len(drained))) and len(drained) >= 2000
    actor.join(timeout=10)
