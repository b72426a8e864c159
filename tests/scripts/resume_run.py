"""A resumable pipeline run for the kill tests (tests/test_delivery_resume.py).

    python tests/scripts/resume_run.py INPUT STATE_DIR OUTPUT [--mode processes]

INPUT holds one JSON object per line with an ``id``. The pipeline (its state in STATE_DIR)
parses each line, doubles its value in two worker processes and appends ``id`` to OUTPUT, one
per line, written and flushed at every commit(). Prints the run's summary as its last line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from chronopipe.graph import Node, Pipeline
from chronopipe.readers import FileReader


class Parse(Node):
    def process(self, line: str) -> None:
        self.push(json.loads(line))


class Double(Node):
    def process(self, record: dict) -> None:
        record["value"] = record["id"] * 2
        self.push(record)


class AppendIds(Node):
    """Appends the records' ids to ``path``, a batch at a time: they wait in memory until
    commit() writes and flushes them (what a SIGKILL of this process then keeps), as a sink
    that loads batches into a store does."""

    path = ""

    def begin(self) -> None:
        self.file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        self.pending: list[str] = []

    def process(self, record: dict) -> None:
        self.pending.append(f"{record['id']}\n")

    def commit(self) -> None:
        self.file.writelines(self.pending)
        self.file.flush()
        self.pending.clear()

    def end(self) -> None:
        self.commit()
        self.file.close()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("input")
    parser.add_argument("state_dir")
    parser.add_argument("output")
    parser.add_argument("--mode", default="processes")
    args = parser.parse_args()
    sink = AppendIds("sink", path=args.output)
    pipeline = Pipeline(Parse("parse") | Double("double", workers=2) | sink, mode=args.mode,
                        name="resume-test", state_dir=args.state_dir)
    pipeline.consume(FileReader(args.input))
    print(pipeline.statistics().summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
