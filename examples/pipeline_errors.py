"""A node that fails: in every mode the caller gets an ActorError naming the node, with the item
and the traceback; its class also derives from the original exception's (here ValueError)."""

from chronopipe import ActorError
from chronopipe.graph import Node, Pipeline


class Parse(Node):
    def process(self, line):
        timestamp, value = line.split(",")
        self.push({"timestamp": int(timestamp), "value": float(value)})


class Sink(Node):
    def process(self, record):
        pass


for mode in ("sync", "threads", "processes"):
    try:
        Pipeline(Parse("parse") | Sink("sink"), mode=mode).consume(["1,0.5", "2,1.5", "3;2.5", "4,3.5"])
    except ActorError as error:
        print(f"{mode:<9} node={error.actor!r} item={error.record!r} also ValueError: {isinstance(error, ValueError)}")
        print(f"{'':<9} {error.traceback.strip().splitlines()[-1]}")
