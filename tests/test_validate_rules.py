"""A rules file's callback that raises is a rule that failed: reported with its name, traceback,
the packet it first raised on and how many times it raised; the rest of the report stands."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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


# -- rules that fail otherwise than by raising an Exception; rules files that cannot be used ------------------------
HOSTILE = {
    "hang.py": ONLY_BASIC + "import time\n\n\ndef hang(record):\n    time.sleep(30)\n\n\ndef rules(em):\n"
               "    em.register(hang, {'tcp.dport': 22, 'tcp.flags': 2}, {'name': 'hang', 'timeout': 0.05})\n"
               "    em.register(lambda r: 'SYN to 22', {'tcp.dport': 22, 'tcp.flags': 2}, {'name': 'ssh-syn'})\n",
    "base.py": ONLY_BASIC + "class Weird(BaseException):\n    pass\n\n\ndef cb(record):\n    raise Weird('base')\n\n\n"
               "def rules(em):\n    em.register(cb, {'tcp.dport': 22}, {'name': 'base'})\n",
    "exit.py": ONLY_BASIC + "import sys\n\n\ndef rules(em):\n"
               "    em.register(lambda r: sys.exit(5), {'tcp.dport': 22}, {'name': 'exiter'})\n",
    "kbi.py": ONLY_BASIC + "def cb(record):\n    raise KeyboardInterrupt\n\n\n"
              "def rules(em):\n    em.register(cb, {'tcp.dport': 22}, {'name': 'kbi'})\n",
    "bad.yml": "checks:\n  tcp: [unclosed\n",
    "bin.yml": "\xff\xfe garbage",
    "imp.py": 'raise RuntimeError("boom at import")\n',
    "rr.py": 'def rules(em):\n    raise ValueError("rules() itself raised")\n',
    "exit_at_import.py": "import sys\nsys.exit(3)\n",
    "badtimeout.py": "def rules(em):\n    em.register(print, {'tcp.dport': 22}, {'name': 'x', 'timeout': -1})\n",
}


def hostile(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(HOSTILE[name].encode("latin-1" if name == "bin.yml" else "utf-8"))
    return path


def test_a_rule_past_its_timeout_is_a_failed_rule_not_the_end_of_the_run(tmp_path):
    done = chronopipe("validate", CLIENT, "--rules", hostile(tmp_path, "hang.py"), "--json", tmp_path / "r.json")
    assert done.returncode == 1, done.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert {c["name"]: c["status"] for c in report["checks"]} == {
        "out_of_order": "pass", "malformed": "pass", "snaplen": "pass", "custom": "fail"}
    [custom] = [c for c in report["checks"] if c["name"] == "custom"]
    error = custom["counts"]["rule_errors"]["hang"]
    assert (error["count"], error["timeouts"], error["file"], error["frame"]) == (22, 22, CLIENT.name, 1)
    assert error["exception"].startswith("TimeoutError: no result within its timeout of 0.05 s")
    assert "in hang\n" in error["traceback"] and "time.sleep(30)" in error["traceback"]  # where it hung
    assert custom["counts"]["ssh-syn"] == 22 and report["packets"] == 838  # the other rule went on
    assert "hang: 0 found, and the rule timed out 22 times (first on" in done.stdout
    assert "failed: TimeoutError" not in done.stderr and "'payload'" not in done.stderr


@pytest.mark.parametrize(("name", "rule", "exception"), [
    ("base.py", "base", "Weird: base"),
    ("exit.py", "exiter", "SystemExit: 5"),
    ("kbi.py", "kbi", "KeyboardInterrupt"),  # raised by the rule's code, no SIGINT: the rule's failure
])
def test_a_rule_raising_a_base_exception_is_a_failed_rule(tmp_path, name, rule, exception):
    done = chronopipe("validate", CLIENT, "--rules", hostile(tmp_path, name), "--json", tmp_path / "r.json")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "interrupted" not in done.stderr
    error = rule_errors(json.loads((tmp_path / "r.json").read_text()))[rule]
    assert (error["count"], error["frame"]) == (838, 1) and error["exception"].endswith(exception)


@pytest.mark.parametrize(("name", "message"), [
    ("bad.yml", "bad.yml:3:1: YAML syntax error: expected ',' or ']', but got '<stream end>' "
                "(while parsing a flow sequence at 2:8)"),
    ("bin.yml", "bin.yml: not UTF-8 text (byte 0xff at offset 0)"),
    ("imp.py", "imp.py: raised RuntimeError: boom at import (line 1) when loaded"),
    ("exit_at_import.py", "exit_at_import.py: raised SystemExit: 3 (line 2) when loaded"),
    ("rr.py", "rr.py: rules(em) raised ValueError: rules() itself raised (line 2)"),
    ("badtimeout.py", "badtimeout.py: rules(em) raised ValueError: rule 'x': timeout must be None or a number"),
])
def test_a_rules_file_that_cannot_be_used_is_one_line_and_exit_status_2(tmp_path, name, message):
    done = chronopipe("validate", CLIENT, "--rules", hostile(tmp_path, name), "--json", tmp_path / "r.json")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"chronopipe validate: rules file {tmp_path / name}"), done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "r.json").exists()


SLEEPER = ONLY_BASIC + '''
import time
from pathlib import Path


def rules(em):
    def first(record):
        Path(__file__).with_name("started").touch()
        time.sleep(60)
    em.register_once(first, {"tcp.dport": 22}, {"name": "sleeper"})
'''

KILLER = ONLY_BASIC + '''
import psutil


def rules(em):
    def kill(record):
        for child in psutil.Process().children():
            child.kill()
        import time; time.sleep(5)  # the runtime notices the deaths meanwhile
    em.register_once(kill, {"tcp.dport": 22}, {"name": "killer"})
'''


def test_a_real_ctrl_c_in_a_rule_still_ends_the_run_and_no_output_is_written(tmp_path):
    rules = tmp_path / "sleeper.py"
    rules.write_text(SLEEPER)
    proc = subprocess.Popen([sys.executable, "-m", "chronopipe.cli", "validate", str(CLIENT), "--rules", str(rules),
                             "--json", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert f"chronopipe validate: {tmp_path / 'r.json'} not written" in stderr
    assert f"chronopipe validate: {tmp_path / 'r.html'} not written" in stderr
    assert "Traceback" not in stderr and not list(tmp_path.glob("r.*"))


def test_a_run_whose_processes_die_says_its_outputs_were_not_written(tmp_path):
    rules = tmp_path / "killer.py"
    rules.write_text(KILLER)
    done = chronopipe("validate", CLIENT, SERVER, "--check-processes", "1", "--rules", rules,
                      "--json", tmp_path / "r.json")
    assert done.returncode == 3, done.stderr
    assert f"chronopipe validate: {tmp_path / 'r.json'} not written" in done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.glob("r.*"))


def test_an_actor_errors_record_is_cut_short_in_its_message():
    from chronopipe.actors.errors import ActorError
    from chronopipe.cli.validate import RECORD_REPR, _shorten

    error = ActorError("validate:x", "TimeoutError", "too slow", record={"payload": b"x" * 5000})
    _shorten(error)
    assert len(error.record_repr) <= RECORD_REPR + 3 and len(str(error)) < 300


def test_an_async_rule_is_waited_for_every_packet_is_counted():
    custom = CustomFindings()

    def rules(em):
        em.register(lambda record: 1 / 0, {"tcp.dport": 22}, {"name": "async-divide", "async": True})

    report = validate([CLIENT], [OutOfOrder(), custom], rules=lambda em: rules(custom.view(em)))
    assert report.packets == 838 and custom.errors["async-divide"].count == 838
