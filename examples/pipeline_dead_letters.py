"""Retries and dead letters (docs/delivery.md): under guarantee="replay" a row whose process()
raises is tried again, then written to a dead-letter file, and the run goes on; once the node is
fixed, Pipeline.replay gives those rows back to it.

    venv/bin/python examples/pipeline_dead_letters.py [DEAD_LETTER_FILE]

Without a file name the letters go to a temporary folder, removed at the end. The same replay from
the command line, with the fixed pipeline this module's ``fixed_pipeline()`` builds:

    venv/bin/python examples/pipeline_dead_letters.py dl.jsonl
    venv/bin/chronopipe dead-letters dl.jsonl --replay examples/pipeline_dead_letters.py:fixed_pipeline
"""

import sys
import tempfile
from pathlib import Path

from chronopipe.graph import Node, Pipeline

ROWS = ["1,0.5", "2,1.5", "3;2.5", "4,3.5", "five,4.5"]
WORDS = {"five": 5}


class Parse(Node):
    """"timestamp,value" -> a record; fails on what it cannot read, until fixed."""

    fixed = False

    def process(self, line):
        if self.fixed:  # the fix: ';' as a separator too, and numbers written as words
            line = line.replace(";", ",")
        timestamp, value = line.split(",")
        timestamp = WORDS.get(timestamp, timestamp) if self.fixed else timestamp
        self.push({"timestamp": int(timestamp), "value": float(value)})


class Enrich(Node):
    """A flaky step (think of a remote lookup): the first attempt at an even timestamp fails."""

    def begin(self):
        self.tried = set()

    def process(self, record):
        if record["timestamp"] % 2 == 0 and record["timestamp"] not in self.tried:
            self.tried.add(record["timestamp"])
            raise ConnectionError("lookup timed out")
        self.push({**record, "scaled": record["value"] * 10})


class Total(Node):
    def process(self, record):
        self.global_state.total += record["scaled"]
        self.global_state.rows += 1


def show(label, pipeline):
    stats = pipeline.statistics()
    parse = {node.name: node for node in stats.nodes}["parse"]
    print(f"{label:<8} rows {parse.received}, handled {parse.received - parse.dead_lettered}, dead-lettered "
          f"{stats.dead_lettered}, retries {stats.retried}")
    print(f"{'':<8} total {pipeline.global_state.total} over {pipeline.global_state.rows} rows")


def build(path, fixed=False):
    """The pipeline: parse | enrich | total, in processes, retrying twice, then dead-lettering into ``path``."""
    parse = Parse("parse", fixed=fixed)
    pipeline = Pipeline(parse | Enrich("enrich") | Total("total"), mode="processes", guarantee="replay",
                        max_retries=2, dead_letter=path)
    pipeline.global_state.total, pipeline.global_state.rows = 0.0, 0
    return pipeline


def fixed_pipeline():
    """The pipeline with its parser fixed, for ``chronopipe dead-letters FILE --replay``."""
    return build("fixed.dead-letters.jsonl", fixed=True)


def main(path):
    pipeline = build(path)
    pipeline.consume(ROWS)
    show("run", pipeline)
    pipeline["parse"].fixed = True
    pipeline.replay(path, dead_letter=path.with_name("again.jsonl"))
    show("replay", pipeline)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(Path(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as folder:
            main(Path(folder) / "dead-letters.jsonl")
