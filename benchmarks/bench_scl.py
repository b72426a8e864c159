"""Hand-run benchmark of chronopipe.scl.parse (PLY) against a Lark LALR parser of the same grammar.

Run it (about 90 s on a shared 2-CPU machine, lark's runs most of it; it is not a pytest test)::

    venv/bin/pip install lark        # benchmark-only dependency, not needed by chronopipe itself
    venv/bin/python benchmarks/bench_scl.py [--statements N] [--repeat N] [--check]

What is measured
----------------
The seed's statement forms, 20 statements a line (nested children, words, ``123_hello``, quoted
strings with escapes, and every number form: ``1``, ``1.2``, ``+1.3``, ``-1.4``, ``.21``, ``+.22``,
``3e1``, ``+3E2``, ``-4.1E+7``), the line repeated to ``--statements`` statements (default
200,000: 10,000 lines). Both parsers build the same result: lists of ``{"key", "value"[,
"children"]}`` dicts with ``Decimal`` numbers and unescaped strings; the results are compared once
before timing, and every timed run must count every statement.

* **scl.parse**: chronopipe's PLY lexer and LALR parser (tables built once, before timing).
* **lark LALR**: ``Lark(grammar, parser="lalr", lexer="basic", transformer=...)``, lark's standard
  (``basic``) lexer, with the same token regexes, the tree transformed inline into the same dicts.
  Its words stay lark ``Token`` objects (a ``str`` subclass, equal to the plain strings): that
  spares lark a conversion per word, in its favour.

Each contender parses the whole text in one call, and then line by line (one call per line, as
command payloads arrive), ``--repeat`` times each (default 5, round robin: each round runs
scl.parse then lark on the whole text, then both line by line, back to back). A shared machine is
noisy, so no figure is a best run: a rate is the median of a contender's runs and a ratio the
median of the rounds' PLY / lark ratios, each round's printed too. The header also shows how
long the first build of each parser takes (PLY: lexer and LALR tables, on the first
``scl.parse``; lark: the ``Lark`` object).

Target: ``scl.parse`` at least as fast as lark LALR on the whole text (``vs_lark >= 1``). The
last line printed is one JSON object: ``{"stmts_per_s", "vs_lark"}`` (scl.parse's median
statements/s on the whole text, and the median over rounds of scl.parse's rate / lark's in the
same round).
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from _common import Run, check_count, finish, median_rate, paired_ratio, rounds_text, target_verdict
from chronopipe import scl
from chronopipe.scl.lexer import NUMBER_PATTERN, STRING_PATTERN, WORD_PATTERN, unescape

LINE = (
    r'key=value(key1=value1 key2=value2 key3="string \(\"paren quoted\"\)") '
    "i=1 f=1.2 p=+1.3 m=-1.4 d=.21 pd=+.22 e=3e1 pe=+3E2 me=-4.1E+7 "
    'w=123_hello s="plain string" g=(a=1 b=(c=x d="y"))'
)
LINE_STATEMENTS = 20
TARGETS = {"vs_lark": (1.0, "min")}  # name: (bound, "min" or "max")
verdict = functools.partial(target_verdict, TARGETS)

LARK_GRAMMAR = rf"""
start: stmt*
stmt: WORD "=" value                -> leaf
    | WORD "=" value "(" stmt+ ")"  -> node
    | WORD "=" "(" stmt+ ")"        -> group
