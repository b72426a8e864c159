"""chronopipe validate: checks over merged captures, the report in text, JSON and HTML, exit codes."""

import json
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from chronopipe.capture import CaptureWriter, read_frames
from chronopipe.capture.checks import AllowList, Malformed, OutOfOrder, Sliced
from chronopipe.capture.rules import build_checks
from chronopipe.capture.validate import validate

DATA = Path(__file__).parent / "data" / "captures"
HALVES = [DATA / "taps" / "ssh.client-side-half-duplex.pcap", DATA / "taps" / "ssh.server-side-half-duplex.pcap"]
ONLY_BASIC = 'CHECKS = {"tcp": False, "duplicates": False, "clock": False}\n'


def chronopipe(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chronopipe.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def rules_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rules.py"
    path.write_text(text)
    return path


def udp_frame(payload: bytes, sport: int = 4000, dport: int = 5000) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, bytes([10, 0, 0, 1]),
                     bytes([10, 0, 0, 2]))
    return bytes(6) + bytes(5) + b"\x01" + b"\x08\x00" + ip + udp


def write_capture(path: Path, payloads: list[bytes], start_ns: int = 1_700_000_000_000_000_000) -> Path:
    with CaptureWriter(path) as out:
        for i, payload in enumerate(payloads):
            frame = udp_frame(payload)
            out.write((start_ns + i * 1_000_000, path.name, 0, i + 1, len(frame), len(frame), 1, frame))
    return path


def test_validate_runs_every_check_over_the_merged_taps():
    report = validate(HALVES, [OutOfOrder(), Malformed(), Sliced()])
    assert report.packets == 838 + 832 and [c.status for c in report.checks] == ["pass", "pass", "pass"]
    assert [s.packets for s in report.files] == [838, 832]


def test_a_failed_check_fails_the_report_with_examples():
    report = validate(HALVES, [AllowList(hosts=["10.0.0.0/8"])])
    [hosts] = report.checks
    assert hosts.status == "fail" and not report.passed
    assert hosts.examples[0].file == HALVES[0].name and hosts.examples[0].frame == 1


def test_the_timeline_counts_every_packet_per_tap():
    report = validate(HALVES, [OutOfOrder()])
    assert {source: sum(row) for source, row in report.timeline.items()} == {h.name: n for h, n in
                                                                             zip(HALVES, (838, 832), strict=True)}


def test_scl_payloads_become_matchable_fields(tmp_path):
    capture = write_capture(tmp_path / "cmd.pcap", [b"cmd=move(axis=x speed=1.5)", b"cmd=stop", b"cmd=(broken"])
    seen: list = []
    report = validate([capture], [Malformed()], scl_port=5000,
                      rules=lambda em: em.register(seen.append, {"scl.cmd.speed": lambda v: v > 1}))
    assert report.packets == 3 and len(seen) == 1 and str(seen[0]["scl"]["cmd"]["speed"]) == "1.5"


def test_the_command_line_passes_with_exit_status_0(tmp_path):
    result = chronopipe("validate", *HALVES, "--rules", rules_file(tmp_path, ONLY_BASIC))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED: 0 of 3 checks failed" in result.stdout


def test_a_custom_rule_that_finds_something_fails_the_run_with_exit_status_1(tmp_path):
    rule = "em.register(lambda r: 'SYN to 22', {'tcp.dport': 22, 'tcp.flags': 2}, {'name': 'ssh-syn'})"
    rules = rules_file(tmp_path, ONLY_BASIC + f"def rules(em):\n    {rule}\n")
    result = chronopipe("validate", *HALVES, "--rules", rules)
    assert result.returncode == 1
    assert "FAIL          custom           ssh-syn:" in result.stdout
    assert f"{HALVES[0].name}:1 @1324071333.493287000: ssh-syn: SYN to 22" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["nope.pcap"], "no such file"),
    ([DATA / "linktypes" / "solaris.snoop"], "not a pcap or pcapng file"),
    ([HALVES[0], "--rules", DATA / "SOURCES.md"], "expected .py, .yml or .yaml"),
    ([HALVES[0], "--rules", "rules.py"], "no such file"),
    ([HALVES[0], "--offset", "x=1"], "FILE=SECONDS"),
    ([HALVES[0], "--check-processes", "-1"], "--check-processes is 0 or more"),
])
def test_usage_errors_and_unreadable_input_exit_with_status_2(args, message):
    result = chronopipe("validate", *args)
    assert result.returncode == 2 and message in result.stderr


def test_an_unknown_check_in_the_rules_is_a_usage_error(tmp_path):
    result = chronopipe("validate", HALVES[0], "--rules", rules_file(tmp_path, 'CHECKS = {"speling": {}}\n'))
    assert result.returncode == 2 and "unknown check(s) speling" in result.stderr


