"""A running pipeline driven over its control API: records pushed in over HTTP, watched, drained.

The pipeline reads a PushInput named "sensors" and serves its control API on a free port of
loopback (``control="127.0.0.1:0"``). An operator, here a thread of this script using nothing but
``urllib``, pushes the bundled occupancy rows in batches with the bearer token (``POST /push``),
looks at ``GET /features`` and ``GET /stats``, and drains the run (``POST /stop``): the input is
closed, every record pushed goes through, and the answer carries the final counts. Every record
is accounted for: pushed = received by the first node = counted at the end.
"""

import csv
import json
import threading
import time
import urllib.request
from pathlib import Path

from chronopipe import Node, Pipeline
from chronopipe.control.inputs import PushInput

DATA = Path(__file__).parent / "data" / "datatraining.txt"


class Typed(Node):
    """A CSV row (a dict of strings) as typed fields."""

    def process(self, row: dict) -> None:
        self.push({"date": row["date"], "co2": float(row["CO2"]), "occupied": row["Occupancy"] == "1"})


class Occupancy(Node):
    """Counts the rows, and those of an occupied room."""

    def begin(self) -> None:
        self.rows = self.occupied = 0

    def process(self, reading: dict) -> None:
        self.rows += 1
        self.occupied += reading["occupied"]


def call(url: str, path: str, token: str | None = None, body: object = None) -> dict:
    """One request; a POST when there is a body, with the token as a bearer."""
    request = urllib.request.Request(url + path, method="POST" if body is not None else "GET",
                                     data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def main() -> None:
    with open(DATA, newline="") as f:
        lines = csv.reader(f)
        names = ["id", *next(lines)]  # the rows start with an index the header does not name
        rows = [dict(zip(names, line, strict=True)) for line in lines]
    pipeline = Pipeline(Typed("typed") | Occupancy("occupancy"), mode="threads", control="127.0.0.1:0")
    sensors = PushInput("sensors")
    run = threading.Thread(target=pipeline.consume, args=(sensors,))
    run.start()
    try:
        while pipeline.control is None:  # the server starts with the run
            time.sleep(0.01)
        operate(pipeline, rows)
    finally:
        sensors.close()  # should the operator fail: the run ends all the same
        run.join()


def operate(pipeline: Pipeline, rows: list[dict]) -> None:
    """What an operator does from outside: push, look, drain."""
    url, token = pipeline.control.url, pipeline.control.token
    pushed = 0
    for start in range(0, len(rows), 200):  # a request body is at most 64 KiB
        answer = call(url, "/push", token, {"input": "sensors", "records": rows[start:start + 200]})
        pushed += answer["accepted"]
    features = call(url, "/features")["features"]["sensors"]
    print(f"pushed {pushed:,} rows; fields seen: {', '.join(f'{k} ({v[0]})' for k, v in sorted(features.items()))}")
    print(f"state while running: {call(url, '/stats')['state']}")

    final = call(url, "/stop", token, {"timeout": 30})
    received = final["nodes"]["typed"]["received"]
    counted = pipeline["occupancy"].rows
    print(f"stopped: {final['state']}; typed received {received:,}, occupancy counted {counted:,} "
          f"({pipeline['occupancy'].occupied:,} occupied)")
    assert pushed == received == counted == len(rows), (pushed, received, counted, len(rows))
    print(f"every row accounted for: pushed {pushed:,} = counted {counted:,}")


if __name__ == "__main__":
    main()
