"""The HTML report as a person sees it: one panel per tap over the tap's own time span, with
labelled time ticks (real times), labelled rates, and no text drawn over other text.

The pages are rendered by headless Chromium; a script added to a copy of the page measures where
the browser put every label of the timeline, and --dump-dom brings the measures back.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chronopipe.capture import read_frames
from chronopipe.capture.rules import build_checks
from chronopipe.capture.validate import validate

DATA = Path(__file__).parent / "data" / "captures"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./requirements.sh installs "
                                                             "it where apt-get can)")
# (taps, their first packets' dates per SOURCES.md / capinfos): far apart, or each over years
CASES = {
    "bulk taps eight years apart": ["bulk/echo-connections.pcap.gz", "bulk/modbusBig.pcap"],
    "docs/captures.md example, two years apart": ["dups/ssh-dups.pcap",
                                                  "gaps/unidirectional_tcp_stream_with_missing_packet.pcap"],
    "ssh taps over three years": ["taps/ssh.client-side-half-duplex.pcap", "taps/ssh.server-side-half-duplex.pcap"],
}
MEASURE = """<script>
const boxes = [...document.querySelectorAll("#timeline text")].map(t => {
  const r = t.getBoundingClientRect();
  return {text: t.textContent, cls: t.getAttribute("class"), tap: t.closest("g.tap").dataset.tap,
          left: r.left, right: r.right, top: r.top, bottom: r.bottom};
});
const overlaps = [];
for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
  const a = boxes[i], b = boxes[j];
  if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom) overlaps.push([a.text, b.text]);
}
const out = document.createElement("pre");
out.id = "layout";
out.textContent = JSON.stringify({boxes, overlaps});
document.body.appendChild(out);
</script></body>"""


def render(page: Path) -> dict:
    """The timeline's labels where Chromium drew them, and the pairs of labels that overlap."""
    measured = page.with_name("measured.html")
    measured.write_text(page.read_text(encoding="utf-8").replace("</body>", MEASURE), encoding="utf-8")
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1000,1000",
                          "--dump-dom", measured.as_uri()], capture_output=True, text=True, timeout=90).stdout
    found = re.search(r'<pre id="layout">(.*?)</pre>', dom, re.S)
    assert found, dom[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&lt;", "<").replace("&gt;", ">")
                      .replace("&amp;", "&"))


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], dict]:
    """(the taps, the layout of their report's timeline) for ``chronopipe validate TAPS --html``."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (./requirements.sh installs it where apt-get can)")
    taps = [DATA / name for name in CASES[request.param]]
    page = tmp_path_factory.mktemp("report") / "report.html"
    done = subprocess.run([sys.executable, "-m", "chronopipe.cli", "validate", *map(str, taps), "--html", str(page)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return taps, render(page)


def labels(layout: dict, tap: str, cls: str) -> list[str]:
    return [box["text"] for box in layout["boxes"] if box["tap"] == tap and box["cls"] == cls]


def test_each_tap_has_a_panel_titled_with_its_name_in_the_order_of_the_files(case):
    taps, layout = case
    titles = [box["text"] for box in layout["boxes"] if box["cls"] == "panel-title"]
    assert titles == [tap.name for tap in taps]


def test_each_panel_has_several_time_ticks_that_are_real_times_in_order(case):
    taps, layout = case
    for tap in taps:
        ticks = labels(layout, tap.name, "x-tick")
        assert len(ticks) >= 3, (tap.name, ticks)
        assert all(re.fullmatch(r"\d\d:\d\d:\d\d(\.\d+)?|\d\d-\d\d \d\d:\d\d|\d{4}-\d\d-\d\d", t) for t in ticks), ticks
        assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)


def test_each_panel_caption_gives_the_first_packets_date_and_time(case):
    taps, layout = case
    for tap in taps:
        [caption] = labels(layout, tap.name, "x-caption")
        first = next(iter(read_frames(tap)))[0]  # each of these files is in timestamp order at its start
        assert datetime.fromtimestamp(first // 10**9, UTC).strftime("UTC, from %Y-%m-%d %H:%M:%S") in caption


def test_each_panel_labels_its_rates_and_the_top_is_not_zero(case):
    taps, layout = case
    for tap in taps:
        ticks = labels(layout, tap.name, "y-tick")
        assert ticks[0] == "0" and len(ticks) == 3, ticks
        assert all(re.fullmatch(r"[\d.]+[kM]?/s", t) and t != "0/s" for t in ticks[1:]), ticks


def test_no_label_of_the_timeline_is_drawn_over_another(case):
    _, layout = case
    assert layout["overlaps"] == []


# -- without a browser ------------------------------------------------------------------------
@pytest.mark.parametrize("names", list(CASES.values()), ids=list(CASES))
def test_each_taps_own_timeline_counts_every_packet_of_its_file_once(names):
    report = validate([DATA / name for name in names], build_checks(files=len(names)))
    assert {source: sum(row) for source, (_, _, row) in report.tap_timelines.items()} == \
        {s.name: s.packets for s in report.files}


def test_the_json_report_gives_each_taps_own_timeline():
    names = CASES["bulk taps eight years apart"]
    timeline = validate([DATA / name for name in names], build_checks(files=2)).as_dict()["timeline"]
    modbus = timeline["taps"]["modbusBig.pcap"]
    # capinfos: first packet 2013-10-16 23:55:44.641998, last 23:56:42.468566
    assert modbus["start_ns"] == 1_381_967_744_641_998_000
    assert modbus["start_ns"] + modbus["bucket_ns"] * len(modbus["packets"]) >= 1_381_967_802_468_566_000