?value: WORD | NUMBER | STRING
NUMBER.2: /{NUMBER_PATTERN}/
STRING: /{STRING_PATTERN}/
WORD: /{WORD_PATTERN}/
%ignore /[ \t\r\n\f\v]+/
"""


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def make_lark() -> tuple[Callable[[str], list[dict[str, Any]]], str]:
    """Lark's LALR parser of the SCL grammar, and lark's version; exits with a hint if lark is missing."""
    try:
        import lark
    except ImportError:
        sys.exit("bench_scl.py compares against lark, a benchmark-only dependency that is not installed:\n"
                 "    venv/bin/pip install lark")

    class ToDicts(lark.Transformer):
        def start(self, items: list[Any]) -> list[Any]:
            return items

        def leaf(self, items: list[Any]) -> dict[str, Any]:
            return {"key": items[0], "value": items[1]}

        def node(self, items: list[Any]) -> dict[str, Any]:
            return {"key": items[0], "value": items[1], "children": items[2:]}

        def group(self, items: list[Any]) -> dict[str, Any]:
            return {"key": items[0], "value": None, "children": items[1:]}

        def NUMBER(self, token: str) -> Decimal:  # noqa: N802 (lark's name for the terminal's callback)
            return Decimal(token)

        def STRING(self, token: str) -> str:  # noqa: N802
            return unescape(token[1:-1])

    parser = lark.Lark(LARK_GRAMMAR, parser="lalr", lexer="basic", transformer=ToDicts())
    return parser.parse, lark.__version__


def count_statements(stmts: list[dict[str, Any]]) -> int:
    """Statements at every depth (an explicit stack: no recursion)."""
    count, stack = 0, [stmts]
    while stack:
        level = stack.pop()
        count += len(level)
        stack.extend(stmt["children"] for stmt in level if "children" in stmt)
    return count


def timed_whole(parse: Callable[[str], list[dict[str, Any]]], text: str, expected: int, name: str) -> Run:
    gc.collect()
    started = time.perf_counter()
    result = parse(text)
    seconds = time.perf_counter() - started
    check_count(name, count_statements(result), expected)
    return Run(expected, seconds)


def timed_lines(parse: Callable[[str], list[dict[str, Any]]], lines: list[str], expected: int, name: str) -> Run:
    gc.collect()
    started = time.perf_counter()
    results = [parse(line) for line in lines]
    seconds = time.perf_counter() - started
    check_count(name, sum(count_statements(result) for result in results), expected)
    return Run(expected, seconds)


def timed_build(build: Callable[[], Any]) -> float:
    started = time.perf_counter()
    build()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=200_000, help="statements to parse (default 200,000)")
    parser.add_argument("--repeat", type=int, default=5, help="rounds of the contenders, medians kept (default 5)")
    parser.add_argument("--check", action="store_true", help="exit with status 1 if the target is missed")
    args = parser.parse_args(argv)
    if min(args.statements, args.repeat) < 1:
        parser.error("--statements and --repeat must be >= 1")
    build_s = {"scl": timed_build(lambda: scl.parse("a=1")), "lark": timed_build(make_lark)}  # the first builds
    lark_parse, lark_version = make_lark()
    lines = [LINE] * -(-args.statements // LINE_STATEMENTS)
    text = "\n".join(lines)
    n = len(lines) * LINE_STATEMENTS
    if scl.parse(LINE) != lark_parse(LINE) or count_statements(scl.parse(LINE)) != LINE_STATEMENTS:
        raise RuntimeError("scl.parse and lark disagree on the benchmark line")

    load_before = os.getloadavg()[0]
    contenders: dict[str, tuple[str, Callable[[], Run]]] = {
        "scl": ("scl.parse (PLY), whole text", lambda: timed_whole(scl.parse, text, n, "scl.parse")),
        "lark": ("lark LALR, whole text", lambda: timed_whole(lark_parse, text, n, "lark")),
        "scl_lines": ("scl.parse (PLY), line by line", lambda: timed_lines(scl.parse, lines, n, "scl.parse")),
        "lark_lines": ("lark LALR, line by line", lambda: timed_lines(lark_parse, lines, n, "lark")),
    }
    runs: dict[str, list[Run]] = {key: [] for key in contenders}
    for round_ in range(args.repeat):
        for key, (label, run) in contenders.items():
            progress(f"round {round_ + 1}/{args.repeat}: {label}...")
            runs[key].append(run())

    # PLY / lark per round (the two ran back to back in each round) and the median of those
    paired = {"lark": paired_ratio(runs["scl"], runs["lark"]),
              "lark_lines": paired_ratio(runs["scl_lines"], runs["lark_lines"])}
    summary = {"stmts_per_s": round(median_rate(runs["scl"])), "vs_lark": round(paired["lark"][0], 2)}
    print(f"chronopipe.scl benchmark: {n:,} statements ({len(lines):,} lines of {LINE_STATEMENTS}), "
          f"{args.repeat} rounds; rates are medians of the runs, ratios medians of same-round ratios; "
          f"lark {lark_version}, Python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    print(f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after (other work makes rates noisy)")
    print(f"first build: PLY lexer and LALR tables {build_s['scl'] * 1000:.0f} ms (once per process), "
          f"lark.Lark {build_s['lark'] * 1000:.0f} ms")
    print()
    print(f"{'contender':<32} {'statements':>11} {'median s':>8} {'stmts/s':>10} {'ratio (median)':>18}  target")
    print("-" * 106)
    for key in ("scl", "lark", "scl_lines", "lark_lines"):
        rate = median_rate(runs[key])
        ratio = target = ""
        if key in paired:
            ratio = f"PLY/lark = {paired[key][0]:.2f}x"
            target = verdict("vs_lark", summary["vs_lark"]) if key == "lark" else "(info)"
        print(f"{contenders[key][0]:<32} {n:>11,} {n / rate:>8.3f} {rate:>10,.0f} {ratio:>18}  {target}".rstrip())
        print(f"{'':<32} runs: {', '.join(f'{r.rate:,.0f}' for r in runs[key])} stmts/s")
        if key in paired:
            print(f"{'':<32} PLY/lark per round: {rounds_text(paired[key][1])} (median {paired[key][0]:.2f})")
    print("-" * 106)
    return finish(TARGETS, summary, args.check)


if __name__ == "__main__":
    sys.exit(main())
