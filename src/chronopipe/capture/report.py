"""A validation report as text (stdout), JSON (``Report.as_dict``) or one self-contained HTML page.

The HTML page needs nothing from the network: the packets per second of each tap are an inline
SVG panel drawn here, over that tap's own time span (taps may be hours or years apart), with a
labelled rate axis and a time axis in UTC; every check is a table row with its verdict, counts
and examples (and the traceback of a rule that raised).
"""

from __future__ import annotations

import html
import json
import math
from datetime import UTC, datetime
from typing import Any

from .checks.base import CheckResult
from .validate import Report

__all__ = ["to_html", "to_json", "to_text"]

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]


def _when(ts_ns: int | None) -> str:
    if ts_ns is None:
        return "-"
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S") + f".{nanos:09d}"
    except (OverflowError, OSError, ValueError):
        return f"{seconds}.{nanos:09d}"


def _seconds(ts_ns: int) -> str:
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    return f"{seconds}.{nanos:09d}"


def _rule_errors(check: CheckResult) -> dict[str, dict[str, Any]]:
    """The rules of a rules file that raised (the ``custom`` check's ``counts["rule_errors"]``)."""
    errors = check.counts.get("rule_errors") if isinstance(check.counts, dict) else None
    return errors if isinstance(errors, dict) else {}


def to_text(report: Report) -> str:
    """The summary a person reads: files, then one line per check, then the first examples."""
    lines = []
    width = max([len(s.name) for s in report.files] + [6])
    lines.append(f"{'file':<{width}} {'packets':>10} {'span s':>12} {'pkt/s':>10} {'back':>6} {'damage':>6}")
    for s in report.files:
        span = s.span_ns / 1e9
        rate = f"{s.packets / span:,.0f}" if span else "-"
        lines.append(f"{s.name:<{width}} {s.packets:>10,} {span:>12.3f} {rate:>10} {s.steps_back:>6} "
                     f"{len(s.damage):>6}")
    lines.append("")
    for check in report.checks:
        lines.append(f"{check.status.upper():<13} {check.name:<16} {check.summary}")
    for check in report.checks:
        if check.status == "fail" and check.examples:
            lines.append(f"\n{check.name}: first examples")
            lines.extend(f"  {finding}" for finding in check.examples[:5])
    for check in report.checks:
        for rule, error in _rule_errors(check).items():
            times = "once" if error["count"] == 1 else f"{error['count']:,} times"
            lines.append(f"\n{check.name}: rule {rule} raised {times}; first on {error['file']}:{error['frame']} "
                         f"@{_seconds(error['ts_ns'])}:")
            lines.extend(f"  {line}" for line in error["traceback"].rstrip().splitlines())
    verdict = "PASSED" if report.passed else "FAILED"
    rate = report.packets / report.seconds if report.seconds else 0
    lines.append(f"\n{verdict}: {sum(c.status == 'fail' for c in report.checks)} of {len(report.checks)} checks "
                 f"failed; {report.packets:,} packets in {report.seconds:.2f} s ({rate:,.0f} packets/s)")
    return "\n".join(lines)


def to_json(report: Report, **kwargs: Any) -> str:
    return json.dumps(report.as_dict(), **kwargs)


#: Time steps between the ticks of a panel's time axis, in nanoseconds: 1, 2, 5 times powers of
#: ten below a second, then the steps of a clock and a calendar (a "month" of 30 days, a year of 365).
_SECOND, _DAY = 1_000_000_000, 86_400_000_000_000
TIME_STEPS = ([m * 10 ** e for e in range(3, 9) for m in (1, 2, 5)]
              + [s * _SECOND for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800,
                                       21600, 43200)]
              + [d * _DAY for d in (1, 2, 7, 14, 30, 91, 182, 365, 730, 1826, 3652, 36524)])
MAX_TICKS = 7
PANEL_HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 150, 78, 20, 24, 44


