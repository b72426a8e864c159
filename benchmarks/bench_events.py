"""Hand-run benchmark of EventManager's indexed dispatch against a linear scan of the rules.

Run it (1 to 2 minutes on 2 cores; it is not a pytest test)::

    venv/bin/python benchmarks/bench_events.py [--repeat N] [--events N] [--seed N] [--check]

What is measured
----------------
Events have 6 indexed fields of very different cardinality, one of them nested, like the
records of a monitoring or validation run::

    {"type": 8 values, "severity": 5, "origin": {"region": 20}, "source": 200, "code": 2,000,
     "device": 1,000,000, "value": float}

Rules (10, 100, 1k, 10k, 100k of them) are selective, as rules about particular things are:
each names a device (one, or an OR-list of 2 or 3) and adds 0 to 2 clauses on other fields
(equality, or an OR-list of 2 or 3 values), so 1 to 3 clauses. Half of the events come from a
device some rule names, half from anywhere in the million; every row sees the same kind of
traffic, and the ``matches/event`` column shows how many callbacks each event runs.

* **register**: seconds to ``EventManager.register`` every rule (a dict condition each).
* **trigger**: events/s of ``EventManager.trigger(event)``, callbacks included.
* **linear**: events/s of the naive dispatcher ``for s in subscriptions: if
  s.condition.matches(event): s.callback(event)`` over the same subscriptions and events, in
  the same run. Both must run the same callbacks on the same events, or the run fails.

Each size runs ``--repeat`` rounds (default 5), each timing trigger over the events and then
the linear scan back to back (the scan on as many events as fit in about a second, so at most
~1 s a run at 1k+ rules). A shared 2-core machine is noisy, so no figure is a best run: the
``speedup`` is the median over rounds of trigger's events/s / the scan's events/s in the same
round (paired on rates, the two timing different numbers of events), each round's printed
under the row; the rates and the register time shown are medians of the runs. On the first 50
events of each size, ``EventManager.matching`` must name exactly the subscriptions the linear
scan finds, in the same order. The cost at 100k rules relative to 100 rules is then measured
again in ``--repeat`` paired rounds, both rule sets timed back to back in each (their median
ratio is the figure; the ``cost vs 100`` column only divides the rows' median rates, measured
apart, for information). An informational row repeats the 10k case with broad
rules: 1 to 3 clauses on any of the 6 fields, so many rules match each event and the
callbacks' own cost dominates.

Cost per fired callback, against pyee and blinker (the ``fan-out`` row): 10k rules
``{"source": one of 200, "severity": an OR-list of 2 of the 5}``, so about 20 callbacks run for
each event, each rule with its own listener function (a distinct callable that counts its
calls). pyee's EventEmitter and blinker's signals get the same listeners under the names
``"source|severity"`` each rule stands for, and the same events (``emit(name, event)``,
``signal(name).send(event)``); a bare loop calling the matched listeners from a list is the
floor. All must run the same number of listener calls, or the run fails. Each round times the
four back to back; the figures are medians over ``--repeat`` rounds, and the ratios
(``vs_pyee``, ``vs_blinker``: EventManager's cost per callback over theirs) medians of each
round's ratio, never best over best. ``trigger`` collects results (a list of Right per event).

Targets: at 10k rules trigger >= 50x the linear scan (``speedup_10k``); trigger's cost per
event at 100k rules <= 3x its cost at 100 rules (``cost_100k_vs_100``, the paired median);
registering 100k rules < 2 s (``register_100k_s``, the median of 3 runs); at most 1 µs per fired callback
in the fan-out row (``us_per_fired_callback``). The last line printed is one JSON object with
those and the fan-out row's other figures. ``--quick`` runs the fan-out row alone (~10 s).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import Run, median_rate, paired_ratio, rounds_text, target_verdict
from chronopipe.events import EventManager

SIZES = [10, 100, 1_000, 10_000, 100_000]
FIELDS: dict[str, int] = {"type": 8, "severity": 5, "origin.region": 20, "source": 200, "code": 2_000,
                          "device": 1_000_000}
TARGETS = {"speedup_10k": (50.0, "min"), "cost_100k_vs_100": (3.0, "max"), "register_100k_s": (2.0, "max"),
           "us_per_fired_callback": (1.0, "max")}
FANOUT_RULES, FANOUT_SOURCES, FANOUT_SEVERITIES = 10_000, 200, 5


def value(field: str, i: int) -> Any:
    """The i-th value of a field: ints for codes, strings elsewhere (as real records have)."""
    return i if field == "code" else f"{field.rpartition('.')[2]}-{i}"


def clause(rng: random.Random, field: str) -> Any:
    n = FIELDS[field]
    if rng.random() < 0.7:
        return value(field, rng.randrange(n))
    return [value(field, i) for i in rng.sample(range(n), rng.choice((2, 3)))]


def make_rules(rng: random.Random, count: int, selective: bool) -> list[dict[str, Any]]:
    others = [f for f in FIELDS if f != "device"]
    rules = []
    for _ in range(count):
        if selective:
            fields = ["device", *rng.sample(others, rng.randrange(3))]
        else:
            fields = rng.sample(list(FIELDS), rng.randrange(1, 4))
        rules.append({f: clause(rng, f) for f in fields})
    return rules


def make_events(rng: random.Random, count: int, rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    named = [d for r in rules if "device" in r for d in (r["device"] if isinstance(r["device"], list) else
                                                        [r["device"]])]
    events = []
    for _ in range(count):
        event: dict[str, Any] = {}
        for f, n in FIELDS.items():
            v = value(f, rng.randrange(n))
            if f == "device" and named and rng.random() < 0.5:
                v = rng.choice(named)
            if f == "origin.region":
                event["origin"] = {"region": v}
            else:
                event[f] = v
        event["value"] = rng.random()
        events.append(event)
    return events


def timed(fn: Callable[[], int]) -> tuple[float, int]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure(rules: list[dict[str, Any]], events: list[dict[str, Any]], repeat: int) -> dict[str, Any]:
    hits = [0]

    def callback(event: Any) -> None:
        hits[0] += 1

    def fill(manager: EventManager) -> int:
        for rule in rules:
            manager.register(callback, rule)
        return len(rules)

    registers = []
    for _ in range(repeat if len(rules) <= 10_000 else min(repeat, 3)):
        manager = None
        gc.collect()  # the previous run's 100k subscriptions are garbage: not this run's to collect
        manager = EventManager(name="bench")
        seconds, _ = timed(lambda: fill(manager))  # noqa: B023
        registers.append(seconds)
    subs = manager.subscriptions()
    trigger = manager.trigger

    def indexed() -> int:
        hits[0] = 0
        for event in events:
            trigger(event)
        return hits[0]

    def linear(sample: list[dict[str, Any]]) -> int:
        hits[0] = 0
        for event in sample:
            for sub in subs:
                if sub.condition.matches(event):
                    sub.callback(event)
        return hits[0]

    # The linear scan is slow at 10k+ rules: time it on as many events as fit in about a second.
    probe, _ = timed(lambda: linear(events[:5]))
    per_event = max(probe / 5, 1e-9)
    sample = events[: int(min(len(events), max(5, 1.0 / per_event)))]
    indexed_runs, linear_runs = [], []
    for _ in range(repeat):  # each round: trigger, then the linear scan, back to back
        seconds, matched = timed(indexed)
        indexed_runs.append(Run(len(events), seconds))
        seconds, linear_matched = timed(lambda: linear(sample))
        linear_runs.append(Run(len(sample), seconds))
    for event in sample[:50]:  # the same subscriptions, in the same order, or the run is void
        if manager.matching(event) != [sub for sub in subs if sub.condition.matches(event)]:
            raise RuntimeError(f"{len(rules)} rules: the index and the linear scan disagree on {event}")
    if sum(len(trigger(event)) for event in sample) != linear_matched:
        raise RuntimeError(f"{len(rules)} rules: trigger and the linear scan ran different numbers of callbacks")
    speedup, speedups = paired_ratio(indexed_runs, linear_runs)  # rates: the two time different event counts
    return {
        "rules": len(rules), "register_s": statistics.median(registers),
        "trigger_rate": median_rate(indexed_runs), "linear_rate": median_rate(linear_runs),
        "speedup": speedup, "speedups": speedups,
        "matches": matched / len(events), "linear_events": len(sample), "manager": manager, "events": events,
    }


def paired_cost(small: dict[str, Any], large: dict[str, Any], rounds: int) -> tuple[float, list[float]]:
    """Per round, trigger's cost per event with the large rule set over its cost with the small
    one, timed back to back (neighbours in time see about the same machine): (median, per round)."""
    runs: dict[str, list[Run]] = {"small": [], "large": []}
    for _ in range(rounds):
        for name, row in (("small", small), ("large", large)):
            trigger, events = row["manager"].trigger, row["events"]
            start = time.perf_counter()
            for event in events:
                trigger(event)
            runs[name].append(Run(len(events), time.perf_counter() - start))
    return paired_ratio(runs["small"], runs["large"])  # cost large / cost small = rate small / rate large


def fanout(seed: int, events_count: int, rounds: int) -> dict[str, float]:
    """The cost per fired callback of trigger, pyee and blinker, and a bare loop (module docs)."""
    from blinker import Namespace
    from pyee import EventEmitter

    rng = random.Random(seed)
    hits = [0]

    def listener() -> Callable[[Any], None]:
        def heard(event: Any, hits: list[int] = hits) -> None:
            hits[0] += 1

        return heard

    manager, emitter, signals = EventManager(name="fanout"), EventEmitter(), Namespace()
    by_name: dict[str, list[Callable[[Any], None]]] = {}
    for _ in range(FANOUT_RULES):
        source = value("source", rng.randrange(FANOUT_SOURCES))
        severities = [value("severity", i) for i in rng.sample(range(FANOUT_SEVERITIES), 2)]
        fn = listener()
        manager.register(fn, {"source": source, "severity": severities})
        for severity in severities:
            name = f"{source}|{severity}"
            emitter.on(name, fn)
            signals.signal(name).connect(fn, weak=False)
            by_name.setdefault(name, []).append(fn)
    events = []
    for _ in range(events_count):
        event = {f: value(f, rng.randrange(n)) for f, n in FIELDS.items() if f != "origin.region"}
        event["source"] = value("source", rng.randrange(FANOUT_SOURCES))
        event["severity"] = value("severity", rng.randrange(FANOUT_SEVERITIES))
        events.append(event)
    names = [f"{e['source']}|{e['severity']}" for e in events]
    sends = [signals.signal(name).send for name in names]
    matched = [by_name.get(name, []) for name in names]
    trigger, emit = manager.trigger, emitter.emit

    def ours() -> int:
        collected = 0
        for event in events:
            collected += len(trigger(event))
        return collected

    def theirs_pyee() -> int:
        for name, event in zip(names, events, strict=True):
            emit(name, event)
        return hits[0]

    def theirs_blinker() -> int:
        collected = 0
        for send, event in zip(sends, events, strict=True):
            collected += len(send(event))
        return collected

    def bare() -> int:
        for fns, event in zip(matched, events, strict=True):
            for fn in fns:
                fn(event)
        return hits[0]

    contenders = {"eventmanager": ours, "pyee": theirs_pyee, "blinker": theirs_blinker, "bare": bare}
    calls = sum(map(len, matched))
    costs: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            hits[0] = 0
            gc.collect()
            seconds, counted = timed(run)
            if hits[0] != calls or counted != calls:
                raise RuntimeError(f"fan-out: {name} ran {hits[0]} listener calls ({counted} counted), not {calls}")
            costs[name].append(seconds / calls * 1e6)
    median = {name: statistics.median(c) for name, c in costs.items()}
    ratio = {other: paired_ratio(costs["eventmanager"], costs[other])[0] for other in ("pyee", "blinker", "bare")}
    print(f"fan-out: {FANOUT_RULES:,} rules, {calls / len(events):.1f} callbacks per event, µs per fired callback "
          f"(median of {rounds} paired rounds): EventManager.trigger {median['eventmanager']:.3f}, "
          f"pyee {median['pyee']:.3f}, blinker {median['blinker']:.3f}, bare loop {median['bare']:.3f}; "
          f"EventManager / pyee {ratio['pyee']:.2f}x, / blinker {ratio['blinker']:.2f}x, / bare {ratio['bare']:.2f}x",
          flush=True)
    return {
        "us_per_fired_callback": round(median["eventmanager"], 3),
        "pyee_us_per_listener": round(median["pyee"], 3),
        "blinker_us_per_listener": round(median["blinker"], 3),
        "bare_us_per_call": round(median["bare"], 3),
        "vs_pyee": round(ratio["pyee"], 2),
        "vs_blinker": round(ratio["blinker"], 2),
        "callbacks_per_event": round(calls / len(events), 1),
    }


def verdicts(figures: dict[str, Any]) -> bool:
    """Print each target's verdict; True if one was missed."""
    missed = False
    for name, figure in figures.items():
        if name in TARGETS:
            verdict = target_verdict(TARGETS, name, figure)
            missed |= verdict.startswith("MISS")
            print(f"{name:<22} {figure:>10} {verdict}")
    return missed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="rounds per figure, medians kept (default 5)")
    parser.add_argument("--events", type=int, default=20_000, help="events per trigger run (default 20,000)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--check", action="store_true", help="exit status 1 if a target is missed")
    parser.add_argument("--quick", action="store_true", help="the fan-out row (cost per fired callback) alone")
    args = parser.parse_args()
    if args.quick:
        figures = fanout(args.seed, args.events // 4, max(args.repeat, 5))
        missed = verdicts(figures)
        print(json.dumps(figures))
        return 1 if args.check and missed else 0

    load = os.getloadavg()
    print(f"EventManager.trigger vs linear scan; {os.cpu_count()} CPUs, load average "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {args.repeat} rounds; {args.events:,} events per run")
    print("register s and ev/s: medians of the runs; speedup: median of same-round ratios (each round's under "
          "the row); cost vs 100: the rows' median rates divided (measured apart, information)")
    print(f"{'rules':>8} {'register s':>11} {'trigger ev/s':>13} {'linear ev/s':>12} {'speedup':>9} "
          f"{'matches/event':>14} {'cost vs 100':>12}")
    rows: dict[int, dict[str, Any]] = {}
    rng = random.Random(args.seed)
    all_rules = make_rules(rng, max(SIZES), selective=True)
    for size in SIZES:
        rules = all_rules[:size]
        events = make_events(random.Random(args.seed + size), args.events, rules)
        gc.collect()
        row = rows[size] = measure(rules, events, args.repeat)
        if size not in (100, 100_000):
            del row["manager"], row["events"]
        cost = f"{rows[100]['trigger_rate'] / row['trigger_rate']:.2f}x" if 100 in rows else "-"
        print(f"{size:>8,} {row['register_s']:>11.3f} {row['trigger_rate']:>13,.0f} {row['linear_rate']:>12,.0f} "
              f"{row['speedup']:>8.1f}x {row['matches']:>14.2f} {cost:>12}", flush=True)
        print(f"{'':>8} speedup per round: {rounds_text(row['speedups'], 1)}", flush=True)
    cost_median, cost_rounds = paired_cost(rows[100], rows[100_000], args.repeat)
    print(f"cost per event, 100k rules / 100 rules, timed back to back: median {cost_median:.2f}x "
          f"(rounds: {rounds_text(cost_rounds)})")
    broad_rules = make_rules(random.Random(args.seed + 1), 10_000, selective=False)
    broad = measure(broad_rules, make_events(random.Random(args.seed + 2), args.events // 4, broad_rules),
                    max(1, args.repeat // 2))
    print(f"{'broad 10k':>8} {broad['register_s']:>11.3f} {broad['trigger_rate']:>13,.0f} "
          f"{broad['linear_rate']:>12,.0f} {broad['speedup']:>8.1f}x "
          f"{broad['matches']:>14.2f}   (information)")
    print(f"{'':>8} speedup per round: {rounds_text(broad['speedups'], 1)}")
    speedup_10k = rows[10_000]["speedup"]
    register_100k = rows[100_000]["register_s"]

    del rows, broad
    gc.collect()
    figures = {
        "speedup_10k": round(speedup_10k, 1),
        "cost_100k_vs_100": round(cost_median, 2),
        "register_100k_s": round(register_100k, 3),
        **fanout(args.seed, args.events // 4, max(args.repeat, 5)),
    }
    missed = verdicts(figures)
    print(json.dumps(figures))
    return 1 if args.check and missed else 0


if __name__ == "__main__":
    sys.exit(main())
