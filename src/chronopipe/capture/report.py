"""A validation report as text (stdout), JSON (``Report.as_dict``) or one self-contained HTML page.

The HTML page needs nothing from the network: the timeline of packets per second per tap is an
inline SVG drawn here, and every check is a table row with its verdict, counts and examples.
"""

from __future__ import annotations

import html
import json
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


def _timeline_svg(report: Report, width: int = 900, height: int = 260) -> str:
    rows = report.timeline
    if not rows:
        return '<p id="timeline-empty">no packets</p>'
    per_second = 1e9 / report.bucket_ns
    top = max(max(row) for row in rows.values()) * per_second or 1
    n = len(next(iter(rows.values())))
    left, bottom = 60, 30
    plot_w, plot_h = width - left - 10, height - bottom - 10
    parts = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="packets per second per tap">',
             f'<line x1="{left}" y1="{10 + plot_h}" x2="{left + plot_w}" y2="{10 + plot_h}" stroke="#333"/>',
             f'<line x1="{left}" y1="10" x2="{left}" y2="{10 + plot_h}" stroke="#333"/>',
             f'<text x="{left - 5}" y="15" text-anchor="end" font-size="11">{top:,.0f}/s</text>',
             f'<text x="{left - 5}" y="{10 + plot_h}" text-anchor="end" font-size="11">0</text>',
             f'<text x="{left}" y="{height - 5}" font-size="11">{html.escape(_when(report.start_ns))}</text>']
    for i, (source, row) in enumerate(rows.items()):
        points = " ".join(f"{left + plot_w * j / max(1, n - 1):.1f},{10 + plot_h - plot_h * v * per_second / top:.1f}"
                          for j, v in enumerate(row))
        colour = COLOURS[i % len(COLOURS)]
        parts.append(f'<polyline class="tap" data-tap="{html.escape(source)}" fill="none" stroke="{colour}" '
                     f'stroke-width="1.5" points="{points}"/>')
        parts.append(f'<text x="{left + 10 + 160 * i}" y="{height - 5}" dx="200" font-size="11" fill="{colour}">'
                     f'{html.escape(source)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(report: Report, title: str = "chronopipe validation report") -> str:
    """One self-contained page: verdict, files, timeline of packets per second per tap, checks."""
    esc = html.escape
    files = "".join(
        f"<tr><td>{esc(s.name)}</td><td>{s.packets:,}</td><td>{esc(_when(s.first_ns))}</td>"
        f"<td>{s.span_ns / 1e9:.3f}</td><td>{s.steps_back}</td><td>{len(s.damage)}</td></tr>" for s in report.files)
    checks = "".join(
        f'<tr class="check {esc(c.status.replace(" ", "-"))}" data-check="{esc(c.name)}" data-status="{esc(c.status)}">'
        f"<td>{esc(c.name)}</td><td class=\"status\">{esc(c.status)}</td><td>{esc(c.summary)}</td>"
        f"<td><ul>{''.join(f'<li>{esc(str(f))}</li>' for f in c.examples[:5])}</ul></td></tr>" for c in report.checks)
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
<h2>Packets per second, per tap</h2>
{_timeline_svg(report)}
<h2>Files</h2>
<table id="files"><tr><th>file</th><th>packets</th><th>first packet</th><th>span s</th><th>steps back</th>
<th>damage</th></tr>{files}</table>
<h2>Checks</h2>
<table id="checks"><tr><th>check</th><th>status</th><th>summary</th><th>first examples</th></tr>{checks}</table>
<script type="application/json" id="report-data">{esc(to_json(report))}</script>
</body></html>
"""