def time_ticks(start_ns: int, end_ns: int) -> list[tuple[int, str]]:
    """(timestamp, label) of the time axis from ``start_ns`` to ``end_ns``: at most MAX_TICKS, at
    multiples of one step of TIME_STEPS, labelled in UTC as finely as the step needs.

    >>> [label for _, label in time_ticks(1_381_967_744_641_998_000, 1_381_967_802_468_566_000)]
    ['23:55:50', '23:56:00', '23:56:10', '23:56:20', '23:56:30', '23:56:40']
    >>> [label for _, label in time_ticks(1_564_085_940_000_000_000, 1_564_085_940_300_000_000)]
    ['20:19:00.00', '20:19:00.05', '20:19:00.10', '20:19:00.15', '20:19:00.20', '20:19:00.25', '20:19:00.30']
    >>> [label for _, label in time_ticks(1_627_225_020_686_470_000, 1_627_225_027_180_797_000)]
    ['14:57:01', '14:57:02', '14:57:03', '14:57:04', '14:57:05', '14:57:06', '14:57:07']
    """
    span = max(0, end_ns - start_ns)
    step = next((s for s in TIME_STEPS if span // s < MAX_TICKS), TIME_STEPS[-1])
    first = -(-start_ns // step) * step
    ticks = list(range(first, end_ns + 1, step)) or [start_ns]
    return [(ts, _tick_label(ts, step)) for ts in ticks]


def _tick_label(ts_ns: int, step: int) -> str:
    seconds, nanos = divmod(ts_ns, _SECOND)
    try:
        when = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ts_ns / _SECOND:.9g}"
    if step >= _DAY:
        return when.strftime("%Y-%m-%d")
    if step >= 3600 * _SECOND:
        return when.strftime("%m-%d %H:%M")
    if step >= _SECOND:
        return when.strftime("%H:%M:%S")
    digits = len(f"{step / _SECOND:.9f}".rstrip("0").split(".")[1])  # 0.05 s: 2
    return when.strftime("%H:%M:%S") + f".{nanos:09d}"[:digits + 1]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 times a power of ten that is at least ``value`` (> 0).

    >>> [nice_ceiling(v) for v in (990 * 30.8, 0.00017, 8, 1)]
    [50000, 0.0002, 10, 1]
    """
    power = 10.0 ** math.floor(math.log10(value))
    for m in (1, 2, 5, 10):
        if m * power >= value * (1 - 1e-9):
            nice = m * power
            return int(nice) if nice >= 1 else float(f"{nice:.1g}")
    raise AssertionError("unreachable")


def rate_label(per_second: float) -> str:
    """A rate for a person (three significant digits): ``0``, ``250/s``, ``1.5k/s``, ``2M/s``.

    >>> [rate_label(r) for r in (0, 250, 1500, 30488.5, 2e6, 0.0002, 266.314)]
    ['0', '250/s', '1.5k/s', '30.5k/s', '2M/s', '0.0002/s', '266/s']
    """
    if per_second == 0:
        return "0"
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if per_second >= size:
            return f"{per_second / size:.3g}{unit}/s"
    return f"{per_second:.3g}/s"


def _tap_rows(report: Report) -> dict[str, tuple[int, int, list[int]]]:
    """Each tap's own (start, bucket, packets per bucket), in the order of the files; the shared
    timeline for reports without them."""
    if report.tap_timelines:
        order = {s.name: i for i, s in enumerate(report.files)}
        return dict(sorted(report.tap_timelines.items(), key=lambda item: order.get(item[0], len(order))))
    if report.start_ns is None:
        return {}
    return {source: (report.start_ns, report.bucket_ns, row) for source, row in report.timeline.items()}


def _panel(i: int, source: str, start: int, bucket: int, row: list[int], width: int) -> str:
    """One tap's panel: its title, a rate axis with labelled ticks, a time axis in UTC, its line."""
    esc = html.escape
    colour = COLOURS[i % len(COLOURS)]
    plot_w, plot_h = width - LEFT - RIGHT, PANEL_HEIGHT - TOP - BOTTOM
    y0 = i * PANEL_HEIGHT
    rates = [n * _SECOND / bucket for n in row]
    top = nice_ceiling(max(rates) or 1)
    end = start + bucket * len(row)
    base = y0 + TOP + plot_h

    def x(ts: float) -> float:
        return LEFT + plot_w * (ts - start) / max(1, end - start)

    def y(rate: float) -> float:
        return base - plot_h * rate / top

    parts = [f'<g class="tap" data-tap="{esc(source)}">',
             f'<text class="panel-title" x="{LEFT}" y="{y0 + 15}" font-size="13" font-weight="bold" '
             f'fill="{colour}">{esc(source)}</text>',
             f'<text class="panel-note" x="{LEFT + plot_w}" y="{y0 + 15}" font-size="11" text-anchor="end" '
             f'fill="#555">{sum(row):,} packets, peak {esc(rate_label(max(rates)))} '
             f'(buckets of {esc(_duration(bucket))})</text>',
             f'<rect x="{LEFT}" y="{y0 + TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>']
    for rate in (0, top / 2, top):
        parts.append(f'<line x1="{LEFT - 4}" y1="{y(rate):.1f}" x2="{LEFT + plot_w}" y2="{y(rate):.1f}" '
                     f'stroke="#ddd"/>')
        parts.append(f'<text class="y-tick" x="{LEFT - 6}" y="{y(rate) + 4:.1f}" text-anchor="end" '
                     f'font-size="11">{esc(rate_label(rate))}</text>')
    for ts, label in time_ticks(start, end):
        parts.append(f'<line x1="{x(ts):.1f}" y1="{base}" x2="{x(ts):.1f}" y2="{base + 4}" stroke="#333"/>')
        parts.append(f'<text class="x-tick" x="{x(ts):.1f}" y="{base + 16}" text-anchor="middle" '
                     f'font-size="11">{esc(label)}</text>')
    parts.append(f'<text class="x-caption" x="{LEFT}" y="{base + 32}" font-size="11" fill="#555">UTC, from '
                 f'{esc(_when(start))} for {esc(_duration(end - start))}</text>')
    points = " ".join(f"{x(start + bucket * j):.1f},{y(r):.1f} {x(start + bucket * (j + 1)):.1f},{y(r):.1f}"
                      for j, r in enumerate(rates))  # steps: a bucket's rate holds over the bucket
    parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/></g>')
    return "".join(parts)


def _duration(ns: int) -> str:
    """``57.8 s``, ``3.2 min``, ``2.1 h``, ``3.1 years`` (three significant digits)."""
    seconds = ns / _SECOND
    for unit, size in (("years", 365 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s" if seconds >= 0.001 else f"{seconds * 1e6:.3g} us"


def _timeline_svg(report: Report, width: int = 900) -> str:
    """One panel per tap, stacked, each over the tap's own time span (taps may be years apart)."""
    rows = _tap_rows(report)
    if not rows:
        return '<p id="timeline-empty">no packets</p>'
    panels = [_panel(i, source, *row, width) for i, (source, row) in enumerate(rows.items())]
    return (f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
            f'height="{PANEL_HEIGHT * len(panels)}" font-family="sans-serif" role="img" '
            f'aria-label="packets per second, one panel per tap">{"".join(panels)}</svg>')


def _html_rule_errors(check: CheckResult) -> str:
    """The rules that raised, each with its count, first packet and traceback (folded)."""
    parts = []
    for rule, error in _rule_errors(check).items():
        times = "once" if error["count"] == 1 else f"{error['count']:,} times"
        parts.append(f'<details class="rule-error" data-rule="{html.escape(rule)}"><summary>rule '
                     f"{html.escape(rule)} raised {times}; first on {html.escape(str(error['file']))}:"
                     f"{error['frame']}: {html.escape(error['exception'])}</summary>"
                     f"<pre>{html.escape(error['traceback'])}</pre></details>")
    return "".join(parts)


def to_html(report: Report, title: str = "chronopipe validation report", *, status_url: str | None = None) -> str:
    """One self-contained page: verdict, files, timeline of packets per second per tap, checks.
    ``status_url``: the live run's control API (``validate --control``), linked under the verdict."""
    esc = html.escape
    live = (f'<p id="live-status">live status: <a href="{esc(status_url)}">{esc(status_url)}</a></p>\n'
            if status_url else "")
    files = "".join(
        f"<tr><td>{esc(s.name)}</td><td>{s.packets:,}</td><td>{esc(_when(s.first_ns))}</td>"
        f"<td>{s.span_ns / 1e9:.3f}</td><td>{s.steps_back}</td><td>{len(s.damage)}</td></tr>" for s in report.files)
    checks = "".join(
        f'<tr class="check {esc(c.status.replace(" ", "-"))}" data-check="{esc(c.name)}" data-status="{esc(c.status)}">'
        f"<td>{esc(c.name)}</td><td class=\"status\">{esc(c.status)}</td><td>{esc(c.summary)}</td>"
        f"<td><ul>{''.join(f'<li>{esc(str(f))}</li>' for f in c.examples[:5])}</ul>{_html_rule_errors(c)}</td></tr>"
        for c in report.checks)
    verdict = "PASSED" if report.passed else "FAILED"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }}
.pass .status {{ color: #2a7a2a; }} .fail .status {{ color: #b00; font-weight: bold; }}
.not-checkable .status {{ color: #777; }} #verdict.FAILED {{ color: #b00; }} #verdict.PASSED {{ color: #2a7a2a; }}
</style></head><body>
<h1>{esc(title)}</h1>
<p id="verdict" class="{verdict}">{verdict}: {sum(c.status == "fail" for c in report.checks)} of
{len(report.checks)} checks failed; {report.packets:,} packets in {report.seconds:.2f} s</p>
{live}<h2>Packets per second, per tap</h2>
{_timeline_svg(report)}
<h2>Files</h2>
<table id="files"><tr><th>file</th><th>packets</th><th>first packet</th><th>span s</th><th>steps back</th>
<th>damage</th></tr>{files}</table>
<h2>Checks</h2>
<table id="checks"><tr><th>check</th><th>status</th><th>summary</th><th>first examples</th></tr>{checks}</table>
<script type="application/json" id="report-data">{esc(to_json(report))}</script>
</body></html>
"""