def test_the_json_report_has_a_stable_schema(tmp_path):
    out = tmp_path / "report.json"
    chronopipe("validate", *HALVES, "--rules", rules_file(tmp_path, ONLY_BASIC), "--json", out)
    report = json.loads(out.read_text())
    assert report["schema"] == "chronopipe.validate/1" and report["passed"] is True
    assert set(report) >= {"packets", "seconds", "packets_per_s", "late", "files", "checks", "timeline"}
    assert [c["name"] for c in report["checks"]] == ["out_of_order", "malformed", "snaplen"]
    assert set(report["files"][0]) >= {"name", "packets", "first_ns", "last_ns", "steps_back", "damage"}


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (./requirements.sh installs it where apt-get "
                    "can)")
def test_the_html_report_renders_the_timeline_and_every_check_in_a_browser(tmp_path):
    page = tmp_path / "report.html"
    rules = rules_file(tmp_path, ONLY_BASIC + 'CHECKS["hosts"] = {"hosts": ["10.0.0.0/8"]}\n')
    chronopipe("validate", *HALVES, "--rules", rules, "--html", page)
    dom = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=90).stdout
    assert '<svg id="timeline"' in dom and dom.count('class="tap"') == 2
    for name, status in [("out_of_order", "pass"), ("malformed", "pass"), ("snaplen", "pass"), ("hosts", "fail")]:
        assert f'data-check="{name}" data-status="{status}"' in dom
    assert 'id="verdict" class="FAILED"' in dom


# -- each problem capture trips the check named for it, with the reference tools' counts ------
# duplicates: `editcap -w 0.001 ssh-dups.pcap out` drops 280 (capinfos -c before and after);
# tcp: `tshark -r F -Y tcp.analysis.lost_segment | wc -l` gives 1;
# out_of_order: SOURCES.md "back" column (a Decimal walk over the timestamps), 1 step back;
# snaplen: `capinfos`/SOURCES.md "trunc" column, 691 of 878 packets cut short;
# malformed: tshark says "cut short in the middle of a packet" (7 stray bytes after frame 1).
@pytest.mark.parametrize(("name", "check", "status", "counts"), [
    ("dups/ssh-dups.pcap", "duplicates", "fail", {"within_tap": 280}),
    ("gaps/unidirectional_tcp_stream_with_missing_packet.pcap", "tcp", "fail", {"gaps": 1}),
    ("ooo/mptcp-v0.pcap", "out_of_order", "fail", {"steps_back": 1}),
    ("snaplen/tcp-timestamp.pcap", "snaplen", "not checkable", {"sliced": 691, "packets": 878}),
    ("truncated/truncated_dns_2.pcap", "malformed", "fail", {"damage": 1}),
])
def test_each_problem_capture_trips_the_check_named_for_it(name, check, status, counts):
    report = validate([DATA / name], build_checks())
    result = {c.name: c for c in report.checks}[check]
    assert result.status == status and {k: result.counts[k] for k in counts} == counts


# `tshark -2 -r dns_icmp.pcap -Y dns.flags.response==1 -T fields -e dns.time`: 5 answers,
# 5.783, 73.976, 143.634, 187.949, 413.905 ms; `-Y 'icmp.type==8'` 12, `icmp.type==0` 10,
# `-2 -Y icmp.resp_not_found` 2 (requests never answered).
def test_request_response_pairing_gives_tsharks_answers_and_latencies():
    dns = {"name": "dns", "request": {"udp.dport": 53}, "response": {"udp.sport": 53},
           "request_key": ["ip.src", "udp.sport"], "response_key": ["ip.dst", "udp.dport"]}
    ping = {"name": "ping", "request": {"icmp.type": 8}, "response": {"icmp.type": 0},
            "request_key": ["ip.dst", "icmp.id", "icmp.seq"], "response_key": ["ip.src", "icmp.id", "icmp.seq"],
            "timeout": 5.0}
    report = validate([DATA / "reqresp" / "dns_icmp.pcap"], build_checks({"reqresp": [dns, ping]}))
    results = {c.name: c for c in report.checks}
    assert results["dns"].status == "pass"
    assert {k: results["dns"].counts[k] for k in ("requests", "answered", "unanswered", "unsolicited", "p50_ms",
                                                  "max_ms")} == {"requests": 5, "answered": 5, "unanswered": 0,
                                                                 "unsolicited": 0, "p50_ms": 143.634,
                                                                 "max_ms": 413.905}
    assert results["ping"].status == "fail"
    assert {k: results["ping"].counts[k] for k in ("requests", "answered", "unanswered")} == \
        {"requests": 12, "answered": 10, "unanswered": 2}


