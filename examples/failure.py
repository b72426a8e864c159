"""An actor that fails: the caller gets an ActorError with its name, traceback and record."""

import chronopipe as cp


def parse(line):
    timestamp, value = line.split(",")
    return {"timestamp": int(timestamp), "value": float(value)}


lines = cp.Channel(mode="process", name="lines")
records = cp.Channel(mode="process", name="records")
cp.Actor("read", source=["1,0.5", "2,1.5", "3;2.5", "4,3.5"], outputs=lines, mode="process").start()
cp.Actor("parse", parse, inbox=lines, outputs=records, mode="process").start()

try:
    for record in records:
        print(record)
except cp.ActorError as error:
    print("actor:", error.actor)
    print("error:", error.exc_type, error.message)
    print("record:", error.record)
    print("last traceback line:", error.traceback.strip().splitlines()[-1])
