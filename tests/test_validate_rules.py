"""A rules file's callback that raises is a rule that failed: reported with its name, traceback,
the packet it first raised on and how many times it raised; the rest of the report stands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chronopipe.capture.checks import Malformed, OutOfOrder
from chronopipe.capture.rules import CustomFindings
from chronopipe.capture.validate import validate

DATA = Path(__file__).parent / "data" / "captures"
CLIENT, SERVER = DATA / "taps" / "ssh.client-side-half-duplex.pcap", DATA / "taps" / "ssh.server-side-half-duplex.pcap"
ONLY_BASIC = 'CHECKS = {"tcp": False, "duplicates": False, "clock": False}\n'
# tshark -r ssh.client-side-half-duplex.pcap -Y 'tcp.dstport==22' | wc -l: 838 (every packet);
# -Y 'tcp.flags==0x002': 22 SYNs, the first at frame 1, the second at frame 26.
RULES = ONLY_BASIC + '''
def port_ratio(record):
    return 100 // (record["tcp"]["dport"] - 22)  # a bug: every packet here goes to port 22


def second_syn(record):
    if record["index"] == 26:
        raise KeyError("no such field")


def rules(em):
    em.register(port_ratio, {"tcp.dport": 22}, {"name": "port-ratio"})
    em.register(second_syn, {"tcp.dport": 22, "tcp.flags": 2}, {"name": "second-syn"})
    em.register(lambda r: "SYN to 22", {"tcp.dport": 22, "tcp.flags": 2}, {"name": "ssh-syn"})
'''


def chronopipe(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "chronopipe.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict]:
    """``chronopipe validate`` of the two ssh taps with RULES, and its JSON report."""
    folder = tmp_path_factory.mktemp("rules")
    (folder / "rules.py").write_text(RULES)
    done = chronopipe("validate", CLIENT, SERVER, "--rules", folder / "rules.py", "--json", folder / "report.json")
    return done, json.loads((folder / "report.json").read_text())


def rule_errors(report: dict) -> dict:
    [custom] = [c for c in report["checks"] if c["name"] == "custom"]
    return custom["counts"]["rule_errors"]


def test_a_rule_that_raises_fails_the_run_with_exit_status_1_not_a_crash(run):
    done, report = run
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and report["passed"] is False


def test_the_other_checks_and_rules_are_still_reported(run):
    report = run[1]
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "out_of_order": "pass", "malformed": "pass", "snaplen": "pass", "custom": "fail"}
    [custom] = [c for c in report["checks"] if c["name"] == "custom"]
    assert custom["counts"]["ssh-syn"] == 22 and report["packets"] == 838 + 832


@pytest.mark.parametrize(("rule", "count", "frame", "exception"), [
    ("port-ratio", 838, 1, "ZeroDivisionError: integer division or modulo by zero"),
    ("second-syn", 1, 26, "KeyError: 'no such field'"),
])
def test_each_failing_rule_has_its_count_first_packet_and_exception(run, rule, count, frame, exception):
    error = rule_errors(run[1])[rule]
    assert (error["count"], error["file"], error["frame"], error["exception"]) == (count, CLIENT.name, frame, exception)


@pytest.mark.parametrize(("rule", "line"), [("port-ratio", "in port_ratio"), ("second-syn", "in second_syn")])
def test_the_traceback_is_the_rules_own_code(run, rule, line):
    traceback = rule_errors(run[1])[rule]["traceback"]
    assert traceback.startswith("Traceback (most recent call last):\n")
    assert "rules.py\", line" in traceback and line in traceback and "chronopipe" not in traceback


def test_the_text_report_names_the_rule_its_count_packet_and_traceback(run):
    out = run[0].stdout
    assert "FAIL          custom" in out
    assert f"custom: rule port-ratio raised 838 times; first on {CLIENT.name}:1 @1324071333.493287000:" in out
    assert f"custom: rule second-syn raised once; first on {CLIENT.name}:26 @" in out
    assert "    return 100 // (record[\"tcp\"][\"dport\"] - 22)" in out


def test_validate_reports_a_raising_callback_as_a_failed_rule_and_checks_every_packet():
    custom = CustomFindings()

    def rules(em):
        em.register(lambda record: 1 / 0, {"tcp.dport": 22}, {"name": "divide"})

    report = validate([CLIENT, SERVER], [OutOfOrder(), Malformed(), custom], rules=lambda em: rules(custom.view(em)))
    result = {c.name: c for c in report.checks}
    assert report.packets == 838 + 832 and result["out_of_order"].status == "pass"
    assert result["custom"].status == "fail" and custom.errors["divide"].count == 838
    assert "divide: 0 found, and the rule raised 838 times (first on" in result["custom"].summary
