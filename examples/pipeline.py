"""A pipeline of nodes composed with `|`: broadcast, route, merge and global state, in three modes.

The same definition runs on one thread (consecution's semantics), on threads, or with every
node in its own process, and leaves the same results in global_state.
"""

from chronopipe.graph import GlobalState, Node, Pipeline


class Parse(Node):
    def process(self, line):
        day, amount = line.split(",")
        self.push({"day": day, "amount": float(amount)})


class Total(Node):
    """Adds up the amounts it sees; its total lands in global_state.totals at the end."""

    def begin(self):
        self.total = 0.0

    def process(self, record):
        self.total += record["amount"]
        self.push(record)

    def end(self):
        self.global_state.totals[self.name] = round(self.total, 2)


def by_size(record):
    return "small" if record["amount"] < 100 else "large"


LINES = ["mon,12.5", "mon,250", "tue,80", "wed,1200", "wed,3.25", "thu,99.99"]

for mode in ("sync", "threads", "processes"):
    pipeline = Pipeline(
        Parse("parse") | [Total("small"), Total("large"), by_size] | Total("all"),
        global_state=GlobalState(totals={}),
        mode=mode,
    )
    pipeline.consume(LINES)
    print(f"{mode:<9}", dict(sorted(pipeline.global_state.totals.items())))

print(pipeline)
