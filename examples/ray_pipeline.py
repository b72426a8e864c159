"""The same pipeline on Ray: the bundled occupancy CSV parsed by two workers, summed by room state.

With no Ray cluster given it starts a local one (2 CPUs here). To use a cluster, call
``ray.init(address="ray://head:10001")`` (or set RAY_ADDRESS) before the pipeline runs; the code
does not change (docs/ray.md). Every row is accounted for: rows in = parsed + rejected.
"""

import csv
import time
from pathlib import Path

import ray

from chronopipe.graph import Node, Pipeline

DATA = Path(__file__).parent / "data" / "datatraining.txt"


class Parse(Node):
    """A CSV row to a reading; a row that does not parse raises (and is dead-lettered)."""

    def process(self, row):
        _, stamp, temperature, _, _, co2, _, occupied = row
        self.push({"timestamp": stamp, "temperature": float(temperature), "co2": float(co2),
                   "occupied": occupied == "1"})


class ByRoomState(Node):
    """Readings and mean CO2 while the room is occupied and while it is empty."""

    def begin(self):
        self.rows = {True: 0, False: 0}
        self.co2 = {True: 0.0, False: 0.0}

    def process(self, reading):
        self.rows[reading["occupied"]] += 1
        self.co2[reading["occupied"]] += reading["co2"]


with DATA.open(newline="") as f:
    rows = list(csv.reader(f))[1:]
rows.append(["bad", "2015-02-10 09:33:00", "not a number", "", "", "", "", "0"])  # one row that cannot parse

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
letters = []
pipeline = Pipeline(Parse("parse", workers=2) | ByRoomState("rooms"), mode="ray", guarantee="replay",
                    max_retries=0, dead_letter=letters.append)
started = time.perf_counter()
pipeline.consume(rows)
seconds = time.perf_counter() - started

rooms = pipeline["rooms"]
parsed = sum(rooms.rows.values())
for occupied, label in ((True, "occupied"), (False, "empty")):
    mean = rooms.co2[occupied] / rooms.rows[occupied]
    print(f"{label:<9} {rooms.rows[occupied]:>5,} readings, mean CO2 {mean:.0f} ppm")
print(f"rows in {len(rows):,} = parsed {parsed:,} + rejected {len(letters)} ({seconds:.2f} s on Ray)")
for letter in letters:
    print(f"rejected: {letter.record[0]!r}: {letter.error_type}: {letter.error}")
assert parsed + len(letters) == len(rows)
ray.shutdown()
