"""Split timestamped records into two branches, then merge them back in timestamp order."""

from chronopipe.graph import Node, Pipeline, merge_branches


class Reading(Node):
    def process(self, t):
        self.push({"timestamp": t, "sensor": "a" if t % 3 else "b", "value": t * 1.5})


class Calibrate(Node):
    """Each branch does its own work (and keeps its records in timestamp order)."""

    offset = 0.0

    def process(self, record):
        self.push({**record, "value": record["value"] + self.offset})


class Show(Node):
    def process(self, record):
        print(record["timestamp"], record["sensor"], record["value"])


def by_sensor(record):
    return record["sensor"]


source, a, b = Reading("readings"), Calibrate("a", offset=0.5), Calibrate("b", offset=-0.5)
source | [a, b, by_sensor]
merge_branches([a, b], key="timestamp") | Show("show")
Pipeline(source, mode="processes").consume(range(8))