# -- checks split across processes ----------------------------------------------------------
@pytest.mark.parametrize("captures", [
    pytest.param(HALVES, id="two taps"),
    pytest.param([DATA / "dups" / "ssh-dups.pcap"], id="duplicates"),
    pytest.param([DATA / "gaps" / "unidirectional_tcp_stream_with_missing_packet.pcap"], id="tcp gap"),
    pytest.param([DATA / "ooo" / "mptcp-v0.pcap", DATA / "ooo" / "handshake-reorder.pcap"], id="out of order"),
])
@pytest.mark.parametrize("hosts", [1, 2])
def test_checks_split_across_processes_give_the_report_of_one_process(captures, hosts):
    """Every check sees every packet in merge order wherever it runs: the same verdicts, counts, examples."""
    def checks_of(report):
        return [c.as_dict() for c in report.checks]

    alone = validate(captures, build_checks(files=len(captures)), check_processes=0)
    split = validate(captures, build_checks(files=len(captures)), check_processes=hosts)
    assert checks_of(split) == checks_of(alone) and split.packets == alone.packets


def test_a_check_run_in_a_check_host_brings_its_state_home():
    checks = build_checks()
    validate([DATA / "dups" / "ssh-dups.pcap"], checks, check_processes=1)
    [dups] = [c for c in checks if c.name == "duplicates"]
    assert dups.packets > 0 and dups.within_tap == 280


class _Exploding(OutOfOrder):
    name = "exploding"
    portable = True

    def attach(self, events):
        events.register(self._boom, None, {"name": "exploding"})

    def _boom(self, record):
        if record["index"] == 5:
            raise ValueError(f"boom at frame {record['index']}")


def test_a_check_that_raises_in_a_check_host_fails_the_run_with_its_error():
    from chronopipe.actors.errors import ActorError
    from chronopipe.capture.checkhost import partition

    checks = [Malformed(), Sliced(), _Exploding()]
    _, there = partition(checks, 1)
    assert checks[2] in there
    with pytest.raises(ActorError, match="boom at frame 5"):
        validate(HALVES, checks, check_processes=1)


def long_taps(tmp_path: Path) -> list[Path]:
    """Two taps of 377 real packets again and again, a microsecond apart: 150,800 each (a second or two)."""
    frames = list(read_frames(DATA / "dups" / "ssh-dups.pcap"))
    taps = []
    for tap in "AB":
        taps.append(tmp_path / f"tap{tap}.pcap")
        with CaptureWriter(taps[-1]) as out:
            for i in range(400 * len(frames)):
                _, _, _, caplen, wirelen, linktype, data = frames[i % len(frames)]
                out.write((1_700_000_000_000_000_000 + i * 1000, tap, 0, i + 1, caplen, wirelen, linktype, data))
    return taps


class _ExplodingHere(_Exploding):
    portable = False


def test_a_check_that_raises_in_the_main_process_stops_the_readers_and_hosts_at_once(tmp_path):
    from chronopipe.actors.errors import ActorError

    taps = long_taps(tmp_path)
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    with pytest.raises(ActorError, match="boom at frame 5"):
        validate(taps, [Malformed(), _ExplodingHere()], check_processes=1)
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        left = [p for p in me.children(recursive=True) if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE]
        if not left:
            break
        time.sleep(0.02)
    assert not left, "readers or a check host went on after the run failed"


@pytest.mark.parametrize(("signum", "status"), [
    pytest.param(signal.SIGINT, 130, id="Ctrl-C: exit status 130"),
    pytest.param(signal.SIGTERM, 143, id="SIGTERM: exit status 143, outputs discarded first"),
])
def test_a_signal_stops_a_validation_run_promptly_with_no_process_left(tmp_path, signum, status):
    taps = long_taps(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "chronopipe.cli", "validate", *map(str, taps),
                             "--check-processes", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        me = psutil.Process(proc.pid)
        while len(me.children()) < 3 and time.monotonic() < deadline:  # 2 readers and a check host
            time.sleep(0.02)
        children = me.children(recursive=True)
        assert len(children) >= 3 and proc.poll() is None, "the run ended or never started its processes"
        proc.send_signal(signum)
        sent = time.monotonic()
        _, stderr = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == status, stderr
    assert time.monotonic() - sent < 3 and "Traceback" not in stderr
    gone_by = time.monotonic() + 2
    while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children) and time.monotonic() < gone_by:
        time.sleep(0.05)
    assert not [c.pid for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


def test_a_capture_with_stamps_past_int64_nanoseconds_is_validated_not_a_traceback():
    # pcapng-example.pcapng has a packet whose timestamp is far in the future (its interface's
    # resolution makes it larger than int64 nanoseconds): still a packet, out of order
    report = validate([str(DATA / "pcapng" / "pcapng-example.pcapng")], build_checks())
    assert report.packets == 159
    assert [c.status for c in report.checks if c.name == "out_of_order"] == ["fail"]
