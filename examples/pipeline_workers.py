"""A CPU-heavy node on two worker processes, its output kept in input order (ordered=True)."""

import time

from chronopipe.graph import Node, Pipeline


def collatz_steps(n):
    steps = 0
    while n != 1:
        n = 3 * n + 1 if n % 2 else n // 2
        steps += 1
    return steps


class Steps(Node):
    def process(self, n):
        self.push((n, collatz_steps(n)))


class Longest(Node):
    def begin(self):
        self.best = (0, 0)
        self.count = 0

    def process(self, pair):
        self.count += 1
        if pair[1] > self.best[1]:
            self.best = pair


numbers = range(1, 300_001)
for mode, workers in (("sync", 1), ("processes", 2)):
    pipeline = Pipeline(Steps("steps", workers=workers, ordered=True) | Longest("longest"), mode=mode)
    started = time.perf_counter()
    pipeline.consume(numbers)
    seconds = time.perf_counter() - started
    longest = pipeline["longest"]
    print(f"{mode:<9} workers={workers}: {longest.count:,} numbers, longest chain {longest.best} in {seconds:.2f} s")

print(pipeline)
