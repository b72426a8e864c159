"""Three actors in three processes: a source, a map and a sink, joined by process channels."""

import chronopipe as cp


class Total(cp.Actor):
    """Sums the values it receives; on_stop's return value is what join() returns."""

    def on_start(self):
        self.total = 0.0

    def on_receive(self, record):
        self.total += record["value"]

    def on_stop(self):
        return self.total


raw = cp.Channel(mode="process", name="raw")
scaled = cp.Channel(mode="process", name="scaled")

cp.Actor("source", source=lambda: ({"timestamp": i, "value": i * 0.5} for i in range(100_000)),
         outputs=raw, mode="process").start()
cp.Actor("scale", lambda r: {**r, "value": r["value"] * 2}, inbox=raw, outputs=scaled, mode="process").start()
total = Total("total", inbox=scaled, mode="process").start()

print("total:", total.join())
stats = total.statistics()
print(f"{stats.name}: {stats.state}, received {stats.received:,} records")
